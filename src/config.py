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

import errno
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
    # 125, not 10: each Airflow task costs seconds of its own (a process, imports, API calls),
    # which 10 symbols' work does not repay (docs/benchmarks.md, "The DAG on the local stack").
    batch_size: int = 125
    prepare_in_background: bool = True
    file_source_dir: Path = PROJECT_ROOT / "data" / "offline"
    # A hole of more than this many missing NYSE sessions restarts every indicator's warm-up.
    max_gap_sessions: int = 10

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
    # The most one HTTP try may take, body included (a trickling server never trips the read timeout).
    http_total_timeout: float = 60.0
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
    # How long a load waits for another run's BigQuery load lock (<dataset>._load_lock).
    bigquery_lock_wait_seconds: float = 600.0

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


def _check_http_url(name: str, url: str) -> str:
    """Return `url` if it is a usable http(s) URL with a host and a valid port, else raise.

    Catches typos (`htp://`, no scheme, port 99999, no host) when the settings load, with
    the variable named, instead of a requests exception deep inside the first call.

    Raises:
        ConfigurationError: the URL cannot be used.
    """
    example = "e.g. https://www.alphavantage.co/query"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"{name} must start with http:// or https:// ({example}); got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise ConfigurationError(f"{name} has an invalid port (1 to 65535 allowed, {example}); got {url!r}") from None
    if not parts.hostname:
        raise ConfigurationError(f"{name} has no host name ({example}); got {url!r}")
    return url


def _to_list(raw: str) -> tuple[str, ...]:
    """Split 'a, b ,c' into ('a', 'b', 'c'), dropping empty items."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


# Every environment variable the settings come from, grouped by how its text is converted:
# variable -> the `Settings` field it sets (and, for numbers, the type and the least value).
# A variable that is not set keeps the field's default, which is written once: in `Settings`.
TEXT_VARIABLES = {
    "ALPHA_VANTAGE_API_KEY": "alpha_vantage_api_key",  # pragma: allowlist secret (a field name, not a key)
    "ALPHA_VANTAGE_BASE_URL": "alpha_vantage_base_url",
    "S3_BUCKET": "s3_bucket",
    "AWS_DEFAULT_REGION": "aws_region",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "CLOUDWATCH_NAMESPACE": "cloudwatch_namespace",
    "LAMBDA_FUNCTION_NAME": "lambda_function_name",
    "GCP_PROJECT_ID": "gcp_project_id",
    "BIGQUERY_DATASET": "bigquery_dataset",
    "BIGQUERY_LOCATION": "bigquery_location",
    "BIGQUERY_API_ENDPOINT": "bigquery_api_endpoint",
    "SLACK_WEBHOOK_URL": "slack_webhook_url",
    "AIRFLOW_BASE_URL": "airflow_base_url",
    "LOG_LEVEL": "log_level",
}
NUMBER_VARIABLES = {
    "BATCH_SIZE": ("batch_size", int, 1),
    "MAX_GAP_SESSIONS": ("max_gap_sessions", int, 0),
    "ALPHA_VANTAGE_CALLS_PER_MINUTE": ("alpha_vantage_calls_per_minute", int, 1),
    "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": ("alpha_vantage_min_interval_seconds", float, 0),
    "ALPHA_VANTAGE_DAILY_LIMIT": ("alpha_vantage_daily_limit", int, 0),
    "YAHOO_MAX_RETRIES": ("yahoo_max_retries", int, 1),
    "HTTP_CONNECT_TIMEOUT": ("http_connect_timeout", float, 0.1),
    "HTTP_READ_TIMEOUT": ("http_read_timeout", float, 0.1),
    "HTTP_TOTAL_TIMEOUT": ("http_total_timeout", float, 0.1),
    "BIGQUERY_LOCK_WAIT_SECONDS": ("bigquery_lock_wait_seconds", float, 0.0),
    "HTTP_MAX_TRIES": ("http_max_tries", int, 1),
    "HTTP_BACKOFF_SECONDS": ("http_backoff_seconds", float, 0),
    "HTTP_MAX_RESPONSE_BYTES": ("http_max_response_bytes", int, 1024),
    "TASK_RETRY_DELAY_SECONDS": ("task_retry_delay_seconds", int, 0),
}
BOOLEAN_VARIABLES = {
    "PREPARE_IN_BACKGROUND": "prepare_in_background",
    "ALPHA_VANTAGE_PREMIUM": "alpha_vantage_premium",
    "S3_CREATE_BUCKET": "s3_create_bucket",
}
PATH_VARIABLES = {
    "FILE_SOURCE_DIR": "file_source_dir",
    "STATE_DIR": "state_dir",
    "SQLITE_PATH": "sqlite_path",
}
LIST_VARIABLES = {
    "DATA_SOURCES": "data_sources",
    "SYMBOLS": "symbols",
}
# Variables whose value must be one of a few words (compared in lower case).
CHOICE_VARIABLES = {
    "WAREHOUSE_BACKEND": ("warehouse_backend", ("sqlite", "bigquery")),
    "TRANSFORM_BACKEND": ("transform_backend", ("local", "lambda")),
}
# boto3's older name for the region, read when AWS_DEFAULT_REGION is not set.
AWS_REGION_FALLBACK = "AWS_REGION"

ENVIRONMENT_VARIABLES = sorted(
    [
        *TEXT_VARIABLES,
        *NUMBER_VARIABLES,
        *BOOLEAN_VARIABLES,
        *PATH_VARIABLES,
        *LIST_VARIABLES,
        *CHOICE_VARIABLES,
        AWS_REGION_FALLBACK,
    ]
)


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
    if "AWS_DEFAULT_REGION" not in values and AWS_REGION_FALLBACK in values:
        values["AWS_DEFAULT_REGION"] = values[AWS_REGION_FALLBACK]

    chosen: dict[str, object] = {}
    for name, field_name in TEXT_VARIABLES.items():
        if name in values:
            chosen[field_name] = values[name].strip()
    for name, (field_name, kind, minimum) in NUMBER_VARIABLES.items():
        if name in values:
            chosen[field_name] = _to_number(name, values[name], kind, minimum)
    for name, field_name in BOOLEAN_VARIABLES.items():
        if name in values:
            chosen[field_name] = _to_bool(name, values[name])
    for name, field_name in PATH_VARIABLES.items():
        if name in values:
            chosen[field_name] = _to_path(values[name])
    for name, field_name in LIST_VARIABLES.items():
        if name in values:
            chosen[field_name] = _to_list(values[name])
    for name, (field_name, allowed) in CHOICE_VARIABLES.items():
        if name in values:
            chosen[field_name] = values[name].strip().lower()
            if chosen[field_name] not in allowed:
                raise ConfigurationError(f"{name} must be {' or '.join(allowed)}, got {chosen[field_name]!r}")
    if "log_level" in chosen:
        chosen["log_level"] = str(chosen["log_level"]).upper()
    if "alpha_vantage_base_url" in chosen:
        _check_http_url("ALPHA_VANTAGE_BASE_URL", str(chosen["alpha_vantage_base_url"]))
    if "airflow_base_url" in chosen:
        chosen["airflow_base_url"] = str(chosen["airflow_base_url"]).rstrip("/")

    sources = chosen.get("data_sources", Settings.data_sources)
    unknown = [source for source in sources if source not in VALID_SOURCES]
    if not sources or unknown:
        raise ConfigurationError(
            f"DATA_SOURCES must list sources from {', '.join(VALID_SOURCES)}; got {list(sources) or 'nothing'}"
        )
    return Settings(**chosen)


def require_alpha_vantage_key(settings: Settings) -> str:
    """Return the Alpha Vantage key, or raise a clear error when it is needed but missing."""
    if not settings.alpha_vantage_api_key:
        raise ConfigurationError(
            "ALPHA_VANTAGE_API_KEY is not set. Get a free key at "
            "https://www.alphavantage.co/support/#api-key and put it in .env, "
            "or drop alpha_vantage from DATA_SOURCES (e.g. DATA_SOURCES=yahoo)."
        )
    return settings.alpha_vantage_api_key


class StateDirFullError(Exception):
    """STATE_DIR is on a disk with no space left (a runtime fault: free space and rerun)."""


# The probe `require_writable_state_dir` writes: a landed reply or the quota file is about this big.
STATE_DIR_PROBE_BYTES = 64 * 1024


def require_writable_state_dir(settings: Settings) -> Path:
    """Check that STATE_DIR is a folder the run can write, before any API quota is spent.

    The run keeps its landed replies and the API quota there; finding out at the first
    reply (after the request was paid for) would spend quota and stop with a traceback.

    Returns:
        The folder (created when missing).

    Raises:
        ConfigurationError: STATE_DIR is a regular file, cannot be created, or is read-only.
        StateDirFullError: the disk under STATE_DIR is full.
    """
    folder = Path(settings.state_dir)
    advice = "set STATE_DIR to a writable folder (it is created if missing)"
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"STATE_DIR={folder} is a regular file, not a folder: {advice}")
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb", buffering=0) as handle:
            handle.write(b"\0" * STATE_DIR_PROBE_BYTES)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StateDirFullError(
                f"STATE_DIR={folder} is on a full disk ({exc.strerror}): free space there (or point STATE_DIR "
                "at a bigger disk) and rerun the same dates"
            ) from exc
        raise ConfigurationError(f"STATE_DIR={folder} cannot be written ({exc.strerror}): {advice}") from exc
    probe.unlink()
    return folder


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
