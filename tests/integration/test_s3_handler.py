"""The S3 raw and processed zones against a real moto server (real HTTP through boto3)."""

import gzip
import json
import time

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.config import load_settings
from src.storage.s3_handler import (
    S3StorageError,
    ensure_bucket,
    get_s3_client,
    land_raw_reply,
    list_processed_objects,
    list_raw_objects,
    raw_object_metadata,
    read_processed_frame,
    read_raw_reply,
    write_processed_frame,
)
from tests.fixtures.moto_server import free_local_port

pytestmark = pytest.mark.integration

FETCHED_AT = "2024-01-02T21:30:00+00:00"
AV_PARAMS = {"function": "TIME_SERIES_DAILY", "symbol": "IBM", "outputsize": "compact", "datatype": "json"}


def alpha_vantage_style_reply(prices: pd.DataFrame) -> dict:
    """Real prices shaped like an Alpha Vantage TIME_SERIES_DAILY reply (values as strings)."""
    symbol = prices["symbol"].iloc[0]
    series = {
        row.trade_date: {
            "1. open": f"{row.open:.4f}",
            "2. high": f"{row.high:.4f}",
            "3. low": f"{row.low:.4f}",
            "4. close": f"{row.close:.4f}",
            "5. volume": str(row.volume),
        }
        for row in prices.sort_values("trade_date", ascending=False).itertuples()
    }
    return {
        "Meta Data": {
            "1. Information": "Daily Prices (open, high, low, close) and Volumes",
            "2. Symbol": symbol,
            "3. Last Refreshed": prices["trade_date"].max(),
            "4. Output Size": "Compact",
            "5. Time Zone": "US/Eastern",
        },
        "Time Series (Daily)": series,
    }


@pytest.fixture
def s3(s3_settings):
    """(client, bucket) with the bucket created by the code under test."""
    client = get_s3_client(s3_settings)
    ensure_bucket(client, s3_settings.s3_bucket, create=True)
    return client, s3_settings.s3_bucket


@pytest.fixture
def ibm_reply(real_prices_4_symbols) -> dict:
    ibm = real_prices_4_symbols[real_prices_4_symbols["symbol"] == "IBM"]
    return alpha_vantage_style_reply(ibm.tail(5))


# --------------------------------------------------------------------------- bucket


def test_ensure_bucket_creates_an_encrypted_versioned_private_bucket(s3_settings):
    client = get_s3_client(s3_settings)
    bucket = s3_settings.s3_bucket

    ensure_bucket(client, bucket, create=True)
    ensure_bucket(client, bucket, create=True)  # idempotent: the second call changes nothing
    ensure_bucket(client, bucket, create=False)  # exists now, so no error either

    rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [rule["ApplyServerSideEncryptionByDefault"] for rule in rules] == [{"SSEAlgorithm": "AES256"}]
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == [bucket]


def test_missing_bucket_without_create_is_a_clear_error(s3_settings, ibm_reply):
    client = get_s3_client(s3_settings)
    bucket = s3_settings.s3_bucket
    expected = (
        f"S3 bucket {bucket} does not exist at {s3_settings.aws_endpoint_url}; "
        "set S3_CREATE_BUCKET=true or create the bucket first."
    )

    with pytest.raises(S3StorageError) as excinfo:
        ensure_bucket(client, bucket, create=False)
    assert str(excinfo.value) == expected
    assert excinfo.value.reason == "no_such_bucket"
    assert client.list_buckets()["Buckets"] == []

    # Writing into a bucket that is missing (after open_s3 checked it: deleted during the run)
    # says so, and does not advise S3_CREATE_BUCKET=true, which may well be set already.
    with pytest.raises(S3StorageError) as excinfo:
        land_raw_reply(
            client,
            bucket,
            source="alpha_vantage",
            symbol="IBM",
            ingest_date="2024-01-02",
            payload=ibm_reply,
            request_params=AV_PARAMS,
            fetched_at=FETCHED_AT,
        )
    assert str(excinfo.value).startswith(f"S3 bucket {bucket} no longer exists at {s3_settings.aws_endpoint_url}")
    assert "it was deleted while the run was using it" in str(excinfo.value)
    assert "set S3_CREATE_BUCKET=true" not in str(excinfo.value)


# --------------------------------------------------------------------------- raw zone


def test_land_and_read_back_the_exact_reply(s3, ibm_reply):
    client, bucket = s3

    key = land_raw_reply(
        client,
        bucket,
        source="alpha_vantage",
        symbol="ibm",
        ingest_date="2024-01-02",
        payload=ibm_reply,
        request_params=AV_PARAMS,
        fetched_at=FETCHED_AT,
    )

    assert key == "raw/source=alpha_vantage/symbol=IBM/ingest_date=2024-01-02/daily.json.gz"
    assert read_raw_reply(client, bucket, key) == ibm_reply

    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/json"
    assert head["ContentEncoding"] == "gzip"

    stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored[:2] == b"\x1f\x8b"  # gzip magic number: stored compressed
    assert stored[4:8] == b"\x00\x00\x00\x00"  # no timestamp in the gzip header: same reply, same bytes
    assert json.loads(gzip.decompress(stored)) == ibm_reply


def test_text_reply_is_stored_as_a_json_string(s3, goog_prices):
    client, bucket = s3
    csv_text = goog_prices.head(3).drop(columns="symbol").to_csv(index=False)

    key = land_raw_reply(
        client,
        bucket,
        source="yahoo",
        symbol="GOOG",
        ingest_date="2013-03-01",
        payload=csv_text,
        request_params={"period": "5d"},
        fetched_at=FETCHED_AT,
    )

    assert read_raw_reply(client, bucket, key) == csv_text
    stored = gzip.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()
    assert stored == json.dumps(csv_text)
    assert raw_object_metadata(client, bucket, key)["payload_kind"] == "text"


def test_metadata_is_stored_without_the_api_key(s3, ibm_reply):
    client, bucket = s3
    params = {**AV_PARAMS, "apikey": "FAKEKEY-123"}

    key = land_raw_reply(
        client,
        bucket,
        source="alpha_vantage",
        symbol="IBM",
        ingest_date="2024-01-02",
        payload=ibm_reply,
        request_params=params,
        fetched_at=FETCHED_AT,
        secrets=("FAKEKEY-123",),
    )

    assert raw_object_metadata(client, bucket, key) == {
        "source": "alpha_vantage",
        "symbol": "IBM",
        "ingest_date": "2024-01-02",
        "fetched_at": FETCHED_AT,
        "payload_kind": "json",
        "request_params": AV_PARAMS,
    }
    head = client.head_object(Bucket=bucket, Key=key)
    assert "FAKEKEY-123" not in json.dumps(head["Metadata"])
    assert "FAKEKEY-123" not in gzip.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()


def test_a_secret_echoed_in_the_reply_is_redacted_before_landing(s3):
    client, bucket = s3
    reply = {"Error Message": "Invalid API call for https://www.alphavantage.co/query?symbol=IBM&apikey=FAKEKEY-123"}

    key = land_raw_reply(
        client,
        bucket,
        source="alpha_vantage",
        symbol="IBM",
        ingest_date="2024-01-02",
        payload=reply,
        request_params={"symbol": "IBM", "api_key": "FAKEKEY-123", "token": "FAKEKEY-123"},
        fetched_at=FETCHED_AT,
        secrets=("FAKEKEY-123",),
    )

    assert read_raw_reply(client, bucket, key) == {
        "Error Message": "Invalid API call for https://www.alphavantage.co/query?symbol=IBM&apikey=***"
    }
    assert raw_object_metadata(client, bucket, key)["request_params"] == {"symbol": "IBM"}


def test_rerun_overwrites_the_same_key_and_versioning_keeps_the_old_one(s3, ibm_reply):
    client, bucket = s3
    for fetched_at in ("2024-01-02T21:30:00+00:00", "2024-01-02T22:45:00+00:00"):
        key = land_raw_reply(
            client,
            bucket,
            source="alpha_vantage",
            symbol="IBM",
            ingest_date="2024-01-02",
            payload=ibm_reply,
            request_params=AV_PARAMS,
            fetched_at=fetched_at,
        )

    assert list_raw_objects(client, bucket, "2024-01-02") == [key]
    versions = client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(versions) == 2
    # Identical replies give identical bytes (deterministic gzip), so the ETags (MD5) match.
    assert versions[0]["ETag"] == versions[1]["ETag"]
    assert raw_object_metadata(client, bucket, key)["fetched_at"] == "2024-01-02T22:45:00+00:00"


def test_list_raw_objects_for_a_day(s3, real_prices_4_symbols):
    client, bucket = s3
    landed = [
        ("alpha_vantage", "IBM", "2024-01-02"),
        ("alpha_vantage", "AAPL", "2024-01-02"),
        ("yahoo", "IBM", "2024-01-02"),
        ("yahoo", "IBM", "2024-01-03"),
        ("file", "MSFT", "2024-01-03"),
    ]
    for source, symbol, day in landed:
        prices = real_prices_4_symbols[real_prices_4_symbols["symbol"] == symbol].tail(3)
        land_raw_reply(
            client,
            bucket,
            source=source,
            symbol=symbol,
            ingest_date=day,
            payload=alpha_vantage_style_reply(prices),
            request_params={"symbol": symbol},
            fetched_at=FETCHED_AT,
        )

    assert list_raw_objects(client, bucket, "2024-01-02") == [
        "raw/source=alpha_vantage/symbol=AAPL/ingest_date=2024-01-02/daily.json.gz",
        "raw/source=alpha_vantage/symbol=IBM/ingest_date=2024-01-02/daily.json.gz",
        "raw/source=yahoo/symbol=IBM/ingest_date=2024-01-02/daily.json.gz",
    ]
    assert list_raw_objects(client, bucket, "2024-01-02", source="yahoo") == [
        "raw/source=yahoo/symbol=IBM/ingest_date=2024-01-02/daily.json.gz",
    ]
    assert list_raw_objects(client, bucket, "2024-01-03", symbol="ibm") == [
        "raw/source=yahoo/symbol=IBM/ingest_date=2024-01-03/daily.json.gz",
    ]
    assert list_raw_objects(client, bucket, "2024-01-02", source="alpha_vantage", symbol="AAPL") == [
        "raw/source=alpha_vantage/symbol=AAPL/ingest_date=2024-01-02/daily.json.gz",
    ]
    assert list_raw_objects(client, bucket, "2024-01-03") == [
        "raw/source=file/symbol=MSFT/ingest_date=2024-01-03/daily.json.gz",
        "raw/source=yahoo/symbol=IBM/ingest_date=2024-01-03/daily.json.gz",
    ]
    assert list_raw_objects(client, bucket, "2024-01-04") == []


def test_missing_raw_object_is_a_clear_error(s3):
    client, bucket = s3
    key = "raw/source=yahoo/symbol=IBM/ingest_date=2024-01-02/daily.json.gz"

    with pytest.raises(S3StorageError) as excinfo:
        read_raw_reply(client, bucket, key)
    assert excinfo.value.reason == "no_such_key"
    assert str(excinfo.value).startswith(f"s3://{bucket}/{key} does not exist at {client.meta.endpoint_url}")

    with pytest.raises(S3StorageError) as excinfo:
        raw_object_metadata(client, bucket, key)
    assert excinfo.value.reason == "no_such_key"


# --------------------------------------------------------------------------- processed zone


def validated_prices(goog_prices: pd.DataFrame) -> pd.DataFrame:
    """Real GOOG prices in the validated canonical layout (with source and quality_flags)."""
    frame = goog_prices.head(30).copy()
    frame["source"] = "yahoo"
    frame["quality_flags"] = ""
    frame.loc[frame.index[:3], "quality_flags"] = "first_sessions"
    return frame


def test_processed_frame_round_trips_with_its_dtypes(s3, goog_prices):
    client, bucket = s3
    frame = validated_prices(goog_prices)

    key = write_processed_frame(client, bucket, frame, dataset="prices", ingest_date="2004-09-30", part="batch-001")

    assert key == "processed/dataset=prices/ingest_date=2004-09-30/part-batch-001.parquet"
    back = read_processed_frame(client, bucket, key)
    assert_frame_equal(back, frame)
    assert back["open"].dtype == "float64"
    assert back["volume"].dtype == "int64"
    assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_processed_frames_keep_their_nans(s3, goog_prices):
    client, bucket = s3
    frame = goog_prices.head(10)[["symbol", "trade_date", "close"]].copy()
    frame["sma_5"] = frame["close"].rolling(5).mean()  # first 4 rows are NaN (warm-up)

    key = write_processed_frame(client, bucket, frame, dataset="prices", ingest_date="2004-09-01", part="batch-002")

    back = read_processed_frame(client, bucket, key)
    assert_frame_equal(back, frame)
    assert back["sma_5"].isna().tolist() == [True] * 4 + [False] * 6


def test_list_processed_objects(s3, goog_prices):
    client, bucket = s3
    frame = validated_prices(goog_prices)
    for part in ("batch-002", "batch-001"):
        write_processed_frame(client, bucket, frame, dataset="prices", ingest_date="2004-09-30", part=part)
    write_processed_frame(client, bucket, frame, dataset="quarantine", ingest_date="2004-09-30", part="batch-001")

    assert list_processed_objects(client, bucket, "prices", "2004-09-30") == [
        "processed/dataset=prices/ingest_date=2004-09-30/part-batch-001.parquet",
        "processed/dataset=prices/ingest_date=2004-09-30/part-batch-002.parquet",
    ]
    assert list_processed_objects(client, bucket, "quarantine", "2004-09-29") == []


# --------------------------------------------------------------------------- failures


def test_endpoint_down_fails_fast_with_advice(fake_aws_credentials, tmp_path, ibm_reply):
    # A port nothing listens on: connections are refused, like a stopped local stack.
    endpoint = f"http://127.0.0.1:{free_local_port()}"
    settings = load_settings(
        env_file=tmp_path / "no.env", overrides={"AWS_ENDPOINT_URL": endpoint, "S3_BUCKET": "cloudscale-down"}
    )
    client = get_s3_client(settings)
    expected = (
        f"Cannot reach S3 at {endpoint} (bucket cloudscale-down). Is the local stack running? "
        "Start it with ./scripts/run-local.sh, or unset AWS_ENDPOINT_URL to use real AWS."
    )

    started = time.monotonic()
    with pytest.raises(S3StorageError) as excinfo:
        ensure_bucket(client, "cloudscale-down", create=True)
    assert time.monotonic() - started < 10
    assert str(excinfo.value) == expected
    assert excinfo.value.reason == "unreachable"

    with pytest.raises(S3StorageError) as excinfo:
        land_raw_reply(
            client,
            "cloudscale-down",
            source="alpha_vantage",
            symbol="IBM",
            ingest_date="2024-01-02",
            payload=ibm_reply,
            request_params=AV_PARAMS,
            fetched_at=FETCHED_AT,
        )
    assert str(excinfo.value) == expected


def test_rejected_credentials_are_access_denied_without_the_credentials(
    s3_settings, monkeypatch, moto_checks_credentials
):
    # moto now checks credentials like AWS does, and these are unknown to it.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEEXAMPLE00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "FAKESECRET-do-not-leak-42")
    client = get_s3_client(s3_settings)

    with pytest.raises(S3StorageError) as excinfo:
        ensure_bucket(client, s3_settings.s3_bucket, create=True)

    message = str(excinfo.value)
    assert excinfo.value.reason == "access_denied"
    assert message == (
        f"Access denied (403) while checking the bucket (bucket {s3_settings.s3_bucket} at "
        f"{s3_settings.aws_endpoint_url}). Check that the AWS credentials in use are valid and that "
        "their IAM policy allows this on the bucket."
    )
    assert "FAKESECRET-do-not-leak-42" not in message
    assert "AKIAFAKEEXAMPLE00001" not in message
