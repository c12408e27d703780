"""Tests for the Alpha Vantage rate limiter and daily quota (src/ingestion/rate_limit.py).

The rate limiter runs on a fake clock: its sleep function just moves the clock forward, so
ten minutes of calls take milliseconds and every call time is exact.
"""

import json
import os
import subprocess
import sys
import time
from datetime import date

import pytest

from src.config import PROJECT_ROOT
from src.ingestion.rate_limit import (
    QUOTA_FILE_NAME,
    RATE_LIMIT_FILE_NAME,
    DailyQuota,
    RateLimiter,
)


class FakeClock:
    """A clock that only moves when someone sleeps on it. Pass `.now` as clock, `.sleep` as sleep."""

    def __init__(self, start: float = 0.0):
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds


def make_calls(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    """Call wait() `count` times back to back; return the fake time of each call."""
    times = []
    for _ in range(count):
        limiter.wait()
        times.append(clock.now())
    return times


def most_calls_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The largest number of calls inside any window [t, t + 60 s) that starts at a call."""
    return max(sum(1 for other in times if start <= other < start + window) for start in times)


# --- RateLimiter -------------------------------------------------------------------------


def test_50_calls_at_5_per_minute_finish_at_544_seconds():
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)

    times = make_calls(limiter, clock, 50)

    assert times[0] == 0.0
    assert times[:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 60.0]
    assert times[-1] == 9 * 60 + 4  # 544 s: the earliest the 50th call may go
    assert most_calls_in_any_window(times) == 5
    assert min(later - earlier for earlier, later in zip(times, times[1:], strict=False)) == 1.0


def test_30_per_minute_with_1_second_spacing():
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=30, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)

    times = make_calls(limiter, clock, 65)

    # 30 calls one second apart (0..29 s), then the window is full until the first call is 60 s old.
    assert times[:30] == [float(second) for second in range(30)]
    assert times[30:60] == [float(second) for second in range(60, 90)]
    assert times[60:] == [120.0, 121.0, 122.0, 123.0, 124.0]
    assert most_calls_in_any_window(times) == 30


def test_no_sleep_when_calls_are_already_spread_out():
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)

    slept = []
    for _ in range(10):
        slept.append(limiter.wait())
        clock.time += 15.0  # the caller does other work between calls

    assert slept == [0.0] * 10
    assert clock.sleeps == []


def test_waits_only_for_the_missing_part_of_the_interval():
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)

    limiter.wait()
    clock.time += 0.25
    slept = limiter.wait()

    assert slept == 0.75
    assert clock.now() == 1.0


def test_full_window_frees_60_seconds_after_its_oldest_call():
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=3, min_interval_seconds=0.0, clock=clock.now, sleep=clock.sleep)

    times = make_calls(limiter, clock, 3)
    clock.time = 10.0
    times += make_calls(limiter, clock, 3)

    # Without spacing the first three go at once; the 4th waits for the 1st to leave the window.
    assert times == [0.0, 0.0, 0.0, 60.0, 60.0, 60.0]
    assert clock.sleeps == [50.0]


def test_real_clock_spacing_is_respected():
    limiter = RateLimiter(calls_per_minute=100, min_interval_seconds=0.05)
    started = time.monotonic()
    for _ in range(3):
        limiter.wait()
    assert time.monotonic() - started >= 0.1


@pytest.mark.parametrize(("calls_per_minute", "interval"), [(0, 1.0), (5, -1.0)])
def test_rate_limiter_refuses_impossible_limits(calls_per_minute, interval):
    with pytest.raises(ValueError):
        RateLimiter(calls_per_minute=calls_per_minute, min_interval_seconds=interval)


# --- RateLimiter with a state file (the window carries over to the next limiter) -----------


def make_shared_limiter(state_file, clock: FakeClock, calls_per_minute: int = 5) -> RateLimiter:
    """A 5-per-minute, 1-s-apart limiter on the fake clock that keeps its calls in `state_file`."""
    return RateLimiter(
        calls_per_minute=calls_per_minute,
        min_interval_seconds=1.0,
        clock=clock.now,
        sleep=clock.sleep,
        state_file=state_file,
    )


def test_second_limiter_waits_for_the_window_of_the_first(tmp_path):
    clock = FakeClock()
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    batch_1 = make_shared_limiter(state_file, clock)
    batch_2 = make_shared_limiter(state_file, clock)

    times_1 = make_calls(batch_1, clock, 5)
    times_2 = make_calls(batch_2, clock, 2)

    # Batch 2 does not start with an empty window: its first call waits until batch 1's first
    # call is 60 s old, exactly as one limiter would have done.
    assert times_1 == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert times_2 == [60.0, 61.0]
    assert most_calls_in_any_window(times_1 + times_2) == 5
    assert json.loads(state_file.read_text()) == [2.0, 3.0, 4.0, 60.0, 61.0]


def test_state_file_keeps_only_the_last_calls_per_minute_times(tmp_path):
    clock = FakeClock()
    state_file = tmp_path / RATE_LIMIT_FILE_NAME

    times = make_calls(make_shared_limiter(state_file, clock, calls_per_minute=3), clock, 7)

    assert times == [0.0, 1.0, 2.0, 60.0, 61.0, 62.0, 120.0]
    assert json.loads(state_file.read_text()) == [61.0, 62.0, 120.0]


def test_next_limiter_times_from_the_reply_recorded_by_call_finished(tmp_path):
    clock = FakeClock()
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    batch_1 = make_shared_limiter(state_file, clock)
    batch_1.wait()  # sent at t=0
    clock.sleep(0.4)  # the reply arrives at t=0.4
    batch_1.call_finished()

    slept = make_shared_limiter(state_file, clock).wait()

    assert json.loads(state_file.read_text()) == [pytest.approx(0.4), pytest.approx(1.4)]
    assert slept == pytest.approx(1.0)
    assert clock.now() == pytest.approx(1.4)


@pytest.mark.parametrize("content", ["{not json", '{"calls": [1.0]}', '[1.0, "soon"]', "[true]", "[NaN]"])
def test_garbled_state_file_counts_as_no_calls_with_a_warning(tmp_path, caplog, content):
    clock = FakeClock(start=1000.0)
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    state_file.write_text(content)

    slept = make_shared_limiter(state_file, clock).wait()

    assert slept == 0.0
    assert "rate limit file" in caplog.text
    assert json.loads(state_file.read_text()) == [1000.0]  # rewritten with the new call only


def test_missing_state_file_counts_as_no_calls_and_is_created(tmp_path, caplog):
    clock = FakeClock()
    state_file = tmp_path / "state" / "nested" / RATE_LIMIT_FILE_NAME

    slept = make_shared_limiter(state_file, clock).wait()

    assert slept == 0.0
    assert caplog.text == ""
    assert json.loads(state_file.read_text()) == [0.0]


def test_recorded_times_in_the_future_are_clamped_to_now(tmp_path):
    # The wall clock was set back by an hour after these calls were recorded.
    clock = FakeClock(start=1000.0)
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    state_file.write_text(json.dumps([4600.0]))

    slept = make_shared_limiter(state_file, clock).wait()

    # Treated as a call made just now: one interval of spacing, not an hour of sleep.
    assert slept == pytest.approx(1.0)
    assert json.loads(state_file.read_text()) == [1000.0, 1001.0]


def test_full_window_in_the_future_waits_at_most_one_window(tmp_path):
    clock = FakeClock(start=1000.0)
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    state_file.write_text(json.dumps([5000.0, 5001.0, 5002.0, 5003.0, 5004.0]))

    slept = make_shared_limiter(state_file, clock).wait()

    assert slept == pytest.approx(60.0)


def test_failed_save_is_logged_and_the_call_still_goes(tmp_path, monkeypatch, caplog):
    clock = FakeClock()
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    limiter = make_shared_limiter(state_file, clock)
    limiter.wait()

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    slept = limiter.wait()

    assert slept == 1.0  # still paced from memory
    assert "could not save the rate limit file" in caplog.text
    assert json.loads(state_file.read_text()) == [0.0]  # the old file is intact
    assert sorted(path.name for path in tmp_path.iterdir()) == [RATE_LIMIT_FILE_NAME]


def test_with_a_state_file_the_default_clock_is_the_wall_clock(tmp_path):
    # Times in a shared file must mean the same in every process; time.monotonic's do not.
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, state_file=state_file).wait()

    (recorded,) = json.loads(state_file.read_text())
    assert abs(recorded - time.time()) < 5.0


def test_without_a_state_file_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clock = FakeClock()
    first = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)
    make_calls(first, clock, 5)

    second = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)

    assert second.wait() == 0.0  # memory only: a new limiter starts with an empty window
    assert list(tmp_path.iterdir()) == []


SECOND_PROCESS_SCRIPT = """
import sys
from pathlib import Path
from src.ingestion.rate_limit import RateLimiter

RateLimiter(calls_per_minute=100, min_interval_seconds=0.5, state_file=Path(sys.argv[1])).wait()
"""


def test_a_second_process_continues_the_window_of_the_first(tmp_path):
    state_file = tmp_path / RATE_LIMIT_FILE_NAME
    # This process makes a call on the real (wall) clock...
    RateLimiter(calls_per_minute=100, min_interval_seconds=0.5, state_file=state_file).wait()

    # ...and a new Python process (~0.1 s to start) makes the next one.
    subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS_SCRIPT, str(state_file)],
        cwd=PROJECT_ROOT,
        check=True,
        timeout=30,
    )

    first_call, second_call = json.loads(state_file.read_text())
    assert second_call - first_call >= 0.5


# --- DailyQuota ----------------------------------------------------------------------------


class FakeToday:
    """A calendar for DailyQuota: `.day` is today until the test changes it."""

    def __init__(self, day: date):
        self.day = day

    def __call__(self) -> date:
        return self.day


def test_quota_counts_calls_and_saves_them(tmp_path):
    today = FakeToday(date(2024, 1, 2))
    quota = DailyQuota(tmp_path, daily_limit=3, today=today)

    assert quota.remaining() == 3
    assert quota.record_call() == 2
    assert quota.record_call() == 1

    assert quota.remaining() == 1
    assert not quota.is_exhausted()
    saved = json.loads((tmp_path / QUOTA_FILE_NAME).read_text())
    assert saved == {"day": "2024-01-02", "calls": 2, "exhausted": False}


def test_second_run_on_the_same_day_sees_what_is_left(tmp_path):
    today = FakeToday(date(2024, 1, 2))
    first_run = DailyQuota(tmp_path, daily_limit=3, today=today)
    for _ in range(3):
        first_run.record_call()

    second_run = DailyQuota(tmp_path, daily_limit=3, today=today)

    assert second_run.remaining() == 0
    assert second_run.is_exhausted()
    assert second_run.calls_today() == 3


def test_next_day_starts_over(tmp_path):
    today = FakeToday(date(2024, 1, 2))
    quota = DailyQuota(tmp_path, daily_limit=3, today=today)
    for _ in range(3):
        quota.record_call()
    quota.mark_exhausted()

    today.day = date(2024, 1, 3)

    assert quota.remaining() == 3
    assert DailyQuota(tmp_path, daily_limit=3, today=today).remaining() == 3


def test_mark_exhausted_leaves_nothing_for_the_rest_of_the_day(tmp_path):
    today = FakeToday(date(2024, 1, 2))
    quota = DailyQuota(tmp_path, daily_limit=25, today=today)
    quota.record_call()

    quota.mark_exhausted()

    assert quota.remaining() == 0
    assert quota.is_exhausted()
    assert DailyQuota(tmp_path, daily_limit=25, today=today).is_exhausted()
    saved = json.loads((tmp_path / QUOTA_FILE_NAME).read_text())
    assert saved == {"day": "2024-01-02", "calls": 1, "exhausted": True}


def test_zero_daily_limit_is_exhausted_from_the_start(tmp_path):
    assert DailyQuota(tmp_path, daily_limit=0, today=FakeToday(date(2024, 1, 2))).is_exhausted()


def test_unreadable_quota_file_starts_the_day_at_zero(tmp_path, caplog):
    (tmp_path / QUOTA_FILE_NAME).write_text("{not json")
    quota = DailyQuota(tmp_path, daily_limit=5, today=FakeToday(date(2024, 1, 2)))

    assert quota.remaining() == 5
    assert "unreadable" in caplog.text


def test_state_dir_is_created(tmp_path):
    state_dir = tmp_path / "state" / "nested"
    DailyQuota(state_dir, daily_limit=5, today=FakeToday(date(2024, 1, 2))).record_call()
    assert (state_dir / QUOTA_FILE_NAME).is_file()


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    quota = DailyQuota(tmp_path, daily_limit=5, today=FakeToday(date(2024, 1, 2)))
    quota.record_call()

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        quota.record_call()

    assert json.loads((tmp_path / QUOTA_FILE_NAME).read_text())["calls"] == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [QUOTA_FILE_NAME]


def test_spacing_counts_from_the_reply_so_slow_requests_still_arrive_apart():
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)

    limiter.wait()  # sent at t=0
    clock.sleep(0.4)  # the request takes 0.4 s to arrive and be answered
    limiter.call_finished()
    slept = limiter.wait()

    # The next call goes 1 s after the reply (t=1.4), not 1 s after the send (t=1.0).
    assert slept == pytest.approx(1.0)
    assert clock.now() == pytest.approx(1.4)
