"""Unit tests for the health checks' report formatting (no warehouse).

The warehouse checks themselves run against real SQLite files in
tests/integration/test_health_checks_warehouse.py.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from src.monitoring.health_checks import (
    CheckResult,
    build_health_report,
    check_validation_failures,
    format_health_table,
)


def test_check_result_to_dict_has_the_alert_shape():
    result = CheckResult("freshness", False, "2 sessions behind", {"lag_sessions": 2})
    assert result.to_dict() == {
        "name": "freshness",
        "ok": False,
        "message": "2 sessions behind",
        "figures": {"lag_sessions": 2},
    }


def test_build_health_report_is_healthy_only_when_every_check_passed():
    passed = CheckResult("freshness", True, "up to date", {"lag_sessions": 0})
    failed = CheckResult("last_run", False, "run r1 ended failed", {"status": "failed"})

    healthy = build_health_report([passed])
    unhealthy = build_health_report([passed, failed])

    assert healthy == {"healthy": True, "checks": [passed.to_dict()]}
    assert unhealthy["healthy"] is False
    assert [check["name"] for check in unhealthy["checks"]] == ["freshness", "last_run"]
    assert json.loads(json.dumps(unhealthy)) == unhealthy  # JSON-ready as it is


def test_format_health_table_lines_up_the_checks_and_names_the_failures():
    table = format_health_table(
        [
            CheckResult("freshness", True, "up to date"),
            CheckResult("completeness", False, "1 of 4 symbol-sessions missing"),
            CheckResult("last_run", False, "no pipeline run is recorded"),
        ]
    )
    assert table.splitlines() == [
        "CHECK         STATUS  MESSAGE",
        "freshness     OK      up to date",
        "completeness  FAIL    1 of 4 symbol-sessions missing",
        "last_run      FAIL    no pipeline run is recorded",
        "",
        "UNHEALTHY: completeness, last_run failed",
    ]
    assert format_health_table([CheckResult("freshness", True, "up to date")]).endswith("HEALTHY: every check passed")


def test_validation_failures_needs_a_run_or_a_date_range():
    with pytest.raises(ValueError, match="needs a run_id, or first and last dates"):
        check_validation_failures(None, first=date(2024, 7, 1))
