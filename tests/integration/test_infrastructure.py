"""Static checks of the infrastructure code: Terraform, Docker, GitHub Actions and the demo scripts.

Nothing here needs a cloud account, a Docker engine or the network. The Terraform files are
parsed with python-hcl2 and their properties asserted (encryption, least privilege, alarms,
BigQuery schema against src/storage/schema.py, ...); the linters (terraform fmt, checkov,
hadolint, docker-compose config, actionlint, shellcheck) are run on the real files; the demo
scripts are run with tools taken away or replaced by stubs, so they can never reach the cloud.

The linters come from scripts/install-linters.sh. A missing one fails its test with that advice
(nothing is skipped silently). scripts/lint.sh runs the `TestTerraformRules` class as one step.

    .venv/bin/python -m pytest tests/integration/test_infrastructure.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.monitoring.metrics import PIPELINE_DIMENSION
from src.storage.bigquery_handler import PARTITION_TYPE
from src.storage.schema import TABLES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infrastructure" / "terraform"
DOCKER_DIR = ROOT / "infrastructure" / "docker"
WORKFLOWS = ROOT / ".github" / "workflows"
VENV_BIN = Path(sys.executable).parent
CHECKOV_BIN = ROOT / ".venv-checkov" / "bin"

NAMESPACE = "CloudScaleFinanceETL"
PIPELINE_METRICS = ("RowsLoaded", "RowsQuarantined", "SymbolsFailed", "RunDurationSeconds", "FreshnessLagDays")
# Placeholders for the secrets the compose files require (they have no defaults on purpose).
COMPOSE_SECRETS = dict.fromkeys(
    (
        "POSTGRES_PASSWORD",
        "AIRFLOW_ADMIN_PASSWORD",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
    ),
    "test-placeholder",
)
# schema.py logical type -> the BigQuery types that mean it (standard SQL name or legacy name).
BIGQUERY_TYPES = {
    "STRING": {"STRING"},
    "DATE": {"DATE"},
    "TIMESTAMP": {"TIMESTAMP"},
    "FLOAT": {"FLOAT64", "FLOAT"},
    "INTEGER": {"INT64", "INTEGER"},
    "BOOLEAN": {"BOOL", "BOOLEAN"},
}


# --- Helpers --------------------------------------------------------------------------------------


def linter(name: str) -> str:
    """Return the path of an installed linter, or fail the test saying how to install it."""
    folder = CHECKOV_BIN if name == "checkov" else VENV_BIN
    path = folder / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed at {path}: run ./scripts/install-linters.sh")
    return str(path)


def run(command: list[str], env: dict | None = None, cwd: Path = ROOT, timeout: int = 120):
    """Run a command offline (no update checks) and return the CompletedProcess with its text output."""
    full_env = {**os.environ, "CHECKPOINT_DISABLE": "1", "BC_SKIP_MAPPING": "TRUE", **(env or {})}
    full_env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def json_documents(text: str) -> list:
    """Decode text made of several JSON documents one after the other (checkov prints one per folder)."""
    decoder = json.JSONDecoder()
    documents, position = [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents


def load_hcl(path: Path) -> dict:
    """Parse one Terraform file; strings come back without their quotes, blocks as lists."""
    try:
        import hcl2
    except ImportError:
        pytest.fail("python-hcl2 is not installed: run ./scripts/install-linters.sh")

    options = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    with open(path, encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=options)


def blocks_of(parsed: dict, kind: str, type_name: str) -> dict[str, dict]:
    """Return {name: body} of every `kind` ("resource" or "data") block of one type."""
    found = {}
    for entry in parsed.get(kind, []):
        for name, body in entry.get(type_name, {}).items():
            found[name] = body
    return found


def ref(type_name: str, name: str, attribute: str) -> str:
    """The interpolation string python-hcl2 gives for a reference, e.g. '${aws_s3_bucket.data.id}'."""
    return f"${{{type_name}.{name}.{attribute}}}"


def single(block_list: list) -> dict:
    """Nested blocks are lists; return the only one."""
    assert len(block_list) == 1, block_list
    return block_list[0]


def attached_to_bucket(resources, type_name: str, bucket_id: str) -> dict:
    """The one resource of `type_name` (versioning, encryption, ...) that configures a bucket."""
    return single([body for body in resources(type_name).values() if body["bucket"] == bucket_id])


@pytest.fixture(scope="module")
def main_tf() -> dict:
    return load_hcl(TF_DIR / "main.tf")


@pytest.fixture(scope="module")
def variables() -> dict[str, dict]:
    parsed = load_hcl(TF_DIR / "variables.tf")
    return {name: body for entry in parsed["variable"] for name, body in entry.items()}


@pytest.fixture(scope="module")
def resources(main_tf):
    return lambda type_name: blocks_of(main_tf, "resource", type_name)


@pytest.fixture(scope="module")
def policy_documents(main_tf) -> dict[str, list[dict]]:
    """{data.aws_iam_policy_document name: its statements}."""
    return {name: body["statement"] for name, body in blocks_of(main_tf, "data", "aws_iam_policy_document").items()}


# --- Terraform, parsed ----------------------------------------------------------------------------


class TestTerraformRules:
    """Properties of infrastructure/terraform, read with python-hcl2."""

    def test_providers_are_pinned(self, main_tf):
        settings = single(main_tf["terraform"])
        providers = single(settings["required_providers"])
        assert providers == {
            "aws": {"source": "hashicorp/aws", "version": "~> 6.59"},
            "google": {"source": "hashicorp/google", "version": "~> 7.46"},
        }
        assert settings["required_version"] == ">= 1.10.0, < 2.0.0"
        assert single(settings["backend"])["s3"] == {
            "key": "cloudscale-finance-etl/terraform.tfstate",
            "encrypt": True,
            "use_lockfile": True,
        }

    def test_every_bucket_is_encrypted_versioned_private_and_acl_free(self, resources):
        buckets = resources("aws_s3_bucket")
        assert set(buckets) == {"data", "logs"}
        for name in buckets:
            bucket_id = ref("aws_s3_bucket", name, "id")
            encryption = attached_to_bucket(resources, "aws_s3_bucket_server_side_encryption_configuration", bucket_id)
            default = single(single(encryption["rule"])["apply_server_side_encryption_by_default"])
            assert default == {"sse_algorithm": "AES256"}, name
            versioning = attached_to_bucket(resources, "aws_s3_bucket_versioning", bucket_id)
            assert single(versioning["versioning_configuration"]) == {"status": "Enabled"}, name
            assert attached_to_bucket(resources, "aws_s3_bucket_public_access_block", bucket_id) == {
                "bucket": bucket_id,
                "block_public_acls": True,
                "block_public_policy": True,
                "ignore_public_acls": True,
                "restrict_public_buckets": True,
            }, name
            ownership = attached_to_bucket(resources, "aws_s3_bucket_ownership_controls", bucket_id)
            assert single(ownership["rule"]) == {"object_ownership": "BucketOwnerEnforced"}, name

    def test_every_bucket_policy_denies_plain_http(self, resources, policy_documents):
        policies = resources("aws_s3_bucket_policy")
        assert {p["bucket"] for p in policies.values()} == {
            ref("aws_s3_bucket", "data", "id"),
            ref("aws_s3_bucket", "logs", "id"),
        }
        for policy in policies.values():
            document_name = policy["policy"].removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
            bucket = policy["bucket"].removeprefix("${aws_s3_bucket.").removesuffix(".id}")
            arn = ref("aws_s3_bucket", bucket, "arn")
            deny = [s for s in policy_documents[document_name] if s["effect"] == "Deny"]
            assert deny == [
                {
                    "sid": "DenyInsecureTransport",
                    "effect": "Deny",
                    "actions": ["s3:*"],
                    "resources": [arn, f"${{aws_s3_bucket.{bucket}.arn}}/*"],
                    "principals": [{"type": "*", "identifiers": ["*"]}],
                    "condition": [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}],
                }
            ]

    def test_lifecycle_expires_raw_files_and_aborts_multipart_uploads(self, resources, variables):
        lifecycles = {b["bucket"]: b for b in resources("aws_s3_bucket_lifecycle_configuration").values()}
        data_rules = {rule["id"]: rule for rule in lifecycles[ref("aws_s3_bucket", "data", "id")]["rule"]}
        assert set(data_rules) == {"expire-raw-replies", "expire-processed-files", "abort-incomplete-multipart-uploads"}
        raw = data_rules["expire-raw-replies"]
        assert single(raw["filter"]) == {"prefix": "raw/"}
        assert single(raw["expiration"]) == {"days": "${var.raw_retention_days}"}
        assert variables["raw_retention_days"]["default"] == 730
        assert single(data_rules["expire-processed-files"]["filter"]) == {"prefix": "processed/"}
        abort = data_rules["abort-incomplete-multipart-uploads"]
        assert single(abort["abort_incomplete_multipart_upload"]) == {"days_after_initiation": 7}
        assert all(rule["status"] == "Enabled" for rule in data_rules.values())
        # Small objects gain nothing from Glacier: no storage-class transitions at all.
        assert not any("transition" in rule for rule in data_rules.values())

        log_rule = single(lifecycles[ref("aws_s3_bucket", "logs", "id")]["rule"])
        assert single(log_rule["expiration"]) == {"days": 90}
        assert single(log_rule["abort_incomplete_multipart_upload"]) == {"days_after_initiation": 7}

    def test_data_bucket_access_is_logged_to_the_log_bucket(self, resources):
        logging = single(list(resources("aws_s3_bucket_logging").values()))
        assert logging["bucket"] == ref("aws_s3_bucket", "data", "id")
        assert logging["target_bucket"] == ref("aws_s3_bucket", "logs", "id")

    def test_transform_lambda_runs_the_handler_with_the_pandas_layer(self, resources, variables):
        function = resources("aws_lambda_function")["transform"]
        assert function["runtime"] == "python3.11"
        assert function["handler"] == "src.lambda_handler.handler"
        assert function["layers"] == ["${var.aws_sdk_pandas_layer_arn}"]
        assert function["filename"] == "${var.lambda_package_path}"
        assert variables["lambda_package_path"]["default"] == "../../lambda-build/transform.zip"
        assert "default" not in variables["aws_sdk_pandas_layer_arn"]
        assert single(function["dead_letter_config"]) == {"target_arn": ref("aws_sns_topic", "alerts", "arn")}
        assert single(function["logging_config"])["log_group"] == ref("aws_cloudwatch_log_group", "transform", "name")

    def test_new_raw_files_trigger_the_lambda_only_when_asked(self, resources):
        notification = resources("aws_s3_bucket_notification")["raw_to_transform"]
        # Off by default: Airflow invokes the Lambda directly, and both would transform twice.
        assert notification["count"] == "${var.transform_on_s3_events ? 1 : 0}"
        assert resources("aws_lambda_permission")["allow_s3"]["count"] == "${var.transform_on_s3_events ? 1 : 0}"
        assert notification["bucket"] == ref("aws_s3_bucket", "data", "id")
        assert single(notification["lambda_function"]) == {
            "lambda_function_arn": ref("aws_lambda_function", "transform", "arn"),
            "events": ["s3:ObjectCreated:*"],
            "filter_prefix": "raw/",
            "filter_suffix": ".json.gz",
        }
        assert notification["depends_on"] == ["${aws_lambda_permission.allow_s3}"]
        permission = resources("aws_lambda_permission")["allow_s3"]
        assert permission["principal"] == "s3.amazonaws.com"
        assert permission["source_arn"] == ref("aws_s3_bucket", "data", "arn")
        assert permission["source_account"] == "${local.account_id}"

    def test_iam_policies_grant_no_wildcard_actions(self, policy_documents):
        for name, statements in policy_documents.items():
            for statement in statements:
                if statement["effect"] != "Allow":
                    continue
                for action in statement["actions"]:
                    assert action != "*" and not action.endswith(":*"), f"{name}: {action}"
                if "*" in statement.get("resources", []):
                    # Only PutMetricData, which has no resource ARN, limited by namespace instead.
                    assert statement["actions"] == ["cloudwatch:PutMetricData"], name
                    assert statement["condition"] == [
                        {
                            "test": "StringEquals",
                            "variable": "cloudwatch:namespace",
                            "values": ["${var.cloudwatch_namespace}"],
                        }
                    ], name

    def test_transform_role_can_do_exactly_its_job(self, policy_documents, resources, variables):
        bucket_arn = "${aws_s3_bucket.data.arn}"
        granted = {
            statement["sid"]: (statement["actions"], statement["resources"])
            for statement in policy_documents["transform"]
        }
        assert granted == {
            "ReadRawReplies": (["s3:GetObject"], [f"{bucket_arn}/raw/*"]),
            "WriteProcessedFiles": (["s3:PutObject"], [f"{bucket_arn}/processed/*"]),
            "WriteOwnLogs": (
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                ["${aws_cloudwatch_log_group.transform.arn}:*"],
            ),
            "PublishPipelineMetrics": (["cloudwatch:PutMetricData"], ["*"]),
            "SendFailedEventsToAlertTopic": (["sns:Publish"], [ref("aws_sns_topic", "alerts", "arn")]),
            "UseKeyOfEncryptedAlertTopic": (
                ["kms:GenerateDataKey*", "kms:Decrypt"],
                [ref("aws_kms_key", "pipeline", "arn")],
            ),
        }
        assert variables["cloudwatch_namespace"]["default"] == NAMESPACE
        role_policy = resources("aws_iam_role_policy")["transform"]
        assert role_policy["policy"] == "${data.aws_iam_policy_document.transform.json}"
        assert role_policy["role"] == ref("aws_iam_role", "transform", "id")

    def test_log_groups_have_retention_and_encryption(self, resources, variables):
        groups = resources("aws_cloudwatch_log_group")
        assert groups, "no log group defined"
        for name, group in groups.items():
            assert group["retention_in_days"] == "${var.log_retention_days}", name
            assert group["kms_key_id"] == ref("aws_kms_key", "pipeline", "arn"), name
        assert variables["log_retention_days"]["default"] == 365

    def test_alarms_watch_the_pipeline_and_notify_sns(self, resources):
        topic = ref("aws_sns_topic", "alerts", "arn")
        alarms = resources("aws_cloudwatch_metric_alarm")
        watched = {name: (alarm["namespace"], alarm["metric_name"]) for name, alarm in alarms.items()}
        assert watched == {
            "no_rows_loaded": ("${var.cloudwatch_namespace}", "RowsLoaded"),
            "pipeline_silent": ("${var.cloudwatch_namespace}", "RowsLoaded"),
            "symbols_failed": ("${var.cloudwatch_namespace}", "SymbolsFailed"),
            "transform_errors": ("AWS/Lambda", "Errors"),
        }
        for name, alarm in alarms.items():
            assert alarm["alarm_actions"] == [topic], name
            if alarm["namespace"] == "${var.cloudwatch_namespace}":
                assert alarm["dimensions"] == "${local.metric_dimensions}", name
        assert alarms["no_rows_loaded"]["comparison_operator"] == "LessThanThreshold"
        assert alarms["no_rows_loaded"]["threshold"] == 1
        assert alarms["symbols_failed"]["comparison_operator"] == "GreaterThanThreshold"
        assert alarms["symbols_failed"]["threshold"] == 0
        assert alarms["pipeline_silent"]["treat_missing_data"] == "breaching"
        assert alarms["transform_errors"]["dimensions"] == {
            "FunctionName": "${aws_lambda_function.transform.function_name}"
        }
        assert resources("aws_sns_topic")["alerts"]["kms_master_key_id"] == ref("aws_kms_key", "pipeline", "arn")
        subscription = resources("aws_sns_topic_subscription")["alerts_email"]
        assert (subscription["protocol"], subscription["endpoint"]) == ("email", "${var.alert_email}")

    def test_metric_dimensions_match_what_the_pipeline_publishes(self, main_tf):
        declared = single(main_tf["locals"])["metric_dimensions"]
        assert declared == {PIPELINE_DIMENSION["Name"]: PIPELINE_DIMENSION["Value"]}

    def test_dashboard_shows_every_pipeline_metric(self, resources):
        body = resources("aws_cloudwatch_dashboard")["pipeline"]["dashboard_body"]
        for metric in PIPELINE_METRICS:
            assert f'[var.cloudwatch_namespace, "{metric}", "Pipeline", local.metric_dimensions.Pipeline]' in body

    def test_secrets_live_in_ssm_and_never_in_terraform_values(self, resources, variables):
        parameters = resources("aws_ssm_parameter")
        assert set(parameters) == {"alpha_vantage_api_key", "slack_webhook_url"}
        for name, parameter in parameters.items():
            assert parameter["type"] == "SecureString", name
            assert parameter["key_id"] == ref("aws_kms_key", "pipeline", "arn"), name
            assert parameter["value"] == "not-set", name  # the real value is set out of band
            assert single(parameter["lifecycle"]) == {"ignore_changes": ["value"]}, name
        secret_words = ("key", "secret", "password", "token", "webhook")
        for name in variables:
            assert not any(word in name for word in secret_words) or name == "aws_sdk_pandas_layer_arn", name
        example = (TF_DIR / "terraform.tfvars.example").read_text()
        assert "api_key" not in example and "webhook" not in example.replace("Slack webhook", "")

    def test_budget_alerts_by_email(self, resources, variables):
        budget = resources("aws_budgets_budget")["monthly"]
        assert (budget["budget_type"], budget["time_unit"], budget["limit_unit"]) == ("COST", "MONTHLY", "USD")
        assert budget["limit_amount"] == "${tostring(var.monthly_budget_usd)}"
        assert variables["monthly_budget_usd"]["default"] == 10
        kinds = {(n["notification_type"], n["threshold"]) for n in budget["notification"]}
        assert kinds == {("ACTUAL", 80), ("FORECASTED", 100)}
        assert all(n["subscriber_email_addresses"] == ["${var.alert_email}"] for n in budget["notification"])

    def test_bigquery_tables_are_partitioned_and_clustered_like_schema_py(self, main_tf, resources):
        declared = single(main_tf["locals"])["bigquery_tables"]
        assert set(declared) == set(TABLES)
        for name, table in TABLES.items():
            assert declared[name]["partition_field"] == table.partition_by, name
            assert declared[name]["clustering"] == list(table.cluster_by), name

        resource = resources("google_bigquery_table")["warehouse"]
        assert resource["for_each"] == "${local.bigquery_tables}"
        assert resource["table_id"] == "${each.key}"
        assert resource["schema"] == '${file("${path.module}/schemas/${each.key}.json")}'
        partitioning = single(resource["dynamic"])["time_partitioning"]
        assert single(partitioning["content"]) == {"type": PARTITION_TYPE, "field": "${time_partitioning.value}"}

    @pytest.mark.parametrize("table_name", sorted(TABLES))
    def test_bigquery_schema_file_matches_schema_py(self, table_name):
        table = TABLES[table_name]
        fields = json.loads((TF_DIR / "schemas" / f"{table_name}.json").read_text())
        assert [field["name"] for field in fields] == table.column_names
        for field, column in zip(fields, table.columns, strict=True):
            assert field["type"] in BIGQUERY_TYPES[column.type], (table_name, column.name, field["type"])
            assert field["mode"] == ("NULLABLE" if column.nullable else "REQUIRED"), (table_name, column.name)

    def test_bigquery_access_is_scoped_to_the_dataset(self, resources):
        dataset_member = resources("google_bigquery_dataset_iam_member")["pipeline_data_editor"]
        assert dataset_member["role"] == "roles/bigquery.dataEditor"
        assert dataset_member["dataset_id"] == "${google_bigquery_dataset.warehouse.dataset_id}"
        project_roles = [member["role"] for member in resources("google_project_iam_member").values()]
        assert project_roles == ["roles/bigquery.jobUser"]
        assert resources("google_service_account_key") == {}  # no key files


def load_export_script():
    """Import scripts/export-bq-schemas.py (its file name has dashes, so not with `import`)."""
    spec = importlib.util.spec_from_file_location("export_bq_schemas", ROOT / "scripts" / "export-bq-schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestSchemaExport:
    """scripts/export-bq-schemas.py keeps schemas/*.json equal to src/storage/schema.py."""

    def test_committed_schema_files_are_up_to_date(self, capsys):
        exit_code = load_export_script().main(["--check"])
        output = capsys.readouterr().out
        assert exit_code == 0, output
        assert output.strip().endswith(f"match src/storage/schema.py ({len(TABLES)} tables)")

    def test_check_reports_a_drifted_and_an_unknown_file(self, tmp_path, capsys):
        export = load_export_script()
        assert export.main(["--out", str(tmp_path)]) == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.json" for name in TABLES)
        drifted = tmp_path / "fact_daily_prices.json"
        drifted.write_text(drifted.read_text().replace('"FLOAT64"', '"STRING"', 1))
        (tmp_path / "old_table.json").write_text("[]\n")
        capsys.readouterr()

        exit_code = export.main(["--check", "--out", str(tmp_path)])

        assert exit_code == 1
        assert capsys.readouterr().out.splitlines() == [
            "BigQuery schema files are out of date with src/storage/schema.py:",
            "  fact_daily_prices.json: differs from src/storage/schema.py",
            "  old_table.json: no such table in src/storage/schema.py",
            "Fix: .venv/bin/python scripts/export-bq-schemas.py",
        ]

    def test_generated_file_is_the_bigquery_json_schema(self):
        text = load_export_script().bigquery_schema_json(TABLES["dim_symbol"])
        assert json.loads(text)[:2] == [
            {"name": "symbol", "type": "STRING", "mode": "REQUIRED", "description": "ticker, e.g. AAPL"},
            {"name": "name", "type": "STRING", "mode": "NULLABLE", "description": "company name, when known"},
        ]
        assert text.endswith("\n")


# --- Linters on the real files --------------------------------------------------------------------


class TestLinters:
    def test_terraform_is_formatted(self):
        result = run([linter("terraform"), "fmt", "-check", "-recursive", "-diff", str(TF_DIR)])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_checkov_finds_no_failed_checks_and_every_skip_has_a_reason(self):
        result = run(
            [linter("checkov"), "--directory", "infrastructure", "--directory", ".github",
             "--framework", "terraform", "dockerfile", "github_actions",
             "--skip-download", "--output", "json"],
            timeout=300,
        )  # fmt: skip
        reports = []
        for document in json_documents(result.stdout):  # one per --directory
            reports.extend(document if isinstance(document, list) else [document])
        assert {report["check_type"] for report in reports} == {"terraform", "dockerfile", "github_actions"}
        for report in reports:
            failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
            assert report["summary"]["failed"] == 0 and failed == [], (report["check_type"], failed)
            assert report["summary"]["passed"] > 0, report["check_type"]
        for report in reports:
            for check in report["results"]["skipped_checks"]:
                reason = check.get("check_result", {}).get("suppress_comment", "")
                assert len(reason) > 20, (check["check_id"], check["resource"], reason)
        assert result.returncode == 0

    def test_hadolint_finds_nothing_of_severity_warning(self):
        result = run([linter("hadolint"), "--failure-threshold", "warning", str(DOCKER_DIR / "Dockerfile")])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_compose_files_are_valid_and_define_every_service(self):
        files = ["-f", str(DOCKER_DIR / "docker-compose.yml"), "-f", str(DOCKER_DIR / "docker-compose.local.yml")]
        result = run([linter("docker-compose"), *files, "config", "--format", "json"], env=COMPOSE_SECRETS)
        assert result.returncode == 0, result.stderr
        config = json.loads(result.stdout)
        assert set(config["services"]) == {
            "postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "seed-data", "moto", "bigquery-emulator", "mock-alpha-vantage", "slack-catcher",
        }  # fmt: skip
        for name in (
            "airflow-apiserver",
            "airflow-scheduler",
            "airflow-dag-processor",
            "airflow-triggerer",
            "postgres",
        ):
            assert config["services"][name]["healthcheck"]["test"], name
        scheduler = config["services"]["airflow-scheduler"]
        assert scheduler["user"] == "50000:0"
        assert scheduler["environment"]["AWS_ENDPOINT_URL"] == "http://moto:5000"
        assert config["services"]["mock-alpha-vantage"]["command"] == [
            "python", "-m", "src.local_stack.mock_alpha_vantage",
            "--port", "8081", "--data-dir", "/opt/airflow/data/offline",
        ]  # fmt: skip
        assert config["services"]["slack-catcher"]["command"] == [
            "python", "-m", "src.local_stack.slack_catcher",
            "--port", "8082", "--log", "/opt/airflow/data/alerts.log",
        ]  # fmt: skip
        published = [port for service in config["services"].values() for port in service.get("ports", [])]
        assert published and all(port["host_ip"] == "127.0.0.1" for port in published)

    def test_compose_refuses_to_start_without_its_passwords(self):
        env = {**COMPOSE_SECRETS, "POSTGRES_PASSWORD": ""}
        result = run(
            [linter("docker-compose"), "-f", str(DOCKER_DIR / "docker-compose.yml"), "config", "--quiet"], env=env
        )
        assert result.returncode != 0
        assert "required variable POSTGRES_PASSWORD is missing a value: set POSTGRES_PASSWORD in .env" in result.stderr

    def test_actionlint_accepts_the_workflows(self):
        env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # so it also runs shellcheck
        result = run([linter("actionlint"), "-no-color"], env=env)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_shellcheck_accepts_every_script(self):
        scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh")) + [
            str(p) for p in sorted((ROOT / "infrastructure").glob("*.sh"))
        ]
        scripts.append(str(ROOT / ".ci" / "run"))
        result = run([linter("shellcheck"), "--severity=warning", "--external-sources", *scripts])
        assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile, read as text ---------------------------------------------------------------------


class TestDockerfileRules:
    @staticmethod
    def instructions() -> list[tuple[str, str]]:
        """(INSTRUCTION, arguments) of every line of the Dockerfile, continuation lines joined."""
        text = (DOCKER_DIR / "Dockerfile").read_text().replace("\\\n", " ")
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        return [(line.split(maxsplit=1)[0], line.split(maxsplit=1)[1]) for line in lines]

    def test_base_image_is_the_pinned_airflow_on_python_3_11(self):
        pinned = next(
            line.split("==")[1] for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.startswith("apache-airflow==")
        )  # fmt: skip
        froms = [args for instruction, args in self.instructions() if instruction == "FROM"]
        assert froms == [f"apache/airflow:{pinned}-python3.11"]

    def test_image_installs_the_locked_requirements_and_our_package_as_a_non_root_user(self):
        instructions = self.instructions()
        users = [args for instruction, args in instructions if instruction == "USER"]
        assert users == ["50000"]
        runs = [args for instruction, args in instructions if instruction == "RUN"]
        assert runs[0].startswith("pip install --no-cache-dir -r requirements.txt -c constraints.txt")
        assert runs[1].startswith("pip install --no-cache-dir --no-deps -e .")
        copies = [args for instruction, args in instructions if instruction == "COPY"]
        assert copies == [
            "--chown=50000:0 requirements.txt constraints.txt ./",
            "--chown=50000:0 pyproject.toml README.md ./",
            "--chown=50000:0 src/ ./src/",
            "--chown=50000:0 airflow/dags/ ./dags/",
            "--chown=50000:0 airflow/plugins/ ./plugins/",
        ]


# --- Workflows, read as YAML ----------------------------------------------------------------------


class TestWorkflowRules:
    @staticmethod
    def load(name: str) -> dict:
        return yaml.safe_load((WORKFLOWS / name).read_text())

    def test_ci_lints_and_runs_the_suite_on_push_and_pull_request(self):
        workflow = self.load("ci.yml")
        assert set(workflow[True]) == {"push", "pull_request"}  # YAML reads the key `on` as True
        assert workflow["permissions"] == {"contents": "read"}
        for name, job in workflow["jobs"].items():
            assert job["timeout-minutes"] <= 45, name
            setup = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
            assert setup["with"]["python-version"] == "${{ env.PYTHON_VERSION }}"
            assert setup["with"]["cache"] == "pip"
            assert "requirements.txt" in setup["with"]["cache-dependency-path"]
        assert workflow["env"]["PYTHON_VERSION"] == "3.11"
        lint_commands = [step.get("run", "") for step in workflow["jobs"]["lint"]["steps"]]
        assert "ruff check ." in lint_commands and "ruff format --check ." in lint_commands
        assert "./scripts/run-tests.sh" in [step.get("run") for step in workflow["jobs"]["test"]["steps"]]

    def test_deploy_uses_short_lived_credentials_only(self):
        workflow = self.load("deploy.yml")
        assert set(workflow[True]) == {"push", "workflow_dispatch"}
        assert workflow[True]["push"] == {"tags": ["v*"]}
        assert workflow["permissions"] == {"contents": "read", "id-token": "write"}
        steps = workflow["jobs"]["deploy"]["steps"]
        uses = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}
        assert set(uses["aws-actions/configure-aws-credentials"]["with"]) == {
            "role-to-assume", "role-session-name", "aws-region",
        }  # fmt: skip
        assert set(uses["google-github-actions/auth"]["with"]) == {"workload_identity_provider", "service_account"}
        text = (WORKFLOWS / "deploy.yml").read_text()
        for long_lived in ("aws-access-key-id", "aws-secret-access-key", "credentials_json", "secrets."):
            assert long_lived not in text, long_lived
        runs = "\n".join(step.get("run", "") for step in steps)
        assert "./scripts/build-lambda.sh" in runs
        assert 'terraform -chdir="$TF_DIR" plan -out=tfplan' in runs
        assert 'terraform -chdir="$TF_DIR" apply tfplan' in runs
        assert "-m src.monitoring.health_checks --json" in runs
        assert uses["docker/build-push-action"]["with"]["file"] == "infrastructure/docker/Dockerfile"


# --- Demo scripts, with no cloud tools (or stubs) on PATH -----------------------------------------

BASIC_TOOLS = ("bash", "dirname", "cat", "head", "sed", "sort", "env")


def bin_dir_with(tmp_path: Path, stubs: dict[str, str]) -> Path:
    """A PATH folder holding only basic shell tools plus the given stub scripts (name -> body)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in BASIC_TOOLS:
        (folder / tool).symlink_to(shutil.which(tool))
    for name, body in stubs.items():
        stub = folder / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "$STUB_LOG"\n{body}\n')
        stub.chmod(0o755)
    return folder


def run_demo_script(script: str, bin_dir: Path, tmp_path: Path, *args: str):
    """Run a demo script with PATH limited to `bin_dir` and a fresh HOME (no credentials)."""
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path / "home"),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "TF_VAR_alert_email": "ops@example.com",
        "TF_VAR_gcp_project_id": "demo-project",
        "TF_VAR_aws_sdk_pandas_layer_arn": "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python311:1",
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args], env=env, capture_output=True, text=True, timeout=60
    )


class TestDemoScripts:
    def test_deploy_help(self, tmp_path):
        result = run_demo_script("deploy-demo.sh", bin_dir_with(tmp_path, {}), tmp_path, "--help")
        assert result.returncode == 0
        assert result.stdout.startswith("Usage: scripts/deploy-demo.sh [--plan-only] [--help]\n")
        assert "--plan-only   show what would change" in result.stdout

    def test_teardown_help(self, tmp_path):
        result = run_demo_script("teardown-demo.sh", bin_dir_with(tmp_path, {}), tmp_path, "--help")
        assert result.returncode == 0
        assert result.stdout.startswith("Usage: scripts/teardown-demo.sh [--yes] [--help]\n")

    def test_unknown_option_is_refused(self, tmp_path):
        result = run_demo_script("deploy-demo.sh", bin_dir_with(tmp_path, {}), tmp_path, "--apply-everything")
        assert result.returncode == 2
        assert result.stderr.startswith("Unknown option: --apply-everything\nUsage:")

    @pytest.mark.parametrize(("script", "args"), [("deploy-demo.sh", ()), ("teardown-demo.sh", ("--yes",))])
    def test_missing_tools_are_all_listed_and_nothing_runs(self, tmp_path, script, args):
        result = run_demo_script(script, bin_dir_with(tmp_path, {}), tmp_path, *args)
        assert result.returncode == 2
        problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
        expected = ["  - terraform: not found.", "  - aws: not found.", "  - gcloud: not found."]
        if script == "deploy-demo.sh":
            expected.append("  - docker: not found.")
        assert [line.split(" Install")[0] for line in problems] == expected
        assert not (tmp_path / "calls.log").exists()

    def test_plan_only_does_not_need_docker(self, tmp_path):
        result = run_demo_script("deploy-demo.sh", bin_dir_with(tmp_path, {}), tmp_path, "--plan-only")
        assert result.returncode == 2
        assert "docker" not in result.stderr

    def test_missing_credentials_and_old_terraform_are_reported(self, tmp_path):
        # Stub CLIs: every check fails the way the real tool does without credentials.
        stubs = {
            "terraform": 'echo "Terraform v1.0.3"',
            "aws": '[ "$1" = "--version" ] && echo "aws-cli/2.27.0 Python/3.13 Linux" && exit 0; exit 255',
            "docker": "exit 1",
            "gcloud": "exit 1",
        }
        result = run_demo_script("deploy-demo.sh", bin_dir_with(tmp_path, stubs), tmp_path)

        assert result.returncode == 2
        problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
        assert [line.split(":")[0] for line in problems] == [
            "  - terraform",
            "  - AWS credentials",
            "  - Google credentials",
            "  - docker",
        ]
        assert "version 1.0.3 found" in problems[0] and "need >= 1.10" in problems[0]
        # Only read-only checks ran: no bucket, plan or apply.
        calls = (tmp_path / "calls.log").read_text().splitlines()
        assert calls == [
            "terraform version",
            "aws --version",
            "aws sts get-caller-identity --query Account --output text",
            "gcloud auth application-default print-access-token",
            "docker info",
        ]

    def test_aws_cli_v1_is_refused(self, tmp_path):
        stubs = {
            "terraform": 'echo "Terraform v1.15.3"',
            "aws": 'echo "aws-cli/1.45.11 Python/3.11.7 Linux/6.1 botocore/1.43.11"',
            "gcloud": "exit 0",
        }
        result = run_demo_script("deploy-demo.sh", bin_dir_with(tmp_path, stubs), tmp_path, "--plan-only")
        assert result.returncode == 2
        assert (
            "  - aws: 'aws-cli/1.45.11 Python/3.11.7 Linux/6.1 botocore/1.43.11' found, need AWS CLI v2"
            in result.stderr
        )
        assert "aws sts" not in (tmp_path / "calls.log").read_text()
