#!/usr/bin/env bash
# Drop-in replacement for the zero-downtime-deploy.sh of a Docker Compose project, on ztd: copy it
# into the project's scripts/ folder (the project root is that folder's parent) with the ztd
# tools on PATH. Commands, key output lines, files and exit codes are the original's; what the
# original got wrong (one Compose project for both colours, no lock, sourcing state, the live
# colour removed by cleanup) is fixed. See "Migrating from the scripts" in ztd's README.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(dirname "$SCRIPT_DIR")"
LOG_DIR="$PROJECT_ROOT/logs"
LOG_FILE="$LOG_DIR/deployment-$(date +%Y%m%d-%H%M%S).log"

# The original's settings, honoured for real (the environment wins over these defaults).
export HEALTH_CHECK_RETRIES="${HEALTH_CHECK_RETRIES:-10}"
export HEALTH_CHECK_INTERVAL="${HEALTH_CHECK_INTERVAL:-5}"
export MIGRATION_GRACE_PERIOD="${MIGRATION_GRACE_PERIOD:-30}"
export ROLLBACK_TIMEOUT="${ROLLBACK_TIMEOUT:-300}"
export DEPLOYMENT_LOG_LEVEL="${DEPLOYMENT_LOG_LEVEL:-INFO}"
# The original singled out the trading bot by name: it is handed over (never runs in both
# colours; a port it publishes stays its own) and drained with its graceful shutdown before it
# stops. A ZTD_HANDOVER or ZTD_DRAIN_AI_TRADING_BOT already set wins (set empty: none), and so do
# the compose file's own ztd.switch / ztd.drain (labels or x-ztd).
export ZTD_HANDOVER="${ZTD_HANDOVER-ai-trading-bot}"
# As in the original, a graceful shutdown that fails does not hold the switch back: the bot is
# then stopped with its stop signal and grace.
export ZTD_DRAIN_AI_TRADING_BOT="${ZTD_DRAIN_AI_TRADING_BOT-[\"sh\", \"-c\", \"python -m bot.utils.graceful_shutdown || true\"]}"
# What a failing check after the switch does: warn (the original) or rollback.
POST_SWITCH_FAILURE="${POST_SWITCH_FAILURE:-warn}"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  RED='\033[0;31m' GREEN='\033[0;32m' BLUE='\033[0;34m' YELLOW='\033[1;33m' NC='\033[0m'
else
  RED='' GREEN='' BLUE='' YELLOW='' NC=''
fi

level_rank() { case "$1" in DEBUG) echo 0 ;; INFO) echo 1 ;; WARN | WARNING) echo 2 ;; *) echo 3 ;; esac; }
THRESHOLD=$(level_rank "$(printf '%s' "$DEPLOYMENT_LOG_LEVEL" | tr '[:lower:]' '[:upper:]')")
log() { # LEVEL message: to stdout and, once there is one, to the log file
  local level=$1; shift
  [ "$(level_rank "$level")" -ge "$THRESHOLD" ] || return 0
  local line
  line="$(date '+%Y-%m-%d %H:%M:%S') [$level] $*"
  echo "$line"
  if [ -n "${LOGGING:-}" ]; then echo "$line" >>"$LOG_FILE"; fi
}
print_status() { # colour message (stdout only, as the original)
  printf '%b%s%b\n' "$1" "$2" "$NC"
}
start_log() { mkdir -p "$LOG_DIR"; : >>"$LOG_FILE"; LOGGING=1; }

# Run a ztd tool in the project root; its progress goes to the log file too.
ztd() {
  if [ -n "${LOGGING:-}" ]; then
    "$@" --project-dir "$PROJECT_ROOT" 2> >(tee -a "$LOG_FILE" >&2)
  else
    "$@" --project-dir "$PROJECT_ROOT"
  fi
}

json_field() { # key: the value of the first "key":"value" in stdin
  grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4
}

check_prerequisites() {
  local missing=0 tool
  for tool in docker ztd-detect ztd-up ztd-health ztd-monitor ztd-switch ztd-rollback; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log ERROR "$tool is not installed or not on PATH"
      missing=1
    fi
  done
  local file found=
  for file in compose.yaml compose.yml docker-compose.yml docker-compose.yaml; do
    [ -f "$PROJECT_ROOT/$file" ] && found=1
  done
  if [ -z "$found" ]; then
    log ERROR "docker-compose.yml not found in $PROJECT_ROOT"
    missing=1
  fi
  [ "$missing" = 0 ] || exit 1
}

current_color() { # the active colour, or nothing
  ztd ztd-detect </dev/null 2>/dev/null | json_field active || true
}

valid_color() { [ "${1:-}" = blue ] || [ "${1:-}" = green ]; }

# Forward Ctrl-C and SIGTERM to the running tool: it finishes its step, puts things back, exits 130.
on_signal() { print_status "$YELLOW" "Interrupted: waiting for the current step to be put back"; }
trap on_signal INT TERM

deploy() {
  start_log
  print_status "$BLUE" "=== ZERO-DOWNTIME DEPLOYMENT STARTING ==="
  check_prerequisites
  local started current target result status=0
  started=$(date +%s)
  current=$(current_color)
  if [ -z "$current" ]; then
    print_status "$YELLOW" "No existing deployment found. Starting fresh with green."
  fi
  log INFO "Current deployment: ${current:-none}"
  result=$(mktemp)
  # Build and start the new colour, wait until healthy, watch it, switch, watch it again.
  ztd ztd-detect </dev/null | ztd ztd-up | ztd ztd-health --wait \
    | ztd ztd-monitor --for "$MIGRATION_GRACE_PERIOD" | ztd ztd-switch >"$result" || status=$?
  target=$(json_field target <"$result")
  if [ "$status" -ne 0 ]; then
    [ "$status" = 130 ] && log WARN "Deployment interrupted"
    log ERROR "Deployment failed: $(json_field message <"$result" || true)"
    print_status "$RED" "ROLLING BACK TO ${current:-previous} DEPLOYMENT"
    ztd ztd-rollback </dev/null >/dev/null || log ERROR "Rollback failed: run $0 --rollback"
    log INFO "Rollback completed"
    rm -f "$result"
    exit 1
  fi
  log INFO "Traffic switched to $target"
  if ! ztd ztd-monitor "$target" --for "$MIGRATION_GRACE_PERIOD" </dev/null >"$result"; then
    if [ "$POST_SWITCH_FAILURE" = rollback ]; then
      log ERROR "Issues detected after switch: $(json_field reason <"$result" || true)"
      print_status "$RED" "ROLLING BACK TO ${current:-previous} DEPLOYMENT"
      ztd ztd-rollback </dev/null >/dev/null || log ERROR "Rollback failed: run $0 --rollback"
      log INFO "Rollback completed"
      rm -f "$result"
      exit 1
    fi
    print_status "$YELLOW" "Issues detected after switch, but keeping new deployment"
    log WARN "Issues detected after switch: $(json_field reason <"$result" || true)"
  fi
  rm -f "$result"
  print_status "$YELLOW" "To roll back: $0 --rollback"
  [ -n "$current" ] && print_status "$YELLOW" "To clean up the old deployment: $0 --cleanup $current"
  print_status "$GREEN" "=== DEPLOYMENT SUCCESSFUL ==="
  echo "Deployment Summary:"
  echo "  Old deployment: ${current:-none}"
  echo "  New deployment: $target"
  echo "  Duration: $(($(date +%s) - started))s"
  echo "  Log file: $LOG_FILE"
}

rollback() {
  local state="$PROJECT_ROOT/.rollback_state" current target
  if [ ! -f "$state" ]; then
    print_status "$RED" "No rollback state found"
    exit 1
  fi
  # Parsed, never sourced.
  current=$(sed -n 's/^CURRENT=\(blue\|green\)$/\1/p' "$state")
  target=$(sed -n 's/^TARGET=\(blue\|green\)$/\1/p' "$state")
  if [ -z "$current" ] || [ -z "$target" ]; then
    print_status "$RED" "Invalid rollback state in $state"
    exit 1
  fi
  start_log
  check_prerequisites
  local result status=0 to
  result=$(mktemp)
  ztd ztd-rollback </dev/null >"$result" || status=$?
  to=$(json_field to <"$result")
  [ -n "$to" ] || to=$(json_field active <"$result")
  if [ "$status" -ne 0 ]; then
    log ERROR "Rollback failed: $(json_field refused <"$result" || json_field message <"$result" || true)"
    rm -f "$result"
    exit 1
  fi
  print_status "$RED" "ROLLING BACK TO ${to:-$current} DEPLOYMENT"
  log INFO "Rollback completed"
  rm -f "$result"
}

cleanup() {
  local color=${1:-}
  if [ -z "$color" ]; then
    print_status "$RED" "Usage: $0 --cleanup <color>"
    exit 1
  fi
  if ! valid_color "$color"; then
    print_status "$RED" "Unknown color: $color (expected blue or green)"
    exit 1
  fi
  start_log
  check_prerequisites
  local result status=0
  result=$(mktemp)
  ztd ztd-rollback --cleanup "$color" </dev/null >"$result" || status=$?
  if [ "$status" -ne 0 ]; then
    print_status "$RED" "Cleanup of $color refused: $(json_field refused <"$result" || json_field message <"$result" || true)"
    rm -f "$result"
    exit 1
  fi
  rm -f "$result"
  log INFO "Cleaned up $color deployment"
}

status() {
  local current
  current=$(current_color)
  if [ -z "$current" ]; then
    print_status "$YELLOW" "No active deployment"
    return 0
  fi
  print_status "$GREEN" "Active deployment: $current"
  printf '%-32s %s\n' NAMES STATUS
  docker ps -a --filter "label=deployment.color=$current" \
    --filter "label=com.docker.compose.project=$(ztd ztd-detect </dev/null 2>/dev/null | json_field project)-$current" \
    --format '{{.Names}}\t{{.Status}}' | while IFS=$'\t' read -r name state; do printf '%-32s %s\n' "$name" "$state"; done
}

usage() {
  cat <<USAGE
Usage: $0 [command]

Commands:
  deploy              Run a zero-downtime deployment (default)
  --rollback          Roll back to the previous deployment
  --cleanup <color>   Remove a deployment that is not active (blue or green)
  --status            Show the active deployment
  --help              Show this help

Environment: HEALTH_CHECK_RETRIES (10), HEALTH_CHECK_INTERVAL (5), MIGRATION_GRACE_PERIOD (30),
ROLLBACK_TIMEOUT (300), DEPLOYMENT_LOG_LEVEL (INFO), POST_SWITCH_FAILURE (warn or rollback).
USAGE
}

case "${1:-deploy}" in
  deploy) deploy ;;
  --rollback) rollback ;;
  --cleanup) cleanup "${2:-}" ;;
  --status) status ;;
  --help) usage ;;
  *)
    print_status "$RED" "Unknown command: $1"
    exit 1
    ;;
esac
