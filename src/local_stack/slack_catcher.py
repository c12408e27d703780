"""A local stand-in for Slack incoming webhooks, for the local stack, demos and tests.

It answers like Slack does (see Slack's "Handling errors" for incoming webhooks):

- POST /services/<anything> with a JSON object that has `text` (or `blocks`/`attachments`)
  -> 200 "ok" (text/plain); the alert is appended as one JSON line
  {"received_at", "path", "payload"} to the log file;
- a body that is not a JSON object -> 400 "invalid_payload";
- a JSON object without text, blocks or attachments -> 400 "no_text";
- any other path -> 404 "no_service" (Slack's answer for an unknown or revoked webhook).

GET /_alerts returns every alert received so far as a JSON list (not a Slack endpoint).

A failure mode makes it misbehave on purpose, to see what the pipeline does when Slack is down:
"500" answers 500 "rollup_error" (Slack's "something strange happened"), "timeout" never
answers (the client's read timeout fires), "no_service" answers 404 "no_service" to every POST,
"trickle" answers 200 at once and then sends its body one byte every TRICKLE_SECONDS (each read
is quick, the reply never ends: only a total deadline stops the client).

It listens on 127.0.0.1 only. Run it with:

    python -m src.local_stack.slack_catcher --port 8082 --log data/alerts.log

then set SLACK_WEBHOOK_URL=http://127.0.0.1:8082/services/T000/B000/XXXX.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

FAIL_MODES = (None, "500", "timeout", "no_service", "trickle")
TRICKLE_SECONDS = 2.0
WEBHOOK_PATH = "/services/T000/B000/XXXX"  # any path under /services/ works; this one looks like Slack's
MAX_BODY_BYTES = 1_000_000


class SlackCatcherServer(ThreadingHTTPServer):
    """The HTTP server plus what its handlers share: the log file, the failure mode, a counter."""

    daemon_threads = True  # a handler stuck in "timeout" mode must not keep the process alive

    def __init__(self, port: int, log_path: str | Path, fail_mode: str | None = None, hang_seconds: float = 30.0):
        super().__init__(("127.0.0.1", port), SlackCatcherHandler)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.hang_seconds = hang_seconds
        self.lock = threading.Lock()  # one handler writes to the log file at a time
        self.stopping = threading.Event()  # wakes handlers that hang in "timeout" mode
        self.post_count = 0  # every POST, answered or not (tests count the client's retries)
        self.fail_mode = None
        self.set_fail_mode(fail_mode)

    def set_fail_mode(self, fail_mode: str | None) -> None:
        """Switch the failure mode: None (behave), "500", "timeout", "no_service" or "trickle"."""
        if fail_mode not in FAIL_MODES:
            raise ValueError(f"fail_mode must be one of {FAIL_MODES}, got {fail_mode!r}")
        self.fail_mode = fail_mode

    def read_alerts(self) -> list[dict]:
        """Return every alert received so far, oldest first."""
        with self.lock:
            if not self.log_path.exists():
                return []
            lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


class SlackCatcherHandler(BaseHTTPRequestHandler):
    """Answers one request the way Slack's webhook endpoint would."""

    server: SlackCatcherServer

    def _reply(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _trickle(self) -> None:
        """Answer 200, then send the body one byte every TRICKLE_SECONDS until the server stops."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            while not self.server.stopping.wait(TRICKLE_SECONDS):
                self.wfile.write(b"o")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("Slack catcher: the client stopped reading a trickled reply")
        self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802 - the name http.server looks for
        with self.server.lock:
            self.server.post_count += 1
        fail_mode = self.server.fail_mode
        if fail_mode == "timeout":
            # Say nothing until the client gives up (or the server stops).
            self.server.stopping.wait(self.server.hang_seconds)
            self.close_connection = True
            return
        if fail_mode == "trickle":
            self._trickle()
            return
        if fail_mode == "500":
            self._reply(500, "rollup_error")
            return
        if fail_mode == "no_service" or not self.path.startswith("/services/") or self.path == "/services/":
            self._reply(404, "no_service")
            return

        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(400, "invalid_payload")
            return
        try:
            payload = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            self._reply(400, "invalid_payload")
            return
        if not (payload.get("text") or payload.get("blocks") or payload.get("attachments")):
            self._reply(400, "no_text")
            return

        record = {"received_at": datetime.now(UTC).isoformat(), "path": self.path, "payload": payload}
        with self.server.lock:
            with open(self.server.log_path, "a", encoding="utf-8") as log_file:
                log_file.write(json.dumps(record) + "\n")
        logger.info("Slack catcher: alert received: %s", str(payload.get("text", ""))[:200])
        self._reply(200, "ok")

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/_alerts":
            self._reply(200, json.dumps(self.server.read_alerts()), "application/json")
        else:
            self._reply(404, "no_service")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        # http.server prints every request to stderr; send it to logging instead.
        logger.debug("Slack catcher: " + format, *args)


def start_slack_catcher(
    log_path: str | Path, port: int = 0, fail_mode: str | None = None
) -> tuple[SlackCatcherServer, threading.Thread, str]:
    """Start the catcher in a background thread.

    Args:
        log_path: the JSON-lines file alerts are appended to.
        port: the TCP port on 127.0.0.1; 0 picks a free one.
        fail_mode: None, "500", "timeout" or "no_service".

    Returns:
        (server, thread, url): `url` is a webhook URL to use as SLACK_WEBHOOK_URL, e.g.
        http://127.0.0.1:54321/services/T000/B000/XXXX. Stop with `stop_slack_catcher`.
    """
    server = SlackCatcherServer(port, log_path, fail_mode=fail_mode)
    thread = threading.Thread(target=server.serve_forever, name="slack-catcher", daemon=True)
    thread.start()
    host, bound_port = server.server_address[:2]
    return server, thread, f"http://{host}:{bound_port}{WEBHOOK_PATH}"


def stop_slack_catcher(server: SlackCatcherServer, thread: threading.Thread) -> None:
    """Stop the server, release its port and wait for its thread."""
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """Command line: run the catcher in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Local Slack incoming-webhook catcher (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=8082, help="TCP port (default 8082)")
    parser.add_argument("--log", default="data/alerts.log", help="JSON-lines file for received alerts")
    parser.add_argument("--fail-mode", choices=[mode for mode in FAIL_MODES if mode], default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = SlackCatcherServer(args.port, args.log, fail_mode=args.fail_mode)
    host, port = server.server_address[:2]
    print(f"Slack catcher listening; set SLACK_WEBHOOK_URL=http://{host}:{port}{WEBHOOK_PATH}")
    print(f"Alerts are appended to {Path(args.log).resolve()}; see them at http://{host}:{port}/_alerts")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.stopping.set()
        server.server_close()


if __name__ == "__main__":
    main()
