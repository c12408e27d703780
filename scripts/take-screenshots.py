"""Take the demo screenshots from the RUNNING local stack (real pages, not mock-ups).

Run it with `./scripts/take-screenshots.sh` after `./scripts/run-local.sh` has loaded at least
one run (and, for the failure pictures, after `./scripts/simulate-failure.sh run`). It saves to
docs/screenshots/:

| file | what |
|---|---|
| demo-airflow-grid.png | the DAG page: grid of runs and tasks |
| demo-airflow-run.png | the latest successful run and its task instances |
| demo-airflow-graph.png | the DAG's graph view |
| demo-airflow-failed-run.png | the latest failed run (only if there is one) |
| demo-dashboard.png, demo-dashboard-chart.png | `python -m src.monitoring.dashboard` output, top and a chart |
| demo-alerts.png | data/alerts.log, what Slack would have received, rendered as a page |
| demo-analytics.png | `python -m src.analytics` output, rendered as a terminal page |

Pages we render ourselves (alerts, terminal output) are written to .local/screenshots/ first;
they say where their content comes from, and synthetic demo data is labelled as such.
Chromium is the Debian one (`apt-get install -y chromium`), driven by Playwright.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import requests
from playwright.sync_api import Page, expect, sync_playwright

from src.local_stack.browser import launch_chromium

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
WORK_DIR = PROJECT_ROOT / ".local" / "screenshots"
DAG_ID = "daily_etl_pipeline"
VIEWPORT = {"width": 1400, "height": 860}
# The analytics shown in the terminal picture.
ANALYTICS_COMMANDS = [["--list"], ["top_movers", "--limit", "5"], ["volatility_30d", "--limit", "5"]]

logger = logging.getLogger("take-screenshots")

PAGE_STYLE = """
body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: #0f172a; color: #e2e8f0; }
header { padding: 14px 24px; background: #1e293b; border-bottom: 1px solid #334155; }
header h1 { margin: 0; font-size: 18px; } header p { margin: 4px 0 0; color: #94a3b8; font-size: 13px; }
main { padding: 18px 24px; }
pre { margin: 0 0 18px; white-space: pre; font: 13px/1.45 "DejaVu Sans Mono", monospace; }
.prompt { color: #4ade80; } .banner { background: #b91c1c; color: #fff; padding: 6px 24px; font-weight: 600; }
.alert { background: #fff; color: #1e293b; border-left: 6px solid #dc2626; border-radius: 6px;
         padding: 12px 16px; margin: 0 0 14px; max-width: 1100px; }
.alert .meta { color: #64748b; font-size: 12px; margin-bottom: 6px; }
.alert pre { white-space: pre-wrap; margin: 0; font-size: 13px; }
"""


def run_ids(airflow_url: str) -> dict[str, str]:
    """The newest successful and the newest failed run of the DAG: {'success': id, 'failed': id}."""
    reply = requests.get(
        f"{airflow_url}/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "-run_after", "limit": 50}, timeout=30
    )
    reply.raise_for_status()
    found: dict[str, str] = {}
    for run in reply.json()["dag_runs"]:
        found.setdefault(run["state"], run["dag_run_id"])
    return found


def render_page(name: str, title: str, subtitle: str, body: str, synthetic: bool) -> Path:
    """Write a small self-contained HTML page to WORK_DIR and return its path."""
    banner = '<div class="banner">SYNTHETIC DEMO DATA — not market prices</div>' if synthetic else ""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}</style></head><body>{banner}<header><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(subtitle)}</p></header><main>{body}</main></body></html>"
    )
    path = WORK_DIR / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    return path


def warehouse_has_synthetic_rows(python: str) -> bool:
    """Ask the warehouse (through the project's own settings) whether any price is synthetic."""
    code = (
        "from src.config import load_settings; from src.storage.warehouse import open_warehouse; "
        "w = open_warehouse(load_settings()); "
        "print(int(w.query(\"SELECT COUNT(*) AS n FROM fact_daily_prices WHERE source = 'synthetic'\")['n'].iloc[0]))"
    )
    out = subprocess.run([python, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) > 0


def analytics_page(python: str, synthetic: bool) -> Path:
    """Run the analytics CLI and render its output as a terminal page."""
    blocks = []
    for args in ANALYTICS_COMMANDS:
        command = [python, "-m", "src.analytics", *args]
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )
        shown = "python -m src.analytics " + " ".join(args)
        blocks.append(f'<pre><span class="prompt">$ {html.escape(shown)}</span>\n{html.escape(result.stdout)}</pre>')
    subtitle = "Real output of the analytics CLI on the local warehouse (data/warehouse.db)"
    return render_page("analytics", "python -m src.analytics", subtitle, "".join(blocks), synthetic)


def alerts_page(alerts_log: Path) -> Path:
    """Render the Slack catcher's log (one JSON record per line) as a page of alert cards."""
    cards = []
    lines = alerts_log.read_text(encoding="utf-8").splitlines() if alerts_log.is_file() else []
    for line in lines[-6:]:
        record = json.loads(line)
        text = record.get("payload", {}).get("text", "")
        # The webhook path is the secret: show only that it was a /services/ path.
        meta = f"received {record.get('received_at', '?')} on /services/***"
        cards.append(
            f'<div class="alert"><div class="meta">{html.escape(meta)}</div><pre>{html.escape(text)}</pre></div>'
        )
    if not cards:
        cards.append(
            "<pre>(no alerts yet: run ./scripts/simulate-failure.sh on && ./scripts/simulate-failure.sh run)</pre>"
        )
    subtitle = (
        f"{alerts_log.relative_to(PROJECT_ROOT)}: what the Slack webhook would have received (local Slack catcher)"
    )
    return render_page("alerts", "Slack alerts (local catcher)", subtitle, "".join(cards), synthetic=False)


def shoot_airflow(page: Page, airflow_url: str, runs: dict[str, str]) -> list[Path]:
    """Screenshots of the DAG page, the latest successful run, its graph and the latest failed run."""
    saved = []
    page.goto(f"{airflow_url}/dags/{DAG_ID}", timeout=60_000)
    # The grid and the run charts load after the first paint: wait for a task name in the grid.
    expect(page.get_by_text("resolve_symbols").first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(4000)
    saved.append(screenshot(page, "demo-airflow-grid.png"))

    if "success" in runs:
        page.goto(f"{airflow_url}/dags/{DAG_ID}/runs/{quote(runs['success'], safe='')}", timeout=60_000)
        expect(page.get_by_text("Success").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2000)
        saved.append(screenshot(page, "demo-airflow-run.png"))
        page.get_by_role("button", name="Show Graph (Press g)").click()
        expect(page.get_by_text("check_data_quality").last).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2000)  # let the graph layout settle
        saved.append(screenshot(page, "demo-airflow-graph.png"))

    if "failed" in runs:
        page.goto(f"{airflow_url}/dags/{DAG_ID}/runs/{quote(runs['failed'], safe='')}", timeout=60_000)
        expect(page.get_by_text("Failed").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2000)
        saved.append(screenshot(page, "demo-airflow-failed-run.png"))
    return saved


def screenshot(page: Page, name: str) -> Path:
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    logger.info("saved %s", path.relative_to(PROJECT_ROOT))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--airflow-url", default=f"http://127.0.0.1:{os.environ.get('AIRFLOW_PORT', '8080')}")
    parser.add_argument("--alerts-log", default=os.environ.get("ALERTS_LOG", str(PROJECT_ROOT / "data" / "alerts.log")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="==> %(message)s")
    python = sys.executable
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)

    try:
        runs = run_ids(args.airflow_url)
    except requests.RequestException as exc:
        print(
            f"error: Airflow does not answer at {args.airflow_url} ({exc}); start ./scripts/run-local.sh",
            file=sys.stderr,
        )
        return 1
    if "success" not in runs:
        print("error: no successful run yet; run ./scripts/run-local.sh first", file=sys.stderr)
        return 1

    synthetic = warehouse_has_synthetic_rows(python)
    dashboard = WORK_DIR / "dashboard.html"
    subprocess.run([python, "-m", "src.monitoring.dashboard", "--out", str(dashboard)], cwd=PROJECT_ROOT, check=True)
    analytics = analytics_page(python, synthetic)
    alerts = alerts_page(Path(args.alerts_log))

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            shoot_airflow(page, args.airflow_url, runs)

            page.goto(dashboard.as_uri(), timeout=60_000)
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.wait_for_timeout(1500)
            screenshot(page, "demo-dashboard.png")
            page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
            page.wait_for_timeout(800)
            screenshot(page, "demo-dashboard-chart.png")

            # Our own pages are short: a smaller window leaves less empty space in the picture.
            for path, name, height in ((alerts, "demo-alerts.png", 420), (analytics, "demo-analytics.png", 640)):
                page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
                page.goto(path.as_uri(), timeout=30_000)
                screenshot(page, name)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
