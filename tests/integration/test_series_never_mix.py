"""A symbol's series holds synthetic demo rows or real rows, never both (issue: charts across 12 years).

Loads go through the real CLI and `steps.load_prices` into real SQLite files: synthetic IBM
(src/local_stack/synthetic_data.py, source 'synthetic') first, then real IBM (bokeh sample
data, source 'file'), and the other way round.
"""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest

from src import pipeline
from src.local_stack.synthetic_data import write_synthetic_universe
from src.transformation.series_kind import MixedSeriesError, refuse_mixed_series
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A synthetic folder (IBM, MSFT 2025) and a real one (IBM, MSFT 2012-13); settings by environment."""
    synthetic = tmp_path / "synthetic"
    write_synthetic_universe(synthetic, ["IBM", "MSFT"], date(2025, 1, 2), date(2025, 3, 31))
    real = tmp_path / "real"
    real.mkdir()
    for symbol in ("IBM", "MSFT"):
        frame = load_bokeh_prices(symbol)
        frame = frame[frame["trade_date"].between("2012-10-01", "2013-01-31")]
        frame.drop(columns="symbol").rename(columns={"trade_date": "date"}).to_csv(real / f"{symbol}.csv", index=False)
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(tmp_path / "missing.env"))
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "warehouse.db"))
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "")
    monkeypatch.delenv("S3_BUCKET", raising=False)
    return {"synthetic": synthetic, "real": real, "db": tmp_path / "warehouse.db"}


def load(folder, symbols: str, start: str, end: str) -> int:
    return pipeline.main(
        ["run", "--no-progress", "--source", "file", "--data-dir", str(folder), "--symbols", symbols,
         "--start", start, "--end", end]
    )  # fmt: skip


def stored_sources(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT symbol, source, COUNT(*) > 0 FROM fact_daily_prices GROUP BY symbol, source ORDER BY 1, 2"
        ).fetchall()


def test_real_rows_into_a_synthetic_series_are_refused_with_exit_2_and_a_way_out(folders, capsys):
    assert load(folders["synthetic"], "IBM,MSFT", "2025-01-02", "2025-03-31") == pipeline.EXIT_OK
    capsys.readouterr()

    code = load(folders["real"], "IBM", "2012-10-01", "2013-01-31")

    assert code == pipeline.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "IBM holds synthetic demo data (source 'synthetic'): refusing to add real rows (source 'file')" in err
    assert "SQLITE_PATH=data/warehouse-real.db python -m src.pipeline run" in err
    assert stored_sources(folders["db"]) == [("IBM", "synthetic", 1), ("MSFT", "synthetic", 1)]


def test_synthetic_rows_into_a_real_series_are_refused_too(folders, capsys):
    assert load(folders["real"], "MSFT", "2012-10-01", "2013-01-31") == pipeline.EXIT_OK
    capsys.readouterr()

    assert load(folders["synthetic"], "MSFT", "2025-01-02", "2025-03-31") == pipeline.EXIT_BAD_INPUT
    assert "MSFT holds real prices (source 'file'): refusing to add synthetic rows" in capsys.readouterr().err
    assert stored_sources(folders["db"]) == [("MSFT", "file", 1)]


def test_the_same_kind_again_and_other_symbols_of_the_other_kind_load(folders):
    assert load(folders["synthetic"], "IBM", "2025-01-02", "2025-03-31") == pipeline.EXIT_OK
    assert load(folders["synthetic"], "IBM", "2025-01-02", "2025-03-31") == pipeline.EXIT_OK  # rerun
    assert load(folders["real"], "MSFT", "2012-10-01", "2013-01-31") == pipeline.EXIT_OK  # another symbol
    assert stored_sources(folders["db"]) == [("IBM", "synthetic", 1), ("MSFT", "file", 1)]


def test_a_separate_warehouse_takes_the_real_rows(folders, monkeypatch, tmp_path):
    assert load(folders["synthetic"], "IBM", "2025-01-02", "2025-03-31") == pipeline.EXIT_OK
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "warehouse-real.db"))
    assert load(folders["real"], "IBM", "2012-10-01", "2013-01-31") == pipeline.EXIT_OK
    assert stored_sources(tmp_path / "warehouse-real.db") == [("IBM", "file", 1)]


def test_refuse_mixed_series_on_frames():
    import pandas as pd

    stored = pd.DataFrame(
        {"symbol": ["IBM", "AAPL"], "trade_date": ["2025-01-02"] * 2, "source": ["synthetic", "yahoo"]}
    )
    new = pd.DataFrame(
        {"symbol": ["IBM", "AAPL"], "trade_date": ["2025-01-03"] * 2, "source": ["synthetic", "alpha_vantage"]}
    )
    refuse_mixed_series(new, stored)  # same kinds: synthetic with synthetic, real with real
    with pytest.raises(MixedSeriesError, match="AAPL holds real prices"):
        refuse_mixed_series(new.assign(source="synthetic"), stored)
    refuse_mixed_series(new, stored.iloc[0:0])  # nothing stored yet
