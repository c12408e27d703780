"""The background preparation (src/background.py) gives exactly what the plain loop gives, in order."""

from __future__ import annotations

import pytest

from src.background import prepare_ahead, prepare_in_turn
from src.config import Settings

# Builtins, so the spawned worker finds them by name without importing this test module.
BATCHES = [["MSFT", "AAPL"], ["IBM"], [], ["TSLA", "NVDA", "AMD"]]


def test_prepare_ahead_equals_the_plain_loop():
    plain = list(prepare_in_turn(sorted, BATCHES))
    ahead = list(prepare_ahead(sorted, BATCHES, Settings()))
    assert ahead == plain == [["AAPL", "MSFT"], ["IBM"], [], ["AMD", "NVDA", "TSLA"]]


def test_a_failing_batch_raises_where_it_failed_after_the_batches_before_it():
    batches = ["1", "2", "not a number", "4"]
    got = []
    with pytest.raises(ValueError, match="not a number"):
        for prepared in prepare_ahead(int, batches, Settings()):
            got.append(prepared)
    assert got == [1, 2]


def test_no_batches_prepare_nothing():
    assert list(prepare_ahead(sorted, [], Settings())) == []


def test_closing_early_kills_a_busy_worker_at_once():
    """Issue 19 case 8: a worker busy with the next batch must not outlive the run (it would spend quota)."""
    import time

    import psutil

    before = {child.pid for child in psutil.Process().children(recursive=True)}
    batches = prepare_ahead(time.sleep, [0, 60, 60], Settings())
    next(batches)  # batch 1 done; the worker is now sleeping through batch 2
    workers = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
    began = time.monotonic()
    batches.close()

    assert time.monotonic() - began < 10
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert [process for process in alive if "resource_tracker" not in " ".join(process.cmdline())] == []
