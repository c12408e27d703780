#!/usr/bin/env bash
# Remove everything scripts/deploy-demo.sh created, then report what is left.
#
# Asks for confirmation first (type the project name), unless --yes is given. Run
# scripts/teardown-demo.sh --help for the steps.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/teardown-demo.sh [--yes] [--help]

Destroys the CloudScale Finance ETL demo:
  1. checks the tools (terraform >= 1.10, aws, gcloud) and your AWS and Google credentials
  2. lists the resources in the Terraform state and asks you to type the project name
  3. empties the data and access-log buckets, including every object version and delete marker
     (S3 refuses to delete a versioned bucket that still holds old versions)
  4. terraform destroy (BigQuery tables and dataset, Lambda, alarms, SSM, ECR images, ...)
  5. reports what is left (the state bucket, the KMS key's deletion window, local files)

Options:
  -y, --yes    do not ask for confirmation (for scripts; be careful)
  -h, --help   show this help

Environment: AWS_PROFILE / AWS_REGION and DEMO_PROJECT_NAME, as for scripts/deploy-demo.sh.
EOF
}

assume_yes=false
for arg in "$@"; do
  case "$arg" in
    -y | --yes) assume_yes=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "Unknown option: $arg" >&2
      usage >&2
      exit 2
      ;;
  esac
done

# shellcheck source=infrastructure/demo-common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/infrastructure/demo-common.sh"

echo "==> Checking tools and credentials"
check_prerequisites terraform aws gcloud || exit 2

state_bucket_name="$(state_bucket)"
if ! aws s3api head-bucket --bucket "$state_bucket_name" >/dev/null 2>&1; then
  echo "No Terraform state bucket s3://$state_bucket_name in account $AWS_ACCOUNT_ID: nothing was deployed"
  echo "from here with DEMO_PROJECT_NAME=$DEMO_PROJECT (or it is already gone). Nothing to do."
  exit 0
fi

terraform_init >/dev/null
mapfile -t managed < <(tf state list)
if [ "${#managed[@]}" -eq 0 ]; then
  echo "The Terraform state is empty: nothing to destroy."
else
  echo "This destroys ${#managed[@]} resources of '$DEMO_PROJECT' (AWS account $AWS_ACCOUNT_ID), including all"
  echo "data in the S3 buckets and the BigQuery dataset:"
  printf '    %s\n' "${managed[@]}"
  if [ "$assume_yes" = false ]; then
    if [ ! -t 0 ]; then
      echo "Refusing to destroy without confirmation: no terminal to ask on. Re-run with --yes." >&2
      exit 1
    fi
    read -r -p "Type the project name ($DEMO_PROJECT) to destroy it: " answer
    if [ "$answer" != "$DEMO_PROJECT" ]; then
      echo "Aborted: nothing was changed."
      exit 1
    fi
  fi
fi

# empty_bucket NAME: delete every object version and delete marker, 1000 at a time.
empty_bucket() {
  local bucket="$1" batch deleted=0
  if ! aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
    echo "    s3://$bucket does not exist"
    return 0
  fi
  while true; do
    # shellcheck disable=SC2016  # the backticks are a JMESPath literal, not a shell command
    batch="$(aws s3api list-object-versions --bucket "$bucket" --max-items 1000 --output json \
      --query '{Objects: [Versions, DeleteMarkers][][].{Key: Key, VersionId: VersionId}, Quiet: `true`}')"
    if ! grep -q '"Key"' <<<"$batch"; then
      break
    fi
    aws s3api delete-objects --bucket "$bucket" --delete "$batch" >/dev/null
    deleted=$((deleted + $(grep -c '"Key"' <<<"$batch")))
  done
  echo "    s3://$bucket emptied ($deleted object versions and delete markers removed)"
}

if [ "${#managed[@]}" -gt 0 ]; then
  echo "==> Emptying the buckets"
  for output in s3_bucket s3_access_log_bucket; do
    if bucket="$(tf output -raw "$output" 2>/dev/null)" && [ -n "$bucket" ]; then
      empty_bucket "$bucket"
    fi
  done

  echo "==> terraform destroy"
  tf destroy -input=false -auto-approve
fi

echo "==> What is left"
mapfile -t remaining < <(tf state list)
if [ "${#remaining[@]}" -eq 0 ]; then
  echo "  - Terraform manages nothing any more."
else
  echo "  - STILL IN THE STATE (destroy failed for these; re-run this script):"
  printf '      %s\n' "${remaining[@]}"
fi
cat <<EOF
  - s3://$state_bucket_name keeps the (now empty) Terraform state and its history. Remove it with:
      aws s3api delete-bucket --bucket $state_bucket_name   (after deleting its object versions)
  - The KMS key alias/$DEMO_PROJECT is scheduled for deletion (7-day waiting period, AWS's minimum).
  - One-time CI setup is not managed here (GitHub OIDC role, Google workload identity pool):
    see docs/infrastructure.md, "Removing the CI setup".
  - On this machine: lambda-build/ and the pipeline images in 'docker images'.
EOF
if [ "${#remaining[@]}" -gt 0 ]; then
  exit 1
fi
