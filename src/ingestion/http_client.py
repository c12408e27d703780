"""The one HTTP helper: timeouts, retries with growing backoff, a size cap and redacted errors.

Every outgoing HTTP call of the project (Alpha Vantage, the Slack webhook, ...) goes through
`request_with_retries`, so timeouts, retry rules and secret redaction live in one place.

Retry rules:
- retried: connection errors, timeouts, a body cut off mid-transfer, HTTP 5xx and HTTP 429;
- not retried: every other status (the caller reads the reply and decides what it means).
The wait before try n+1 is `backoff_seconds * 2 ** (n - 1)` (2 s, 4 s, ... by default), or the
server's `Retry-After` header when it asks for longer (capped at `max_wait_seconds`).
"""

from __future__ import annotations

import logging
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
        response.content  # noqa: B018 - reads the body now so timeouts fire inside the retry loop
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


def request_with_retries(
    method: str,
    url: str,
    *,
    session: requests.Session | None = None,
    params: dict | None = None,
    json_body: dict | None = None,
    timeout: tuple[float, float] = (5.0, 30.0),
    max_tries: int = 3,
    backoff_seconds: float = 2.0,
    max_wait_seconds: float = 60.0,
    max_bytes: int | None = None,
    secrets: list[str] | tuple[str, ...] = (),
    context: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> requests.Response:
    """Send one HTTP request, retrying the failures that retrying can fix.

    Args:
        method: "GET" or "POST".
        url: the full URL, without secrets in it if possible (pass them in `params`).
        session: a `requests.Session` to reuse connections (tests pass their own).
        params: query-string parameters.
        json_body: a JSON body for POST requests.
        timeout: (connect timeout, read timeout) in seconds; every request has both.
        max_tries: total number of tries, including the first one.
        backoff_seconds: wait before the 2nd try; it doubles for each later try.
        max_wait_seconds: never wait longer than this between tries.
        max_bytes: refuse replies larger than this many bytes (None: no cap).
        secrets: values to remove from error messages and logs (API keys, webhook URLs).
        context: a few words for log lines, e.g. "alpha_vantage IBM".
        sleep: the sleep function (tests pass a fake one).

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
        try:
            response = http.request(
                method, url, params=params, json=json_body, timeout=timeout, stream=max_bytes is not None
            )
            _read_capped(response, max_bytes)
        except ResponseTooLargeError:
            raise
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
