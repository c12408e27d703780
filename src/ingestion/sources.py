"""The sources orchestrator: try the configured sources in order until one has the data.

For each symbol, the sources in `settings.data_sources` (default: alpha_vantage, then yahoo;
"file" reads CSV files) are tried one after the other; the first success wins. Every failure
is logged with the symbol, the dates, the source and the reason.

What stops what:
- a `SourceError` (premium only, unknown symbol, no data, quota used up, source down) moves
  on to the next source; when every source failed, `AllSourcesFailedError` lists each reason;
- a `ConfigurationError` (missing or rejected Alpha Vantage key) stops everything: no other
  symbol would fare better, and falling back would hide a setting to fix;
- anything else (a bug) propagates too.

`fetch_batch` runs a list of symbols with ONE rate limiter and ONE daily quota for all of
them, so Alpha Vantage's limits hold across the batch; once the day's quota is used up, the
remaining symbols go straight to the next source without a request to Alpha Vantage.

Example:
    >>> settings = load_settings()
    >>> results, failures = fetch_batch(["IBM", "AAPL"], date(2024, 1, 2), date(2024, 1, 5), settings)
    >>> [(result.symbol, result.source) for result in results]
    [('IBM', 'alpha_vantage'), ('AAPL', 'alpha_vantage')]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import date

from src.config import VALID_SOURCES, ConfigurationError, Settings, require_alpha_vantage_key
from src.ingestion.alpha_vantage import fetch_daily_prices, fetch_splits
from src.ingestion.fetch_result import FetchResult, SourceError
from src.ingestion.file_source import fetch_file_prices, read_splits_file
from src.ingestion.rate_limit import RATE_LIMIT_FILE_NAME, DailyQuota, DailySplitChecks, RateLimiter
from src.ingestion.yahoo_finance import fetch_yahoo_prices, fetch_yahoo_splits

logger = logging.getLogger(__name__)


class AllSourcesFailedError(SourceError):
    """Every configured source failed for one symbol.

    Attributes:
        reasons: source name -> why it failed, in the order the sources were tried.
    """

    def __init__(self, symbol: str, reasons: dict[str, str]):
        details = "; ".join(f"{source}: {reason}" for source, reason in reasons.items())
        super().__init__(f"every source failed ({details})", symbol=symbol)
        self.reasons = dict(reasons)


def resolve_sources(sources: Iterable[str] | None, settings: Settings) -> list[str]:
    """Return the sources to try, in order: `sources` if given, else `settings.data_sources`.

    Raises:
        ConfigurationError: the list is empty or names an unknown source.
    """
    chosen = list(sources) if sources else list(settings.data_sources)
    unknown = [source for source in chosen if source not in VALID_SOURCES]
    if not chosen or unknown:
        raise ConfigurationError(f"sources must be taken from {', '.join(VALID_SOURCES)}; got {chosen or 'nothing'}")
    return chosen


def _fetch_from_source(
    source: str,
    symbol: str,
    start: date,
    end: date,
    settings: Settings,
    *,
    session,
    rate_limiter: RateLimiter | None,
    quota: DailyQuota | None,
    sleep: Callable[[float], None],
) -> FetchResult:
    """Call the fetcher of one source (each source takes only the arguments it needs), with its split events.

    The split events come from the source that served the prices. A file source's bad
    `<SYMBOL>.splits.csv` fails the symbol like a bad price file; Alpha Vantage's and Yahoo's
    events are extra calls whose failure leaves the prices good (`splits` None).
    """
    if source == "alpha_vantage":
        result = fetch_daily_prices(
            symbol, start, end, settings, session=session, rate_limiter=rate_limiter, quota=quota, sleep=sleep
        )
        result.splits = _alpha_vantage_splits(
            result.symbol, settings, session=session, rate_limiter=rate_limiter, quota=quota, sleep=sleep
        )
        return result
    if source == "yahoo":
        result = fetch_yahoo_prices(symbol, start, end, settings, session=session, sleep=sleep)
        result.splits = fetch_yahoo_splits(result.symbol, session=session)
        return result
    if source == "file":
        result = fetch_file_prices(symbol, start, end, settings.file_source_dir)
        try:
            result.splits = read_splits_file(result.symbol, settings.file_source_dir)
        except SourceError as exc:
            exc.symbol = result.symbol
            logger.warning("file %s: %s", result.symbol, exc.reason)
            raise
        return result
    raise ConfigurationError(f"unknown source {source!r}; expected one of {', '.join(VALID_SOURCES)}")


def _alpha_vantage_splits(
    symbol: str,
    settings: Settings,
    *,
    session,
    rate_limiter: RateLimiter | None,
    quota: DailyQuota | None,
    sleep: Callable[[float], None],
):
    """Alpha Vantage's split events for a symbol, at most once per symbol and day; None when skipped or failed.

    One SPLITS call per symbol and day, through the same rate limiter and quota as the prices
    (docs/ingestion.md has what a free key's 25 calls a day buy). Split events change rarely:
    when the call fails (throttled, quota used up, a bad reply) the prices are still loaded and
    the warehouse keeps the events it knows; the next day's run asks again.
    """
    checks = DailySplitChecks(settings.state_dir)
    if checks.checked_today(symbol):
        logger.debug("alpha_vantage %s: split events already fetched today", symbol)
        return None
    try:
        splits = fetch_splits(symbol, settings, session=session, rate_limiter=rate_limiter, quota=quota, sleep=sleep)
    except SourceError as exc:
        logger.warning("alpha_vantage %s: no split events this run (%s); keeping the stored ones", symbol, exc.reason)
        return None
    checks.mark_checked(symbol)
    return splits


def fetch_symbol(
    symbol: str,
    start: date,
    end: date,
    settings: Settings,
    *,
    sources: list[str] | None = None,
    session=None,
    rate_limiter: RateLimiter | None = None,
    quota: DailyQuota | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Fetch one symbol from the first source that has data for start..end.

    Args:
        symbol: a validated ticker, e.g. "IBM" (see `symbols.normalize_symbols`, which the
            pipeline's entry points call; each source checks it again where it builds a
            request or a file path).
        start: first trading day wanted (inclusive).
        end: last trading day wanted (inclusive).
        settings: the pipeline settings.
        sources: the sources to try, in order (default: `settings.data_sources`).
        session: an HTTP session handed to the sources (tests pass a `requests.Session`).
        rate_limiter: Alpha Vantage's per-minute limiter, shared by a batch (None: no pacing).
        quota: Alpha Vantage's daily quota, shared by a batch. When it is used up,
            alpha_vantage is skipped without a request (None: calls are not counted).
        sleep: the sleep function for retry waits (tests pass a fake).

    Returns:
        The FetchResult of the first source that succeeded (its `source` says which).

    Raises:
        InvalidSymbolInputError: the symbol is not a valid ticker (raised by the source).
        ConfigurationError: a source list or the Alpha Vantage key is wrong: stop the run.
        AllSourcesFailedError: every source failed; `.reasons` has each source's reason.
    """
    wanted = f"{symbol} {start}..{end}"
    reasons: dict[str, str] = {}
    for source in resolve_sources(sources, settings):
        if source == "alpha_vantage" and quota is not None and quota.is_exhausted():
            reasons[source] = "daily quota used up; skipped without a request"
            logger.info("%s: skipping %s: %s", wanted, source, reasons[source])
            continue
        try:
            result = _fetch_from_source(
                source,
                symbol,
                start,
                end,
                settings,
                session=session,
                rate_limiter=rate_limiter,
                quota=quota,
                sleep=sleep,
            )
        except SourceError as exc:
            reasons[source] = exc.reason
            logger.warning("%s: source %s failed: %s", wanted, source, exc.reason)
            continue
        if reasons:
            logger.info(
                "%s: got %d rows from %s after %s failed",
                wanted,
                len(result.prices),
                source,
                ", ".join(reasons),
            )
        return result

    error = AllSourcesFailedError(symbol, reasons)
    logger.error("%s: %s", wanted, error.reason)
    raise error


def fetch_batch(
    symbols: list[str],
    start: date,
    end: date,
    settings: Settings,
    *,
    sources: list[str] | None = None,
    session=None,
    sleep: Callable[[float], None] = time.sleep,
    on_fetched: Callable[[FetchResult], None] | None = None,
) -> tuple[list[FetchResult], dict[str, str]]:
    """Fetch several symbols, sharing one Alpha Vantage rate limiter and daily quota.

    The symbols must be validated already (`symbols.normalize_symbols`): the pipeline's entry
    points (the CLI, the DAG's resolve_symbols task) check every symbol before anything is
    fetched, so a typo stops the run before a single API call is spent. A symbol whose sources
    all fail is recorded in `failures` and the batch carries on; the caller must report those
    failures loudly (failed task, alert).

    Args:
        symbols: validated symbols, e.g. ["IBM", "AAPL"] (see `normalize_symbols`).
        start: first trading day wanted (inclusive).
        end: last trading day wanted (inclusive).
        settings: the pipeline settings; the quota lives in `settings.state_dir` and allows
            `settings.alpha_vantage_daily_limit` calls per day.
        sources: the sources to try, in order (default: `settings.data_sources`).
        session: an HTTP session handed to the sources (tests pass a `requests.Session`).
        sleep: the sleep function for the sources' retry waits. (The rate limiter keeps the
            real clock and sleep, so its waits always match real time.)
        on_fetched: called with each FetchResult as soon as it arrives, before the next
            symbol is fetched. The pipeline lands the reply there, so a run killed halfway
            keeps every reply it already paid for (see docs/reliability.md).

    Returns:
        (results, failures): one FetchResult per symbol that succeeded, in input order, and
        symbol -> reason for each symbol that no source could serve.

    Raises:
        ConfigurationError: the sources or the Alpha Vantage key are wrong (the batch stops).
    """
    symbols = list(symbols)
    chosen = resolve_sources(sources, settings)
    rate_limiter = None
    quota = None
    if "alpha_vantage" in chosen:
        require_alpha_vantage_key(settings)  # a missing key stops the batch before any request
        # The state file carries the per-minute window over to the next batch and Airflow task,
        # so the next batch does not fire its calls right after this one's last calls.
        rate_limiter = RateLimiter(
            settings.alpha_vantage_calls_per_minute,
            settings.alpha_vantage_min_interval_seconds,
            state_file=settings.state_dir / RATE_LIMIT_FILE_NAME,
        )
        quota = DailyQuota(settings.state_dir, settings.alpha_vantage_daily_limit)

    results: list[FetchResult] = []
    failures: dict[str, str] = {}
    for symbol in symbols:
        try:
            result = fetch_symbol(
                symbol,
                start,
                end,
                settings,
                sources=chosen,
                session=session,
                rate_limiter=rate_limiter,
                quota=quota,
                sleep=sleep,
            )
        except AllSourcesFailedError as exc:
            failures[symbol] = exc.reason
            continue
        results.append(result)
        if on_fetched is not None:
            on_fetched(result)

    by_source: dict[str, int] = {}
    for result in results:
        by_source[result.source] = by_source.get(result.source, 0) + 1
    logger.info(
        "batch %s..%s: %d/%d symbols fetched (%s); %d failed%s",
        start,
        end,
        len(results),
        len(symbols),
        ", ".join(f"{source}: {count}" for source, count in by_source.items()) or "none",
        len(failures),
        f": {', '.join(failures)}" if failures else "",
    )
    return results, failures
