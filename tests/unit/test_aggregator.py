"""Weekly and monthly bars: a crafted frame with holidays and a week across a month (and year)
boundary, checked value by value, plus spot checks on real IBM prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.transformation.aggregator import AGGREGATE_COLUMNS, aggregate_prices
from tests.fixtures.market_data import load_bokeh_prices

NAN = np.nan

# AAA: Christmas week (no session on Wed 25th), then the week of Mon 30 Dec 2024 to Fri 3 Jan
# 2025 (no session on New Year's Day) which spans two months and two years, then two sessions
# of the next week. BBB starts later, so its first bars have no period_return.
CRAFTED_ROWS = [
    # symbol, trade_date, open, high, low, close, volume
    ("AAA", "2024-12-23", 100.0, 102.0, 99.0, 101.0, 1000),
    ("AAA", "2024-12-24", 101.0, 103.0, 100.0, 102.0, 500),
    ("AAA", "2024-12-26", 102.0, 104.0, 98.0, 99.0, 800),
    ("AAA", "2024-12-27", 99.0, 100.0, 97.0, 98.0, 700),
    ("AAA", "2024-12-30", 98.0, 99.0, 95.0, 96.0, 900),
    ("AAA", "2024-12-31", 96.0, 97.0, 94.0, 97.0, 600),
    ("AAA", "2025-01-02", 97.0, 105.0, 96.0, 104.0, 1500),
    ("AAA", "2025-01-03", 104.0, 106.0, 103.0, 105.0, 1200),
    ("AAA", "2025-01-06", 105.0, 108.0, 104.0, 107.0, 1100),
    ("AAA", "2025-01-07", 107.0, 107.0, 101.0, 102.0, 1300),
    ("BBB", "2024-12-31", 50.0, 51.0, 49.0, 50.0, 10),
    ("BBB", "2025-01-02", 50.0, 55.0, 50.0, 55.0, 20),
]


@pytest.fixture
def crafted_prices() -> pd.DataFrame:
    columns = ["symbol", "trade_date", "open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(CRAFTED_ROWS, columns=columns).astype({"volume": "int64"})
    # Rows arrive in any order (and with extra columns); the aggregator sorts them itself.
    return frame.assign(source="file").sample(frac=1.0, random_state=11).reset_index(drop=True)


def _bars(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)
    return frame.astype({"volume": "int64", "trading_days": "int64", "period_return": "float64"})


def test_weekly_bars_start_on_monday(crafted_prices):
    result = aggregate_prices(crafted_prices, "weekly")
    expected = _bars(
        [
            # Christmas week: 4 sessions.
            ("AAA", "2024-12-23", "2024-12-27", 100.0, 104.0, 97.0, 98.0, 3000, 4, NAN),
            # Across the month and year boundary, New Year's Day closed: 4 sessions.
            ("AAA", "2024-12-30", "2025-01-03", 98.0, 106.0, 94.0, 105.0, 4200, 4, 105 / 98 - 1),
            # Only Monday and Tuesday so far.
            ("AAA", "2025-01-06", "2025-01-07", 105.0, 108.0, 101.0, 102.0, 2400, 2, 102 / 105 - 1),
            # BBB's first week: no previous BBB close (AAA's close must not be used).
            ("BBB", "2024-12-30", "2025-01-02", 50.0, 55.0, 49.0, 55.0, 30, 2, NAN),
        ]
    )
    assert_frame_equal(result, expected)


def test_monthly_bars_start_on_the_first(crafted_prices):
    result = aggregate_prices(crafted_prices, "monthly")
    expected = _bars(
        [
            ("AAA", "2024-12-01", "2024-12-31", 100.0, 104.0, 94.0, 97.0, 4500, 6, NAN),
            ("AAA", "2025-01-01", "2025-01-07", 97.0, 108.0, 96.0, 102.0, 5100, 4, 102 / 97 - 1),
            ("BBB", "2024-12-01", "2024-12-31", 50.0, 51.0, 49.0, 50.0, 10, 1, NAN),
            ("BBB", "2025-01-01", "2025-01-02", 50.0, 55.0, 50.0, 55.0, 20, 1, 55 / 50 - 1),
        ]
    )
    assert_frame_equal(result, expected)


def test_unknown_period_is_rejected(crafted_prices):
    with pytest.raises(ValueError, match="period"):
        aggregate_prices(crafted_prices, "daily")


def test_missing_column_is_named(crafted_prices):
    with pytest.raises(ValueError, match="volume"):
        aggregate_prices(crafted_prices.drop(columns=["volume"]), "weekly")


def test_duplicate_rows_are_rejected(crafted_prices):
    with pytest.raises(ValueError, match="duplicate"):
        aggregate_prices(pd.concat([crafted_prices, crafted_prices.head(1)]), "monthly")


def test_empty_prices_give_no_bars(crafted_prices):
    result = aggregate_prices(crafted_prices.iloc[0:0], "weekly")
    assert list(result.columns) == AGGREGATE_COLUMNS
    assert result.empty


# --- Real prices -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ibm_prices() -> pd.DataFrame:
    return load_bokeh_prices("IBM")


def _bar_from_daily_rows(rows: pd.DataFrame) -> dict:
    """The expected bar, computed the obvious way from the period's daily rows (sorted by date)."""
    return {
        "period_end": rows["trade_date"].iloc[-1],
        "open": rows["open"].iloc[0],
        "high": rows["high"].max(),
        "low": rows["low"].min(),
        "close": rows["close"].iloc[-1],
        "volume": rows["volume"].sum(),
        "trading_days": len(rows),
    }


def test_ibm_march_and_april_2000_monthly_bars(ibm_prices):
    # The sample data starts on 1 March 2000: March is IBM's first bar, April has Good Friday off.
    result = aggregate_prices(ibm_prices, "monthly")
    march_bar = result[result["period_start"] == "2000-03-01"].iloc[0]
    april_bar = result[result["period_start"] == "2000-04-01"].iloc[0]

    march = ibm_prices[ibm_prices["trade_date"].str.startswith("2000-03")]
    april = ibm_prices[ibm_prices["trade_date"].str.startswith("2000-04")]

    assert march_bar["symbol"] == april_bar["symbol"] == "IBM"
    assert {key: march_bar[key] for key in _bar_from_daily_rows(march)} == _bar_from_daily_rows(march)
    assert {key: april_bar[key] for key in _bar_from_daily_rows(april)} == _bar_from_daily_rows(april)
    assert np.isnan(march_bar["period_return"])  # IBM's first period: no previous close
    assert april_bar["period_return"] == april["close"].iloc[-1] / march["close"].iloc[-1] - 1
    assert (march_bar["trading_days"], april_bar["trading_days"]) == (23, 19)


def test_ibm_independence_day_week_2000(ibm_prices):
    result = aggregate_prices(ibm_prices, "weekly")
    bar = result[result["period_start"] == "2000-07-03"].iloc[0]

    week = ibm_prices[ibm_prices["trade_date"].between("2000-07-03", "2000-07-09")]
    previous_week = ibm_prices[ibm_prices["trade_date"].between("2000-06-26", "2000-07-02")]

    assert {key: bar[key] for key in _bar_from_daily_rows(week)} == _bar_from_daily_rows(week)
    assert bar["period_return"] == week["close"].iloc[-1] / previous_week["close"].iloc[-1] - 1
    assert bar["trading_days"] == 4  # closed on Tuesday 4 July


def test_affected_periods_plus_the_previous_one_are_enough(ibm_prices):
    # What an incremental caller does: new rows in June 2001 -> recompute June from the daily
    # rows of May (the previous period, for period_return) and June only.
    full = aggregate_prices(ibm_prices, "monthly")
    window = ibm_prices[ibm_prices["trade_date"].between("2001-05-01", "2001-06-30")]

    partial = aggregate_prices(window, "monthly")

    assert partial["period_return"].isna().tolist() == [True, False]  # May was only context
    june_full = full[full["period_start"] == "2001-06-01"].reset_index(drop=True)
    june_partial = partial[partial["period_start"] == "2001-06-01"].reset_index(drop=True)
    assert_frame_equal(june_partial, june_full)


def test_every_daily_row_is_in_exactly_one_bar(ibm_prices):
    for period in ("weekly", "monthly"):
        result = aggregate_prices(ibm_prices, period)
        assert result["trading_days"].sum() == len(ibm_prices)
        assert result["volume"].sum() == ibm_prices["volume"].sum()
        assert result["volume"].dtype == "int64"
        assert result["period_start"].is_monotonic_increasing
