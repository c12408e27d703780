"""dim_date rows from the NYSE calendar: holidays, early closes, ISO weeks."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from src.storage.calendar_dim import build_dim_date
from src.storage.schema import DIM_DATE

COLUMNS = DIM_DATE.column_names


def expected_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    int_columns = ["year", "quarter", "month", "day", "day_of_week", "week_of_year"]
    return frame.astype({**dict.fromkeys(int_columns, "int64"), "is_trading_day": bool, "is_early_close": bool})


def test_independence_day_week_2024():
    # 2024-07-03: NYSE closes at 13:00; 2024-07-04: closed; 6th/7th: weekend.
    expected = expected_frame(
        [
            ("2024-07-01", 2024, 3, 7, 1, 0, "Monday", 27, True, False),
            ("2024-07-02", 2024, 3, 7, 2, 1, "Tuesday", 27, True, False),
            ("2024-07-03", 2024, 3, 7, 3, 2, "Wednesday", 27, True, True),
            ("2024-07-04", 2024, 3, 7, 4, 3, "Thursday", 27, False, False),
            ("2024-07-05", 2024, 3, 7, 5, 4, "Friday", 27, True, False),
            ("2024-07-06", 2024, 3, 7, 6, 5, "Saturday", 27, False, False),
            ("2024-07-07", 2024, 3, 7, 7, 6, "Sunday", 27, False, False),
            ("2024-07-08", 2024, 3, 7, 8, 0, "Monday", 28, True, False),
        ]
    )
    assert_frame_equal(build_dim_date("2024-07-01", "2024-07-08"), expected)


def test_thanksgiving_2024_and_date_objects():
    expected = expected_frame(
        [
            ("2024-11-28", 2024, 4, 11, 28, 3, "Thursday", 48, False, False),  # Thanksgiving: closed
            ("2024-11-29", 2024, 4, 11, 29, 4, "Friday", 48, True, True),  # the day after: 13:00 close
        ]
    )
    assert_frame_equal(build_dim_date(date(2024, 11, 28), date(2024, 11, 29)), expected)


def test_christmas_and_iso_week_at_year_end():
    result = build_dim_date("2024-12-24", "2025-01-02").set_index("trade_date")
    assert result.loc["2024-12-24", "is_early_close"]
    assert not result.loc["2024-12-25", "is_trading_day"]
    assert not result.loc["2025-01-01", "is_trading_day"]
    # ISO weeks: 2024-12-30 (a Monday) already belongs to week 1 of 2025.
    assert result.loc["2024-12-29", "week_of_year"] == 52
    assert result.loc["2024-12-30", "week_of_year"] == 1
    assert result["is_trading_day"].sum() == 6  # 24, 26, 27, 30, 31 Dec and 2 Jan


def test_single_day_and_bad_ranges():
    assert build_dim_date("2024-07-04", "2024-07-04")["trade_date"].tolist() == ["2024-07-04"]
    with pytest.raises(ValueError, match="backwards"):
        build_dim_date("2024-07-08", "2024-07-01")
    with pytest.raises(ValueError, match="outside the XNYS calendar span"):
        build_dim_date("1960-01-01", "1960-01-31")
