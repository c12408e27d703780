"""Ctrl-C (SIGINT) and SIGTERM during a CLI run: stop cleanly, and record that the run was interrupted.

Python turns SIGINT into KeyboardInterrupt wherever the program happens to be, and by default
SIGTERM (`kill`, systemd, `docker stop`) ends the process at once. Either way the run could
end with no record (`running` forever), half a cleanup, or even `success` when the signal hit
while the end of the run was being recorded. While a run watches the signals (`watch_stop_signals`):

- the first signal raises `RunInterrupted` once, where the run is (a fetch, a wait, a sleep),
  unless the run is in a block it must finish first (`StopSignals.deferred`: loading a batch
  and counting it, so the counts recorded are the rows written);
- once the run has started recording its end (`StopSignals.hold`), a signal is only
  remembered: the run is still recorded, as `interrupted`;
- later signals (an impatient second Ctrl-C) are only remembered too, so the cleanup that
  records the run and stops the background worker is never cut short.

The CLI then exits with 128 + the signal number, as shells do: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run.

    A BaseException, like KeyboardInterrupt, so the pipeline's `except Exception` handlers
    (which record an error and go on) never swallow it.
    """

    def __init__(self, signal_number: int):
        self.signal_number = signal_number
        self.signal_name = signal.Signals(signal_number).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number: what a shell reports for a program stopped by that signal."""
        return 128 + self.signal_number


class StopSignals:
    """What one run knows about stop signals: which one came first, and whether it may raise now."""

    def __init__(self) -> None:
        self.signal_number: int | None = None  # the first SIGINT/SIGTERM received, if any
        self._may_raise = True  # False inside `deferred` and after `hold`
        self._held = False
        self._raised = False  # RunInterrupted is raised at most once per run

    @property
    def signal_name(self) -> str:
        """'SIGINT', 'SIGTERM', or '' when no signal came."""
        return signal.Signals(self.signal_number).name if self.signal_number else ""

    def on_signal(self, signal_number: int, frame) -> None:
        """The signal handler: remember the signal; raise RunInterrupted if the run may stop here."""
        if self.signal_number is None:
            self.signal_number = signal_number
            logger.warning("%s received: stopping the run cleanly", signal.Signals(signal_number).name)
        else:
            logger.warning("%s received again: already stopping", signal.Signals(signal_number).name)
        self.raise_if_received()

    def raise_if_received(self) -> None:
        """Raise RunInterrupted now if a signal came and it has not been raised yet (and may be)."""
        if self.signal_number is not None and self._may_raise and not self._raised:
            self._raised = True
            raise RunInterrupted(self.signal_number)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal must not cut in two: a signal inside it is raised at its end."""
        self._may_raise = False
        try:
            yield
        finally:
            self._may_raise = not self._held
        self.raise_if_received()

    def hold(self) -> None:
        """From now on signals are only remembered: the run is recording how it ended."""
        self._held = True
        self._may_raise = False


_watching: StopSignals | None = None


@contextlib.contextmanager
def watch_stop_signals() -> Iterator[StopSignals]:
    """Handle SIGINT and SIGTERM with a `StopSignals` for the `with` block; restore the old handlers after.

    Nested calls (the CLI watches from its start, `steps.run_pipeline` again) share the outer
    watcher. Outside the main thread (a test runner's thread) signals cannot be handled:
    the watcher then never fires.
    """
    global _watching
    if _watching is not None:
        yield _watching
        return
    watcher = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield watcher
        return
    previous = {number: signal.signal(number, watcher.on_signal) for number in STOP_SIGNALS}
    _watching = watcher
    try:
        yield watcher
    finally:
        _watching = None
        for number, handler in previous.items():
            signal.signal(number, handler)
