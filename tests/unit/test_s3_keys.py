"""The S3 key builders: exact keys for good input, ValueError for anything unsafe."""

from datetime import UTC, date, datetime

import pytest

from src.ingestion.symbols import InvalidSymbolInputError
from src.storage.s3_handler import processed_object_key, raw_object_key


def test_raw_key_has_hive_style_folders():
    assert (
        raw_object_key("alpha_vantage", "IBM", "2024-01-02")
        == "raw/source=alpha_vantage/symbol=IBM/ingest_date=2024-01-02/daily.json.gz"
    )


def test_raw_key_normalises_symbol_and_accepts_a_date_object():
    assert (
        raw_object_key("yahoo", " brk.b ", date(2024, 2, 29))
        == "raw/source=yahoo/symbol=BRK.B/ingest_date=2024-02-29/daily.json.gz"
    )


def test_raw_key_with_own_filename():
    assert (
        raw_object_key("file", "AAPL", "2023-12-29", filename="backfill_2023.json.gz")
        == "raw/source=file/symbol=AAPL/ingest_date=2023-12-29/backfill_2023.json.gz"
    )


def test_same_inputs_give_the_same_key_so_reruns_overwrite():
    assert raw_object_key("yahoo", "msft", "2024-01-02") == raw_object_key("yahoo", "MSFT", date(2024, 1, 2))


@pytest.mark.parametrize("symbol", ["../x", "A;DROP", "A;DROP TABLE prices", "AAPL/../../etc", "", "ÄPPLE", "AA PL"])
def test_raw_key_refuses_unsafe_symbols(symbol):
    with pytest.raises(InvalidSymbolInputError):
        raw_object_key("yahoo", symbol, "2024-01-02")


@pytest.mark.parametrize("source", ["alphavantage", "Yahoo", "../raw", "", "s3"])
def test_raw_key_refuses_unknown_sources(source):
    with pytest.raises(ValueError, match="source must be one of alpha_vantage, yahoo, file"):
        raw_object_key(source, "IBM", "2024-01-02")


@pytest.mark.parametrize(
    "bad_date",
    [
        "2024-02-30",  # right shape, not a real day
        "2023-02-29",  # not a leap year
        "2024-1-2",
        "20240102",
        "2024-01-02T00:00:00",
        "2024-01-02/../x",
        "",
        None,
        20240102,
        datetime(2024, 1, 2, 21, 0, tzinfo=UTC),  # a datetime: which day depends on the zone
    ],
)
def test_raw_key_refuses_bad_dates(bad_date):
    with pytest.raises(ValueError, match="ingest_date must be"):
        raw_object_key("yahoo", "IBM", bad_date)


@pytest.mark.parametrize(
    "filename",
    ["../x.json.gz", "a/b.json.gz", "x..json.gz", "daily.csv", "daily.json", "da ily.json.gz", "", "x" * 101],
)
def test_raw_key_refuses_unsafe_filenames(filename):
    with pytest.raises(ValueError, match="raw file name"):
        raw_object_key("yahoo", "IBM", "2024-01-02", filename=filename)


def test_processed_key():
    assert (
        processed_object_key("prices", "2024-01-02", "batch-003")
        == "processed/dataset=prices/ingest_date=2024-01-02/part-batch-003.parquet"
    )
    assert (
        processed_object_key("quarantine", date(2024, 1, 2), "batch_1")
        == "processed/dataset=quarantine/ingest_date=2024-01-02/part-batch_1.parquet"
    )


@pytest.mark.parametrize("dataset", ["price", "../prices", "", "PRICES"])
def test_processed_key_refuses_unknown_datasets(dataset):
    with pytest.raises(ValueError, match="dataset must be one of prices, quarantine"):
        processed_object_key(dataset, "2024-01-02", "batch-001")


@pytest.mark.parametrize("part", ["../x", "batch.001", "a/b", "", "batch 1", "x" * 65, None])
def test_processed_key_refuses_unsafe_parts(part):
    with pytest.raises(ValueError, match="part must be a batch id"):
        processed_object_key("prices", "2024-01-02", part)


def test_processed_key_refuses_bad_dates():
    with pytest.raises(ValueError, match="ingest_date must be"):
        processed_object_key("prices", "2024-13-01", "batch-001")
