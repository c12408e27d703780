#!/usr/bin/env bash
# Install everything the tests need and run the whole suite (unit + integration + e2e).
#
# Works on a fresh clone: creates/reuses .venv, installs the pinned requirements, then runs pytest.
# Exits non-zero when anything fails. Extra arguments go to pytest, e.g.
#   ./scripts/run-tests.sh tests/unit -k alpha
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/setup-env.sh"
# Offline linters used by the infrastructure tests (terraform fmt, checkov, hadolint, ...).
"$ROOT/scripts/install-linters.sh"
VENV="${VENV_DIR:-$ROOT/.venv}"

# The browser tests (Airflow UI, dashboard) drive Debian's Chromium through Playwright;
# Playwright's own browser download needs the internet, so we use the distribution package.
# curl is used by run-local.sh, which the Airflow UI test starts.
"$ROOT/scripts/install-debian-packages.sh" chromium curl

# Tests must never talk to the real APIs or cloud: make sure stray settings from a
# developer's shell or .env cannot point them anywhere but loopback.
export PIPELINE_ENV_FILE=/dev/null
unset ALPHA_VANTAGE_API_KEY SLACK_WEBHOOK_URL AWS_ENDPOINT_URL S3_BUCKET BIGQUERY_API_ENDPOINT || true

echo "==> Scanning the repository for secrets (detect-secrets against .secrets.baseline)"
"$ROOT/scripts/secret-scan.sh"

echo "==> Running the test suite"
set +e
"$VENV/bin/python" -m pytest "${@:-tests}"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$status"
