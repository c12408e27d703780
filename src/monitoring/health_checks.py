"""Health checks on the warehouse: is the data fresh, complete and sane, and did the last run work?

Each check reads the warehouse and returns a `CheckResult`: a name, ok True/False, a one-line
message for people and a `figures` dict of plain numbers, strings and lists for machines
(Slack alerts, the JSON health endpoint, tests).

| check               | fails when                                                                 |
|---------------------|----------------------------------------------------------------------------|
| freshness           | the latest loaded date is more than `max_lag_sessions` sessions behind     |
|                     | the latest completed NYSE session                                          |
| completeness        | a symbol has no row for an expected session (the missing pairs are listed) |
| history_completeness| a symbol misses sessions between its first and last stored date (a hole)  |
| validation_failures | quarantined / (loaded + quarantined) is above `max_failure_rate` (5 %)     |
| row_count_drop      | a session has over 50 % fewer rows than the median of the sessions before  |
| last_run            | the last pipeline run failed, was partial, took too long or is stuck       |

Two entry points use them:

- `run_health_checks(settings, now=...)`: "is the pipeline healthy right now?" for the CLI and
  the `/pipeline-health/health` endpoint (airflow/plugins/health_plugin.py). Uses the clock.
- `run_pipeline_checks(symbols, logical_date, settings)`: the DAG's `check_data_quality` step,
  about the run's own trading day only (never "now"), and sends a Slack alert when a check fails.

The trading calendar is exchange_calendars' XNYS (weekends, holidays and early closes included):
a session is complete once its close has passed, e.g. 13:00 New York time on the day after
Thanksgiving.

The SQL is written for SQLite and BigQuery alike: table names go through `table_ref`, dates
through `_date_param` and symbol lists through `_symbols_condition`, the only places where the
two dialects differ here.

Usage:
    python -m src.monitoring.health_checks            # a readable table
    python -m src.monitoring.health_checks --json     # one JSON document
Exit code 0 healthy, 1 unhealthy, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import pandas as pd
from google.api_core.exceptions import GoogleAPIError

from src.config import ConfigurationError, Settings, configure_logging, load_settings, redact
from src.ingestion.symbols import InvalidSymbolInputError, normalize_symbols
from src.market_calendar import latest_completed_session, recent_sessions, sessions_between
from src.monitoring.alerting import send_data_quality_alert
from src.storage.warehouse import Warehouse, open_warehouse

logger = logging.getLogger(__name__)

# Defaults of the thresholds (each check takes its own as a parameter).
# The daily run starts at 18:30 New York time, 2.5 hours after the 16:00 close; allowing one
# session of lag keeps the check green in that gap. Two sessions behind is always a problem.
DEFAULT_MAX_LAG_SESSIONS = 1
# How many recent sessions the health completeness check looks at.
COMPLETENESS_WINDOW_SESSIONS = 5
# More than 5 % of a run's rows rejected usually means a source changed its format.
DEFAULT_MAX_FAILURE_RATE = 0.05
# A session's row count is compared with the median of up to this many sessions before it ...
ROW_COUNT_LOOKBACK_SESSIONS = 20
# ... and fails when it has more than 50 % fewer rows.
DEFAULT_MAX_ROW_DROP = 0.5
# A run that takes (or has been running for) longer than this is reported.
DEFAULT_MAX_RUN_SECONDS = 2 * 60 * 60
# Missing (symbol, session) pairs named in a message; figures["missing"] has all of them.
MISSING_SHOWN = 10


@dataclass
class CheckResult:
    """The outcome of one health check.

    Attributes:
        name: the check, e.g. "freshness".
        ok: True when the check passed.
        message: one line for people, e.g. "latest loaded 2024-07-02 is 1 session behind 2024-07-03".
        figures: the numbers behind it (plain ints, floats, strings, lists: JSON-ready).
    """

    name: str
    ok: bool
    message: str
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """{"name", "ok", "message", "figures"}: the shape alerts and the JSON output use."""
        return asdict(self)


# --- SQL that works on SQLite and BigQuery -------------------------------------------------------


def table_ref(warehouse: Warehouse, name: str) -> str:
    """How to name a table or view in SQL: plain in SQLite, `project.dataset.table` in BigQuery.

    Example:
        >>> warehouse.query(f"SELECT COUNT(*) AS n FROM {table_ref(warehouse, 'fact_daily_prices')}")
    """
    if warehouse.backend_name == "bigquery":
        return f"`{warehouse.handle.table_id(name)}`"
    return name


def _date_param(warehouse: Warehouse, day: date):
    """A value for a DATE column: BigQuery wants a real date, SQLite stores ISO text."""
    return day if warehouse.backend_name == "bigquery" else day.isoformat()


def _symbols_condition(warehouse: Warehouse, symbols: list[str] | None) -> tuple[str, list]:
    """A WHERE condition 'symbol is one of these' and its parameters ('1 = 1' when no symbols given)."""
    if not symbols:
        return "1 = 1", []
    if warehouse.backend_name == "bigquery":
        return "symbol IN UNNEST(?)", [list(symbols)]
    return f"symbol IN ({', '.join('?' for _ in symbols)})", list(symbols)


def _plain(value):
    """A value read from a DataFrame as a plain JSON-ready Python value (NaN/NA -> None)."""
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _plural(count: int, word: str) -> str:
    """'1 session', '3 sessions'."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- The checks --------------------------------------------------------------------------------


def latest_loaded_date(warehouse: Warehouse, symbols: list[str] | None = None) -> date | None:
    """The latest trade_date in fact_daily_prices (for these symbols), or None when there is none."""
    condition, params = _symbols_condition(warehouse, symbols)
    sql = f"SELECT MAX(trade_date) AS latest FROM {table_ref(warehouse, 'fact_daily_prices')} WHERE {condition}"
    latest = _plain(warehouse.query(sql, params)["latest"].iloc[0])
    return date.fromisoformat(str(latest)[:10]) if latest is not None else None


def check_freshness(
    warehouse: Warehouse,
    latest_session: date,
    *,
    symbols: list[str] | None = None,
    max_lag_sessions: int = DEFAULT_MAX_LAG_SESSIONS,
) -> CheckResult:
    """Is the latest loaded trade_date at most `max_lag_sessions` sessions behind `latest_session`?

    The lag counts NYSE sessions after the latest loaded date up to `latest_session`, so a
    weekend or a holiday adds nothing: Friday's data is 0 sessions behind on Monday morning.

    Args:
        warehouse: an open warehouse.
        latest_session: the session that should be loaded by now (see `latest_completed_session`).
        symbols: only look at these symbols (default: all).
        max_lag_sessions: how many sessions behind is still fine.

    Returns:
        A "freshness" result with figures latest_loaded, latest_session ('YYYY-MM-DD' or None),
        lag_sessions (None when nothing is loaded) and max_lag_sessions.
    """
    latest_loaded = latest_loaded_date(warehouse, symbols)
    figures = {
        "latest_loaded": latest_loaded.isoformat() if latest_loaded else None,
        "latest_session": latest_session.isoformat(),
        "lag_sessions": None,
        "max_lag_sessions": max_lag_sessions,
    }
    if latest_loaded is None:
        return CheckResult("freshness", False, "no prices are loaded yet", figures)

    lag = len(sessions_between(latest_loaded + timedelta(days=1), latest_session))
    figures["lag_sessions"] = lag
    if lag == 0:
        message = f"up to date: latest loaded {latest_loaded} (latest completed session {latest_session})"
    else:
        message = (
            f"latest loaded {latest_loaded} is {_plural(lag, 'session')} behind {latest_session} "
            f"(allowed: {max_lag_sessions})"
        )
    return CheckResult("freshness", lag <= max_lag_sessions, message, figures)


def check_completeness(warehouse: Warehouse, symbols: list[str], first: date, last: date) -> CheckResult:
    """Does every symbol have a row for every NYSE session from `first` to `last`?

    Args:
        warehouse: an open warehouse.
        symbols: the symbols that should be there.
        first: first day of the range (inclusive).
        last: last day of the range (inclusive).

    Returns:
        A "completeness" result with figures first_session, last_session, sessions, symbols,
        pairs_expected, pairs_missing and missing: every missing pair as "SYMBOL YYYY-MM-DD",
        sorted by date then symbol. The message names at most MISSING_SHOWN of them.
    """
    sessions = sessions_between(first, last)
    expected = {(symbol, session.isoformat()) for symbol in symbols for session in sessions}
    figures = {
        "first_session": sessions[0].isoformat() if sessions else None,
        "last_session": sessions[-1].isoformat() if sessions else None,
        "sessions": len(sessions),
        "symbols": len(symbols),
        "pairs_expected": len(expected),
        "pairs_missing": 0,
        "missing": [],
    }
    if not expected:
        return CheckResult("completeness", True, f"no sessions or symbols to check in {first}..{last}", figures)

    condition, symbol_params = _symbols_condition(warehouse, symbols)
    sql = (
        f"SELECT symbol, trade_date FROM {table_ref(warehouse, 'fact_daily_prices')} "
        f"WHERE trade_date BETWEEN ? AND ? AND {condition}"
    )
    params = [_date_param(warehouse, sessions[0]), _date_param(warehouse, sessions[-1]), *symbol_params]
    present = {(row.symbol, str(row.trade_date)[:10]) for row in warehouse.query(sql, params).itertuples()}
    missing = sorted(expected - present, key=lambda pair: (pair[1], pair[0]))
    figures["pairs_missing"] = len(missing)
    figures["missing"] = [f"{symbol} {day}" for symbol, day in missing]

    span = f"{_plural(len(symbols), 'symbol')} x {_plural(len(sessions), 'session')} ({sessions[0]}..{sessions[-1]})"
    if not missing:
        return CheckResult("completeness", True, f"all {len(expected)} pairs present: {span}", figures)
    shown = ", ".join(figures["missing"][:MISSING_SHOWN])
    more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
    message = f"{len(missing)} of {len(expected)} symbol-sessions missing in {span}: {shown}{more}"
    return CheckResult("completeness", False, message, figures)


def check_history_completeness(warehouse: Warehouse, symbols: list[str] | None = None) -> CheckResult:
    """Does each symbol have a row for every NYSE session between its first and last stored date?

    The recent-window `check_completeness` cannot see an old hole (six months missing in 2013,
    or 2014-2024 missing between two loads). This one counts, per symbol, the sessions the
    exchange calendar expects between its first and last stored date and the ones stored.

    Args:
        warehouse: an open warehouse.
        symbols: the symbols to check (None: every stored symbol).

    Returns:
        A "history_completeness" result with figures symbols_checked, sessions_expected,
        sessions_missing and incomplete: one {"symbol", "first_date", "last_date",
        "sessions_expected", "sessions_missing", "completeness_pct"} per symbol with a hole.
    """
    condition, params = _symbols_condition(warehouse, symbols)
    sql = (
        "SELECT symbol, MIN(trade_date) AS first_date, MAX(trade_date) AS last_date, "
        "SUM(CASE WHEN quality_flags LIKE '%non_session_date%' THEN 0 ELSE 1 END) AS sessions_present "
        f"FROM {table_ref(warehouse, 'fact_daily_prices')} WHERE {condition} GROUP BY symbol ORDER BY symbol"
    )
    incomplete = []
    expected_total = missing_total = 0
    stored = warehouse.query(sql, params)
    for row in stored.itertuples():
        first, last = date.fromisoformat(str(row.first_date)[:10]), date.fromisoformat(str(row.last_date)[:10])
        expected = len(sessions_between(first, last))
        missing = max(expected - int(row.sessions_present), 0)
        expected_total += expected
        missing_total += missing
        if missing:
            incomplete.append(
                {
                    "symbol": row.symbol,
                    "first_date": first.isoformat(),
                    "last_date": last.isoformat(),
                    "sessions_expected": expected,
                    "sessions_missing": missing,
                    "completeness_pct": round(100.0 * (expected - missing) / expected, 2),
                }
            )
    figures = {
        "symbols_checked": len(stored),
        "sessions_expected": expected_total,
        "sessions_missing": missing_total,
        "incomplete": incomplete,
    }
    if not incomplete:
        message = f"every session between each symbol's first and last stored date is there ({len(stored)} symbols)"
        return CheckResult("history_completeness", True, message, figures)
    shown = ", ".join(
        f"{item['symbol']} {item['completeness_pct']:g} % ({item['sessions_missing']} of {item['sessions_expected']} "
        f"sessions missing in {item['first_date']}..{item['last_date']})"
        for item in incomplete[:MISSING_SHOWN]
    )
    more = f" and {len(incomplete) - MISSING_SHOWN} more" if len(incomplete) > MISSING_SHOWN else ""
    message = f"{_plural(len(incomplete), 'symbol')} with holes in the stored history: {shown}{more}"
    return CheckResult("history_completeness", False, message, figures)


def check_validation_failures(
    warehouse: Warehouse,
    *,
    run_id: str | None = None,
    first: date | None = None,
    last: date | None = None,
    symbols: list[str] | None = None,
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE,
) -> CheckResult:
    """Is the share of rejected rows, quarantined / (loaded + quarantined), at most `max_failure_rate`?

    Counts the rows of one run (`run_id`), or else the rows dated `first`..`last` (for `symbols`).
    A quarantined row whose date could not be read ('' or garbage) has no date to match, so
    it is only counted by run.

    Args:
        warehouse: an open warehouse.
        run_id: count this run's rows (fact_daily_prices.run_id, quarantine_prices.run_id).
        first: without run_id, the first trade_date to count (inclusive).
        last: without run_id, the last trade_date to count (inclusive).
        symbols: without run_id, only these symbols (default: all).
        max_failure_rate: the highest acceptable share, 0.05 = 5 %.

    Returns:
        A "validation_failures" result with figures scope, rows_loaded, rows_quarantined,
        failure_rate_pct (None when there are no rows at all), max_failure_rate_pct and
        top_reasons (reason -> rows, the 5 most common).

    Raises:
        ValueError: neither run_id nor first and last were given.
    """
    if run_id is None and (first is None or last is None):
        raise ValueError("check_validation_failures needs a run_id, or first and last dates")
    prices = table_ref(warehouse, "fact_daily_prices")
    quarantine = table_ref(warehouse, "quarantine_prices")
    if run_id is not None:
        scope = f"run {run_id}"
        condition, price_params, quarantine_params = "run_id = ?", [run_id], [run_id]
    else:
        scope = f"trade dates {first}..{last}"
        symbol_condition, symbol_params = _symbols_condition(warehouse, symbols)
        condition = f"trade_date BETWEEN ? AND ? AND {symbol_condition}"
        price_params = [_date_param(warehouse, first), _date_param(warehouse, last), *symbol_params]
        # quarantine_prices.trade_date is text in both warehouses (the date as received).
        quarantine_params = [first.isoformat(), last.isoformat(), *symbol_params]

    loaded = int(warehouse.query(f"SELECT COUNT(*) AS n FROM {prices} WHERE {condition}", price_params)["n"].iloc[0])
    reasons = warehouse.query(
        f"SELECT reason, COUNT(*) AS n FROM {quarantine} WHERE {condition} GROUP BY reason",
        quarantine_params,
    )
    quarantined = int(reasons["n"].sum())
    top = reasons.sort_values(["n", "reason"], ascending=[False, True]).head(5)
    figures = {
        "scope": scope,
        "rows_loaded": loaded,
        "rows_quarantined": quarantined,
        "failure_rate_pct": None,
        "max_failure_rate_pct": round(100 * max_failure_rate, 2),
        "top_reasons": {str(row.reason): int(row.n) for row in top.itertuples()},
    }
    total = loaded + quarantined
    if total == 0:
        return CheckResult("validation_failures", True, f"no rows loaded or quarantined for {scope}", figures)

    rate = quarantined / total
    figures["failure_rate_pct"] = round(100 * rate, 2)
    message = (
        f"{quarantined} of {total} rows quarantined ({100 * rate:.2f} %, allowed {100 * max_failure_rate:g} %) "
        f"for {scope}"
    )
    return CheckResult("validation_failures", rate <= max_failure_rate, message, figures)


def check_row_count_drop(
    warehouse: Warehouse,
    session: date,
    *,
    symbols: list[str] | None = None,
    lookback_sessions: int = ROW_COUNT_LOOKBACK_SESSIONS,
    max_drop: float = DEFAULT_MAX_ROW_DROP,
) -> CheckResult:
    """Does `session` have at least (1 - max_drop) x the median row count of the sessions before it?

    The baseline is the median rows per session over the `lookback_sessions` NYSE sessions
    before `session` that have any rows (sessions with none say nothing about the usual size;
    the completeness check reports them).

    Args:
        warehouse: an open warehouse.
        session: the trading day to check.
        symbols: only count these symbols (default: all).
        lookback_sessions: how many earlier sessions make the baseline.
        max_drop: the largest acceptable drop, 0.5 = 50 % fewer rows than the median.

    Returns:
        A "row_count_drop" result with figures session, rows, median_previous (None without
        history), previous_sessions (how many earlier sessions had rows), drop_pct and max_drop_pct.
    """
    earlier = recent_sessions(session - timedelta(days=1), lookback_sessions)
    condition, symbol_params = _symbols_condition(warehouse, symbols)
    sql = (
        f"SELECT trade_date, COUNT(*) AS n FROM {table_ref(warehouse, 'fact_daily_prices')} "
        f"WHERE trade_date BETWEEN ? AND ? AND {condition} GROUP BY trade_date"
    )
    params = [_date_param(warehouse, earlier[0]), _date_param(warehouse, session), *symbol_params]
    counts = {str(row.trade_date)[:10]: int(row.n) for row in warehouse.query(sql, params).itertuples()}
    rows = counts.pop(session.isoformat(), 0)
    # Only real sessions make the baseline (a kept row on a holiday is not a "session").
    session_days = {day.isoformat() for day in earlier}
    counts = {day: n for day, n in counts.items() if day in session_days}
    figures = {
        "session": session.isoformat(),
        "rows": rows,
        "median_previous": None,
        "previous_sessions": len(counts),
        "drop_pct": None,
        "max_drop_pct": round(100 * max_drop, 2),
    }
    if not counts:
        message = f"{_plural(rows, 'row')} on {session}; no earlier sessions to compare"
        return CheckResult("row_count_drop", True, message, figures)

    median = statistics.median(counts.values())
    drop = 1 - rows / median
    figures["median_previous"] = float(median)
    figures["drop_pct"] = round(100 * drop, 2)
    ok = drop <= max_drop
    change = f"{100 * drop:.1f} % fewer" if drop > 0 else "no fewer"
    message = (
        f"{_plural(rows, 'row')} on {session}: {change} than the median {median:g} of the previous "
        f"{_plural(len(counts), 'session')}" + ("" if ok else f" (allowed drop {100 * max_drop:g} %)")
    )
    return CheckResult("row_count_drop", ok, message, figures)


def check_last_run(
    warehouse: Warehouse, now: datetime | None = None, *, max_duration_seconds: float = DEFAULT_MAX_RUN_SECONDS
) -> CheckResult:
    """Did the latest pipeline run (by started_at) succeed within `max_duration_seconds`?

    Of a cleared-and-recovered Airflow run, whose first try is kept as `<run_id>#try1` with the
    same started_at, the row that ended last is the run's outcome.

    A run that is still `running` passes until it has been running for longer than that
    (then it is probably stuck or its worker died).

    Args:
        warehouse: an open warehouse.
        now: the current time (aware; naive is UTC), to age a running run; default: the real time.
        max_duration_seconds: the longest acceptable run.

    Returns:
        A "last_run" result with figures run_id, logical_date, status, started_at, ended_at,
        duration_seconds (for a running run: seconds so far), symbols_failed, failed_symbols
        (symbol -> reason) and max_duration_seconds.
    """
    runs = table_ref(warehouse, "pipeline_runs")
    sql = (
        "SELECT run_id, logical_date, status, started_at, ended_at, duration_seconds, symbols_failed, "
        f"failed_symbols, error FROM {runs} ORDER BY started_at DESC, ended_at DESC LIMIT 1"
    )
    found = warehouse.query(sql)
    if found.empty:
        return CheckResult("last_run", False, "no pipeline run is recorded", {"run_id": None})

    run = {name: _plain(value) for name, value in found.iloc[0].items()}
    failed_symbols = json.loads(run["failed_symbols"]) if run["failed_symbols"] else {}
    figures = {
        "run_id": run["run_id"],
        "logical_date": str(run["logical_date"])[:10] if run["logical_date"] else None,
        "status": run["status"],
        "started_at": run["started_at"],
        "ended_at": run["ended_at"],
        "duration_seconds": run["duration_seconds"],
        "symbols_failed": int(run["symbols_failed"] or 0),
        "failed_symbols": failed_symbols,
        "max_duration_seconds": max_duration_seconds,
    }
    name = f"run {run['run_id']} (logical date {figures['logical_date']})"

    if run["status"] == "running":
        moment = pd.Timestamp(now if now is not None else datetime.now(UTC))
        moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment
        seconds = round((moment - pd.Timestamp(run["started_at"])).total_seconds(), 3)
        figures["duration_seconds"] = seconds
        if seconds > max_duration_seconds:
            message = f"{name} has been running for {seconds:g} s (longer than {max_duration_seconds:g} s): stuck?"
            return CheckResult("last_run", False, message, figures)
        return CheckResult("last_run", True, f"{name} is running ({seconds:g} s so far)", figures)

    duration = float(run["duration_seconds"] or 0)
    if run["status"] != "success":
        why = "; ".join(f"{symbol}: {reason}" for symbol, reason in sorted(failed_symbols.items()))
        detail = why or run["error"] or "no details recorded"
        message = f"{name} ended {run['status']} with {_plural(figures['symbols_failed'], 'failed symbol')}: {detail}"
        return CheckResult("last_run", False, message, figures)
    if duration > max_duration_seconds:
        message = f"{name} succeeded but took {duration:g} s (longer than {max_duration_seconds:g} s)"
        return CheckResult("last_run", False, message, figures)
    return CheckResult("last_run", True, f"{name} succeeded in {duration:g} s", figures)


# --- Entry points ----------------------------------------------------------------------------------


def _warehouse_errors() -> tuple[type[Exception], ...]:
    """The errors that mean "the warehouse cannot be read" for either backend.

    pandas reports a failed SQLite query (e.g. "no such table") as its own DatabaseError.
    """
    return (sqlite3.Error, pd.errors.DatabaseError, GoogleAPIError)


def run_health_checks(
    settings: Settings, *, now: datetime | None = None, symbols: list[str] | None = None
) -> list[CheckResult]:
    """Run every health check against the warehouse, as of `now`.

    The data should reach the session `DEFAULT_MAX_LAG_SESSIONS` before the latest completed one
    (the "due" session): completeness covers the COMPLETENESS_WINDOW_SESSIONS sessions up to it
    and the row-count check looks at it. The validation rate is the last run's.

    Args:
        settings: loaded settings (which warehouse).
        now: the moment to check at (aware; naive is UTC); default: the real time.
        symbols: the symbols that should be loaded (default: `settings.symbols`).

    Returns:
        Results in the order freshness, completeness, history_completeness, row_count_drop,
        validation_failures, last_run. When the warehouse cannot be read, one failed "warehouse" result instead.
    """
    symbols = list(symbols or settings.symbols)
    latest_session = latest_completed_session(now)
    due = recent_sessions(latest_session, DEFAULT_MAX_LAG_SESSIONS + 1)[0]
    window = recent_sessions(due, COMPLETENESS_WINDOW_SESSIONS)

    if settings.warehouse_backend == "sqlite" and not settings.sqlite_path.exists():
        # A health probe must not create an empty warehouse file as a side effect.
        message = f"the SQLite warehouse {settings.sqlite_path} does not exist yet (no pipeline run has loaded data)"
        return [CheckResult("warehouse", False, message, {"backend": "sqlite"})]
    try:
        # create=False: a health probe only reads (creating the schema takes the write lock).
        warehouse = open_warehouse(settings, create=False)
        try:
            last_run = check_last_run(warehouse, now)
            return [
                check_freshness(warehouse, latest_session, symbols=symbols),
                check_completeness(warehouse, symbols, window[0], window[-1]),
                check_history_completeness(warehouse, symbols),
                check_row_count_drop(warehouse, due, symbols=symbols),
                _last_run_validation(warehouse, last_run),
                last_run,
            ]
        finally:
            warehouse.close()
    except _warehouse_errors() as exc:
        logger.error("Health checks could not read the %s warehouse: %s", settings.warehouse_backend, exc)
        message = f"cannot read the {settings.warehouse_backend} warehouse: {redact(exc, settings.secrets())}"
        return [CheckResult("warehouse", False, message, {"backend": settings.warehouse_backend})]


def _last_run_validation(warehouse: Warehouse, last_run: CheckResult) -> CheckResult:
    """The validation-failure check for the run that `last_run` found (passes when there is none)."""
    run_id = last_run.figures.get("run_id")
    if run_id is None:
        return CheckResult("validation_failures", True, "no pipeline run to check", {"scope": None})
    return check_validation_failures(warehouse, run_id=run_id)


def run_pipeline_checks(symbols: list[str], logical_date: str, settings: Settings, run_id: str | None = None) -> dict:
    """The DAG's data-quality step: check the run's trading day; send one Slack alert if a check fails.

    Uses only the run's date, never the clock, so re-running an old date checks that date.
    The day is the logical date's session (the last session on or before it). Checks:
    freshness (the day itself is the latest loaded, lag 0), completeness (every symbol has
    the day), row-count drop on the day, and validation failures for the run (`run_id`) or,
    without one, for the day's rows.

    Args:
        symbols: the run's symbols.
        logical_date: the run's trading day, 'YYYY-MM-DD'.
        settings: loaded settings (warehouse, Slack webhook).
        run_id: the Airflow run id, when the caller has it.

    Returns:
        {"ok": bool, "checks": [{"name", "ok", "message", "figures"}, ...]}: small and
        JSON-ready (Airflow keeps it as XCom).
    """
    day = date.fromisoformat(str(logical_date)[:10])
    session = recent_sessions(day, 1)[0]
    warehouse = open_warehouse(settings)
    try:
        if run_id is not None:
            validation = check_validation_failures(warehouse, run_id=run_id)
        else:
            validation = check_validation_failures(warehouse, first=session, last=session, symbols=symbols)
        results = [
            check_freshness(warehouse, session, symbols=symbols, max_lag_sessions=0),
            check_completeness(warehouse, symbols, session, session),
            check_row_count_drop(warehouse, session, symbols=symbols),
            validation,
        ]
    finally:
        warehouse.close()

    checks = [result.to_dict() for result in results]
    ok = all(result.ok for result in results)
    for result in results:
        if not result.ok:
            logger.warning("Data quality check %s failed for %s: %s", result.name, session, result.message)
    if ok:
        logger.info("Data quality: all %d checks passed for %s (%d symbols)", len(results), session, len(symbols))
    else:
        send_data_quality_alert(settings, checks, run_id=run_id or "unknown", logical_date=logical_date)
    return {"ok": ok, "checks": checks}


def build_health_report(results: list[CheckResult]) -> dict:
    """The JSON document of the CLI's --json and the health endpoint.

    Returns:
        {"healthy": bool, "checks": [{"name", "ok", "message", "figures"}, ...]}
    """
    return {"healthy": all(result.ok for result in results), "checks": [result.to_dict() for result in results]}


def format_health_table(results: list[CheckResult]) -> str:
    """The results as a plain-text table (check, status, message) with a verdict line."""
    width = max(len("CHECK"), *(len(result.name) for result in results))
    lines = [f"{'CHECK':<{width}}  STATUS  MESSAGE"]
    for result in results:
        lines.append(f"{result.name:<{width}}  {'OK' if result.ok else 'FAIL':<6}  {result.message}")
    failed = [result.name for result in results if not result.ok]
    lines.append("")
    lines.append(f"UNHEALTHY: {', '.join(failed)} failed" if failed else "HEALTHY: every check passed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: run the health checks and print a table or JSON; 0 healthy, 1 unhealthy, 2 bad config."""
    parser = argparse.ArgumentParser(prog="python -m src.monitoring.health_checks", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--symbols", help="comma-separated symbols to expect (default: SYMBOLS from the settings)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        symbols = normalize_symbols(args.symbols) if args.symbols else None
    except (ConfigurationError, InvalidSymbolInputError) as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)

    results = run_health_checks(settings, symbols=symbols)
    if args.json:
        print(json.dumps(build_health_report(results), indent=2))
    else:
        print(format_health_table(results))
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
