"""The rows every warehouse table gets for one batch: prices, indicators, weekly and monthly bars.

This is the computing half of the load step (`steps.load_batch` does the reading and writing).
It needs what the warehouse already holds for the batch's symbols, `stored`:

- per symbol, the last `indicators_vectorised.LOOKBACK_ROWS` stored sessions before the first new date, with the RSI
  running averages of the last of them (the indicators continue from there), and
- every stored row on or after the first new date (a backfill into the middle of a history
  changes the indicators of the rows after it).

From that it computes the quality flags that look back (`cleaner.add_history_flags`), the
indicators of the new rows (and of the stored rows after them) incrementally, so the cost does
not grow with the length of the history and the result equals a full recomputation, and the
weekly and monthly bars of every period the new rows touch.
Nothing here reads or writes a warehouse: the same function serves SQLite and BigQuery.

Example:
    >>> stored = warehouse.read_lookback(["AAPL"], before="2024-07-01", rows=200)
    >>> frames = build_warehouse_rows(clean, quarantine, stored, run_id="cli-1", loaded_at=utc_now_iso())
    >>> sorted(frames)
    ['agg_monthly_prices', 'agg_weekly_prices', 'fact_daily_prices', 'fact_technical_indicators']
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from src.transformation.aggregator import aggregate_prices, period_start
from src.transformation.cleaner import add_history_flags
from src.transformation.data_validator import VALID_COLUMNS
from src.transformation.indicators_vectorised import compute_indicators_incremental, sort_by_symbol_and_date
from src.transformation.splits import ADJUSTED_COLUMNS, add_adjusted_prices, adjusted_view

# The columns of a price row: what the validator keeps (as traded).
PRICE_COLUMNS = VALID_COLUMNS
# What fact_daily_prices stores of a row: the as-traded columns and their back-adjusted copies.
STORED_PRICE_COLUMNS = [*PRICE_COLUMNS, *ADJUSTED_COLUMNS.values()]
# Aggregates are recomputed from this many days before the first new date, so the previous
# week's and month's close (for period_return) is in the frame. The stored lookback always
# covers it: its 200 sessions span far more than 62 days.
AGGREGATE_LOOKBACK_DAYS = 62
# What decides a price row: its values and where they came from. Its quality flags, indicators
# and weekly/monthly bars all follow from these and from the stored rows before it.
COMPARED_COLUMNS = ["open", "high", "low", "close", "volume", "source"]


def _combine(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Stored rows plus new rows, where a new row replaces a stored row of the same symbol and date."""
    if stored.empty:
        # The usual backfill case: nothing to merge. `new` comes from the cleaner, already
        # sorted with one row per (symbol, trade_date), which this checks without re-sorting.
        return sort_by_symbol_and_date(new[PRICE_COLUMNS])
    combined = pd.concat([stored[PRICE_COLUMNS], new[PRICE_COLUMNS]], ignore_index=True)
    combined = combined.drop_duplicates(["symbol", "trade_date"], keep="last")
    return combined.sort_values(["symbol", "trade_date"]).reset_index(drop=True)


def unchanged_symbols(clean: pd.DataFrame, stored: pd.DataFrame) -> set[str]:
    """The symbols whose every clean row is already stored with the same prices and source.

    Loading such a symbol again would compute and write exactly what is stored: its flags,
    indicators and bars follow from its prices and the rows before them, which are stored
    and unchanged too. So a rerun of an unchanged range can skip it (doing less, not doing
    it cleverly): the usual rerun then writes nothing, and rows keep the audit columns
    (run_id, loaded_at) of the run that last changed them, as the upsert does for an
    unchanged row anyway. A symbol with any new or different row is loaded as usual.

    Args:
        clean: the batch's clean prices.
        stored: `warehouse.read_lookback(...)` for the batch (rows on or after the first new date included).

    Returns:
        The symbols to skip (empty when nothing is stored).
    """
    if clean.empty or stored.empty:
        return set()
    keys = ["symbol", "trade_date"]
    compared = clean[keys + COMPARED_COLUMNS].merge(
        stored[keys + COMPARED_COLUMNS], on=keys, how="left", suffixes=("", "_stored")
    )
    same = pd.Series(True, index=compared.index)
    for name in COMPARED_COLUMNS:
        # A row that is not stored has NaN there and compares unequal.
        same &= (compared[name] == compared[f"{name}_stored"]).fillna(False).astype(bool)
    all_same = same.groupby(compared["symbol"]).all()
    return set(all_same.index[all_same.to_numpy()])


def build_warehouse_rows(
    clean: pd.DataFrame,
    quarantine: pd.DataFrame,
    stored: pd.DataFrame,
    run_id: str,
    loaded_at: str,
    max_gap_sessions: int,
    splits: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute every table's rows for one batch of clean prices (without writing anything).

    Args:
        clean: clean prices from `transform.transform_prices` (one or many symbols).
        quarantine: quarantined rows from `transform.transform_prices`.
        stored: what `warehouse.read_lookback(symbols, before=<first new date>, rows=LOOKBACK_ROWS)`
            returns (see the module docstring); empty for a first load.
        run_id: the run writing these rows.
        loaded_at: ISO-8601 UTC timestamp stamped on the rows.
        max_gap_sessions: holes longer than this restart the indicators (MAX_GAP_SESSIONS).
        splits: every known split event of these symbols (stored and new; splits.SPLIT_COLUMNS),
            or None for none. The adjusted columns of every row, stored or new, are computed
            from them, and the indicators and bars from the adjusted columns. The stored RSI
            averages are on the basis of the splits known when they were written, so a caller
            that learns a new split recomputes the symbol in full (stored empty, clean = the
            whole history; see steps.load_prices).

    Returns:
        table name -> DataFrame, ready for `warehouse.load_batch`.
    """
    frames: dict[str, pd.DataFrame] = {}
    if not quarantine.empty:
        frames["quarantine_prices"] = quarantine.assign(run_id=run_id, quarantined_at=loaded_at)
    if clean.empty:
        return frames

    first_new = str(clean["trade_date"].min())
    # The flags that look back (large_move, gap_before, return_outlier) are computed over the
    # stored lookback and the new rows together, so a one-session run flags exactly what a
    # full load would. The stored rows from `first_new` on are recomputed too: a new row before
    # them changes what they compare with.
    combined = add_adjusted_prices(_combine(stored, clean), splits)
    flagged = add_history_flags(combined, max_gap_sessions, splits)
    is_history = (flagged["trade_date"] < first_new).to_numpy()
    rsi_state = stored[["symbol", "trade_date", "rsi_avg_gain_14", "rsi_avg_loss_14"]] if len(stored) else None
    history = flagged[is_history]
    history = (
        history.merge(rsi_state, on=["symbol", "trade_date"], how="left")
        if rsi_state is not None
        else history.assign(rsi_avg_gain_14=float("nan"), rsi_avg_loss_14=float("nan"))
    )
    to_write = flagged[~is_history].reset_index(drop=True)

    # Indicators of the new rows and of the stored rows after them, continued from the lookback.
    # ... on the adjusted prices: a split is not a crash.
    indicators = compute_indicators_incremental(adjusted_view(to_write), adjusted_view(history))

    # Aggregates: recompute every period the new rows touch, from enough earlier rows.
    aggregate_start = (date.fromisoformat(first_new) - timedelta(days=AGGREGATE_LOOKBACK_DAYS)).isoformat()
    window = flagged[flagged["trade_date"] >= aggregate_start]
    # Keep only periods that contain a new row; earlier ones were only context for period_return.
    first_new_date = pd.Series([first_new])
    bars = {}
    for period in ("weekly", "monthly"):
        first_period = period_start(first_new_date, period).dt.strftime("%Y-%m-%d").iloc[0]
        aggregated = aggregate_prices(window, period)
        bars[period] = aggregated[aggregated["period_start"] >= first_period]

    frames["fact_daily_prices"] = to_write[STORED_PRICE_COLUMNS].assign(loaded_at=loaded_at, run_id=run_id)
    frames["fact_technical_indicators"] = indicators.assign(loaded_at=loaded_at, run_id=run_id)
    frames["agg_weekly_prices"] = bars["weekly"].assign(loaded_at=loaded_at)
    frames["agg_monthly_prices"] = bars["monthly"].assign(loaded_at=loaded_at)
    return frames


def build_recomputed_rows(
    history: pd.DataFrame,
    clean: pd.DataFrame,
    run_id: str,
    loaded_at: str,
    max_gap_sessions: int,
    splits: pd.DataFrame | None,
) -> dict[str, pd.DataFrame]:
    """Every table's rows for symbols recomputed in full: their whole stored history plus the new rows.

    Used when a run learns of a split it did not know: every earlier row of the symbol changes
    share basis, so its adjusted columns, flags, indicators and bars are rebuilt from the
    as-traded history exactly as a first full load that knew the split would build them.

    Args:
        history: `warehouse.read_history(symbols)`: every stored row of the symbols, as traded.
        clean: the run's new clean rows of the same symbols (they replace stored rows of the
            same date).
        run_id, loaded_at, max_gap_sessions: as for `build_warehouse_rows`.
        splits: every known split event of the symbols, the new ones included.

    Returns:
        table name -> DataFrame (no quarantine: the caller's incremental call writes that).
    """
    everything = _combine(history, clean) if len(history) else clean
    no_quarantine = pd.DataFrame()
    no_stored = pd.DataFrame(columns=["symbol", "trade_date"])
    return build_warehouse_rows(everything, no_quarantine, no_stored, run_id, loaded_at, max_gap_sessions, splits)
