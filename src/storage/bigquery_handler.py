"""The BigQuery warehouse: the same functions as `sqlite_warehouse`, on Google BigQuery.

`WAREHOUSE_BACKEND=bigquery` makes `src/storage/warehouse.py` use this module instead of the
SQLite one. Both expose `connect`, `create_schema`, `load_batch`, `read_lookback`,
`record_run`, `query`, `refresh_dim_symbol` and `ensure_dim_date`, so the
pipeline code is the same for both.

How a batch is written (idempotent, and free-tier friendly):
1. Each table's rows go into a fresh staging table (`_staging_<table>_<random>`) with a LOAD
   JOB: newline-delimited JSON with the explicit schema from `schema.py`. Load jobs cost
   nothing; streaming inserts (`insert_rows`) cost money and the free tier refuses them.
2. One multi-statement transaction MERGEs every staging table into its target on the primary
   key: a stored row is updated, a new row is inserted. Loading the same batch twice changes
   nothing, and a failure rolls back every table of the batch (like SQLite's one transaction).
3. The staging tables are dropped.
If any load job fails, `BigQueryLoadError` is raised with the job's own error details and
nothing of the batch is merged.

Table schemas are generated from `schema.py`; partitioning and clustering are explained in
docs/bigquery.md. For local runs and tests, `BIGQUERY_API_ENDPOINT` points the client at the
`bqemulator` stand-in (see that doc for its quirks).

Example:
    >>> warehouse = connect(load_settings())
    >>> create_schema(warehouse)
    >>> load_batch(warehouse, {"fact_daily_prices": clean_prices})
    {'fact_daily_prices': 1260}
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import google.cloud.bigquery.client as bigquery_client_module
import pandas as pd
from google.api_core.exceptions import Conflict, GoogleAPICallError, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from src.config import Settings
from src.storage.calendar_dim import build_dim_date, dim_date_range_to_write
from src.storage.schema import AUDIT_COLUMNS, HISTORY_COLUMNS, LOOKBACK_COLUMNS, TABLES, Table
from src.storage.views import VIEWS, render_view

logger = logging.getLogger(__name__)

# The BigQuery type of each logical type in schema.py.
BIGQUERY_TYPES = {
    "STRING": "STRING",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "FLOAT": "FLOAT64",
    "INTEGER": "INT64",
    "BOOLEAN": "BOOL",
}

# Tables with a `partition_by` column get one partition per MONTH, not per day: 20 years of
# daily history is ~5,000 trading days, more than one load or MERGE may touch (4,000
# partitions per job), but only 240 months. docs/bigquery.md explains the choice and the cost.
PARTITION_TYPE = bigquery.TimePartitioningType.MONTH

STAGING_PREFIX = "_staging_"

# bqemulator refuses a multipart upload (a load of less than 5 MB) whose data part has the
# content type "*/*", which is what the client library sends. Real BigQuery accepts both.
EMULATOR_UPLOAD_CONTENT_TYPE = "application/octet-stream"


# The per-dataset load lock (see load_transaction).
LOAD_LOCK_TABLE = "_load_lock"
LOAD_LOCK_STALE_SECONDS = 3600  # a lock older than this was left by a killed run
LOAD_LOCK_POLL_SECONDS = 1.0


class BigQueryLockedError(Exception):
    """Another load held the dataset's load lock for longer than the wait."""


class BigQueryLoadError(Exception):
    """Rows of a batch were rejected; nothing of the batch was merged.

    Attributes:
        table: the target table whose rows were rejected.
        job_id: the failed load job (None when the rows were rejected before any job ran).
        errors: BigQuery's own error details (the job's `errors`): a list of dicts with
            `reason`, `message` and usually `location`.
    """

    def __init__(self, message: str, table: str, job_id: str | None = None, errors: list[dict] | None = None):
        super().__init__(message)
        self.table = table
        self.job_id = job_id
        self.errors = errors or []


@dataclass
class BigQueryWarehouse:
    """An open BigQuery warehouse: the client and where the tables live."""

    client: bigquery.Client
    project: str
    dataset: str
    location: str
    # How long a load waits for another run's load lock (BIGQUERY_LOCK_WAIT_SECONDS).
    lock_wait_seconds: float = 600.0

    def table_id(self, name: str) -> str:
        """The full id of a table, e.g. 'my-project.finance.fact_daily_prices'."""
        return f"{self.project}.{self.dataset}.{name}"

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self.client.close()


# --- Schema: generated from schema.py ------------------------------------------------------


def schema_fields(table: Table) -> list[bigquery.SchemaField]:
    """Return the BigQuery schema of a table from its definition in `schema.py`.

    Args:
        table: a `schema.Table`.

    Returns:
        One SchemaField per column, in order: BigQuery type from BIGQUERY_TYPES, mode REQUIRED
        when the column is not nullable (else NULLABLE), and the column's description.
    """
    return [
        bigquery.SchemaField(
            column.name,
            BIGQUERY_TYPES[column.type],
            mode="NULLABLE" if column.nullable else "REQUIRED",
            description=column.description or None,
        )
        for column in table.columns
    ]


def bigquery_table(table: Table, table_id: str) -> bigquery.Table:
    """Return the BigQuery table object that `create_schema` creates for a table definition.

    Args:
        table: a `schema.Table`.
        table_id: where to create it, 'project.dataset.table'.

    Returns:
        A `bigquery.Table` with the generated schema and description; partitioned by
        PARTITION_TYPE on `table.partition_by` and clustered by `table.cluster_by` when the
        definition has them.
    """
    result = bigquery.Table(table_id, schema=schema_fields(table))
    result.description = table.description
    if table.partition_by:
        result.time_partitioning = bigquery.TimePartitioning(type_=PARTITION_TYPE, field=table.partition_by)
    if table.cluster_by:
        result.clustering_fields = list(table.cluster_by)
    return result


# --- Connection and schema --------------------------------------------------------------------


def connect(settings: Settings) -> BigQueryWarehouse:
    """Open a BigQuery client for `settings.gcp_project_id`.

    With `settings.bigquery_api_endpoint` set (the local emulator), the client talks to that
    endpoint without credentials; otherwise it uses Google's default credentials (a service
    account key in GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`).

    Args:
        settings: loaded settings (GCP_PROJECT_ID, BIGQUERY_DATASET, BIGQUERY_LOCATION,
            BIGQUERY_API_ENDPOINT).

    Returns:
        A `BigQueryWarehouse`; nothing is created yet (see `create_schema`).
    """
    if settings.bigquery_api_endpoint:
        # The upload content type is a module-level setting of the client library; the
        # emulator rejects the default one. Only ever changed when talking to the emulator.
        bigquery_client_module._GENERIC_CONTENT_TYPE = EMULATOR_UPLOAD_CONTENT_TYPE
        client = bigquery.Client(
            project=settings.gcp_project_id,
            location=settings.bigquery_location,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": settings.bigquery_api_endpoint},
        )
        logger.info("BigQuery: using the emulator at %s", settings.bigquery_api_endpoint)
    else:
        client = bigquery.Client(project=settings.gcp_project_id, location=settings.bigquery_location)
    return BigQueryWarehouse(
        client=client,
        project=settings.gcp_project_id,
        dataset=settings.bigquery_dataset,
        location=settings.bigquery_location,
        lock_wait_seconds=settings.bigquery_lock_wait_seconds,
    )


def create_schema(wh: BigQueryWarehouse) -> None:
    """Create the dataset, every table of `schema.py` and the views, when missing.

    Safe to run at every start. A table that exists already is kept as it is, except that
    columns added to `schema.py` since it was created are added to it, as NULLABLE columns
    (BigQuery cannot add a REQUIRED column to a table that has rows). The views (src/storage/views.py)
    are replaced, so they always match this code.

    Args:
        wh: the open warehouse.
    """
    dataset = bigquery.Dataset(f"{wh.project}.{wh.dataset}")
    dataset.location = wh.location
    wh.client.create_dataset(dataset, exists_ok=True)
    for table in TABLES.values():
        # With exists_ok, create_table returns the table as it is stored when it exists.
        stored = wh.client.create_table(bigquery_table(table, wh.table_id(table.name)), exists_ok=True)
        _add_missing_columns(wh, table, stored)
    for name in VIEWS:
        select_sql = render_view(name, lambda table: f"`{wh.table_id(table)}`")
        _run(wh, f"CREATE OR REPLACE VIEW `{wh.table_id(name)}` AS\n{select_sql}")
    logger.info("BigQuery schema ready in %s.%s: %d tables, %d views", wh.project, wh.dataset, len(TABLES), len(VIEWS))


def _add_missing_columns(wh: BigQueryWarehouse, table: Table, stored: bigquery.Table) -> list[str]:
    """Add the columns of `table` that the stored BigQuery table lacks; return their names.

    `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` adds a NULLABLE column without touching the
    rows (they read NULL in it). The column's description is not set this way: DDL takes no
    query parameters and descriptions are only documentation.
    """
    stored_names = {field.name for field in stored.schema}
    missing = [column for column in table.columns if column.name not in stored_names]
    for column in missing:
        _run(
            wh,
            f"ALTER TABLE `{wh.table_id(table.name)}` "
            f"ADD COLUMN IF NOT EXISTS {column.name} {BIGQUERY_TYPES[column.type]}",
        )
        logger.info("BigQuery: added column %s %s to %s", column.name, BIGQUERY_TYPES[column.type], table.name)
    return [column.name for column in missing]


# --- Writing: load job into staging, then MERGE ------------------------------------------------


@contextlib.contextmanager
def load_transaction(wh: BigQueryWarehouse, wait_seconds: float | None = None):
    """The `with` block one batch's load runs in (`steps.load_prices`): it holds the dataset's load lock.

    BigQuery has no lock a reader can hold until its own writes commit, so two loads at once
    (two CLI runs of adjacent ranges) could each compute indicators from a history without
    the other's rows. One load per dataset at a time fixes that: the lock is a table,
    `<dataset>._load_lock`, created at the start of the block and deleted at its end.
    Creating a table that exists fails (409 Conflict) for everyone but one, so the first
    load in holds it and the others wait. A lock left by a killed run expires: BigQuery
    deletes it after LOAD_LOCK_STALE_SECONDS (its `expires`), and a waiting load takes over
    a lock older than that itself.

    Args:
        wh: the open warehouse.
        wait_seconds: how long to wait for another load's lock (None: `wh.lock_wait_seconds`,
            the setting BIGQUERY_LOCK_WAIT_SECONDS).

    Raises:
        BigQueryLockedError: another load held the lock for longer than `wait_seconds`.
    """
    lock_id = wh.table_id(LOAD_LOCK_TABLE)
    _acquire_load_lock(wh, lock_id, wh.lock_wait_seconds if wait_seconds is None else wait_seconds)
    try:
        yield
    finally:
        wh.client.delete_table(lock_id, not_found_ok=True)


def _acquire_load_lock(wh: BigQueryWarehouse, lock_id: str, wait_seconds: float) -> None:
    """Create the lock table, waiting (polling) while another load holds it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        lock = bigquery.Table(lock_id, schema=[bigquery.SchemaField("held_by", "STRING")])
        lock.expires = datetime.now(UTC) + timedelta(seconds=LOAD_LOCK_STALE_SECONDS)
        try:
            wh.client.create_table(lock)
            return
        except Conflict:
            pass
        try:
            held_since = wh.client.get_table(lock_id).created
        except NotFound:
            continue  # released between our two calls: try again at once
        if held_since is not None and (datetime.now(UTC) - held_since).total_seconds() > LOAD_LOCK_STALE_SECONDS:
            logger.warning("BigQuery: taking over the load lock %s left since %s (a killed run?)", lock_id, held_since)
            wh.client.delete_table(lock_id, not_found_ok=True)
            continue
        if time.monotonic() > deadline:
            raise BigQueryLockedError(
                f"BigQuery dataset {wh.dataset} is locked: another load has held {lock_id} for more than "
                f"{wait_seconds:g} s. Let that run finish and rerun; if no run is loading, delete that table."
            )
        time.sleep(LOAD_LOCK_POLL_SECONDS)


def load_batch(wh: BigQueryWarehouse, frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Upsert rows into several tables at once: load jobs into staging tables, then one MERGE each.

    Every frame is checked first, then loaded into its own staging table; only when every load
    job succeeded are the MERGEs run, all in one transaction. Rows whose primary key is already
    stored are updated (the columns the frame has), others are inserted. A key repeated in a
    frame is written once, with its last row (the same result as in SQLite).

    Run one load at a time per dataset: BigQuery cancels a transaction that changes a table
    another transaction is changing at the same moment (the rerun then succeeds).

    Args:
        wh: the open warehouse.
        frames: table name -> rows in the canonical in-memory form (DATE columns 'YYYY-MM-DD'
            text, TIMESTAMP ISO-8601 UTC text, FLOAT float64, INTEGER int64 or Int64, BOOLEAN
            bool). A frame may have some of the table's columns (always the primary key and
            REQUIRED ones): the others keep their stored values (NULL in new rows). Empty
            frames are skipped.

    Returns:
        table name -> rows written (after dropping repeated keys).

    Raises:
        ValueError: an unknown table or column, or a frame without a primary-key or REQUIRED
            column (nothing was loaded).
        BigQueryLoadError: a load job rejected rows (a value that is not of the column's type,
            a missing REQUIRED value...); nothing was merged.
    """
    unknown = sorted(set(frames) - set(TABLES))
    if unknown:
        raise ValueError(f"load_batch: unknown tables {unknown}; the tables are {list(TABLES)}")

    # Check every frame before loading anything, so a bad frame costs no load job.
    prepared = {name: prepare_frame(TABLES[name], frame) for name, frame in frames.items()}
    written = {name: len(frame) for name, frame in prepared.items()}
    to_load = {name: frame for name, frame in prepared.items() if not frame.empty}
    if not to_load:
        return written

    staging_ids: dict[str, str] = {}
    try:
        for name, frame in to_load.items():
            staging_ids[name] = wh.table_id(f"{STAGING_PREFIX}{name}_{uuid.uuid4().hex[:12]}")
            _load_into_staging(wh, TABLES[name], frame, staging_ids[name])
        merges = [
            _merge_statement(wh, TABLES[name], staging_ids[name], list(frame.columns))
            for name, frame in to_load.items()
        ]
        _run(wh, "BEGIN TRANSACTION;\n" + ";\n".join(merges) + ";\nCOMMIT TRANSACTION;")
    finally:
        for staging_id in staging_ids.values():
            wh.client.delete_table(staging_id, not_found_ok=True)
    logger.info("BigQuery: merged %s into %s", written, wh.dataset)
    return written


def prepare_frame(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Check a frame against its table and return the rows to load.

    Args:
        table: the target `schema.Table`.
        frame: rows for it, with some or all of its columns.

    Returns:
        The frame's columns in schema order, with the last row of each repeated primary key.

    Raises:
        ValueError: a column that is not in the table, or a missing primary-key or REQUIRED column.
        BigQueryLoadError: a NULL in a REQUIRED column (no job has run; `job_id` is None).
    """
    unknown = [str(name) for name in frame.columns if name not in table.column_names]
    if unknown:
        raise ValueError(f"{table.name}: the rows have columns that are not in the table: {unknown}")
    missing = [column.name for column in table.columns if not column.nullable and column.name not in frame]
    if missing:
        raise ValueError(f"{table.name}: the rows have no column {missing} (primary key or REQUIRED)")
    result = frame[[name for name in table.column_names if name in frame.columns]]

    # BigQuery rejects a NULL in a REQUIRED column, but bqemulator does not: check it here so
    # both fail the same way, before any job runs.
    for column in table.columns:
        if not column.nullable and result[column.name].isna().any():
            count = int(result[column.name].isna().sum())
            message = f"{table.name}: {count} rows have no value in the REQUIRED column {column.name}"
            raise BigQueryLoadError(message, table=table.name, errors=[{"reason": "invalid", "message": message}])

    repeated = result.duplicated(list(table.primary_key), keep="last")
    if repeated.any():
        logger.warning("%s: %d rows repeat a primary key; keeping the last of each", table.name, repeated.sum())
        result = result[~repeated]
    return result


def _load_into_staging(wh: BigQueryWarehouse, table: Table, frame: pd.DataFrame, staging_id: str) -> None:
    """Run one load job that writes `frame` into the staging table `staging_id` (replacing it)."""
    body = frame_to_ndjson(table, frame)
    fields = {field.name: field for field in schema_fields(table)}
    config = bigquery.LoadJobConfig(
        schema=[fields[name] for name in frame.columns],
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    job = wh.client.load_table_from_file(io.BytesIO(body), staging_id, job_config=config, size=len(body))
    try:
        job.result()
    except GoogleAPICallError as error:
        if not job.error_result:
            raise  # not a rejected load (e.g. the network): nothing we can explain better
        logger.error("%s: load job %s failed: %s", table.name, job.job_id, job.errors)
        raise BigQueryLoadError(
            f"{table.name}: load job {job.job_id} failed: {job.error_result.get('message')}",
            table=table.name,
            job_id=job.job_id,
            errors=job.errors or [job.error_result],
        ) from error
    logger.info("%s: loaded %d rows into %s (job %s)", table.name, job.output_rows, staging_id, job.job_id)


def frame_to_ndjson(table: Table, frame: pd.DataFrame) -> bytes:
    """Serialise rows as the body of a load job: newline-delimited JSON, one object per row.

    Args:
        table: the `schema.Table` the rows are for (its column types guide the conversion).
        frame: rows whose columns are all columns of `table`.

    Returns:
        UTF-8 bytes, e.g. b'{"symbol": "IBM", "trade_date": "2001-05-01", "close": 117.3}\\n'.
        Missing values (None, NaN, NaT, <NA>) become null; dates and timestamps ISO text.
    """
    types = {column.name: column.type for column in table.columns}
    lines = []
    for record in frame.astype(object).to_dict("records"):
        row = {name: _json_value(value, types[name]) for name, value in record.items()}
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _json_value(value, logical_type: str):
    """One cell as a JSON value that BigQuery reads as `logical_type` (None for a missing value).

    Values are passed on as they are otherwise: a value of the wrong type (say the text 'abc'
    in a FLOAT column) is rejected by the load job, which names the row and the column.
    """
    if not isinstance(value, str) and pd.isna(value):
        return None
    if isinstance(value, datetime):  # also pandas Timestamps
        return value.strftime("%Y-%m-%d") if logical_type == "DATE" else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # a numpy number or bool -> the plain Python value
        value = value.item()
    if logical_type == "INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)  # a whole number that pandas stored as float because of NaNs
    if logical_type == "STRING" and not isinstance(value, str):
        return str(value)
    return value


def _merge_statement(wh: BigQueryWarehouse, table: Table, staging_id: str, columns: list[str]) -> str:
    """The MERGE that upserts the rows of a staging table into its target table."""
    matches = " AND ".join(f"target.{name} = source.{name}" for name in table.primary_key)
    update_columns = [name for name in columns if name not in table.primary_key]
    updates = ", ".join(f"{name} = source.{name}" for name in update_columns)
    lines = [
        f"MERGE `{wh.table_id(table.name)}` AS target",
        f"USING `{staging_id}` AS source",
        f"ON {matches}",
    ]
    # As in SQLite: when no data column changed, leave the row (and its audit columns) alone,
    # so re-running a date leaves the tables identical. IS DISTINCT FROM treats NULLs as equal.
    data_columns = [name for name in update_columns if name not in AUDIT_COLUMNS]
    if update_columns and data_columns and len(data_columns) < len(update_columns):
        changed = " OR ".join(f"target.{name} IS DISTINCT FROM source.{name}" for name in data_columns)
        lines.append(f"WHEN MATCHED AND ({changed}) THEN UPDATE SET {updates}")
    elif update_columns:
        lines.append(f"WHEN MATCHED THEN UPDATE SET {updates}")
    lines.append(
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'source.{name}' for name in columns)})"
    )
    return "\n".join(lines)


def _run(wh: BigQueryWarehouse, sql: str, params=None) -> bigquery.QueryJob:
    """Run one SQL statement (or script) and wait for it; return the finished job."""
    config = bigquery.QueryJobConfig(
        query_parameters=query_parameters(params),
        default_dataset=f"{wh.project}.{wh.dataset}",  # so `FROM fact_daily_prices` works as in SQLite
    )
    job = wh.client.query(sql, job_config=config)
    job.result()
    return job


# --- Reading -------------------------------------------------------------------------------------


def query(wh: BigQueryWarehouse, sql: str, params=None) -> pd.DataFrame:
    """Run a SQL query with parameters and return the result as a DataFrame.

    Values always travel as query parameters, never formatted into the SQL text. Simple
    queries read the same as for SQLite: table and view names without a dataset are looked up
    in the warehouse's dataset, and ISO date text compares with DATE columns (BigQuery coerces
    a STRING parameter to DATE or TIMESTAMP where one is expected).

    Args:
        wh: the open warehouse.
        sql: BigQuery SQL; mark values with `?` (positional) or `@name` (named).
        params: a list/tuple for `?`, a dict for `@name`, or None. Types follow the Python
            values: str STRING, int INT64, float FLOAT64, bool BOOL, datetime.date DATE,
            datetime TIMESTAMP, a list an ARRAY (for `IN UNNEST(@symbols)`).

    Returns:
        The rows, in the canonical in-memory form: DATE columns as 'YYYY-MM-DD' text,
        TIMESTAMP columns as ISO-8601 UTC text, INTEGER columns int64 (Int64 when NULLs).

    Example:
        >>> query(wh, "SELECT * FROM v_latest_signals WHERE symbol = ?", ("GOOG",))
    """
    return rows_to_frame(_run(wh, sql, params).result())


def query_parameters(params) -> list:
    """Turn a list (positional) or dict (named) of Python values into BigQuery query parameters."""
    if params is None:
        return []
    if isinstance(params, dict):
        return [_query_parameter(name, value) for name, value in params.items()]
    return [_query_parameter(None, value) for value in params]


def _query_parameter(name: str | None, value):
    """One query parameter, its BigQuery type taken from the Python value."""
    if isinstance(value, list | tuple):
        values = [_plain(item) for item in value]
        return bigquery.ArrayQueryParameter(name, _parameter_type(values[0]) if values else "STRING", values)
    value = _plain(value)
    return bigquery.ScalarQueryParameter(name, _parameter_type(value), value)


def _plain(value):
    """A numpy scalar as the plain Python value; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def _parameter_type(value) -> str:
    """The BigQuery type of a Python value (bool before int, datetime before date: subclasses)."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, datetime):
        return "TIMESTAMP"
    if isinstance(value, date):
        return "DATE"
    return "STRING"


def rows_to_frame(rows: bigquery.table.RowIterator) -> pd.DataFrame:
    """Turn the rows of a finished query into a DataFrame in the canonical in-memory form.

    The rows are read page by page through the REST API, so neither the BigQuery Storage API
    nor extra pandas packages are needed. Each column's type comes from the result's schema.

    Args:
        rows: `job.result()` of a query job.

    Returns:
        One column per result column: DATE as 'YYYY-MM-DD' text and TIMESTAMP as ISO-8601 UTC
        text (as everywhere in the pipeline), STRING str, FLOAT float64 (NaN for NULL),
        INTEGER int64 and BOOL bool (Int64 / boolean with <NA> when the column has NULLs).
    """
    names = [field.name for field in rows.schema]
    frame = pd.DataFrame([list(row.values()) for row in rows], columns=names, dtype=object)
    for field in rows.schema:
        frame[field.name] = _canonical_column(frame[field.name], field.field_type)
    return frame


def _canonical_column(values: pd.Series, bigquery_type: str) -> pd.Series:
    """Convert one column of Python values (None for NULL) to its canonical pandas dtype."""
    if bigquery_type in ("DATE", "TIMESTAMP"):
        # datetime.date -> '2024-07-03'; datetime in UTC -> '2024-07-03T21:30:00+00:00'.
        return values.map(lambda value: None if value is None else value.isoformat()).astype("str")
    if bigquery_type == "STRING":
        return values.astype("str")
    if bigquery_type in ("FLOAT", "FLOAT64"):
        return values.astype("float64")
    if bigquery_type in ("INTEGER", "INT64"):
        values = values.astype("Int64")
        return values if values.isna().any() else values.astype("int64")
    if bigquery_type in ("BOOLEAN", "BOOL"):
        values = values.astype("boolean")
        return values if values.isna().any() else values.astype(bool)
    return values


def read_lookback(wh: BigQueryWarehouse, symbols: list[str], before: str, rows: int) -> pd.DataFrame:
    """Read what a load of new rows from `before` on needs to know of each symbol's stored history.

    The same rows as `sqlite_warehouse.read_lookback`: per symbol the last `rows` stored
    sessions before `before`, and every stored row on or after `before`. One query:
    ROW_NUMBER() numbers each symbol's rows before `before` from the newest. The RSI running
    averages come on every row here (SQLite reads them for the last row before `before`
    only, to read fewer pages); the indicators use only that last row's.

    Args:
        wh: the open warehouse.
        symbols: ticker symbols.
        before: 'YYYY-MM-DD', the first date of the new data.
        rows: how many sessions before `before` per symbol at most.

    Returns:
        Columns LOOKBACK_COLUMNS, sorted by symbol and trade_date; prices and RSI averages
        float64 (NaN where none are stored), volume int64, quality_flags '' where none.
    """
    sql = f"""
        WITH numbered AS (
          SELECT p.symbol, p.trade_date, p.open, p.high, p.low, p.close, p.volume, p.source, p.quality_flags,
                 i.rsi_avg_gain_14, i.rsi_avg_loss_14,
                 CASE WHEN p.trade_date < @before
                      THEN ROW_NUMBER() OVER (
                        PARTITION BY p.symbol, p.trade_date < @before ORDER BY p.trade_date DESC)
                 END AS sessions_back
          FROM `{wh.table_id("fact_daily_prices")}` AS p
          LEFT JOIN `{wh.table_id("fact_technical_indicators")}` AS i
            ON i.symbol = p.symbol AND i.trade_date = p.trade_date
          WHERE p.symbol IN UNNEST(@symbols)
        )
        SELECT {", ".join(LOOKBACK_COLUMNS)}
        FROM numbered
        WHERE sessions_back IS NULL OR sessions_back <= @rows
        ORDER BY symbol, trade_date
    """
    params = {"symbols": list(symbols), "before": date.fromisoformat(before), "rows": int(rows)}
    frame = query(wh, sql, params)
    frame["quality_flags"] = frame["quality_flags"].fillna("")
    return frame


# --- Runs and dimensions -----------------------------------------------------------------------


def record_run(wh: BigQueryWarehouse, run: dict) -> None:
    """Insert or update one row of `pipeline_runs` (keyed by run_id).

    Args:
        wh: the open warehouse.
        run: column -> value; dict and list values (failed_symbols, rows_by_source) are
            stored as JSON text. Only the given columns are written.
    """
    row = {
        name: json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        for name, value in run.items()
    }
    load_batch(wh, {"pipeline_runs": pd.DataFrame([row])})


def refresh_dim_symbol(wh: BigQueryWarehouse, symbols: list[str], source_by_symbol: dict | None = None) -> None:
    """Update `dim_symbol` for these symbols from what `fact_daily_prices` now holds.

    Sets first_trade_date / last_trade_date from the stored prices, `source` from
    `source_by_symbol` (kept when not given) and `updated_at`. name, exchange and currency are
    kept as they are; a missing currency becomes 'USD'. Symbols with no stored prices get no row.

    Args:
        wh: the open warehouse.
        symbols: the symbols just loaded.
        source_by_symbol: symbol -> source of the latest load, e.g. {"AAPL": "yahoo"}.
    """
    sql = f"""
        SELECT p.symbol, MIN(p.trade_date) AS first_trade_date, MAX(p.trade_date) AS last_trade_date,
               ANY_VALUE(d.currency) AS currency, ANY_VALUE(d.source) AS source
        FROM `{wh.table_id("fact_daily_prices")}` AS p
        LEFT JOIN `{wh.table_id("dim_symbol")}` AS d ON d.symbol = p.symbol
        WHERE p.symbol IN UNNEST(@symbols)
        GROUP BY p.symbol
    """
    rows = query(wh, sql, {"symbols": list(symbols)})
    rows["currency"] = rows["currency"].fillna("USD")
    # The source of this load where one is given, else the stored one.
    given = source_by_symbol or {}
    rows["source"] = [
        given.get(symbol) or stored for symbol, stored in zip(rows["symbol"], rows["source"], strict=True)
    ]
    rows["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")  # an audit stamp, not a data choice
    load_batch(wh, {"dim_symbol": rows})
    logger.info("BigQuery: refreshed dim_symbol for %d symbols", len(rows))


def ensure_dim_date(wh: BigQueryWarehouse, start: str, end: str) -> int:
    """Upsert the `dim_date` rows (every calendar day, NYSE flags) from start to end inclusive.

    Rewriting days that are already stored is cheap (one small load job and MERGE) and picks
    up calendar corrections, such as a newly declared market holiday. dim_date stays
    gap-free: the days between these and the stored ones are written too
    (`calendar_dim.dim_date_range_to_write`), so completeness counts every expected session.

    Args:
        wh: the open warehouse.
        start: first day, 'YYYY-MM-DD'.
        end: last day, 'YYYY-MM-DD'.

    Returns:
        The number of dim_date rows written.
    """
    stored = query(
        wh,
        f"SELECT MIN(trade_date) AS first, MAX(trade_date) AS last, COUNT(*) AS days FROM `{wh.table_id('dim_date')}`",
    ).iloc[0]
    stored_first = None if stored["days"] == 0 else str(stored["first"])
    stored_last = None if stored["days"] == 0 else str(stored["last"])
    first, last = dim_date_range_to_write(start, end, stored_first, stored_last, int(stored["days"]))
    return load_batch(wh, {"dim_date": build_dim_date(first, last)})["dim_date"]


# --- Splits -----------------------------------------------------------------------------------


def read_splits(wh: BigQueryWarehouse, symbols: list[str]) -> pd.DataFrame:
    """The stored split events of these symbols (as `sqlite_warehouse.read_splits`)."""
    sql = f"""
        SELECT symbol, effective_date, split_factor, source
        FROM `{wh.table_id("fact_splits")}`
        WHERE symbol IN UNNEST(@symbols)
        ORDER BY symbol, effective_date
    """
    frame = query(wh, sql, {"symbols": list(symbols)})
    if frame.empty:
        return pd.DataFrame(
            {"symbol": [], "effective_date": [], "split_factor": pd.Series(dtype="float64"), "source": []}
        )
    frame["source"] = frame["source"].replace("None", "")
    return frame


def read_history(wh: BigQueryWarehouse, symbols: list[str]) -> pd.DataFrame:
    """Every stored price row of these symbols, as traded (as `sqlite_warehouse.read_history`)."""
    columns = HISTORY_COLUMNS
    sql = f"""
        SELECT {", ".join(columns)}
        FROM `{wh.table_id("fact_daily_prices")}`
        WHERE symbol IN UNNEST(@symbols)
        ORDER BY symbol, trade_date
    """
    frame = query(wh, sql, {"symbols": list(symbols)})
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["quality_flags"] = frame["quality_flags"].replace("None", "").fillna("")
    return frame
