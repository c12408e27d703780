"""Reading the next batch's warehouse pages ahead of its load, against real SQLite files.

The prefetch is only a speed-up (docs/benchmarks.md, "The daily run on a 20-year warehouse"),
so these tests check what must hold for it to be safe and useful: it reads exactly what a
load of those symbols reads, through primary-key searches (never a table scan), runs while the
writer holds its transaction, writes nothing, survives failures, and hands each batch over
only after that batch's pages are read.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from src.config import load_settings
from src.storage import bigquery_handler
from src.storage import sqlite_warehouse as wh
from src.storage.calendar_dim import build_dim_date
from src.storage.loader import load_clean_prices, prefetch_ahead
from src.storage.schema import TABLES
from src.storage.warehouse import open_warehouse
from src.transformation.indicators import LOOKBACK_ROWS
from src.transformation.transform import transform_prices

pytestmark = pytest.mark.integration

SYMBOLS = ["AAPL", "IBM", "MSFT"]
FIRST_NEW_DAY = "2012-06-29"  # the day a "daily run" would load
LOADED_AT = "2012-07-02T00:00:00+00:00"


@pytest.fixture(scope="module")
def clean_2012(real_prices_4_symbols) -> pd.DataFrame:
    """Real AAPL, IBM and MSFT bars for 2012 (bokeh sample data), through the pipeline's transform step."""
    raw = real_prices_4_symbols[
        real_prices_4_symbols["symbol"].isin(SYMBOLS)
        & real_prices_4_symbols["trade_date"].between("2012-01-01", "2012-12-31")
    ]
    clean, _quarantine = transform_prices(raw.assign(source="file").reset_index(drop=True), run_date="2012-12-31")
    return clean


@pytest.fixture
def warehouse(tmp_path, clean_2012):
    """A SQLite warehouse file with every table filled by the pipeline's own load step."""
    settings = load_settings(
        env_file="", overrides={"WAREHOUSE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp_path / "warehouse.db")}
    )
    warehouse = open_warehouse(settings)
    load_clean_prices(warehouse, clean_2012, pd.DataFrame(), "test-prefetch", LOADED_AT)
    yield warehouse
    warehouse.close()


def test_prefetch_counts_the_rows_a_load_of_those_symbols_reads(warehouse, clean_2012):
    rows = 3
    counted = wh.start_prefetch(warehouse.handle, [*SYMBOLS, "NODATA"], before=FIRST_NEW_DAY, rows=rows).result()

    # Per stored symbol: the sessions of the last ceil(rows * 1.5) calendar days before the new
    # day (read forwards, so the OS reads ahead), up to `rows` on or after it (a rerun), the
    # indicator row before it, and the 2 latest weekly and monthly bars.
    since = wh.prefetch_since(FIRST_NEW_DAY, rows)
    assert since == "2012-06-24"  # a Sunday: the span holds Mon 06-25 .. Thu 06-28
    lookback = clean_2012["trade_date"].between(since, FIRST_NEW_DAY, inclusive="left").groupby(clean_2012["symbol"])
    assert lookback.sum().tolist() == [4, 4, 4]  # at least `rows`, as the load needs
    per_symbol = 4 + rows + 1 + 2 + 2
    assert counted == per_symbol * len(SYMBOLS)
    assert (clean_2012["trade_date"] >= FIRST_NEW_DAY).groupby(clean_2012["symbol"]).sum().min() >= rows


def test_the_prefetch_span_holds_a_full_lookback_in_every_year():
    # 200 rows -> 300 calendar days; every such span since 2000 holds >= 200 NYSE sessions,
    # so for a symbol without gaps the prefetch reads every page the load will read.
    sessions = build_dim_date("2000-01-01", "2026-12-31")
    sessions = pd.to_datetime(sessions.loc[sessions["is_trading_day"], "trade_date"])
    for before in pd.date_range("2001-01-01", "2026-12-31", freq="7D"):
        since = pd.Timestamp(wh.prefetch_since(before.date().isoformat(), LOOKBACK_ROWS))
        assert ((sessions >= since) & (sessions < before)).sum() >= LOOKBACK_ROWS, before


def test_every_prefetch_query_is_a_primary_key_search(warehouse):
    # A scan would read the whole table: the opposite of reading a few pages per symbol.
    warehouse.handle.execute("ANALYZE")
    since = wh.prefetch_since(FIRST_NEW_DAY, LOOKBACK_ROWS)
    params = {"symbol": "AAPL", "before": FIRST_NEW_DAY, "since": since, "rows": LOOKBACK_ROWS}
    for sql in wh.PREFETCH_SQL:
        plan = [row[3] for row in warehouse.handle.execute("EXPLAIN QUERY PLAN " + sql, params)]
        # Steps that read a table (not the "SCAN (subquery-1)" over the subquery's own rows).
        table_steps = [step for step in plan if step.split()[0] in ("SEARCH", "SCAN") and step.split()[1] in TABLES]
        assert table_steps and all(step.startswith("SEARCH") and "USING PRIMARY KEY" in step for step in table_steps), (
            plan
        )


def test_prefetch_reads_while_the_writer_holds_its_transaction_and_writes_nothing(warehouse, tmp_path):
    path = tmp_path / "warehouse.db"
    before = wh.query(warehouse.handle, "SELECT COUNT(*) AS n FROM fact_daily_prices")["n"].iloc[0]
    warehouse.handle.execute("BEGIN IMMEDIATE")  # as during load_batch: the write lock is taken
    warehouse.handle.execute("DELETE FROM fact_daily_prices WHERE symbol = 'AAPL'")
    try:
        # WAL: the readers see the last committed state and never wait for the writer.
        counted = wh.prefetch_pages(str(path), SYMBOLS, FIRST_NEW_DAY, LOOKBACK_ROWS)
    finally:
        warehouse.handle.execute("ROLLBACK")
    assert counted > 0
    after = wh.query(warehouse.handle, "SELECT COUNT(*) AS n FROM fact_daily_prices")["n"].iloc[0]
    assert after == before


def test_a_failed_prefetch_is_logged_and_neither_raises_nor_creates_a_file(tmp_path, caplog):
    missing = tmp_path / "no-such.db"
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("this is not a SQLite file\n" * 200)

    with caplog.at_level(logging.WARNING, logger="src.storage.sqlite_warehouse"):
        assert wh.prefetch_pages(str(missing), SYMBOLS, FIRST_NEW_DAY, LOOKBACK_ROWS) == 0
        assert wh.prefetch_pages(str(not_sqlite), SYMBOLS, FIRST_NEW_DAY, LOOKBACK_ROWS) == 0

    assert not missing.exists()  # read-only: a wrong path never becomes an empty database
    warnings = [record.getMessage() for record in caplog.records]
    assert any(str(missing) in text and "the load reads them itself" in text for text in warnings)
    assert any(str(not_sqlite) in text for text in warnings)


def test_nothing_to_read_ahead_in_memory_or_on_bigquery():
    memory = wh.connect(":memory:")
    try:
        pending = wh.start_prefetch(memory, SYMBOLS, FIRST_NEW_DAY, LOOKBACK_ROWS)
        assert pending.done() and pending.result() == 0
    finally:
        memory.close()
    # BigQuery has no local pages; its start_prefetch never touches the client.
    pending = bigquery_handler.start_prefetch(None, SYMBOLS, FIRST_NEW_DAY, LOOKBACK_ROWS)
    assert pending.done() and pending.result() == 0


def test_prefetch_ahead_reads_the_next_batch_while_one_is_handed_over(warehouse, monkeypatch):
    batches = [["AAPL"], ["IBM"], ["MSFT"]]
    events: list[tuple[str, str]] = []
    futures = {}
    real_start = warehouse.start_prefetch

    def recording_start(symbols, before, rows):
        assert (before, rows) == (FIRST_NEW_DAY, LOOKBACK_ROWS)
        events.append(("prefetch", symbols[0]))
        futures[symbols[0]] = real_start(symbols, before, rows)
        return futures[symbols[0]]

    monkeypatch.setattr(warehouse, "start_prefetch", recording_start)
    for batch in prefetch_ahead(warehouse, batches, iter(batches), FIRST_NEW_DAY):
        assert futures[batch[0]].done()  # its pages were read before it was handed over
        assert futures[batch[0]].result() > 0
        events.append(("load", batch[0]))

    assert events == [
        ("prefetch", "AAPL"),
        ("prefetch", "IBM"),  # started before AAPL is loaded, so it runs during that load
        ("load", "AAPL"),
        ("prefetch", "MSFT"),
        ("load", "IBM"),
        ("load", "MSFT"),
    ]


def test_a_daily_load_after_a_prefetch_stores_what_it_stores_without_one(tmp_path, clean_2012):
    # The prefetch only warms the OS cache: the warehouse must end up identical either way.
    history = clean_2012[clean_2012["trade_date"] < FIRST_NEW_DAY]
    new_day = clean_2012[clean_2012["trade_date"] == FIRST_NEW_DAY]
    tables = {}
    for name, with_prefetch in (("with", True), ("without", False)):
        settings = load_settings(
            env_file="", overrides={"WAREHOUSE_BACKEND": "sqlite", "SQLITE_PATH": str(tmp_path / f"{name}.db")}
        )
        warehouse = open_warehouse(settings)
        load_clean_prices(warehouse, history, pd.DataFrame(), "backfill", LOADED_AT)
        batches = [["AAPL", "IBM"], ["MSFT"]]
        items = prefetch_ahead(warehouse, batches, batches, FIRST_NEW_DAY) if with_prefetch else batches
        for batch in items:
            load_clean_prices(warehouse, new_day[new_day["symbol"].isin(batch)], pd.DataFrame(), "daily", LOADED_AT)
        tables[name] = {
            table: wh.query(warehouse.handle, f"SELECT * FROM {table} ORDER BY symbol, {key}")
            for table, key in (
                ("fact_daily_prices", "trade_date"),
                ("fact_technical_indicators", "trade_date"),
                ("agg_weekly_prices", "period_start"),
                ("agg_monthly_prices", "period_start"),
            )
        }
        warehouse.close()
    for table, frame in tables["with"].items():
        pd.testing.assert_frame_equal(frame, tables["without"][table], obj=table)
    assert len(tables["with"]["fact_daily_prices"]) == len(history) + len(new_day)
