"""`.env.example` documents every variable src/config.py reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from src import config

ROOT = Path(__file__).resolve().parents[2]
# Variables read by other tools, not by src/config.py (documented in .env.example all the same).
NOT_READ_BY_CONFIG = {
    "AWS_ACCESS_KEY_ID",  # boto3 reads the credentials itself
    "AWS_SECRET_ACCESS_KEY",
    "PIPELINE_ENV_FILE",  # read before the .env file, to find it
    # docker-compose.yml only
    "POSTGRES_PASSWORD",
    "AIRFLOW_ADMIN_USER",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
}


def variables_read_by_config() -> set[str]:
    return set(config.ENVIRONMENT_VARIABLES)


def variables_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    # Both set (`X=...`) and commented-out (`# X=`) variables count as documented.
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_every_setting_is_documented_in_env_example():
    missing = variables_read_by_config() - variables_in_env_example()
    assert not missing, f".env.example lacks: {sorted(missing)}"


def test_env_example_documents_nothing_that_is_not_read():
    unknown = variables_in_env_example() - variables_read_by_config() - NOT_READ_BY_CONFIG
    assert not unknown, f".env.example lists variables nothing reads: {sorted(unknown)}"


def test_the_example_values_load_as_valid_settings():
    settings = config.load_settings(env_file=ROOT / ".env.example", overrides={})
    assert settings.data_sources == ("alpha_vantage", "yahoo")
    assert settings.alpha_vantage_api_key == ""
    assert settings.batch_size == 125
