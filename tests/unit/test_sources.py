"""Tests for the sources orchestrator: fallback order, quota, bad keys, failures, the file source.

Both APIs are faked through `responses` with their real wire formats: `FakeAlphaVantage`
below answers TIME_SERIES_DAILY requests, `FakeYahoo` (from test_yahoo_finance) answers
yfinance. Prices are real (AAPL, GOOG, IBM, MSFT from bokeh-sampledata). Nothing touches the
internet: `responses` refuses every request it was not told about.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import date
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import requests
import responses

from src.config import ConfigurationError, Settings
from src.ingestion.rate_limit import DailyQuota
from src.ingestion.sources import AllSourcesFailedError, fetch_batch, fetch_symbol
from src.ingestion.symbols import InvalidSymbolInputError
from src.pipeline import main
from src.steps import resolve_symbols
from tests.fixtures.market_data import load_bokeh_prices
from tests.unit.test_yahoo_finance import expected_prices, real_rows, yahoo_mock

START, END = date(2013, 2, 25), date(2013, 3, 1)
FIRST, LAST = START.isoformat(), END.isoformat()
SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT"]
ALPHA_VANTAGE_URL = "https://www.alphavantage.co/query"

# Alpha Vantage's real replies for the cases the orchestrator must handle.
PREMIUM_REPLY = {
    "Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to "
    "any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all "
    "premium endpoints"
}
INVALID_CALL_REPLY = {
    "Error Message": "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."
}
BAD_KEY_REPLY = {
    "Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
}


def alpha_vantage_reply(symbol: str) -> dict:
    """Alpha Vantage's TIME_SERIES_DAILY JSON for the real prices of START..END (newest first)."""
    prices = load_bokeh_prices(symbol)
    prices = prices[prices["trade_date"].between(FIRST, LAST)].sort_values("trade_date", ascending=False)
    series = {
        row.trade_date: {
            "1. open": f"{row.open:.4f}",
            "2. high": f"{row.high:.4f}",
            "3. low": f"{row.low:.4f}",
            "4. close": f"{row.close:.4f}",
            "5. volume": str(row.volume),
        }
        for row in prices.itertuples()
    }
    meta = {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": symbol,
        "3. Last Refreshed": LAST,
        "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern",
    }
    return {"Meta Data": meta, "Time Series (Daily)": series}


def expected_alpha_vantage_prices(symbol: str) -> pd.DataFrame:
    """What the Alpha Vantage client returns for `alpha_vantage_reply(symbol)`: strings, as sent."""
    expected = expected_prices(symbol, FIRST, LAST, "alpha_vantage")
    for field in ("open", "high", "low", "close"):
        expected[field] = expected[field].map(lambda value: f"{value:.4f}")
    expected["volume"] = expected["volume"].astype(str)
    return expected


class FakeAlphaVantage:
    """Answers TIME_SERIES_DAILY and SPLITS requests (a `responses` callback).

    Attributes:
        replies: symbol -> (HTTP status, JSON body); unknown symbols get "Invalid API call".
        calls: the symbol of every TIME_SERIES_DAILY request received, in order.
        split_replies: symbol -> SPLITS body (default: the real "no splits" reply, empty data).
        split_calls: the symbol of every SPLITS request received, in order.
    """

    def __init__(self):
        self.replies: dict[str, tuple[int, dict]] = {}
        self.calls: list[str] = []
        self.split_replies: dict[str, dict] = {}
        self.split_calls: list[str] = []

    def __call__(self, request) -> tuple[int, dict, str]:
        params = {key: values[0] for key, values in parse_qs(urlsplit(request.url).query).items()}
        if params["function"] == "SPLITS":
            self.split_calls.append(params["symbol"])
            body = self.split_replies.get(params["symbol"], {"symbol": params["symbol"], "data": []})
            return 200, {"Content-Type": "application/json"}, json.dumps(body)
        self.calls.append(params["symbol"])
        status, body = self.replies.get(params["symbol"], (200, INVALID_CALL_REPLY))
        return status, {"Content-Type": "application/json"}, json.dumps(body)


@pytest.fixture
def apis(tmp_path_factory):
    """Fake Alpha Vantage and fake Yahoo, both serving the real prices of SYMBOLS."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        alpha = FakeAlphaVantage()
        rsps.add_callback(responses.GET, ALPHA_VANTAGE_URL, callback=alpha)
        with yahoo_mock(tmp_path_factory.getbasetemp() / "yfinance-cache", rsps) as yahoo:
            for symbol in SYMBOLS:
                alpha.replies[symbol] = (200, alpha_vantage_reply(symbol))
                yahoo.add_prices(symbol, real_rows(symbol, FIRST, LAST))
            yield SimpleNamespace(alpha=alpha, yahoo=yahoo)


@pytest.fixture
def settings(tmp_path):
    return Settings(
        data_sources=("alpha_vantage", "yahoo"),
        alpha_vantage_api_key="test-key",
        alpha_vantage_base_url=ALPHA_VANTAGE_URL,
        alpha_vantage_calls_per_minute=1000,  # no pacing waits in tests
        alpha_vantage_min_interval_seconds=0.0,
        alpha_vantage_daily_limit=25,
        http_backoff_seconds=1.0,
        yahoo_max_retries=1,
        state_dir=tmp_path / "state",
        file_source_dir=tmp_path / "files",
    )


def run_batch(symbols, settings, **kwargs):
    sleeps = []
    results, failures = fetch_batch(
        symbols, START, END, settings, session=requests.Session(), sleep=sleeps.append, **kwargs
    )
    return results, failures


def yahoo_symbols_asked(yahoo) -> list[str]:
    return [symbol for symbol in yahoo.chart_calls if yahoo.history_calls(symbol)]


def test_first_source_that_succeeds_wins(apis, settings):
    result = fetch_symbol("IBM", START, END, settings, session=requests.Session())

    assert result.source == "alpha_vantage"
    pd.testing.assert_frame_equal(result.prices, expected_alpha_vantage_prices("IBM"))
    assert apis.alpha.calls == ["IBM"]
    assert apis.alpha.split_calls == ["IBM"]
    assert result.splits is not None and result.splits.empty  # IBM's real reply: "data": []
    assert apis.yahoo.chart_calls == {}


def test_sources_are_tried_in_the_order_given(apis, settings):
    result = fetch_symbol("IBM", START, END, settings, sources=["yahoo", "alpha_vantage"], session=requests.Session())

    assert result.source == "yahoo"
    pd.testing.assert_frame_equal(result.prices, expected_prices("IBM", FIRST, LAST, "yahoo"))
    assert apis.alpha.calls == []


@pytest.mark.parametrize(
    ("reply", "reason_start"),
    [(PREMIUM_REPLY, "premium only"), (INVALID_CALL_REPLY, "unknown symbol")],
    ids=["premium-only", "invalid-symbol"],
)
def test_alpha_vantage_refusal_falls_back_to_yahoo(apis, settings, caplog, reply, reason_start):
    apis.alpha.replies["IBM"] = (200, reply)

    with caplog.at_level(logging.WARNING, logger="src.ingestion.sources"):
        result = fetch_symbol("IBM", START, END, settings, session=requests.Session())

    assert result.source == "yahoo"
    pd.testing.assert_frame_equal(result.prices, expected_prices("IBM", FIRST, LAST, "yahoo"))
    assert apis.alpha.calls == ["IBM"]  # never retried
    [record] = [record for record in caplog.records if record.name == "src.ingestion.sources"]
    assert record.getMessage().startswith(f"IBM {FIRST}..{LAST}: source alpha_vantage failed: {reason_start}: ")


def test_quota_exhaustion_moves_the_rest_of_the_batch_to_yahoo(apis, settings):
    # Each symbol costs two calls: its prices and its split events (once a day).
    settings = dataclasses.replace(settings, alpha_vantage_daily_limit=4)

    results, failures = run_batch(SYMBOLS, settings)

    assert [(result.symbol, result.source) for result in results] == [
        ("AAPL", "alpha_vantage"),
        ("GOOG", "alpha_vantage"),
        ("IBM", "yahoo"),
        ("MSFT", "yahoo"),
    ]
    assert failures == {}
    assert apis.alpha.calls == ["AAPL", "GOOG"]  # no request once the quota is used up
    assert apis.alpha.split_calls == ["AAPL", "GOOG"]
    assert yahoo_symbols_asked(apis.yahoo) == ["IBM", "MSFT"]
    assert DailyQuota(settings.state_dir, 4).calls_today() == 4  # one quota shared by the batch
    pd.testing.assert_frame_equal(results[3].prices, expected_prices("MSFT", FIRST, LAST, "yahoo"))


def test_quota_already_used_up_skips_alpha_vantage_without_a_request(apis, settings):
    DailyQuota(settings.state_dir, settings.alpha_vantage_daily_limit).mark_exhausted()
    apis.yahoo.charts.pop("MSFT")  # Yahoo cannot help MSFT either

    results, failures = run_batch(["IBM", "MSFT"], settings)

    assert [(result.symbol, result.source) for result in results] == [("IBM", "yahoo")]
    assert apis.alpha.calls == []
    assert failures["MSFT"].startswith(
        "every source failed (alpha_vantage: daily quota used up; skipped without a request; yahoo: "
    )


def test_rejected_api_key_stops_the_batch(apis, settings):
    apis.alpha.replies["AAPL"] = (200, BAD_KEY_REPLY)

    with pytest.raises(ConfigurationError, match="Alpha Vantage rejected ALPHA_VANTAGE_API_KEY"):
        run_batch(SYMBOLS, settings)

    assert apis.alpha.calls == ["AAPL"]  # the other symbols are not tried
    assert apis.yahoo.chart_calls == {}  # no fallback: the key must be fixed


def test_missing_api_key_stops_the_batch_before_any_request(apis, settings):
    settings = dataclasses.replace(settings, alpha_vantage_api_key="")

    with pytest.raises(ConfigurationError, match="ALPHA_VANTAGE_API_KEY is not set"):
        run_batch(SYMBOLS, settings)

    assert apis.alpha.calls == []
    assert apis.yahoo.chart_calls == {}


def test_symbol_that_every_source_fails_is_reported_while_the_others_succeed(apis, settings):
    apis.alpha.replies["MSFT"] = (503, {"error": "Service Unavailable"})
    apis.yahoo.charts.pop("MSFT")  # Yahoo answers 404 Not Found

    results, failures = run_batch(SYMBOLS, settings)

    assert [(result.symbol, result.source) for result in results] == [
        ("AAPL", "alpha_vantage"),
        ("GOOG", "alpha_vantage"),
        ("IBM", "alpha_vantage"),
    ]
    assert list(failures) == ["MSFT"]
    assert failures["MSFT"].startswith("every source failed (alpha_vantage: alpha_vantage MSFT: all 3 tries failed")
    assert "; yahoo: " in failures["MSFT"]


def test_all_sources_failed_error_lists_each_source_reason(apis, settings):
    apis.alpha.replies["IBM"] = (200, PREMIUM_REPLY)
    apis.yahoo.charts.pop("IBM")

    with pytest.raises(AllSourcesFailedError) as caught:
        fetch_symbol("IBM", START, END, settings, session=requests.Session())

    error = caught.value
    assert list(error.reasons) == ["alpha_vantage", "yahoo"]
    assert error.reasons["alpha_vantage"].startswith("premium only: ")
    assert error.symbol == "IBM"
    alpha_reason, yahoo_reason = error.reasons["alpha_vantage"], error.reasons["yahoo"]
    assert str(error) == f"every source failed (alpha_vantage: {alpha_reason}; yahoo: {yahoo_reason})"


def test_file_source_serves_real_rows_and_falls_back_when_a_file_is_missing(apis, settings):
    settings.file_source_dir.mkdir()
    ibm = load_bokeh_prices("IBM").rename(columns={"trade_date": "date"})
    ibm[["date", "open", "high", "low", "close", "volume"]].to_csv(settings.file_source_dir / "IBM.csv", index=False)

    results, failures = run_batch(["IBM", "MSFT"], settings, sources=["file", "yahoo"])

    assert [(result.symbol, result.source) for result in results] == [("IBM", "file"), ("MSFT", "yahoo")]
    expected = expected_prices("IBM", FIRST, LAST, "file")
    for field in ("open", "high", "low", "close", "volume"):
        expected[field] = expected[field].astype(str)
    pd.testing.assert_frame_equal(results[0].prices, expected)
    assert failures == {}
    assert apis.alpha.calls == []


def test_invalid_symbols_stop_the_run_before_any_request(apis, settings, capsys):
    # Symbols are checked once, at the run's entry (the CLI here; the DAG's resolve_symbols
    # task calls the same steps.resolve_symbols), before any source is asked.
    with pytest.raises(InvalidSymbolInputError) as caught:
        resolve_symbols(["IBM", "../etc/passwd", "MSFT", "A;DROP TABLE x"], settings)
    assert caught.value.symbols == ["../etc/passwd", "A;DROP TABLE x"]

    code = main(
        ["run", "--symbols", "IBM,../etc/passwd,MSFT,A;DROP TABLE x", "--start", "2013-02-25", "--end", "2013-03-01"]
    )

    assert code == 2
    assert "'../etc/passwd', 'A;DROP TABLE x'" in capsys.readouterr().err
    assert apis.alpha.calls == []
    assert apis.yahoo.chart_calls == {}


def test_unknown_source_is_a_configuration_error(apis, settings):
    with pytest.raises(ConfigurationError, match="bloomberg"):
        fetch_symbol("IBM", START, END, settings, sources=["bloomberg"])

    assert apis.alpha.calls == []


def test_alpha_vantage_split_events_come_with_the_prices_once_per_symbol_and_day(apis, settings):
    apis.alpha.split_replies["IBM"] = {
        "symbol": "IBM",
        "data": [{"effective_date": "1999-05-27", "split_factor": "2.0000"}],
    }

    first = fetch_symbol("IBM", START, END, settings, session=requests.Session())
    again = fetch_symbol("IBM", START, END, settings, session=requests.Session())

    assert first.splits.to_dict("records") == [
        {"symbol": "IBM", "effective_date": "1999-05-27", "split_factor": 2.0, "source": "alpha_vantage"}
    ]
    assert again.splits is None  # already fetched today: no second SPLITS call
    assert apis.alpha.split_calls == ["IBM"]
    assert apis.alpha.calls == ["IBM", "IBM"]


def test_a_throttled_splits_call_leaves_the_prices_good(apis, settings):
    apis.alpha.split_replies["IBM"] = {
        "Information": "Please consider spreading out your free API requests more sparingly (1 request per second)."
    }

    result = fetch_symbol("IBM", START, END, settings, session=requests.Session(), sleep=lambda seconds: None)

    assert result.source == "alpha_vantage" and len(result.prices) > 0
    assert result.splits is None
    assert apis.alpha.split_calls == ["IBM", "IBM", "IBM"]  # the first try and THROTTLE_RETRIES retries
