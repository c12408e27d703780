"""The health checks against real SQLite warehouses in crafted states, with exact figures.

Prices are real (AAPL, GOOG, IBM, MSFT daily bars from bokeh-sampledata, 2012), so the
calendar cases are real ones too: the 2012-07-03 early close, Independence Day, Hurricane
Sandy closing the exchange on 2012-10-29/30. For 2024 dates the rows come from the project's
synthetic generator and are labelled `synthetic`, as everywhere else.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from src import steps
from src.config import PROJECT_ROOT, Settings, load_settings
from src.local_stack.synthetic_data import synthetic_prices
from src.market_calendar import latest_completed_session, recent_sessions, sessions_between
from src.monitoring import health_checks
from src.monitoring.dashboard import build_dashboard
from src.monitoring.health_checks import (
    check_completeness,
    check_freshness,
    check_last_run,
    check_row_count_drop,
    check_validation_failures,
    run_health_checks,
    run_pipeline_checks,
)
from src.storage import sqlite_warehouse
from src.storage.warehouse import open_warehouse
from src.transformation.transform import transform_prices
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

NEW_YORK = ZoneInfo("America/New_York")
SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT"]
CHECK_NAMES = ["freshness", "completeness", "history_completeness", "row_count_drop", "validation_failures", "last_run"]


def new_york(*args) -> datetime:
    """A New York wall-clock time, e.g. new_york(2012, 7, 5, 10, 0)."""
    return datetime(*args, tzinfo=NEW_YORK)


# --- Building warehouse states -----------------------------------------------------------------


def make_settings(tmp_path, **overrides: str) -> Settings:
    """Settings for one test: its own SQLite file, the four sample symbols, no Slack."""
    values = {
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "SYMBOLS": ",".join(SYMBOLS),
        "SLACK_WEBHOOK_URL": "",
        "STATE_DIR": str(tmp_path / "state"),
        **overrides,
    }
    return load_settings(env_file=tmp_path / "no.env", overrides=values)


def real_rows(first: str, last: str, symbols=SYMBOLS, without: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """Real daily bars of `symbols` from first to last (inclusive), minus the (symbol, date) pairs `without`."""
    frame = pd.concat([load_bokeh_prices(symbol) for symbol in symbols], ignore_index=True)
    frame = frame[frame["trade_date"].between(first, last)]
    drop = frame[["symbol", "trade_date"]].apply(tuple, axis=1).isin(set(without))
    return frame[~drop].assign(source="file", quality_flags="").reset_index(drop=True)


def synthetic_rows(symbol: str, first: str, last: str) -> pd.DataFrame:
    """The project's synthetic demo bars for one symbol on the NYSE sessions first..last (labelled synthetic)."""
    sessions = pd.DatetimeIndex(
        [pd.Timestamp(day) for day in sessions_between(date.fromisoformat(first), date.fromisoformat(last))]
    )
    frame = synthetic_prices(symbol, sessions).rename(columns={"date": "trade_date"})
    return frame.assign(symbol=symbol, source="synthetic", quality_flags="")


def load_prices(settings: Settings, frame: pd.DataFrame, run_id: str = "run-1") -> None:
    """Upsert price rows into the settings' SQLite warehouse (creating its schema)."""
    conn = sqlite_warehouse.connect(settings.sqlite_path)
    try:
        sqlite_warehouse.create_schema(conn)
        rows = frame.assign(run_id=run_id, loaded_at="2012-07-06T22:40:00+00:00")
        sqlite_warehouse.load_batch(conn, {"fact_daily_prices": rows})
    finally:
        conn.close()


def record_runs(settings: Settings, *runs: dict) -> None:
    """Write pipeline_runs rows into the settings' SQLite warehouse."""
    conn = sqlite_warehouse.connect(settings.sqlite_path)
    try:
        sqlite_warehouse.create_schema(conn)
        for run in runs:
            sqlite_warehouse.record_run(conn, run)
    finally:
        conn.close()


def success_run(run_id: str, logical_date: str, started_at: str, duration_seconds: float = 120.0) -> dict:
    """A pipeline_runs row for a run that loaded all four symbols."""
    return {
        "run_id": run_id,
        "logical_date": logical_date,
        "started_at": started_at,
        "ended_at": started_at,
        "status": "success",
        "symbols_requested": 4,
        "symbols_loaded": 4,
        "symbols_failed": 0,
        "failed_symbols": {},
        "duration_seconds": duration_seconds,
    }


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def warehouse(settings):
    """The settings' warehouse, open (schema created), closed after the test."""
    opened = open_warehouse(settings)
    yield opened
    opened.close()


# --- freshness --------------------------------------------------------------------------------------


def test_freshness_counts_sessions_not_days(settings, warehouse):
    load_prices(settings, real_rows("2012-06-01", "2012-07-03"))

    # 10:00 on 2012-07-05: 07-04 was a holiday and 07-03 closed at 13:00, so 07-03 is the latest.
    fresh = check_freshness(warehouse, latest_completed_session(new_york(2012, 7, 5, 10, 0)))
    assert fresh.ok is True
    assert fresh.figures == {
        "latest_loaded": "2012-07-03",
        "latest_session": "2012-07-03",
        "lag_sessions": 0,
        "max_lag_sessions": 1,
    }
    assert fresh.message == "up to date: latest loaded 2012-07-03 (latest completed session 2012-07-03)"

    # Monday 2012-07-09 after the close: 07-05, 07-06 and 07-09 are missing.
    stale = check_freshness(warehouse, latest_completed_session(new_york(2012, 7, 9, 17, 0)))
    assert stale.ok is False
    assert stale.figures["lag_sessions"] == 3
    assert stale.message == "latest loaded 2012-07-03 is 3 sessions behind 2012-07-09 (allowed: 1)"


def test_freshness_of_some_symbols_only(settings, warehouse):
    load_prices(
        settings, real_rows("2012-06-25", "2012-07-03", without=(("GOOG", "2012-07-02"), ("GOOG", "2012-07-03")))
    )

    goog = check_freshness(warehouse, date(2012, 7, 3), symbols=["GOOG"])
    every = check_freshness(warehouse, date(2012, 7, 3), max_lag_sessions=0)

    assert (goog.ok, goog.figures["latest_loaded"], goog.figures["lag_sessions"]) == (False, "2012-06-29", 2)
    assert (every.ok, every.figures["latest_loaded"], every.figures["lag_sessions"]) == (True, "2012-07-03", 0)


@pytest.mark.parametrize(
    ("loaded_through", "now", "latest_session", "lag", "ok"),
    [
        # Independence Day 2024: a Thursday; the day before closed early at 13:00.
        ("2024-07-03", new_york(2024, 7, 5, 10, 0), "2024-07-03", 0, True),
        ("2024-07-02", new_york(2024, 7, 5, 10, 0), "2024-07-03", 1, True),
        # The day after Thanksgiving closes at 13:00: complete at 14:00, not at 12:00.
        ("2024-11-27", new_york(2024, 11, 29, 12, 0), "2024-11-27", 0, True),
        ("2024-11-27", new_york(2024, 11, 29, 14, 0), "2024-11-29", 1, True),
        ("2024-11-26", new_york(2024, 11, 29, 14, 0), "2024-11-29", 2, False),
        # A weekend adds no lag: Saturday and Monday morning both expect Friday.
        ("2024-07-05", new_york(2024, 7, 6, 12, 0), "2024-07-05", 0, True),
        ("2024-07-03", new_york(2024, 7, 8, 9, 0), "2024-07-05", 1, True),
        ("2024-07-03", new_york(2024, 7, 8, 16, 30), "2024-07-08", 2, False),
    ],
)
def test_freshness_around_holidays_early_closes_and_weekends(
    settings, warehouse, loaded_through, now, latest_session, lag, ok
):
    load_prices(settings, synthetic_rows("AAPL", "2024-06-03", loaded_through))

    result = check_freshness(warehouse, latest_completed_session(now))

    assert result.figures == {
        "latest_loaded": loaded_through,
        "latest_session": latest_session,
        "lag_sessions": lag,
        "max_lag_sessions": 1,
    }
    assert result.ok is ok


def test_freshness_fails_on_an_empty_warehouse(warehouse):
    result = check_freshness(warehouse, date(2024, 7, 3))
    assert result.ok is False
    assert result.message == "no prices are loaded yet"
    assert result.figures["lag_sessions"] is None


# --- completeness -------------------------------------------------------------------------------------


def test_completeness_lists_the_missing_pairs(settings, warehouse):
    gaps = (("IBM", "2012-07-03"), ("MSFT", "2012-07-05"), ("MSFT", "2012-07-06"))
    load_prices(settings, real_rows("2012-06-25", "2012-07-06", without=gaps))

    result = check_completeness(warehouse, SYMBOLS, date(2012, 6, 25), date(2012, 7, 6))

    assert result.ok is False
    assert result.figures == {
        "first_session": "2012-06-25",
        "last_session": "2012-07-06",
        "sessions": 9,  # two weeks minus the weekend days and Independence Day
        "symbols": 4,
        "pairs_expected": 36,
        "pairs_missing": 3,
        "missing": ["IBM 2012-07-03", "MSFT 2012-07-05", "MSFT 2012-07-06"],
    }
    assert result.message == (
        "3 of 36 symbol-sessions missing in 4 symbols x 9 sessions (2012-06-25..2012-07-06): "
        "IBM 2012-07-03, MSFT 2012-07-05, MSFT 2012-07-06"
    )


def test_completeness_message_is_bounded_but_figures_are_complete(settings, warehouse):
    gaps = (("IBM", "2012-07-03"), ("MSFT", "2012-07-05"), ("MSFT", "2012-07-06"))
    load_prices(settings, real_rows("2012-06-25", "2012-07-06", without=gaps))

    # NVDA is expected but was never loaded: 9 more missing pairs.
    result = check_completeness(warehouse, [*SYMBOLS, "NVDA"], date(2012, 6, 25), date(2012, 7, 6))

    assert result.figures["pairs_expected"] == 45
    assert result.figures["missing"] == [
        "NVDA 2012-06-25",
        "NVDA 2012-06-26",
        "NVDA 2012-06-27",
        "NVDA 2012-06-28",
        "NVDA 2012-06-29",
        "NVDA 2012-07-02",
        "IBM 2012-07-03",
        "NVDA 2012-07-03",
        "MSFT 2012-07-05",
        "NVDA 2012-07-05",
        "MSFT 2012-07-06",
        "NVDA 2012-07-06",
    ]
    assert result.message.endswith("MSFT 2012-07-05, NVDA 2012-07-05 and 2 more")


def test_completeness_expects_no_rows_when_the_exchange_was_closed(settings, warehouse):
    # Hurricane Sandy closed the NYSE on 2012-10-29 and 2012-10-30; the real data has no rows then.
    load_prices(settings, real_rows("2012-10-22", "2012-11-02"))

    sandy = check_completeness(warehouse, SYMBOLS, date(2012, 10, 26), date(2012, 11, 1))
    weekend = check_completeness(warehouse, SYMBOLS, date(2012, 10, 27), date(2012, 10, 28))

    assert sandy.ok is True
    assert (sandy.figures["sessions"], sandy.figures["pairs_expected"], sandy.figures["pairs_missing"]) == (3, 12, 0)
    assert sandy.message == "all 12 pairs present: 4 symbols x 3 sessions (2012-10-26..2012-11-01)"
    assert weekend.ok is True
    assert weekend.message == "no sessions or symbols to check in 2012-10-27..2012-10-28"


# --- validation failures ------------------------------------------------------------------------------


def load_through_the_pipeline(settings: Settings, run_id: str) -> None:
    """Real bars 2012-07-02..07-06 through transform + load, with IBM's close on 07-05 broken to 'N/A'."""
    raw = real_rows("2012-07-02", "2012-07-06").drop(columns="quality_flags")
    raw["close"] = raw["close"].astype(object)
    raw.loc[(raw["symbol"] == "IBM") & (raw["trade_date"] == "2012-07-05"), "close"] = "N/A"
    clean, quarantine = transform_prices(raw, run_date="2012-07-06")
    warehouse = open_warehouse(settings)
    try:
        steps.load_prices(warehouse, clean, quarantine, run_id, "2012-07-06T22:40:00+00:00")
    finally:
        warehouse.close()


def test_validation_failure_rate_of_a_run(settings, warehouse):
    load_through_the_pipeline(settings, "scheduled__2012-07-06")

    strict = check_validation_failures(warehouse, run_id="scheduled__2012-07-06")
    lenient = check_validation_failures(warehouse, run_id="scheduled__2012-07-06", max_failure_rate=0.10)

    assert strict.ok is False
    assert strict.figures == {
        "scope": "run scheduled__2012-07-06",
        "rows_loaded": 15,
        "rows_quarantined": 1,
        "failure_rate_pct": 6.25,
        "max_failure_rate_pct": 5.0,
        "top_reasons": {"non_numeric:close": 1},
    }
    assert strict.message == "1 of 16 rows quarantined (6.25 %, allowed 5 %) for run scheduled__2012-07-06"
    assert lenient.ok is True


def test_validation_failure_rate_of_dates(settings, warehouse):
    load_through_the_pipeline(settings, "scheduled__2012-07-06")

    broken_day = check_validation_failures(warehouse, first=date(2012, 7, 5), last=date(2012, 7, 5), symbols=SYMBOLS)
    clean_day = check_validation_failures(warehouse, first=date(2012, 7, 2), last=date(2012, 7, 2))
    other_symbols = check_validation_failures(
        warehouse, first=date(2012, 7, 5), last=date(2012, 7, 5), symbols=["AAPL"]
    )

    assert (broken_day.ok, broken_day.figures["rows_loaded"], broken_day.figures["rows_quarantined"]) == (False, 3, 1)
    assert broken_day.figures["failure_rate_pct"] == 25.0
    assert (clean_day.ok, clean_day.figures["rows_loaded"], clean_day.figures["failure_rate_pct"]) == (True, 4, 0.0)
    assert (other_symbols.ok, other_symbols.figures["rows_loaded"], other_symbols.figures["rows_quarantined"]) == (
        True,
        1,
        0,
    )


def test_validation_failure_rate_without_rows_passes(warehouse):
    result = check_validation_failures(warehouse, run_id="never-ran")
    assert result.ok is True
    assert result.message == "no rows loaded or quarantined for run never-ran"
    assert result.figures["failure_rate_pct"] is None


# --- row-count drop --------------------------------------------------------------------------------------


def test_row_count_drop_against_the_median_of_previous_sessions(settings, warehouse):
    # On 2012-07-06 only AAPL arrived; the 20 sessions before had all four symbols.
    load_prices(
        settings,
        real_rows(
            "2012-06-01", "2012-07-06", without=(("GOOG", "2012-07-06"), ("IBM", "2012-07-06"), ("MSFT", "2012-07-06"))
        ),
    )

    dropped = check_row_count_drop(warehouse, date(2012, 7, 6))
    usual = check_row_count_drop(warehouse, date(2012, 7, 5))
    aapl_only = check_row_count_drop(warehouse, date(2012, 7, 6), symbols=["AAPL"])
    first_day = check_row_count_drop(warehouse, date(2012, 6, 1))

    assert dropped.ok is False
    assert dropped.figures == {
        "session": "2012-07-06",
        "rows": 1,
        "median_previous": 4.0,
        "previous_sessions": 20,
        "drop_pct": 75.0,
        "max_drop_pct": 50.0,
    }
    assert dropped.message == (
        "1 row on 2012-07-06: 75.0 % fewer than the median 4 of the previous 20 sessions (allowed drop 50 %)"
    )
    assert usual.ok is True
    assert usual.message == "4 rows on 2012-07-05: no fewer than the median 4 of the previous 20 sessions"
    assert (aapl_only.ok, aapl_only.figures["rows"], aapl_only.figures["median_previous"]) == (True, 1, 1.0)
    assert first_day.ok is True
    assert first_day.message == "4 rows on 2012-06-01; no earlier sessions to compare"


def test_row_count_drop_of_exactly_the_limit_passes(settings, warehouse):
    load_prices(
        settings, real_rows("2012-06-01", "2012-07-06", without=(("IBM", "2012-07-06"), ("MSFT", "2012-07-06")))
    )
    result = check_row_count_drop(warehouse, date(2012, 7, 6))
    assert (result.ok, result.figures["rows"], result.figures["drop_pct"]) == (True, 2, 50.0)


# --- last run ------------------------------------------------------------------------------------------------


def test_last_run_without_any_run_fails(warehouse):
    result = check_last_run(warehouse, new_york(2012, 7, 6, 19, 0))
    assert (result.ok, result.message, result.figures) == (False, "no pipeline run is recorded", {"run_id": None})


def test_last_run_success(settings, warehouse):
    record_runs(settings, success_run("scheduled__2012-07-06", "2012-07-06", "2012-07-06T22:30:00+00:00"))

    result = check_last_run(warehouse, new_york(2012, 7, 6, 19, 0))

    assert result.ok is True
    assert result.message == "run scheduled__2012-07-06 (logical date 2012-07-06) succeeded in 120 s"
    assert result.figures == {
        "run_id": "scheduled__2012-07-06",
        "logical_date": "2012-07-06",
        "status": "success",
        "started_at": "2012-07-06T22:30:00+00:00",
        "ended_at": "2012-07-06T22:30:00+00:00",
        "duration_seconds": 120.0,
        "symbols_failed": 0,
        "failed_symbols": {},
        "max_duration_seconds": 7200,
    }


def test_last_run_partial_names_the_failed_symbols(settings, warehouse):
    partial = {
        **success_run("scheduled__2012-07-09", "2012-07-09", "2012-07-09T22:30:00+00:00"),
        "status": "partial",
        "symbols_loaded": 3,
        "symbols_failed": 1,
        "failed_symbols": {"IBM": "no data from any source"},
    }
    # The older successful run is not the latest one.
    record_runs(settings, success_run("scheduled__2012-07-06", "2012-07-06", "2012-07-06T22:30:00+00:00"), partial)

    result = check_last_run(warehouse, new_york(2012, 7, 9, 19, 0))

    assert result.ok is False
    assert result.message == (
        "run scheduled__2012-07-09 (logical date 2012-07-09) ended partial with 1 failed symbol: "
        "IBM: no data from any source"
    )
    assert result.figures["failed_symbols"] == {"IBM": "no data from any source"}


def test_last_run_running_passes_until_it_is_stuck(settings, warehouse):
    running = {
        "run_id": "scheduled__2012-07-10",
        "logical_date": "2012-07-10",
        "started_at": "2012-07-10T22:30:00+00:00",
        "status": "running",
    }
    record_runs(settings, running)

    half_an_hour = check_last_run(warehouse, datetime(2012, 7, 10, 23, 0, tzinfo=UTC))
    too_long = check_last_run(warehouse, datetime(2012, 7, 11, 0, 30, 1, tzinfo=UTC))

    assert half_an_hour.ok is True
    assert half_an_hour.message == "run scheduled__2012-07-10 (logical date 2012-07-10) is running (1800 s so far)"
    assert too_long.ok is False
    assert too_long.figures["duration_seconds"] == 7201.0
    assert too_long.message.endswith("has been running for 7201 s (longer than 7200 s): stuck?")


def test_last_run_that_took_too_long_fails(settings, warehouse):
    record_runs(settings, success_run("slow", "2012-07-06", "2012-07-06T22:30:00+00:00", duration_seconds=9000.0))
    result = check_last_run(warehouse, new_york(2012, 7, 7, 12, 0))
    assert result.ok is False
    assert result.message == "run slow (logical date 2012-07-06) succeeded but took 9000 s (longer than 7200 s)"


# --- run_health_checks --------------------------------------------------------------------------------------


def healthy_2012_warehouse(settings: Settings) -> None:
    """Four symbols loaded through 2012-07-03 by a successful run."""
    load_prices(settings, real_rows("2012-06-01", "2012-07-03"), run_id="scheduled__2012-07-03")
    record_runs(settings, success_run("scheduled__2012-07-03", "2012-07-03", "2012-07-03T22:30:00+00:00"))


def test_run_health_checks_healthy(settings):
    healthy_2012_warehouse(settings)

    results = run_health_checks(settings, now=new_york(2012, 7, 5, 10, 0))

    assert [result.name for result in results] == CHECK_NAMES
    assert [result.ok for result in results] == [True] * 6, [result.message for result in results]
    by_name = {result.name: result.figures for result in results}
    # One session of lag is allowed, so the due session is 07-02 and the window ends there.
    assert (by_name["completeness"]["first_session"], by_name["completeness"]["last_session"]) == (
        "2012-06-26",
        "2012-07-02",
    )
    assert by_name["row_count_drop"]["session"] == "2012-07-02"
    assert by_name["validation_failures"]["scope"] == "run scheduled__2012-07-03"
    assert by_name["validation_failures"]["rows_loaded"] == 92  # 23 sessions x 4 symbols


def test_run_health_checks_unhealthy_when_runs_stopped(settings):
    healthy_2012_warehouse(settings)

    # A week later nothing new was loaded: 07-05, 07-06 and 07-09 are missing.
    results = run_health_checks(settings, now=new_york(2012, 7, 10, 10, 0))
    by_name = {result.name: result for result in results}

    assert [result.name for result in results if not result.ok] == ["freshness", "completeness", "row_count_drop"]
    assert by_name["freshness"].figures["lag_sessions"] == 3
    assert by_name["completeness"].figures["pairs_missing"] == 8  # 07-05 and 07-06, 4 symbols each
    assert by_name["row_count_drop"].figures == {
        "session": "2012-07-06",
        "rows": 0,
        "median_previous": 4.0,
        "previous_sessions": 19,  # of the 20 sessions before 07-06, 07-05 has no rows: no baseline
        "drop_pct": 100.0,
        "max_drop_pct": 50.0,
    }


def test_run_health_checks_without_a_warehouse_file(settings):
    results = run_health_checks(settings, now=new_york(2012, 7, 5, 10, 0))
    assert [(result.name, result.ok) for result in results] == [("warehouse", False)]
    assert "does not exist yet" in results[0].message
    assert not settings.sqlite_path.exists()  # the probe did not create it


def test_run_health_checks_on_a_file_without_the_schema(settings):
    conn = sqlite3.connect(settings.sqlite_path)
    conn.execute("CREATE TABLE something_else (x INTEGER)")
    conn.close()

    results = run_health_checks(settings, now=new_york(2012, 7, 5, 10, 0))

    assert [(result.name, result.ok) for result in results] == [("warehouse", False)]
    assert results[0].message.startswith("cannot read the sqlite warehouse: ")
    assert "no such table" in results[0].message


# --- run_pipeline_checks (the DAG's data-quality step) ---------------------------------------------------------


def test_pipeline_checks_pass_without_an_alert(tmp_path, slack_catcher):
    settings = make_settings(tmp_path, SLACK_WEBHOOK_URL=slack_catcher.url)
    load_prices(settings, real_rows("2012-06-01", "2012-07-06"), run_id="scheduled__2012-07-06")

    outcome = run_pipeline_checks(SYMBOLS, "2012-07-06", settings, run_id="scheduled__2012-07-06")

    assert outcome["ok"] is True
    assert [check["name"] for check in outcome["checks"]] == [
        "freshness",
        "completeness",
        "row_count_drop",
        "validation_failures",
    ]
    assert json.loads(json.dumps(outcome)) == outcome  # fits in an XCom as it is
    assert slack_catcher.alerts() == []


def test_pipeline_checks_alert_once_when_a_symbol_is_missing(tmp_path, slack_catcher):
    settings = make_settings(tmp_path, SLACK_WEBHOOK_URL=slack_catcher.url)
    load_prices(settings, real_rows("2012-06-01", "2012-07-06", without=(("MSFT", "2012-07-06"),)))

    # Saturday 2012-07-07 means Friday's session; no run_id: the validation check counts the day's rows.
    outcome = run_pipeline_checks(SYMBOLS, "2012-07-07", settings)

    checks = {check["name"]: check for check in outcome["checks"]}
    assert outcome["ok"] is False
    assert [name for name, check in checks.items() if not check["ok"]] == ["completeness"]
    assert checks["completeness"]["figures"]["missing"] == ["MSFT 2012-07-06"]
    assert checks["freshness"]["figures"]["latest_session"] == "2012-07-06"
    assert checks["validation_failures"]["figures"]["scope"] == "trade dates 2012-07-06..2012-07-06"
    payloads = slack_catcher.payloads()
    assert len(payloads) == 1
    assert payloads[0]["text"].startswith("Data quality: 1 of 4 checks failed (run unknown, logical date 2012-07-07).")
    assert "MSFT 2012-07-06" in payloads[0]["text"]


# --- The CLI ---------------------------------------------------------------------------------------------------


def cli_environment(settings: Settings, tmp_path) -> dict:
    """Environment for the CLI subprocess: this test's warehouse and symbols, no .env, no Slack."""
    return {
        **os.environ,
        "PIPELINE_ENV_FILE": str(tmp_path / "no.env"),
        "SQLITE_PATH": str(settings.sqlite_path),
        "SYMBOLS": ",".join(SYMBOLS),
        "SLACK_WEBHOOK_URL": "",
        "LOG_LEVEL": "WARNING",
    }


def test_cli_json_reports_an_unhealthy_warehouse_and_exits_1(settings, tmp_path):
    healthy_2012_warehouse(settings)  # healthy in 2012, years stale by the real clock

    finished = subprocess.run(
        [sys.executable, "-m", "src.monitoring.health_checks", "--json"],
        cwd=PROJECT_ROOT,
        env=cli_environment(settings, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 1, finished.stderr
    report = json.loads(finished.stdout)  # exactly one JSON document
    assert report["healthy"] is False
    assert [check["name"] for check in report["checks"]] == CHECK_NAMES
    freshness = report["checks"][0]
    assert freshness["ok"] is False
    assert freshness["figures"]["latest_loaded"] == "2012-07-03"
    assert freshness["figures"]["latest_session"] == latest_completed_session().isoformat()
    assert set(report["checks"][0]) == {"name", "ok", "message", "figures"}


def test_cli_table_is_healthy_with_data_up_to_today(settings, tmp_path, monkeypatch, capsys):
    # Synthetic demo rows (labelled so) up to the real latest completed session, and a good run.
    latest = latest_completed_session()
    first = recent_sessions(latest, 25)[0]
    frames = [synthetic_rows(symbol, first.isoformat(), latest.isoformat()) for symbol in SYMBOLS]
    load_prices(settings, pd.concat(frames, ignore_index=True), run_id="scheduled__today")
    started = datetime.now(UTC).replace(microsecond=0).isoformat()
    record_runs(settings, success_run("scheduled__today", latest.isoformat(), started))
    for name, value in cli_environment(settings, tmp_path).items():
        monkeypatch.setenv(name, value)

    exit_code = health_checks.main([])

    output = capsys.readouterr().out
    assert exit_code == 0, output
    assert output.splitlines()[0].split() == ["CHECK", "STATUS", "MESSAGE"]
    assert [line.split()[1] for line in output.splitlines()[1:6]] == ["OK"] * 5
    assert output.rstrip().endswith("HEALTHY: every check passed")


def test_cli_rejects_a_bad_symbol_with_exit_2(settings, tmp_path, monkeypatch, capsys):
    for name, value in cli_environment(settings, tmp_path).items():
        monkeypatch.setenv(name, value)
    assert health_checks.main(["--symbols", "AAPL,../etc"]) == 2
    assert "Configuration error" in capsys.readouterr().err


# --- BigQuery: the same checks, the same figures ----------------------------------------------------------


def test_bigquery_gives_the_same_results_as_sqlite(settings, bq_settings, tmp_path):
    """Every check's SQL runs on BigQuery (bqemulator) and gives exactly the SQLite result.

    The dashboard's queries run there too.
    """
    gaps = (("IBM", "2012-07-03"), ("MSFT", "2012-07-06"), ("GOOG", "2012-07-06"))
    prices = real_rows("2012-06-01", "2012-07-06", without=gaps).assign(
        run_id="scheduled__2012-07-06", loaded_at="2012-07-06T22:40:00+00:00"
    )
    quarantined = pd.DataFrame(
        {
            "symbol": ["IBM"],
            "trade_date": ["2012-07-03"],
            "record_hash": ["9d5e3f1c"],
            "raw_record": ['{"symbol": "IBM", "trade_date": "2012-07-03", "close": "N/A"}'],
            "reason": ["non_numeric:close"],
            "source": ["file"],
            "run_id": ["scheduled__2012-07-06"],
        }
    )
    run = success_run("scheduled__2012-07-06", "2012-07-06", "2012-07-06T22:30:00+00:00")
    now = new_york(2012, 7, 9, 10, 0)

    results = {}
    for backend, backend_settings in (("sqlite", settings), ("bigquery", bq_settings)):
        warehouse = open_warehouse(backend_settings)
        try:
            warehouse.load_batch({"fact_daily_prices": prices, "quarantine_prices": quarantined})
            warehouse.record_run(run)
            results[backend] = [
                check_freshness(warehouse, latest_completed_session(now), symbols=["AAPL", "GOOG"]),
                check_completeness(warehouse, SYMBOLS, date(2012, 7, 2), date(2012, 7, 6)),
                check_row_count_drop(warehouse, date(2012, 7, 6), symbols=SYMBOLS),
                check_validation_failures(warehouse, run_id="scheduled__2012-07-06"),
                check_validation_failures(warehouse, first=date(2012, 7, 3), last=date(2012, 7, 3), symbols=SYMBOLS),
                check_last_run(warehouse, now),
            ]
        finally:
            warehouse.close()

    assert [result.to_dict() for result in results["bigquery"]] == [result.to_dict() for result in results["sqlite"]]
    assert [result.ok for result in results["sqlite"]] == [True, False, True, True, False, True]
    assert results["sqlite"][1].figures["missing"] == ["IBM 2012-07-03", "GOOG 2012-07-06", "MSFT 2012-07-06"]

    page = build_dashboard(bq_settings, tmp_path / "dashboard.html", now=now).read_text(encoding="utf-8")
    assert [symbol for symbol in SYMBOLS if f'id="symbol-{symbol}"' in page] == SYMBOLS
    assert f"BigQuery {bq_settings.gcp_project_id}.{bq_settings.bigquery_dataset}" in page
