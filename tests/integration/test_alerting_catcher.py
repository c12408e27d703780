"""Alerts delivered to the local Slack catcher, and the Airflow callbacks in a real Airflow 3 run.

- The catcher answers like Slack (ok, invalid_payload, no_text, no_service, failure modes).
- send_slack_alert against a healthy, failing, hanging and absent webhook.
- on_task_failure / on_task_retry with real Airflow Task SDK objects (RuntimeTaskInstance,
  DagRun), including 50 mapped failures at once.
- A DAG whose tasks fail on purpose, run with dag.test() against a migrated SQLite metadata
  database in a temporary AIRFLOW_HOME: the callbacks as Airflow really calls them.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
import requests

from src.config import DEFAULT_SYMBOLS, PROJECT_ROOT, load_settings
from src.monitoring.alerting import (
    build_task_failure_message,
    on_task_failure,
    on_task_retry,
    send_data_quality_alert,
    send_slack_alert,
)

pytestmark = pytest.mark.integration

SECRET_KEY = "AVKEY-SECRET-42"
DAG_ID = "cloudscale_finance_etl"
RUN_ID = "scheduled__2024-03-15T21:30:00+00:00"
RUN_ID_QUOTED = "scheduled__2024-03-15T21%3A30%3A00%2B00%3A00"
BASE = "http://127.0.0.1:8080"
SYMBOLS = DEFAULT_SYMBOLS.split(",")  # the 50 symbols of a default run


@pytest.fixture
def alert_env(tmp_path, slack_catcher, monkeypatch):
    """Environment for the callbacks (they load their own settings), pointed at the catcher."""
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack_catcher.url)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ALPHA_VANTAGE_API_KEY", SECRET_KEY)
    monkeypatch.setenv("AIRFLOW_BASE_URL", BASE)
    # Importing the Task SDK creates $AIRFLOW_HOME/logs: keep it in the test's folder. Import it
    # here, before the test runs: its first import reconfigures logging, which would drop the
    # handler caplog installed for the test.
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    import airflow.sdk.execution_time.task_runner  # noqa: F401

    return load_settings()


def airflow_context(task_id: str, map_index: int = -1, try_number: int = 1, max_tries: int = 0, exception=None):
    """A callback context made of real Task SDK objects, built the way Airflow's DAG processor
    builds one for its failure callbacks (`model_construct` of the runtime task instance)."""
    from airflow.sdk.api.datamodels._generated import DagRun
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    ti = RuntimeTaskInstance.model_construct(
        id=uuid4(),
        dag_id=DAG_ID,
        task_id=task_id,
        run_id=RUN_ID,
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
        dag_version_id=uuid4(),
    )
    dag_run = DagRun.model_construct(
        dag_id=DAG_ID, run_id=RUN_ID, logical_date=datetime(2024, 3, 15, 21, 30, tzinfo=UTC)
    )
    return {"ti": ti, "task_instance": ti, "dag_run": dag_run, "run_id": RUN_ID, "exception": exception}


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- The catcher itself ---------------------------------------------------------------------


def test_catcher_answers_like_slack(slack_catcher):
    base = slack_catcher.base_url

    ok = requests.post(slack_catcher.url, json={"text": "hello"}, timeout=5)
    assert (ok.status_code, ok.text, ok.headers["Content-Type"]) == (200, "ok", "text/plain; charset=utf-8")
    not_json = requests.post(slack_catcher.url, data=b"{not json", timeout=5)
    assert (not_json.status_code, not_json.text) == (400, "invalid_payload")
    a_list = requests.post(slack_catcher.url, json=["text"], timeout=5)
    assert (a_list.status_code, a_list.text) == (400, "invalid_payload")
    empty = requests.post(slack_catcher.url, json={"username": "etl"}, timeout=5)
    assert (empty.status_code, empty.text) == (400, "no_text")
    wrong_path = requests.post(f"{base}/hooks/T000", json={"text": "hello"}, timeout=5)
    assert (wrong_path.status_code, wrong_path.text) == (404, "no_service")

    alerts = slack_catcher.alerts()
    assert [(a["path"], a["payload"]) for a in alerts] == [("/services/T000/B000/XXXX", {"text": "hello"})]
    assert datetime.fromisoformat(alerts[0]["received_at"]).tzinfo is not None
    lines = slack_catcher.log_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == alerts
    assert slack_catcher.post_count == 5


def test_catcher_failure_modes(slack_catcher):
    slack_catcher.set_fail_mode("500")
    down = requests.post(slack_catcher.url, json={"text": "hello"}, timeout=5)
    assert (down.status_code, down.text) == (500, "rollup_error")
    slack_catcher.set_fail_mode("no_service")
    revoked = requests.post(slack_catcher.url, json={"text": "hello"}, timeout=5)
    assert (revoked.status_code, revoked.text) == (404, "no_service")
    slack_catcher.set_fail_mode("timeout")
    with pytest.raises(requests.ReadTimeout):
        requests.post(slack_catcher.url, json={"text": "hello"}, timeout=(1, 0.2))
    with pytest.raises(ValueError, match="fail_mode must be one of"):
        slack_catcher.set_fail_mode("503")
    slack_catcher.set_fail_mode(None)
    assert requests.post(slack_catcher.url, json={"text": "back"}, timeout=5).text == "ok"
    assert slack_catcher.payloads() == [{"text": "back"}]


def test_catcher_command_line_serves_until_stopped(tmp_path):
    port = free_port()
    log_path = tmp_path / "alerts.log"
    command = [
        sys.executable,
        "-m",
        "src.local_stack.slack_catcher",
        "--port",
        str(port),
        "--log",
        str(log_path),
    ]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()
        assert first_line == (
            f"Slack catcher listening; set SLACK_WEBHOOK_URL=http://127.0.0.1:{port}/services/T000/B000/XXXX\n"
        )
        reply = requests.post(f"http://127.0.0.1:{port}/services/T1/B2/C3", json={"text": "from the CLI"}, timeout=5)
        assert reply.text == "ok"
        assert json.loads(log_path.read_text())["payload"] == {"text": "from the CLI"}
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


# --- send_slack_alert against a good and a bad Slack ------------------------------------------


def test_alert_is_delivered_as_built(tmp_path, slack_catcher):
    settings = load_settings(env_file=tmp_path / "absent.env", overrides={"SLACK_WEBHOOK_URL": slack_catcher.url})
    info = {
        "dag_id": DAG_ID,
        "task_id": "load_warehouse",
        "map_index": -1,
        "run_id": RUN_ID,
        "logical_date": "2024-03-15T21:30:00+00:00",
        "try_number": 1,
        "max_tries": 0,
        "exception_class": "OperationalError",
        "exception_message": "database is locked",
        "log_url": f"{BASE}/dags/{DAG_ID}/runs/{RUN_ID_QUOTED}/tasks/load_warehouse?try_number=1",
        "mapped_url": None,
    }
    text, blocks = build_task_failure_message(info)

    assert send_slack_alert(settings, text, blocks) is True
    assert slack_catcher.payloads() == [{"text": text, "blocks": blocks}]


def test_slack_500_is_retried_three_times_then_gives_up(tmp_path, slack_catcher, caplog):
    settings = load_settings(env_file=tmp_path / "absent.env", overrides={"SLACK_WEBHOOK_URL": slack_catcher.url})
    slack_catcher.set_fail_mode("500")
    waits = []

    assert send_slack_alert(settings, "Task failed", [], sleep=waits.append) is False

    assert slack_catcher.post_count == 3
    assert waits == [1.0, 2.0]
    assert "Slack alert not delivered: slack alert: all 3 tries failed; last error: HTTP 500" in caplog.text
    assert slack_catcher.url not in caplog.text


def test_slack_that_never_answers_gives_up_quickly(tmp_path, slack_catcher, caplog):
    settings = load_settings(env_file=tmp_path / "absent.env", overrides={"SLACK_WEBHOOK_URL": slack_catcher.url})
    slack_catcher.set_fail_mode("timeout")

    started = time.monotonic()
    delivered = send_slack_alert(settings, "Task failed", [], sleep=lambda seconds: None, timeout=(1.0, 0.2))
    elapsed = time.monotonic() - started

    assert delivered is False
    assert slack_catcher.post_count == 3
    assert elapsed < 3.0
    assert "last error: ReadTimeout" in caplog.text
    assert slack_catcher.url not in caplog.text


def test_unreachable_webhook_returns_false_without_showing_the_url(tmp_path, caplog):
    webhook = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXX"
    settings = load_settings(env_file=tmp_path / "absent.env", overrides={"SLACK_WEBHOOK_URL": webhook})

    assert send_slack_alert(settings, "Task failed", [], sleep=lambda seconds: None) is False
    assert "last error: ConnectionError" in caplog.text
    assert "T000/B000/XXXX" not in caplog.text


def test_revoked_webhook_is_not_retried(tmp_path, slack_catcher, caplog):
    settings = load_settings(env_file=tmp_path / "absent.env", overrides={"SLACK_WEBHOOK_URL": slack_catcher.url})
    slack_catcher.set_fail_mode("no_service")

    assert send_slack_alert(settings, "Task failed", []) is False
    assert slack_catcher.post_count == 1
    assert "Slack alert rejected: HTTP 404 no_service" in caplog.text


# --- The Airflow callbacks with Task SDK objects --------------------------------------------------


def test_failure_callback_posts_the_details_with_secrets_redacted(alert_env, slack_catcher, caplog):
    caplog.set_level(logging.INFO)
    error = ConnectionError(
        f"GET https://www.alphavantage.co/query?function=TIME_SERIES_DAILY&symbol=IBM&apikey={SECRET_KEY} "
        f"failed; key {SECRET_KEY} rejected; webhook {slack_catcher.url} down too"
    )

    on_task_failure(airflow_context("load_warehouse", try_number=3, max_tries=2, exception=error))

    payloads = slack_catcher.payloads()
    assert len(payloads) == 1
    blocks = payloads[0]["blocks"]
    assert blocks[0]["text"]["text"] == f"Task failed: {DAG_ID}.load_warehouse"
    assert [field["text"] for field in blocks[1]["fields"]] == [
        f"*DAG*\n`{DAG_ID}`",
        "*Task*\n`load_warehouse`",
        f"*Run*\n`{RUN_ID}`",
        "*Logical date*\n2024-03-15T21:30:00+00:00",
        "*Try*\n3 of 3 (final)",
        "*Error*\n`ConnectionError`",
    ]
    assert blocks[2]["text"]["text"] == (
        "```ConnectionError: GET https://www.alphavantage.co/query?function=TIME_SERIES_DAILY"
        "&amp;symbol=IBM&amp;apikey=*** failed; key *** rejected; webhook *** down too```"
    )
    log_url = f"{BASE}/dags/{DAG_ID}/runs/{RUN_ID_QUOTED}/tasks/load_warehouse?try_number=3"
    assert blocks[-1]["elements"][0]["text"] == f"<{log_url}|Open the task log in Airflow>"
    for secret in (SECRET_KEY, slack_catcher.url, "T000/B000/XXXX"):
        assert secret not in json.dumps(payloads[0])
        assert secret not in caplog.text
    assert "ALERT: Task failed: cloudscale_finance_etl.load_warehouse" in caplog.text


def test_fifty_mapped_failures_in_one_run_post_one_alert(alert_env, slack_catcher, tmp_path):
    contexts = [
        airflow_context("extract_prices", map_index=i, exception=ValueError(f"no prices for {symbol}"))
        for i, symbol in enumerate(SYMBOLS)
    ]
    assert len(contexts) == 50

    # All at once, the way 50 workers would call the callback.
    with ThreadPoolExecutor(max_workers=25) as pool:
        list(pool.map(on_task_failure, contexts))

    payloads = slack_catcher.payloads()
    assert len(payloads) == 1
    assert slack_catcher.post_count == 1
    mapped_note = payloads[0]["blocks"][3]["text"]["text"]
    assert mapped_note.startswith("This task is mapped. ")
    assert mapped_note.endswith(
        f"<{BASE}/dags/{DAG_ID}/runs/{RUN_ID_QUOTED}/tasks/extract_prices/mapped|see all mapped instances>."
    )
    marker_folder = tmp_path / "state" / "alerts" / DAG_ID / RUN_ID_QUOTED
    recorded = (marker_folder / "extract_prices.try1.failed_map_indexes").read_text().split()
    assert sorted(int(index) for index in recorded) == list(range(50))

    # Another task of the same run is another problem: a second alert.
    on_task_failure(airflow_context("transform_prices", exception=KeyError("close")))
    payloads = slack_catcher.payloads()
    assert len(payloads) == 2
    assert payloads[1]["blocks"][0]["text"]["text"] == f"Task failed: {DAG_ID}.transform_prices"


def test_mapped_failures_one_after_another_name_the_failed_indexes(alert_env, slack_catcher):
    on_task_failure(airflow_context("extract_prices", map_index=7, exception=ValueError("no prices for V")))
    on_task_failure(airflow_context("extract_prices", map_index=8, exception=ValueError("no prices for JNJ")))

    payloads = slack_catcher.payloads()
    assert len(payloads) == 1
    assert payloads[0]["blocks"][1]["fields"][1]["text"] == "*Task*\n`extract_prices` (map index 7)"
    assert payloads[0]["blocks"][3]["text"]["text"].startswith(
        "This task is mapped. 1 instance has failed so far (map index 7)."
    )


def test_retry_callback_logs_and_posts_nothing(alert_env, slack_catcher, caplog):
    error = TimeoutError(f"Alpha Vantage did not answer to apikey={SECRET_KEY} in 30 s")

    on_task_retry(airflow_context("extract_prices", map_index=3, try_number=1, max_tries=2, exception=error))

    assert slack_catcher.post_count == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"Task {DAG_ID}.extract_prices map_index=3 run_id={RUN_ID} failed on try 1 of 3; Airflow will "
        "retry it. TimeoutError: Alpha Vantage did not answer to apikey=*** in 30 s"
    ]


def test_data_quality_alert_reaches_slack(tmp_path, slack_catcher):
    settings = load_settings(env_file=tmp_path / "absent.env", overrides={"SLACK_WEBHOOK_URL": slack_catcher.url})
    checks = [
        {"name": "row_counts", "ok": True, "message": "50 symbols loaded", "figures": {"symbols": 50}},
        {
            "name": "missing_symbols",
            "ok": False,
            "message": "2 symbols have no prices for 2024-03-15",
            "figures": {"symbols": ["NVDA", "TSLA"], "expected": 50, "loaded": 48},
        },
    ]

    assert send_data_quality_alert(settings, checks, run_id=RUN_ID, logical_date="2024-03-15") is True

    blocks = slack_catcher.payloads()[0]["blocks"]
    assert blocks[0]["text"]["text"] == "Data quality: 1 of 2 checks failed"
    assert blocks[2]["text"]["text"] == (
        "*missing_symbols*: 2 symbols have no prices for 2024-03-15\n"
        "• symbols: NVDA, TSLA\n• expected: 50\n• loaded: 48"
    )
    assert blocks[3]["elements"][0]["text"] == "Passed: row_counts"


# --- A real Airflow 3 run with dag.test() -----------------------------------------------------------

MAPPED_SYMBOLS = 10  # a small storm; each instance costs ~0.2 s (most of the run is Airflow starting up)

DAG_SOURCE = f'''
"""Tasks that fail on purpose, to check the Slack alert callbacks inside a real Airflow run."""

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from src.config import DEFAULT_SYMBOLS
from src.monitoring.alerting import on_task_failure, on_task_retry

EVENTS = Path(os.environ["ALERT_TEST_EVENTS"])


def record(event):
    with EVENTS.open("a") as events:
        events.write(json.dumps(event) + "\\n")


def record_raise():
    ti = get_current_context()["ti"]
    record({{"event": "raised", "task_id": ti.task_id, "map_index": ti.map_index, "at": time.time()}})


def record_airflow_log_url(context):
    ti = context["ti"]
    record({{"event": "callback", "task_id": ti.task_id, "map_index": ti.map_index, "log_url": ti.log_url}})


@dag(
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={{
        "retries": 0,
        "on_failure_callback": [on_task_failure, record_airflow_log_url],
        "on_retry_callback": on_task_retry,
    }},
)
def alert_demo():
    @task
    def load_warehouse():
        record_raise()
        raise ConnectionError("query?function=TIME_SERIES_DAILY&apikey={SECRET_KEY} refused")

    @task
    def extract_prices(symbol):
        record_raise()
        raise ValueError(f"no prices for {{symbol}}")

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def flaky():
        record_raise()
        raise TimeoutError("Alpha Vantage did not answer")

    load_warehouse()
    extract_prices.expand(symbol=DEFAULT_SYMBOLS.split(",")[:{MAPPED_SYMBOLS}])
    flaky()


demo_dag = alert_demo()

if __name__ == "__main__":
    demo_dag.test(logical_date=datetime(2024, 1, 2, tzinfo=UTC))
'''


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """A throw-away AIRFLOW_HOME with a migrated SQLite metadata DB, and the env to use it.

    Every AIRFLOW* variable of the caller's environment is dropped first, so the run can
    never touch a real Airflow database.
    """
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__BASE_URL": BASE,
        }
    )
    started = time.monotonic()
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True, timeout=240)
    print(f"airflow db migrate took {time.monotonic() - started:.1f} s")
    return home, env


@pytest.mark.e2e  # the slowest test here (~35 s on an idle 2-core machine): deselect with -m "not e2e"
@pytest.mark.timeout(300)
def test_dag_test_run_alerts_once_per_failed_task(airflow_home, slack_catcher, tmp_path):
    home, env = airflow_home
    dag_file = home / "dags" / "alert_demo.py"
    dag_file.write_text(DAG_SOURCE)
    events_file = tmp_path / "events.jsonl"
    env = {
        **env,
        "ALERT_TEST_EVENTS": str(events_file),
        "PIPELINE_ENV_FILE": str(tmp_path / "absent.env"),
        "SLACK_WEBHOOK_URL": slack_catcher.url,
        "STATE_DIR": str(tmp_path / "state"),
        "ALPHA_VANTAGE_API_KEY": SECRET_KEY,
        "AIRFLOW_BASE_URL": BASE,
    }

    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(dag_file)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    print(f"dag.test() took {time.monotonic() - started:.1f} s")
    output = run.stdout + run.stderr
    assert "DagRun Finished: dag_id=alert_demo" in output, output[-3000:]

    alerts = slack_catcher.alerts()
    headers = sorted(alert["payload"]["blocks"][0]["text"]["text"] for alert in alerts)
    assert headers == [
        "Task failed: alert_demo.extract_prices",
        "Task failed: alert_demo.flaky",
        "Task failed: alert_demo.load_warehouse",
    ]
    by_task = {alert["payload"]["blocks"][0]["text"]["text"].split(".")[-1]: alert for alert in alerts}

    # flaky failed twice: the first try went to on_task_retry (logged, not posted).
    flaky_fields = [field["text"] for field in by_task["flaky"]["payload"]["blocks"][1]["fields"]]
    assert flaky_fields[4:] == ["*Try*\n2 of 2 (final)", "*Error*\n`TimeoutError`"]
    assert "failed on try 1 of 2; Airflow will retry it. TimeoutError: Alpha Vantage did not answer" in output

    mapped_blocks = by_task["extract_prices"]["payload"]["blocks"]
    assert mapped_blocks[3]["text"]["text"].startswith("This task is mapped. 1 instance has failed so far")
    assert output.count("Task failure already alerted for this task and run") == MAPPED_SYMBOLS - 1

    assert "apikey=***" in by_task["load_warehouse"]["payload"]["text"]
    for alert in alerts:
        assert SECRET_KEY not in json.dumps(alert["payload"])

    # Our log links are exactly Airflow's own TaskInstance.log_url.
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    airflow_links = {(e["task_id"], e["map_index"]): e["log_url"] for e in events if e["event"] == "callback"}
    for task_id, alert in by_task.items():
        link = alert["payload"]["blocks"][-1]["elements"][0]["text"]
        log_url = link[1:].split("|")[0]
        map_index = int(log_url.split("/mapped/")[1].split("?")[0]) if "/mapped/" in log_url else -1
        assert log_url == airflow_links[(task_id, map_index)]

        # Delay from the exception to the catcher: the last raise of that task instance before
        # the alert arrived.
        received = datetime.fromisoformat(alert["received_at"]).timestamp()
        raised = max(
            e["at"] for e in events if e["event"] == "raised" and (e["task_id"], e["map_index"]) == (task_id, map_index)
        )
        print(f"{task_id}[{map_index}]: alert received {received - raised:.3f} s after the exception")
        assert 0 < received - raised < 10
