"""The warehouse schema, defined once.

Both warehouses are generated from these definitions: `sqlite_warehouse` turns them into
SQLite DDL and `bigquery_handler` into BigQuery table schemas, and a test checks the
Terraform BigQuery tables against them. To add a column, add it here.

Types are logical; each backend maps them:

| logical   | SQLite                          | BigQuery  |
|-----------|---------------------------------|-----------|
| STRING    | TEXT                            | STRING    |
| DATE      | TEXT, ISO `YYYY-MM-DD`          | DATE      |
| TIMESTAMP | TEXT, ISO 8601 in UTC           | TIMESTAMP |
| FLOAT     | REAL                            | FLOAT64   |
| INTEGER   | INTEGER                         | INT64     |
| BOOLEAN   | INTEGER (0/1)                   | BOOL      |

Table and column names used in SQL come only from here (values always go in as parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One column: name, logical type, whether NULL is allowed, and what it holds."""

    name: str
    type: str
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True)
class Table:
    """One table: its columns, primary key, and (for BigQuery) partitioning and clustering."""

    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    partition_by: str | None = None  # a DATE column; BigQuery partitions by day on it
    cluster_by: tuple[str, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")


LOGICAL_TYPES = ("STRING", "DATE", "TIMESTAMP", "FLOAT", "INTEGER", "BOOLEAN")

# Bookkeeping columns: who wrote a row and when. An upsert whose data columns are unchanged
# leaves them alone, so re-running a date leaves the tables byte-for-byte identical and
# `loaded_at` tells when a value last really changed.
AUDIT_COLUMNS = frozenset({"loaded_at", "run_id", "quarantined_at", "updated_at"})

_OHLCV = (
    Column("open", "FLOAT", description="first traded price of the period, as traded (unadjusted)"),
    Column("high", "FLOAT", description="highest traded price"),
    Column("low", "FLOAT", description="lowest traded price"),
    Column("close", "FLOAT", description="last traded price, as traded (unadjusted)"),
    Column("volume", "INTEGER", description="shares traded"),
)

# Back-adjusted copies of the OHLCV (src/transformation/splits.py): prices divided by, volume
# multiplied by, the product of the factors of every split after the day. Added at the end of
# the tables so an existing warehouse gains them with a plain ALTER TABLE ... ADD COLUMN.
_ADJUSTED_OHLCV = (
    Column("adj_open", "FLOAT", description="open back-adjusted for every later split (latest share basis)"),
    Column("adj_high", "FLOAT", description="high back-adjusted for every later split"),
    Column("adj_low", "FLOAT", description="low back-adjusted for every later split"),
    Column("adj_close", "FLOAT", description="close back-adjusted for every later split"),
    Column(
        "adj_volume",
        "FLOAT",
        description="volume x the factors of every later split (fractional after a reverse split)",
    ),
)

DIM_SYMBOL = Table(
    name="dim_symbol",
    description="One row per ticker symbol the pipeline has loaded.",
    columns=(
        Column("symbol", "STRING", nullable=False, description="ticker, e.g. AAPL"),
        Column("name", "STRING", description="company name, when known"),
        Column("exchange", "STRING", description="listing exchange, e.g. NASDAQ"),
        Column("currency", "STRING", description="price currency, e.g. USD"),
        Column("first_trade_date", "DATE", description="earliest trade_date in fact_daily_prices"),
        Column("last_trade_date", "DATE", description="latest trade_date in fact_daily_prices"),
        Column("source", "STRING", description="source of the latest load (synthetic data says so)"),
        Column("updated_at", "TIMESTAMP", description="when this row was last written (UTC)"),
    ),
    primary_key=("symbol",),
)

DIM_DATE = Table(
    name="dim_date",
    description="Calendar dates with NYSE trading-day flags (from exchange_calendars).",
    columns=(
        Column("trade_date", "DATE", nullable=False),
        Column("year", "INTEGER"),
        Column("quarter", "INTEGER"),
        Column("month", "INTEGER"),
        Column("day", "INTEGER"),
        Column("day_of_week", "INTEGER", description="0 = Monday ... 6 = Sunday"),
        Column("day_name", "STRING"),
        Column("week_of_year", "INTEGER", description="ISO week number"),
        Column("is_trading_day", "BOOLEAN", description="an NYSE session"),
        Column("is_early_close", "BOOLEAN", description="an NYSE session that closes early"),
    ),
    primary_key=("trade_date",),
)

FACT_DAILY_PRICES = Table(
    name="fact_daily_prices",
    description="Validated daily OHLCV bars, one row per symbol and trading day.",
    columns=(
        Column("symbol", "STRING", nullable=False),
        Column("trade_date", "DATE", nullable=False, description="US/Eastern trading day"),
        *_OHLCV,
        Column("source", "STRING", description="alpha_vantage, yahoo, file or synthetic"),
        Column("quality_flags", "STRING", description="validator flags, comma-separated (empty = none)"),
        Column("loaded_at", "TIMESTAMP", description="when the row was written (UTC)"),
        Column("run_id", "STRING", description="pipeline_runs.run_id of the run that wrote it"),
        *_ADJUSTED_OHLCV,
    ),
    primary_key=("symbol", "trade_date"),
    partition_by="trade_date",
    cluster_by=("symbol",),
)

FACT_TECHNICAL_INDICATORS = Table(
    name="fact_technical_indicators",
    description="Technical indicators per symbol and trading day; warm-up rows are NULL.",
    columns=(
        Column("symbol", "STRING", nullable=False),
        Column("trade_date", "DATE", nullable=False),
        Column("sma_20", "FLOAT", description="20-session simple moving average of adj_close"),
        Column("sma_50", "FLOAT", description="50-session simple moving average of adj_close"),
        Column("sma_200", "FLOAT", description="200-session simple moving average of adj_close"),
        Column("rsi_14", "FLOAT", description="Wilder's 14-session RSI (TA-Lib definition)"),
        Column("vwap_20", "FLOAT", description="rolling 20-session VWAP of the adjusted typical price and volume"),
        Column("daily_return", "FLOAT", description="adj_close / previous adj_close - 1"),
        Column("rsi_avg_gain_14", "FLOAT", description="Wilder's running average gain (for incremental RSI)"),
        Column("rsi_avg_loss_14", "FLOAT", description="Wilder's running average loss (for incremental RSI)"),
        Column("loaded_at", "TIMESTAMP"),
        Column("run_id", "STRING"),
    ),
    primary_key=("symbol", "trade_date"),
    partition_by="trade_date",
    cluster_by=("symbol",),
)

_AGG_COLUMNS = (
    Column("symbol", "STRING", nullable=False),
    Column("period_start", "DATE", nullable=False, description="first calendar day of the period"),
    Column("period_end", "DATE", description="last trading day in the period with data"),
    *_OHLCV,
    Column("trading_days", "INTEGER", description="sessions with data in the period"),
    Column("period_return", "FLOAT", description="adj_close / previous period's adj_close - 1"),
    Column("loaded_at", "TIMESTAMP"),
    *_ADJUSTED_OHLCV,
)

AGG_WEEKLY_PRICES = Table(
    name="agg_weekly_prices",
    description="Weekly bars (weeks start on Monday).",
    columns=_AGG_COLUMNS,
    primary_key=("symbol", "period_start"),
    partition_by="period_start",
    cluster_by=("symbol",),
)

AGG_MONTHLY_PRICES = Table(
    name="agg_monthly_prices",
    description="Monthly bars.",
    columns=_AGG_COLUMNS,
    primary_key=("symbol", "period_start"),
    partition_by="period_start",
    cluster_by=("symbol",),
)

QUARANTINE_PRICES = Table(
    name="quarantine_prices",
    description="Rows that failed validation or cleaning, kept with the reason (nothing is dropped silently).",
    columns=(
        Column("symbol", "STRING", nullable=False),
        Column("trade_date", "STRING", nullable=False, description="the date as received ('' if missing)"),
        Column("record_hash", "STRING", nullable=False, description="sha256 of raw_record: keeps reruns idempotent"),
        Column("raw_record", "STRING", description="the rejected row as JSON"),
        Column("reason", "STRING", nullable=False),
        Column("source", "STRING", nullable=False),
        Column("run_id", "STRING"),
        Column("quarantined_at", "TIMESTAMP"),
    ),
    primary_key=("symbol", "trade_date", "source", "reason", "record_hash"),
    cluster_by=("symbol",),
)

FACT_SPLITS = Table(
    name="fact_splits",
    description="Stock split events per symbol (the adjustments table behind the adj_* columns).",
    columns=(
        Column("symbol", "STRING", nullable=False),
        Column("effective_date", "DATE", nullable=False, description="first session on the new share basis"),
        Column("split_factor", "FLOAT", description="new shares per old share: 2.0 for 2-for-1, 0.1 for 1-for-10"),
        Column("source", "STRING", description="alpha_vantage, yahoo or file"),
        Column("loaded_at", "TIMESTAMP", description="when the event was first stored (UTC)"),
    ),
    primary_key=("symbol", "effective_date"),
    cluster_by=("symbol",),
)

PIPELINE_RUNS = Table(
    name="pipeline_runs",
    description="One row per pipeline run (CLI or Airflow): what it did and how it ended.",
    columns=(
        Column("run_id", "STRING", nullable=False),
        Column("logical_date", "DATE", description="the trading day the run is for"),
        Column("started_at", "TIMESTAMP"),
        Column("ended_at", "TIMESTAMP"),
        Column("status", "STRING", description="running, success, partial, failed or interrupted"),
        Column("symbols_requested", "INTEGER"),
        Column("symbols_loaded", "INTEGER"),
        Column("symbols_failed", "INTEGER"),
        Column("failed_symbols", "STRING", description="JSON object: symbol -> reason"),
        Column("rows_loaded", "INTEGER"),
        Column("rows_quarantined", "INTEGER"),
        Column("rows_by_source", "STRING", description="JSON object: source -> rows"),
        Column("duration_seconds", "FLOAT"),
        Column("error", "STRING", description="what went wrong (secrets redacted)"),
        Column(
            "split_recomputes",
            "STRING",
            description="JSON object: symbol -> split dates newly learned, whose history was recomputed",
        ),
    ),
    primary_key=("run_id",),
)

# The columns both warehouses' `read_lookback` return: a stored price row as traded, plus the RSI
# running averages the indicators continue from (stored in fact_technical_indicators). The
# adjusted columns are not read: the load recomputes them from these and the known splits.
ADJUSTED_COLUMN_NAMES = frozenset(column.name for column in _ADJUSTED_OHLCV)
# A stored price row as traded: what `read_history` returns (a full recompute starts from it).
HISTORY_COLUMNS = [
    column.name
    for column in FACT_DAILY_PRICES.columns
    if column.name not in AUDIT_COLUMNS and column.name not in ADJUSTED_COLUMN_NAMES
]
LOOKBACK_COLUMNS = [
    *HISTORY_COLUMNS,
    "rsi_avg_gain_14",
    "rsi_avg_loss_14",
]

# Every table, in the order they are created.
TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        DIM_SYMBOL,
        DIM_DATE,
        FACT_DAILY_PRICES,
        FACT_TECHNICAL_INDICATORS,
        AGG_WEEKLY_PRICES,
        AGG_MONTHLY_PRICES,
        QUARANTINE_PRICES,
        FACT_SPLITS,
        PIPELINE_RUNS,
    )
}

for _table in TABLES.values():
    for _column in _table.columns:
        assert _column.type in LOGICAL_TYPES, f"{_table.name}.{_column.name}: unknown type {_column.type}"
    assert set(_table.primary_key) <= set(_table.column_names), f"{_table.name}: bad primary key"
