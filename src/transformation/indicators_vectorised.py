"""The many-symbol indicator engine: every indicator for every symbol in one pass, and incremental runs.

`src/transformation/indicators.py` has the plain one-symbol version of each indicator; read it
first. This module computes the same numbers for a frame of MANY symbols at once, without a
Python loop over symbols or rows, and continues a daily run from the stored history:

- `compute_indicators(prices)`: all indicators over full histories;
- `compute_indicators_incremental(new_prices, history)`: a few new sessions from a short stored
  lookback (`LOOKBACK_ROWS` rows per symbol), equal to a full recomputation.

Why it exists: the pipeline loads hundreds of symbols per batch, and a per-symbol loop of the
plain functions costs a Python round trip (and several small pandas operations) per symbol and
indicator; docs/benchmarks.md has the figures. tests/unit/test_indicators_vectorised.py checks
that this engine gives the plain functions' numbers within 1e-12 on real prices.

How it stays fast AND exact: the rows are sorted by symbol, then date, so each symbol is one
contiguous block of rows. Each `*_by_symbol` function takes a `block_starts` array (from
`symbol_block_starts`) that tells it where each row's symbol begins; every rolling window and
every running average is cut there. So nothing leaks from one symbol into the next, and each
symbol gets the numbers it would get alone.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pandas.api.indexers import BaseIndexer

from src.transformation.indicators import INDICATOR_COLUMNS, RSI_PERIOD, VWAP_WINDOW

logger = logging.getLogger(__name__)

# Stored rows per symbol an incremental run reads: the longest window, sma_200, needs the
# 199 rows before a new row (RSI needs only the last row's stored averages). Reading no
# more than needed keeps the daily run fast on a 20-year warehouse (docs/benchmarks.md).
LOOKBACK_ROWS = 200

# compute_indicators works through big frames in batches of whole symbols of about this many
# rows (see `_indicators_in_batches`).
BATCH_ROWS = 1_000_000

_VALUE_COLUMNS = INDICATOR_COLUMNS[2:]  # the computed ones, after symbol and trade_date
_PRICE_COLUMNS = ["symbol", "trade_date", "high", "low", "close", "volume"]
_HISTORY_COLUMNS = [*_PRICE_COLUMNS, "rsi_avg_gain_14", "rsi_avg_loss_14"]
# An optional bool column: True where a run of sessions starts after a long hole
# (`cleaner.add_history_flags`). Every indicator restarts its warm-up there, as at a new symbol.
SEGMENT_COLUMN = "starts_segment"


# --- Symbol blocks: what lets one pass over the array serve many symbols --------------------


def symbol_block_starts(symbols: pd.Series) -> np.ndarray:
    """For every row, the position of the first row of its symbol.

    The rows must be grouped by symbol (a symbol's rows next to each other, sorted by date).

    Args:
        symbols: the symbol of each row.

    Returns:
        An int64 array as long as `symbols`.

    Example:
        >>> symbol_block_starts(pd.Series(["A", "A", "A", "B", "B"])).tolist()
        [0, 0, 0, 3, 3]
    """
    # A block starts where the symbol differs from the row above (the first row always does).
    return _carry_block_starts(symbols.ne(symbols.shift()).to_numpy(dtype=bool))


def _carry_block_starts(is_start: np.ndarray) -> np.ndarray:
    """For every row, the position of the last row at or above it where `is_start` is True."""
    positions = np.arange(len(is_start), dtype=np.int64)
    # Carry each start position down over the rows of its block: a running maximum of
    # "my position if I start a block, else 0".
    return np.maximum.accumulate(np.where(is_start, positions, 0))


def _row_block_starts(frame: pd.DataFrame) -> np.ndarray:
    """Block starts of a sorted frame: a new symbol, or a new run of sessions (SEGMENT_COLUMN)."""
    is_start = frame["symbol"].ne(frame["symbol"].shift()).to_numpy(dtype=bool)
    if SEGMENT_COLUMN in frame.columns:
        is_start = is_start | frame[SEGMENT_COLUMN].fillna(False).to_numpy(dtype=bool)
    return _carry_block_starts(is_start)


def _columns_of(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """`columns`, plus SEGMENT_COLUMN when the frame has it."""
    return [*columns, SEGMENT_COLUMN] if SEGMENT_COLUMN in frame.columns else columns


def _blocks_or_one(block_starts: np.ndarray | None, length: int) -> np.ndarray:
    """`block_starts` as given, or "one symbol": every row's block starts at row 0."""
    if block_starts is None:
        return np.zeros(length, dtype=np.int64)
    if len(block_starts) != length:
        raise ValueError(f"block_starts has {len(block_starts)} rows, the values have {length}")
    return block_starts


def _rows_into_block(block_starts: np.ndarray) -> np.ndarray:
    """How far each row is into its symbol's block (0 on the symbol's first row)."""
    return np.arange(len(block_starts), dtype=np.int64) - block_starts


class _SymbolWindows(BaseIndexer):
    """Rolling windows of `window_size` rows that never reach back into the previous symbol.

    pandas asks a window indexer for every row's window as [start, end) positions. A plain
    `rolling(20)` uses start = row - 19; this one also clips start at the row's block start
    (pass `block_starts=` when creating it). pandas restarts its running sum whenever a window
    shares no row with the previous one - which is the case at every symbol's first row - so a
    symbol's result never depends on the rows of the symbol before it.
    """

    def get_window_bounds(self, num_values=0, min_periods=None, center=None, closed=None, step=None):
        end = np.arange(1, num_values + 1, dtype=np.int64)
        start = np.maximum(end - self.window_size, self.block_starts)
        return start, end


def _rolling(values: pd.Series | pd.DataFrame, window: int, block_starts: np.ndarray):
    """`values.rolling(window)` cut at symbol boundaries: NaN until a symbol has `window` rows."""
    return values.rolling(_SymbolWindows(window_size=window, block_starts=block_starts), min_periods=window)


# --- Each indicator, cut at symbol boundaries -----------------------------------------------


def sma_by_symbol(close: pd.Series, window: int, block_starts: np.ndarray | None = None) -> pd.Series:
    """`indicators.sma` for many symbols in one Series, the window cut at each symbol's first row.

    Args:
        close: closes grouped by symbol, each symbol sorted by date.
        window: number of sessions, e.g. 20, 50 or 200.
        block_starts: `symbol_block_starts(symbols)`; None means one symbol.

    Returns:
        A float Series aligned with `close`; the first `window - 1` rows of each symbol are NaN.
    """
    block_starts = _blocks_or_one(block_starts, len(close))
    return _rolling(close.astype("float64"), window, block_starts).mean()


def rsi_by_symbol(
    close: pd.Series,
    period: int = RSI_PERIOD,
    block_starts: np.ndarray | None = None,
    prior_avg_gain: pd.Series | None = None,
    prior_avg_loss: pd.Series | None = None,
) -> pd.DataFrame:
    """`indicators.rsi_wilder` for many symbols at once, optionally continuing from stored averages.

    The formula, seed and warm-up are those of `indicators.rsi_wilder` (TA-Lib's RSI); here they
    are computed with array operations for every symbol at once: the seed of every symbol
    (the simple mean of its first `period` moves) in one fancy-indexing step, then one
    grouped ewm for the running averages (see `_wilder_smoothing`).

    Args:
        close: closes grouped by symbol, each symbol sorted by date.
        period: the smoothing period, 14 by default.
        block_starts: `symbol_block_starts(symbols)`; None means one symbol.
        prior_avg_gain, prior_avg_loss: optional Series aligned with `close`, NaN except on the
            row to continue from (at most one per symbol), which holds that row's stored running
            averages. For such a symbol the rows before it are only context (their output is
            NaN); the averages carry on from the stored values. Other symbols start from scratch.

    Returns:
        DataFrame aligned with `close`: rsi_<period>, rsi_avg_gain_<period>, rsi_avg_loss_<period>.
    """
    values = close.to_numpy(dtype="float64")
    block_starts = _blocks_or_one(block_starts, len(values))
    rows_into_block = _rows_into_block(block_starts)

    change = np.diff(values, prepend=np.nan)
    change[rows_into_block == 0] = np.nan  # a symbol's first row has no previous close
    # Gains in column 0, losses in column 1. Fortran order keeps each column in one piece of
    # memory, which is how pandas stores a DataFrame's columns (no copy when smoothing).
    moves = np.empty((len(values), 2), order="F")
    np.maximum(change, 0.0, out=moves[:, 0])
    np.maximum(-change, 0.0, out=moves[:, 1])

    # Wilder's seed, on row `period` of every symbol long enough: the simple mean of the moves
    # on rows 1..period. `window` holds, for each seed row, the positions of those rows, so
    # moves[window] is a (symbols x period x 2) block and its mean over axis 1 is the seeds.
    start_rows = np.flatnonzero(rows_into_block == period)
    window = start_rows[:, None] - np.arange(period)[None, :]
    start_values = moves[window].mean(axis=1)

    if prior_avg_gain is not None and prior_avg_loss is not None:
        # Stored averages replace the seed: a symbol that has them starts on the stored row.
        stored = np.column_stack([prior_avg_gain.to_numpy("float64"), prior_avg_loss.to_numpy("float64")])
        stored_rows = np.flatnonzero(~np.isnan(stored).any(axis=1))
        seeded_anyway = np.isin(block_starts[start_rows], block_starts[stored_rows])
        start_rows = np.concatenate([start_rows[~seeded_anyway], stored_rows])
        start_values = np.concatenate([start_values[~seeded_anyway], stored[stored_rows]])

    # The series to smooth (built in place in `moves`, which is not needed any more): NaN
    # before the start row, the start value on it, the daily moves after it. "After it" = the
    # last start row seen so far (a running maximum) is in this row's own symbol block.
    is_start_row = np.zeros(len(values), dtype=bool)
    is_start_row[start_rows] = True
    last_start_row = np.maximum.accumulate(np.where(is_start_row, np.arange(len(values)), -1))
    to_smooth = moves
    to_smooth[last_start_row < block_starts] = np.nan
    to_smooth[start_rows] = start_values

    avg_gain, avg_loss = _wilder_smoothing(to_smooth, block_starts, period).T

    total = avg_gain + avg_loss
    with np.errstate(divide="ignore", invalid="ignore"):
        # TA-Lib computes 100 * (gain / total) and returns 0 when total is exactly 0 (a flat line).
        rsi = np.where(total == 0, 0.0, 100.0 * (avg_gain / total))
    return pd.DataFrame(
        {f"rsi_{period}": rsi, f"rsi_avg_gain_{period}": avg_gain, f"rsi_avg_loss_{period}": avg_loss},
        index=close.index,
    )


def _wilder_smoothing(to_smooth: np.ndarray, block_starts: np.ndarray, period: int) -> np.ndarray:
    """Wilder's running average avg_t = ((period - 1) * avg_{t-1} + x_t) / period, per symbol.

    `to_smooth` has one column per series to smooth (here: gains and losses). Each column is
    NaN before each symbol's start row and holds the start value on it.

    Why pandas ewm gives exactly this recursion: ewm(alpha=a, adjust=False) computes
        y_t = (1 - a) * y_{t-1} + a * x_t, starting from y = the first non-NaN x.
    With a = 1/period that is y_t = ((period - 1) * y_{t-1} + x_t) / period, and the first
    non-NaN x is the start value; the NaN rows before it stay NaN (the warm-up).

    The recursion must restart for every symbol, so we group the rows by their block start
    (one value per symbol) and let `groupby(...).ewm` smooth each group on its own. The rows
    are already grouped by symbol, so `sort=False` keeps them in their order and the result
    lines up with the input row for row.
    """
    if len(to_smooth) == 0:
        return to_smooth.copy()
    smoothed = pd.DataFrame(to_smooth).groupby(block_starts, sort=False).ewm(alpha=1.0 / period, adjust=False)
    return smoothed.mean().to_numpy()


def vwap_by_symbol(
    high: pd.Series,
    low: pd.Series,
    close: pd.Series,
    volume: pd.Series,
    window: int = VWAP_WINDOW,
    block_starts: np.ndarray | None = None,
) -> pd.Series:
    """`indicators.vwap_rolling` for many symbols in one frame, the window cut at each symbol's first row.

    Returns:
        A float Series aligned with `close`; NaN in each symbol's warm-up and where the
        window's volume is zero.
    """
    block_starts = _blocks_or_one(block_starts, len(close))
    shares = volume.to_numpy(dtype="float64")
    typical_price = ((high + low + close) / 3.0).to_numpy(dtype="float64")
    sums = _rolling(
        pd.DataFrame({"price_x_volume": typical_price * shares, "volume": shares}), window, block_starts
    ).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = sums["price_x_volume"].to_numpy() / sums["volume"].to_numpy()
    return pd.Series(vwap, index=close.index)


def daily_return_by_symbol(close: pd.Series, block_starts: np.ndarray | None = None) -> pd.Series:
    """`indicators.daily_return` for many symbols: NaN on each symbol's first row.

    Args:
        close: closes grouped by symbol, each symbol sorted by date.
        block_starts: `symbol_block_starts(symbols)`; None means one symbol.
    """
    values = close.to_numpy(dtype="float64")
    block_starts = _blocks_or_one(block_starts, len(values))
    returns = np.full(len(values), np.nan)
    returns[1:] = values[1:] / values[:-1] - 1.0
    returns[_rows_into_block(block_starts) == 0] = np.nan  # a symbol's first row
    return pd.Series(returns, index=close.index)


# --- Many symbols at once --------------------------------------------------------------------


def _check_columns(frame: pd.DataFrame, required: list[str], name: str) -> None:
    """Raise a clear error for a missing column or unvalidated (text) prices."""
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; it has {list(frame.columns)}")
    for column in ("high", "low", "close", "volume"):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise TypeError(
                f"{name}.{column} has dtype {frame[column].dtype}: indicators need validated "
                "(numeric) prices, run the validator first"
            )


def sort_by_symbol_and_date(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by symbol, then trade_date, indexed 0..n-1 (also used by the aggregator).

    Args:
        frame: any frame with symbol and trade_date columns (ISO date strings sort correctly).

    Returns:
        A sorted copy; an already sorted frame (the usual case) is not sorted again.

    Raises:
        ValueError: a (symbol, trade_date) appears twice (it would count twice in every window).
    """
    symbol, day = frame["symbol"], frame["trade_date"]
    # fill_value="" keeps the first row comparable for plain object columns too (str > None fails).
    previous_symbol, previous_day = symbol.shift(fill_value=""), day.shift(fill_value="")
    same_symbol = symbol.eq(previous_symbol)
    in_order = symbol.gt(previous_symbol) | (same_symbol & day.gt(previous_day))
    if in_order.iloc[1:].all():
        # Already sorted and without duplicates (the usual case): skip the costly sort.
        return frame.reset_index(drop=True)

    frame = frame.sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True)
    symbol, day = frame["symbol"], frame["trade_date"]
    duplicated = symbol.eq(symbol.shift()) & day.eq(day.shift())
    if duplicated.any():
        first = frame.loc[duplicated.idxmax(), ["symbol", "trade_date"]].tolist()
        raise ValueError(f"duplicate rows for (symbol, trade_date) = {tuple(first)}: deduplicate first")
    return frame


def _indicators_of_batch(batch: pd.DataFrame) -> list[pd.Series]:
    """Every indicator for whole symbols sorted by symbol and trade_date (index 0..n-1).

    Optional columns prior_avg_gain / prior_avg_loss carry stored RSI averages to continue from.

    Returns:
        One Series per column of _VALUE_COLUMNS, in that order.
    """
    blocks = _row_block_starts(batch)
    close = batch["close"]
    rsi = rsi_by_symbol(close, RSI_PERIOD, blocks, batch.get("prior_avg_gain"), batch.get("prior_avg_loss"))
    return [
        sma_by_symbol(close, 20, blocks),
        sma_by_symbol(close, 50, blocks),
        sma_by_symbol(close, 200, blocks),
        rsi["rsi_14"],
        vwap_by_symbol(batch["high"], batch["low"], close, batch["volume"], VWAP_WINDOW, blocks),
        daily_return_by_symbol(close, blocks),
        rsi["rsi_avg_gain_14"],
        rsi["rsi_avg_loss_14"],
    ]


def _indicators_in_batches(frame: pd.DataFrame, symbol_starts: np.ndarray) -> pd.DataFrame:
    """Every indicator for a sorted frame, computed in batches of whole symbols.

    Why batches: 25 M rows at once would need several GB of temporary arrays. Batches of
    about BATCH_ROWS rows keep them near 100 MB, and are faster too: the memory of one batch
    is reused for the next instead of being requested fresh from the operating system.
    A batch never splits a symbol, so batching changes no number.

    Args:
        frame: sorted by symbol and trade_date, index 0..n-1.
        symbol_starts: the position of every symbol's first row (ascending).

    Returns:
        The indicator frame (columns INDICATOR_COLUMNS), row for row like `frame`.
    """
    # Cut at the first symbol start at or after every multiple of BATCH_ROWS.
    wanted = np.searchsorted(symbol_starts, np.arange(BATCH_ROWS, len(frame), BATCH_ROWS))
    cuts = np.unique(symbol_starts[wanted[wanted < len(symbol_starts)]])
    edges = [0, *cuts[cuts > 0].tolist(), len(frame)]

    # Every batch writes its rows straight into one preallocated array (column by column in
    # memory, order="F"), which becomes the result without another copy.
    values = np.empty((len(frame), len(_VALUE_COLUMNS)), order="F")
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        batch = frame.iloc[start:end].reset_index(drop=True)
        for number, column in enumerate(_indicators_of_batch(batch)):
            values[start:end, number] = column.to_numpy()

    result = pd.DataFrame(values, columns=_VALUE_COLUMNS, copy=False)
    result.insert(0, "symbol", frame["symbol"])
    result.insert(1, "trade_date", frame["trade_date"])
    return result


def _symbol_starts(frame: pd.DataFrame) -> np.ndarray:
    """Positions of the first row of every symbol in a frame sorted by symbol."""
    return np.flatnonzero(frame["symbol"].ne(frame["symbol"].shift()).to_numpy(dtype=bool))


def compute_indicators(prices: pd.DataFrame) -> pd.DataFrame:
    """Compute every indicator for a frame of many symbols (over their full histories).

    Args:
        prices: validated canonical prices: symbol, trade_date, open, high, low, close (float),
            volume (int); optionally SEGMENT_COLUMN (restart every indicator there); other
            columns are ignored. Any row order; one row per (symbol, trade_date).

    Returns:
        DataFrame sorted by symbol and trade_date with exactly the columns symbol, trade_date,
        sma_20, sma_50, sma_200, rsi_14, vwap_20, daily_return, rsi_avg_gain_14,
        rsi_avg_loss_14. Warm-up values are NaN (NULL in the warehouse).

    Raises:
        ValueError: a column is missing, or a (symbol, trade_date) appears twice.
        TypeError: a price column is not numeric (the frame was not validated).
    """
    _check_columns(prices, _PRICE_COLUMNS, "prices")
    frame = sort_by_symbol_and_date(prices[_columns_of(prices, _PRICE_COLUMNS)])
    symbol_starts = _symbol_starts(frame)
    result = _indicators_in_batches(frame, symbol_starts)
    logger.info("computed indicators: %d rows, %d symbols", len(result), len(symbol_starts))
    return result


def compute_indicators_incremental(new_prices: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Compute the indicators of a few new sessions from a short stored lookback.

    The result equals a full recomputation over the whole history (tested to 1e-9), but the
    work depends only on the new rows and at most `LOOKBACK_ROWS` rows per symbol:
    - SMA, VWAP and daily return look back 199 rows at most, and the lookback holds them;
    - RSI depends on ALL earlier rows, but only through its two running averages, so it
      continues from the averages stored on the last history row. When those are NULL (a
      symbol with fewer than 15 stored rows) the history given IS the whole history, and RSI
      is recomputed from it - still exact.

    Args:
        new_prices: validated prices to compute indicators for (one or many symbols), the same
            columns as for `compute_indicators`.
        history: what the warehouse returns for the lookback: per symbol the last
            `LOOKBACK_ROWS` stored rows before the new data, with columns symbol, trade_date,
            open, high, low, close, volume, rsi_avg_gain_14, rsi_avg_loss_14 (NULL allowed).
            Rows on or after a symbol's first new trade_date are dropped (a rerun overlaps
            what is stored), and only each symbol's last `LOOKBACK_ROWS` rows are used.

    Returns:
        The columns of `compute_indicators`, one row per row of `new_prices`, sorted by symbol
        and trade_date.

    Raises:
        ValueError / TypeError: as `compute_indicators`.
    """
    _check_columns(new_prices, _PRICE_COLUMNS, "new_prices")
    _check_columns(history, _HISTORY_COLUMNS, "history")
    new = new_prices[_columns_of(new_prices, _PRICE_COLUMNS)].assign(is_new=True)

    # History rows strictly before the symbol's first new date (a symbol without new rows maps
    # to NaN and drops out), then only the last LOOKBACK_ROWS of each symbol.
    first_new_date = history["symbol"].map(new.groupby("symbol")["trade_date"].min())
    history = history[history["trade_date"] < first_new_date]
    history = history.sort_values(["symbol", "trade_date"], kind="stable")
    history = history.groupby("symbol", sort=False).tail(LOOKBACK_ROWS)

    # RSI continues from the averages stored on each symbol's LAST history row only.
    is_last_row = history["symbol"].ne(history["symbol"].shift(-1))
    old = history[_columns_of(history, _PRICE_COLUMNS)].assign(
        is_new=False,
        prior_avg_gain=history["rsi_avg_gain_14"].astype("float64").where(is_last_row),
        prior_avg_loss=history["rsi_avg_loss_14"].astype("float64").where(is_last_row),
    )
    # A database may return text as object columns; use the new rows' types for the result.
    old = old.astype({"symbol": new["symbol"].dtype, "trade_date": new["trade_date"].dtype})
    _warn_if_rsi_restarts(old[is_last_row], history["symbol"].value_counts())

    frame = sort_by_symbol_and_date(pd.concat([old, new], ignore_index=True))
    symbol_starts = _symbol_starts(frame)
    result = _indicators_in_batches(frame, symbol_starts)
    result = result[frame["is_new"].to_numpy(dtype=bool)].reset_index(drop=True)
    logger.info(
        "computed indicators incrementally: %d new rows, %d symbols, from %d lookback rows",
        len(result),
        len(symbol_starts),
        len(old),
    )
    return result


def _warn_if_rsi_restarts(last_rows: pd.DataFrame, rows_per_symbol: pd.Series) -> None:
    """Warn when a full lookback comes without stored RSI averages.

    Then the lookback is probably NOT the whole history (its indicators were never stored),
    and RSI restarts from the lookback: after 200 rows of smoothing it is about 4e-6 off,
    but it is no longer an exact continuation.
    """
    no_averages = last_rows["prior_avg_gain"].isna() | last_rows["prior_avg_loss"].isna()
    restarted = [symbol for symbol in last_rows.loc[no_averages, "symbol"] if rows_per_symbol[symbol] >= LOOKBACK_ROWS]
    if restarted:
        logger.warning(
            "%d symbols have %d history rows but no stored RSI averages on the last one, so RSI "
            "restarts from the lookback (close, not exact): %s",
            len(restarted),
            LOOKBACK_ROWS,
            restarted,
        )
