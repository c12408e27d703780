"""The Alpha Vantage client against the mock Alpha Vantage server, over real HTTP on 127.0.0.1.

The server serves real daily prices (AAPL, GOOG, IBM, MSFT from bokeh-sampledata, 2000-2013).
Waits never really happen: the client's sleep and the server's clock are one fake clock, so
a "60 s" throttle wait takes no time and both sides agree on what time it is.
"""

import logging
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import requests

from src.config import ConfigurationError, RedactingFilter, Settings
from src.ingestion.alpha_vantage import (
    InvalidSymbolError,
    PremiumOnlyError,
    QuotaExhaustedError,
    SourceUnavailableError,
    fetch_daily_prices,
    fetch_splits,
)
from src.ingestion.rate_limit import QUOTA_FILE_NAME, DailyQuota, RateLimiter
from src.local_stack.mock_alpha_vantage import start_mock_server
from src.local_stack.synthetic_data import SYNTHETIC_NOTE_FILE
from tests.fixtures.market_data import load_bokeh_prices
from tests.unit.test_rate_limit import FakeClock

pytestmark = pytest.mark.integration

FAKE_KEY = "AVKEY-SECRET-7f3a9c"
SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
LAST_WEEK = (date(2013, 2, 25), date(2013, 3, 1))  # the last five sessions in the sample data


def write_price_csvs(folder: Path) -> Path:
    """Write <SYMBOL>.csv files (date,open,high,low,close,volume) with the real sample prices."""
    folder.mkdir(parents=True, exist_ok=True)
    for symbol in SYMBOLS:
        frame = load_bokeh_prices(symbol).rename(columns={"trade_date": "date"})
        frame[["date", "open", "high", "low", "close", "volume"]].to_csv(folder / f"{symbol}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_price_csvs(tmp_path_factory.mktemp("offline"))


@pytest.fixture
def clock():
    return FakeClock(start=1000.0)


@pytest.fixture
def start_server(data_dir, clock):
    """Start a mock server with the given options; every server is stopped after the test."""
    servers = []

    def start(**options):
        options.setdefault("clock", clock.now)
        server, _thread, base_url = start_mock_server(options.pop("folder", data_dir), **options)
        servers.append(server)
        return server, base_url

    yield start
    for server in servers:
        server.stop()


def make_settings(base_url: str, tmp_path: Path, **changes) -> Settings:
    values = {
        "alpha_vantage_api_key": FAKE_KEY,
        "alpha_vantage_base_url": base_url,
        "state_dir": tmp_path,
        "http_max_tries": 3,
        "http_backoff_seconds": 2.0,
        "http_read_timeout": 5.0,
    }
    values.update(changes)
    return Settings(**values)


def fetch(symbol, settings, clock, dates=LAST_WEEK, **kwargs):
    return fetch_daily_prices(symbol, dates[0], dates[1], settings, sleep=clock.sleep, **kwargs)


def requests_by_symbol(base_url: str) -> dict:
    stats = requests.get(base_url.replace("/query", "/_stats"), timeout=5).json()
    return stats["requests_by_symbol"]


# --- good replies --------------------------------------------------------------------------------


def test_data_reply_is_parsed_exactly(start_server, tmp_path, clock):
    _server, base_url = start_server()

    result = fetch("IBM", make_settings(base_url, tmp_path), clock, dates=(date(2013, 2, 28), date(2013, 3, 1)))

    expected = pd.DataFrame(
        {
            "symbol": ["IBM", "IBM"],
            "trade_date": ["2013-02-28", "2013-03-01"],
            "open": ["202.1800", "200.6500"],
            "high": ["203.1230", "202.9400"],
            "low": ["200.7900", "199.3600"],
            "close": ["200.8300", "202.9100"],
            "volume": ["4689200", "3308300"],
            "source": ["alpha_vantage", "alpha_vantage"],
        }
    )
    pd.testing.assert_frame_equal(result.prices, expected)
    assert result.raw_payload["Meta Data"]["2. Symbol"] == "IBM"
    assert result.raw_payload["Meta Data"]["4. Output Size"] == "Compact"
    assert requests_by_symbol(base_url) == {"IBM": 1}


def test_compact_returns_the_latest_100_sessions(start_server, tmp_path, clock):
    _server, base_url = start_server()
    real = load_bokeh_prices("MSFT")

    first_compact = date.fromisoformat(real["trade_date"].iloc[-100])

    result = fetch("MSFT", make_settings(base_url, tmp_path), clock, dates=(first_compact, date(2013, 3, 1)))

    assert len(result.prices) == 100
    assert result.prices["trade_date"].tolist() == real["trade_date"].iloc[-100:].tolist()
    assert result.prices["close"].tolist() == [f"{close:.4f}" for close in real["close"].iloc[-100:]]


def test_a_range_older_than_the_compact_reply_is_refused_naming_the_missing_sessions(start_server, tmp_path, clock):
    """Issue 19 case 1: loading only the latest 100 sessions of a longer range was reported as success."""
    _server, base_url = start_server()
    real = load_bokeh_prices("MSFT")

    with pytest.raises(PremiumOnlyError) as error:
        fetch("MSFT", make_settings(base_url, tmp_path), clock, dates=(date(2012, 1, 3), date(2013, 3, 1)))

    assert error.value.reason == (
        f"the compact reply (latest 100 sessions) starts at {real['trade_date'].iloc[-100]}; "
        f"2012-01-03..{real['trade_date'].iloc[-101]} needs ALPHA_VANTAGE_PREMIUM=true "
        "or another source in DATA_SOURCES"
    )


def test_premium_key_gets_full_history(start_server, tmp_path, clock):
    _server, base_url = start_server(premium=True)
    settings = make_settings(base_url, tmp_path, alpha_vantage_premium=True)

    result = fetch("AAPL", settings, clock, dates=(date(2005, 1, 3), date(2005, 1, 7)))

    assert result.request_params["outputsize"] == "full"
    assert result.prices["trade_date"].tolist() == [
        "2005-01-03",
        "2005-01-04",
        "2005-01-05",
        "2005-01-06",
        "2005-01-07",
    ]


def test_synthetic_folder_is_labelled_synthetic(start_server, tmp_path, clock):
    folder = write_price_csvs(tmp_path / "synthetic")
    (folder / SYNTHETIC_NOTE_FILE).write_text("synthetic demo data\n")
    _server, base_url = start_server(folder=folder)

    result = fetch("GOOG", make_settings(base_url, tmp_path), clock)

    assert set(result.prices["source"]) == {"synthetic"}
    assert result.source == "alpha_vantage"


# --- error replies ---------------------------------------------------------------------------


def test_full_without_premium_on_the_server_is_premium_only(start_server, tmp_path, clock):
    _server, base_url = start_server(premium=False)
    settings = make_settings(base_url, tmp_path, alpha_vantage_premium=True)

    with pytest.raises(PremiumOnlyError, match="premium feature"):
        fetch("AAPL", settings, clock, dates=(date(2005, 1, 3), date(2005, 1, 7)))

    assert requests_by_symbol(base_url) == {"AAPL": 1}


def test_unknown_symbol(start_server, tmp_path, clock):
    _server, base_url = start_server()

    with pytest.raises(InvalidSymbolError, match="Invalid API call"):
        fetch("ZZZZ", make_settings(base_url, tmp_path), clock)

    assert requests_by_symbol(base_url) == {"ZZZZ": 1}


def test_wrong_key_stops_the_run(start_server, tmp_path, clock):
    _server, base_url = start_server(api_key="the-right-key")

    with pytest.raises(ConfigurationError, match="ALPHA_VANTAGE_API_KEY") as caught:
        fetch("IBM", make_settings(base_url, tmp_path), clock)

    assert FAKE_KEY not in str(caught.value)
    assert requests_by_symbol(base_url) == {"IBM": 1}


@pytest.mark.parametrize(
    ("mode", "error", "requests_sent", "waits"),
    [
        ("throttle", SourceUnavailableError, 3, [60.0, 60.0]),
        ("quota", QuotaExhaustedError, 1, []),
        ("premium", PremiumOnlyError, 1, []),
        ("error500", SourceUnavailableError, 3, [2.0, 4.0]),
        ("html", SourceUnavailableError, 3, [2.0, 4.0]),
        ("truncated", SourceUnavailableError, 3, [2.0, 4.0]),
    ],
)
def test_failure_modes(start_server, tmp_path, clock, mode, error, requests_sent, waits):
    _server, base_url = start_server()
    switched = requests.post(base_url.replace("/query", f"/_control?mode={mode}"), timeout=5)
    assert switched.json() == {"mode": mode}

    with pytest.raises(error) as caught:
        fetch("IBM", make_settings(base_url, tmp_path), clock)

    assert FAKE_KEY not in str(caught.value)
    assert requests_by_symbol(base_url) == {"IBM": requests_sent}
    assert clock.sleeps == waits


def test_timeouts_are_retried_then_unavailable(start_server, tmp_path, clock):
    _server, base_url = start_server(mode="timeout", timeout_seconds=3.0)
    settings = make_settings(base_url, tmp_path, http_read_timeout=0.2)

    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="ReadTimeout") as caught:
        fetch("IBM", settings, clock)

    assert time.monotonic() - started < 2.5  # three 0.2 s read timeouts, not three 3 s waits
    assert FAKE_KEY not in str(caught.value)
    assert requests_by_symbol(base_url) == {"IBM": 3}


def test_server_recovers_after_the_mode_is_switched_back(start_server, tmp_path, clock):
    server, base_url = start_server(mode="error500")
    settings = make_settings(base_url, tmp_path)
    with pytest.raises(SourceUnavailableError):
        fetch("IBM", settings, clock)

    server.set_mode("normal")

    assert len(fetch("IBM", settings, clock).prices) == 5


# --- quota -----------------------------------------------------------------------------------------


def test_quota_of_3_lets_exactly_3_requests_through(start_server, tmp_path, clock):
    _server, base_url = start_server()
    settings = make_settings(base_url, tmp_path)
    today = {"day": date(2013, 3, 1)}
    quota = DailyQuota(tmp_path, daily_limit=3, today=lambda: today["day"])

    outcomes = {}
    for symbol in ("IBM", "MSFT", "AAPL", "GOOG", "ORCL"):
        try:
            outcomes[symbol] = len(fetch(symbol, settings, clock, quota=quota).prices)
        except QuotaExhaustedError:
            outcomes[symbol] = "quota"

    assert outcomes == {"IBM": 5, "MSFT": 5, "AAPL": 5, "GOOG": "quota", "ORCL": "quota"}
    assert requests_by_symbol(base_url) == {"IBM": 1, "MSFT": 1, "AAPL": 1}
    # A second run the same day knows nothing is left; the next day starts over.
    assert DailyQuota(tmp_path, daily_limit=3, today=lambda: today["day"]).remaining() == 0
    today["day"] = date(2013, 3, 2)
    assert len(fetch("GOOG", settings, clock, quota=quota).prices) == 5
    assert quota.remaining() == 2


def test_server_quota_reply_stops_further_calls(start_server, tmp_path, clock):
    _server, base_url = start_server(daily_limit=2)
    settings = make_settings(base_url, tmp_path)
    quota = DailyQuota(tmp_path, daily_limit=25, today=lambda: date(2013, 3, 1))

    fetch("IBM", settings, clock, quota=quota)
    fetch("MSFT", settings, clock, quota=quota)
    with pytest.raises(QuotaExhaustedError, match="2 requests per day") as caught:
        fetch("AAPL", settings, clock, quota=quota)
    with pytest.raises(QuotaExhaustedError, match="no request sent"):
        fetch("GOOG", settings, clock, quota=quota)

    assert FAKE_KEY not in str(caught.value)  # the real quota reply echoes the key
    assert requests_by_symbol(base_url) == {"IBM": 1, "MSFT": 1, "AAPL": 1}
    assert (tmp_path / QUOTA_FILE_NAME).read_text() == '{"day": "2013-03-01", "calls": 3, "exhausted": true}'


# --- rate limits -------------------------------------------------------------------------------------


def test_client_rate_limiter_keeps_an_enforcing_server_happy(start_server, tmp_path, clock):
    server, base_url = start_server(calls_per_minute=5, min_interval_seconds=1.0)
    limiter = RateLimiter(calls_per_minute=5, min_interval_seconds=1.0, clock=clock.now, sleep=clock.sleep)
    settings = make_settings(base_url, tmp_path)

    for symbol in SYMBOLS * 3:  # 12 calls
        assert len(fetch(symbol, settings, clock, rate_limiter=limiter).prices) == 5

    assert server.stats()["total_requests"] == 12  # not one throttled retry
    assert clock.now() == 1000.0 + 2 * 60 + 1  # calls at 0..4, 60..64, 120, 121 s


def test_without_a_limiter_the_server_throttles_and_the_client_waits(start_server, tmp_path, clock):
    server, base_url = start_server(calls_per_minute=5, min_interval_seconds=1.0)
    settings = make_settings(base_url, tmp_path)

    for symbol in ("IBM", "MSFT", "AAPL"):
        assert len(fetch(symbol, settings, clock).prices) == 5

    # Each call after the first came too soon (< 1 s), got the burst reply, waited 60 s, got through.
    assert clock.sleeps == [60.0, 60.0]
    assert requests_by_symbol(base_url) == {"IBM": 1, "MSFT": 2, "AAPL": 2}
    assert server.stats()["accepted_calls_today"] == 3


def test_server_enforces_calls_per_minute(start_server, clock):
    _server, base_url = start_server(calls_per_minute=2)
    params = {"function": "TIME_SERIES_DAILY", "symbol": "IBM", "apikey": FAKE_KEY}

    def information() -> str | None:
        return requests.get(base_url, params=params, timeout=5).json().get("Information")

    assert information() is None  # at 1000 s
    clock.time = 1030.0
    assert information() is None
    clock.time = 1059.5
    assert "1 request per second" in information()  # a 3rd call within 60 s: refused
    clock.time = 1060.0
    assert information() is None  # the first call is now 60 s old


# --- control endpoints, logs and the command line -----------------------------------------------------


def test_control_and_stats_endpoints(start_server, tmp_path, clock):
    _server, base_url = start_server()
    control = base_url.replace("/query", "/_control")
    fetch("IBM", make_settings(base_url, tmp_path), clock)

    bad = requests.get(control, params={"mode": "chaos"}, timeout=5)
    assert bad.status_code == 400
    assert requests.get(control, params={"mode": "html"}, timeout=5).json() == {"mode": "html"}
    stats = requests.get(base_url.replace("/query", "/_stats"), timeout=5).json()
    assert stats == {
        "mode": "html",
        "total_requests": 1,
        "requests_by_symbol": {"IBM": 1},
        "requests_by_function": {"TIME_SERIES_DAILY": 1},
        "accepted_calls_today": 1,
    }
    requests.post(control, params={"reset": "1", "mode": "normal"}, timeout=5)
    assert requests_by_symbol(base_url) == {}


def test_the_key_stays_out_of_every_log_line(start_server, tmp_path, clock, caplog):
    _server, base_url = start_server(mode="quota")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(QuotaExhaustedError):
        fetch("IBM", make_settings(base_url, tmp_path), clock)

    ours = [record for record in caplog.records if record.name.startswith("src.")]
    assert ours
    assert all(FAKE_KEY not in record.getMessage() for record in ours)


def test_redacting_filter_cleans_urllib3_debug_lines(start_server, tmp_path, clock, caplog):
    # urllib3 logs every request line, apikey included, at DEBUG. configure_logging() puts a
    # RedactingFilter on every handler; here it sits on pytest's capture handler.
    _server, base_url = start_server()
    caplog.handler.addFilter(RedactingFilter([FAKE_KEY]))
    caplog.set_level(logging.DEBUG)

    fetch("IBM", make_settings(base_url, tmp_path), clock)

    assert any(record.name == "urllib3.connectionpool" for record in caplog.records)
    assert FAKE_KEY not in caplog.text


def test_command_line_serves_until_stopped(data_dir, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "src.local_stack.mock_alpha_vantage",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base_url = f"http://127.0.0.1:{port}/query"
        deadline = time.monotonic() + 60  # importing pandas can be slow on a busy machine
        while True:
            try:
                reply = requests.get(
                    base_url,
                    params={"function": "TIME_SERIES_DAILY", "symbol": "IBM", "apikey": "k"},
                    timeout=2,
                )
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert reply.json()["Meta Data"]["3. Last Refreshed"] == "2013-03-01"
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- SPLITS: the split events, in the real wire format ---------------------------------------------
# AAPL's two 2-for-1 splits in 2000-2013 (2000-06-21 and 2005-02-28, public records; the real
# as-traded sample prices halve on those days) are written beside AAPL.csv; IBM gets no file.


@pytest.fixture
def split_dir(tmp_path):
    folder = write_price_csvs(tmp_path / "with-splits")
    (folder / "AAPL.splits.csv").write_text("effective_date,split_factor\n2000-06-21,2\n2005-02-28,2\n")
    return folder


def test_splits_data_reply_in_the_real_wire_format(start_server, split_dir, tmp_path, clock):
    _server, base_url = start_server(folder=split_dir)
    reply = requests.get(base_url, params={"function": "SPLITS", "symbol": "AAPL", "apikey": FAKE_KEY}, timeout=5)
    assert reply.json() == {
        "symbol": "AAPL",
        "data": [
            {"effective_date": "2005-02-28", "split_factor": "2.0000"},
            {"effective_date": "2000-06-21", "split_factor": "2.0000"},
        ],
    }

    quota = DailyQuota(tmp_path, daily_limit=25)
    splits = fetch_splits("AAPL", make_settings(base_url, tmp_path), quota=quota, sleep=clock.sleep)

    assert splits.to_dict("records") == [
        {"symbol": "AAPL", "effective_date": "2000-06-21", "split_factor": 2.0, "source": "alpha_vantage"},
        {"symbol": "AAPL", "effective_date": "2005-02-28", "split_factor": 2.0, "source": "alpha_vantage"},
    ]
    assert quota.calls_today() == 1  # one SPLITS call counted in the daily quota


def test_splits_empty_data_means_no_splits(start_server, split_dir, tmp_path, clock):
    _server, base_url = start_server(folder=split_dir)
    splits = fetch_splits("IBM", make_settings(base_url, tmp_path), sleep=clock.sleep)
    assert splits.empty
    assert list(splits.columns) == ["symbol", "effective_date", "split_factor", "source"]


@pytest.mark.parametrize(
    ("mode", "error", "requests_sent", "waits"),
    [
        ("throttle", SourceUnavailableError, 3, [60.0, 60.0]),
        ("quota", QuotaExhaustedError, 1, []),
        ("error500", SourceUnavailableError, 3, [2.0, 4.0]),
        ("html", SourceUnavailableError, 3, [2.0, 4.0]),
    ],
)
def test_splits_throttle_and_error_replies(start_server, split_dir, tmp_path, clock, mode, error, requests_sent, waits):
    _server, base_url = start_server(folder=split_dir, mode=mode)
    with pytest.raises(error) as caught:
        fetch_splits("AAPL", make_settings(base_url, tmp_path), sleep=clock.sleep)
    assert FAKE_KEY not in str(caught.value)
    assert requests_by_symbol(base_url) == {"AAPL": requests_sent}
    assert clock.sleeps == waits


def test_splits_of_an_unknown_symbol_is_invalid(start_server, split_dir, tmp_path, clock):
    _server, base_url = start_server(folder=split_dir)
    with pytest.raises(InvalidSymbolError):
        fetch_splits("ORCL", make_settings(base_url, tmp_path), sleep=clock.sleep)
