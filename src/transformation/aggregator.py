"""Weekly and monthly bars from daily prices.

A weekly (monthly) bar summarises a symbol's sessions of one week (month) the way a chart
does: the first open, the highest high, the lowest low, the last close, the total volume.

Updating aggregates incrementally (what the loader does): a period's bar depends on every daily
row of that period, and its `period_return` on the previous period's close. So when new daily
rows arrive, pass `aggregate_prices` ALL daily rows of the periods they touch PLUS the whole
previous period, then keep only the touched periods: the first bar of the result has no
previous close (its period_return is NaN) and was only there as context.
"""

from __future__ import annotations

import logging

import pandas as pd

from src.transformation.indicators_vectorised import SEGMENT_COLUMN, sort_by_symbol_and_date

logger = logging.getLogger(__name__)

PERIODS = ("weekly", "monthly")

AGGREGATE_COLUMNS = [
    "symbol",
    "period_start",
    "period_end",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trading_days",
    "period_return",
]

_INPUT_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume"]
# The back-adjusted copies (splits.add_adjusted_prices); when the daily rows have them, the bars
# carry them too, aggregated the same way, and period_return is computed from adj_close (a split
# inside a period is not a return).
_ADJUSTED_INPUT_COLUMNS = ["adj_open", "adj_high", "adj_low", "adj_close", "adj_volume"]


def period_start(trade_dates: pd.Series, period: str) -> pd.Series:
    """The first calendar day of each date's period: its week's Monday or its month's 1st.

    Example: 2024-02-01 (a Thursday) -> weekly 2024-01-29, monthly 2024-02-01.
    """
    dates = pd.to_datetime(trade_dates, format="%Y-%m-%d")
    if period == "weekly":
        days_into_period = dates.dt.day_of_week  # Monday = 0
    else:
        days_into_period = dates.dt.day - 1
    return dates - pd.to_timedelta(days_into_period, unit="D")


def aggregate_prices(prices: pd.DataFrame, period: str) -> pd.DataFrame:
    """Aggregate daily bars of many symbols into weekly or monthly bars.

    Args:
        prices: validated canonical daily prices (symbol, trade_date 'YYYY-MM-DD', open, high,
            low, close, volume; other columns are ignored), any row order, one row per
            (symbol, trade_date).
        period: "weekly" (weeks start on Monday) or "monthly".

    Returns:
        One row per symbol and period, sorted by symbol and period_start, with exactly the
        columns symbol, period_start ('YYYY-MM-DD': the Monday, or the 1st of the month),
        period_end (the last trade_date with data in the period), open (first), high (max),
        low (min), close (last), volume (sum, int64), trading_days (sessions with data) and
        period_return (close / the previous period's close - 1; NaN for a symbol's first period,
        and for a period whose first row starts a new run of sessions, SEGMENT_COLUMN).
        When the daily rows carry adj_open .. adj_volume, so do the bars (same rules), and
        period_return is computed from adj_close.

    Raises:
        ValueError: unknown period, a missing column, or a duplicate (symbol, trade_date).

    Example:
        Mon 2024-01-29 .. Fri 2024-02-02 is one weekly bar (period_start 2024-01-29) but falls
        into two monthly bars (2024-01-01 and 2024-02-01).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    missing = [column for column in _INPUT_COLUMNS if column not in prices.columns]
    if missing:
        raise ValueError(f"prices is missing columns {missing}; it has {list(prices.columns)}")

    # Sorted by date within each symbol, so "first" is the period's open and "last" its close.
    columns = [*_INPUT_COLUMNS, SEGMENT_COLUMN] if SEGMENT_COLUMN in prices.columns else _INPUT_COLUMNS
    has_adjusted = all(column in prices.columns for column in _ADJUSTED_INPUT_COLUMNS)
    if has_adjusted:
        columns = [*columns, *_ADJUSTED_INPUT_COLUMNS]
    frame = sort_by_symbol_and_date(prices[columns])
    frame["period_start"] = period_start(frame["trade_date"], period)
    if SEGMENT_COLUMN not in frame.columns:
        frame[SEGMENT_COLUMN] = False

    bars = (
        frame.groupby(["symbol", "period_start"], sort=False)
        .agg(
            period_end=("trade_date", "last"),
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
            trading_days=("trade_date", "size"),
            after_long_hole=(SEGMENT_COLUMN, "first"),
            **(
                {
                    "adj_open": ("adj_open", "first"),
                    "adj_high": ("adj_high", "max"),
                    "adj_low": ("adj_low", "min"),
                    "adj_close": ("adj_close", "last"),
                    "adj_volume": ("adj_volume", "sum"),
                }
                if has_adjusted
                else {}
            ),
        )
        .reset_index()
    )
    # The bars come out in row order (symbol, then date), so the previous row of the same
    # symbol is the previous period.
    return_basis = "adj_close" if has_adjusted else "close"
    previous_close = bars.groupby("symbol", sort=False)[return_basis].shift(1)
    # A period that opens a new run of sessions (after a long hole) has no previous close to
    # compare with: the last bar before the hole is from another time.
    previous_close = previous_close.where(~bars["after_long_hole"].fillna(False).astype(bool))
    bars["period_return"] = bars[return_basis] / previous_close - 1.0
    bars["period_start"] = bars["period_start"].dt.strftime("%Y-%m-%d")
    bars["volume"] = bars["volume"].astype("int64")
    bars["trading_days"] = bars["trading_days"].astype("int64")
    logger.info(
        "aggregated %d daily rows into %d %s bars (%d symbols)",
        len(frame),
        len(bars),
        period,
        bars["symbol"].nunique(),
    )
    return bars[[*AGGREGATE_COLUMNS, *_ADJUSTED_INPUT_COLUMNS] if has_adjusted else AGGREGATE_COLUMNS]
