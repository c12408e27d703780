#!/usr/bin/env bash
# Static checks of the infrastructure and delivery code. Each step prints what it checks; every
# step runs, then the script exits 1 if any failed (so you see all problems at once).
#
#   terraform fmt     infrastructure/terraform parses and is formatted (terraform fmt -check)
#   terraform rules   python-hcl2 checks of the Terraform: encryption, versioning, public access
#                     block, TLS-only policy, lifecycle, least-privilege IAM, log retention,
#                     alarms -> SNS, budget, BigQuery partitioning/clustering and schema drift;
#                     and infrastructure/terraform/schemas/*.json match src/storage/schema.py
#   checkov           Terraform, Dockerfile and GitHub Actions security checks: zero failures
#                     (every skip is written inline with its reason)
#   hadolint          Dockerfiles, findings of severity warning or worse
#   compose config    docker-compose.yml and docker-compose.local.yml are valid
#   actionlint        .github/workflows (including shellcheck of every run: block)
#   ShellCheck        scripts/*.sh, infrastructure/*.sh and .ci/run, severity warning or worse
#
# Needs the tools installed by scripts/install-linters.sh (a missing one is reported as such).
# Never uses the network: Terraform's update check is off and checkov runs with --skip-download.
#
# Usage: scripts/lint.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV_DIR:-$ROOT/.venv}"
CHECKOV_VENV="${CHECKOV_VENV_DIR:-$ROOT/.venv-checkov}"
cd "$ROOT"

# actionlint finds shellcheck on PATH; the tools all live in the virtualenvs.
export PATH="$VENV/bin:$PATH"
# No calls home: Terraform's version check, checkov's platform and update checks.
export CHECKPOINT_DISABLE=1 BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true

missing=()
for tool in "$VENV/bin/terraform" "$VENV/bin/hadolint" "$VENV/bin/docker-compose" \
  "$VENV/bin/actionlint" "$VENV/bin/shellcheck" "$CHECKOV_VENV/bin/checkov"; do
  [ -x "$tool" ] || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ERROR: linters not installed: ${missing[*]}" >&2
  echo "Install them with: ./scripts/install-linters.sh" >&2
  exit 1
fi

failed=()

# run_step NAME DESCRIPTION COMMAND...: run one check, print its result and time, remember failures.
run_step() {
  local name="$1" what="$2"
  shift 2
  local started=$SECONDS
  echo "==> $name: $what"
  if "$@"; then
    echo "    ok ($((SECONDS - started)) s)"
  else
    echo "    FAILED: $name ($((SECONDS - started)) s)"
    failed+=("$name")
  fi
}

mapfile -t dockerfiles < <(find infrastructure -name 'Dockerfile*' ! -name '*.dockerignore' | sort)
shell_scripts=(scripts/*.sh infrastructure/*.sh .ci/run)

run_step "terraform fmt" "Terraform in infrastructure/terraform parses and is formatted" \
  terraform fmt -check -recursive -diff infrastructure/terraform

# One pytest process for both (importing the BigQuery client takes a while).
run_step "terraform rules" "python-hcl2 checks of main.tf, and schemas/*.json generated from src/storage/schema.py" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  "tests/integration/test_infrastructure.py::TestTerraformRules" \
  "tests/integration/test_infrastructure.py::TestSchemaExport"

run_step "checkov" "security checks of Terraform, the Dockerfile and the workflows: 0 failed" \
  "$CHECKOV_VENV/bin/checkov" --directory infrastructure --directory .github \
  --framework terraform dockerfile github_actions --skip-download --compact --quiet

run_step "hadolint" "Dockerfiles have no finding of severity warning or worse: ${dockerfiles[*]}" \
  hadolint --failure-threshold warning "${dockerfiles[@]}"

# The compose files refuse to start without these secrets (no default passwords); placeholders
# let `config` validate the files without a real .env.
run_step "compose config" "docker-compose.yml + docker-compose.local.yml are valid" \
  env POSTGRES_PASSWORD=lint-placeholder AIRFLOW_ADMIN_PASSWORD=lint-placeholder \
  AIRFLOW_FERNET_KEY=lint-placeholder AIRFLOW_JWT_SECRET=lint-placeholder AIRFLOW_API_SECRET_KEY=lint-placeholder \
  docker-compose -f infrastructure/docker/docker-compose.yml -f infrastructure/docker/docker-compose.local.yml \
  config --quiet

run_step "actionlint" "GitHub Actions workflows in .github/workflows" \
  actionlint -no-color

run_step "shellcheck" "shell scripts have no finding of severity warning or worse: ${shell_scripts[*]}" \
  shellcheck --severity=warning --external-sources "${shell_scripts[@]}"

if [ "${#failed[@]}" -gt 0 ]; then
  echo "lint: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "lint: all checks passed"
