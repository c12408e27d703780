"""Publish each run's metrics to CloudWatch (moto server locally) under one namespace.

Metrics (namespace `CLOUDWATCH_NAMESPACE`, default `CloudScaleFinanceETL`; dimension `Pipeline`):

| metric              | unit    | meaning                                                   |
|---------------------|---------|-----------------------------------------------------------|
| RowsLoaded          | Count   | clean rows written to fact_daily_prices by the run        |
| RowsQuarantined     | Count   | rows rejected into quarantine_prices                      |
| SymbolsFailed       | Count   | symbols with no data from any source                      |
| RunDurationSeconds  | Seconds | wall-clock time of the run                                |
| FreshnessLagDays    | Count   | NYSE sessions between the latest loaded date and the latest completed session |

The CloudWatch alarms and dashboard in `infrastructure/terraform` use these names.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from src.config import Settings

logger = logging.getLogger(__name__)

PIPELINE_DIMENSION = {"Name": "Pipeline", "Value": "daily_etl_pipeline"}


def get_cloudwatch_client(settings: Settings):
    """A boto3 CloudWatch client (endpoint from AWS_ENDPOINT_URL when set, short timeouts)."""
    config = Config(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        retries={"max_attempts": settings.http_max_tries, "mode": "standard"},
    )
    return boto3.client(
        "cloudwatch",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url or None,
        config=config,
    )


def build_metric_data(
    run: dict, freshness_lag_days: int | None = None, timestamp: datetime | None = None
) -> list[dict]:
    """Turn a pipeline_runs row into CloudWatch MetricData entries.

    Args:
        run: a pipeline_runs row (rows_loaded, rows_quarantined, symbols_failed, duration_seconds).
        freshness_lag_days: sessions behind the latest completed session, when known.
        timestamp: the metric timestamp (default: now, UTC).

    Returns:
        A list for `put_metric_data(MetricData=...)`.
    """
    timestamp = timestamp or datetime.now(UTC)
    values = [
        ("RowsLoaded", float(run.get("rows_loaded") or 0), "Count"),
        ("RowsQuarantined", float(run.get("rows_quarantined") or 0), "Count"),
        ("SymbolsFailed", float(run.get("symbols_failed") or 0), "Count"),
        ("RunDurationSeconds", float(run.get("duration_seconds") or 0), "Seconds"),
    ]
    if freshness_lag_days is not None:
        values.append(("FreshnessLagDays", float(freshness_lag_days), "Count"))
    return [
        {"MetricName": name, "Dimensions": [PIPELINE_DIMENSION], "Timestamp": timestamp, "Value": value, "Unit": unit}
        for name, value, unit in values
    ]


def publish_run_metrics(run: dict, settings: Settings, freshness_lag_days: int | None = None, client=None) -> bool:
    """Send one run's metrics to CloudWatch. A CloudWatch outage is logged, never fatal.

    Args:
        run: the pipeline_runs row the run just wrote.
        settings: loaded settings (namespace, region, endpoint).
        freshness_lag_days: see `build_metric_data`.
        client: a CloudWatch client (tests pass their own).

    Returns:
        True when CloudWatch accepted the metrics.
    """
    client = client or get_cloudwatch_client(settings)
    data = build_metric_data(run, freshness_lag_days)
    try:
        client.put_metric_data(Namespace=settings.cloudwatch_namespace, MetricData=data)
    except (BotoCoreError, ClientError) as exc:
        # Metrics are for watching the pipeline; losing one run's metrics must not fail the run.
        logger.warning("could not publish metrics for run %s to CloudWatch: %s", run.get("run_id"), exc)
        return False
    logger.info("published %d metrics for run %s to %s", len(data), run.get("run_id"), settings.cloudwatch_namespace)
    return True
