"""Gaps, outliers and big moves: the quality flags that need a symbol's history, and cleaning outside frames.

The cleaner never invents or deletes a price. It:

1. flags, at load time and with the stored lookback in view (`add_history_flags`), moves of
   more than 40 % (`large_move`), missing NYSE sessions before a row (`gap_before:<n>`: a gap
   is recorded, never filled, because forward-filling would make up a price nobody traded at)
   and unusual daily returns (`return_outlier`, a rolling z-score); and marks where a hole of
   more than MAX_GAP_SESSIONS starts a new run of sessions (the indicators restart there);
2. lists missing (symbol, day) pairs (`find_missing_sessions`);
3. cleans a frame that did not come through the sources (`clean_prices`): standard column
   names ('Date' -> trade_date, '4. close' -> close, 'Adj Close' -> adj_close, ...), trimmed
   and upper-cased symbols, then the validator's rules.

Flags are appended to `quality_flags` (comma-separated) after the validator's row-local ones.
The rules and flags are documented with examples in docs/data-quality.md.
"""

from __future__ import annotations

import logging
import re

import exchange_calendars
import numpy as np
import pandas as pd

from src.market_calendar import nyse_calendar
from src.transformation.data_validator import VALID_COLUMNS, add_quality_flag, validate_prices
from src.transformation.splits import row_factors

logger = logging.getLogger(__name__)

# Column names after the generic clean-up (lower case, '_' between words, no "1. " prefix)
# that still differ from the canonical name. Everything else keeps its cleaned-up name.
COLUMN_ALIASES = {
    "date": "trade_date",  # yfinance's index, most CSV downloads
    "timestamp": "trade_date",  # Alpha Vantage's CSV downloads
    "datetime": "trade_date",
    "ticker": "symbol",
    # The adjusted close is NOT our close: the pipeline stores prices as traded (unadjusted).
    # It keeps its own name so nobody mistakes it for `close`; later steps ignore it.
    "adjusted_close": "adj_close",  # Alpha Vantage's "5. adjusted close"
}

# Rolling z-score of daily returns: z = (return - mean) / standard deviation, where the mean
# and the deviation come from the symbol's previous RETURN_OUTLIER_WINDOW returns (the day
# itself is left out, so a huge move cannot hide by inflating its own yardstick).
# 60 sessions is about three months: enough returns for a steady estimate, short enough to
# follow a stock whose volatility changes. |z| > 4 is roughly once in 16,000 days if returns
# were normal; real returns have fatter tails, so expect a handful per stock and decade.
# The first RETURN_OUTLIER_WINDOW + 1 rows of a symbol have no z-score and are never flagged.
RETURN_OUTLIER_WINDOW = 60
RETURN_OUTLIER_Z = 4.0

# A close more than 40 % away from the previous close is rare for a large stock: it is usually
# a split (4:1 gives -75 %) or a bad print. We keep the row (it may be real) but flag it.
LARGE_MOVE_THRESHOLD = 0.40

# A move across a known split is the split, not news, when the move adjusted for the split is
# an ordinary day's move: within 20 %. 20 % is wider than almost any large stock's real daily
# move yet narrower than the gap between common factors (a 3:2 split read as 2:1 is 33 % off),
# so a source that reports the wrong factor still gets large_move.
SPLIT_MATCH_TOLERANCE = 0.20

# Flags the validator sets from the row alone; `add_history_flags` keeps them and rebuilds the rest.
ROW_FLAGS = ("non_session_date",)


def standardize_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Rename columns to the canonical lower-case names.

    Each name is stripped, lower-cased, loses an Alpha Vantage style number prefix ("1. "),
    and runs of spaces or punctuation become '_'; then COLUMN_ALIASES applies. E.g.
    'Date' -> 'trade_date', 'Open' -> 'open', ' Close ' -> 'close', '5. volume' -> 'volume',
    'Adj Close' -> 'adj_close', 'Ticker' -> 'symbol', 'Stock Splits' -> 'stock_splits'.

    Args:
        df: any price frame.

    Returns:
        A copy with renamed columns (values untouched).

    Raises:
        ValueError: two columns end up with the same name (e.g. 'Date' and 'trade_date'),
            so we cannot tell which one to trust.

    Example:
        >>> list(standardize_columns(pd.DataFrame(columns=["Date", "Open", "Adj Close"])).columns)
        ['trade_date', 'open', 'adj_close']
    """
    new_names = {}
    for name in df.columns:
        cleaned = re.sub(r"^\d+\.\s*", "", str(name).strip().lower())
        cleaned = re.sub(r"[^a-z0-9]+", "_", cleaned).strip("_")
        new_names[name] = COLUMN_ALIASES.get(cleaned, cleaned)

    seen: dict[str, object] = {}
    for original, new in new_names.items():
        if new in seen:
            raise ValueError(f"columns {seen[new]!r} and {original!r} both mean {new!r}; keep only one of them")
        seen[new] = original
    return df.rename(columns=new_names)


def _sessions(session_calendar: exchange_calendars.ExchangeCalendar | None) -> np.ndarray:
    """The calendar's sessions as a sorted datetime64[ns] array (NYSE when None)."""
    calendar = session_calendar if session_calendar is not None else nyse_calendar()
    return calendar.sessions.values.astype("datetime64[ns]")


def _missing_sessions_before(prices: pd.DataFrame, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, how many sessions are missing between it and the symbol's previous row.

    Args:
        prices: rows sorted by symbol and trade_date ('YYYY-MM-DD').
        sessions: sorted session dates.

    Returns:
        (first_missing, count): first_missing is the position in `sessions` of the first
        missing session (meaningful only where count > 0); count is 0 on a symbol's first row.
    """
    dates = pd.to_datetime(prices["trade_date"], format="%Y-%m-%d").values.astype("datetime64[ns]")
    # Position = number of sessions before the date (left) or up to and including it (right).
    # The sessions strictly between two rows are those from the previous row's "right"
    # position up to this row's "left" position. This also works for non-session dates.
    sessions_before = sessions.searchsorted(dates, side="left")
    sessions_up_to = pd.Series(sessions.searchsorted(dates, side="right"), index=prices.index)
    first_missing = sessions_up_to.groupby(prices["symbol"]).shift(1)
    count = (sessions_before - first_missing).fillna(0).clip(lower=0).astype("int64")
    return first_missing.fillna(0).astype("int64").to_numpy(), count.to_numpy()


def find_missing_sessions(
    df: pd.DataFrame, session_calendar: exchange_calendars.ExchangeCalendar | None = None
) -> pd.DataFrame:
    """List the trading sessions missing inside each symbol's date range.

    Only gaps between a symbol's first and last date count: before its first row it may not
    have been listed yet, and after its last row the data may simply not have arrived.

    Args:
        df: prices with at least symbol and trade_date ('YYYY-MM-DD'), in any order.
        session_calendar: the trading calendar; None means NYSE (XNYS).

    Returns:
        A DataFrame with columns symbol, trade_date ('YYYY-MM-DD'), one row per missing
        session, sorted by symbol and trade_date.

    Example:
        >>> prices = pd.DataFrame({"symbol": ["GOOG", "GOOG"], "trade_date": ["2024-07-02", "2024-07-08"]})
        >>> find_missing_sessions(prices)["trade_date"].tolist()  # 2024-07-04 is a holiday
        ['2024-07-03', '2024-07-05']
    """
    prices = df[["symbol", "trade_date"]].sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    sessions = _sessions(session_calendar)
    first_missing, count = _missing_sessions_before(prices, sessions)

    # Expand each gap into its sessions without a loop: row i contributes count[i] sessions
    # at positions first_missing[i], first_missing[i] + 1, ...
    total = int(count.sum())
    gap_starts = np.repeat(first_missing, count)
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    missing_days = pd.DatetimeIndex(sessions[gap_starts + offsets])
    return pd.DataFrame(
        {
            "symbol": pd.Series(np.repeat(prices["symbol"].to_numpy(), count), dtype=str),
            "trade_date": pd.Series(missing_days.strftime("%Y-%m-%d"), dtype=str),
        }
    )


def _return_outliers(close: pd.Series, segment: pd.Series) -> pd.Series:
    """True where a row's daily return has |rolling z-score| > RETURN_OUTLIER_Z (see the constants).

    Args:
        close: closes grouped by symbol, each symbol sorted by date.
        segment: a number per row; rows of one symbol's run of sessions share it (see
            `add_history_flags`), so no window reaches across a symbol or a long hole.
    """
    returns = close / close.groupby(segment).shift(1) - 1
    # The window for row t holds the returns of rows t-60 .. t-1 (shifted by one row).
    previous_returns = returns.groupby(segment).shift(1)
    rolling = previous_returns.groupby(segment).rolling(RETURN_OUTLIER_WINDOW, min_periods=RETURN_OUTLIER_WINDOW)
    # groupby().rolling() puts the segment in front of the index; drop it to line up again.
    mean = rolling.mean().reset_index(level=0, drop=True).reindex(close.index)
    std = rolling.std().reset_index(level=0, drop=True).reindex(close.index)
    # After a perfectly flat window (std 0, e.g. a halted stock) any move gives an infinite
    # z-score and is flagged; no move gives 0 / 0 = NaN and is not.
    z_score = (returns - mean) / std
    return z_score.abs() > RETURN_OUTLIER_Z


def _split_between(frame: pd.DataFrame, splits: pd.DataFrame | None) -> np.ndarray:
    """Per row: the product of the factors of the symbol's splits after the previous row, up to this row.

    1.0 where no known split falls between a row and the row before it (and on a symbol's first row).
    """
    factor = row_factors(frame, splits)
    same_symbol = frame["symbol"].eq(frame["symbol"].shift()).to_numpy()
    # cumulative factor of the previous row / cumulative factor of this row = the splits in between.
    between = np.where(same_symbol, np.roll(factor, 1) / factor, 1.0)
    return between


def add_history_flags(prices: pd.DataFrame, max_gap_sessions: int, splits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Flag what needs a symbol's earlier rows to see, and mark where each run of sessions starts.

    The load step calls this on the batch's new rows together with the stored lookback of
    their symbols (`warehouse.read_lookback`), so a one-session daily run sees exactly what a
    full load of the whole history sees: every row gets the same flags either way.

    Flags (kept rows, appended to `quality_flags` in this order, after the validator's
    row-local ones such as non_session_date):
    - `large_move`: |close / previous close - 1| > LARGE_MOVE_THRESHOLD, as traded, with no known
      split to explain it (a bad print, real news, or a split the source has not reported yet;
      docs/data-quality.md);
    - `split`: instead of large_move and return_outlier, when a known split falls between the
      previous row and this one and the move adjusted for it is within SPLIT_MATCH_TOLERANCE;
    - `gap_before:<n>`: n NYSE sessions are missing between the row and the symbol's previous row;
    - `return_outlier`: the daily return's rolling z-score is beyond RETURN_OUTLIER_Z (of the
      adjusted close when the rows have adj_close, so a split does not widen the next windows).

    A hole of more than `max_gap_sessions` missing sessions starts a new run of sessions
    (`starts_segment`): the indicators restart their warm-up there, and the row after the hole
    is compared with nothing before it (no large_move, no return_outlier; it keeps its
    `gap_before:<n>`). Shorter holes are bridged: the comparisons reach across them.

    Args:
        prices: rows with symbol, trade_date ('YYYY-MM-DD'), close and quality_flags, sorted by
            symbol and trade_date, one row per (symbol, trade_date).
        max_gap_sessions: the longest hole that is bridged (the MAX_GAP_SESSIONS setting).
        splits: the known split events of these symbols (splits.SPLIT_COLUMNS), or None.

    Returns:
        A copy with `quality_flags` rebuilt and a bool column `starts_segment` (True on each
        symbol's first row and on the first row after a long hole).
    """
    frame = prices.reset_index(drop=True).copy()
    # The row-local flags stay as the validator set them; the history flags are recomputed.
    own_flags = pd.Series("", index=frame.index, dtype=str)
    for flag in ROW_FLAGS:
        own_flags = add_quality_flag(own_flags, frame["quality_flags"].str.contains(flag, regex=False), flag)

    _, gaps = _missing_sessions_before(frame, _sessions(None))
    gaps = pd.Series(gaps, index=frame.index)
    first_of_symbol = frame["symbol"].ne(frame["symbol"].shift())
    starts_segment = first_of_symbol | (gaps > max_gap_sessions)
    segment = starts_segment.cumsum()

    ratio = frame["close"] / frame["close"].groupby(segment).shift(1)
    move = (ratio - 1).abs()
    # ratio x (factor of the splits in between) is the move on one share basis.
    between = _split_between(frame, splits)
    is_split = pd.Series((between != 1.0) & ((ratio * between - 1).abs() <= SPLIT_MATCH_TOLERANCE), index=frame.index)
    flags = add_quality_flag(own_flags, (move > LARGE_MOVE_THRESHOLD) & ~is_split, "large_move")
    flags = add_quality_flag(flags, is_split, "split")
    flags = add_quality_flag(flags, gaps > 0, "gap_before:" + gaps.astype(str))
    returns_of = frame["adj_close"] if "adj_close" in frame.columns else frame["close"]
    flags = add_quality_flag(flags, _return_outliers(returns_of, segment) & ~is_split, "return_outlier")
    frame["quality_flags"] = flags
    frame["starts_segment"] = starts_segment.to_numpy()
    return frame


def clean_prices(
    raw_df: pd.DataFrame, session_calendar: exchange_calendars.ExchangeCalendar | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean a price frame that did not come through the pipeline's sources; return clean and quarantined rows.

    A safety net for frames from elsewhere (your own DataFrame or CSV download): standardise
    column names, trim and upper-case symbols, then apply the validator's rules (types,
    impossible values, duplicates - keeping the last row received; no future date check, that
    needs a run date). The pipeline's transform calls `validate_prices` directly: its sources
    already give canonical columns. No price is changed or deleted; history flags are added at
    load time (`add_history_flags`).

    Args:
        raw_df: prices; column names may be in another style ('Date', 'Open', ...).
        session_calendar: the trading calendar; None means NYSE (XNYS).

    Returns:
        (clean, quarantined).
        clean: columns symbol, trade_date ('YYYY-MM-DD'), open, high, low, close (float64),
        volume (int64), source, quality_flags; sorted by symbol and trade_date, index reset.
        quarantined: same columns as the validator's rejected rows (symbol, trade_date, source,
        raw_record, reason); raw_record holds the row after column standardisation.

    Raises:
        ValueError: two columns standardise to the same name.
    """
    frame = standardize_columns(raw_df)
    if "symbol" in frame.columns:
        # A repair we can make safely: ' aapl ' is AAPL. Missing symbols stay missing.
        frame["symbol"] = frame["symbol"].astype(str).str.strip().str.upper()
    clean, quarantined = validate_prices(frame, session_calendar=session_calendar, check_future_dates=False)
    logger.info("Cleaned %d rows: %d clean, %d quarantined", len(raw_df), len(clean), len(quarantined))
    return clean[VALID_COLUMNS], quarantined
