"""DAG integrity: the DAG file parses cleanly, cheaply and offline, and is wired the way we mean.

Parsing happens in the scheduler's DAG processor every few seconds, so the file must not do
work at import time. These tests parse airflow/dags with sockets and SQLite blocked: any
network or database call at parse time makes the import fail.

Needs the `airflow_env` plugin (a private AIRFLOW_HOME); no metadata DB is used.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
from datetime import datetime, timedelta
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest

from tests.fixtures.airflow_env import DAGS_FOLDER

DAG_ID = "daily_etl_pipeline"
NEW_YORK = ZoneInfo("America/New_York")
HEAVY_MODULES = ("pandas", "boto3", "requests", "yfinance", "src")


class ParseTimeAccessError(AssertionError):
    """Raised by the blocked socket/sqlite functions."""


def _forget_dag_module() -> None:
    """Drop a previously imported copy of the DAG file so the next parse really runs it."""
    for name in list(sys.modules):
        if "daily_etl_pipeline" in name:
            del sys.modules[name]


@pytest.fixture
def offline_dagbag(airflow_home, monkeypatch):
    """Parse airflow/dags with every socket connect and sqlite3.connect failing loudly."""
    from airflow.dag_processing.dagbag import DagBag

    def no_network(*args, **kwargs):
        raise ParseTimeAccessError(f"network access at parse time: {args[1:]!r}")

    def no_database(*args, **kwargs):
        raise ParseTimeAccessError(f"database access at parse time: {args!r}")

    _forget_dag_module()
    monkeypatch.setenv("TASK_RETRY_DELAY_SECONDS", "45")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(sqlite3, "connect", no_database)
    modules_before = set(sys.modules)
    bag = DagBag(dag_folder=str(DAGS_FOLDER), known_pools={"default_pool", "alpha_vantage", "warehouse_writer"})
    monkeypatch.undo()  # restore sockets and sqlite before any assertion output
    bag.modules_imported_by_parse = set(sys.modules) - modules_before
    return bag


@pytest.fixture
def etl_dag(offline_dagbag):
    return offline_dagbag.dags[DAG_ID]


def test_dag_folder_parses_without_errors_offline(offline_dagbag):
    assert offline_dagbag.import_errors == {}
    assert list(offline_dagbag.dags) == [DAG_ID]


def test_parsing_imports_no_heavy_or_project_modules(offline_dagbag):
    # Modules first imported while the DAG file was parsed:
    newly_heavy = sorted(
        name for name in offline_dagbag.modules_imported_by_parse if name.split(".")[0] in HEAVY_MODULES
    )
    assert newly_heavy == []
    # ...and the modules the DAG file itself holds at top level (catches ones already imported elsewhere).
    module = sys.modules[_dag_module_name()]
    top_level_modules = sorted(name for name, value in vars(module).items() if isinstance(value, ModuleType))
    assert top_level_modules == ["os", "pendulum"]


def test_dag_settings(etl_dag):
    assert etl_dag.tags == {"etl", "finance", "daily"}
    assert etl_dag.catchup is False
    assert etl_dag.max_active_runs == 1
    assert etl_dag.start_date == datetime(2000, 1, 1, tzinfo=NEW_YORK)
    assert "### Daily stock prices ETL" in etl_dag.doc_md
    assert set(etl_dag.params.keys()) == {"symbols", "source", "start", "end"}
    assert etl_dag.params["source"] == "auto"
    assert etl_dag.params["symbols"] is None


def test_tasks_and_dependencies(etl_dag):
    upstream = {task.task_id: sorted(task.upstream_task_ids) for task in etl_dag.tasks}
    assert upstream == {
        "resolve_symbols": [],
        "start_run": ["resolve_symbols"],
        "make_batches": ["resolve_symbols"],
        "etl_batch.extract": ["make_batches", "start_run"],
        "etl_batch.transform": ["etl_batch.extract", "start_run"],
        "etl_batch.load": ["etl_batch.transform"],
        "finish_run": ["etl_batch.extract", "etl_batch.load", "resolve_symbols", "start_run"],
        "check_data_quality": ["finish_run", "resolve_symbols", "start_run"],
    }


def test_batches_are_mapped_and_pools_serialise_the_api_and_the_writer(etl_dag):
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    # One mapped group per batch: extract -> transform -> load.
    group = etl_dag.task_group_dict["etl_batch"]
    assert isinstance(group, MappedTaskGroup)
    assert sorted(group.children) == ["etl_batch.extract", "etl_batch.load", "etl_batch.transform"]
    pools = {task.task_id: task.pool for task in etl_dag.tasks}
    assert pools["etl_batch.extract"] == "alpha_vantage"
    assert pools["etl_batch.load"] == "warehouse_writer"
    others = {pool for task_id, pool in pools.items() if task_id not in ("etl_batch.extract", "etl_batch.load")}
    assert others == {"default_pool"}


def test_every_task_retries_with_exponential_backoff_and_alerts(etl_dag):
    for task in etl_dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_delay == timedelta(seconds=45), task.task_id  # TASK_RETRY_DELAY_SECONDS
        assert task.retry_exponential_backoff == 2.0, task.task_id
        assert task.max_retry_delay == timedelta(minutes=10), task.task_id
        assert [cb.__name__ for cb in _as_list(task.on_failure_callback)] == ["alert_on_failure"], task.task_id
        assert [cb.__name__ for cb in _as_list(task.on_retry_callback)] == ["log_retry"], task.task_id


def test_callbacks_hand_the_context_to_the_alerting_module(etl_dag, monkeypatch):
    import src.monitoring.alerting as alerting

    received = []
    monkeypatch.setattr(alerting, "on_task_failure", lambda context: received.append(("failure", context)))
    monkeypatch.setattr(alerting, "on_task_retry", lambda context: received.append(("retry", context)))
    task = etl_dag.get_task("finish_run")
    _as_list(task.on_failure_callback)[0]({"run_id": "r1"})
    _as_list(task.on_retry_callback)[0]({"run_id": "r2"})
    assert received == [("failure", {"run_id": "r1"}), ("retry", {"run_id": "r2"})]


@pytest.mark.parametrize(
    ("after", "expected_run"),
    [
        # Friday 2024-06-28 at noon: the next run is that evening at 18:30 EDT (22:30 UTC).
        (datetime(2024, 6, 28, 12, 0, tzinfo=NEW_YORK), datetime(2024, 6, 28, 18, 30, tzinfo=NEW_YORK)),
        # Friday evening after the run: nothing at the weekend, next is Monday 18:30.
        (datetime(2024, 6, 28, 19, 0, tzinfo=NEW_YORK), datetime(2024, 7, 1, 18, 30, tzinfo=NEW_YORK)),
        # Winter time: 18:30 EST is 23:30 UTC.
        (datetime(2024, 1, 15, 9, 0, tzinfo=NEW_YORK), datetime(2024, 1, 15, 18, 30, tzinfo=NEW_YORK)),
    ],
)
def test_schedule_is_weekdays_after_the_us_close_in_new_york_time(etl_dag, after, expected_run):
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    # The core (scheduler-side) form of the DAG's timetable computes the next run.
    timetable = CronTriggerTimetable("30 18 * * 1-5", timezone="America/New_York")
    assert etl_dag.timetable.expression == timetable._expression
    assert str(etl_dag.timetable.timezone) == "America/New_York"
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=after, latest=None, catchup=True),
    )
    assert info.logical_date == expected_run
    assert info.logical_date.astimezone(NEW_YORK).hour == 18


class _FakeRun:
    def __init__(self, logical_date, run_after=None):
        self.logical_date = logical_date
        self.run_after = run_after


@pytest.mark.parametrize(
    ("moment", "trading_day"),
    [
        (datetime(2024, 6, 28, 18, 30, tzinfo=NEW_YORK), "2024-06-28"),  # the scheduled run: same day
        (datetime(2024, 6, 28, 11, 0, tzinfo=NEW_YORK), "2024-06-27"),  # during trading: previous session
        (datetime(2024, 6, 28, 16, 0, tzinfo=NEW_YORK), "2024-06-27"),  # the close itself: not yet "before"
        (datetime(2024, 6, 29, 10, 0, tzinfo=NEW_YORK), "2024-06-28"),  # Saturday: Friday
        (datetime(2024, 7, 4, 18, 30, tzinfo=NEW_YORK), "2024-07-03"),  # Independence Day: the day before
        (datetime(2024, 11, 29, 13, 30, tzinfo=NEW_YORK), "2024-11-29"),  # early close at 13:00
        (datetime(2010, 1, 4, 18, 30, tzinfo=NEW_YORK), "2010-01-04"),  # a backfill date
    ],
)
def test_trading_day_of_a_run(offline_dagbag, moment, trading_day):
    module = sys.modules[_dag_module_name()]
    assert module.trading_day_of(_FakeRun(moment)) == trading_day


def test_trading_day_uses_run_after_when_a_manual_run_has_no_logical_date(offline_dagbag):
    module = sys.modules[_dag_module_name()]
    run = _FakeRun(None, run_after=datetime(2024, 6, 30, 12, 0, tzinfo=NEW_YORK))  # a Sunday
    assert module.trading_day_of(run) == "2024-06-28"


def test_the_dags_timezone_is_the_market_calendars(offline_dagbag):
    # The DAG file may not import src at parse time, so it names the timezone itself.
    from src.market_calendar import NEW_YORK as CALENDAR_TIMEZONE

    module = sys.modules[_dag_module_name()]
    assert module.NEW_YORK == CALENDAR_TIMEZONE


def _as_list(callbacks) -> list:
    """Plain tasks keep their callbacks as a list, mapped ones as given: compare them alike."""
    return list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]


def _dag_module_name() -> str:
    return next(name for name in sys.modules if name.endswith("daily_etl_pipeline"))


def test_finish_run_runs_even_when_a_batch_task_failed_or_was_interrupted(etl_dag):
    """Issue 19: a batch task killed by SIGTERM must not leave the run `running` forever."""
    assert etl_dag.get_task("finish_run").trigger_rule == "all_done"
    assert etl_dag.get_task("check_data_quality").trigger_rule == "all_success"
