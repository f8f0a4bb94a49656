#!/usr/bin/env bash
# Drop-in replacement for the monitor-deployment.sh of a Docker Compose project, on ztd: the live
# view of both colours, refreshed about every 2 s (health, containers, resources, recent logs, and
# a TRANSITION IN PROGRESS banner while both run). Ctrl+C prints "Monitoring stopped", exit 0.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v ztd-monitor >/dev/null 2>&1; then
  echo "ERROR: ztd-monitor is not installed or not on PATH" >&2
  exit 1
fi
exec ztd-monitor --view --project-dir "$PROJECT_ROOT" </dev/null
