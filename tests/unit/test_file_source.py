"""Tests for the `file` source: real IBM prices (bokeh-sampledata) written to CSV and read back."""

from __future__ import annotations

import logging
import os
from datetime import date

import pandas as pd
import pytest

from src.ingestion.fetch_result import NoDataError, SourceError
from src.ingestion.file_source import FileFormatError, fetch_file_prices, price_file_path, read_splits_file
from src.ingestion.raw_replies import prices_from_raw_reply
from src.ingestion.symbols import InvalidSymbolInputError
from src.local_stack.synthetic_data import SYNTHETIC_NOTE_FILE
from tests.fixtures.market_data import load_bokeh_prices

PRICE_FIELDS = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def ibm_prices() -> pd.DataFrame:
    return load_bokeh_prices("IBM")


def write_price_csv(folder, symbol: str, prices: pd.DataFrame) -> str:
    """Write prices as `<SYMBOL>.csv` (date,open,high,low,close,volume); return the file's text."""
    csv = prices.rename(columns={"trade_date": "date"})[["date", *PRICE_FIELDS]]
    path = folder / f"{symbol}.csv"
    csv.to_csv(path, index=False)
    return path.read_text()


def expected_strings(prices: pd.DataFrame, first: str, last: str, source: str) -> pd.DataFrame:
    """The rows from first to last as the file source returns them: every value a string."""
    rows = prices[prices["trade_date"].between(first, last)].reset_index(drop=True)
    expected = rows[["symbol", "trade_date"]].copy()
    for field in PRICE_FIELDS:
        expected[field] = rows[field].astype(str)
    expected["source"] = source
    return expected


def test_reads_the_exact_rows_of_the_range_as_strings(tmp_path, ibm_prices):
    write_price_csv(tmp_path, "IBM", ibm_prices)

    result = fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 3, 1), tmp_path)

    pd.testing.assert_frame_equal(result.prices, expected_strings(ibm_prices, "2013-02-25", "2013-03-01", "file"))
    last = result.prices.iloc[-1]
    assert (last["trade_date"], last["close"], last["volume"]) == ("2013-03-01", "202.91", "3308300")
    assert (result.symbol, result.source) == ("IBM", "file")
    assert result.request_params == {"file": "IBM.csv", "start": "2013-02-25", "end": "2013-03-01"}


def test_raw_payload_is_the_csv_text_of_the_selected_rows_only(tmp_path, ibm_prices):
    text = write_price_csv(tmp_path, "IBM", ibm_prices)
    lines = text.splitlines()
    selected = [line for line in lines[1:] if "2013-02-26" <= line[:10] <= "2013-02-28"]

    result = fetch_file_prices("IBM", date(2013, 2, 26), date(2013, 2, 28), tmp_path)

    assert result.raw_payload == "\n".join([lines[0], *selected]) + "\n"
    assert len(selected) == 3


def test_raw_payload_is_the_file_itself_when_every_row_is_selected(tmp_path, ibm_prices):
    # A backfill selects the whole file: the raw reply is the file's own text, byte for byte
    # (headers in any case included), and it parses back to the same rows.
    text = write_price_csv(tmp_path, "IBM", ibm_prices).replace("date,open", "Date,Open", 1)
    (tmp_path / "IBM.csv").write_text(text)

    result = fetch_file_prices("IBM", date(2000, 1, 1), date(2030, 1, 1), tmp_path)

    assert result.raw_payload == text
    reparsed = prices_from_raw_reply("file", "IBM", result.raw_payload)
    pd.testing.assert_frame_equal(reparsed, result.prices)


def test_a_row_with_too_many_cells_is_a_file_format_error(tmp_path):
    (tmp_path / "IBM.csv").write_text("date,open,high,low,close,volume\n2013-02-25,1,2,0.5,1.5,10,99\n")

    with pytest.raises(FileFormatError, match="Expected 6 columns, got 7"):
        fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 2, 25), tmp_path)


def test_symbol_is_normalised_before_building_the_path(tmp_path, ibm_prices):
    write_price_csv(tmp_path, "IBM", ibm_prices)

    result = fetch_file_prices(" ibm ", date(2013, 3, 1), date(2013, 3, 1), tmp_path)

    assert result.prices["symbol"].tolist() == ["IBM"]
    assert price_file_path("brk.b", tmp_path) == tmp_path / "BRK.B.csv"


@pytest.mark.parametrize("bad_symbol", ["../IBM", "IBM/../../etc/passwd", "/etc/passwd", "IBM\x00", ""])
def test_path_tricks_are_refused_before_any_file_is_opened(tmp_path, ibm_prices, bad_symbol):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_price_csv(tmp_path, "IBM", ibm_prices)  # outside data_dir: must never be read

    with pytest.raises(InvalidSymbolInputError):
        fetch_file_prices(bad_symbol, date(2013, 2, 25), date(2013, 3, 1), data_dir)


def test_missing_file_is_no_data_naming_the_path(tmp_path):
    with pytest.raises(NoDataError) as caught:
        fetch_file_prices("MSFT", date(2013, 2, 25), date(2013, 3, 1), tmp_path)

    assert caught.value.reason == f"no price file {tmp_path / 'MSFT.csv'}"
    assert (caught.value.symbol, caught.value.source) == ("MSFT", "file")


def test_no_rows_in_the_range_is_no_data(tmp_path, ibm_prices):
    write_price_csv(tmp_path, "IBM", ibm_prices)

    with pytest.raises(NoDataError) as caught:
        fetch_file_prices("IBM", date(2024, 1, 2), date(2024, 1, 5), tmp_path)

    assert caught.value.reason == f"no rows between 2024-01-02 and 2024-01-05 in {tmp_path / 'IBM.csv'}"


def test_extra_column_is_named_in_the_error(tmp_path, ibm_prices):
    # A Yahoo-style export has an "Adj Close" column we do not accept.
    export = ibm_prices.rename(columns={"trade_date": "Date", "close": "Close"})
    export["Adj Close"] = export["Close"]
    export[["Date", "open", "high", "low", "Close", "Adj Close", "volume"]].to_csv(tmp_path / "IBM.csv", index=False)

    with pytest.raises(FileFormatError) as caught:
        fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 3, 1), tmp_path)

    assert "missing: none; unexpected: adj close" in caught.value.reason


def test_missing_column_is_named_in_the_error(tmp_path, ibm_prices):
    ibm_prices.rename(columns={"trade_date": "date"}).drop(columns=["symbol", "volume"]).to_csv(
        tmp_path / "IBM.csv", index=False
    )

    with pytest.raises(FileFormatError) as caught:
        fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 3, 1), tmp_path)

    assert "missing: volume; unexpected: none" in caught.value.reason


def test_empty_file_is_a_format_error(tmp_path):
    (tmp_path / "IBM.csv").write_text("")

    with pytest.raises(FileFormatError) as caught:
        fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 3, 1), tmp_path)

    assert "is not a readable CSV file" in caught.value.reason


def test_rows_come_back_sorted_and_bad_cells_are_left_for_the_validator(tmp_path, ibm_prices, caplog):
    rows = ibm_prices[ibm_prices["trade_date"].between("2013-02-26", "2013-02-28")].iloc[::-1].copy()
    rows[PRICE_FIELDS] = rows[PRICE_FIELDS].astype(str)
    rows.loc[rows["trade_date"] == "2013-02-27", "volume"] = ""  # an empty cell
    rows.loc[rows["trade_date"] == "2013-02-26", "close"] = "n/a"  # text where a number belongs
    undated = rows.iloc[[0]].assign(trade_date="02/28/2013")  # not YYYY-MM-DD: cannot be placed
    write_price_csv(tmp_path, "IBM", pd.concat([rows, undated]))

    with caplog.at_level(logging.WARNING, logger="src.ingestion.file_source"):
        result = fetch_file_prices("IBM", date(2013, 2, 26), date(2013, 2, 28), tmp_path)

    # The undated row is not dropped: it is passed on, and the validator quarantines it (invalid_date).
    assert result.prices["trade_date"].tolist() == ["02/28/2013", "2013-02-26", "2013-02-27", "2013-02-28"]
    assert result.prices["close"].tolist()[1] == "n/a"
    assert result.prices["volume"].tolist()[2] == ""
    assert "1 row(s) have a date that is not YYYY-MM-DD, e.g. ['02/28/2013']; passing them on" in caplog.text


def test_synthetic_folder_rows_are_labelled_synthetic(tmp_path, ibm_prices):
    write_price_csv(tmp_path, "IBM", ibm_prices)
    (tmp_path / SYNTHETIC_NOTE_FILE).write_text("synthetic demo data\n")

    result = fetch_file_prices("IBM", date(2013, 2, 25), date(2013, 3, 1), tmp_path)

    assert result.source == "file"
    assert result.prices["source"].unique().tolist() == ["synthetic"]


# --- odd files (issue 19, cases 8 and 10) --------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_fifo_price_file_is_refused_at_once_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "IBM.csv")  # nobody writes to it: a plain read would wait forever

    with pytest.raises(FileFormatError, match=r"IBM.csv is not a regular file \(a FIFO\); refusing to read it"):
        fetch_file_prices("IBM", date(2024, 1, 2), date(2024, 1, 5), tmp_path)


def test_a_folder_named_like_a_price_file_is_refused_with_a_reason(tmp_path):
    (tmp_path / "IBM.csv").mkdir()

    with pytest.raises(FileFormatError, match=r"IBM.csv is a directory, not a price file"):
        fetch_file_prices("IBM", date(2024, 1, 2), date(2024, 1, 5), tmp_path)


def test_windows_line_endings_are_read_like_before(tmp_path):
    (tmp_path / "IBM.csv").write_bytes(b"date,open,high,low,close,volume\r\n2024-01-02,1,2,0.5,1.5,100\r\n")

    result = fetch_file_prices("IBM", date(2024, 1, 2), date(2024, 1, 2), tmp_path)

    assert result.raw_payload == "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,100\n"


# --- <SYMBOL>.splits.csv -------------------------------------------------------------------------


def test_no_splits_file_means_no_splits(tmp_path):
    splits = read_splits_file("IBM", tmp_path)
    assert splits.empty
    assert list(splits.columns) == ["symbol", "effective_date", "split_factor", "source"]


def test_a_splits_file_is_read_and_checked(tmp_path):
    # AAPL's 2-for-1 splits of 2000-06-21 and 2005-02-28 (public records).
    (tmp_path / "AAPL.splits.csv").write_text("effective_date,split_factor\n2005-02-28, 2\n2000-06-21,2.0\n")
    assert read_splits_file("aapl", tmp_path).to_dict("records") == [
        {"symbol": "AAPL", "effective_date": "2000-06-21", "split_factor": 2.0, "source": "file"},
        {"symbol": "AAPL", "effective_date": "2005-02-28", "split_factor": 2.0, "source": "file"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("date,factor\n2005-02-28,2\n", "expected exactly effective_date,split_factor"),
        ("effective_date,split_factor\n28/02/2005,2\n", "row 1: effective_date '28/02/2005' is not a YYYY-MM-DD date"),
        (
            "effective_date,split_factor\n2000-06-21,2\n2005-02-28,0\n",
            "row 2: split_factor '0' is not a number above 0",
        ),
        ("effective_date,split_factor\n2005-02-28,-2\n", "split_factor '-2' is not a number above 0"),
        ("effective_date,split_factor\n2005-02-28,two\n", "split_factor 'two' is not a number above 0"),
        ("", "not a readable CSV file"),
    ],
)
def test_a_bad_splits_file_is_a_clear_error_naming_the_file(tmp_path, text, message):
    (tmp_path / "AAPL.splits.csv").write_text(text)
    with pytest.raises(SourceError, match=message) as caught:
        read_splits_file("AAPL", tmp_path)
    assert "AAPL.splits.csv" in caught.value.reason
