#!/usr/bin/env bash
# ztd's deploy benchmark: deploys of the bundled example stack through the design's pipeline
# under a load loop, reporting the wall time, the app's own start-to-healthy time (from Docker
# events and the app's log), the difference (ztd's overhead), the step timings and the failed
# requests; compared in the same run with an in-place `docker compose up -d` of the same stack
# (what the replaced scripts amounted to). Run by `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPLOYS=${DEPLOYS:-3}
NAME=ztd-benchdeploy
BASE=ztd-benchbase
DIR=$(mktemp -d /tmp/ztd-benchdeploy.XXXXXX)
export PATH=$ROOT/target/release:$PATH
LOADER=$(ls "$ROOT"/target/*/release/ztd-testapp | head -n 1)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=18480; while port_busy $PORT; do PORT=$((PORT + 1)); done
export DEMO_PORT=$PORT

remove_stacks() {
  for pass in containers networks; do
    for p in $NAME $NAME-blue $NAME-green $NAME-shared $NAME-ztd $BASE; do
      if [ $pass = containers ]; then
        ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p"); [ -z "$ids" ] || docker rm -f $ids >/dev/null
      else
        nets=$(docker network ls -q --filter "label=com.docker.compose.project=$p"); [ -z "$nets" ] || docker network rm $nets >/dev/null
      fi
    done
  done
  for p in $NAME $BASE; do
    vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$p"); [ -z "$vols" ] || docker volume rm $vols >/dev/null
  done
}
cleanup() { remove_stacks; rm -rf "$DIR"; }
trap cleanup EXIT
cleanup; mkdir -p "$DIR/stack"
cp examples/trading-bot/compose.yaml "$DIR/stack/"
cd "$DIR/stack"
export COMPOSE_PROJECT_NAME=$NAME
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now_ns() { date +%s%N; }
to_ns() { date -d "$1" +%s%N; }

APP_VERSION=v1 bash -o pipefail -c 'ztd-detect </dev/null | ztd-up | ztd-health --wait | ztd-switch' >/dev/null 2>&1

rm -f "$DIR/stop"
"$LOADER" load "http://127.0.0.1:$PORT/" --interval 5ms --stop-file "$DIR/stop" >"$DIR/load.json" &
loader=$!
sleep 0.5
for i in $(seq 2 $((DEPLOYS + 1))); do
  events="$DIR/events.$i"
  docker events --since "$(date +%s.%N)" --filter type=container --filter label=deployment.color \
    --format '{{.Actor.Attributes.name}} {{.Action}} {{.TimeNano}}' >"$events" &
  watcher=$!
  t0=$(now_ns)
  APP_VERSION=v$i UP_JSON="$DIR/up.$i" bash -o pipefail -c 'ztd-detect </dev/null | ztd-up | tee "$UP_JSON" | ztd-health --wait | ztd-switch' >"$DIR/switch.$i" 2>/dev/null
  t1=$(now_ns)
  sleep 0.5; kill $watcher; wait $watcher 2>/dev/null || true
  color=$(grep -o '"to":"[a-z]*"' "$DIR/switch.$i" | head -n 1 | cut -d'"' -f4)
  # The app's own start-to-healthy time on the deploy's critical path: the services started by
  # ztd-up (ready when the app logs that it listens), then the singleton started at the switch
  # (ready when Docker's HEALTHCHECK reports healthy).
  up_app=0
  for svc in dashboard memory; do
    start=$(awk -v n="$svc-$color" '$1 == n && $2 == "start" { print $3; exit }' "$events")
    ready=$(to_ns "$(docker logs -t "$svc-$color" 2>&1 | awk '/listening on port/ { print $1; exit }')")
    [ $((ready - start)) -gt $up_app ] && up_app=$((ready - start))
  done
  bot_start=$(awk -v n="trading-bot-$color" '$1 == n && $2 == "start" { print $3; exit }' "$events")
  bot_ready=$(awk -v n="trading-bot-$color" '$1 == n && $2 == "health_status:" && $3 == "healthy" { print $4; exit }' "$events")
  app=$((up_app + bot_ready - bot_start))
  # Time spent by Compose and the engine on containers: reading the compose file, creating and
  # starting the new color, stopping and starting the singleton, stopping the old color.
  engine=$(jq -n --slurpfile up "$DIR/up.$i" --slurpfile sw "$DIR/switch.$i" '
    ([$up[0].steps[] | select(.name == "read compose file" or .name == "create" or .name == "start" or .name == "shared services") | .duration_ms] | add)
    + ([$sw[0].handovers[] | .stop_ms + .gap_ms] | add // 0)
    + ([$sw[0].steps[] | select(.name == "stop_old") | .duration_ms] | add // 0) | floor')
  echo "$(( (t1 - t0) / 1000000 )) $(( app / 1000000 )) $engine" >>"$DIR/runs"
done
touch "$DIR/stop"; wait $loader

wall=$(awk '{ print $1 }' "$DIR/runs" | median)
app=$(awk '{ print $2 }' "$DIR/runs" | median)
overhead=$(awk '{ print $1 - $2 }' "$DIR/runs" | median)
engine=$(awk '{ print $3 }' "$DIR/runs" | median)
own=$(awk '{ print $1 - $2 - $3 }' "$DIR/runs" | median)
total=$(grep -o '"total":[0-9]*' "$DIR/load.json" | cut -d: -f2)
failed=$(grep -o '"failed":[0-9]*' "$DIR/load.json" | cut -d: -f2)
echo "ztd deploy of the example stack (4 services, one a handover singleton), $DEPLOYS deploys, median"
printf '  %-44s %8s ms\n' "wall time of the pipeline" "$wall" "app's own start-to-healthy time" "$app" \
  "ztd overhead (wall - app)" "$overhead" "  of which Compose and the engine on containers" "$engine" \
  "  of which ztd itself" "$own"
printf '  %-44s %8s of %s\n' "failed requests under load (all deploys)" "$failed" "$total"
last="$DIR/switch.$((DEPLOYS + 1))"
if command -v jq >/dev/null; then
  echo "  steps of the last switch: $(jq -c '[.steps[] | {(.name): .duration_ms}] | add' "$last")"
  echo "  handover: $(jq -c '.handovers[0] | {stop_ms, gap_ms, healthy_ms}' "$last")"
fi

# Baseline: the same stack recreated in place by plain Compose, under the same load loop.
remove_stacks
mkdir -p "$DIR/base" && cp "$DIR/stack/compose.yaml" "$DIR/base/" && cd "$DIR/base"
export COMPOSE_PROJECT_NAME=$BASE
APP_VERSION=v1 docker compose up -d >/dev/null 2>&1
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
rm -f "$DIR/stop"
"$LOADER" load "http://127.0.0.1:$PORT/" --interval 5ms --stop-file "$DIR/stop" >"$DIR/base.json" &
loader=$!
sleep 0.5
t0=$(now_ns)
APP_VERSION=v2 docker compose up -d >/dev/null 2>&1
t1=$(now_ns)
sleep 1; touch "$DIR/stop"; wait $loader
btotal=$(grep -o '"total":[0-9]*' "$DIR/base.json" | cut -d: -f2)
bfailed=$(grep -o '"failed":[0-9]*' "$DIR/base.json" | cut -d: -f2)
echo "baseline: in-place 'docker compose up -d' of the same stack"
printf '  %-44s %8s ms\n' "wall time" "$(( (t1 - t0) / 1000000 ))"
printf '  %-44s %8s of %s\n' "failed requests under load" "$bfailed" "$btotal"
