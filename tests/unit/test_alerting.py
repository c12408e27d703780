"""Unit tests for src/monitoring/alerting.py: message building, grouping markers, disabled mode.

Delivery to a webhook (outages, redaction on the wire, callbacks with Airflow objects, a real
dag.test() run) is tested against the local catcher in tests/integration/test_alerting_catcher.py.
"""

import logging
import os

import pytest

from src.config import load_settings
from src.monitoring import alerting
from src.monitoring.alerting import (
    build_data_quality_message,
    build_log_url,
    build_task_failure_message,
    claim_task_alert,
    on_task_failure,
    send_data_quality_alert,
    send_slack_alert,
)

RUN_ID = "scheduled__2024-03-15T21:30:00+00:00"
RUN_ID_QUOTED = "scheduled__2024-03-15T21%3A30%3A00%2B00%3A00"
BASE = "http://127.0.0.1:8080"
LOG_URL = f"{BASE}/dags/cloudscale_finance_etl/runs/{RUN_ID_QUOTED}/tasks/load_warehouse?try_number=3"


def failure_info(**changes) -> dict:
    """A crafted info dict, shaped like task_failure_info_from_context's result."""
    info = {
        "dag_id": "cloudscale_finance_etl",
        "task_id": "load_warehouse",
        "map_index": -1,
        "run_id": RUN_ID,
        "logical_date": "2024-03-15T21:30:00+00:00",
        "try_number": 3,
        "max_tries": 2,
        "exception_class": "OperationalError",
        "exception_message": "database is locked",
        "log_url": LOG_URL,
        "mapped_url": None,
    }
    info.update(changes)
    return info


def settings_for(tmp_path, **variables):
    """Settings from explicit values only (a developer's .env must not leak into tests)."""
    overrides = {"SLACK_WEBHOOK_URL": "", "STATE_DIR": str(tmp_path / "state")}
    overrides.update(variables)
    return load_settings(env_file=tmp_path / "absent.env", overrides=overrides)


def test_task_failure_message_has_exact_text_and_blocks():
    text, blocks = build_task_failure_message(failure_info())

    assert text == (
        f"Task failed: cloudscale_finance_etl.load_warehouse in run {RUN_ID} "
        "(logical date 2024-03-15T21:30:00+00:00), final failure on try 3 of 3. "
        "OperationalError: database is locked. "
        "To recover: fix the cause, then Clear load_warehouse in this run (the Clear dialog's defaults "
        f"also re-run the tasks after it). Log: {LOG_URL}"
    )
    assert blocks == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": "Task failed: cloudscale_finance_etl.load_warehouse"},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*DAG*\n`cloudscale_finance_etl`"},
                {"type": "mrkdwn", "text": "*Task*\n`load_warehouse`"},
                {"type": "mrkdwn", "text": f"*Run*\n`{RUN_ID}`"},
                {"type": "mrkdwn", "text": "*Logical date*\n2024-03-15T21:30:00+00:00"},
                {"type": "mrkdwn", "text": "*Try*\n3 of 3 (final)"},
                {"type": "mrkdwn", "text": "*Error*\n`OperationalError`"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "```OperationalError: database is locked```"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*To recover:* fix the cause, then Clear `load_warehouse` in this run (the Clear "
                "dialog's defaults also re-run the tasks after it).",
            },
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{LOG_URL}|Open the task log in Airflow>"}],
        },
    ]


def test_mapped_task_message_says_which_map_indexes_failed():
    mapped_url = f"{BASE}/dags/cloudscale_finance_etl/runs/{RUN_ID_QUOTED}/tasks/extract_prices/mapped"
    info = failure_info(
        task_id="extract_prices",
        map_index=7,
        try_number=1,
        max_tries=0,
        exception_class="ValueError",
        exception_message="no prices for NVDA",
        log_url=f"{mapped_url}/7?try_number=1",
        mapped_url=mapped_url,
        failed_map_indexes=[3, 7],
    )

    text, blocks = build_task_failure_message(info)

    assert text.startswith("Task failed: cloudscale_finance_etl.extract_prices[7] in run ")
    assert blocks[1]["fields"][1] == {"type": "mrkdwn", "text": "*Task*\n`extract_prices` (map index 7)"}
    assert blocks[1]["fields"][4] == {"type": "mrkdwn", "text": "*Try*\n1 of 1 (final)"}
    assert blocks[3] == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "This task is mapped. 2 instances have failed so far (map indexes 3, 7). Only the first "
            "failed instance sends an alert, so later failures of this task in this run are not posted: "
            f"<{mapped_url}|see all mapped instances>.",
        },
    }
    assert blocks[5]["elements"][0]["text"] == f"<{mapped_url}/7?try_number=1|Open the task log in Airflow>"


def test_a_failure_that_is_never_retried_says_it_is_final_and_how_to_recover():
    # finish_run raises AirflowFailException: Airflow skips its retries, so try 1 is the last.
    info = failure_info(task_id="finish_run", try_number=1, max_tries=2, exception_class="AirflowFailException")

    text, blocks = build_task_failure_message(info)

    assert "final failure on try 1 (not retried)" in text
    assert "of 3" not in text
    assert blocks[1]["fields"][4] == {"type": "mrkdwn", "text": "*Try*\n1 (final: not retried)"}
    assert blocks[3]["text"]["text"] == (
        "*To recover:* fix the cause (e.g. wait for the source's outage to end), then Clear `finish_run` "
        "in this run (the Clear dialog's defaults): it fetches the missing symbols again and the run turns green."
    )


def test_mapped_task_message_with_one_failure_and_no_link():
    _, blocks = build_task_failure_message(failure_info(map_index=0, failed_map_indexes=[0]))

    assert blocks[3]["text"]["text"] == (
        "This task is mapped. 1 instance has failed so far (map index 0). Only the first failed instance "
        "sends an alert, so later failures of this task in this run are not posted: see the grid."
    )


def test_message_escapes_slack_markup_and_respects_block_limits():
    long_message = "<html> & " + "x" * 5000
    text, blocks = build_task_failure_message(
        failure_info(task_id="t" * 200, exception_class="HTTPError", exception_message=long_message)
    )

    header = blocks[0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    error_text = blocks[2]["text"]["text"]
    assert error_text.startswith("```HTTPError: &lt;html&gt; &amp; xxx")
    assert error_text.endswith("…```")
    assert len(error_text) == 2996  # 2,990 characters of message + 6 for the fences, under Slack's 3,000
    assert all(len(field["text"]) <= 2000 for field in blocks[1]["fields"])
    assert "&lt;html&gt; &amp;" in text and "<html>" not in text


def test_message_for_run_without_logical_date_shows_a_dash():
    _, blocks = build_task_failure_message(failure_info(logical_date=None))

    assert blocks[1]["fields"][3] == {"type": "mrkdwn", "text": "*Logical date*\n—"}


def test_log_url_follows_the_airflow_3_ui_routes():
    assert build_log_url(BASE + "/", "etl", RUN_ID, "load_warehouse", -1, 2) == (
        f"{BASE}/dags/etl/runs/{RUN_ID_QUOTED}/tasks/load_warehouse?try_number=2"
    )
    assert build_log_url(BASE, "etl", RUN_ID, "extract_prices", 12, 1) == (
        f"{BASE}/dags/etl/runs/{RUN_ID_QUOTED}/tasks/extract_prices/mapped/12?try_number=1"
    )
    assert build_log_url(BASE, "etl", "manual__2024-03-15", "extract_prices", -1, 0) == (
        f"{BASE}/dags/etl/runs/manual__2024-03-15/tasks/extract_prices"
    )


def test_claim_task_alert_lets_only_the_first_failure_of_a_group_alert(tmp_path):
    mapped = failure_info(task_id="extract_prices", try_number=1, max_tries=0)

    assert claim_task_alert(tmp_path, {**mapped, "map_index": 4}) == (True, [4])
    assert claim_task_alert(tmp_path, {**mapped, "map_index": 9}) == (False, [])
    assert claim_task_alert(tmp_path, {**mapped, "map_index": 0}) == (False, [])
    # Another task, or the same task after a person cleared it (a new try number): new groups.
    assert claim_task_alert(tmp_path, {**mapped, "task_id": "transform", "map_index": -1}) == (True, [])
    assert claim_task_alert(tmp_path, {**mapped, "map_index": 9, "try_number": 2}) == (True, [9])

    folder = tmp_path / "alerts" / "cloudscale_finance_etl" / RUN_ID_QUOTED
    assert sorted(os.listdir(folder)) == [
        "extract_prices.try1.failed_map_indexes",
        "extract_prices.try1.sent",
        "extract_prices.try2.failed_map_indexes",
        "extract_prices.try2.sent",
        "transform.try1.sent",
    ]
    assert (folder / "extract_prices.try1.failed_map_indexes").read_text() == "4\n9\n0\n"


def test_claim_task_alert_alerts_anyway_when_the_state_dir_is_unusable(tmp_path, caplog):
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the state folder should be")

    assert claim_task_alert(not_a_folder, failure_info()) == (True, [])
    assert "alerting anyway" in caplog.text


def test_disabled_alerts_are_logged_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(alerting, "_disabled_notice_logged", False)
    settings = settings_for(tmp_path)
    text, blocks = build_task_failure_message(failure_info())

    with caplog.at_level(logging.WARNING, logger="src.monitoring.alerting"):
        assert send_slack_alert(settings, text, blocks) is False
        assert send_slack_alert(settings, text, blocks) is False

    disabled = [r for r in caplog.records if "Slack alerts are disabled" in r.getMessage()]
    assert [r.getMessage() for r in disabled] == ["Slack alerts are disabled (SLACK_WEBHOOK_URL is not set)"]
    # The alert itself is still in the log, both times.
    assert sum(r.getMessage().startswith("ALERT: Task failed:") for r in caplog.records) == 2


def test_unusable_webhook_url_returns_false_and_is_not_logged(tmp_path, caplog):
    webhook = "hooks.slack.com/services/T0001/B0001/SECRETPATH"  # no https://: requests refuses it
    settings = settings_for(tmp_path, SLACK_WEBHOOK_URL=webhook)

    assert send_slack_alert(settings, "hello", []) is False
    assert "Slack alert not delivered" in caplog.text
    assert "SECRETPATH" not in caplog.text


def test_on_task_failure_survives_a_context_without_a_task_instance(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("PIPELINE_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "")

    on_task_failure({"dag_run": None, "reason": "task_failure"})  # e.g. a DAG-level callback context
    on_task_failure({"ti": "not a task instance"})

    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Task failure alert skipped: unexpected callback context (KeyError('ti'))",
        "Task failure alert skipped: unexpected callback context "
        "(AttributeError(\"'str' object has no attribute 'map_index'\"))",
    ]


CHECKS = [
    {"name": "row_counts", "ok": True, "message": "50 symbols loaded", "figures": {"symbols": 50}},
    {
        "name": "missing_symbols",
        "ok": False,
        "message": "2 symbols have no prices for 2024-03-15",
        "figures": {"symbols": ["NVDA", "TSLA"], "expected": 50, "loaded": 48},
    },
    {
        "name": "price_jumps",
        "ok": False,
        "message": "close moved more than 25% in one day",
        "figures": {"GME": "+31.2%", "sources": {"alpha_vantage": 1}},
    },
]


def test_data_quality_message_lists_failed_checks_with_figures():
    text, blocks = build_data_quality_message(CHECKS, run_id=RUN_ID, logical_date="2024-03-15")

    assert text == (
        f"Data quality: 2 of 3 checks failed (run {RUN_ID}, logical date 2024-03-15). "
        "missing_symbols: 2 symbols have no prices for 2024-03-15; "
        "price_jumps: close moved more than 25% in one day"
    )
    assert blocks == [
        {"type": "header", "text": {"type": "plain_text", "text": "Data quality: 2 of 3 checks failed"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Run*\n`{RUN_ID}`"},
                {"type": "mrkdwn", "text": "*Logical date*\n2024-03-15"},
            ],
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*missing_symbols*: 2 symbols have no prices for 2024-03-15\n"
                "• symbols: NVDA, TSLA\n• expected: 50\n• loaded: 48",
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*price_jumps*: close moved more than 25% in one day\n"
                "• GME: +31.2%\n• sources: alpha_vantage=1",
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Passed: row_counts"}]},
    ]


def test_data_quality_alert_is_not_sent_when_every_check_passed(tmp_path, caplog):
    settings = settings_for(tmp_path)
    caplog.set_level(logging.INFO, logger="src.monitoring.alerting")

    sent = send_data_quality_alert(settings, CHECKS[:1], run_id=RUN_ID, logical_date="2024-03-15")

    assert sent is False
    assert [r.getMessage() for r in caplog.records] == [f"Data quality: all 1 checks passed (run {RUN_ID}); no alert"]


@pytest.mark.parametrize("count", [21, 25])
def test_data_quality_message_caps_the_number_of_checks_shown(count):
    checks = [{"name": f"check_{i}", "ok": False, "message": "bad", "figures": {}} for i in range(count)]

    _, blocks = build_data_quality_message(checks, run_id=RUN_ID, logical_date=None)

    assert len(blocks) == 2 + 20 + 1
    assert blocks[-1]["elements"][0]["text"] == f"{count - 20} more failed checks are in the log. No check passed."
