"""A speed-up for a first CLI backfill into SQLite: build the trade_date indexes once, at the end.

The plain way is what every other load does: keep every index and let SQLite update it row by
row (`sqlite_warehouse.load_batch`). This module is the one exception, used by the CLI runner
(`steps.run_pipeline`) when it loads into empty SQLite tables:

- `drop_trade_date_indexes` before the first batch,
- `build_trade_date_indexes` after the last one.

Why it pays: rows arrive symbol by symbol, so each new row belongs in a different place of a
trade_date index (between the same date's rows of other symbols). Once that index is bigger
than the page cache, nearly every row costs a page read and write. Building the index once at
the end sorts all rows in one go instead; docs/benchmarks.md has the side-by-side figures.
Only empty tables are touched: rebuilding the index of a filled table would cost more than it
saves. If the run stops before the end, the next `create_schema` (every `open_warehouse`
calls it) builds the missing indexes, so the file is never left without them for long.
tests/integration/test_sqlite_warehouse.py checks that a load with and without this gives the
same tables.
"""

from __future__ import annotations

import logging
import sqlite3

from src.storage.sqlite_warehouse import INDEXES, create_indexes, index_name, write_transaction

logger = logging.getLogger(__name__)

# The secondary indexes this module drops and rebuilds (the fact tables' trade_date indexes).
TRADE_DATE_INDEXES = [(table_name, columns) for table_name, columns in INDEXES if columns == ("trade_date",)]


def drop_trade_date_indexes(conn: sqlite3.Connection) -> bool:
    """Before a first backfill: drop the trade_date indexes of the fact tables, if those tables are empty.

    Returns:
        True when the indexes were dropped (then call `build_trade_date_indexes` after the load);
        False when a table holds rows already (nothing changed).
    """
    if any(conn.execute(f"SELECT 1 FROM {table_name} LIMIT 1").fetchone() for table_name, _ in TRADE_DATE_INDEXES):
        return False
    with write_transaction(conn):
        for table_name, columns in TRADE_DATE_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {index_name(table_name, columns)}")
    tables = ", ".join(table_name for table_name, _ in TRADE_DATE_INDEXES)
    logger.info("Bulk load: the trade_date indexes of %s are built after the load", tables)
    return True


def build_trade_date_indexes(conn: sqlite3.Connection) -> None:
    """After a bulk load: build the indexes `drop_trade_date_indexes` dropped (one sort per index)."""
    with write_transaction(conn):
        create_indexes(conn)
    logger.info("Bulk load finished: indexes built")
