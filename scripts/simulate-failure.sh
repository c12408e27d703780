#!/usr/bin/env bash
# Simulate an Alpha Vantage outage on the local stack, watch the alert, then heal it.
#
#   ./scripts/simulate-failure.sh on [MODE]   switch the mock Alpha Vantage to MODE (default error500)
#   ./scripts/simulate-failure.sh run         trigger a run that may use ONLY Alpha Vantage (so the
#                                             offline fallback cannot hide the outage), wait for it,
#                                             then print the alerts the Slack catcher received
#   ./scripts/simulate-failure.sh off         back to normal replies
#   ./scripts/simulate-failure.sh status      the mock's mode and request counters
#
# MODE is one of the mock's failure modes (src/local_stack/mock_alpha_vantage.py): error500,
# throttle, quota, premium, html, truncated, timeout, normal.
# Needs the local stack: ./scripts/run-local.sh start. Ports as in run-local.sh:
#   AIRFLOW_PORT (8080) MOCK_AV_PORT (8081) SLACK_PORT (8082); ALERTS_LOG (data/alerts.log)
#   FAILURE_SYMBOLS (AAPL,MSFT,GOOG: the symbols of the failing run; few, so it fails fast)
# docs/demo-guide.md uses it in the demo; docs/runbook.md explains what the alert means.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV_DIR:-$ROOT/.venv}"
AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"
MOCK_AV_PORT="${MOCK_AV_PORT:-8081}"
ALERTS_LOG="${ALERTS_LOG:-$ROOT/data/alerts.log}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
FAILURE_SYMBOLS="${FAILURE_SYMBOLS:-AAPL,MSFT,GOOG}"
# The failing run asks for the last FAILURE_DAYS days, a range the daily runs have not fetched.
FAILURE_DAYS="${FAILURE_DAYS:-45}"
DAG_ID="daily_etl_pipeline"
UI_URL="http://127.0.0.1:$AIRFLOW_PORT"
MOCK_URL="http://127.0.0.1:$MOCK_AV_PORT"

die() { echo "error: $*" >&2; exit 1; }
log() { echo "==> $*"; }
# shellcheck source=scripts/airflow-api.sh
source "$ROOT/scripts/airflow-api.sh"

mock_control() {
  # mock_control QUERY: call the mock's control endpoint, print its JSON reply.
  curl --silent --show-error --fail-with-body --max-time 10 -X POST "$MOCK_URL/_control?$1" \
    || die "the mock Alpha Vantage does not answer at $MOCK_URL; start the stack with ./scripts/run-local.sh start"
  echo
}

alert_count() {
  if [ -f "$ALERTS_LOG" ]; then wc -l <"$ALERTS_LOG"; else echo 0; fi
}

run_alpha_vantage_only() {
  # A manual run restricted to Alpha Vantage and a few symbols; the DAG's params allow both.
  local symbols_json run_id state alerts_before start
  airflow_api GET /monitor/health >/dev/null \
    || die "Airflow does not answer at $UI_URL; start the stack with ./scripts/run-local.sh start"
  symbols_json="$("$VENV/bin/python" -c 'import json, sys; print(json.dumps(sys.argv[1].split(",")))' "$FAILURE_SYMBOLS")"
  alerts_before="$(alert_count)"
  # A range no earlier run has fetched: a replay of an already-landed day would be answered from
  # the S3 checkpoint (docs/reliability.md) without calling the broken API at all.
  start="$(date -u -d "$FAILURE_DAYS days ago" +%Y-%m-%d)"
  run_id="$(airflow_api POST "/dags/$DAG_ID/dagRuns" \
    "{\"logical_date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"note\": \"simulate-failure.sh\",
      \"conf\": {\"source\": \"alpha_vantage\", \"symbols\": $symbols_json, \"start\": \"$start\"}}" \
    | json_field dag_run_id)"
  log "Triggered run $run_id (source alpha_vantage only, symbols $FAILURE_SYMBOLS, from $start)"
  log "Watch it at $UI_URL/dags/$DAG_ID (the HTTP helper retries each call; then finish_run fails the run at once)"
  state="$(wait_for_run "$run_id")"
  log "Run $run_id ended: $state"
  if [ "$(alert_count)" -gt "$alerts_before" ]; then
    log "New alerts in $ALERTS_LOG (what Slack would have received):"
    tail -n +"$((alerts_before + 1))" "$ALERTS_LOG" \
      | "$VENV/bin/python" -c 'import json, sys
for line in sys.stdin:
    alert = json.loads(line)
    payload = alert.get("payload", alert)
    print("---"); print(payload.get("text", json.dumps(payload, indent=2)))'
  else
    log "No new alert in $ALERTS_LOG"
  fi
}

case "${1:-}" in
  on)
    log "Mock Alpha Vantage: mode ${2:-error500}"
    mock_control "mode=${2:-error500}&reset=1"
    ;;
  off)
    log "Mock Alpha Vantage: back to normal"
    mock_control "mode=normal"
    log "To recover a failed run: in the UI ($UI_URL/dags/$DAG_ID) Clear its red finish_run, keeping the"
    log "dialog's defaults; it fetches the missing symbols again and the run turns green"
    ;;
  run)
    run_alpha_vantage_only
    ;;
  status)
    curl --silent --show-error --fail-with-body --max-time 10 "$MOCK_URL/_stats" || die "no mock at $MOCK_URL"
    echo
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
