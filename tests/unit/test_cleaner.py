"""Tests for src/transformation/cleaner.py: column names, safety-net rules, gaps and return outliers."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.market_calendar import nyse_calendar
from src.transformation import cleaner
from src.transformation.cleaner import add_history_flags, clean_prices, find_missing_sessions, standardize_columns
from src.transformation.data_validator import VALID_COLUMNS, validate_prices
from tests.fixtures.market_data import load_goog_prices

MAX_GAP_SESSIONS = 10  # the setting's default


def flagged_at_load(clean: pd.DataFrame) -> pd.DataFrame:
    """What the load step stores: the rows with their history flags (large_move, gap_before, return_outlier)."""
    return add_history_flags(clean, MAX_GAP_SESSIONS)[VALID_COLUMNS]


def goog_strings(first: str, last: str) -> pd.DataFrame:
    """Real GOOG rows as Alpha Vantage sends them: every value a string."""
    rows = goog(first, last, source="alpha_vantage")
    for column in ("open", "high", "low", "close", "volume"):
        rows[column] = rows[column].astype(str)
    return rows


def goog(first: str, last: str, source: str = "file") -> pd.DataFrame:
    """Real GOOG rows from first..last (typed), with a source."""
    prices = load_goog_prices()
    rows = prices[(prices["trade_date"] >= first) & (prices["trade_date"] <= last)]
    return rows.assign(source=source).reset_index(drop=True)


def session_series(closes: list[float], first_session: str = "2024-01-02") -> pd.DataFrame:
    """A crafted test series (not market data): one bar per NYSE session with open=high=low=close."""
    days = nyse_calendar().sessions_in_range(first_session, "2030-12-31")[: len(closes)]
    return pd.DataFrame(
        {
            "symbol": "TEST",
            "trade_date": days.strftime("%Y-%m-%d"),
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": 1000,
            "source": "file",
        }
    )


def alternating_closes(count: int) -> list[float]:
    """100, then `count` daily returns alternating +1 % / -1 % (a steady 1 % daily spread)."""
    closes = [100.0]
    for day in range(count):
        closes.append(round(closes[-1] * (1.01 if day % 2 == 0 else 0.99), 4))
    return closes


# ---- standardize_columns -------------------------------------------------------------------


def test_yfinance_columns_are_standardised():
    columns = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume", "Dividends", "Stock Splits"]

    result = standardize_columns(pd.DataFrame(columns=columns))

    assert list(result.columns) == [
        "trade_date",
        "open",
        "high",
        "low",
        "close",
        "adj_close",
        "volume",
        "dividends",
        "stock_splits",
    ]


def test_alpha_vantage_columns_are_standardised():
    columns = ["timestamp", "1. open", "2. high", "3. low", "4. close", "5. adjusted close", "6. volume"]

    result = standardize_columns(pd.DataFrame(columns=columns))

    assert list(result.columns) == ["trade_date", "open", "high", "low", "close", "adj_close", "volume"]


def test_canonical_columns_and_values_are_left_alone():
    prices = goog("2004-08-19", "2004-08-20")

    assert_frame_equal(standardize_columns(prices), prices)


def test_two_columns_with_the_same_meaning_are_an_error():
    with pytest.raises(ValueError, match="columns 'Date' and 'trade_date' both mean 'trade_date'"):
        standardize_columns(pd.DataFrame(columns=["Date", "trade_date", "close"]))


# ---- clean_prices: types, repairs and the safety net ------------------------------------------


def test_a_yfinance_style_frame_comes_out_canonical():
    prices = goog("2004-08-19", "2004-08-20")
    raw = pd.DataFrame(
        {
            "Date": pd.to_datetime(prices["trade_date"]).dt.tz_localize("America/New_York"),
            "Ticker": " goog ",
            "Open": prices["open"],
            "High": prices["high"],
            "Low": prices["low"],
            "Close": prices["close"],
            "Adj Close": [50.17, 54.16],
            "Volume": prices["volume"].astype("float64"),
            "Source": "yahoo",
        }
    )

    clean, quarantined = clean_prices(raw)

    assert_frame_equal(clean, prices.assign(source="yahoo", quality_flags=""))
    assert quarantined.empty


def test_rows_that_cannot_be_repaired_are_quarantined_with_the_validator_reason():
    raw = goog("2004-08-19", "2004-08-23").astype({"close": object})
    raw.loc[1, "close"] = "N/A"

    clean, quarantined = clean_prices(raw)

    assert clean["trade_date"].tolist() == ["2004-08-19", "2004-08-23"]
    assert list(quarantined.columns) == ["symbol", "trade_date", "source", "raw_record", "reason"]
    assert quarantined[["symbol", "trade_date", "source", "reason"]].values.tolist() == [
        ["GOOG", "2004-08-20", "file", "non_numeric:close"]
    ]
    assert json.loads(quarantined.loc[0, "raw_record"])["close"] == "N/A"


def test_a_missing_price_is_quarantined_never_forward_filled():
    raw = goog("2012-07-02", "2012-07-06")  # 07-04 is a holiday
    raw.loc[1, "close"] = np.nan  # 2012-07-03

    clean, quarantined = clean_prices(raw)
    clean = flagged_at_load(clean)

    # No made-up 07-03 row; 07-05 says one session is missing before it.
    assert clean[["trade_date", "close", "quality_flags"]].values.tolist() == [
        ["2012-07-02", 580.47, ""],
        ["2012-07-05", 595.92, "gap_before:1"],
        ["2012-07-06", 585.98, ""],
    ]
    assert quarantined["reason"].tolist() == ["missing_value:close"]
    assert find_missing_sessions(clean).values.tolist() == [["GOOG", "2012-07-03"]]


def test_duplicates_are_removed_as_a_safety_net_keeping_the_last_row():
    raw = goog("2004-08-19", "2004-08-20")
    raw = pd.concat([raw, raw.iloc[[0]].assign(volume=22351901)], ignore_index=True)

    clean, quarantined = clean_prices(raw)

    assert clean["volume"].tolist() == [22351901, 11428600]
    assert quarantined[["trade_date", "reason"]].values.tolist() == [["2004-08-19", "duplicate_date"]]


def test_a_frame_without_a_required_column_is_quarantined_entirely():
    clean, quarantined = clean_prices(goog("2004-08-19", "2004-08-20").drop(columns="volume"))

    assert clean.empty
    assert list(clean.columns) == VALID_COLUMNS
    assert quarantined["reason"].tolist() == ["missing_column:volume", "missing_column:volume"]


def test_cleaning_twice_gives_the_same_result():
    raw = goog("2012-06-01", "2012-12-31")
    raw = raw.drop(index=[10, 11]).iloc[::-1]  # a gap, rows in reverse order

    once, _ = clean_prices(raw)
    twice, quarantined = clean_prices(once)

    assert_frame_equal(twice, once)
    assert quarantined.empty


# ---- missing sessions ---------------------------------------------------------------------


def test_missing_sessions_are_flagged_on_the_row_after_the_gap_and_listed():
    raw = goog("2012-07-02", "2012-07-12")
    raw = raw[~raw["trade_date"].isin(["2012-07-05", "2012-07-06"])]

    clean, quarantined = clean_prices(raw)
    clean = flagged_at_load(clean)

    assert clean[["trade_date", "quality_flags"]].values.tolist() == [
        ["2012-07-02", ""],
        ["2012-07-03", ""],
        ["2012-07-09", "gap_before:2"],  # 07-05 and 07-06 missing; 07-04 is a holiday, not a gap
        ["2012-07-10", ""],
        ["2012-07-11", ""],
        ["2012-07-12", ""],
    ]
    assert quarantined.empty
    assert_frame_equal(
        find_missing_sessions(raw),
        pd.DataFrame({"symbol": ["GOOG", "GOOG"], "trade_date": ["2012-07-05", "2012-07-06"]}),
    )


def test_missing_sessions_count_only_inside_each_symbols_own_range():
    prices = pd.DataFrame(
        {
            "symbol": ["BBB", "AAA", "AAA", "BBB", "AAA", "AAA"],
            # AAA: Mon 07-01, Wed 07-03, Sat 07-06 (not a session), Tue 07-09.  BBB starts late.
            "trade_date": [
                "2024-07-10",
                "2024-07-09",
                "2024-07-01",
                "2024-07-08",
                "2024-07-06",
                "2024-07-03",
            ],
        }
    )

    missing = find_missing_sessions(prices)

    assert missing.values.tolist() == [
        ["AAA", "2024-07-02"],
        ["AAA", "2024-07-05"],
        ["AAA", "2024-07-08"],
        ["BBB", "2024-07-09"],
    ]


def test_no_missing_sessions_gives_an_empty_frame():
    missing = find_missing_sessions(goog("2012-07-02", "2012-07-12"))

    assert_frame_equal(missing, pd.DataFrame({"symbol": pd.Series(dtype=str), "trade_date": pd.Series(dtype=str)}))


def test_hurricane_sandy_closure_is_not_a_gap():
    # NYSE was closed on 2012-10-29 and 2012-10-30; the real GOOG data has no rows those days.
    prices = goog("2012-10-25", "2012-11-02")

    assert prices["trade_date"].tolist() == [
        "2012-10-25",
        "2012-10-26",
        "2012-10-31",
        "2012-11-01",
        "2012-11-02",
    ]
    assert find_missing_sessions(prices).empty


# ---- return outliers ----------------------------------------------------------------------


def test_a_return_far_outside_the_last_60_sessions_is_flagged():
    # 60 returns of +1 % / -1 % (sample std 1.008 %), then +10 % (z = 9.9) and +3 % (z = 1.7).
    closes = alternating_closes(60)
    closes += [round(closes[-1] * 1.10, 4)]
    closes += [round(closes[-1] * 1.03, 4)]

    clean, quarantined = clean_prices(session_series(closes))
    clean = flagged_at_load(clean)

    assert clean["quality_flags"].tolist() == [""] * 61 + ["return_outlier", ""]
    assert quarantined.empty


def test_no_return_is_flagged_before_the_window_is_full():
    # The same +10 % one session earlier: only 59 previous returns, so no z-score yet.
    closes = alternating_closes(59)
    closes += [round(closes[-1] * 1.10, 4)]

    clean = flagged_at_load(clean_prices(session_series(closes))[0])

    assert len(clean) == 61
    assert (clean["quality_flags"] == "").all()


def test_returns_are_compared_within_each_symbol_only():
    closes = alternating_closes(60) + [0.0]
    closes[-1] = round(closes[-2] * 1.10, 4)
    test = session_series(closes)
    other = session_series([500.0] * 62).assign(symbol="OTHER")  # flat: its returns are all 0

    clean = flagged_at_load(clean_prices(pd.concat([other, test], ignore_index=True))[0])

    assert clean.loc[clean["quality_flags"] != "", ["symbol", "trade_date"]].values.tolist() == [
        ["TEST", "2024-04-01"]  # the 62nd session from 2024-01-02 (Good Friday 03-29 is closed)
    ]


def test_real_goog_keeps_every_row_and_flags_a_handful_of_outliers():
    prices = load_goog_prices().assign(source="file")

    clean, quarantined = clean_prices(prices)
    clean = flagged_at_load(clean)

    assert quarantined.empty
    assert_frame_equal(clean.drop(columns="quality_flags"), prices)
    assert not clean["quality_flags"].str.contains("gap_before").any()
    outliers = clean.loc[clean["quality_flags"] == "return_outlier", "trade_date"].tolist()
    # Measured: 17 days in 2004-08-19..2013-03-01, mostly earnings reactions. Two of them:
    # 2008-09-29 (-12 %, the day the House rejected the bank bail-out) and 2012-10-18 (-8 %,
    # earnings released early by mistake).
    assert len(outliers) == 17
    assert {"2008-09-29", "2012-10-18"} <= set(outliers)


def test_real_prices_of_4_symbols_are_all_kept(real_prices_4_symbols):
    clean, quarantined = clean_prices(real_prices_4_symbols.assign(source="file"))
    clean = flagged_at_load(clean)

    assert quarantined.empty
    assert len(clean) == len(real_prices_4_symbols)
    flagged = clean[clean["quality_flags"].str.contains("return_outlier")]
    # Measured on bokeh's 2000..2013 data.
    assert flagged.groupby("symbol").size().to_dict() == {"AAPL": 20, "GOOG": 17, "IBM": 16, "MSFT": 17}
    assert (
        clean.loc[clean["quality_flags"].str.contains("large_move"), "quality_flags"].tolist()
        == ["large_move,return_outlier"] * 4
    )


def test_the_validator_output_cleans_without_quarantine(real_prices_4_symbols):
    valid, _ = validate_prices(real_prices_4_symbols.assign(source="file"), run_date="2013-03-01")

    clean, quarantined = clean_prices(valid)

    assert_frame_equal(clean.drop(columns="quality_flags"), valid.drop(columns="quality_flags"))
    assert quarantined.empty


def test_docstring_examples_run():
    results = doctest.testmod(cleaner)

    assert results.attempted > 0
    assert results.failed == 0


# ---- large moves (moved from the validator: they need the symbol's earlier rows) -------------


def test_a_4_for_1_split_is_flagged_large_move_and_kept():
    # Real GOOG (no >40 % day in 2004-2013); from 2010-07-01 prices / 4 and volume x 4,
    # as if the stock had split 4:1 that day.
    prices = load_goog_prices()
    after = prices["trade_date"] >= "2010-07-01"
    split = prices.copy()
    split.loc[after, ["open", "high", "low", "close"]] = split.loc[after, ["open", "high", "low", "close"]] / 4
    split.loc[after, "volume"] = split.loc[after, "volume"] * 4
    split["source"] = "file"

    valid, rejected = validate_prices(split, run_date="2013-03-01")
    valid = flagged_at_load(valid)

    assert rejected.empty
    flagged = valid[valid["quality_flags"].str.contains("large_move")]
    assert flagged[["trade_date", "close", "quality_flags"]].values.tolist() == [
        ["2010-07-01", 439.49 / 4, "large_move,return_outlier"]
    ]
    assert_frame_equal(valid.drop(columns="quality_flags"), split[VALID_COLUMNS[:-1]])


def test_large_move_compares_with_the_previous_valid_close_of_the_same_symbol():
    raw = goog_strings("2012-07-02", "2012-07-06")  # closes 580.47 587.83 595.92 585.98
    raw.loc[1, "close"] = "N/A"  # 2012-07-03 rejected: 07-05 is compared with 07-02
    raw.loc[2, ["open", "high", "low", "close"]] = ["880.00", "890.00", "870.00", "885.00"]
    raw.loc[3, "trade_date"] = "2012-07-07"  # a Saturday: both flags, in their order
    raw.loc[3, ["open", "high", "low", "close"]] = ["420.00", "430.00", "410.00", "425.00"]
    other = goog_strings("2012-07-02", "2012-07-02").assign(symbol="AAPL", close="10.00", low="9.00")
    raw = pd.concat([raw, other], ignore_index=True)  # a far lower price in another symbol

    valid, rejected = validate_prices(raw, run_date="2012-07-31")
    valid = flagged_at_load(valid)

    assert valid[["symbol", "trade_date", "quality_flags"]].values.tolist() == [
        ["AAPL", "2012-07-02", ""],
        ["GOOG", "2012-07-02", ""],
        ["GOOG", "2012-07-05", "large_move,gap_before:1"],  # 885.00 / 580.47 - 1 = +52 %; 07-03 missing
        ["GOOG", "2012-07-07", "non_session_date,large_move,gap_before:1"],  # -52 %; Friday 07-06 missing
    ]
    assert rejected["reason"].tolist() == ["non_numeric:close"]


def test_real_prices_of_4_symbols_flag_the_real_splits_and_crash(real_prices_4_symbols):
    # Measured on bokeh's AAPL/GOOG/IBM/MSFT 2000-2013: AAPL's 2:1 splits (2000-06-21,
    # 2005-02-28), AAPL's -52 % day (2000-09-29) and MSFT's 2:1 split (2003-02-18).
    valid, rejected = validate_prices(real_prices_4_symbols.assign(source="file"), run_date="2013-03-01")
    valid = flagged_at_load(valid)
    valid = valid[valid["quality_flags"].str.contains("large_move")]

    assert rejected.empty
    assert valid.loc[valid["quality_flags"] != "", ["symbol", "trade_date", "quality_flags"]].values.tolist() == [
        ["AAPL", "2000-06-21", "large_move,return_outlier"],
        ["AAPL", "2000-09-29", "large_move,return_outlier"],
        ["AAPL", "2005-02-28", "large_move,return_outlier"],
        ["MSFT", "2003-02-18", "large_move,return_outlier"],
    ]
