"""Analytical queries on the warehouse: the questions a user asks after a run.

Each query is one function `name(warehouse, as_of, limit)` that returns a DataFrame. The same
function works on both warehouses (SQLite locally, BigQuery in the cloud):

- table names come from `table_ref` (plain in SQLite, `project.dataset.table` in BigQuery);
- values (dates, thresholds, the row limit) always travel as `?` parameters, never as SQL text;
- the SQL is portable except where a dialect really differs (the standard deviation: BigQuery has
  `STDDEV_SAMP`, SQLite has none), and `warehouse.backend_name` picks the fragment.

Date windows ("the last 30 days") are worked out in Python and passed as parameters, so the SQL
needs no dialect-specific date functions, and BigQuery reads only the partitions in the window
(`fact_*` tables are partitioned by trade_date: the cost of a query does not grow with history).

| query | answers |
|---|---|
| `top_movers` | which symbols moved most (up or down) on the day? |
| `rsi_extremes` | which symbols are overbought (RSI 14 > 70) or oversold (< 30)? |
| `crosses` | golden and death crosses (SMA 50 crossing SMA 200) in the last 30 days |
| `volatility_30d` | annualised volatility of daily returns over the last 30 sessions |
| `vwap_distance` | how far is the close from its 20-session VWAP, in percent? |
| `data_completeness` | which symbols miss NYSE sessions in their stored history? |

Usage:
    python -m src.analytics --list
    python -m src.analytics top_movers [--date 2013-03-01] [--limit 10]

Example:
    >>> warehouse = open_warehouse(load_settings())
    >>> top_movers(warehouse, "2013-03-01", limit=5)
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, timedelta

import pandas as pd

from src.config import ConfigurationError, configure_logging, load_settings
from src.monitoring.health_checks import table_ref
from src.storage.warehouse import Warehouse, open_warehouse

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
# Wilder's classic thresholds (the same as the v_latest_signals view).
RSI_OVERBOUGHT = 70.0
RSI_OVERSOLD = 30.0
# `crosses` looks back this many calendar days ...
CROSS_WINDOW_DAYS = 30
# ... and reads this many more, so the first session in the window has its previous session
# (the longest NYSE closure since 1933 was 6 days, after 9/11).
PREVIOUS_SESSION_DAYS = 14
# `volatility_30d`: 30 sessions of returns, found within 62 calendar days (30 sessions span at
# most about 45 calendar days, holidays included).
VOLATILITY_SESSIONS = 30
VOLATILITY_LOOKBACK_DAYS = 62
TRADING_DAYS_PER_YEAR = 252


def _days_before(day: str, days: int) -> str:
    """The ISO date `days` calendar days before the ISO date `day`."""
    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()


def latest_trade_date(warehouse: Warehouse) -> str | None:
    """Return the latest trade_date stored in fact_daily_prices ('YYYY-MM-DD'), or None when empty."""
    prices = table_ref(warehouse, "fact_daily_prices")
    frame = warehouse.query(f"SELECT MAX(trade_date) AS latest FROM {prices}")
    latest = frame["latest"].iloc[0]
    # An empty table gives NULL: None from SQLite, the text 'None' or NaN from BigQuery.
    if latest is None or pd.isna(latest) or str(latest) == "None":
        return None
    return str(latest)


def top_movers(warehouse: Warehouse, as_of: str, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """The symbols with the largest close-to-close move on `as_of`, up or down.

    Args:
        warehouse: the open warehouse.
        as_of: the trading day, 'YYYY-MM-DD'.
        limit: at most this many rows.

    Returns:
        symbol, trade_date, close, previous_close, return_pct (100 × daily_return), largest
        absolute move first (ties by symbol). Symbols without a previous session are left out.
        daily_return is on the split-adjusted closes, so previous_close is the previous close
        on today's share basis (a split day is not a mover).
    """
    sql = f"""
        SELECT p.symbol, p.trade_date, p.close,
               p.close / (1 + i.daily_return) AS previous_close,
               100 * i.daily_return AS return_pct
        FROM {table_ref(warehouse, "fact_daily_prices")} AS p
        JOIN {table_ref(warehouse, "fact_technical_indicators")} AS i
          ON i.symbol = p.symbol AND i.trade_date = p.trade_date
        WHERE p.trade_date = ? AND i.trade_date = ? AND i.daily_return IS NOT NULL
        ORDER BY ABS(i.daily_return) DESC, p.symbol
        LIMIT ?
    """
    # The date is given for both tables so BigQuery prunes the partitions of both.
    return warehouse.query(sql, (as_of, as_of, int(limit)))


def rsi_extremes(warehouse: Warehouse, as_of: str, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """The symbols whose 14-session RSI is overbought (> 70) or oversold (< 30) on `as_of`.

    Args:
        warehouse: the open warehouse.
        as_of: the trading day, 'YYYY-MM-DD'.
        limit: at most this many rows.

    Returns:
        symbol, trade_date, close, rsi_14, rsi_signal ('overbought' or 'oversold'), the most
        extreme RSI (furthest from 50) first, ties by symbol.
    """
    sql = f"""
        SELECT p.symbol, p.trade_date, p.close, i.rsi_14,
               CASE WHEN i.rsi_14 > ? THEN 'overbought' ELSE 'oversold' END AS rsi_signal
        FROM {table_ref(warehouse, "fact_daily_prices")} AS p
        JOIN {table_ref(warehouse, "fact_technical_indicators")} AS i
          ON i.symbol = p.symbol AND i.trade_date = p.trade_date
        WHERE p.trade_date = ? AND i.trade_date = ? AND (i.rsi_14 > ? OR i.rsi_14 < ?)
        ORDER BY ABS(i.rsi_14 - 50) DESC, p.symbol
        LIMIT ?
    """
    params = (RSI_OVERBOUGHT, as_of, as_of, RSI_OVERBOUGHT, RSI_OVERSOLD, int(limit))
    return warehouse.query(sql, params)


def crosses(warehouse: Warehouse, as_of: str, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """Golden and death crosses (SMA 50 vs SMA 200) in the 30 calendar days up to `as_of`.

    A golden cross is the session where the 50-session SMA rises above the 200-session SMA
    (it was at or below it on the previous session); a death cross is the opposite. The same
    rule as the `cross_signal` column of `v_latest_signals`, over a window instead of one day.

    Args:
        warehouse: the open warehouse.
        as_of: the last trading day of the window, 'YYYY-MM-DD'.
        limit: at most this many rows.

    Returns:
        symbol, trade_date, cross_signal ('golden_cross' or 'death_cross'), sma_50, sma_200;
        the most recent first, ties by symbol.
    """
    window_start = _days_before(as_of, CROSS_WINDOW_DAYS)
    read_from = _days_before(window_start, PREVIOUS_SESSION_DAYS)
    sql = f"""
        WITH sessions AS (
          SELECT symbol, trade_date, sma_50, sma_200,
                 LAG(sma_50) OVER (PARTITION BY symbol ORDER BY trade_date) AS previous_sma_50,
                 LAG(sma_200) OVER (PARTITION BY symbol ORDER BY trade_date) AS previous_sma_200
          FROM {table_ref(warehouse, "fact_technical_indicators")}
          WHERE trade_date BETWEEN ? AND ?
        ),
        signals AS (
          SELECT symbol, trade_date, sma_50, sma_200,
                 CASE
                   WHEN previous_sma_50 <= previous_sma_200 AND sma_50 > sma_200 THEN 'golden_cross'
                   WHEN previous_sma_50 >= previous_sma_200 AND sma_50 < sma_200 THEN 'death_cross'
                 END AS cross_signal
          FROM sessions
          WHERE trade_date >= ?
        )
        SELECT symbol, trade_date, cross_signal, sma_50, sma_200
        FROM signals
        WHERE cross_signal IS NOT NULL
        ORDER BY trade_date DESC, symbol
        LIMIT ?
    """
    return warehouse.query(sql, (read_from, as_of, window_start, int(limit)))


def volatility_30d(warehouse: Warehouse, as_of: str, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """Annualised volatility of each symbol's daily returns over its last 30 sessions up to `as_of`.

    Volatility is the sample standard deviation of the daily returns (n - 1 in the
    denominator), annualised with the square root of 252 trading days and shown in percent.
    A symbol needs at least 2 returns in the window to appear.

    Args:
        warehouse: the open warehouse.
        as_of: the last trading day, 'YYYY-MM-DD'.
        limit: at most this many rows.

    Returns:
        symbol, first_date, last_date, returns (how many were used, at most 30),
        daily_volatility_pct, annualised_volatility_pct; the most volatile first, ties by symbol.
    """
    if warehouse.backend_name == "bigquery":
        stddev = "STDDEV_SAMP(daily_return)"
    else:
        # SQLite has no standard deviation: the two-pass formula, sqrt(sum((x - mean)^2) / (n - 1)).
        stddev = "SQRT(SUM((daily_return - mean_return) * (daily_return - mean_return)) / (COUNT(*) - 1))"
    sql = f"""
        WITH recent AS (
          SELECT symbol, trade_date, daily_return,
                 ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY trade_date DESC) AS sessions_ago
          FROM {table_ref(warehouse, "fact_technical_indicators")}
          WHERE trade_date BETWEEN ? AND ? AND daily_return IS NOT NULL
        ),
        last_sessions AS (
          SELECT symbol, trade_date, daily_return,
                 AVG(daily_return) OVER (PARTITION BY symbol) AS mean_return
          FROM recent
          WHERE sessions_ago <= ?
        ),
        stats AS (
          SELECT symbol, MIN(trade_date) AS first_date, MAX(trade_date) AS last_date,
                 COUNT(*) AS returns, {stddev} AS daily_volatility
          FROM last_sessions
          GROUP BY symbol
          HAVING COUNT(*) >= 2
        )
        SELECT symbol, first_date, last_date, returns,
               100 * daily_volatility AS daily_volatility_pct,
               100 * daily_volatility * SQRT(?) AS annualised_volatility_pct
        FROM stats
        ORDER BY daily_volatility DESC, symbol
        LIMIT ?
    """
    start = _days_before(as_of, VOLATILITY_LOOKBACK_DAYS)
    params = (start, as_of, VOLATILITY_SESSIONS, float(TRADING_DAYS_PER_YEAR), int(limit))
    return warehouse.query(sql, params)


def vwap_distance(warehouse: Warehouse, as_of: str, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """How far each symbol's close is from its rolling 20-session VWAP on `as_of`, in percent.

    Args:
        warehouse: the open warehouse.
        as_of: the trading day, 'YYYY-MM-DD'.
        limit: at most this many rows.

    Returns:
        symbol, trade_date, close (as traded), adj_close, vwap_20, pct_from_vwap
        (100 × (adj_close − vwap_20) / vwap_20, as in `v_latest_signals`: the VWAP is on the
        split-adjusted basis), close_vs_vwap ('above' when adj_close ≥ vwap_20, else 'below');
        the largest distance either way first, ties by symbol. Warm-up rows (no VWAP) are left out.
    """
    # A row written before the adjusted columns existed has NULL adj_close: it had no split.
    sql = f"""
        SELECT symbol, trade_date, close, adj_close, vwap_20,
               100.0 * (adj_close - vwap_20) / vwap_20 AS pct_from_vwap,
               CASE WHEN adj_close >= vwap_20 THEN 'above' ELSE 'below' END AS close_vs_vwap
        FROM (
            SELECT p.symbol, p.trade_date, p.close, COALESCE(p.adj_close, p.close) AS adj_close, i.vwap_20
            FROM {table_ref(warehouse, "fact_daily_prices")} AS p
            JOIN {table_ref(warehouse, "fact_technical_indicators")} AS i
              ON i.symbol = p.symbol AND i.trade_date = p.trade_date
            WHERE p.trade_date = ? AND i.trade_date = ? AND i.vwap_20 IS NOT NULL AND i.vwap_20 <> 0
        ) AS latest
        ORDER BY ABS(adj_close - vwap_20) / vwap_20 DESC, symbol
        LIMIT ?
    """
    return warehouse.query(sql, (as_of, as_of, int(limit)))


def data_completeness(warehouse: Warehouse, as_of: str | None = None, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """Each symbol's stored history against the NYSE calendar, least complete first.

    Reads the `v_data_completeness` view, which covers each symbol's whole stored history
    (first to last stored session), so `as_of` is not used; it is accepted so every query has
    the same signature.

    Args:
        warehouse: the open warehouse.
        as_of: not used.
        limit: at most this many rows.

    Returns:
        symbol, first_date, last_date, sessions_expected, sessions_present, sessions_missing,
        completeness_pct; the lowest completeness first, ties by symbol.
    """
    sql = f"""
        SELECT symbol, first_date, last_date, sessions_expected, sessions_present,
               sessions_missing, completeness_pct
        FROM {table_ref(warehouse, "v_data_completeness")}
        ORDER BY completeness_pct, symbol
        LIMIT ?
    """
    return warehouse.query(sql, (int(limit),))


# Every query by name, for the CLI and the dashboard. The first docstring line is the help text.
QUERIES = {
    "top_movers": top_movers,
    "rsi_extremes": rsi_extremes,
    "crosses": crosses,
    "volatility_30d": volatility_30d,
    "vwap_distance": vwap_distance,
    "data_completeness": data_completeness,
}


def run_query(warehouse: Warehouse, name: str, as_of: str | None = None, limit: int = DEFAULT_LIMIT) -> pd.DataFrame:
    """Run one of `QUERIES` by name; `as_of` defaults to the latest stored trading day.

    Args:
        warehouse: the open warehouse.
        name: a key of `QUERIES`, e.g. 'top_movers'.
        as_of: the trading day 'YYYY-MM-DD', or None for the latest in fact_daily_prices.
        limit: at most this many rows (at least 1).

    Returns:
        The query's rows (empty when the warehouse holds no prices).

    Raises:
        ValueError: unknown query name, a date that is not 'YYYY-MM-DD', or limit < 1.
    """
    if name not in QUERIES:
        raise ValueError(f"unknown query {name!r}; choose one of {', '.join(QUERIES)}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if as_of is None:
        as_of = latest_trade_date(warehouse)
        if as_of is None:
            logger.warning("analytics: fact_daily_prices is empty, nothing to report for %s", name)
            return pd.DataFrame()
    else:
        try:
            as_of = date.fromisoformat(as_of).isoformat()
        except ValueError:
            raise ValueError(f"date must be YYYY-MM-DD, got {as_of!r}") from None
    frame = QUERIES[name](warehouse, as_of, limit)
    logger.info("analytics: %s as of %s on %s -> %d rows", name, as_of, warehouse.backend_name, len(frame))
    return frame


def format_table(frame: pd.DataFrame) -> str:
    """Render a result as a plain-text table (floats with 4 decimals), or '(no rows)'."""
    if frame.empty:
        return "(no rows)"
    return frame.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def main(argv: list[str] | None = None) -> int:
    """CLI: print one query's result; 0 on success, 2 on bad arguments or configuration."""
    parser = argparse.ArgumentParser(prog="python -m src.analytics", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="the query to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the queries and exit")
    parser.add_argument("--date", help="trading day YYYY-MM-DD (default: the latest stored)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"rows to show (default {DEFAULT_LIMIT})")
    args = parser.parse_args(argv)

    if args.list or not args.name:
        for name, function in QUERIES.items():
            print(f"{name:<18} {function.__doc__.splitlines()[0].replace('`', '')}")
        return 0 if args.list else 2

    warehouse = None
    try:
        settings = load_settings()
        configure_logging(settings)
        warehouse = open_warehouse(settings)
        frame = run_query(warehouse, args.name, as_of=args.date, limit=args.limit)
    except (ConfigurationError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    finally:
        if warehouse is not None:
            warehouse.close()
    print(f"{args.name} ({settings.warehouse_backend})")
    print(format_table(frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
