"""The one HTTP helper: timeouts, retries with growing backoff, a size cap and redacted errors.

Every outgoing HTTP call of the project (Alpha Vantage, the Slack webhook, ...) goes through
`request_with_retries`, so timeouts, retry rules and secret redaction live in one place.

Timeouts: requests' (connect, read) timeouts apply to each socket operation, so a server that
answers and then sends one byte every few seconds never trips them. Each try therefore also
has a total deadline (`total_timeout`, setting HTTP_TOTAL_TIMEOUT): the try runs in a helper
thread, and when the deadline passes the caller stops waiting, closes the reply and counts the
try as timed out. So the worst case of one call is exactly
`max_tries * total_timeout + the waits between tries`.

Retry rules:
- retried: connection errors, timeouts, a body cut off mid-transfer, HTTP 5xx and HTTP 429;
- not retried: every other status (the caller reads the reply and decides what it means).
The wait before try n+1 is `backoff_seconds * 2 ** (n - 1)` (2 s, 4 s, ... by default), or the
server's `Retry-After` header when it asks for longer (capped at `max_wait_seconds`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import requests

from src.config import redact

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class HttpRequestError(Exception):
    """The request failed on every try (or the reply was too large). The message is redacted."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class ResponseTooLargeError(HttpRequestError):
    """The reply was bigger than the configured cap; it is never retried."""


class TotalTimeoutError(Exception):
    """One try did not finish within its total deadline (retried like a read timeout)."""


def _retry_after_seconds(response: requests.Response) -> float | None:
    """Return the server's Retry-After wait in seconds, if it sent a numeric one."""
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _read_capped(response: requests.Response, max_bytes: int | None) -> None:
    """Read the body (streamed) and stop with an error as soon as it exceeds `max_bytes`."""
    if max_bytes is None:
        response.content  # noqa: B018 - reads the body now so timeouts fire inside the try's deadline
        return
    chunks = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > max_bytes:
            response.close()
            raise ResponseTooLargeError(f"reply is larger than the {max_bytes:,}-byte cap")
        chunks.append(chunk)
    # Store the body so response.text / .json() work as usual afterwards.
    response._content = b"".join(chunks)


def _stop_reading(response: requests.Response | None) -> None:
    """Shut down the socket a reply is being read from, so the reading thread ends now.

    `response.close()` cannot be used from another thread: it waits for the lock the blocked
    read holds. Shutting the connection down (through a duplicate of the socket's file
    descriptor, the one public way to reach it) makes that read return at once.
    """
    if response is None:
        return
    try:
        with socket.fromfd(response.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError, AttributeError):
        pass  # already closed (or no socket): the thread is ending anyway


def _try_once(
    http,
    method: str,
    url: str,
    request_options: dict,
    max_bytes: int | None,
    total_timeout: float,
) -> requests.Response:
    """Send one try and read its whole body, giving up after `total_timeout` seconds.

    The try runs in a daemon thread, because requests cannot stop a read that keeps getting a
    byte now and then. At the deadline this function shuts the reply's socket down (which ends
    the thread's read) and raises; a daemon thread never keeps the process alive either way.

    Raises:
        TotalTimeoutError: the deadline passed before the body was complete.
        Whatever the request itself raised (connection errors, timeouts, a too large reply).
    """
    outcome: dict = {}

    def send() -> None:
        try:
            response = http.request(method, url, stream=True, **request_options)
            outcome["response"] = response  # so the caller can close it at the deadline
            _read_capped(response, max_bytes)
            outcome["done"] = True
        except BaseException as exc:  # handed over to the caller's thread, raised there
            outcome["error"] = exc

    worker = threading.Thread(target=send, name="http-try", daemon=True)
    worker.start()
    worker.join(total_timeout)
    if worker.is_alive():
        _stop_reading(outcome.get("response"))
        raise TotalTimeoutError(f"no complete reply within the total deadline of {total_timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


def request_with_retries(
    method: str,
    url: str,
    *,
    session: requests.Session | None = None,
    params: dict | None = None,
    json_body: dict | None = None,
    timeout: tuple[float, float] = (5.0, 30.0),
    total_timeout: float = 60.0,
    max_tries: int = 3,
    backoff_seconds: float = 2.0,
    max_wait_seconds: float = 60.0,
    max_bytes: int | None = None,
    secrets: list[str] | tuple[str, ...] = (),
    context: str = "",
    sleep: Callable[[float], None] = time.sleep,
    before_try: Callable[[], None] | None = None,
    after_try: Callable[[], None] | None = None,
) -> requests.Response:
    """Send one HTTP request, retrying the failures that retrying can fix.

    Args:
        method: "GET" or "POST".
        url: the full URL, without secrets in it if possible (pass them in `params`).
        session: a `requests.Session` to reuse connections (tests pass their own).
        params: query-string parameters.
        json_body: a JSON body for POST requests.
        timeout: (connect timeout, read timeout) in seconds, for each socket operation.
        total_timeout: the most one try may take, from sending to the last byte of the body
            (setting HTTP_TOTAL_TIMEOUT); a try that passes it is retried like a timeout.
        max_tries: total number of tries, including the first one.
        backoff_seconds: wait before the 2nd try; it doubles for each later try.
        max_wait_seconds: never wait longer than this between tries.
        max_bytes: refuse replies larger than this many bytes (None: no cap).
        secrets: values to remove from error messages and logs (API keys, webhook URLs).
        context: a few words for log lines, e.g. "alpha_vantage IBM".
        sleep: the sleep function (tests pass a fake one).
        before_try: called before each try, outside its deadline (Alpha Vantage's rate
            limiter waits there for a free slot; it may raise to stop sending).
        after_try: called after each try, however it ended.

    Returns:
        The `requests.Response` of the first try that was not retryable (it may be a 4xx:
        the caller decides what that reply means).

    Raises:
        HttpRequestError: every try failed; the message says why, with secrets redacted.
        ResponseTooLargeError: the body exceeded `max_bytes`.
    """
    http = session or requests.Session()
    last_problem = ""
    last_status: int | None = None
    for attempt in range(1, max_tries + 1):
        wait = backoff_seconds * 2 ** (attempt - 1)
        if before_try is not None:
            before_try()
        try:
            options = {"params": params, "json": json_body, "timeout": timeout}
            response = _try_once(http, method, url, options, max_bytes, total_timeout)
        except ResponseTooLargeError:
            raise
        except TotalTimeoutError as exc:
            last_problem = f"{exc} (HTTP_TOTAL_TIMEOUT)"
            last_status = None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            # requests puts the full URL (query string included) into these messages: redact.
            last_problem = f"{type(exc).__name__}: {redact(exc, secrets)}"
            last_status = None
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            last_status = response.status_code
            last_problem = f"HTTP {response.status_code}"
            server_wait = _retry_after_seconds(response)
            if server_wait is not None:
                wait = max(wait, server_wait)
        finally:
            if after_try is not None:
                after_try()
        if attempt < max_tries:
            wait = min(wait, max_wait_seconds)
            logger.warning(
                "%s: try %d/%d failed (%s); retrying in %.1f s",
                context or method,
                attempt,
                max_tries,
                last_problem,
                wait,
            )
            sleep(wait)
    raise HttpRequestError(
        redact(f"{context or method}: all {max_tries} tries failed; last error: {last_problem}", secrets),
        status_code=last_status,
    )
