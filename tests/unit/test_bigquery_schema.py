"""The BigQuery schema is generated from schema.py (no emulator needed for these)."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from src.storage.bigquery_handler import (
    BigQueryLoadError,
    bigquery_table,
    frame_to_ndjson,
    prepare_frame,
    query_parameters,
    schema_fields,
)
from src.storage.schema import TABLES, Column, Table

# Written out here on purpose, independently of the module's own mapping.
EXPECTED_BIGQUERY_TYPE = {
    "STRING": "STRING",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "FLOAT": "FLOAT64",
    "INTEGER": "INT64",
    "BOOLEAN": "BOOL",
}


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_schema_fields_follow_schema_py(table):
    fields = schema_fields(table)

    assert [(f.name, f.field_type, f.mode, f.description) for f in fields] == [
        (
            column.name,
            EXPECTED_BIGQUERY_TYPE[column.type],
            "NULLABLE" if column.nullable else "REQUIRED",
            column.description or None,
        )
        for column in table.columns
    ]


def test_fact_daily_prices_fields_read_as_expected():
    # One table spelled out, as a readable example of the generated schema.
    fields = schema_fields(TABLES["fact_daily_prices"])

    assert [(f.name, f.field_type, f.mode) for f in fields] == [
        ("symbol", "STRING", "REQUIRED"),
        ("trade_date", "DATE", "REQUIRED"),
        ("open", "FLOAT64", "NULLABLE"),
        ("high", "FLOAT64", "NULLABLE"),
        ("low", "FLOAT64", "NULLABLE"),
        ("close", "FLOAT64", "NULLABLE"),
        ("volume", "INT64", "NULLABLE"),
        ("source", "STRING", "NULLABLE"),
        ("quality_flags", "STRING", "NULLABLE"),
        ("loaded_at", "TIMESTAMP", "NULLABLE"),
        ("run_id", "STRING", "NULLABLE"),
        ("adj_open", "FLOAT64", "NULLABLE"),
        ("adj_high", "FLOAT64", "NULLABLE"),
        ("adj_low", "FLOAT64", "NULLABLE"),
        ("adj_close", "FLOAT64", "NULLABLE"),
        ("adj_volume", "FLOAT64", "NULLABLE"),
    ]


def test_a_new_column_appears_in_the_generated_schema():
    before = Table(
        name="watchlist",
        description="symbols someone follows",
        columns=(Column("symbol", "STRING", nullable=False), Column("added_on", "DATE")),
        primary_key=("symbol",),
    )
    after = Table(
        name=before.name,
        description=before.description,
        columns=(*before.columns, Column("is_active", "BOOLEAN", description="still followed")),
        primary_key=before.primary_key,
    )

    assert [(f.name, f.field_type, f.mode) for f in schema_fields(before)] == [
        ("symbol", "STRING", "REQUIRED"),
        ("added_on", "DATE", "NULLABLE"),
    ]
    new_field = schema_fields(after)[-1]
    assert (new_field.name, new_field.field_type, new_field.mode, new_field.description) == (
        "is_active",
        "BOOL",
        "NULLABLE",
        "still followed",
    )


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_bigquery_table_partitions_by_month_and_clusters_as_schema_py_says(table):
    # bqemulator stores these settings but cannot prune with them, so check what we send.
    result = bigquery_table(table, f"my-project.finance.{table.name}")

    assert result.reference.table_id == table.name
    assert result.description == table.description
    if table.partition_by:
        assert result.time_partitioning.field == table.partition_by
        assert result.time_partitioning.type_ == "MONTH"
    else:
        assert result.time_partitioning is None
    assert result.clustering_fields == (list(table.cluster_by) or None)


def test_fact_tables_are_partitioned_on_trade_date_and_clustered_by_symbol():
    for name in ("fact_daily_prices", "fact_technical_indicators"):
        result = bigquery_table(TABLES[name], f"my-project.finance.{name}")
        assert (result.time_partitioning.field, result.clustering_fields) == ("trade_date", ["symbol"])


def test_frame_to_ndjson_writes_canonical_values_as_bigquery_reads_them():
    table = TABLES["pipeline_runs"]
    frame = pd.DataFrame(
        {
            "run_id": ["run-1", "run-2"],
            "logical_date": ["2024-07-03", None],
            "started_at": ["2024-07-03T21:30:00+00:00", None],
            "symbols_requested": pd.array([3, None], dtype="Int64"),
            "duration_seconds": [12.5, np.nan],
        }
    )

    body = frame_to_ndjson(table, frame)

    assert body == (
        b'{"run_id": "run-1", "logical_date": "2024-07-03", "started_at": "2024-07-03T21:30:00+00:00", '
        b'"symbols_requested": 3, "duration_seconds": 12.5}\n'
        b'{"run_id": "run-2", "logical_date": null, "started_at": null, '
        b'"symbols_requested": null, "duration_seconds": null}\n'
    )


def test_frame_to_ndjson_converts_dates_timestamps_and_numpy_values():
    table = TABLES["dim_date"]
    frame = pd.DataFrame(
        {
            "trade_date": [pd.Timestamp("2024-07-04")],
            "year": np.array([2024], dtype="int64"),
            "week_of_year": [27.0],  # a whole number stored as float
            "is_trading_day": np.array([False]),
        }
    )

    assert frame_to_ndjson(table, frame) == (
        b'{"trade_date": "2024-07-04", "year": 2024, "week_of_year": 27, "is_trading_day": false}\n'
    )


def test_prepare_frame_keeps_table_columns_in_order_and_the_last_of_repeated_keys():
    table = TABLES["dim_symbol"]
    frame = pd.DataFrame({"source": ["yahoo", "alpha_vantage", "yahoo"], "symbol": ["IBM", "IBM", "AAPL"]})

    result = prepare_frame(table, frame)

    assert list(result.columns) == ["symbol", "source"]
    assert result.to_dict("records") == [
        {"symbol": "IBM", "source": "alpha_vantage"},
        {"symbol": "AAPL", "source": "yahoo"},
    ]


def test_prepare_frame_rejects_a_column_the_table_does_not_have():
    frame = pd.DataFrame({"symbol": ["IBM"], "sector": ["Technology"]})

    with pytest.raises(ValueError, match=r"dim_symbol: the rows have columns that are not in the table: \['sector'\]"):
        prepare_frame(TABLES["dim_symbol"], frame)


def test_prepare_frame_rejects_a_missing_required_value():
    # BigQuery itself rejects this; bqemulator does not, so the handler checks it first.
    frame = pd.DataFrame({"symbol": ["IBM", None], "source": ["yahoo", "yahoo"]})

    with pytest.raises(BigQueryLoadError) as caught:
        prepare_frame(TABLES["dim_symbol"], frame)

    assert caught.value.table == "dim_symbol"
    assert caught.value.job_id is None
    assert caught.value.errors == [
        {"reason": "invalid", "message": "dim_symbol: 1 rows have no value in the REQUIRED column symbol"}
    ]


def test_prepare_frame_rejects_a_frame_without_its_primary_key():
    with pytest.raises(ValueError, match=r"fact_daily_prices: the rows have no column \['trade_date'\]"):
        prepare_frame(TABLES["fact_daily_prices"], pd.DataFrame({"symbol": ["IBM"], "close": [190.5]}))


def test_query_parameters_take_their_types_from_the_python_values():
    positional = query_parameters(["IBM", 5, 0.5, True, date(2024, 7, 3), datetime(2024, 7, 3, 21, 30)])
    named = query_parameters({"symbols": ["IBM", "AAPL"], "rows": np.int64(250)})

    assert [(p.name, p.type_, p.value) for p in positional] == [
        (None, "STRING", "IBM"),
        (None, "INT64", 5),
        (None, "FLOAT64", 0.5),
        (None, "BOOL", True),
        (None, "DATE", date(2024, 7, 3)),
        (None, "TIMESTAMP", datetime(2024, 7, 3, 21, 30)),
    ]
    assert [(p.name, p.array_type, p.values) for p in named[:1]] == [("symbols", "STRING", ["IBM", "AAPL"])]
    assert (named[1].name, named[1].type_, named[1].value) == ("rows", "INT64", 250)
