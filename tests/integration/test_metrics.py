"""Run metrics in CloudWatch: published through boto3 to a moto server and read back from it.

moto in server mode (tests/fixtures/moto_server.py) speaks the CloudWatch API over HTTP, so
`publish_run_metrics` runs exactly as it would against AWS; the tests then ask the same server
with `list_metrics` and `get_metric_statistics` what it received.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from src.config import Settings, load_settings
from src.monitoring.metrics import (
    PIPELINE_DIMENSION,
    build_metric_data,
    get_cloudwatch_client,
    publish_run_metrics,
)
from src.steps import RunSummary
from tests.fixtures.moto_server import free_local_port, reset_moto

pytestmark = pytest.mark.integration

ALL_METRICS = ["FreshnessLagDays", "RowsLoaded", "RowsQuarantined", "RunDurationSeconds", "SymbolsFailed"]


def cloudwatch_settings(tmp_path, endpoint: str, **overrides: str) -> Settings:
    """Settings that send CloudWatch calls to `endpoint`, under a namespace of this test's own."""
    values = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "CLOUDWATCH_NAMESPACE": f"CloudScaleFinanceETL-test-{uuid.uuid4().hex[:8]}",
        "STATE_DIR": str(tmp_path / "state"),
        **overrides,
    }
    return load_settings(env_file=tmp_path / "no.env", overrides=values)


@pytest.fixture
def settings(moto_server, tmp_path, fake_aws_credentials, monkeypatch) -> Settings:
    reset_moto(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # any stray client lands on moto too
    return cloudwatch_settings(tmp_path, moto_server)


def finished_run() -> dict:
    """The pipeline_runs row of a partial run: 3 of 4 symbols loaded, one quarantined row."""
    summary = RunSummary(
        run_id="scheduled__2012-07-06",
        logical_date=date(2012, 7, 6),
        symbols_requested=["AAPL", "GOOG", "IBM", "MSFT"],
        loaded=["AAPL", "GOOG", "MSFT"],
        failed={"IBM": "no data from any source"},
        rows_loaded=747,
        rows_quarantined=1,
        started_at="2012-07-06T22:30:00+00:00",
        ended_at="2012-07-06T22:32:05+00:00",
        elapsed_seconds=125.4,
    )
    return summary.as_run_record()


def statistics_of(client, namespace: str, metric: str) -> dict:
    """What CloudWatch holds for one metric in the last/next 10 minutes: Sum, Maximum, SampleCount, Unit."""
    now = datetime.now(UTC)
    answer = client.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[PIPELINE_DIMENSION],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=10),
        Period=3600,
        Statistics=["Sum", "Maximum", "SampleCount"],
    )
    assert len(answer["Datapoints"]) == 1, answer["Datapoints"]
    point = answer["Datapoints"][0]
    return {key: point[key] for key in ("Sum", "Maximum", "SampleCount", "Unit")}


def test_run_metrics_can_be_read_back_from_cloudwatch(settings):
    assert publish_run_metrics(finished_run(), settings, freshness_lag_days=2) is True

    client = get_cloudwatch_client(settings)
    listed = client.list_metrics(Namespace=settings.cloudwatch_namespace)["Metrics"]
    assert sorted(metric["MetricName"] for metric in listed) == ALL_METRICS
    assert all(metric["Dimensions"] == [PIPELINE_DIMENSION] for metric in listed)

    assert statistics_of(client, settings.cloudwatch_namespace, "RowsLoaded") == {
        "Sum": 747.0,
        "Maximum": 747.0,
        "SampleCount": 1.0,
        "Unit": "Count",
    }
    assert statistics_of(client, settings.cloudwatch_namespace, "RowsQuarantined")["Sum"] == 1.0
    assert statistics_of(client, settings.cloudwatch_namespace, "SymbolsFailed")["Sum"] == 1.0
    duration = statistics_of(client, settings.cloudwatch_namespace, "RunDurationSeconds")
    assert (duration["Sum"], duration["Unit"]) == (125.4, "Seconds")
    assert statistics_of(client, settings.cloudwatch_namespace, "FreshnessLagDays")["Maximum"] == 2.0


def test_two_runs_add_up_in_cloudwatch(settings):
    first = finished_run()
    second = {**first, "run_id": "scheduled__2012-07-09", "rows_loaded": 1000, "symbols_failed": 0}

    assert publish_run_metrics(first, settings) is True
    assert publish_run_metrics(second, settings) is True

    stats = statistics_of(get_cloudwatch_client(settings), settings.cloudwatch_namespace, "RowsLoaded")
    assert (stats["Sum"], stats["Maximum"], stats["SampleCount"]) == (1747.0, 1000.0, 2.0)


def test_freshness_lag_is_only_sent_when_known(settings):
    assert publish_run_metrics(finished_run(), settings) is True

    listed = get_cloudwatch_client(settings).list_metrics(Namespace=settings.cloudwatch_namespace)["Metrics"]
    assert sorted(metric["MetricName"] for metric in listed) == [
        name for name in ALL_METRICS if name != "FreshnessLagDays"
    ]


def test_cloudwatch_outage_returns_false_without_raising(tmp_path, fake_aws_credentials, caplog):
    # Nothing listens on this port: every connection is refused at once.
    closed = f"http://127.0.0.1:{free_local_port()}"
    settings = cloudwatch_settings(tmp_path, closed, HTTP_MAX_TRIES="1", HTTP_CONNECT_TIMEOUT="1")

    with caplog.at_level(logging.WARNING, logger="src.monitoring.metrics"):
        published = publish_run_metrics(finished_run(), settings, freshness_lag_days=0)

    assert published is False
    assert "could not publish metrics for run scheduled__2012-07-06 to CloudWatch" in caplog.text


def test_cloudwatch_refusing_the_credentials_returns_false(settings, moto_checks_credentials, caplog):
    # moto now checks credentials like AWS: the fake ones are unknown, so CloudWatch answers 403.
    with caplog.at_level(logging.WARNING, logger="src.monitoring.metrics"):
        assert publish_run_metrics(finished_run(), settings) is False
    assert "could not publish metrics" in caplog.text


def test_build_metric_data_from_a_run_record():
    stamp = datetime(2012, 7, 6, 22, 32, 5, tzinfo=UTC)

    data = build_metric_data(finished_run(), freshness_lag_days=0, timestamp=stamp)

    assert data == [
        {"MetricName": name, "Dimensions": [PIPELINE_DIMENSION], "Timestamp": stamp, "Value": value, "Unit": unit}
        for name, value, unit in [
            ("RowsLoaded", 747.0, "Count"),
            ("RowsQuarantined", 1.0, "Count"),
            ("SymbolsFailed", 1.0, "Count"),
            ("RunDurationSeconds", 125.4, "Seconds"),
            ("FreshnessLagDays", 0.0, "Count"),
        ]
    ]
    # A run still marked running has no counts yet: zeros, not an error.
    assert [entry["Value"] for entry in build_metric_data({"run_id": "r"}, timestamp=stamp)] == [0.0, 0.0, 0.0, 0.0]
