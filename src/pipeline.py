"""The pipeline CLI: fetch, validate, clean, compute indicators, load, aggregate, record the run.

Usage:
    python -m src.pipeline run --symbols AAPL,MSFT --start 2024-01-02 --end 2024-03-28 \\
        [--source auto|alpha_vantage|yahoo|file] [--data-dir DIR]

`--start` and `--end` are inclusive. Defaults come from the settings (`src/config.py`, `.env`).
Symbols are processed in batches of `BATCH_SIZE`, so memory stays bounded however many
symbols there are; each batch is loaded in one warehouse transaction. The work itself is
`src/steps.py`: the same steps the Airflow DAG's tasks call.

Exit codes: 0 every symbol loaded; 1 some symbols failed, or the run stopped at runtime (a
full disk, a locked warehouse, S3 down, the background worker killed); 2 bad arguments or
configuration (including an unusable SQLITE_PATH or STATE_DIR); 130 stopped by SIGINT
(Ctrl-C), 143 stopped by SIGTERM: the run is recorded `interrupted` with what it loaded, and a
rerun of the same dates completes it.
"""

from __future__ import annotations

import argparse
import calendar
import errno
import re
import signal
import sys
from datetime import date

from src.config import ConfigurationError, StateDirFullError, configure_logging, load_settings, redact
from src.ingestion.symbols import InvalidSymbolInputError
from src.stop_signals import RunInterrupted, watch_stop_signals

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
# Stopped by a signal: 128 + its number, as shells report it (src/stop_signals.py).
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

# OSError numbers that mean "the disk cannot take the run's files": a message, not a traceback.
STOPPING_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
FULL_DISK_ADVICE = "Free space (or make the folder writable) and rerun the same dates; loaded batches are kept."


def format_summary(summary) -> str:
    """A plain-text summary table of a `steps.RunSummary`, for the end of a CLI run."""
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


# Shown at the end of `--help` (the top level and `run`).
HELP_EPILOG = f"""Example:
  python -m src.pipeline run --symbols AAPL,MSFT --start 2024-01-02 --end 2024-03-28

Exit codes:
  {EXIT_OK}  every symbol loaded
  {EXIT_SOME_FAILED}  some symbols failed (the summary names them and why; rerunning is safe), or the run
     stopped at runtime (disk full, warehouse locked, S3 down, background worker killed);
     the run is recorded and alerted
  {EXIT_BAD_INPUT}  bad arguments or configuration (the message says what to fix, e.g. an unusable
     SQLITE_PATH or STATE_DIR)
  {EXIT_SIGINT}  stopped by SIGINT (Ctrl-C); {EXIT_SIGTERM} stopped by SIGTERM: recorded `interrupted`
     with what was loaded; rerun the same dates to complete it
"""


def parse_date(text: str) -> date:
    """A command-line date, YYYY-MM-DD; the error names what is wrong (the month, the day).

    Raises:
        argparse.ArgumentTypeError: not a date; argparse prints it with the argument's name.

    Example:
        >>> parse_date("2024-02-29")
        datetime.date(2024, 2, 29)
    """
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: not a date: expected YYYY-MM-DD, e.g. 2024-01-02")
    year, month, day = (int(part) for part in match.groups())
    if not 1 <= month <= 12:
        raise argparse.ArgumentTypeError(f"{text!r}: month {match.group(2)} is not a month (01-12)")
    days_in_month = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days_in_month:
        raise argparse.ArgumentTypeError(
            f"{text!r}: day {match.group(3)} is not in {calendar.month_name[month]} {year} "
            f"(it has {days_in_month} days)"
        )
    return date(year, month, day)


def choose_sources(choice: str, settings) -> list[str] | None:
    """The run's sources for `--source`, checked against the Alpha Vantage key.

    With `auto` and no key, Alpha Vantage is skipped with one warning and the next sources of
    DATA_SOURCES are used (the README's Yahoo fallback); an explicit `alpha_vantage` without a
    key is a configuration error.

    Returns:
        The sources to try in order, or None for DATA_SOURCES as they are.

    Raises:
        ConfigurationError: `--source alpha_vantage` without a key, or no source left.
    """
    if settings.alpha_vantage_api_key:
        return None if choice == "auto" else [choice]
    if choice == "alpha_vantage":
        raise ConfigurationError(
            "--source alpha_vantage needs ALPHA_VANTAGE_API_KEY, which is not set. Get a free key at "
            "https://www.alphavantage.co/support/#api-key and put it in .env, or use --source auto "
            "(the next source of DATA_SOURCES), --source yahoo or --source file."
        )
    if choice != "auto" or "alpha_vantage" not in settings.data_sources:
        return None if choice == "auto" else [choice]
    rest = [source for source in settings.data_sources if source != "alpha_vantage"]
    if not rest:
        raise ConfigurationError(
            "ALPHA_VANTAGE_API_KEY is not set and DATA_SOURCES lists only alpha_vantage: put a key in .env, "
            "or add another source (e.g. DATA_SOURCES=alpha_vantage,yahoo)."
        )
    print(
        f"warning: ALPHA_VANTAGE_API_KEY is not set: skipping alpha_vantage, using {', '.join(rest)} "
        "(DATA_SOURCES order)",
        file=sys.stderr,
    )
    return rest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src.pipeline",
        description=__doc__.split("\n")[0],
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="fetch, transform and load prices for a date range",
        description="Fetch, transform and load prices for an inclusive date range.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--symbols", help="comma-separated symbols (default: SYMBOLS from the settings)")
    run.add_argument("--start", type=parse_date, required=True, help="first date, YYYY-MM-DD (inclusive)")
    run.add_argument("--end", type=parse_date, required=True, help="last date, YYYY-MM-DD (inclusive)")
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
    # Watched from the very start, so SIGTERM during the slow imports below also ends with
    # a message and exit 143 instead of a silent death (src/stop_signals.py).
    with watch_stop_signals():
        try:
            return _run_command(argv)
        except RunInterrupted as exc:
            # Only before the run is recorded: once it is, run_pipeline records it interrupted.
            print(f"error: {exc} before the run started; nothing was loaded", file=sys.stderr)
            return exc.exit_code


def _run_command(argv: list[str] | None) -> int:
    """Parse the arguments, run the pipeline, print its summary; the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported here, after the arguments are parsed: the steps pull in pandas, boto3 and the
    # rest of the pipeline (seconds on a busy machine), which `--help` and a typo never need.
    from src import steps
    from src.background import BackgroundWorkerError
    from src.storage.s3_handler import S3StorageError
    from src.storage.sqlite_warehouse import WarehouseFullError, WarehouseLockedError

    settings = None
    # Infrastructure that is down, busy or full: one line, exit 1 (see the except below).
    stopping_errors = [
        S3StorageError,
        WarehouseLockedError,
        WarehouseFullError,
        StateDirFullError,
        BackgroundWorkerError,
    ]
    try:
        overrides = {"FILE_SOURCE_DIR": args.data_dir} if args.data_dir else None
        settings = load_settings(overrides=overrides)
        configure_logging(settings)
        if settings.warehouse_backend == "bigquery":
            # Imported only for BigQuery runs: google-cloud-bigquery is a slow import SQLite runs never need.
            from src.storage.bigquery_handler import BigQueryLockedError

            stopping_errors.append(BigQueryLockedError)
        symbols = steps.resolve_symbols(args.symbols, settings)
        if args.start > args.end:
            raise ConfigurationError(f"--start {args.start} is after --end {args.end}")
        sources = choose_sources(args.source, settings)
        summary = steps.run_pipeline(
            symbols,
            args.start,
            args.end,
            settings,
            sources=sources,
            show_progress=not args.no_progress,
        )
    except (InvalidSymbolInputError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except tuple(stopping_errors) as exc:
        # Infrastructure that is down, busy or full: the run is recorded as failed (when the
        # warehouse can be written) and alerted; the message says what to do. Rerunning the
        # same dates is safe.
        print(f"error: the run stopped: {redact(exc, settings.secrets())}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except OSError as exc:
        if exc.errno not in STOPPING_OS_ERRORS:
            raise
        # A file the run must write (STATE_DIR, the landing folder) on a full or read-only disk.
        where = exc.filename or "a file of the run (STATE_DIR, SQLITE_PATH)"
        print(f"error: the run stopped: cannot write {where}: {exc.strerror}. {FULL_DISK_ADVICE}", file=sys.stderr)
        return EXIT_SOME_FAILED
    print(format_summary(summary))
    if summary.status == "interrupted":
        print(f"error: run {summary.run_id} {summary.describe_error()}", file=sys.stderr)
        return 128 + signal.Signals[summary.interrupted_by].value
    return EXIT_OK if summary.status == "success" else EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
