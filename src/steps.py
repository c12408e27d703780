"""The pipeline, in four steps: extract -> transform -> load -> finish.

Every runner calls these same functions:

- the Airflow DAG (`airflow/dags/daily_etl_pipeline.py`): one task per step and batch;
- the CLI (`python -m src.pipeline run`): `run_pipeline` below, a plain loop over the batches;
- the AWS Lambda (`src/lambda_handler.py`): the transform step in the cloud.

| step | what it does | where the work is |
|---|---|---|
| `extract_batch` | fetch each symbol, land each raw reply | ingestion/sources.py, storage/landing.py |
| `transform_batch` | validate and clean; bad rows to quarantine | transformation/transform.py |
| `load_batch` | indicators and bars from the stored lookback, upsert | transformation/warehouse_rows.py |
| `finish_run` | record the run, publish metrics, alert on failure | monitoring/ |

What travels between the steps:

- with `S3_BUCKET` set (the DAG always, the CLI when you set it): extract lands the raw replies
  in S3, transform reads them and writes processed Parquet to S3, load reads that. Only S3 keys
  and counts pass from step to step (what Airflow keeps as XCom: `to_xcom()`);
- without S3 (the CLI on a laptop): the same steps hand the data over in memory.

Every step is keyed on the run's dates, never on "now", so re-running a date (or clearing
one task) gives the same warehouse. Dates are `datetime.date` inside the pipeline; they become
text only at the edges (command-line arguments, XCom, S3 keys, SQL parameters).
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime

import boto3
import pandas as pd
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from google.api_core.exceptions import GoogleAPIError
from tqdm import tqdm

from src.background import prepare_ahead, prepare_in_turn
from src.config import ConfigurationError, Settings, redact, require_alpha_vantage_key, require_writable_state_dir
from src.ingestion.fetch_result import FetchResult
from src.ingestion.raw_replies import prices_from_raw_reply
from src.ingestion.sources import fetch_batch
from src.ingestion.symbols import normalize_symbols
from src.market_calendar import latest_completed_session, sessions_between, utc_now_iso
from src.monitoring.alerting import send_run_alert, send_split_notice
from src.monitoring.health_checks import check_freshness, run_pipeline_checks, table_ref
from src.monitoring.metrics import publish_run_metrics
from src.stop_signals import RunInterrupted, watch_stop_signals
from src.storage import sqlite_bulk_load
from src.storage.landing import find_landed_reply, land_reply
from src.storage.s3_handler import (
    open_s3,
    raw_object_metadata,
    read_processed_frame,
    read_raw_reply,
    write_processed_frame,
)
from src.storage.warehouse import Warehouse, open_warehouse
from src.transformation.indicators_vectorised import LOOKBACK_ROWS
from src.transformation.series_kind import refuse_mixed_series
from src.transformation.splits import (
    SPLIT_COLUMNS,
    check_splits,
    empty_splits,
    new_split_events,
    yahoo_rows_as_traded,
)
from src.transformation.transform import QUARANTINE_COLUMNS, transform_prices
from src.transformation.warehouse_rows import build_recomputed_rows, build_warehouse_rows, unchanged_symbols

logger = logging.getLogger(__name__)

# The errors that mean "the warehouse could not be opened or written", for either backend.
WAREHOUSE_ERRORS = (sqlite3.Error, OSError, ConfigurationError, GoogleAPIError)

# A DAG batch whose tasks ended without a result (failed, or stopped by SIGTERM).
BATCH_DID_NOT_FINISH = (
    "its batch did not finish (a batch task failed or was interrupted; see that task's log and alert)"
)

# The one wording of "fetched, but nothing loaded" (the CLI and the DAG say the same).
NO_VALID_ROWS = "no valid rows from {source} (all quarantined or none in range)"


# --- What the steps hand each other ------------------------------------------------------------


@dataclass
class Extracted:
    """What extract_batch did for one batch."""

    symbols: list[str]
    fetched: dict[str, str]  # symbol -> the source that answered, in batch order
    failed: dict[str, str]  # symbol -> why no source could serve it
    # symbol -> why its reply is short: it ends before the range's last session (its rows load,
    # but the symbol counts as failed, so the run is not `success`; see reply_misses_end_session).
    short: dict[str, str] = field(default_factory=dict)
    raw_keys: list[str] = field(default_factory=list)  # S3 keys of the landed replies (with S3)
    replies: list[FetchResult] = field(default_factory=list)  # the replies themselves (without S3)
    # The split events the sources sent, as JSON-ready rows (a handful per symbol, so they
    # travel in XCom with the keys); load_batch checks them again and hands them to load_prices.
    splits: list[dict] = field(default_factory=list)

    def to_xcom(self) -> dict:
        """The small JSON dict an Airflow task returns; the replies themselves stay in S3."""
        if self.replies:
            raise ConfigurationError(
                "S3_BUCKET is not set. The Airflow tasks hand data to each other through S3; "
                "set S3_BUCKET (and AWS_ENDPOINT_URL for the local moto server)."
            )
        return {
            "symbols": self.symbols,
            "fetched": self.fetched,
            "failed": self.failed,
            "short": self.short,
            "raw_keys": self.raw_keys,
            "splits": self.splits,
        }


@dataclass
class Transformed:
    """What transform_batch did for one batch: clean and quarantined rows, in S3 or in memory."""

    symbols: list[str]  # symbols with at least one clean row
    rows_clean: int
    rows_quarantined: int
    processed_keys: dict = field(default_factory=lambda: {"prices": None, "quarantine": None})
    clean: pd.DataFrame | None = None  # in memory, without S3
    quarantine: pd.DataFrame | None = None
    splits: list[dict] = field(default_factory=list)  # handed on from Extracted.splits

    def to_xcom(self) -> dict:
        """The small JSON dict an Airflow task (or the Lambda) returns: keys and counts."""
        return {
            "symbols": self.symbols,
            "rows_clean": self.rows_clean,
            "rows_quarantined": self.rows_quarantined,
            "processed_keys": self.processed_keys,
            "splits": self.splits,
        }


@dataclass
class Loaded:
    """What load_batch wrote for one batch."""

    symbols_loaded: list[str]
    rows_loaded: int
    rows_quarantined: int
    rows_by_source: dict[str, int]
    # symbol -> the split dates this load learned, for symbols whose history it recomputed.
    split_recomputes: dict[str, list[str]] = field(default_factory=dict)

    def to_xcom(self) -> dict:
        return asdict(self)


@dataclass
class RunSummary:
    """What one pipeline run did: built up batch by batch, stored in `pipeline_runs`, printed by the CLI."""

    run_id: str
    logical_date: date
    symbols_requested: list[str]
    started_at: str
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_by_source: dict[str, int] = field(default_factory=dict)
    split_recomputes: dict[str, list[str]] = field(default_factory=dict)
    ended_at: str = ""
    elapsed_seconds: float = 0.0
    error: str = ""
    interrupted_by: str = ""  # 'SIGINT' or 'SIGTERM' when a stop signal ended the run (src/stop_signals.py)

    @property
    def status(self) -> str:
        """interrupted (a stop signal came; it wins over any error it caused), failed, partial or success."""
        if self.interrupted_by:
            return "interrupted"
        if self.error or not self.loaded:
            return "failed"
        return "partial" if self.failed else "success"

    def add_results(self, extracted: list[Extracted], loaded: list[Loaded]) -> None:
        """Count what some batches did (the CLI adds one batch at a time, the DAG all of them at the end)."""
        loaded_symbols = {symbol for result in loaded for symbol in result.symbols_loaded}
        for result in loaded:
            self.rows_loaded += result.rows_loaded
            self.rows_quarantined += result.rows_quarantined
            for source, rows in result.rows_by_source.items():
                self.rows_by_source[source] = self.rows_by_source.get(source, 0) + rows
            self.split_recomputes.update(result.split_recomputes)
        for result in extracted:
            self.failed.update(result.failed)
            for symbol, source in result.fetched.items():
                if symbol in result.short:
                    self.failed[symbol] = result.short[symbol]
                elif symbol in loaded_symbols:
                    self.loaded.append(symbol)
                else:
                    self.failed[symbol] = NO_VALID_ROWS.format(source=source)

    def as_run_record(self) -> dict:
        """The row for `pipeline_runs`."""
        return {
            "run_id": self.run_id,
            "logical_date": self.logical_date.isoformat(),
            "started_at": self.started_at,
            "ended_at": self.ended_at or None,
            "status": "running" if not self.ended_at else self.status,
            "symbols_requested": len(self.symbols_requested),
            "symbols_loaded": len(self.loaded),
            "symbols_failed": len(self.failed),
            "failed_symbols": self.failed,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "rows_by_source": self.rows_by_source,
            "duration_seconds": round(self.elapsed_seconds, 3),
            "error": self.describe_error() or None,
            "split_recomputes": self.split_recomputes or None,
        }

    def failure_reasons(self) -> str:
        """Why symbols are missing, one 'SYMBOL: reason' per symbol ('' when none failed).

        It fills pipeline_runs.error for a partial or failed run, so the row says why without
        reading the failed_symbols JSON.
        """
        reasons = "; ".join(f"{symbol}: {reason}" for symbol, reason in sorted(self.failed.items()))
        return f"{len(self.failed)} of {len(self.symbols_requested)} symbols failed: {reasons}" if reasons else ""

    def describe_error(self) -> str:
        """What stopped the run or what it lacks, for pipeline_runs.error ('' for a complete run).

        'interrupted by SIGINT (...)' for a stopped run, else the run's error, else the failed
        symbols' reasons.
        """
        if not self.interrupted_by:
            return self.error or self.failure_reasons()
        stopped = (
            f"interrupted by {self.interrupted_by} after {len(self.loaded)} of {len(self.symbols_requested)} symbols"
        )
        stopped += "; rerun the same dates to load the rest"
        return f"{stopped}; {self.error}" if self.error else stopped


class PipelineRunFailed(Exception):
    """Some symbols could not be loaded from any source; the run is recorded as partial/failed."""


# --- Before the batches -------------------------------------------------------------------------


def resolve_symbols(requested: list[str] | str | None, settings: Settings) -> list[str]:
    """The run's symbols: the ones requested (CLI --symbols, DAG params), else `settings.symbols`; validated.

    This is where every symbol is checked, once, before anything is fetched. Only "not given"
    (None) means the configured SYMBOLS: an explicit empty or blank list (`--symbols ""` from an
    unset shell variable, `" , "`, a DAG param `[]`) is a mistake, not a request for all 50.

    Raises:
        InvalidSymbolInputError: a symbol is invalid, or the list is empty (nothing fetched yet).
    """
    return normalize_symbols(list(settings.symbols) if requested is None else requested)


def sources_for(choice: str | None) -> list[str] | None:
    """The sources of a run: None (= DATA_SOURCES in order, with fallback) for "auto", else just that one."""
    return None if choice in (None, "", "auto") else [choice]


def closed_end(start: date, end: date, now: datetime | None = None) -> date:
    """The last day a run may load: `end`, or the latest NYSE session closed at `now` if `end` is later.

    A source asked during market hours (Alpha Vantage's compact reply, yfinance's history())
    already holds today's bar, but that bar changes until the close (16:00 New York time, 13:00
    on early-close days): storing it would store a price nobody closed at. So a run never asks
    for a session that has not closed, and a manual run during the day loads up to the last
    closed session.

    Raises:
        ConfigurationError: no session from `start` to `end` has closed yet.

    Example:
        >>> closed_end(date(2024, 11, 27), date(2024, 11, 29), now=datetime(2024, 11, 29, 17, 0, tzinfo=UTC))
        datetime.date(2024, 11, 27)
    """
    last_closed = latest_completed_session(now)
    if end <= last_closed:
        return end
    if start > last_closed:
        raise ConfigurationError(
            f"nothing to load yet: no NYSE session from {start} to {end} has closed "
            f"(the latest closed session is {last_closed}); run again after the close"
        )
    logger.warning(
        "sessions after %s have not closed yet (NYSE closes at 16:00 New York time, 13:00 on early-close days): "
        "loading %s..%s instead of ..%s",
        last_closed,
        start,
        last_closed,
        end,
    )
    return last_closed


def make_batches(symbols: list[str], batch_size: int) -> list[list[str]]:
    """Split symbols into batches of `batch_size` (one mapped Airflow task group per batch).

    Example:
        >>> make_batches(["A", "B", "C"], 2)
        [['A', 'B'], ['C']]
    """
    return [symbols[i : i + batch_size] for i in range(0, len(symbols), batch_size)]


def start_run(run_id: str, logical_date: date, symbols: list[str], settings: Settings) -> RunSummary:
    """Record a `running` row in pipeline_runs and return the run's (empty) summary."""
    summary = RunSummary(run_id=run_id, logical_date=logical_date, symbols_requested=symbols, started_at=utc_now_iso())
    record_run_start(summary, settings)
    return summary


def record_run_start(summary: RunSummary, settings: Settings) -> None:
    """Write the run's `running` row to pipeline_runs (`finish_run` overwrites it at the end)."""
    warehouse = open_warehouse(settings)
    try:
        warehouse.record_run(summary.as_run_record())
    finally:
        warehouse.close()


# --- Extract ------------------------------------------------------------------------------------


def reply_misses_end_session(result: FetchResult, end_session: date | None) -> str:
    """Why a reply does not reach `end_session`, the last NYSE session of its range ('' when it does).

    The 18:30 daily run on a day the source publishes late gets a reply that ends the session
    before: its rows are right and are loaded, but the run did not load what was asked, so it
    must not say success (and a rerun later must fetch again: storage/landing.py reuses a
    saved reply only if it reaches the end session).

    Args:
        result: one symbol's reply.
        end_session: the range's last session (None: the range holds no session).

    Example:
        a reply for 2024-06-03..2024-06-28 whose last row is 2024-06-27 ->
        "no row for the end session 2024-06-28: the reply ends at 2024-06-27; ..."
    """
    if end_session is None or result.prices.empty:
        return ""
    last = str(result.prices["trade_date"].max())
    if last >= end_session.isoformat():
        return ""
    return (
        f"no row for the end session {end_session}: the reply ends at {last}; the rows up to it are "
        "loaded: rerun the same dates once the source has published the session"
    )


def extract_batch(
    symbols: list[str],
    start: date,
    end: date,
    run_date: date,
    settings: Settings,
    *,
    sources: list[str] | None = None,
    session=None,
) -> Extracted:
    """Fetch one batch of symbols (with fallback between sources) and land each reply as it arrives.

    Replies an earlier, interrupted try already landed are reused instead of fetched again, so
    a killed run is cheap to restart and no API quota is spent twice (storage/landing.py).

    Args:
        symbols: validated symbols of this batch (see `resolve_symbols`).
        start: first trading day wanted (inclusive).
        end: last trading day wanted (inclusive).
        run_date: the run's logical date: the S3 `ingest_date`, so reruns overwrite.
        settings: loaded settings.
        sources: the sources to try, in order (None: `settings.data_sources`).
        session: an HTTP session handed to the sources (tests).

    Returns:
        The batch's `Extracted`: who answered, who failed and why, and the replies (their S3
        keys, or the replies themselves without S3).
    """
    s3 = open_s3(settings)
    landed: dict[str, tuple[FetchResult, str | None]] = {}
    for symbol in symbols:
        found = find_landed_reply(symbol, start, end, run_date, settings, s3)
        if found is not None:
            landed[symbol] = found

    def keep(result: FetchResult) -> None:
        landed[result.symbol] = (result, land_reply(result, start, end, run_date, settings, s3))

    to_fetch = [symbol for symbol in symbols if symbol not in landed]
    reused = len(landed)
    failures: dict[str, str] = {}
    if to_fetch:
        _, failures = fetch_batch(to_fetch, start, end, settings, sources=sources, session=session, on_fetched=keep)
    in_order = [landed[symbol] for symbol in symbols if symbol in landed]
    sessions = sessions_between(start, end)
    short = {}
    for result, _ in in_order:
        reason = reply_misses_end_session(result, sessions[-1] if sessions else None)
        if reason:
            logger.warning("extract %s %s..%s from %s: %s", result.symbol, start, end, result.source, reason)
            short[result.symbol] = reason
    logger.info(
        "extract %s..%s: %d fetched, %d reused from landed replies, %d failed",
        start,
        end,
        len(in_order) - reused,
        reused,
        len(failures),
    )
    return Extracted(
        symbols=list(symbols),
        fetched={result.symbol: result.source for result, _ in in_order},
        failed=failures,
        short=short,
        raw_keys=[key for _, key in in_order if key is not None],
        replies=[result for result, _ in in_order] if s3 is None else [],
        # A reply reused from an earlier try carries no split events: the next run asks again.
        splits=[row for result, _ in in_order if result.splits is not None for row in result.splits.to_dict("records")],
    )


# --- Transform ----------------------------------------------------------------------------------


def transform_raw_objects(s3_client, bucket: str, raw_keys: list[str], run_date: date, part: str) -> Transformed:
    """The transform step on S3: raw replies in S3 -> processed Parquet in S3, with counts.

    Both `transform_batch` (in-process) and the AWS Lambda handler call this.

    Args:
        s3_client: a boto3 S3 client.
        bucket: the bucket holding raw/ and processed/.
        raw_keys: raw objects to transform (from `extract_batch`).
        run_date: the run's logical date (rows after it are rejected; the processed key's date).
        part: a name for this batch's processed files, e.g. "batch-003".
    """
    frames = []
    for key in raw_keys:
        metadata = raw_object_metadata(s3_client, bucket, key)
        payload = read_raw_reply(s3_client, bucket, key)
        frames.append(prices_from_raw_reply(metadata["source"], metadata["symbol"], payload, metadata))
    if not frames:
        return Transformed(symbols=[], rows_clean=0, rows_quarantined=0)
    clean, quarantine = transform_prices(pd.concat(frames, ignore_index=True), run_date=run_date)
    processed = {"prices": None, "quarantine": None}
    for dataset, frame in (("prices", clean), ("quarantine", quarantine)):
        if not frame.empty:
            processed[dataset] = write_processed_frame(
                s3_client, bucket, frame, dataset=dataset, ingest_date=run_date, part=part
            )
    return Transformed(
        symbols=sorted(clean["symbol"].unique().tolist()),
        rows_clean=len(clean),
        rows_quarantined=len(quarantine),
        processed_keys=processed,
    )


def transform_batch(extracted: Extracted, run_date: date, part: str, settings: Settings) -> Transformed:
    """Validate and clean one batch: in this process, or in the deployed Lambda (`TRANSFORM_BACKEND=lambda`).

    Args:
        extracted: the batch's `extract_batch` result.
        run_date: the run's logical date; rows dated after it are rejected.
        part: a name for this batch's processed files, e.g. "batch-003" (reruns overwrite them).
        settings: loaded settings.
    """
    if settings.transform_backend == "lambda":
        done = Transformed(**invoke_transform_lambda(extracted.raw_keys, run_date, part, settings))
        return replace(done, splits=extracted.splits)
    s3 = open_s3(settings)
    if s3 is not None:
        done = transform_raw_objects(s3, settings.s3_bucket, extracted.raw_keys, run_date, part)
        return replace(done, splits=extracted.splits)
    if not extracted.replies:
        return Transformed(symbols=[], rows_clean=0, rows_quarantined=0, splits=extracted.splits)
    raw_prices = pd.concat([reply.prices for reply in extracted.replies], ignore_index=True)
    clean, quarantine = transform_prices(raw_prices, run_date=run_date)
    return Transformed(
        symbols=sorted(clean["symbol"].unique().tolist()),
        rows_clean=len(clean),
        rows_quarantined=len(quarantine),
        clean=clean,
        quarantine=quarantine,
        splits=extracted.splits,
    )


def get_lambda_client(settings: Settings):
    """A boto3 Lambda client whose read timeout outlasts the function's own timeout."""
    # A synchronous invoke waits for the whole transform: allow up to the Lambda maximum (15 min).
    config = Config(connect_timeout=settings.http_connect_timeout, read_timeout=900, retries={"max_attempts": 2})
    return boto3.client(
        "lambda", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url or None, config=config
    )


class LambdaTransformError(Exception):
    """The transform Lambda could not be invoked, or it reported an error."""


def invoke_transform_lambda(raw_keys: list[str], run_date: date, part: str, settings: Settings, client=None) -> dict:
    """Invoke the deployed transform Lambda (src/lambda_handler.py) synchronously; return its result.

    Args:
        raw_keys: raw objects to transform.
        run_date: the run's logical date.
        part: the processed files' batch name.
        settings: loaded settings (LAMBDA_FUNCTION_NAME, S3_BUCKET, region, endpoint).
        client: a boto3 Lambda client (tests pass a stubbed one).

    Returns:
        The handler's result: `Transformed.to_xcom()` of the transform it ran.

    Raises:
        LambdaTransformError: the invoke failed, or the function raised (its error type and
            message are included, so the Airflow log shows what went wrong inside the Lambda).
    """
    client = client or get_lambda_client(settings)
    payload = {"bucket": settings.s3_bucket, "raw_keys": raw_keys, "logical_date": run_date.isoformat(), "part": part}
    try:
        response = client.invoke(
            FunctionName=settings.lambda_function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode("utf-8"),
        )
    except (BotoCoreError, ClientError) as exc:
        raise LambdaTransformError(
            f"could not invoke Lambda {settings.lambda_function_name} for part {part}: {exc}. "
            "Check that it is deployed (infrastructure/terraform) and that the Airflow role may invoke it."
        ) from exc
    body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        error = body if isinstance(body, dict) else {}
        raise LambdaTransformError(
            f"Lambda {settings.lambda_function_name} failed for part {part}: "
            f"{error.get('errorType', 'Error')}: {error.get('errorMessage', body)}"
        )
    if not isinstance(body, dict) or "processed_keys" not in body:
        raise LambdaTransformError(f"Lambda {settings.lambda_function_name} returned an unexpected result: {body!r}")
    return body


# --- Load ---------------------------------------------------------------------------------------


def load_batch(transformed: Transformed, run_id: str, settings: Settings, warehouse: Warehouse | None = None) -> Loaded:
    """Load one batch into the warehouse (see `load_prices`), its rows taken from memory or from S3.

    Args:
        transformed: the batch's `transform_batch` result (frames in memory or S3 keys).
        run_id: the run writing these rows.
        settings: loaded settings.
        warehouse: an open warehouse to use (the CLI keeps one for the whole run); None opens
            and closes one (an Airflow task).
    """
    clean, quarantine = _transformed_frames(transformed, settings)
    gap = settings.max_gap_sessions
    splits = check_splits(pd.DataFrame(transformed.splits, columns=SPLIT_COLUMNS), "this run's sources")
    if warehouse is not None:
        loaded = load_prices(warehouse, clean, quarantine, run_id, max_gap_sessions=gap, splits=splits)
    else:
        warehouse = open_warehouse(settings)
        try:
            loaded = load_prices(warehouse, clean, quarantine, run_id, max_gap_sessions=gap, splits=splits)
        finally:
            warehouse.close()
    # A symbol whose history was rewritten for a new split: a notice in Slack (never fails the load).
    send_split_notice(loaded.split_recomputes, run_id, settings)
    return loaded


def load_prices(
    warehouse: Warehouse,
    clean: pd.DataFrame,
    quarantine: pd.DataFrame,
    run_id: str,
    loaded_at: str | None = None,
    max_gap_sessions: int = Settings.max_gap_sessions,
    splits: pd.DataFrame | None = None,
) -> Loaded:
    """Write clean prices to the warehouse: prices, indicators, weekly/monthly bars, quarantine, dimensions.

    Reads the stored lookback of the symbols once, computes the new rows from it
    (transformation/warehouse_rows.py) and writes every table, all inside one
    `Warehouse.load_transaction` (in SQLite one transaction that holds the write lock from
    the read on: a crash never leaves half a batch, and a concurrent load never computes its
    indicators from a history another load is still writing).

    Args:
        warehouse: the open warehouse.
        clean: clean prices from `transform.transform_prices`.
        quarantine: quarantined rows from `transform.transform_prices`.
        run_id: the run writing these rows.
        loaded_at: the audit stamp of the rows, ISO-8601 UTC (default: now).
        max_gap_sessions: holes longer than this restart the indicators (MAX_GAP_SESSIONS).
        splits: split events the sources sent for these symbols (splits.SPLIT_COLUMNS), or None.
            Events the warehouse already holds change nothing. A symbol with a new one is
            recomputed in full (its whole history gets the new share basis) in the same
            transaction, and named in `Loaded.split_recomputes`; the others take the cheap
            incremental path.
    """
    symbols = sorted(clean["symbol"].unique().tolist()) if not clean.empty else []
    loaded_at = loaded_at or utc_now_iso()
    recomputed: dict[str, list[str]] = {}
    # One transaction from the first read to the last write (Warehouse.load_transaction):
    # a concurrent run's rows are either all seen by the reads or written after this commit,
    # and a failure anywhere leaves none of the batch, so the counts returned are the rows written.
    with warehouse.load_transaction():
        known, new_events = _known_and_new_splits(warehouse, symbols, splits)
        clean = yahoo_rows_as_traded(clean, known)  # Yahoo's prices come split-adjusted: raw stays raw
        recompute = sorted(new_events["symbol"].unique().tolist()) if not new_events.empty else []
        incremental = [symbol for symbol in symbols if symbol not in recompute]
        to_load = clean[clean["symbol"].isin(incremental)] if recompute else clean
        stored = pd.DataFrame(columns=["symbol", "trade_date"])
        if incremental:
            stored = warehouse.read_lookback(incremental, before=to_load["trade_date"].min(), rows=LOOKBACK_ROWS)
            refuse_mixed_series(to_load, stored)  # before anything is written
            # A rerun of an unchanged range: the symbols whose rows are all stored as they are
            # would be written again unchanged, so they are skipped (warehouse_rows.unchanged_symbols).
            unchanged = unchanged_symbols(to_load, stored)
            if unchanged:
                logger.info("load: run %s skips %d symbols whose rows are stored unchanged", run_id, len(unchanged))
                first_date = to_load["trade_date"].min()
                to_load = to_load[~to_load["symbol"].isin(unchanged)]
                stored = stored[stored["symbol"].isin(set(to_load["symbol"]))]
                if not to_load.empty and to_load["trade_date"].min() != first_date:
                    # The lookback must end just before the first date still to load (the RSI
                    # continues from the last row before it): read it again for that date.
                    remaining = sorted(to_load["symbol"].unique().tolist())
                    stored = warehouse.read_lookback(remaining, before=to_load["trade_date"].min(), rows=LOOKBACK_ROWS)
        frames = build_warehouse_rows(to_load, quarantine, stored, run_id, loaded_at, max_gap_sessions, known)
        if recompute:
            # A split the warehouse did not know changes the share basis of every earlier row:
            # these symbols are rebuilt in full, in the same transaction as the rest of the batch.
            history = warehouse.read_history(recompute)
            refuse_mixed_series(clean[clean["symbol"].isin(recompute)], history)
            full = build_recomputed_rows(
                history, clean[clean["symbol"].isin(recompute)], run_id, loaded_at, max_gap_sessions, known
            )
            frames = _concat_frames(frames, full)
            for symbol in sorted(set(history["symbol"])):
                recomputed[symbol] = new_events.loc[new_events["symbol"] == symbol, "effective_date"].tolist()
                logger.warning(
                    "load: %s has new split(s) on %s: recomputed its %d stored rows (adjusted prices, flags, "
                    "indicators, bars) in full",
                    symbol,
                    ", ".join(recomputed[symbol]),
                    int((history["symbol"] == symbol).sum()),
                )
            frames["fact_splits"] = new_events.assign(loaded_at=loaded_at)
        if frames:
            written = warehouse.load_batch(frames)
            logger.info("load: run %s wrote %s", run_id, written)
        if symbols:
            warehouse.ensure_dim_date(clean["trade_date"].min(), clean["trade_date"].max())
            warehouse.refresh_dim_symbol(symbols, clean.groupby("symbol")["source"].last().to_dict())
    by_source = {str(source): int(rows) for source, rows in clean.groupby("source").size().items()}
    return Loaded(
        symbols_loaded=symbols,
        rows_loaded=len(clean),
        rows_quarantined=len(quarantine),
        rows_by_source=by_source,
        split_recomputes=recomputed,
    )


def _known_and_new_splits(
    warehouse: Warehouse, symbols: list[str], incoming: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every split event known for the batch (stored, plus the incoming ones) and the incoming ones that are new.

    Args:
        warehouse: the open warehouse.
        symbols: the batch's symbols with clean rows.
        incoming: split events the sources sent this run (SPLIT_COLUMNS), or None.

    Returns:
        (known, new): known has every event of these symbols (a new factor replaces a stored one).
    """
    incoming = incoming if incoming is not None and not incoming.empty else empty_splits()
    wanted = sorted(set(symbols) | set(incoming["symbol"]))
    stored = warehouse.read_splits(wanted) if wanted else empty_splits()
    new = new_split_events(incoming, stored)
    if new.empty:
        return stored, new
    known = pd.concat([stored, new], ignore_index=True).drop_duplicates(["symbol", "effective_date"], keep="last")
    return known.sort_values(["symbol", "effective_date"], ignore_index=True), new


def _concat_frames(first: dict[str, pd.DataFrame], second: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Two sets of table rows as one (table by table), for one load_batch call."""
    merged = dict(first)
    for name, frame in second.items():
        merged[name] = pd.concat([merged[name], frame], ignore_index=True) if name in merged else frame
    return merged


def _transformed_frames(transformed: Transformed, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The batch's clean and quarantined rows: from memory, or read back from the processed zone."""
    clean, quarantine = transformed.clean, transformed.quarantine
    keys = transformed.processed_keys
    if keys.get("prices") or keys.get("quarantine"):
        s3 = open_s3(settings)
        clean = read_processed_frame(s3, settings.s3_bucket, keys["prices"]) if keys.get("prices") else None
        quarantine = (
            read_processed_frame(s3, settings.s3_bucket, keys["quarantine"]) if keys.get("quarantine") else None
        )
    if clean is None:
        clean = pd.DataFrame(columns=["symbol", "trade_date", "source"])
    if quarantine is None:
        quarantine = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return clean, quarantine


# --- Finish ---------------------------------------------------------------------------------------


def finish_run(summary: RunSummary, settings: Settings, *, alert: bool) -> dict:
    """Record how the run ended in pipeline_runs, publish its metrics, and alert when it failed.

    Args:
        summary: the run's summary with every batch added (`RunSummary.add_results`).
        settings: loaded settings.
        alert: send the Slack alert for a partial or failed run here (the CLI). An Airflow run
            passes False: its failed finish_run task sends the one alert.

    Returns:
        The pipeline_runs row (written, unless the warehouse could not be written: then the
        CLI's alert and log say so, and an Airflow run raises).

    Raises:
        sqlite3.Error, OSError, ...: (alert=False only) the row could not be written.
    """
    summary.ended_at = utc_now_iso()
    if not summary.elapsed_seconds:
        began = datetime.fromisoformat(summary.started_at)
        summary.elapsed_seconds = (datetime.now(UTC) - began).total_seconds()
    record = summary.as_run_record()
    lag_sessions = None
    try:
        warehouse = open_warehouse(settings)
        try:
            warehouse.record_run(record)
            # Freshness is measured against the clock on purpose: how far behind is the warehouse
            # now, at the end of this run (the CloudWatch alarm watches it).
            freshness = check_freshness(warehouse, latest_completed_session(), symbols=summary.symbols_requested)
            lag_sessions = freshness.figures.get("lag_sessions")
        finally:
            warehouse.close()
    except WAREHOUSE_ERRORS as exc:
        # The warehouse cannot be written (disk full, locked past the busy timeout, SQLITE_PATH
        # unusable): the run's end is not in pipeline_runs, so the log and the alert must say so.
        not_recorded = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
        logger.error(
            "run %s ended %s but could NOT be recorded in pipeline_runs: %s",
            summary.run_id,
            summary.status,
            not_recorded,
        )
        if not alert:
            raise  # an Airflow task: it fails, and its failure alert says why
        send_run_alert(record, settings, not_recorded=not_recorded)
        return record
    # Metrics go to CloudWatch when the run uses AWS (S3_BUCKET set: the DAG always).
    if settings.s3_bucket:
        publish_run_metrics(record, settings, freshness_lag_days=lag_sessions)
    if alert:
        send_run_alert(record, settings)
    return record


def finish_task_run(
    run_id: str,
    run_date: date,
    symbols: list[str],
    started_at: str,
    extract_results: list[dict],
    load_results: list[dict],
    settings: Settings,
) -> dict:
    """The DAG's finish: the run's summary from its batch tasks' results (XComs), then `finish_run`.

    It runs even when batch tasks failed or were interrupted (trigger_rule all_done): the
    symbols of a batch that left no result are recorded as failed (BATCH_DID_NOT_FINISH).

    Raises:
        PipelineRunFailed: after recording, when any symbol failed: the task fails so Airflow
            alerts and the run never shows green with missing symbols.

    Returns:
        The pipeline_runs row that was written.
    """
    summary = RunSummary(run_id=run_id, logical_date=run_date, symbols_requested=symbols, started_at=started_at)
    summary.add_results(
        [Extracted(**result) for result in extract_results], [Loaded(**result) for result in load_results]
    )
    # A batch task that failed or was interrupted (the task runs with trigger_rule all_done)
    # left no result: its symbols are failed, never silently missing from the counts.
    for symbol in symbols:
        if symbol not in summary.loaded and symbol not in summary.failed:
            summary.failed[symbol] = BATCH_DID_NOT_FINISH
    record = finish_run(summary, settings, alert=False)
    if summary.failed:
        raise PipelineRunFailed(f"run {run_id} for {run_date}: {summary.failure_reasons()}")
    return record


def retry_failed_symbols(
    extract_results: list[dict],
    start: date,
    end: date,
    run_date: date,
    run_id: str,
    settings: Settings,
    *,
    sources: list[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Extract, transform and load again the symbols the run's extract could not serve.

    The DAG's finish_run calls it when a person cleared it after a failed run (the outage is
    over): the extract tasks stayed green, so their stored results (XComs) still name the
    failed symbols, and only a new fetch can fill the hole. Symbols that were loaded are not
    fetched again.

    Args:
        extract_results: the run's `Extracted.to_xcom()` dicts, one per batch.
        start: first trading day of the run (inclusive).
        end: last trading day of the run (inclusive).
        run_date: the run's logical date (S3 ingest_date).
        run_id: the run writing the rows.
        settings: loaded settings.
        sources: the run's sources (None: `settings.data_sources`).

    Returns:
        (extract_results, load_results): the batches' results with their failures replaced by
        this new try's, and the new try's load result (an empty list when nothing had failed).
    """
    failed = sorted({symbol for result in extract_results for symbol in [*result["failed"], *result.get("short", {})]})
    if not failed:
        return extract_results, []
    logger.info("retrying %d symbols that failed before (%s) for %s..%s", len(failed), ", ".join(failed), start, end)
    extracted = extract_batch(failed, start, end, run_date, settings, sources=sources)
    transformed = transform_batch(extracted, run_date, "batch-retry", settings)
    loaded = load_batch(transformed, run_id, settings)
    # The new try's failures (if any) replace the old ones: a symbol fetched now is no hole.
    earlier = [{**result, "failed": {}, "short": {}} for result in extract_results]
    return [*earlier, extracted.to_xcom()], [loaded.to_xcom()]


def keep_earlier_try(run_id: str, try_number: int, settings: Settings) -> str | None:
    """Copy a failed run's pipeline_runs row to `<run_id>#try<n>` before a new try records the run.

    A cleared finish_run records the run again under its run_id; the copy keeps the first
    outcome (status and reasons) in pipeline_runs, so the table shows the failure and the
    recovery.

    Args:
        run_id: the Airflow run.
        try_number: the try whose outcome the stored row holds.
        settings: loaded settings.

    Returns:
        The copy's run_id, or None when the stored row is not a failed or partial run.
    """
    warehouse = open_warehouse(settings)
    try:
        rows = warehouse.query(f"SELECT * FROM {table_ref(warehouse, 'pipeline_runs')} WHERE run_id = ?", [run_id])
        if rows.empty or rows["status"].iloc[0] not in ("failed", "partial"):
            return None
        row = {name: value for name, value in rows.iloc[0].to_dict().items() if not pd.isna(value)}
        row["run_id"] = f"{run_id}#try{try_number}"
        warehouse.record_run(row)
        return row["run_id"]
    finally:
        warehouse.close()


def check_data_quality(symbols: list[str], run_date: date, settings: Settings, run_id: str | None = None) -> dict:
    """Check the loaded data for this run's symbols and date; alert (not fail) when a check fails.

    Returns:
        {"ok": bool, "checks": [{"name", "ok", "message", "figures"}, ...]}
    """
    return run_pipeline_checks(symbols, run_date.isoformat(), settings, run_id=run_id)


# --- Every step in one process: the CLI -------------------------------------------------------------


def prepare_batch(
    numbered_batch: tuple[int, list[str]],
    *,
    start: date,
    end: date,
    settings: Settings,
    sources: list[str] | None,
    session=None,
) -> tuple[Extracted, Transformed]:
    """Extract and transform one batch (everything before the warehouse); the CLI's unit of work.

    Module-level (not inside run_pipeline) so the background worker can find it by name.
    The replies are dropped from the returned `Extracted`: transform has used them.
    """
    number, symbols = numbered_batch
    extracted = extract_batch(symbols, start, end, end, settings, sources=sources, session=session)
    transformed = transform_batch(extracted, end, f"batch-{number:03d}", settings)
    return replace(extracted, replies=[]), transformed


def run_pipeline(
    symbols: list[str],
    start: date,
    end: date,
    settings: Settings,
    *,
    sources: list[str] | None = None,
    run_id: str | None = None,
    show_progress: bool = True,
    session=None,
    now: datetime | None = None,
) -> RunSummary:
    """Run every step for some symbols and an inclusive date range, in this process (the CLI).

    A plain loop: for each batch of `BATCH_SIZE` symbols, extract -> transform -> load; then
    finish. Two speed-ups, each in its own module and each skippable: with more than one batch
    the next batch is prepared in a background process while this one loads
    (`PREPARE_IN_BACKGROUND`, src/background.py), and a first backfill into empty SQLite tables
    builds the trade_date indexes once at the end (src/storage/sqlite_bulk_load.py).

    Args:
        symbols: validated symbols (see `resolve_symbols`).
        start: first date to load (inclusive).
        end: last date to load (inclusive); also the run's logical date and the S3 ingest_date.
        settings: loaded settings.
        sources: sources to try in order (default: `settings.data_sources`).
        run_id: an id for `pipeline_runs` (default: generated).
        show_progress: show a tqdm progress bar on stderr.
        session: an HTTP session handed to the sources (tests pass one; it cannot cross into
            the background process, so a run with a session prepares its batches in turn).
        now: the moment the run happens (default: the real clock): sessions that have not
            closed by then are not loaded (`closed_end`).

    Returns:
        The run's `RunSummary` (also stored in `pipeline_runs`); a partial, failed or
        interrupted run is alerted on Slack. SIGINT/SIGTERM during the run end it cleanly:
        the summary's status is then `interrupted` (`interrupted_by` names the signal) and
        counts the batches loaded before it; the background worker is stopped.

    Raises:
        ConfigurationError: a setting is wrong (the run is recorded as failed first when possible).
    """
    chosen_sources = sources or list(settings.data_sources)
    if "alpha_vantage" in chosen_sources:
        require_alpha_vantage_key(settings)
    end = closed_end(start, end, now)
    began = time.monotonic()
    with watch_stop_signals() as stop:
        run_id = run_id or f"cli-{end.isoformat()}-{uuid.uuid4().hex[:8]}"
        summary = RunSummary(run_id=run_id, logical_date=end, symbols_requested=list(symbols), started_at=utc_now_iso())
        warehouse = None
        prepared_batches = prepare_in_turn(None, [])  # replaced by the real batches below
        # How the run ends is decided in one place, whatever stops it (the end of the loop, an
        # error, SIGINT/SIGTERM): the `finally` below always records it and alerts. A stop
        # signal raises RunInterrupted at most once, and never after `stop.hold()`, so the
        # recording itself is never cut short (src/stop_signals.py).
        try:
            record_run_start(summary, settings)
            require_writable_state_dir(settings)
            warehouse = open_warehouse(settings)
            batches = list(enumerate(make_batches(symbols, settings.batch_size)))
            prepare = functools.partial(prepare_batch, start=start, end=end, settings=settings, sources=sources)
            if settings.prepare_in_background and len(batches) > 1 and session is None:
                prepared_batches = prepare_ahead(prepare, batches, settings)
            else:
                prepared_batches = prepare_in_turn(functools.partial(prepare, session=session), batches)
            indexes_dropped = warehouse.backend_name == "sqlite" and sqlite_bulk_load.drop_trade_date_indexes(
                warehouse.handle
            )
            with tqdm(total=len(symbols), unit="symbol", disable=not show_progress, file=sys.stderr) as progress:
                for extracted, transformed in prepared_batches:
                    # A signal waits for the batch's load AND its counting, so the counts
                    # recorded are exactly the rows written (the load is one transaction).
                    with stop.deferred():
                        loaded = load_batch(transformed, summary.run_id, settings, warehouse)
                        summary.add_results([extracted], [loaded])
                        progress.update(len(extracted.symbols))
            if indexes_dropped:
                sqlite_bulk_load.build_trade_date_indexes(warehouse.handle)
            stop.hold()
        except RunInterrupted:
            pass  # recorded below as `interrupted`; the CLI exits 130 / 143
        except Exception as exc:
            stop.hold()
            summary.error = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
            raise
        finally:
            stop.hold()
            summary.interrupted_by = stop.signal_name
            prepared_batches.close()  # stops the background worker, if any (background.stop_worker)
            if warehouse is not None:
                warehouse.close()
            summary.elapsed_seconds = time.monotonic() - began
            finish_run(summary, settings, alert=True)
    if summary.interrupted_by:
        logger.warning("run %s %s", summary.run_id, summary.describe_error())
    return summary
