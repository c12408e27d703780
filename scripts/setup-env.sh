#!/usr/bin/env bash
# Create (or reuse) the project virtualenv in .venv and install the pinned requirements.
#
# Used by run-tests.sh and run-local.sh so both install the same way. Safe to run again:
# when requirements and the lock file have not changed since the last install, it does nothing.
#
# Usage: scripts/setup-env.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV_DIR:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"

cd "$ROOT"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> Creating virtualenv in $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# A hash of everything that decides what gets installed; if it matches the last install we skip.
stamp_file="$VENV/.install-stamp"
want_stamp="$(cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
  echo "==> Virtualenv is up to date ($VENV)"
  exit 0
fi

echo "==> Installing pinned requirements into $VENV (uv $UV_VERSION resolves and installs them quickly)"
"$VENV/bin/python" -m pip install --quiet "uv==$UV_VERSION"
# constraints.txt is the lock file: it pins every transitive dependency.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet \
  -r requirements-dev.txt -c constraints.txt
# Editable install of our own package so `import src.…` works in tests, the CLI and Airflow.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet --no-deps -e .

# bqemulator's DuckDB wants the spatial extension; without this it tries to download it,
# and this machine (like many CI runners) has no internet. The wheel ships it; install it once.
"$VENV/bin/python" -c "from duckdb_extensions import import_extension; import_extension('spatial')"

echo "$want_stamp" > "$stamp_file"
echo "==> Install complete"
