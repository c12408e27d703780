#!/usr/bin/env bash
# Build the transform Lambda's deployment package: lambda-build/transform.zip.
#
# pandas, numpy and pyarrow are far too big to vendor into a zip (the unzipped limit is 250 MB),
# so the function uses AWS's managed "AWS SDK for pandas" layer (AWSSDKPandas-Python311), which
# provides pandas, numpy, pyarrow and boto3. We chose the managed layer over a container image
# because it keeps deploys a plain zip upload, needs no registry, and AWS patches the layer.
# The zip holds only our `src` package and the small pure-Python packages the layer lacks,
# at the versions pinned in constraints.txt.
#
# Usage: scripts/build-lambda.sh [output.zip]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV_DIR:-$ROOT/.venv}"
OUT="${1:-$ROOT/lambda-build/transform.zip}"
# A fresh folder per build: two builds at once (CI and a developer, two test runs) never
# write into each other's package, and nothing of an earlier build is left in the zip.
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/cloudscale-lambda.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT

# Pure-Python dependencies of the transform path that the layer does not ship.
EXTRA_PACKAGES=(python-dotenv exchange-calendars pyluach korean-lunar-calendar toolz tzdata tqdm
                requests urllib3 idna certifi charset-normalizer)
pins=()
for package in "${EXTRA_PACKAGES[@]}"; do
  pin="$(grep -iE "^${package}==" constraints.txt || true)"
  if [ -z "$pin" ]; then
    echo "error: $package is not pinned in constraints.txt" >&2
    exit 1
  fi
  pins+=("$pin")
done

mkdir -p "$(dirname "$OUT")"
echo "==> Installing ${#pins[@]} pinned packages for the Lambda runtime (python3.11, x86_64)"
"$VENV/bin/python" -m pip install --quiet --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
  --target "$BUILD" "${pins[@]}"

echo "==> Copying the src package"
# The local-stack stand-ins are not part of the cloud function.
"$VENV/bin/python" - "$ROOT/src" "$BUILD/src" <<'PY'
import shutil, sys
shutil.copytree(sys.argv[1], sys.argv[2], ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "local_stack"))
PY

echo "==> Zipping"
rm -f "$OUT"
"$VENV/bin/python" - "$BUILD" "$OUT" <<'PY'
import os, sys, zipfile
build, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
    for folder, _, files in sorted(os.walk(build)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            archive.write(path, os.path.relpath(path, build))
print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
PY
echo "Handler: src.lambda_handler.handler (attach the AWSSDKPandas-Python311 layer)"
