"""Secrets never leak: a failing run with a recognisable fake key and webhook, searched everywhere.

The CLI runs as a subprocess at LOG_LEVEL=DEBUG (urllib3 then logs every URL, apikey included,
unless the redacting filter works), against the mock Alpha Vantage (whose quota reply quotes
the key back, like the real one), moto's S3 and the Slack catcher. Then every output is
searched: stdout/stderr, every S3 object body and its metadata, every text column of every
warehouse table, and what Slack received.

Also here: SQL statements only interpolate reviewed schema names (values go in as parameters).
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import sqlite3
import subprocess
import sys

import boto3
import pandas as pd
import pytest

from src.config import PROJECT_ROOT
from src.local_stack.mock_alpha_vantage import start_mock_server
from src.local_stack.synthetic_data import write_synthetic_universe
from src.storage.schema import TABLES

pytestmark = pytest.mark.integration

FAKE_KEY = "AVKEY-LEAKCHECK-9d8e7f"


@pytest.fixture
def failing_run(tmp_path, moto_server, fake_aws_credentials, slack_catcher):
    """Run the CLI once: AAPL loads, MSFT hits the daily quota (falls back to files), NOPE fails."""
    data_dir = tmp_path / "data"
    write_synthetic_universe(
        data_dir, ["AAPL", "MSFT"], pd.Timestamp("2024-05-01").date(), pd.Timestamp("2024-06-28").date()
    )
    server, thread, base_url = start_mock_server(data_dir, api_key=FAKE_KEY, daily_limit=1)
    bucket = "leak-check"
    env = {
        **os.environ,
        "PIPELINE_ENV_FILE": str(tmp_path / "none.env"),
        "LOG_LEVEL": "DEBUG",
        "SQLITE_PATH": str(tmp_path / "warehouse.db"),
        "STATE_DIR": str(tmp_path / "state"),
        "FILE_SOURCE_DIR": str(data_dir),
        "DATA_SOURCES": "alpha_vantage,file",
        "ALPHA_VANTAGE_API_KEY": FAKE_KEY,
        "ALPHA_VANTAGE_BASE_URL": base_url,
        "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0",
        "S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": moto_server,
        "SLACK_WEBHOOK_URL": slack_catcher.url,
    }
    command = [sys.executable, "-m", "src.pipeline", "run", "--symbols", "AAPL,MSFT,NOPE"]
    command += ["--start", "2024-06-03", "--end", "2024-06-28"]
    try:
        result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
        thread.join(timeout=5)
    return result, tmp_path / "warehouse.db", bucket, moto_server, slack_catcher


def test_the_key_and_webhook_appear_in_no_output_of_a_failing_debug_run(failing_run):
    result, db, bucket, endpoint, slack = failing_run
    assert result.returncode == 1, result.stderr  # partial: NOPE failed
    secrets = [FAKE_KEY, slack.url, slack.url.split("/services/")[1]]
    assert "DEBUG" in result.stderr and "urllib3" in result.stderr  # the DEBUG run really logged URLs
    assert "daily quota exhausted: We have detected your API key as ***" in result.stderr

    outputs = {"stdout": result.stdout, "stderr": result.stderr}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    raw_keys = [key for key in keys if key.startswith("raw/")]
    assert len(raw_keys) == 2  # AAPL from Alpha Vantage, MSFT from the file source
    # With S3 the CLI hands the clean rows to the load step through the processed zone too.
    assert [key for key in keys if not key.startswith("raw/")] == [
        "processed/dataset=prices/ingest_date=2024-06-28/part-batch-000.parquet"
    ]
    for key in keys:
        obj = s3.get_object(Bucket=bucket, Key=key)
        body = obj["Body"].read()
        if key.startswith("raw/"):
            outputs[f"s3 body {key}"] = gzip.decompress(body).decode("utf-8")
        else:
            outputs[f"s3 body {key}"] = pd.read_parquet(io.BytesIO(body)).to_json()
        outputs[f"s3 metadata {key}"] = json.dumps(obj["Metadata"])
    conn = sqlite3.connect(db)
    for name, table in TABLES.items():
        text_columns = [column.name for column in table.columns if column.type == "STRING"]
        rows = conn.execute(f"SELECT {', '.join(text_columns)} FROM {name}").fetchall()
        outputs[f"table {name}"] = json.dumps(rows)
    assert json.loads(conn.execute("SELECT failed_symbols FROM pipeline_runs").fetchone()[0]).keys() == {"NOPE"}
    alerts = slack.payloads()
    assert len(alerts) == 1
    outputs["slack payloads"] = json.dumps(alerts)
    # The catcher stands in for Slack: it naturally knows the webhook path it was called on.
    outputs["slack log"] = slack.log_path.read_text().replace(slack.url.split("127.0.0.1")[1].split("/", 1)[1], "")

    leaks = [(where, secret) for where, text in outputs.items() for secret in secrets if secret in text]
    assert leaks == []


# --- SQL is built only from schema names ---------------------------------------------------------

SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "MERGE ", "CREATE ", "DROP ", "ALTER ", "PRAGMA ", " FROM ")
# Every expression interpolated into SQL text in src/storage/ (the warehouse layer), each
# reviewed: a table, column, view or index name from src/storage/schema.py (or defined next
# to it), a BigQuery id built from those, a list of "?" placeholders, or SQL assembled from
# those. User values (symbols, dates, prices) always go in as parameters. A new interpolation
# fails this test until someone has reviewed it and added it here.
REVIEWED_SQL_INTERPOLATIONS = {
    "', '.join((f'source.{name}' for name in columns))",
    "', '.join(PRICE_COLUMNS)",
    "', '.join(LOOKBACK_COLUMNS)",  # names from schema.py (read_lookback in bigquery_handler.py)
    "', '.join(columns)",
    "', '.join(table.primary_key)",
    "', '.join(updates)",
    "BIGQUERY_TYPES[column.type]",
    "CACHE_SIZE_KIB",  # an int constant in sqlite_warehouse.py (PRAGMA cache_size)
    "options",  # "" or " WITHOUT ROWID", chosen from the constant WITHOUT_ROWID_TABLES
    "_column_sql(table, column.name)",
    "index_name(table_name, columns)",  # idx_<table>_<columns>, from the constant INDEXES
    "render_view(view_name, lambda table: table)",  # a view of views.py, table names from schema.py
    # Not SQL: S3 error messages in s3_handler.py that happen to contain the word "from".
    "bucket",
    "client.meta.endpoint_url",
    "action",
    "body",
    "changed",
    "column.name",
    "index_name",
    "name",
    "placeholders",
    "select_sql",
    "table.name",
    "table_name",
    "updates",
    "view_name",
    # Not SQL: BigQueryLockedError's message ("... delete that table") in bigquery_handler.py.
    "lock_id",
    "wh.dataset",
    "wait_seconds",
    "wh.table_id('dim_date')",  # dim_date_range_to_write's read of the stored date range
    "wh.table_id('dim_symbol')",
    "wh.table_id('fact_daily_prices')",
    "wh.table_id('fact_splits')",  # read_splits: the stored split events of a batch's symbols
    "wh.table_id('fact_technical_indicators')",
    "wh.table_id(name)",
    "wh.table_id(table.name)",
}


def sql_interpolations() -> set[str]:
    """The {expression}s inside f-strings that hold SQL, in every module of src/storage/."""
    found = set()
    for path in sorted((PROJECT_ROOT / "src" / "storage").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            text = "".join(part.value for part in node.values if isinstance(part, ast.Constant)).upper()
            if any(word in text for word in SQL_WORDS):
                found.update(ast.unparse(part.value) for part in node.values if isinstance(part, ast.FormattedValue))
    return found


def test_sql_text_interpolates_only_reviewed_schema_names():
    assert sql_interpolations() - REVIEWED_SQL_INTERPOLATIONS == set()


def test_an_injection_attempt_in_a_row_value_is_stored_as_plain_text(tmp_path):
    """Quotes and SQL in a value (here a bad price) go in as a parameter: stored as text, nothing runs."""
    from src import steps
    from src.config import load_settings
    from src.storage.warehouse import open_warehouse
    from src.transformation.transform import transform_prices

    settings = load_settings(env_file=tmp_path / "none.env", overrides={"SQLITE_PATH": str(tmp_path / "w.db")})
    attack = "1'); DROP TABLE fact_daily_prices; --"
    raw = pd.DataFrame(
        {
            "symbol": ["IBM"],
            "trade_date": ["2013-03-01"],
            "open": ["200.65"],
            "high": ["202.94"],
            "low": ["199.36"],
            "close": [attack],
            "volume": ["3309400"],
            "source": ["file"],
        }
    )
    clean, quarantine = transform_prices(raw, run_date="2013-03-01")
    warehouse = open_warehouse(settings)
    try:
        steps.load_prices(warehouse, clean, quarantine, "run-1", "2013-03-01T22:00:00+00:00")
        stored = warehouse.query("SELECT reason, raw_record FROM quarantine_prices")
        assert stored["reason"].tolist() == ["non_numeric:close"]
        assert json.loads(stored["raw_record"][0])["close"] == attack
        assert warehouse.query("SELECT COUNT(*) AS n FROM fact_daily_prices")["n"].tolist() == [0]  # table still there
    finally:
        warehouse.close()
