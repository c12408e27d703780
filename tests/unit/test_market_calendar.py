"""The market calendar (src/market_calendar.py): sessions, early closes, holidays, New York's date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from src.market_calendar import NEW_YORK, latest_completed_session, new_york_today, recent_sessions, sessions_between

NEW_YORK_TZ = ZoneInfo(NEW_YORK)


def new_york(*args) -> datetime:
    """A New York wall-clock time, e.g. new_york(2024, 7, 5, 10, 0)."""
    return datetime(*args, tzinfo=NEW_YORK_TZ)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 07-04 is Independence Day; 07-03 closed early at 13:00, 07-05 is still trading.
        (new_york(2024, 7, 5, 10, 0), date(2024, 7, 3)),
        (new_york(2024, 7, 5, 16, 1), date(2024, 7, 5)),
        # The early close on 07-03: complete after 13:00, not at 12:59.
        (new_york(2024, 7, 3, 12, 59), date(2024, 7, 2)),
        (new_york(2024, 7, 3, 13, 1), date(2024, 7, 3)),
        # The day after Thanksgiving (11-28 is a holiday) closes at 13:00.
        (new_york(2024, 11, 29, 14, 0), date(2024, 11, 29)),
        (new_york(2024, 11, 29, 12, 0), date(2024, 11, 27)),
        # A weekend: Saturday and Sunday, and Monday before the close, all mean Friday.
        (new_york(2024, 7, 6, 12, 0), date(2024, 7, 5)),
        (new_york(2024, 7, 7, 23, 0), date(2024, 7, 5)),
        (new_york(2024, 7, 8, 15, 59), date(2024, 7, 5)),
        # A normal day at 16:00 exactly: the close has not passed yet.
        (new_york(2024, 7, 9, 16, 0), date(2024, 7, 8)),
    ],
)
def test_latest_completed_session_knows_holidays_early_closes_and_weekends(now, expected):
    assert latest_completed_session(now) == expected


def test_latest_completed_session_takes_a_naive_time_as_utc():
    # 2024-11-29 18:30 UTC is 13:30 in New York, after that day's 13:00 early close.
    assert latest_completed_session(datetime(2024, 11, 29, 18, 30)) == date(2024, 11, 29)
    assert latest_completed_session(datetime(2024, 11, 29, 17, 30, tzinfo=UTC)) == date(2024, 11, 27)


def test_latest_completed_session_defaults_to_the_real_clock():
    today = datetime.now(NEW_YORK_TZ).date()
    latest = latest_completed_session()
    assert latest <= today
    assert latest == latest_completed_session(datetime.now(UTC))


def test_sessions_between_skips_weekends_holidays_and_the_sandy_closure():
    # Hurricane Sandy closed the NYSE on Monday 2012-10-29 and Tuesday 2012-10-30.
    assert sessions_between(date(2012, 10, 26), date(2012, 11, 1)) == [
        date(2012, 10, 26),
        date(2012, 10, 31),
        date(2012, 11, 1),
    ]
    assert sessions_between(date(2024, 7, 4), date(2024, 7, 4)) == []
    assert sessions_between(date(2024, 7, 5), date(2024, 7, 3)) == []


def test_recent_sessions_ends_on_the_last_session_on_or_before_the_day():
    assert recent_sessions(date(2024, 7, 5), 3) == [date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5)]
    # 2024-07-07 is a Sunday: the window ends on Friday 07-05.
    assert recent_sessions(date(2024, 7, 7), 2) == [date(2024, 7, 3), date(2024, 7, 5)]
    assert recent_sessions(date(2024, 7, 4), 1) == [date(2024, 7, 3)]


def test_new_york_today_is_the_date_in_new_york():
    # 03:00 UTC is still the previous evening in New York (UTC-5 in winter, UTC-4 in summer).
    assert new_york_today(datetime(2024, 1, 2, 3, 0, tzinfo=UTC)) == date(2024, 1, 1)
    assert new_york_today(datetime(2024, 7, 2, 3, 30, tzinfo=UTC)) == date(2024, 7, 1)
    assert new_york_today(datetime(2024, 7, 2, 4, 0, tzinfo=UTC)) == date(2024, 7, 2)


def test_sessions_between_a_range_reaching_past_the_calendar_is_cut_to_it():
    # A bad source row dated 1969 must not crash the run that asks about it (issue 19 case 6).
    assert sessions_between(date(1969, 1, 1), date(1970, 1, 6)) == [
        date(1970, 1, 2),
        date(1970, 1, 5),
        date(1970, 1, 6),
    ]
    assert sessions_between(date(1960, 1, 1), date(1969, 12, 31)) == []
    assert sessions_between(date(2040, 12, 31), date(2041, 1, 10))[-1] <= date(2040, 12, 31)
