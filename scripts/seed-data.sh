#!/usr/bin/env bash
# Prepare the offline data set used by the local stack (no API keys, no internet):
#   data/offline/       50 SYNTHETIC symbols (deterministic random walk) up to the latest
#                       completed NYSE session, so the daily run for "today" has data;
#   data/offline-real/  real daily prices for AAPL, GOOG, IBM, MSFT (2000-2013) shipped by
#                       the PyPI package bokeh-sampledata, for backfill demos of past ranges.
# Safe to run again: files are regenerated identically (same seed per symbol).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV_DIR:-$ROOT/.venv}"
"$VENV/bin/python" -m src.local_stack.synthetic_data \
  --out "${OFFLINE_DATA_DIR:-data/offline}" --symbols "${SEED_SYMBOLS:-50}" --years "${SEED_YEARS:-2}" \
  --real-out "${REAL_DATA_DIR:-data/offline-real}"
