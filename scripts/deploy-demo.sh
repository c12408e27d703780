#!/usr/bin/env bash
# Deploy the CloudScale Finance ETL demo to AWS and Google Cloud from your machine.
#
# Checks every tool and credential first and lists everything that is missing before touching
# anything. Run scripts/deploy-demo.sh --help for the steps. docs/infrastructure.md explains the
# one-time setup, the cost and how to remove it all again (scripts/teardown-demo.sh).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/deploy-demo.sh [--plan-only] [--help]

Deploys the CloudScale Finance ETL demo (infrastructure/terraform) and runs the pipeline once:
  1. checks the tools (terraform >= 1.10, aws, docker, gcloud), your AWS and Google credentials
     and the Terraform inputs (terraform.tfvars or TF_VAR_*), and lists everything missing
  2. creates the Terraform state bucket <project>-tfstate-<account> if it does not exist
  3. builds the Lambda package (scripts/build-lambda.sh)
  4. terraform init and plan                      (--plan-only stops here)
  5. terraform apply
  6. stores ALPHA_VANTAGE_API_KEY and SLACK_WEBHOOK_URL from your environment in SSM, if set
  7. builds the Airflow image and pushes it to the ECR repository
  8. first run: the pipeline (in the new image) loads the last week for AAPL, MSFT and GOOG into
     S3 and BigQuery; every raw file it lands triggers the transform Lambda

Options:
  --plan-only   show what would change; changes nothing except creating the empty state
                bucket if it is missing (Terraform needs it to plan)
  -h, --help    show this help

Environment:
  AWS_PROFILE / AWS_REGION     which AWS account and state-bucket region to use
  DEMO_PROJECT_NAME            resource name prefix (default cloudscale-finance)
  ALPHA_VANTAGE_API_KEY        optional; without it the first run uses Yahoo only
  SLACK_WEBHOOK_URL            optional; alerts are logged as disabled without it

Exit codes: 0 deployed (or planned), 2 something is missing (the message says what), other
values come from the failing step.
EOF
}

plan_only=false
for arg in "$@"; do
  case "$arg" in
    --plan-only) plan_only=true ;;
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

echo "==> Checking tools, credentials and Terraform inputs"
tools=(terraform aws gcloud)
if [ "$plan_only" = false ]; then
  tools+=(docker)
fi
ready=true
check_prerequisites "${tools[@]}" || ready=false
check_terraform_inputs || ready=false
if [ ! -x "$DEMO_ROOT/scripts/build-lambda.sh" ]; then
  echo "Missing scripts/build-lambda.sh (it builds lambda-build/transform.zip)." >&2
  ready=false
fi
if [ "$ready" = false ]; then
  exit 2
fi
echo "    AWS account $AWS_ACCOUNT_ID, state in region $DEMO_STATE_REGION"

# ensure_state_bucket: create the (private, encrypted, versioned) state bucket once per account.
ensure_state_bucket() {
  local bucket
  bucket="$(state_bucket)"
  if aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
    echo "    state bucket s3://$bucket exists"
    return 0
  fi
  echo "    creating state bucket s3://$bucket"
  if [ "$DEMO_STATE_REGION" = "us-east-1" ]; then
    aws s3api create-bucket --bucket "$bucket" --region "$DEMO_STATE_REGION" >/dev/null
  else
    aws s3api create-bucket --bucket "$bucket" --region "$DEMO_STATE_REGION" \
      --create-bucket-configuration "LocationConstraint=$DEMO_STATE_REGION" >/dev/null
  fi
  aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
    "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"
  aws s3api put-bucket-versioning --bucket "$bucket" --versioning-configuration Status=Enabled
  aws s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
}

# store_secret ENV_NAME SSM_NAME: copy a secret from this shell's environment into SSM.
# The value is read through a pipe (file://), so it never appears in the process list or on disk.
store_secret() {
  local env_name="$1" ssm_name="$2"
  if [ -z "${!env_name:-}" ]; then
    echo "    $env_name not set: SSM parameter $ssm_name keeps its current value"
    return 0
  fi
  aws ssm put-parameter --name "$ssm_name" --type SecureString --key-id "alias/$DEMO_PROJECT" \
    --overwrite --value file://<(printf '%s' "${!env_name}") >/dev/null
  echo "    stored $env_name in SSM parameter $ssm_name"
}

echo "==> Terraform state"
ensure_state_bucket

echo "==> Building the Lambda package"
"$DEMO_ROOT/scripts/setup-env.sh"
"$DEMO_ROOT/scripts/build-lambda.sh"

echo "==> terraform init and plan"
terraform_init
tf plan -input=false -out=demo.tfplan
if [ "$plan_only" = true ]; then
  rm -f "$TF_DIR/demo.tfplan"
  echo "Plan only: nothing was applied. Run without --plan-only to deploy."
  exit 0
fi

echo "==> terraform apply"
tf apply -input=false demo.tfplan
rm -f "$TF_DIR/demo.tfplan"

region="$(tf output -raw aws_region)"
bucket="$(tf output -raw s3_bucket)"
ecr_url="$(tf output -raw ecr_repository_url)"
gcp_project="$(tf output -raw gcp_project_id)"
dataset="$(tf output -raw bigquery_dataset)"

echo "==> Secrets"
store_secret ALPHA_VANTAGE_API_KEY "$(tf output -raw ssm_alpha_vantage_api_key_name)"
store_secret SLACK_WEBHOOK_URL "$(tf output -raw ssm_slack_webhook_url_name)"

echo "==> Building and pushing the pipeline image"
image_tag="$(git -C "$DEMO_ROOT" rev-parse --short HEAD 2>/dev/null || echo local)-$(date -u +%Y%m%d%H%M%S)"
image="$ecr_url:$image_tag"
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "${ecr_url%%/*}"
docker build -f "$DEMO_ROOT/infrastructure/docker/Dockerfile" -t "$image" "$DEMO_ROOT"
docker push "$image"

echo "==> First run: the last 7 days for AAPL, MSFT, GOOG into S3 and BigQuery"
read -r start end < <(python3 -c 'import datetime as d; t = d.date.today(); print(t - d.timedelta(days=7), t - d.timedelta(days=1))')
adc_file="${CLOUDSDK_CONFIG:-$HOME/.config/gcloud}/application_default_credentials.json"
# Short-lived credentials of your AWS session, passed to the container by name only.
eval "$(aws configure export-credentials --format env)"
run_env=(
  -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN -e "AWS_DEFAULT_REGION=$region"
  -e "S3_BUCKET=$bucket" -e S3_CREATE_BUCKET=false
  -e WAREHOUSE_BACKEND=bigquery -e "GCP_PROJECT_ID=$gcp_project" -e "BIGQUERY_DATASET=$dataset"
  -e GOOGLE_APPLICATION_CREDENTIALS=/tmp/gcp-credentials.json
)
if [ -n "${ALPHA_VANTAGE_API_KEY:-}" ]; then
  run_env+=(-e ALPHA_VANTAGE_API_KEY)
else
  run_env+=(-e DATA_SOURCES=yahoo)
fi
if [ -n "${SLACK_WEBHOOK_URL:-}" ]; then
  run_env+=(-e SLACK_WEBHOOK_URL)
fi
first_run_status=0
docker run --rm --user "$(id -u):0" --entrypoint python "${run_env[@]}" \
  -v "$adc_file:/tmp/gcp-credentials.json:ro" \
  "$image" -m src.pipeline run --symbols AAPL,MSFT,GOOG --start "$start" --end "$end" || first_run_status=$?

cat <<EOF

Deployed.
  Data bucket        s3://$bucket
  Airflow image      $image
  BigQuery dataset   $gcp_project.$dataset
  Dashboard          $(tf output -raw cloudwatch_dashboard_url)
  Runtime IAM policy $(tf output -raw pipeline_runtime_policy_arn) (attach it to whatever runs Airflow)
Next:
  - confirm the SNS subscription email AWS sent to your alert address
  - run Airflow against these resources: docs/infrastructure.md, "Running Airflow against the cloud"
  - remove everything: scripts/teardown-demo.sh
EOF
if [ "$first_run_status" -ne 0 ]; then
  echo "The first pipeline run exited with $first_run_status (1 = some symbols failed): read its output above." >&2
  exit "$first_run_status"
fi
