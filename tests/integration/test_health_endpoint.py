"""The health endpoint plugin: Airflow loads it, and its FastAPI app answers over real HTTP.

Airflow's API server mounts plugin apps with `app.mount(url_prefix, plugin_app)`. These tests
let Airflow's own plugin manager load airflow/plugins/health_plugin.py (a private AIRFLOW_HOME
from tests.fixtures.airflow_env), mount its app the way the API server does, and serve it with
uvicorn on 127.0.0.1 in a thread, so requests go through a real socket. Starting the whole of
Airflow is not needed for that.

Airflow is imported inside tests and fixtures only (see tests/fixtures/airflow_env.py).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from src.config import PROJECT_ROOT
from tests.fixtures.airflow_env import PLUGINS_FOLDER
from tests.fixtures.moto_server import free_local_port
from tests.integration.test_health_checks_warehouse import (
    CHECK_NAMES,
    cli_environment,
    healthy_2012_warehouse,
    make_settings,
    new_york,
)

pytestmark = pytest.mark.integration

PLUGIN_FILE = PLUGINS_FOLDER / "health_plugin.py"
URL_PREFIX = "/pipeline-health"
SERVER_START_SECONDS = 20


def load_plugin_module():
    """Import airflow/plugins/health_plugin.py by its path, as Airflow's plugin manager does."""
    spec = importlib.util.spec_from_file_location("health_plugin_under_test", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(plugin_app) -> Iterator[str]:
    """Mount `plugin_app` under URL_PREFIX like Airflow's API server and serve it on 127.0.0.1.

    Yields:
        The server's base URL, e.g. 'http://127.0.0.1:53817'.
    """
    import uvicorn
    from fastapi import FastAPI

    host_app = FastAPI()
    host_app.mount(URL_PREFIX, plugin_app)
    port = free_local_port()
    server = uvicorn.Server(uvicorn.Config(host_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="health-endpoint", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    """This test's settings, also put into the environment the endpoint reads on each request."""
    settings = make_settings(tmp_path)
    for name, value in cli_environment(settings, tmp_path).items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
def pinned_server(airflow_home, request) -> Iterator[str]:
    """The plugin's health app with its clock pinned to `request.param`, served over HTTP."""
    module = load_plugin_module()
    now: datetime = request.param
    yield from serve(module.create_health_app(clock=lambda: now))


# --- Over HTTP -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pinned_server", [new_york(2012, 7, 5, 10, 0)], indirect=True)
def test_health_is_200_with_the_report_when_healthy(settings_env, pinned_server):
    healthy_2012_warehouse(settings_env)

    response = requests.get(f"{pinned_server}{URL_PREFIX}/health", timeout=30)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["healthy"] is True
    assert [check["name"] for check in report["checks"]] == CHECK_NAMES
    assert report["checks"][0]["figures"] == {
        "latest_loaded": "2012-07-03",
        "latest_session": "2012-07-03",
        "lag_sessions": 0,
        "max_lag_sessions": 1,
    }


@pytest.mark.parametrize("pinned_server", [new_york(2012, 7, 10, 10, 0)], indirect=True)
def test_health_is_503_with_the_failed_checks_when_unhealthy(settings_env, pinned_server):
    healthy_2012_warehouse(settings_env)  # ... but nothing after 2012-07-03

    response = requests.get(f"{pinned_server}{URL_PREFIX}/health", timeout=30)

    assert response.status_code == 503
    report = response.json()
    assert report["healthy"] is False
    failed = [check["name"] for check in report["checks"] if not check["ok"]]
    assert failed == ["freshness", "completeness", "row_count_drop"]
    assert report["checks"][0]["message"] == "latest loaded 2012-07-03 is 3 sessions behind 2012-07-09 (allowed: 1)"


@pytest.mark.parametrize("pinned_server", [new_york(2012, 7, 5, 10, 0)], indirect=True)
def test_health_is_503_when_the_settings_are_wrong(settings_env, pinned_server, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_BACKEND", "oracle")

    response = requests.get(f"{pinned_server}{URL_PREFIX}/health", timeout=30)

    assert response.status_code == 503
    assert response.json() == {
        "healthy": False,
        "checks": [
            {
                "name": "configuration",
                "ok": False,
                "message": "WAREHOUSE_BACKEND must be sqlite or bigquery, got 'oracle'",
                "figures": {},
            }
        ],
    }


# --- The plugin as Airflow sees it -------------------------------------------------------------------------


def airflow_health_app():
    """The health app exactly as Airflow's plugin manager hands it to the API server."""
    from airflow import plugins_manager

    apps, _middlewares = plugins_manager.get_fastapi_plugins()
    ours = [entry for entry in apps if entry.get("url_prefix") == URL_PREFIX]
    assert len(ours) == 1, f"expected one app under {URL_PREFIX}, Airflow has: {apps}"
    return ours[0]


def test_airflow_loads_the_plugin_without_import_errors(airflow_home):
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from fastapi import FastAPI

    from airflow import plugins_manager

    entry = airflow_health_app()

    assert plugins_manager.get_import_errors() == {}
    assert "pipeline_health" in [info["name"] for info in plugins_manager.get_plugin_info()]
    assert entry["name"] == "Pipeline health"
    assert isinstance(entry["app"], FastAPI)
    assert not any(URL_PREFIX.startswith(prefix) for prefix in RESERVED_URL_PREFIXES)
    routes = {(route.path, method) for route in entry["app"].routes for method in getattr(route, "methods", ())}
    assert ("/health", "GET") in routes


def test_airflow_api_server_mounts_the_plugin_app(airflow_home):
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI

    api_server = FastAPI()
    init_plugins(api_server)  # what the API server does at start-up

    mounts = {route.path: route.app for route in api_server.routes if hasattr(route, "app")}
    assert mounts[URL_PREFIX] is airflow_health_app()["app"]


def test_the_mounted_app_answers_503_on_an_empty_deployment(airflow_home, settings_env):
    # The very app Airflow mounts, with the real clock; no warehouse file exists yet.
    for base_url in serve(airflow_health_app()["app"]):
        response = requests.get(f"{base_url}{URL_PREFIX}/health", timeout=30)

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert [(check["name"], check["ok"]) for check in checks] == [("warehouse", False)]
    assert not settings_env.sqlite_path.exists()


def test_importing_the_plugin_is_cheap():
    # Airflow imports plugin files in every component: no pandas, no warehouse, no src at import.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('health_plugin', {str(PLUGIN_FILE)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "heavy = sorted(name for name in ('pandas', 'src', 'boto3', 'google.cloud.bigquery') if name in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "none"
