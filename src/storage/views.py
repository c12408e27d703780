"""The warehouse's three views, written once in SQL that SQLite and BigQuery both run.

| view                  | one row per            | what it answers                                   |
|-----------------------|------------------------|---------------------------------------------------|
| `v_latest_signals`    | symbol                 | the latest session's RSI, SMA-cross, VWAP signals (adjusted) |
| `v_daily_returns`     | symbol and trade date  | adjusted close-to-close return over the previous session |
| `v_data_completeness` | symbol                 | expected vs stored NYSE sessions                  |

Table names are `{placeholders}`: `render_view` fills them with the bare names for SQLite and
with `` `project.dataset.table` `` for BigQuery. Everything else is the same text for both:
named windows, `NULLIF`, `COALESCE` and a bare boolean column (`d.is_trading_day`, 0/1 in SQLite)
mean the same in both dialects. docs/warehouse.md documents the columns; a test checks them on
both warehouses.

Example:
    >>> print(render_view("v_daily_returns", lambda name: name))  # doctest: +ELLIPSIS
    SELECT ...
"""

from __future__ import annotations

from collections.abc import Callable

from src.storage.schema import TABLES

# Each symbol's latest session with its signals. One window per symbol in date order gives
# the previous session's SMAs (LAG: did the 50-day SMA cross the 200-day SMA on the latest
# session?) and the next session's date (LEAD: the latest session is the one without a next).
# In SQLite a single window in primary-key order needs no sort, and `WHERE symbol = ?` on the
# view is pushed down into it, so one symbol's signals read only that symbol's rows.
LATEST_SIGNALS_SQL = """
WITH ordered AS (
    SELECT
        p.symbol,
        p.trade_date,
        p.close,
        -- The indicators are on the adjusted basis, so the close they are compared with is too
        -- (a row written before the adjusted columns existed has NULL there: it had no split).
        COALESCE(p.adj_close, p.close) AS adj_close,
        i.rsi_14,
        i.sma_50,
        i.sma_200,
        i.vwap_20,
        LAG(i.sma_50) OVER by_date AS previous_sma_50,
        LAG(i.sma_200) OVER by_date AS previous_sma_200,
        LEAD(p.trade_date) OVER by_date AS next_trade_date
    FROM {fact_daily_prices} AS p
    LEFT JOIN {fact_technical_indicators} AS i
        ON i.symbol = p.symbol AND i.trade_date = p.trade_date
    WINDOW by_date AS (PARTITION BY p.symbol ORDER BY p.trade_date)
)
SELECT
    symbol,
    trade_date,
    close,
    adj_close,
    rsi_14,
    CASE
        WHEN rsi_14 > 70 THEN 'overbought'
        WHEN rsi_14 < 30 THEN 'oversold'
        WHEN rsi_14 IS NOT NULL THEN 'neutral'
    END AS rsi_signal,
    sma_50,
    sma_200,
    CASE
        WHEN previous_sma_50 <= previous_sma_200 AND sma_50 > sma_200 THEN 'golden_cross'
        WHEN previous_sma_50 >= previous_sma_200 AND sma_50 < sma_200 THEN 'death_cross'
    END AS cross_signal,
    vwap_20,
    CASE
        WHEN adj_close >= vwap_20 THEN 'above'
        WHEN adj_close < vwap_20 THEN 'below'
    END AS close_vs_vwap,
    100.0 * (adj_close - vwap_20) / NULLIF(vwap_20, 0) AS pct_from_vwap
FROM ordered
WHERE next_trade_date IS NULL
"""

# Close-to-close return over the symbol's previous stored session (NULL on its first row),
# on the adjusted closes: a split day is not a crash.
DAILY_RETURNS_SQL = """
SELECT
    symbol,
    trade_date,
    close,
    COALESCE(adj_close, close) AS adj_close,
    COALESCE(adj_close, close)
        / NULLIF(LAG(COALESCE(adj_close, close)) OVER (PARTITION BY symbol ORDER BY trade_date), 0) - 1
        AS daily_return
FROM {fact_daily_prices}
"""

# Per symbol: NYSE sessions (from dim_date) between its first and last stored date, and how
# many of them have a row. Needs dim_date to cover the range (`ensure_dim_date`).
DATA_COMPLETENESS_SQL = """
WITH stored AS (
    SELECT symbol, MIN(trade_date) AS first_date, MAX(trade_date) AS last_date
    FROM {fact_daily_prices}
    GROUP BY symbol
),
expected AS (
    SELECT s.symbol, COUNT(*) AS sessions_expected
    FROM stored AS s
    JOIN {dim_date} AS d
        ON d.trade_date BETWEEN s.first_date AND s.last_date AND d.is_trading_day
    GROUP BY s.symbol
),
present AS (
    SELECT p.symbol, COUNT(*) AS sessions_present
    FROM {fact_daily_prices} AS p
    JOIN {dim_date} AS d
        ON d.trade_date = p.trade_date AND d.is_trading_day
    GROUP BY p.symbol
)
SELECT
    s.symbol,
    s.first_date,
    s.last_date,
    COALESCE(e.sessions_expected, 0) AS sessions_expected,
    COALESCE(p.sessions_present, 0) AS sessions_present,
    COALESCE(e.sessions_expected, 0) - COALESCE(p.sessions_present, 0) AS sessions_missing,
    ROUND(100.0 * COALESCE(p.sessions_present, 0) / NULLIF(e.sessions_expected, 0), 2) AS completeness_pct
FROM stored AS s
LEFT JOIN expected AS e ON e.symbol = s.symbol
LEFT JOIN present AS p ON p.symbol = s.symbol
"""

VIEWS = {
    "v_latest_signals": LATEST_SIGNALS_SQL,
    "v_daily_returns": DAILY_RETURNS_SQL,
    "v_data_completeness": DATA_COMPLETENESS_SQL,
}

# The output columns of each view, in order (docs/warehouse.md documents them).
VIEW_COLUMNS = {
    "v_latest_signals": (
        "symbol",
        "trade_date",
        "close",
        "adj_close",
        "rsi_14",
        "rsi_signal",
        "sma_50",
        "sma_200",
        "cross_signal",
        "vwap_20",
        "close_vs_vwap",
        "pct_from_vwap",
    ),
    "v_daily_returns": ("symbol", "trade_date", "close", "adj_close", "daily_return"),
    "v_data_completeness": (
        "symbol",
        "first_date",
        "last_date",
        "sessions_expected",
        "sessions_present",
        "sessions_missing",
        "completeness_pct",
    ),
}


def render_view(name: str, table_name: Callable[[str], str]) -> str:
    """The SELECT of one view with its table names filled in for a dialect.

    Args:
        name: a key of VIEWS.
        table_name: turns a table name into how the dialect writes it, e.g. `lambda name: name`
            for SQLite, or a function giving `` `project.dataset.name` `` for BigQuery.

    Returns:
        The SELECT statement (without CREATE VIEW).
    """
    return VIEWS[name].format(**{table: table_name(table) for table in TABLES})
