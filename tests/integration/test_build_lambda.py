"""scripts/build-lambda.sh builds a small zip whose handler imports from the zip alone."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lambda") / "transform.zip"
    subprocess.run([str(ROOT / "scripts" / "build-lambda.sh"), str(out)], check=True, cwd=ROOT, timeout=300)
    return out


def test_package_holds_the_handler_and_small_dependencies_only(lambda_zip):
    names = set(zipfile.ZipFile(lambda_zip).namelist())
    assert "src/lambda_handler.py" in names
    assert "src/steps.py" in names
    assert any(name.startswith("exchange_calendars/") for name in names)
    assert any(name.startswith("dotenv/") for name in names)
    # pandas/numpy/pyarrow come from the AWS SDK for pandas layer; local stand-ins stay out.
    assert not any(name.startswith(("pandas/", "numpy/", "pyarrow/", "src/local_stack/")) for name in names)
    assert lambda_zip.stat().st_size < 50_000_000  # Lambda's limit for a direct zip upload


def test_handler_imports_from_the_extracted_package(lambda_zip, tmp_path):
    zipfile.ZipFile(lambda_zip).extractall(tmp_path)
    # Lambda puts the package folder first on the path, then the layer's packages. `-S` skips
    # site.py, so our editable install (a .pth import hook) cannot shadow the extracted copy;
    # site-packages then stands in for the AWS SDK for pandas layer.
    code = (
        "import src.lambda_handler as h, src.steps, src.ingestion.raw_replies, "
        "src.transformation.transform, src.storage.s3_handler; print(h.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), sysconfig.get_paths()["purelib"]])}
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(tmp_path / "src" / "lambda_handler.py")
