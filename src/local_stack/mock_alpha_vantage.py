"""A small mock of the Alpha Vantage API (TIME_SERIES_DAILY and SPLITS, JSON) for tests and the local stack.

It serves `<SYMBOL>.csv` files (columns date,open,high,low,close,volume) from a folder in the
exact wire format of https://www.alphavantage.co/query, and `function=SPLITS` from the optional
`<SYMBOL>.splits.csv` beside them (columns effective_date,split_factor; no file: `"data": []`).
Every mode and limit below applies to SPLITS calls as well. It reproduces the real API's error
replies, which come with HTTP 200 like the real ones:

- an unknown symbol (no CSV file) gets the real "Invalid API call" reply;
- a missing or wrong apikey gets the real "apikey is invalid or missing" reply
  (by default any non-empty key is accepted; pass `api_key` to require one);
- outputsize=compact returns the latest 100 rows; outputsize=full needs `premium=True`,
  otherwise it gets the real "premium feature" reply;
- optional limits like the real service: `calls_per_minute` and `min_interval_seconds`
  (over them: the burst "1 request per second" reply) and `daily_limit` (the "requests per
  day" reply). A fake `clock` / `today` can be injected so tests need not wait.

A failure mode can be switched on for demos and tests, at start or at run time:
"normal", "throttle", "quota", "premium", "error500", "html", "truncated", "timeout"
(the reply is held back `timeout_seconds`, longer than a short client read timeout),
"trickle" (the headers at once, then one byte of the body every TRICKLE_SECONDS: each read
is quick, the whole reply never ends), "wrong_symbol" (a good data reply for another symbol of
the folder), "redirect_loop" (HTTP 302 back to the same URL, forever) and "echo_key" (a good
data reply whose "Meta Data" repeats the apikey, as some proxies and error pages do).

Control endpoints:
    GET/POST /_control?mode=error500   switch the mode (add reset=1 to clear counters)
    GET /_stats                        JSON: requests per symbol and per function, mode, calls counted today

When the folder holds the `SYNTHETIC.txt` note written by `src.local_stack.synthetic_data`,
every reply is marked synthetic in "Meta Data", and the client labels those rows "synthetic".

The server binds 127.0.0.1 only.

Usage:
    python -m src.local_stack.mock_alpha_vantage --port 8081 --data-dir data/offline [--mode throttle]
    then point the pipeline at it: ALPHA_VANTAGE_BASE_URL=http://127.0.0.1:8081/query

In tests:
    server, thread, base_url = start_mock_server(tmp_path, daily_limit=3)
    ...
    server.stop()
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from src.config import redact
from src.ingestion.alpha_vantage import SYNTHETIC_MARKER_KEY
from src.ingestion.symbols import InvalidSymbolInputError, normalize_symbol
from src.local_stack.synthetic_data import SYNTHETIC_NOTE_FILE
from src.market_calendar import new_york_today

logger = logging.getLogger(__name__)

MODES = (
    "normal",
    "throttle",
    "quota",
    "premium",
    "error500",
    "html",
    "truncated",
    "timeout",
    "trickle",
    "wrong_symbol",
    "redirect_loop",
    "echo_key",
)
COMPACT_ROWS = 100
# "timeout" mode never holds a reply longer than this, so a forgotten server cannot hang a run.
MAX_TIMEOUT_SECONDS = 120.0
# "trickle" mode sends one byte of the body this often (each read is quick, the reply is endless).
TRICKLE_SECONDS = 2.0

# The real service's replies, word for word.
BURST_MESSAGE = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests more "
    "sparingly (1 request per second). You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per day) and "
    "instantly remove all daily rate limits."
)
QUOTA_MESSAGE = (
    "We have detected your API key as {key} and our standard API rate limit is {limit} requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
    "remove all daily rate limits."
)
PREMIUM_ENDPOINT_MESSAGE = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the "
    "premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"
)
PREMIUM_FULL_MESSAGE = (
    "Thank you for using Alpha Vantage! The **outputsize=full** parameter value is a premium feature for "
    "the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly unlock all premium features"
)
INVALID_CALL_MESSAGE = (
    "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."
)
BAD_KEY_MESSAGE = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)
HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><p>The server is temporarily unavailable.</p></body></html>"
)


def read_price_csv(path: Path) -> list[dict]:
    """Read a `<SYMBOL>.csv` file into rows {date, open, high, low, close, volume}, newest first.

    Raises:
        ValueError: a required column is missing.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"date", "open", "high", "low", "close", "volume"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    return sorted(rows, key=lambda row: row["date"], reverse=True)


def _price_text(value: str) -> str:
    """Format a price the way Alpha Vantage does ("187.1500"); non-numbers pass through unchanged."""
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return value


def build_splits_reply(symbol: str, path: Path) -> dict:
    """The SPLITS reply for a symbol, in the real wire format, from a splits CSV (effective_date,split_factor).

    Example: {"symbol": "IBM", "data": [{"effective_date": "1999-05-27", "split_factor": "2.0000"}]};
    a symbol that never split (no file) gets "data": [].
    """
    events = []
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                events.append(
                    {
                        "effective_date": row["effective_date"].strip(),
                        "split_factor": f"{float(row['split_factor']):.4f}",
                    }
                )
    # The real reply lists the newest split first.
    events.sort(key=lambda event: event["effective_date"], reverse=True)
    return {"symbol": symbol, "data": events}


def build_daily_reply(symbol: str, rows: list[dict], outputsize: str, synthetic: bool = False) -> dict:
    """Build a TIME_SERIES_DAILY JSON reply from CSV rows (newest first), as the real API shapes it.

    Args:
        symbol: the symbol, e.g. "IBM".
        rows: rows from `read_price_csv`, newest first.
        outputsize: "compact" (latest 100 rows) or "full" (all rows).
        synthetic: add the synthetic-data marker to "Meta Data".

    Returns:
        {"Meta Data": {...}, "Time Series (Daily)": {"2024-01-02": {"1. open": "187.1500", ...}, ...}}
    """
    chosen = rows[:COMPACT_ROWS] if outputsize == "compact" else rows
    meta = {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": symbol,
        "3. Last Refreshed": chosen[0]["date"] if chosen else "",
        "4. Output Size": "Compact" if outputsize == "compact" else "Full size",
        "5. Time Zone": "US/Eastern",
    }
    if synthetic:
        meta[SYNTHETIC_MARKER_KEY] = "Yes: generated demo data from the local mock server, not market prices"
    series = {
        row["date"]: {
            "1. open": _price_text(row["open"]),
            "2. high": _price_text(row["high"]),
            "3. low": _price_text(row["low"]),
            "4. close": _price_text(row["close"]),
            "5. volume": row["volume"],
        }
        for row in chosen
    }
    return {"Meta Data": meta, "Time Series (Daily)": series}


class MockAlphaVantageServer(ThreadingHTTPServer):
    """The mock server and its state (mode, limits, counters). Build it with `start_mock_server`.

    Args:
        data_dir: folder with `<SYMBOL>.csv` files.
        port: TCP port on 127.0.0.1 (0 = any free port).
        mode: one of MODES.
        api_key: the only key accepted; None accepts any non-empty key.
        premium: allow outputsize=full.
        calls_per_minute: enforce at most this many calls in any 60 s window (None = no limit).
        min_interval_seconds: enforce this least time between calls (None = no limit).
        daily_limit: enforce at most this many calls per day (None = no limit).
        timeout_seconds: how long "timeout" mode holds a reply (at most MAX_TIMEOUT_SECONDS).
        clock: time in seconds for the rate limits (tests pass a fake clock).
        today: the current day for the daily limit (US/Eastern by default).
    """

    daemon_threads = True  # a held-back "timeout" reply must not block shutdown

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        mode: str = "normal",
        api_key: str | None = None,
        premium: bool = False,
        calls_per_minute: int | None = None,
        min_interval_seconds: float | None = None,
        daily_limit: int | None = None,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = new_york_today,
    ):
        super().__init__(("127.0.0.1", port), _MockHandler)
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.premium = premium
        self.calls_per_minute = calls_per_minute
        self.min_interval_seconds = min_interval_seconds
        self.daily_limit = daily_limit
        self.timeout_seconds = min(timeout_seconds, MAX_TIMEOUT_SECONDS)
        self.clock = clock
        self.today = today
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.mode = "normal"
        self.set_mode(mode)
        self.reset_counters()

    @property
    def base_url(self) -> str:
        """The URL to use as ALPHA_VANTAGE_BASE_URL, e.g. http://127.0.0.1:8081/query."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/query"

    def set_mode(self, mode: str) -> None:
        """Switch the failure mode (one of MODES)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        with self.lock:
            self.mode = mode
        logger.info("mock alpha vantage: mode is now %s", mode)

    def reset_counters(self) -> None:
        """Forget all counted requests and calls (stats, rate window, daily count)."""
        with self.lock:
            self.requests_by_symbol: Counter[str] = Counter()
            self.requests_by_function: Counter[str] = Counter()
            self.accepted_call_times: deque[float] = deque()
            self.accepted_calls_by_day: Counter[str] = Counter()

    def stats(self) -> dict:
        """Return the counters as a JSON-ready dict (what GET /_stats answers)."""
        with self.lock:
            return {
                "mode": self.mode,
                "total_requests": sum(self.requests_by_symbol.values()),
                "requests_by_symbol": dict(self.requests_by_symbol),
                "requests_by_function": dict(self.requests_by_function),
                "accepted_calls_today": self.accepted_calls_by_day[self.today().isoformat()],
            }

    def admit_call(self) -> str | None:
        """Apply the daily and per-minute limits to one call.

        Returns:
            None when the call is admitted (and counted), else "quota" or "throttle".
            Refused calls are not counted, so a client that waits gets through.
        """
        with self.lock:
            day = self.today().isoformat()
            if self.daily_limit is not None and self.accepted_calls_by_day[day] >= self.daily_limit:
                return "quota"
            now = self.clock()
            # A call at time t counts in the window [t, t + 60 s).
            while self.accepted_call_times and self.accepted_call_times[0] <= now - 60.0:
                self.accepted_call_times.popleft()
            if self.calls_per_minute is not None and len(self.accepted_call_times) >= self.calls_per_minute:
                return "throttle"
            if (
                self.min_interval_seconds is not None
                and self.accepted_call_times
                and now - self.accepted_call_times[-1] < self.min_interval_seconds
            ):
                return "throttle"
            self.accepted_call_times.append(now)
            self.accepted_calls_by_day[day] += 1
            return None

    def stop(self) -> None:
        """Stop serving, release held-back replies and close the socket."""
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _MockHandler(BaseHTTPRequestHandler):
    """Answers one HTTP request; all state lives on the server object."""

    server: MockAlphaVantageServer

    def do_GET(self) -> None:  # noqa: N802 - the name http.server expects
        url = urlsplit(self.path)
        params = {name: values[-1] for name, values in parse_qs(url.query).items()}
        if url.path == "/_control":
            self._control(params)
        elif url.path == "/_stats":
            self._send_json(self.server.stats())
        elif url.path == "/query":
            self._query(params)
        else:
            self._send_json({"error": f"no such path {url.path}"}, status=HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/_control":
            self._send_json({"error": "POST only on /_control"}, status=HTTPStatus.NOT_FOUND)
            return
        self._control({name: values[-1] for name, values in parse_qs(url.query).items()})

    def _control(self, params: dict) -> None:
        if params.get("reset"):
            self.server.reset_counters()
        if "mode" in params:
            try:
                self.server.set_mode(params["mode"])
            except ValueError as exc:
                self._send_json({"error": str(exc)}, status=HTTPStatus.BAD_REQUEST)
                return
        self._send_json({"mode": self.server.mode})

    def _query(self, params: dict) -> None:
        server = self.server
        raw_symbol = params.get("symbol", "")
        with server.lock:
            server.requests_by_symbol[raw_symbol.upper()] += 1
            server.requests_by_function[params.get("function", "")] += 1
            mode = server.mode

        api_key = params.get("apikey", "")
        if not api_key or (server.api_key is not None and api_key != server.api_key):
            self._send_json({"Error Message": BAD_KEY_MESSAGE})
            return

        if mode == "throttle":
            self._send_json({"Information": BURST_MESSAGE})
            return
        if mode == "quota":
            self._send_json({"Information": QUOTA_MESSAGE.format(key=api_key, limit=server.daily_limit or 25)})
            return
        if mode == "premium":
            self._send_json({"Information": PREMIUM_ENDPOINT_MESSAGE})
            return
        if mode == "error500":
            self._send_text("Internal Server Error", "text/plain", status=HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        if mode == "html":
            self._send_text(HTML_PAGE, "text/html; charset=utf-8")
            return
        if mode == "redirect_loop":
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "trickle":
            self._trickle()
            return
        if mode == "timeout":
            # Hold the reply back (ends early when the server stops), then answer normally:
            # by then a client with a shorter read timeout has given up.
            server.stopping.wait(server.timeout_seconds)

        refused = server.admit_call()
        if refused == "quota":
            self._send_json({"Information": QUOTA_MESSAGE.format(key=api_key, limit=server.daily_limit)})
            return
        if refused == "throttle":
            self._send_json({"Information": BURST_MESSAGE})
            return

        reply = self._splits_reply(params) if params.get("function") == "SPLITS" else self._daily_reply(params)
        if mode == "wrong_symbol":
            reply = self._reply_for_another_symbol(params)
        if mode == "echo_key" and "Meta Data" in reply:
            reply["Meta Data"]["7. Request"] = f"symbol={params.get('symbol', '')} key {api_key}"
        if mode == "truncated":
            body = json.dumps(reply, indent=4)
            self._send_text(body[: len(body) // 2], "application/json")
            return
        self._send_json(reply)

    def _daily_reply(self, params: dict) -> dict:
        """Build the reply for an admitted TIME_SERIES_DAILY call."""
        server = self.server
        if params.get("function") != "TIME_SERIES_DAILY" or params.get("datatype", "json") != "json":
            return {"Error Message": INVALID_CALL_MESSAGE}
        outputsize = params.get("outputsize", "compact")
        if outputsize not in ("compact", "full"):
            return {"Error Message": INVALID_CALL_MESSAGE}
        if outputsize == "full" and not server.premium:
            return {"Information": PREMIUM_FULL_MESSAGE}
        try:
            symbol = normalize_symbol(params.get("symbol", ""))
        except InvalidSymbolInputError:
            return {"Error Message": INVALID_CALL_MESSAGE}
        # The path is built only from a validated symbol, so it cannot leave data_dir.
        path = server.data_dir / f"{symbol}.csv"
        if not path.is_file():
            return {"Error Message": INVALID_CALL_MESSAGE}
        synthetic = (server.data_dir / SYNTHETIC_NOTE_FILE).is_file()
        return build_daily_reply(symbol, read_price_csv(path), outputsize, synthetic=synthetic)

    def _reply_for_another_symbol(self, params: dict) -> dict:
        """A good data reply for the first other symbol of the folder ("wrong_symbol" mode)."""
        asked = params.get("symbol", "").upper()
        others = sorted(path.stem for path in self.server.data_dir.glob("*.csv") if path.stem != asked)
        if not others:
            return {"Error Message": INVALID_CALL_MESSAGE}
        synthetic = (self.server.data_dir / SYNTHETIC_NOTE_FILE).is_file()
        rows = read_price_csv(self.server.data_dir / f"{others[0]}.csv")
        return build_daily_reply(others[0], rows, params.get("outputsize", "compact"), synthetic=synthetic)

    def _trickle(self) -> None:
        """Announce a large JSON body, then send it one byte every TRICKLE_SECONDS ("trickle" mode).

        Stops when the client goes away, the server stops, or after MAX_TIMEOUT_SECONDS.
        """
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.flush()
            sent = 0.0
            while sent < MAX_TIMEOUT_SECONDS and not self.server.stopping.wait(TRICKLE_SECONDS):
                self.wfile.write(b" ")
                self.wfile.flush()
                sent += TRICKLE_SECONDS
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("mock alpha vantage: the client stopped reading a trickled reply")
        self.close_connection = True

    def _splits_reply(self, params: dict) -> dict:
        """Build the reply for an admitted SPLITS call from `<SYMBOL>.splits.csv` (none: "data": [])."""
        try:
            symbol = normalize_symbol(params.get("symbol", ""))
        except InvalidSymbolInputError:
            return {"Error Message": INVALID_CALL_MESSAGE.replace("TIME_SERIES_DAILY", "SPLITS")}
        if not (self.server.data_dir / f"{symbol}.csv").is_file():
            return {"Error Message": INVALID_CALL_MESSAGE.replace("TIME_SERIES_DAILY", "SPLITS")}
        return build_splits_reply(symbol, self.server.data_dir / f"{symbol}.splits.csv")

    def _send_json(self, payload: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        # The real API pretty-prints its JSON with 4-space indents.
        self._send_text(json.dumps(payload, indent=4), "application/json", status=status)

    def _send_text(self, text: str, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = text.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its read timeout fired in "timeout" mode).
            logger.debug("mock alpha vantage: client went away before the reply was sent")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        # The request line holds the apikey: redact before logging (the default prints it to stderr).
        logger.debug("mock alpha vantage: %s", redact(format % args))


def start_mock_server(data_dir: Path, port: int = 0, **options) -> tuple[MockAlphaVantageServer, threading.Thread, str]:
    """Start the mock server in a background thread.

    Args:
        data_dir: folder with `<SYMBOL>.csv` files.
        port: TCP port on 127.0.0.1 (0 = any free port).
        **options: passed to MockAlphaVantageServer (mode, api_key, premium, calls_per_minute,
            min_interval_seconds, daily_limit, timeout_seconds, clock, today).

    Returns:
        (server, thread, base_url); stop it with `server.stop()`.

    Example:
        >>> server, thread, base_url = start_mock_server(Path("data/offline"))
        >>> base_url
        'http://127.0.0.1:54321/query'
    """
    server = MockAlphaVantageServer(data_dir, port, **options)
    # A short poll interval makes server.stop() return quickly (tests start many servers).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-alpha-vantage", daemon=True
    )
    thread.start()
    logger.info("mock alpha vantage serving %s at %s (mode %s)", data_dir, server.base_url, server.mode)
    return server, thread, server.base_url


def main(argv: list[str] | None = None) -> int:
    """Command line: run the mock server in the foreground until Ctrl+C."""
    parser = argparse.ArgumentParser(description="Mock Alpha Vantage TIME_SERIES_DAILY server (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--data-dir", type=Path, default=Path("data/offline"), help="folder of <SYMBOL>.csv files")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--api-key", help="the only accepted key (default: any non-empty key)")
    parser.add_argument("--premium", action="store_true", help="allow outputsize=full")
    parser.add_argument("--calls-per-minute", type=int, help="enforce a per-minute limit (e.g. 5)")
    parser.add_argument("--min-interval", type=float, help="enforce seconds between calls (e.g. 1)")
    parser.add_argument("--daily-limit", type=int, help="enforce a daily limit (e.g. 25)")
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=35.0,
        help="how long 'timeout' mode holds a reply: longer than the client's HTTP_READ_TIMEOUT "
        "(30 s by default); lower both for a quicker demo",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.data_dir.is_dir():
        print(
            f"data folder {args.data_dir} does not exist; "
            "create it with: python -m src.local_stack.synthetic_data --out data/offline"
        )
        return 2
    server = MockAlphaVantageServer(
        args.data_dir,
        args.port,
        mode=args.mode,
        api_key=args.api_key,
        premium=args.premium,
        calls_per_minute=args.calls_per_minute,
        min_interval_seconds=args.min_interval,
        daily_limit=args.daily_limit,
        timeout_seconds=args.timeout_seconds,
    )
    print(f"mock Alpha Vantage at {server.base_url} serving {args.data_dir} (mode {server.mode}); Ctrl+C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
