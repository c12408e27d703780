"""Alpha Vantage client: daily prices (TIME_SERIES_DAILY, JSON) for one symbol.

Alpha Vantage answers almost everything with HTTP 200, errors included, so the status code
tells us little. Every reply is sorted into one class by `classify_reply` (its top-level keys
first, then careful text matching), and each class has one action:

    data             {"Meta Data": ..., "Time Series (Daily)": {...}}  -> parse (values stay strings);
                     a reply whose "2. Symbol" is not the symbol asked is refused; fall back
    throttled        {"Information": "... (1 request per second) ..."}  -> wait 60 s, retry (2 times at most)
                     (any short-window limit: per second/minute, call frequency or volume)
    quota_exhausted  {"Information": "... 25 requests per day ..."}     -> mark today used up; fall back
    premium_only     {"Information": "... premium endpoint ..."}        -> never retry; fall back
    invalid_symbol   {"Error Message": "Invalid API call. ..."}          -> never retry; fall back
    bad_key          {"Error Message": "... apikey is invalid ..."}     -> stop the run (ConfigurationError)
    empty            a data reply whose time series is {}               -> no data here; fall back
    malformed        HTML, truncated JSON, a list, unknown keys         -> retry with backoff, then fall back

HTTP failures (5xx, 429, timeouts, connection errors) are retried by the shared HTTP helper
(`request_with_retries`). Every HTTP try, retries included, first passes the rate limiter and
the daily quota (see `_CallMeter`), so the client-side limits hold exactly. Each try ends at
most HTTP_TOTAL_TIMEOUT s after it is sent, however slowly the server answers.

"Fall back" means: raise a `SourceError` subclass; the sources orchestrator then tries the
next source (e.g. Yahoo) for that symbol.

Example:
    >>> from datetime import date
    >>> settings = load_settings()
    >>> result = fetch_daily_prices("IBM", date(2024, 1, 2), date(2024, 1, 31), settings)
    >>> list(result.prices.columns)
    ['symbol', 'trade_date', 'open', 'high', 'low', 'close', 'volume', 'source']
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import pandas as pd
import requests

from src.config import ConfigurationError, Settings, redact, require_alpha_vantage_key
from src.ingestion.fetch_result import (
    PRICE_FRAME_COLUMNS,
    FetchResult,
    InvalidSymbolError,
    NoDataError,
    PremiumOnlyError,
    QuotaExhaustedError,
    SourceUnavailableError,
    select_range,
)
from src.ingestion.http_client import HttpRequestError, request_with_retries
from src.ingestion.rate_limit import DailyQuota, RateLimiter
from src.ingestion.split_events import check_splits
from src.ingestion.symbols import normalize_symbol
from src.market_calendar import new_york_today, sessions_between, utc_now_iso

logger = logging.getLogger(__name__)

SOURCE_NAME = "alpha_vantage"
FUNCTION = "TIME_SERIES_DAILY"
META_KEY = "Meta Data"
SERIES_KEY = "Time Series (Daily)"
# Field names inside one day of the time series -> our column names.
FIELD_KEYS = {
    "1. open": "open",
    "2. high": "high",
    "3. low": "low",
    "4. close": "close",
    "5. volume": "volume",
}
# outputsize=compact returns the latest 100 data points (trading days).
COMPACT_POINTS = 100
# A throttled symbol is retried at most this many times, waiting a whole rate-limit window
# (60 s) before each retry so the server's per-minute counter has certainly moved on.
THROTTLE_RETRIES = 2
THROTTLE_WAIT_SECONDS = 60.0
# The local mock server adds this key to "Meta Data" when it serves synthetic demo data
# (not market prices); such rows get source "synthetic" so nobody mistakes them for real ones.
SYNTHETIC_MARKER_KEY = "6. Synthetic Data"

REPLY_CLASSES = (
    "data",
    "throttled",
    "quota_exhausted",
    "premium_only",
    "invalid_symbol",
    "bad_key",
    "empty",
    "malformed",
)


# What a message means, not its exact wording (Alpha Vantage rewords its replies now and then):
# a short-window limit ("1 request per second", "no more than 2 requests per second", "optimizing
# your API call frequency", "a higher API call volume", "spreading out your requests") is a
# throttle to wait out; a per-day limit is the daily quota.
THROTTLE_MEANING = re.compile(
    r"per (second|minute)|call (frequency|volume)|frequen|spread(ing)? out|sparingly|too many requests", re.IGNORECASE
)
QUOTA_MEANING = re.compile(r"per day|daily (limit|quota)", re.IGNORECASE)


def _classify_message(text: str) -> str | None:
    """Classify the text of an "Information" / "Note" / "Error Message" reply, or return None.

    The order matters: the burst-throttle text also mentions "25 requests per day" and
    "premium plans", so throttling is recognised before the daily quota, and "premium" alone
    is not enough (only "premium endpoint" / "premium feature" mean premium-only).
    """
    lowered = text.lower()
    if THROTTLE_MEANING.search(lowered):
        return "throttled"
    if "premium endpoint" in lowered or "premium feature" in lowered:
        return "premium_only"
    if QUOTA_MEANING.search(lowered):
        return "quota_exhausted"
    # "the parameter apikey is invalid or missing", or the demo key's "claim your free API key".
    if ("apikey" in lowered and ("invalid" in lowered or "missing" in lowered)) or (
        "claim your free api key" in lowered
    ):
        return "bad_key"
    if "invalid api call" in lowered:
        return "invalid_symbol"
    return None


def classify_reply(payload: object) -> str:
    """Sort a parsed Alpha Vantage reply into one class (see the table in the module docstring).

    Structure first (which top-level keys are there, with which types), then text matching on
    the message.

    Args:
        payload: the parsed JSON reply (None or anything else when the body was not JSON).

    Returns:
        One of "data", "throttled", "quota_exhausted", "premium_only", "invalid_symbol",
        "bad_key", "empty", "malformed".

    Example:
        >>> classify_reply({"Error Message": "Invalid API call. Please retry or visit the documentation"})
        'invalid_symbol'
    """
    if not isinstance(payload, dict):
        return "malformed"

    if META_KEY in payload:
        meta = payload[META_KEY]
        if not isinstance(meta, dict):
            return "malformed"
        # A good reply's "1. Information" is a description ("Daily Prices (open, high, ...)").
        info = str(meta.get("1. Information", ""))
        meta_class = _classify_message(info)
        if meta_class is not None:
            return meta_class
        if "error" in info.lower() or "invalid" in info.lower():
            return "malformed"
        if SERIES_KEY not in payload:
            return "malformed"
        series = payload[SERIES_KEY]
        if not isinstance(series, dict):
            return "malformed"
        if not series:
            return "empty"
        if not all(isinstance(day, dict) for day in series.values()):
            return "malformed"
        return "data"

    if "Error Message" in payload:
        text = str(payload["Error Message"])
        if _classify_message(text) == "bad_key":
            return "bad_key"
        # Function, outputsize and datatype are fixed by this module, so the one parameter that
        # can make our request invalid is the symbol.
        return "invalid_symbol"

    for key in ("Information", "Note"):
        if key in payload:
            message_class = _classify_message(str(payload[key]))
            if message_class is not None:
                return message_class
            if key == "Note":
                return "throttled"  # the legacy rate-limit reply always came as a "Note"
    return "malformed"


def parse_daily_prices(payload: dict, symbol: str) -> pd.DataFrame:
    """Turn a "data" reply into the normalised price frame, oldest day first.

    Values stay the strings Alpha Vantage sent ("187.1500", "82488700"); a missing field
    becomes NaN. The validator converts and checks them later. Dates are US/Eastern trading
    days, already in 'YYYY-MM-DD' form; a key that is not such a date is kept as it is, with a
    warning, so the validator quarantines that row as `invalid_date` (nothing is dropped silently).

    Args:
        payload: a reply that `classify_reply` calls "data" or "empty".
        symbol: the validated symbol.

    Returns:
        Columns symbol, trade_date, open, high, low, close, volume, source. The source is
        "alpha_vantage", or "synthetic" when the local mock server marked the data as synthetic.
    """
    meta = payload.get(META_KEY, {})
    source = "synthetic" if SYNTHETIC_MARKER_KEY in meta else SOURCE_NAME
    rows = []
    for day, fields in payload.get(SERIES_KEY, {}).items():
        try:
            date.fromisoformat(day)
        except (TypeError, ValueError):
            logger.warning(
                "%s %s: a row has a bad date key %r; passing it on to be quarantined", SOURCE_NAME, symbol, day
            )
        row = {"symbol": symbol, "trade_date": day}
        for key, column in FIELD_KEYS.items():
            row[column] = fields.get(key)
        row["source"] = source
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PRICE_FRAME_COLUMNS)
    return frame.sort_values("trade_date").reset_index(drop=True)


def compact_covers(start: date, today: date) -> bool:
    """Return True when outputsize=compact (the latest 100 sessions) surely reaches back to `start`.

    Weekdays are never fewer than trading sessions (holidays only remove sessions), so if
    start..today holds at most 100 weekdays, the latest 100 sessions certainly include `start`.

    Example:
        >>> compact_covers(date(2024, 1, 2), today=date(2024, 3, 1))
        True
    """
    weekdays = int(np.busday_count(start, today + timedelta(days=1)))
    return weekdays <= COMPACT_POINTS


class _CallMeter:
    """Makes every HTTP try go through the rate limiter and the daily quota.

    `request_with_retries` retries 5xx replies and timeouts itself; each of those retries is
    a real call that Alpha Vantage may count. The helper calls `before_try` before each try
    (wait for the rate limiter, count the call, or refuse once the quota is used up) and
    `after_try` after it. The rate limiter's wait happens there, outside the try's total
    deadline, so waiting for a free slot never eats into the time the server has to answer.
    """

    def __init__(self, symbol: str, rate_limiter: RateLimiter | None, quota: DailyQuota | None):
        self.symbol = symbol
        self.rate_limiter = rate_limiter
        self.quota = quota

    def before_try(self) -> None:
        if self.quota is not None and self.quota.is_exhausted():
            raise QuotaExhaustedError(
                "daily quota used up (counted client-side); no request sent",
                symbol=self.symbol,
                source=SOURCE_NAME,
            )
        if self.rate_limiter is not None:
            self.rate_limiter.wait()
        if self.quota is not None:
            self.quota.record_call()

    def after_try(self) -> None:
        if self.rate_limiter is not None:
            self.rate_limiter.call_finished()


def _choose_outputsize(start: date, premium: bool, wanted: str) -> str:
    """Return "compact" or "full" for a request starting at `start`.

    outputsize=full (20+ years) is a premium feature: ask for it only with premium, and only
    when compact might not reach back to `start`. Without premium, say that older rows need
    premium or another source.
    """
    if compact_covers(start, new_york_today()):
        return "compact"
    if premium:
        return "full"
    logger.warning(
        "%s %s: start is older than the latest %d sessions that outputsize=compact returns; "
        "older rows need a premium key (outputsize=full) or another source",
        SOURCE_NAME,
        wanted,
        COMPACT_POINTS,
    )
    return "compact"


def _get_reply(
    session: requests.Session,
    meter: _CallMeter,
    settings: Settings,
    params: dict,
    symbol: str,
    wanted: str,
    sleep: Callable[[float], None],
) -> object:
    """Send one request through the shared HTTP helper and return the parsed JSON body.

    Returns:
        The parsed JSON, or None when the body is not JSON (HTML page, cut-off body).

    Raises:
        ConfigurationError: ALPHA_VANTAGE_BASE_URL is not usable (bad URL, a redirect loop).
        QuotaExhaustedError: a retry would go over today's quota (raised by _CallMeter).
        SourceUnavailableError: every HTTP try failed, or a non-retryable HTTP status came back.
    """
    try:
        response = request_with_retries(
            "GET",
            settings.alpha_vantage_base_url,
            session=session,
            params=params,
            timeout=(settings.http_connect_timeout, settings.http_read_timeout),
            total_timeout=settings.http_total_timeout,
            max_tries=settings.http_max_tries,
            backoff_seconds=settings.http_backoff_seconds,
            max_bytes=settings.http_max_response_bytes,
            secrets=settings.secrets(),
            context=f"{SOURCE_NAME} {symbol}",
            sleep=sleep,
            before_try=meter.before_try,
            after_try=meter.after_try,
        )
    except QuotaExhaustedError as exc:
        logger.warning("%s %s: %s", SOURCE_NAME, wanted, exc.reason)
        raise
    except requests.TooManyRedirects as exc:
        # The URL leads nowhere: no retry or other symbol would fare better, so stop the run.
        raise ConfigurationError(
            f"ALPHA_VANTAGE_BASE_URL {settings.alpha_vantage_base_url!r} redirects in a loop "
            f"({redact(exc, settings.secrets())}); check the URL (e.g. https://www.alphavantage.co/query)"
        ) from None
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
    ) as exc:
        # Settings built without load_settings() (tests, code) skip its URL check: say it here too.
        raise ConfigurationError(
            f"ALPHA_VANTAGE_BASE_URL {settings.alpha_vantage_base_url!r} is not a usable URL "
            f"({redact(exc, settings.secrets())}); e.g. https://www.alphavantage.co/query"
        ) from None
    except HttpRequestError as exc:  # its message is already redacted
        logger.warning("%s %s: giving up: %s", SOURCE_NAME, wanted, exc)
        raise SourceUnavailableError(str(exc), symbol=symbol, source=SOURCE_NAME) from exc
    if response.status_code != 200:
        # Not worth retrying (the helper already retried 429 and 5xx): e.g. a 403 or 404 from a proxy.
        reason = f"HTTP {response.status_code} from {SOURCE_NAME}"
        logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
        raise SourceUnavailableError(reason, symbol=symbol, source=SOURCE_NAME)
    try:
        return response.json()
    except ValueError:  # requests' JSONDecodeError is a ValueError
        return None


def fetch_daily_prices(
    symbol: str,
    start: date,
    end: date,
    settings: Settings,
    *,
    session: requests.Session | None = None,
    rate_limiter: RateLimiter | None = None,
    quota: DailyQuota | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Fetch daily unadjusted prices for one symbol from Alpha Vantage (TIME_SERIES_DAILY).

    The symbol is validated before any network use. Without premium the request uses
    outputsize=compact (the latest 100 sessions); when that does not reach back to `start`,
    the reply is refused (PremiumOnlyError naming the missing sessions), so the next source
    serves the range instead of only its latest 100 sessions being loaded.

    Args:
        symbol: the ticker, e.g. "IBM" (validated with `normalize_symbol`).
        start: first trading day wanted (inclusive).
        end: last trading day wanted (inclusive).
        settings: the pipeline settings (API key, URL, timeouts, retries, premium flag).
        session: a requests.Session to reuse (tests pass their own).
        rate_limiter: shared per-minute limiter; None sends without client-side pacing.
        quota: shared daily quota; None does not count calls (the server's quota reply
            still raises QuotaExhaustedError).
        sleep: the sleep function for backoff and throttle waits (tests pass a fake).

    Returns:
        A FetchResult with source "alpha_vantage"; `prices` holds the rows from start to end,
        oldest first, values as strings.

    Raises:
        InvalidSymbolInputError: the symbol is not a valid ticker (nothing was sent).
        ConfigurationError: the API key is missing or Alpha Vantage rejects it.
        QuotaExhaustedError: the daily quota is used up (no request is sent once it is known).
        PremiumOnlyError: the request needs a premium plan.
        InvalidSymbolError: Alpha Vantage does not know the symbol.
        NoDataError: the reply has no rows between start and end.
        SourceUnavailableError: HTTP failures, bad replies or throttling outlasted the retries.
    """
    symbol = normalize_symbol(symbol)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    api_key = require_alpha_vantage_key(settings)
    secrets = settings.secrets()
    wanted = f"{symbol} {start}..{end}"

    outputsize = _choose_outputsize(start, settings.alpha_vantage_premium, wanted)
    request_params = {"function": FUNCTION, "symbol": symbol, "outputsize": outputsize, "datatype": "json"}

    if quota is not None and quota.is_exhausted():
        logger.info("%s %s: daily quota used up; not calling", SOURCE_NAME, wanted)
        raise QuotaExhaustedError("daily quota used up; no request sent", symbol=symbol, source=SOURCE_NAME)

    http = session or requests.Session()
    meter = _CallMeter(symbol, rate_limiter, quota)
    bad_replies = 0
    throttled = 0
    while True:
        payload = _get_reply(http, meter, settings, {**request_params, "apikey": api_key}, symbol, wanted, sleep)
        fetched_at = utc_now_iso()
        reply_class = classify_reply(payload)
        if reply_class == "data":
            break

        message = redact(_reply_message(payload), secrets)
        if reply_class == "malformed":
            # An HTML error page or a body cut off mid-way: usually a passing hiccup.
            bad_replies += 1
            if bad_replies >= settings.http_max_tries:
                reason = f"unusable reply {bad_replies} times (not JSON or unexpected shape): {message}"
                logger.warning("%s %s: giving up: %s", SOURCE_NAME, wanted, reason)
                raise SourceUnavailableError(reason, symbol=symbol, source=SOURCE_NAME)
            wait = settings.http_backoff_seconds * 2 ** (bad_replies - 1)
            logger.warning(
                "%s %s: unusable reply (%s); try %d/%d, retrying in %.1f s",
                SOURCE_NAME,
                wanted,
                message,
                bad_replies,
                settings.http_max_tries,
                wait,
            )
            sleep(wait)
            continue
        if reply_class == "throttled":
            throttled += 1
            if throttled > THROTTLE_RETRIES:
                reason = f"still throttled after {THROTTLE_RETRIES} retries: {message}"
                logger.warning("%s %s: giving up: %s", SOURCE_NAME, wanted, reason)
                raise SourceUnavailableError(reason, symbol=symbol, source=SOURCE_NAME)
            logger.warning(
                "%s %s: throttled (%s); retry %d/%d in %.0f s",
                SOURCE_NAME,
                wanted,
                message,
                throttled,
                THROTTLE_RETRIES,
                THROTTLE_WAIT_SECONDS,
            )
            sleep(THROTTLE_WAIT_SECONDS)
            continue
        _raise_for_reply(reply_class, message, symbol, wanted, quota)

    replied_symbol = str(payload[META_KEY].get("2. Symbol", "")).strip().upper()
    if replied_symbol != symbol:
        # A proxy or cache mix-up: these prices belong to another symbol; storing them under
        # `symbol` would be wrong data reported as success.
        reason = f"the reply is for {replied_symbol or 'no symbol'}, not {symbol}; refused"
        logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
        raise SourceUnavailableError(reason, symbol=symbol, source=SOURCE_NAME)

    all_prices = parse_daily_prices(payload, symbol)
    _refuse_a_cut_off_compact_reply(all_prices, outputsize, symbol, start, end, wanted)
    # Rows with a bad date key stay in: the validator quarantines them (see select_range).
    prices = select_range(all_prices, start.isoformat(), end.isoformat())
    if prices.empty:
        covered = (
            f"the reply covers {all_prices['trade_date'].iloc[0]}..{all_prices['trade_date'].iloc[-1]}"
            if not all_prices.empty
            else "the reply has no valid dates"
        )
        reason = f"no rows between {start} and {end}; {covered}"
        logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
        raise NoDataError(reason, symbol=symbol, source=SOURCE_NAME)

    logger.info(
        "%s %s: %d rows (%s..%s, outputsize=%s)",
        SOURCE_NAME,
        wanted,
        len(prices),
        prices["trade_date"].iloc[0],
        prices["trade_date"].iloc[-1],
        outputsize,
    )
    return FetchResult(
        symbol=symbol,
        source=SOURCE_NAME,
        prices=prices,
        raw_payload=payload,
        request_params=request_params,
        fetched_at=fetched_at,
    )


def _refuse_a_cut_off_compact_reply(
    all_prices: pd.DataFrame, outputsize: str, symbol: str, start: date, end: date, wanted: str
) -> None:
    """Raise when a compact reply (the latest 100 sessions) does not reach back to `start`.

    Loading only its part of the range and calling that a success would hide the older
    sessions. Raising lets the next source in DATA_SOURCES serve the whole range; with none
    left, the symbol fails with the missing range named. A compact reply with fewer than 100
    rows holds the symbol's whole history (e.g. a recent listing), so it is not cut off.
    """
    if outputsize != "compact" or len(all_prices) < COMPACT_POINTS:
        return
    sessions = sessions_between(start, end)
    dates = [day for day in all_prices["trade_date"].astype(str) if len(day) == 10]
    if not sessions or not dates or min(dates) <= sessions[0].isoformat():
        return
    first_in_reply = date.fromisoformat(min(dates))
    missing = [day for day in sessions if day < first_in_reply]
    reason = (
        f"the compact reply (latest {COMPACT_POINTS} sessions) starts at {first_in_reply}; "
        f"{missing[0]}..{missing[-1]} needs ALPHA_VANTAGE_PREMIUM=true or another source in DATA_SOURCES"
    )
    logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
    raise PremiumOnlyError(reason, symbol=symbol, source=SOURCE_NAME)


def _reply_message(payload: object) -> str:
    """Return the human message of a non-data reply, shortened for logs (not yet redacted)."""
    if isinstance(payload, dict):
        for key in ("Error Message", "Information", "Note"):
            if key in payload:
                return str(payload[key])[:300]
        return f"JSON object with keys {sorted(payload)[:5]}"
    if payload is None:
        return "body is not valid JSON"
    return f"JSON {type(payload).__name__}, expected an object"


def _raise_for_reply(reply_class: str, message: str, symbol: str, wanted: str, quota: DailyQuota | None) -> None:
    """Raise the exception that matches a final (not retried) reply class."""
    if reply_class == "bad_key":
        logger.error("%s %s: the API key was rejected: %s", SOURCE_NAME, wanted, message)
        raise ConfigurationError(
            f"Alpha Vantage rejected ALPHA_VANTAGE_API_KEY: {message} "
            "Check the key in .env (or drop alpha_vantage from DATA_SOURCES)."
        )
    if reply_class == "quota_exhausted":
        if quota is not None:
            quota.mark_exhausted()
        logger.warning("%s %s: daily quota exhausted: %s", SOURCE_NAME, wanted, message)
        raise QuotaExhaustedError(f"daily quota exhausted: {message}", symbol=symbol, source=SOURCE_NAME)
    if reply_class == "premium_only":
        logger.warning("%s %s: premium only: %s", SOURCE_NAME, wanted, message)
        raise PremiumOnlyError(f"premium only: {message}", symbol=symbol, source=SOURCE_NAME)
    if reply_class == "invalid_symbol":
        logger.warning("%s %s: unknown symbol: %s", SOURCE_NAME, wanted, message)
        raise InvalidSymbolError(f"unknown symbol: {message}", symbol=symbol, source=SOURCE_NAME)
    if reply_class == "empty":
        logger.warning("%s %s: the reply has an empty time series", SOURCE_NAME, wanted)
        raise NoDataError("empty time series", symbol=symbol, source=SOURCE_NAME)
    raise ValueError(f"unexpected reply class {reply_class!r}")


# --- Split events: function=SPLITS ------------------------------------------------------------
# The reply to https://www.alphavantage.co/query?function=SPLITS&symbol=IBM is
#     {"symbol": "IBM", "data": [{"effective_date": "1999-05-27", "split_factor": "2.0000"}, ...]}
# ("data": [] when the symbol never split). Errors, throttling and the quota come back in the
# same "Information" / "Note" / "Error Message" replies as for prices, so they are classified
# by the same rules. Each request goes through the same rate limiter and daily quota.

SPLITS_FUNCTION = "SPLITS"
SPLITS_DATA_KEY = "data"


def classify_splits_reply(payload: object) -> str:
    """Sort a parsed SPLITS reply into one of REPLY_CLASSES ("data", "empty", "throttled", ...).

    Example:
        >>> classify_splits_reply({"symbol": "IBM", "data": []})
        'empty'
    """
    if isinstance(payload, dict) and SPLITS_DATA_KEY in payload:
        events = payload[SPLITS_DATA_KEY]
        if not isinstance(events, list):
            return "malformed"
        if not events:
            return "empty"
        if not all(
            isinstance(event, dict) and "effective_date" in event and "split_factor" in event for event in events
        ):
            return "malformed"
        return "data"
    if isinstance(payload, dict) and META_KEY in payload:
        return "malformed"  # a price reply (or another function's) is not an answer to SPLITS
    # Not a splits reply: an Information / Note / Error Message one, classified as for prices.
    return classify_reply(payload)


def parse_splits(payload: dict, symbol: str) -> pd.DataFrame:
    """Turn a "data" or "empty" SPLITS reply into checked split events (split_events.SPLIT_COLUMNS).

    Raises:
        SplitDataError: an event's date or factor is unusable (the message names it).
    """
    events = pd.DataFrame(payload.get(SPLITS_DATA_KEY, []), columns=["effective_date", "split_factor"])
    return check_splits(events.assign(symbol=symbol, source=SOURCE_NAME), f"{SOURCE_NAME} SPLITS {symbol}")


def fetch_splits(
    symbol: str,
    settings: Settings,
    *,
    session: requests.Session | None = None,
    rate_limiter: RateLimiter | None = None,
    quota: DailyQuota | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Fetch one symbol's split events from Alpha Vantage (function=SPLITS, one quota call).

    Same client, rate limiter, quota and reply classes as `fetch_daily_prices`: malformed
    replies are retried with backoff, throttling is waited out (THROTTLE_RETRIES times), and a
    final reply raises the same exceptions.

    Args:
        symbol: the ticker (validated before any network use).
        settings, session, rate_limiter, quota, sleep: as for `fetch_daily_prices`.

    Returns:
        The events (SPLIT_COLUMNS), source "alpha_vantage"; empty when the symbol never split.

    Raises:
        ConfigurationError: the API key is missing or rejected.
        QuotaExhaustedError, PremiumOnlyError, InvalidSymbolError, SourceUnavailableError: as
            for prices.
        SplitDataError: the reply's events are unusable.
    """
    symbol = normalize_symbol(symbol)
    api_key = require_alpha_vantage_key(settings)
    wanted = f"{symbol} splits"
    if quota is not None and quota.is_exhausted():
        raise QuotaExhaustedError("daily quota used up; no request sent", symbol=symbol, source=SOURCE_NAME)
    params = {"function": SPLITS_FUNCTION, "symbol": symbol, "datatype": "json", "apikey": api_key}
    http = session or requests.Session()
    meter = _CallMeter(symbol, rate_limiter, quota)
    bad_replies = 0
    throttled = 0
    while True:
        payload = _get_reply(http, meter, settings, params, symbol, wanted, sleep)
        reply_class = classify_splits_reply(payload)
        if reply_class in ("data", "empty"):
            splits = parse_splits(payload, symbol)
            logger.info("%s %s: %d split event(s)", SOURCE_NAME, wanted, len(splits))
            return splits
        message = redact(_reply_message(payload), settings.secrets())
        if reply_class == "malformed" and bad_replies + 1 < settings.http_max_tries:
            bad_replies += 1
            logger.warning("%s %s: unusable reply (%s); retrying", SOURCE_NAME, wanted, message)
            sleep(settings.http_backoff_seconds * 2 ** (bad_replies - 1))
            continue
        if reply_class == "throttled" and throttled < THROTTLE_RETRIES:
            throttled += 1
            logger.warning(
                "%s %s: throttled (%s); retry %d/%d", SOURCE_NAME, wanted, message, throttled, THROTTLE_RETRIES
            )
            sleep(THROTTLE_WAIT_SECONDS)
            continue
        if reply_class in ("malformed", "throttled"):
            reason = f"gave up on SPLITS after retries ({reply_class}): {message}"
            logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
            raise SourceUnavailableError(reason, symbol=symbol, source=SOURCE_NAME)
        _raise_for_reply(reply_class, message, symbol, wanted, quota)
