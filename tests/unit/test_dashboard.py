"""The dashboard's price chart shows a hole in the history instead of drawing a line through it."""

from __future__ import annotations

import pandas as pd

from src.monitoring.dashboard import break_lines_at_holes, build_price_figure


def history(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["trade_date", "close", "quality_flags"])
    for column in ("open", "high", "low"):
        frame[column] = frame["close"]
    frame["volume"] = 1000
    for column in ("open", "close", "volume"):
        frame[f"adj_{column}"] = frame[column]
    for column in ("sma_20", "sma_50", "sma_200", "rsi_14", "vwap_20"):
        frame[column] = float("nan")
    return frame


def test_an_empty_point_goes_on_the_first_missing_session_of_each_hole():
    rows = history(
        [
            ("2024-07-01", 10.0, ""),
            ("2024-07-02", 11.0, ""),
            ("2024-07-09", 12.0, "gap_before:3"),  # 07-03, 07-05 and 07-08 missing; 07-04 is a holiday
            ("2024-07-10", 13.0, "large_move"),
        ]
    )
    broken = break_lines_at_holes(rows)

    assert broken["trade_date"].tolist() == ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-09", "2024-07-10"]
    assert pd.isna(broken.loc[2, "close"])


def test_the_figure_breaks_the_close_line_and_keeps_the_session_count():
    rows = history([("2024-07-01", 10.0, ""), ("2024-07-02", 11.0, ""), ("2024-07-09", 12.0, "gap_before:3")])

    figure = build_price_figure("TEST", rows, synthetic=False)

    close = next(trace for trace in figure.data if trace.name == "Close (adjusted)")
    assert list(close.x) == ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-09"]
    assert pd.isna(close.y[2])
    assert figure.layout.title.text.startswith("TEST: last 3 sessions")


def test_a_history_without_holes_is_left_as_it_is():
    rows = history([("2024-07-01", 10.0, ""), ("2024-07-02", 11.0, "non_session_date")])
    assert break_lines_at_holes(rows) is rows


def test_each_symbol_is_labelled_by_what_its_series_holds():
    from src.monitoring.dashboard import series_badge

    assert series_badge(250, 0, ["file"]) == '<span class="badge good">real prices (file)</span>'
    assert series_badge(250, 250, []) == '<span class="badge warn">synthetic demo data</span>'
    # A warehouse filled before loads refused mixing: the page says so rather than guess.
    assert series_badge(300, 250, ["file"]) == '<span class="badge bad">mixed: 250 synthetic and 50 real rows</span>'


def test_the_chart_draws_adjusted_prices_marks_each_split_and_keeps_the_as_traded_close_a_click_away():
    # AAPL around its 2-for-1 split of 2005-02-28 (real as-traded closes).
    rows = history([("2005-02-24", 88.93, ""), ("2005-02-25", 88.99, ""), ("2005-02-28", 44.86, "split")])
    rows["adj_close"] = [88.93 / 2, 88.99 / 2, 44.86]

    figure = build_price_figure("AAPL", rows, synthetic=False)

    adjusted = next(trace for trace in figure.data if trace.name == "Close (adjusted)")
    as_traded = next(trace for trace in figure.data if trace.name == "Close (as traded)")
    assert list(adjusted.y) == [88.93 / 2, 88.99 / 2, 44.86]
    assert list(as_traded.y) == [88.93, 88.99, 44.86] and as_traded.visible == "legendonly"
    assert [shape.x0 for shape in figure.layout.shapes if shape.type == "line"] == ["2005-02-28"]
    assert [note.text for note in figure.layout.annotations if note.x == "2005-02-28"] == ["split"]
