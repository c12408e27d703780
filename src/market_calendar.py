"""The market calendar: NYSE sessions, the New York timezone and the clock, in one place.

Every question about time in the pipeline is answered here: is a day a trading session, which
session closed last, which sessions lie between two dates, what is "today" in New York, and
what time is it in UTC (for audit columns only). The calendar is `exchange_calendars`' "XNYS"
(the New York Stock Exchange): it knows weekends, holidays (e.g. Independence Day) and early
closes (e.g. the day after Thanksgiving closes at 13:00).

Example:
    >>> latest_completed_session(datetime(2024, 7, 5, 14, 0, tzinfo=UTC))  # 10:00 in New York
    datetime.date(2024, 7, 3)
    >>> sessions_between(date(2024, 7, 3), date(2024, 7, 8))
    [datetime.date(2024, 7, 3), datetime.date(2024, 7, 5), datetime.date(2024, 7, 8)]
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import exchange_calendars
import pandas as pd

logger = logging.getLogger(__name__)

# Trade dates are New York trading days. (The DAG file needs the same name at parse time,
# when it may not import `src`; tests/unit/test_dag_integrity.py checks that the two agree.)
NEW_YORK = "America/New_York"
NEW_YORK_TZ = ZoneInfo(NEW_YORK)

CALENDAR_NAME = "XNYS"
# The span the cached calendar covers. Building it takes a fraction of a second, so it is built
# once per process for a fixed, generous span instead of once per call. Holidays far in the
# future are projected from today's rules (a newly declared holiday needs a library upgrade).
CALENDAR_FIRST_DAY = "1970-01-01"
CALENDAR_LAST_DAY = "2040-12-31"


@functools.lru_cache(maxsize=1)
def nyse_calendar() -> exchange_calendars.ExchangeCalendar:
    """Return the NYSE calendar for CALENDAR_FIRST_DAY..CALENDAR_LAST_DAY (built once, then cached)."""
    logger.debug("Building the %s calendar for %s..%s", CALENDAR_NAME, CALENDAR_FIRST_DAY, CALENDAR_LAST_DAY)
    return exchange_calendars.get_calendar(CALENDAR_NAME, start=CALENDAR_FIRST_DAY, end=CALENDAR_LAST_DAY)


def utc_now_iso() -> str:
    """The current time as an ISO 8601 UTC string (seconds precision), e.g. '2024-01-02T21:30:05+00:00'.

    Used for `fetched_at` and the audit columns (`loaded_at`, run start/end), never to decide
    which data to fetch: that is keyed on the run's logical date.
    """
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_york_today(now: datetime | None = None) -> date:
    """The calendar date in New York at `now` (default: the real time).

    Example:
        >>> new_york_today(datetime(2024, 1, 2, 3, 0, tzinfo=UTC))  # 22:00 on Jan 1 in New York
        datetime.date(2024, 1, 1)
    """
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(NEW_YORK_TZ).date()


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
    return last_close.tz_convert(NEW_YORK).date()


def sessions_between(first: date, last: date) -> list[date]:
    """The NYSE sessions from `first` to `last`, both included (empty when first > last).

    The range is cut to the calendar's span (CALENDAR_FIRST_DAY..CALENDAR_LAST_DAY): a date
    outside it (a bad source row dated 1969) has no sessions instead of an exchange_calendars error.

    Example:
        >>> sessions_between(date(2024, 7, 3), date(2024, 7, 5))  # 07-04 is a holiday
        [datetime.date(2024, 7, 3), datetime.date(2024, 7, 5)]
    """
    calendar = nyse_calendar()
    first = max(first, calendar.first_session.date())
    last = min(last, calendar.last_session.date())
    if first > last:
        return []
    return [day.date() for day in calendar.sessions_in_range(first.isoformat(), last.isoformat())]


def recent_sessions(last: date, count: int) -> list[date]:
    """The `count` NYSE sessions up to `last` (included if it is a session), oldest first.

    Example:
        >>> recent_sessions(date(2024, 7, 5), 3)  # 07-04 is a holiday
        [datetime.date(2024, 7, 2), datetime.date(2024, 7, 3), datetime.date(2024, 7, 5)]
    """
    calendar = nyse_calendar()
    session = calendar.date_to_session(last.isoformat(), direction="previous")
    return [day.date() for day in calendar.sessions_window(session, -count)]


def session_dates() -> pd.DatetimeIndex:
    """Every NYSE session of the calendar's span, as midnight timestamps (sorted).

    The validator and the quality flags look dates up in this index (vectorised).
    """
    return nyse_calendar().sessions
