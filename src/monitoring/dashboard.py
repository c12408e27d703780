"""A one-file HTML dashboard of the warehouse: prices with indicators, signals and pipeline health.

`python -m src.monitoring.dashboard` reads the warehouse and writes ONE self-contained HTML file
(plotly.js is embedded, so it opens offline, from a laptop or an e-mail attachment):

- **Pipeline health now**: the checks of `src/monitoring/health_checks.py`, OK or FAIL.
- **Latest signals**: the `v_latest_signals` view (RSI overbought/oversold, SMA 50/200 crosses,
  close vs VWAP) for every symbol.
- **One chart per symbol** (the MAX_SYMBOLS symbols with the most sessions): close with SMA 20,
  50 and 200 and VWAP 20; RSI 14 with its 30/70 bands; volume.
- **Pipeline runs over time**: rows loaded and quarantined, durations, and how many sessions
  behind the data was when each run ended.

Synthetic demo data (rows whose `source` is 'synthetic', e.g. from `run-local.sh`) is never
shown as if it were real: the page gets a red banner and each chart of such a symbol says so.

Usage:
    python -m src.monitoring.dashboard [--out data/dashboard.html] [--symbols 10]
"""

from __future__ import annotations

import argparse
import html
import logging
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from src.config import PROJECT_ROOT, ConfigurationError, Settings, configure_logging, load_settings
from src.market_calendar import latest_completed_session, sessions_between
from src.monitoring.health_checks import CheckResult, run_health_checks, table_ref
from src.storage.warehouse import Warehouse, open_warehouse

logger = logging.getLogger(__name__)

DEFAULT_OUT = PROJECT_ROOT / "data" / "dashboard.html"
# The page stays light enough to open anywhere: at most this many symbol charts ...
MAX_SYMBOLS = 10
# ... each with the last 500 sessions (about two years), and the last 60 runs.
SESSIONS_SHOWN = 500
RUNS_SHOWN = 60
# A run whose trading day is this many sessions before the end of the run is a backfill; its
# "sessions behind" says nothing about freshness, so the freshness panel leaves it out.
BACKFILL_LAG_SESSIONS = 30

SYNTHETIC_SOURCE = "synthetic"
SYNTHETIC_LABEL = "SYNTHETIC DEMO DATA — not market prices"

COLORS = {
    "close": "#1f2937",
    "sma_20": "#f59e0b",
    "sma_50": "#2563eb",
    "sma_200": "#7c3aed",
    "vwap_20": "#059669",
    "rsi": "#0e7490",
    "up": "rgba(5, 150, 105, 0.55)",
    "down": "rgba(220, 38, 38, 0.55)",
    "loaded": "#2563eb",
    "quarantined": "#dc2626",
    "success": "#059669",
    "partial": "#f59e0b",
    "failed": "#dc2626",
    "interrupted": "#7c3aed",
    "running": "#6b7280",
}


# --- Reading the warehouse ---------------------------------------------------------------------


def read_top_symbols(warehouse: Warehouse, limit: int = MAX_SYMBOLS) -> pd.DataFrame:
    """The `limit` symbols with the most stored sessions.

    Returns:
        Columns symbol, sessions, first_date, last_date, synthetic_rows; most sessions first.
    """
    sql = (
        "SELECT symbol, COUNT(*) AS sessions, MIN(trade_date) AS first_date, MAX(trade_date) AS last_date, "
        f"SUM(CASE WHEN source = ? THEN 1 ELSE 0 END) AS synthetic_rows "
        f"FROM {table_ref(warehouse, 'fact_daily_prices')} "
        f"GROUP BY symbol ORDER BY sessions DESC, symbol LIMIT {int(limit)}"
    )
    return warehouse.query(sql, [SYNTHETIC_SOURCE])


def read_symbol_history(warehouse: Warehouse, symbol: str, sessions: int = SESSIONS_SHOWN) -> pd.DataFrame:
    """The last `sessions` stored sessions of one symbol with their indicators, oldest first.

    Returns:
        Columns trade_date, open, high, low, close, volume (as traded), adj_open, adj_close,
        adj_volume (split-adjusted; equal to the as-traded values on rows stored before the
        adjusted columns existed), source, quality_flags, sma_20, sma_50, sma_200, rsi_14,
        vwap_20 (indicators NaN in their warm-up).
    """
    sql = (
        "SELECT p.trade_date, p.open, p.high, p.low, p.close, p.volume, "
        "COALESCE(p.adj_open, p.open) AS adj_open, COALESCE(p.adj_close, p.close) AS adj_close, "
        "COALESCE(p.adj_volume, p.volume) AS adj_volume, p.source, p.quality_flags, "
        "i.sma_20, i.sma_50, i.sma_200, i.rsi_14, i.vwap_20 "
        f"FROM {table_ref(warehouse, 'fact_daily_prices')} AS p "
        f"LEFT JOIN {table_ref(warehouse, 'fact_technical_indicators')} AS i "
        "ON i.symbol = p.symbol AND i.trade_date = p.trade_date "
        f"WHERE p.symbol = ? ORDER BY p.trade_date DESC LIMIT {int(sessions)}"
    )
    history = warehouse.query(sql, [symbol]).iloc[::-1].reset_index(drop=True)
    history["trade_date"] = history["trade_date"].astype(str).str[:10]
    return history


def read_latest_signals(warehouse: Warehouse) -> pd.DataFrame:
    """Every symbol's latest session with its signals (the `v_latest_signals` view), by symbol."""
    return warehouse.query(f"SELECT * FROM {table_ref(warehouse, 'v_latest_signals')} ORDER BY symbol")


def read_synthetic_symbols(warehouse: Warehouse) -> set[str]:
    """The symbols that have any synthetic rows."""
    sql = f"SELECT DISTINCT symbol FROM {table_ref(warehouse, 'fact_daily_prices')} WHERE source = ?"
    return set(warehouse.query(sql, [SYNTHETIC_SOURCE])["symbol"])


def read_recent_runs(warehouse: Warehouse, limit: int = RUNS_SHOWN) -> pd.DataFrame:
    """The last `limit` pipeline runs, oldest first."""
    sql = (
        "SELECT run_id, logical_date, status, started_at, ended_at, duration_seconds, "
        "symbols_requested, symbols_failed, rows_loaded, rows_quarantined "
        f"FROM {table_ref(warehouse, 'pipeline_runs')} ORDER BY started_at DESC LIMIT {int(limit)}"
    )
    return warehouse.query(sql).iloc[::-1].reset_index(drop=True)


# --- Charts ------------------------------------------------------------------------------------


def _non_session_weekdays(first: str, last: str) -> list[str]:
    """Weekdays from first to last that are not NYSE sessions (holidays, closures): gaps to hide."""
    weekdays = pd.bdate_range(first, last)
    sessions = {day.isoformat() for day in sessions_between(date.fromisoformat(first), date.fromisoformat(last))}
    return [day.strftime("%Y-%m-%d") for day in weekdays if day.strftime("%Y-%m-%d") not in sessions]


def break_lines_at_holes(history: pd.DataFrame) -> pd.DataFrame:
    """Add an empty point on the first missing session of each hole, so no line is drawn through it.

    A row flagged `gap_before:<n>` comes after n missing NYSE sessions (docs/data-quality.md).
    Plotly leaves a gap in a line at a point whose value is empty, so the chart shows the hole
    instead of joining the sessions on either side of it as if they were adjacent.
    """
    if "quality_flags" not in history.columns or history.empty:
        return history
    after_hole = history["quality_flags"].fillna("").str.contains("gap_before", regex=False)
    previous = history["trade_date"].shift(1)
    blanks = []
    for day, before in zip(history.loc[after_hole, "trade_date"], previous[after_hole], strict=True):
        if pd.isna(before):
            continue
        missing = sessions_between(date.fromisoformat(before) + timedelta(days=1), date.fromisoformat(day))
        if missing and missing[0].isoformat() < day:
            blanks.append({"trade_date": missing[0].isoformat()})
    if not blanks:
        return history
    combined = pd.concat([history, pd.DataFrame(blanks)], ignore_index=True)
    return combined.sort_values("trade_date", ignore_index=True)


def split_days(history: pd.DataFrame) -> list[str]:
    """The dates of the rows flagged `split` (a known split took effect that day)."""
    if "quality_flags" not in history.columns or history.empty:
        return []
    flags = history["quality_flags"].fillna("").str.split(",")
    return history.loc[flags.map(lambda codes: "split" in codes), "trade_date"].tolist()


def build_price_figure(symbol: str, history: pd.DataFrame, synthetic: bool) -> go.Figure:
    """Three stacked panels for one symbol: price with SMAs and VWAP, RSI 14 with 30/70 bands, volume.

    Args:
        symbol: the ticker (chart title).
        history: from `read_symbol_history`.
        synthetic: the rows are synthetic demo data: the chart says so.

    Returns:
        A plotly Figure.
    """
    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.58, 0.2, 0.22],
        subplot_titles=(
            "Close (split-adjusted), SMA 20/50/200 and VWAP 20",
            "RSI 14 (Wilder)",
            "Volume (split-adjusted)",
        ),
    )
    sessions = len(history)
    history = break_lines_at_holes(history)
    dates = history["trade_date"]
    # The indicators are on the split-adjusted basis, so the close drawn with them is too.
    figure.add_trace(
        go.Scatter(
            x=dates, y=history["adj_close"], name="Close (adjusted)", line={"color": COLORS["close"], "width": 1.6}
        ),
        row=1,
        col=1,
    )
    # The prices as traded, one click on the legend away.
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=history["close"],
            name="Close (as traded)",
            visible="legendonly",
            line={"color": COLORS["close"], "width": 1.0, "dash": "dot"},
        ),
        row=1,
        col=1,
    )
    for split_day in split_days(history):
        figure.add_vline(x=split_day, line={"color": "#7c3aed", "width": 1, "dash": "dash"}, row=1, col=1)
        figure.add_annotation(
            x=split_day, y=1.0, yref="y domain", text="split", showarrow=False, font={"color": "#7c3aed"}, row=1, col=1
        )
    for column, label, dash in (
        ("sma_20", "SMA 20", "solid"),
        ("sma_50", "SMA 50", "solid"),
        ("sma_200", "SMA 200", "solid"),
        ("vwap_20", "VWAP 20", "dot"),
    ):
        figure.add_trace(
            go.Scatter(
                x=dates, y=history[column], name=label, line={"color": COLORS[column], "width": 1.2, "dash": dash}
            ),
            row=1,
            col=1,
        )

    # RSI: above 70 is commonly read as overbought, below 30 as oversold.
    figure.add_hrect(y0=30, y1=70, fillcolor="#0e7490", opacity=0.07, line_width=0, row=2, col=1)
    for level in (30, 70):
        figure.add_hline(y=level, line={"color": "#94a3b8", "width": 1, "dash": "dash"}, row=2, col=1)
    figure.add_trace(
        go.Scatter(x=dates, y=history["rsi_14"], name="RSI 14", line={"color": COLORS["rsi"], "width": 1.3}),
        row=2,
        col=1,
    )

    up_day = history["adj_close"] >= history["adj_open"]
    figure.add_trace(
        go.Bar(
            x=dates,
            y=history["adj_volume"],
            name="Volume",
            marker={"color": [COLORS["up"] if up else COLORS["down"] for up in up_day], "line": {"width": 0}},
        ),
        row=3,
        col=1,
    )

    title = f"{symbol}: last {sessions} sessions ({dates.iloc[0]} to {dates.iloc[-1]})" if sessions else symbol
    figure.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 17}},
        height=680,
        margin={"l": 60, "r": 20, "t": 90, "b": 30},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 1, "xanchor": "right"},
        hovermode="x unified",
        template="plotly_white",
        bargap=0,
    )
    figure.update_yaxes(title_text="USD", row=1, col=1)
    figure.update_yaxes(range=[0, 100], tickvals=[0, 30, 70, 100], row=2, col=1)
    figure.update_yaxes(title_text="shares", row=3, col=1)
    if len(history):
        # Trading days only: hide weekends and exchange holidays so the lines have no gaps.
        holidays = _non_session_weekdays(dates.iloc[0], dates.iloc[-1])
        figure.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}, {"values": holidays}])
    if synthetic:
        figure.add_annotation(
            text=SYNTHETIC_LABEL,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.8,
            showarrow=False,
            font={"size": 26, "color": "rgba(220, 38, 38, 0.35)"},
        )
    return figure


def sessions_behind_at_end(runs: pd.DataFrame) -> pd.Series:
    """For each run: NYSE sessions between its trading day and the latest session completed when it ended.

    0 means the run loaded the latest completed session; a run still running (no ended_at) is NaN.
    """
    lags = []
    for run in runs.itertuples():
        if pd.isna(run.ended_at) or pd.isna(run.logical_date):
            lags.append(float("nan"))
            continue
        trading_day = date.fromisoformat(str(run.logical_date)[:10])
        latest = latest_completed_session(pd.Timestamp(run.ended_at).to_pydatetime())
        lags.append(float(len(sessions_between(trading_day + timedelta(days=1), latest))))
    return pd.Series(lags, index=runs.index, dtype="float64")


def build_runs_figure(runs: pd.DataFrame) -> go.Figure:
    """Pipeline runs over time: rows loaded and quarantined, durations, sessions behind at run end.

    Args:
        runs: from `read_recent_runs` (oldest first).

    Returns:
        A plotly Figure with three panels sharing the run start time as x.
    """
    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.09,
        subplot_titles=(
            "Rows per run: loaded and quarantined (log scale)",
            "Run duration (seconds), coloured by status",
            "Freshness: sessions behind when the run ended (0 = loaded the latest completed session)",
        ),
    )
    started = pd.to_datetime(runs["started_at"], utc=True, format="ISO8601")
    labels = runs["run_id"].astype(str)
    figure.add_trace(
        go.Bar(x=started, y=runs["rows_loaded"], name="Rows loaded", marker_color=COLORS["loaded"], hovertext=labels),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(
            x=started,
            y=runs["rows_quarantined"],
            name="Rows quarantined",
            marker_color=COLORS["quarantined"],
            hovertext=labels,
        ),
        row=1,
        col=1,
    )
    status_colors = [COLORS.get(str(status), COLORS["running"]) for status in runs["status"]]
    figure.add_trace(
        go.Scatter(
            x=started,
            y=runs["duration_seconds"],
            mode="lines+markers",
            name="Duration (s)",
            line={"color": "#94a3b8", "width": 1},
            marker={"color": status_colors, "size": 10},
            hovertext=[f"{run_id}: {status}" for run_id, status in zip(labels, runs["status"], strict=True)],
        ),
        row=2,
        col=1,
    )

    lags = sessions_behind_at_end(runs)
    backfill = lags > BACKFILL_LAG_SESSIONS
    figure.add_trace(
        go.Scatter(
            x=started[~backfill],
            y=lags[~backfill],
            mode="lines+markers",
            name="Sessions behind",
            line={"color": "#0e7490"},
            marker={"size": 8},
            hovertext=labels[~backfill],
        ),
        row=3,
        col=1,
    )
    if backfill.any():
        figure.add_annotation(
            text=f"{int(backfill.sum())} backfill run(s) of past dates not shown here",
            xref="x3 domain",
            yref="y3 domain",
            x=0.99,
            y=0.95,
            showarrow=False,
            font={"size": 12, "color": "#6b7280"},
        )
    figure.update_layout(
        height=640,
        margin={"l": 60, "r": 20, "t": 50, "b": 30},
        barmode="group",
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 1, "xanchor": "right"},
    )
    # Log scale: a backfill of thousands of rows and a daily run of a few dozen both stay readable.
    figure.update_yaxes(type="log", row=1, col=1)
    figure.update_yaxes(rangemode="tozero", row=2, col=1)
    # Whole sessions, with 0 lifted off the axis line so the markers stay visible.
    highest = lags[~backfill].max()
    top = 1 if pd.isna(highest) else max(1.0, float(highest))
    figure.update_yaxes(range=[-0.5, top + 0.5], dtick=1, row=3, col=1)
    return figure


# --- HTML --------------------------------------------------------------------------------------


def _format_number(value, digits: int = 2) -> str:
    """A number for a table cell ('—' when missing)."""
    if value is None or pd.isna(value):
        return "—"
    return f"{value:,.{digits}f}"


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{html.escape(text)}</span>'


def series_badge(sessions: int, synthetic_rows: int, sources: list[str]) -> str:
    """The badge that says what one symbol's stored series holds: synthetic, real (from where), or mixed.

    Loads never mix the two kinds in one series (src/transformation/series_kind.py); a
    warehouse filled before that rule may, and then the page says so instead of guessing.

    Args:
        sessions: the symbol's stored rows.
        synthetic_rows: how many of them are synthetic.
        sources: the real sources among the rows shown (e.g. ['file']).
    """
    if synthetic_rows == 0:
        return _badge(f"real prices ({', '.join(sources) or 'real source'})", "good")
    if synthetic_rows >= sessions:
        return _badge("synthetic demo data", "warn")
    return _badge(f"mixed: {synthetic_rows} synthetic and {sessions - synthetic_rows} real rows", "bad")


def health_table_html(results: list[CheckResult]) -> str:
    """The health checks as an HTML table with OK / FAIL badges."""
    rows = []
    for result in results:
        status = _badge("OK", "good") if result.ok else _badge("FAIL", "bad")
        rows.append(
            f"<tr><td>{html.escape(result.name)}</td><td>{status}</td><td>{html.escape(result.message)}</td></tr>"
        )
    return (
        '<table class="data"><thead><tr><th>Check</th><th>Status</th><th>Details</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def signals_table_html(signals: pd.DataFrame, synthetic_symbols: set[str]) -> str:
    """The latest-signals view as an HTML table; synthetic symbols are tagged."""
    if signals.empty:
        return '<p class="muted">No signals yet: load some prices first.</p>'
    signal_kind = {
        "overbought": "bad",
        "oversold": "good",
        "neutral": "plain",
        "golden_cross": "good",
        "death_cross": "bad",
    }
    rows = []
    for row in signals.itertuples():
        symbol = html.escape(str(row.symbol))
        if row.symbol in synthetic_symbols:
            symbol += " " + _badge("synthetic", "warn")
        # A missing signal (warm-up, no indicators yet) is None or NaN depending on the backend.
        rsi_signal = (
            _badge(row.rsi_signal, signal_kind.get(row.rsi_signal, "plain")) if pd.notna(row.rsi_signal) else "—"
        )
        cross = (
            _badge(row.cross_signal.replace("_", " "), signal_kind.get(row.cross_signal, "plain"))
            if pd.notna(row.cross_signal)
            else "—"
        )
        vwap = (
            f"{html.escape(row.close_vs_vwap)} ({_format_number(row.pct_from_vwap)} %)"
            if pd.notna(row.close_vs_vwap)
            else "—"
        )
        rows.append(
            f"<tr><td>{symbol}</td><td>{html.escape(str(row.trade_date)[:10])}</td>"
            f"<td class='num'>{_format_number(row.close)}</td><td class='num'>{_format_number(row.rsi_14, 1)}</td>"
            f"<td>{rsi_signal}</td><td class='num'>{_format_number(row.sma_50)}</td>"
            f"<td class='num'>{_format_number(row.sma_200)}</td><td>{cross}</td>"
            f"<td class='num'>{_format_number(row.vwap_20)}</td><td>{vwap}</td></tr>"
        )
    header = "".join(
        f"<th>{name}</th>"
        for name in (
            "Symbol",
            "Date",
            "Close",
            "RSI 14",
            "RSI signal",
            "SMA 50",
            "SMA 200",
            "50/200 cross",
            "VWAP 20",
            "Close vs VWAP",
        )
    )
    return (
        f'<table class="data" id="signals-table"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


PAGE_CSS = """
body { margin: 0; font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       background: #f1f5f9; color: #0f172a; }
header { background: #0f172a; color: #f8fafc; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; color: #cbd5e1; font-size: 13px; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 40px; }
.banner { background: #dc2626; color: #fff; text-align: center; font-weight: 700; font-size: 18px;
          letter-spacing: 0.04em; padding: 12px; }
.banner small { display: block; font-weight: 400; font-size: 13px; letter-spacing: 0; }
nav { display: flex; flex-wrap: wrap; gap: 8px; margin: 0 0 18px; }
nav a { background: #fff; border: 1px solid #cbd5e1; border-radius: 999px; padding: 4px 12px;
        color: #0f172a; text-decoration: none; font-size: 13px; }
nav a:hover { background: #e2e8f0; }
.card { background: #fff; border-radius: 10px; box-shadow: 0 1px 3px rgba(15, 23, 42, 0.12);
        padding: 18px 20px; margin-bottom: 20px; }
.card h2 { margin: 0 0 12px; font-size: 18px; }
.summary { display: flex; gap: 16px; flex-wrap: wrap; margin-bottom: 20px; }
.summary .card { flex: 1 1 180px; margin: 0; }
.summary .value { font-size: 26px; font-weight: 700; }
.summary .label { color: #64748b; font-size: 13px; }
table.data { border-collapse: collapse; width: 100%; font-size: 14px; }
table.data th { text-align: left; color: #475569; font-weight: 600; border-bottom: 2px solid #e2e8f0;
                padding: 6px 8px; }
table.data td { border-bottom: 1px solid #f1f5f9; padding: 6px 8px; vertical-align: top; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; border-radius: 4px; padding: 1px 7px; font-size: 12px; font-weight: 600; }
.badge.good { background: #dcfce7; color: #166534; }
.badge.bad { background: #fee2e2; color: #991b1b; }
.badge.warn { background: #fef3c7; color: #92400e; }
.badge.plain { background: #e2e8f0; color: #334155; }
.muted { color: #64748b; }
footer { color: #64748b; font-size: 12px; text-align: center; padding: 0 0 30px; }
"""


def _figure_html(figure: go.Figure, div_id: str, include_plotlyjs: bool) -> str:
    """One figure as an HTML fragment; plotly.js is embedded with the first figure only."""
    return figure.to_html(
        full_html=False,
        include_plotlyjs=include_plotlyjs,
        div_id=div_id,
        default_height=f"{figure.layout.height}px",
        config={"displaylogo": False, "responsive": True},
    )


def render_page(
    *,
    generated_at: datetime,
    warehouse_label: str,
    health: list[CheckResult],
    signals_html: str,
    symbol_sections: list[tuple[str, go.Figure, str]],
    runs_figure: go.Figure | None,
    synthetic: bool,
    totals: dict,
) -> str:
    """Assemble the whole page (one HTML document; plotly.js inline once)."""
    parts: list[str] = []
    plotlyjs_included = False

    def figure_html(figure: go.Figure, div_id: str) -> str:
        nonlocal plotlyjs_included
        fragment = _figure_html(figure, div_id, include_plotlyjs=not plotlyjs_included)
        plotlyjs_included = True
        return fragment

    if synthetic:
        parts.append(
            f'<div class="banner" id="synthetic-banner">{html.escape(SYNTHETIC_LABEL)}'
            "<small>Some rows on this page were generated by src/local_stack/synthetic_data.py "
            "(source 'synthetic') for the offline demo.</small></div>"
        )
    parts.append("<main>")
    links = [("health", "Health"), ("signals", "Latest signals")]
    links += [(f"symbol-{symbol}", symbol) for symbol, _, _ in symbol_sections]
    links.append(("runs", "Pipeline runs"))
    parts.append("<nav>" + "".join(f'<a href="#{anchor}">{html.escape(text)}</a>' for anchor, text in links) + "</nav>")

    healthy = all(result.ok for result in health)
    tiles = [
        ("Pipeline health", _badge("HEALTHY", "good") if healthy else _badge("UNHEALTHY", "bad")),
        ("Symbols stored", f"{totals['symbols']:,}"),
        ("Price rows", f"{totals['rows']:,}"),
        ("Latest trading day", html.escape(totals["latest"] or "—")),
    ]
    parts.append(
        '<div class="summary">'
        + "".join(
            f'<div class="card"><div class="value">{value}</div><div class="label">{label}</div></div>'
            for label, value in tiles
        )
        + "</div>"
    )
    parts.append(f'<section class="card" id="health"><h2>Pipeline health now</h2>{health_table_html(health)}</section>')
    parts.append(f'<section class="card" id="signals"><h2>Latest signals</h2>{signals_html}</section>')
    for symbol, figure, badge in symbol_sections:
        tag = " " + badge
        parts.append(
            f'<section class="card symbol" id="symbol-{html.escape(symbol)}"><h2>{html.escape(symbol)}{tag}</h2>'
            f"{figure_html(figure, f'chart-{symbol}')}</section>"
        )
    runs_html = (
        figure_html(runs_figure, "chart-runs")
        if runs_figure is not None
        else '<p class="muted">No pipeline runs recorded yet.</p>'
    )
    parts.append(f'<section class="card" id="runs"><h2>Pipeline runs over time</h2>{runs_html}</section>')
    parts.append("</main>")
    parts.append(
        "<footer>Charts show split-adjusted prices (the as-traded close is one click away in the legend; "
        "dashed lines mark splits). Indicators on the adjusted prices: SMA of close, Wilder's RSI 14, "
        "rolling 20-session VWAP of the typical price. Built by src/monitoring/dashboard.py.</footer>"
    )
    title = "CloudScale Finance ETL — dashboard"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{PAGE_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>Generated {generated_at:%Y-%m-%d %H:%M} UTC from "
        f"{html.escape(warehouse_label)}</p></header>" + "".join(parts) + "</body></html>\n"
    )


# --- Building it -------------------------------------------------------------------------------


def build_dashboard(
    settings: Settings, out_path: Path | str, *, now: datetime | None = None, max_symbols: int = MAX_SYMBOLS
) -> Path:
    """Read the warehouse and write the dashboard as one self-contained HTML file.

    Args:
        settings: loaded settings (which warehouse).
        out_path: the HTML file to write (missing folders are created).
        now: the moment for the "health now" checks (default: the real time).
        max_symbols: how many symbols get a chart (those with the most sessions).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: the SQLite warehouse file does not exist (nothing loaded yet).
    """
    if settings.warehouse_backend == "sqlite" and not settings.sqlite_path.exists():
        raise FileNotFoundError(
            f"The SQLite warehouse {settings.sqlite_path} does not exist yet: run the pipeline first "
            "(e.g. ./scripts/run-local.sh)."
        )
    out_path = Path(out_path)
    health = run_health_checks(settings, now=now)

    warehouse = open_warehouse(settings, create=False)
    try:
        top = read_top_symbols(warehouse, max_symbols)
        synthetic_symbols = read_synthetic_symbols(warehouse)
        sections = []
        for row in top.itertuples():
            history = read_symbol_history(warehouse, row.symbol)
            is_synthetic = bool((history["source"] == SYNTHETIC_SOURCE).any())
            real_sources = sorted(set(history["source"].astype(str)) - {SYNTHETIC_SOURCE})
            badge = series_badge(int(row.sessions), int(row.synthetic_rows), real_sources)
            sections.append((row.symbol, build_price_figure(row.symbol, history, is_synthetic), badge))
        signals = read_latest_signals(warehouse)
        runs = read_recent_runs(warehouse)
        totals_sql = (
            "SELECT COUNT(DISTINCT symbol) AS symbols, COUNT(*) AS n, MAX(trade_date) AS latest "
            f"FROM {table_ref(warehouse, 'fact_daily_prices')}"
        )
        totals_row = warehouse.query(totals_sql).iloc[0]
    finally:
        warehouse.close()

    latest = totals_row["latest"]
    totals = {
        "symbols": int(totals_row["symbols"]),
        "rows": int(totals_row["n"]),
        "latest": str(latest)[:10] if latest is not None and not pd.isna(latest) else None,
    }
    if settings.warehouse_backend == "sqlite":
        warehouse_label = f"SQLite {settings.sqlite_path}"
    else:
        warehouse_label = f"BigQuery {settings.gcp_project_id}.{settings.bigquery_dataset}"
    page = render_page(
        generated_at=datetime.now(UTC),
        warehouse_label=warehouse_label,
        health=health,
        signals_html=signals_table_html(signals, synthetic_symbols),
        symbol_sections=sections,
        runs_figure=build_runs_figure(runs) if not runs.empty else None,
        synthetic=bool(synthetic_symbols),
        totals=totals,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    logger.info(
        "Dashboard written to %s: %d symbol charts, %d signals, %d runs%s",
        out_path,
        len(sections),
        len(signals),
        len(runs),
        " (synthetic demo data labelled)" if synthetic_symbols else "",
    )
    return out_path


def main(argv: list[str] | None = None) -> int:
    """CLI: write the dashboard; 0 on success, 2 on bad configuration or no warehouse yet."""
    parser = argparse.ArgumentParser(prog="python -m src.monitoring.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"HTML file to write (default: {DEFAULT_OUT})")
    parser.add_argument("--symbols", type=int, default=MAX_SYMBOLS, help="how many symbol charts (most data first)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        path = build_dashboard(settings, args.out, max_symbols=args.symbols)
    except (ConfigurationError, FileNotFoundError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"Dashboard written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
