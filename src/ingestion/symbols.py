"""Ticker symbol validation: the gate every symbol passes before any network, file, S3 or SQL use.

A symbol is trimmed and upper-cased, then must match `^[A-Z][A-Z0-9.\\-]{0,9}$`: a letter,
then up to nine letters, digits, dots or dashes (e.g. `BRK.B`, `BF-B`). That rules out
path tricks (`../x`), SQL (`A;DROP TABLE x`), whitespace inside, Unicode and over-long input,
so later code can safely build S3 keys and file names from a validated symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


class InvalidSymbolInputError(ValueError):
    """One or more symbols are not valid ticker symbols. `.symbols` lists the bad inputs."""

    def __init__(self, bad_symbols: list[str]):
        self.symbols = bad_symbols
        if not bad_symbols:
            # An empty or blank list (e.g. an unset shell variable): never "all the defaults".
            super().__init__(
                "no symbols given: the list is empty or blank. Name at least one symbol (e.g. AAPL,MSFT), "
                "or leave the symbols out to use SYMBOLS from the settings."
            )
            return
        shown = ", ".join(repr(s) for s in bad_symbols)
        super().__init__(
            f"invalid symbol(s): {shown}. A symbol is 1-10 characters: a letter A-Z first, "
            "then letters, digits, '.' or '-' (e.g. AAPL, BRK.B)."
        )


def normalize_symbol(raw: str) -> str:
    """Trim and upper-case one symbol and check it.

    Args:
        raw: user input, e.g. " aapl ".

    Returns:
        The clean symbol, e.g. "AAPL".

    Raises:
        InvalidSymbolInputError: the input is not a valid symbol.

    Example:
        >>> normalize_symbol(" brk.b ")
        'BRK.B'
    """
    if not isinstance(raw, str):
        raise InvalidSymbolInputError([repr(raw)])
    # Trim spaces only: a newline or tab inside user input is refused, not silently removed.
    symbol = raw.strip(" ").upper()
    # Check ASCII on the raw input: upper() maps some non-ASCII letters to ASCII ('ı' -> 'I').
    if not raw.isascii() or not SYMBOL_PATTERN.fullmatch(symbol):
        raise InvalidSymbolInputError([raw])
    return symbol


def normalize_symbols(raw_symbols: Iterable[str] | str) -> list[str]:
    """Validate a list of symbols (or one comma-separated string); keep order, drop repeats.

    Every symbol is checked before any is returned, and all bad ones are reported together,
    so a typo stops the run before any API quota is spent.

    Args:
        raw_symbols: e.g. ["aapl", " MSFT"] or "aapl, msft".

    Returns:
        e.g. ["AAPL", "MSFT"].

    Raises:
        InvalidSymbolInputError: at least one symbol is invalid, or the list is empty or blank
            (`.symbols` is then []).
    """
    if isinstance(raw_symbols, str):
        raw_symbols = raw_symbols.split(",")
    items = list(raw_symbols)
    if all(isinstance(raw, str) and not raw.strip(" ") for raw in items):
        raise InvalidSymbolInputError([])  # "", " , " or []: nothing was named
    clean: list[str] = []
    bad: list[str] = []
    for raw in items:
        try:
            symbol = normalize_symbol(raw)
        except InvalidSymbolInputError:
            bad.append(raw if isinstance(raw, str) else repr(raw))
            continue
        if symbol not in clean:
            clean.append(symbol)
    if bad:
        raise InvalidSymbolInputError(bad)
    return clean
