"""Incremental loads see what a full load sees: flags, gaps and indicator restarts, on real prices.

Every case loads the same real (as-traded) history into two SQLite warehouses, once in one
full load and once piece by piece (the way daily runs arrive), and requires every table to be
identical, row for row, except the audit columns. The load is the pipeline's own
(`steps.load_prices` after `transform.transform_prices`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from src import steps
from src.config import load_settings
from src.market_calendar import sessions_between
from src.monitoring import health_checks
from src.storage.schema import AUDIT_COLUMNS, TABLES
from src.storage.warehouse import open_warehouse
from src.transformation.transform import transform_prices
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

MAX_GAP_SESSIONS = 10
DATA_TABLES = [name for name in TABLES if name != "pipeline_runs"]


def real_rows(symbol: str, first: str, last: str, without: tuple[str, ...] = ()) -> pd.DataFrame:
    """Real daily bars of one symbol (as traded) from first..last, leaving out some dates."""
    rows = load_bokeh_prices(symbol)
    rows = rows[(rows["trade_date"] >= first) & (rows["trade_date"] <= last) & ~rows["trade_date"].isin(without)]
    return rows.assign(source="file").reset_index(drop=True)


def load(db: Path, pieces: list[pd.DataFrame]) -> None:
    """Load each piece as one run, in order, the way the pipeline does."""
    settings = load_settings(env_file=db.parent / "none.env", overrides={"SQLITE_PATH": str(db)})
    warehouse = open_warehouse(settings)
    try:
        for number, piece in enumerate(pieces):
            clean, quarantine = transform_prices(piece, run_date=piece["trade_date"].max())
            steps.load_prices(warehouse, clean, quarantine, f"run-{number}", max_gap_sessions=MAX_GAP_SESSIONS)
    finally:
        warehouse.close()


def tables(db: Path) -> dict[str, pd.DataFrame]:
    """Every data table, ordered by its primary key, without the audit columns."""
    with sqlite3.connect(db) as conn:
        result = {}
        for name in DATA_TABLES:
            table = TABLES[name]
            columns = [column for column in table.column_names if column not in AUDIT_COLUMNS]
            sql = f"SELECT {', '.join(columns)} FROM {name} ORDER BY {', '.join(table.primary_key)}"
            result[name] = pd.read_sql_query(sql, conn)
        return result


def assert_same_warehouse(full: Path, incremental: Path) -> None:
    expected, actual = tables(full), tables(incremental)
    for name in DATA_TABLES:
        pd.testing.assert_frame_equal(actual[name], expected[name], check_exact=False, rtol=1e-9, obj=name)


def flags_of(db: Path, symbol: str) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT trade_date, quality_flags FROM fact_daily_prices WHERE symbol = ? AND quality_flags != ''",
            (symbol,),
        ).fetchall()
    return dict(rows)


def test_the_split_day_first_in_a_run_gets_the_flags_of_a_full_load(tmp_path):
    # MSFT split 2:1 on 2003-02-18 (real, unadjusted prices): the first row of the second run.
    history = real_rows("MSFT", "2000-03-01", "2003-12-31")
    load(tmp_path / "full.db", [history])
    before = history[history["trade_date"] <= "2003-02-14"]
    after = history[history["trade_date"] >= "2003-02-18"]
    load(tmp_path / "pieces.db", [before, after])

    assert flags_of(tmp_path / "pieces.db", "MSFT")["2003-02-18"] == "large_move,return_outlier"
    assert flags_of(tmp_path / "pieces.db", "MSFT") == flags_of(tmp_path / "full.db", "MSFT")
    assert_same_warehouse(tmp_path / "full.db", tmp_path / "pieces.db")


def test_one_session_runs_across_a_week_with_a_missing_session_equal_a_full_load(tmp_path):
    # 2012-07-05 is missing from the source: the row of 07-06 says so, in both warehouses.
    history = real_rows("IBM", "2011-06-01", "2012-07-13", without=("2012-07-05",))
    load(tmp_path / "full.db", [history])
    days = ["2012-07-09", "2012-07-10", "2012-07-11", "2012-07-12", "2012-07-13"]
    base = history[history["trade_date"] < "2012-07-06"]
    pieces = [base, history[history["trade_date"] == "2012-07-06"]]
    pieces += [history[history["trade_date"] == day] for day in days]
    load(tmp_path / "daily.db", pieces)

    assert flags_of(tmp_path / "daily.db", "IBM")["2012-07-06"] == "gap_before:1"
    assert_same_warehouse(tmp_path / "full.db", tmp_path / "daily.db")


def test_a_long_hole_restarts_the_indicators_and_a_short_one_is_bridged(tmp_path):
    # IBM without 30 sessions of 2012 (a long hole) and without 3 sessions of 2013 (a short one).
    long_hole = tuple(real_rows("IBM", "2012-05-01", "2012-06-12")["trade_date"])
    short_hole = ("2013-01-14", "2013-01-15", "2013-01-16")
    history = real_rows("IBM", "2011-01-03", "2013-03-01", without=long_hole + short_hole)
    load(tmp_path / "full.db", [history])
    pieces = [
        history[history["trade_date"] < "2012-06-13"],  # up to the hole
        history[history["trade_date"].between("2012-06-13", "2013-01-11")],  # from just after it
        history[history["trade_date"] > "2013-01-11"],  # from just after the short hole
    ]
    load(tmp_path / "pieces.db", pieces)
    assert_same_warehouse(tmp_path / "full.db", tmp_path / "pieces.db")

    with sqlite3.connect(tmp_path / "full.db") as conn:
        after_hole = pd.read_sql_query(
            "SELECT trade_date, sma_20, sma_200, rsi_14, vwap_20, daily_return FROM fact_technical_indicators "
            "WHERE symbol = 'IBM' AND trade_date >= '2012-06-13' ORDER BY trade_date",
            conn,
        )
        monthly = dict(
            conn.execute("SELECT period_start, period_return FROM agg_monthly_prices WHERE symbol = 'IBM'").fetchall()
        )
    flags = flags_of(tmp_path / "full.db", "IBM")
    assert flags["2012-06-13"] == f"gap_before:{len(long_hole)}"
    assert flags["2013-01-17"].startswith("gap_before:3")
    # After the long hole every indicator warms up again: NULL until its window fills.
    assert after_hole["daily_return"].iloc[0] is None or pd.isna(after_hole["daily_return"].iloc[0])
    assert after_hole["sma_20"].iloc[:19].isna().all() and after_hole["sma_20"].iloc[19:].notna().all()
    assert after_hole["vwap_20"].iloc[:19].isna().all()
    assert after_hole["rsi_14"].iloc[:14].isna().all() and after_hole["rsi_14"].iloc[14:].notna().all()
    assert after_hole["sma_200"].iloc[:199].isna().all()
    # June 2012 opens the new run of sessions: no return against May's close.
    assert pd.isna(monthly["2012-06-01"])
    # The short hole is bridged: the indicators continue through it.
    jan = after_hole.set_index("trade_date").loc["2013-01-17"]
    assert pd.notna(jan["daily_return"]) and pd.notna(jan["sma_20"]) and pd.notna(jan["rsi_14"])


# --- Completeness counts every session between a symbol's first and last stored date ----------


def completeness(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT symbol, sessions_expected, sessions_present, sessions_missing, completeness_pct "
            "FROM v_data_completeness"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_completeness_sees_a_six_month_hole_and_a_decade_between_two_loads(tmp_path):
    # IBM loaded for 2012 without Feb..Jul, then a second load of 2013 - in two runs, so only
    # the loaded days would be in dim_date if it were not kept gap-free.
    ibm_2012 = real_rows("IBM", "2012-01-03", "2012-12-31")
    hole = ibm_2012["trade_date"].between("2012-02-01", "2012-07-31")
    load(tmp_path / "hole.db", [ibm_2012[~hole & (ibm_2012["trade_date"] < "2012-02-01")], ibm_2012[~hole]])
    expected = len(ibm_2012)
    assert completeness(tmp_path / "hole.db")["IBM"] == (
        expected,
        expected - hole.sum(),
        hole.sum(),
        round(100 * (expected - hole.sum()) / expected, 2),
    )

    # The case: IBM 2012-13 and IBM 2025-26 in one warehouse: far from 99 % complete.
    db = tmp_path / "decade.db"
    early = real_rows("IBM", "2012-01-03", "2013-03-01")
    late = early.assign(trade_date=early["trade_date"].str.replace("2012", "2025").str.replace("2013", "2026"))
    late = late[
        late["trade_date"].isin([day.isoformat() for day in sessions_between(date(2025, 1, 2), date(2026, 3, 2))])
    ]
    load(db, [early, late])
    sessions, present, missing, pct = completeness(db)["IBM"]
    assert sessions == len(sessions_between(date(2012, 1, 3), date.fromisoformat(late["trade_date"].max())))
    assert present == len(early) + len(late)
    assert pct < 25.0


def test_the_health_check_cli_names_a_symbol_with_a_hole(tmp_path):
    ibm = real_rows("IBM", "2012-01-03", "2012-12-31")
    db = tmp_path / "hole.db"
    load(db, [ibm[~ibm["trade_date"].between("2012-06-01", "2012-06-30")]])
    settings = load_settings(env_file=tmp_path / "none.env", overrides={"SQLITE_PATH": str(db)})
    warehouse = open_warehouse(settings, create=False)
    try:
        result = health_checks.check_history_completeness(warehouse, ["IBM"])
    finally:
        warehouse.close()
    assert result.ok is False
    assert result.figures["incomplete"][0]["sessions_missing"] == 21  # June 2012 had 21 sessions
    assert "IBM" in result.message and "21 of 250 sessions missing" in result.message

    completed = subprocess.run(
        [sys.executable, "-m", "src.monitoring.health_checks", "--json", "--symbols", "IBM"],
        env={**os.environ, "PIPELINE_ENV_FILE": str(tmp_path / "none.env"), "SQLITE_PATH": str(db)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(completed.stdout)
    history = next(check for check in report["checks"] if check["name"] == "history_completeness")
    assert completed.returncode == 1
    assert history["ok"] is False and history["figures"]["sessions_missing"] == 21


def all_columns(db: Path) -> dict[str, pd.DataFrame]:
    """Every data table with every column, audit columns included, ordered by its primary key."""
    with sqlite3.connect(db) as conn:
        return {
            name: pd.read_sql_query(f"SELECT * FROM {name} ORDER BY {', '.join(TABLES[name].primary_key)}", conn)
            for name in DATA_TABLES
        }


def test_a_rerun_of_an_unchanged_range_skips_every_symbol_and_changes_nothing(tmp_path, caplog):
    db = tmp_path / "warehouse.db"
    pieces = [pd.concat([real_rows("IBM", "2011-06-01", "2012-12-31"), real_rows("MSFT", "2011-06-01", "2012-12-31")])]
    load(db, pieces)
    before = all_columns(db)
    caplog.set_level("INFO", logger="src.steps")
    load(db, pieces)  # the same rows again, as run-0 again
    assert "skips 2 symbols whose rows are stored unchanged" in caplog.text
    after = all_columns(db)
    for name in DATA_TABLES:
        pd.testing.assert_frame_equal(after[name], before[name], obj=name)


def test_a_rerun_with_one_changed_close_equals_a_full_load_of_the_changed_data(tmp_path, caplog):
    ibm = real_rows("IBM", "2011-06-01", "2012-12-31")
    msft = real_rows("MSFT", "2011-06-01", "2012-12-31")
    changed = msft.copy()
    day = changed["trade_date"] == "2012-09-14"
    corrected = float((changed.loc[day, "high"] + changed.loc[day, "low"]).iloc[0]) / 2  # a corrected print
    assert corrected != float(msft.loc[day, "close"].iloc[0])
    changed.loc[day, "close"] = corrected
    # The rerun: IBM's whole range unchanged (skipped), MSFT only from June 2012 on, with the
    # correction; its first date is later than IBM's, so the lookback is read again for it.
    rerun = pd.concat([ibm[ibm["trade_date"] >= "2012-01-03"], changed[changed["trade_date"] >= "2012-06-01"]])
    incremental, full = tmp_path / "incremental.db", tmp_path / "full.db"
    load(incremental, [pd.concat([ibm, msft])])
    caplog.set_level("INFO", logger="src.steps")
    load(incremental, [rerun])
    assert "skips 1 symbols whose rows are stored unchanged" in caplog.text
    load(full, [pd.concat([ibm, changed])])
    assert_same_warehouse(full, incremental)
    with sqlite3.connect(incremental) as conn:
        close = conn.execute(
            "SELECT close FROM fact_daily_prices WHERE symbol = 'MSFT' AND trade_date = '2012-09-14'"
        ).fetchone()[0]
    assert close == corrected
