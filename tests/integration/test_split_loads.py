"""A split learned late rewrites the symbol's history once, and ends exactly where a full load ends.

Real as-traded AAPL and MSFT prices (bokeh sample data) go through the pipeline's own transform
and load (`transform.transform_prices`, `steps.load_prices`) into real SQLite files. Split dates:
AAPL 2-for-1 on 2000-06-21 and 2005-02-28, MSFT 2-for-1 on 2003-02-18 (public records; see
tests/unit/test_splits.py).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from src import steps
from src.config import load_settings
from src.storage import sqlite_warehouse
from src.storage.schema import AUDIT_COLUMNS, TABLES
from src.storage.warehouse import open_warehouse
from src.transformation.transform import transform_prices
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

DATA_TABLES = [name for name in TABLES if name not in ("pipeline_runs", "dim_symbol")]
SPLITS = pd.DataFrame(
    {
        "symbol": ["AAPL", "AAPL", "MSFT"],
        "effective_date": ["2000-06-21", "2005-02-28", "2003-02-18"],
        "split_factor": [2.0, 2.0, 2.0],
        "source": ["file", "file", "file"],
    }
)


def real_rows(symbols: tuple[str, ...], first: str, last: str) -> pd.DataFrame:
    rows = pd.concat([load_bokeh_prices(symbol) for symbol in symbols], ignore_index=True)
    rows = rows[(rows["trade_date"] >= first) & (rows["trade_date"] <= last)]
    return rows.assign(source="file").reset_index(drop=True)


def load(db: Path, runs: list[tuple[pd.DataFrame, pd.DataFrame | None]]) -> list[steps.Loaded]:
    """Load each (prices, split events) pair as one run, in order."""
    settings = load_settings(env_file=db.parent / "none.env", overrides={"SQLITE_PATH": str(db)})
    warehouse = open_warehouse(settings)
    results = []
    try:
        for number, (piece, splits) in enumerate(runs):
            clean, quarantine = transform_prices(piece, run_date=piece["trade_date"].max())
            results.append(steps.load_prices(warehouse, clean, quarantine, f"run-{number}", splits=splits))
    finally:
        warehouse.close()
    return results


def tables(db: Path, audit: bool = False) -> dict[str, pd.DataFrame]:
    """Every data table ordered by its primary key (without the audit columns unless asked)."""
    with sqlite3.connect(db) as conn:
        result = {}
        for name in DATA_TABLES:
            table = TABLES[name]
            columns = [column for column in table.column_names if audit or column not in AUDIT_COLUMNS]
            sql = f"SELECT {', '.join(columns)} FROM {name} ORDER BY {', '.join(table.primary_key)}"
            result[name] = pd.read_sql_query(sql, conn)
        return result


def assert_same_warehouse(expected_db: Path, actual_db: Path) -> None:
    expected, actual = tables(expected_db), tables(actual_db)
    for name in DATA_TABLES:
        pd.testing.assert_frame_equal(actual[name], expected[name], check_exact=False, rtol=1e-12, obj=name)


def test_a_split_learned_in_a_later_daily_run_gives_the_warehouse_of_a_full_load(tmp_path):
    history = real_rows(("AAPL", "MSFT"), "2004-01-02", "2005-03-31")
    known_from_start = load(tmp_path / "full.db", [(history, SPLITS)])
    assert known_from_start[0].split_recomputes == {}  # a first load has nothing to recompute

    before = history[history["trade_date"] < "2005-03-01"]
    daily = [
        history[history["trade_date"] == day] for day in sorted(history["trade_date"].unique()) if day >= "2005-03-01"
    ]
    # The history arrives first without AAPL's 2005 split (the source had not reported it);
    # the event arrives with the first daily run after it.
    runs = [(before, SPLITS[SPLITS["effective_date"] != "2005-02-28"])]
    runs += [(day, SPLITS) for day in daily]
    results = load(tmp_path / "late.db", runs)

    assert results[1].split_recomputes == {"AAPL": ["2005-02-28"]}
    assert all(result.split_recomputes == {} for result in results[2:])  # once only
    assert_same_warehouse(tmp_path / "full.db", tmp_path / "late.db")
    with sqlite3.connect(tmp_path / "late.db") as conn:
        adj_close = conn.execute(
            "SELECT adj_close FROM fact_daily_prices WHERE symbol = 'AAPL' AND trade_date = '2005-02-25'"
        ).fetchone()
        assert adj_close == (88.99 / 2,)
        assert conn.execute(
            "SELECT quality_flags FROM fact_daily_prices WHERE symbol = 'AAPL' AND trade_date = '2005-02-28'"
        ).fetchone() == ("split",)


def test_a_rerun_with_nothing_new_changes_nothing(tmp_path):
    history = real_rows(("AAPL",), "2005-01-03", "2005-06-30")
    load(tmp_path / "w.db", [(history, SPLITS)])
    first = tables(tmp_path / "w.db", audit=True)

    results = load(tmp_path / "w.db", [(history.tail(5), SPLITS), (history, SPLITS)])

    assert [result.split_recomputes for result in results] == [{}, {}]
    second = tables(tmp_path / "w.db", audit=True)
    for name in DATA_TABLES:
        pd.testing.assert_frame_equal(second[name], first[name], obj=name)


def test_a_warehouse_file_from_before_splits_gains_the_columns_and_loads(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        # fact_daily_prices as the previous schema created it, with one stored row.
        conn.execute(
            "CREATE TABLE fact_daily_prices (symbol TEXT NOT NULL, trade_date TEXT NOT NULL, open REAL, high REAL, "
            "low REAL, close REAL, volume INTEGER, source TEXT, quality_flags TEXT, loaded_at TEXT, run_id TEXT, "
            "PRIMARY KEY (symbol, trade_date)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO fact_daily_prices VALUES ('AAPL', '2005-02-25', 89.6, 89.8, 88.8, 88.99, 16348400, "
            "'file', '', '2024-01-01T00:00:00+00:00', 'old')"
        )
    history = real_rows(("AAPL",), "2005-02-01", "2005-03-31")

    load(db, [(history, SPLITS)])

    conn = sqlite_warehouse.connect(db)
    try:
        row = sqlite_warehouse.query(
            conn, "SELECT close, adj_close FROM fact_daily_prices WHERE symbol = 'AAPL' AND trade_date = '2005-02-25'"
        )
        assert row.to_dict("records") == [{"close": 88.99, "adj_close": 88.99 / 2}]
        assert len(sqlite_warehouse.read_splits(conn, ["AAPL"])) == 2
    finally:
        conn.close()


# --- Through the whole pipeline (file source, CLI runner): the splits file beside the prices -------


def write_offline(folder: Path, symbol: str, first: str, last: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = real_rows((symbol,), first, last).rename(columns={"trade_date": "date"})
    rows[["date", "open", "high", "low", "close", "volume"]].to_csv(folder / f"{symbol}.csv", index=False)


def pipeline_settings(tmp_path: Path, data_dir: Path):
    return load_settings(
        env_file=tmp_path / "none.env",
        overrides={
            "SQLITE_PATH": str(tmp_path / "warehouse.db"),
            "STATE_DIR": str(tmp_path / "state"),
            "FILE_SOURCE_DIR": str(data_dir),
            "DATA_SOURCES": "file",
            "S3_BUCKET": "",
            "SLACK_WEBHOOK_URL": "",
            "PREPARE_IN_BACKGROUND": "false",
        },
    )


def test_a_bad_splits_file_fails_its_symbol_with_a_clear_reason_and_writes_nothing_of_it(tmp_path):
    data_dir = tmp_path / "offline"
    write_offline(data_dir, "AAPL", "2005-02-01", "2005-03-31")
    write_offline(data_dir, "MSFT", "2005-02-01", "2005-03-31")
    (data_dir / "AAPL.splits.csv").write_text("effective_date,split_factor\n2005-02-28,0\n")
    settings = pipeline_settings(tmp_path, data_dir)

    summary = steps.run_pipeline(["AAPL", "MSFT"], date(2005, 2, 1), date(2005, 3, 31), settings, show_progress=False)

    assert summary.loaded == ["MSFT"]
    assert "AAPL.splits.csv: row 1: split_factor '0' is not a number above 0" in summary.failed["AAPL"]
    with sqlite3.connect(tmp_path / "warehouse.db") as conn:
        for table in ("fact_daily_prices", "fact_technical_indicators", "agg_weekly_prices", "fact_splits"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE symbol = 'AAPL'").fetchone() == (0,), table


def test_the_pipeline_records_the_recompute_when_a_splits_file_gains_a_split(tmp_path, slack_catcher):
    data_dir = tmp_path / "offline"
    write_offline(data_dir, "AAPL", "2005-01-03", "2005-03-31")
    settings = dataclasses.replace(pipeline_settings(tmp_path, data_dir), slack_webhook_url=slack_catcher.url)
    steps.run_pipeline(["AAPL"], date(2005, 1, 3), date(2005, 2, 25), settings, show_progress=False)

    (data_dir / "AAPL.splits.csv").write_text("effective_date,split_factor\n2000-06-21,2\n2005-02-28,2\n")
    summary = steps.run_pipeline(["AAPL"], date(2005, 2, 28), date(2005, 2, 28), settings, show_progress=False)
    again = steps.run_pipeline(["AAPL"], date(2005, 3, 1), date(2005, 3, 1), settings, show_progress=False)

    assert summary.split_recomputes == {"AAPL": ["2000-06-21", "2005-02-28"]}
    assert again.split_recomputes == {}
    notices = [payload["text"] for payload in slack_catcher.payloads()]
    assert len(notices) == 1  # one notice, for the run that learned the splits
    assert "AAPL: split(s) on 2000-06-21, 2005-02-28" in notices[0]
    with sqlite3.connect(tmp_path / "warehouse.db") as conn:
        recorded = conn.execute(
            "SELECT split_recomputes FROM pipeline_runs WHERE run_id = ?", (summary.run_id,)
        ).fetchone()
        assert json.loads(recorded[0]) == {"AAPL": ["2000-06-21", "2005-02-28"]}
        assert conn.execute(
            "SELECT close, adj_close FROM fact_daily_prices WHERE symbol = 'AAPL' AND trade_date = '2005-02-25'"
        ).fetchone() == (88.99, 88.99 / 2)


def test_a_yahoo_history_across_a_split_is_stored_as_traded_and_adjusted_once(tmp_path):
    """Yahoo serves split-adjusted prices: the warehouse must hold what a file of as-traded prices gives."""
    real = real_rows(("AAPL",), "2004-06-01", "2005-06-30")
    aapl_split = SPLITS[(SPLITS["symbol"] == "AAPL") & (SPLITS["effective_date"] == "2005-02-28")].assign(
        source="yahoo"
    )
    # What yfinance returns for these days: every price before 2005-02-28 halved, volume doubled.
    before = real["trade_date"] < "2005-02-28"
    yahoo = real.assign(source="yahoo")
    for column in ("open", "high", "low", "close"):
        yahoo.loc[before, column] = real.loc[before, column] / 2
    yahoo.loc[before, "volume"] = real.loc[before, "volume"] * 2

    load(tmp_path / "file.db", [(real, aapl_split.assign(source="file"))])
    load(tmp_path / "yahoo.db", [(yahoo, aapl_split)])

    expected, actual = tables(tmp_path / "file.db"), tables(tmp_path / "yahoo.db")
    prices = ["open", "high", "low", "close", "volume", "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"]
    pd.testing.assert_frame_equal(
        actual["fact_daily_prices"][prices], expected["fact_daily_prices"][prices], check_exact=False, rtol=1e-12
    )
    stored = actual["fact_daily_prices"].set_index("trade_date")
    assert stored.loc["2005-02-25", "close"] == pytest.approx(88.99)  # as traded, not Yahoo's 44.495
    assert stored.loc["2005-02-25", "adj_close"] == pytest.approx(88.99 / 2)  # divided once
    assert stored.loc["2005-02-28", "quality_flags"] == "split"
