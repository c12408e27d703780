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


@pytest.fixture
def local_stack(tmp_path):
    """The local stack started by `scripts/run-local.sh start` in tmp_path; stopped afterwards."""
    from src.local_stack.synthetic_data import write_synthetic_universe
    from src.market_calendar import latest_completed_session

    # Fail, not skip: scripts/run-tests.sh installs Chromium, so a missing one is a set-up bug.
    assert Path(CHROMIUM).exists(), "Chromium is not installed (apt-get install -y chromium)"

    # The day a run triggered now will load (unless a session closes during the test).
    trading_day = latest_completed_session()
    offline = tmp_path / "offline"
    write_synthetic_universe(offline, list(SYMBOLS), trading_day - timedelta(days=200), trading_day)

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
    }
    try:
        started = run_local("start", env, START_TIMEOUT_SECONDS)
        assert started.returncode == 0, f"run-local.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield stack
    finally:
        stopped = run_local("stop", env, 300)
        assert stopped.returncode == 0, f"run-local.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"
        assert sorted(path.name for path in stack["pid_dir"].glob("*.pid")) == []


def wait_for_finished_run(ui: str) -> dict:
    """Poll the REST API until the DAG's newest run has finished; return it."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
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
