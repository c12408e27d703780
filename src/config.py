"""Settings for the whole pipeline: the one place that reads the environment.

Every setting comes from an environment variable, optionally loaded from a `.env` file
(python-dotenv). Values are converted to the right type here, once, so the rest of the code
receives plain Python values. `.env.example` documents every variable with a safe default.

Functions in `src/` never call `os.getenv` themselves: the caller loads the settings with
`load_settings()` and passes what a function needs. That keeps the same function usable from
tests, the CLI, Airflow tasks and the Lambda handler.

This module also owns secret redaction (`redact`), because it is the module that knows which
values are secret.

Example:
    >>> settings = load_settings()
    >>> settings.alpha_vantage_calls_per_minute
    5
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

logger = logging.getLogger(__name__)

# The repository root (the folder that holds `src/`). Relative paths in settings are
# resolved against it, so the CLI works the same from any working directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The 50 symbols a run uses when none are given: large, liquid US stocks (and the same set
# the offline demo data covers).
DEFAULT_SYMBOLS = (
    "AAPL,MSFT,AMZN,GOOG,META,NVDA,TSLA,JPM,V,JNJ,"
    "WMT,PG,MA,UNH,HD,XOM,CVX,KO,PEP,ABBV,"
    "MRK,BAC,COST,AVGO,ADBE,CRM,CSCO,ORCL,INTC,AMD,"
    "NFLX,DIS,MCD,NKE,T,VZ,PFE,TMO,ABT,LLY,"
    "IBM,QCOM,TXN,HON,CAT,GS,MS,BA,GE,SBUX"
)

VALID_SOURCES = ("alpha_vantage", "yahoo", "file")


class ConfigurationError(Exception):
    """A setting is missing or wrong. The message says which variable and how to fix it.

    The CLI turns this into exit code 2; in Airflow it fails the task without retrying
    being of any help, so the message must be enough to fix it.
    """


@dataclass(frozen=True)
class Settings:
    """All settings, already converted to their types. Build it with `load_settings()`."""

    # --- Sources -----------------------------------------------------------------
    data_sources: tuple[str, ...] = ("alpha_vantage", "yahoo")
    symbols: tuple[str, ...] = tuple(DEFAULT_SYMBOLS.split(","))
    batch_size: int = 10
    prepare_in_background: bool = True
    file_source_dir: Path = PROJECT_ROOT / "data" / "offline"

    # --- Alpha Vantage -----------------------------------------------------------
    alpha_vantage_api_key: str = field(default="", repr=False)
    alpha_vantage_base_url: str = "https://www.alphavantage.co/query"
    alpha_vantage_calls_per_minute: int = 5
    alpha_vantage_min_interval_seconds: float = 1.0
    alpha_vantage_daily_limit: int = 25
    alpha_vantage_premium: bool = False

    # --- Yahoo Finance -----------------------------------------------------------
    yahoo_max_retries: int = 3

    # --- HTTP (the one retry helper uses these) ------------------------------------
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 30.0
    http_max_tries: int = 3
    http_backoff_seconds: float = 2.0
    http_max_response_bytes: int = 20_000_000

    # --- State and warehouse -----------------------------------------------------
    state_dir: Path = PROJECT_ROOT / "data" / "state"
    warehouse_backend: str = "sqlite"
    sqlite_path: Path = PROJECT_ROOT / "data" / "warehouse.db"

    # --- AWS (S3 raw zone, CloudWatch, Lambda) ---------------------------------------
    s3_bucket: str = ""
    s3_create_bucket: bool = True
    aws_region: str = "us-east-1"
    aws_endpoint_url: str = ""
    cloudwatch_namespace: str = "CloudScaleFinanceETL"
    transform_backend: str = "local"
    lambda_function_name: str = "cloudscale-finance-transform"

    # --- BigQuery ------------------------------------------------------------------
    gcp_project_id: str = "cloudscale-local"
    bigquery_dataset: str = "finance"
    bigquery_location: str = "US"
    bigquery_api_endpoint: str = ""

    # --- Monitoring / Airflow --------------------------------------------------------
    slack_webhook_url: str = field(default="", repr=False)
    airflow_base_url: str = "http://127.0.0.1:8080"
    task_retry_delay_seconds: int = 60
    log_level: str = "INFO"

    def secrets(self) -> list[str]:
        """Return the secret values that must never appear in logs, errors or stored objects.

        The webhook URL's path is listed on its own too: requests reports a failed connection
        as "host='hooks.slack.com' ... url: /services/T/B/X", with the path apart from the host.
        """
        values = [self.alpha_vantage_api_key, self.slack_webhook_url]
        webhook_path = urlsplit(self.slack_webhook_url).path
        if len(webhook_path) > 1:
            values.append(webhook_path)
        return [value for value in values if value]


def _to_bool(name: str, raw: str) -> bool:
    """Convert 'true/false/1/0/yes/no' (any case) to a bool, or raise a ConfigurationError."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _to_number(name: str, raw: str, kind: type, minimum: float) -> int | float:
    """Convert a string to int/float and check it is at least `minimum`."""
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _to_path(raw: str) -> Path:
    """Resolve a path setting; relative paths are relative to the project root."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _to_list(raw: str) -> tuple[str, ...]:
    """Split 'a, b ,c' into ('a', 'b', 'c'), dropping empty items."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def load_settings(env_file: str | os.PathLike | None = None, overrides: dict | None = None) -> Settings:
    """Read settings from the environment (and a `.env` file) and convert their types.

    Precedence, highest first: `overrides`, real environment variables, the `.env` file,
    the defaults in `Settings`. The `.env` file is `PIPELINE_ENV_FILE` if set, else
    `<project root>/.env`; a missing file is fine.

    Args:
        env_file: path of a dotenv file to read instead of the default one.
        overrides: variable name -> string value, applied last (handy in tests).

    Returns:
        A frozen `Settings`.

    Raises:
        ConfigurationError: a value cannot be converted or is out of range.
    """
    if env_file is None:
        env_file = os.environ.get("PIPELINE_ENV_FILE") or PROJECT_ROOT / ".env"
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    values.update(overrides or {})

    def get(name: str, default: str) -> str:
        return values.get(name, default)

    defaults = Settings()
    sources = _to_list(get("DATA_SOURCES", ",".join(defaults.data_sources)))
    unknown = [s for s in sources if s not in VALID_SOURCES]
    if not sources or unknown:
        raise ConfigurationError(
            f"DATA_SOURCES must list sources from {', '.join(VALID_SOURCES)}; got {sources or 'nothing'}"
        )
    backend = get("WAREHOUSE_BACKEND", defaults.warehouse_backend).strip().lower()
    if backend not in ("sqlite", "bigquery"):
        raise ConfigurationError(f"WAREHOUSE_BACKEND must be sqlite or bigquery, got {backend!r}")
    transform_backend = get("TRANSFORM_BACKEND", defaults.transform_backend).strip().lower()
    if transform_backend not in ("local", "lambda"):
        raise ConfigurationError(f"TRANSFORM_BACKEND must be local or lambda, got {transform_backend!r}")

    return Settings(
        data_sources=sources,
        symbols=_to_list(get("SYMBOLS", DEFAULT_SYMBOLS)),
        batch_size=int(_to_number("BATCH_SIZE", get("BATCH_SIZE", "10"), int, 1)),
        prepare_in_background=_to_bool("PREPARE_IN_BACKGROUND", get("PREPARE_IN_BACKGROUND", "true")),
        file_source_dir=_to_path(get("FILE_SOURCE_DIR", "data/offline")),
        alpha_vantage_api_key=get("ALPHA_VANTAGE_API_KEY", "").strip(),
        alpha_vantage_base_url=get("ALPHA_VANTAGE_BASE_URL", defaults.alpha_vantage_base_url).strip(),
        alpha_vantage_calls_per_minute=int(
            _to_number("ALPHA_VANTAGE_CALLS_PER_MINUTE", get("ALPHA_VANTAGE_CALLS_PER_MINUTE", "5"), int, 1)
        ),
        alpha_vantage_min_interval_seconds=float(
            _to_number("ALPHA_VANTAGE_MIN_INTERVAL_SECONDS", get("ALPHA_VANTAGE_MIN_INTERVAL_SECONDS", "1"), float, 0)
        ),
        alpha_vantage_daily_limit=int(
            _to_number("ALPHA_VANTAGE_DAILY_LIMIT", get("ALPHA_VANTAGE_DAILY_LIMIT", "25"), int, 0)
        ),
        alpha_vantage_premium=_to_bool("ALPHA_VANTAGE_PREMIUM", get("ALPHA_VANTAGE_PREMIUM", "false")),
        yahoo_max_retries=int(_to_number("YAHOO_MAX_RETRIES", get("YAHOO_MAX_RETRIES", "3"), int, 1)),
        http_connect_timeout=float(_to_number("HTTP_CONNECT_TIMEOUT", get("HTTP_CONNECT_TIMEOUT", "5"), float, 0.1)),
        http_read_timeout=float(_to_number("HTTP_READ_TIMEOUT", get("HTTP_READ_TIMEOUT", "30"), float, 0.1)),
        http_max_tries=int(_to_number("HTTP_MAX_TRIES", get("HTTP_MAX_TRIES", "3"), int, 1)),
        http_backoff_seconds=float(_to_number("HTTP_BACKOFF_SECONDS", get("HTTP_BACKOFF_SECONDS", "2"), float, 0)),
        http_max_response_bytes=int(
            _to_number("HTTP_MAX_RESPONSE_BYTES", get("HTTP_MAX_RESPONSE_BYTES", "20000000"), int, 1024)
        ),
        state_dir=_to_path(get("STATE_DIR", "data/state")),
        warehouse_backend=backend,
        sqlite_path=_to_path(get("SQLITE_PATH", "data/warehouse.db")),
        s3_bucket=get("S3_BUCKET", "").strip(),
        s3_create_bucket=_to_bool("S3_CREATE_BUCKET", get("S3_CREATE_BUCKET", "true")),
        aws_region=get("AWS_DEFAULT_REGION", get("AWS_REGION", defaults.aws_region)).strip(),
        aws_endpoint_url=get("AWS_ENDPOINT_URL", "").strip(),
        cloudwatch_namespace=get("CLOUDWATCH_NAMESPACE", defaults.cloudwatch_namespace).strip(),
        transform_backend=transform_backend,
        lambda_function_name=get("LAMBDA_FUNCTION_NAME", defaults.lambda_function_name).strip(),
        gcp_project_id=get("GCP_PROJECT_ID", defaults.gcp_project_id).strip(),
        bigquery_dataset=get("BIGQUERY_DATASET", defaults.bigquery_dataset).strip(),
        bigquery_location=get("BIGQUERY_LOCATION", defaults.bigquery_location).strip(),
        bigquery_api_endpoint=get("BIGQUERY_API_ENDPOINT", "").strip(),
        slack_webhook_url=get("SLACK_WEBHOOK_URL", "").strip(),
        airflow_base_url=get("AIRFLOW_BASE_URL", defaults.airflow_base_url).strip().rstrip("/"),
        task_retry_delay_seconds=int(
            _to_number("TASK_RETRY_DELAY_SECONDS", get("TASK_RETRY_DELAY_SECONDS", "60"), int, 0)
        ),
        log_level=get("LOG_LEVEL", defaults.log_level).strip().upper(),
    )


def require_alpha_vantage_key(settings: Settings) -> str:
    """Return the Alpha Vantage key, or raise a clear error when it is needed but missing."""
    if not settings.alpha_vantage_api_key:
        raise ConfigurationError(
            "ALPHA_VANTAGE_API_KEY is not set. Get a free key at "
            "https://www.alphavantage.co/support/#api-key and put it in .env, "
            "or drop alpha_vantage from DATA_SOURCES (e.g. DATA_SOURCES=yahoo)."
        )
    return settings.alpha_vantage_api_key


# Request parameters whose values are secret (compared case-insensitively): redacted wherever
# they appear (e.g. in the URL requests puts into its exception messages) and dropped before
# request parameters are stored as S3 object metadata.
SECRET_PARAM_NAMES = ("apikey", "api_key", "token", "key")
_SECRET_QUERY_PARAM = re.compile(rf"(?i)\b({'|'.join(SECRET_PARAM_NAMES)})=([^&\s'\"]+)")
# Slack webhook paths are secret too: the path *is* the credential.
_SLACK_WEBHOOK = re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+")
# requests' connection errors print the host and the path apart ("host='hooks.slack.com' ...
# url: /services/T.../B.../..."), so the webhook path is redacted on its own too.
_SLACK_WEBHOOK_PATH = re.compile(r"/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+")


def redact(text: object, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Return `text` as a string with secrets replaced by `***`.

    Removes the given secret values, any `apikey=...`-style query parameter, and Slack
    webhook URLs. Use it on every message that can contain a URL or a payload before it
    is logged, raised, alerted or stored.

    Args:
        text: anything; it is converted with `str()`.
        secrets: exact secret values to remove (e.g. `settings.secrets()`).

    Returns:
        The redacted string.

    Example:
        >>> redact("GET https://x/query?symbol=IBM&apikey=abc123 failed")
        'GET https://x/query?symbol=IBM&apikey=*** failed'
    """
    message = str(text)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = _SECRET_QUERY_PARAM.sub(lambda m: f"{m.group(1)}=***", message)
    message = _SLACK_WEBHOOK.sub("https://hooks.slack.com/services/***", message)
    return _SLACK_WEBHOOK_PATH.sub("/services/***", message)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from every record it sees (defence in depth)."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(record.msg, self.secrets)
        return True


def configure_logging(settings: Settings) -> None:
    """Set up root logging once for a CLI process, with secret redaction on every handler."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    root.setLevel(settings.log_level)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(settings.secrets()))
