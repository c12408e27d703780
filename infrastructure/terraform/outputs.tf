# Values the deploy scripts and the .env of a cloud run need. `terraform output` prints them;
# scripts/deploy-demo.sh reads them with `terraform output -raw <name>`.

output "aws_region" {
  description = "Region of the AWS resources: AWS_DEFAULT_REGION in .env."
  value       = local.region
}

output "gcp_project_id" {
  description = "Google Cloud project of the BigQuery dataset: GCP_PROJECT_ID in .env."
  value       = var.gcp_project_id
}

output "s3_bucket" {
  description = "Data bucket: S3_BUCKET in .env."
  value       = aws_s3_bucket.data.id
}

output "s3_access_log_bucket" {
  description = "Bucket that receives the data bucket's access logs."
  value       = aws_s3_bucket.logs.id
}

output "lambda_function_name" {
  description = "The transform Lambda: LAMBDA_FUNCTION_NAME in .env."
  value       = aws_lambda_function.transform.function_name
}

output "ecr_repository_url" {
  description = "Where to push the Airflow image (docker tag <this>:<version>)."
  value       = aws_ecr_repository.pipeline.repository_url
}

output "alerts_topic_arn" {
  description = "SNS topic of the alarms."
  value       = aws_sns_topic.alerts.arn
}

output "pipeline_runtime_policy_arn" {
  description = "Attach this policy to the role or user that runs Airflow."
  value       = aws_iam_policy.pipeline_runtime.arn
}

output "ssm_alpha_vantage_api_key_name" {
  description = "SSM parameter holding ALPHA_VANTAGE_API_KEY (set its value out of band)."
  value       = aws_ssm_parameter.alpha_vantage_api_key.name
}

output "ssm_slack_webhook_url_name" {
  description = "SSM parameter holding SLACK_WEBHOOK_URL (set its value out of band)."
  value       = aws_ssm_parameter.slack_webhook_url.name
}

output "cloudwatch_dashboard_url" {
  description = "The pipeline dashboard in the AWS console."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.pipeline.dashboard_name}"
}

output "bigquery_dataset" {
  description = "BIGQUERY_DATASET in .env."
  value       = google_bigquery_dataset.warehouse.dataset_id
}

output "bigquery_tables" {
  description = "Tables created in the dataset."
  value       = sort([for table in google_bigquery_table.warehouse : table.table_id])
}

output "pipeline_service_account" {
  description = "Service account the pipeline uses for BigQuery (impersonate it; no key files)."
  value       = google_service_account.pipeline.email
}
