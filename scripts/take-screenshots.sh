#!/usr/bin/env bash
# Take the demo screenshots (docs/screenshots/demo-*.png) from the running local stack.
#
#   ./scripts/run-local.sh                  # once: start the stack and load a run
#   ./scripts/simulate-failure.sh on && ./scripts/simulate-failure.sh run && ./scripts/simulate-failure.sh off
#                                           # optional: a failed run and an alert to show
#   ./scripts/take-screenshots.sh           # Airflow grid/run/graph, dashboard, alerts, analytics
#
# Needs Debian's Chromium (apt-get install -y chromium). Ports as in run-local.sh (AIRFLOW_PORT).
# scripts/take-screenshots.py says what each picture shows.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV_DIR:-$ROOT/.venv}"

[ -x /usr/bin/chromium ] || { echo "error: /usr/bin/chromium is missing; install it with: apt-get install -y chromium" >&2; exit 1; }
exec "$VENV/bin/python" scripts/take-screenshots.py "$@"
