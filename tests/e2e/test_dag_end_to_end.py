"""The whole DAG through Airflow's `dag.test()`, against real local stand-ins.

- Alpha Vantage: the mock server serving SYNTHETIC CSVs for five symbols (fixture
  `mock_alpha_vantage`); Yahoo is left out (`DATA_SOURCES=alpha_vantage`), so nothing
  leaves the machine;
- S3: the moto server (`s3_settings`), a fresh bucket per test;
- warehouse: a SQLite file in the test's tmp folder;
- Slack: the local catcher (`slack_catcher`).

`dag.test()` runs every task in this process, with Airflow's real scheduling rules (mapping,
XComs, trigger rules, retries, callbacks) on the private metadata DB of `airflow_db`.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.fixtures.airflow_env import DAGS_FOLDER
from tests.fixtures.mock_alpha_vantage import MOCK_LAST_SESSION, MOCK_SYMBOLS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NEW_YORK = ZoneInfo("America/New_York")
DAG_ID = "daily_etl_pipeline"
# Recognisable, so the test can prove it never reaches Slack or the stored data.
FAKE_API_KEY = "FAKEKEY-e2e-must-never-leak-7731"  # pragma: allowlist secret
AIRFLOW_UI = "http://127.0.0.1:8080"
# The scheduled runs of Thursday 2024-06-27 and Friday 2024-06-28 (18:30 New York time).
THURSDAY_RUN = datetime(2024, 6, 27, 18, 30, tzinfo=NEW_YORK)
FRIDAY_RUN = datetime(2024, 6, 28, 18, 30, tzinfo=NEW_YORK)
# A manual range: about three months, enough for the 20-session indicators.
RANGE = {"start": "2024-04-01", "end": MOCK_LAST_SESSION.isoformat()}


@pytest.fixture
def pipeline_env(airflow_db, s3_settings, mock_alpha_vantage, slack_catcher, tmp_path, monkeypatch) -> dict:
    """Environment for the tasks' `load_settings()`: every service on loopback, fast retries."""
    env = {
        "PIPELINE_ENV_FILE": str(tmp_path / "no.env"),  # never a developer's .env
        "DATA_SOURCES": "alpha_vantage",
        "SYMBOLS": ",".join(MOCK_SYMBOLS),
        "BATCH_SIZE": "2",  # five symbols -> three mapped batches
        "ALPHA_VANTAGE_BASE_URL": mock_alpha_vantage.base_url,
        "ALPHA_VANTAGE_API_KEY": FAKE_API_KEY,
        "ALPHA_VANTAGE_CALLS_PER_MINUTE": "600",
        "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0",
        "ALPHA_VANTAGE_DAILY_LIMIT": "1000",
        "HTTP_MAX_TRIES": "1",
        "HTTP_BACKOFF_SECONDS": "0",
        "S3_BUCKET": s3_settings.s3_bucket,
        "AWS_ENDPOINT_URL": s3_settings.aws_endpoint_url,
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "SLACK_WEBHOOK_URL": slack_catcher.url,
        "AIRFLOW_BASE_URL": AIRFLOW_UI,
        # Read when the DAG file is parsed: retries wait about a second instead of minutes.
        "TASK_RETRY_DELAY_SECONDS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def etl_dag(pipeline_env):
    """The DAG parsed from airflow/dags after the environment is set."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def read_table(sqlite_path: str, table: str, order_by: str) -> pd.DataFrame:
    with sqlite3.connect(sqlite_path) as conn:
        return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order_by}", conn)


def raw_keys(s3_settings) -> list[str]:
    from src.storage.s3_handler import get_s3_client

    client = get_s3_client(s3_settings)
    listing = client.list_objects_v2(Bucket=s3_settings.s3_bucket, Prefix="raw/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def task_states(dag_run) -> dict[str, list[str]]:
    """task_id -> states of its instances (one per map index), e.g. {"etl_batch.load": ["success"] * 3}."""
    states: dict[str, list[str]] = {}
    for ti in sorted(dag_run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index)):
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


def csv_prices(data_dir: Path, symbol: str, start: str, end: str) -> pd.DataFrame:
    frame = pd.read_csv(data_dir / f"{symbol}.csv", dtype={"date": str})
    return frame[(frame["date"] >= start) & (frame["date"] <= end)].reset_index(drop=True)


def test_daily_run_loads_the_warehouse_and_a_rerun_changes_nothing(
    etl_dag, pipeline_env, s3_settings, mock_alpha_vantage, slack_catcher
):
    sqlite_path = pipeline_env["SQLITE_PATH"]

    # run_after = logical date gives the run a fixed id, like a scheduled run's (dag.test uses "now").
    first = etl_dag.test(logical_date=FRIDAY_RUN, run_after=FRIDAY_RUN, run_conf=RANGE)

    assert str(first.state) == "success", task_states(first)
    assert task_states(first) == {
        "check_data_quality": ["success"],
        "etl_batch.extract": ["success"] * 3,
        "etl_batch.load": ["success"] * 3,
        "etl_batch.transform": ["success"] * 3,
        "finish_run": ["success"],
        "make_batches": ["success"],
        "resolve_symbols": ["success"],
        "start_run": ["success"],
    }

    # One raw reply per symbol in the S3 raw zone, keyed by the trading day.
    assert raw_keys(s3_settings) == sorted(
        f"raw/source=alpha_vantage/symbol={symbol}/ingest_date=2024-06-28/daily.json.gz" for symbol in MOCK_SYMBOLS
    )

    # Every session of the range for every symbol, with the served prices, labelled synthetic.
    prices = read_table(sqlite_path, "fact_daily_prices", "symbol, trade_date")
    expected_rows = 0
    for symbol in MOCK_SYMBOLS:
        served = csv_prices(mock_alpha_vantage.data_dir, symbol, RANGE["start"], RANGE["end"])
        loaded = prices[prices["symbol"] == symbol].reset_index(drop=True)
        assert loaded["trade_date"].tolist() == served["date"].tolist()
        assert loaded["close"].tolist() == pytest.approx(served["close"].tolist())
        assert loaded["volume"].tolist() == served["volume"].tolist()
        expected_rows += len(served)
    assert len(served) == 63  # NYSE sessions from 2024-04-01 to 2024-06-28
    assert set(prices["source"]) == {"synthetic"}
    assert set(prices["run_id"]) == {first.run_id}

    # Indicators: the 20-session SMA of the last day is the mean of the last 20 served closes.
    indicators = read_table(sqlite_path, "fact_technical_indicators", "symbol, trade_date")
    assert len(indicators) == expected_rows
    last_day = indicators[indicators["trade_date"] == "2024-06-28"].set_index("symbol")
    for symbol in MOCK_SYMBOLS:
        served = csv_prices(mock_alpha_vantage.data_dir, symbol, RANGE["start"], RANGE["end"])
        assert last_day.loc[symbol, "sma_20"] == pytest.approx(served["close"].tail(20).mean(), rel=1e-12)

    # The run is recorded under Airflow's run_id.
    runs = read_table(sqlite_path, "pipeline_runs", "run_id")
    assert runs[["run_id", "logical_date", "status", "symbols_requested", "symbols_loaded", "symbols_failed"]].to_dict(
        "records"
    ) == [
        {
            "run_id": first.run_id,
            "logical_date": "2024-06-28",
            "status": "success",
            "symbols_requested": 5,
            "symbols_loaded": 5,
            "symbols_failed": 0,
        }
    ]
    assert int(runs.loc[0, "rows_loaded"]) == expected_rows
    assert int(runs.loc[0, "rows_quarantined"]) == 0
    assert slack_catcher.alerts() == []

    # Run the same date again (as when a person clears the run): same rows, nothing doubled.
    before = {
        table: read_table(sqlite_path, table, "symbol, trade_date").drop(columns=["loaded_at"])
        for table in ("fact_daily_prices", "fact_technical_indicators")
    }
    second = etl_dag.test(logical_date=FRIDAY_RUN, run_after=FRIDAY_RUN, run_conf=RANGE)

    assert str(second.state) == "success", task_states(second)
    assert second.run_id == first.run_id
    for table, frame in before.items():
        pd.testing.assert_frame_equal(
            read_table(sqlite_path, table, "symbol, trade_date").drop(columns=["loaded_at"]), frame
        )
    runs_again = read_table(sqlite_path, "pipeline_runs", "run_id")
    assert runs_again["run_id"].tolist() == [first.run_id]
    assert runs_again.loc[0, "status"] == "success"
    assert int(runs_again.loc[0, "rows_loaded"]) == expected_rows
    assert raw_keys(s3_settings) == sorted(
        f"raw/source=alpha_vantage/symbol={symbol}/ingest_date=2024-06-28/daily.json.gz" for symbol in MOCK_SYMBOLS
    )
    assert slack_catcher.alerts() == []


def test_run_fails_loudly_with_one_alert_when_every_source_fails(
    etl_dag, pipeline_env, mock_alpha_vantage, slack_catcher, monkeypatch
):
    # Alpha Vantage answers HTTP 500 to everything and there is no fallback source.
    mock_alpha_vantage.server.set_mode("error500")
    # All five symbols in one batch: also covers a run with a single copy of the mapped group.
    monkeypatch.setenv("BATCH_SIZE", "10")

    run = etl_dag.test(logical_date=THURSDAY_RUN, run_after=THURSDAY_RUN)

    assert str(run.state) == "failed"
    states = task_states(run)
    assert states["etl_batch.extract"] == ["success"]  # a symbol that fails is reported, not raised, here
    assert states["etl_batch.load"] == ["success"]
    assert states["finish_run"] == ["failed"]  # ...and the run fails where it is summed up
    assert states["check_data_quality"] == ["upstream_failed"]  # no second alert about the same gap
    assert mock_alpha_vantage.server.stats()["total_requests"] == len(MOCK_SYMBOLS)

    alerts = slack_catcher.payloads()
    assert len(alerts) == 1, [alert["text"] for alert in alerts]
    alert = alerts[0]
    everything_sent = json.dumps(alert)
    assert f"Task failed: {DAG_ID}.finish_run in run {run.run_id}" in alert["text"]
    assert "PipelineRunFailed" in alert["text"]
    # Failed symbols are not retried (a retry would record the same outcome): the first try alerts.
    log_link = f"{AIRFLOW_UI}/dags/{DAG_ID}/runs/{quote(run.run_id)}/tasks/finish_run?try_number=1"
    assert log_link in everything_sent
    assert FAKE_API_KEY not in everything_sent

    runs = read_table(pipeline_env["SQLITE_PATH"], "pipeline_runs", "run_id")
    assert runs[["run_id", "status", "symbols_loaded", "symbols_failed"]].to_dict("records") == [
        {"run_id": run.run_id, "status": "failed", "symbols_loaded": 0, "symbols_failed": 5}
    ]
    assert FAKE_API_KEY not in runs.to_json()
