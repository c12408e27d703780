"""An Airflow 3 plugin that serves the pipeline's health checks as JSON on the Airflow API server.

Airflow 3.1+ plugins can mount FastAPI apps on the API server (`fastapi_apps`); this one mounts
a tiny app under /pipeline-health:

    GET http://127.0.0.1:8080/pipeline-health/health
    200 {"healthy": true,  "checks": [{"name": "freshness", "ok": true, "message": ..., "figures": {...}}, ...]}
    503 {"healthy": false, "checks": [...]}          (one or more checks failed)

The body is the same document as `python -m src.monitoring.health_checks --json`, so an uptime
monitor, a load balancer or a person with curl sees exactly what the CLI shows.

Airflow imports plugin files in several processes, so nothing heavy happens at import time:
pandas, the warehouse and our `src` modules are imported inside the request handler. Changes to
this file need an API-server restart. Airflow does not put its own login in front of plugin
apps: the endpoint is public to whoever can reach the API server (it shows symbols, dates,
counts and run ids; never secrets). See docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.responses import JSONResponse

URL_PREFIX = "/pipeline-health"


def create_health_app(clock: Callable[[], datetime] | None = None) -> FastAPI:
    """Build the FastAPI app with the GET /health route.

    Args:
        clock: returns "now" for the checks (tests pin it); None uses the real time.

    Returns:
        The app; Airflow mounts it under URL_PREFIX.
    """
    app = FastAPI(
        title="CloudScale Finance ETL: pipeline health",
        description="The data-freshness, completeness and run checks of src/monitoring/health_checks.py.",
    )

    # A plain `def` (not `async def`): FastAPI runs it in a worker thread, so the blocking
    # warehouse queries never stall the API server's event loop.
    @app.get("/health")
    def health() -> JSONResponse:
        """Run the health checks; 200 when every check passed, 503 when one failed."""
        from src.config import ConfigurationError, load_settings
        from src.monitoring.health_checks import build_health_report, run_health_checks

        try:
            # Settings are read on every request, so a changed .env needs no restart.
            settings = load_settings()
        except ConfigurationError as exc:
            failed = {"name": "configuration", "ok": False, "message": str(exc), "figures": {}}
            return JSONResponse({"healthy": False, "checks": [failed]}, status_code=503)
        results = run_health_checks(settings, now=clock() if clock else None)
        report = build_health_report(results)
        return JSONResponse(report, status_code=200 if report["healthy"] else 503)

    return app


app = create_health_app()


class PipelineHealthPlugin(AirflowPlugin):
    """Registers the health app with Airflow (found by Airflow in the plugins folder)."""

    name = "pipeline_health"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Pipeline health"}]
