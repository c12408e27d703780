"""Rows for the `dim_date` table: every calendar day with its NYSE trading-day flags.

The flags come from the market calendar (`src/market_calendar.py`). This module only builds a
DataFrame, so the SQLite warehouse and the BigQuery handler both load the same rows.

Example:
    >>> frame = build_dim_date("2024-07-03", "2024-07-04")
    >>> frame[["trade_date", "is_trading_day", "is_early_close"]].values.tolist()
    [['2024-07-03', True, True], ['2024-07-04', False, False]]
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from src.market_calendar import CALENDAR_FIRST_DAY, CALENDAR_LAST_DAY, CALENDAR_NAME, nyse_calendar
from src.storage.schema import DIM_DATE


def build_dim_date(start: str | date, end: str | date) -> pd.DataFrame:
    """Build one `dim_date` row per calendar day from `start` to `end`, both included.

    Weekends and holidays are included too (with is_trading_day False), so a query can join
    any date to the dimension.

    Args:
        start: first day, 'YYYY-MM-DD' (or a date).
        end: last day, 'YYYY-MM-DD' (or a date).

    Returns:
        A DataFrame with exactly DIM_DATE's columns, in schema order: trade_date ('YYYY-MM-DD'
        text), year, quarter, month, day, day_of_week (0 = Monday), week_of_year (ISO week),
        all int64; day_name ('Monday'...); is_trading_day and is_early_close (bool).

    Raises:
        ValueError: start is after end, or the range is outside the calendar's span.

    Example:
        >>> build_dim_date("2024-11-28", "2024-11-29")["is_early_close"].tolist()
        [False, True]
    """
    first = pd.Timestamp(start)
    last = pd.Timestamp(end)
    if first > last:
        raise ValueError(f"dim_date range is backwards: start {first.date()} is after end {last.date()}")
    if first < pd.Timestamp(CALENDAR_FIRST_DAY) or last > pd.Timestamp(CALENDAR_LAST_DAY):
        raise ValueError(
            f"dim_date range {first.date()}..{last.date()} is outside the {CALENDAR_NAME} calendar span "
            f"{CALENDAR_FIRST_DAY}..{CALENDAR_LAST_DAY} (change CALENDAR_FIRST_DAY / CALENDAR_LAST_DAY in "
            "src/market_calendar.py)"
        )

    calendar = nyse_calendar()
    days = pd.Series(pd.date_range(first, last, freq="D"))
    sessions = calendar.sessions_in_range(first, last)
    frame = pd.DataFrame(
        {
            "trade_date": days.dt.strftime("%Y-%m-%d"),
            "year": days.dt.year.astype("int64"),
            "quarter": days.dt.quarter.astype("int64"),
            "month": days.dt.month.astype("int64"),
            "day": days.dt.day.astype("int64"),
            "day_of_week": days.dt.day_of_week.astype("int64"),
            "day_name": days.dt.day_name(),
            "week_of_year": days.dt.isocalendar()["week"].astype("int64"),
            "is_trading_day": days.isin(sessions),
            "is_early_close": days.isin(calendar.early_closes),
        }
    )
    # Same columns, same order as the one schema definition (a test checks this too).
    return frame[DIM_DATE.column_names]
