"""On BigQuery (the bqemulator): a split learned late gives exactly the warehouse of a full load.

The same case as tests/integration/test_split_loads.py, on the BigQuery handler: the symbol's
recompute goes through the same staging + MERGE as every batch. Real as-traded AAPL prices;
AAPL's 2-for-1 split of 2005-02-28 (public records) arrives with the first daily run after it.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from src import steps
from src.storage.schema import AUDIT_COLUMNS, TABLES
from src.storage.warehouse import open_warehouse
from src.transformation.transform import transform_prices
from tests.fixtures.bq_emulator import emulator_settings
from tests.fixtures.market_data import load_bokeh_prices

pytestmark = pytest.mark.integration

SPLITS = pd.DataFrame(
    {
        "symbol": ["AAPL", "AAPL"],
        "effective_date": ["2000-06-21", "2005-02-28"],
        "split_factor": [2.0, 2.0],
        "source": ["file", "file"],
    }
)
COMPARED = ["fact_daily_prices", "fact_technical_indicators", "agg_weekly_prices", "agg_monthly_prices", "fact_splits"]


def load(warehouse, runs) -> list[steps.Loaded]:
    results = []
    for number, (piece, splits) in enumerate(runs):
        clean, quarantine = transform_prices(piece, run_date=piece["trade_date"].max())
        results.append(steps.load_prices(warehouse, clean, quarantine, f"run-{number}", splits=splits))
    return results


def tables(warehouse) -> dict[str, pd.DataFrame]:
    result = {}
    for name in COMPARED:
        table = TABLES[name]
        columns = [column for column in table.column_names if column not in AUDIT_COLUMNS]
        result[name] = warehouse.query(
            f"SELECT {', '.join(columns)} FROM {name} ORDER BY {', '.join(table.primary_key)}"
        )
    return result


def test_a_split_learned_in_a_later_daily_run_gives_the_warehouse_of_a_full_load_on_bigquery(bq_emulator):
    history = load_bokeh_prices("AAPL")
    history = history[(history["trade_date"] >= "2004-10-01") & (history["trade_date"] <= "2005-03-03")]
    history = history.assign(source="file").reset_index(drop=True)
    before = history[history["trade_date"] < "2005-03-01"]
    daily = [history[history["trade_date"] == day] for day in ("2005-03-01", "2005-03-02", "2005-03-03")]

    full = open_warehouse(emulator_settings(bq_emulator, f"full_{uuid.uuid4().hex[:8]}"))
    late = open_warehouse(emulator_settings(bq_emulator, f"late_{uuid.uuid4().hex[:8]}"))
    try:
        load(full, [(history, SPLITS)])
        results = load(late, [(before, SPLITS.iloc[:1]), *((day, SPLITS) for day in daily)])

        assert [result.split_recomputes for result in results] == [{}, {"AAPL": ["2005-02-28"]}, {}, {}]
        expected, actual = tables(full), tables(late)
        for name in COMPARED:
            pd.testing.assert_frame_equal(actual[name], expected[name], check_exact=False, rtol=1e-12, obj=name)
        row = actual["fact_daily_prices"].set_index("trade_date").loc["2005-02-25"]
        assert (row["close"], row["adj_close"]) == (88.99, 88.99 / 2)
    finally:
        full.close()
        late.close()
