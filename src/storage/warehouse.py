"""Pick the warehouse backend from the settings, so pipeline code never changes with it.

`sqlite_warehouse` and `bigquery_handler` expose the same functions (`create_schema`,
`load_batch`, `read_lookback`, `read_splits`, `read_history`, `record_run`, `query`,
`refresh_dim_symbol`, `ensure_dim_date`),
each taking its own connection handle first. `Warehouse` bundles the chosen module with its
open handle, so callers write `warehouse.load_batch(frames)`.

Example:
    >>> warehouse = open_warehouse(load_settings())
    >>> warehouse.query("SELECT COUNT(*) AS n FROM fact_daily_prices")
"""

from __future__ import annotations

import pandas as pd

from src.config import Settings
from src.storage import sqlite_warehouse


class Warehouse:
    """An open warehouse: the backend module plus its connection handle."""

    def __init__(self, backend_name: str, module, handle):
        self.backend_name = backend_name
        self.module = module
        self.handle = handle

    def create_schema(self) -> None:
        self.module.create_schema(self.handle)

    def load_batch(self, frames: dict[str, pd.DataFrame]) -> dict[str, int]:
        return self.module.load_batch(self.handle, frames)

    def load_transaction(self):
        """A `with` block for one batch's load: its look-back read and all its writes see one state."""
        return self.module.load_transaction(self.handle)

    def read_lookback(self, symbols: list[str], before: str, rows: int) -> pd.DataFrame:
        return self.module.read_lookback(self.handle, symbols, before, rows)

    def read_splits(self, symbols: list[str]) -> pd.DataFrame:
        return self.module.read_splits(self.handle, symbols)

    def read_history(self, symbols: list[str]) -> pd.DataFrame:
        return self.module.read_history(self.handle, symbols)

    def record_run(self, run: dict) -> None:
        self.module.record_run(self.handle, run)

    def query(self, sql: str, params=()) -> pd.DataFrame:
        return self.module.query(self.handle, sql, params)

    def refresh_dim_symbol(self, symbols: list[str], source_by_symbol: dict | None = None) -> None:
        self.module.refresh_dim_symbol(self.handle, symbols, source_by_symbol)

    def ensure_dim_date(self, start: str, end: str) -> int:
        return self.module.ensure_dim_date(self.handle, start, end)

    def close(self) -> None:
        close = getattr(self.handle, "close", None)
        if close is not None:
            close()


def open_warehouse(settings: Settings, create: bool = True) -> Warehouse:
    """Connect to the warehouse named by `settings.warehouse_backend` (and create its schema).

    Args:
        settings: loaded settings (`WAREHOUSE_BACKEND`, `SQLITE_PATH`, `GCP_PROJECT_ID`, ...).
        create: create missing tables and views (idempotent).

    Returns:
        An open `Warehouse`; call `.close()` when done.
    """
    if settings.warehouse_backend == "bigquery":
        # Imported here: the BigQuery client library takes about a second to import, and a
        # SQLite run (the CLI on a laptop, the tests) never needs it.
        from src.storage import bigquery_handler

        warehouse = Warehouse("bigquery", bigquery_handler, bigquery_handler.connect(settings))
    else:
        warehouse = Warehouse("sqlite", sqlite_warehouse, sqlite_warehouse.connect(settings.sqlite_path))
    if create:
        warehouse.create_schema()
    return warehouse
