"""Yahoo Finance client (through yfinance 1.7): daily prices for one symbol, the fallback source.

yfinance is convenient, but it has traps. Each one is handled on purpose here:

1. `auto_adjust` defaults to True: yfinance would then rescale Open/High/Low/Close by the
   dividend+split factor. Our policy for every source is "as traded, unadjusted", so we pass
   `auto_adjust=False` and use Close (never "Adj Close"). Caveat: Yahoo's own Close is already
   adjusted for stock *splits* (not for dividends); before a split it differs from Alpha
   Vantage's as-traded close by the split ratio. Yahoo has no truly unadjusted series.
2. `end` is exclusive: `history(start="2024-01-02", end="2024-01-05")` stops at 2024-01-04.
   Our `end` is inclusive, so we pass `end + 1 day`.
3. Errors are hidden by default: yfinance logs "possibly delisted" and returns an EMPTY frame.
   We call `Ticker.history(raise_errors=True)` and also treat an empty frame as "no data"
   (NoDataError), never as success.
   Checked in the 1.7 source: `raise_errors` still works but warns that it is deprecated in
   favour of the process-wide switch `yf.config.debug.hide_exceptions = False`. We keep the
   per-call flag on purpose: the global switch also makes yfinance's side look-ups (it asks
   the quoteSummary API for the timezone of an unknown symbol) raise raw HTTP errors instead
   of the clear "possibly delisted; no timezone found". And `yf.download()` no longer fills
   the old shared error dict (`yfinance.shared._ERRORS`): its errors are only logged.
4. `yf.download()` returns MultiIndex columns, ("Close", "IBM"), even for ONE ticker. We use
   `Ticker.history()`, whose columns are flat; `normalize_yahoo_frame` still accepts
   download()'s shape so the two cannot be mixed up silently.
5. Yahoo rate-limits (HTTP 429, `YFRateLimitError`): we retry with a growing wait, then raise
   SourceUnavailableError so the orchestrator can move on.
6. Dates: yfinance stamps each daily bar at midnight *in the exchange's timezone*
   (America/New_York for US listings). The trading day is that local calendar date; it is
   never derived from UTC, where an evening timestamp would already be the next day.
7. Share classes: Yahoo writes BRK.B as BRK-B (a dot means an exchange suffix there, as in
   SAP.DE), so `to_yahoo_symbol` swaps the dot for a dash. Our own symbol stays BRK.B.
8. Sessions: yfinance 1.x uses a curl_cffi session that looks like a browser (plain requests
   get blocked more often). Leave `session=None` in production. It also accepts a
   `requests.Session`, which is what tests pass so that `responses` can answer its HTTP calls.

Example:
    >>> from datetime import date
    >>> result = fetch_yahoo_prices("IBM", date(2024, 1, 2), date(2024, 1, 5), load_settings())
    >>> list(result.prices.columns)
    ['symbol', 'trade_date', 'open', 'high', 'low', 'close', 'volume', 'source']
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd

from src.config import Settings
from src.ingestion.fetch_result import (
    PRICE_FRAME_COLUMNS,
    FetchResult,
    NoDataError,
    SourceError,
    SourceUnavailableError,
)
from src.ingestion.split_events import check_splits, empty_splits
from src.ingestion.symbols import normalize_symbol
from src.market_calendar import NEW_YORK, utc_now_iso

logger = logging.getLogger(__name__)

SOURCE_NAME = "yahoo"
# The exchange timezone of US listings; assumed when Yahoo's meta data does not name one.
# yfinance's column names -> ours. "Adj Close" is left out on purpose (trap 1).
YAHOO_COLUMNS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
RAW_PAYLOAD_NOTE = (
    "yfinance parses Yahoo's chart JSON itself and does not hand it out. These are the rows "
    "yfinance returned (auto_adjust=False: Open/High/Low/Close as Yahoo sent them, Adj Close "
    "separately), each stamped at midnight of its trading day in the exchange timezone."
)


def to_yahoo_symbol(symbol: str) -> str:
    """Return Yahoo's spelling of a US symbol: share classes use a dash (BRK.B -> BRK-B).

    For Yahoo a dot starts an exchange suffix (SAP.DE), so this mapping is for US listings,
    the only ones this pipeline handles.

    Example:
        >>> to_yahoo_symbol("BRK.B")
        'BRK-B'
    """
    return symbol.replace(".", "-")


class YahooFrameError(ValueError):
    """A yfinance frame this pipeline cannot take as one symbol's as-traded prices. The message says why."""


def normalize_yahoo_frame(frame: pd.DataFrame, symbol: str, exchange_tz: str = NEW_YORK) -> pd.DataFrame:
    """Turn a yfinance price frame into the normalised price frame (all rows, unfiltered).

    Accepts the flat columns of `Ticker.history()` and the MultiIndex columns that
    `yf.download()` returns even for a single ticker (trap 4).

    Args:
        frame: yfinance's frame, fetched with auto_adjust=False: a DatetimeIndex and columns
            Open, High, Low, Close, Adj Close, Volume (Adj Close and others are not used). The
            index is either timezone-aware, or naive dates that are already the exchange's
            local dates (download()'s default).
        symbol: our validated symbol, e.g. "BRK.B".
        exchange_tz: the exchange's timezone (Yahoo's meta.exchangeTimezoneName), e.g.
            "America/New_York" for US listings: trading days are dates on its calendar.

    Returns:
        Columns symbol, trade_date ('YYYY-MM-DD'), open, high, low, close, volume, source,
        oldest day first; prices stay the floats yfinance gave.

    Raises:
        YahooFrameError: the frame holds more than one ticker (`yf.download(["IBM", "MSFT"])`),
            or it was fetched with `auto_adjust=True` (no "Adj Close" column: its Open..Close
            are rescaled by dividends, not prices as traded).
    """
    if isinstance(frame.columns, pd.MultiIndex):
        # download() labels columns (price field, ticker), even for one ticker (trap 4).
        tickers = list(dict.fromkeys(frame.columns.get_level_values("Ticker")))
        if len(tickers) != 1:
            raise YahooFrameError(
                f"the yfinance frame for {symbol} holds {len(tickers)} tickers ({', '.join(map(str, tickers))}); "
                "normalise one ticker at a time, e.g. frame.xs('IBM', axis=1, level='Ticker')"
            )
        frame = frame.droplevel("Ticker", axis=1)
    if "Adj Close" not in frame.columns:
        raise YahooFrameError(
            f"the yfinance frame for {symbol} has no 'Adj Close' column, so it was fetched with auto_adjust=True: "
            "its Open/High/Low/Close are rescaled for dividends and splits, not prices as traded. "
            "Fetch it with auto_adjust=False (what fetch_yahoo_prices does)."
        )
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        # The trading day is the bar's calendar date in the exchange's timezone (trap 6). For
        # US listings that is US/Eastern; in UTC an evening bar would already be the next day.
        index = index.tz_convert(exchange_tz)
    prices = frame[list(YAHOO_COLUMNS)].rename(columns=YAHOO_COLUMNS).rename_axis(columns=None).reset_index(drop=True)
    prices.insert(0, "trade_date", list(index.strftime("%Y-%m-%d")))
    prices.insert(0, "symbol", symbol)
    prices["source"] = SOURCE_NAME
    return prices[PRICE_FRAME_COLUMNS].sort_values("trade_date").reset_index(drop=True)


def frame_to_raw_payload(frame: pd.DataFrame, yahoo_symbol: str, exchange_tz: str) -> dict:
    """Return yfinance's frame as a JSON-serialisable dict for the S3 raw zone.

    Every column yfinance returned is kept (Adj Close too); NaN becomes null. See
    `RAW_PAYLOAD_NOTE` for why this is not Yahoo's chart JSON itself.
    """
    rows = []
    for timestamp, values in zip(frame.index, frame.to_dict("records"), strict=True):
        # Keep the timezone offset ("2024-01-02T00:00:00-05:00"): it is part of the answer.
        row = {"Date": timestamp.isoformat()}
        # to_dict gives plain Python numbers; NaN is not valid JSON, so it becomes None (null).
        row.update({column: None if pd.isna(value) else value for column, value in values.items()})
        rows.append(row)
    return {
        "note": RAW_PAYLOAD_NOTE,
        "yahoo_symbol": yahoo_symbol,
        "exchange_timezone": exchange_tz,
        "rows": rows,
    }


def _http_status(exc: OSError) -> int | None:
    """Return the HTTP status code carried by a requests/curl_cffi error, if any."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _describe(exc: Exception) -> str:
    """Return "ErrorType: message" without URL query strings (yfinance adds a session crumb there)."""
    message = re.sub(r"\?\S*", "", str(exc))
    return f"{type(exc).__name__}: {message}"


def _failure(error_class: type[SourceError], reason: str, symbol: str, wanted: str) -> SourceError:
    """Log why Yahoo could not serve `wanted` and return the SourceError to raise."""
    logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
    return error_class(reason, symbol=symbol, source=SOURCE_NAME)


def _download_history(ticker, start: date, end: date, timeout: float) -> pd.DataFrame:
    """Call `Ticker.history` for start..end (inclusive) with the settings this module relies on."""
    with warnings.catch_warnings():
        # raise_errors is deprecated in 1.7 but still the safer choice (trap 3, module docstring).
        warnings.filterwarnings("ignore", message=".*raise_errors.*deprecated", category=DeprecationWarning)
        return ticker.history(
            start=start.isoformat(),
            end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive (trap 2)
            interval="1d",
            auto_adjust=False,  # as traded: keep Close, do not rescale by Adj Close (trap 1)
            actions=False,  # no Dividends / Stock Splits columns
            timeout=timeout,
            raise_errors=True,  # raise instead of logging and returning an empty frame (trap 3)
        )


def fetch_yahoo_prices(
    symbol: str,
    start: date,
    end: date,
    settings: Settings,
    *,
    session=None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Fetch daily prices for one symbol from Yahoo Finance (through yfinance).

    Rate-limit replies (HTTP 429) are retried up to `settings.yahoo_max_retries` times,
    waiting `settings.http_backoff_seconds`, then twice that, and so on. (yfinance itself
    already re-sends a 429'd request once, with a fresh cookie, before it gives up.)

    Args:
        symbol: the ticker, e.g. "IBM" (validated with `normalize_symbol`).
        start: first trading day wanted (inclusive).
        end: last trading day wanted (inclusive).
        settings: the pipeline settings (retries, backoff, read timeout).
        session: a session for yfinance's HTTP calls: None (production: yfinance's own
            curl_cffi session), or a `requests.Session` (tests, with `responses`).
        sleep: the sleep function for the rate-limit waits (tests pass a fake).

    Returns:
        A FetchResult with source "yahoo". `prices` holds the rows from start to end, oldest
        first, prices as floats and volume as int, unadjusted for dividends (see trap 1).
        `raw_payload` is yfinance's frame as JSON-ready records with a note (see
        `frame_to_raw_payload`), not Yahoo's chart JSON, which yfinance does not expose.

    Raises:
        InvalidSymbolInputError: the symbol is not a valid ticker (nothing was sent).
        NoDataError: Yahoo does not know the symbol or has no rows between start and end.
        SourceUnavailableError: still rate-limited after the retries, a network error, or a
            reply that is not usable.
    """
    # Imported here: yfinance pulls in curl_cffi, peewee and more; only pay for it when used.
    from yfinance import Ticker
    from yfinance.exceptions import YFException, YFRateLimitError, YFTickerMissingError

    symbol = normalize_symbol(symbol)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    yahoo_symbol = to_yahoo_symbol(symbol)
    wanted = f"{symbol} {start}..{end}"
    request_params = {
        "symbol": yahoo_symbol,
        "start": start.isoformat(),
        "end_exclusive": (end + timedelta(days=1)).isoformat(),
        "interval": "1d",
        "auto_adjust": False,
    }

    ticker = Ticker(yahoo_symbol, session=session)
    tries = settings.yahoo_max_retries + 1
    for attempt in range(1, tries + 1):
        try:
            frame = _download_history(ticker, start, end, settings.http_read_timeout)
            break
        except YFRateLimitError:
            if attempt == tries:
                reason = f"still rate-limited (HTTP 429) after {tries} tries"
                raise _failure(SourceUnavailableError, reason, symbol, wanted) from None
            wait = settings.http_backoff_seconds * 2 ** (attempt - 1)
            logger.warning(
                "%s %s: rate-limited (HTTP 429); try %d/%d, retrying in %.1f s",
                SOURCE_NAME,
                wanted,
                attempt,
                tries,
                wait,
            )
            sleep(wait)
        except YFTickerMissingError as exc:
            # "possibly delisted; no timezone found" / "no price data found": Yahoo has nothing.
            raise _failure(NoDataError, f"no data from Yahoo: {exc}", symbol, wanted) from exc
        except OSError as exc:
            # Network and HTTP errors of both requests and curl_cffi are OSErrors.
            if _http_status(exc) == 404:
                # Yahoo answers 404 "Not Found" for symbols it does not know.
                reason = f"Yahoo answered HTTP 404 Not Found for {yahoo_symbol}"
                raise _failure(NoDataError, reason, symbol, wanted) from exc
            reason = f"error talking to Yahoo: {_describe(exc)}"
            raise _failure(SourceUnavailableError, reason, symbol, wanted) from exc
        except (YFException, json.JSONDecodeError) as exc:
            # e.g. "YAHOO! FINANCE IS CURRENTLY DOWN" or an HTML error page instead of JSON.
            reason = f"unusable reply from Yahoo: {_describe(exc)}"
            raise _failure(SourceUnavailableError, reason, symbol, wanted) from exc
    fetched_at = utc_now_iso()

    if frame.empty:
        raise _failure(NoDataError, "Yahoo returned no rows (empty frame)", symbol, wanted)
    # Yahoo's meta data names the exchange's timezone (America/New_York for US listings).
    exchange_tz = ticker.history_metadata.get("exchangeTimezoneName") or NEW_YORK
    all_prices = normalize_yahoo_frame(frame, symbol, exchange_tz)
    # Yahoo sometimes appends today's live bar after the requested end: keep start..end only.
    in_range = all_prices["trade_date"].between(start.isoformat(), end.isoformat())
    prices = all_prices[in_range].reset_index(drop=True)
    if prices.empty:
        reason = (
            f"no rows between {start} and {end}; Yahoo returned "
            f"{all_prices['trade_date'].iloc[0]}..{all_prices['trade_date'].iloc[-1]}"
        )
        raise _failure(NoDataError, reason, symbol, wanted)

    logger.info(
        "%s %s: %d rows (%s..%s)",
        SOURCE_NAME,
        wanted,
        len(prices),
        prices["trade_date"].iloc[0],
        prices["trade_date"].iloc[-1],
    )
    return FetchResult(
        symbol=symbol,
        source=SOURCE_NAME,
        prices=prices,
        raw_payload=frame_to_raw_payload(frame, yahoo_symbol, exchange_tz),
        request_params=request_params,
        fetched_at=fetched_at,
    )


def splits_from_yahoo_series(splits: pd.Series, symbol: str) -> pd.DataFrame:
    """Turn yfinance's `Ticker.splits` (ratio by tz-aware timestamp) into checked split events.

    yfinance's ratio is new shares per old share (4.0 for AAPL's 4-for-1 of 2020-08-31), the
    same convention as ours. The timestamp is midnight in the exchange's timezone, so its
    date in that timezone is the effective trading day.

    Example:
        >>> index = pd.DatetimeIndex(["2020-08-31"]).tz_localize("America/New_York")
        >>> splits_from_yahoo_series(pd.Series([4.0], index=index), "AAPL")["split_factor"].tolist()
        [4.0]
    """
    index = pd.DatetimeIndex(splits.index)
    if index.tz is not None:
        index = index.tz_convert(NEW_YORK)
    events = pd.DataFrame(
        {"effective_date": index.strftime("%Y-%m-%d"), "split_factor": splits.to_numpy(), "symbol": symbol}
    )
    return check_splits(events.assign(source=SOURCE_NAME), f"{SOURCE_NAME} splits {symbol}")


def fetch_yahoo_splits(symbol: str, *, session=None) -> pd.DataFrame | None:
    """Fetch one symbol's split events from Yahoo (yfinance `Ticker.splits`).

    Split events are extra information: when Yahoo cannot give them the prices are still
    good, so a failure is logged and None returned (the warehouse keeps the events it knows).

    Returns:
        The events (SPLIT_COLUMNS), source "yahoo"; None when Yahoo could not answer.
    """
    # Imported here: yfinance pulls in curl_cffi, peewee and more; only pay for it when used.
    from yfinance import Ticker
    from yfinance.exceptions import YFException

    symbol = normalize_symbol(symbol)
    try:
        series = Ticker(to_yahoo_symbol(symbol), session=session).splits
    except (YFException, OSError, ValueError, KeyError) as exc:
        logger.warning(
            "%s %s: could not fetch split events (%s); keeping the stored ones", SOURCE_NAME, symbol, _describe(exc)
        )
        return None
    if series is None or len(series) == 0:
        return empty_splits()
    return splits_from_yahoo_series(series, symbol)
