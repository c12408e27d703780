"""The script a tutorial would have you write: pandas + the `ta` library + `DataFrame.to_sql`.

A benchmark contestant (issue 22; run by `scripts/benchmark.py --peers`), not part of the
pipeline: it reads the same `<SYMBOL>.csv` files as the project's `file` source, computes the
same indicator columns with `ta`, and upserts one row per (symbol, trade_date) into a SQLite
table. It runs in the peers' own virtualenv (pandas, ta), so it imports nothing from `src`.

For a daily run (a start date later than what is stored) it reads the stored rows of the last
400 calendar days back from SQLite first, so SMA 200 has its 199 earlier closes. `ta`'s RSI
is an exponential mean seeded from the first change, not Wilder's simple-average seed, so its
values differ from TA-Lib's (and the project's) for the first few hundred rows of a series.

Usage:
    python scripts/peers/tutorial_etl.py --db prices.db --data-dir data/ --symbols AAPL,MSFT \
        --start 2016-01-04 --end 2025-12-31
"""

from __future__ import annotations

import argparse
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from ta.momentum import RSIIndicator
from ta.trend import SMAIndicator
from ta.volume import VolumeWeightedAveragePrice

# Calendar days read back for a daily run: at least 200 sessions (SMA 200 needs 199 before).
LOOKBACK_DAYS = 400
PRICE_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume"]
INDICATOR_COLUMNS = ["sma_20", "sma_50", "sma_200", "rsi_14", "vwap_20", "daily_return"]

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS prices (
    symbol TEXT NOT NULL, trade_date TEXT NOT NULL,
    open REAL, high REAL, low REAL, close REAL, volume INTEGER,
    sma_20 REAL, sma_50 REAL, sma_200 REAL, rsi_14 REAL, vwap_20 REAL, daily_return REAL,
    PRIMARY KEY (symbol, trade_date)
)
"""


def read_prices(data_dir: Path, symbols: list[str], start: str, end: str) -> pd.DataFrame:
    """Read each symbol's CSV and keep the rows from start to end (ISO dates, inclusive)."""
    frames = []
    for symbol in symbols:
        frame = pd.read_csv(data_dir / f"{symbol}.csv")
        frame = frame[(frame["date"] >= start) & (frame["date"] <= end)]
        frames.append(frame.rename(columns={"date": "trade_date"}).assign(symbol=symbol))
    return pd.concat(frames, ignore_index=True)[PRICE_COLUMNS]


def add_indicators(prices: pd.DataFrame) -> pd.DataFrame:
    """SMA 20/50/200, RSI 14, 20-day VWAP and the daily return, per symbol, with `ta`."""
    parts = []
    for _, group in prices.sort_values(["symbol", "trade_date"]).groupby("symbol", sort=False):
        close = group["close"]
        group = group.assign(
            sma_20=SMAIndicator(close, window=20).sma_indicator(),
            sma_50=SMAIndicator(close, window=50).sma_indicator(),
            sma_200=SMAIndicator(close, window=200).sma_indicator(),
            rsi_14=RSIIndicator(close, window=14).rsi(),
            vwap_20=VolumeWeightedAveragePrice(
                group["high"], group["low"], close, group["volume"], window=20
            ).volume_weighted_average_price(),
            daily_return=close.pct_change(),
        )
        parts.append(group)
    return pd.concat(parts, ignore_index=True)


def upsert(table, conn, keys, data_iter):
    """A `to_sql(method=...)` callable: INSERT ... ON CONFLICT (symbol, trade_date) DO UPDATE."""
    columns = ", ".join(keys)
    updates = ", ".join(f"{key} = excluded.{key}" for key in keys if key not in ("symbol", "trade_date"))
    sql = (
        f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join('?' for _ in keys)}) "
        f"ON CONFLICT (symbol, trade_date) DO UPDATE SET {updates}"
    )
    conn.executemany(sql, data_iter)


def read_lookback(conn: sqlite3.Connection, start: str) -> pd.DataFrame:
    """The stored prices of the LOOKBACK_DAYS before `start` (empty on a first load)."""
    since = (date.fromisoformat(start) - timedelta(days=LOOKBACK_DAYS)).isoformat()
    return pd.read_sql_query(
        f"SELECT {', '.join(PRICE_COLUMNS)} FROM prices WHERE trade_date >= ? AND trade_date < ?",
        conn,
        params=(since, start),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--symbols", required=True, help="comma-separated")
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args()

    conn = sqlite3.connect(args.db)
    conn.execute(CREATE_TABLE)
    new = read_prices(args.data_dir, args.symbols.split(","), args.start, args.end)
    history = read_lookback(conn, args.start)
    rows = add_indicators(pd.concat([history, new], ignore_index=True))
    rows = rows[rows["trade_date"] >= args.start]
    with conn:  # one transaction
        rows.to_sql("prices", conn, if_exists="append", index=False, method=upsert, chunksize=100_000)
    conn.close()
    print(f"rows loaded {len(rows)}")


if __name__ == "__main__":
    main()
