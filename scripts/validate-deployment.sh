#!/usr/bin/env bash
# Drop-in replacement for the validate-deployment.sh of a Docker Compose project, on ztd: runs
# every check the original meant to run (containers, health endpoints, resources, logs,
# connectivity between services, configuration) on a colour (default: the active one), prints
# "Checking <name>... PASS|FAIL", the summary, and exits 0 when all pass, 1 otherwise. The
# checks live in ztd-health --validate (JSON without --report). Copy it into scripts/.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v ztd-health >/dev/null 2>&1; then
  echo "ERROR: ztd-health is not installed or not on PATH" >&2
  exit 1
fi
case "${1:-}" in
  "" | blue | green) ;;
  *)
    echo "ERROR: unknown color ${1} (expected blue or green)"
    exit 1
    ;;
esac
exec ztd-health --validate --report --project-dir "$PROJECT_ROOT" ${1:+"$1"} </dev/null
