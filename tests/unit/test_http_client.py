"""Tests for the shared HTTP helper (src/ingestion/http_client.py).

HTTP is intercepted by `responses`; waits go to a fake sleep that records them. One test uses
a real closed port on 127.0.0.1 to get requests' real connection-error message.
"""

import json
import logging
import socket

import pytest
import requests
import responses

from src.ingestion.http_client import HttpRequestError, ResponseTooLargeError, request_with_retries

URL = "https://api.example.test/query"
SECRET = "KEY-5ecret-42"


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps():
    return []


def call(sleeps, **kwargs):
    return request_with_retries("GET", URL, sleep=sleeps.append, **kwargs)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retryable_status_then_success(api, sleeps, status):
    api.get(URL, status=status)
    api.get(URL, status=status)
    api.get(URL, json={"ok": True})

    response = call(sleeps)

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert len(api.calls) == 3
    assert sleeps == [2.0, 4.0]


def test_backoff_doubles_for_every_try(api, sleeps):
    api.get(URL, status=503)

    with pytest.raises(HttpRequestError):
        call(sleeps, max_tries=5, backoff_seconds=1.5)

    assert len(api.calls) == 5
    assert sleeps == [1.5, 3.0, 6.0, 12.0]


def test_waits_are_capped(api, sleeps):
    api.get(URL, status=500)

    with pytest.raises(HttpRequestError):
        call(sleeps, max_tries=4, backoff_seconds=10.0, max_wait_seconds=25.0)

    assert sleeps == [10.0, 20.0, 25.0]


def test_all_tries_failing_raises_with_the_last_status(api, sleeps):
    api.get(URL, status=503)

    with pytest.raises(HttpRequestError) as caught:
        call(sleeps, context="alpha_vantage IBM")

    assert caught.value.status_code == 503
    assert str(caught.value) == "alpha_vantage IBM: all 3 tries failed; last error: HTTP 503"


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("7", 7.0), ("1", 2.0), ("600", 60.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 2.0)],
    ids=["longer-than-backoff", "shorter-than-backoff", "capped", "http-date-ignored"],
)
def test_retry_after_is_honoured_when_longer(api, sleeps, retry_after, expected_wait):
    api.get(URL, status=429, headers={"Retry-After": retry_after})
    api.get(URL, json={"ok": True})

    assert call(sleeps).status_code == 200
    assert sleeps == [expected_wait]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_statuses_are_returned_without_retry(api, sleeps, status):
    api.get(URL, status=status, body="no")

    response = call(sleeps)

    assert response.status_code == status
    assert len(api.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)"),
        requests.exceptions.ConnectTimeout("Connection to api.example.test timed out."),
        requests.exceptions.ConnectionError("Connection reset by peer"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(10 bytes read)"),
    ],
    ids=["read-timeout", "connect-timeout", "connection-error", "cut-off-body"],
)
def test_network_failures_are_retried(api, sleeps, error):
    api.get(URL, body=error)
    api.get(URL, json={"ok": True})

    assert call(sleeps).json() == {"ok": True}
    assert len(api.calls) == 2
    assert sleeps == [2.0]


def test_network_failure_every_time_names_the_error(api, sleeps):
    api.get(URL, body=requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)"))

    with pytest.raises(HttpRequestError) as caught:
        call(sleeps)

    assert caught.value.status_code is None
    assert "last error: ReadTimeout: Read timed out. (read timeout=30)" in str(caught.value)
    assert len(api.calls) == 3


def test_params_timeout_and_session_are_used(api, sleeps):
    api.get(URL, json={"ok": True})
    session = requests.Session()
    session.headers["User-Agent"] = "cloudscale-test"

    call(sleeps, session=session, params={"symbol": "IBM"}, timeout=(1.5, 7.0))

    sent = api.calls[0].request
    assert sent.params == {"symbol": "IBM"}
    assert sent.headers["User-Agent"] == "cloudscale-test"
    assert sent.req_kwargs["timeout"] == (1.5, 7.0)


def test_post_sends_a_json_body(api, sleeps):
    api.post(URL, json={"ok": True})

    request_with_retries("POST", URL, json_body={"text": "hello"}, sleep=sleeps.append)

    assert json.loads(api.calls[0].request.body) == {"text": "hello"}


def test_body_under_the_cap_is_kept(api, sleeps):
    body = json.dumps({"rows": ["x" * 100] * 5})
    api.get(URL, body=body, content_type="application/json")

    response = call(sleeps, max_bytes=len(body))

    assert response.text == body
    assert response.json() == {"rows": ["x" * 100] * 5}


def test_body_over_the_cap_fails_at_once(api, sleeps):
    api.get(URL, body="x" * 5000)

    with pytest.raises(ResponseTooLargeError, match="1,000-byte cap"):
        call(sleeps, max_bytes=1000)

    assert len(api.calls) == 1
    assert sleeps == []


def test_key_in_exception_urls_is_redacted(api, sleeps, caplog):
    # requests puts the full URL, query string included, into its error messages.
    api.get(
        URL,
        body=requests.exceptions.ConnectionError(f"Max retries exceeded with url: /query?apikey={SECRET}"),
    )

    with pytest.raises(HttpRequestError) as caught:
        call(sleeps, params={"apikey": SECRET}, secrets=[SECRET])

    assert SECRET not in str(caught.value)
    assert "apikey=***" in str(caught.value)
    assert caplog.records  # the retries were logged ...
    assert all(SECRET not in record.getMessage() for record in caplog.records)  # ... without the key


def test_secret_values_are_redacted_even_outside_query_parameters(api, sleeps):
    api.get(URL, body=requests.exceptions.ConnectionError(f"failed for token {SECRET} at host"))

    with pytest.raises(HttpRequestError) as caught:
        call(sleeps, max_tries=1, secrets=[SECRET])

    assert str(caught.value) == "GET: all 1 tries failed; last error: ConnectionError: failed for token *** at host"


def test_real_connection_refused_is_retried_and_redacted(sleeps, caplog):
    # A port that was just free on loopback: nothing listens there, so the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING)

    with pytest.raises(HttpRequestError) as caught:
        request_with_retries(
            "GET",
            f"http://127.0.0.1:{port}/query",
            params={"symbol": "IBM", "apikey": SECRET},
            timeout=(1.0, 1.0),
            secrets=[SECRET],
            sleep=sleeps.append,
        )

    assert "ConnectionError" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert sleeps == [2.0, 4.0]
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_before_and_after_try_run_around_every_try(api, sleeps):
    api.get(URL, status=503)
    api.get(URL, json={"ok": True})
    events = []

    response = call(sleeps, before_try=lambda: events.append("before"), after_try=lambda: events.append("after"))

    assert response.status_code == 200
    assert events == ["before", "after", "before", "after"]


def test_a_refusal_in_before_try_sends_nothing(api, sleeps):
    api.get(URL, json={"ok": True})

    def refuse():
        raise RuntimeError("quota used up")

    with pytest.raises(RuntimeError, match="quota used up"):
        call(sleeps, before_try=refuse)
    assert len(api.calls) == 0
