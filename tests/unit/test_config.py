"""Tests for settings loading and secret redaction (src/config.py)."""

import logging
from pathlib import Path

import pytest

from src import config
from src.config import (
    PROJECT_ROOT,
    ConfigurationError,
    RedactingFilter,
    Settings,
    configure_logging,
    load_settings,
    redact,
    require_alpha_vantage_key,
)

# Every variable load_settings reads (its own list, so a new one is never forgotten).
CONFIG_VARIABLES = config.ENVIRONMENT_VARIABLES


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No pipeline variable in the environment and an empty .env file: only defaults apply."""
    for name in [*CONFIG_VARIABLES, "PIPELINE_ENV_FILE"]:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return empty


def test_the_variable_list_was_found():
    assert {"ALPHA_VANTAGE_API_KEY", "ALPHA_VANTAGE_CALLS_PER_MINUTE", "LOG_LEVEL"} <= set(CONFIG_VARIABLES)


# --- defaults and types ------------------------------------------------------------------------


def test_defaults(clean_env):
    settings = load_settings(env_file=clean_env)

    assert settings == Settings()
    assert settings.data_sources == ("alpha_vantage", "yahoo")
    assert len(settings.symbols) == 50
    assert settings.symbols[:3] == ("AAPL", "MSFT", "AMZN")
    assert settings.alpha_vantage_api_key == ""
    assert settings.alpha_vantage_base_url == "https://www.alphavantage.co/query"
    assert settings.alpha_vantage_calls_per_minute == 5
    assert settings.alpha_vantage_min_interval_seconds == 1.0
    assert settings.alpha_vantage_daily_limit == 25
    assert settings.alpha_vantage_premium is False
    assert (settings.http_connect_timeout, settings.http_read_timeout) == (5.0, 30.0)
    assert settings.http_max_tries == 3
    assert settings.state_dir == PROJECT_ROOT / "data" / "state"
    assert settings.warehouse_backend == "sqlite"


def test_values_are_converted_to_their_types(clean_env):
    settings = load_settings(
        env_file=clean_env,
        overrides={
            "ALPHA_VANTAGE_CALLS_PER_MINUTE": " 30 ",
            "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0.5",
            "ALPHA_VANTAGE_DAILY_LIMIT": "0",
            "ALPHA_VANTAGE_PREMIUM": "Yes",
            "HTTP_READ_TIMEOUT": "2.5",
            "DATA_SOURCES": "yahoo, file",
            "SYMBOLS": "aapl, msft ,,",
            "STATE_DIR": "tmp/state",
            "SQLITE_PATH": "/var/data/w.db",
            "WAREHOUSE_BACKEND": " BigQuery ",
            "LOG_LEVEL": "debug",
            "AIRFLOW_BASE_URL": "http://127.0.0.1:8080/",
        },
    )

    assert settings.alpha_vantage_calls_per_minute == 30
    assert type(settings.alpha_vantage_calls_per_minute) is int
    assert settings.alpha_vantage_min_interval_seconds == 0.5
    assert settings.alpha_vantage_daily_limit == 0
    assert settings.alpha_vantage_premium is True
    assert settings.http_read_timeout == 2.5
    assert settings.data_sources == ("yahoo", "file")
    assert settings.symbols == ("aapl", "msft")
    assert settings.state_dir == PROJECT_ROOT / "tmp" / "state"
    assert settings.sqlite_path == Path("/var/data/w.db")
    assert settings.warehouse_backend == "bigquery"
    assert settings.log_level == "DEBUG"
    assert settings.airflow_base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("ON", True),
        ("yes", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("", False),
    ],
)
def test_booleans(clean_env, raw, expected):
    assert load_settings(env_file=clean_env, overrides={"ALPHA_VANTAGE_PREMIUM": raw}).alpha_vantage_premium is expected


# --- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ALPHA_VANTAGE_CALLS_PER_MINUTE", "five"),
        ("ALPHA_VANTAGE_CALLS_PER_MINUTE", "0"),
        ("ALPHA_VANTAGE_CALLS_PER_MINUTE", "2.5"),
        ("ALPHA_VANTAGE_MIN_INTERVAL_SECONDS", "-1"),
        ("ALPHA_VANTAGE_DAILY_LIMIT", "-1"),
        ("ALPHA_VANTAGE_PREMIUM", "maybe"),
        ("HTTP_READ_TIMEOUT", "0"),
        ("HTTP_MAX_TRIES", "0"),
        ("HTTP_MAX_RESPONSE_BYTES", "100"),
        ("BATCH_SIZE", ""),
        ("S3_CREATE_BUCKET", "2"),
        ("DATA_SOURCES", "bloomberg"),
        ("DATA_SOURCES", " , "),
        ("WAREHOUSE_BACKEND", "postgres"),
        ("TRANSFORM_BACKEND", "gpu"),
    ],
)
def test_bad_values_name_the_variable(clean_env, name, raw):
    with pytest.raises(ConfigurationError, match=name):
        load_settings(env_file=clean_env, overrides={name: raw})


def test_bad_number_message_shows_the_value(clean_env):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env_file=clean_env, overrides={"ALPHA_VANTAGE_DAILY_LIMIT": "lots"})
    assert str(caught.value) == "ALPHA_VANTAGE_DAILY_LIMIT must be a int, got 'lots'"


# --- where values come from ----------------------------------------------------------------------


def test_precedence_overrides_then_environment_then_env_file(clean_env, monkeypatch, tmp_path):
    env_file = tmp_path / "pipeline.env"
    env_file.write_text("ALPHA_VANTAGE_DAILY_LIMIT=10\nALPHA_VANTAGE_API_KEY=from-file\n")

    assert load_settings(env_file=env_file).alpha_vantage_daily_limit == 10
    monkeypatch.setenv("ALPHA_VANTAGE_DAILY_LIMIT", "20")
    assert load_settings(env_file=env_file).alpha_vantage_daily_limit == 20
    settings = load_settings(env_file=env_file, overrides={"ALPHA_VANTAGE_DAILY_LIMIT": "30"})
    assert settings.alpha_vantage_daily_limit == 30
    assert settings.alpha_vantage_api_key == "from-file"


def test_pipeline_env_file_variable_picks_the_file(clean_env, monkeypatch, tmp_path):
    env_file = tmp_path / "other.env"
    env_file.write_text("HTTP_MAX_TRIES=7\n")
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(env_file))

    assert load_settings().http_max_tries == 7


def test_missing_env_file_is_fine(clean_env, tmp_path):
    assert load_settings(env_file=tmp_path / "does-not-exist.env") == Settings()


# --- secrets -------------------------------------------------------------------------------------


def test_require_alpha_vantage_key(clean_env):
    with pytest.raises(ConfigurationError, match="ALPHA_VANTAGE_API_KEY is not set"):
        require_alpha_vantage_key(load_settings(env_file=clean_env))
    settings = load_settings(env_file=clean_env, overrides={"ALPHA_VANTAGE_API_KEY": "  abc123  "})
    assert require_alpha_vantage_key(settings) == "abc123"


def test_secrets_are_listed_and_hidden_from_repr():
    settings = Settings(alpha_vantage_api_key="abc123", slack_webhook_url="https://hooks.slack.com/services/T/B/x")

    # The webhook path is a secret on its own too (requests prints it apart from the host).
    assert settings.secrets() == ["abc123", "https://hooks.slack.com/services/T/B/x", "/services/T/B/x"]
    assert Settings().secrets() == []
    assert "abc123" not in repr(settings)
    assert "hooks.slack.com" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        (
            "GET https://x/query?symbol=IBM&apikey=abc123 failed",
            [],
            "GET https://x/query?symbol=IBM&apikey=*** failed",
        ),
        ("url: /q?APIKEY=abc&token=t0k&x=1", [], "url: /q?APIKEY=***&token=***&x=1"),
        ("the key abc123 leaked", ["abc123"], "the key *** leaked"),
        ("nothing to hide", ["", "abc123"], "nothing to hide"),
        (
            "posting to https://hooks.slack.com/services/T000/B000/XXXX failed",
            [],
            "posting to https://hooks.slack.com/services/*** failed",
        ),
        (ValueError("bad apikey=abc123"), [], "bad apikey=***"),
    ],
    ids=["query-param", "several-params", "secret-value", "empty-secret", "slack-webhook", "exception"],
)
def test_redact(text, secrets, expected):
    assert redact(text, secrets) == expected


def test_redacting_filter_cleans_records_with_arguments(caplog):
    caplog.handler.addFilter(RedactingFilter(["abc123"]))
    # urllib3 logs request lines like this at DEBUG; the filter cleans them on every handler.
    logging.getLogger("urllib3.connectionpool").warning('"GET /query?symbol=IBM&apikey=%s HTTP/1.1" 200', "abc123")

    assert "abc123" not in caplog.text
    assert "apikey=***" in caplog.text


def test_configure_logging_adds_the_filter_once(monkeypatch):
    root = logging.getLogger()
    handler = logging.StreamHandler()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", root.level)  # restored after the test

    settings = Settings(alpha_vantage_api_key="abc123", log_level="WARNING")
    configure_logging(settings)
    configure_logging(settings)

    assert [type(f) for f in handler.filters] == [RedactingFilter]
    assert handler.filters[0].secrets == ["abc123"]
    assert root.level == logging.WARNING
