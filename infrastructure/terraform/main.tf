# CloudScale Finance ETL: the cloud resources of the demo deployment.
#
#   AWS:    S3 bucket (raw + processed zones) with an access-log bucket, the transform Lambda
#           fired by new raw files, CloudWatch logs / alarms / dashboard, an SNS alert topic,
#           SSM parameters for the two secrets, an ECR repository for the Airflow image, a budget.
#   Google: the BigQuery dataset and tables (schemas generated from src/storage/schema.py) and a
#           service account that may only edit that dataset and run query jobs.
#
# Everything is flat on purpose: one resource per thing, each with a comment saying why it exists.
# docs/infrastructure.md explains how to deploy it and what is checked offline.

terraform {
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.59"
    }
    google = {
      source  = "hashicorp/google"
      version = "~> 7.46"
    }
  }

  # Remote state in S3 with S3-native locking (Terraform >= 1.10). The bucket is created once
  # by scripts/deploy-demo.sh and passed at init time:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="region=<region>"
  backend "s3" {
    key          = "cloudscale-finance-etl/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.aws_region

  # Tags on every AWS resource: who owns it and that it can be torn down with the demo.
  default_tags {
    tags = local.tags
  }
}

provider "google" {
  project        = var.gcp_project_id
  default_labels = local.labels
}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  account_id    = data.aws_caller_identity.current.account_id
  region        = data.aws_region.current.region
  data_bucket   = "${var.project_name}-data-${local.account_id}"
  log_bucket    = "${var.project_name}-logs-${local.account_id}"
  lambda_name   = "${var.project_name}-transform"
  lambda_arn    = "arn:aws:lambda:${local.region}:${local.account_id}:function:${local.lambda_name}"
  ssm_prefix    = "/${var.project_name}/${var.environment}"
  alpha_key_ssm = "${local.ssm_prefix}/alpha_vantage_api_key"
  slack_url_ssm = "${local.ssm_prefix}/slack_webhook_url"

  tags = {
    Project     = var.project_name
    Environment = var.environment
    ManagedBy   = "terraform"
  }
  labels = {
    project     = var.project_name
    environment = var.environment
    managed-by  = "terraform"
  }

  # The dimension every pipeline metric carries (PIPELINE_DIMENSION in src/monitoring/metrics.py).
  # An alarm only matches data points with exactly its dimensions; a test checks they agree.
  metric_dimensions = { Pipeline = "daily_etl_pipeline" }

  # Partitioning and clustering of every BigQuery table, as declared in src/storage/schema.py
  # (partition_by / cluster_by). The column schemas are generated into schemas/<table>.json by
  # scripts/export-bq-schemas.py. tests/integration/test_infrastructure.py fails when either drifts.
  bigquery_tables = {
    dim_symbol                = { partition_field = null, clustering = [] }
    dim_date                  = { partition_field = null, clustering = [] }
    fact_daily_prices         = { partition_field = "trade_date", clustering = ["symbol"] }
    fact_technical_indicators = { partition_field = "trade_date", clustering = ["symbol"] }
    agg_weekly_prices         = { partition_field = "period_start", clustering = ["symbol"] }
    agg_monthly_prices        = { partition_field = "period_start", clustering = ["symbol"] }
    quarantine_prices         = { partition_field = null, clustering = ["symbol"] }
    fact_splits               = { partition_field = null, clustering = ["symbol"] }
    pipeline_runs             = { partition_field = null, clustering = [] }
  }
}

# =============================================================================================
# Encryption key
# =============================================================================================

# One customer-managed key for the alert topic, the log group and the SSM secrets. The alert
# topic needs it: CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS
# key, only to one whose key policy lets cloudwatch.amazonaws.com use it.
resource "aws_kms_key" "pipeline" {
  description             = "${var.project_name}: alert topic, Lambda logs and pipeline secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 7

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # AWS's default key policy: the account's IAM policies decide who administers and uses
        # the key. Without it the key could become unmanageable.
        Sid       = "AccountIamControlsTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # Publishing to the topic itself still needs the topic's permission (our account only).
        Sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptOurLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:aws:logs:${local.region}:${local.account_id}:log-group:*"
          }
        }
      },
    ]
  })
}

# A readable name for the key in the console and CLI.
resource "aws_kms_alias" "pipeline" {
  name          = "alias/${var.project_name}"
  target_key_id = aws_kms_key.pipeline.key_id
}

# =============================================================================================
# S3: the data bucket (raw/ and processed/ zones) and its access-log bucket
# =============================================================================================

# The data lake: raw API replies under raw/ (the replay source) and processed Parquet under
# processed/ (the hand-off between transform and load). docs/s3-zones.md describes the layout.
resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage and cost; raw replies can be fetched again from the APIs.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) is what the pipeline requests on every write; a KMS key would add cost and a kms:Decrypt grant for every reader.
  bucket = local.data_bucket
}

# Versioning keeps the previous reply when a rerun overwrites a raw file, so you can compare.
resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Encrypt every object at rest by default, even if a writer forgets to ask.
resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Market data licences do not allow re-publishing: nothing in this bucket may ever be public.
resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: access is decided by IAM and the bucket policy only (the modern S3 default).
resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Refuse plain-HTTP requests: data and credentials only travel over TLS. This Deny covers every
# S3 action on purpose (it is a Deny, not a grant).
data "aws_iam_policy_document" "data_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# Attaches the TLS-only policy above to the data bucket.
resource "aws_s3_bucket_policy" "data" {
  bucket     = aws_s3_bucket.data.id
  policy     = data.aws_iam_policy_document.data_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.data]
}

# Storage housekeeping. Raw replies are small (a few KB each), so Glacier or Intelligent-Tiering
# would cost more in per-object fees than they save: raw files simply expire after
# raw_retention_days. Processed Parquet can be rebuilt from raw/, so it expires sooner.
# Old versions and abandoned multipart uploads are cleaned up too.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "expire-raw-replies"
    status = "Enabled"
    filter {
      prefix = "raw/"
    }
    expiration {
      days = var.raw_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  rule {
    id     = "expire-processed-files"
    status = "Enabled"
    filter {
      prefix = "processed/"
    }
    expiration {
      days = var.processed_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

# Audit trail: every request to the data bucket is logged to the log bucket.
resource "aws_s3_bucket_logging" "data" {
  bucket        = aws_s3_bucket.data.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-access/${local.data_bucket}/"
}

# Receives the S3 server access logs of the data bucket.
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144:Access logs are an audit aid for a demo; a replica in a second region is not worth the cost.
  #checkov:skip=CKV_AWS_145:S3 server access logging only delivers to buckets encrypted with SSE-S3, not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing needs to react to new access-log files.
  bucket = local.log_bucket
  # S3 delivers access logs up to a few hours late, so logs of the teardown's own requests can
  # arrive after scripts/teardown-demo.sh emptied this bucket; let destroy delete them.
  force_destroy = true
}

# Versioning protects the audit trail against overwrites.
resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-S3: the only encryption S3 access-log delivery supports.
resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Logs name every caller and key: never public.
resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off; the logging service writes through the bucket policy below.
resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Lets the S3 logging service write logs for our data bucket only, and refuses plain HTTP.
data "aws_iam_policy_document" "log_bucket" {
  statement {
    sid       = "S3ServerAccessLogsFromOurDataBucket"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3-access/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.data.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# Attaches the log-delivery and TLS-only policy to the log bucket.
resource "aws_s3_bucket_policy" "logs" {
  bucket     = aws_s3_bucket.logs.id
  policy     = data.aws_iam_policy_document.log_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.logs]
}

# Access logs are for investigating recent events: keep them 90 days.
resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 90
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

# =============================================================================================
# The transform Lambda
# =============================================================================================

# The Lambda's own log group, created here so it has a retention and our KMS key (a group that
# Lambda creates by itself keeps logs forever).
resource "aws_cloudwatch_log_group" "transform" {
  name              = "/aws/lambda/${local.lambda_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.pipeline.arn
}

# Who may assume the role: the Lambda service (only functions given this role can use it).
data "aws_iam_policy_document" "transform_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# Exactly what the transform does, and nothing more: read raw replies, write processed files,
# write its own logs, publish metrics in our namespace, and hand failed events to the alert topic.
data "aws_iam_policy_document" "transform" {
  statement {
    sid       = "ReadRawReplies"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data.arn}/raw/*"]
  }

  statement {
    sid       = "WriteProcessedFiles"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.data.arn}/processed/*"]
  }

  statement {
    sid     = "WriteOwnLogs"
    effect  = "Allow"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    # Lambda names its log streams itself, so the streams of our one log group are matched with :*.
    resources = ["${aws_cloudwatch_log_group.transform.arn}:*"]
  }

  statement {
    sid     = "PublishPipelineMetrics"
    effect  = "Allow"
    actions = ["cloudwatch:PutMetricData"]
    # PutMetricData has no resource ARN, so AWS requires "*" here; the namespace condition
    # limits it to the pipeline's own metrics.
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.cloudwatch_namespace]
    }
  }

  statement {
    sid       = "SendFailedEventsToAlertTopic"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  statement {
    sid       = "UseKeyOfEncryptedAlertTopic"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = [aws_kms_key.pipeline.arn]
  }
}

# The identity the transform Lambda runs as.
resource "aws_iam_role" "transform" {
  name               = "${local.lambda_name}-role"
  assume_role_policy = data.aws_iam_policy_document.transform_assume.json
}

# Attaches the least-privilege policy above to the role (inline: it belongs to this role only).
resource "aws_iam_role_policy" "transform" {
  name   = "${local.lambda_name}-least-privilege"
  role   = aws_iam_role.transform.id
  policy = data.aws_iam_policy_document.transform.json
}

# The transform: reads one raw reply, validates it, computes indicators and writes Parquet to
# processed/. Same code as the local transform (src/transformation), packaged by
# scripts/build-lambda.sh; pandas/numpy/pyarrow come from the AWS SDK for pandas layer.
resource "aws_lambda_function" "transform" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing would need extra permissions and cost; logs and metrics cover a once-a-day job.
  #checkov:skip=CKV_AWS_115:New AWS accounts may have only 10 concurrent executions, and AWS refuses any reservation that leaves fewer than 10 unreserved.
  #checkov:skip=CKV_AWS_117:The function only talks to S3 and CloudWatch; a VPC would need NAT or endpoints that cost more than the whole demo.
  #checkov:skip=CKV_AWS_173:The environment holds only non-secret names (bucket, namespace, log level); secrets live in SSM.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the package is built and deployed by our own CI.
  function_name    = local.lambda_name
  description      = "CloudScale Finance ETL: transform raw replies into processed Parquet"
  role             = aws_iam_role.transform.arn
  runtime          = "python3.11"
  handler          = "src.lambda_handler.handler"
  filename         = var.lambda_package_path
  source_code_hash = filebase64sha256(var.lambda_package_path)
  layers           = [var.aws_sdk_pandas_layer_arn]
  memory_size      = var.lambda_memory_mb
  timeout          = var.lambda_timeout_seconds

  environment {
    variables = {
      S3_BUCKET            = aws_s3_bucket.data.id
      S3_CREATE_BUCKET     = "false"
      CLOUDWATCH_NAMESPACE = var.cloudwatch_namespace
      LOG_LEVEL            = "INFO"
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.transform.name
  }

  # S3 retries a failed asynchronous invocation twice; after that the event (bucket and key)
  # goes to the alert topic, so you know which file to reprocess.
  dead_letter_config {
    target_arn = aws_sns_topic.alerts.arn
  }

  depends_on = [aws_iam_role_policy.transform, aws_cloudwatch_log_group.transform]
}

# Lets S3 (our data bucket, in our account) invoke the transform. Only with
# transform_on_s3_events: by default Airflow invokes the Lambda directly (TRANSFORM_BACKEND=lambda),
# and an S3 trigger as well would transform every raw file twice.
resource "aws_lambda_permission" "allow_s3" {
  count = var.transform_on_s3_events ? 1 : 0

  statement_id   = "AllowInvokeFromDataBucket"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.transform.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.data.arn
  source_account = local.account_id
}

# With transform_on_s3_events, every new raw reply (raw/.../*.json.gz) triggers the transform.
# Its output goes to processed/, which does not match this filter, so it cannot trigger itself.
resource "aws_s3_bucket_notification" "raw_to_transform" {
  count = var.transform_on_s3_events ? 1 : 0

  bucket = aws_s3_bucket.data.id

  lambda_function {
    lambda_function_arn = aws_lambda_function.transform.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "raw/"
    filter_suffix       = ".json.gz"
  }

  depends_on = [aws_lambda_permission.allow_s3]
}

# =============================================================================================
# Alerts, alarms and the dashboard
# =============================================================================================

# Where alarms (and the Lambda's failed events) are sent. Encrypted with our key.
resource "aws_sns_topic" "alerts" {
  name              = "${var.project_name}-alerts"
  kms_master_key_id = aws_kms_key.pipeline.arn
}

# Emails the operator. AWS sends a confirmation email first: click the link once.
resource "aws_sns_topic_subscription" "alerts_email" {
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# A trading-day run that loaded no rows: the pipeline publishes RowsLoaded after every run on a
# trading day, so a day whose sum is 0 means every source failed. Days without a run (weekends,
# holidays) publish nothing and are "missing", which does not alarm.
resource "aws_cloudwatch_metric_alarm" "no_rows_loaded" {
  alarm_name          = "${var.project_name}-no-rows-loaded"
  alarm_description   = "A pipeline run on a trading day loaded 0 rows. Check the Airflow run and the Slack alert."
  namespace           = var.cloudwatch_namespace
  metric_name         = "RowsLoaded"
  dimensions          = local.metric_dimensions
  statistic           = "Sum"
  period              = 86400
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

# The pipeline stopped running altogether: no RowsLoaded data point for 4 days in a row (longer
# than any weekend plus holiday), so nothing is silently stale.
resource "aws_cloudwatch_metric_alarm" "pipeline_silent" {
  alarm_name          = "${var.project_name}-pipeline-silent"
  alarm_description   = "No pipeline run has reported for 4 days. Is the Airflow scheduler running?"
  namespace           = var.cloudwatch_namespace
  metric_name         = "RowsLoaded"
  dimensions          = local.metric_dimensions
  statistic           = "SampleCount"
  period              = 86400
  evaluation_periods  = 4
  datapoints_to_alarm = 4
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

# Some symbols had no data from any source: the run is "partial" and must not look green.
resource "aws_cloudwatch_metric_alarm" "symbols_failed" {
  alarm_name          = "${var.project_name}-symbols-failed"
  alarm_description   = "At least one symbol got no data from any source. The run summary names them."
  namespace           = var.cloudwatch_namespace
  metric_name         = "SymbolsFailed"
  dimensions          = local.metric_dimensions
  statistic           = "Maximum"
  period              = 86400
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

# The transform Lambda raised an error (after S3's retries the event also lands on the topic).
resource "aws_cloudwatch_metric_alarm" "transform_errors" {
  alarm_name          = "${var.project_name}-transform-errors"
  alarm_description   = "The transform Lambda failed. Read its log group for the traceback."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  dimensions = {
    FunctionName = aws_lambda_function.transform.function_name
  }
  alarm_actions = [aws_sns_topic.alerts.arn]
}

# One page with the pipeline's health: what it loaded, rejected and failed, how long it took,
# how fresh the data is, and how the Lambda behaves.
resource "aws_cloudwatch_dashboard" "pipeline" {
  dashboard_name = var.project_name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Rows loaded and quarantined per day"
          region = local.region
          stat   = "Sum"
          period = 86400
          view   = "timeSeries"
          metrics = [
            [var.cloudwatch_namespace, "RowsLoaded", "Pipeline", local.metric_dimensions.Pipeline],
            [var.cloudwatch_namespace, "RowsQuarantined", "Pipeline", local.metric_dimensions.Pipeline],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Symbols with no data from any source"
          region  = local.region
          stat    = "Maximum"
          period  = 86400
          view    = "timeSeries"
          metrics = [[var.cloudwatch_namespace, "SymbolsFailed", "Pipeline", local.metric_dimensions.Pipeline]]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Run duration (seconds)"
          region  = local.region
          stat    = "Maximum"
          period  = 86400
          view    = "timeSeries"
          metrics = [[var.cloudwatch_namespace, "RunDurationSeconds", "Pipeline", local.metric_dimensions.Pipeline]]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Freshness lag (days behind the latest session)"
          region  = local.region
          stat    = "Maximum"
          period  = 86400
          view    = "timeSeries"
          metrics = [[var.cloudwatch_namespace, "FreshnessLagDays", "Pipeline", local.metric_dimensions.Pipeline]]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 24, height = 6
        properties = {
          title  = "Transform Lambda"
          region = local.region
          stat   = "Sum"
          period = 3600
          view   = "timeSeries"
          metrics = [
            ["AWS/Lambda", "Invocations", "FunctionName", local.lambda_name],
            ["AWS/Lambda", "Errors", "FunctionName", local.lambda_name],
            ["AWS/Lambda", "Throttles", "FunctionName", local.lambda_name],
          ]
        }
      },
    ]
  })
}

# =============================================================================================
# Secrets, the image registry, the runtime policy and the budget
# =============================================================================================

# The Alpha Vantage key, read at run time by whoever starts the pipeline (see docs). Terraform
# only creates the parameter with a placeholder; set the real value out of band with
#   aws ssm put-parameter --name <name> --type SecureString --overwrite --value "$ALPHA_VANTAGE_API_KEY"
# ignore_changes keeps Terraform from resetting it, so the secret never enters tfvars or state.
resource "aws_ssm_parameter" "alpha_vantage_api_key" {
  name        = local.alpha_key_ssm
  description = "Alpha Vantage API key (ALPHA_VANTAGE_API_KEY). Set out of band."
  type        = "SecureString"
  key_id      = aws_kms_key.pipeline.arn
  value       = "not-set"

  lifecycle {
    ignore_changes = [value]
  }
}

# The Slack incoming-webhook URL (SLACK_WEBHOOK_URL); the URL itself is the credential.
resource "aws_ssm_parameter" "slack_webhook_url" {
  name        = local.slack_url_ssm
  description = "Slack incoming webhook URL (SLACK_WEBHOOK_URL). Set out of band."
  type        = "SecureString"
  key_id      = aws_kms_key.pipeline.arn
  value       = "not-set"

  lifecycle {
    ignore_changes = [value]
  }
}

# The Airflow image built from infrastructure/docker/Dockerfile. Tags are immutable, so a tag
# always means the same image; every push is scanned for known vulnerabilities.
resource "aws_ecr_repository" "pipeline" {
  name                 = "${var.project_name}-airflow"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = true # the demo teardown removes the images with the repository

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

# Keeps the last 10 images so the registry does not grow (and bill) forever.
resource "aws_ecr_lifecycle_policy" "pipeline" {
  repository = aws_ecr_repository.pipeline.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 10 most recent images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 10
      }
      action = { type = "expire" }
    }]
  })
}

# What the Airflow workers (or the CLI) need in AWS, for the role or user that runs them:
# land raw replies, read and write processed files, list both zones, invoke the transform,
# publish metrics in our namespace and read the two secrets.
data "aws_iam_policy_document" "pipeline_runtime" {
  statement {
    sid       = "ListDataBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }

  statement {
    sid       = "ReadWriteDataZones"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.data.arn}/raw/*", "${aws_s3_bucket.data.arn}/processed/*"]
  }

  statement {
    sid       = "InvokeTransform"
    effect    = "Allow"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.lambda_arn]
  }

  statement {
    sid     = "PublishPipelineMetrics"
    effect  = "Allow"
    actions = ["cloudwatch:PutMetricData"]
    # No resource ARN exists for metrics; the namespace condition is the limit.
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.cloudwatch_namespace]
    }
  }

  statement {
    sid       = "ReadPipelineSecrets"
    effect    = "Allow"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.alpha_vantage_api_key.arn, aws_ssm_parameter.slack_webhook_url.arn]
  }

  statement {
    sid       = "DecryptPipelineSecrets"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.pipeline.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com"]
    }
  }
}

# A managed policy, so you attach it to whatever runs Airflow (an EC2 instance role, an ECS task
# role, or a demo user) without Terraform having to know which.
resource "aws_iam_policy" "pipeline_runtime" {
  name        = "${var.project_name}-pipeline-runtime"
  description = "Least privilege for the CloudScale Finance ETL Airflow workers"
  policy      = data.aws_iam_policy_document.pipeline_runtime.json
}

# The safety net: emails when this month's AWS bill reaches 80 % of the budget, and when AWS
# forecasts it will pass 100 %, so a forgotten demo cannot run up a bill unnoticed.
resource "aws_budgets_budget" "monthly" {
  name         = "${var.project_name}-monthly"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_email_addresses = [var.alert_email]
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_email_addresses = [var.alert_email]
  }
}

# =============================================================================================
# Google Cloud: BigQuery
# =============================================================================================

# The BigQuery API must be on before datasets can be created. Left on at destroy time: other
# things in the project may use it.
resource "google_project_service" "bigquery" {
  service            = "bigquery.googleapis.com"
  disable_on_destroy = false
}

# The IAM API is needed to create the pipeline's service account.
resource "google_project_service" "iam" {
  service            = "iam.googleapis.com"
  disable_on_destroy = false
}

# The warehouse. delete_contents_on_destroy lets the demo teardown remove it with its tables
# (every row can be reloaded from the raw zone in S3).
resource "google_bigquery_dataset" "warehouse" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest is enough for public market prices; a CMEK needs Cloud KMS keys and grants.
  dataset_id                 = var.bigquery_dataset
  friendly_name              = "CloudScale Finance warehouse"
  description                = "Daily stock prices, indicators and aggregates loaded by CloudScale Finance ETL."
  location                   = var.bigquery_location
  delete_contents_on_destroy = true

  depends_on = [google_project_service.bigquery]
}

# The warehouse tables, one per entry in local.bigquery_tables. Columns come from
# schemas/<table>.json (generated from src/storage/schema.py). Partitions are MONTHs, like the
# pipeline's own create_schema (bigquery_handler.PARTITION_TYPE): 20 years of daily history stays
# within BigQuery's 4,000-partitions-per-job limit.
resource "google_bigquery_table" "warehouse" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest is enough for public market prices; a CMEK needs Cloud KMS keys and grants.
  #checkov:skip=CKV_GCP_121:The demo teardown must be able to delete the tables; all rows can be reloaded from the S3 raw zone.
  for_each = local.bigquery_tables

  dataset_id          = google_bigquery_dataset.warehouse.dataset_id
  table_id            = each.key
  schema              = file("${path.module}/schemas/${each.key}.json")
  clustering          = length(each.value.clustering) > 0 ? each.value.clustering : null
  deletion_protection = false

  dynamic "time_partitioning" {
    for_each = each.value.partition_field == null ? [] : [each.value.partition_field]
    content {
      type  = "MONTH"
      field = time_partitioning.value
    }
  }
}

# The identity the pipeline uses for BigQuery. No key file is created: CI uses workload identity
# federation and people impersonate it (docs/infrastructure.md).
resource "google_service_account" "pipeline" {
  account_id   = "${var.project_name}-etl"
  display_name = "CloudScale Finance ETL pipeline"

  depends_on = [google_project_service.iam]
}

# Read and write tables in our dataset only (not the rest of the project).
resource "google_bigquery_dataset_iam_member" "pipeline_data_editor" {
  dataset_id = google_bigquery_dataset.warehouse.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}

# Loads and MERGE queries are "jobs", and jobs run in a project, not in a dataset, so this one
# role has to be granted on the project. It lets the account run jobs, not read other data.
resource "google_project_iam_member" "pipeline_job_user" {
  project = var.gcp_project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}
