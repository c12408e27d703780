"""Validate normalised prices: convert the values, reject bad rows with a reason, flag odd ones.

Every source hands over the same "normalised prices" frame (symbol, trade_date, open, high,
low, close, volume, source), but with values as the source gave them: Alpha Vantage and CSV
files give strings ("187.15", "N/A", ""), yfinance gives floats. `validate_prices` turns that
into typed rows we can trust, and puts every row it cannot trust aside with a machine-readable
reason. Nothing is dropped silently: each input row ends up in exactly one of the two outputs.

The rules, reason codes and flags are documented with examples in docs/data-quality.md.

Example:
    >>> raw = pd.DataFrame({"symbol": ["AAPL", "AAPL"], "trade_date": ["2024-07-05", "2024-07-08"],
    ...     "open": ["221.65", "227.09"], "high": ["226.45", "227.85"], "low": ["221.65", "223.25"],
    ...     "close": ["226.34", "N/A"], "volume": ["60412408", "67221"], "source": "alpha_vantage"})
    >>> valid, rejected = validate_prices(raw, run_date="2024-07-08")
    >>> valid["close"].tolist(), rejected["reason"].tolist()
    ([226.34], ['non_numeric:close'])
"""

from __future__ import annotations

import json
import logging
import math
from datetime import date, datetime

import exchange_calendars
import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute

from src.ingestion.symbols import SYMBOL_PATTERN
from src.market_calendar import CALENDAR_FIRST_DAY, CALENDAR_LAST_DAY, NEW_YORK_TZ, new_york_today, nyse_calendar

logger = logging.getLogger(__name__)

# The canonical "normalised prices" columns, in order. Other columns are ignored.
REQUIRED_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
VALID_COLUMNS = [*REQUIRED_COLUMNS, "quality_flags"]
REJECTED_COLUMNS = ["symbol", "trade_date", "source", "raw_record", "reason"]

# More shares than this in one day is not a real print: the busiest US stocks trade a few
# billion shares a day (e.g. AAPL's 2000-era record before splits was ~1.9e9 split-adjusted),
# so 1e12 leaves a margin of several hundred times and still catches garbage such as a
# timestamp or a notional value in the volume field. It also keeps volume inside int64.
MAX_DAILY_VOLUME = 1e12

# Reasons in one string are joined with ';', flags with ','.
REASON_SEPARATOR = ";"
FLAG_SEPARATOR = ","


def append_code(codes: pd.Series, mask: pd.Series, code: str | pd.Series, separator: str) -> pd.Series:
    """Append `code` to the rows of `codes` where `mask` is True.

    Used for both the `reason` of rejected rows (separator ';') and `quality_flags` (','),
    so the order of the codes is always the order in which the checks run.

    Args:
        codes: strings, '' where a row has no code yet.
        mask: booleans on the same index: which rows get the code.
        code: e.g. "large_move"; or a Series of codes on the same index, one per row
            (e.g. "gap_before:3").
        separator: put between codes.

    Returns:
        A new Series; e.g. "" -> "large_move" and "non_session_date" -> "non_session_date,large_move".
    """
    codes = codes.copy()
    if not mask.any():
        return codes
    current = codes[mask]
    new = code[mask] if isinstance(code, pd.Series) else code
    codes[mask] = (current + separator + new).where(current != "", new)
    return codes


def add_quality_flag(flags: pd.Series, mask: pd.Series, flag: str | pd.Series) -> pd.Series:
    """Append `flag` to the comma-separated `quality_flags` of the rows where `mask` is True."""
    return append_code(flags, mask, flag, FLAG_SEPARATOR)


def resolve_run_date(run_date: date | str | None) -> date:
    """Return the run date as a `date`; None means today in New York.

    Args:
        run_date: a date, a datetime (its date is used), 'YYYY-MM-DD', or None.
    """
    if run_date is None:
        return new_york_today()
    if isinstance(run_date, datetime):
        return run_date.date()
    if isinstance(run_date, date):
        return run_date
    return date.fromisoformat(run_date)


def parse_trade_dates(values: pd.Series) -> pd.Series:
    """Parse trade dates into midnight timestamps; NaT where a value is not a date.

    Accepted: strings 'YYYY-MM-DD' (surrounding spaces are ignored; '2024-7-5' is read as
    2024-07-05), and datetime columns (a timezone-aware one, e.g. yfinance's index, is first
    converted to New York time, so the date is the trading day). Anything else is NaT: e.g.
    '07/05/2024', '2024-02-30', '2024-07', 'N/A'.

    Args:
        values: the trade_date column as received.

    Returns:
        A datetime64 Series on the same index, time of day set to midnight.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert(NEW_YORK_TZ).dt.tz_localize(None)
        return values.dt.normalize()
    text = values.astype(str).str.strip()
    # An explicit format is strict (no guessing between day and month) and fast; pandas also
    # caches the parsing of repeated values, and a price frame has few distinct dates.
    return pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")


def format_dates(dates: pd.Series) -> pd.Series:
    """Format datetimes (no NaT) as 'YYYY-MM-DD' strings, on the same index.

    Each distinct date is formatted once and then repeated: millions of price rows share a
    few thousand dates, so this is several times faster than formatting every row.
    """
    codes, distinct = pd.factorize(dates)
    labels = np.asarray(distinct.strftime("%Y-%m-%d"), dtype=object)
    return pd.Series(labels[codes], index=dates.index, dtype=str)


def _is_blank(values: pd.Series) -> pd.Series:
    """True where a value is missing: None, NaN or a blank string."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values.isna()
    return values.isna() | (values.astype(str).str.strip() == "")


def _parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Convert a column of prices or volumes to float64.

    Returns:
        (numbers, missing, non_numeric): numbers is NaN wherever the value is unusable;
        missing marks None/NaN/blank values; non_numeric marks values that are there but are
        not a finite number (e.g. "N/A", "-", "1,234", "nan", inf).
    """
    missing = _is_blank(values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:
        numbers = _text_to_float(values.astype(str).str.strip())
    non_numeric = ~missing & ~np.isfinite(numbers)
    numbers = numbers.where(~missing & ~non_numeric)
    return numbers, missing, non_numeric


def _text_to_float(text: pd.Series) -> pd.Series:
    """Parse a column of number strings to float64; NaN where a cell is not a number.

    pyarrow's cast parses the whole column in C++, several times faster than pd.to_numeric
    (it matters on a backfill of millions of rows). It refuses the whole column when any cell
    is not a number, and then pd.to_numeric sorts the cells out one by one. Both read the
    same strings the same way; they differ only on spellings of nan/inf, which count as
    non-numeric either way.
    """
    try:
        parsed = pyarrow.compute.cast(pyarrow.array(text), pyarrow.float64())
    except pyarrow.ArrowInvalid:
        return pd.to_numeric(text, errors="coerce").astype("float64")
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


def _invalid_symbols(symbols: pd.Series) -> pd.Series:
    """True where a present symbol is not a valid, already normalised ticker (see symbols.py).

    The pattern is checked once per distinct symbol, not once per row: a frame of millions of
    rows has only a few thousand symbols.
    """
    distinct = symbols.dropna().astype(str).unique()
    bad = [symbol for symbol in distinct if not SYMBOL_PATTERN.fullmatch(symbol)]
    return symbols.notna() & symbols.astype(str).isin(bad)


def _text_as_received(frame: pd.DataFrame, column: str) -> pd.Series:
    """The column as strings, '' where it is missing (or the whole column is absent)."""
    if column not in frame.columns:
        return pd.Series("", index=frame.index, dtype=str)
    values = frame[column]
    return values.astype(str).where(values.notna(), "")


def _json_value(value: object) -> object:
    """One value of a rejected row, made JSON-friendly but otherwise as received."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return str(value)  # JSON has no infinity; "inf" / "-inf" keeps what was received
        return value
    if isinstance(value, (str, int, bool)):
        return value
    return str(value)  # e.g. a Timestamp or a date


def _rejected_rows(frame: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """Build the rejected-rows frame for the rows of `frame` whose reason is not ''."""
    rejected = frame[reasons != ""]
    # A Python loop, but only over the rejected rows, which are rare: raw_record is the row
    # exactly as received, so it can be inspected (and replayed) from the quarantine table.
    raw_records = [
        json.dumps({str(key): _json_value(value) for key, value in record.items()})
        for record in rejected.to_dict(orient="records")
    ]
    result = pd.DataFrame(
        {
            "symbol": _text_as_received(rejected, "symbol"),
            "trade_date": _text_as_received(rejected, "trade_date"),
            "source": _text_as_received(rejected, "source"),
            "raw_record": pd.Series(raw_records, index=rejected.index, dtype=str),
            "reason": reasons[reasons != ""].astype(str),
        },
        columns=REJECTED_COLUMNS,
    )
    return result.reset_index(drop=True)


def _empty_valid_frame() -> pd.DataFrame:
    """A valid-rows frame with no rows but the right columns and types."""
    types = {"open": "float64", "high": "float64", "low": "float64", "close": "float64", "volume": "int64"}
    return pd.DataFrame({column: pd.Series(dtype=types.get(column, str)) for column in VALID_COLUMNS})


def _find_reasons(frame: pd.DataFrame, latest_date: pd.Timestamp | None) -> tuple[pd.DataFrame, pd.Series]:
    """Run the row checks; return the converted values and one reason string per row ('' = ok).

    Checks run in the canonical column order (symbol, trade_date, open, high, low, close,
    volume, source), then the checks across columns, then duplicates; a row's reason lists
    every problem found, in that order, joined by ';'.

    Args:
        frame: the input rows (index 0..n-1) with every required column.
        latest_date: rows dated after it are future_date; None skips that check.
    """
    problems: list[tuple[str, pd.Series]] = []  # (reason code, rows that have the problem)

    symbol_missing = _is_blank(frame["symbol"])
    problems.append(("missing_value:symbol", symbol_missing))
    problems.append(("invalid_symbol", ~symbol_missing & _invalid_symbols(frame["symbol"])))

    dates = parse_trade_dates(frame["trade_date"])
    date_missing = _is_blank(frame["trade_date"])
    problems.append(("missing_value:trade_date", date_missing))
    problems.append(("invalid_date", ~date_missing & dates.isna()))
    # The warehouse's calendar (dim_date, the session flags) covers only this span: a row
    # outside it could be stored but never joined to a day, so it is rejected here, before
    # anything is written (a 1969 row once committed its batch and then stopped the run).
    outside = (dates < pd.Timestamp(CALENDAR_FIRST_DAY)) | (dates > pd.Timestamp(CALENDAR_LAST_DAY))
    problems.append(("date_out_of_range", outside))
    if latest_date is not None:
        problems.append(("future_date", dates > latest_date))

    converted = pd.DataFrame(index=frame.index)
    for column in PRICE_COLUMNS:
        numbers, missing, non_numeric = _parse_numbers(frame[column])
        problems.append((f"missing_value:{column}", missing))
        problems.append((f"non_numeric:{column}", non_numeric))
        problems.append((f"non_positive_price:{column}", numbers <= 0))
        converted[column] = numbers.where(numbers > 0)  # NaN: unusable for the checks below

    volume, missing, non_numeric = _parse_numbers(frame["volume"])
    problems.append(("missing_value:volume", missing))
    problems.append(("non_numeric:volume", non_numeric))
    problems.append(("negative_volume", volume < 0))
    # Volume counts shares, so it is a whole number in an as-traded series; 1234.5 means the
    # source sent something else (e.g. split-adjusted volumes). Rounding it would hide that.
    problems.append(("fractional_volume", volume % 1 > 0))
    problems.append(("absurd_volume", volume > MAX_DAILY_VOLUME))
    converted["volume"] = volume

    problems.append(("missing_value:source", _is_blank(frame["source"])))

    # Comparisons with NaN are False, so these only fire when all the prices involved are usable
    # (present, numeric and positive): a row with a broken price gets that reason, not three.
    # high < low is implied by the two checks after it (one of them fails too), but it gets
    # its own code because it says directly that high and low are swapped or broken.
    high, low = converted["high"], converted["low"]
    problems.append(("high_below_low", high < low))
    problems.append(("high_below_open_close", high < converted[["open", "close"]].max(axis=1, skipna=False)))
    problems.append(("low_above_open_close", low > converted[["open", "close"]].min(axis=1, skipna=False)))

    reasons = pd.Series("", index=frame.index, dtype=str)
    for code, mask in problems:
        reasons = append_code(reasons, mask, code, REASON_SEPARATOR)

    # Duplicates: among the rows that passed every other check, keep the LAST one received for
    # a (symbol, trade_date) - a source that repeats a day sends its correction last - and
    # reject the earlier ones. Broken rows take no part, so a good row is never rejected as
    # the duplicate of a broken one.
    passed = reasons == ""
    keys = pd.DataFrame({"symbol": frame["symbol"].astype(str), "trade_date": dates})[passed]
    duplicated = keys.duplicated(keep="last").reindex(frame.index, fill_value=False)
    reasons = append_code(reasons, duplicated, "duplicate_date", REASON_SEPARATOR)

    converted["trade_date"] = dates
    return converted, reasons


def validate_prices(
    df: pd.DataFrame,
    run_date: date | str | None = None,
    *,
    session_calendar: exchange_calendars.ExchangeCalendar | None = None,
    check_future_dates: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check normalised prices; return the rows that pass (typed, flagged) and the rejected rows.

    Rejected (reason codes, in the order they are checked; all problems of a row are listed,
    joined by ';'): missing_column:<name> (then every row is rejected), missing_value:symbol,
    invalid_symbol, missing_value:trade_date, invalid_date, date_out_of_range (before
    CALENDAR_FIRST_DAY or after CALENDAR_LAST_DAY, 1970..2040), future_date, for each of open/high/
    low/close missing_value:<col>, non_numeric:<col>, non_positive_price:<col>, then
    missing_value:volume, non_numeric:volume, negative_volume, fractional_volume, absurd_volume,
    missing_value:source, high_below_low, high_below_open_close, low_above_open_close,
    duplicate_date (the last row received for a symbol and day is kept).

    Flagged but kept (`quality_flags`, comma-separated, '' when none): non_session_date (not an
    NYSE session: weekend or holiday). The flags that compare a row with the symbol's earlier
    rows (large_move, gap_before, return_outlier) are added at load time, where the stored
    history is in view (`cleaner.add_history_flags`).

    Args:
        df: normalised prices, values as received (strings, floats, None or NaN). Columns
            other than the canonical ones are ignored (they appear only in raw_record).
        run_date: rows dated after it are rejected as future_date. None means today in New York.
        session_calendar: the trading calendar for non_session_date; None means NYSE (XNYS).
        check_future_dates: False skips the future_date check (the cleaner re-validates rows
            that already passed it, without knowing the run date).

    Returns:
        (valid, rejected).
        valid: columns symbol, trade_date ('YYYY-MM-DD'), open, high, low, close (float64),
        volume (int64), source, quality_flags; sorted by symbol and trade_date, index reset.
        rejected: columns symbol, trade_date and source (as received, '' if missing),
        raw_record (the row as JSON, values as received, NaN -> null) and reason; input order.
        len(valid) + len(rejected) == len(df).
    """
    frame = df.reset_index(drop=True)

    missing_columns = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing_columns:
        reason = REASON_SEPARATOR.join(f"missing_column:{column}" for column in missing_columns)
        logger.error("Rejecting all %d rows: required column(s) missing: %s", len(frame), ", ".join(missing_columns))
        return _empty_valid_frame(), _rejected_rows(frame, pd.Series(reason, index=frame.index, dtype=str))

    latest_date = pd.Timestamp(resolve_run_date(run_date)) if check_future_dates else None
    converted, reasons = _find_reasons(frame, latest_date)

    passed = reasons == ""
    valid = pd.DataFrame(
        {
            "symbol": frame.loc[passed, "symbol"].astype(str),
            "trade_date": converted.loc[passed, "trade_date"],
            **{column: converted.loc[passed, column] for column in PRICE_COLUMNS},
            "volume": converted.loc[passed, "volume"].astype("int64"),
            "source": frame.loc[passed, "source"].astype(str),
        }
    )
    valid = valid.sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True)

    calendar = session_calendar if session_calendar is not None else nyse_calendar()
    flags = pd.Series("", index=valid.index, dtype=str)
    flags = add_quality_flag(flags, ~valid["trade_date"].isin(calendar.sessions), "non_session_date")
    valid["trade_date"] = format_dates(valid["trade_date"])
    valid["quality_flags"] = flags

    rejected = _rejected_rows(frame, reasons)
    _log_summary(valid, rejected)
    if valid.empty:
        valid = _empty_valid_frame()
    return valid[VALID_COLUMNS], rejected


def _log_summary(valid: pd.DataFrame, rejected: pd.DataFrame) -> None:
    """Log the row counts, and each symbol's rejections with their dates and reasons."""
    logger.info(
        "Validated %d rows: %d valid (%d symbols, dates %s..%s), %d rejected",
        len(valid) + len(rejected),
        len(valid),
        valid["symbol"].nunique(),
        valid["trade_date"].min() if not valid.empty else "-",
        valid["trade_date"].max() if not valid.empty else "-",
        len(rejected),
    )
    for (symbol, source), group in rejected.groupby(["symbol", "source"]):
        logger.warning(
            "Rejected %d row(s) of %r from %r, dates %s..%s: %s",
            len(group),
            symbol,
            source,
            group["trade_date"].min(),
            group["trade_date"].max(),
            ", ".join(sorted(group["reason"].unique())),
        )
    for flag in ("non_session_date",):
        flagged = valid[valid["quality_flags"].str.contains(flag, regex=False)]
        if not flagged.empty:
            logger.warning(
                "Flagged %d row(s) %s (kept), e.g. %s %s",
                len(flagged),
                flag,
                flagged["symbol"].iloc[0],
                flagged["trade_date"].iloc[0],
            )
