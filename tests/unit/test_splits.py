"""Back-adjustment for splits: real AAPL and MSFT prices, a reverse split, and a symbol without splits.

The split dates are public records (the companies' investor-relations pages and the exchanges'
corporate-action notices), and they show in the shipped real as-traded prices themselves:
- AAPL 2-for-1, effective 2000-06-21 (close 101.25 on 2000-06-20, 55.63 on 2000-06-21);
- AAPL 2-for-1, effective 2005-02-28 (close 88.99 on 2005-02-25, 44.86 on 2005-02-28);
- MSFT 2-for-1, effective 2003-02-18 (close 48.30 on 2003-02-14, 24.96 on 2003-02-18).
(`bokeh_sampledata.stocks`, 2000-2013, unadjusted; see tests/fixtures/market_data.py.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from src.transformation.splits import (
    SplitDataError,
    add_adjusted_prices,
    check_splits,
    cumulative_factors,
    new_split_events,
    yahoo_rows_as_traded,
)
from src.transformation.transform import transform_prices
from src.transformation.warehouse_rows import build_warehouse_rows
from tests.fixtures.market_data import load_bokeh_prices

AAPL_SPLITS = pd.DataFrame(
    {
        "symbol": ["AAPL", "AAPL"],
        "effective_date": ["2000-06-21", "2005-02-28"],
        "split_factor": [2.0, 2.0],
        "source": ["file", "file"],
    }
)
MSFT_SPLITS = pd.DataFrame(
    {"symbol": ["MSFT"], "effective_date": ["2003-02-18"], "split_factor": [2.0], "source": ["file"]}
)
LOADED_AT = "2024-07-02T00:00:00+00:00"


def clean_real(symbol: str) -> pd.DataFrame:
    clean, quarantine = transform_prices(load_bokeh_prices(symbol).assign(source="file"), run_date="2014-01-01")
    assert quarantine.empty
    return clean


def warehouse_rows(clean: pd.DataFrame, splits: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    no_stored = pd.DataFrame(columns=["symbol", "trade_date"])
    return build_warehouse_rows(clean, pd.DataFrame(), no_stored, "run-1", LOADED_AT, 5, splits)


def test_cumulative_factor_is_the_product_of_the_splits_after_the_day():
    dates = pd.Series(["2000-06-20", "2000-06-21", "2005-02-25", "2005-02-28", "2013-01-02"])
    assert cumulative_factors(dates, AAPL_SPLITS).tolist() == [4.0, 2.0, 2.0, 1.0, 1.0]


@pytest.mark.parametrize(("symbol", "splits"), [("AAPL", AAPL_SPLITS), ("MSFT", MSFT_SPLITS)])
def test_real_adjusted_columns_are_as_traded_over_the_cumulative_factor(symbol, splits):
    clean = clean_real(symbol)
    prices = warehouse_rows(clean, splits)["fact_daily_prices"]

    dates = prices["trade_date"]
    factor = np.ones(len(prices))
    for effective, split_factor in zip(splits["effective_date"], splits["split_factor"], strict=True):
        factor = np.where(dates < effective, factor * split_factor, factor)
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(prices[f"adj_{column}"], prices[column] / factor)
    np.testing.assert_array_equal(prices["adj_volume"], prices["volume"] * factor)
    # The raw prices stay raw.
    np.testing.assert_array_equal(prices["close"], clean["close"])


def test_aapl_worked_example_of_the_docs():
    prices = warehouse_rows(clean_real("AAPL"), AAPL_SPLITS)["fact_daily_prices"].set_index("trade_date")
    assert prices.loc["2000-06-20", "close"] == 101.25
    assert prices.loc["2000-06-20", "adj_close"] == 101.25 / 4
    assert prices.loc["2000-06-21", "adj_close"] == 55.63 / 2
    assert prices.loc["2005-02-25", "adj_close"] == 88.99 / 2
    assert prices.loc["2005-02-28", "adj_close"] == 44.86
    assert prices.loc["2000-06-20", "adj_volume"] == 4476700 * 4


@pytest.mark.parametrize(("symbol", "splits"), [("AAPL", AAPL_SPLITS), ("MSFT", MSFT_SPLITS)])
def test_indicators_equal_talib_on_the_adjusted_closes_on_every_row(symbol, splits):
    frames = warehouse_rows(clean_real(symbol), splits)
    prices, indicators = frames["fact_daily_prices"], frames["fact_technical_indicators"]
    close = prices["adj_close"].to_numpy()
    expected = {
        "sma_20": talib.SMA(close, timeperiod=20),
        "sma_50": talib.SMA(close, timeperiod=50),
        "sma_200": talib.SMA(close, timeperiod=200),
        "rsi_14": talib.RSI(close, timeperiod=14),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(indicators[name], values, rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(indicators["daily_return"].iloc[1:], close[1:] / close[:-1] - 1, rtol=0, atol=1e-12)
    # VWAP on the adjusted typical price and volume (TA-Lib has no rolling VWAP; written out).
    typical = (prices["adj_high"] + prices["adj_low"] + prices["adj_close"]) / 3
    vwap = (typical * prices["adj_volume"]).rolling(20).sum() / prices["adj_volume"].rolling(20).sum()
    np.testing.assert_allclose(indicators["vwap_20"], vwap, rtol=1e-12, atol=1e-9)


def test_the_split_days_are_flagged_split_and_not_large_move():
    prices = warehouse_rows(clean_real("AAPL"), AAPL_SPLITS)["fact_daily_prices"].set_index("trade_date")
    assert prices.loc["2000-06-21", "quality_flags"] == "split"
    assert prices.loc["2005-02-28", "quality_flags"] == "split"
    # AAPL's real -52 % on 2000-09-29 (a profit warning, no split) keeps its flags.
    assert prices.loc["2000-09-29", "quality_flags"] == "large_move,return_outlier"


def test_without_the_split_events_the_split_days_stay_large_moves():
    prices = warehouse_rows(clean_real("MSFT"), None)["fact_daily_prices"].set_index("trade_date")
    assert "large_move" in prices.loc["2003-02-18", "quality_flags"]


def test_a_symbol_without_splits_is_unchanged_by_the_feature():
    clean = clean_real("IBM")
    with_feature = warehouse_rows(clean, check_splits(AAPL_SPLITS, "test"))  # splits of another symbol only
    without = warehouse_rows(clean, None)
    prices = with_feature["fact_daily_prices"]
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(prices[f"adj_{column}"], prices[column])
    np.testing.assert_array_equal(prices["adj_volume"], prices["volume"])
    for table in with_feature:
        pd.testing.assert_frame_equal(with_feature[table], without[table])
    close = prices["close"].to_numpy()
    np.testing.assert_allclose(
        with_feature["fact_technical_indicators"]["rsi_14"], talib.RSI(close, timeperiod=14), rtol=0, atol=1e-9
    )


def test_a_reverse_split_multiplies_earlier_prices_and_divides_volume():
    prices = pd.DataFrame(
        {
            "symbol": "XYZ",
            "trade_date": ["2024-07-01", "2024-07-02", "2024-07-03"],
            "open": [1.0, 1.1, 10.5],
            "high": [1.2, 1.2, 11.0],
            "low": [0.9, 1.0, 10.0],
            "close": [1.1, 1.05, 10.6],
            "volume": [1_000_000, 2_000_000, 150_000],
        }
    )
    splits = check_splits(
        pd.DataFrame({"symbol": ["XYZ"], "effective_date": ["2024-07-03"], "split_factor": ["0.1"]}), "test"
    )
    adjusted = add_adjusted_prices(prices, splits)
    assert adjusted["adj_close"].tolist() == [1.1 / 0.1, 1.05 / 0.1, 10.6]
    assert adjusted["adj_volume"].tolist() == [1_000_000 * 0.1, 2_000_000 * 0.1, 150_000.0]


def test_a_reverse_split_day_is_flagged_split():
    clean, _ = transform_prices(
        pd.DataFrame(
            {
                "symbol": "XYZ",
                "trade_date": ["2024-07-01", "2024-07-02", "2024-07-03"],
                "open": [1.0, 1.1, 10.5],
                "high": [1.2, 1.2, 11.0],
                "low": [0.9, 1.0, 10.0],
                "close": [1.1, 1.05, 10.6],
                "volume": [1_000_000, 2_000_000, 150_000],
                "source": "file",
            }
        ),
        run_date="2024-07-03",
    )
    splits = pd.DataFrame(
        {"symbol": ["XYZ"], "effective_date": ["2024-07-03"], "split_factor": [0.1], "source": ["file"]}
    )
    prices = warehouse_rows(clean, splits)["fact_daily_prices"]
    assert prices["quality_flags"].tolist() == ["", "", "split"]
    # The weekly bar is on both bases; its adjusted open is the first adjusted open.
    weekly = warehouse_rows(clean, splits)["agg_weekly_prices"].iloc[0]
    assert (weekly["close"], weekly["adj_close"], weekly["adj_open"]) == (10.6, 10.6, 1.0 / 0.1)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"effective_date": ["2024-13-01"], "split_factor": ["2"]}, "not a YYYY-MM-DD date"),
        ({"effective_date": ["2024-07-01"], "split_factor": ["two"]}, "not a number above 0"),
        ({"effective_date": ["2024-07-01"], "split_factor": ["0"]}, "not a number above 0"),
        ({"effective_date": ["2024-07-01"], "split_factor": ["-2"]}, "not a number above 0"),
        ({"effective_date": ["2024-07-01", "2024-07-01"], "split_factor": ["2", "3"]}, "two different split factors"),
    ],
)
def test_bad_split_events_are_refused_with_a_clear_message(rows, message):
    with pytest.raises(SplitDataError, match=message):
        check_splits(pd.DataFrame({"symbol": "XYZ", **rows}), "XYZ.splits.csv")


def test_only_unknown_or_changed_split_events_are_new():
    stored = check_splits(AAPL_SPLITS.iloc[:1], "stored")
    incoming = check_splits(AAPL_SPLITS, "incoming")
    assert new_split_events(incoming, stored)["effective_date"].tolist() == ["2005-02-28"]
    assert new_split_events(incoming, incoming).empty
    changed = incoming.assign(split_factor=[2.0, 3.0])
    assert new_split_events(changed, incoming)["effective_date"].tolist() == ["2005-02-28"]


def test_yahoo_rows_are_brought_back_to_as_traded_before_they_are_adjusted_once():
    """Yahoo's Close is already split-adjusted: adjusting it again would divide it twice (issue 21)."""
    real = clean_real("AAPL")
    factor = cumulative_factors(real["trade_date"], AAPL_SPLITS)
    # What Yahoo serves for the same days: prices divided and volumes multiplied by the splits after them.
    yahoo = real.assign(source="yahoo")
    for column in ("open", "high", "low", "close"):
        yahoo[column] = real[column] / factor
    yahoo["volume"] = (real["volume"] * factor).astype(real["volume"].dtype)

    as_traded = yahoo_rows_as_traded(yahoo, AAPL_SPLITS)

    for column in ("open", "high", "low", "close"):
        np.testing.assert_allclose(as_traded[column].to_numpy(), real[column].to_numpy(), rtol=1e-12)
    assert (as_traded["volume"] == real["volume"]).all()
    # Loaded like that, the Yahoo history gets the adjusted prices of the as-traded source.
    from_yahoo = warehouse_rows(as_traded, AAPL_SPLITS)["fact_daily_prices"].set_index("trade_date")
    from_file = warehouse_rows(real, AAPL_SPLITS)["fact_daily_prices"].set_index("trade_date")
    np.testing.assert_allclose(from_yahoo["adj_close"], from_file["adj_close"], rtol=1e-12)
    assert from_yahoo.loc["2000-06-20", "adj_close"] == pytest.approx(101.25 / 4)


def test_rows_of_other_sources_and_yahoo_rows_after_the_last_split_are_left_as_they_are():
    real = clean_real("AAPL")
    assert yahoo_rows_as_traded(real, AAPL_SPLITS) is real  # source "file"
    recent = real[real["trade_date"] >= "2005-02-28"].assign(source="yahoo")
    assert yahoo_rows_as_traded(recent, AAPL_SPLITS) is recent
