"""One symbol's series holds either synthetic demo rows or real prices, never both.

The offline demo's prices are generated (source 'synthetic', src/local_stack/synthetic_data.py);
every other source ('alpha_vantage', 'yahoo', 'file') carries real market prices. A chart or
an indicator over a series that holds both would draw one line from invented 2025 prices back
to real 2013 ones, and carry real averages into invented days. So a load that would add one
kind to a symbol whose stored rows are the other kind is refused, before anything is written,
with a message that says how to use a separate warehouse.
"""

from __future__ import annotations

import pandas as pd

from src.config import ConfigurationError

# The source of generated demo rows (the same value as src/ingestion/file_source.py names).
SYNTHETIC_SOURCE = "synthetic"


class MixedSeriesError(ConfigurationError):
    """A load would mix synthetic and real rows in one symbol's series (the CLI exits 2)."""


def kind_of(source: str) -> str:
    """'synthetic' for generated demo rows, 'real' for rows from a market data source."""
    return "synthetic" if source == SYNTHETIC_SOURCE else "real"


def _sources(sources: set[str]) -> str:
    return "source " + ", ".join(f"'{source}'" for source in sorted(sources))


def refuse_mixed_series(new: pd.DataFrame, stored: pd.DataFrame) -> None:
    """Raise when a symbol's new rows are not the kind its stored rows are.

    Args:
        new: the clean rows about to be loaded (symbol, source).
        stored: the symbol's stored rows the load reads anyway (`Warehouse.read_lookback`: the
            sessions before the new rows and every stored row after them, so any stored row of
            the series is seen when there is one).

    Raises:
        MixedSeriesError: names each such symbol, what it holds, and how to load the other
            kind into its own warehouse file (SQLITE_PATH).
    """
    if new.empty or stored.empty or "source" not in stored.columns:
        return
    stored_kinds = stored.groupby("symbol")["source"].agg(set).to_dict()
    clashes = []
    for symbol, sources in new.groupby("symbol")["source"].agg(set).items():
        held = stored_kinds.get(symbol)
        if not held:
            continue
        if {kind_of(source) for source in held} != {kind_of(source) for source in sources}:
            # A stored series is one kind (this check keeps it so): say what it holds.
            holds = "synthetic demo data" if kind_of(sorted(held)[0]) == "synthetic" else "real prices"
            adds = "real rows" if holds == "synthetic demo data" else "synthetic rows"
            clashes.append(f"{symbol} holds {holds} ({_sources(held)}): refusing to add {adds} ({_sources(sources)})")
    if clashes:
        raise MixedSeriesError(
            "; ".join(clashes) + ". A symbol's series never mixes synthetic and real rows. Load the other kind "
            "into a separate warehouse file, e.g. SQLITE_PATH=data/warehouse-real.db python -m src.pipeline run "
            "... (and point the dashboard and analytics at it with the same SQLITE_PATH)."
        )
