"""The S3 data lake: a raw zone for untouched API replies and a processed zone for Parquet.

Layout (Hive-style `name=value` folders, so Athena, Spark or DuckDB can read them as partitions):

    raw/source=<source>/symbol=<SYMBOL>/ingest_date=<YYYY-MM-DD>/daily.json.gz
    processed/dataset=<prices|quarantine>/ingest_date=<YYYY-MM-DD>/part-<batch>.parquet

- The raw zone keeps every API reply exactly as it came (gzip-compressed JSON), so a run can
  be replayed or audited later without spending API quota again.
- The processed zone is the hand-off between the transform and the load tasks: tasks pass
  S3 keys to each other, never DataFrames and never files on a worker's local disk.
- Keys are built from the run's logical date (`ingest_date`), not from "now": a rerun of the
  same day writes the same keys and overwrites them (the bucket is versioned, so nothing is lost).
- Every write asks for server-side encryption (SSE-S3, AES256), even though the bucket also has
  it as a default: that way an object is encrypted even in a bucket someone else created.

All functions take a boto3 S3 client (from `get_s3_client`) and a bucket name, so tests point
them at a local moto server and production at real AWS without any code change. botocore
errors are turned into `S3StorageError` with a message that says which bucket, which endpoint
and what to do about it.

Example:
    >>> client = get_s3_client(settings)
    >>> ensure_bucket(client, settings.s3_bucket, create=settings.s3_create_bucket)
    >>> key = land_raw_reply(client, settings.s3_bucket, source="alpha_vantage", symbol="IBM",
    ...                      ingest_date="2024-01-02", payload=reply_json,
    ...                      request_params={"function": "TIME_SERIES_DAILY", "symbol": "IBM"},
    ...                      fetched_at="2024-01-02T21:30:00+00:00")
    >>> key
    'raw/source=alpha_vantage/symbol=IBM/ingest_date=2024-01-02/daily.json.gz'
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import zlib
from datetime import date, datetime

import boto3
import pandas as pd
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from src.config import SECRET_PARAM_NAMES, VALID_SOURCES, Settings, redact
from src.ingestion.symbols import normalize_symbol

logger = logging.getLogger(__name__)

RAW_PREFIX = "raw/"
PROCESSED_PREFIX = "processed/"
DEFAULT_RAW_FILENAME = "daily.json.gz"
PROCESSED_DATASETS = ("prices", "quarantine")


# Safe names: letters, digits, '_', '.', '-' only, so a value can never add a folder ('/')
# or climb out of one ('..').
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SAFE_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# botocore errors we can explain. Anything else (e.g. ParamValidationError, a bug in our
# own call) propagates unchanged.
_S3_ERRORS = (ClientError, BotoConnectionError, HTTPClientError, NoCredentialsError)


class S3StorageError(Exception):
    """An S3 call failed. The message names the bucket, the endpoint and what to do.

    `reason` is a short machine-readable word for callers that need to branch:
    "unreachable", "timeout", "no_credentials", "no_such_bucket", "no_such_key",
    "access_denied" or "other".
    """

    def __init__(self, message: str, reason: str = "other"):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- client and bucket


def get_s3_client(settings: Settings):
    """Create a boto3 S3 client from the settings.

    The client uses the project's network timeouts and only a few retries, so a dead
    endpoint fails within seconds instead of hanging a task for minutes.

    Args:
        settings: uses `aws_region`, `aws_endpoint_url` (empty = real AWS; the local stack
            sets it to its moto server), `http_connect_timeout`, `http_read_timeout` and
            `http_max_tries`.

    Returns:
        A boto3 S3 client. Credentials come from boto3's usual chain (environment
        variables, profile, instance role); they are never passed around in our code.
    """
    endpoint_url = settings.aws_endpoint_url or None
    config = Config(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        retries={"max_attempts": settings.http_max_tries, "mode": "standard"},
        # Local stand-ins (moto, MinIO, LocalStack) serve buckets as paths
        # (http://127.0.0.1:5000/bucket/key), not as sub-domains (bucket.127.0.0.1).
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.client("s3", region_name=settings.aws_region, endpoint_url=endpoint_url, config=config)


def open_s3(settings: Settings):
    """The S3 client of a run, with its bucket checked; None when the run has no S3 (no S3_BUCKET).

    The one place where a step sets up S3: every step that lands or reads objects calls this.
    With S3_CREATE_BUCKET=true a missing bucket is created (locked down, see `ensure_bucket`).

    Raises:
        S3StorageError: S3 cannot be reached, or the bucket is missing and may not be created.
    """
    if not settings.s3_bucket:
        return None
    client = get_s3_client(settings)
    ensure_bucket(client, settings.s3_bucket, create=settings.s3_create_bucket)
    return client


def ensure_bucket(client, bucket: str, create: bool) -> None:
    """Make sure the bucket exists; create it (locked down) when it is missing and allowed.

    A new bucket gets default encryption (SSE-S3, AES256), versioning (so a rerun that
    overwrites a raw reply keeps the old version) and a full public-access block. An
    existing bucket is left as it is: in the cloud it belongs to Terraform. Calling this
    twice is safe.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        create: whether to create a missing bucket (setting S3_CREATE_BUCKET).

    Raises:
        S3StorageError: the bucket is missing and `create` is False, S3 cannot be reached,
            or access is denied.
    """
    try:
        client.head_bucket(Bucket=bucket)
        logger.debug("S3 bucket %s exists at %s", bucket, client.meta.endpoint_url)
        return
    except ClientError as error:
        if _error_code(error) not in ("404", "NoSuchBucket", "NotFound"):
            raise _explain_error(error, client, bucket, action="checking the bucket") from error
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, action="checking the bucket") from error

    if not create:
        raise S3StorageError(_missing_bucket_message(client, bucket), reason="no_such_bucket")

    try:
        _create_locked_down_bucket(client, bucket)
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, action="creating the bucket") from error
    logger.info(
        "Created S3 bucket %s at %s (AES256 encryption, versioning, public access blocked)",
        bucket,
        client.meta.endpoint_url,
    )


def _create_locked_down_bucket(client, bucket: str) -> None:
    """Create the bucket, then turn on encryption, versioning and the public-access block."""
    region = client.meta.region_name
    try:
        if region == "us-east-1":
            # us-east-1 is the one region that refuses an explicit LocationConstraint.
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as error:
        # Another task created it between our check and now: that is fine.
        if _error_code(error) != "BucketAlreadyOwnedByYou":
            raise
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


# --------------------------------------------------------------------------- key builders


def raw_object_key(source: str, symbol: str, ingest_date: date | str, filename: str = DEFAULT_RAW_FILENAME) -> str:
    """Build the raw-zone key for one API reply.

    Every part is checked, because keys become paths in S3 (and on disk if someone syncs
    the bucket): the symbol must pass `normalize_symbol`, the source must be a known one,
    the date a real calendar date and the file name a plain `*.json.gz` name.

    Args:
        source: "alpha_vantage", "yahoo" or "file".
        symbol: a ticker symbol; it is trimmed and upper-cased.
        ingest_date: the run's logical date, as a `date` or a 'YYYY-MM-DD' string.
        filename: the object name; the default means one reply per source, symbol and day,
            so a rerun of the same day overwrites it.

    Returns:
        e.g. 'raw/source=alpha_vantage/symbol=BRK.B/ingest_date=2024-01-02/daily.json.gz'.

    Raises:
        ValueError: any part is invalid (`InvalidSymbolInputError` for the symbol).

    Example:
        >>> raw_object_key("yahoo", " aapl ", "2024-01-02")
        'raw/source=yahoo/symbol=AAPL/ingest_date=2024-01-02/daily.json.gz'
    """
    clean_source = _check_source(source)
    clean_symbol = normalize_symbol(symbol)
    day = _iso_date(ingest_date)
    if not _SAFE_FILENAME.fullmatch(filename) or ".." in filename or not filename.endswith(".json.gz"):
        raise ValueError(
            f"raw file name must look like 'daily.json.gz' (letters, digits, '_', '.', '-'), got {filename!r}"
        )
    return f"{RAW_PREFIX}source={clean_source}/symbol={clean_symbol}/ingest_date={day}/{filename}"


def processed_object_key(dataset: str, ingest_date: date | str, part: str) -> str:
    """Build the processed-zone key for one Parquet part.

    Args:
        dataset: "prices" or "quarantine".
        ingest_date: the run's logical date, as a `date` or a 'YYYY-MM-DD' string.
        part: a batch id such as 'batch-003' (letters, digits, '_' and '-').

    Returns:
        e.g. 'processed/dataset=prices/ingest_date=2024-01-02/part-batch-003.parquet'.

    Raises:
        ValueError: any part is invalid.
    """
    folder = _processed_folder(dataset, ingest_date)
    if not isinstance(part, str) or not _SAFE_PART.fullmatch(part):
        raise ValueError(f"part must be a batch id like 'batch-003' (letters, digits, '_', '-'), got {part!r}")
    return f"{folder}part-{part}.parquet"


def _processed_folder(dataset: str, ingest_date: date | str) -> str:
    """Return 'processed/dataset=<dataset>/ingest_date=<date>/' after checking both values."""
    if dataset not in PROCESSED_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(PROCESSED_DATASETS)}, got {dataset!r}")
    return f"{PROCESSED_PREFIX}dataset={dataset}/ingest_date={_iso_date(ingest_date)}/"


def _check_source(source: str) -> str:
    """Return the source name if it is one the pipeline knows, else raise ValueError."""
    if source not in VALID_SOURCES:
        raise ValueError(f"source must be one of {', '.join(VALID_SOURCES)}, got {source!r}")
    return source


def _iso_date(value: date | str) -> str:
    """Return a real calendar date as 'YYYY-MM-DD', or raise ValueError.

    A datetime is refused on purpose: which day it means depends on its time zone, so the
    caller must decide (e.g. `data_interval_end.date()` in Airflow).
    """
    if isinstance(value, datetime):
        raise ValueError(f"ingest_date must be a date, not a datetime ({value!r}); pass value.date()")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass  # e.g. 2024-02-30: the right shape but not a real day
    raise ValueError(f"ingest_date must be a real date like 2024-01-02, got {value!r}")


# --------------------------------------------------------------------------- raw zone


def reply_as_redacted_json(payload: object, secrets: list[str] | tuple[str, ...], *, symbol: str, source: str) -> str:
    """Return a reply as JSON text with every known secret value in it replaced by '***'.

    The one redaction step for stored replies: the S3 raw zone and the CLI's checkpoint files
    (storage/landing.py) both keep what this returns, so an API key a server echoes inside a
    data reply is never written to disk or S3.

    Args:
        payload: the reply (JSON-serialisable: a dict/list, or a str for text replies).
        secrets: secret values to remove (e.g. `settings.secrets()`).
        symbol, source: for the warning logged when something was redacted.

    Returns:
        `json.dumps(payload)`, redacted when it contained a secret.
    """
    text = json.dumps(payload, ensure_ascii=False)
    if any(secret and secret in text for secret in secrets):
        logger.warning("Reply for %s from %s contains a secret value; redacting it before it is stored", symbol, source)
        text = redact(text, secrets)
    return text


def land_raw_reply(
    client,
    bucket: str,
    *,
    source: str,
    symbol: str,
    ingest_date: date | str,
    payload: object,
    request_params: dict,
    fetched_at: str,
    secrets: list[str] | tuple[str, ...] = (),
    filename: str = DEFAULT_RAW_FILENAME,
) -> str:
    """Store one API reply, untouched, as gzip-compressed JSON in the raw zone.

    The body is `json.dumps(payload)` compressed with gzip. A parsed JSON reply (dict or
    list) is stored as that JSON; a text reply (CSV text, an HTML error page) is stored as
    one JSON string, so every raw object is JSON and `read_raw_reply` gives back exactly
    what was landed. The gzip header has no timestamp, so identical replies give identical
    bytes.

    The request parameters are stored as object metadata, without credentials: parameters
    named apikey/api_key/token/key are dropped and the known secret values are redacted. As
    a last defence, a secret value found in the reply itself is replaced by '***'.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        source: "alpha_vantage", "yahoo" or "file".
        symbol: the ticker symbol the reply is for.
        ingest_date: the run's logical date.
        payload: the reply: a dict/list from a JSON API, or a str for text replies.
            It must be JSON-serialisable (bytes are not: decode them first).
        request_params: the query parameters that produced the reply.
        fetched_at: when the reply was received, ISO 8601 in UTC.
        secrets: secret values to keep out of the stored object (e.g. `settings.secrets()`).
        filename: see `raw_object_key`.

    Returns:
        The S3 key written.

    Raises:
        ValueError: an invalid source, symbol, date or file name.
        S3StorageError: the write failed.
    """
    key = raw_object_key(source, symbol, ingest_date, filename)
    text = reply_as_redacted_json(payload, secrets, symbol=symbol, source=source)
    body = gzip.compress(text.encode("utf-8"), mtime=0)
    metadata = {
        "source": source,
        "symbol": normalize_symbol(symbol),
        "ingest_date": _iso_date(ingest_date),
        "fetched_at": fetched_at,
        "payload_kind": "text" if isinstance(payload, str) else "json",
        "request_params": _safe_request_params(request_params, secrets),
    }
    try:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ContentEncoding="gzip",
            ServerSideEncryption="AES256",
            Metadata=metadata,
        )
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, key=key, action="landing a raw reply") from error
    logger.info(
        "Landed raw reply for %s from %s (ingest date %s): s3://%s/%s, %d bytes",
        metadata["symbol"],
        source,
        metadata["ingest_date"],
        bucket,
        key,
        len(body),
    )
    return key


def _safe_request_params(request_params: dict, secrets: list[str] | tuple[str, ...]) -> str:
    """Return the request parameters as a JSON string, without credentials.

    S3 metadata travels as HTTP headers, so the JSON is ASCII-only (json.dumps escapes the rest).
    """
    kept = {name: value for name, value in request_params.items() if str(name).lower() not in SECRET_PARAM_NAMES}
    return redact(json.dumps(kept, sort_keys=True, default=str), secrets)


def read_raw_reply(client, bucket: str, key: str) -> object:
    """Read one raw reply back: download, decompress and parse the JSON.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        key: a key written by `land_raw_reply`.

    Returns:
        The reply as it was landed: a dict/list for JSON replies, a str for text replies.

    Raises:
        S3StorageError: the object (or bucket) does not exist, or S3 failed; reason
            "corrupt_object" when the object is not gzip-compressed JSON (empty, cut off,
            written by another tool).
    """
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read()
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, key=key, action="reading a raw reply") from error
    try:
        return json.loads(gzip.decompress(body).decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as error:
        # gzip.BadGzipFile is an OSError, a cut-off body an EOFError, bad JSON a ValueError.
        problem = str(error).splitlines()[0] if str(error) else "no details"
        raise S3StorageError(
            f"s3://{bucket}/{key} is not a readable raw reply ({type(error).__name__}: {problem}); "
            "remove it and rerun the same dates to fetch it again",
            reason="corrupt_object",
        ) from error


def raw_object_metadata(client, bucket: str, key: str) -> dict:
    """Return the metadata stored with a raw reply, with `request_params` parsed back to a dict.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        key: a key written by `land_raw_reply`.

    Returns:
        e.g. {"source": "alpha_vantage", "symbol": "IBM", "ingest_date": "2024-01-02",
        "fetched_at": "2024-01-02T21:30:00+00:00", "payload_kind": "json",
        "request_params": {"function": "TIME_SERIES_DAILY", "symbol": "IBM"}}.

    Raises:
        S3StorageError: the object does not exist, or S3 failed.
    """
    try:
        response = client.head_object(Bucket=bucket, Key=key)
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, key=key, action="reading raw metadata") from error
    metadata = dict(response["Metadata"])
    if "request_params" in metadata:
        metadata["request_params"] = json.loads(metadata["request_params"])
    return metadata


def list_raw_objects(
    client, bucket: str, ingest_date: date | str, source: str | None = None, symbol: str | None = None
) -> list[str]:
    """List the raw replies landed for one ingest date, optionally for one source and/or symbol.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        ingest_date: the run's logical date.
        source: only this source (e.g. "yahoo"); None = all sources.
        symbol: only this symbol; None = all symbols.

    Returns:
        The matching keys, sorted.

    Raises:
        ValueError: an invalid date, source or symbol.
        S3StorageError: the listing failed.
    """
    day = _iso_date(ingest_date)
    clean_symbol = normalize_symbol(symbol) if symbol is not None else None
    # The date is the innermost folder, so narrow the listing with the outer folders we
    # know and filter the rest by name.
    prefix = RAW_PREFIX
    if source is not None:
        prefix += f"source={_check_source(source)}/"
        if clean_symbol is not None:
            prefix += f"symbol={clean_symbol}/ingest_date={day}/"
    keys = _list_keys(client, bucket, prefix)
    wanted = [key for key in keys if f"/ingest_date={day}/" in key]
    if clean_symbol is not None:
        wanted = [key for key in wanted if f"/symbol={clean_symbol}/" in key]
    return sorted(wanted)


def _list_keys(client, bucket: str, prefix: str) -> list[str]:
    """Return every key under `prefix`, following list_objects_v2's pages of 1,000 keys."""
    keys: list[str] = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, key=prefix, action="listing objects") from error
    return keys


# --------------------------------------------------------------------------- processed zone


def write_processed_frame(
    client, bucket: str, df: pd.DataFrame, *, dataset: str, ingest_date: date | str, part: str
) -> str:
    """Write a DataFrame as one Parquet object in the processed zone.

    The Parquet file is built in memory (no temporary file on the worker's disk). The
    index is not stored: pass a frame with plain columns.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        df: e.g. a validated price frame.
        dataset: "prices" or "quarantine".
        ingest_date: the run's logical date.
        part: the batch id, e.g. 'batch-003'.

    Returns:
        The S3 key written, e.g. 'processed/dataset=prices/ingest_date=2024-01-02/part-batch-003.parquet'.

    Raises:
        ValueError: an invalid dataset, date or part.
        S3StorageError: the write failed.
    """
    key = processed_object_key(dataset, ingest_date, part)
    buffer = io.BytesIO()
    df.to_parquet(buffer, engine="pyarrow", index=False)
    try:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=buffer.getvalue(),
            ContentType="application/vnd.apache.parquet",
            ServerSideEncryption="AES256",
            Metadata={"dataset": dataset, "ingest_date": _iso_date(ingest_date), "rows": str(len(df))},
        )
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, key=key, action="writing a processed frame") from error
    logger.info("Wrote %d %s rows for ingest date %s to s3://%s/%s", len(df), dataset, ingest_date, bucket, key)
    return key


def read_processed_frame(client, bucket: str, key: str) -> pd.DataFrame:
    """Read a Parquet object written by `write_processed_frame` back into a DataFrame.

    Column types come back as they were written (strings, float64, int64), because Parquet
    stores them together with pandas' own type information.

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        key: a processed-zone key.

    Returns:
        The DataFrame, with a fresh 0..n-1 index.

    Raises:
        S3StorageError: the object does not exist, or S3 failed.
    """
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except _S3_ERRORS as error:
        raise _explain_error(error, client, bucket, key=key, action="reading a processed frame") from error
    return pd.read_parquet(io.BytesIO(body), engine="pyarrow")


def list_processed_objects(client, bucket: str, dataset: str, ingest_date: date | str) -> list[str]:
    """List the Parquet parts of one dataset for one ingest date, sorted.

    Raises:
        ValueError: an invalid dataset or date.
        S3StorageError: the listing failed.
    """
    return sorted(_list_keys(client, bucket, _processed_folder(dataset, ingest_date)))


# --------------------------------------------------------------------------- error messages


def _error_code(error: ClientError) -> str:
    """The S3 error code of a ClientError, e.g. 'NoSuchKey' or '404'."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _missing_bucket_message(client, bucket: str) -> str:
    """The bucket is missing when the run starts and S3_CREATE_BUCKET=false (see `ensure_bucket`)."""
    return (
        f"S3 bucket {bucket} does not exist at {client.meta.endpoint_url}; "
        "set S3_CREATE_BUCKET=true or create the bucket first."
    )


def _bucket_gone_message(client, bucket: str, where: str, action: str) -> str:
    """The bucket existed when the run started (`open_s3` checked it) and is gone now.

    Advising S3_CREATE_BUCKET=true here would be wrong: it may well be set already. What
    happened is that someone or something deleted the bucket during the run.
    """
    return (
        f"S3 bucket {bucket} no longer exists at {client.meta.endpoint_url} (error while {action} {where}): "
        "it was deleted while the run was using it. Find out who deletes it, then rerun the same dates: "
        "the rerun makes a new one when S3_CREATE_BUCKET is true; otherwise set the bucket up again first."
    )


def _explain_error(error: Exception, client, bucket: str, action: str, key: str | None = None) -> S3StorageError:
    """Turn a botocore error into an S3StorageError whose message says what to do.

    Messages name the bucket, key and endpoint, never credentials.
    """
    endpoint = client.meta.endpoint_url
    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket}"
    if isinstance(error, BotoConnectionError):
        if "amazonaws.com" in endpoint:
            advice = "Check the network connection and AWS_DEFAULT_REGION."
        else:
            advice = (
                "Is the local stack running? Start it with ./scripts/run-local.sh, "
                "or unset AWS_ENDPOINT_URL to use real AWS."
            )
        return S3StorageError(f"Cannot reach S3 at {endpoint} (bucket {bucket}). {advice}", reason="unreachable")
    if isinstance(error, HTTPClientError):
        return S3StorageError(
            f"S3 at {endpoint} stopped answering while {action} ({where}): {type(error).__name__}. "
            "Retry the task; if it keeps happening, check the endpoint's health.",
            reason="timeout",
        )
    if isinstance(error, NoCredentialsError):
        return S3StorageError(
            f"No AWS credentials found while {action} ({where} at {endpoint}). Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (any value for the local stack) or use an AWS profile or role.",
            reason="no_credentials",
        )
    code = _error_code(error) if isinstance(error, ClientError) else ""
    if code == "NoSuchBucket" and key is not None:
        return S3StorageError(_bucket_gone_message(client, bucket, where, action), reason="no_such_bucket")
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and key is None):
        return S3StorageError(_missing_bucket_message(client, bucket), reason="no_such_bucket")
    if code in ("NoSuchKey", "404", "NotFound"):
        return S3StorageError(
            f"{where} does not exist at {endpoint} (error while {action}). "
            "Check the key, or rerun the task that writes it.",
            reason="no_such_key",
        )
    if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return S3StorageError(
            f"Access denied ({code}) while {action} ({where} at {endpoint}). Check that the AWS "
            "credentials in use are valid and that their IAM policy allows this on the bucket.",
            reason="access_denied",
        )
    return S3StorageError(f"S3 error while {action} ({where} at {endpoint}): {error}")
