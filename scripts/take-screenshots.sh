#!/usr/bin/env bash
# Take the demo screenshots (docs/screenshots/demo-*.png) from the running local stack.
#
#   ./scripts/run-local.sh                  # once: start the stack and load a run
#   ./scripts/simulate-failure.sh on && ./scripts/simulate-failure.sh run && ./scripts/simulate-failure.sh off
#                                           # optional: a failed run and an alert to show
#   ./scripts/take-screenshots.sh           # Airflow grid/run/graph, dashboard, alerts, analytics
#
# Installs Debian's Chromium when it is missing. Ports as in run-local.sh (AIRFLOW_PORT).
# scripts/take-screenshots.py says what each picture shows.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV_DIR:-$ROOT/.venv}"

"$ROOT/scripts/install-debian-packages.sh" chromium
exec "$VENV/bin/python" scripts/take-screenshots.py "$@"
