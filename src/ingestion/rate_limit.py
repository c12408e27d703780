"""Client-side limits for Alpha Vantage: a per-minute rate limiter and a daily quota.

- `RateLimiter` spaces calls so that there are never more than `calls_per_minute` calls in any
  60-second window and at least `min_interval_seconds` between two calls. It sleeps only as
  long as those two rules require.
- `DailyQuota` counts calls per calendar day in a small JSON file, so a second run on the same
  day knows how many calls are left, and remembers when the API said "quota exhausted".

Both take their clock and sleep functions as arguments, so tests run them on a fake clock.

Both can carry their state over to the next run, batch or process through small JSON files in
the state folder: `DailyQuota` always (`alpha_vantage_quota.json`), `RateLimiter` when it gets a
`state_file` (the pipeline uses `alpha_vantage_recent_calls.json`). Without that file, batch 2
would start with an empty window and could fire its calls right after batch 1's last ones.
The files are read and rewritten without a cross-process lock, so run the Alpha Vantage fetches
one at a time (e.g. an Airflow pool with one slot) to keep these limits exact.

Example:
    >>> limiter = RateLimiter(
    ...     calls_per_minute=5,
    ...     min_interval_seconds=1.0,
    ...     state_file=Path("data/state") / RATE_LIMIT_FILE_NAME,
    ... )
    >>> quota = DailyQuota(Path("data/state"), daily_limit=25)
    >>> if not quota.is_exhausted():
    ...     limiter.wait()
    ...     quota.record_call()
    ...     # send the request here
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import date
from pathlib import Path

from src.market_calendar import new_york_today

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
QUOTA_FILE_NAME = "alpha_vantage_quota.json"
RATE_LIMIT_FILE_NAME = "alpha_vantage_recent_calls.json"


def _read_json_file(path: Path, name: str, fallback: str) -> tuple[bool, object]:
    """Read a small JSON state file (the counterpart of `_write_json_atomically`).

    Args:
        path: the file to read.
        name: how the warning calls the file, e.g. "quota file".
        fallback: what the caller does instead, for the warning, e.g. "ignoring it".

    Returns:
        (True, data) when the file was read; (False, None) when it is missing (silently) or
        unreadable / not JSON (logged as a warning).
    """
    try:
        return True, json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError) as exc:
        logger.warning("%s %s is unreadable (%s); %s", name, path, exc, fallback)
        return False, None


def _write_json_atomically(path: Path, data: object) -> None:
    """Write `data` as JSON to `path` so that readers see either the old file or the new one.

    The data goes to a temporary file in the same folder first, then `os.replace` swaps it in
    (an atomic rename on the same file system). A crash mid-write never leaves half a file, and
    a failed write leaves the old file as it was and no temporary file behind.

    Args:
        path: the file to write; its folder is created if missing.
        data: anything `json.dump` accepts (a dict, a list of floats, ...).

    Raises:
        OSError: the folder or the file could not be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
            json.dump(data, temp_file)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


class RateLimiter:
    """Spaces calls: at most `calls_per_minute` in any 60 s window, and `min_interval_seconds` apart.

    Call `wait()` right before each request. It remembers when the last `calls_per_minute`
    calls happened; a new call may go when both are true:
    - at least `min_interval_seconds` have passed since the previous call, and
    - the oldest of the remembered calls is at least 60 s old (so it has left the window).
    A call at time t counts in the window [t, t + 60 s); at t + 60 s a new call may take its place.

    Example (5 calls per minute, 1 s apart): calls go at 0, 1, 2, 3, 4 s, then 60, 61, ... s;
    the 50th call goes at 9 * 60 + 4 = 544 s.

    With a `state_file`, the recent call times are also kept in that JSON file (a list of
    floats), so the next RateLimiter - in this process or in another one, e.g. the next batch
    or the next Airflow task - continues the same window instead of starting empty. There is
    no lock: run one Alpha Vantage fetch at a time (e.g. an Airflow pool with one slot).

    Args:
        calls_per_minute: the most calls allowed in any 60-second window (at least 1).
        min_interval_seconds: the least time between two calls (0 = no spacing rule).
        clock: returns the current time in seconds. Default: `time.monotonic` without a
            state file; `time.time` with one, because times written to the file must mean the
            same thing in every process (monotonic time only makes sense within one boot).
        sleep: sleeps for the given seconds (tests pass a fake that advances a fake clock).
        state_file: the JSON file that carries the recent call times over (None = memory only).
    """

    def __init__(
        self,
        calls_per_minute: int,
        min_interval_seconds: float,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        state_file: Path | None = None,
    ):
        if calls_per_minute < 1:
            raise ValueError(f"calls_per_minute must be at least 1, got {calls_per_minute}")
        if min_interval_seconds < 0:
            raise ValueError(f"min_interval_seconds must be 0 or more, got {min_interval_seconds}")
        self.calls_per_minute = calls_per_minute
        self.min_interval_seconds = min_interval_seconds
        self.state_file = Path(state_file) if state_file is not None else None
        if clock is None:
            clock = time.time if self.state_file is not None else time.monotonic
        self._clock = clock
        self._sleep = sleep
        # The times of the most recent calls; only the last `calls_per_minute` matter.
        self._recent_calls: deque[float] = deque(maxlen=calls_per_minute)

    def _load_recorded_calls(self) -> list[float] | None:
        """Return the call times recorded in the state file, oldest first.

        Returns:
            The recorded times, or None when there is no usable file (missing, unreadable or
            garbled; the last two are logged as a warning).
        """
        found, recorded = _read_json_file(self.state_file, "rate limit file", "ignoring it")
        if not found:
            return None
        # Expect a list of plain numbers (bool is a kind of int in Python, so refuse it by name).
        if not isinstance(recorded, list) or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            for value in recorded
        ):
            logger.warning(
                "rate limit file %s is garbled (expected a list of times, got %.100r); ignoring it",
                self.state_file,
                recorded,
            )
            return None
        return sorted(float(value) for value in recorded)

    def _save_recent_calls(self) -> None:
        """Write the recent call times to the state file (when there is one).

        A failed write is logged, not raised: this batch is still paced exactly from memory, and
        raising here (also called from a `finally` block) would hide the request's own outcome.
        """
        if self.state_file is None:
            return
        try:
            _write_json_atomically(self.state_file, list(self._recent_calls))
        except OSError as exc:
            logger.warning(
                "could not save the rate limit file %s (%s); the next batch will not see these calls",
                self.state_file,
                exc,
            )

    def _clamp_future_calls(self, now: float) -> None:
        """Treat recorded call times later than `now` as made `now`.

        With the wall clock (`time.time`) a time can lie in the future: the system clock was set
        back (e.g. by NTP) after that call was recorded. Taken as-is, such a time would make
        `wait()` sleep for as long as the clock jumped, maybe hours. "Just now" is the latest the
        call can really have happened, so clamping still keeps the limits, and the wait is
        at most one window.
        """
        if any(call_time > now for call_time in self._recent_calls):
            clamped = [min(call_time, now) for call_time in self._recent_calls]
            self._recent_calls = deque(clamped, maxlen=self.calls_per_minute)

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

        With a state file, the recorded calls are read first (another limiter may have made
        calls since), and the new call is saved to it afterwards.

        Returns:
            The seconds slept (0.0 when the call could go at once).
        """
        if self.state_file is not None:
            recorded = self._load_recorded_calls()
            # A usable file is the latest word. Without one, keep what this limiter remembers
            # itself: nothing for a new limiter, its own calls if the file vanished mid-batch.
            if recorded is not None:
                self._recent_calls = deque(recorded, maxlen=self.calls_per_minute)
        slept = 0.0
        now = self._clock()
        self._clamp_future_calls(now)
        # A loop rather than one sleep: a real sleep can wake up a hair early on some systems.
        while now < self.next_allowed_time():
            pause = self.next_allowed_time() - now
            logger.debug("rate limiter: sleeping %.3f s before the next call", pause)
            self._sleep(pause)
            slept += pause
            now = self._clock()
            self._clamp_future_calls(now)
        self._recent_calls.append(now)
        self._save_recent_calls()
        return slept

    def call_finished(self) -> None:
        """Count the last call as made when its reply arrived, not when it was sent.

        The server counts calls when they *arrive*. A request that is slow to get there (a new
        connection, a busy network) could otherwise land less than `min_interval_seconds` after
        the next one and be throttled. Timing from the reply keeps the arrivals apart too.
        With a state file, the new time is saved, so the next limiter times from the reply too.
        """
        if self._recent_calls:
            self._recent_calls[-1] = self._clock()
            self._save_recent_calls()


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
        today: returns the current day; defaults to `market_calendar.new_york_today` (tests pass a fake).

    Example:
        >>> quota = DailyQuota(Path("data/state"), daily_limit=25)
        >>> quota.remaining()
        25
    """

    def __init__(self, state_dir: Path, daily_limit: int, today: Callable[[], date] = new_york_today):
        if daily_limit < 0:
            raise ValueError(f"daily_limit must be 0 or more, got {daily_limit}")
        self.path = Path(state_dir) / QUOTA_FILE_NAME
        self.daily_limit = daily_limit
        self._today = today

    def _load(self) -> dict:
        """Return today's state {"day", "calls", "exhausted"}; a state from another day starts over."""
        day = self._today().isoformat()
        fresh = {"day": day, "calls": 0, "exhausted": False}
        found, state = _read_json_file(self.path, "quota file", "starting today's count at 0")
        if not found:
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
        """Write the state atomically (see `_write_json_atomically`)."""
        _write_json_atomically(self.path, state)

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


SPLITS_CHECKED_FILE_NAME = "alpha_vantage_splits_checked.json"


class DailySplitChecks:
    """Remembers which symbols' Alpha Vantage SPLITS were fetched today.

    The state file is `<state_dir>/alpha_vantage_splits_checked.json`.

    Split events change rarely, and each SPLITS request costs one call of the daily quota, so
    a symbol's splits are fetched at most once per US/Eastern day (the quota's day): a second
    run, batch or retry on the same day skips the call. A missing or unreadable file means
    "nothing checked yet today".

    Args:
        state_dir: the folder for the state file (created if missing).
        today: returns the current day; defaults to `market_calendar.new_york_today`.

    Example:
        >>> checks = DailySplitChecks(Path("data/state"))
        >>> checks.checked_today("IBM")
        False
    """

    def __init__(self, state_dir: Path, today: Callable[[], date] = new_york_today):
        self.path = Path(state_dir) / SPLITS_CHECKED_FILE_NAME
        self._today = today

    def _symbols_today(self) -> list[str]:
        found, state = _read_json_file(self.path, "splits-checked file", "checking every symbol again")
        if not found or not isinstance(state, dict) or state.get("day") != self._today().isoformat():
            return []
        symbols = state.get("symbols")
        return [symbol for symbol in symbols if isinstance(symbol, str)] if isinstance(symbols, list) else []

    def checked_today(self, symbol: str) -> bool:
        """True when this symbol's splits were already fetched today."""
        return symbol in self._symbols_today()

    def mark_checked(self, symbol: str) -> None:
        """Record that this symbol's splits were fetched today."""
        symbols = self._symbols_today()
        if symbol not in symbols:
            _write_json_atomically(self.path, {"day": self._today().isoformat(), "symbols": [*symbols, symbol]})
