"""The transform step: raw source prices in, clean prices and quarantined rows out.

This is the one transform function: `steps.transform_batch` calls it, in the CLI, in the Airflow
task and in the AWS Lambda (`src/lambda_handler.py`) alike. It is stateless on purpose (no
warehouse access), so it can run anywhere: indicators, which need the stored history, are
computed at load time (`transformation/warehouse_rows.py`, called by `steps.load_batch`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date

import pandas as pd

from src.transformation.data_validator import validate_prices

logger = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ["symbol", "trade_date", "record_hash", "raw_record", "reason", "source"]


def _with_record_hash(rejected: pd.DataFrame) -> pd.DataFrame:
    """Add `record_hash` (sha256 of the raw record) so reruns upsert instead of piling up."""
    frame = rejected.copy()
    frame["trade_date"] = frame["trade_date"].fillna("").astype(str)
    frame["raw_record"] = frame["raw_record"].astype(str)
    frame["record_hash"] = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in frame["raw_record"]]
    return frame[QUARANTINE_COLUMNS]


def transform_prices(raw_prices: pd.DataFrame, run_date: date | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate raw prices; every input row ends up in exactly one of the two outputs.

    The flags that compare a row with the symbol's earlier rows (large_move, gap_before,
    return_outlier) are added at load time, with the stored lookback in view
    (`cleaner.add_history_flags`): this step sees only the batch, and stays stateless.

    Args:
        raw_prices: normalised prices straight from the sources (values may still be strings),
            columns symbol, trade_date, open, high, low, close, volume, source.
        run_date: the run's logical date; rows dated after it are rejected.

    Returns:
        (clean_prices, quarantine): clean rows with typed values and `quality_flags`, and the
        rejected rows with `reason`, `raw_record` and `record_hash` (ready for `quarantine_prices`).
    """
    clean, quarantine = validate_prices(raw_prices, run_date=run_date)
    if quarantine.empty:
        quarantine = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    else:
        quarantine = _with_record_hash(quarantine)
    logger.info(
        "transform: %d input rows -> %d clean, %d quarantined (run date %s)",
        len(raw_prices),
        len(clean),
        len(quarantine),
        run_date,
    )
    return clean, quarantine
