"""The pipeline CLI end to end on real SQLite files: exit codes, summary, idempotency, crashes, quarantine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src import pipeline, steps
from src.storage import sqlite_warehouse
from src.storage.schema import AUDIT_COLUMNS, TABLES
from src.transformation.indicators_vectorised import compute_indicators
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

DATA_TABLES = [
    "dim_symbol",
    "dim_date",
    "fact_daily_prices",
    "fact_technical_indicators",
    "agg_weekly_prices",
    "agg_monthly_prices",
    "quarantine_prices",
]


def write_csv(folder: Path, symbol: str, frame: pd.DataFrame) -> None:
    frame.drop(columns="symbol").rename(columns={"trade_date": "date"}).to_csv(folder / f"{symbol}.csv", index=False)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Real 2011-2013 prices for IBM and MSFT (bokeh sample data) as CSV files."""
    folder = tmp_path / "offline"
    folder.mkdir()
    for symbol in ("IBM", "MSFT"):
        frame = load_bokeh_prices(symbol)
        write_csv(folder, symbol, frame[frame["trade_date"] >= "2011-01-01"])
    return folder


@pytest.fixture
def env(tmp_path, monkeypatch, data_dir):
    """Settings through the environment, the way a user sets them; returns the warehouse path."""
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(tmp_path / "missing.env"))
    monkeypatch.setenv("SQLITE_PATH", str(db))
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FILE_SOURCE_DIR", str(data_dir))
    monkeypatch.setenv("DATA_SOURCES", "file")
    monkeypatch.setenv("BATCH_SIZE", "1")
    monkeypatch.delenv("S3_BUCKET", raising=False)
    monkeypatch.delenv("ALPHA_VANTAGE_API_KEY", raising=False)
    return db


def run_cli(*args: str) -> int:
    return pipeline.main(["run", "--no-progress", *args])


def table_contents(db: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db)
    try:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in DATA_TABLES}
    finally:
        conn.close()


def data_columns_only(contents: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """`table_contents` without the audit columns (named in schema.AUDIT_COLUMNS)."""
    kept = {}
    for name, rows in contents.items():
        keep = [i for i, column in enumerate(TABLES[name].column_names) if column not in AUDIT_COLUMNS]
        kept[name] = [tuple(row[i] for i in keep) for row in rows]
    return kept


def test_a_successful_run_loads_prices_indicators_and_aggregates_and_prints_a_summary(env, capsys):
    code = run_cli("--symbols", "ibm, msft", "--start", "2012-01-03", "--end", "2012-12-31")

    assert code == pipeline.EXIT_OK
    out = capsys.readouterr().out
    assert "SUCCESS" in out
    assert "symbols ok       2 of 2" in out
    # 2012 had 250 NYSE sessions (Hurricane Sandy closed the market on Oct 29 and 30).
    assert "rows loaded      500" in out
    assert "from file" in out
    conn = sqlite3.connect(env)
    assert conn.execute("SELECT COUNT(*) FROM fact_daily_prices").fetchone() == (500,)
    assert conn.execute("SELECT COUNT(*) FROM fact_technical_indicators").fetchone() == (500,)
    assert conn.execute(
        "SELECT status, symbols_loaded, rows_loaded, rows_quarantined FROM pipeline_runs"
    ).fetchall() == [("success", 2, 500, 0)]
    assert conn.execute("SELECT COUNT(*) FROM agg_monthly_prices").fetchone() == (24,)
    assert conn.execute(
        "SELECT symbol, first_trade_date, last_trade_date FROM dim_symbol ORDER BY symbol"
    ).fetchall() == [("IBM", "2012-01-03", "2012-12-31"), ("MSFT", "2012-01-03", "2012-12-31")]


def test_running_the_same_range_three_times_leaves_identical_tables(env):
    args = ("--symbols", "IBM,MSFT", "--start", "2012-06-01", "--end", "2012-09-28")
    assert run_cli(*args) == 0
    first = table_contents(env)
    assert run_cli(*args) == 0
    assert run_cli(*args) == 0

    assert table_contents(env) == first
    assert sqlite3.connect(env).execute("SELECT COUNT(*) FROM pipeline_runs").fetchone() == (3,)


def test_the_background_worker_loads_exactly_what_one_process_loads(env, monkeypatch):
    # BATCH_SIZE=1 and two symbols: two batches, so the second is prepared by the worker
    # process while the first loads. A single-process run must leave the same tables.
    args = ("--symbols", "IBM,MSFT", "--start", "2011-06-01", "--end", "2012-09-28")
    assert run_cli(*args) == 0
    with_worker = table_contents(env)

    monkeypatch.setenv("PREPARE_IN_BACKGROUND", "false")
    monkeypatch.setenv("SQLITE_PATH", str(env.parent / "single.db"))
    assert run_cli(*args) == 0
    single = table_contents(env.parent / "single.db")

    # The audit columns (loaded_at, run_id, ...) differ between the two runs; every other column must not.
    assert data_columns_only(with_worker) == data_columns_only(single)
    assert len(single["fact_daily_prices"]) == 2 * 337  # 337 NYSE sessions in the range, per symbol


def test_a_first_backfill_builds_the_trade_date_indexes_after_loading(env):
    # Empty tables: the indexes are dropped for the load and built at the end. The finished
    # warehouse has every index, and "all symbols on a day" queries use it.
    assert run_cli("--symbols", "IBM,MSFT", "--start", "2012-01-03", "--end", "2012-03-30") == 0
    conn = sqlite3.connect(env)
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_fact_daily_prices_trade_date", "idx_fact_technical_indicators_trade_date"} <= indexes
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM fact_daily_prices WHERE trade_date = '2012-03-01'").fetchall()
    assert "idx_fact_daily_prices_trade_date" in plan[0][3]


def test_daily_increments_equal_one_full_run(env, tmp_path, monkeypatch):
    """Loading 2012 then adding January 2013 day by day gives the indicators of one full load."""
    assert run_cli("--symbols", "IBM", "--start", "2011-01-03", "--end", "2012-12-31") == 0
    for day in pd.bdate_range("2013-01-02", "2013-01-31"):
        assert run_cli("--symbols", "IBM", "--start", day.strftime("%Y-%m-%d"), "--end", day.strftime("%Y-%m-%d")) in (
            0,
            1,  # a weekday holiday (Jan 21, MLK day) has no row: that symbol "failed" that day
        )
    stored = sqlite_warehouse.query(
        sqlite_warehouse.connect(env),
        "SELECT * FROM fact_technical_indicators WHERE symbol = 'IBM' ORDER BY trade_date",
    )
    prices = load_bokeh_prices("IBM")
    prices = prices[prices["trade_date"].between("2011-01-03", "2013-01-31")].reset_index(drop=True)
    full = compute_indicators(prices)

    assert stored["trade_date"].tolist() == full["trade_date"].tolist()
    for column in ("sma_20", "sma_50", "sma_200", "rsi_14", "vwap_20", "daily_return"):
        np.testing.assert_allclose(stored[column].to_numpy(float), full[column].to_numpy(float), rtol=0, atol=1e-9)


def test_an_invalid_symbol_stops_the_run_with_exit_2_before_anything_is_fetched(env, capsys):
    code = run_cli("--symbols", "IBM,A;DROP TABLE x", "--start", "2012-01-03", "--end", "2012-01-31")

    assert code == pipeline.EXIT_BAD_INPUT
    assert "'A;DROP TABLE x'" in capsys.readouterr().err
    assert not env.exists()  # nothing was opened, fetched or written


@pytest.mark.parametrize("blank", ["", " , ", ","])
def test_an_empty_or_blank_symbol_list_is_a_bad_argument_not_the_default_symbols(env, capsys, blank):
    # e.g. `--symbols "$SYMBOLS"` with SYMBOLS unset: never quietly the 50 default symbols.
    code = run_cli("--symbols", blank, "--start", "2012-01-03", "--end", "2012-01-31")

    assert code == pipeline.EXIT_BAD_INPUT
    assert "no symbols given: the list is empty or blank" in capsys.readouterr().err
    assert not env.exists()  # nothing was opened, fetched or written


def test_an_empty_symbols_param_of_the_dag_is_refused(env):
    from src import steps
    from src.config import load_settings
    from src.ingestion.symbols import InvalidSymbolInputError

    settings = load_settings()
    with pytest.raises(InvalidSymbolInputError, match="no symbols given"):
        steps.resolve_symbols([], settings)  # what the DAG's resolve_symbols task does with params symbols=[]
    assert steps.resolve_symbols(None, settings) == list(settings.symbols)  # the param left empty: SYMBOLS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--symbols", "IBM", "--start", "2012-02-01", "--end", "2012-01-01"), "is after --end"),
        (
            ("--symbols", "IBM", "--source", "alpha_vantage", "--start", "2012-01-03", "--end", "2012-01-31"),
            "--source alpha_vantage needs ALPHA_VANTAGE_API_KEY, which is not set",
        ),
    ],
)
def test_bad_arguments_or_configuration_exit_2_with_what_to_fix(env, capsys, args, message):
    assert run_cli(*args) == pipeline.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_a_symbol_with_no_data_fails_alone_and_the_run_exits_1(env, capsys):
    code = run_cli("--symbols", "IBM,NOPE,MSFT", "--start", "2012-01-03", "--end", "2012-01-31")

    assert code == pipeline.EXIT_SOME_FAILED
    out = capsys.readouterr().out
    assert "PARTIAL" in out
    assert "NOPE" in out and "NOPE.csv" in out
    conn = sqlite3.connect(env)
    assert conn.execute("SELECT DISTINCT symbol FROM fact_daily_prices ORDER BY symbol").fetchall() == [
        ("IBM",),
        ("MSFT",),
    ]
    status, failed = conn.execute("SELECT status, failed_symbols FROM pipeline_runs").fetchone()
    assert status == "partial"
    assert '"NOPE"' in failed


def test_bad_rows_are_quarantined_with_reasons_and_good_rows_still_load(env, data_dir, capsys):
    frame = load_bokeh_prices("IBM")
    frame = frame[frame["trade_date"].between("2012-01-03", "2012-01-31")].astype(str).reset_index(drop=True)
    frame.loc[1, "close"] = "N/A"  # non-numeric
    frame.loc[2, "low"] = "-5"  # non-positive price
    frame.loc[3, "high"] = "1.0"  # high below open/close
    frame.loc[4, "volume"] = "-100"  # negative volume
    extra = frame.iloc[[5]].assign(volume="12345")  # the same date twice with different values
    write_csv(data_dir, "IBM", pd.concat([frame, extra], ignore_index=True))

    assert run_cli("--symbols", "IBM", "--start", "2012-01-03", "--end", "2012-01-31") == 0

    conn = sqlite3.connect(env)
    reasons = conn.execute("SELECT trade_date, reason FROM quarantine_prices ORDER BY trade_date, reason").fetchall()
    assert reasons == [
        ("2012-01-04", "non_numeric:close"),
        ("2012-01-05", "non_positive_price:low"),
        ("2012-01-06", "high_below_low;high_below_open_close"),
        ("2012-01-09", "negative_volume"),
        ("2012-01-10", "duplicate_date"),
    ]
    # 20 sessions in January 2012; 4 rows rejected; the duplicate's kept copy still loads.
    assert conn.execute("SELECT COUNT(*) FROM fact_daily_prices").fetchone() == (16,)
    assert "rows quarantined 5" in capsys.readouterr().out


def test_a_crash_between_batches_leaves_consistent_tables_and_a_rerun_completes(env, monkeypatch):
    # Two batches (BATCH_SIZE=1), so the second one is prepared in the background process
    # while the first is loaded; the crash comes in the loading of the second.
    args = ("--symbols", "IBM,MSFT", "--start", "2012-01-03", "--end", "2012-06-29")
    real_load = steps.load_batch
    calls = []

    def crash_on_second_batch(transformed, *a, **kw):
        calls.append(transformed.symbols)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real_load(transformed, *a, **kw)

    monkeypatch.setattr(steps, "load_batch", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cli(*args)
    assert calls == [["IBM"], ["MSFT"]]

    conn = sqlite3.connect(env)
    # The first batch (IBM) is complete in every table; nothing of MSFT was written.
    assert conn.execute("SELECT DISTINCT symbol FROM fact_daily_prices").fetchall() == [("IBM",)]
    assert (
        conn.execute("SELECT COUNT(*) FROM fact_daily_prices").fetchone()
        == conn.execute("SELECT COUNT(*) FROM fact_technical_indicators").fetchone()
    )
    assert conn.execute("SELECT status, error FROM pipeline_runs").fetchone() == (
        "failed",
        "RuntimeError: simulated crash",
    )

    monkeypatch.setattr(steps, "load_batch", real_load)
    assert run_cli(*args) == 0
    crashed_then_rerun = table_contents(env)

    clean_db = env.parent / "clean.db"
    monkeypatch.setenv("SQLITE_PATH", str(clean_db))
    assert run_cli(*args) == 0
    uninterrupted = table_contents(clean_db)
    # Same rows, ignoring when they were written and by which run.
    assert {t: len(rows) for t, rows in crashed_then_rerun.items()} == {
        t: len(rows) for t, rows in uninterrupted.items()
    }
    for table in ("fact_daily_prices", "fact_technical_indicators", "agg_weekly_prices", "agg_monthly_prices"):
        columns = [c for c in sqlite_warehouse.TABLES[table].column_names if c not in ("loaded_at", "run_id")]
        query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2"
        assert sqlite3.connect(env).execute(query).fetchall() == sqlite3.connect(clean_db).execute(query).fetchall()


def recorded_counts_and_table_counts(db: Path) -> tuple[tuple, tuple]:
    """(rows_loaded, rows_quarantined) of the last run, and the rows its run_id has in the tables."""
    conn = sqlite3.connect(db)
    try:
        run_id, loaded, quarantined = conn.execute(
            "SELECT run_id, rows_loaded, rows_quarantined FROM pipeline_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        in_prices = conn.execute("SELECT COUNT(*) FROM fact_daily_prices WHERE run_id = ?", (run_id,)).fetchone()[0]
        in_quarantine = conn.execute("SELECT COUNT(*) FROM quarantine_prices WHERE run_id = ?", (run_id,)).fetchone()[0]
        return (loaded, quarantined), (in_prices, in_quarantine)
    finally:
        conn.close()


def test_rows_dated_outside_1970_2040_are_quarantined_and_the_counts_match_the_tables(env, data_dir):
    """Issue 19 case 6: such rows used to commit, then stop the run as failed with '0 loaded'."""
    frame = load_bokeh_prices("IBM")
    frame = frame[frame["trade_date"].between("2012-01-03", "2012-01-31")].astype(str).reset_index(drop=True)
    frame.loc[0, "trade_date"] = "1969-12-31"
    write_csv(data_dir, "IBM", frame)

    assert run_cli("--symbols", "IBM,MSFT", "--start", "1969-01-01", "--end", "2012-01-31") == 0

    conn = sqlite3.connect(env)
    reasons = conn.execute("SELECT trade_date, reason FROM quarantine_prices ORDER BY trade_date").fetchall()
    assert reasons == [("1969-12-31", "date_out_of_range")]  # (2041 rows: tests/unit/test_data_validator.py)
    recorded, in_tables = recorded_counts_and_table_counts(env)
    assert recorded == in_tables and in_tables[1] == 1


def test_a_batch_that_fails_after_its_prices_are_written_leaves_nothing_and_counts_stay_true(env, monkeypatch):
    """Every table of a batch, dimensions included, is one transaction: counts recorded == rows written."""
    real_refresh = sqlite_warehouse.refresh_dim_symbol
    calls = []

    def fail_on_second_batch(conn, symbols, source_by_symbol=None):
        calls.append(symbols)
        if len(calls) == 2:
            raise sqlite3.OperationalError("simulated failure after the prices were written")
        return real_refresh(conn, symbols, source_by_symbol)

    monkeypatch.setattr(sqlite_warehouse, "refresh_dim_symbol", fail_on_second_batch)
    with pytest.raises(sqlite3.OperationalError, match="simulated failure"):
        run_cli("--symbols", "IBM,MSFT", "--start", "2012-01-03", "--end", "2012-06-29")

    recorded, in_tables = recorded_counts_and_table_counts(env)
    assert recorded == in_tables
    conn = sqlite3.connect(env)
    assert conn.execute("SELECT DISTINCT symbol FROM fact_daily_prices").fetchall() == [("IBM",)]
    assert conn.execute("SELECT status FROM pipeline_runs").fetchone() == ("failed",)


def test_the_dags_finish_records_a_batch_whose_tasks_never_finished_as_failed(env):
    """An interrupted (SIGTERM) or failed batch task leaves no results: finish_task_run records
    its symbols as failed, names why, and fails the task (its alert) instead of `running` forever."""
    from datetime import date

    from src.config import load_settings

    settings = load_settings()
    run = steps.start_run("dag-run-1", date(2012, 1, 31), ["IBM", "MSFT"], settings)
    extracted = steps.Extracted(symbols=["IBM"], fetched={"IBM": "file"}, failed={})
    loaded = steps.Loaded(symbols_loaded=["IBM"], rows_loaded=20, rows_quarantined=0, rows_by_source={"file": 20})

    with pytest.raises(steps.PipelineRunFailed, match="MSFT: its batch did not finish"):
        steps.finish_task_run(
            "dag-run-1",
            date(2012, 1, 31),
            ["IBM", "MSFT"],
            run.started_at,
            [extracted.to_xcom()],  # the MSFT batch's extract and load tasks left nothing
            [loaded.to_xcom()],
            settings,
        )
    status, failed = sqlite3.connect(env).execute("SELECT status, failed_symbols FROM pipeline_runs").fetchone()
    assert status == "partial" and "MSFT" in failed and "did not finish" in failed
