"""The SQLite warehouse against real SQLite files: schema, upserts, rollback, reads, views, locking."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.storage import sqlite_bulk_load
from src.storage import sqlite_warehouse as wh
from src.storage.calendar_dim import build_dim_date
from src.storage.schema import LOOKBACK_COLUMNS, TABLES
from src.storage.views import VIEW_COLUMNS

PRICE_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source", "quality_flags"]

pytestmark = pytest.mark.integration

LOADED_AT = "2024-07-09T01:00:00+00:00"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "warehouse" / "warehouse.db"


@pytest.fixture
def conn(db_path):
    connection = wh.connect(db_path)
    wh.create_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def prices_2012(real_prices_4_symbols) -> pd.DataFrame:
    """Real AAPL, IBM and MSFT bars for 2012 (bokeh sample data), as the validator leaves them."""
    frame = real_prices_4_symbols[
        real_prices_4_symbols["symbol"].isin(["AAPL", "IBM", "MSFT"])
        & real_prices_4_symbols["trade_date"].between("2012-01-01", "2012-12-31")
    ]
    return frame.assign(source="file", quality_flags="", loaded_at=LOADED_AT, run_id="run-1").reset_index(drop=True)


def indicators_for(prices: pd.DataFrame) -> pd.DataFrame:
    """A few indicator columns computed from the prices with pandas (stand-ins for the indicators module)."""
    by_symbol = prices.groupby("symbol")["close"]
    return pd.DataFrame(
        {
            "symbol": prices["symbol"],
            "trade_date": prices["trade_date"],
            "sma_20": by_symbol.transform(lambda close: close.rolling(20).mean()),
            "daily_return": by_symbol.pct_change(),
            "loaded_at": LOADED_AT,
            "run_id": "run-1",
        }
    )


def snapshot(connection: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every table's full contents, ordered by primary key."""
    return {
        name: connection.execute(f"SELECT * FROM {name} ORDER BY {', '.join(table.primary_key)}").fetchall()
        for name, table in TABLES.items()
    }


def count_rows(connection: sqlite3.Connection, table: str) -> int:
    return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# --- Connection and schema ------------------------------------------------------------


def test_connect_creates_the_folder_and_sets_pipeline_pragmas(db_path):
    connection = wh.connect(db_path)
    try:
        assert db_path.parent.is_dir()
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert connection.isolation_level is None  # we open transactions ourselves
    finally:
        connection.close()


def test_create_schema_twice_keeps_data(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    wh.create_schema(conn)
    wh.create_schema(conn)
    assert count_rows(conn, "fact_daily_prices") == len(prices_2012)


def test_tables_columns_keys_indexes_and_views_match_the_definitions(conn):
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(TABLES)
    for name, table in TABLES.items():
        info = conn.execute(f"PRAGMA table_info({name})").fetchall()
        # (name, declared type, NOT NULL, position in the primary key (0 = not in it))
        actual = [(row[1], row[2], row[3], row[5]) for row in info]
        expected = [
            (
                column.name,
                wh.SQLITE_TYPES[column.type],
                0 if column.nullable else 1,
                table.primary_key.index(column.name) + 1 if column.name in table.primary_key else 0,
            )
            for column in table.columns
        ]
        assert actual == expected, name
    # A spot check written out by hand, in case the mapping itself were wrong.
    assert conn.execute("PRAGMA table_info(dim_date)").fetchall()[-1][1:6] == (
        "is_early_close",
        "INTEGER",
        0,
        None,
        0,
    )

    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "idx_fact_daily_prices_trade_date",
        "idx_fact_technical_indicators_trade_date",
        "idx_quarantine_prices_run_id",
        "idx_pipeline_runs_logical_date",
    } <= indexes

    for view, columns in VIEW_COLUMNS.items():
        cursor = conn.execute(f"SELECT * FROM {view}")
        assert tuple(d[0] for d in cursor.description) == columns


def test_create_schema_adds_a_column_new_in_schema_py(db_path):
    # An "old" warehouse whose pipeline_runs table predates the `error` column.
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    old.execute("CREATE TABLE pipeline_runs (run_id TEXT NOT NULL, status TEXT, PRIMARY KEY (run_id))")
    old.execute("INSERT INTO pipeline_runs VALUES ('old-run', 'success')")
    old.commit()
    old.close()

    connection = wh.connect(db_path)
    try:
        wh.create_schema(connection)
        columns = [row[1] for row in connection.execute("PRAGMA table_info(pipeline_runs)")]
        assert columns == ["run_id", "status"] + [
            name for name in TABLES["pipeline_runs"].column_names if name not in ("run_id", "status")
        ]
        assert connection.execute("SELECT run_id, status, error FROM pipeline_runs").fetchall() == [
            ("old-run", "success", None)
        ]
    finally:
        connection.close()


# --- load_batch ---------------------------------------------------------------------------


def test_loading_the_same_frames_three_times_changes_nothing(conn, prices_2012):
    quarantine = pd.DataFrame(
        {
            "symbol": ["AAPL"],
            "trade_date": ["2012-13-01"],
            "record_hash": ["3f2a"],
            "raw_record": ['{"date": "2012-13-01"}'],
            "reason": ["invalid_date"],
            "source": ["file"],
            "run_id": ["run-1"],
            "quarantined_at": [LOADED_AT],
        }
    )
    frames = {
        "fact_daily_prices": prices_2012,
        "fact_technical_indicators": indicators_for(prices_2012),
        "quarantine_prices": quarantine,
        "dim_date": build_dim_date("2012-01-01", "2012-12-31"),
        "pipeline_runs": pd.DataFrame([{"run_id": "run-1", "status": "success", "rows_loaded": len(prices_2012)}]),
    }
    expected_counts = {name: len(frame) for name, frame in frames.items()}

    assert wh.load_batch(conn, frames) == expected_counts
    first = snapshot(conn)
    for _ in range(2):
        assert wh.load_batch(conn, frames) == expected_counts
        assert snapshot(conn) == first
    assert {name: len(rows) for name, rows in first.items() if rows} == expected_counts
    assert len(first["fact_daily_prices"]) == 3 * 250  # 250 NYSE sessions in 2012, per symbol


def test_a_changed_value_replaces_the_stored_one(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    corrected = prices_2012.copy()
    row = corrected.index[(corrected["symbol"] == "IBM") & (corrected["trade_date"] == "2012-06-01")][0]
    corrected.loc[row, "close"] = 190.0
    corrected.loc[row, "source"] = "yahoo"

    wh.load_batch(conn, {"fact_daily_prices": corrected})

    assert count_rows(conn, "fact_daily_prices") == len(prices_2012)
    stored = wh.read_lookback(conn, ["AAPL", "IBM", "MSFT"], before="2012-01-01", rows=0)[PRICE_COLUMNS]
    assert_frame_equal(stored, corrected[PRICE_COLUMNS].sort_values(["symbol", "trade_date"], ignore_index=True))


def test_a_rerun_with_unchanged_data_keeps_the_first_runs_audit_columns(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    before = snapshot(conn)
    rerun = prices_2012.assign(run_id="run-2", loaded_at="2024-02-01T00:00:00+00:00")
    changed = rerun.index[(rerun["symbol"] == "IBM") & (rerun["trade_date"] == "2012-06-01")][0]
    rerun.loc[changed, "close"] = 190.0

    wh.load_batch(conn, {"fact_daily_prices": rerun})

    audit = wh.query(conn, "SELECT run_id, COUNT(*) AS n FROM fact_daily_prices GROUP BY run_id ORDER BY run_id")
    # Only the row whose close really changed takes the new run's id and time.
    assert audit.to_dict("records") == [{"run_id": "run-1", "n": len(prices_2012) - 1}, {"run_id": "run-2", "n": 1}]
    row = wh.query(
        conn,
        "SELECT close, loaded_at FROM fact_daily_prices WHERE symbol = ? AND trade_date = ?",
        ("IBM", "2012-06-01"),
    )
    assert row.to_dict("records") == [{"close": 190.0, "loaded_at": "2024-02-01T00:00:00+00:00"}]
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    assert snapshot(conn) == before


def test_columns_missing_from_a_frame_are_null_when_new_and_kept_when_stored(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012.head(2)})
    update = pd.DataFrame({"symbol": ["AAPL", "AAPL"], "trade_date": ["2012-01-03", "2099-01-02"], "close": [1.5, 2.5]})

    wh.load_batch(conn, {"fact_daily_prices": update})

    rows = conn.execute(
        "SELECT trade_date, open, close, volume, source FROM fact_daily_prices ORDER BY trade_date"
    ).fetchall()
    first = prices_2012.iloc[0]
    second = prices_2012.iloc[1]
    assert rows == [
        ("2012-01-03", first["open"], 1.5, first["volume"], "file"),
        ("2012-01-04", second["open"], second["close"], second["volume"], "file"),
        ("2099-01-02", None, 2.5, None, None),
    ]


def test_pandas_values_are_converted_to_sqlite_values(conn):
    prices = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA"],
            "trade_date": pd.to_datetime(["2024-07-01", "2024-07-02"]),
            "open": [1.25, float("nan")],
            "close": pd.array([2.5, None], dtype="Float64"),
            "volume": [1000.0, float("nan")],  # yfinance gives float volumes
            "source": ["yahoo", None],
            "loaded_at": pd.to_datetime(["2024-07-01 16:00", "2024-07-02 16:00"]).tz_localize("America/New_York"),
        }
    )
    days = build_dim_date("2024-07-03", "2024-07-04")
    wh.load_batch(conn, {"fact_daily_prices": prices, "dim_date": days})

    assert conn.execute(
        "SELECT trade_date, open, close, volume, typeof(volume), source, loaded_at "
        "FROM fact_daily_prices ORDER BY trade_date"
    ).fetchall() == [
        ("2024-07-01", 1.25, 2.5, 1000, "integer", "yahoo", "2024-07-01T20:00:00+00:00"),
        ("2024-07-02", None, None, None, "null", None, "2024-07-02T20:00:00+00:00"),
    ]
    assert conn.execute(
        "SELECT trade_date, is_trading_day, is_early_close, typeof(is_trading_day), week_of_year "
        "FROM dim_date ORDER BY trade_date"
    ).fetchall() == [("2024-07-03", 1, 1, "integer", 27), ("2024-07-04", 0, 0, "integer", 27)]


def test_a_fractional_volume_is_refused(conn):
    bad = pd.DataFrame({"symbol": ["AAA"], "trade_date": ["2024-07-01"], "volume": [10.5]})
    with pytest.raises(TypeError):
        wh.load_batch(conn, {"fact_daily_prices": bad})
    assert count_rows(conn, "fact_daily_prices") == 0


def test_unknown_tables_and_columns_and_missing_keys_are_refused_before_writing(conn, prices_2012):
    good = {"fact_daily_prices": prices_2012.head(3)}
    with pytest.raises(ValueError, match="column.*not in the schema: adj_close"):
        wh.load_batch(
            conn,
            {
                **good,
                "fact_technical_indicators": pd.DataFrame(columns=["symbol", "trade_date", "adj_close"]),
            },
        )
    with pytest.raises(ValueError, match="Unknown warehouse table 'prices'"):
        wh.load_batch(conn, {**good, "prices": prices_2012.head(3)})
    with pytest.raises(ValueError, match="lacks required column.*: reason"):
        wh.load_batch(
            conn,
            {
                **good,
                "quarantine_prices": pd.DataFrame(columns=["symbol", "trade_date", "record_hash", "source"]),
            },
        )
    assert count_rows(conn, "fact_daily_prices") == 0


def test_a_failure_mid_batch_rolls_back_every_table(conn, prices_2012):
    # A first batch that commits.
    wh.load_batch(conn, {"fact_daily_prices": prices_2012[prices_2012["symbol"] == "AAPL"]})
    before = snapshot(conn)

    # The second batch updates AAPL, inserts IBM and MSFT, then fails on the quarantine frame
    # (reason is NOT NULL): none of it may stay.
    changed_prices = prices_2012.assign(close=prices_2012["close"] + 1, run_id="run-2")
    broken_quarantine = pd.DataFrame(
        {
            "symbol": ["IBM", "IBM"],
            "trade_date": ["2012-01-03", "2012-01-04"],
            "record_hash": ["a1", "b2"],
            "reason": ["negative_price", None],
            "source": ["file", "file"],
        }
    )
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        wh.load_batch(
            conn,
            {
                "fact_daily_prices": changed_prices,
                "fact_technical_indicators": indicators_for(changed_prices),
                "quarantine_prices": broken_quarantine,
            },
        )

    assert snapshot(conn) == before
    assert not conn.in_transaction
    # The connection is still usable afterwards.
    assert wh.load_batch(conn, {"quarantine_prices": broken_quarantine.head(1)}) == {"quarantine_prices": 1}


# --- Reads ---------------------------------------------------------------------------------


def test_read_lookback_returns_the_last_rows_before_a_date_and_every_row_after(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    # RSI state stored for two IBM sessions only; the rest of the tail has no indicator row.
    rsi_state = pd.DataFrame(
        {
            "symbol": ["IBM", "IBM"],
            "trade_date": ["2012-06-27", "2012-06-28"],
            "rsi_avg_gain_14": [1.25, 1.5],
            "rsi_avg_loss_14": [0.75, 0.5],
        }
    )
    wh.load_batch(conn, {"fact_technical_indicators": rsi_state})

    lookback = wh.read_lookback(conn, ["MSFT", "IBM", "AAPL", "NODATA"], before="2012-06-29", rows=3)
    tail = lookback[lookback["trade_date"] < "2012-06-29"].reset_index(drop=True)
    after = lookback[lookback["trade_date"] >= "2012-06-29"].reset_index(drop=True)

    expected = prices_2012[prices_2012["trade_date"] < "2012-06-29"].groupby("symbol").tail(3)
    # Only the last row of a tail carries the RSI state (IBM's 2012-06-28): that is all the
    # incremental RSI uses, and skipping the others halves the pages read.
    expected = expected.merge(
        rsi_state[rsi_state["trade_date"] == "2012-06-28"], on=["symbol", "trade_date"], how="left"
    )
    expected = expected[LOOKBACK_COLUMNS].sort_values(["symbol", "trade_date"], ignore_index=True)
    assert_frame_equal(tail, expected)
    assert tail["trade_date"].tolist() == ["2012-06-26", "2012-06-27", "2012-06-28"] * 3
    assert tail["volume"].dtype == "int64" and tail["close"].dtype == "float64"
    # Every stored row on or after the date comes too (their indicators depend on new rows).
    later = prices_2012[prices_2012["trade_date"] >= "2012-06-29"]
    assert_frame_equal(
        after[PRICE_COLUMNS], later[PRICE_COLUMNS].sort_values(["symbol", "trade_date"], ignore_index=True)
    )
    assert after["rsi_avg_gain_14"].isna().all()


def test_read_lookback_with_fewer_rows_than_asked_and_nothing_stored(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012[prices_2012["trade_date"] < "2012-01-06"]})
    short = wh.read_lookback(conn, ["AAPL"], before="2012-01-06", rows=250)
    assert short["trade_date"].tolist() == ["2012-01-03", "2012-01-04", "2012-01-05"]
    empty = wh.read_lookback(conn, ["NODATA"], before="2012-01-06", rows=250)
    assert list(empty.columns) == LOOKBACK_COLUMNS and empty.empty
    assert wh.read_lookback(conn, ["AAPL"], before="2012-01-06", rows=0).empty
    assert wh.read_lookback(conn, [], before="2012-01-06", rows=250).empty
    with pytest.raises(ValueError, match="rows must be 0 or more"):
        wh.read_lookback(conn, ["AAPL"], before="2012-01-06", rows=-1)


def test_lookback_queries_walk_the_primary_key_index(conn, real_prices_4_symbols):
    # 11,958 real sessions; the plan must be an index search, never a scan or a sort.
    wh.load_batch(conn, {"fact_daily_prices": real_prices_4_symbols})
    conn.execute("ANALYZE")  # with statistics the planner could pick another index; it must not
    params = {"symbol": "AAPL", "before": "2012-01-01", "rows": 250, "trade_date": "2011-12-30"}

    def plan(sql: str) -> list[str]:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]

    # The fact tables are WITHOUT ROWID: the primary key is the table's own B-tree.
    assert plan(wh.LOOKBACK_TAIL_SQL) == ["SEARCH fact_daily_prices USING PRIMARY KEY (symbol=? AND trade_date<?)"]
    assert plan(wh.LOOKBACK_AFTER_SQL) == ["SEARCH fact_daily_prices USING PRIMARY KEY (symbol=? AND trade_date>?)"]
    assert plan(wh.RSI_STATE_SQL) == ["SEARCH fact_technical_indicators USING PRIMARY KEY (symbol=? AND trade_date=?)"]


def test_read_lookback_keeps_source_and_flags(conn, prices_2012):
    flagged = prices_2012.copy()
    flagged.loc[flagged["trade_date"] == "2012-03-01", "quality_flags"] = "zero_volume"
    wh.load_batch(conn, {"fact_daily_prices": flagged[flagged["trade_date"] <= "2012-03-02"]})

    result = wh.read_lookback(conn, ["MSFT", "AAPL"], before="2012-03-01", rows=0)

    expected = flagged[
        flagged["symbol"].isin(["AAPL", "MSFT"]) & flagged["trade_date"].between("2012-03-01", "2012-03-02")
    ]
    expected = expected[PRICE_COLUMNS].sort_values(["symbol", "trade_date"], ignore_index=True)
    assert_frame_equal(result[PRICE_COLUMNS], expected)
    assert result["quality_flags"].tolist() == ["zero_volume", "", "zero_volume", ""]


def test_query_takes_parameters(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    result = wh.query(conn, "SELECT COUNT(*) AS n FROM fact_daily_prices WHERE symbol = :symbol", {"symbol": "IBM"})
    assert result["n"].tolist() == [250]


# --- Views (crafted numbers so each signal is exact) ------------------------------------------


def crafted_prices(closes: dict[str, list[float]], dates: list[str]) -> pd.DataFrame:
    rows = [
        {
            "symbol": symbol,
            "trade_date": day,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1000,
        }
        for symbol, values in closes.items()
        for day, close in zip(dates, values, strict=True)
    ]
    return pd.DataFrame(rows).assign(source="file", quality_flags="")


def test_v_latest_signals(conn):
    dates = ["2024-07-01", "2024-07-02", "2024-07-03"]
    prices = crafted_prices(
        {
            "CROSSUP": [100, 105, 110],
            "CROSSDN": [100, 95, 90],
            "FLAT": [100, 100, 100],
            "NEW": [100, 100, 100],
        },
        dates,
    )
    columns = ["symbol", "trade_date", "sma_50", "sma_200", "rsi_14", "vwap_20"]
    indicators = pd.DataFrame(
        [
            ("CROSSUP", "2024-07-01", 98.0, 100.0, 60.0, 100.0),
            ("CROSSUP", "2024-07-02", 99.0, 100.0, 65.0, 100.0),
            ("CROSSUP", "2024-07-03", 101.0, 100.0, 75.0, 100.0),  # 50 crosses above 200 today
            ("CROSSDN", "2024-07-02", 101.0, 100.0, 35.0, 100.0),
            ("CROSSDN", "2024-07-03", 99.0, 100.0, 25.0, 100.0),  # 50 crosses below 200 today
            ("FLAT", "2024-07-01", 99.0, 100.0, 50.0, 100.0),  # crossed on the 2nd, not today
            ("FLAT", "2024-07-02", 102.0, 100.0, 50.0, 100.0),
            ("FLAT", "2024-07-03", 103.0, 100.0, 50.0, 100.0),
        ],
        columns=columns,
    )
    wh.load_batch(conn, {"fact_daily_prices": prices, "fact_technical_indicators": indicators})

    rows = conn.execute("SELECT * FROM v_latest_signals ORDER BY symbol").fetchall()

    # No adjusted columns loaded (no split known): adj_close is the close.
    assert rows == [
        ("CROSSDN", "2024-07-03", 90.0, 90.0, 25.0, "oversold", 99.0, 100.0, "death_cross", 100.0, "below", -10.0),
        (
            "CROSSUP",
            "2024-07-03",
            110.0,
            110.0,
            75.0,
            "overbought",
            101.0,
            100.0,
            "golden_cross",
            100.0,
            "above",
            10.0,
        ),
        ("FLAT", "2024-07-03", 100.0, 100.0, 50.0, "neutral", 103.0, 100.0, None, 100.0, "above", 0.0),
        ("NEW", "2024-07-03", 100.0, 100.0, None, None, None, None, None, None, None, None),  # no indicators yet
    ]
    one = wh.query(conn, "SELECT symbol, cross_signal FROM v_latest_signals WHERE symbol = ?", ("CROSSUP",))
    assert one.values.tolist() == [["CROSSUP", "golden_cross"]]


def test_v_daily_returns(conn):
    prices = crafted_prices(
        {"AAA": [100.0, 110.0, 99.0], "BBB": [50.0, 50.0, 55.0]}, ["2024-07-01", "2024-07-02", "2024-07-03"]
    )
    # BBB splits 2-for-1 on 2024-07-02: as traded 100 -> 50, on one share basis 50 -> 50.
    prices.loc[(prices["symbol"] == "BBB") & (prices["trade_date"] == "2024-07-01"), "close"] = 100.0
    prices["adj_close"] = prices["close"].where(
        ~((prices["symbol"] == "BBB") & (prices["trade_date"] == "2024-07-01")), 50.0
    )
    wh.load_batch(conn, {"fact_daily_prices": prices})

    rows = conn.execute("SELECT * FROM v_daily_returns ORDER BY symbol, trade_date").fetchall()

    assert rows == [
        ("AAA", "2024-07-01", 100.0, 100.0, None),
        ("AAA", "2024-07-02", 110.0, 110.0, 110.0 / 100.0 - 1),
        ("AAA", "2024-07-03", 99.0, 99.0, 99.0 / 110.0 - 1),
        ("BBB", "2024-07-01", 100.0, 50.0, None),
        ("BBB", "2024-07-02", 50.0, 50.0, 0.0),  # the split day is no -50 % return
        ("BBB", "2024-07-03", 55.0, 55.0, 55.0 / 50.0 - 1),
    ]


def test_v_data_completeness_counts_a_missing_session(conn):
    assert wh.ensure_dim_date(conn, "2024-07-01", "2024-07-08") == 8
    complete = crafted_prices(
        {"FULL": [1.0] * 5}, ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08"]
    )
    gappy = crafted_prices({"GAP": [1.0] * 3}, ["2024-07-01", "2024-07-02", "2024-07-05"])  # 07-03 missing
    wh.load_batch(conn, {"fact_daily_prices": pd.concat([complete, gappy])})

    rows = conn.execute("SELECT * FROM v_data_completeness ORDER BY symbol").fetchall()

    # 07-04 (holiday) and the weekend are not expected sessions.
    assert rows == [
        ("FULL", "2024-07-01", "2024-07-08", 5, 5, 0, 100.0),
        ("GAP", "2024-07-01", "2024-07-05", 4, 3, 1, 75.0),
    ]


# --- Run records and dimensions ---------------------------------------------------------------


def test_record_run_round_trip(conn):
    wh.record_run(
        conn,
        {
            "run_id": "manual__2024-07-02",
            "logical_date": "2024-07-02",
            "started_at": LOADED_AT,
            "status": "running",
        },
    )
    final = {
        "run_id": "manual__2024-07-02",
        "ended_at": "2024-07-09T01:02:03+00:00",
        "status": "partial",
        "symbols_requested": 3,
        "symbols_loaded": 2,
        "symbols_failed": 1,
        "failed_symbols": {"ZZZZ": "no data from alpha_vantage or yahoo"},
        "rows_loaded": 500,
        "rows_quarantined": 1,
        "rows_by_source": {"yahoo": 250, "alpha_vantage": 250},
        "duration_seconds": 12.5,
        "error": None,
    }
    wh.record_run(conn, final)

    stored = wh.query(conn, "SELECT * FROM pipeline_runs").iloc[0].to_dict()
    assert json.loads(stored.pop("failed_symbols")) == final["failed_symbols"]
    assert json.loads(stored.pop("rows_by_source")) == final["rows_by_source"]
    assert stored == {
        "run_id": "manual__2024-07-02",
        "logical_date": "2024-07-02",  # kept from the first call
        "started_at": LOADED_AT,
        "ended_at": "2024-07-09T01:02:03+00:00",
        "status": "partial",
        "symbols_requested": 3,
        "symbols_loaded": 2,
        "symbols_failed": 1,
        "rows_loaded": 500,
        "rows_quarantined": 1,
        "duration_seconds": 12.5,
        "error": None,
        "split_recomputes": None,
    }
    with pytest.raises(ValueError, match="not in the schema: rows"):
        wh.record_run(conn, {"run_id": "x", "rows": 1})


def trade_date_indexes(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%trade_date'")
    return {row[0] for row in rows}


def test_bulk_load_drops_the_trade_date_indexes_of_empty_tables_and_builds_them_after(conn, prices_2012):
    assert trade_date_indexes(conn) == {
        "idx_fact_daily_prices_trade_date",
        "idx_fact_technical_indicators_trade_date",
    }
    assert sqlite_bulk_load.drop_trade_date_indexes(conn) is True
    assert trade_date_indexes(conn) == set()
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    sqlite_bulk_load.build_trade_date_indexes(conn)
    assert len(trade_date_indexes(conn)) == 2
    # Rows are stored now: a second bulk load keeps the indexes (rebuilding would cost more).
    assert sqlite_bulk_load.drop_trade_date_indexes(conn) is False
    assert len(trade_date_indexes(conn)) == 2


def test_a_bulk_load_gives_the_same_tables_and_indexes_as_a_plain_load(tmp_path, prices_2012):
    plain = wh.connect(tmp_path / "plain.db")
    bulk = wh.connect(tmp_path / "bulk.db")
    for connection in (plain, bulk):
        wh.create_schema(connection)
    wh.load_batch(plain, {"fact_daily_prices": prices_2012})
    sqlite_bulk_load.drop_trade_date_indexes(bulk)
    wh.load_batch(bulk, {"fact_daily_prices": prices_2012})
    sqlite_bulk_load.build_trade_date_indexes(bulk)

    assert snapshot(bulk) == snapshot(plain)
    assert trade_date_indexes(bulk) == trade_date_indexes(plain)
    assert bulk.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    plain.close()
    bulk.close()


def test_a_bulk_load_that_stops_early_gets_its_indexes_back_at_the_next_open(db_path, conn, prices_2012):
    sqlite_bulk_load.drop_trade_date_indexes(conn)
    wh.load_batch(conn, {"fact_daily_prices": prices_2012})
    conn.close()  # the run died before build_trade_date_indexes

    reopened = wh.connect(db_path)
    wh.create_schema(reopened)  # what every open_warehouse does
    assert len(trade_date_indexes(reopened)) == 2
    reopened.close()


def test_refresh_dim_symbol_keeps_known_details(conn, prices_2012):
    wh.load_batch(conn, {"fact_daily_prices": prices_2012[prices_2012["symbol"].isin(["AAPL", "IBM"])]})
    wh.load_batch(conn, {"dim_symbol": pd.DataFrame([{"symbol": "AAPL", "name": "Apple Inc.", "exchange": "NASDAQ"}])})

    wh.refresh_dim_symbol(conn, ["AAPL", "IBM", "NODATA"], {"AAPL": "yahoo", "IBM": "alpha_vantage"})
    wh.refresh_dim_symbol(conn, ["IBM"])  # no source given: the stored one stays

    rows = conn.execute(
        "SELECT symbol, name, exchange, currency, first_trade_date, last_trade_date, source "
        "FROM dim_symbol ORDER BY symbol"
    ).fetchall()
    assert rows == [
        ("AAPL", "Apple Inc.", "NASDAQ", "USD", "2012-01-03", "2012-12-31", "yahoo"),
        ("IBM", None, None, "USD", "2012-01-03", "2012-12-31", "alpha_vantage"),
    ]
    updated_at = conn.execute("SELECT updated_at FROM dim_symbol WHERE symbol = 'IBM'").fetchone()[0]
    assert pd.Timestamp(updated_at).tzname() == "UTC"


def sqlite_steps(connection: sqlite3.Connection, action) -> int:
    """How many SQLite virtual-machine instructions `action()` runs.

    A count of work done, unlike a timing the same on any machine: it shows whether a query
    reads a few index entries or every row of a symbol.
    """
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # 0 = carry on

    connection.set_progress_handler(count, 1)
    try:
        action()
    finally:
        connection.set_progress_handler(None, 1)
    return steps


def test_refresh_dim_symbol_costs_the_same_for_a_short_and_a_long_history(tmp_path, real_prices_4_symbols):
    # The daily run refreshes every symbol's first/last date; on a 20-year warehouse that must
    # not mean reading 20 years of rows per symbol (docs/benchmarks.md, daily incremental).
    aapl = real_prices_4_symbols[real_prices_4_symbols["symbol"] == "AAPL"]
    steps = {}
    for name, rows in {"short": aapl.tail(20), "long": aapl}.items():
        connection = wh.connect(tmp_path / f"{name}.db")
        wh.create_schema(connection)
        wh.load_batch(connection, {"fact_daily_prices": rows})
        steps[name] = sqlite_steps(
            connection, lambda c=connection: wh.refresh_dim_symbol(c, ["AAPL"], {"AAPL": "file"})
        )
        stored = connection.execute("SELECT first_trade_date, last_trade_date FROM dim_symbol").fetchone()
        assert stored == (rows["trade_date"].min(), rows["trade_date"].max())
        connection.close()

    assert len(aapl) > 3000
    assert steps["long"] <= steps["short"] * 1.2


def test_ensure_dim_date_is_idempotent(conn):
    assert wh.ensure_dim_date(conn, "2024-11-25", "2024-12-01") == 7
    assert wh.ensure_dim_date(conn, "2024-11-28", "2024-12-03") == 6
    rows = conn.execute(
        "SELECT trade_date, is_trading_day, is_early_close FROM dim_date ORDER BY trade_date"
    ).fetchall()
    assert [row[0] for row in rows] == [f"2024-11-{day}" for day in range(25, 31)] + [
        "2024-12-01",
        "2024-12-02",
        "2024-12-03",
    ]
    assert rows[3:5] == [("2024-11-28", 0, 0), ("2024-11-29", 1, 1)]


# --- Two writers --------------------------------------------------------------------------------


def one_row(symbol: str, close: float) -> pd.DataFrame:
    return pd.DataFrame({"symbol": [symbol], "trade_date": ["2024-07-01"], "close": [close]})


def test_a_second_writer_waits_for_the_first_then_succeeds(conn, db_path):
    conn.execute("BEGIN IMMEDIATE")  # the first writer holds the write lock...
    conn.execute("INSERT INTO fact_daily_prices (symbol, trade_date, close) VALUES ('FIRST', '2024-07-01', 1.0)")
    outcome = {}

    def second_writer():
        other = wh.connect(db_path, busy_timeout_seconds=10)
        started = time.monotonic()
        try:
            outcome["written"] = wh.load_batch(other, {"fact_daily_prices": one_row("SECOND", 2.0)})
        except sqlite3.Error as exc:  # pragma: no cover - reported by the assertion below
            outcome["error"] = exc
        outcome["waited"] = time.monotonic() - started
        other.close()

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(0.3)  # ...for a moment, while the second writer waits on it
    conn.execute("COMMIT")
    thread.join(timeout=10)

    assert "error" not in outcome
    assert outcome["written"] == {"fact_daily_prices": 1}
    assert outcome["waited"] >= 0.25
    assert conn.execute("SELECT symbol, close FROM fact_daily_prices ORDER BY symbol").fetchall() == [
        ("FIRST", 1.0),
        ("SECOND", 2.0),
    ]


def test_a_writer_locked_out_beyond_the_timeout_gets_a_clear_error(conn, db_path):
    conn.execute("BEGIN IMMEDIATE")
    impatient = wh.connect(db_path, busy_timeout_seconds=0.1)
    try:
        with pytest.raises(wh.WarehouseLockedError, match="warehouse.db is locked") as caught:
            wh.load_batch(impatient, {"fact_daily_prices": one_row("LATE", 1.0)})
        assert isinstance(caught.value, sqlite3.OperationalError)
        assert "0.1 s" in str(caught.value) and "rerun" in str(caught.value)
    finally:
        impatient.close()
        conn.execute("ROLLBACK")
    assert count_rows(conn, "fact_daily_prices") == 0


def upsert_repeatedly(db_path, frame: pd.DataFrame, rounds: int, start) -> None:
    """Run in a child process: wait for the start signal, then load the same frame `rounds` times."""
    connection = wh.connect(db_path)
    start.wait(timeout=60)
    for _ in range(rounds):
        wh.load_batch(connection, {"fact_daily_prices": frame})
    connection.close()


def test_two_processes_upserting_the_same_rows_leave_no_duplicates(db_path, prices_2012):
    setup = wh.connect(db_path)
    wh.create_schema(setup)
    setup.close()
    # The same 750 keys from two writers that disagree on close and run_id.
    frames = [
        prices_2012.assign(run_id="writer-a"),
        prices_2012.assign(run_id="writer-b", close=prices_2012["close"] * 2),
    ]

    # fork starts the children at once ("spawn" would re-import pandas in each); no connection
    # is open in this process at fork time, as SQLite requires.
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=upsert_repeatedly, args=(db_path, frame, 3, start)) for frame in frames]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]

    check = wh.connect(db_path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert count_rows(check, "fact_daily_prices") == len(prices_2012)
        # Each batch is one transaction, so the table holds exactly one writer's whole batch.
        winners = check.execute("SELECT DISTINCT run_id FROM fact_daily_prices").fetchall()
        assert len(winners) == 1
        winner = frames[0] if winners[0][0] == "writer-a" else frames[1]
        stored = wh.read_lookback(check, ["AAPL", "IBM", "MSFT"], before="2012-01-01", rows=0)[PRICE_COLUMNS]
        assert_frame_equal(stored, winner[PRICE_COLUMNS].sort_values(["symbol", "trade_date"], ignore_index=True))
    finally:
        check.close()
