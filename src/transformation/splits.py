"""Stock splits: checking split events and back-adjusting as-traded prices to the latest share basis.

Every source serves prices as traded. After a 2-for-1 split the price halves overnight although
nothing happened to the company; an indicator computed across that day sees a 50 % crash. The
warehouse therefore keeps the raw prices AND back-adjusted copies (`adj_open` ... `adj_volume`),
and the indicators are computed from the adjusted ones.

Back-adjustment, to the latest known share basis:

    cumulative_factor(day) = product of split_factor over every split with effective_date > day
    adj_price(day)  = price(day) / cumulative_factor(day)
    adj_volume(day) = volume(day) * cumulative_factor(day)

`split_factor` is new shares per old share: 2.0 for a 2-for-1 split, 0.1 for a 1-for-10 reverse
split. A split's effective date is its first session on the new basis, so that day and every day
after it are not adjusted by it. Days after the last split are unchanged (factor 1.0), so a
symbol without splits has adjusted == as-traded exactly.

Worked example (AAPL, real as-traded closes; splits 2000-06-21 2:1 and 2005-02-28 2:1):
the close of 2000-06-20 (before both splits) is divided by 2 * 2 = 4; the close of 2005-02-25
(before the second only) by 2; the close of 2005-02-28 and later by 1. docs/indicators.md has
the numbers.

Nothing here reads or writes a warehouse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The split events themselves (their columns, and the checks every source's events pass) are
# defined with the sources, in src/ingestion/split_events.py; re-exported here for readers.
from src.ingestion.split_events import SPLIT_COLUMNS, SplitDataError, check_splits, empty_splits

__all__ = ["SPLIT_COLUMNS", "SplitDataError", "check_splits", "empty_splits"]

# as-traded column -> its back-adjusted column in fact_daily_prices.
ADJUSTED_COLUMNS = {
    "open": "adj_open",
    "high": "adj_high",
    "low": "adj_low",
    "close": "adj_close",
    "volume": "adj_volume",
}


def cumulative_factors(trade_dates: pd.Series, symbol_splits: pd.DataFrame) -> np.ndarray:
    """For each day of ONE symbol, the product of the factors of every split after that day.

    Args:
        trade_dates: 'YYYY-MM-DD' dates of one symbol (any order).
        symbol_splits: that symbol's splits (effective_date, split_factor).

    Returns:
        A float64 array aligned with `trade_dates`; 1.0 where no split follows.

    Example:
        >>> splits = pd.DataFrame({"effective_date": ["2000-06-21"], "split_factor": [2.0]})
        >>> cumulative_factors(pd.Series(["2000-06-20", "2000-06-21"]), splits).tolist()
        [2.0, 1.0]
    """
    if symbol_splits.empty:
        return np.ones(len(trade_dates))
    ordered = symbol_splits.sort_values("effective_date")
    effective = ordered["effective_date"].to_numpy(dtype=str)
    # after[i] = product of the factors of splits i, i+1, ..., last (a reverse running product),
    # with a trailing 1.0 for "no split after this day".
    after = np.append(np.cumprod(ordered["split_factor"].to_numpy(dtype="float64")[::-1])[::-1], 1.0)
    # The first split whose effective date is strictly after the day: a split effective ON a day
    # already trades on the new basis that day.
    first_after = np.searchsorted(effective, trade_dates.to_numpy(dtype=str), side="right")
    return after[first_after]


def row_factors(prices: pd.DataFrame, splits: pd.DataFrame | None) -> np.ndarray:
    """`cumulative_factors` for every row of a frame of many symbols (1.0 for symbols without splits).

    Args:
        prices: rows with symbol and trade_date ('YYYY-MM-DD').
        splits: split events (effective_date, split_factor per symbol), or None.

    Returns:
        A float64 array aligned with the rows of `prices`.
    """
    factor = np.ones(len(prices))
    if splits is None or splits.empty or prices.empty:
        return factor
    symbols = prices["symbol"].to_numpy()
    for symbol, symbol_splits in splits.groupby("symbol"):
        rows = symbols == symbol
        if rows.any():
            factor[rows] = cumulative_factors(prices.loc[rows, "trade_date"].astype(str), symbol_splits)
    return factor


def add_adjusted_prices(prices: pd.DataFrame, splits: pd.DataFrame | None) -> pd.DataFrame:
    """Return a copy of the prices with adj_open, adj_high, adj_low, adj_close, adj_volume added.

    Args:
        prices: daily rows of any number of symbols (symbol, trade_date, open, high, low, close,
            volume), as traded.
        splits: split events of those symbols (SPLIT_COLUMNS; others are ignored).

    Returns:
        The prices with the adjusted columns (float64; adj_volume is float because a reverse
        split makes fractional share counts), same row order and index.
    """
    frame = prices.copy()
    factor = row_factors(frame, splits)
    for column, adjusted in ADJUSTED_COLUMNS.items():
        values = frame[column].astype("float64").to_numpy()
        frame[adjusted] = values * factor if column == "volume" else values / factor
    return frame


def yahoo_rows_as_traded(prices: pd.DataFrame, splits: pd.DataFrame | None) -> pd.DataFrame:
    """Undo Yahoo's split adjustment on the rows from the `yahoo` source, so raw stays raw.

    Yahoo has no as-traded series: its Close (even with auto_adjust=False) is already divided
    by every split after the day, and its Volume multiplied. Back-adjusting such rows again
    would divide them twice. Multiplying by the same cumulative factor gives the prices as
    traded; `add_adjusted_prices` then gives the adjusted ones like for every other source.

    Args:
        prices: clean rows of any sources (symbol, trade_date, open..volume, source).
        splits: every known split event of those symbols (SPLIT_COLUMNS), or None.

    Returns:
        The same frame when no Yahoo row has a split after it, else a copy with those rows'
        prices multiplied and volumes divided (rounded to whole shares) by the factor.

    Example:
        AAPL from Yahoo on 2005-02-25 (before the 2005-02-28 2:1 split) closes at 44.495;
        with that split known, the row becomes 88.99, the price it traded at.
    """
    from_yahoo = (prices["source"] == "yahoo").to_numpy() if "source" in prices else np.zeros(len(prices), bool)
    if not from_yahoo.any() or splits is None or splits.empty:
        return prices
    factor = row_factors(prices.loc[from_yahoo], splits)
    if (factor == 1.0).all():
        return prices
    frame = prices.copy()
    for column in ("open", "high", "low", "close"):
        frame.loc[from_yahoo, column] = frame.loc[from_yahoo, column].astype("float64").to_numpy() * factor
    volume = frame.loc[from_yahoo, "volume"].astype("float64").to_numpy() / factor
    frame.loc[from_yahoo, "volume"] = np.rint(volume).astype(frame["volume"].dtype)
    return frame


def adjusted_view(prices: pd.DataFrame) -> pd.DataFrame:
    """The prices with the adjusted values in the plain column names (close = adj_close, ...).

    The indicator and bar functions read open/high/low/close/volume; handing them this view
    makes them compute on the adjusted series without knowing about splits.
    """
    view = prices.copy()
    for column, adjusted in ADJUSTED_COLUMNS.items():
        view[column] = prices[adjusted]
    return view.drop(columns=list(ADJUSTED_COLUMNS.values()))


def new_split_events(incoming: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The incoming split events the warehouse does not know yet (a new date, or a changed factor).

    Args:
        incoming: split events a run received (SPLIT_COLUMNS).
        stored: the split events stored for the same symbols.

    Returns:
        The rows of `incoming` that are new.
    """
    if incoming.empty:
        return incoming
    if stored.empty:
        return incoming.reset_index(drop=True)
    known = stored[["symbol", "effective_date", "split_factor"]].rename(columns={"split_factor": "known_factor"})
    merged = incoming.merge(known, on=["symbol", "effective_date"], how="left")
    is_new = merged["known_factor"].isna() | (merged["known_factor"] != merged["split_factor"])
    return incoming[is_new.to_numpy()].reset_index(drop=True)
