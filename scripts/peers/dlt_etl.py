"""The same job with dlt (data load tool): the loader people pick, into DuckDB or SQLite.

A benchmark contestant (issue 22; run by `scripts/benchmark.py --peers`), not part of the
pipeline. It reads and computes exactly like `tutorial_etl.py` (pandas + `ta`, imported from
it) and lets dlt do the loading: a resource with `write_disposition="merge"` and the primary
key (symbol, trade_date), so a rerun replaces rows instead of doubling them. dlt runs in the
peers' own virtualenv, never in the project's.

Usage:
    python scripts/peers/dlt_etl.py --destination duckdb --db prices.duckdb --pipelines-dir .dlt \
        --data-dir data/ --symbols AAPL,MSFT --start 2016-01-04 --end 2025-12-31
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dlt
import pandas as pd
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from tutorial_etl import LOOKBACK_DAYS, PRICE_COLUMNS, add_indicators, read_prices


def destination_for(kind: str, db: str):
    """dlt's DuckDB destination, or its SQLAlchemy destination on a SQLite file."""
    if kind == "duckdb":
        return dlt.destinations.duckdb(db)
    return dlt.destinations.sqlalchemy(f"sqlite:///{db}")


def read_lookback(pipeline, start: str) -> pd.DataFrame:
    """The stored prices of the LOOKBACK_DAYS before `start`, read back through dlt (empty at first)."""
    since = (pd.Timestamp(start) - pd.Timedelta(days=LOOKBACK_DAYS)).strftime("%Y-%m-%d")
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("prices")
            rows = client.execute_sql(
                f"SELECT {', '.join(PRICE_COLUMNS)} FROM {table} WHERE trade_date >= %s AND trade_date < %s",
                since,
                start,
            )
    except DatabaseUndefinedRelation:
        return pd.DataFrame(columns=PRICE_COLUMNS)
    return pd.DataFrame(rows, columns=PRICE_COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--destination", choices=["duckdb", "sqlite"], required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--symbols", required=True, help="comma-separated")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args()

    pipeline = dlt.pipeline(
        pipeline_name=f"prices_{args.destination}",
        destination=destination_for(args.destination, args.db),
        dataset_name="market",
        pipelines_dir=args.pipelines_dir,
    )
    new = read_prices(args.data_dir, args.symbols.split(","), args.start, args.end)
    history = read_lookback(pipeline, args.start)
    rows = add_indicators(pd.concat([history, new], ignore_index=True))
    rows = rows[rows["trade_date"] >= args.start].reset_index(drop=True)

    @dlt.resource(name="prices", write_disposition="merge", primary_key=["symbol", "trade_date"])
    def prices():
        yield rows

    pipeline.run(prices())
    print(f"rows loaded {len(rows)}")


if __name__ == "__main__":
    main()
