"""A speed-up for the CLI: prepare the next batch in a second process while this one loads.

The plain way is `prepare_in_turn`: prepare batch 1, load it, prepare batch 2, load it, ...
`prepare_ahead` gives the caller exactly the same prepared batches, in the same order, but
prepares batch i+1 in a background process while the caller loads batch i.
tests/unit/test_background.py checks that both give the same results.

Why a second process: loading a batch into SQLite keeps one CPU core busy, and so does
preparing one (fetching, parsing, validating, cleaning). Python threads would take turns (the
GIL lets one thread run Python at a time), but two processes run at the same time on two cores.
On a large CLI backfill the two halves then overlap (docs/benchmarks.md has the figures).
There is ONE worker, so batches are still fetched one after another, in order, and rate limits,
the daily quota and checkpoints work exactly as in one process.

`prepare` must be a module-level function (or a functools.partial of one): the worker is a
fresh Python process ("spawn", safer than forking a process that has open connections and
threads) and finds the function by its module name.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from src.config import Settings, configure_logging

logger = logging.getLogger(__name__)

# Linux prctl option: "send me this signal when my parent process dies" (see start_worker).
PR_SET_PDEATHSIG = 1


def prepare_in_turn(prepare: Callable, batches: list) -> Iterator:
    """The plain way: prepare each batch when the caller asks for it, in this process."""
    for batch in batches:
        yield prepare(batch)


def start_worker(settings: Settings) -> None:
    """Set up the background worker process: logging like the CLI, and stop when the CLI stops.

    A CLI killed with SIGKILL (or by the out-of-memory killer) cannot tell its worker to stop,
    and an orphaned worker would go on fetching and spend API quota nobody waits for. On Linux
    the kernel can kill the worker when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere
    the worker just finishes its current batch and exits.
    """
    configure_logging(settings)
    # Ctrl-C in a terminal and `docker stop` signal the whole process group, this worker too.
    # The CLI decides how the run ends (it records it `interrupted`) and then kills this
    # worker itself (`stop_worker`); a worker that died of the signal on its own would turn
    # the clean stop into a "worker died" failure.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform == "linux":
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


class BackgroundWorkerError(Exception):
    """The background worker process stopped without finishing its batch (killed, out of memory)."""


def stop_worker(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's worker now and wait until it is gone: no worker outlives the run.

    `shutdown(wait=False)` alone would let a worker that is busy finish its batch (fetching,
    spending API quota) after the run has ended, and Python then waits for it at exit. So a
    worker still running is killed (SIGKILL: it ignores SIGINT and SIGTERM, see start_worker);
    what it had half done is redone by the next run, as after any crash (replies landed
    before are reused). Python 3.11 has no public way to reach the worker processes
    (3.14 adds `terminate_workers`), hence `_processes`.
    """
    workers = list((pool._processes or {}).values())  # read first: shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.kill()
    for process in workers:
        process.join(timeout=10)


def prepare_ahead(prepare: Callable, batches: list, settings: Settings) -> Iterator:
    """Yield `prepare(batch)` for each batch, in order, each one computed ahead in a worker process.

    While the caller works on batch i, the worker prepares batch i+1. The worker's exceptions
    are raised here, at the batch that failed. Closing the generator early (the caller failed
    or was interrupted) kills the worker (`stop_worker`).

    Raises:
        BackgroundWorkerError: the worker process died (killed, out of memory); the message
            says what to do.

    Args:
        prepare: a module-level function taking one batch (see the module docstring).
        batches: the batches, in order.
        settings: loaded settings (the worker sets up logging from them).
    """
    if not batches:
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=start_worker, initargs=(settings,))
    try:
        pending = pool.submit(prepare, batches[0])
        for index in range(len(batches)):
            try:
                prepared = pending.result()  # re-raises the worker's exception, if any
            except BrokenProcessPool as exc:
                raise BackgroundWorkerError(
                    f"the background worker process that prepares batch {index + 1} of {len(batches)} died "
                    "(killed, or out of memory). Rerun the same dates (loaded batches are kept); "
                    "set PREPARE_IN_BACKGROUND=false to prepare every batch in the CLI's own process."
                ) from exc
            if index + 1 < len(batches):
                # Start the next batch before handing this one over, so both cores work.
                pending = pool.submit(prepare, batches[index + 1])
            yield prepared
    finally:
        stop_worker(pool)
