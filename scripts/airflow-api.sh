#!/usr/bin/env bash
# Helpers for Airflow's REST API on the local stack, sourced by run-local.sh and simulate-failure.sh.
# The caller sets VENV, UI_URL, DAG_ID and WAIT_SECONDS, and defines die() and log().

airflow_api() {
  # airflow_api METHOD PATH [JSON]: call Airflow's REST API (no login on the local stack).
  local method="$1" path="$2" body="${3:-}"
  local args=(--silent --show-error --fail-with-body --max-time 30 -X "$method")
  if [ -n "$body" ]; then
    args+=(-H "Content-Type: application/json" -d "$body")
  fi
  curl "${args[@]}" "$UI_URL/api/v2$path"
}

json_field() {
  # json_field NAME: print one top-level field of the JSON on stdin.
  "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

url_quote() {
  # Run ids hold '+' and ':' (e.g. manual__2024-06-28T22:30:00+00:00): quote them for a URL path.
  "$VENV/bin/python" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

wait_for_run() {
  # wait_for_run RUN_ID: poll the run until it succeeds or fails (at most WAIT_SECONDS); print its state.
  local run_id="$1" state waited=0
  while true; do
    state="$(airflow_api GET "/dags/$DAG_ID/dagRuns/$(url_quote "$run_id")" | json_field state)"
    case "$state" in
      success | failed) break ;;
    esac
    [ "$waited" -lt "$WAIT_SECONDS" ] || die "run $run_id is still $state after $WAIT_SECONDS s; see $UI_URL"
    sleep 3
    waited=$((waited + 3))
  done
  echo "$state"
}
