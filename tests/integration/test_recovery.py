"""Crash recovery: `python -m src.pipeline run` killed with SIGKILL, then run again.

The pipeline runs as a real subprocess against the mock Alpha Vantage server (synthetic data,
in this test process) and real SQLite files (and moto's S3 for the S3 case). No test hook is
built into the product: the test watches observable progress (the mock's request count, objects
in the bucket, rows in the warehouse) and kills the process at that moment, exactly as an OOM
kill or a lost worker would.

What must hold after the restart:
- the warehouse equals the one of an uninterrupted run (every table, every column except the
  audit columns loaded_at/run_id/quarantined_at/updated_at);
- nothing that was landed before the kill is fetched again: requests of the restarted run ==
  symbols with no landed reply at the moment of the kill (the mock's /_stats proves it).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import psutil
import pytest

from src.config import PROJECT_ROOT
from src.local_stack.mock_alpha_vantage import start_mock_server
from src.local_stack.synthetic_data import write_synthetic_universe
from src.storage.schema import AUDIT_COLUMNS, TABLES
from tests.fixtures.mock_alpha_vantage import MOCK_FIRST_DAY, MOCK_LAST_SESSION, MOCK_SYMBOLS

pytestmark = pytest.mark.integration

START, END = "2024-05-01", "2024-06-28"
# The mock holds each reply this long, so a run takes a few seconds and can be killed midway.
REPLY_DELAY_SECONDS = 0.15
DATA_TABLES = [name for name in TABLES if name != "pipeline_runs"]


@pytest.fixture(scope="module")
def slow_mock(tmp_path_factory):
    """The mock Alpha Vantage, answering every call correctly but after REPLY_DELAY_SECONDS."""
    data_dir = tmp_path_factory.mktemp("mock-alpha-vantage-data")
    write_synthetic_universe(data_dir, list(MOCK_SYMBOLS), MOCK_FIRST_DAY, MOCK_LAST_SESSION)
    server, thread, base_url = start_mock_server(data_dir, mode="timeout", timeout_seconds=REPLY_DELAY_SECONDS)
    yield server
    server.stop()
    thread.join(timeout=5)


def pipeline_env(tmp_path: Path, name: str, base_url: str, bucket: str = "") -> dict:
    """The environment of one pipeline process, with its own warehouse and state folder."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PIPELINE_ENV_FILE": str(tmp_path / "no.env"),
        "SQLITE_PATH": str(folder / "warehouse.db"),
        "STATE_DIR": str(folder / "state"),
        "DATA_SOURCES": "alpha_vantage",
        "ALPHA_VANTAGE_API_KEY": "recovery-test-key",  # pragma: allowlist secret - a dummy for the mock
        "ALPHA_VANTAGE_BASE_URL": base_url,
        "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0",
        "ALPHA_VANTAGE_CALLS_PER_MINUTE": "1000",
        "ALPHA_VANTAGE_DAILY_LIMIT": "1000",
        "HTTP_READ_TIMEOUT": "10",
        "BATCH_SIZE": "2",
        "S3_BUCKET": bucket,
        "SLACK_WEBHOOK_URL": "",
    }


def start_run(env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "src.pipeline", "run", "--no-progress"]
    command += ["--symbols", ",".join(MOCK_SYMBOLS), "--start", START, "--end", END]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_to_end(env: dict) -> None:
    process = start_run(env)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    """SIGKILL the process as soon as `ready()` is true (polled every 10 ms).

    The CLI's background worker (it prepares the next batch) must die with it, or it would
    go on fetching for a run nobody waits for: checked here for every kill.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "the run finished before the kill point"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.01)
    children = psutil.Process(process.pid).children(recursive=True)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"processes left running after the CLI was killed: {alive}"


def warehouse_contents(db: Path) -> dict[str, list[tuple]]:
    """Every data table's rows without the audit columns, sorted."""
    conn = sqlite3.connect(db)
    try:
        contents = {}
        for name in DATA_TABLES:
            columns = [column for column in TABLES[name].column_names if column not in AUDIT_COLUMNS]
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM {name}").fetchall()
            contents[name] = sorted(rows, key=repr)
        return contents
    finally:
        conn.close()


def count_rows(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        conn.close()


def landed_checkpoints(env: dict) -> int:
    folder = Path(env["STATE_DIR"]) / "landed"
    return len(list(folder.glob("*/*.json"))) if folder.exists() else 0


@pytest.fixture(scope="module")
def reference_env(tmp_path_factory, slow_mock) -> dict:
    """The environment of a run that nobody killed (the reference), already run once."""
    env = pipeline_env(tmp_path_factory.mktemp("reference"), "reference", slow_mock.base_url)
    run_to_end(env)
    return env


@pytest.fixture(scope="module")
def uninterrupted(reference_env) -> dict[str, list[tuple]]:
    """The warehouse of the uninterrupted reference run."""
    contents = warehouse_contents(Path(reference_env["SQLITE_PATH"]))
    assert len(contents["fact_daily_prices"]) == 5 * 41  # 41 NYSE sessions from May 1 to June 28, 2024
    return contents


@pytest.mark.parametrize(
    ("kill_point", "ready"),
    [
        # mid-fetch: the third symbol's request has reached the server
        ("mid_fetch", lambda server, env: server.stats()["total_requests"] >= 3),
        # mid-load: the first batch is committed, the second is being fetched
        ("after_first_batch_loaded", lambda server, env: count_rows(Path(env["SQLITE_PATH"]), "fact_daily_prices") > 0),
    ],
)
def test_a_run_killed_mid_way_and_restarted_equals_an_uninterrupted_run(
    kill_point, ready, tmp_path, slow_mock, uninterrupted
):
    env = pipeline_env(tmp_path, kill_point, slow_mock.base_url)
    slow_mock.reset_counters()

    kill_when(start_run(env), lambda: ready(slow_mock, env))
    saved = landed_checkpoints(env)
    requests_before_restart = slow_mock.stats()["total_requests"]
    run_to_end(env)

    assert warehouse_contents(Path(env["SQLITE_PATH"])) == uninterrupted
    # Nothing already landed is fetched again: the restart asks only for the other symbols.
    assert 1 <= saved < len(MOCK_SYMBOLS)
    assert slow_mock.stats()["total_requests"] - requests_before_restart == len(MOCK_SYMBOLS) - saved
    runs = (
        sqlite3.connect(env["SQLITE_PATH"]).execute("SELECT status FROM pipeline_runs ORDER BY started_at").fetchall()
    )
    # The killed run never got to record its end: it stays "running"; the restart succeeded.
    assert runs == [("running",), ("success",)]


def test_a_run_killed_mid_landing_in_s3_reuses_the_landed_replies(
    tmp_path, slow_mock, uninterrupted, moto_server, fake_aws_credentials, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    bucket = f"recovery-{tmp_path.name[-20:].lower().replace('_', '-')}"
    env = pipeline_env(tmp_path, "s3", slow_mock.base_url, bucket=bucket)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")

    def landed() -> int:
        try:
            return s3.list_objects_v2(Bucket=bucket, Prefix="raw/").get("KeyCount", 0)
        except s3.exceptions.NoSuchBucket:
            return 0

    kill_when(start_run(env), lambda: landed() >= 2)
    saved = landed()
    requests_before_restart = slow_mock.stats()["total_requests"]
    run_to_end(env)

    assert warehouse_contents(Path(env["SQLITE_PATH"])) == uninterrupted
    assert 2 <= saved < len(MOCK_SYMBOLS)
    assert slow_mock.stats()["total_requests"] - requests_before_restart == len(MOCK_SYMBOLS) - saved
    assert landed() == len(MOCK_SYMBOLS)
    assert landed_checkpoints(env) == 0  # with S3 the raw objects are the checkpoints


def test_a_finished_run_repeated_fetches_nothing_and_changes_nothing(slow_mock, reference_env, uninterrupted):
    db = reference_env["SQLITE_PATH"]
    first = sqlite3.connect(db).execute("SELECT * FROM fact_daily_prices ORDER BY 1, 2").fetchall()
    requests = slow_mock.stats()["total_requests"]

    run_to_end(reference_env)

    assert slow_mock.stats()["total_requests"] == requests  # the quota is not spent twice
    again = sqlite3.connect(db).execute("SELECT * FROM fact_daily_prices ORDER BY 1, 2").fetchall()
    assert again == first  # audit columns included: unchanged rows are not rewritten
    assert warehouse_contents(Path(db)) == uninterrupted


# --- SIGINT and SIGTERM: a clean stop, recorded (issue 19 cases 5, 8 and 9) -------------------------


def signal_when(process: subprocess.Popen, signal_number: int, ready: Callable[[], bool], *, group: bool) -> str:
    """Send `signal_number` once `ready()` is true; wait for the CLI to exit; return its stderr.

    group=True signals the whole process group, as Ctrl-C in a terminal (or `docker stop` of a
    container's init) does: then the background worker receives the signal too. Every process
    of the run must be gone when the CLI has exited.
    """
    deadline = time.monotonic() + 60
    while not ready():
        assert process.poll() is None, "the run finished before the signal point"
        assert time.monotonic() < deadline, "the signal point was never reached"
        time.sleep(0.01)
    children = psutil.Process(process.pid).children(recursive=True)
    if group:
        os.killpg(process.pid, signal_number)
    else:
        os.kill(process.pid, signal_number)
    _, err = process.communicate(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"processes left running after the CLI stopped: {alive}"
    return err.decode()


def last_run(db: str) -> dict:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("SELECT * FROM pipeline_runs ORDER BY started_at DESC LIMIT 1").fetchone())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("signal_number", "group", "exit_code"),
    [
        (signal.SIGINT, False, 130),  # kill -INT <pid>
        (signal.SIGINT, True, 130),  # Ctrl-C in a terminal: the worker gets it too
        (signal.SIGTERM, False, 143),  # kill <pid>, systemd, Airflow stopping a task
        (signal.SIGTERM, True, 143),  # docker stop
    ],
    ids=["sigint", "ctrl-c-group", "sigterm", "sigterm-group"],
)
def test_a_signal_between_batches_stops_the_run_cleanly_records_it_interrupted_and_a_rerun_completes(
    signal_number, group, exit_code, tmp_path, slow_mock, uninterrupted, slack_catcher
):
    env = pipeline_env(tmp_path, "signal", slow_mock.base_url)
    env["SLACK_WEBHOOK_URL"] = slack_catcher.url
    db = env["SQLITE_PATH"]
    command = [sys.executable, "-m", "src.pipeline", "run", "--no-progress"]
    command += ["--symbols", ",".join(MOCK_SYMBOLS), "--start", START, "--end", END]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so killpg reaches only the run
    )

    err = signal_when(process, signal_number, lambda: count_rows(Path(db), "fact_daily_prices") > 0, group=group)

    assert process.returncode == exit_code, err
    assert "Traceback" not in err
    name = signal.Signals(signal_number).name
    assert f"interrupted by {name}" in err
    run = last_run(db)
    assert run["status"] == "interrupted"
    assert run["error"].startswith(f"interrupted by {name}")
    # What it says it loaded is what the warehouse holds (whole batches only).
    assert run["rows_loaded"] == count_rows(Path(db), "fact_daily_prices") > 0
    assert 0 < run["symbols_loaded"] < len(MOCK_SYMBOLS)
    [alert] = slack_catcher.payloads()
    assert "INTERRUPTED" in alert["text"] and f"interrupted by {name}" in alert["text"]

    # The health check never calls an interrupted run a success.
    from src.monitoring.health_checks import check_last_run
    from src.storage import sqlite_warehouse
    from src.storage.warehouse import Warehouse

    conn = sqlite_warehouse.connect(db)
    try:
        result = check_last_run(Warehouse("sqlite", sqlite_warehouse, conn))
    finally:
        conn.close()
    assert not result.ok and "ended interrupted" in result.message

    run_to_end(env)
    assert warehouse_contents(Path(db)) == uninterrupted
    assert last_run(db)["status"] == "success"


def test_a_signal_while_the_first_batch_is_fetched_records_an_interrupted_run_with_nothing_loaded(tmp_path, slow_mock):
    env = pipeline_env(tmp_path, "early-signal", slow_mock.base_url)
    slow_mock.reset_counters()
    process = start_run(env)

    err = signal_when(process, signal.SIGTERM, lambda: slow_mock.stats()["total_requests"] >= 1, group=False)

    assert process.returncode == 143, err
    assert "Traceback" not in err
    run = last_run(env["SQLITE_PATH"])
    assert (run["status"], run["rows_loaded"], run["symbols_loaded"]) == ("interrupted", 0, 0)


def test_a_killed_background_worker_stops_the_run_with_one_line_and_a_rerun_completes(
    tmp_path, slow_mock, uninterrupted
):
    """Issue 19 case 10: the worker killed (OOM killer, kill -9) used to end in a BrokenProcessPool traceback."""
    env = pipeline_env(tmp_path, "worker-killed", slow_mock.base_url)
    slow_mock.reset_counters()
    process = start_run(env)
    deadline = time.monotonic() + 60
    while slow_mock.stats()["total_requests"] < 1:  # the worker is fetching batch 1
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    # The pool's worker (not multiprocessing's resource tracker, the other child).
    [worker] = [
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline()) and "resource_tracker" not in " ".join(child.cmdline())
    ]
    worker.kill()
    _, err = process.communicate(timeout=60)

    assert process.returncode == 1, err.decode()
    assert b"Traceback" not in err
    [line] = [text for text in err.decode().splitlines() if text.startswith("error:")]
    assert "the background worker process that prepares batch 1 of 3 died" in line
    assert "PREPARE_IN_BACKGROUND=false" in line
    run = last_run(env["SQLITE_PATH"])
    assert run["status"] == "failed" and run["error"].startswith("BackgroundWorkerError")

    run_to_end(env)
    assert warehouse_contents(Path(env["SQLITE_PATH"])) == uninterrupted
