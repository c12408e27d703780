"""The transform Lambda: real event shapes against moto S3, and the invoke path with a stubbed client."""

from __future__ import annotations

import io
import json
from datetime import date

import boto3
import pandas as pd
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from src.lambda_handler import handle_event
from src.local_stack.mock_alpha_vantage import build_daily_reply
from src.steps import LambdaTransformError, invoke_transform_lambda, transform_raw_objects
from src.storage.s3_handler import ensure_bucket, get_s3_client, land_raw_reply, read_processed_frame
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

LOGICAL_DATE = "2013-03-01"


def _csv_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows like the mock server reads them from CSV: strings, newest first."""
    rows = frame.rename(columns={"trade_date": "date"}).astype(str).to_dict("records")
    return sorted(rows, key=lambda row: row["date"], reverse=True)


@pytest.fixture
def landed(s3_settings):
    """Land real IBM (Alpha Vantage format) and MSFT (file CSV) replies; return (client, bucket, keys)."""
    s3 = get_s3_client(s3_settings)
    ensure_bucket(s3, s3_settings.s3_bucket, create=True)
    ibm = load_bokeh_prices("IBM")
    msft = load_bokeh_prices("MSFT")
    ibm_reply = build_daily_reply("IBM", _csv_rows(ibm), "compact")
    # A bad row inside an otherwise good reply: it must be quarantined, the rest loaded.
    ibm_reply["Time Series (Daily)"]["2013-02-28"]["4. close"] = "N/A"
    msft_csv = msft[msft["trade_date"] >= "2013-02-01"].drop(columns="symbol").rename(columns={"trade_date": "date"})
    keys = [
        land_raw_reply(
            s3,
            s3_settings.s3_bucket,
            source="alpha_vantage",
            symbol="IBM",
            ingest_date=date(2013, 3, 1),
            payload=ibm_reply,
            request_params={
                "function": "TIME_SERIES_DAILY",
                "symbol": "IBM",
                "range_start": "2013-02-01",
                "range_end": LOGICAL_DATE,
            },
            fetched_at="2013-03-01T22:00:00+00:00",
        ),
        land_raw_reply(
            s3,
            s3_settings.s3_bucket,
            source="file",
            symbol="MSFT",
            ingest_date=date(2013, 3, 1),
            payload=msft_csv.to_csv(index=False),
            request_params={"file": "MSFT.csv", "range_start": "2013-02-01", "range_end": LOGICAL_DATE},
            fetched_at="2013-03-01T22:00:00+00:00",
        ),
    ]
    return s3, s3_settings.s3_bucket, keys


def test_direct_invoke_payload_transforms_raw_objects_into_processed_parquet(s3_settings, landed):
    s3, bucket, keys = landed
    event = {"bucket": bucket, "raw_keys": keys, "logical_date": LOGICAL_DATE, "part": "batch-001"}

    result = handle_event(event, s3_settings, s3_client=s3)

    # February 2013 has 19 NYSE sessions, plus 2013-03-01: 20 rows per symbol; IBM's 02-28 is bad.
    assert result["rows_clean"] == 39
    assert result["rows_quarantined"] == 1
    assert result["symbols"] == ["IBM", "MSFT"]
    assert (
        result["processed_keys"]["prices"]
        == f"processed/dataset=prices/ingest_date={LOGICAL_DATE}/part-batch-001.parquet"
    )
    prices = read_processed_frame(s3, bucket, result["processed_keys"]["prices"])
    ibm = prices[prices["symbol"] == "IBM"].set_index("trade_date")
    expected = load_bokeh_prices("IBM").set_index("trade_date")
    assert ibm.loc["2013-03-01", "close"] == pytest.approx(expected.loc["2013-03-01", "close"])
    assert "2013-02-28" not in ibm.index
    assert set(prices["source"]) == {"alpha_vantage", "file"}
    quarantine = read_processed_frame(s3, bucket, result["processed_keys"]["quarantine"])
    assert quarantine[["symbol", "trade_date", "reason"]].to_dict("records") == [
        {"symbol": "IBM", "trade_date": "2013-02-28", "reason": "non_numeric:close"}
    ]


def test_lambda_gives_the_same_files_as_the_in_process_transform(s3_settings, landed):
    s3, bucket, keys = landed
    local = transform_raw_objects(s3, bucket, keys, date.fromisoformat(LOGICAL_DATE), "local-part").to_xcom()
    via_lambda = handle_event(
        {"bucket": bucket, "raw_keys": keys, "logical_date": LOGICAL_DATE, "part": "lambda-part"}, s3_settings, s3
    )
    pd.testing.assert_frame_equal(
        read_processed_frame(s3, bucket, local["processed_keys"]["prices"]),
        read_processed_frame(s3, bucket, via_lambda["processed_keys"]["prices"]),
    )


def test_s3_notification_event_transforms_each_new_raw_object(s3_settings, landed):
    s3, bucket, keys = landed
    # The shape S3 sends to Lambda (trimmed of fields we do not read); keys arrive URL-encoded.
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2013-03-01T22:00:01.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "raw-replies",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key.replace("=", "%3D"), "size": 1024, "eTag": "0123456789abcdef"},
                },
            }
            for key in keys
        ]
    }

    result = handle_event(event, s3_settings, s3_client=s3)

    assert result["rows_clean"] == 39
    assert result["rows_quarantined"] == 1
    parts = sorted(r["processed_keys"]["prices"] for r in result["results"])
    assert parts == [
        f"processed/dataset=prices/ingest_date={LOGICAL_DATE}/part-source_alpha_vantage_symbol_IBM_ingest_date_2013-03-01_daily.parquet",
        f"processed/dataset=prices/ingest_date={LOGICAL_DATE}/part-source_file_symbol_MSFT_ingest_date_2013-03-01_daily.parquet",
    ]


def test_s3_event_for_a_non_raw_object_is_ignored(s3_settings, landed):
    s3, bucket, _ = landed
    event = {"Records": [{"s3": {"bucket": {"name": bucket}, "object": {"key": "processed/x.parquet"}}}]}
    assert handle_event(event, s3_settings, s3_client=s3) == {"results": [], "rows_clean": 0, "rows_quarantined": 0}


def test_direct_invoke_without_required_fields_is_refused(s3_settings):
    with pytest.raises(ValueError, match="missing logical_date, part"):
        handle_event({"raw_keys": []}, s3_settings, s3_client=object())


def _stubbed_lambda():
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def _payload(body: object) -> StreamingBody:
    raw = json.dumps(body).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_invoke_sends_the_batch_and_returns_the_functions_result(s3_settings):
    client, stub = _stubbed_lambda()
    result = {
        "processed_keys": {"prices": "processed/x.parquet", "quarantine": None},
        "rows_clean": 3,
        "rows_quarantined": 0,
        "symbols": ["IBM"],
    }
    stub.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": _payload(result)},
        {
            "FunctionName": s3_settings.lambda_function_name,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(
                {
                    "bucket": s3_settings.s3_bucket,
                    "raw_keys": ["raw/a"],
                    "logical_date": LOGICAL_DATE,
                    "part": "batch-001",
                }
            ).encode(),
        },
    )
    with stub:
        assert (
            invoke_transform_lambda(
                ["raw/a"], date.fromisoformat(LOGICAL_DATE), "batch-001", s3_settings, client=client
            )
            == result
        )
    stub.assert_no_pending_responses()


def test_invoke_reports_the_functions_own_error(s3_settings):
    client, stub = _stubbed_lambda()
    error = {"errorType": "S3StorageError", "errorMessage": "bucket x does not exist"}
    stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _payload(error)})
    with stub, pytest.raises(LambdaTransformError, match="S3StorageError: bucket x does not exist"):
        invoke_transform_lambda(["raw/a"], date.fromisoformat(LOGICAL_DATE), "batch-001", s3_settings, client=client)


def test_invoke_of_a_missing_function_says_what_to_check(s3_settings):
    client, stub = _stubbed_lambda()
    stub.add_client_error("invoke", service_error_code="ResourceNotFoundException", http_status_code=404)
    with stub, pytest.raises(LambdaTransformError, match="Check that it is deployed"):
        invoke_transform_lambda(["raw/a"], date.fromisoformat(LOGICAL_DATE), "batch-001", s3_settings, client=client)
