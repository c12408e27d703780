#!/usr/bin/env bash
# Secret scan: detect-secrets over every file git tracks, against the committed .secrets.baseline.
#
#   ./scripts/secret-scan.sh            fail (exit 1) on any finding that is not in the baseline
#   ./scripts/secret-scan.sh --update   rewrite .secrets.baseline after reviewing new findings
#
# The baseline lists findings a person has reviewed (test dummies such as moto's "testing"
# credentials). Only tracked files are scanned, so .venv, data/ and build output never are.
set -euo pipefail

cd "$(dirname "$0")/.."
DETECT_SECRETS=".venv/bin/detect-secrets"
if [[ ! -x "$DETECT_SECRETS" ]]; then
    echo "secret-scan: $DETECT_SECRETS not found; run ./scripts/setup-env.sh first" >&2
    exit 2
fi

if [[ "${1:-}" == "--update" ]]; then
    git ls-files -z | xargs -0 "$DETECT_SECRETS" scan --baseline .secrets.baseline
    echo "secret-scan: .secrets.baseline updated; review it (detect-secrets audit .secrets.baseline) and commit it"
    exit 0
fi

# detect-secrets-hook exits 1 and lists the file and line of every finding not in the baseline.
# `detect-secrets scan` reads the files git tracks. Findings are compared with the baseline by
# (file, hashed secret, type), not by line number: moving a reviewed test dummy up or down a file
# is not a new secret (detect-secrets-hook would rewrite the baseline and fail instead).
current="$(mktemp)"
trap 'rm -f "$current"' EXIT
"$DETECT_SECRETS" scan --exclude-files '^\.secrets\.baseline$' >"$current"
.venv/bin/python - "$current" .secrets.baseline <<'PY'
import json
import sys

def findings(path):
    results = json.load(open(path))["results"]
    return {(name, item["hashed_secret"], item["type"]) for name, items in results.items() for item in items}

new = sorted(findings(sys.argv[1]) - findings(sys.argv[2]))
for name, _, kind in new:
    print(f"secret-scan: possible secret ({kind}) in {name}: remove it, or mark a test dummy with "
          "'# pragma: allowlist secret'", file=sys.stderr)
sys.exit(1 if new else 0)
PY
echo "secret-scan: no new secrets in $(git ls-files | wc -l) tracked files"
