"""Tests for symbol validation: the gate before any network, file, S3 or SQL use of a symbol."""

from __future__ import annotations

import pytest

from src.ingestion.symbols import InvalidSymbolInputError, normalize_symbol, normalize_symbols


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("AAPL", "AAPL"),
        ("brk.b", "BRK.B"),
        (" msft ", "MSFT"),
        ("BF-B", "BF-B"),
        ("x", "X"),
        ("ABCDEFGHIJ", "ABCDEFGHIJ"),  # 10 characters: the longest allowed
    ],
)
def test_valid_symbols_are_trimmed_and_upper_cased(raw, clean):
    assert normalize_symbol(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "../x",
        "A;DROP TABLE x",
        "A" * 50,
        "ABCDEFGHIJK",  # 11 characters
        "ÄPPL",
        "１ABC",  # a full-width digit
        "1ABC",
        "AB CD",
        "AAPL/..",
        "-ABC",
        ".ABC",
    ],
)
def test_invalid_symbols_are_refused_with_the_input_named(raw):
    with pytest.raises(InvalidSymbolInputError) as caught:
        normalize_symbol(raw)

    assert caught.value.symbols == [raw]
    assert repr(raw) in str(caught.value)


def test_symbol_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidSymbolInputError):
        normalize_symbol("AAPL\n")


def test_non_ascii_letters_that_upper_case_to_ascii_are_refused():
    with pytest.raises(InvalidSymbolInputError):
        normalize_symbol("ıbm")  # dotless i


def test_non_string_input_is_refused():
    with pytest.raises(InvalidSymbolInputError) as caught:
        normalize_symbol(123)

    assert caught.value.symbols == ["123"]


def test_list_keeps_order_and_drops_repeats():
    assert normalize_symbols(["aapl", "MSFT", "AAPL ", "msft", "ibm"]) == ["AAPL", "MSFT", "IBM"]


def test_comma_separated_string_is_split():
    assert normalize_symbols("aapl, msft ,BRK.B") == ["AAPL", "MSFT", "BRK.B"]


def test_all_bad_symbols_are_reported_together():
    with pytest.raises(InvalidSymbolInputError) as caught:
        normalize_symbols(["AAPL", "../x", "1ABC", "MSFT", "AB CD", None])

    assert caught.value.symbols == ["../x", "1ABC", "AB CD", "None"]
    for bad in ("'../x'", "'1ABC'", "'AB CD'"):
        assert bad in str(caught.value)


@pytest.mark.parametrize(
    "empty",
    [[], (), "", " , ", ["", " "]],  # "" and " , " (an unset shell variable) split into blank symbols
)
def test_empty_list_is_refused(empty):
    with pytest.raises(InvalidSymbolInputError, match="no symbols given: the list is empty or blank") as caught:
        normalize_symbols(empty)

    assert caught.value.symbols == []
