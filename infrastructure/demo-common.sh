# Shared helpers of scripts/deploy-demo.sh and scripts/teardown-demo.sh (sourced, not run).
#
# One place for: where things are, the prerequisite checks (tools and credentials, reported all
# at once), the Terraform state bucket name and `terraform init`.
# shellcheck shell=bash

DEMO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TF_DIR="$DEMO_ROOT/infrastructure/terraform"
# Must equal the Terraform variable project_name (it is passed on as TF_VAR_project_name).
DEMO_PROJECT="${DEMO_PROJECT_NAME:-cloudscale-finance}"
# Region of the Terraform state bucket (the resources' region is aws_region in terraform.tfvars).
DEMO_STATE_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
TERRAFORM_MIN_VERSION="1.10"
export TF_VAR_project_name="$DEMO_PROJECT" CHECKPOINT_DISABLE=1

# Filled in by check_prerequisites once the AWS credentials work.
AWS_ACCOUNT_ID=""

# tf ARGS...: run terraform in infrastructure/terraform.
tf() {
  terraform -chdir="$TF_DIR" "$@"
}

# version_at_least HAVE WANT: true when dotted version HAVE >= WANT (e.g. 1.15.3 >= 1.10).
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# check_prerequisites TOOL...: check the named tools (terraform, aws, docker, gcloud) and the
# credentials they need. Prints one line per problem with how to fix it, and returns 1 if there
# is any, so the user sees everything that is missing in one go. Nothing is changed anywhere.
check_prerequisites() {
  local problems=()
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      case "$tool" in
        terraform) problems+=("terraform: not found. Install Terraform >= $TERRAFORM_MIN_VERSION (https://developer.hashicorp.com/terraform/install).") ;;
        aws) problems+=("aws: not found. Install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html).") ;;
        docker) problems+=("docker: not found. Install Docker Engine or Docker Desktop with the compose plugin.") ;;
        gcloud) problems+=("gcloud: not found. Install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install).") ;;
      esac
      continue
    fi
    case "$tool" in
      terraform)
        local tf_version
        tf_version="$(terraform version 2>/dev/null | head -n1 | sed -e 's/^Terraform v//')"
        if ! version_at_least "$tf_version" "$TERRAFORM_MIN_VERSION"; then
          problems+=("terraform: version $tf_version found at $(command -v terraform), need >= $TERRAFORM_MIN_VERSION (the one in .venv is only for 'terraform fmt').")
        fi
        ;;
      aws)
        local aws_version
        aws_version="$(aws --version 2>&1 | head -n1)"
        if [[ "$aws_version" != aws-cli/2.* ]]; then
          problems+=("aws: '$aws_version' found, need AWS CLI v2 (for 'aws configure export-credentials').")
        elif ! AWS_ACCOUNT_ID="$(aws sts get-caller-identity --query Account --output text 2>/dev/null)" || [ -z "$AWS_ACCOUNT_ID" ]; then
          AWS_ACCOUNT_ID=""
          problems+=("AWS credentials: 'aws sts get-caller-identity' failed. Run 'aws configure sso' / 'aws sso login', or export AWS_PROFILE.")
        fi
        ;;
      docker)
        if ! docker info >/dev/null 2>&1; then
          problems+=("docker: the Docker daemon is not reachable. Start Docker (and check 'docker info').")
        fi
        ;;
      gcloud)
        if ! gcloud auth application-default print-access-token >/dev/null 2>&1; then
          problems+=("Google credentials: no application-default credentials. Run 'gcloud auth application-default login'.")
        fi
        ;;
    esac
  done

  if [ "${#problems[@]}" -gt 0 ]; then
    echo "Cannot continue; fix these first:" >&2
    local problem
    for problem in "${problems[@]}"; do
      echo "  - $problem" >&2
    done
    return 1
  fi
  return 0
}

# check_terraform_inputs: the variables without defaults must come from terraform.tfvars or TF_VAR_*.
check_terraform_inputs() {
  if [ -f "$TF_DIR/terraform.tfvars" ]; then
    return 0
  fi
  local missing=() name
  for name in alert_email gcp_project_id aws_sdk_pandas_layer_arn; do
    local env_name="TF_VAR_$name"
    [ -n "${!env_name:-}" ] || missing+=("$env_name")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "Terraform inputs missing: copy infrastructure/terraform/terraform.tfvars.example to terraform.tfvars" >&2
    echo "and fill it in, or export ${missing[*]}." >&2
    return 1
  fi
  return 0
}

# state_bucket: name of the S3 bucket that holds the Terraform state (one per account).
state_bucket() {
  echo "${DEMO_PROJECT}-tfstate-${AWS_ACCOUNT_ID}"
}

# terraform_init: connect Terraform to its state bucket.
terraform_init() {
  tf init -input=false -reconfigure \
    -backend-config="bucket=$(state_bucket)" \
    -backend-config="region=$DEMO_STATE_REGION"
}
