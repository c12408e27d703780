"""The `file` source: daily prices from `<SYMBOL>.csv` files in a folder.

For offline runs (the local stack's demo data) and for users who import their own history.
Each file holds one symbol with the header `date,open,high,low,close,volume` and one row per
trading day, dates as 'YYYY-MM-DD' (US/Eastern trading days), e.g.:

    date,open,high,low,close,volume
    2013-02-25,201.67,202.49,197.51,197.51,3844800

Values are read as text (`dtype=str`), exactly like Alpha Vantage's strings: the validator
decides what is a valid number, so a bad cell is quarantined there, with a reason, instead of
being silently converted here.

A folder written by `python -m src.local_stack.synthetic_data` contains a `SYNTHETIC.txt`
note: its rows are labelled source "synthetic" (not "file"), so nobody mistakes them for
market prices in the warehouse.

Example:
    >>> from datetime import date
    >>> result = fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 3, 1), Path("data/offline-real"))
    >>> len(result.prices)
    5
"""

from __future__ import annotations

import io
import logging
import os
import stat
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow

from src.ingestion.fetch_result import PRICE_FRAME_COLUMNS, FetchResult, NoDataError, SourceError
from src.ingestion.split_events import check_splits, empty_splits
from src.ingestion.symbols import normalize_symbol
from src.market_calendar import utc_now_iso

logger = logging.getLogger(__name__)

SOURCE_NAME = "file"
# A folder holding this file is synthetic demo data (see src/local_stack/synthetic_data.py).
SYNTHETIC_NOTE_FILE = "SYNTHETIC.txt"
SYNTHETIC_SOURCE_NAME = "synthetic"
FILE_COLUMNS = ["date", "open", "high", "low", "close", "volume"]


class FileFormatError(SourceError):
    """The CSV file does not have exactly the expected columns. The message names them."""


def price_file_path(symbol: str, data_dir: Path) -> Path:
    """Return `<data_dir>/<SYMBOL>.csv` for a symbol that passes validation.

    The file name is built only from a validated symbol (letters, digits, '.' and '-', starting
    with a letter), so input like '../secrets' can never point outside `data_dir`.

    Raises:
        InvalidSymbolInputError: the symbol is not a valid ticker.

    Example:
        >>> price_file_path(" ibm ", Path("data/offline"))
        PosixPath('data/offline/IBM.csv')
    """
    return Path(data_dir) / f"{normalize_symbol(symbol)}.csv"


def read_price_file(path: Path) -> tuple[str, pd.DataFrame]:
    """Read one price CSV as text and check its columns.

    Args:
        path: the CSV file.

    Returns:
        (text, frame): the file's text as it is, and its rows with the columns date, open,
        high, low, close, volume, where every value is the cell's text ("" for an empty cell).

    Raises:
        NoDataError: the file does not exist.
        FileFormatError: a folder, a FIFO or another non-regular file (refused at once, never
            waited on); not readable as a CSV; or columns are missing or unexpected (names
            are compared after trimming spaces and lower-casing, so "Date, Open" is fine).
    """
    text = _read_regular_file(path)
    return text, parse_price_csv(text, str(path))


def _file_kind(mode: int) -> str:
    """Name the kind of a non-regular file for error messages ("a FIFO", "a socket", ...)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def _read_regular_file(path: Path) -> str:
    """Return the text of `path` if it is a regular file; refuse anything else without blocking.

    The file is opened with O_NONBLOCK and checked on the open descriptor (not by name, which
    could change in between): opening a FIFO that nobody writes to would otherwise wait forever,
    and a folder named `<SYMBOL>.csv` would raise IsADirectoryError, a crash instead of a reason.

    Raises:
        NoDataError: the file does not exist.
        FileFormatError: a folder or another non-regular file, unreadable, or not UTF-8 text.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NoDataError(f"no price file {path}", source=SOURCE_NAME) from None
    except OSError as exc:
        raise FileFormatError(f"cannot open the price file {path}: {exc.strerror}", source=SOURCE_NAME) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            raise FileFormatError(f"{path} is a directory, not a price file; remove or rename it", source=SOURCE_NAME)
        raise FileFormatError(
            f"{path} is not a regular file ({_file_kind(mode)}); refusing to read it: "
            "put a plain <SYMBOL>.csv file there",
            source=SOURCE_NAME,
        )
    # Text mode with universal newlines, exactly like Path.read_text.
    with os.fdopen(descriptor, "r", encoding="utf-8") as handle:
        try:
            return handle.read()
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{path} is not a readable CSV file: {exc}", source=SOURCE_NAME) from exc
        except OSError as exc:
            raise FileFormatError(f"cannot read the price file {path}: {exc.strerror}", source=SOURCE_NAME) from None


def parse_price_csv(text: str, name: str) -> pd.DataFrame:
    """Parse the text of one price CSV (see `read_price_file`); `name` is used in error messages.

    Raises:
        FileFormatError: not a CSV, or not exactly the expected columns.
    """
    if not text.strip():
        raise FileFormatError(f"{name} is not a readable CSV file: it is empty", source=SOURCE_NAME)
    try:
        # Every cell stays the exact text of the file: no number parsing, and no NA guessing
        # (pandas would turn "n/a", "NA" or "null" into NaN). Empty cells stay "".
        # engine="pyarrow" parses the same way as pandas' default engine, about twice as fast,
        # which matters when a backfill reads thousands of 20-year files.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, engine="pyarrow")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pyarrow.ArrowInvalid) as exc:
        raise FileFormatError(f"{name} is not a readable CSV file: {exc}", source=SOURCE_NAME) from exc
    frame.columns = [str(column).strip().lower() for column in frame.columns]
    missing = [column for column in FILE_COLUMNS if column not in frame.columns]
    extra = [column for column in frame.columns if column not in FILE_COLUMNS]
    if missing or extra:
        raise FileFormatError(
            f"{name} has the wrong columns (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(extra) or 'none'}); expected exactly {','.join(FILE_COLUMNS)}",
            source=SOURCE_NAME,
        )
    return frame[FILE_COLUMNS]


def fetch_file_prices(symbol: str, start: date, end: date, data_dir: Path) -> FetchResult:
    """Read one symbol's daily prices from `<data_dir>/<SYMBOL>.csv`, keeping start..end.

    Args:
        symbol: the ticker, e.g. "IBM" (validated with `normalize_symbol` before any file use).
        start: first trading day wanted (inclusive).
        end: last trading day wanted (inclusive).
        data_dir: the folder with the CSV files (settings.file_source_dir).

    Returns:
        A FetchResult with source "file". `prices` holds the rows from start to end, oldest
        first, values as the strings in the file; its source column says "synthetic" when
        the folder holds the SYNTHETIC.txt note. `raw_payload` is the CSV text of the selected
        rows (header included), so it stays as small as the date range; when every row of
        the file is selected it is the file's own text.

    Raises:
        InvalidSymbolInputError: the symbol is not a valid ticker (no file was opened).
        NoDataError: no file for the symbol, or no rows between start and end.
        FileFormatError: the file does not have exactly the expected columns.
    """
    path = price_file_path(symbol, data_dir)  # checks the symbol before any file is opened
    symbol = path.stem
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    wanted = f"{symbol} {start}..{end}"

    try:
        file_text, frame = read_price_file(path)
    except SourceError as exc:
        exc.symbol = symbol
        logger.warning("%s %s: %s", SOURCE_NAME, wanted, exc.reason)
        raise
    fetched_at = utc_now_iso()

    # Dates that are not 'YYYY-MM-DD' cannot be placed in the range. They are not dropped:
    # they are passed on as received, and the validator quarantines them as invalid_date.
    dates = pd.to_datetime(frame["date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        bad = frame.loc[dates.isna(), "date"].head(3).tolist()
        logger.warning(
            "%s %s: %d row(s) have a date that is not YYYY-MM-DD, e.g. %s; passing them on to be quarantined",
            SOURCE_NAME,
            wanted,
            int(dates.isna().sum()),
            bad,
        )
    selected = frame[dates.between(pd.Timestamp(start), pd.Timestamp(end)) | dates.isna()].copy()
    valid_dates = dates[selected.index].notna()
    selected.loc[valid_dates, "date"] = dates[selected.index][valid_dates].dt.strftime("%Y-%m-%d")
    selected = selected.sort_values("date", kind="stable")
    if selected.empty:
        reason = f"no rows between {start} and {end} in {path}"
        logger.warning("%s %s: %s", SOURCE_NAME, wanted, reason)
        raise NoDataError(reason, symbol=symbol, source=SOURCE_NAME)

    # The raw reply is the CSV text of the selected rows. When every row is selected (a
    # backfill) that is the file itself, so there is nothing to re-serialise.
    raw_text = file_text if len(selected) == len(frame) else selected.to_csv(index=False)

    synthetic = (Path(data_dir) / SYNTHETIC_NOTE_FILE).is_file()
    prices = selected.rename(columns={"date": "trade_date"}).reset_index(drop=True)
    prices.insert(0, "symbol", symbol)
    prices["source"] = SYNTHETIC_SOURCE_NAME if synthetic else SOURCE_NAME
    prices = prices[PRICE_FRAME_COLUMNS]

    logger.info(
        "%s %s: %d rows (%s..%s) from %s%s",
        SOURCE_NAME,
        wanted,
        len(prices),
        prices["trade_date"].iloc[0],
        prices["trade_date"].iloc[-1],
        path,
        " (synthetic demo data)" if synthetic else "",
    )
    return FetchResult(
        symbol=symbol,
        source=SOURCE_NAME,
        prices=prices,
        raw_payload=raw_text,
        request_params={"file": path.name, "start": start.isoformat(), "end": end.isoformat()},
        fetched_at=fetched_at,
    )


# --- Split events: an optional <SYMBOL>.splits.csv beside <SYMBOL>.csv ------------------------

SPLITS_FILE_COLUMNS = ["effective_date", "split_factor"]


def splits_file_path(symbol: str, data_dir: Path) -> Path:
    """Return `<data_dir>/<SYMBOL>.splits.csv` for a symbol that passes validation.

    Example:
        >>> splits_file_path("aapl", Path("data/offline-real"))
        PosixPath('data/offline-real/AAPL.splits.csv')
    """
    return Path(data_dir) / f"{normalize_symbol(symbol)}.splits.csv"


def read_splits_file(symbol: str, data_dir: Path) -> pd.DataFrame:
    """Read one symbol's split events from `<SYMBOL>.splits.csv`, header `effective_date,split_factor`.

    The file is optional: no file means the symbol has no splits. A file that is there must be
    right in full, or the symbol fails with a message naming the file and the first bad row (a
    half-read list of splits would adjust the history wrongly).

    Args:
        symbol: the ticker (validated before any file use).
        data_dir: the folder with the CSV files (settings.file_source_dir).

    Returns:
        SPLIT_COLUMNS (split_events.py), source "file"; empty when there is no file.

    Raises:
        FileFormatError: the file is not a CSV with exactly the two columns.
        SplitDataError: a date is not YYYY-MM-DD, or a factor is not a number above 0.
    """
    path = splits_file_path(symbol, data_dir)
    symbol = normalize_symbol(symbol)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return empty_splits()
    except (UnicodeDecodeError, OSError) as exc:
        raise FileFormatError(
            f"{path} is not a readable splits file: {exc}", symbol=symbol, source=SOURCE_NAME
        ) from exc
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FileFormatError(f"{path} is not a readable CSV file: {exc}", symbol=symbol, source=SOURCE_NAME) from exc
    frame.columns = [str(column).strip().lower() for column in frame.columns]
    if sorted(frame.columns) != sorted(SPLITS_FILE_COLUMNS):
        raise FileFormatError(
            f"{path} has the columns {','.join(frame.columns) or 'none'}; expected exactly "
            f"{','.join(SPLITS_FILE_COLUMNS)}",
            symbol=symbol,
            source=SOURCE_NAME,
        )
    frame = frame.apply(lambda column: column.str.strip())
    splits = check_splits(frame.assign(symbol=symbol, source=SOURCE_NAME), str(path))
    logger.info("%s %s: %d split event(s) from %s", SOURCE_NAME, symbol, len(splits), path)
    return splits
