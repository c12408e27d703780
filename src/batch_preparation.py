"""Preparing batches for the CLI: fetch, land and transform, here or in a background process.

`prepare_batch` does everything a batch needs before the warehouse. `run_pipeline`
(src/pipeline.py) calls it for each batch in turn, or, for runs of more than one batch, lets
`prepare_in_background` run it in a second process, one batch ahead of the loading.

These functions live in their own module (not in src/pipeline.py) because a worker process
finds a function by its module name, and src/pipeline.py runs as `__main__` in the CLI.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date

import pandas as pd

from src.config import Settings, configure_logging

logger = logging.getLogger(__name__)

# Linux prctl option: "send me this signal when my parent process dies" (see start_worker).
PR_SET_PDEATHSIG = 1


@dataclass
class PreparedBatch:
    """One batch after fetch, landing and transform: everything the load step needs.

    It is small enough to send between processes: no HTTP session, no raw replies (those are
    already landed), just the symbols and the two transformed frames.
    """

    symbols: list[str]
    fetched: list[tuple[str, str]]  # (symbol, source) of each symbol that returned data, in batch order
    failures: dict[str, str]  # symbol -> why no source could serve it
    clean: pd.DataFrame
    quarantine: pd.DataFrame


def prepare_batch(
    symbols: list[str],
    start: date,
    end: date,
    settings: Settings,
    *,
    sources: list[str] | None = None,
    s3_client=None,
    session=None,
) -> PreparedBatch:
    """Fetch, land and transform one batch of symbols (everything before the warehouse).

    Each reply is landed (in S3, or as a checkpoint file without S3) as soon as it arrives,
    and replies landed by an interrupted earlier run are reused instead of fetched again.
    `session` is an HTTP session handed to the sources (tests pass one). Without an
    `s3_client`, one is made when S3_BUCKET is set (the background worker makes its own).
    """
    from src.pipeline_steps import fetch_and_land
    from src.transformation.transform import transform_prices

    if s3_client is None and settings.s3_bucket:
        from src.storage.s3_handler import get_s3_client

        s3_client = get_s3_client(settings)
    results, failures, _keys = fetch_and_land(
        symbols,
        start.isoformat(),
        end.isoformat(),
        end.isoformat(),
        settings,
        sources=sources,
        s3_client=s3_client,
        session=session,
    )
    fetched = [(result.symbol, result.source) for result in results]
    if not results:
        empty = pd.DataFrame()
        return PreparedBatch(list(symbols), fetched, failures, empty, empty)
    raw_prices = pd.concat([result.prices for result in results], ignore_index=True)
    del results  # the raw replies are landed; free them before the transform's copies
    clean, quarantine = transform_prices(raw_prices, run_date=end)
    return PreparedBatch(list(symbols), fetched, failures, clean, quarantine)


def start_worker(settings: Settings) -> None:
    """Set up the background worker process: logging like the CLI, and stop when the CLI stops.

    A CLI killed with SIGKILL (or by the out-of-memory killer) cannot tell its worker to stop,
    and an orphaned worker would go on fetching and spend API quota nobody waits for. On Linux
    the kernel can kill the worker when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere
    the worker just finishes its current batch and exits.
    """
    configure_logging(settings)
    if sys.platform == "linux":
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def prepare_in_background(
    batches: list[list[str]], start: date, end: date, settings: Settings, sources: list[str] | None
) -> Iterator[PreparedBatch]:
    """Yield the batches prepared (`prepare_batch`), in order, each one ready when the caller wants it.

    Why a second process: loading a batch into SQLite keeps one CPU core busy, and so does
    preparing one (reading and parsing, validating, cleaning). Python threads would take
    turns (the GIL lets one thread run Python at a time), but two processes run at the same
    time on two cores: while the caller loads batch i, the worker prepares batch i+1.
    There is ONE worker, so batches are still fetched one after another, in order, and the
    rate limits, quota and checkpoints work exactly as in a single process.

    "spawn" starts the worker as a fresh Python process (safer than forking a process that
    has open connections and threads); it gets the same settings and logging set-up.
    Closing the generator early (the caller failed) stops the worker without waiting for it.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=start_worker, initargs=(settings,))
    try:
        pending = pool.submit(prepare_batch, batches[0], start, end, settings, sources=sources)
        for next_batch in [*batches[1:], None]:
            prepared = pending.result()  # re-raises the worker's exception, if any
            if next_batch is not None:
                # Start the next batch before handing this one over, so both cores work.
                pending = pool.submit(prepare_batch, next_batch, start, end, settings, sources=sources)
            yield prepared
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
