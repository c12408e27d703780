"""The analytical queries on a real SQLite warehouse and on bqemulator, loaded from real prices.

The warehouse holds AAPL, GOOG, IBM and MSFT (bokeh sample data, as traded) from 2011-01-03 to
2013-03-01, loaded through the pipeline's own transform and load steps. Expected values are
worked out with pandas from the same clean prices, independently of the SQL. The dates are
real market days with something to show, e.g. 2013-01-24, when Apple fell 12.35 % after its
quarterly results.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src import analytics, steps
from src.config import load_settings
from src.storage.calendar_dim import build_dim_date
from src.storage.warehouse import open_warehouse
from src.transformation.indicators_vectorised import compute_indicators
from src.transformation.transform import transform_prices

pytestmark = pytest.mark.integration

FIRST_DAY = "2011-01-03"
LAST_DAY = "2013-03-01"
# One MSFT session left out, so data_completeness has something to report.
MISSING_SESSION = ("MSFT", "2012-06-15")
RUN_ID = "test-analytics"
LOADED_AT = "2013-03-02T00:00:00+00:00"
# Float results are compared with a relative tolerance of 1e-12: SQL and pandas sum in
# different orders, which changes the last bits of a float and nothing else.
RTOL = 1e-12


def clean_real_prices(real_prices_4_symbols: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 4 symbols from FIRST_DAY, minus MISSING_SESSION, through the pipeline's transform step."""
    raw = real_prices_4_symbols[real_prices_4_symbols["trade_date"] >= FIRST_DAY]
    missing = (raw["symbol"] == MISSING_SESSION[0]) & (raw["trade_date"] == MISSING_SESSION[1])
    raw = raw[~missing].assign(source="file").reset_index(drop=True)
    return transform_prices(raw, run_date=LAST_DAY)


@pytest.fixture(scope="module")
def loaded(real_prices_4_symbols, tmp_path_factory):
    """A SQLite warehouse loaded with the clean prices; yields (warehouse, clean prices, indicators)."""
    clean, quarantine = clean_real_prices(real_prices_4_symbols)
    path = tmp_path_factory.mktemp("analytics") / "warehouse.db"
    warehouse = open_warehouse(
        load_settings(env_file="", overrides={"WAREHOUSE_BACKEND": "sqlite", "SQLITE_PATH": str(path)})
    )
    steps.load_prices(warehouse, clean, quarantine, RUN_ID, LOADED_AT)
    # The oracle: indicators computed in one go with pandas (tested against TA-Lib elsewhere).
    indicators = clean[["symbol", "trade_date", "close"]].merge(compute_indicators(clean), on=["symbol", "trade_date"])
    yield warehouse, clean, indicators
    warehouse.close()


def assert_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns, same rows in the same order; floats within RTOL; dtypes may differ."""
    assert list(actual.columns) == list(expected.columns)
    assert_frame_equal(
        actual.reset_index(drop=True),
        expected.reset_index(drop=True),
        check_dtype=False,
        check_exact=False,
        rtol=RTOL,
    )


def test_the_warehouse_holds_the_real_prices(loaded):
    warehouse, clean, _ = loaded
    counts = warehouse.query("SELECT symbol, COUNT(*) AS n FROM fact_daily_prices GROUP BY symbol ORDER BY symbol")
    assert counts.to_dict("records") == [
        {"symbol": symbol, "n": int((clean["symbol"] == symbol).sum())} for symbol in ("AAPL", "GOOG", "IBM", "MSFT")
    ]
    assert analytics.latest_trade_date(warehouse) == LAST_DAY


def test_top_movers_ranks_by_absolute_daily_return(loaded):
    warehouse, _, indicators = loaded
    day = "2013-01-24"

    movers = analytics.top_movers(warehouse, day, limit=3)

    rows = indicators.sort_values(["symbol", "trade_date"]).copy()
    rows["previous_close"] = rows.groupby("symbol")["close"].shift()
    rows = rows[rows["trade_date"] == day].copy()
    rows["return_pct"] = 100 * (rows["close"] / rows["previous_close"] - 1)
    rows["size"] = rows["return_pct"].abs()
    expected = rows.sort_values(["size", "symbol"], ascending=[False, True]).head(3)
    assert_rows(movers, expected[["symbol", "trade_date", "close", "previous_close", "return_pct"]])
    assert movers["symbol"].iloc[0] == "AAPL"
    assert round(movers["return_pct"].iloc[0], 2) == -12.35


def test_rsi_extremes_lists_overbought_and_oversold_symbols(loaded):
    warehouse, _, indicators = loaded
    day = "2012-01-25"

    extremes = analytics.rsi_extremes(warehouse, day)

    rows = indicators[
        (indicators["trade_date"] == day) & ((indicators["rsi_14"] > 70) | (indicators["rsi_14"] < 30))
    ].copy()
    rows["rsi_signal"] = np.where(rows["rsi_14"] > 70, "overbought", "oversold")
    rows["extremity"] = (rows["rsi_14"] - 50).abs()
    expected = rows.sort_values(["extremity", "symbol"], ascending=[False, True])
    assert_rows(extremes, expected[["symbol", "trade_date", "close", "rsi_14", "rsi_signal"]])
    assert set(extremes["rsi_signal"]) == {"overbought", "oversold"}


def test_crosses_finds_golden_and_death_crosses_in_the_last_30_days(loaded):
    warehouse, _, indicators = loaded
    day = "2012-09-17"

    found = analytics.crosses(warehouse, day)

    rows = indicators.sort_values(["symbol", "trade_date"]).copy()
    before_50 = rows.groupby("symbol")["sma_50"].shift()
    before_200 = rows.groupby("symbol")["sma_200"].shift()
    rows["cross_signal"] = np.select(
        [
            (before_50 <= before_200) & (rows["sma_50"] > rows["sma_200"]),
            (before_50 >= before_200) & (rows["sma_50"] < rows["sma_200"]),
        ],
        ["golden_cross", "death_cross"],
        default="",
    )
    in_window = (rows["trade_date"] >= "2012-08-18") & (rows["trade_date"] <= day) & (rows["cross_signal"] != "")
    expected = rows[in_window].sort_values(["trade_date", "symbol"], ascending=[False, True])
    assert_rows(found, expected[["symbol", "trade_date", "cross_signal", "sma_50", "sma_200"]])
    # IBM's 50-day SMA crossed the 200-day SMA three times in those 30 days: up, down, up.
    ibm = found[found["symbol"] == "IBM"]
    assert list(ibm["cross_signal"]) == ["golden_cross", "death_cross", "golden_cross"]


def test_volatility_30d_is_the_annualised_sample_std_of_the_last_30_returns(loaded):
    warehouse, _, indicators = loaded
    day = LAST_DAY

    volatility = analytics.volatility_30d(warehouse, day)

    rows = indicators.sort_values(["symbol", "trade_date"]).copy()
    rows["daily_return"] = rows.groupby("symbol")["close"].pct_change()
    last_30 = rows[(rows["trade_date"] <= day) & rows["daily_return"].notna()].groupby("symbol").tail(30)
    expected = last_30.groupby("symbol").agg(
        first_date=("trade_date", "min"),
        last_date=("trade_date", "max"),
        returns=("daily_return", "count"),
        daily_volatility_pct=("daily_return", lambda values: 100 * values.std(ddof=1)),
    )
    expected["annualised_volatility_pct"] = expected["daily_volatility_pct"] * math.sqrt(252)
    expected = expected.reset_index().sort_values(["daily_volatility_pct", "symbol"], ascending=[False, True])
    assert_rows(volatility, expected)
    assert list(volatility["returns"]) == [30, 30, 30, 30]


def test_vwap_distance_is_the_percent_gap_between_close_and_vwap_20(loaded):
    warehouse, _, indicators = loaded
    day = LAST_DAY

    distance = analytics.vwap_distance(warehouse, day, limit=2)

    rows = indicators[indicators["trade_date"] == day].copy()
    # IBM and MSFT have no split in the range: the adjusted close is the close.
    rows["adj_close"] = rows["close"]
    rows["pct_from_vwap"] = 100.0 * (rows["adj_close"] - rows["vwap_20"]) / rows["vwap_20"]
    rows["close_vs_vwap"] = np.where(rows["adj_close"] >= rows["vwap_20"], "above", "below")
    rows["size"] = rows["pct_from_vwap"].abs()
    expected = rows.sort_values(["size", "symbol"], ascending=[False, True]).head(2)
    columns = ["symbol", "trade_date", "close", "adj_close", "vwap_20", "pct_from_vwap", "close_vs_vwap"]
    assert_rows(distance, expected[columns])


def test_data_completeness_shows_the_missing_msft_session_first(loaded):
    warehouse, _, _ = loaded

    completeness = analytics.data_completeness(warehouse, limit=2)

    sessions = int(build_dim_date(FIRST_DAY, LAST_DAY)["is_trading_day"].sum())
    assert completeness.to_dict("records") == [
        {
            "symbol": "MSFT",
            "first_date": FIRST_DAY,
            "last_date": LAST_DAY,
            "sessions_expected": sessions,
            "sessions_present": sessions - 1,
            "sessions_missing": 1,
            "completeness_pct": round(100.0 * (sessions - 1) / sessions, 2),
        },
        {
            "symbol": "AAPL",
            "first_date": FIRST_DAY,
            "last_date": LAST_DAY,
            "sessions_expected": sessions,
            "sessions_present": sessions,
            "sessions_missing": 0,
            "completeness_pct": 100.0,
        },
    ]


def test_run_query_defaults_to_the_latest_day_and_checks_its_arguments(loaded):
    warehouse, _, _ = loaded

    assert_rows(analytics.run_query(warehouse, "top_movers"), analytics.top_movers(warehouse, LAST_DAY))
    with pytest.raises(ValueError, match="unknown query 'nope'"):
        analytics.run_query(warehouse, "nope")
    with pytest.raises(ValueError, match="date must be YYYY-MM-DD, got '2013/03/01'"):
        analytics.run_query(warehouse, "top_movers", as_of="2013/03/01")
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        analytics.run_query(warehouse, "top_movers", limit=0)


def test_run_query_on_an_empty_warehouse_returns_no_rows(tmp_path):
    settings = load_settings(
        env_file="", overrides={"WAREHOUSE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp_path / "empty.db")}
    )
    warehouse = open_warehouse(settings)
    try:
        assert analytics.latest_trade_date(warehouse) is None
        assert analytics.run_query(warehouse, "top_movers").empty
    finally:
        warehouse.close()


def test_cli_prints_the_list_and_a_table(loaded, monkeypatch, capsys):
    warehouse, _, _ = loaded
    monkeypatch.setenv("PIPELINE_ENV_FILE", "/nonexistent/.env")
    monkeypatch.setenv("WAREHOUSE_BACKEND", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(warehouse.handle.execute("PRAGMA database_list").fetchone()[2]))

    assert analytics.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(analytics.QUERIES)

    assert analytics.main(["top_movers", "--date", "2013-01-24", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "top_movers (sqlite)"
    assert out[1].split() == ["symbol", "trade_date", "close", "previous_close", "return_pct"]
    assert out[2].split()[0:2] == ["AAPL", "2013-01-24"]
    assert out[2].split()[-1] == "-12.3549"

    assert analytics.main(["top_movers", "--date", "24.01.2013"]) == 2
    assert "date must be YYYY-MM-DD" in capsys.readouterr().err


def test_every_query_gives_the_same_rows_on_bigquery(loaded, real_prices_4_symbols, bq_settings):
    sqlite_warehouse, _, _ = loaded
    clean, quarantine = clean_real_prices(real_prices_4_symbols)
    bigquery = open_warehouse(bq_settings)
    try:
        steps.load_prices(bigquery, clean, quarantine, RUN_ID, LOADED_AT)
        assert analytics.latest_trade_date(bigquery) == LAST_DAY
        days = {"top_movers": "2013-01-24", "rsi_extremes": "2012-01-25", "crosses": "2012-09-17"}
        for name in analytics.QUERIES:
            day = days.get(name, LAST_DAY)
            in_bigquery = analytics.run_query(bigquery, name, as_of=day, limit=10)
            in_sqlite = analytics.run_query(sqlite_warehouse, name, as_of=day, limit=10)
            assert not in_sqlite.empty, name
            assert_rows(in_bigquery, in_sqlite)
    finally:
        bigquery.close()
