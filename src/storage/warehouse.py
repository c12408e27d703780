"""Pick the warehouse backend from the settings, so pipeline code never changes with it.

`sqlite_warehouse` and `bigquery_handler` expose the same functions (`create_schema`,
`load_batch`, `read_history_tail`, `read_prices`, `record_run`, `query`, `refresh_dim_symbol`,
`ensure_dim_date`, `begin_bulk_load`, `end_bulk_load`, `start_prefetch`), each taking its own
connection handle first. `Warehouse` bundles the chosen module with its open handle, so callers write
`warehouse.load_batch(frames)`.

Example:
    >>> warehouse = open_warehouse(load_settings())
    >>> warehouse.query("SELECT COUNT(*) AS n FROM fact_daily_prices")
"""

from __future__ import annotations

from concurrent.futures import Future

import pandas as pd

from src.config import Settings


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

    def begin_bulk_load(self) -> bool:
        return self.module.begin_bulk_load(self.handle)

    def end_bulk_load(self) -> None:
        self.module.end_bulk_load(self.handle)

    def start_prefetch(self, symbols: list[str], before: str, rows: int) -> Future:
        return self.module.start_prefetch(self.handle, symbols, before, rows)

    def read_history_tail(self, symbols: list[str], before: str, rows: int) -> pd.DataFrame:
        return self.module.read_history_tail(self.handle, symbols, before, rows)

    def read_prices(self, symbols: list[str], start: str, end: str) -> pd.DataFrame:
        return self.module.read_prices(self.handle, symbols, start, end)

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
    # Imported here so a SQLite-only run never imports the BigQuery client (and vice versa).
    if settings.warehouse_backend == "bigquery":
        from src.storage import bigquery_handler as module

        handle = module.connect(settings)
    else:
        from src.storage import sqlite_warehouse as module

        handle = module.connect(settings.sqlite_path)
    warehouse = Warehouse(settings.warehouse_backend, module, handle)
    if create:
        warehouse.create_schema()
    return warehouse
