# Inputs for the CloudScale Finance ETL cloud resources.
#
# Copy terraform.tfvars.example to terraform.tfvars (git-ignored) and fill in your values.
# Secrets are NOT variables here: the Alpha Vantage key and the Slack webhook are written to
# SSM Parameter Store out of band (see docs/infrastructure.md), so they never reach a tfvars
# file, the Terraform state or a plan output.

variable "project_name" {
  description = "Prefix for every resource name. Lower case letters, digits and dashes."
  type        = string
  default     = "cloudscale-finance"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.project_name))
    error_message = "project_name must be 3-31 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "environment" {
  description = "Environment label put on every resource (demo, staging, prod)."
  type        = string
  default     = "demo"
}

# ---------------------------------------------------------------- AWS

variable "aws_region" {
  description = "AWS region for the bucket, the Lambda and the alarms."
  type        = string
  default     = "us-east-1"
}

variable "alert_email" {
  description = "Email address that receives alarm and budget notifications (confirm the SNS subscription email once)."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an email address."
  }
}

variable "monthly_budget_usd" {
  description = "Monthly AWS spend (USD) that triggers the budget emails. The demo costs a few dollars a month."
  type        = number
  default     = 10
}

variable "cloudwatch_namespace" {
  description = "CloudWatch namespace of the pipeline's custom metrics (CLOUDWATCH_NAMESPACE in .env)."
  type        = string
  default     = "CloudScaleFinanceETL"
}

variable "aws_sdk_pandas_layer_arn" {
  description = <<-EOT
    ARN of the managed "AWS SDK for pandas" Lambda layer for Python 3.11 in your region
    (it provides pandas, numpy and pyarrow). Find the current one in the AWS SDK for pandas
    docs ("AWS Lambda Layers"), e.g. arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python311:<version>.
  EOT
  type        = string

  validation {
    condition     = can(regex("^arn:aws:lambda:[a-z0-9-]+:[0-9]{12}:layer:AWSSDKPandas-Python311:[0-9]+$", var.aws_sdk_pandas_layer_arn))
    error_message = "aws_sdk_pandas_layer_arn must be an AWSSDKPandas-Python311 layer version ARN (the runtime is python3.11)."
  }
}

variable "lambda_package_path" {
  description = "Zip built by scripts/build-lambda.sh, relative to this folder."
  type        = string
  default     = "../../lambda-build/transform.zip"
}

variable "lambda_memory_mb" {
  description = "Memory for the transform Lambda (CPU grows with it). 1024 MB handles a 50-symbol batch."
  type        = number
  default     = 1024
}

variable "lambda_timeout_seconds" {
  description = "Timeout of the transform Lambda. One raw file takes a few seconds; leave head room."
  type        = number
  default     = 300
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the Lambda's logs. A year of a daily job is a few MB."
  type        = number
  default     = 365
}

variable "raw_retention_days" {
  description = "Days raw API replies stay in S3 before they expire. They are the replay source: keep them long."
  type        = number
  default     = 730
}

variable "processed_retention_days" {
  description = "Days processed Parquet hand-off files stay in S3 (they can be rebuilt from raw/)."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------- Google Cloud

variable "gcp_project_id" {
  description = "Google Cloud project that holds the BigQuery dataset (GCP_PROJECT_ID in .env)."
  type        = string
}

variable "bigquery_dataset" {
  description = "BigQuery dataset name (BIGQUERY_DATASET in .env)."
  type        = string
  default     = "finance"
}

variable "bigquery_location" {
  description = "BigQuery dataset location (BIGQUERY_LOCATION in .env)."
  type        = string
  default     = "US"
}

variable "transform_on_s3_events" {
  description = "Run the transform Lambda on every new raw object (event-driven, without Airflow). Leave false when Airflow invokes it (TRANSFORM_BACKEND=lambda), or each file is transformed twice."
  type        = bool
  default     = false
}
