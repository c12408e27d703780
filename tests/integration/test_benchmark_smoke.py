"""Smoke test for scripts/benchmark.py: tiny sizes, every row of the report written, sane ratios.

No timing is asserted (this machine is shared); the ratios only have to be real positive
numbers, which proves each measurement ran on both sides of its comparison.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_KEYS = [
    "backfill",
    "indicators_vs_talib",
    "indicators_vs_ta",
    "upsert_vs_insert",
    "reload_vs_first",
    "daily_incremental",
    "daily_long_vs_short",
    "daily_long_vs_short_warm",
    "daily_new_split",
    "rate_limited_fetch",
    "airflow_dag",
]


def _table_rows(report: str) -> dict[str, list[str]]:
    """key -> the cells of its table row (what, target, result, met)."""
    rows = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in EXPECTED_KEYS:
            rows[cells[0]] = cells[1:]
    return rows


def _ratio(result: str) -> float:
    """The first 'N.NNx' in a result cell."""
    match = re.search(r"(\d+(?:\.\d+)?)x", result)
    assert match, f"no ratio in {result!r}"
    return float(match.group(1))


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_benchmark_writes_every_row_with_sane_ratios(tmp_path):
    report_path = tmp_path / "benchmarks.md"
    command = [
        sys.executable, str(PROJECT_ROOT / "scripts" / "benchmark.py"),
        "--symbols", "3", "--years", "1", "--batch-size", "2",
        "--fetch-symbols", "4", "--fetch-calls-per-minute", "600", "--fetch-min-interval", "0.05",
        "--repeats", "1", "--work-dir", str(tmp_path / "work"), "--out", str(report_path),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=110)
    assert finished.returncode == 0, finished.stderr[-3000:]

    report = report_path.read_text()
    rows = _table_rows(report)
    assert list(rows) == EXPECTED_KEYS
    assert "Machine: " in report and "SQLite " in report and "pandas " in report

    # 3 symbols x 1 year of sessions before 2025-12-31.
    backfill = rows["backfill"][2]
    assert re.search(r"bars/s", backfill) and re.search(r"peak RSS \d", backfill)
    assert "(750 bars)" in rows["backfill"][0]

    for key in ("indicators_vs_talib", "upsert_vs_insert", "reload_vs_first", "daily_long_vs_short_warm"):
        assert 0 < _ratio(rows[key][2]) < 1000, (key, rows[key])
    # The cold daily run drops the OS file cache first, which only root may do.
    if os.geteuid() == 0:
        assert 0 < _ratio(rows["daily_long_vs_short"][2]) < 1000, rows["daily_long_vs_short"]
        assert "cold OS cache" in rows["daily_incremental"][0]
    else:
        assert rows["daily_long_vs_short"][2:] == ["not measured: dropping the OS cache needs root", "n/a"]
    assert 0 < _ratio(rows["indicators_vs_ta"][2]) < 1000
    fetch = rows["rate_limited_fetch"][2]
    # 4 symbols, 2 calls each (prices, then SPLITS), 0.05 s apart: the last may start at 0.35 s;
    # all 8 requests reached the server.
    assert "floor 0.35 s" in fetch and "8 requests" in fetch
    assert "s vs " in rows["daily_new_split"][2] and "recompute alone" in rows["daily_new_split"][2]
    assert _ratio(fetch) >= 1.0
    for key in EXPECTED_KEYS[:-1]:
        assert rows[key][3] in ("yes", "NO", "n/a" if key == "daily_long_vs_short" else "yes")
    # The Airflow figure comes from docs/local-stack.md when that document states one.
    assert rows["airflow_dag"][3] in ("yes", "NO", "n/a")


PEER_COLUMNS = [
    "this project (default, `BATCH_SIZE=125`)",
    "`BATCH_SIZE=10`",
    "dlt → DuckDB",
    "tutorial",
    "dlt → SQLite",
]


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_benchmark_peers_run_every_contestant_and_check_their_rows(tmp_path):
    """`--peers` with 3 symbols x 1 year: every contestant runs every job and stores the right rows.

    The peers' virtualenv (dlt, ta) is installed from PyPI by the benchmark itself the first time
    (about 30 s here), into the default cache folder, so later runs reuse it.
    """
    report_path = tmp_path / "benchmarks.md"
    # A previous peers section (between its markers) is replaced, the text around it kept.
    report_path.write_text(
        "# Benchmarks\n\nhand-written text\n\n## Against real peers (issue 22)\n\n"
        "<!-- peers results: begin (written by scripts/benchmark.py --peers) -->\nstale figures\n"
        "<!-- peers results: end -->\n\n## Results\n\nold table\n"
    )
    command = [
        sys.executable, str(PROJECT_ROOT / "scripts" / "benchmark.py"), "--peers",
        "--symbols", "3", "--years", "1", "--repeats", "1",
        "--work-dir", str(tmp_path / "work"), "--out", str(report_path),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=400)
    assert finished.returncode == 0, finished.stderr[-3000:]

    report = report_path.read_text()
    assert report.index("hand-written text") < report.index("## Against real peers") < report.index("## Results")
    assert "old table" in report and "stale figures" not in report
    assert report.count("## Against real peers") == 1
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("| job |"))
    for column in PEER_COLUMNS:
        assert column in header
    for job in ("| backfill 1 years |", "| rerun of the unchanged range", "| daily: one new session × 3 symbols"):
        row = next(line for line in lines if line.startswith(job))
        seconds = [float(value) for value in re.findall(r"(\d+\.\d) s", row)]
        assert len(seconds) == len(PEER_COLUMNS) and all(value > 0 for value in seconds), row
    # Spot check: every contestant stored 3 x (sessions + 1) rows, and its SMAs are exact.
    first_check = next(number for number, line in enumerate(lines) if line.startswith("| contestant | rows stored"))
    checks = lines[first_check + 2 : first_check + 2 + len(PEER_COLUMNS)]
    for line in checks:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[2] == "yes", line
        assert cells[1] == f"{3 * 251:,}", line  # 3 symbols x (250 backfilled sessions + the daily one)
        assert float(cells[3]) < 1e-9, line
    assert "Machine load" in report and "round 1:" in report
