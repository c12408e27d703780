"""Tests for the Yahoo Finance client, through the real yfinance 1.7 and a fake Yahoo.

`FakeYahoo` answers yfinance's HTTP calls (via `responses`) the way Yahoo does: the chart API
`/v8/finance/chart/{symbol}` with `chart.result[0].timestamp` and `indicators.quote[0]`, its
"Not Found" error reply, HTTP 429 "Too Many Requests", the outage page, plus the cookie/crumb
handshake yfinance performs first. Prices are real (IBM, bokeh-sampledata). No test touches
the internet: `responses` refuses every request it was not told about.

The helpers (`FakeYahoo`, `yahoo_mock`, `real_rows`) are also used by test_sources.py.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import requests
import responses

from src.config import Settings
from src.ingestion.fetch_result import NoDataError, SourceUnavailableError
from src.ingestion.symbols import InvalidSymbolInputError
from src.ingestion.yahoo_finance import (
    RAW_PAYLOAD_NOTE,
    YahooFrameError,
    fetch_yahoo_prices,
    normalize_yahoo_frame,
    splits_from_yahoo_series,
    to_yahoo_symbol,
)
from tests.fixtures.market_data import load_bokeh_prices

EASTERN = "America/New_York"
YAHOO_URL = re.compile(r"https://[a-z0-9.]*yahoo\.com/.*")
NOT_FOUND_REPLY = {
    "chart": {
        "result": None,
        "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
    }
}
OUTAGE_PAGE = "<html><head><title>Yahoo</title></head><body>Will be right back...</body></html>"


def real_rows(symbol: str, first: str, last: str) -> pd.DataFrame:
    """Real daily prices (bokeh-sampledata) from first to last, with Yahoo's extra adj_close column."""
    from bokeh_sampledata import stocks

    raw = pd.DataFrame(getattr(stocks, symbol))
    raw = raw[(raw["date"] >= first) & (raw["date"] <= last)].sort_values("date").reset_index(drop=True)
    return raw[["date", "open", "high", "low", "close", "volume", "adj_close"]]


def expected_prices(symbol: str, first: str, last: str, source: str) -> pd.DataFrame:
    """The normalised frame a source should return for the real prices from first to last."""
    frame = load_bokeh_prices(symbol)
    frame = frame[frame["trade_date"].between(first, last)].reset_index(drop=True)
    frame["source"] = source
    return frame


def session_open_timestamp(day: str) -> int:
    """Yahoo stamps a daily bar with the session's opening time, 09:30 New York time."""
    return int(pd.Timestamp(f"{day} 09:30", tz=EASTERN).timestamp())


def chart_reply(yahoo_symbol: str, rows: pd.DataFrame, timestamps: list[int] | None = None) -> dict:
    """Build Yahoo's chart JSON (v8) for some daily rows, as Yahoo sends it."""
    if timestamps is None:
        timestamps = [session_open_timestamp(day) for day in rows["date"]]
    meta = {
        "currency": "USD",
        "symbol": yahoo_symbol,
        "exchangeName": "NYQ",
        "fullExchangeName": "NYSE",
        "instrumentType": "EQUITY",
        "firstTradeDate": -252322200,
        "regularMarketTime": timestamps[-1] if timestamps else 0,
        "hasPrePostMarketData": True,
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": EASTERN,
        "priceHint": 2,
        "dataGranularity": "1d",
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    if rows.empty:
        # Yahoo's reply for a range without sessions: meta, no timestamps, empty quote.
        return {
            "chart": {
                "result": [{"meta": meta, "indicators": {"quote": [{}], "adjclose": [{}]}}],
                "error": None,
            }
        }
    quote = {
        "open": rows["open"].tolist(),
        "high": rows["high"].tolist(),
        "low": rows["low"].tolist(),
        "close": rows["close"].tolist(),
        "volume": rows["volume"].tolist(),
    }
    result = {
        "meta": meta,
        "timestamp": timestamps,
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": rows["adj_close"].tolist()}]},
    }
    return {"chart": {"result": [result], "error": None}}


class FakeYahoo:
    """Answers yfinance's HTTP calls like Yahoo's servers (a `responses` callback).

    Attributes:
        charts: Yahoo symbol -> chart JSON served with HTTP 200; other symbols get 404 Not Found.
        queued: (status, body) replies served to the next chart calls first, e.g. 429s.
        outage: when True every query1/query2 call gets HTTP 503 and the outage page.
        chart_calls: the query parameters of every chart call, per Yahoo symbol.
    """

    def __init__(self):
        self.charts: dict[str, dict] = {}
        self.queued: list[tuple[int, str]] = []
        self.outage = False
        self.chart_calls: dict[str, list[dict]] = {}

    def add_prices(self, yahoo_symbol: str, rows: pd.DataFrame, timestamps: list[int] | None = None) -> None:
        self.charts[yahoo_symbol] = chart_reply(yahoo_symbol, rows, timestamps)

    def history_calls(self, yahoo_symbol: str) -> list[dict]:
        """The chart calls for a date range (yfinance's timezone look-up uses range=1d instead)."""
        return [params for params in self.chart_calls.get(yahoo_symbol, []) if "period1" in params]

    def __call__(self, request) -> tuple[int, dict, str]:
        url = urlsplit(request.url)
        params = {key: values[0] for key, values in parse_qs(url.query).items()}
        html = {"Content-Type": "text/html"}
        if url.hostname == "fc.yahoo.com":
            return 404, html, "<html>404</html>"  # the cookie endpoint really answers 404
        if url.hostname == "guce.yahoo.com":
            return 200, html, "<html><body>consent</body></html>"
        if url.path.endswith("/v1/test/getcrumb"):
            return 200, {"Content-Type": "text/plain"}, "Xq4hWtQkP1a"
        if self.outage:
            return 503, html, OUTAGE_PAGE
        if url.path.startswith("/v8/finance/chart/"):
            yahoo_symbol = url.path.rsplit("/", 1)[-1]
            self.chart_calls.setdefault(yahoo_symbol, []).append(params)
            if self.queued:
                status, body = self.queued.pop(0)
                return status, {"Content-Type": "text/plain"}, body
            if yahoo_symbol in self.charts:
                return 200, {"Content-Type": "application/json"}, json.dumps(self.charts[yahoo_symbol])
            return 404, {"Content-Type": "application/json"}, json.dumps(NOT_FOUND_REPLY)
        # yfinance asks these only when the chart API did not give a symbol's timezone.
        if url.path.startswith("/v10/finance/quoteSummary/"):
            symbol = url.path.rsplit("/", 1)[-1]
            error = {"code": "Not Found", "description": f"Quote not found for symbol: {symbol}"}
            return (
                404,
                {"Content-Type": "application/json"},
                json.dumps({"quoteSummary": {"result": None, "error": error}}),
            )
        if url.path.startswith("/v7/finance/quote"):
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"quoteResponse": {"result": [], "error": None}}),
            )
        if "fundamentals-timeseries" in url.path:
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"timeseries": {"result": [], "error": None}}),
            )
        return 404, html, "<html>404</html>"


def isolate_yfinance(cache_dir) -> None:
    """Keep yfinance's state from leaking between tests.

    yfinance keeps replies for past date ranges in an in-memory cache (so a reply from one
    test would answer the next) and timezones/cookies in files under the user's cache folder.
    """
    import yfinance
    from yfinance.data import YfData

    yfinance.set_tz_cache_location(str(cache_dir))
    YfData.cache_get.cache_clear()


@contextmanager
def yahoo_mock(cache_dir, rsps: responses.RequestsMock | None = None):
    """Serve a FakeYahoo through `responses` (a new RequestsMock unless one is given)."""
    isolate_yfinance(cache_dir)
    fake = FakeYahoo()
    if rsps is not None:
        rsps.add_callback(responses.GET, YAHOO_URL, callback=fake)
        yield fake
        return
    with responses.RequestsMock(assert_all_requests_are_fired=False) as own_rsps:
        own_rsps.add_callback(responses.GET, YAHOO_URL, callback=fake)
        yield fake


@pytest.fixture
def fake_yahoo(tmp_path_factory):
    with yahoo_mock(tmp_path_factory.getbasetemp() / "yfinance-cache") as fake:
        yield fake


@pytest.fixture
def settings():
    return Settings(yahoo_max_retries=2, http_backoff_seconds=1.0)


def fetch(symbol, start, end, settings, sleeps=None):
    """Call fetch_yahoo_prices with a requests.Session (so `responses` sees the calls) and a fake sleep."""
    sleeps = [] if sleeps is None else sleeps
    return fetch_yahoo_prices(symbol, start, end, settings, session=requests.Session(), sleep=sleeps.append)


def test_fetch_returns_real_rows_for_the_inclusive_range(fake_yahoo, settings):
    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-02-25", "2013-03-01"))

    result = fetch("IBM", date(2013, 2, 25), date(2013, 3, 1), settings)

    pd.testing.assert_frame_equal(result.prices, expected_prices("IBM", "2013-02-25", "2013-03-01", "yahoo"))
    assert (result.symbol, result.source) == ("IBM", "yahoo")
    assert result.request_params == {
        "symbol": "IBM",
        "start": "2013-02-25",
        "end_exclusive": "2013-03-02",
        "interval": "1d",
        "auto_adjust": False,
    }


def test_end_is_passed_as_the_next_day_because_yfinance_end_is_exclusive(fake_yahoo, settings):
    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-02-25", "2013-03-01"))

    result = fetch("IBM", date(2013, 2, 25), date(2013, 3, 1), settings)

    [params] = fake_yahoo.history_calls("IBM")
    assert int(params["period1"]) == int(pd.Timestamp("2013-02-25", tz=EASTERN).timestamp())
    assert int(params["period2"]) == int(pd.Timestamp("2013-03-02", tz=EASTERN).timestamp())
    assert result.prices["trade_date"].iloc[-1] == "2013-03-01"  # the end day itself is there


def test_prices_are_close_not_adjusted_close(fake_yahoo, settings):
    rows = real_rows("IBM", "2013-02-25", "2013-03-01")
    fake_yahoo.add_prices("IBM", rows)

    result = fetch("IBM", date(2013, 2, 25), date(2013, 3, 1), settings)

    # auto_adjust=True would have scaled all four prices by adj_close / close (about 0.86 here).
    assert result.prices["close"].tolist() == rows["close"].tolist()
    assert result.prices["open"].tolist() == rows["open"].tolist()
    assert result.prices["close"].tolist() != rows["adj_close"].tolist()


def test_trading_date_is_the_new_york_date_not_the_utc_date(fake_yahoo, settings):
    rows = real_rows("IBM", "2013-02-27", "2013-03-01")
    # The last bar carries an evening timestamp (19:30 New York = 00:30 UTC the next day),
    # as Yahoo does for the current day's bar.
    timestamps = [session_open_timestamp("2013-02-27"), session_open_timestamp("2013-02-28")]
    timestamps.append(int(pd.Timestamp("2013-03-01 19:30", tz=EASTERN).timestamp()))
    assert pd.Timestamp(timestamps[-1], unit="s").date() == date(2013, 3, 2)  # the UTC date
    fake_yahoo.add_prices("IBM", rows, timestamps)

    result = fetch("IBM", date(2013, 2, 27), date(2013, 3, 1), settings)

    assert result.prices["trade_date"].tolist() == ["2013-02-27", "2013-02-28", "2013-03-01"]


def test_rows_after_the_requested_end_are_dropped(fake_yahoo, settings):
    # Yahoo often appends the latest bar even when it is after the requested range.
    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-02-25", "2013-03-01"))

    result = fetch("IBM", date(2013, 2, 25), date(2013, 2, 27), settings)

    pd.testing.assert_frame_equal(result.prices, expected_prices("IBM", "2013-02-25", "2013-02-27", "yahoo"))


def test_share_class_symbol_is_sent_with_a_dash(fake_yahoo, settings):
    rows = real_rows("IBM", "2013-02-25", "2013-02-26")  # real prices, served under another name
    fake_yahoo.add_prices("BRK-B", rows)

    result = fetch("brk.b", date(2013, 2, 25), date(2013, 2, 26), settings)

    assert to_yahoo_symbol("BRK.B") == "BRK-B"
    assert len(fake_yahoo.history_calls("BRK-B")) == 1
    assert result.symbol == "BRK.B"
    assert result.prices["symbol"].tolist() == ["BRK.B", "BRK.B"]
    assert result.prices["close"].tolist() == rows["close"].tolist()


def test_raw_payload_is_json_with_every_column_yfinance_returned(fake_yahoo, settings):
    rows = real_rows("IBM", "2013-02-28", "2013-03-01")
    fake_yahoo.add_prices("IBM", rows)

    result = fetch("IBM", date(2013, 2, 28), date(2013, 3, 1), settings)

    payload = json.loads(json.dumps(result.raw_payload))  # must survive a JSON round trip
    assert payload["note"] == RAW_PAYLOAD_NOTE
    assert payload["exchange_timezone"] == EASTERN
    assert [row["Date"] for row in payload["rows"]] == [
        "2013-02-28T00:00:00-05:00",
        "2013-03-01T00:00:00-05:00",
    ]
    assert [row["Close"] for row in payload["rows"]] == rows["close"].tolist()
    assert [row["Adj Close"] for row in payload["rows"]] == rows["adj_close"].tolist()
    assert [row["Volume"] for row in payload["rows"]] == rows["volume"].tolist()


def test_unknown_symbol_is_no_data(fake_yahoo, settings):
    with pytest.raises(NoDataError) as caught:
        fetch("ZZZZQ", date(2013, 2, 25), date(2013, 3, 1), settings)

    assert caught.value.source == "yahoo"
    assert caught.value.symbol == "ZZZZQ"
    assert "ZZZZQ" in caught.value.reason
    assert fake_yahoo.history_calls("ZZZZQ") == []  # no timezone, so no price request either


def test_range_without_sessions_is_no_data(fake_yahoo, settings):
    # Yahoo's reply when the range holds no trading day: a result with an empty quote.
    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-01-01", "2013-01-01"))  # New Year: no rows

    with pytest.raises(NoDataError) as caught:
        fetch("IBM", date(2013, 1, 1), date(2013, 1, 1), settings)

    assert "no price data" in caught.value.reason


def test_rate_limit_is_retried_with_growing_waits_then_succeeds(fake_yahoo, settings):
    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-02-25", "2013-03-01"))
    # yfinance re-sends a 429'd request once itself, so each of our tries uses two replies.
    fake_yahoo.queued = [(429, "Too Many Requests")] * 4
    sleeps = []

    result = fetch("IBM", date(2013, 2, 25), date(2013, 3, 1), settings, sleeps)

    assert sleeps == [1.0, 2.0]
    pd.testing.assert_frame_equal(result.prices, expected_prices("IBM", "2013-02-25", "2013-03-01", "yahoo"))


def test_rate_limit_that_never_ends_makes_yahoo_unavailable(fake_yahoo, settings):
    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-02-25", "2013-03-01"))
    fake_yahoo.queued = [(429, "Too Many Requests")] * 20
    sleeps = []

    with pytest.raises(SourceUnavailableError) as caught:
        fetch("IBM", date(2013, 2, 25), date(2013, 3, 1), settings, sleeps)

    assert caught.value.reason == "still rate-limited (HTTP 429) after 3 tries"
    assert sleeps == [1.0, 2.0]  # yahoo_max_retries=2: three tries, two waits
    assert len(fake_yahoo.chart_calls["IBM"]) == 6  # 3 tries x (request + yfinance's own re-send)


def test_yahoo_outage_page_makes_yahoo_unavailable(fake_yahoo, settings):
    fake_yahoo.outage = True

    with pytest.raises(SourceUnavailableError) as caught:
        fetch("IBM", date(2013, 2, 25), date(2013, 3, 1), settings)

    assert caught.value.source == "yahoo"
    assert "crumb" not in caught.value.reason  # yfinance's session token stays out of messages


def test_invalid_symbol_is_refused_before_any_request(fake_yahoo, settings):
    with pytest.raises(InvalidSymbolInputError):
        fetch("../IBM", date(2013, 2, 25), date(2013, 3, 1), settings)

    assert fake_yahoo.chart_calls == {}


def test_download_multiindex_columns_are_normalised_like_history(fake_yahoo, settings):
    import yfinance

    fake_yahoo.add_prices("IBM", real_rows("IBM", "2013-02-25", "2013-03-01"))
    # yf.download returns ("Close", "IBM")-style columns even for one ticker.
    downloaded = yfinance.download(
        "IBM",
        start="2013-02-25",
        end="2013-03-02",
        auto_adjust=False,
        progress=False,
        threads=False,
        session=requests.Session(),
    )
    assert isinstance(downloaded.columns, pd.MultiIndex)

    prices = normalize_yahoo_frame(downloaded, "IBM")

    pd.testing.assert_frame_equal(prices, expected_prices("IBM", "2013-02-25", "2013-03-01", "yahoo"))


def test_normalise_converts_utc_timestamps_to_the_exchange_date():
    rows = real_rows("IBM", "2013-02-28", "2013-03-01")
    frame = pd.DataFrame(
        {
            "Open": rows["open"].values,
            "High": rows["high"].values,
            "Low": rows["low"].values,
            "Close": rows["close"].values,
            "Adj Close": rows["adj_close"].values,
            "Volume": rows["volume"].values,
        },
        # 16:00 and 20:00 New York time, written in UTC: the second is already March 2 in UTC.
        index=pd.DatetimeIndex(["2013-02-28 21:00", "2013-03-02 01:00"], tz="UTC"),
    )

    prices = normalize_yahoo_frame(frame, "IBM", EASTERN)

    pd.testing.assert_frame_equal(prices, expected_prices("IBM", "2013-02-28", "2013-03-01", "yahoo"))


def _downloaded(tickers: list[str], with_adj_close: bool = True) -> pd.DataFrame:
    """The shape of yf.download(tickers, auto_adjust=False): MultiIndex columns (Price, Ticker)."""
    rows = real_rows("IBM", "2013-02-28", "2013-03-01")
    fields = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
    if with_adj_close:
        fields["Adj Close"] = "adj_close"
    columns = pd.MultiIndex.from_tuples([(field, t) for field in fields for t in tickers], names=["Price", "Ticker"])
    values = [[rows[fields[field]].iloc[i] for field in fields for _ in tickers] for i in range(len(rows))]
    return pd.DataFrame(values, columns=columns, index=pd.DatetimeIndex(["2013-02-28", "2013-03-01"]))


def test_a_frame_of_more_than_one_ticker_is_refused_with_a_clear_error():
    # yf.download(["IBM", "MSFT"]) used to reach the validator as duplicated "close" columns and
    # crash there with "'DataFrame' object has no attribute 'str'".
    with pytest.raises(YahooFrameError, match=r"holds 2 tickers \(IBM, MSFT\).*one ticker at a time"):
        normalize_yahoo_frame(_downloaded(["IBM", "MSFT"]), "IBM")


def test_a_frame_fetched_with_auto_adjust_is_refused():
    flat = _downloaded(["IBM"], with_adj_close=False).droplevel("Ticker", axis=1)
    with pytest.raises(YahooFrameError, match="auto_adjust=True.*not prices as traded"):
        normalize_yahoo_frame(flat, "IBM")
    with pytest.raises(YahooFrameError, match="auto_adjust=True"):
        normalize_yahoo_frame(_downloaded(["IBM"], with_adj_close=False), "IBM")


def test_a_one_ticker_download_frame_with_adj_close_is_fine():
    prices = normalize_yahoo_frame(_downloaded(["IBM"]), "IBM")
    assert prices["trade_date"].tolist() == ["2013-02-28", "2013-03-01"]


def test_yahoo_split_ratios_become_split_events_on_the_exchange_day():
    # yfinance's Ticker.splits: ratio (new shares per old share) at midnight New York time.
    # AAPL's 4-for-1 of 2020-08-31 and 7-for-1 of 2014-06-09 (public records).
    index = pd.DatetimeIndex(["2014-06-09", "2020-08-31"]).tz_localize("America/New_York")
    events = splits_from_yahoo_series(pd.Series([7.0, 4.0], index=index), "AAPL")

    assert events.to_dict("records") == [
        {"symbol": "AAPL", "effective_date": "2014-06-09", "split_factor": 7.0, "source": "yahoo"},
        {"symbol": "AAPL", "effective_date": "2020-08-31", "split_factor": 4.0, "source": "yahoo"},
    ]
