"""The dashboard in a real headless Chromium: it renders, its charts are there, no JavaScript errors.

The warehouse is filled the way the pipeline fills it (transform_prices + steps.load_prices) with
real AAPL, GOOG, IBM and MSFT prices (bokeh-sampledata, 2011-2013): a first run backfills the
history, then one run per trading day loads that day, like the daily schedule. A second
warehouse holds synthetic demo data, for the "SYNTHETIC DEMO DATA" banner.

The page is opened from disk with every network request blocked, so it must work offline.
The real-data page is saved as docs/screenshots/dashboard.png.

Needs /usr/bin/chromium (scripts/run-tests.sh installs it). Without it these tests FAIL.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from src import steps
from src.config import PROJECT_ROOT, Settings, load_settings
from src.local_stack.browser import CHROMIUM, launch_chromium
from src.local_stack.synthetic_data import synthetic_prices
from src.market_calendar import recent_sessions, sessions_between
from src.monitoring.dashboard import SYNTHETIC_LABEL, build_dashboard
from src.storage.warehouse import open_warehouse
from src.transformation.transform import transform_prices

pytestmark = pytest.mark.e2e

SCREENSHOT = PROJECT_ROOT / "docs" / "screenshots" / "dashboard.png"
NEW_YORK = ZoneInfo("America/New_York")
SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT"]
HISTORY_START = "2011-01-03"
DAILY_RUNS = 15  # the last 15 sessions of the sample data, one run each


def make_settings(folder: Path) -> Settings:
    return load_settings(
        env_file=folder / "no.env",
        overrides={
            "SQLITE_PATH": str(folder / "warehouse.db"),
            "SYMBOLS": ",".join(SYMBOLS),
            "SLACK_WEBHOOK_URL": "",
            "STATE_DIR": str(folder / "state"),
        },
    )


def run_and_record(settings: Settings, raw: pd.DataFrame, run_id: str, trading_day: date) -> None:
    """Transform and load raw prices like one pipeline run, and record that run in pipeline_runs.

    The run is stamped at the time the daily schedule runs it (18:30 New York on its trading
    day); its duration is the real time the load took.
    """
    started_at = datetime.combine(trading_day, datetime.min.time(), NEW_YORK).replace(hour=18, minute=30)
    clock = time.perf_counter()
    clean, quarantine = transform_prices(raw, run_date=trading_day)
    warehouse = open_warehouse(settings)
    try:
        steps.load_prices(warehouse, clean, quarantine, run_id, started_at.astimezone(UTC).isoformat())
        duration = time.perf_counter() - clock
        warehouse.record_run(
            {
                "run_id": run_id,
                "logical_date": trading_day.isoformat(),
                "started_at": started_at.astimezone(UTC).isoformat(timespec="seconds"),
                "ended_at": (started_at + pd.Timedelta(seconds=duration)).astimezone(UTC).isoformat(timespec="seconds"),
                "status": "success",
                "symbols_requested": raw["symbol"].nunique(),
                "symbols_loaded": clean["symbol"].nunique(),
                "symbols_failed": 0,
                "rows_loaded": len(clean),
                "rows_quarantined": len(quarantine),
                "duration_seconds": round(duration, 3),
            }
        )
    finally:
        warehouse.close()


@pytest.fixture(scope="module")
def real_dashboard(tmp_path_factory, real_prices_4_symbols) -> Path:
    """A dashboard of real prices loaded by a backfill run plus DAILY_RUNS daily runs."""
    folder = tmp_path_factory.mktemp("real-dashboard")
    settings = make_settings(folder)
    prices = real_prices_4_symbols[real_prices_4_symbols["trade_date"] >= HISTORY_START].assign(source="file")
    last_day = date.fromisoformat(prices["trade_date"].max())
    daily_days = recent_sessions(last_day, DAILY_RUNS)

    backfill_end = recent_sessions(daily_days[0], 2)[0]
    history = prices[prices["trade_date"] <= backfill_end.isoformat()]
    run_and_record(settings, history, f"backfill__{backfill_end}", backfill_end)
    for index, day in enumerate(daily_days):
        raw = prices[prices["trade_date"] == day.isoformat()].copy()
        if index == 5:
            # One bad reply on one day, as a source sometimes sends: it must show as quarantined.
            raw["close"] = raw["close"].astype(object)
            raw.loc[raw["symbol"] == "IBM", "close"] = "N/A"
        run_and_record(settings, raw, f"scheduled__{day}", day)

    # "Now" is the Monday evening after the last sample day, after its daily run.
    now = datetime(2013, 3, 4, 19, 0, tzinfo=NEW_YORK)
    return build_dashboard(settings, folder / "dashboard.html", now=now)


@pytest.fixture(scope="module")
def synthetic_dashboard(tmp_path_factory) -> Path:
    """A dashboard of the project's synthetic demo data (source 'synthetic')."""
    folder = tmp_path_factory.mktemp("synthetic-dashboard")
    settings = make_settings(folder)
    sessions = pd.DatetimeIndex([pd.Timestamp(day) for day in sessions_between(date(2024, 1, 2), date(2024, 6, 28))])
    frames = [
        synthetic_prices(symbol, sessions)
        .rename(columns={"date": "trade_date"})
        .assign(symbol=symbol, source="synthetic")
        for symbol in ("AAPL", "MSFT")
    ]
    run_and_record(settings, pd.concat(frames, ignore_index=True), "demo__2024-06-28", date(2024, 6, 28))
    return build_dashboard(settings, folder / "dashboard.html", now=datetime(2024, 7, 1, 12, 0, tzinfo=NEW_YORK))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright; fails (does not skip) when Chromium is missing."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (run-tests.sh does)"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def open_offline(browser, page_path: Path):
    """Open the page with every non-file request blocked; returns (page, JS errors, blocked URLs)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    blocked: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def only_local(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    return page, errors, blocked


def test_real_dashboard_renders_every_chart_without_errors(browser, real_dashboard):
    page, errors, blocked = open_offline(browser, real_dashboard)

    # 4 symbol charts and the pipeline-runs chart, each drawn by plotly.js.
    assert page.locator(".js-plotly-plot").count() == 5
    assert page.locator(".plotly-graph-div").count() == 5
    # Most sessions first: IBM lost one to quarantine, the others tie and go by name.
    # Each symbol says what its series holds: real prices here, and from which source.
    assert page.locator("section.symbol h2").all_inner_texts() == [
        f"{symbol} real prices (file)" for symbol in ("AAPL", "GOOG", "MSFT", "IBM")
    ]
    # Each symbol chart draws the adjusted close, the as-traded close (hidden until clicked in the
    # legend), 3 SMAs, VWAP, RSI and volume: 8 traces.
    traces = page.evaluate(
        "() => Array.from(document.querySelectorAll('section.symbol .js-plotly-plot')).map(d => d.data.length)"
    )
    assert traces == [8, 8, 8, 8]
    assert page.locator("#signals-table tbody tr").count() == 4
    assert page.locator("#synthetic-banner").count() == 0
    # The day IBM's close was quarantined left a hole in its stored history: the page must say so
    # (history_completeness names IBM), while every other check is green.
    assert "UNHEALTHY" in page.locator(".summary").inner_text()
    health = page.locator("table", has_text="history_completeness").inner_text()
    failing = [line for line in health.splitlines() if "\tFAIL\t" in line]
    assert len(failing) == 1
    assert failing[0].startswith("history_completeness\tFAIL\t") and "IBM" in failing[0]
    assert "1 of 543 sessions missing" in failing[0]
    assert errors == []
    assert blocked == []

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


def test_real_dashboard_shows_the_latest_real_signals(browser, real_dashboard):
    page, errors, _ = open_offline(browser, real_dashboard)

    first_row = page.locator("#signals-table tbody tr").first.locator("td").all_inner_texts()
    closes = real_prices_on("AAPL", "2013-03-01")
    assert first_row[:3] == ["AAPL", "2013-03-01", f"{closes:,.2f}"]
    runs_text = page.locator("#runs").inner_text()
    assert "Pipeline runs over time" in runs_text
    assert errors == []
    page.close()


def real_prices_on(symbol: str, day: str) -> float:
    """The real close of a symbol on a day, from the sample data."""
    from tests.fixtures.market_data import load_bokeh_prices

    prices = load_bokeh_prices(symbol)
    return float(prices.loc[prices["trade_date"] == day, "close"].iloc[0])


def test_synthetic_data_is_labelled_on_the_page_and_on_each_chart(browser, synthetic_dashboard):
    page, errors, blocked = open_offline(browser, synthetic_dashboard)

    banner = page.locator("#synthetic-banner")
    assert banner.is_visible()
    assert SYNTHETIC_LABEL in banner.inner_text()
    assert page.locator(".js-plotly-plot").count() == 3  # AAPL, MSFT and the runs chart
    annotations = page.locator("section.symbol .js-plotly-plot .annotation-text").all_text_contents()
    assert annotations.count(SYNTHETIC_LABEL) == 2
    assert page.locator("#signals-table .badge.warn").all_inner_texts() == ["synthetic", "synthetic"]
    assert page.locator("section.symbol h2").all_inner_texts() == [
        "AAPL synthetic demo data",
        "MSFT synthetic demo data",
    ]
    assert errors == []
    assert blocked == []
    page.close()


def test_the_page_is_one_self_contained_file(real_dashboard):
    text = real_dashboard.read_text(encoding="utf-8")
    assert "<script src=" not in text  # plotly.js is inline, nothing is fetched
    assert text.count("Plotly.newPlot") == 5


def test_cli_writes_the_page_or_explains_why_not(tmp_path, monkeypatch, capsys, real_dashboard):
    from src.monitoring import dashboard

    monkeypatch.setenv("PIPELINE_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "missing.db"))
    assert dashboard.main(["--out", str(tmp_path / "page.html")]) == 2
    assert "does not exist yet: run the pipeline first" in capsys.readouterr().err
    assert not (tmp_path / "page.html").exists()

    # The warehouse the real dashboard was built from.
    monkeypatch.setenv("SQLITE_PATH", str(real_dashboard.parent / "warehouse.db"))
    assert dashboard.main(["--out", str(tmp_path / "page.html"), "--symbols", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"Dashboard written to {tmp_path / 'page.html'}"
    assert (tmp_path / "page.html").read_text(encoding="utf-8").count("Plotly.newPlot") == 3  # 2 symbols + runs
