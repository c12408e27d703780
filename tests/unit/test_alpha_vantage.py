"""Tests for the Alpha Vantage client (src/ingestion/alpha_vantage.py).

HTTP is intercepted by `responses` (nothing leaves the process). The replies are the real
service's replies, word for word; the data reply holds real IBM prices (bokeh-sampledata,
2013-02-26 .. 2013-03-01) in Alpha Vantage's wire format.
"""

import copy
import logging
from datetime import date, datetime

import pandas as pd
import pytest
import requests
import responses

from src.config import ConfigurationError, Settings
from src.ingestion import alpha_vantage
from src.ingestion.alpha_vantage import (
    SYNTHETIC_MARKER_KEY,
    THROTTLE_RETRIES,
    THROTTLE_WAIT_SECONDS,
    classify_reply,
    compact_covers,
    fetch_daily_prices,
    parse_daily_prices,
)
from src.ingestion.fetch_result import (
    InvalidSymbolError,
    NoDataError,
    PremiumOnlyError,
    QuotaExhaustedError,
    SourceError,
    SourceUnavailableError,
)
from src.ingestion.rate_limit import DailyQuota, RateLimiter
from src.ingestion.symbols import InvalidSymbolInputError
from tests.unit.test_rate_limit import FakeClock

AV_URL = "https://www.alphavantage.co/query"
FAKE_KEY = "AVKEY-SECRET-7f3a9c"  # recognisable, so a leak anywhere is easy to spot

IBM_REPLY = {
    "Meta Data": {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": "IBM",
        "3. Last Refreshed": "2013-03-01",
        "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern",
    },
    # Newest first, as Alpha Vantage sends it.
    "Time Series (Daily)": {
        "2013-03-01": {
            "1. open": "200.6500",
            "2. high": "202.9400",
            "3. low": "199.3600",
            "4. close": "202.9100",
            "5. volume": "3308300",
        },
        "2013-02-28": {
            "1. open": "202.1800",
            "2. high": "203.1230",
            "3. low": "200.7900",
            "4. close": "200.8300",
            "5. volume": "4689200",
        },
        "2013-02-27": {
            "1. open": "198.8900",
            "2. high": "202.7500",
            "3. low": "198.6000",
            "4. close": "202.3300",
            "5. volume": "4185100",
        },
        "2013-02-26": {
            "1. open": "198.6300",
            "2. high": "199.9000",
            "3. low": "197.8400",
            "4. close": "199.1400",
            "5. volume": "3391600",
        },
    },
}

BURST_REPLY = {
    "Information": "Thank you for using Alpha Vantage! Please consider spreading out your free API requests "
    "more sparingly (1 request per second). You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per day) and "
    "instantly remove all daily rate limits."
}
LEGACY_NOTE_REPLY = {
    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
    "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a "
    "higher API call frequency."
}
QUOTA_REPLY = {
    "Information": f"We have detected your API key as {FAKE_KEY} and our standard API rate limit is 25 "
    "requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
    "to instantly remove all daily rate limits."
}
PREMIUM_ENDPOINT_REPLY = {
    "Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any "
    "of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"
}
PREMIUM_FULL_REPLY = {
    "Information": "Thank you for using Alpha Vantage! The **outputsize=full** parameter value is a premium "
    "feature for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly unlock all premium features"
}
INVALID_SYMBOL_REPLY = {
    "Error Message": "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."
}
BAD_KEY_REPLY = {
    "Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
}
DEMO_KEY_REPLY = {
    "Information": "The **demo** API key is for demo purposes only. Please claim your free API key at "
    "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings. It should take "
    "less than 20 seconds."
}
EMPTY_REPLY = {"Meta Data": IBM_REPLY["Meta Data"], "Time Series (Daily)": {}}
HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


def expected_ibm_frame(dates: list[str], source: str = "alpha_vantage") -> pd.DataFrame:
    """The normalised frame for the given days of IBM_REPLY, oldest first, values as strings."""
    rows = []
    for day in sorted(dates):
        fields = IBM_REPLY["Time Series (Daily)"][day]
        rows.append(
            {
                "symbol": "IBM",
                "trade_date": day,
                "open": fields["1. open"],
                "high": fields["2. high"],
                "low": fields["3. low"],
                "close": fields["4. close"],
                "volume": fields["5. volume"],
                "source": source,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def settings(tmp_path):
    return Settings(
        alpha_vantage_api_key=FAKE_KEY,
        alpha_vantage_base_url=AV_URL,
        state_dir=tmp_path,
        http_max_tries=3,
        http_backoff_seconds=2.0,
    )


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps():
    """A fake sleep that records the waits instead of sleeping. Pass `sleeps.append`."""
    return []


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch):
    """Pretend today is 2013-03-01 (US/Eastern), so the IBM reply is 'the latest 100 sessions'."""
    monkeypatch.setattr(alpha_vantage, "new_york_today", lambda: date(2013, 3, 1))


def fetch(settings, sleeps, symbol="IBM", start=date(2013, 2, 26), end=date(2013, 3, 1), **kwargs):
    return fetch_daily_prices(symbol, start, end, settings, sleep=sleeps.append, **kwargs)


# --- classify_reply -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (IBM_REPLY, "data"),
        (BURST_REPLY, "throttled"),
        (LEGACY_NOTE_REPLY, "throttled"),
        (QUOTA_REPLY, "quota_exhausted"),
        (PREMIUM_ENDPOINT_REPLY, "premium_only"),
        (PREMIUM_FULL_REPLY, "premium_only"),
        (INVALID_SYMBOL_REPLY, "invalid_symbol"),
        (BAD_KEY_REPLY, "bad_key"),
        (DEMO_KEY_REPLY, "bad_key"),
        (EMPTY_REPLY, "empty"),
    ],
    ids=[
        "data",
        "burst",
        "legacy-note",
        "quota",
        "premium-endpoint",
        "premium-full",
        "invalid-symbol",
        "bad-key",
        "demo-key",
        "empty",
    ],
)
def test_classify_real_replies(payload, expected):
    assert classify_reply(payload) == expected


# Throttle replies the real service has sent in other words (issue 18): classified by what
# they mean (a short-window limit), so a rewording does not turn them into "malformed".
REWORDED_THROTTLES = [
    "Thank you for using Alpha Vantage! Please visit https://www.alphavantage.co/premium/ if you would like "
    "to have a higher API call volume.",
    "Please consider optimizing your API call frequency.",
    "Please query the demo URLs at no more than 2 requests per second.",
]


@pytest.mark.parametrize("text", REWORDED_THROTTLES)
@pytest.mark.parametrize("key", ["Information", "Note"])
def test_reworded_throttle_replies_are_throttles_not_malformed(text, key):
    assert classify_reply({key: text}) == "throttled"


@pytest.mark.parametrize("text", REWORDED_THROTTLES)
def test_a_reworded_throttle_is_waited_out_and_retried(api, settings, sleeps, text):
    api.get(AV_URL, json={"Information": text})
    api.get(AV_URL, json=IBM_REPLY)

    result = fetch(settings, sleeps)

    assert result.source == "alpha_vantage" and len(result.prices) == 4
    assert len(api.calls) == 2
    assert sleeps == [THROTTLE_WAIT_SECONDS]  # the throttle wait, not the malformed-reply backoff


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "Thank you for using Alpha Vantage!",
        ["Meta Data"],
        42,
        {},
        {"Meta Data": "IBM", "Time Series (Daily)": {}},
        {"Meta Data": IBM_REPLY["Meta Data"]},
        {"Meta Data": IBM_REPLY["Meta Data"], "Time Series (Daily)": ["2013-03-01"]},
        {"Meta Data": IBM_REPLY["Meta Data"], "Time Series (Daily)": {"2013-03-01": "200.65"}},
        {"Meta Data": {"1. Information": "Error: the request failed"}, "Time Series (Daily)": {}},
        {"Information": "Something Alpha Vantage has never said before."},
        {"Weekly Time Series": {}},
    ],
    ids=[
        "none",
        "string",
        "list",
        "number",
        "empty-object",
        "meta-not-object",
        "no-series",
        "series-list",
        "day-not-object",
        "meta-error",
        "unknown-information",
        "unknown-keys",
    ],
)
def test_classify_odd_shapes_as_malformed(payload):
    assert classify_reply(payload) == "malformed"


def test_classify_error_text_inside_meta_data():
    payload = copy.deepcopy(IBM_REPLY)
    payload["Meta Data"]["1. Information"] = INVALID_SYMBOL_REPLY["Error Message"]
    assert classify_reply(payload) == "invalid_symbol"
    payload["Meta Data"]["1. Information"] = BURST_REPLY["Information"]
    assert classify_reply(payload) == "throttled"


def test_burst_text_mentioning_daily_limit_is_not_the_quota():
    # The burst text says "(25 requests per day)" too: only the wording about spreading out
    # requests tells them apart. A quota reply must never be mistaken for a throttle, or back.
    assert "requests per day" in BURST_REPLY["Information"]
    assert classify_reply(BURST_REPLY) == "throttled"
    assert classify_reply(QUOTA_REPLY) == "quota_exhausted"


def test_classify_error_message_that_is_not_a_string():
    assert classify_reply({"Error Message": ["Invalid API call."]}) == "invalid_symbol"


# --- parsing and outputsize ------------------------------------------------------------------


def test_parse_daily_prices_gives_the_normalised_frame_oldest_first():
    frame = parse_daily_prices(IBM_REPLY, "IBM")
    pd.testing.assert_frame_equal(frame, expected_ibm_frame(["2013-02-26", "2013-02-27", "2013-02-28", "2013-03-01"]))


def test_parse_keeps_missing_fields_as_missing_and_passes_bad_dates_on_for_quarantine(caplog):
    payload = {
        "Meta Data": IBM_REPLY["Meta Data"],
        "Time Series (Daily)": {
            "2013-03-01": {
                "1. open": "200.6500",
                "2. high": "202.9400",
                "3. low": "199.3600",
                "4. close": "N/A",
            },
            "yesterday": {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1", "5. volume": "1"},
        },
    }
    frame = parse_daily_prices(payload, "IBM")

    # Nothing is dropped silently: the bad date reaches the validator (invalid_date).
    assert frame["trade_date"].tolist() == ["2013-03-01", "yesterday"]
    assert frame.loc[0, "close"] == "N/A"
    assert pd.isna(frame.loc[0, "volume"])
    assert "bad date key 'yesterday'" in caplog.text


def test_compact_covers_exactly_100_weekdays():
    # 2024-01-01 (Mon) .. 2024-05-17 (Fri) holds 20 full weeks = 100 weekdays.
    assert compact_covers(date(2024, 1, 1), today=date(2024, 5, 17))
    assert compact_covers(date(2024, 1, 1), today=date(2024, 5, 19))  # the weekend adds no weekday
    assert not compact_covers(date(2024, 1, 1), today=date(2024, 5, 20))


# --- fetch_daily_prices: each reply class ----------------------------------------------------


def test_data_reply_gives_the_rows_in_range(api, settings, sleeps):
    api.get(AV_URL, json=IBM_REPLY)

    result = fetch(settings, sleeps, symbol=" ibm ", start=date(2013, 2, 27), end=date(2013, 2, 28))

    pd.testing.assert_frame_equal(result.prices, expected_ibm_frame(["2013-02-27", "2013-02-28"]))
    assert result.symbol == "IBM"
    assert result.source == "alpha_vantage"
    assert result.raw_payload == IBM_REPLY
    assert result.request_params == {
        "function": "TIME_SERIES_DAILY",
        "symbol": "IBM",
        "outputsize": "compact",
        "datatype": "json",
    }
    assert datetime.fromisoformat(result.fetched_at).utcoffset().total_seconds() == 0
    sent = api.calls[0].request
    assert sent.params == {**result.request_params, "apikey": FAKE_KEY}
    assert sleeps == []


def test_synthetic_data_is_labelled_synthetic(api, settings, sleeps):
    payload = copy.deepcopy(IBM_REPLY)
    payload["Meta Data"][SYNTHETIC_MARKER_KEY] = "Yes: generated demo data"
    api.get(AV_URL, json=payload)

    result = fetch(settings, sleeps, start=date(2013, 3, 1))

    pd.testing.assert_frame_equal(result.prices, expected_ibm_frame(["2013-03-01"], source="synthetic"))
    assert result.source == "alpha_vantage"


def test_throttled_then_data_waits_and_retries(api, settings, sleeps):
    api.get(AV_URL, json=BURST_REPLY)
    api.get(AV_URL, json=IBM_REPLY)

    result = fetch(settings, sleeps)

    assert len(result.prices) == 4
    assert len(api.calls) == 2
    assert sleeps == [THROTTLE_WAIT_SECONDS]


def test_throttled_every_time_gives_up_after_the_bounded_retries(api, settings, sleeps):
    api.get(AV_URL, json=LEGACY_NOTE_REPLY)

    with pytest.raises(SourceUnavailableError, match="still throttled"):
        fetch(settings, sleeps)

    assert len(api.calls) == 1 + THROTTLE_RETRIES == 3
    assert sleeps == [60.0, 60.0]


def test_quota_reply_marks_the_day_and_later_symbols_send_nothing(api, settings, sleeps, tmp_path):
    api.get(AV_URL, json=QUOTA_REPLY)
    quota = DailyQuota(tmp_path, daily_limit=25, today=lambda: date(2013, 3, 1))

    with pytest.raises(QuotaExhaustedError) as caught:
        fetch(settings, sleeps, quota=quota)
    assert FAKE_KEY not in str(caught.value)  # the quota reply echoes the key
    assert "25 requests per day" in caught.value.reason
    assert quota.is_exhausted()

    with pytest.raises(QuotaExhaustedError, match="no request sent"):
        fetch(settings, sleeps, symbol="MSFT", quota=quota)
    assert len(api.calls) == 1
    assert sleeps == []


def test_quota_used_up_sends_no_request(api, settings, sleeps, tmp_path):
    quota = DailyQuota(tmp_path, daily_limit=0)

    with pytest.raises(QuotaExhaustedError):
        fetch(settings, sleeps, quota=quota)

    assert len(api.calls) == 0


@pytest.mark.parametrize("reply", [PREMIUM_ENDPOINT_REPLY, PREMIUM_FULL_REPLY], ids=["endpoint", "full"])
def test_premium_only_is_never_retried(api, settings, sleeps, reply):
    api.get(AV_URL, json=reply)

    with pytest.raises(PremiumOnlyError) as caught:
        fetch(settings, sleeps)

    assert caught.value.symbol == "IBM"
    assert caught.value.source == "alpha_vantage"
    assert len(api.calls) == 1
    assert sleeps == []


def test_unknown_symbol_is_never_retried(api, settings, sleeps):
    api.get(AV_URL, json=INVALID_SYMBOL_REPLY)

    with pytest.raises(InvalidSymbolError) as caught:
        fetch(settings, sleeps, symbol="ZZZZZZ")

    assert caught.value.symbol == "ZZZZZZ"
    assert isinstance(caught.value, SourceError)
    assert len(api.calls) == 1


@pytest.mark.parametrize("reply", [BAD_KEY_REPLY, DEMO_KEY_REPLY], ids=["invalid", "demo"])
def test_bad_key_stops_the_run_with_a_configuration_error(api, settings, sleeps, reply):
    api.get(AV_URL, json=reply)

    with pytest.raises(ConfigurationError, match="ALPHA_VANTAGE_API_KEY") as caught:
        fetch(settings, sleeps)

    assert not isinstance(caught.value, SourceError)
    assert FAKE_KEY not in str(caught.value)
    assert len(api.calls) == 1


def test_missing_key_fails_before_any_request(api, settings, sleeps):
    no_key = Settings(alpha_vantage_api_key="", alpha_vantage_base_url=AV_URL)

    with pytest.raises(ConfigurationError, match="ALPHA_VANTAGE_API_KEY is not set"):
        fetch(no_key, sleeps)

    assert len(api.calls) == 0


def test_invalid_symbol_input_fails_before_any_request(api, settings, sleeps):
    with pytest.raises(InvalidSymbolInputError):
        fetch(settings, sleeps, symbol="IBM&apikey=x")

    assert len(api.calls) == 0


def test_empty_time_series_means_no_data(api, settings, sleeps):
    api.get(AV_URL, json=EMPTY_REPLY)

    with pytest.raises(NoDataError, match="empty time series"):
        fetch(settings, sleeps)

    assert len(api.calls) == 1


def test_no_rows_in_the_requested_range_means_no_data(api, settings, sleeps):
    api.get(AV_URL, json=IBM_REPLY)

    with pytest.raises(NoDataError) as caught:
        fetch(settings, sleeps, start=date(2013, 3, 2), end=date(2013, 3, 3))  # a weekend

    assert caught.value.reason == ("no rows between 2013-03-02 and 2013-03-03; the reply covers 2013-02-26..2013-03-01")


# --- fetch_daily_prices: broken replies and HTTP failures -------------------------------------


def test_html_page_is_retried_with_growing_backoff_then_unavailable(api, settings, sleeps):
    api.get(AV_URL, body=HTML_PAGE, content_type="text/html")

    with pytest.raises(SourceUnavailableError, match="not JSON"):
        fetch(settings, sleeps)

    assert len(api.calls) == 3
    assert sleeps == [2.0, 4.0]


def test_truncated_json_then_data_succeeds(api, settings, sleeps):
    api.get(
        AV_URL,
        body='{\n    "Meta Data": {\n        "1. Information": "Daily Pri',
        content_type="application/json",
    )
    api.get(AV_URL, json=IBM_REPLY)

    result = fetch(settings, sleeps)

    assert len(result.prices) == 4
    assert sleeps == [2.0]


def test_server_errors_are_retried_then_unavailable(api, settings, sleeps):
    api.get(AV_URL, status=503)

    with pytest.raises(SourceUnavailableError, match="HTTP 503"):
        fetch(settings, sleeps)

    assert len(api.calls) == 3
    assert sleeps == [2.0, 4.0]


def test_one_server_error_then_data_succeeds(api, settings, sleeps):
    api.get(AV_URL, status=500)
    api.get(AV_URL, json=IBM_REPLY)

    assert len(fetch(settings, sleeps).prices) == 4
    assert sleeps == [2.0]


def test_not_found_is_not_retried(api, settings, sleeps):
    api.get(AV_URL, status=404, body="Not Found")

    with pytest.raises(SourceUnavailableError, match="HTTP 404"):
        fetch(settings, sleeps)

    assert len(api.calls) == 1


def test_timeouts_are_retried_and_never_leak_the_key(api, settings, sleeps, caplog):
    # requests puts the whole URL, apikey included, into its exception messages.
    api.get(AV_URL, body=requests.exceptions.ReadTimeout(f"Read timed out: {AV_URL}?symbol=IBM&apikey={FAKE_KEY}"))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SourceUnavailableError) as caught:
        fetch(settings, sleeps)

    assert "ReadTimeout" in str(caught.value)
    assert FAKE_KEY not in str(caught.value)
    assert FAKE_KEY not in repr(caught.value.__cause__)
    assert all(FAKE_KEY not in record.getMessage() for record in caplog.records)
    assert len(api.calls) == 3


@pytest.mark.parametrize(
    "register",
    [
        lambda api: api.get(AV_URL, json=QUOTA_REPLY),
        lambda api: api.get(AV_URL, json=BAD_KEY_REPLY),
        lambda api: api.get(AV_URL, json=BURST_REPLY),
        lambda api: api.get(AV_URL, body="<html>oops</html>"),
        lambda api: api.get(AV_URL, status=502),
        lambda api: api.get(AV_URL, body=requests.exceptions.ConnectionError(f"refused: ?apikey={FAKE_KEY}")),
    ],
    ids=["quota", "bad-key", "throttled", "html", "502", "connection-error"],
)
def test_the_key_never_appears_in_errors_or_logs(api, settings, sleeps, caplog, register):
    register(api)
    caplog.set_level(logging.DEBUG)

    with pytest.raises((SourceError, ConfigurationError)) as caught:
        fetch(settings, sleeps)

    assert FAKE_KEY not in str(caught.value)
    assert FAKE_KEY not in getattr(caught.value, "reason", "")
    assert all(FAKE_KEY not in record.getMessage() for record in caplog.records)


# --- outputsize, rate limiter and quota wiring ------------------------------------------------


def test_premium_asks_for_full_only_when_compact_is_too_short(api, sleeps, tmp_path):
    premium = Settings(alpha_vantage_api_key=FAKE_KEY, alpha_vantage_base_url=AV_URL, alpha_vantage_premium=True)
    api.get(AV_URL, json=IBM_REPLY)

    fetch(premium, sleeps, start=date(2013, 2, 26))
    fetch(premium, sleeps, start=date(2012, 1, 3))

    assert [call.request.params["outputsize"] for call in api.calls] == ["compact", "full"]


def test_free_key_with_old_start_stays_compact_and_says_so(api, settings, sleeps, caplog):
    api.get(AV_URL, json=IBM_REPLY)

    result = fetch(settings, sleeps, start=date(2012, 1, 3))

    assert api.calls[0].request.params["outputsize"] == "compact"
    assert "older rows need a premium key" in caplog.text
    assert result.prices["trade_date"].tolist() == ["2013-02-26", "2013-02-27", "2013-02-28", "2013-03-01"]


def test_every_try_passes_the_rate_limiter_and_counts_against_the_quota(api, settings, sleeps, tmp_path):
    api.get(AV_URL, status=500)
    api.get(AV_URL, json=IBM_REPLY)
    clock = FakeClock()
    limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)
    quota = DailyQuota(tmp_path, daily_limit=25, today=lambda: date(2013, 3, 1))

    fetch(settings, sleeps, rate_limiter=limiter, quota=quota)
    fetch(settings, sleeps, symbol="IBM", rate_limiter=limiter, quota=quota)

    assert len(api.calls) == 3
    assert quota.calls_today() == 3
    assert clock.sleeps == [1.0, 1.0]  # the limiter spaced the 2nd and 3rd HTTP tries


def test_a_retry_that_would_exceed_the_quota_is_not_sent(api, settings, sleeps, tmp_path):
    api.get(AV_URL, status=500)
    quota = DailyQuota(tmp_path, daily_limit=1, today=lambda: date(2013, 3, 1))

    with pytest.raises(QuotaExhaustedError, match="no request sent"):
        fetch(settings, sleeps, quota=quota)

    assert len(api.calls) == 1
