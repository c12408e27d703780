"""Split events as the sources report them: their columns and the checks every event passes.

A split event is (symbol, effective_date, split_factor, source): the first session on the new
share basis, and new shares per old share (2.0 for a 2-for-1 split, 0.1 for a 1-for-10 reverse
split). Alpha Vantage (`function=SPLITS`), yfinance (`Ticker.splits`) and the file source
(`<SYMBOL>.splits.csv`) all hand their events through `check_splits`, so a bad event is refused
with one clear message wherever it comes from. What the events do to prices is in
src/transformation/splits.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from src.ingestion.fetch_result import SourceError

# The columns of a split event (fact_splits without its audit column loaded_at).
SPLIT_COLUMNS = ["symbol", "effective_date", "split_factor", "source"]


class SplitDataError(SourceError):
    """Split events that cannot be used: a bad date, a factor that is not a positive number.

    A SourceError, so a source whose split events are bad fails for that symbol with this
    reason (and nothing of the symbol is loaded), like a source whose prices are unreadable.
    """


def empty_splits() -> pd.DataFrame:
    """A split frame with no rows (and the right columns)."""
    return pd.DataFrame({name: pd.Series(dtype="float64" if name == "split_factor" else str) for name in SPLIT_COLUMNS})


def check_splits(splits: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check split events and return them in canonical form, or raise SplitDataError naming the first bad one.

    Args:
        splits: rows with symbol, effective_date (anything pandas reads as a date) and
            split_factor (a number, or text such as "2.0000" as Alpha Vantage sends it); source
            optional.
        where: what the rows came from, for the error message (a file name, "alpha_vantage AAPL").

    Returns:
        SPLIT_COLUMNS: effective_date 'YYYY-MM-DD', split_factor float64, one row per
        (symbol, effective_date), sorted.

    Raises:
        SplitDataError: a missing column, an unreadable date, a factor that is not a number
            above 0, or two different factors on the same day.
    """
    missing = [name for name in ("symbol", "effective_date", "split_factor") if name not in splits.columns]
    if missing:
        raise SplitDataError(f"{where}: split data lacks column(s) {', '.join(missing)}")
    if splits.empty:
        return empty_splits()
    frame = splits.copy()
    dates = pd.to_datetime(frame["effective_date"], format="%Y-%m-%d", errors="coerce")
    factors = pd.to_numeric(frame["split_factor"], errors="coerce")
    for position in range(len(frame)):
        if pd.isna(dates.iloc[position]):
            raise SplitDataError(
                f"{where}: row {position + 1}: effective_date {frame['effective_date'].iloc[position]!r} "
                "is not a YYYY-MM-DD date"
            )
        factor = factors.iloc[position]
        if pd.isna(factor) or not np.isfinite(factor) or factor <= 0:
            raise SplitDataError(
                f"{where}: row {position + 1}: split_factor {frame['split_factor'].iloc[position]!r} "
                "is not a number above 0 (2 for a 2-for-1 split, 0.1 for a 1-for-10 reverse split)"
            )
    frame["effective_date"] = dates.dt.strftime("%Y-%m-%d")
    frame["split_factor"] = factors.astype("float64")
    if "source" not in frame.columns:
        frame["source"] = ""
    frame = frame[SPLIT_COLUMNS].drop_duplicates()
    clashes = frame[frame.duplicated(["symbol", "effective_date"], keep=False)]
    if not clashes.empty:
        first = clashes.iloc[0]
        raise SplitDataError(f"{where}: {first['symbol']} has two different split factors on {first['effective_date']}")
    return frame.sort_values(["symbol", "effective_date"]).reset_index(drop=True)
