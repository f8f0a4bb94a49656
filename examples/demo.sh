#!/usr/bin/env bash
# The demo behind `make demo`: deploys the bundled example stack (examples/trading-bot) a first
# time, then deploys a second version while a load loop hits the published port, and shows what
# ztd-detect sees and how many requests failed. `--clean` removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO_DIR=$ROOT/target/demo/trading-bot
export COMPOSE_PROJECT_NAME=trading-bot
export PATH=$ROOT/target/debug:$PATH
LOADER=$(ls "$ROOT"/target/*/release/ztd-testapp 2>/dev/null | head -n 1)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

clean() {
  local projects="trading-bot trading-bot-blue trading-bot-green trading-bot-shared trading-bot-ztd"
  for project in $projects; do  # containers first: the proxy and db are attached to color networks
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
    [ -z "$ids" ] || docker rm -f $ids >/dev/null
  done
  for project in $projects; do
    nets=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
    [ -z "$nets" ] || docker network rm $nets >/dev/null
  done
  vols=$(docker volume ls -q --filter label=com.docker.compose.project=trading-bot)
  [ -z "$vols" ] || docker volume rm $vols >/dev/null
  rm -rf "$DEMO_DIR"
}

if [ "${1:-}" = --clean ]; then clean; echo "demo removed"; exit 0; fi

clean
mkdir -p "$DEMO_DIR"
cp "$ROOT/examples/trading-bot/compose.yaml" "$DEMO_DIR/"
cd "$DEMO_DIR"
if [ -z "${DEMO_PORT:-}" ]; then
  DEMO_PORT=8080
  while port_busy "$DEMO_PORT"; do DEMO_PORT=$((DEMO_PORT + 1)); done
fi
export DEMO_PORT

say "1. first deploy (v1): ztd-detect | ztd-up | ztd-health --wait | ztd-switch"
APP_VERSION=v1 bash -o pipefail -c 'ztd-detect </dev/null | ztd-up | ztd-health --wait | ztd-switch' >first.json
echo "switched to $(jq -r .to first.json 2>/dev/null || grep -o '"to":"[a-z]*"' first.json) in $(jq -r .duration_ms first.json 2>/dev/null) ms"
echo "GET http://127.0.0.1:$DEMO_PORT/ -> $(curl -s "http://127.0.0.1:$DEMO_PORT/" 2>/dev/null || true)"

say "2. second deploy (v2) while a load loop hits port $DEMO_PORT: detect | up | health --wait | monitor --for 3s | switch | monitor --for 3s || rollback"
rm -f load.stop
"$LOADER" load "http://127.0.0.1:$DEMO_PORT/" --interval 5ms --stop-file load.stop >load.json &
loader=$!
sleep 1
# The full pipeline: a short watch window before and after the switch, ztd-rollback if one trips.
MIGRATION_GRACE_PERIOD=3s APP_VERSION=v2 bash -o pipefail -c \
  'ztd-detect </dev/null | ztd-up | ztd-health --wait | ztd-monitor --for | ztd-switch | ztd-monitor --for || ztd-rollback </dev/null' >second.json
sleep 1
touch load.stop
wait "$loader"
echo "GET http://127.0.0.1:$DEMO_PORT/ -> $(curl -s "http://127.0.0.1:$DEMO_PORT/" 2>/dev/null || true)"

say "3. ztd-detect"
ztd-detect </dev/null >detect.json || true
if command -v jq >/dev/null; then
  jq '{active, standby, target,
       colors: (.colors | map_values({status, containers: [.containers[] | "\(.name) \(.state) \(.health)"]})),
       shared: [.shared[] | "\(.name) \(.state)"]}' detect.json
  jq -r '.handovers[]? | "handover of \(.service): \(.old) -> \(.new), gap \(.gap_ms) ms"' second.json
  jq -r '"watch window after the switch: " + (if .monitor.tripped then "tripped: " + .monitor.reason else "clean" end)' second.json
else
  cat detect.json
fi

say "4. the load loop"
cat load.json
failed=$(grep -o '"failed":[0-9]*' load.json | cut -d: -f2)
total=$(grep -o '"total":[0-9]*' load.json | cut -d: -f2)
echo "$failed of $total requests failed during the second deploy"
echo
echo "The demo stack runs on in $DEMO_DIR (port $DEMO_PORT). Try: cd $DEMO_DIR && ztd-detect"
echo "Remove it with: make demo-clean"
[ "$failed" = 0 ]
