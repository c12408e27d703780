"""Faults at the pipeline level: each outside service broken in turn, against its real local stand-in.

Every test runs the pipeline itself (`run_pipeline`, the CLI's `main`, or CLI subprocesses)
and checks three things: the message says what failed and what to do, retries happen where
they can help, and no row is lost or doubled. docs/reliability.md lists each fault with its test.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from src import pipeline, steps
from src.config import PROJECT_ROOT, load_settings
from src.ingestion import alpha_vantage
from src.local_stack.mock_alpha_vantage import start_mock_server
from src.local_stack.synthetic_data import write_synthetic_universe
from src.storage import bigquery_handler, sqlite_warehouse
from src.storage.bigquery_handler import BigQueryLoadError
from tests.fixtures.moto_server import free_local_port
from tests.unit.test_yahoo_finance import yahoo_mock

pytestmark = pytest.mark.integration

SYMBOLS = ["AAPL", "MSFT", "IBM"]
START, END = pd.Timestamp("2024-06-03").date(), pd.Timestamp("2024-06-28").date()
SESSIONS = 19  # NYSE sessions from June 3 to June 28, 2024 (Juneteenth closed)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Synthetic CSVs for SYMBOLS: served by the mock Alpha Vantage and read by the file source."""
    folder = tmp_path / "data"
    write_synthetic_universe(folder, SYMBOLS, pd.Timestamp("2024-01-02").date(), END)
    return folder


@pytest.fixture
def mock_av(data_dir):
    server, thread, _ = start_mock_server(data_dir, timeout_seconds=2.0)
    yield server
    server.stop()
    thread.join(timeout=5)


def make_settings(tmp_path: Path, **overrides: str):
    values = {
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(tmp_path / "data"),
        "ALPHA_VANTAGE_API_KEY": "faults-test-key",  # pragma: allowlist secret - a dummy for the mock
        "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0",
        "ALPHA_VANTAGE_CALLS_PER_MINUTE": "1000",
        "HTTP_MAX_TRIES": "2",
        "HTTP_BACKOFF_SECONDS": "0",
        "HTTP_CONNECT_TIMEOUT": "0.5",
        "HTTP_READ_TIMEOUT": "5",
        "DATA_SOURCES": "alpha_vantage,file",
        "S3_BUCKET": "",
        "SLACK_WEBHOOK_URL": "",
    }
    values.update(overrides)
    return load_settings(env_file=tmp_path / "none.env", overrides=values)


def price_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT symbol, trade_date, close, source FROM fact_daily_prices ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


def assert_all_loaded_once(db: Path) -> None:
    rows = price_rows(db)
    assert len(rows) == len(SYMBOLS) * SESSIONS
    assert len({(symbol, day) for symbol, day, *_ in rows}) == len(rows)  # nothing doubled


# --- S3 ---------------------------------------------------------------------------------------


def run_cli(settings_env: dict, monkeypatch, *args: str) -> int:
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIPELINE_ENV_FILE", "/nonexistent.env")
    return pipeline.main(["run", "--no-progress", "--symbols", ",".join(SYMBOLS), *args])


def test_s3_endpoint_down_stops_the_run_with_what_to_do_and_records_it(
    tmp_path, data_dir, monkeypatch, capsys, fake_aws_credentials
):
    dead = f"http://127.0.0.1:{free_local_port()}"
    env = {
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(data_dir),
        "DATA_SOURCES": "file",
        "S3_BUCKET": "cloudscale-raw",
        "AWS_ENDPOINT_URL": dead,
        "HTTP_MAX_TRIES": "1",
        "HTTP_CONNECT_TIMEOUT": "0.5",
    }

    code = run_cli(env, monkeypatch, "--start", str(START), "--end", str(END))

    assert code == pipeline.EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert f"Cannot reach S3 at {dead} (bucket cloudscale-raw). Is the local stack running?" in err
    conn = sqlite3.connect(tmp_path / "warehouse.db")
    status, error = conn.execute("SELECT status, error FROM pipeline_runs").fetchone()
    assert status == "failed" and error.startswith("S3StorageError: Cannot reach S3")
    assert price_rows(tmp_path / "warehouse.db") == []  # nothing half-loaded


def test_a_missing_bucket_without_permission_to_create_it_says_how_to_fix_it(
    tmp_path, data_dir, monkeypatch, capsys, moto_server, fake_aws_credentials
):
    env = {
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(data_dir),
        "DATA_SOURCES": "file",
        "S3_BUCKET": "no-such-bucket-here",
        "S3_CREATE_BUCKET": "false",
        "AWS_ENDPOINT_URL": moto_server,
    }

    code = run_cli(env, monkeypatch, "--start", str(START), "--end", str(END))

    assert code == pipeline.EXIT_SOME_FAILED
    assert "S3 bucket no-such-bucket-here does not exist" in capsys.readouterr().err
    assert (
        "set S3_CREATE_BUCKET=true or create the bucket first"
        in sqlite3.connect(tmp_path / "warehouse.db").execute("SELECT error FROM pipeline_runs").fetchone()[0]
    )


# --- Alpha Vantage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "requests_per_symbol", "logged"),
    [
        ("error500", 2, "try 1/2 failed (HTTP 500)"),  # retried by the HTTP helper, then fallback
        ("timeout", 2, "ReadTimeout"),  # the reply never comes in time: retried, then fallback
        ("throttle", 3, "still throttled after 2 retries"),  # waits a window, retries twice
        ("html", 2, "unusable reply 2 times"),
    ],
)
def test_alpha_vantage_failing_falls_back_to_the_next_source_after_the_useful_retries(
    mode, requests_per_symbol, logged, tmp_path, mock_av, monkeypatch, caplog
):
    monkeypatch.setattr(alpha_vantage, "THROTTLE_WAIT_SECONDS", 0.0)  # no real 60 s waits
    mock_av.set_mode(mode)
    settings = make_settings(tmp_path, ALPHA_VANTAGE_BASE_URL=mock_av.base_url, HTTP_READ_TIMEOUT="0.3")

    summary = steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False)

    assert summary.status == "success"
    assert mock_av.stats()["requests_by_symbol"] == {symbol: requests_per_symbol for symbol in SYMBOLS}
    assert logged in caplog.text
    assert_all_loaded_once(settings.sqlite_path)


def test_the_daily_quota_running_out_mid_run_sends_the_rest_to_the_fallback_without_requests(tmp_path, data_dir):
    server, thread, base_url = start_mock_server(data_dir, daily_limit=1)
    try:
        settings = make_settings(tmp_path, ALPHA_VANTAGE_BASE_URL=base_url)
        summary = steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False)
        # AAPL got its prices; its SPLITS call got the quota reply (the prices stay good);
        # MSFT and IBM were never asked.
        assert server.stats()["requests_by_symbol"] == {"AAPL": 2}
        assert server.stats()["requests_by_function"] == {"TIME_SERIES_DAILY": 1, "SPLITS": 1}
        assert summary.status == "success"
        assert_all_loaded_once(settings.sqlite_path)

        # The used-up quota is remembered: a second run today does not call at all.
        steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False)
        assert server.stats()["total_requests"] == 2
        assert_all_loaded_once(settings.sqlite_path)
    finally:
        server.stop()
        thread.join(timeout=5)


# --- Yahoo --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["rate_limited", "outage"])
def test_yahoo_rate_limited_or_down_falls_back_to_the_file_source(fault, tmp_path, data_dir, caplog):
    settings = make_settings(tmp_path, DATA_SOURCES="yahoo,file", YAHOO_MAX_RETRIES="1")
    with yahoo_mock(tmp_path / "yfinance-cache") as fake:
        if fault == "rate_limited":
            fake.queued = [(429, "Too Many Requests")] * 100
        else:
            fake.outage = True
        summary = steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False, session=requests.Session())

    assert summary.status == "success"
    expected = "still rate-limited (HTTP 429) after 2 tries" if fault == "rate_limited" else "yahoo"
    assert expected in caplog.text
    assert_all_loaded_once(settings.sqlite_path)


# --- Both sources down for one symbol; Slack -----------------------------------------------------


def test_a_symbol_no_source_can_serve_is_recorded_alerted_and_the_others_load(tmp_path, mock_av, slack_catcher):
    settings = make_settings(tmp_path, ALPHA_VANTAGE_BASE_URL=mock_av.base_url, SLACK_WEBHOOK_URL=slack_catcher.url)

    summary = steps.run_pipeline([*SYMBOLS, "NOPE"], START, END, settings, show_progress=False)

    assert summary.status == "partial"
    assert summary.loaded == SYMBOLS
    assert summary.failed["NOPE"].startswith("every source failed (alpha_vantage: unknown symbol: Invalid API call.")
    assert "file: no price file" in summary.failed["NOPE"]
    assert_all_loaded_once(settings.sqlite_path)
    status, failed = (
        sqlite3.connect(settings.sqlite_path).execute("SELECT status, failed_symbols FROM pipeline_runs").fetchone()
    )
    assert status == "partial" and '"NOPE": "every source failed' in failed
    [alert] = slack_catcher.payloads()
    assert alert["text"].startswith(f"Pipeline run {summary.run_id} for {END}: PARTIAL: 3 of 4 symbols loaded.")
    assert "NOPE: every source failed" in alert["text"]


def test_slack_down_never_fails_the_run(tmp_path, mock_av, slack_catcher, caplog):
    slack_catcher.set_fail_mode("500")
    settings = make_settings(tmp_path, ALPHA_VANTAGE_BASE_URL=mock_av.base_url, SLACK_WEBHOOK_URL=slack_catcher.url)

    summary = steps.run_pipeline([*SYMBOLS, "NOPE"], START, END, settings, show_progress=False)

    assert summary.status == "partial"
    assert slack_catcher.post_count == 3  # retried, then given up
    assert "Slack alert not delivered" in caplog.text
    assert "ALERT: Pipeline run" in caplog.text  # the alert is still in the log
    assert_all_loaded_once(settings.sqlite_path)


# --- Warehouse ----------------------------------------------------------------------------------


def test_a_failing_bigquery_load_job_merges_nothing_and_a_rerun_loads_everything(
    tmp_path, data_dir, bq_settings, monkeypatch
):
    settings = make_settings(
        tmp_path,
        DATA_SOURCES="file",
        WAREHOUSE_BACKEND="bigquery",
        GCP_PROJECT_ID=bq_settings.gcp_project_id,
        BIGQUERY_DATASET=bq_settings.bigquery_dataset,
        BIGQUERY_API_ENDPOINT=bq_settings.bigquery_api_endpoint,
    )
    real_ndjson = bigquery_handler.frame_to_ndjson

    def one_bad_value(table, frame):
        # A value the load job must reject, as a corrupted upstream value would be.
        if table.name == "fact_daily_prices":
            frame = frame.astype({"close": object})
            frame.iloc[0, frame.columns.get_loc("close")] = "n/a"
        return real_ndjson(table, frame)

    monkeypatch.setattr(bigquery_handler, "frame_to_ndjson", one_bad_value)
    with pytest.raises(BigQueryLoadError, match="fact_daily_prices: load job .* failed"):
        steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False)
    wh = bigquery_handler.connect(settings)
    try:
        assert bigquery_handler.query(wh, "SELECT COUNT(*) AS n FROM fact_daily_prices")["n"].tolist() == [0]
        assert bigquery_handler.query(wh, "SELECT COUNT(*) AS n FROM fact_technical_indicators")["n"].tolist() == [0]
        run = bigquery_handler.query(wh, "SELECT status, error FROM pipeline_runs")
        assert run["status"].tolist() == ["failed"] and run["error"][0].startswith("BigQueryLoadError")

        monkeypatch.setattr(bigquery_handler, "frame_to_ndjson", real_ndjson)
        assert steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False).status == "success"
        counts = bigquery_handler.query(
            wh,
            "SELECT COUNT(*) AS n, COUNT(DISTINCT CONCAT(symbol, CAST(trade_date AS STRING))) AS k "
            "FROM fact_daily_prices",
        )
        assert counts.to_dict("records") == [{"n": len(SYMBOLS) * SESSIONS, "k": len(SYMBOLS) * SESSIONS}]
    finally:
        wh.close()


LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    """Another process takes the warehouse's write lock for `seconds` (like a DB browser would)."""
    process = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"locked"
    return process


def test_a_warehouse_locked_for_a_moment_is_waited_for(tmp_path, data_dir):
    settings = make_settings(tmp_path, DATA_SOURCES="file")
    sqlite_warehouse.connect(settings.sqlite_path).close()  # the file exists, in WAL mode
    holder = hold_write_lock(settings.sqlite_path, 1.0)

    summary = steps.run_pipeline(SYMBOLS, START, END, settings, show_progress=False)

    holder.wait(timeout=10)
    assert summary.status == "success"
    assert_all_loaded_once(settings.sqlite_path)


def test_a_warehouse_locked_too_long_stops_the_cli_with_what_to_do(tmp_path, data_dir, monkeypatch, capsys):
    db = tmp_path / "warehouse.db"
    sqlite_warehouse.connect(db).close()
    # A short busy timeout stands in for the 30 s default, so the test does not wait 30 s.
    monkeypatch.setattr(
        sqlite_warehouse, "connect", functools.partial(sqlite_warehouse.connect, busy_timeout_seconds=0.3)
    )
    holder = hold_write_lock(db, 5.0)
    try:
        env = {
            "SQLITE_PATH": str(db),
            "STATE_DIR": str(tmp_path / "state"),
            "FILE_SOURCE_DIR": str(data_dir),
            "DATA_SOURCES": "file",
            "S3_BUCKET": "",
        }
        code = run_cli(env, monkeypatch, "--start", str(START), "--end", str(END))
    finally:
        holder.kill()
        holder.wait(timeout=10)

    assert code == pipeline.EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert f"SQLite warehouse {db} is locked" in err
    assert "let that finish (or close the tool) and rerun" in err
    # It stopped before writing anything: not even the tables were created.
    assert sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []


def test_two_runs_for_the_same_date_at_once_leave_each_row_once(tmp_path, data_dir):
    """A manual trigger during the scheduled run: both finish, and the tables equal one run's."""
    env = {
        **os.environ,
        "PIPELINE_ENV_FILE": str(tmp_path / "none.env"),
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(data_dir),
        "DATA_SOURCES": "file",
        "BATCH_SIZE": "1",
        "S3_BUCKET": "",
    }
    command = [sys.executable, "-m", "src.pipeline", "run", "--no-progress", "--symbols", ",".join(SYMBOLS)]
    command += ["--start", str(START), "--end", str(END)]
    runs = [
        subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err.decode() for _, err in outputs]
    assert_all_loaded_once(tmp_path / "warehouse.db")
    reference = tmp_path / "reference.db"
    subprocess.run(
        command, cwd=PROJECT_ROOT, env={**env, "SQLITE_PATH": str(reference)}, check=True, capture_output=True
    )
    assert price_rows(tmp_path / "warehouse.db") == price_rows(reference)
    conn = sqlite3.connect(tmp_path / "warehouse.db")
    assert conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT symbol || trade_date) FROM fact_technical_indicators"
    ).fetchone() == (
        len(SYMBOLS) * SESSIONS,
        len(SYMBOLS) * SESSIONS,
    )
    assert conn.execute("SELECT status FROM pipeline_runs").fetchall() == [("success",), ("success",)]


def indicator_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        columns = "symbol, trade_date, sma_20, sma_50, rsi_14, vwap_20, daily_return"
        return conn.execute(f"SELECT {columns} FROM fact_technical_indicators ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


def test_two_runs_of_adjacent_ranges_at_once_compute_the_later_range_with_the_earlier_history(tmp_path, data_dir):
    """Issue 19 case 4: the look-back read waits for the other run's write (one load transaction)."""
    env = {
        **os.environ,
        "PIPELINE_ENV_FILE": str(tmp_path / "none.env"),
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(data_dir),
        "DATA_SOURCES": "file",
        "BATCH_SIZE": "3",
        "S3_BUCKET": "",
    }
    command = [sys.executable, "-m", "src.pipeline", "run", "--no-progress", "--symbols", ",".join(SYMBOLS)]
    ranges = [("2024-01-02", "2024-03-28"), ("2024-04-01", str(END))]
    runs = [
        subprocess.Popen(
            [*command, "--start", first, "--end", last],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for first, last in ranges
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err.decode() for _, err in outputs]

    reference = tmp_path / "reference.db"
    subprocess.run(
        [*command, "--start", "2024-01-02", "--end", str(END)],
        cwd=PROJECT_ROOT,
        env={**env, "SQLITE_PATH": str(reference), "STATE_DIR": str(tmp_path / "state-reference")},
        check=True,
        capture_output=True,
    )
    together, one_run = indicator_rows(tmp_path / "warehouse.db"), indicator_rows(reference)
    differing = [row for row, expected in zip(together, one_run, strict=True) if row != pytest.approx(expected)]
    assert differing == [], f"{len(differing)} of {len(one_run)} indicator rows differ from one full run"


# --- Full disks, unusable paths, a lock that outlasts the busy timeout (issue 19 cases 9, 10) --------


@pytest.fixture
def small_tmpfs(tmp_path):
    """mount(size, read_only=False) -> a folder on a real tmpfs of that size (needs root; else skipped)."""
    mounted: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        folder = tmp_path / f"tmpfs-{len(mounted)}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_up(folder: Path) -> None:
    """Write a filler file until the disk under `folder` has no space left."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass


def cli_process_env(tmp_path: Path, **overrides: str) -> dict:
    env = {
        **os.environ,
        "PIPELINE_ENV_FILE": str(tmp_path / "none.env"),
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(tmp_path / "data"),
        "DATA_SOURCES": "file",
        "BATCH_SIZE": "1",
        "S3_BUCKET": "",
        "SLACK_WEBHOOK_URL": "",
    }
    env.update(overrides)
    return env


def run_cli_process(env: dict, start: str = "2024-01-02", end: str = str(END)) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "src.pipeline", "run", "--no-progress", "--symbols", ",".join(SYMBOLS)]
    return subprocess.run(
        [*command, "--start", start, "--end", end], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120
    )


def error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.startswith("error:")]


def test_a_full_disk_under_sqlite_path_stops_the_run_with_one_line_records_it_and_alerts(
    tmp_path, data_dir, small_tmpfs, slack_catcher
):
    disk = small_tmpfs("400k")
    db = disk / "warehouse.db"
    result = run_cli_process(cli_process_env(tmp_path, SQLITE_PATH=str(db), SLACK_WEBHOOK_URL=slack_catcher.url))

    assert result.returncode == pipeline.EXIT_SOME_FAILED
    assert b"Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"the disk holding the SQLite warehouse {db} (SQLITE_PATH) is full" in line
    assert "Free space on that disk" in line
    status, error = sqlite3.connect(db).execute("SELECT status, error FROM pipeline_runs").fetchone()
    assert status == "failed" and error.startswith("WarehouseFullError: the disk holding")
    [alert] = slack_catcher.payloads()
    assert "FAILED" in alert["text"] and "is full" in alert["text"]


def test_a_disk_that_fills_up_mid_run_still_gets_the_run_recorded_failed_and_alerted(
    tmp_path, data_dir, small_tmpfs, slack_catcher, monkeypatch, capsys
):
    """The disk fills up after the `running` row: the batch is rolled back and the small run row
    still fits (SQLite reuses the rolled-back WAL frames), so the failure is recorded. (When the
    warehouse cannot be written at all, see the lock test below: the log and the alert say so.)"""
    disk = small_tmpfs("2m")
    db = disk / "warehouse.db"
    real_load = steps.load_batch

    def fill_the_disk_first(*args, **kwargs):
        fill_up(disk)  # after the run's `running` row, before its first batch
        return real_load(*args, **kwargs)

    monkeypatch.setattr(steps, "load_batch", fill_the_disk_first)
    env = {"SQLITE_PATH": str(db), "STATE_DIR": str(tmp_path / "state"), "FILE_SOURCE_DIR": str(data_dir)}
    env |= {"DATA_SOURCES": "file", "S3_BUCKET": "", "SLACK_WEBHOOK_URL": slack_catcher.url}
    code = run_cli(env, monkeypatch, "--start", str(START), "--end", str(END))

    assert code == pipeline.EXIT_SOME_FAILED
    assert f"the disk holding the SQLite warehouse {db} (SQLITE_PATH) is full" in capsys.readouterr().err
    status, error = sqlite3.connect(db).execute("SELECT status, error FROM pipeline_runs").fetchone()
    assert status == "failed" and error.startswith("WarehouseFullError")
    assert price_rows(db) == []
    [alert] = slack_catcher.payloads()
    assert "FAILED" in alert["text"] and "is full" in alert["text"]


def unusable_sqlite_path(tmp_path: Path, kind: str) -> Path:
    """A SQLITE_PATH that cannot be a SQLite file: a text file, a folder, or a path under a file."""
    if kind == "text-file":
        (tmp_path / "notes.txt").write_text("not a database\n")
        return tmp_path / "notes.txt"
    if kind == "directory":
        (tmp_path / "a-folder").mkdir()
        return tmp_path / "a-folder"
    (tmp_path / "plain").write_text("x")
    return tmp_path / "plain" / "warehouse.db"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text-file", "is not a SQLite database"),
        ("directory", "is a directory"),
        ("under-a-file", "which is a regular file"),
    ],
)
def test_an_unusable_sqlite_path_is_a_configuration_error_exit_2(tmp_path, data_dir, kind, message):
    path = unusable_sqlite_path(tmp_path, kind)
    result = run_cli_process(cli_process_env(tmp_path, SQLITE_PATH=str(path)))

    assert result.returncode == pipeline.EXIT_BAD_INPUT
    assert b"Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: SQLITE_PATH={path} ")
    assert message in line and line.endswith(
        "set SQLITE_PATH to a SQLite file (it is created if missing) in a writable folder"
    )


@pytest.mark.parametrize("problem", ["regular-file", "read-only", "full"])
def test_an_unusable_state_dir_stops_the_run_with_one_line(
    problem, tmp_path, data_dir, mock_av, small_tmpfs, slack_catcher
):
    if problem == "regular-file":
        state = tmp_path / "state-file"
        state.write_text("x")
    elif problem == "read-only":
        state = small_tmpfs("1m", read_only=True)
    else:
        state = small_tmpfs("64k")
        fill_up(state)
    env = cli_process_env(
        tmp_path,
        STATE_DIR=str(state),
        DATA_SOURCES="alpha_vantage",  # it keeps landed replies and its quota in STATE_DIR
        ALPHA_VANTAGE_API_KEY="faults-test-key",  # pragma: allowlist secret - a dummy for the mock
        ALPHA_VANTAGE_BASE_URL=mock_av.base_url,
        ALPHA_VANTAGE_MIN_INTERVAL_SECONDS="0",
        SLACK_WEBHOOK_URL=slack_catcher.url,
    )
    result = run_cli_process(env, start=str(START))

    expected_code = pipeline.EXIT_SOME_FAILED if problem == "full" else pipeline.EXIT_BAD_INPUT
    assert result.returncode == expected_code, result.stderr.decode()[-2000:]
    assert b"Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"STATE_DIR={state}" in line
    assert mock_av.stats()["total_requests"] == 0  # refused before any quota is spent
    status, error = (
        sqlite3.connect(tmp_path / "warehouse.db").execute("SELECT status, error FROM pipeline_runs").fetchone()
    )
    assert status == "failed" and "STATE_DIR" in error
    assert len(slack_catcher.payloads()) == 1


def test_a_writer_lock_held_past_the_busy_timeout_mid_run_is_logged_and_alerted(
    tmp_path, data_dir, monkeypatch, capsys, caplog, slack_catcher
):
    db = tmp_path / "warehouse.db"
    monkeypatch.setattr(
        sqlite_warehouse, "connect", functools.partial(sqlite_warehouse.connect, busy_timeout_seconds=0.3)
    )
    real_load = steps.load_batch
    holders = []

    def lock_before_the_first_batch(*args, **kwargs):
        if not holders:  # another tool takes the write lock after the run has started
            holders.append(hold_write_lock(db, 5.0))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(steps, "load_batch", lock_before_the_first_batch)
    env = {"SQLITE_PATH": str(db), "STATE_DIR": str(tmp_path / "state"), "FILE_SOURCE_DIR": str(data_dir)}
    env |= {"DATA_SOURCES": "file", "S3_BUCKET": "", "SLACK_WEBHOOK_URL": slack_catcher.url}
    try:
        code = run_cli(env, monkeypatch, "--start", str(START), "--end", str(END))
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(timeout=10)

    assert code == pipeline.EXIT_SOME_FAILED
    assert f"SQLite warehouse {db} is locked" in capsys.readouterr().err
    # The lock outlasts the busy timeout for the record too: the log and the alert say so.
    assert "could NOT be recorded in pipeline_runs: WarehouseLockedError" in caplog.text
    [alert] = slack_catcher.payloads()
    assert "FAILED" in alert["text"] and "NOT recorded in pipeline_runs" in alert["text"]
    assert "is locked" in alert["text"]


def test_two_runs_of_adjacent_ranges_at_once_on_bigquery_see_each_others_history(tmp_path, data_dir, bq_settings):
    """Issue 19 case 4 on BigQuery: the per-dataset load lock (bigquery_handler.load_transaction)."""
    bq = {
        "WAREHOUSE_BACKEND": "bigquery",
        "GCP_PROJECT_ID": bq_settings.gcp_project_id,
        "BIGQUERY_DATASET": bq_settings.bigquery_dataset,
        "BIGQUERY_LOCATION": bq_settings.bigquery_location,
        "BIGQUERY_API_ENDPOINT": bq_settings.bigquery_api_endpoint,
    }
    env = cli_process_env(tmp_path, BATCH_SIZE="3", FILE_SOURCE_DIR=str(data_dir), **bq)
    command = [sys.executable, "-m", "src.pipeline", "run", "--no-progress", "--symbols", ",".join(SYMBOLS)]
    ranges = [("2024-01-02", "2024-03-28"), ("2024-04-01", str(END))]
    runs = [
        subprocess.Popen(
            [*command, "--start", first, "--end", last],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for first, last in ranges
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err.decode()[-3000:] for _, err in outputs]

    reference = tmp_path / "reference.db"
    subprocess.run(
        [*command, "--start", "2024-01-02", "--end", str(END)],
        cwd=PROJECT_ROOT,
        env=cli_process_env(tmp_path, SQLITE_PATH=str(reference), BATCH_SIZE="3", FILE_SOURCE_DIR=str(data_dir)),
        check=True,
        capture_output=True,
    )
    wh = bigquery_handler.connect(bq_settings)
    try:
        stored = bigquery_handler.query(
            wh,
            f"SELECT symbol, CAST(trade_date AS STRING) AS trade_date, sma_20, sma_50, rsi_14, vwap_20, daily_return "
            f"FROM `{wh.table_id('fact_technical_indicators')}` ORDER BY 1, 2",
        )
    finally:
        wh.close()
    together = [tuple(row) for row in stored.astype(object).where(stored.notna(), None).itertuples(index=False)]
    one_run = indicator_rows(reference)
    assert len(together) == len(one_run)
    differing = [row for row, expected in zip(together, one_run, strict=True) if row != pytest.approx(expected)]
    assert differing == [], f"{len(differing)} of {len(one_run)} indicator rows differ from one full run"


def test_a_bigquery_load_lock_held_past_the_wait_stops_the_cli_with_one_line(tmp_path, data_dir, bq_settings):
    """Issue 19 case 9/10 on BigQuery: another load holds `<dataset>._load_lock` for longer than
    BIGQUERY_LOCK_WAIT_SECONDS: one `error:` line, exit 1, no traceback; the run is recorded failed."""
    bq = {
        "WAREHOUSE_BACKEND": "bigquery",
        "GCP_PROJECT_ID": bq_settings.gcp_project_id,
        "BIGQUERY_DATASET": bq_settings.bigquery_dataset,
        "BIGQUERY_LOCATION": bq_settings.bigquery_location,
        "BIGQUERY_API_ENDPOINT": bq_settings.bigquery_api_endpoint,
        "BIGQUERY_LOCK_WAIT_SECONDS": "2",
    }
    holder = bigquery_handler.connect(bq_settings)
    bigquery_handler.create_schema(holder)
    with bigquery_handler.load_transaction(holder):
        result = subprocess.run(
            [sys.executable, "-m", "src.pipeline", "run", "--no-progress", "--symbols", "IBM",
             "--start", "2024-06-03", "--end", str(END)],
            cwd=PROJECT_ROOT,
            env=cli_process_env(tmp_path, FILE_SOURCE_DIR=str(data_dir), **bq),
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "_load_lock" in error_lines[0] and "is locked" in error_lines[0]
    runs = [row["status"] for row in holder.client.query(f"SELECT status FROM `{holder.table_id('pipeline_runs')}`")]
    holder.close()
    assert runs == ["failed"]
