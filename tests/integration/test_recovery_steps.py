"""The steps a cleared finish_run uses to recover a failed run: re-fetch what was missing, keep the first try.

Against real components: the moto server (S3 raw and processed zones, as in the DAG), a SQLite
warehouse file and a folder of CSV files as the source. The whole recovery through Airflow's
UI defaults is tests/e2e/test_airflow_ui.py::test_the_demo_starts_healthy_fails_once_and_recovers_by_clearing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import date

import pytest

from src import steps
from src.local_stack.synthetic_data import write_synthetic_universe

pytestmark = pytest.mark.integration

START, END = date(2025, 3, 3), date(2025, 3, 14)


@pytest.fixture
def settings(s3_settings, tmp_path):
    folder = tmp_path / "offline"
    write_synthetic_universe(folder, ["IBM", "MSFT"], START, END)
    return replace(
        s3_settings,
        sqlite_path=tmp_path / "warehouse.db",
        file_source_dir=folder,
        data_sources=("file",),
        slack_webhook_url="",
    )


def test_a_failed_symbol_is_fetched_loaded_and_the_run_recorded_green(settings):
    run_id = "manual__2025-03-14"
    steps.start_run(run_id, END, ["IBM", "MSFT"], settings)
    # The first try: MSFT failed at extract (an outage), IBM was loaded.
    first = steps.extract_batch(["IBM"], START, END, END, settings).to_xcom()
    first["symbols"] = ["IBM", "MSFT"]
    first["failed"] = {"MSFT": "alpha_vantage: HTTP 500"}
    loaded = steps.load_batch(
        steps.transform_batch(steps.Extracted(**first), END, "batch-000", settings), run_id, settings
    )
    with pytest.raises(steps.PipelineRunFailed, match="MSFT: alpha_vantage: HTTP 500"):
        steps.finish_task_run(
            run_id, END, ["IBM", "MSFT"], "2025-03-14T23:30:00+00:00", [first], [loaded.to_xcom()], settings
        )

    # The cleared try: keep the first outcome, fetch MSFT again, record the run.
    assert steps.keep_earlier_try(run_id, 1, settings) == f"{run_id}#try1"
    extracted, retried = steps.retry_failed_symbols([first], START, END, END, run_id, settings)
    record = steps.finish_task_run(
        run_id, END, ["IBM", "MSFT"], "2025-03-14T23:30:00+00:00", extracted, [loaded.to_xcom(), *retried], settings
    )

    assert record["status"] == "success" and record["error"] is None
    with sqlite3.connect(settings.sqlite_path) as conn:
        runs = conn.execute(
            "SELECT run_id, status, symbols_loaded, error FROM pipeline_runs ORDER BY run_id"
        ).fetchall()
        stored = conn.execute("SELECT symbol, COUNT(*) FROM fact_daily_prices GROUP BY symbol").fetchall()
    assert runs == [
        (run_id, "success", 2, None),
        (f"{run_id}#try1", "partial", 1, "1 of 2 symbols failed: MSFT: alpha_vantage: HTTP 500"),
    ]
    assert stored == [("IBM", 10), ("MSFT", 10)]  # 10 sessions each, nothing doubled


def test_nothing_failed_means_nothing_fetched_and_no_copy(settings):
    first = {"symbols": ["IBM"], "fetched": {"IBM": "file"}, "failed": {}, "raw_keys": []}
    assert steps.retry_failed_symbols([first], START, END, END, "run", settings) == ([first], [])
    steps.start_run("run", END, ["IBM"], settings)  # a 'running' row is not a failed try
    assert steps.keep_earlier_try("run", 1, settings) is None
