"""Client-side limits for Alpha Vantage: a per-minute rate limiter and a daily quota.

- `RateLimiter` spaces calls so that there are never more than `calls_per_minute` calls in any
  60-second window and at least `min_interval_seconds` between two calls. It sleeps only as
  long as those two rules require.
- `DailyQuota` counts calls per calendar day in a small JSON file, so a second run on the same
  day knows how many calls are left, and remembers when the API said "quota exhausted".

Both take their clock and sleep functions as arguments, so tests run them on a fake clock.

Neither class is shared between processes: the per-minute window lives in memory, and the
quota file is read and rewritten without a cross-process lock. Run the Alpha Vantage fetches of
one day one at a time (e.g. an Airflow pool with one slot) so these limits stay exact.

Example:
    >>> limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0)
    >>> quota = DailyQuota(Path("data/state"), daily_limit=25)
    >>> if not quota.is_exhausted():
    ...     limiter.wait()
    ...     quota.record_call()
    ...     # send the request here
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
QUOTA_FILE_NAME = "alpha_vantage_quota.json"
EASTERN = ZoneInfo("America/New_York")


class RateLimiter:
    """Spaces calls: at most `calls_per_minute` in any 60 s window, and `min_interval_seconds` apart.

    Call `wait()` right before each request. It remembers when the last `calls_per_minute`
    calls happened; a new call may go when both are true:
    - at least `min_interval_seconds` have passed since the previous call, and
    - the oldest of the remembered calls is at least 60 s old (so it has left the window).
    A call at time t counts in the window [t, t + 60 s); at t + 60 s a new call may take its place.

    Example (5 calls per minute, 1 s apart): calls go at 0, 1, 2, 3, 4 s, then 60, 61, ... s;
    the 50th call goes at 9 * 60 + 4 = 544 s.

    Args:
        calls_per_minute: the most calls allowed in any 60-second window (at least 1).
        min_interval_seconds: the least time between two calls (0 = no spacing rule).
        clock: returns the current time in seconds; must never go backwards (time.monotonic).
        sleep: sleeps for the given seconds (tests pass a fake that advances a fake clock).
    """

    def __init__(
        self,
        calls_per_minute: int,
        min_interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if calls_per_minute < 1:
            raise ValueError(f"calls_per_minute must be at least 1, got {calls_per_minute}")
        if min_interval_seconds < 0:
            raise ValueError(f"min_interval_seconds must be 0 or more, got {min_interval_seconds}")
        self.calls_per_minute = calls_per_minute
        self.min_interval_seconds = min_interval_seconds
        self._clock = clock
        self._sleep = sleep
        # The times of the most recent calls; only the last `calls_per_minute` matter.
        self._recent_calls: deque[float] = deque(maxlen=calls_per_minute)

    def next_allowed_time(self) -> float:
        """Return the earliest clock time at which the next call may go (may be in the past)."""
        if not self._recent_calls:
            return float("-inf")
        earliest = self._recent_calls[-1] + self.min_interval_seconds
        if len(self._recent_calls) == self.calls_per_minute:
            # The window is full: wait until its oldest call is 60 s old.
            earliest = max(earliest, self._recent_calls[0] + WINDOW_SECONDS)
        return earliest

    def wait(self) -> float:
        """Sleep until the next call is allowed, then count it as made now.

        Returns:
            The seconds slept (0.0 when the call could go at once).
        """
        slept = 0.0
        now = self._clock()
        # A loop rather than one sleep: a real sleep can wake up a hair early on some systems.
        while now < self.next_allowed_time():
            pause = self.next_allowed_time() - now
            logger.debug("rate limiter: sleeping %.3f s before the next call", pause)
            self._sleep(pause)
            slept += pause
            now = self._clock()
        self._recent_calls.append(now)
        return slept

    def call_finished(self) -> None:
        """Count the last call as made when its reply arrived, not when it was sent.

        The server counts calls when they *arrive*. A request that is slow to get there (a new
        connection, a busy network) could otherwise land less than `min_interval_seconds` after
        the next one and be throttled. Timing from the reply keeps the arrivals apart too.
        """
        if self._recent_calls:
            self._recent_calls[-1] = self._clock()


def eastern_today(now: datetime | None = None) -> date:
    """Return the date on the US/Eastern calendar (America/New_York), today by default.

    Args:
        now: an aware datetime to convert instead of the current time (handy in tests).

    Example:
        >>> eastern_today(datetime(2024, 1, 2, 3, 0, tzinfo=UTC))  # 22:00 on Jan 1 in New York
        datetime.date(2024, 1, 1)
    """
    return (now or datetime.now(UTC)).astimezone(EASTERN).date()


class DailyQuota:
    """Counts Alpha Vantage calls per day in `<state_dir>/alpha_vantage_quota.json`.

    Which day? The US/Eastern calendar day (America/New_York), the same calendar as our
    trading days and as Alpha Vantage's own timestamps ("5. Time Zone": "US/Eastern"). Alpha
    Vantage does not document when its daily counter resets, so our count is our best guess
    and the API has the last word: when it answers "25 requests per day", call
    `mark_exhausted()` and we send nothing more until the next Eastern day. If the real reset
    happens earlier than ours we lose a few calls; if later, the first call of our new day gets
    the quota reply and marks the day exhausted: either way no data is lost, the fallback
    source is used.

    The file is rewritten atomically (temporary file + os.replace), so a crash mid-write never
    leaves half a file. A missing or unreadable file means "no calls recorded yet today".

    Args:
        state_dir: the folder for the state file (created if missing).
        daily_limit: calls allowed per day (settings.alpha_vantage_daily_limit; 0 = none).
        today: returns the current day; defaults to `eastern_today` (tests pass a fake).

    Example:
        >>> quota = DailyQuota(Path("data/state"), daily_limit=25)
        >>> quota.remaining()
        25
    """

    def __init__(self, state_dir: Path, daily_limit: int, today: Callable[[], date] = eastern_today):
        if daily_limit < 0:
            raise ValueError(f"daily_limit must be 0 or more, got {daily_limit}")
        self.path = Path(state_dir) / QUOTA_FILE_NAME
        self.daily_limit = daily_limit
        self._today = today

    def _load(self) -> dict:
        """Return today's state {"day", "calls", "exhausted"}; a state from another day starts over."""
        day = self._today().isoformat()
        fresh = {"day": day, "calls": 0, "exhausted": False}
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return fresh
        except (OSError, ValueError) as exc:
            logger.warning("quota file %s is unreadable (%s); starting today's count at 0", self.path, exc)
            return fresh
        if not isinstance(state, dict) or state.get("day") != day:
            return fresh  # a new day: the count resets
        calls = state.get("calls")
        return {
            "day": day,
            "calls": calls if isinstance(calls, int) and calls >= 0 else 0,
            "exhausted": state.get("exhausted") is True,
        }

    def _save(self, state: dict) -> None:
        """Write the state atomically: a temporary file in the same folder, then os.replace."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.path.parent, prefix=".quota-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
                json.dump(state, temp_file)
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def calls_today(self) -> int:
        """Return how many calls were recorded today."""
        return self._load()["calls"]

    def remaining(self) -> int:
        """Return how many calls are left today (0 once the API said the quota is exhausted)."""
        state = self._load()
        if state["exhausted"]:
            return 0
        return max(self.daily_limit - state["calls"], 0)

    def is_exhausted(self) -> bool:
        """Return True when no call is left today."""
        return self.remaining() == 0

    def record_call(self) -> int:
        """Count one call made today (call it right before sending the request).

        Returns:
            The calls left today after this one.
        """
        state = self._load()
        state["calls"] += 1
        self._save(state)
        left = 0 if state["exhausted"] else max(self.daily_limit - state["calls"], 0)
        logger.debug("alpha vantage quota: %d call(s) made on %s, %d left", state["calls"], state["day"], left)
        return left

    def mark_exhausted(self) -> None:
        """Record that the API said the daily quota is used up: nothing is left until tomorrow."""
        state = self._load()
        state["exhausted"] = True
        self._save(state)
        logger.warning(
            "alpha vantage daily quota exhausted for %s after %d call(s) recorded today",
            state["day"],
            state["calls"],
        )
