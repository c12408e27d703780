"""The many-symbol indicator engine (indicators_vectorised): the plain one-symbol functions'
numbers within 1e-12, TA-Lib's and `ta`'s on real prices, no leakage between symbols, incremental
runs equal to a full recomputation, and its speed against TA-Lib and `ta`."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import ta
import talib
from pandas.testing import assert_frame_equal, assert_series_equal

from src.transformation import indicators_vectorised
from src.transformation.indicators import INDICATOR_COLUMNS, symbol_indicators
from src.transformation.indicators_vectorised import (
    LOOKBACK_ROWS,
    compute_indicators,
    compute_indicators_incremental,
    symbol_block_starts,
)

VALUE_COLUMNS = INDICATOR_COLUMNS[2:]


def _history_from(full_prices: pd.DataFrame, full_indicators: pd.DataFrame) -> pd.DataFrame:
    """What the warehouse stores: prices joined with the stored running RSI averages."""
    stored = full_indicators[["symbol", "trade_date", "rsi_avg_gain_14", "rsi_avg_loss_14"]]
    return full_prices.merge(stored, on=["symbol", "trade_date"])


def _split(prices: pd.DataFrame, new_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(everything but the last `new_rows` rows of each symbol, those last rows)."""
    prices = prices.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    rows_from_end = prices.groupby("symbol").cumcount(ascending=False)
    return prices[rows_from_end >= new_rows], prices[rows_from_end < new_rows]


def _assert_close(actual: pd.DataFrame, expected: pd.DataFrame, tolerance: float) -> None:
    """Same rows, same NaN positions, values equal within `tolerance` (relative)."""
    actual = actual.reset_index(drop=True)
    expected = expected.reset_index(drop=True)
    assert list(actual.columns) == INDICATOR_COLUMNS
    assert actual[["symbol", "trade_date"]].equals(expected[["symbol", "trade_date"]])
    assert_frame_equal(actual[VALUE_COLUMNS], expected[VALUE_COLUMNS], check_exact=False, rtol=tolerance, atol=0)


# --- Symbol blocks ----------------------------------------------------------------------------


def test_symbol_block_starts():
    assert symbol_block_starts(pd.Series(["A", "A", "A", "B", "B", "C"])).tolist() == [0, 0, 0, 3, 3, 5]


# --- Accuracy on real prices -----------------------------------------------------------------


def test_sma_and_rsi_equal_talib_on_every_goog_row(goog_prices):
    result = compute_indicators(goog_prices)
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
    result = compute_indicators(goog_prices)
    reference = ta.volume.VolumeWeightedAveragePrice(
        goog_prices["high"], goog_prices["low"], goog_prices["close"], goog_prices["volume"], window=20
    ).volume_weighted_average_price()
    # With fillna=False (the default) `ta` uses min_periods=window, so its warm-up is NaN on
    # the same 19 rows as ours: compare NaN positions too, not only where both are defined.
    np.testing.assert_array_equal(result["vwap_20"].isna().to_numpy(), reference.isna().to_numpy())
    assert result["vwap_20"].isna().sum() == 19
    np.testing.assert_allclose(result["vwap_20"].to_numpy(), reference.to_numpy(), rtol=1e-9, atol=0)


def test_daily_return_equals_pct_change_on_goog(goog_prices):
    result = compute_indicators(goog_prices)
    expected = goog_prices["close"].pct_change().rename("daily_return")
    assert_series_equal(result["daily_return"], expected, check_exact=False, rtol=1e-12)


def test_warm_up_rows_are_nan_never_zero(real_prices_4_symbols):
    result = compute_indicators(real_prices_4_symbols)
    rows_into_symbol = result.groupby("symbol").cumcount()
    warm_up = {"sma_20": 19, "sma_50": 49, "sma_200": 199, "rsi_14": 14, "vwap_20": 19, "daily_return": 1}
    for column, rows in warm_up.items():
        assert result.loc[rows_into_symbol < rows, column].isna().all(), column
        assert result.loc[rows_into_symbol >= rows, column].notna().all(), column


def test_many_symbols_equal_the_plain_one_symbol_functions(real_prices_4_symbols):
    # Shuffle the rows: compute_indicators must sort them itself.
    shuffled = real_prices_4_symbols.sample(frac=1.0, random_state=7)
    together = compute_indicators(shuffled)

    for symbol, alone in real_prices_4_symbols.groupby("symbol"):
        alone = alone.sort_values("trade_date").reset_index(drop=True)
        rows = together[together["symbol"] == symbol].reset_index(drop=True)
        expected = symbol_indicators(alone)
        # Nothing of the previous symbol leaks in: the engine gives the plain functions' numbers.
        assert rows[["symbol", "trade_date"]].equals(expected[["symbol", "trade_date"]])
        assert_frame_equal(rows[VALUE_COLUMNS], expected[VALUE_COLUMNS], check_exact=False, rtol=1e-12, atol=1e-12)
        # And each symbol still matches TA-Lib.
        np.testing.assert_allclose(rows["rsi_14"], talib.RSI(alone["close"].to_numpy(), 14), atol=1e-6)
        np.testing.assert_allclose(rows["sma_200"], talib.SMA(alone["close"].to_numpy(), 200), atol=1e-6)


def test_output_is_sorted_with_exactly_the_indicator_columns(real_prices_4_symbols):
    result = compute_indicators(real_prices_4_symbols.iloc[::-1])
    assert list(result.columns) == INDICATOR_COLUMNS
    assert len(result) == len(real_prices_4_symbols)
    expected_order = real_prices_4_symbols.sort_values(["symbol", "trade_date"])[["symbol", "trade_date"]]
    assert result[["symbol", "trade_date"]].equals(expected_order.reset_index(drop=True))


def test_empty_prices_give_an_empty_result(goog_prices):
    result = compute_indicators(goog_prices.iloc[0:0])
    assert list(result.columns) == INDICATOR_COLUMNS
    assert result.empty


def test_duplicate_rows_are_rejected(goog_prices):
    doubled = pd.concat([goog_prices, goog_prices.iloc[[100]]])
    with pytest.raises(ValueError, match=r"duplicate rows .*GOOG"):
        compute_indicators(doubled)


def test_unvalidated_text_prices_are_rejected(goog_prices):
    as_text = goog_prices.astype({"close": str})
    with pytest.raises(TypeError, match="close"):
        compute_indicators(as_text)


def test_a_missing_column_is_named(goog_prices):
    with pytest.raises(ValueError, match="volume"):
        compute_indicators(goog_prices.drop(columns=["volume"]))


# --- Incremental runs ------------------------------------------------------------------------


@pytest.mark.parametrize("new_rows", [1, 5, 30])
def test_incremental_equals_full_recomputation_on_goog(goog_prices, new_rows):
    full = compute_indicators(goog_prices)
    old_prices, new_prices = _split(goog_prices, new_rows)
    history = _history_from(old_prices, full).tail(LOOKBACK_ROWS)

    result = compute_indicators_incremental(new_prices, history)

    _assert_close(result, full.tail(new_rows), tolerance=1e-9)


def test_incremental_with_many_symbols(real_prices_4_symbols):
    full = compute_indicators(real_prices_4_symbols)
    # A different number of new rows per symbol, and history rows in any order.
    new_rows = {"AAPL": 1, "GOOG": 3, "IBM": 10, "MSFT": 40}
    prices = real_prices_4_symbols.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    rows_from_end = prices.groupby("symbol").cumcount(ascending=False)
    is_new = rows_from_end < prices["symbol"].map(new_rows)
    history = _history_from(prices[~is_new], full).groupby("symbol").tail(LOOKBACK_ROWS)

    result = compute_indicators_incremental(prices[is_new], history.sample(frac=1.0, random_state=3))

    expected = full.merge(prices.loc[is_new, ["symbol", "trade_date"]], on=["symbol", "trade_date"])
    assert len(result) == sum(new_rows.values())
    _assert_close(result, expected, tolerance=1e-9)


def test_history_longer_than_the_lookback_is_not_needed(goog_prices):
    full = compute_indicators(goog_prices)
    old_prices, new_prices = _split(goog_prices, 5)
    whole_history = _history_from(old_prices, full)
    assert len(whole_history) > 5 * LOOKBACK_ROWS

    from_tail = compute_indicators_incremental(new_prices, whole_history.tail(LOOKBACK_ROWS))
    from_everything = compute_indicators_incremental(new_prices, whole_history)

    # Only the last LOOKBACK_ROWS rows are used, so passing more changes nothing at all.
    assert_frame_equal(from_tail, from_everything, check_exact=True)
    _assert_close(from_tail, full.tail(5), tolerance=1e-9)


def test_short_history_without_stored_averages_is_recomputed_exactly(goog_prices):
    # A young symbol: 10 stored rows, still in the RSI warm-up (averages NULL), then 40 new.
    prices = goog_prices.head(50)
    full = compute_indicators(prices)
    history = _history_from(prices.head(10), full)
    assert history["rsi_avg_gain_14"].isna().all()

    result = compute_indicators_incremental(prices.tail(40), history)

    _assert_close(result, full.tail(40), tolerance=1e-9)


def test_first_load_with_empty_history(goog_prices):
    full = compute_indicators(goog_prices)
    empty_history = _history_from(goog_prices, full).iloc[0:0]

    result = compute_indicators_incremental(goog_prices, empty_history)

    _assert_close(result, full, tolerance=0)


def test_rerun_drops_history_rows_that_overlap_the_new_data(goog_prices):
    full = compute_indicators(goog_prices)
    old_prices, new_prices = _split(goog_prices, 5)
    # The warehouse already holds the 5 "new" sessions (a rerun); their stored averages must
    # not be continued from, and an unrelated symbol's history must be ignored. The history
    # holds LOOKBACK_ROWS rows before the new data, as the loader reads it, plus the overlap.
    history = _history_from(goog_prices, full).tail(LOOKBACK_ROWS + 5)
    other_symbol = history.assign(symbol="MSFT")

    result = compute_indicators_incremental(new_prices, pd.concat([history, other_symbol]))

    _assert_close(result, full.tail(5), tolerance=1e-9)


def test_rsi_continues_exactly_from_stored_averages(goog_prices):
    full = compute_indicators(goog_prices)
    old_prices, new_prices = _split(goog_prices, 30)
    # Only the last stored row's averages matter: blank out all the others.
    history = _history_from(old_prices, full).tail(LOOKBACK_ROWS).reset_index(drop=True)
    history.loc[: len(history) - 2, ["rsi_avg_gain_14", "rsi_avg_loss_14"]] = np.nan

    result = compute_indicators_incremental(new_prices, history)

    # The same recursion from the same stored float: bit-for-bit the full computation.
    expected = full.tail(30).reset_index(drop=True)
    for column in ("rsi_14", "rsi_avg_gain_14", "rsi_avg_loss_14"):
        assert_series_equal(result[column], expected[column], check_exact=True)


def test_full_lookback_without_stored_averages_logs_a_warning(goog_prices, caplog):
    old_prices, new_prices = _split(goog_prices, 1)
    history = old_prices.tail(LOOKBACK_ROWS).assign(rsi_avg_gain_14=np.nan, rsi_avg_loss_14=np.nan)

    result = compute_indicators_incremental(new_prices, history)

    assert "RSI restarts from the lookback" in caplog.text
    # After 250 rows of smoothing the restarted RSI is still close to the exact one.
    exact = compute_indicators(goog_prices)["rsi_14"].iloc[-1]
    assert result["rsi_14"].iloc[0] == pytest.approx(exact, abs=1e-3)


def test_history_straight_from_sqlite_with_object_columns_and_nulls(goog_prices):
    # read_sql gives object columns for text, and None for NULL in a column that has NULLs.
    prices = goog_prices.head(300)
    full = compute_indicators(prices)
    old_prices, new_prices = _split(prices, 3)
    history = _history_from(old_prices, full).astype(
        {"symbol": object, "trade_date": object, "rsi_avg_gain_14": object, "rsi_avg_loss_14": object}
    )
    history.loc[history["rsi_avg_gain_14"].isna(), ["rsi_avg_gain_14", "rsi_avg_loss_14"]] = None
    assert history["rsi_avg_gain_14"].head(1).tolist() == [None]

    result = compute_indicators_incremental(new_prices, history)

    _assert_close(result, full.tail(3), tolerance=1e-9)


# --- Batches and speed -------------------------------------------------------------------------


def test_batches_never_change_a_number(real_prices_4_symbols, monkeypatch):
    in_one_batch = compute_indicators(real_prices_4_symbols)
    # Batches of ~1,000 rows: every symbol (about 3,000 rows each) gets a batch of its own.
    monkeypatch.setattr(indicators_vectorised, "BATCH_ROWS", 1000)
    in_many_batches = compute_indicators(real_prices_4_symbols)
    assert_frame_equal(in_many_batches, in_one_batch, check_exact=True)


def _talib_per_symbol(prices: pd.DataFrame) -> np.ndarray:
    """The same indicators with TA-Lib, one symbol at a time (the speed reference)."""
    results = []
    for _, rows in prices.groupby("symbol"):
        close, high, low = (rows[column].to_numpy() for column in ("close", "high", "low"))
        volume = rows["volume"].to_numpy(dtype="float64")
        price_x_volume = (high + low + close) / 3.0 * volume
        results.append(
            np.column_stack(
                [
                    talib.SMA(close, 20),
                    talib.SMA(close, 50),
                    talib.SMA(close, 200),
                    talib.RSI(close, 14),
                    talib.SUM(price_x_volume, 20) / talib.SUM(volume, 20),
                    talib.ROCR(close, 1) - 1.0,
                ]
            )
        )
    return np.concatenate(results)


def _ta_per_symbol(prices: pd.DataFrame) -> pd.DataFrame:
    """The same indicators with the pure-pandas `ta` library, one symbol at a time."""
    results = []
    for _, rows in prices.groupby("symbol"):
        close = rows["close"]
        results.append(
            pd.DataFrame(
                {
                    "sma_20": ta.trend.SMAIndicator(close, 20).sma_indicator(),
                    "sma_50": ta.trend.SMAIndicator(close, 50).sma_indicator(),
                    "sma_200": ta.trend.SMAIndicator(close, 200).sma_indicator(),
                    "rsi_14": ta.momentum.RSIIndicator(close, 14).rsi(),
                    "vwap_20": ta.volume.VolumeWeightedAveragePrice(
                        rows["high"], rows["low"], close, rows["volume"], 20
                    ).volume_weighted_average_price(),
                    "daily_return": ta.others.DailyReturnIndicator(close).daily_return(),
                }
            )
        )
    return pd.concat(results)


def _cpu_seconds(function, repeats: int) -> float:
    """The best CPU time of a few runs (CPU time, not wall time: other processes matter less)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def test_speed_against_talib_and_ta(goog_prices):
    # 100 copies of the real GOOG history under made-up names "GOOG000".."GOOG099" (215 k rows):
    # the prices are only here to be timed. docs/indicators.md has the 25 M-row measurement.
    prices = pd.concat([goog_prices.assign(symbol=f"GOOG{n:03d}") for n in range(100)], ignore_index=True)

    ours = _cpu_seconds(lambda: compute_indicators(prices), repeats=3)
    with_talib = _cpu_seconds(lambda: _talib_per_symbol(prices), repeats=3)
    with_ta = _cpu_seconds(lambda: _ta_per_symbol(prices), repeats=1)

    assert ours <= 3 * with_talib, f"ours {ours:.3f}s, TA-Lib {with_talib:.3f}s"
    assert ours * 2 <= with_ta, f"ours {ours:.3f}s, ta {with_ta:.3f}s"


def test_a_new_run_of_sessions_restarts_every_indicator_like_a_new_symbol(goog_prices):
    # A long hole in the history starts a new run of sessions (cleaner.add_history_flags marks
    # it): every indicator warms up again there, exactly as the plain functions do on the run alone.
    prices = goog_prices.assign(starts_segment=False)
    restart = 1000
    prices.loc[restart, "starts_segment"] = True

    result = compute_indicators(prices)

    expected = pd.concat(
        [symbol_indicators(prices.iloc[:restart]), symbol_indicators(prices.iloc[restart:])], ignore_index=True
    )
    assert_frame_equal(result[VALUE_COLUMNS], expected[VALUE_COLUMNS], check_exact=False, rtol=1e-12, atol=1e-12)
    assert result.loc[restart : restart + 18, "sma_20"].isna().all()
    assert result.loc[restart : restart + 13, "rsi_14"].isna().all()
    assert pd.isna(result.loc[restart, "daily_return"])


def test_incremental_across_a_new_run_of_sessions_equals_the_full_computation(goog_prices):
    prices = goog_prices.assign(starts_segment=False)
    prices.loc[2100, "starts_segment"] = True  # the run restarts 48 sessions before the end
    full = compute_indicators(prices)
    history = _history_from(prices.iloc[:2120], full.iloc[:2120]).tail(LOOKBACK_ROWS)

    result = compute_indicators_incremental(prices.iloc[2120:], history)

    _assert_close(result, full.iloc[2120:], tolerance=1e-9)
