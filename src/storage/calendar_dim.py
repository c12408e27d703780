"""Rows for the `dim_date` table: every calendar day with its NYSE trading-day flags.

The trading calendar comes from `exchange_calendars` (calendar "XNYS", the New York Stock
Exchange): it knows the weekends, the holidays (e.g. Independence Day) and the early closes
(e.g. the day after Thanksgiving, 13:00 close). This module only builds a DataFrame, so the
SQLite warehouse and the BigQuery handler both load the same rows.

Example:
    >>> frame = build_dim_date("2024-07-03", "2024-07-04")
    >>> frame[["trade_date", "is_trading_day", "is_early_close"]].values.tolist()
    [['2024-07-03', True, True], ['2024-07-04', False, False]]
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, date, datetime

import exchange_calendars
import pandas as pd

from src.storage.schema import DIM_DATE

logger = logging.getLogger(__name__)

CALENDAR_NAME = "XNYS"
# The span the cached calendar covers. Building it takes a fraction of a second, so it is built
# once per process for a fixed, generous span instead of once per call. Holidays far in the
# future are projected from today's rules (a newly declared holiday needs a library upgrade).
CALENDAR_FIRST_DAY = "1970-01-01"
CALENDAR_LAST_DAY = "2040-12-31"


@functools.lru_cache(maxsize=1)
def nyse_calendar() -> exchange_calendars.ExchangeCalendar:
    """Return the NYSE calendar for CALENDAR_FIRST_DAY..CALENDAR_LAST_DAY (built once, then cached)."""
    logger.info("Building the %s calendar for %s..%s", CALENDAR_NAME, CALENDAR_FIRST_DAY, CALENDAR_LAST_DAY)
    return exchange_calendars.get_calendar(CALENDAR_NAME, start=CALENDAR_FIRST_DAY, end=CALENDAR_LAST_DAY)


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
            "src/storage/calendar_dim.py)"
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


def latest_completed_session(now: datetime | None = None) -> date:
    """The most recent NYSE session whose close has passed at `now`.

    Early closes count: on 2024-11-29 (close 13:00 New York time) the session is complete at
    14:00 but not at 12:00. Weekends and holidays have no session, so on Saturday this is
    Friday, and on 2024-07-05 at 10:00 it is 2024-07-03 (07-04 is a holiday).

    Args:
        now: a timezone-aware moment (a naive one is taken as UTC); default: the real time.

    Returns:
        The session's date.

    Example:
        >>> latest_completed_session(datetime(2024, 7, 5, 14, 0, tzinfo=UTC))  # 10:00 in New York
        datetime.date(2024, 7, 3)
    """
    moment = pd.Timestamp(now if now is not None else datetime.now(UTC))
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    # previous_close: the close of the last session that closed strictly before the moment.
    last_close = nyse_calendar().previous_close(moment)
    # A session closes on its own date in New York (16:00, or 13:00 on early-close days).
    return last_close.tz_convert("America/New_York").date()
