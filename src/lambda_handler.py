"""The transform step as an AWS Lambda function (its entry point is `src.lambda_handler.handler`).

In the cloud (`TRANSFORM_BACKEND=lambda`) the Airflow task does not transform in the worker: it
invokes this Lambda and waits for its answer (`steps.invoke_transform_lambda`). The Lambda runs
the same function the local path runs, `steps.transform_raw_objects`, so both paths give
identical processed files.

The handler accepts two event shapes:

1. A direct invoke from the Airflow task:
   `{"bucket": "...", "raw_keys": ["raw/source=.../...json.gz"], "logical_date": "2024-03-28", "part": "batch-001"}`
2. An S3 "ObjectCreated" notification for raw objects (`{"Records": [{"s3": {"bucket": {"name": ...},
   "object": {"key": ...}}}]}`): each raw object is transformed on arrival; the logical date comes
   from the key's `ingest_date=` part.

It returns counts and processed keys (small JSON, like the Airflow task's XCom).
"""

from __future__ import annotations

import logging
import re
from datetime import date
from urllib.parse import unquote_plus

from src import steps
from src.config import Settings, load_settings
from src.storage.s3_handler import get_s3_client

logger = logging.getLogger(__name__)

_INGEST_DATE = re.compile(r"/ingest_date=(\d{4}-\d{2}-\d{2})/")
_PART_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _jobs_from_event(event: dict, default_bucket: str) -> list[dict]:
    """Turn either event shape into transform jobs: [{"bucket", "raw_keys", "logical_date", "part"}]."""
    if "Records" in event:
        jobs = []
        for record in event["Records"]:
            bucket = record["s3"]["bucket"]["name"]
            # S3 notifications URL-encode keys ("source%3Dyahoo" / "+" for spaces).
            key = unquote_plus(record["s3"]["object"]["key"])
            match = _INGEST_DATE.search(key)
            if not key.startswith("raw/") or match is None:
                logger.warning("ignoring S3 object that is not a raw reply: %s", key)
                continue
            # One processed part per raw object, named after it, so retries overwrite.
            part = _PART_UNSAFE.sub("_", key.removeprefix("raw/").removesuffix(".json.gz"))
            jobs.append({"bucket": bucket, "raw_keys": [key], "logical_date": match.group(1), "part": part})
        return jobs
    missing = [name for name in ("raw_keys", "logical_date", "part") if name not in event]
    if missing:
        raise ValueError(f"transform event is missing {', '.join(missing)}")
    return [
        {
            "bucket": event.get("bucket") or default_bucket,
            "raw_keys": list(event["raw_keys"]),
            "logical_date": event["logical_date"],
            "part": event["part"],
        }
    ]


def handle_event(event: dict, settings: Settings, s3_client=None) -> dict:
    """Run the transform for a Lambda event (testable without the Lambda runtime).

    Args:
        event: a direct-invoke payload or an S3 notification (see the module docstring).
        settings: loaded settings (S3_BUCKET is the default bucket for direct invokes).
        s3_client: a boto3 S3 client (default: one from the settings).

    Returns:
        For one job, the `steps.transform_raw_objects` result (as a dict); for several (an S3 batch),
        {"results": [...], "rows_clean": total, "rows_quarantined": total}.
    """
    s3_client = s3_client or get_s3_client(settings)
    results = [
        steps.transform_raw_objects(
            s3_client, job["bucket"], job["raw_keys"], date.fromisoformat(job["logical_date"]), job["part"]
        ).to_xcom()
        for job in _jobs_from_event(event, settings.s3_bucket)
    ]
    if len(results) == 1 and "Records" not in event:
        return results[0]
    return {
        "results": results,
        "rows_clean": sum(result["rows_clean"] for result in results),
        "rows_quarantined": sum(result["rows_quarantined"] for result in results),
    }


def handler(event: dict, context) -> dict:
    """The AWS Lambda entry point (`src.lambda_handler.handler`)."""
    settings = load_settings()
    logging.getLogger().setLevel(settings.log_level)
    return handle_event(event, settings)
