#!/usr/bin/env bash
# Drop-in replacement for the deployment-health-check.sh of a Docker Compose project, on ztd:
# checks every service of a colour (default: the active one) and prints one line per container
# (OK, NOT RUNNING, UNHEALTHY, RESTARTED, ERRORS IN LOGS) and a CRITICAL:, WARNING: or SUCCESS:
# summary, with the codes the original meant: 0 all OK, 1 warnings only, 2 critical or nothing
# deployed. The checks are ztd-health's. Copy it into the project's scripts/ folder.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v ztd-health >/dev/null 2>&1; then
  echo "ERROR: ztd-health is not installed or not on PATH" >&2
  exit 2
fi
case "${1:-}" in
  "" | blue | green) ;;
  *)
    echo "ERROR: unknown color ${1} (expected blue or green)"
    exit 2
    ;;
esac
exec ztd-health --report --min-uptime 0s --project-dir "$PROJECT_ROOT" ${1:+"$1"} </dev/null
