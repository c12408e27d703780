"""The local stack through its front door: scripts/run-local.sh, then Airflow's UI in Chromium.

The test starts the stack the way a developer does (`scripts/run-local.sh start`), on free
ports and with every folder in the test's tmp dir, opens the UI in headless Chromium
(Playwright), presses **Trigger** on daily_etl_pipeline, and waits until the run succeeds.
Screenshots of the grid and graph views are saved to docs/screenshots/. Finally
`scripts/run-local.sh stop` must stop every service it started.

Needs Chromium at /usr/bin/chromium (`apt-get install -y chromium`; run-tests.sh installs it); fails without it.
Slow (a few minutes on 2 busy cores): Airflow's DB migration and start-up dominate.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from src.local_stack.browser import CHROMIUM, launch_chromium
from tests.fixtures.airflow_env import PROJECT_ROOT
from tests.fixtures.moto_server import free_local_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RUN_LOCAL = PROJECT_ROOT / "scripts" / "run-local.sh"
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
DAG_ID = "daily_etl_pipeline"
SYMBOLS = ("AAPL", "MSFT", "GOOG")
START_TIMEOUT_SECONDS = 420  # migration + start-up of every service, on a loaded machine
RUN_TIMEOUT_SECONDS = 300


def run_local(command: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RUN_LOCAL), command], env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT
    )


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    """The local stack started by `scripts/run-local.sh start` in a tmp dir; stopped after the module.

    One stack for every test here: starting Airflow takes minutes. The tests run in file order;
    the UI test first, on a warehouse that holds only what its own run loads.
    """
    from src.local_stack.synthetic_data import write_synthetic_universe
    from src.market_calendar import latest_completed_session

    # Fail, not skip: scripts/run-tests.sh installs Chromium, so a missing one is a set-up bug.
    assert Path(CHROMIUM).exists(), "Chromium is not installed (apt-get install -y chromium)"

    # The day a run triggered now will load (unless a session closes during the test).
    trading_day = latest_completed_session()
    tmp_path = tmp_path_factory.mktemp("local-stack")
    offline = tmp_path / "offline"
    # More than the year of history `run-local.sh history` loads (the demo test).
    write_synthetic_universe(offline, list(SYMBOLS), trading_day - timedelta(days=400), trading_day)

    ports = {name: free_local_port() for name in ("AIRFLOW_PORT", "MOTO_PORT", "MOCK_AV_PORT", "SLACK_PORT")}
    # A clean environment: nothing from the test session's own Airflow or a developer's .env.
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update({name: str(port) for name, port in ports.items()})
    env.update(
        {
            "LOCAL_STACK_DIR": str(tmp_path / "local"),
            "OFFLINE_DATA_DIR": str(offline),
            "SQLITE_PATH": str(tmp_path / "warehouse.db"),
            "STATE_DIR": str(tmp_path / "state"),
            "ALERTS_LOG": str(tmp_path / "alerts.log"),
            "PIPELINE_ENV_FILE": str(tmp_path / "no.env"),
            "SYMBOLS": ",".join(SYMBOLS),
            # No cron runs in this test: only the run the test triggers, so it stays short.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        }
    )
    stack = {
        "env": env,
        "ui": f"http://127.0.0.1:{ports['AIRFLOW_PORT']}",
        "sqlite_path": tmp_path / "warehouse.db",
        "pid_dir": tmp_path / "local" / "pids",
        "log_dir": tmp_path / "local" / "logs",
        "trading_day": trading_day.isoformat(),
        "tmp_path": tmp_path,
        "alerts_log": tmp_path / "alerts.log",
    }
    try:
        started = run_local("start", env, START_TIMEOUT_SECONDS)
        assert started.returncode == 0, f"run-local.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield stack
    finally:
        stopped = run_local("stop", env, 300)
        assert stopped.returncode == 0, f"run-local.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"
        assert sorted(path.name for path in stack["pid_dir"].glob("*.pid")) == []


def wait_for_finished_run(ui: str, run_id: str | None = None) -> dict:
    """Poll the REST API until the DAG's newest run (or run `run_id`) has finished; return it."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        if run_id:
            found = requests.get(f"{ui}/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}", timeout=30)
            found.raise_for_status()
            newest = found.json()
        else:
            runs = requests.get(f"{ui}/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "-run_after"}, timeout=30)
            runs.raise_for_status()
            newest = runs.json()["dag_runs"][0] if runs.json()["dag_runs"] else None
        if newest and newest["state"] in ("success", "failed"):
            return newest
        assert time.monotonic() < deadline, f"no finished run after {RUN_TIMEOUT_SECONDS} s: {newest}"
        time.sleep(3)


def test_trigger_from_the_ui_runs_the_pipeline(local_stack):
    from playwright.sync_api import expect, sync_playwright

    ui = local_stack["ui"]
    assert requests.get(f"{ui}/api/v2/monitor/health", timeout=30).json()["scheduler"]["status"] == "healthy"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{ui}/dags/{DAG_ID}", timeout=60_000)

            # The Trigger dialog: a single run, "unpause on trigger" ticked, default params.
            page.get_by_role("button", name="Trigger Dag").click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Unpause daily_etl_pipeline on trigger")).to_be_visible(timeout=30_000)
            dialog.get_by_role("button", name="Trigger", exact=True).click()
            expect(dialog).to_be_hidden(timeout=30_000)

            run = wait_for_finished_run(ui)
            assert run["state"] == "success", run
            assert run["run_type"] == "manual"

            # The UI shows it too: the run's page (grid on the left, task instances on the right).
            page.goto(f"{ui}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'], safe='')}", timeout=60_000)
            expect(page.get_by_text("Success").first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("8 Task Instances")).to_be_visible(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "airflow-grid-view.png"))

            page.get_by_role("button", name="Show Graph (Press g)").click()
            expect(page.get_by_text("check_data_quality").last).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)  # let the graph layout settle before the picture
            page.screenshot(path=str(SCREENSHOTS / "airflow-graph-view.png"))
        finally:
            browser.close()

    # And the warehouse has the run: three symbols loaded for the latest closed session.
    with sqlite3.connect(local_stack["sqlite_path"]) as conn:
        recorded = conn.execute(
            "SELECT logical_date, status, symbols_loaded, rows_loaded FROM pipeline_runs WHERE run_id = ?",
            (run["dag_run_id"],),
        ).fetchone()
        loaded = conn.execute("SELECT symbol, trade_date, source FROM fact_daily_prices ORDER BY symbol").fetchall()
    assert recorded == (local_stack["trading_day"], "success", 3, 3)
    assert loaded == [(symbol, local_stack["trading_day"], "synthetic") for symbol in sorted(SYMBOLS)]

    # Every service logged into the one folder the summary names.
    assert sorted(path.name for path in local_stack["log_dir"].glob("*.log")) == sorted(
        [
            "airflow-setup.log",
            "api-server.log",
            "dag-processor.log",
            "mock-alpha-vantage.log",
            "moto.log",
            "scheduler.log",
            "slack-catcher.log",
            "triggerer.log",
        ]
    )


# --- The demo of docs/demo-guide.md, from the first screen to the recovery ------------------------

SIMULATE_FAILURE = PROJECT_ROOT / "scripts" / "simulate-failure.sh"
# The body the Airflow 3.3 UI sends when a person presses Clear on one task instance and confirms
# the dialog without changing anything: "Downstream" is the only option ticked by default
# (airflow/ui, ClearTaskInstanceDialog: useState(["downstream"])).
UI_CLEAR_DEFAULTS = {
    "dry_run": False,
    "include_downstream": True,
    "include_future": False,
    "include_past": False,
    "include_upstream": False,
    "only_failed": False,
}


def script(path: Path, command: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(path), command], env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT
    )


def alerts_in(log: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


def pipeline_runs(sqlite_path: Path) -> dict[str, dict]:
    with sqlite3.connect(sqlite_path) as conn:
        conn.row_factory = sqlite3.Row
        return {row["run_id"]: dict(row) for row in conn.execute("SELECT * FROM pipeline_runs")}


@pytest.mark.slow
def test_the_demo_starts_healthy_fails_once_and_recovers_by_clearing(local_stack):
    from playwright.sync_api import sync_playwright

    env, ui, warehouse = local_stack["env"], local_stack["ui"], local_stack["sqlite_path"]
    env = {**env, "WAIT_SECONDS": str(RUN_TIMEOUT_SECONDS)}
    timings = {}

    # 1. What `run-local.sh` does after starting the services: a year of history, then a run.
    clock = time.monotonic()
    history = run_local("history", env, 600)
    assert history.returncode == 0, f"{history.stdout}\n{history.stderr}"
    assert "(253 NYSE sessions: one year)" in history.stdout
    timings["history"] = time.monotonic() - clock
    clock = time.monotonic()
    first = run_local("trigger", env, RUN_TIMEOUT_SECONDS + 120)
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
    timings["daily run"] = time.monotonic() - clock

    # 2. The first screen is healthy: the health endpoint and the dashboard's rendered page.
    health = requests.get(f"{ui}/pipeline-health/health", timeout=60)
    assert health.status_code == 200, health.json()
    page_path = local_stack["tmp_path"] / "dashboard.html"
    built = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "python"), "-m", "src.monitoring.dashboard", "--out", str(page_path)],
        env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            summary = page.locator(".summary").inner_text()
        finally:
            browser.close()
    assert "HEALTHY" in summary and "UNHEALTHY" not in summary, summary
    alerts_before = len(alerts_in(local_stack["alerts_log"]))

    # 3. The outage: a run that may only use Alpha Vantage fails, with one final alert.
    assert script(SIMULATE_FAILURE, "on", env, 60).returncode == 0
    clock = time.monotonic()
    failing = script(SIMULATE_FAILURE, "run", env, RUN_TIMEOUT_SECONDS + 120)
    timings["failing run"] = time.monotonic() - clock
    assert failing.returncode == 0, f"{failing.stdout}\n{failing.stderr}"
    assert "ended: failed" in failing.stdout
    runs = requests.get(f"{ui}/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "-run_after"}, timeout=30)
    run_id = runs.json()["dag_runs"][0]["dag_run_id"]
    alerts = alerts_in(local_stack["alerts_log"])[alerts_before:]
    assert len(alerts) == 1, [alert["payload"]["text"] for alert in alerts]
    text = alerts[0]["payload"]["text"]
    assert f"{DAG_ID}.finish_run in run {run_id}" in text
    assert "final failure on try 1 (not retried)" in text
    assert "To recover: fix the cause" in text and "then Clear finish_run in this run" in text
    failed_row = pipeline_runs(warehouse)[run_id]
    assert failed_row["status"] == "failed"
    assert failed_row["error"].startswith(f"{len(SYMBOLS)} of {len(SYMBOLS)} symbols failed: AAPL: ")

    # 4. The outage ends; the failed task(s) are cleared the way the UI's Clear dialog does it.
    assert script(SIMULATE_FAILURE, "off", env, 60).returncode == 0
    clock = time.monotonic()
    run_path = f"{ui}/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    failed_tasks = requests.get(f"{run_path}/taskInstances", params={"state": "failed"}, timeout=30).json()
    assert [ti["task_id"] for ti in failed_tasks["task_instances"]] == ["finish_run"]
    for ti in failed_tasks["task_instances"]:
        cleared = requests.post(
            f"{ui}/api/v2/dags/{DAG_ID}/clearTaskInstances",
            json={**UI_CLEAR_DEFAULTS, "dag_run_id": run_id, "task_ids": [[ti["task_id"], ti["map_index"]]]},
            timeout=60,
        )
        assert cleared.status_code == 200, cleared.text
    time.sleep(5)  # let the scheduler pick the cleared run up before polling its state
    recovered = wait_for_finished_run(ui, run_id)
    timings["recovery"] = time.monotonic() - clock
    assert recovered["state"] == "success", recovered

    # 5. No second alert; pipeline_runs keeps both outcomes, each with its reasons.
    assert len(alerts_in(local_stack["alerts_log"])) == alerts_before + 1
    rows = pipeline_runs(warehouse)
    assert rows[run_id]["status"] == "success" and rows[run_id]["error"] is None
    assert rows[run_id]["symbols_loaded"] == len(SYMBOLS)
    assert rows[f"{run_id}#try1"]["status"] == "failed"
    assert rows[f"{run_id}#try1"]["error"] == failed_row["error"]
    assert requests.get(f"{ui}/pipeline-health/health", timeout=60).status_code == 200
    print("demo timings (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()))
