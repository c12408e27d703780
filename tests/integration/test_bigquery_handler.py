"""The BigQuery warehouse against a real local BigQuery API (bqemulator), with real prices.

Every test gets its own dataset (`bq_settings`), so tests never see each other's rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.storage.bigquery_handler import (
    BigQueryLoadError,
    connect,
    create_schema,
    ensure_dim_date,
    load_batch,
    query,
    read_lookback,
    record_run,
    refresh_dim_symbol,
)
from src.storage.calendar_dim import build_dim_date
from src.storage.schema import LOOKBACK_COLUMNS, TABLES, Column
from src.storage.views import VIEW_COLUMNS, VIEWS
from src.transformation.indicators_vectorised import compute_indicators
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

LOADED_AT = "2024-07-03T22:15:00+00:00"
PRICE_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source", "quality_flags"]
# Written out here on purpose, independently of the module's own mapping.
EXPECTED_BIGQUERY_TYPE = {
    "STRING": "STRING",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "FLOAT": "FLOAT64",
    "INTEGER": "INT64",
    "BOOLEAN": "BOOL",
}


@pytest.fixture
def warehouse(bq_settings):
    """A connected warehouse with its schema created, in a dataset of its own."""
    wh = connect(bq_settings)
    create_schema(wh)
    yield wh
    wh.close()


def read_prices(wh, symbols: list[str], start: str, end: str) -> pd.DataFrame:
    """The stored price rows of `symbols` from `start` to `end` (through read_lookback, rows=0)."""
    rows = read_lookback(wh, symbols, before=start, rows=0)
    return rows.loc[rows["trade_date"] <= end, PRICE_COLUMNS].reset_index(drop=True)


def validated_prices(symbol: str, first: str, last: str) -> pd.DataFrame:
    """Real daily bars of `symbol` from `first` to `last`, as the validator hands them to the load."""
    prices = load_bokeh_prices(symbol)
    prices = prices[(prices["trade_date"] >= first) & (prices["trade_date"] <= last)]
    return prices.assign(source="file", quality_flags="", loaded_at=LOADED_AT, run_id="run-2024-07-03")


def stored_table(wh, name: str, order_by: str) -> pd.DataFrame:
    return query(wh, f"SELECT * FROM `{wh.table_id(name)}` ORDER BY {order_by}")


def table_names(wh) -> list[str]:
    return sorted(table.table_id for table in wh.client.list_tables(wh.dataset))


def nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as plain Python objects with None for every missing value (whatever the dtype)."""
    return frame.astype(object).where(frame.notna(), None)


def as_records(frame: pd.DataFrame) -> list[dict]:
    return nulls_as_none(frame).to_dict("records")


# --- create_schema --------------------------------------------------------------------------


def test_create_schema_builds_every_table_of_schema_py_with_partitions_and_clusters(bq_settings):
    wh = connect(bq_settings)
    create_schema(wh)
    create_schema(wh)  # a second run changes nothing

    for table in TABLES.values():
        stored = wh.client.get_table(wh.table_id(table.name))
        assert [(f.name, f.field_type, f.mode) for f in stored.schema] == [
            (c.name, EXPECTED_BIGQUERY_TYPE[c.type], "NULLABLE" if c.nullable else "REQUIRED") for c in table.columns
        ]
        if table.partition_by:
            assert (stored.time_partitioning.field, stored.time_partitioning.type_) == (
                table.partition_by,
                "MONTH",
            )
        else:
            assert stored.time_partitioning is None
        assert stored.clustering_fields == (list(table.cluster_by) or None)
    for name in VIEWS:
        assert wh.client.get_table(wh.table_id(name)).table_type == "VIEW"
    assert table_names(wh) == sorted([*TABLES, *VIEWS])


def test_create_schema_adds_a_column_that_schema_py_gained(warehouse, monkeypatch):
    record_run(warehouse, {"run_id": "run-1", "status": "success"})
    runs = TABLES["pipeline_runs"]
    grown = dataclasses.replace(runs, columns=(*runs.columns, Column("retries", "INTEGER", description="task retries")))
    monkeypatch.setitem(TABLES, "pipeline_runs", grown)

    create_schema(warehouse)
    record_run(warehouse, {"run_id": "run-2", "status": "success", "retries": 2})

    # The rows stored before read NULL in the new column. (bqemulator adds the column to its
    # storage but not to the table metadata that get_table returns, so check with a query.)
    rows = query(
        warehouse,
        f"SELECT run_id, status, retries FROM `{warehouse.table_id('pipeline_runs')}` ORDER BY run_id",
    )
    assert as_records(rows) == [
        {"run_id": "run-1", "status": "success", "retries": None},
        {"run_id": "run-2", "status": "success", "retries": 2},
    ]


# --- load_batch -----------------------------------------------------------------------------


def test_loading_the_same_batch_twice_stores_each_row_once(warehouse):
    prices = pd.concat(
        [
            validated_prices("IBM", "2001-05-01", "2001-06-29"),
            validated_prices("AAPL", "2001-05-01", "2001-06-29"),
        ],
        ignore_index=True,
    )

    first = load_batch(warehouse, {"fact_daily_prices": prices})
    second = load_batch(warehouse, {"fact_daily_prices": prices})

    assert first == second == {"fact_daily_prices": 86}
    expected = prices[PRICE_COLUMNS].sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    assert_frame_equal(read_prices(warehouse, ["IBM", "AAPL"], "2001-05-01", "2001-06-29"), expected, check_exact=True)
    count = query(warehouse, f"SELECT COUNT(*) AS n FROM `{warehouse.table_id('fact_daily_prices')}`")
    assert count["n"].tolist() == [86]
    assert not [name for name in table_names(warehouse) if name.startswith("_staging_")]


def test_a_rerun_with_unchanged_data_keeps_the_first_runs_audit_columns(warehouse):
    original = validated_prices("IBM", "2001-05-01", "2001-05-31").assign(run_id="run-1")
    load_batch(warehouse, {"fact_daily_prices": original})
    rerun = original.assign(run_id="run-2")
    rerun.loc[rerun.index[-1], "close"] = 200.0

    load_batch(warehouse, {"fact_daily_prices": rerun})

    runs = query(
        warehouse,
        f"SELECT run_id, COUNT(*) AS n FROM `{warehouse.table_id('fact_daily_prices')}` "
        "GROUP BY run_id ORDER BY run_id",
    )
    # Only the row whose close really changed takes the new run's id.
    assert as_records(runs) == [{"run_id": "run-1", "n": len(original) - 1}, {"run_id": "run-2", "n": 1}]


def test_a_reload_updates_stored_rows_and_keeps_the_others(warehouse):
    original = validated_prices("IBM", "2001-05-01", "2001-05-31")
    load_batch(warehouse, {"fact_daily_prices": original})
    # A later run reloads the last 3 sessions from Yahoo, which reports a corrected close.
    corrected = original.tail(3).assign(source="yahoo", run_id="run-2024-07-04")
    corrected["close"] = (corrected["close"] + 0.25).round(2)

    assert load_batch(warehouse, {"fact_daily_prices": corrected}) == {"fact_daily_prices": 3}

    expected = pd.concat([original.iloc[:-3], corrected], ignore_index=True)
    stored = stored_table(warehouse, "fact_daily_prices", "trade_date")
    assert_frame_equal(stored[PRICE_COLUMNS], expected[PRICE_COLUMNS], check_exact=True)
    assert stored["run_id"].tolist() == ["run-2024-07-03"] * (len(original) - 3) + ["run-2024-07-04"] * 3


def test_a_frame_with_only_some_columns_keeps_the_other_stored_values(warehouse):
    prices = validated_prices("IBM", "2001-05-01", "2001-05-04")
    load_batch(warehouse, {"fact_daily_prices": prices})

    flags = prices[["symbol", "trade_date"]].assign(quality_flags="volume_spike")
    load_batch(warehouse, {"fact_daily_prices": flags})

    stored = read_prices(warehouse, ["IBM"], "2001-05-01", "2001-05-04")
    assert_frame_equal(
        stored,
        prices[PRICE_COLUMNS].assign(quality_flags="volume_spike").reset_index(drop=True),
        check_exact=True,
    )


@pytest.mark.parametrize(
    ("column", "bad_value"),
    [("close", "n/a"), ("trade_date", "2001-02-30"), ("volume", "12.5k")],
)
def test_a_rejected_load_raises_with_the_job_errors_and_merges_nothing(warehouse, column, bad_value):
    prices = validated_prices("IBM", "2001-05-01", "2001-05-31")
    load_batch(warehouse, {"fact_daily_prices": prices})
    indicators = compute_indicators(prices)
    reload = prices.assign(source="yahoo").astype({column: object})
    reload.loc[reload.index[5], column] = bad_value

    with pytest.raises(BigQueryLoadError) as caught:
        # The indicators load fine; the batch is still all-or-nothing.
        load_batch(warehouse, {"fact_technical_indicators": indicators, "fact_daily_prices": reload})

    error = caught.value
    assert error.table == "fact_daily_prices"
    assert error.job_id
    assert error.errors and bad_value in error.errors[0]["message"]
    assert bad_value in str(error)
    assert_frame_equal(
        read_prices(warehouse, ["IBM"], "2001-05-01", "2001-05-31"),
        prices[PRICE_COLUMNS].reset_index(drop=True),
        check_exact=True,
    )
    assert stored_table(warehouse, "fact_technical_indicators", "trade_date").empty
    assert not [name for name in table_names(warehouse) if name.startswith("_staging_")]


def test_a_missing_required_value_is_rejected_before_any_job(warehouse):
    prices = validated_prices("IBM", "2001-05-01", "2001-05-04")
    load_batch(warehouse, {"fact_daily_prices": prices})
    reload = prices.assign(source="yahoo")
    reload.loc[reload.index[1], "symbol"] = None

    with pytest.raises(BigQueryLoadError, match="1 rows have no value in the REQUIRED column symbol") as caught:
        load_batch(warehouse, {"fact_daily_prices": reload})

    assert caught.value.job_id is None
    assert_frame_equal(
        read_prices(warehouse, ["IBM"], "2001-05-01", "2001-05-04"),
        prices[PRICE_COLUMNS].reset_index(drop=True),
        check_exact=True,
    )


def test_an_unknown_table_or_column_is_refused_before_anything_is_loaded(warehouse):
    prices = validated_prices("IBM", "2001-05-01", "2001-05-04")

    with pytest.raises(ValueError, match="unknown tables \\['prices'\\]"):
        load_batch(warehouse, {"fact_daily_prices": prices, "prices": prices})
    with pytest.raises(ValueError, match="columns that are not in the table: \\['adj_close'\\]"):
        load_batch(warehouse, {"fact_daily_prices": prices.assign(adj_close=prices["close"])})

    assert stored_table(warehouse, "fact_daily_prices", "trade_date").empty


# --- reading --------------------------------------------------------------------------------


def test_read_lookback_returns_the_last_rows_before_a_date_with_rsi_state_and_every_row_after(warehouse):
    prices = pd.concat(
        [
            validated_prices("IBM", "2001-01-02", "2001-03-30"),
            validated_prices("MSFT", "2001-01-02", "2001-03-30"),
        ],
        ignore_index=True,
    )
    indicators = compute_indicators(prices)
    load_batch(warehouse, {"fact_daily_prices": prices, "fact_technical_indicators": indicators})

    lookback = read_lookback(warehouse, ["IBM", "MSFT"], before="2001-03-01", rows=5)
    history = lookback[lookback["trade_date"] < "2001-03-01"].reset_index(drop=True)
    after = lookback[lookback["trade_date"] >= "2001-03-01"].reset_index(drop=True)

    joined = prices.merge(indicators, on=["symbol", "trade_date"])
    before = joined[joined["trade_date"] < "2001-03-01"].sort_values(["symbol", "trade_date"])
    expected = before.groupby("symbol").tail(5)[LOOKBACK_COLUMNS].reset_index(drop=True)
    assert_frame_equal(history, expected, check_exact=True)
    later = prices[prices["trade_date"] >= "2001-03-01"].sort_values(["symbol", "trade_date"])
    assert_frame_equal(after[PRICE_COLUMNS], later[PRICE_COLUMNS].reset_index(drop=True), check_exact=True)
    assert history["trade_date"].tolist() == ["2001-02-22", "2001-02-23", "2001-02-26", "2001-02-27", "2001-02-28"] * 2
    assert history["rsi_avg_gain_14"].notna().all()


def test_query_takes_positional_and_named_parameters(warehouse):
    load_batch(warehouse, {"fact_daily_prices": validated_prices("IBM", "2001-05-01", "2001-05-04")})
    table = warehouse.table_id("fact_daily_prices")

    positional = query(warehouse, f"SELECT trade_date FROM `{table}` WHERE symbol = ? ORDER BY trade_date", ["IBM"])
    named = query(
        warehouse, f"SELECT COUNT(*) AS n FROM `{table}` WHERE symbol IN UNNEST(@symbols)", {"symbols": ["AAPL"]}
    )

    assert positional["trade_date"].tolist() == ["2001-05-01", "2001-05-02", "2001-05-03", "2001-05-04"]
    assert named["n"].tolist() == [0]


def test_query_reads_like_sqlite_with_bare_table_names_and_iso_date_text(warehouse):
    load_batch(warehouse, {"fact_daily_prices": validated_prices("IBM", "2001-05-01", "2001-05-04")})

    rows = query(
        warehouse,
        "SELECT trade_date, daily_return FROM v_daily_returns WHERE symbol = ? AND trade_date >= ? ORDER BY trade_date",
        ("IBM", "2001-05-03"),
    )

    assert rows["trade_date"].tolist() == ["2001-05-03", "2001-05-04"]


# --- runs and dimensions ------------------------------------------------------------------------


def test_record_run_inserts_then_updates_the_run(warehouse):
    started = {
        "run_id": "scheduled__2024-07-03",
        "logical_date": "2024-07-03",
        "started_at": "2024-07-03T21:30:00+00:00",
        "ended_at": None,
        "status": "running",
        "symbols_requested": 3,
        "symbols_loaded": 0,
        "symbols_failed": 0,
        "failed_symbols": {},
        "rows_loaded": 0,
        "rows_quarantined": 0,
        "rows_by_source": {},
        "duration_seconds": 0.0,
        "error": None,
    }
    finished = {
        **started,
        "ended_at": "2024-07-03T21:31:12+00:00",
        "status": "partial",
        "symbols_loaded": 2,
        "symbols_failed": 1,
        "failed_symbols": {"XYZ": "no data from alpha_vantage or yahoo"},
        "rows_loaded": 2,
        "rows_quarantined": 1,
        "rows_by_source": {"alpha_vantage": 1, "yahoo": 1},
        "duration_seconds": 72.25,
    }

    record_run(warehouse, started)
    record_run(warehouse, finished)

    assert as_records(stored_table(warehouse, "pipeline_runs", "run_id")) == [
        {
            **finished,
            "failed_symbols": '{"XYZ": "no data from alpha_vantage or yahoo"}',
            "rows_by_source": '{"alpha_vantage": 1, "yahoo": 1}',
        }
    ]


def test_ensure_dim_date_upserts_every_day_of_the_range(warehouse):
    assert ensure_dim_date(warehouse, "2024-06-28", "2024-07-05") == 8
    assert ensure_dim_date(warehouse, "2024-06-28", "2024-07-08") == 11

    stored = stored_table(warehouse, "dim_date", "trade_date")
    assert_frame_equal(stored, build_dim_date("2024-06-28", "2024-07-08"), check_exact=True)
    assert stored.loc[stored["trade_date"] == "2024-07-04", "is_trading_day"].tolist() == [False]


def test_refresh_dim_symbol_records_the_stored_date_range_and_source(warehouse):
    prices = pd.concat(
        [
            validated_prices("IBM", "2001-05-01", "2001-05-31"),
            validated_prices("AAPL", "2001-05-10", "2001-06-15"),
        ],
        ignore_index=True,
    )
    load_batch(warehouse, {"fact_daily_prices": prices})
    refresh_dim_symbol(warehouse, ["IBM", "AAPL", "MSFT"], {"IBM": "file", "AAPL": "yahoo"})
    # A later load of IBM only: its range grows, AAPL's stored source is kept.
    load_batch(warehouse, {"fact_daily_prices": validated_prices("IBM", "2001-06-01", "2001-06-05")})

    refresh_dim_symbol(warehouse, ["IBM", "AAPL"])

    stored = stored_table(warehouse, "dim_symbol", "symbol")
    columns = ["symbol", "currency", "first_trade_date", "last_trade_date", "source"]
    assert stored[columns].to_dict("records") == [
        {
            "symbol": "AAPL",
            "currency": "USD",
            "first_trade_date": "2001-05-10",
            "last_trade_date": "2001-06-15",
            "source": "yahoo",
        },
        {
            "symbol": "IBM",
            "currency": "USD",
            "first_trade_date": "2001-05-01",
            "last_trade_date": "2001-06-05",
            "source": "file",
        },
    ]
    assert stored["updated_at"].notna().all()


# --- views ------------------------------------------------------------------------------------


def first_cross(indicators: pd.DataFrame, golden: bool) -> str:
    """The first trade_date on which SMA 50 crosses above (golden) or below (death) SMA 200."""
    before_50, before_200 = indicators["sma_50"].shift(), indicators["sma_200"].shift()
    if golden:
        crossed = (before_50 <= before_200) & (indicators["sma_50"] > indicators["sma_200"])
    else:
        crossed = (before_50 >= before_200) & (indicators["sma_50"] < indicators["sma_200"])
    return indicators.loc[crossed, "trade_date"].iloc[0]


def expected_latest_signals(prices: pd.DataFrame, indicators: pd.DataFrame) -> pd.DataFrame:
    """v_latest_signals worked out with pandas from the same rows."""
    rows = prices.merge(indicators, on=["symbol", "trade_date"]).sort_values(["symbol", "trade_date"])
    previous_50 = rows.groupby("symbol")["sma_50"].shift()
    previous_200 = rows.groupby("symbol")["sma_200"].shift()
    rows["cross_signal"] = np.select(
        [
            (previous_50 <= previous_200) & (rows["sma_50"] > rows["sma_200"]),
            (previous_50 >= previous_200) & (rows["sma_50"] < rows["sma_200"]),
        ],
        ["golden_cross", "death_cross"],
        default=None,
    )
    latest = rows.groupby("symbol").tail(1).reset_index(drop=True)
    rsi, close, vwap = latest["rsi_14"], latest["close"], latest["vwap_20"]
    latest["rsi_signal"] = np.select(
        [rsi > 70, rsi < 30, rsi.notna()], ["overbought", "oversold", "neutral"], default=None
    )
    latest["close_vs_vwap"] = np.select([close >= vwap, close < vwap], ["above", "below"], default=None)
    latest["pct_from_vwap"] = 100.0 * (close - vwap) / vwap
    columns = ["symbol", "trade_date", "close", "rsi_14", "rsi_signal", "sma_50", "sma_200", "cross_signal"]
    return latest[[*columns, "vwap_20", "close_vs_vwap", "pct_from_vwap"]].astype(
        {"rsi_signal": "str", "cross_signal": "str", "close_vs_vwap": "str"}
    )


def test_v_latest_signals_shows_each_symbols_latest_session_and_its_crosses(warehouse):
    # IBM's history ends on its first golden cross, AAPL's on its first death cross.
    ibm = validated_prices("IBM", "2000-01-01", "2001-12-31")
    aapl = validated_prices("AAPL", "2000-01-01", "2001-12-31")
    ibm = ibm[ibm["trade_date"] <= first_cross(compute_indicators(ibm), golden=True)]
    aapl = aapl[aapl["trade_date"] <= first_cross(compute_indicators(aapl), golden=False)]
    prices = pd.concat([ibm, aapl], ignore_index=True)
    indicators = compute_indicators(prices)
    load_batch(warehouse, {"fact_daily_prices": prices, "fact_technical_indicators": indicators})

    signals = query(warehouse, f"SELECT * FROM `{warehouse.table_id('v_latest_signals')}` ORDER BY symbol")

    assert_frame_equal(signals, expected_latest_signals(prices, indicators), check_exact=True)
    assert signals[["symbol", "trade_date", "cross_signal"]].to_dict("records") == [
        {"symbol": "AAPL", "trade_date": aapl["trade_date"].iloc[-1], "cross_signal": "death_cross"},
        {"symbol": "IBM", "trade_date": ibm["trade_date"].iloc[-1], "cross_signal": "golden_cross"},
    ]


def test_v_daily_returns_and_v_data_completeness(warehouse):
    prices = validated_prices("IBM", "2001-01-02", "2001-12-31")
    # Drop one session (2001-07-02) so completeness has something to report.
    prices = prices[prices["trade_date"] != "2001-07-02"].reset_index(drop=True)
    load_batch(warehouse, {"fact_daily_prices": prices})
    ensure_dim_date(warehouse, "2001-01-01", "2001-12-31")

    returns = query(warehouse, f"SELECT * FROM `{warehouse.table_id('v_daily_returns')}` ORDER BY trade_date")
    completeness = query(warehouse, f"SELECT * FROM `{warehouse.table_id('v_data_completeness')}`")

    expected_returns = prices[["symbol", "trade_date", "close"]].assign(
        daily_return=prices["close"] / prices["close"].shift() - 1
    )
    assert_frame_equal(returns, expected_returns, check_exact=True)
    sessions = int(build_dim_date("2001-01-02", "2001-12-31")["is_trading_day"].sum())
    assert as_records(completeness) == [
        {
            "symbol": "IBM",
            "first_date": "2001-01-02",
            "last_date": "2001-12-31",
            "sessions_expected": sessions,
            "sessions_present": sessions - 1,
            "sessions_missing": 1,
            "completeness_pct": round(100.0 * (sessions - 1) / sessions, 2),
        }
    ]


def test_views_match_the_sqlite_warehouse_views_on_the_same_rows(warehouse):
    from src.storage import sqlite_warehouse

    prices = pd.concat(
        [
            validated_prices("IBM", "2000-06-01", "2001-06-29"),
            validated_prices("MSFT", "2000-06-01", "2001-06-29"),
        ],
        ignore_index=True,
    )
    prices = prices[prices["trade_date"] != "2001-02-14"]  # one missing session for completeness
    frames = {"fact_daily_prices": prices, "fact_technical_indicators": compute_indicators(prices)}
    load_batch(warehouse, frames)
    ensure_dim_date(warehouse, "2000-06-01", "2001-06-29")
    conn = sqlite_warehouse.connect(":memory:")
    sqlite_warehouse.create_schema(conn)
    sqlite_warehouse.load_batch(conn, frames)
    sqlite_warehouse.ensure_dim_date(conn, "2000-06-01", "2001-06-29")

    for name, columns in VIEW_COLUMNS.items():
        order = "symbol, trade_date" if "trade_date" in columns else "symbol"
        in_bigquery = query(warehouse, f"SELECT * FROM `{warehouse.table_id(name)}` ORDER BY {order}")
        in_sqlite = sqlite_warehouse.query(conn, f"SELECT * FROM {name} ORDER BY {order}")
        assert list(in_bigquery.columns) == list(columns)
        # Same values; the dtypes differ (SQLite returns None for NULL text, for example).
        assert_frame_equal(nulls_as_none(in_bigquery), nulls_as_none(in_sqlite), check_exact=True, obj=name)
    conn.close()


def test_completeness_counts_a_hole_between_two_loads(warehouse):
    # Two loads with six months between them: dim_date is kept gap-free, so the view counts
    # every NYSE session from the first to the last stored date, not only the loaded ones.
    early = validated_prices("IBM", "2001-01-02", "2001-01-31")
    late = validated_prices("IBM", "2001-08-01", "2001-08-31")
    for prices in (early, late):
        load_batch(warehouse, {"fact_daily_prices": prices})
        ensure_dim_date(warehouse, prices["trade_date"].min(), prices["trade_date"].max())

    row = query(warehouse, f"SELECT * FROM `{warehouse.table_id('v_data_completeness')}`").iloc[0]

    expected = len(validated_prices("IBM", "2001-01-02", "2001-08-31"))  # every session in between
    assert (row["sessions_expected"], row["sessions_present"]) == (expected, len(early) + len(late))
    assert row["sessions_missing"] == expected - len(early) - len(late)
    days = query(warehouse, f"SELECT COUNT(*) AS n FROM `{warehouse.table_id('dim_date')}`")["n"].iloc[0]
    assert days == (pd.Timestamp("2001-08-31") - pd.Timestamp("2001-01-02")).days + 1


# --- The per-dataset load lock (issue 19 case 4) ------------------------------------------------


def test_a_second_load_waits_for_the_first_ones_lock_and_gets_it_when_released(bq_settings):
    import time

    from src.storage import bigquery_handler

    first, second = connect(bq_settings), connect(bq_settings)
    create_schema(first)
    with bigquery_handler.load_transaction(first):
        began = time.monotonic()
        with pytest.raises(
            bigquery_handler.BigQueryLockedError, match=r"is locked: another load has held .*_load_lock"
        ):
            with bigquery_handler.load_transaction(second, wait_seconds=1.5):
                pass
        assert time.monotonic() - began >= 1.5
    with bigquery_handler.load_transaction(second, wait_seconds=5):  # released: taken at once
        assert "_load_lock" in table_names(second)
    assert "_load_lock" not in table_names(second)
