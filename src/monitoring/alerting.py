"""Slack alerts: a failed Airflow task, failed data-quality checks.

Alerts go to a Slack *incoming webhook* (`SLACK_WEBHOOK_URL`): one HTTPS POST with a JSON body
that holds Slack "blocks" (header, fields, context) plus a plain `text` fallback, which Slack
shows in notifications and on devices that cannot draw blocks.

Three rules shape this module:

1. Alerting never fails the pipeline. A Slack outage, a 4xx/5xx, a timeout or a wrong webhook
   URL is logged as a warning and the functions return False. The alert is always written to
   the log as well, so nothing is lost when Slack is down.
2. Secrets never leave the process. Every text is passed through `src.config.redact` with
   `settings.secrets()` (the Alpha Vantage key *and* the webhook URL) plus the webhook's path
   on its own (the path is the credential) before it is sent or logged.
3. One alert per failure. When 50 mapped instances of one task fail together, only the first
   one posts (see `claim_task_alert`); its message says the task is mapped and which map
   indexes had failed by then. docs/alerting.md explains the design and its limits.

Wiring in a DAG (Airflow calls these with the task's context dict):

    default_args = {
        "retries": 2,
        "on_failure_callback": on_task_failure,  # the final failure: one Slack alert
        "on_retry_callback": on_task_retry,  # a failed try that Airflow will retry: log only
    }
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from urllib.parse import quote

import requests

from src.config import ConfigurationError, Settings, load_settings, redact
from src.ingestion.http_client import HttpRequestError, request_with_retries

logger = logging.getLogger(__name__)

# Slack answers a webhook in well under a second. Short timeouts and few tries keep the worst
# case of one alert at 3 tries * 8 s + 1 s + 2 s of backoff = 27 s: a failing task's callback
# must not hang while Slack is down. Each try ends after SLACK_TOTAL_TIMEOUT (or the shorter
# HTTP_TOTAL_TIMEOUT) even when Slack answers one byte at a time, so the 27 s is a real bound.
SLACK_TIMEOUT = (3.0, 5.0)  # (connect, read) seconds, for each socket operation
SLACK_TOTAL_TIMEOUT = 8.0  # seconds, the most one try may take from sending to the last byte
SLACK_MAX_TRIES = 3
SLACK_BACKOFF_SECONDS = 1.0
SLACK_MAX_WAIT_SECONDS = 5.0  # cap on a Retry-After that Slack sends with HTTP 429

# Block Kit limits: a header's text is at most 150 characters, a section field 2,000, a
# section text 3,000. Slack rejects the whole message (invalid_blocks) when one is longer.
HEADER_LIMIT = 150
FIELD_LIMIT = 2000
SECTION_LIMIT = 3000
# A data-quality alert shows at most this many failed checks (Slack allows 50 blocks).
MAX_CHECKS_SHOWN = 20

# "Slack alerts are disabled" is logged once per process, not once per alert.
_disabled_notice_logged = False


# --- Sending ------------------------------------------------------------------------------


def _redact_json(value: object, secrets: list[str]) -> object:
    """Return a copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: _redact_json(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_json(item, secrets) for item in value]
    return value


def send_slack_alert(
    settings: Settings,
    text: str,
    blocks: list,
    *,
    session: requests.Session | None = None,
    sleep=time.sleep,
    timeout: tuple[float, float] = SLACK_TIMEOUT,
) -> bool:
    """Post one message to the Slack incoming webhook; never raise because of Slack.

    The text and every string inside the blocks are redacted first, and the alert text is
    always logged (as a warning: alerts are about problems), whether Slack gets it or not.

    Args:
        settings: uses `slack_webhook_url` and `secrets()`.
        text: the plain-text fallback (notifications, logs).
        blocks: Slack Block Kit blocks, e.g. from `build_task_failure_message`.
        session: a `requests.Session` to reuse (tests pass their own).
        sleep: the sleep between tries (tests pass a fake one).
        timeout: (connect, read) timeout of each try, in seconds.

    Returns:
        True when Slack answered HTTP 200; False when alerts are disabled (no webhook URL)
        or the message could not be delivered (outage, timeout, 4xx/5xx, bad URL).
    """
    global _disabled_notice_logged
    secrets = settings.secrets()
    text = redact(text, secrets)
    blocks = _redact_json(blocks, secrets)
    logger.warning("ALERT: %s", text)

    if not settings.slack_webhook_url:
        if not _disabled_notice_logged:
            logger.warning("Slack alerts are disabled (SLACK_WEBHOOK_URL is not set)")
            _disabled_notice_logged = True
        return False

    try:
        response = request_with_retries(
            "POST",
            settings.slack_webhook_url,
            session=session,
            json_body={"text": text, "blocks": blocks},
            timeout=timeout,
            total_timeout=min(SLACK_TOTAL_TIMEOUT, settings.http_total_timeout),
            max_tries=SLACK_MAX_TRIES,
            backoff_seconds=SLACK_BACKOFF_SECONDS,
            max_wait_seconds=SLACK_MAX_WAIT_SECONDS,
            max_bytes=64_000,  # Slack answers "ok" or a short error code
            secrets=secrets,
            context="slack alert",
            sleep=sleep,
        )
    except (HttpRequestError, requests.RequestException) as exc:
        # HttpRequestError: every try failed (outage, timeouts, 5xx). RequestException: a URL
        # that requests cannot even use (no scheme, bad host). Both messages may hold the URL.
        logger.warning("Slack alert not delivered: %s", redact(exc, secrets))
        return False

    if response.status_code != 200:
        # Slack explains a rejection in one short word: invalid_payload, no_service, ...
        logger.warning("Slack alert rejected: HTTP %d %s", response.status_code, redact(response.text[:200], secrets))
        return False
    logger.info("Slack alert delivered")
    return True


# --- Message helpers ------------------------------------------------------------------------


def _escape(text: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup (&, <, >)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: str) -> dict:
    """One 'label over value' cell of a section's two-column field grid."""
    return {"type": "mrkdwn", "text": _truncate(f"*{label}*\n{value}", FIELD_LIMIT)}


def _format_date(value: object) -> str:
    """Show a date/datetime as ISO 8601; None (a run without a logical date) as a dash."""
    if value is None or value == "":
        return "—"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _format_figure(value: object) -> str:
    """Show one figure of a check: lists as 'A, B, C', dicts as 'k=v, ...', the rest as str()."""
    if isinstance(value, list | tuple | set):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


# --- Task failures --------------------------------------------------------------------------


def build_log_url(base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """Return the Airflow 3 UI link to one task instance's log.

    Same route as Airflow 3's own `TaskInstance.log_url` (the React UI's
    `dags/:dagId/runs/:runId/tasks/:taskId[/mapped/:mapIndex]`), but built on our
    `AIRFLOW_BASE_URL` setting, the address people open in their browser.

    Example:
        >>> build_log_url("http://127.0.0.1:8080", "etl", "manual__2024-01-02", "load", -1, 2)
        'http://127.0.0.1:8080/dags/etl/runs/manual__2024-01-02/tasks/load?try_number=2'
    """
    url = f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


def task_failure_info_from_context(context, airflow_base_url: str | None = None) -> dict:
    """Pick what an alert needs out of an Airflow task callback context.

    Works with the Airflow 3 Task SDK context: `context["ti"]` is a `RuntimeTaskInstance`
    (dag_id, task_id, run_id, map_index, try_number, max_tries, log_url), `context["dag_run"]`
    the run (logical_date may be None for runs without one) and `context["exception"]` the
    error the task raised (None when the task was killed, e.g. a heartbeat timeout).

    Args:
        context: the dict Airflow passes to `on_failure_callback` / `on_retry_callback`.
        airflow_base_url: build the log link on this UI address; None uses Airflow's own
            `ti.log_url` (built on Airflow's `[api] base_url`).

    Returns:
        A dict with dag_id, task_id, map_index (-1 when not mapped), run_id, logical_date
        (ISO string or None), try_number, max_tries (Airflow's count of retries: a task has
        max_tries + 1 tries), exception_class, exception_message, log_url and mapped_url
        (the UI page listing all instances of a mapped task; None when the task is not
        mapped or no `airflow_base_url` was given).

    Raises:
        KeyError: the context has no "ti" (e.g. a DAG-level callback context).
        AttributeError: "ti" is not a task instance.
    """
    ti = context["ti"]
    dag_run = context.get("dag_run")
    logical_date = getattr(dag_run, "logical_date", None) or context.get("logical_date")
    map_index = ti.map_index if ti.map_index is not None else -1

    exception = context.get("exception")
    if isinstance(exception, BaseException):
        exception_class = type(exception).__name__
        exception_message = str(exception) or "(no message)"
    elif exception:
        # Airflow can pass a plain string describing the failure.
        exception_class = "Error"
        exception_message = str(exception)
    else:
        exception_class = "UnknownError"
        exception_message = "No exception reached the callback (the task may have been killed); see the log."

    mapped_url = None
    if airflow_base_url:
        log_url = build_log_url(airflow_base_url, ti.dag_id, ti.run_id, ti.task_id, map_index, ti.try_number)
        if map_index >= 0:
            # The UI's list of all instances of a mapped task.
            mapped_url = build_log_url(airflow_base_url, ti.dag_id, ti.run_id, ti.task_id, -1, 0) + "/mapped"
    else:
        log_url = ti.log_url
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "map_index": map_index,
        "run_id": ti.run_id,
        "logical_date": _format_date(logical_date) if logical_date else None,
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "exception_class": exception_class,
        "exception_message": exception_message,
        "log_url": log_url,
        "mapped_url": mapped_url,
    }


def recovery_hint(task_id: str) -> str:
    """What a person does to recover from a failed task, in one sentence (Slack mrkdwn).

    finish_run is where missing symbols fail a run; cleared, it fetches them again
    (airflow/dags/daily_etl_pipeline.py). Any other task: clearing it with the dialog's
    defaults re-runs it and the tasks after it.
    """
    if task_id == "finish_run":
        return (
            "fix the cause (e.g. wait for the source's outage to end), then Clear `finish_run` in this run "
            "(the Clear dialog's defaults): it fetches the missing symbols again and the run turns green."
        )
    return (
        f"fix the cause, then Clear `{task_id}` in this run "
        "(the Clear dialog's defaults also re-run the tasks after it)."
    )


def build_task_failure_message(info: dict) -> tuple[str, list]:
    """Build the Slack text and blocks for one failed task (a pure function: no I/O).

    Args:
        info: the dict from `task_failure_info_from_context`, optionally with
            "failed_map_indexes" (list of int) for a mapped task.

    Returns:
        (text, blocks): the plain-text fallback and the Block Kit blocks. Nothing is
        redacted here; `send_slack_alert` redacts both before they leave the process.
    """
    map_index = info.get("map_index", -1)
    task = f"`{_escape(info['task_id'])}`"
    if map_index >= 0:
        task += f" (map index {map_index})"
    # The callback runs for the final failure only. A task that raised AirflowFailException
    # (finish_run) ends before its retries are used: say "not retried", never "try 1 of 3".
    if info["try_number"] >= info["max_tries"] + 1:
        tries = f"{info['try_number']} of {info['max_tries'] + 1}"
        try_field, try_text = f"{tries} (final)", f"final failure on try {tries}"
    else:
        try_field = f"{info['try_number']} (final: not retried)"
        try_text = f"final failure on try {info['try_number']} (not retried)"
    recover = recovery_hint(info["task_id"])
    logical_date = _format_date(info.get("logical_date"))
    error = f"{info['exception_class']}: {info['exception_message']}"

    header = _truncate(f"Task failed: {info['dag_id']}.{info['task_id']}", HEADER_LIMIT)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {
            "type": "section",
            "fields": [
                _field("DAG", f"`{_escape(info['dag_id'])}`"),
                _field("Task", task),
                _field("Run", f"`{_escape(info['run_id'])}`"),
                _field("Logical date", logical_date),
                _field("Try", try_field),
                _field("Error", f"`{_escape(info['exception_class'])}`"),
            ],
        },
        # The code block keeps the error message readable; 10 characters go to the fences.
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"```{_truncate(_escape(error), SECTION_LIMIT - 10)}```"},
        },
    ]

    if map_index >= 0:
        failed = info.get("failed_map_indexes") or []
        if len(failed) == 1:
            so_far = f"1 instance has failed so far (map index {failed[0]})."
        elif failed:
            # At most 20 indexes: the link below lists every instance.
            indexes = ", ".join(map(str, failed[:20])) + (", …" if len(failed) > 20 else "")
            so_far = f"{len(failed)} instances have failed so far (map indexes {indexes})."
        else:
            so_far = "Other instances may fail too."
        where = f"<{info['mapped_url']}|see all mapped instances>" if info.get("mapped_url") else "see the grid"
        note = (
            f"This task is mapped. {so_far} Only the first failed instance sends an alert, "
            f"so later failures of this task in this run are not posted: {where}."
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": note}})

    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*To recover:* {recover}"}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{info['log_url']}|Open the task log in Airflow>"}],
        }
    )

    label = info["task_id"] if map_index < 0 else f"{info['task_id']}[{map_index}]"
    text = _escape(
        f"Task failed: {info['dag_id']}.{label} in run {info['run_id']} "
        f"(logical date {logical_date}), {try_text}. {error}. To recover: {recover.replace('`', '')} "
        f"Log: {info['log_url']}"
    )
    return text, blocks


def claim_task_alert(state_dir: Path, info: dict) -> tuple[bool, list[int]]:
    """Record one task failure and say whether this callback is the one that alerts.

    Failures are grouped per (dag_id, run_id, task_id, try_number): the 50 mapped instances
    of a task that fail in one run share a group, so only one alert is posted. The try
    number is part of the key so that a task a person cleared and re-ran alerts again.

    The first callback of a group wins by creating `<group>.sent` with O_CREAT | O_EXCL:
    the operating system lets exactly one process create a file, even when many mapped
    instances fail at the same moment. Each mapped failure first appends its map index to
    `<group>.failed_map_indexes`, so the winner can say which indexes had failed so far.

    Args:
        state_dir: the pipeline's state folder (`settings.state_dir`); files go under
            `alerts/<dag_id>/<run_id, URL-quoted>/`.
        info: the dict from `task_failure_info_from_context`.

    Returns:
        (should_alert, failed_map_indexes). If the marker cannot be written (read-only disk)
        the answer is (True, []): a duplicate alert is better than a missing one.
    """
    folder = Path(state_dir) / "alerts" / info["dag_id"] / quote(info["run_id"], safe="")
    group = f"{info['task_id']}.try{info['try_number']}"
    map_index = info.get("map_index", -1)
    indexes_file = folder / f"{group}.failed_map_indexes"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if map_index >= 0:
            # One short line per append: appends of a few bytes do not interleave.
            with open(indexes_file, "a", encoding="utf-8") as indexes:
                indexes.write(f"{map_index}\n")
    except OSError as exc:
        logger.warning("Could not record the failure in %s (%s); alerting anyway", folder, exc)
        return True, []
    try:
        marker = os.open(folder / f"{group}.sent", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False, []  # another failure of this group got there first
    except OSError as exc:
        logger.warning("Could not write the alert marker in %s (%s); alerting anyway", folder, exc)
        return True, []
    os.close(marker)

    failed: list[int] = []
    if map_index >= 0:
        failed = sorted({int(line) for line in indexes_file.read_text(encoding="utf-8").split()})
    return True, failed


def on_task_failure(context) -> None:
    """Airflow `on_failure_callback`: post one Slack alert for a task's final failure.

    Airflow 3 calls it only when a task ends FAILED (its retries are used up); failed tries
    that will be retried go to `on_retry_callback` instead. Callbacks take no arguments
    besides the context, so the settings are loaded here. Nothing in here raises: a broken
    alert must never hide the task's own error.

    Args:
        context: the task's Airflow context (see `task_failure_info_from_context`).
    """
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        logger.error("Task failure alert skipped: the settings are invalid (%s)", redact(exc))
        return
    try:
        info = task_failure_info_from_context(context, airflow_base_url=settings.airflow_base_url)
    except (KeyError, AttributeError) as exc:
        logger.error("Task failure alert skipped: unexpected callback context (%r)", exc)
        return

    should_alert, failed_map_indexes = claim_task_alert(settings.state_dir, info)
    where = f"{info['dag_id']}.{info['task_id']} map_index={info['map_index']} run_id={info['run_id']}"
    if not should_alert:
        logger.info("Task failure already alerted for this task and run, not posting again: %s", where)
        return
    info["failed_map_indexes"] = failed_map_indexes
    # Redact before the message escapes &, < and > (send_slack_alert redacts again after).
    info["exception_message"] = redact(info["exception_message"], settings.secrets())
    text, blocks = build_task_failure_message(info)
    send_slack_alert(settings, text, blocks)


def on_task_retry(context) -> None:
    """Airflow `on_retry_callback`: log the failed try, post nothing to Slack.

    A try that Airflow retries is routine here (an API's rate limit, a network blip); a
    Slack message for each would teach people to ignore the channel. The final failure is
    alerted by `on_task_failure`; the retries are visible in the log and the Airflow grid.

    Args:
        context: the task's Airflow context.
    """
    try:
        secrets = load_settings().secrets()
    except ConfigurationError:
        secrets = []  # redact() still removes apikey=... and Slack webhook URLs
    try:
        info = task_failure_info_from_context(context)
    except (KeyError, AttributeError) as exc:
        logger.warning("Task try failed and will be retried (unexpected callback context: %r)", exc)
        return
    logger.warning(
        "%s",
        redact(
            f"Task {info['dag_id']}.{info['task_id']} map_index={info['map_index']} run_id={info['run_id']} "
            f"failed on try {info['try_number']} of {info['max_tries'] + 1}; Airflow will retry it. "
            f"{info['exception_class']}: {info['exception_message']}",
            secrets,
        ),
    )


# --- Data quality -----------------------------------------------------------------------------


def build_data_quality_message(check_results: list[dict], *, run_id: str, logical_date) -> tuple[str, list]:
    """Build the Slack text and blocks for the failed data-quality checks of a run (pure).

    Args:
        check_results: dicts {"name", "ok", "message", "figures"}; "figures" is a dict of
            numbers, lists (e.g. the symbols concerned) or strings.
        run_id: the Airflow run id.
        logical_date: the run's logical date (date, datetime, ISO string or None).

    Returns:
        (text, blocks). Only failed checks are described; passed ones are named in a
        context line.
    """
    failed = [check for check in check_results if not check.get("ok")]
    passed = [check["name"] for check in check_results if check.get("ok")]
    logical = _format_date(logical_date)
    title = f"Data quality: {len(failed)} of {len(check_results)} checks failed"

    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {
            "type": "section",
            "fields": [_field("Run", f"`{_escape(run_id)}`"), _field("Logical date", logical)],
        },
    ]
    for check in failed[:MAX_CHECKS_SHOWN]:
        lines = [f"*{_escape(check['name'])}*: {_escape(check.get('message', ''))}"]
        for name, value in (check.get("figures") or {}).items():
            lines.append(f"• {_escape(name)}: {_escape(_format_figure(value))}")
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate("\n".join(lines), SECTION_LIMIT)},
            }
        )
    context = f"Passed: {', '.join(passed)}" if passed else "No check passed."
    if len(failed) > MAX_CHECKS_SHOWN:
        context = f"{len(failed) - MAX_CHECKS_SHOWN} more failed checks are in the log. " + context
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _truncate(_escape(context), SECTION_LIMIT)}],
        }
    )

    summaries = "; ".join(f"{check['name']}: {check.get('message', '')}" for check in failed)
    text = _escape(f"{title} (run {run_id}, logical date {logical}). {summaries}")
    return text, blocks


def send_data_quality_alert(
    settings: Settings,
    check_results: list[dict],
    *,
    run_id: str,
    logical_date,
    session: requests.Session | None = None,
) -> bool:
    """Post one Slack alert listing the failed data-quality checks of a run.

    Args:
        settings: the pipeline settings (webhook URL, secrets).
        check_results: dicts {"name", "ok", "message", "figures"} from the health checks.
        run_id: the Airflow run id.
        logical_date: the run's logical date.
        session: a `requests.Session` to reuse (tests).

    Returns:
        True when an alert was delivered. False when every check passed (nothing is sent)
        or the alert could not be delivered.
    """
    if all(check.get("ok") for check in check_results):
        logger.info("Data quality: all %d checks passed (run %s); no alert", len(check_results), run_id)
        return False
    text, blocks = build_data_quality_message(check_results, run_id=run_id, logical_date=logical_date)
    return send_slack_alert(settings, text, blocks, session=session)


# --- Pipeline runs ------------------------------------------------------------------------------


def send_run_alert(run: dict, settings: Settings, *, not_recorded: str = "") -> bool:
    """Send a Slack alert when a run is partial or failed; a successful run sends nothing.

    The CLI's runs use this (an Airflow run is alerted by its failed task instead). The alert
    names the run, its date, each failed symbol with its reason, and the error that stopped
    the run, if any. Like every alert it is redacted and never fails the run.

    Args:
        run: the run's `pipeline_runs` row (see `steps.RunSummary.as_run_record`).
        settings: loaded settings (SLACK_WEBHOOK_URL).
        not_recorded: why the run could not be written to pipeline_runs (e.g. the disk is
            full); then even a successful run is alerted, since no record shows it.

    Returns:
        True when Slack accepted the alert; False when nothing was sent or Slack failed.
    """
    if run["status"] == "success" and not not_recorded:
        return False
    lines = [
        f"Pipeline run {run['run_id']} for {run['logical_date']}: {str(run['status']).upper()}: "
        f"{run['symbols_loaded']} of {run['symbols_requested']} symbols loaded."
    ]
    lines += [f"{symbol}: {reason}" for symbol, reason in sorted(run["failed_symbols"].items())]
    if run.get("error"):
        lines.append(f"Stopped by: {run['error']}")
    if not_recorded:
        lines.append(f"NOT recorded in pipeline_runs (the warehouse cannot be written): {not_recorded}")
    lines.append("Failed symbols are retried by running the same dates again; already loaded data is kept.")
    text = "\n".join(lines)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}]
    return send_slack_alert(settings, text, blocks)


def send_split_notice(recomputes: dict[str, list[str]], run_id: str, settings: Settings) -> bool:
    """Tell Slack that a load learned new splits and rewrote those symbols' history (a notice, not a failure).

    Every earlier adjusted price, indicator and bar of such a symbol changed, so charts and
    signals a user saw before look different now: worth a line in the channel.

    Args:
        recomputes: symbol -> the split dates newly learned (`steps.Loaded.split_recomputes`).
        run_id: the run that did it.
        settings: loaded settings (SLACK_WEBHOOK_URL).

    Returns:
        True when Slack accepted the notice; False when there was nothing to say, alerts are
        off, or Slack failed (never raises).
    """
    if not recomputes:
        return False
    lines = [f"Run {run_id} learned new stock splits and recomputed those symbols' history in full:"]
    lines += [f"{symbol}: split(s) on {', '.join(dates)}" for symbol, dates in sorted(recomputes.items())]
    lines.append("Adjusted prices, indicators and weekly/monthly bars of these symbols are on the new share basis.")
    text = "\n".join(lines)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}]
    return send_slack_alert(settings, text, blocks)
