"""Tests for src/transformation/data_validator.py: every rule, reason code and flag, on real GOOG prices.

Most tests start from real GOOG daily bars (backtesting's GOOG, as traded) turned into the
strings Alpha Vantage sends, then break one value to check one rule.
"""

from __future__ import annotations

import doctest
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.transformation import data_validator
from src.transformation.data_validator import REJECTED_COLUMNS, VALID_COLUMNS, validate_prices
from tests.fixtures.market_data import load_goog_prices


def goog_strings(first: str, last: str) -> pd.DataFrame:
    """Real GOOG rows from first..last as Alpha Vantage gives them: every value a string."""
    prices = load_goog_prices()
    rows = prices[(prices["trade_date"] >= first) & (prices["trade_date"] <= last)].reset_index(drop=True)
    raw = rows.astype(object)
    for column in ("open", "high", "low", "close"):
        raw[column] = [f"{value:.2f}" for value in rows[column]]
    raw["volume"] = [str(value) for value in rows["volume"]]
    raw["source"] = "alpha_vantage"
    return raw


def typed_frame(rows: list[tuple], flags: list[str] | None = None) -> pd.DataFrame:
    """Expected valid rows: (symbol, trade_date, open, high, low, close, volume, source) tuples."""
    frame = pd.DataFrame(rows, columns=VALID_COLUMNS[:-1])
    frame = frame.astype({"open": "float64", "high": "float64", "low": "float64", "close": "float64"})
    frame["volume"] = frame["volume"].astype("int64")
    frame["quality_flags"] = flags if flags is not None else [""] * len(frame)
    return frame.astype({"symbol": str, "trade_date": str, "source": str, "quality_flags": str})


def rejected_frame(rows: list[tuple]) -> pd.DataFrame:
    """Expected rejected rows: (symbol, trade_date, source, raw_record, reason) tuples."""
    return pd.DataFrame(rows, columns=REJECTED_COLUMNS).astype(str)


# The first three GOOG sessions, typed, used by many tests below.
GOOG_2004_08_19 = ("GOOG", "2004-08-19", 100.00, 104.06, 95.96, 100.34, 22351900, "alpha_vantage")
GOOG_2004_08_20 = ("GOOG", "2004-08-20", 101.01, 109.08, 100.50, 108.31, 11428600, "alpha_vantage")
GOOG_2004_08_23 = ("GOOG", "2004-08-23", 110.75, 113.48, 109.05, 109.40, 9137200, "alpha_vantage")


def test_strings_from_a_source_are_converted_to_typed_rows():
    valid, rejected = validate_prices(goog_strings("2004-08-19", "2004-08-23"), run_date="2004-08-23")

    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19, GOOG_2004_08_20, GOOG_2004_08_23]))
    assert_frame_equal(rejected, rejected_frame([]))


def test_rejected_row_keeps_the_values_as_received():
    raw = goog_strings("2004-08-19", "2004-08-23")
    raw.loc[1, "close"] = "N/A"

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    raw_record = (
        '{"symbol": "GOOG", "trade_date": "2004-08-20", "open": "101.01", "high": "109.08", '
        '"low": "100.50", "close": "N/A", "volume": "11428600", "source": "alpha_vantage"}'
    )
    expected = rejected_frame([("GOOG", "2004-08-20", "alpha_vantage", raw_record, "non_numeric:close")])
    assert_frame_equal(rejected, expected)
    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19, GOOG_2004_08_23]))


# One broken value in the 2004-08-20 row (open 101.01, high 109.08, low 100.50, close 108.31).
@pytest.mark.parametrize(
    ("column", "bad_value", "reason"),
    [
        ("symbol", None, "missing_value:symbol"),
        ("symbol", " ", "missing_value:symbol"),
        ("symbol", "goog", "invalid_symbol"),  # symbols arrive normalised (symbols.py)
        ("symbol", "../GOOG", "invalid_symbol"),
        ("trade_date", None, "missing_value:trade_date"),
        ("trade_date", "", "missing_value:trade_date"),
        ("trade_date", "08/20/2004", "invalid_date"),
        ("trade_date", "2004-02-30", "invalid_date"),
        ("trade_date", "2004-08", "invalid_date"),
        ("open", None, "missing_value:open"),
        ("open", np.nan, "missing_value:open"),
        ("open", "N/A", "non_numeric:open"),
        ("high", "-", "non_numeric:high"),
        ("high", "1,109.08", "non_numeric:high"),
        ("low", "nan", "non_numeric:low"),
        ("low", "inf", "non_numeric:low"),
        ("close", "", "missing_value:close"),
        ("close", "0", "non_positive_price:close"),
        ("close", "-108.31", "non_positive_price:close"),
        ("volume", None, "missing_value:volume"),
        ("volume", "N/A", "non_numeric:volume"),
        ("volume", "-11428600", "negative_volume"),
        ("volume", "11428600.5", "fractional_volume"),
        ("source", None, "missing_value:source"),
        ("high", "105.00", "high_below_open_close"),  # below the close 108.31
        ("low", "102.00", "low_above_open_close"),  # above the open 101.01
        ("high", "100.00", "high_below_low;high_below_open_close"),  # below the low 100.50 too
    ],
)
def test_each_rule_rejects_the_broken_row_with_its_reason(column, bad_value, reason):
    raw = goog_strings("2004-08-19", "2004-08-23")
    raw.loc[1, column] = bad_value

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert rejected["reason"].tolist() == [reason]
    assert json.loads(rejected.loc[0, "raw_record"])[column] == (None if pd.isna(bad_value) else bad_value)
    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19, GOOG_2004_08_23]))


def test_swapped_high_and_low_lists_every_broken_relation():
    raw = goog_strings("2004-08-20", "2004-08-20")
    raw.loc[0, ["high", "low"]] = ["100.50", "109.08"]

    _, rejected = validate_prices(raw, run_date="2004-08-23")

    assert rejected["reason"].tolist() == ["high_below_low;high_below_open_close;low_above_open_close"]


def test_a_row_with_several_problems_lists_them_all_in_column_order():
    raw = goog_strings("2004-08-20", "2004-08-20")
    raw.loc[0, ["trade_date", "open", "volume", "source"]] = ["20/08/2004", "N/A", "-5", ""]

    _, rejected = validate_prices(raw, run_date="2004-08-23")

    expected_reason = "invalid_date;non_numeric:open;negative_volume;missing_value:source"
    assert_frame_equal(
        rejected[["symbol", "trade_date", "source", "reason"]],
        pd.DataFrame({"symbol": ["GOOG"], "trade_date": ["20/08/2004"], "source": [""], "reason": [expected_reason]}),
    )


def test_a_non_positive_price_is_not_also_reported_as_a_broken_relation():
    raw = goog_strings("2004-08-20", "2004-08-20")
    raw.loc[0, "low"] = "-100.50"

    _, rejected = validate_prices(raw, run_date="2004-08-23")

    assert rejected["reason"].tolist() == ["non_positive_price:low"]


def test_zero_volume_is_accepted():
    raw = goog_strings("2004-08-20", "2004-08-20")
    raw.loc[0, "volume"] = "0"

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert valid["volume"].tolist() == [0]
    assert rejected.empty


def test_dates_after_the_run_date_are_rejected():
    valid, rejected = validate_prices(goog_strings("2004-08-19", "2004-08-23"), run_date=date(2004, 8, 20))

    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19, GOOG_2004_08_20]))
    assert rejected[["trade_date", "reason"]].values.tolist() == [["2004-08-23", "future_date"]]


def test_without_a_run_date_the_limit_is_today_in_new_york():
    today = datetime.now(ZoneInfo("America/New_York")).date()
    raw = goog_strings("2004-08-19", "2004-08-20")
    raw["trade_date"] = [today.isoformat(), (today + timedelta(days=1)).isoformat()]

    valid, rejected = validate_prices(raw)

    assert valid["trade_date"].tolist() == [today.isoformat()]
    assert rejected[["trade_date", "reason"]].values.tolist() == [
        [(today + timedelta(days=1)).isoformat(), "future_date"]
    ]


def test_dates_outside_the_calendar_span_are_rejected_with_a_reason():
    """Issue 19 case 6: a 1969 or 2041 row used to pass here, commit, then stop the run at dim_date."""
    raw = goog_strings("2004-08-19", "2004-08-23")
    raw["trade_date"] = ["1969-12-31", "2004-08-20", "2041-01-02"]

    valid, rejected = validate_prices(raw, run_date="2099-01-01")

    assert valid["trade_date"].tolist() == ["2004-08-20"]
    assert rejected[["trade_date", "reason"]].values.tolist() == [
        ["1969-12-31", "date_out_of_range"],
        ["2041-01-02", "date_out_of_range"],
    ]
    # Also when the future-date check is off (the cleaner's second pass).
    valid, rejected = validate_prices(raw, check_future_dates=False)
    assert rejected["reason"].tolist() == ["date_out_of_range", "date_out_of_range"]


def test_the_future_date_check_can_be_switched_off():
    valid, rejected = validate_prices(
        goog_strings("2004-08-19", "2004-08-23"), run_date="2004-08-19", check_future_dates=False
    )

    assert len(valid) == 3
    assert rejected.empty


def test_duplicate_dates_keep_the_last_row_received():
    raw = goog_strings("2004-08-19", "2004-08-20")
    correction = raw.iloc[[0]].assign(close="100.35")  # the source repeats 2004-08-19, corrected
    raw = pd.concat([raw, correction], ignore_index=True)

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    kept = ("GOOG", "2004-08-19", 100.00, 104.06, 95.96, 100.35, 22351900, "alpha_vantage")
    assert_frame_equal(valid, typed_frame([kept, GOOG_2004_08_20]))
    assert rejected[["trade_date", "reason"]].values.tolist() == [["2004-08-19", "duplicate_date"]]
    assert json.loads(rejected.loc[0, "raw_record"])["close"] == "100.34"


def test_a_broken_duplicate_does_not_push_out_the_good_row():
    raw = goog_strings("2004-08-19", "2004-08-19")
    raw = pd.concat([raw, raw.assign(close="N/A")], ignore_index=True)

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19]))
    assert rejected["reason"].tolist() == ["non_numeric:close"]


def test_the_same_date_for_two_symbols_is_not_a_duplicate():
    raw = goog_strings("2004-08-19", "2004-08-19")
    raw = pd.concat([raw, raw.assign(symbol="GOOGL")], ignore_index=True)

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert valid["symbol"].tolist() == ["GOOG", "GOOGL"]
    assert rejected.empty


def test_missing_columns_reject_every_row_and_name_the_columns():
    raw = goog_strings("2004-08-19", "2004-08-20").drop(columns=["volume", "source"])

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert_frame_equal(valid, typed_frame([]))
    assert rejected[["symbol", "trade_date", "source", "reason"]].values.tolist() == [
        ["GOOG", "2004-08-19", "", "missing_column:volume;missing_column:source"],
        ["GOOG", "2004-08-20", "", "missing_column:volume;missing_column:source"],
    ]
    assert json.loads(rejected.loc[0, "raw_record"]) == {
        "symbol": "GOOG",
        "trade_date": "2004-08-19",
        "open": "100.00",
        "high": "104.06",
        "low": "95.96",
        "close": "100.34",
    }


def test_extra_columns_are_ignored_but_kept_in_raw_record():
    raw = goog_strings("2004-08-19", "2004-08-20")
    raw["adj_close"] = ["50.17", "54.16"]
    raw.loc[1, "close"] = None

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19]))
    assert json.loads(rejected.loc[0, "raw_record"])["adj_close"] == "54.16"
    assert json.loads(rejected.loc[0, "raw_record"])["close"] is None


def test_float_values_from_yfinance_with_nan_and_timezone_aware_dates():
    # yfinance gives floats (volume too) and dates as midnight New York timestamps.
    prices = load_goog_prices().iloc[:3]
    raw = prices.assign(
        trade_date=pd.to_datetime(prices["trade_date"]).dt.tz_localize("America/New_York"),
        volume=prices["volume"].astype("float64"),
        source="yahoo",
    )
    raw.loc[2, "close"] = np.nan
    raw.loc[1, "volume"] = np.inf

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert_frame_equal(valid, typed_frame([GOOG_2004_08_19[:-1] + ("yahoo",)]))
    assert rejected[["trade_date", "reason"]].values.tolist() == [
        ["2004-08-20 00:00:00-04:00", "non_numeric:volume"],
        ["2004-08-23 00:00:00-04:00", "missing_value:close"],
    ]
    assert json.loads(rejected.loc[0, "raw_record"])["volume"] == "inf"
    assert json.loads(rejected.loc[1, "raw_record"])["close"] is None


def test_output_is_sorted_by_symbol_and_date_whatever_the_input_order_or_index():
    goog = goog_strings("2004-08-19", "2004-08-20")
    other = goog.assign(symbol="AAPL")
    raw = pd.concat([goog.iloc[::-1], other.iloc[::-1]])
    raw.index = [7, 7, 3, 3]  # a messy index must not matter

    valid, _ = validate_prices(raw, run_date="2004-08-23")

    assert valid[["symbol", "trade_date"]].values.tolist() == [
        ["AAPL", "2004-08-19"],
        ["AAPL", "2004-08-20"],
        ["GOOG", "2004-08-19"],
        ["GOOG", "2004-08-20"],
    ]
    assert valid.index.tolist() == [0, 1, 2, 3]


def test_every_input_row_ends_up_valid_or_rejected():
    raw = goog_strings("2004-08-19", "2004-09-30")
    raw.loc[[3, 8, 9], "close"] = ["N/A", "", "-1"]
    raw.loc[12, "trade_date"] = "not a date"
    raw = pd.concat([raw, raw.iloc[[20, 21]]], ignore_index=True)  # two repeated days

    valid, rejected = validate_prices(raw, run_date="2004-09-30")

    assert len(valid) + len(rejected) == len(raw) == 32
    assert len(rejected) == 6


def test_empty_input_gives_empty_outputs_with_the_right_columns():
    raw = goog_strings("2004-08-19", "2004-08-19").iloc[:0]

    valid, rejected = validate_prices(raw, run_date="2004-08-23")

    assert_frame_equal(valid, typed_frame([]))
    assert_frame_equal(rejected, rejected_frame([]))


def test_non_session_dates_are_flagged_and_kept():
    # Real GOOG bars around Independence Day 2012, plus rows on the holiday and on a Saturday.
    raw = goog_strings("2012-07-03", "2012-07-05")
    extra = raw.iloc[[0, 0]].assign(trade_date=["2012-07-04", "2012-07-07"])
    raw = pd.concat([raw, extra], ignore_index=True)

    valid, rejected = validate_prices(raw, run_date="2012-07-31")

    assert valid[["trade_date", "quality_flags"]].values.tolist() == [
        ["2012-07-03", ""],
        ["2012-07-04", "non_session_date"],
        ["2012-07-05", ""],
        ["2012-07-07", "non_session_date"],
    ]
    assert rejected.empty


def test_real_goog_prices_pass_with_no_rejection_and_no_flag():
    prices = load_goog_prices()

    valid, rejected = validate_prices(prices.assign(source="file"), run_date="2013-03-01")

    assert_frame_equal(valid, prices.assign(source="file", quality_flags=""))
    assert rejected.empty


def test_real_goog_as_strings_gives_the_same_rows_as_floats():
    strings = goog_strings("2004-08-19", "2013-03-01")

    valid, rejected = validate_prices(strings, run_date="2013-03-01")

    expected = load_goog_prices().assign(source="alpha_vantage", quality_flags="")
    assert_frame_equal(valid, expected)
    assert rejected.empty


def test_real_prices_of_4_symbols_pass_with_no_rejection_and_only_history_flags_left_for_the_load(
    real_prices_4_symbols,
):
    valid, rejected = validate_prices(real_prices_4_symbols.assign(source="file"), run_date="2013-03-01")

    assert rejected.empty
    assert len(valid) == len(real_prices_4_symbols)
    # large_move needs the symbol's earlier rows: the load adds it (cleaner.add_history_flags).
    assert (valid["quality_flags"] == "").all()


def test_docstring_examples_run():
    results = doctest.testmod(data_validator)

    assert results.attempted > 0
    assert results.failed == 0
