"""Turn a raw reply landed in S3 back into normalised prices.

The extract step lands every reply untouched in the S3 raw zone; the transform step (an Airflow
task or the AWS Lambda) reads it back from there. This module knows each source's raw format:

| source        | raw payload                                            | parsed by                       |
|---------------|--------------------------------------------------------|---------------------------------|
| alpha_vantage | the API's JSON reply                                   | `alpha_vantage.parse_daily_prices` |
| yahoo         | yfinance's frame as records (see `frame_to_raw_payload`) | `yahoo_finance.normalize_yahoo_frame` |
| file          | the CSV text of the selected rows                      | `_parse_file_csv` below         |

The object's metadata carries the date range the run asked for (`range_start`, `range_end`), so
the transform keeps exactly the rows the extract step selected.
"""

from __future__ import annotations

import pandas as pd

from src.ingestion.alpha_vantage import parse_daily_prices
from src.ingestion.fetch_result import PRICE_FRAME_COLUMNS, select_range
from src.ingestion.file_source import parse_price_csv
from src.ingestion.yahoo_finance import normalize_yahoo_frame
from src.market_calendar import NEW_YORK


def _parse_yahoo(payload: dict, symbol: str) -> pd.DataFrame:
    rows = payload.get("rows", [])
    if not rows:
        return pd.DataFrame(columns=PRICE_FRAME_COLUMNS)
    frame = pd.DataFrame(rows)
    # The dates keep their UTC offset in the raw payload; utc=True then converting back to the
    # exchange's timezone gives the same trading day yfinance reported.
    index = pd.to_datetime(frame.pop("Date"), utc=True)
    frame.index = pd.DatetimeIndex(index)
    return normalize_yahoo_frame(frame, symbol, payload.get("exchange_timezone", NEW_YORK))


def _parse_file_csv(text: str, symbol: str, synthetic: bool) -> pd.DataFrame:
    frame = parse_price_csv(text, f"the raw file reply for {symbol}")
    frame = frame.rename(columns={"date": "trade_date"})
    frame.insert(0, "symbol", symbol)
    frame["source"] = "synthetic" if synthetic else "file"
    return frame.reindex(columns=PRICE_FRAME_COLUMNS)


def prices_from_raw_reply(source: str, symbol: str, payload: object, metadata: dict | None = None) -> pd.DataFrame:
    """Parse one raw reply into the normalised price frame (values as the source gave them).

    Args:
        source: the source that produced it: alpha_vantage, yahoo or file.
        symbol: the validated symbol the reply is for.
        payload: the reply as read back from S3 (`s3_handler.read_raw_reply`).
        metadata: the object's metadata (`s3_handler.raw_object_metadata`); its
            `request_params` may hold `range_start`/`range_end` and `synthetic`.

    Returns:
        Columns symbol, trade_date, open, high, low, close, volume, source, limited to the
        range the run asked for.

    Raises:
        ValueError: the source is unknown or the payload does not have that source's shape.
    """
    params = (metadata or {}).get("request_params", {}) or {}
    if source == "alpha_vantage":
        if not isinstance(payload, dict):
            raise ValueError(f"alpha_vantage raw reply for {symbol} is not a JSON object")
        prices = parse_daily_prices(payload, symbol)
    elif source == "yahoo":
        if not isinstance(payload, dict):
            raise ValueError(f"yahoo raw reply for {symbol} is not a JSON object")
        prices = _parse_yahoo(payload, symbol)
    elif source == "file":
        if not isinstance(payload, str):
            raise ValueError(f"file raw reply for {symbol} is not CSV text")
        prices = _parse_file_csv(payload, symbol, str(params.get("synthetic", "")).lower() == "true")
    else:
        raise ValueError(f"unknown source {source!r}")

    start, end = params.get("range_start"), params.get("range_end")
    if start and end:
        prices = select_range(prices, start, end)  # rows with a bad date stay, to be quarantined
    return prices.reset_index(drop=True)
