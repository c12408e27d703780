"""The pipeline CLI: fetch, validate, clean, compute indicators, load, aggregate, record the run.

Usage:
    python -m src.pipeline run --symbols AAPL,MSFT --start 2024-01-02 --end 2024-03-28 \\
        [--source auto|alpha_vantage|yahoo|file] [--data-dir DIR]

`--start` and `--end` are inclusive. Defaults come from the settings (`src/config.py`, `.env`).
Symbols are processed in batches of `BATCH_SIZE`, so memory stays bounded however many
symbols there are; each batch is loaded in one warehouse transaction.

Exit codes: 0 every symbol loaded, 1 some symbols failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date

from src.config import ConfigurationError, Settings, configure_logging, load_settings, redact, require_alpha_vantage_key
from src.ingestion.fetch_result import utc_now_iso
from src.ingestion.symbols import InvalidSymbolInputError, normalize_symbols

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2


@dataclass
class RunSummary:
    """What one pipeline run did; printed at the end and stored in `pipeline_runs`."""

    run_id: str
    logical_date: str
    symbols_requested: list[str]
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_by_source: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    ended_at: str = ""
    elapsed_seconds: float = 0.0
    error: str = ""

    @property
    def status(self) -> str:
        if self.error or not self.loaded:
            return "failed"
        return "partial" if self.failed else "success"

    def as_run_record(self) -> dict:
        """The row for `pipeline_runs`."""
        return {
            "run_id": self.run_id,
            "logical_date": self.logical_date,
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
            "error": self.error or None,
        }


def load_prepared_batch(prepared, warehouse, summary: RunSummary) -> None:
    """Load one prepared batch (`batch_preparation.PreparedBatch`) and update `summary` in place."""
    from src.storage.loader import load_clean_prices

    summary.failed.update(prepared.failures)
    if not prepared.fetched:
        return
    clean, quarantine = prepared.clean, prepared.quarantine
    load_clean_prices(warehouse, clean, quarantine, summary.run_id, utc_now_iso())

    loaded_symbols = set(clean["symbol"].unique()) if not clean.empty else set()
    for symbol, source in prepared.fetched:
        if symbol in loaded_symbols:
            summary.loaded.append(symbol)
        else:
            summary.failed[symbol] = f"no valid rows from {source} (all quarantined or none in range)"
    summary.rows_loaded += len(clean)
    summary.rows_quarantined += len(quarantine)
    for source, rows in clean.groupby("source").size().items():
        summary.rows_by_source[source] = summary.rows_by_source.get(source, 0) + int(rows)


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
) -> RunSummary:
    """Run the whole pipeline for some symbols and an inclusive date range.

    Args:
        symbols: validated symbols (see `normalize_symbols`).
        start: first date to load (inclusive).
        end: last date to load (inclusive); also the run's logical date and the S3 ingest_date.
        settings: loaded settings.
        sources: sources to try in order (default: `settings.data_sources`).
        run_id: an id for `pipeline_runs` (default: generated).
        show_progress: show a tqdm progress bar on stderr.
        session: an HTTP session handed to the sources (tests pass one; None: a new one).

    Returns:
        The run's `RunSummary` (also stored in `pipeline_runs`). When the run is partial or
        failed, a Slack alert says so (see `alert_run_outcome`).

    Raises:
        ConfigurationError: a setting is wrong (the run is recorded as failed first when possible).
    """
    from tqdm import tqdm

    from src.batch_preparation import prepare_batch, prepare_in_background
    from src.pipeline_steps import make_batches
    from src.storage.loader import prefetch_ahead
    from src.storage.warehouse import open_warehouse

    sources = sources or list(settings.data_sources)
    if "alpha_vantage" in sources:
        require_alpha_vantage_key(settings)

    summary = RunSummary(
        run_id=run_id or f"cli-{end.isoformat()}-{uuid.uuid4().hex[:8]}",
        logical_date=end.isoformat(),
        symbols_requested=list(symbols),
        started_at=utc_now_iso(),
    )
    began = time.monotonic()
    warehouse = open_warehouse(settings)
    try:
        warehouse.record_run(summary.as_run_record())
        s3_client = None
        if settings.s3_bucket:
            from src.storage.s3_handler import ensure_bucket, get_s3_client

            s3_client = get_s3_client(settings)
            ensure_bucket(s3_client, settings.s3_bucket, create=settings.s3_create_bucket)

        batches = make_batches(symbols, settings.batch_size)
        if settings.prepare_in_background and len(batches) > 1 and session is None:
            prepared_batches = prepare_in_background(batches, start, end, settings, sources)
        else:
            prepared_batches = (
                prepare_batch(batch, start, end, settings, sources=sources, s3_client=s3_client, session=session)
                for batch in batches
            )
        # A first backfill into empty tables loads faster without the trade_date indexes;
        # they are built once at the end (see sqlite_warehouse.begin_bulk_load).
        bulk_load = warehouse.begin_bulk_load()
        with tqdm(total=len(symbols), unit="symbol", disable=not show_progress, file=sys.stderr) as progress:
            # While a batch loads, the next batch's warehouse pages are read in the background.
            for prepared in prefetch_ahead(warehouse, batches, prepared_batches, start.isoformat()):
                load_prepared_batch(prepared, warehouse, summary)
                progress.update(len(prepared.symbols))
        if bulk_load:
            warehouse.end_bulk_load()
    except Exception as exc:
        summary.error = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
        raise
    finally:
        summary.ended_at = utc_now_iso()
        summary.elapsed_seconds = time.monotonic() - began
        warehouse.record_run(summary.as_run_record())
        warehouse.close()
        alert_run_outcome(summary, settings)
    return summary


def alert_run_outcome(summary: RunSummary, settings: Settings) -> bool:
    """Send a Slack alert when a run is partial or failed; a successful run sends nothing.

    The alert names the run, its date, each failed symbol with its reason, and the error that
    stopped the run, if any. Like every alert it is redacted and never fails the run.

    Returns:
        True when Slack accepted the alert; False when nothing was sent or Slack failed.
    """
    from src.monitoring.alerting import send_slack_alert

    if summary.status == "success":
        return False
    lines = [
        f"Pipeline run {summary.run_id} for {summary.logical_date}: {summary.status.upper()}: "
        f"{len(summary.loaded)} of {len(summary.symbols_requested)} symbols loaded."
    ]
    lines += [f"{symbol}: {reason}" for symbol, reason in sorted(summary.failed.items())]
    if summary.error:
        lines.append(f"Stopped by: {summary.error}")
    lines.append("Failed symbols are retried by running the same dates again; already loaded data is kept.")
    text = "\n".join(lines)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]
    return send_slack_alert(settings, text, blocks)


def format_summary(summary: RunSummary) -> str:
    """A plain-text summary table for the end of a CLI run."""
    lines = [
        f"Run {summary.run_id}: {summary.status.upper()}",
        f"  symbols ok       {len(summary.loaded)} of {len(summary.symbols_requested)}",
        f"  symbols failed   {len(summary.failed)}",
    ]
    for symbol, reason in sorted(summary.failed.items()):
        lines.append(f"    {symbol:<10} {reason}")
    lines.append(f"  rows loaded      {summary.rows_loaded}")
    lines.append(f"  rows quarantined {summary.rows_quarantined}")
    for source, rows in sorted(summary.rows_by_source.items()):
        lines.append(f"    from {source:<12} {rows}")
    lines.append(f"  elapsed          {summary.elapsed_seconds:.1f} s")
    if summary.error:
        lines.append(f"  error            {summary.error}")
    return "\n".join(lines)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (expected YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="fetch, transform and load prices for a date range")
    run.add_argument("--symbols", help="comma-separated symbols (default: SYMBOLS from the settings)")
    run.add_argument("--start", type=_parse_date, required=True, help="first date, YYYY-MM-DD (inclusive)")
    run.add_argument("--end", type=_parse_date, required=True, help="last date, YYYY-MM-DD (inclusive)")
    run.add_argument(
        "--source",
        choices=["auto", "alpha_vantage", "yahoo", "file"],
        default="auto",
        help="auto = the DATA_SOURCES order with fallback; otherwise only that source",
    )
    run.add_argument("--data-dir", help="folder of <SYMBOL>.csv files for the file source (FILE_SOURCE_DIR)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    from src.storage.s3_handler import S3StorageError
    from src.storage.sqlite_warehouse import WarehouseLockedError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {"FILE_SOURCE_DIR": args.data_dir} if args.data_dir else None
        settings = load_settings(overrides=overrides)
        configure_logging(settings)
        symbols = normalize_symbols(args.symbols if args.symbols else list(settings.symbols))
        if args.start > args.end:
            raise ConfigurationError(f"--start {args.start} is after --end {args.end}")
        sources = None if args.source == "auto" else [args.source]
        summary = run_pipeline(
            symbols, args.start, args.end, settings, sources=sources, show_progress=not args.no_progress
        )
    except (InvalidSymbolInputError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (S3StorageError, WarehouseLockedError) as exc:
        # Infrastructure that is down or busy: the run is recorded as failed and alerted;
        # the message says what to do. Rerunning the same dates is safe.
        print(f"error: the run stopped: {redact(exc, settings.secrets())}", file=sys.stderr)
        return EXIT_SOME_FAILED
    print(format_summary(summary))
    return EXIT_OK if summary.status == "success" else EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
