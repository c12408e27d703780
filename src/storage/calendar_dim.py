"""Rows for the `dim_date` table: every calendar day with its NYSE trading-day flags.

The flags come from the market calendar (`src/market_calendar.py`). This module only builds a
DataFrame, so the SQLite warehouse and the BigQuery handler both load the same rows.

Example:
    >>> frame = build_dim_date("2024-07-03", "2024-07-04")
    >>> frame[["trade_date", "is_trading_day", "is_early_close"]].values.tolist()
    [['2024-07-03', True, True], ['2024-07-04', False, False]]
"""

from __future__ import annotations

from datetime import date, timedelta

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


def dim_date_range_to_write(
    start: str, end: str, stored_first: str | None, stored_last: str | None, stored_days: int
) -> tuple[str, str]:
    """The days to (re)write so that dim_date covers every day from its first to its last, gap-free.

    `v_data_completeness` counts a symbol's expected sessions from dim_date between its first and
    last stored date, so dim_date must hold every day in between, not only the days some load
    touched: a hole in dim_date would hide a hole in the prices. The days the load touched
    (`start`..`end`) are always written (that picks up calendar corrections), together with the
    days between them and the stored ones; a dim_date that has a hole already is refilled whole.

    Args:
        start, end: the days the load touched, 'YYYY-MM-DD'.
        stored_first, stored_last, stored_days: MIN, MAX and COUNT of the stored dim_date
            (None, None, 0 when it is empty).

    Returns:
        (first, last): the days to write, both included.

    Example:
        >>> dim_date_range_to_write("2025-01-02", "2025-01-03", "2012-01-01", "2012-12-31", 366)
        ('2013-01-01', '2025-01-03')
    """
    if stored_first is None or stored_last is None:
        return start, end
    stored_span = (date.fromisoformat(stored_last) - date.fromisoformat(stored_first)).days + 1
    if stored_days != stored_span:  # a dim_date from before this rule, with holes: refill it
        return min(start, stored_first), max(end, stored_last)
    first, last = start, end
    if end > stored_last:
        first = min(first, _shift(stored_last, 1))
    if start < stored_first:
        last = max(last, _shift(stored_first, -1))
    return first, last


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()
