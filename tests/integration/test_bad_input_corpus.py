"""The bad-input corpus (tests/fixtures/bad_inputs.py): every case ends in a clear error or in
quarantined rows with a reason, the valid rows of the same batch still load, and the run goes
on with the other symbols.

API replies are served over real HTTP by a tiny local stand-in (127.0.0.1) that answers each
symbol with a reply of our choosing: BAD gets the case's reply, IBM a good one (real prices).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from src.config import ConfigurationError, load_settings
from src.ingestion.sources import fetch_batch
from src.ingestion.symbols import InvalidSymbolInputError, normalize_symbols
from src.steps import run_pipeline
from src.transformation.cleaner import add_history_flags
from src.transformation.transform import transform_prices
from tests.fixtures.bad_inputs import (
    API_REPLY_CASES,
    META,
    REPLY_CAP_BYTES,
    ROW_CASES,
    RUN_DATE,
    SYMBOL_CASES,
    goog_week,
)
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

WEEK = (date(2013, 2, 25), date(2013, 3, 1))


def daily_reply(symbol: str, prices: pd.DataFrame) -> dict:
    """An Alpha Vantage TIME_SERIES_DAILY reply (strings, newest first) for real rows."""
    series = {}
    for row in prices.sort_values("trade_date", ascending=False).itertuples():
        series[row.trade_date] = {
            "1. open": f"{row.open:.4f}",
            "2. high": f"{row.high:.4f}",
            "3. low": f"{row.low:.4f}",
            "4. close": f"{row.close:.4f}",
            "5. volume": str(row.volume),
        }
    return {"Meta Data": {**META, "2. Symbol": symbol}, "Time Series (Daily)": series}


def ibm_week() -> pd.DataFrame:
    prices = load_bokeh_prices("IBM")
    return prices[prices["trade_date"].between(WEEK[0].isoformat(), WEEK[1].isoformat())]


class CannedReplies(ThreadingHTTPServer):
    """Answers /query with replies[symbol] = (status, content type, body); counts calls per symbol."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.replies: dict[str, tuple[int, str, str]] = {}
        self.calls: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/query"


class _CannedHandler(BaseHTTPRequestHandler):
    server: CannedReplies

    def do_GET(self) -> None:  # noqa: N802 - the name http.server expects
        symbol = parse_qs(urlsplit(self.path).query).get("symbol", [""])[0]
        self.server.calls[symbol] = self.server.calls.get(symbol, 0) + 1
        status, content_type, body = self.server.replies.get(symbol, (200, "application/json", "{}"))
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def api():
    server = CannedReplies()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.replies["IBM"] = (200, "application/json", json.dumps(daily_reply("IBM", ibm_week())))
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def settings(api, tmp_path):
    return load_settings(
        env_file=tmp_path / "none.env",
        overrides={
            "ALPHA_VANTAGE_API_KEY": "corpus-test-key",  # pragma: allowlist secret - a dummy for the local stand-in
            "ALPHA_VANTAGE_BASE_URL": api.url,
            "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0",
            "ALPHA_VANTAGE_CALLS_PER_MINUTE": "1000",
            "HTTP_MAX_TRIES": "2",
            "HTTP_BACKOFF_SECONDS": "0",
            "HTTP_READ_TIMEOUT": "5",
            "HTTP_MAX_RESPONSE_BYTES": str(REPLY_CAP_BYTES),
            "DATA_SOURCES": "alpha_vantage",
            "STATE_DIR": str(tmp_path / "state"),
            "SQLITE_PATH": str(tmp_path / "warehouse.db"),
            "S3_BUCKET": "",
            "SLACK_WEBHOOK_URL": "",
        },
    )


def no_sleep(seconds: float) -> None:
    """Retry and throttle waits take no time in these tests."""


# --- API replies ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", API_REPLY_CASES, ids=[case.name for case in API_REPLY_CASES])
def test_each_bad_reply_fails_only_its_symbol_with_a_clear_reason(case, api, settings):
    api.replies["BAD"] = (case.status, case.content_type, case.body)

    if case.raises:
        # A rejected key would fail every symbol: the batch stops with what to fix.
        with pytest.raises(ConfigurationError, match="Alpha Vantage rejected ALPHA_VANTAGE_API_KEY"):
            fetch_batch(["BAD", "IBM"], *WEEK, settings, sleep=no_sleep)
        assert "IBM" not in api.calls  # stopped before spending another call
        return

    results, failures = fetch_batch(["BAD", "IBM"], *WEEK, settings, sleep=no_sleep)

    if case.next_symbol_reason:
        # The quota is shared: the next symbol is not even tried, and says why.
        assert failures["IBM"] == f"every source failed (alpha_vantage: {case.next_symbol_reason})"
        assert "IBM" not in api.calls
        assert results == []
        return
    assert list(failures) == ["BAD"]
    assert case.reason in failures["BAD"]
    assert [result.symbol for result in results] == ["IBM"]
    assert results[0].prices["trade_date"].tolist() == ibm_week()["trade_date"].tolist()


def test_values_like_n_a_and_dash_and_a_bad_date_key_reach_quarantine_and_the_rest_loads(api, settings):
    """A data reply with broken values: the broken rows are quarantined, the others are loaded."""
    reply = daily_reply("BAD", ibm_week())
    series = reply["Time Series (Daily)"]
    series["2013-02-26"]["4. close"] = "N/A"
    series["2013-02-27"]["2. high"] = "-"
    series["2013-02-28"]["5. volume"] = ""
    series["28/02/2013"] = dict(series["2013-03-01"])  # a date key in the wrong format
    api.replies["BAD"] = (200, "application/json", json.dumps(reply))
    api.replies["HTML"] = (200, "text/html", "<html>oops</html>")

    summary = run_pipeline(["HTML", "BAD", "IBM"], *WEEK, settings, show_progress=False)

    assert summary.status == "partial"
    assert sorted(summary.loaded) == ["BAD", "IBM"]
    assert list(summary.failed) == ["HTML"]
    conn = sqlite3.connect(settings.sqlite_path)
    assert conn.execute(
        "SELECT trade_date, reason FROM quarantine_prices WHERE symbol = 'BAD' ORDER BY trade_date"
    ).fetchall() == [
        ("2013-02-26", "non_numeric:close"),
        ("2013-02-27", "non_numeric:high"),
        ("2013-02-28", "missing_value:volume"),
        ("28/02/2013", "invalid_date"),
    ]
    assert conn.execute("SELECT symbol, COUNT(*) FROM fact_daily_prices GROUP BY symbol").fetchall() == [
        ("BAD", 2),
        ("IBM", 5),
    ]


# --- Rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ROW_CASES, ids=[case.name for case in ROW_CASES])
def test_each_bad_row_is_quarantined_with_its_reason_and_the_good_rows_are_kept(case):
    raw = case.damage(goog_week())

    clean, quarantine = transform_prices(raw, run_date=RUN_DATE)

    assert list(zip(quarantine["trade_date"], quarantine["reason"], strict=True)) == case.quarantined
    assert len(clean) == case.clean_rows
    assert len(clean) + len(quarantine) == len(raw)  # nothing dropped silently
    stored = add_history_flags(clean, max_gap_sessions=10)  # the flags the load adds
    flags = dict(zip(stored["trade_date"], stored["quality_flags"], strict=True))
    for day, expected in case.flags.items():
        assert flags[day] == expected


def test_the_corpus_has_at_least_30_cases():
    assert len(API_REPLY_CASES) + len(ROW_CASES) + len(SYMBOL_CASES) >= 30


# --- Symbols ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SYMBOL_CASES, ids=[case.name for case in SYMBOL_CASES])
def test_each_symbol_input_is_normalised_or_refused_with_the_bad_input_named(case):
    if case.error is None:
        assert normalize_symbols(case.raw) == case.clean
        return
    with pytest.raises(InvalidSymbolInputError) as caught:
        normalize_symbols(case.raw)
    assert str(caught.value).startswith(case.error)
