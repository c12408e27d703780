"""The pipeline's steps as plain functions: what each Airflow task calls.

The DAG (`airflow/dags/daily_etl_pipeline.py`) only wires these together:

    resolve_symbols -> make_batches -> extract_batch (mapped) -> transform_batch (mapped)
        -> load_batch (mapped) -> check_data_quality -> finish_run

Tasks hand data to each other through S3 (raw replies, then processed Parquet); what they
return (and Airflow keeps as XCom) is only S3 keys and counts. Every step is keyed on the run's
logical date, never on "now", so re-running a date (or clearing one task) gives the same
warehouse. Settings are passed in; the DAG loads them inside each task.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date
from pathlib import Path

import pandas as pd

from src.config import ConfigurationError, Settings
from src.ingestion.symbols import normalize_symbol, normalize_symbols

logger = logging.getLogger(__name__)


def _require_bucket(settings: Settings) -> str:
    if not settings.s3_bucket:
        raise ConfigurationError(
            "S3_BUCKET is not set. The Airflow tasks hand data to each other through S3; "
            "set S3_BUCKET (and AWS_ENDPOINT_URL for the local moto server)."
        )
    return settings.s3_bucket


def resolve_symbols(requested: list[str] | None, settings: Settings) -> list[str]:
    """The run's symbols: the ones requested (e.g. DAG params), else `settings.symbols`; validated.

    Raises:
        InvalidSymbolInputError: a symbol is invalid (nothing has been fetched yet).
    """
    return normalize_symbols(requested if requested else list(settings.symbols))


def make_batches(symbols: list[str], batch_size: int) -> list[list[str]]:
    """Split symbols into batches of `batch_size` (one mapped Airflow task per batch).

    Example:
        >>> make_batches(["A", "B", "C"], 2)
        [['A', 'B'], ['C']]
    """
    return [symbols[i : i + batch_size] for i in range(0, len(symbols), batch_size)]


def land_fetch_results(
    results: list, settings: Settings, ingest_date: str, s3_client, start: str, end: str
) -> list[str]:
    """Land each fetched reply untouched in the S3 raw zone; returns the keys written.

    The requested range and the synthetic flag go into the object's metadata, so the transform
    step keeps exactly the rows this run selected (see `raw_replies.prices_from_raw_reply`).
    """
    from src.storage.s3_handler import land_raw_reply

    keys = []
    for result in results:
        synthetic = bool((result.prices["source"] == "synthetic").any()) if not result.prices.empty else False
        params = {**result.request_params, "range_start": start, "range_end": end}
        if synthetic:
            params["synthetic"] = "true"
        keys.append(
            land_raw_reply(
                s3_client,
                settings.s3_bucket,
                source=result.source,
                symbol=result.symbol,
                ingest_date=date.fromisoformat(ingest_date),
                payload=result.raw_payload,
                request_params=params,
                fetched_at=result.fetched_at,
                secrets=settings.secrets(),
            )
        )
    return keys


# Replies from these sources cost API quota (Alpha Vantage: 25 calls a day on the free tier),
# so once landed they are reused by a restarted run instead of being fetched again. File
# replies are cheap to read again, and re-reading picks up a corrected CSV.
CHECKPOINTED_SOURCES = ("alpha_vantage", "yahoo")


def checkpoint_path(state_dir: Path, symbol: str, start: str, end: str) -> Path:
    """Where the CLI (without S3) keeps one landed reply: `<state_dir>/landed/<start>_<end>/<SYMBOL>.json`.

    The path is built only from a validated symbol and two ISO dates.

    Example:
        >>> checkpoint_path(Path("data/state"), "ibm", "2024-01-02", "2024-01-31")
        PosixPath('data/state/landed/2024-01-02_2024-01-31/IBM.json')
    """
    folder = f"{date.fromisoformat(start).isoformat()}_{date.fromisoformat(end).isoformat()}"
    return Path(state_dir) / "landed" / folder / f"{normalize_symbol(symbol)}.json"


def save_checkpoint(result, state_dir: Path, start: str, end: str) -> Path:
    """Write one fetched reply to its checkpoint file, atomically.

    The file is written under a temporary name and then renamed: a process killed mid-write
    leaves either no checkpoint or a complete one, never half a file.

    Returns:
        The checkpoint file's path.
    """
    path = checkpoint_path(state_dir, result.symbol, start, end)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "source": result.source,
        "symbol": result.symbol,
        "fetched_at": result.fetched_at,
        "request_params": result.request_params,
        "raw_payload": result.raw_payload,
    }
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)
    return path


def find_landed_reply(symbol: str, start: str, end: str, ingest_date: str, settings: Settings, s3_client=None):
    """Return the reply an earlier (interrupted) try already landed for this symbol and range, or None.

    With S3 the raw object itself is the checkpoint: `raw/source=.../symbol=.../ingest_date=...`
    whose metadata names the same range_start/range_end. Without S3 (the CLI on a laptop) it
    is the checkpoint file under `settings.state_dir` (see `save_checkpoint`).

    Returns:
        A FetchResult rebuilt from the landed reply (same rows as a fresh fetch), or None.

    Raises:
        S3StorageError: S3 failed for another reason than "no such key".
    """
    from src.ingestion.fetch_result import FetchResult
    from src.ingestion.raw_replies import prices_from_raw_reply

    symbol = normalize_symbol(symbol)
    if s3_client is not None:
        from src.storage.s3_handler import S3StorageError, raw_object_key, raw_object_metadata, read_raw_reply

        for source in CHECKPOINTED_SOURCES:
            key = raw_object_key(source, symbol, ingest_date)
            try:
                metadata = raw_object_metadata(s3_client, settings.s3_bucket, key)
            except S3StorageError as exc:
                if exc.reason == "no_such_key":
                    continue
                raise
            params = metadata.get("request_params", {})
            if params.get("range_start") != start or params.get("range_end") != end:
                continue  # landed by a run for another range: not a checkpoint for this one
            payload = read_raw_reply(s3_client, settings.s3_bucket, key)
            request_params = {k: v for k, v in params.items() if k not in ("range_start", "range_end", "synthetic")}
            prices = prices_from_raw_reply(source, symbol, payload, metadata)
            logger.info("%s %s..%s: reusing the %s reply already landed at %s", symbol, start, end, source, key)
            return FetchResult(symbol, source, prices, payload, request_params, metadata.get("fetched_at", ""))
        return None

    path = checkpoint_path(settings.state_dir, symbol, start, end)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    metadata = {"request_params": {"range_start": start, "range_end": end}}
    prices = prices_from_raw_reply(record["source"], symbol, record["raw_payload"], metadata)
    logger.info("%s %s..%s: reusing the %s reply saved in %s", symbol, start, end, record["source"], path)
    return FetchResult(
        symbol, record["source"], prices, record["raw_payload"], record["request_params"], record["fetched_at"]
    )


def fetch_and_land(
    symbols: list[str],
    start: str,
    end: str,
    logical_date: str,
    settings: Settings,
    *,
    sources: list[str] | None = None,
    s3_client=None,
    session=None,
) -> tuple[list, dict[str, str], list[str]]:
    """Fetch a batch and land each reply the moment it arrives; reuse replies landed before.

    This is what makes a killed run cheap to restart: progress is saved per symbol and
    range (in S3, or in a checkpoint file without S3), and a restarted run fetches only the
    symbols that have nothing landed yet, so no API quota is spent twice.

    Args:
        symbols: validated symbols of this batch.
        start: first trading day, 'YYYY-MM-DD' (inclusive).
        end: last trading day, 'YYYY-MM-DD' (inclusive).
        logical_date: the run's logical date (the S3 ingest_date).
        settings: loaded settings.
        sources: sources to try in order (None: `settings.data_sources`).
        s3_client: a boto3 S3 client to land replies in the raw zone; None keeps checkpoint
            files under `settings.state_dir` instead.
        session: an HTTP session handed to the sources (tests).

    Returns:
        (results, failures, raw_keys): one FetchResult per symbol that has data, in the order
        of `symbols`; symbol -> reason for the others; the S3 keys of the batch's raw replies
        (empty without S3).
    """
    from src.ingestion.sources import fetch_batch

    symbols = normalize_symbols(symbols)
    reused = {}
    for symbol in symbols:
        landed = find_landed_reply(symbol, start, end, logical_date, settings, s3_client)
        if landed is not None:
            reused[symbol] = landed
    keys: list[str] = []
    if s3_client is not None:
        from src.storage.s3_handler import raw_object_key

        keys = [raw_object_key(result.source, result.symbol, logical_date) for result in reused.values()]

    def keep(result) -> None:
        if s3_client is not None:
            keys.extend(land_fetch_results([result], settings, logical_date, s3_client, start, end))
        elif result.source in CHECKPOINTED_SOURCES:
            save_checkpoint(result, settings.state_dir, start, end)

    to_fetch = [symbol for symbol in symbols if symbol not in reused]
    fetched, failures = [], {}
    if to_fetch:
        fetched, failures = fetch_batch(
            to_fetch,
            date.fromisoformat(start),
            date.fromisoformat(end),
            settings,
            sources=sources,
            session=session,
            on_fetched=keep,
        )
    if reused:
        logger.info(
            "batch %s..%s: %d symbol(s) reused from landed replies, %d fetched", start, end, len(reused), len(fetched)
        )
    by_symbol = {**reused, **{result.symbol: result for result in fetched}}
    results = [by_symbol[symbol] for symbol in symbols if symbol in by_symbol]
    return results, failures, keys


def extract_batch(
    symbols: list[str], start: str, end: str, logical_date: str, settings: Settings, *, source: str | None = None
) -> dict:
    """Fetch one batch of symbols (with fallback between sources) and land the raw replies in S3.

    Args:
        symbols: validated symbols of this batch.
        start: first trading day to fetch, 'YYYY-MM-DD' (inclusive).
        end: last trading day to fetch, 'YYYY-MM-DD' (inclusive).
        logical_date: the run's logical date; the S3 `ingest_date`, so reruns overwrite.
        settings: loaded settings.
        source: only this source (a manual override); None = `DATA_SOURCES` with fallback.

    Returns:
        {"raw_keys": [...], "fetched": {symbol: source}, "failed": {symbol: reason}}
    """
    from src.storage.s3_handler import ensure_bucket, get_s3_client

    bucket = _require_bucket(settings)
    s3 = get_s3_client(settings)
    ensure_bucket(s3, bucket, create=settings.s3_create_bucket)
    sources = [source] if source and source != "auto" else None
    # Each reply is landed as soon as it arrives; a retried task reuses what is already landed.
    results, failures, keys = fetch_and_land(symbols, start, end, logical_date, settings, sources=sources, s3_client=s3)
    logger.info(
        "extract %s..%s: %d fetched, %d failed, %d raw objects landed",
        start,
        end,
        len(results),
        len(failures),
        len(keys),
    )
    return {
        "raw_keys": keys,
        "fetched": {result.symbol: result.source for result in results},
        "failed": failures,
    }


def transform_raw_objects(s3_client, bucket: str, raw_keys: list[str], logical_date: str, part: str) -> dict:
    """The one transform function: raw replies in S3 -> processed Parquet in S3, with counts.

    Both the Airflow task (in-process) and the AWS Lambda handler call this.

    Args:
        s3_client: a boto3 S3 client.
        bucket: the bucket holding raw/ and processed/.
        raw_keys: raw objects to transform (from `extract_batch`).
        logical_date: the run's logical date (rows after it are rejected; the processed key's date).
        part: a name for this batch's processed files, e.g. "batch-003".

    Returns:
        {"processed_keys": {"prices": key or None, "quarantine": key or None},
         "rows_clean": n, "rows_quarantined": n, "symbols": [...]}
    """
    from src.ingestion.raw_replies import prices_from_raw_reply
    from src.storage.s3_handler import raw_object_metadata, read_raw_reply, write_processed_frame
    from src.transformation.transform import transform_prices

    frames = []
    for key in raw_keys:
        metadata = raw_object_metadata(s3_client, bucket, key)
        payload = read_raw_reply(s3_client, bucket, key)
        frames.append(prices_from_raw_reply(metadata["source"], metadata["symbol"], payload, metadata))
    raw_prices = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if raw_prices.empty:
        return {
            "processed_keys": {"prices": None, "quarantine": None},
            "rows_clean": 0,
            "rows_quarantined": 0,
            "symbols": [],
        }

    clean, quarantine = transform_prices(raw_prices, run_date=logical_date)
    ingest_date = date.fromisoformat(logical_date)
    processed = {"prices": None, "quarantine": None}
    if not clean.empty:
        processed["prices"] = write_processed_frame(
            s3_client, bucket, clean, dataset="prices", ingest_date=ingest_date, part=part
        )
    if not quarantine.empty:
        processed["quarantine"] = write_processed_frame(
            s3_client, bucket, quarantine, dataset="quarantine", ingest_date=ingest_date, part=part
        )
    return {
        "processed_keys": processed,
        "rows_clean": len(clean),
        "rows_quarantined": len(quarantine),
        "symbols": sorted(clean["symbol"].unique().tolist()) if not clean.empty else [],
    }


def transform_batch(raw_keys: list[str], logical_date: str, part: str, settings: Settings) -> dict:
    """Transform one batch's raw replies, in-process or in the deployed Lambda (`TRANSFORM_BACKEND`).

    Returns:
        The same dict as `transform_raw_objects`.
    """
    bucket = _require_bucket(settings)
    if settings.transform_backend == "lambda":
        from src.transformation.lambda_handler import invoke_transform_lambda

        return invoke_transform_lambda(raw_keys, logical_date, part, settings)
    from src.storage.s3_handler import get_s3_client

    return transform_raw_objects(get_s3_client(settings), bucket, raw_keys, logical_date, part)


def load_batch(processed_keys: dict, run_id: str, settings: Settings) -> dict:
    """Load one batch's processed Parquet from S3 into the warehouse (prices, indicators, aggregates).

    Returns:
        {"rows_loaded": n, "rows_quarantined": n, "rows_by_source": {...}, "symbols_loaded": [...]}
    """
    from src.ingestion.fetch_result import utc_now_iso
    from src.storage.loader import load_clean_prices
    from src.storage.s3_handler import get_s3_client, read_processed_frame
    from src.storage.warehouse import open_warehouse
    from src.transformation.transform import QUARANTINE_COLUMNS

    bucket = _require_bucket(settings)
    s3 = get_s3_client(settings)
    clean = read_processed_frame(s3, bucket, processed_keys["prices"]) if processed_keys.get("prices") else None
    quarantine = (
        read_processed_frame(s3, bucket, processed_keys["quarantine"]) if processed_keys.get("quarantine") else None
    )
    clean = clean if clean is not None else pd.DataFrame(columns=["symbol", "trade_date", "source"])
    quarantine = quarantine if quarantine is not None else pd.DataFrame(columns=QUARANTINE_COLUMNS)

    warehouse = open_warehouse(settings)
    try:
        load_clean_prices(warehouse, clean, quarantine, run_id, utc_now_iso())
    finally:
        warehouse.close()
    by_source = {str(k): int(v) for k, v in clean.groupby("source").size().items()} if not clean.empty else {}
    return {
        "rows_loaded": len(clean),
        "rows_quarantined": len(quarantine),
        "rows_by_source": by_source,
        "symbols_loaded": sorted(clean["symbol"].unique().tolist()) if not clean.empty else [],
    }


def start_run(run_id: str, logical_date: str, symbols: list[str], settings: Settings) -> str:
    """Record a `running` row in pipeline_runs; returns the start time (ISO UTC)."""
    from src.ingestion.fetch_result import utc_now_iso
    from src.pipeline import RunSummary
    from src.storage.warehouse import open_warehouse

    summary = RunSummary(run_id=run_id, logical_date=logical_date, symbols_requested=symbols, started_at=utc_now_iso())
    warehouse = open_warehouse(settings)
    try:
        warehouse.record_run(summary.as_run_record())
    finally:
        warehouse.close()
    return summary.started_at


def check_data_quality(symbols: list[str], logical_date: str, settings: Settings, run_id: str | None = None) -> dict:
    """Check the loaded data for this run's symbols and date; alert (not fail) when a check fails.

    Returns:
        {"ok": bool, "checks": [{"name", "ok", "message", "figures"}, ...]}
    """
    from src.monitoring.health_checks import run_pipeline_checks

    return run_pipeline_checks(symbols, logical_date, settings, run_id=run_id)


class PipelineRunFailed(Exception):
    """Some symbols could not be loaded from any source; the run is recorded as partial/failed."""


def finish_run(
    run_id: str,
    logical_date: str,
    symbols: list[str],
    extract_results: list[dict],
    load_results: list[dict],
    started_at: str,
    settings: Settings,
) -> dict:
    """Record how the run ended in pipeline_runs and publish its metrics.

    Raises:
        PipelineRunFailed: after recording, when any symbol failed: the task fails so Airflow
            alerts and the run never shows green with missing symbols.

    Returns:
        The pipeline_runs row that was written.
    """
    from datetime import datetime

    from src.ingestion.fetch_result import utc_now_iso
    from src.monitoring.health_checks import check_freshness
    from src.monitoring.metrics import publish_run_metrics
    from src.pipeline import RunSummary
    from src.storage.calendar_dim import latest_completed_session
    from src.storage.warehouse import open_warehouse

    summary = RunSummary(run_id=run_id, logical_date=logical_date, symbols_requested=symbols, started_at=started_at)
    loaded: set[str] = set()
    for result in load_results:
        loaded.update(result.get("symbols_loaded", []))
        summary.rows_loaded += int(result.get("rows_loaded", 0))
        summary.rows_quarantined += int(result.get("rows_quarantined", 0))
        for source, rows in result.get("rows_by_source", {}).items():
            summary.rows_by_source[source] = summary.rows_by_source.get(source, 0) + int(rows)
    for result in extract_results:
        summary.failed.update(result.get("failed", {}))
    for symbol in symbols:
        if symbol not in loaded and symbol not in summary.failed:
            summary.failed[symbol] = "no valid rows loaded (all quarantined or none in range)"
    summary.loaded = [symbol for symbol in symbols if symbol in loaded]
    summary.ended_at = utc_now_iso()
    summary.elapsed_seconds = (
        datetime.fromisoformat(summary.ended_at) - datetime.fromisoformat(started_at)
    ).total_seconds()

    record = summary.as_run_record()
    warehouse = open_warehouse(settings)
    try:
        warehouse.record_run(record)
        # Freshness is measured against the clock on purpose: how far behind is the warehouse
        # now, at the end of this run (the CloudWatch alarm watches it).
        freshness = check_freshness(warehouse, latest_completed_session(), symbols=symbols)
    finally:
        warehouse.close()
    publish_run_metrics(record, settings, freshness_lag_days=freshness.figures.get("lag_sessions"))
    if summary.failed:
        raise PipelineRunFailed(
            f"run {run_id} for {logical_date}: {len(summary.failed)} of {len(symbols)} symbols failed: "
            + "; ".join(f"{symbol}: {reason}" for symbol, reason in sorted(summary.failed.items()))
        )
    return record
