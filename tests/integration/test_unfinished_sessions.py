"""A session that has not closed yet is never stored, even when the source already has its bar.

The mock Alpha Vantage serves bars up to and including the day of the run (what the real API
does during market hours: the day's bar changes until the close). The run happens at a given
moment (`now`), before or after that day's close: 16:00 New York time, 13:00 on an early-close
day (the day after Thanksgiving, 2024-11-29).
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from src import steps
from src.config import ConfigurationError, load_settings
from src.local_stack.mock_alpha_vantage import start_mock_server
from src.local_stack.synthetic_data import write_synthetic_universe

pytestmark = pytest.mark.integration

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def mock_until_black_friday(tmp_path):
    """The mock serving IBM up to Friday 2024-11-29 (an early close at 13:00)."""
    data_dir = tmp_path / "data"
    write_synthetic_universe(data_dir, ["IBM"], date(2024, 6, 3), date(2024, 11, 29))
    server, thread, base_url = start_mock_server(data_dir)
    yield base_url
    server.stop()
    thread.join(timeout=5)


def settings_for(tmp_path, base_url, name: str):
    return load_settings(
        env_file=tmp_path / "none.env",
        overrides={
            "DATA_SOURCES": "alpha_vantage",
            "ALPHA_VANTAGE_API_KEY": "unfinished-test-key",  # pragma: allowlist secret - the mock takes any key
            "ALPHA_VANTAGE_BASE_URL": base_url,
            "ALPHA_VANTAGE_MIN_INTERVAL_SECONDS": "0",
            "SQLITE_PATH": str(tmp_path / f"{name}.db"),
            "STATE_DIR": str(tmp_path / f"{name}-state"),
            "SLACK_WEBHOOK_URL": "",
        },
    )


def stored_days(settings) -> list[str]:
    with sqlite3.connect(settings.sqlite_path) as conn:
        return [row[0] for row in conn.execute("SELECT trade_date FROM fact_daily_prices ORDER BY trade_date")]


@pytest.mark.parametrize(
    ("hour", "minute", "last_stored"),
    [
        (12, 0, "2024-11-27"),  # before the 13:00 early close: Friday's bar is not final yet
        (13, 30, "2024-11-29"),  # after it
    ],
)
def test_an_early_close_day_is_stored_only_after_its_close(
    tmp_path, mock_until_black_friday, caplog, hour, minute, last_stored
):
    settings = settings_for(tmp_path, mock_until_black_friday, f"at-{hour}")
    now = datetime(2024, 11, 29, hour, minute, tzinfo=NEW_YORK)

    with caplog.at_level(logging.WARNING, logger="src.steps"):
        summary = steps.run_pipeline(
            ["IBM"], date(2024, 11, 25), date(2024, 11, 29), settings, show_progress=False, now=now
        )

    assert summary.status == "success"
    assert stored_days(settings)[-1] == last_stored
    assert stored_days(settings)[0] == "2024-11-25"
    if last_stored != "2024-11-29":
        assert "have not closed yet" in caplog.text and "2024-11-29" in caplog.text


def test_a_normal_day_closes_at_four(tmp_path, mock_until_black_friday):
    settings = settings_for(tmp_path, mock_until_black_friday, "wednesday")
    during = datetime(2024, 11, 27, 15, 59, tzinfo=NEW_YORK)

    steps.run_pipeline(["IBM"], date(2024, 11, 25), date(2024, 11, 27), settings, show_progress=False, now=during)

    assert stored_days(settings) == ["2024-11-25", "2024-11-26"]


def test_a_range_with_no_closed_session_yet_is_refused(tmp_path, mock_until_black_friday):
    settings = settings_for(tmp_path, mock_until_black_friday, "too-early")
    morning = datetime(2024, 11, 29, 10, 0, tzinfo=NEW_YORK)

    with pytest.raises(ConfigurationError, match="nothing to load yet: no NYSE session from 2024-11-29"):
        steps.run_pipeline(["IBM"], date(2024, 11, 29), date(2024, 11, 29), settings, show_progress=False, now=morning)
