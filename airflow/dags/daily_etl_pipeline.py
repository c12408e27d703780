"""The daily ETL DAG: stock prices -> S3 raw zone -> transform -> warehouse, with alerts.

This file only wires tasks together. Each task is a few lines that load the settings and call
one function in `src/steps.py` (the same steps the CLI runs); the real work (and its tests)
lives there. Nothing heavy happens at import time: the scheduler's DAG processor re-parses this
file every few seconds, so pandas, boto3 and our own `src` modules are imported inside the
tasks and callbacks, which is why every task starts with its imports.

docs/airflow.md explains the schedule, the dates a run fetches, params, backfills and pools.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task, task_group

# The exchange's timezone: the same value as src.market_calendar.NEW_YORK, which this file may
# not import at parse time (tests/unit/test_dag_integrity.py checks that the two agree).
NEW_YORK = "America/New_York"

# The one environment read at parse time: a plain number, no network, no database. Every other
# setting is loaded by `src.config.load_settings()` inside the tasks, when they run.
FIRST_RETRY_DELAY_SECONDS = int(os.environ.get("TASK_RETRY_DELAY_SECONDS", "60"))

DOC_MD = """
### Daily stock prices ETL

Runs **Monday to Friday at 18:30 New York time**, after the US close (16:00), so the day's
prices are in the warehouse long before the next open.

| step | what it does |
|---|---|
| `resolve_symbols` | the symbols of this run: the `symbols` param, else `SYMBOLS` from the settings |
| `start_run` | picks the trading day(s) to fetch and records a *running* row in `pipeline_runs` |
| `make_batches` | splits the symbols into batches of `BATCH_SIZE`: one copy of the `etl_batch` group each |
| `etl_batch.extract` | per batch: Alpha Vantage, else Yahoo; raw replies land in S3 (pool `alpha_vantage`) |
| `etl_batch.transform` | per batch: validate and clean (bad rows to quarantine); processed Parquet lands in S3 |
| `etl_batch.load` | per batch: indicators and bars from the stored lookback, upsert (pool `warehouse_writer`) |
| `finish_run` | records the run; **fails** (no retries) if a symbol failed; cleared, it fetches the missing ones |
| `check_data_quality` | checks the loaded day (fresh, complete, sane); a failed check sends a Slack alert |

**Which day?** The run fetches the latest NYSE session that had closed at the run's logical
date: the same day for the 18:30 run, the previous session for a manual run during the day or
on a weekend. Trigger with params `start` / `end` to load a range instead.

Re-running a date is safe: every write is an upsert keyed by (symbol, trade_date), and the S3
keys are named after the trading day. A failed task posts one Slack alert.

**Recovering a failed run:** fix the cause (e.g. the outage ends), then **Clear** the red
`finish_run` (the dialog's defaults). It fetches, transforms and loads the missing symbols, and
the run turns green; the first try's outcome stays in `pipeline_runs` as `<run_id>#try1`.
"""


def alert_on_failure(context):
    """Post one Slack alert for a task's final failure (imported lazily: nothing at parse time)."""
    from src.monitoring.alerting import on_task_failure

    on_task_failure(context)


def log_retry(context):
    """Log a failed try that Airflow will retry (no Slack message for routine retries)."""
    from src.monitoring.alerting import on_task_retry

    on_task_retry(context)


def trading_day_of(dag_run) -> str:
    """The run's trading day, 'YYYY-MM-DD': the NYSE session that last closed before the logical date.

    For the 18:30 run that is the same day; on a holiday, a weekend or during trading hours it
    is the previous session. Manual runs may have no logical date in Airflow 3; then the time
    the run was queued for (`run_after`) is used.
    """
    from src.market_calendar import latest_completed_session

    return latest_completed_session(dag_run.logical_date or dag_run.run_after).isoformat()


def all_batches(results) -> list[dict]:
    """The results of every copy of the mapped `etl_batch` group, as a list.

    Airflow hands a task outside a mapped group the list of the copies' results, but the bare
    result when there was only one copy (one batch): make both a list.
    """
    return [results] if isinstance(results, dict) else list(results)


@dag(
    dag_id="daily_etl_pipeline",
    description="Daily stock prices: Alpha Vantage / Yahoo -> S3 -> transform -> warehouse",
    doc_md=DOC_MD,
    # 18:30 New York time (EST or EDT alike), Monday to Friday. A trigger timetable makes the
    # logical date the moment of the run itself, so a run's logical date falls on its trading day.
    schedule=CronTriggerTimetable("30 18 * * 1-5", timezone=NEW_YORK),
    # Early enough to backfill the real sample history (2000-2013). catchup=False: a new
    # deployment runs today's date only; past dates go through `airflow backfill create`.
    start_date=pendulum.datetime(2000, 1, 1, tz=NEW_YORK),
    catchup=False,
    max_active_runs=1,
    tags=["etl", "finance", "daily"],
    params={
        "symbols": Param(
            None,
            type=["null", "array"],
            title="Symbols",
            description="One ticker per line, e.g. AAPL. Unset (null): the configured SYMBOLS; [] is refused.",
        ),
        "source": Param(
            "auto",
            enum=["auto", "alpha_vantage", "yahoo", "file"],
            title="Source",
            description="auto = DATA_SOURCES in order with fallback; otherwise only this source.",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            title="First day",
            description="Optional YYYY-MM-DD. Empty: the run's trading day.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Last day",
            description="Optional YYYY-MM-DD. Empty: the run's trading day.",
        ),
    },
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=FIRST_RETRY_DELAY_SECONDS),
        # Each retry waits about twice as long as the one before, never more than 10 minutes.
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": alert_on_failure,
        "on_retry_callback": log_retry,
    },
)
def daily_etl_pipeline():
    @task
    def resolve_symbols(params=None) -> list[str]:
        """Validate the symbols of this run (the `symbols` param wins over the settings)."""
        from src import steps
        from src.config import load_settings

        return steps.resolve_symbols(params.get("symbols"), load_settings())

    @task
    def start_run(symbols: list[str], params=None, dag_run=None, run_id=None, ti=None) -> dict:
        """Choose the dates to fetch and record the run as running; returns them for the other tasks."""
        from datetime import date

        from src import steps
        from src.config import ConfigurationError, load_settings

        if ti.try_number > 1:
            # The whole run was cleared: keep the earlier try's outcome before it is overwritten.
            steps.keep_earlier_try(run_id, ti.try_number - 1, load_settings())

        trading_day = trading_day_of(dag_run)
        end = params.get("end") or trading_day
        start = params.get("start") or end
        if start > end:  # ISO dates compare correctly as text
            raise ConfigurationError(f"param start {start} is after end {end}")
        # Never a session that has not closed yet (a manual run during the day).
        end = steps.closed_end(date.fromisoformat(start), date.fromisoformat(end)).isoformat()
        # The run's date for S3 keys, pipeline_runs and the checks is the last day fetched.
        summary = steps.start_run(run_id, date.fromisoformat(end), symbols, load_settings())
        return {"start": start, "end": end, "run_date": end, "started_at": summary.started_at}

    @task
    def make_batches(symbols: list[str]) -> list[list[str]]:
        """Split the symbols into batches of BATCH_SIZE: one mapped extract/transform/load each."""
        from src import steps
        from src.config import load_settings

        return steps.make_batches(symbols, load_settings().batch_size)

    # One slot: only one batch talks to Alpha Vantage at a time, whatever the parallelism,
    # so the per-minute limit holds across workers.
    @task(pool="alpha_vantage")
    def extract(symbols: list[str], run: dict, params=None) -> dict:
        """Fetch one batch and land the raw replies in S3; returns the S3 keys and failures."""
        from datetime import date

        from src import steps
        from src.config import load_settings

        start, end, run_date = (date.fromisoformat(run[name]) for name in ("start", "end", "run_date"))
        sources = steps.sources_for(params.get("source"))
        return steps.extract_batch(symbols, start, end, run_date, load_settings(), sources=sources).to_xcom()

    @task
    def transform(extracted: dict, run: dict, ti=None) -> dict:
        """Validate and clean one batch; returns the processed S3 keys and row counts."""
        from datetime import date

        from src import steps
        from src.config import load_settings

        # Named after the map index, so a re-run of this batch overwrites its own files.
        part = f"batch-{ti.map_index:03d}"
        run_date = date.fromisoformat(run["run_date"])
        return steps.transform_batch(steps.Extracted(**extracted), run_date, part, load_settings()).to_xcom()

    # One slot: SQLite allows one writer at a time (BigQuery would not mind).
    @task(pool="warehouse_writer")
    def load(transformed: dict, run_id=None) -> dict:
        """Compute indicators and aggregates and upsert one batch into the warehouse; returns row counts."""
        from src import steps
        from src.config import load_settings

        return steps.load_batch(steps.Transformed(**transformed), run_id, load_settings()).to_xcom()

    # all_done: the run is recorded even when a batch task failed or was stopped (SIGTERM from
    # a deploy or a worker shutdown); its symbols are then recorded as failed, never `running`.
    @task(trigger_rule="all_done")
    def finish_run(
        symbols: list[str], run: dict, extract_results, load_results, params=None, run_id=None, ti=None
    ) -> dict:
        """Record the run's outcome and metrics; fails (and alerts) at once if any symbol failed.

        Cleared after a failure (try 2 or later), it first fetches, transforms and loads the
        symbols the run lacked: clearing the red task is the whole recovery.
        """
        from datetime import date

        from airflow.sdk.exceptions import AirflowFailException

        from src import steps
        from src.config import load_settings

        settings = load_settings()
        start, end, run_date = (date.fromisoformat(run[name]) for name in ("start", "end", "run_date"))
        extracted, loaded = all_batches(extract_results), all_batches(load_results)
        # Missing symbols fail this task without retries (below): a later try is a person's Clear
        # (or a retry after a crash). Either way, fetch what the run lacked before summing it up.
        if ti.try_number > 1:
            steps.keep_earlier_try(run_id, ti.try_number - 1, settings)
            extracted, retried = steps.retry_failed_symbols(
                extracted, start, end, run_date, run_id, settings, sources=steps.sources_for(params.get("source"))
            )
            loaded = loaded + retried
        try:
            return steps.finish_task_run(run_id, run_date, symbols, run["started_at"], extracted, loaded, settings)
        except steps.PipelineRunFailed as exc:
            # Missing symbols are a fact about this run, not a hiccup: a retry would record the
            # same outcome again and only delay the alert. AirflowFailException skips the retries.
            raise AirflowFailException(f"PipelineRunFailed: {exc}") from exc

    @task
    def check_data_quality(symbols: list[str], run: dict, run_id=None) -> dict:
        """Check the loaded day (fresh, complete, sane); a failed check sends a Slack alert."""
        from datetime import date

        from src import steps
        from src.config import load_settings

        return steps.check_data_quality(symbols, date.fromisoformat(run["run_date"]), load_settings(), run_id=run_id)

    @task_group
    def etl_batch(symbols: list[str], run: dict) -> dict:
        """Extract, transform and load one batch of symbols."""
        extracted = extract(symbols, run)
        loaded = load(transform(extracted, run))
        return {"extracted": extracted, "loaded": loaded}

    symbols = resolve_symbols()
    run = start_run(symbols)
    # One copy of the group per batch. Mapping the whole group (not each task) lets batch 2 be
    # fetched while batch 1 is transformed and batch 0 loaded, instead of phase after phase.
    batches = etl_batch.partial(run=run).expand(symbols=make_batches(symbols))
    # The checks run on a complete run only: when symbols failed, finish_run fails and its alert
    # already names them, so one incident makes one Slack message.
    finish = finish_run(symbols, run, batches["extracted"], batches["loaded"])
    finish >> check_data_quality(symbols, run)


daily_etl_pipeline()
