"""The local warehouse: a SQLite file with the star schema from `src/storage/schema.py`.

Everything here takes an open `sqlite3.Connection` first (from `connect`). The BigQuery
handler exposes the same function names, so the pipeline code does not change with
WAREHOUSE_BACKEND (see `src/storage/warehouse.py`).

How it stays safe to rerun:
- Every table is created from the one schema definition (no hand-written column lists).
- Every write is an upsert keyed by the table's primary key
  (`INSERT ... ON CONFLICT (key) DO UPDATE`), so loading the same rows twice changes nothing.
- `load_batch` writes all its tables in one transaction: a crash leaves none of them half done.
- Table and column names in SQL come only from the schema; values always go in as `?` parameters.

Example:
    >>> conn = connect("data/warehouse.db")
    >>> create_schema(conn)
    >>> load_batch(conn, {"fact_daily_prices": prices})
    {'fact_daily_prices': 2148}
    >>> query(conn, "SELECT * FROM v_latest_signals WHERE symbol = ?", ("GOOG",))
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from src.config import ConfigurationError
from src.storage.calendar_dim import build_dim_date, dim_date_range_to_write
from src.storage.schema import AUDIT_COLUMNS, HISTORY_COLUMNS, LOOKBACK_COLUMNS, TABLES, Table
from src.storage.views import VIEWS, render_view

logger = logging.getLogger(__name__)

# Logical type (schema.py) -> SQLite column type. Dates and timestamps are ISO text, so they
# sort and compare correctly as strings; booleans are 0/1.
SQLITE_TYPES = {
    "STRING": "TEXT",
    "DATE": "TEXT",
    "TIMESTAMP": "TEXT",
    "FLOAT": "REAL",
    "INTEGER": "INTEGER",
    "BOOLEAN": "INTEGER",
}
# TIMESTAMP values are stored in UTC with this format, e.g. '2024-07-01T20:00:00+00:00'
# (the same text as `datetime.now(UTC).isoformat(timespec="seconds")`).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
DATE_FORMAT = "%Y-%m-%d"

# How long a writer waits for another writer's transaction to finish before giving up.
# SQLite allows one writer at a time; without a busy timeout the second writer (a parallel
# Airflow task, a rerun, someone's DB browser) would fail at once with "database is locked".
DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0

# load_batch converts and writes big frames in chunks of this many rows, so a 25-million-row
# load never holds 25 million Python tuples in memory at once.
CHUNK_ROWS = 100_000

# Tables stored WITHOUT ROWID: the table itself is the primary-key B-tree. An ordinary
# SQLite table is a B-tree keyed by a hidden rowid PLUS a second B-tree for the primary key,
# so every row is written twice; for these small rows keyed by (symbol, trade_date) that
# halves the work of a bulk load (see docs/benchmarks.md). Tables with big text rows
# (quarantine_prices.raw_record, pipeline_runs) stay ordinary, as SQLite's docs advise.
# Only tables created from now on get it: an existing file keeps its tables as they are.
WITHOUT_ROWID_TABLES = (
    "fact_daily_prices",
    "fact_technical_indicators",
    "agg_weekly_prices",
    "agg_monthly_prices",
)

# Page cache per connection, in KiB (a negative cache_size is KiB in SQLite). The default
# 2 MB is far smaller than the B-trees of a backfill, so inserting would keep reading pages
# back from disk; 128 MiB keeps the pages being written in memory.
CACHE_SIZE_KIB = 128 * 1024

# Secondary indexes for the common queries, as (table, columns). The primary keys already
# index (symbol, trade_date), which serves every "one symbol, a date range" query.
INDEXES = (
    ("fact_daily_prices", ("trade_date",)),  # "all symbols on a day", completeness checks
    ("fact_technical_indicators", ("trade_date",)),
    ("quarantine_prices", ("run_id",)),  # "what did run X reject?"
    ("pipeline_runs", ("logical_date",)),  # "runs for a trading day"
)

# --- Reads --------------------------------------------------------------------------
# The last `:rows` rows of one symbol before a date. It walks the primary-key index backwards
# from `:before` and stops after LIMIT rows, so its cost does not grow with the length of the
# history. (A ROW_NUMBER() window over all symbols would number every earlier row first.)
LOOKBACK_TAIL_SQL = """
SELECT symbol, trade_date, open, high, low, close, volume, source, quality_flags
FROM fact_daily_prices
WHERE symbol = :symbol AND trade_date < :before
ORDER BY trade_date DESC
LIMIT :rows
"""
# The RSI state stored on one session (the last row of a tail).
RSI_STATE_SQL = """
SELECT rsi_avg_gain_14, rsi_avg_loss_14
FROM fact_technical_indicators
WHERE symbol = :symbol AND trade_date = :trade_date
"""
# Stored rows on or after the first new date (a rerun, or a backfill into the middle of a history).
LOOKBACK_AFTER_SQL = """
SELECT symbol, trade_date, open, high, low, close, volume, source, quality_flags
FROM fact_daily_prices
WHERE symbol = :symbol AND trade_date >= :before
ORDER BY trade_date
"""
# Column dtypes of the frames the read functions return.
_READ_DTYPES = {
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "int64",
    "rsi_avg_gain_14": "float64",
    "rsi_avg_loss_14": "float64",
}


class WarehouseLockedError(sqlite3.OperationalError):
    """Another connection held the write lock for longer than the busy timeout.

    A subclass of sqlite3.OperationalError, so code that catches that still catches this.
    """


class WarehouseFullError(sqlite3.OperationalError):
    """The disk holding the SQLite warehouse is full: SQLite rolled the write back."""


def _full_message(conn: sqlite3.Connection) -> str:
    """Explain SQLITE_FULL: which file, and what to do."""
    database_file = conn.execute("PRAGMA database_list").fetchone()[2] or ":memory:"
    return (
        f"the disk holding the SQLite warehouse {database_file} (SQLITE_PATH) is full: the batch being written "
        "was rolled back. Free space on that disk (or point SQLITE_PATH at a bigger one) and rerun the same dates; "
        "batches loaded before are kept."
    )


def _is_full(exc: sqlite3.Error) -> bool:
    """True when SQLite ran out of disk space (SQLITE_FULL)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL


def _unusable_path_message(path: Path | str, problem: str) -> str:
    """'SQLITE_PATH=<path> <problem>: <what to do>' for a path that cannot be the warehouse file."""
    advice = "set SQLITE_PATH to a SQLite file (it is created if missing) in a writable folder"
    return f"SQLITE_PATH={path} {problem}: {advice}"


# --- Connection and transactions ------------------------------------------------------------


def connect(path: Path | str, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> sqlite3.Connection:
    """Open (or create) the SQLite warehouse file with settings suited to a batch pipeline.

    - journal_mode=WAL: readers (a dashboard, a notebook) never block the writer and the
      writer never blocks readers.
    - synchronous=NORMAL: safe against corruption in WAL mode; a power cut can lose the last
      committed batch, which the next (idempotent) run simply loads again.
    - cache_size: CACHE_SIZE_KIB of page cache, so big loads do not re-read pages from disk.
    - busy_timeout: a second writer waits up to `busy_timeout_seconds` for the first one's
      transaction to finish instead of failing at once.
    - autocommit mode (isolation_level=None): Python does not open transactions behind our
      back; writes are grouped explicitly with BEGIN IMMEDIATE ... COMMIT (see load_batch).

    Foreign keys are not declared (BigQuery does not enforce them either), so the
    foreign_keys PRAGMA is left alone.

    Args:
        path: the database file; missing parent folders are created. ':memory:' also works.
        busy_timeout_seconds: how long to wait for another writer's lock.

    Returns:
        An open connection; close it with `conn.close()`.

    Raises:
        WarehouseLockedError: the file stayed locked for longer than the busy timeout.
    """
    if str(path) != ":memory:":
        _check_sqlite_path(Path(path))
    # `timeout` is SQLite's busy_timeout (PRAGMA busy_timeout shows it in milliseconds).
    conn = sqlite3.connect(path, timeout=busy_timeout_seconds, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
    except sqlite3.DatabaseError as exc:  # OperationalError is a DatabaseError too
        if _is_locked(exc):
            message = _locked_message(conn)
            conn.close()
            raise WarehouseLockedError(message) from exc
        if _is_full(exc):
            message = _full_message(conn)
            conn.close()
            raise WarehouseFullError(message) from exc
        conn.close()
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_NOTADB:
            raise ConfigurationError(_unusable_path_message(path, "is not a SQLite database (another file?)")) from exc
        raise
    logger.debug("Opened SQLite warehouse %s (busy timeout %.1f s)", path, busy_timeout_seconds)
    return conn


def _check_sqlite_path(path: Path) -> None:
    """Create the warehouse's folder; refuse a path that cannot be a SQLite file, naming SQLITE_PATH.

    Raises:
        ConfigurationError: the path is a directory, lies under a regular file, or its folder
            cannot be created.
    """
    if path.is_dir():
        raise ConfigurationError(_unusable_path_message(path, "is a directory"))
    blocking_file = next((parent for parent in path.parents if parent.is_file()), None)
    if blocking_file is not None:
        raise ConfigurationError(_unusable_path_message(path, f"lies under {blocking_file}, which is a regular file"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            _unusable_path_message(path, f"cannot have its folder created ({exc.strerror})")
        ) from exc


def _is_locked(exc: sqlite3.Error) -> bool:
    """True when SQLite gave up waiting for another connection's lock (SQLITE_BUSY)."""
    # Extended codes (e.g. SQLITE_BUSY_SNAPSHOT) keep the primary code in the low byte. An
    # error raised by Python code rather than SQLite has no code.
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _locked_message(conn: sqlite3.Connection) -> str:
    """Explain a lock timeout: which file, how long we waited, and what to do."""
    database_file = conn.execute("PRAGMA database_list").fetchone()[2] or ":memory:"
    waited_seconds = conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
    return (
        f"SQLite warehouse {database_file} is locked: another connection held its write lock for "
        f"more than {waited_seconds:g} s. Another pipeline run or a tool such as DB Browser is "
        "writing to it; let that finish (or close the tool) and rerun, or raise the busy timeout."
    )


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the `with` block in one write transaction: all of it is committed, or none of it.

    BEGIN IMMEDIATE takes the write lock at the start (waiting up to the busy timeout), so
    two writers queue up instead of failing halfway through. Any error, even Ctrl-C, rolls
    the whole block back and is re-raised.

    Inside an open transaction (a caller that holds the lock already, see `load_transaction`)
    the block simply joins it: the outermost block commits or rolls back.
    """
    if conn.in_transaction:
        yield
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if _is_locked(exc):
            raise WarehouseLockedError(_locked_message(conn)) from exc
        raise
    try:
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        # SQLite has already rolled back after a few errors (e.g. disk full); check first.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error) and _is_full(exc) and not isinstance(exc, WarehouseFullError):
            raise WarehouseFullError(_full_message(conn)) from exc
        if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc) and not isinstance(exc, WarehouseLockedError):
            raise WarehouseLockedError(_locked_message(conn)) from exc
        raise


def load_transaction(conn: sqlite3.Connection):
    """The transaction one batch's load runs in: its look-back read and every write (`steps.load_prices`).

    Taking the write lock BEFORE the look-back read is what keeps two loads at the same time
    consistent: the second one reads its history only after the first one has committed, so
    a run for July computes its indicators with the June rows a concurrent run is writing.
    """
    return write_transaction(conn)


# --- Schema -----------------------------------------------------------------------------------


def create_table_sql(table: Table) -> str:
    """Return the CREATE TABLE statement for one schema table.

    Example:
        >>> print(create_table_sql(TABLES["dim_symbol"]))  # doctest: +ELLIPSIS
        CREATE TABLE IF NOT EXISTS dim_symbol (
            symbol TEXT NOT NULL,
            name TEXT,
        ...
            PRIMARY KEY (symbol)
        )
    """
    lines = [_column_sql(table, name) for name in table.column_names]
    lines.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    body = ",\n    ".join(lines)
    options = " WITHOUT ROWID" if table.name in WITHOUT_ROWID_TABLES else ""
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n    {body}\n){options}"


def _column_sql(table: Table, name: str) -> str:
    """'name TYPE' or 'name TYPE NOT NULL' for one column."""
    column = table.column(name)
    not_null = "" if column.nullable else " NOT NULL"
    return f"{column.name} {SQLITE_TYPES[column.type]}{not_null}"


def create_schema(conn: sqlite3.Connection) -> None:
    """Create every table, index and view (idempotent: safe to call at every start).

    Tables and indexes are created only when missing, so existing data is kept. A column that
    was added to schema.py after the table was created is added with ALTER TABLE. Views are
    dropped and recreated, so they always match this code (views hold no data).

    Raises:
        ValueError: schema.py has a new NOT NULL column that an existing table lacks.
    """
    with write_transaction(conn):
        for table in TABLES.values():
            conn.execute(create_table_sql(table))
            _add_missing_columns(conn, table)
        create_indexes(conn)
        for view_name in VIEWS:
            conn.execute(f"DROP VIEW IF EXISTS {view_name}")
            conn.execute(f"CREATE VIEW {view_name} AS {render_view(view_name, lambda table: table)}")
    logger.info("SQLite schema ready: %d tables, %d views", len(TABLES), len(VIEWS))


def index_name(table_name: str, columns: tuple[str, ...]) -> str:
    return f"idx_{table_name}_{'_'.join(columns)}"


def create_indexes(conn: sqlite3.Connection) -> None:
    """Create the INDEXES that are missing (inside the caller's transaction)."""
    for table_name, columns in INDEXES:
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {index_name(table_name, columns)} ON {table_name} ({', '.join(columns)})"
        )


def _add_missing_columns(conn: sqlite3.Connection, table: Table) -> None:
    """Add columns that schema.py has but the existing table does not (a simple migration)."""
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
    for column in table.columns:
        if column.name in existing:
            continue
        if not column.nullable:
            raise ValueError(
                f"{table.name} exists without the NOT NULL column {column.name}, which cannot be added "
                "to a table that has rows. Rebuild the table (or the warehouse file) and reload."
            )
        logger.warning("Adding column %s.%s (new in schema.py)", table.name, column.name)
        conn.execute(f"ALTER TABLE {table.name} ADD COLUMN {_column_sql(table, column.name)}")


# --- Writes -----------------------------------------------------------------------------------


def load_batch(conn: sqlite3.Connection, frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Upsert several tables in ONE transaction: either every frame is written or none is.

    A row whose primary key is already stored is updated; otherwise it is inserted. Columns
    missing from a frame are NULL in new rows and left unchanged in existing rows. Values are
    converted for SQLite: NaN/NA/NaT -> NULL, datetimes -> ISO text (TIMESTAMP in UTC), bools -> 0/1.

    Args:
        conn: an open warehouse connection.
        frames: table name -> DataFrame whose columns are some of that table's columns
            (it must include the primary key and NOT NULL columns).

    Returns:
        Table name -> rows written (inserted or updated; duplicates within a frame count twice,
        the last one wins).

    Raises:
        ValueError: an unknown table or column, or a missing key/NOT NULL column (nothing written).
        sqlite3.IntegrityError: e.g. a NULL in a NOT NULL column (the whole batch is rolled back).
        WarehouseLockedError: another writer held the lock for longer than the busy timeout.

    Example:
        >>> load_batch(conn, {"fact_daily_prices": prices, "fact_technical_indicators": indicators})
        {'fact_daily_prices': 250, 'fact_technical_indicators': 250}
    """
    # Check every frame before writing anything, so a typo fails fast and clearly.
    batch = [(_table_named(name), frame) for name, frame in frames.items()]
    for table, frame in batch:
        _check_columns(table, frame)

    written: dict[str, int] = {}
    with write_transaction(conn):
        for table, frame in batch:
            if len(frame) > 0:
                conn.executemany(_upsert_sql(table, list(frame.columns)), _sqlite_rows(table, frame))
            written[table.name] = len(frame)
            logger.info("Upserted %d rows into %s (%s)", len(frame), table.name, _describe_rows(frame))
    return written


def _table_named(name: str) -> Table:
    """The schema table called `name`, or a ValueError listing the tables there are."""
    if name not in TABLES:
        raise ValueError(f"Unknown warehouse table {name!r}; tables are: {', '.join(TABLES)}")
    return TABLES[name]


def _check_columns(table: Table, frame: pd.DataFrame) -> None:
    """Raise ValueError unless the frame's columns fit the table (subset, with key and NOT NULL columns)."""
    unknown = [str(name) for name in frame.columns if name not in table.column_names]
    if unknown:
        raise ValueError(
            f"Frame for {table.name} has column(s) not in the schema: {', '.join(unknown)} "
            f"(its columns are: {', '.join(table.column_names)})"
        )
    required = [c.name for c in table.columns if c.name in table.primary_key or not c.nullable]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ValueError(f"Frame for {table.name} lacks required column(s): {', '.join(missing)}")


def _upsert_sql(table: Table, columns: list[str]) -> str:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE for the given columns (names from the schema).

    Example: dim_symbol with columns ["symbol", "name"] gives (on one line)
        INSERT INTO dim_symbol (symbol, name) VALUES (?, ?)
        ON CONFLICT (symbol) DO UPDATE SET name = excluded.name
    """
    placeholders = ", ".join("?" for _ in columns)
    updates = [f"{name} = excluded.{name}" for name in columns if name not in table.primary_key]
    # A frame with only key columns has nothing to update: an existing row is already right.
    action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    # Skip the update when no data column changed, so a rerun keeps the old run_id/loaded_at
    # (audit columns) and the table stays identical. `IS NOT` treats NULL = NULL as equal.
    data_columns = [name for name in columns if name not in table.primary_key and name not in AUDIT_COLUMNS]
    if updates and data_columns and len(data_columns) < len(updates):
        mine = ", ".join(f"{table.name}.{name}" for name in data_columns)
        theirs = ", ".join(f"excluded.{name}" for name in data_columns)
        action += f" WHERE ({mine}) IS NOT ({theirs})"
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT ({', '.join(table.primary_key)}) {action}"
    )


def _sqlite_rows(table: Table, frame: pd.DataFrame) -> Iterator[tuple]:
    """Yield the frame's rows as tuples of SQLite-safe values, converting CHUNK_ROWS rows at a time.

    The conversion is done per column with pandas (fast); the only per-row work is zip().
    """
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        columns = [_sqlite_values(chunk[name], table.column(name).type) for name in chunk.columns]
        yield from zip(*columns, strict=True)


def _sqlite_values(values: pd.Series, logical_type: str) -> list:
    """Convert one column to a list of plain Python values SQLite accepts (None for missing)."""
    if logical_type in ("DATE", "TIMESTAMP"):
        values = _to_iso_text(values, logical_type)
    elif logical_type in ("FLOAT", "INTEGER", "BOOLEAN") and values.dtype == object:
        # e.g. None mixed with numbers, or numpy scalars; text that is not a number raises.
        values = pd.to_numeric(values)
    if logical_type == "BOOLEAN" or (logical_type == "INTEGER" and pd.api.types.is_float_dtype(values)):
        # True/False -> 1/0, 1234.0 -> 1234; a fractional float in an INTEGER column raises.
        values = values.astype("Int64")
    if values.hasnans:
        values = values.astype(object).where(values.notna(), None)
    return values.tolist()


def _to_iso_text(values: pd.Series, logical_type: str) -> pd.Series:
    """Turn datetime/date values into ISO text; text is assumed ISO already and kept as it is."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) and logical_type == "TIMESTAMP":
        return values.dt.tz_convert("UTC").dt.strftime(TIMESTAMP_FORMAT)
    if pd.api.types.is_datetime64_any_dtype(values):
        # A DATE keeps its own calendar day; a naive TIMESTAMP is taken to be UTC already.
        return values.dt.strftime(DATE_FORMAT if logical_type == "DATE" else TIMESTAMP_FORMAT)
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "string":
        return values  # text only (e.g. after concatenating with an empty read): already ISO
    if values.dtype == object:
        # Mixed Python objects (e.g. a run record built from a dict): convert one by one.
        return values.map(lambda value: _iso_text(value, logical_type))
    return values


def _iso_text(value: object, logical_type: str) -> object:
    """One date/datetime -> ISO text (aware TIMESTAMPs in UTC); any other value unchanged."""
    if isinstance(value, datetime):
        if logical_type == "DATE":
            return value.strftime(DATE_FORMAT)
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime(TIMESTAMP_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _describe_rows(frame: pd.DataFrame) -> str:
    """'3 symbols, 2024-07-01..2024-07-08' for log lines (whatever of that the frame has)."""
    parts = []
    if "symbol" in frame.columns and len(frame) > 0:
        parts.append(f"{frame['symbol'].nunique()} symbols")
    if "trade_date" in frame.columns and len(frame) > 0:
        parts.append(f"{frame['trade_date'].min()}..{frame['trade_date'].max()}")
    return ", ".join(parts) or "-"


def record_run(conn: sqlite3.Connection, run: dict) -> None:
    """Insert or update one `pipeline_runs` row (keyed by run_id).

    Call it at the start of a run (status 'running') and again at the end: the second call
    updates the row. Keys not given are left as they are.

    Args:
        conn: an open warehouse connection.
        run: column name -> value, e.g. {"run_id": "...", "status": "success", ...}. dict or
            list values (failed_symbols, rows_by_source) are stored as JSON text.

    Raises:
        ValueError: a key that is not a pipeline_runs column, or no run_id.
    """
    row = {
        key: json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        for key, value in run.items()
    }
    load_batch(conn, {"pipeline_runs": pd.DataFrame([row])})
    logger.info("Recorded run %s (status %s)", run.get("run_id"), run.get("status"))


def refresh_dim_symbol(conn: sqlite3.Connection, symbols: list[str], source_by_symbol: dict | None = None) -> None:
    """Update `dim_symbol` for these symbols from what `fact_daily_prices` now holds.

    Sets first_trade_date / last_trade_date from the stored prices, `source` from
    `source_by_symbol` (kept when not given) and `updated_at`. name, exchange and currency are
    kept as they are (load them with load_batch when known); a missing currency becomes 'USD'.
    Symbols with no stored prices get no row.

    Args:
        conn: an open warehouse connection.
        symbols: the symbols just loaded.
        source_by_symbol: symbol -> source of the latest load, e.g. {"AAPL": "yahoo"}.
    """
    source_by_symbol = source_by_symbol or {}
    updated_at = datetime.now(UTC).strftime(TIMESTAMP_FORMAT)  # an audit stamp, not a data choice
    # One INSERT ... SELECT per symbol. Each MIN/MAX is its own subquery on purpose: SQLite
    # answers a lone MIN or MAX over the primary key (symbol, trade_date) by looking at one
    # end of that symbol's rows, so the cost does not grow with the length of the history.
    # (MIN and MAX in one SELECT ... GROUP BY would read every stored row of the symbol.)
    # The WHERE skips symbols with no stored prices, and also keeps SQLite from reading
    # ON CONFLICT as part of the SELECT.
    sql = """
        INSERT INTO dim_symbol (symbol, currency, first_trade_date, last_trade_date, source, updated_at)
        SELECT symbol, 'USD', first_trade_date, last_trade_date, :source, :updated_at
        FROM (
            SELECT
                :symbol AS symbol,
                (SELECT MIN(trade_date) FROM fact_daily_prices WHERE symbol = :symbol) AS first_trade_date,
                (SELECT MAX(trade_date) FROM fact_daily_prices WHERE symbol = :symbol) AS last_trade_date
        )
        WHERE first_trade_date IS NOT NULL
        ON CONFLICT (symbol) DO UPDATE SET
            currency = COALESCE(dim_symbol.currency, excluded.currency),
            first_trade_date = excluded.first_trade_date,
            last_trade_date = excluded.last_trade_date,
            source = COALESCE(excluded.source, dim_symbol.source),
            updated_at = excluded.updated_at
        -- Only when something changed, so a rerun leaves the row (and updated_at) as it was.
        WHERE (dim_symbol.currency, dim_symbol.first_trade_date, dim_symbol.last_trade_date, dim_symbol.source)
            IS NOT (COALESCE(dim_symbol.currency, excluded.currency), excluded.first_trade_date,
                    excluded.last_trade_date, COALESCE(excluded.source, dim_symbol.source))
    """
    params = [
        {"symbol": symbol, "source": source_by_symbol.get(symbol), "updated_at": updated_at}
        for symbol in dict.fromkeys(symbols)
    ]
    with write_transaction(conn):
        conn.executemany(sql, params)
    logger.info("Refreshed dim_symbol for %d symbols", len(params))


def ensure_dim_date(conn: sqlite3.Connection, start: str, end: str) -> int:
    """Upsert the `dim_date` rows (every calendar day, NYSE flags) from start to end inclusive.

    dim_date stays gap-free: the days between these and the stored ones are written too
    (`calendar_dim.dim_date_range_to_write`), so completeness counts every expected session.

    Returns:
        The number of dim_date rows written.
    """
    stored = conn.execute("SELECT MIN(trade_date), MAX(trade_date), COUNT(*) FROM dim_date").fetchone()
    first, last = dim_date_range_to_write(start, end, *stored)
    return load_batch(conn, {"dim_date": build_dim_date(first, last)})["dim_date"]


# --- Reads ------------------------------------------------------------------------------------


def query(conn: sqlite3.Connection, sql: str, params: tuple | dict = ()) -> pd.DataFrame:
    """Run a SELECT and return the result as a DataFrame.

    Args:
        conn: an open warehouse connection.
        sql: the SQL, with `?` (tuple params) or `:name` (dict params) placeholders.
        params: the values; never format values into the SQL text.

    Example:
        >>> query(conn, "SELECT close FROM fact_daily_prices WHERE symbol = ? AND trade_date = ?",
        ...       ("AAPL", "2024-07-01"))
    """
    return pd.read_sql_query(sql, conn, params=params)


def read_lookback(conn: sqlite3.Connection, symbols: list[str], before: str, rows: int) -> pd.DataFrame:
    """Read what a load of new rows from `before` on needs to know of each symbol's stored history.

    Per symbol: the last `rows` stored sessions before `before` (the indicators' lookback), the
    RSI running averages stored on the last of them, and every stored row on or after `before`
    (their indicators depend on the new rows). Three primary-key searches per symbol, so the
    cost does not grow with the length of the history. Only the LAST row before `before` gets
    its RSI averages: that is all the RSI continuation uses (see
    `indicators_vectorised.compute_indicators_incremental`), and not joining the indicators of
    the other rows halves the pages a daily run reads.

    Args:
        conn: an open warehouse connection.
        symbols: the symbols to read.
        before: 'YYYY-MM-DD', the first date of the new data.
        rows: how many sessions before `before` per symbol (fewer when there are fewer).

    Returns:
        A DataFrame with LOOKBACK_COLUMNS, sorted by symbol and trade_date; prices and RSI
        averages float64 (NaN where not stored, and on all but each symbol's last row before
        `before`), volume int64, quality_flags '' where none were stored.

    Raises:
        ValueError: rows is negative.

    Example:
        >>> read_lookback(conn, ["AAPL", "MSFT"], before="2024-07-01", rows=200)
    """
    if rows < 0:
        # SQLite reads LIMIT -1 as "no limit", which would quietly return the whole history.
        raise ValueError(f"rows must be 0 or more, got {rows}")
    found: list[tuple] = []
    for symbol in dict.fromkeys(symbols):
        params = {"symbol": symbol, "before": before, "rows": rows}
        tail = conn.execute(LOOKBACK_TAIL_SQL, params).fetchall()
        if tail:
            # Newest first: tail[0] is the last session, the one whose RSI state counts.
            state = conn.execute(RSI_STATE_SQL, {"symbol": symbol, "trade_date": tail[0][1]}).fetchone()
            found.append((*tail[0], *(state or (None, None))))
            found.extend((*row, None, None) for row in tail[1:])
        found.extend((*row, None, None) for row in conn.execute(LOOKBACK_AFTER_SQL, params))
    frame = pd.DataFrame(found, columns=LOOKBACK_COLUMNS)
    frame = _typed(frame.sort_values(["symbol", "trade_date"], ignore_index=True))
    frame["quality_flags"] = frame["quality_flags"].fillna("")
    return frame


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a read frame the pipeline's dtypes (float prices, int volume)."""
    return frame.astype({name: dtype for name, dtype in _READ_DTYPES.items() if name in frame.columns})


# Split events of one symbol (fact_splits), and the whole stored history of one symbol as
# traded (for the full recompute after a newly learned split).
SPLITS_SQL = """
SELECT symbol, effective_date, split_factor, source
FROM fact_splits
WHERE symbol = :symbol
ORDER BY effective_date
"""
HISTORY_SQL = """
SELECT symbol, trade_date, open, high, low, close, volume, source, quality_flags
FROM fact_daily_prices
WHERE symbol = :symbol
ORDER BY trade_date
"""
SPLIT_READ_COLUMNS = ["symbol", "effective_date", "split_factor", "source"]


def read_splits(conn: sqlite3.Connection, symbols: list[str]) -> pd.DataFrame:
    """The stored split events of these symbols.

    Returns:
        Columns symbol, effective_date ('YYYY-MM-DD'), split_factor (float64), source; sorted.
    """
    found = [row for symbol in dict.fromkeys(symbols) for row in conn.execute(SPLITS_SQL, {"symbol": symbol})]
    frame = pd.DataFrame(found, columns=SPLIT_READ_COLUMNS).astype({"split_factor": "float64"})
    frame["source"] = frame["source"].fillna("")
    return frame.sort_values(["symbol", "effective_date"], ignore_index=True)


def read_history(conn: sqlite3.Connection, symbols: list[str]) -> pd.DataFrame:
    """Every stored price row of these symbols, as traded (what a full recompute starts from).

    Returns:
        The price columns of LOOKBACK_COLUMNS (no RSI state: a full recompute needs none),
        sorted by symbol and trade_date; quality_flags '' where none were stored.
    """
    columns = HISTORY_COLUMNS
    found = [row for symbol in dict.fromkeys(symbols) for row in conn.execute(HISTORY_SQL, {"symbol": symbol})]
    frame = _typed(pd.DataFrame(found, columns=columns))
    frame["quality_flags"] = frame["quality_flags"].fillna("")
    return frame.sort_values(["symbol", "trade_date"], ignore_index=True)
