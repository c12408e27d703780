"""Where fetched replies are kept: the S3 raw zone, or (without S3) checkpoint files on disk.

The extract step lands every reply the moment it arrives, and a restarted run reuses what is
already landed instead of spending API quota again:

- with `S3_BUCKET` set (the DAG always, the CLI when you set it), the raw object in S3 IS the
  checkpoint: `raw/source=.../symbol=.../ingest_date=.../daily.json.gz`, whose metadata names the
  date range the run asked for;
- without S3 (the CLI on a laptop), quota-costly replies (Alpha Vantage, Yahoo) are kept as
  `<STATE_DIR>/landed/<start>_<end>/<SYMBOL>.json`. File-source replies are not kept: reading
  the CSV again is free, and picks up a corrected file;
- a saved reply is reused only when it reaches the range's last NYSE session (a reply saved
  before the source had that session is fetched again, see `_reaches_end_session`); an unusable one is
  set aside (a file) or refetched over (an S3 object).


Example:
    >>> key = land_reply(result, date(2024, 1, 2), date(2024, 1, 31), date(2024, 1, 31), settings, s3_client)
    >>> find_landed_reply("IBM", date(2024, 1, 2), date(2024, 1, 31), date(2024, 1, 31), settings, s3_client)
    (FetchResult(symbol='IBM', source='alpha_vantage', ...), 'raw/source=alpha_vantage/...')
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date
from pathlib import Path

from src.config import Settings
from src.ingestion.fetch_result import FetchResult
from src.ingestion.raw_replies import prices_from_raw_reply
from src.ingestion.symbols import normalize_symbol
from src.market_calendar import sessions_between, utc_now_iso
from src.storage.s3_handler import (
    S3StorageError,
    land_raw_reply,
    raw_object_key,
    raw_object_metadata,
    read_raw_reply,
    reply_as_redacted_json,
)

logger = logging.getLogger(__name__)

# Replies from these sources cost API quota (Alpha Vantage: 25 calls a day on the free tier),
# so once landed they are reused by a restarted run instead of being fetched again.
CHECKPOINTED_SOURCES = ("alpha_vantage", "yahoo")

# Request metadata added to a raw object beside the source's own request parameters.
RANGE_PARAMS = ("range_start", "range_end", "synthetic")


def land_reply(
    result: FetchResult, start: date, end: date, run_date: date, settings: Settings, s3_client
) -> str | None:
    """Keep one fetched reply: in the S3 raw zone, or as a checkpoint file without S3.

    The requested range and the synthetic flag go into the raw object's metadata, so the
    transform step keeps exactly the rows this run selected (`raw_replies.prices_from_raw_reply`).

    Args:
        result: the source's reply.
        start, end: the range the run asked for (inclusive).
        run_date: the run's logical date: the S3 `ingest_date`.
        settings: loaded settings (bucket, state folder, secrets).
        s3_client: a boto3 S3 client, or None when the run has no S3.

    Returns:
        The S3 key written, or None without S3.

    Raises:
        S3StorageError: S3 refused the write.
    """
    if s3_client is None:
        if result.source in CHECKPOINTED_SOURCES:
            save_checkpoint(result, settings.state_dir, start, end, secrets=settings.secrets())
        return None
    synthetic = not result.prices.empty and bool((result.prices["source"] == "synthetic").any())
    params = {**result.request_params, "range_start": start.isoformat(), "range_end": end.isoformat()}
    if synthetic:
        params["synthetic"] = "true"
    return land_raw_reply(
        s3_client,
        settings.s3_bucket,
        source=result.source,
        symbol=result.symbol,
        ingest_date=run_date,
        payload=result.raw_payload,
        request_params=params,
        fetched_at=result.fetched_at,
        secrets=settings.secrets(),
    )


def find_landed_reply(
    symbol: str, start: date, end: date, run_date: date, settings: Settings, s3_client
) -> tuple[FetchResult, str | None] | None:
    """Return the reply an earlier (interrupted) try already landed for this symbol and range, or None.

    Returns:
        (reply, key): a FetchResult rebuilt from the landed reply (the same rows as a fresh
        fetch) and its S3 key (None for a checkpoint file); or None when nothing is landed.

    Raises:
        S3StorageError: S3 failed for another reason than "no such key".
    """
    if s3_client is None:
        return _read_checkpoint(symbol, start, end, settings.state_dir)
    for source in CHECKPOINTED_SOURCES:
        key = raw_object_key(source, symbol, run_date)
        try:
            metadata = raw_object_metadata(s3_client, settings.s3_bucket, key)
        except S3StorageError as exc:
            if exc.reason == "no_such_key":
                continue
            raise
        params = metadata.get("request_params", {})
        if params.get("range_start") != start.isoformat() or params.get("range_end") != end.isoformat():
            continue  # landed by a run for another range: not a checkpoint for this one
        try:
            payload = read_raw_reply(s3_client, settings.s3_bucket, key)
        except S3StorageError as exc:
            if exc.reason != "corrupt_object":
                raise
            # Not worth a failed run: fetch it again; landing the new reply overwrites the bad
            # object (the bucket's versioning keeps the bad one for a look later).
            logger.warning("%s %s..%s: %s; fetching it again instead", symbol, start, end, exc)
            return None
        request_params = {name: value for name, value in params.items() if name not in RANGE_PARAMS}
        prices = prices_from_raw_reply(source, symbol, payload, metadata)
        if not _reaches_end_session(prices, symbol, start, end, f"s3://{settings.s3_bucket}/{key}"):
            return None
        logger.info("%s %s..%s: reusing the %s reply already landed at %s", symbol, start, end, source, key)
        return FetchResult(symbol, source, prices, payload, request_params, metadata.get("fetched_at", "")), key
    return None


def checkpoint_path(state_dir: Path, symbol: str, start: date, end: date) -> Path:
    """Where the CLI (without S3) keeps one landed reply: `<state_dir>/landed/<start>_<end>/<SYMBOL>.json`.

    The path is built only from a validated symbol and two dates.

    Example:
        >>> checkpoint_path(Path("data/state"), "ibm", date(2024, 1, 2), date(2024, 1, 31))
        PosixPath('data/state/landed/2024-01-02_2024-01-31/IBM.json')
    """
    return Path(state_dir) / "landed" / f"{start.isoformat()}_{end.isoformat()}" / f"{normalize_symbol(symbol)}.json"


def save_checkpoint(
    result: FetchResult, state_dir: Path, start: date, end: date, secrets: list[str] | tuple[str, ...] = ()
) -> Path:
    """Write one fetched reply to its checkpoint file, atomically, with secrets redacted.

    The file is written under a temporary name and then renamed: a process killed mid-write
    leaves either no checkpoint or a complete one, never half a file. The reply goes through
    the same redaction as the S3 raw zone (`s3_handler.reply_as_redacted_json`), so an API key
    a server echoes inside a data reply never reaches STATE_DIR.

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
        "raw_payload": json.loads(
            reply_as_redacted_json(result.raw_payload, secrets, symbol=result.symbol, source=result.source)
        ),
    }
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)
    return path


def _read_checkpoint(symbol: str, start: date, end: date, state_dir: Path) -> tuple[FetchResult, None] | None:
    """The reply saved by `save_checkpoint` for this symbol and range, or None.

    A checkpoint that cannot be used (empty, cut off, `{}`, another shape, no rows) is set
    aside as `<SYMBOL>.json.corrupt-<time>` and None is returned, so the symbol is fetched
    again: a bad file must not fail every rerun until someone deletes it.
    """
    path = checkpoint_path(state_dir, symbol, start, end)
    if not path.is_file():
        return None
    metadata = {"request_params": {"range_start": start.isoformat(), "range_end": end.isoformat()}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        prices = prices_from_raw_reply(record["source"], symbol, record["raw_payload"], metadata)
        reply = FetchResult(
            symbol, record["source"], prices, record["raw_payload"], record["request_params"], record["fetched_at"]
        )
        if prices.empty:
            raise ValueError("it holds no rows for this range")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # ValueError covers bad JSON (JSONDecodeError) and a payload of the wrong shape.
        _set_aside(path, f"{type(exc).__name__}: {exc}")
        return None
    if not _reaches_end_session(prices, symbol, start, end, str(path)):
        return None
    logger.info("%s %s..%s: reusing the %s reply saved in %s", symbol, start, end, record["source"], path)
    return reply, None


def _reaches_end_session(prices, symbol: str, start: date, end: date, where: str) -> bool:
    """True when a saved reply has the range's last NYSE session, so reusing it loses nothing.

    A reply saved before the source published the end session (the evening run on a late
    day) would otherwise hide that session forever: every rerun reused it and sent nothing.
    Such a reply is not reused; the symbol is fetched again (and the new reply saved over it).
    """
    sessions = sessions_between(start, end)
    if not sessions:
        return True
    days = prices["trade_date"].astype(str)
    latest = max((day for day in days if len(day) == 10), default="")
    if latest >= sessions[-1].isoformat():
        return True
    logger.warning(
        "%s %s..%s: the saved reply %s ends at %s, before the last session %s of the range; fetching it again",
        symbol,
        start,
        end,
        where,
        latest or "no valid date",
        sessions[-1],
    )
    return False


def _set_aside(path: Path, problem: str) -> None:
    """Rename an unusable checkpoint out of the way (kept for a look) and log both paths."""
    stamp = utc_now_iso().replace(":", "").replace("+0000", "Z")
    corrupt = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, corrupt)
    except OSError as exc:
        logger.warning(
            "saved reply %s is unusable (%s) and could not be set aside (%s); fetching it again", path, problem, exc
        )
        return
    logger.warning("saved reply %s is unusable (%s); set it aside as %s and fetching it again", path, problem, corrupt)
