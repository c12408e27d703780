#!/usr/bin/env bash
# The whole pipeline on your machine, with one command: no API keys, no internet, no Docker.
#
#   ./scripts/run-local.sh          set up, seed the offline data, start every service, load
#                                   one year of history, run daily_etl_pipeline once and print a summary
#   ./scripts/run-local.sh start    start (or reuse) the services only
#   ./scripts/run-local.sh history  load the year of offline history up to the latest completed
#                                   NYSE session (on a later day run the script without arguments
#                                   instead: it also writes the offline data up to that session)
#   ./scripts/run-local.sh trigger  follow the active run or trigger one, wait, print the summary
#   ./scripts/run-local.sh status   show which services run
#   ./scripts/run-local.sh stop     stop everything this script started
#   ./scripts/run-local.sh airflow ARGS...
#                                   an Airflow CLI command against the local stack, e.g.
#                                   ./scripts/run-local.sh airflow dags list
#
# Services (all on 127.0.0.1): moto_server (S3, CloudWatch), the mock Alpha Vantage server,
# the Slack catcher, and Airflow (api-server with the UI, scheduler, dag-processor, triggerer).
# Each runs in the background with its PID in .local/pids/ and its log in .local/logs/.
# Running the script again reuses the services that are still up.
#
# Ports and folders can be changed with environment variables (the tests do that):
#   AIRFLOW_PORT (8080) MOTO_PORT (5000) MOCK_AV_PORT (8081) SLACK_PORT (8082)
#   LOCAL_STACK_DIR (.local) OFFLINE_DATA_DIR (data/offline) SQLITE_PATH (data/warehouse.db)
#   STATE_DIR (data/state) ALERTS_LOG (data/alerts.log)
#   WAIT_SECONDS (600: how long `trigger` waits for the run)
# docs/local-stack.md explains it all.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV_DIR:-$ROOT/.venv}"
LOCAL_DIR="${LOCAL_STACK_DIR:-$ROOT/.local}"
LOG_DIR="$LOCAL_DIR/logs"
PID_DIR="$LOCAL_DIR/pids"
AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"
MOTO_PORT="${MOTO_PORT:-5000}"
MOCK_AV_PORT="${MOCK_AV_PORT:-8081}"
SLACK_PORT="${SLACK_PORT:-8082}"
OFFLINE_DATA_DIR="${OFFLINE_DATA_DIR:-$ROOT/data/offline}"
SQLITE_PATH="${SQLITE_PATH:-$ROOT/data/warehouse.db}"
STATE_DIR="${STATE_DIR:-$ROOT/data/state}"
ALERTS_LOG="${ALERTS_LOG:-$ROOT/data/alerts.log}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
DAG_ID="daily_etl_pipeline"
UI_URL="http://127.0.0.1:$AIRFLOW_PORT"
# Airflow components, in start order; `stop` goes the other way.
AIRFLOW_SERVICES=(api-server dag-processor scheduler triggerer)
ALL_SERVICES=(moto mock-alpha-vantage slack-catcher "${AIRFLOW_SERVICES[@]}")

log() { echo "==> $*"; }
die() { echo "error: $*" >&2; exit 1; }
# shellcheck source=scripts/airflow-api.sh
source "$ROOT/scripts/airflow-api.sh"

load_environment() {
  # Airflow's settings and the pipeline's local endpoints (see the file for each one).
  # Everything Airflow starts inherits them, so the tasks talk to the local services.
  export ROOT LOCAL_DIR AIRFLOW_PORT MOTO_PORT MOCK_AV_PORT SLACK_PORT OFFLINE_DATA_DIR SQLITE_PATH STATE_DIR
  set -a
  # shellcheck source=airflow/config/local-stack.env
  source "$ROOT/airflow/config/local-stack.env"
  set +a
  export PATH="$VENV/bin:$PATH"  # Airflow starts its helpers as `airflow ...`
}

pid_of() {
  # Print the PID of a running service started by this script; fail if it does not run.
  local pid_file="$PID_DIR/$1.pid" pid
  [ -f "$pid_file" ] || return 1
  pid="$(cat "$pid_file")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "$pid"
    return 0
  fi
  rm -f "$pid_file"  # a stale file from a crash or a reboot
  return 1
}

port_in_use() {
  # bash can open TCP connections itself: no netcat needed.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_service() {
  # start_service NAME PORT COMMAND...: run COMMAND in the background, unless NAME runs already.
  local name="$1" port="$2"
  shift 2
  local pid
  if pid="$(pid_of "$name")"; then
    log "$name is already running (pid $pid), reusing it"
    return 0
  fi
  if [ "$port" != "-" ] && port_in_use "$port"; then
    die "port $port (for $name) is used by another program; stop it or set another port (see the top of $0)"
  fi
  # setsid gives the service its own process group, so `stop` can signal its children too.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
  log "started $name (pid $!), log: $LOG_DIR/$name.log"
}

wait_for_url() {
  # wait_for_url NAME URL SECONDS: poll until the URL answers 2xx, or give up.
  local name="$1" url="$2" seconds="$3" waited=0
  until curl --silent --fail --max-time 5 --output /dev/null "$url"; do
    if [ "$waited" -ge "$seconds" ]; then
      echo "error: $name did not answer at $url within $seconds s; last lines of its log:" >&2
      tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

stop_service() {
  # stop_service NAME FIRST_SIGNAL: stop one service and its children with FIRST_SIGNAL, then
  # SIGTERM, then SIGKILL, waiting up to 20 s in between. Only process groups this script
  # started are signalled.
  local name="$1" first_signal="$2" pid signal
  pid="$(pid_of "$name")" || return 0
  for signal in "$first_signal" TERM KILL; do
    kill "-$signal" -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    if ! kill -0 -- "-$pid" 2>/dev/null; then
      log "stopped $name (pid $pid)"
      rm -f "$PID_DIR/$name.pid"
      return 0
    fi
    echo "warning: $name (pid $pid) still runs 20 s after SIG$signal" >&2
  done
  die "could not stop $name (pid $pid)"
}

start_services() {
  mkdir -p "$LOG_DIR" "$PID_DIR" "$(dirname "$SQLITE_PATH")" "$STATE_DIR" "$(dirname "$ALERTS_LOG")"
  [ -d "$OFFLINE_DATA_DIR" ] || die "no offline data in $OFFLINE_DATA_DIR: run scripts/seed-data.sh (or $0 without arguments)"

  start_service moto "$MOTO_PORT" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"
  start_service mock-alpha-vantage "$MOCK_AV_PORT" \
    "$VENV/bin/python" -m src.local_stack.mock_alpha_vantage --port "$MOCK_AV_PORT" --data-dir "$OFFLINE_DATA_DIR"
  start_service slack-catcher "$SLACK_PORT" \
    "$VENV/bin/python" -m src.local_stack.slack_catcher --port "$SLACK_PORT" --log "$ALERTS_LOG"

  if pid_of api-server >/dev/null; then
    log "Airflow is already running, reusing it"
  else
    log "Preparing Airflow's metadata DB in $AIRFLOW_HOME (first time: about a minute)"
    mkdir -p "$AIRFLOW_HOME"
    airflow db migrate >>"$LOG_DIR/airflow-setup.log" 2>&1 || die "airflow db migrate failed; see $LOG_DIR/airflow-setup.log"
    airflow pools import "$ROOT/airflow/config/pools.json" >>"$LOG_DIR/airflow-setup.log" 2>&1 \
      || die "creating the pools failed; see $LOG_DIR/airflow-setup.log"
  fi
  # The components of `airflow standalone`, started one by one: standalone's scheduler and
  # triggerer would also open log servers on every network interface, which we skip
  # (--skip-serve-logs: with one machine, the UI reads the task logs from disk).
  start_service api-server "$AIRFLOW_PORT" airflow api-server --host 127.0.0.1 --port "$AIRFLOW_PORT"
  start_service dag-processor - airflow dag-processor
  start_service scheduler - airflow scheduler --skip-serve-logs
  start_service triggerer - airflow triggerer --skip-serve-logs

  wait_for_url moto "http://127.0.0.1:$MOTO_PORT/moto-api/" 60
  wait_for_url mock-alpha-vantage "http://127.0.0.1:$MOCK_AV_PORT/_stats" 30
  wait_for_url slack-catcher "http://127.0.0.1:$SLACK_PORT/_alerts" 30
  log "Waiting for Airflow ($UI_URL/api/v2/monitor/health)"
  wait_for_url api-server "$UI_URL/api/v2/monitor/health" 180
  log "Waiting for the scheduler to parse $DAG_ID"
  wait_for_url dag-processor "$UI_URL/api/v2/dags/$DAG_ID" 180
  log "All services are up. Airflow UI: $UI_URL"
}

active_run() {
  # Print the id of the newest queued or running run of the DAG (nothing if there is none).
  airflow_api GET "/dags/$DAG_ID/dagRuns?state=queued&state=running&order_by=-run_after&limit=1" \
    | "$VENV/bin/python" -c 'import json, sys; runs = json.load(sys.stdin)["dag_runs"]; print(runs[0]["dag_run_id"] if runs else "")'
}

seed_offline_data() {
  # The synthetic CSVs end at the latest completed session on the day they are written: write
  # them again (identical up to that day) so a later day has its sessions too.
  log "Seeding the offline data (synthetic prices up to the latest completed session)"
  OFFLINE_DATA_DIR="$OFFLINE_DATA_DIR" "$ROOT/scripts/seed-data.sh"
}

load_history() {
  # One year of offline history up to the latest completed NYSE session (src/market_calendar.py),
  # so every indicator (SMA 200 needs 200 sessions) is warm and the health checks pass before the
  # first DAG run. The range is computed here, never written down: it moves with the calendar.
  local range start end started=$SECONDS
  range="$("$VENV/bin/python" -c 'from src.market_calendar import latest_completed_session, recent_sessions
sessions = recent_sessions(latest_completed_session(), 253)
print(sessions[0], sessions[-1])')"
  read -r start end <<<"$range"
  log "Loading the offline history $start..$end (253 NYSE sessions: one year) into $SQLITE_PATH"
  # In memory, without S3 (S3_BUCKET empty): the raw zone is for the daily runs' API replies.
  S3_BUCKET="" "$VENV/bin/python" -m src.pipeline run --source file --data-dir "$OFFLINE_DATA_DIR" \
    --start "$start" --end "$end" --no-progress >>"$LOG_DIR/history.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/history.log" >&2; die "loading the history failed; see $LOG_DIR/history.log"; }
  log "History $start..$end loaded in $((SECONDS - started)) s (log: $LOG_DIR/history.log)"
}

run_latest_session() {
  # Make sure a run loads the latest completed NYSE session, wait for it, print a summary.
  local run_id="" state started=$SECONDS
  if [ "$(airflow_api GET "/dags/$DAG_ID" | json_field is_paused)" = "True" ]; then
    # First start: with catchup=False the scheduler starts the latest scheduled run (the
    # last weekday 18:30 New York time) as soon as the DAG is unpaused. Follow that run.
    airflow_api PATCH "/dags/$DAG_ID" '{"is_paused": false}' >/dev/null
    log "Unpaused $DAG_ID; waiting for the scheduler to start its latest scheduled run"
    for _ in $(seq 1 30); do
      run_id="$(active_run)"
      [ -z "$run_id" ] || break
      sleep 2
    done
  else
    run_id="$(active_run)"  # e.g. a run the scheduler started after a restart
  fi
  if [ -z "$run_id" ]; then
    # A manual run: its logical date is now, and the DAG loads the last session closed by then.
    run_id="$(airflow_api POST "/dags/$DAG_ID/dagRuns" \
      "{\"logical_date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"note\": \"triggered by run-local.sh\"}" \
      | json_field dag_run_id)"
    log "Triggered run $run_id"
  fi
  log "Waiting for run $run_id (at most $WAIT_SECONDS s); watch it at $UI_URL/dags/$DAG_ID"
  state="$(wait_for_run "$run_id")"
  print_summary "$run_id" "$state" $((SECONDS - started))
  [ "$state" = "success" ]
}

print_summary() {
  local run_id="$1" state="$2" seconds="$3"
  echo
  echo "Run $run_id: $state (followed for $seconds s)"
  "$VENV/bin/python" - "$SQLITE_PATH" "$run_id" <<'PY'
import sqlite3
import sys

path, run_id = sys.argv[1], sys.argv[2]
with sqlite3.connect(path) as conn:
    row = conn.execute(
        "SELECT logical_date, status, symbols_loaded, symbols_requested, rows_loaded, rows_quarantined "
        "FROM pipeline_runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
if row is None:
    print("  pipeline_runs has no row for this run (it failed before recording it)")
else:
    print(f"  trading day      {row[0]}")
    print(f"  pipeline status  {row[1]} ({row[2]} of {row[3]} symbols loaded)")
    print(f"  rows loaded      {row[4]}")
    print(f"  rows quarantined {row[5]}")
PY
  cat <<EOF
  Airflow UI       $UI_URL/dags/$DAG_ID  (no login: local use only)
  warehouse        $SQLITE_PATH  (sqlite3 $SQLITE_PATH 'SELECT * FROM pipeline_runs')
  alerts           $ALERTS_LOG  (what Slack would have received)
  service logs     $LOG_DIR/
  task logs        $AIRFLOW_HOME/logs/
  stop everything  $0 stop
EOF
}

show_status() {
  local name pid
  for name in "${ALL_SERVICES[@]}"; do
    if pid="$(pid_of "$name")"; then
      echo "  $name: running (pid $pid)"
    else
      echo "  $name: stopped"
    fi
  done
  echo "  logs: $LOG_DIR/"
}

stop_all() {
  local index name
  for ((index = ${#ALL_SERVICES[@]} - 1; index >= 0; index--)); do
    name="${ALL_SERVICES[index]}"
    case "$name" in
      # Airflow shuts down cleanly on SIGINT (Ctrl+C): the scheduler waits for its workers.
      api-server | dag-processor | scheduler | triggerer) stop_service "$name" INT ;;
      # Background jobs of a script ignore SIGINT; the small servers stop on SIGTERM.
      *) stop_service "$name" TERM ;;
    esac
  done
  log "Everything is stopped (logs stay in $LOG_DIR/)"
}

main() {
  local command="${1:-up}"
  load_environment
  case "$command" in
    up)
      "$ROOT/scripts/setup-env.sh"
      if [ ! -f "$ROOT/.env" ]; then
        cp "$ROOT/.env.example" "$ROOT/.env"
        log "Created .env from .env.example (the local stack overrides its endpoints)"
      fi
      seed_offline_data
      start_services
      load_history
      run_latest_session
      ;;
    start) start_services ;;
    history)
      mkdir -p "$LOG_DIR"
      load_history
      ;;
    trigger) run_latest_session ;;
    status) show_status ;;
    stop) stop_all ;;
    airflow)
      shift
      exec airflow "$@"
      ;;
    *) die "unknown command '$command' (use: up, start, history, trigger, status, stop, airflow ...)" ;;
  esac
}

main "$@"
