"""What every price source (Alpha Vantage, Yahoo, file) returns for one symbol, and how it fails.

`FetchResult` is one small dataclass shared by all sources, so the orchestrator, the landing
code and the validator never need to know which source answered. The `SourceError` family is
how a source says "not from me, try the next source" (see `sources.fetch_symbol`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# The columns of the canonical "normalised prices" frame, in order.
PRICE_FRAME_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source"]


@dataclass
class FetchResult:
    """The reply of one source for one symbol and date range.

    Attributes:
        symbol: the validated symbol, e.g. "IBM".
        source: the source that answered: "alpha_vantage", "yahoo" or "file".
        prices: the normalised frame (`PRICE_FRAME_COLUMNS`), filtered to the requested
            start..end (inclusive) and sorted by trade_date. Values are still as the source
            gave them (e.g. strings from Alpha Vantage); the validator converts them.
        raw_payload: the untouched reply (parsed JSON, CSV text, ...) for the S3 raw zone.
            It never contains the API key.
        request_params: the request's parameters WITHOUT secrets (no apikey).
        fetched_at: when the reply arrived, ISO 8601 in UTC, e.g. "2024-01-02T21:30:05+00:00".
        splits: the symbol's split events from the same source (`split_events.SPLIT_COLUMNS`),
            an empty frame when the source has none, or None when they were not asked for
            (e.g. Alpha Vantage's were already fetched today).
    """

    symbol: str
    source: str
    prices: pd.DataFrame
    raw_payload: object
    request_params: dict
    fetched_at: str
    splits: pd.DataFrame | None = None


class SourceError(Exception):
    """This source cannot give data for this symbol now: try the next source.

    Attributes:
        reason: a short, secret-free explanation, e.g. "premium endpoint".
        symbol: the symbol concerned ("" when not known).
        source: the source that failed, e.g. "alpha_vantage" ("" when not known).
    """

    def __init__(self, reason: str, *, symbol: str = "", source: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.symbol = symbol
        self.source = source


class PremiumOnlyError(SourceError):
    """The request needs a premium plan (premium endpoint or outputsize=full). Never retried."""


class QuotaExhaustedError(SourceError):
    """The daily quota is used up: no more calls to this source until tomorrow (US/Eastern)."""


class NoDataError(SourceError):
    """The source answered, but has no rows for this symbol and date range."""


class InvalidSymbolError(SourceError):
    """The source does not know this symbol. Never retried."""


class SourceUnavailableError(SourceError):
    """The source kept failing (5xx, timeouts, HTML, truncated replies, throttling) after the retries."""


def select_range(prices: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """Keep the rows dated start..end (inclusive), plus every row whose date is not a real date.

    A row whose trade_date is not 'YYYY-MM-DD' cannot be placed in the range, but dropping
    it here would lose it silently. It is passed on, and the validator quarantines it with
    the reason `invalid_date`, so it shows up in `quarantine_prices`.

    Args:
        prices: a normalised price frame (trade_date as text).
        start: first day, 'YYYY-MM-DD'.
        end: last day, 'YYYY-MM-DD'.

    Returns:
        The selected rows, index reset, in their original order.

    Example:
        >>> frame = pd.DataFrame({"trade_date": ["2024-01-02", "2024-02-01", "02/01/2024"]})
        >>> select_range(frame, "2024-01-01", "2024-01-31")["trade_date"].tolist()
        ['2024-01-02', '02/01/2024']
    """
    dates = pd.to_datetime(prices["trade_date"].astype(str).str.strip(), format="%Y-%m-%d", errors="coerce")
    keep = dates.between(pd.Timestamp(start), pd.Timestamp(end)) | dates.isna()
    return prices[keep].reset_index(drop=True)
