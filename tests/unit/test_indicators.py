"""The plain one-symbol indicators: exact small examples, and TA-Lib's and `ta`'s numbers on real prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta
import talib
from pandas.testing import assert_frame_equal, assert_series_equal

from src.transformation.indicators import daily_return, rsi_wilder, sma, symbol_indicators, vwap_rolling

# --- Exact small examples ------------------------------------------------------------------


def test_sma_of_one_to_five_with_window_three():
    result = sma(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), 3)
    assert_series_equal(result, pd.Series([np.nan, np.nan, 2.0, 3.0, 4.0]))


def test_daily_return_is_close_over_previous_close_minus_one():
    result = daily_return(pd.Series([100.0, 110.0, 99.0, 99.0]))
    assert_series_equal(result, pd.Series([np.nan, 110 / 100 - 1, 99 / 110 - 1, 0.0]))


def test_vwap_weights_the_typical_price_by_volume():
    high = pd.Series([12.0, 15.0, 18.0])
    low = pd.Series([9.0, 9.0, 12.0])
    close = pd.Series([9.0, 12.0, 15.0])
    volume = pd.Series([100, 300, 100])
    # Typical prices 10, 12, 15. Window 2: (10*100 + 12*300) / 400 = 11.5, (12*300 + 15*100) / 400 = 12.75
    result = vwap_rolling(high, low, close, volume, window=2)
    assert_series_equal(result, pd.Series([np.nan, 11.5, 12.75]))


def test_vwap_is_nan_when_the_window_has_no_volume():
    prices = pd.Series([10.0, 10.0, 10.0])
    result = vwap_rolling(prices, prices, prices, pd.Series([0, 0, 5]), window=2)
    assert_series_equal(result, pd.Series([np.nan, np.nan, 10.0]))


def test_rsi_follows_wilders_recursion_by_hand():
    # Changes: +1, -0.5, +1, -0.5, +1; period 3.
    # Row 3 (seed): gain (1 + 0 + 1)/3 = 2/3, loss 0.5/3 = 1/6, RSI 100 * (2/3) / (5/6) = 80
    # Row 4: gain (2 * 2/3 + 0)/3 = 4/9, loss (2 * 1/6 + 0.5)/3 = 5/18, RSI 100 * 8/13
    # Row 5: gain (2 * 4/9 + 1)/3 = 17/27, loss (2 * 5/18)/3 = 5/27, RSI 100 * 17/22
    result = rsi_wilder(pd.Series([10.0, 11.0, 10.5, 11.5, 11.0, 12.0]), period=3)
    nan = np.nan
    expected = pd.DataFrame(
        {
            "rsi_3": [nan, nan, nan, 80.0, 800 / 13, 1700 / 22],
            "rsi_avg_gain_3": [nan, nan, nan, 2 / 3, 4 / 9, 17 / 27],
            "rsi_avg_loss_3": [nan, nan, nan, 1 / 6, 5 / 18, 5 / 27],
        }
    )
    assert_frame_equal(result, expected, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize(
    "closes",
    [
        [5.0] * 20,  # no movement at all: TA-Lib says 0
        [float(x) for x in range(1, 21)],  # only rises: 100
        [float(x) for x in range(20, 0, -1)],  # only falls: 0
        [5.0] * 15 + [6.0, 7.0, 6.5, 6.5, 6.5],  # flat seed, then moves
    ],
)
def test_rsi_edge_cases_match_talib(closes):
    values = np.array(closes)
    result = rsi_wilder(pd.Series(values))["rsi_14"].to_numpy()
    np.testing.assert_allclose(result, talib.RSI(values, timeperiod=14), rtol=0, atol=1e-9)


# --- Accuracy on real prices -----------------------------------------------------------------


def test_sma_and_rsi_equal_talib_on_every_goog_row(goog_prices):
    result = symbol_indicators(goog_prices)
    close = goog_prices["close"].to_numpy()
    expected = {
        "sma_20": talib.SMA(close, timeperiod=20),
        "sma_50": talib.SMA(close, timeperiod=50),
        "sma_200": talib.SMA(close, timeperiod=200),
        "rsi_14": talib.RSI(close, timeperiod=14),
    }
    for column, reference in expected.items():
        ours = result[column].to_numpy()
        # Same warm-up rows (NaN in exactly the same places), same values after it.
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference), err_msg=column)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6, err_msg=column)
    assert result["sma_200"].isna().sum() == 199
    assert result["rsi_14"].isna().sum() == 14


def test_vwap_equals_the_ta_library_on_goog(goog_prices):
    result = symbol_indicators(goog_prices)
    reference = ta.volume.VolumeWeightedAveragePrice(
        goog_prices["high"], goog_prices["low"], goog_prices["close"], goog_prices["volume"], window=20
    ).volume_weighted_average_price()
    np.testing.assert_array_equal(result["vwap_20"].isna().to_numpy(), reference.isna().to_numpy())
    np.testing.assert_allclose(result["vwap_20"].to_numpy(), reference.to_numpy(), rtol=1e-9, atol=0)


def test_daily_return_equals_pct_change_on_goog(goog_prices):
    result = symbol_indicators(goog_prices)
    expected = goog_prices["close"].pct_change().rename("daily_return")
    assert_series_equal(result["daily_return"], expected, check_exact=False, rtol=1e-12)


def test_rsi_shorter_than_its_period_is_all_warm_up():
    assert rsi_wilder(pd.Series([1.0, 2.0, 3.0]))["rsi_14"].isna().all()
