#!/usr/bin/env bash
# ztd's monitor benchmark: how long after a crash a watch window trips, and the monitor's own CPU
# and memory while it streams samples of a 6-service stack; each compared in the same run with
# the replaced monitor's approach (a `docker ps` poll every 5 s; a loop of docker CLI calls
# every 2 s). Run by `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TRIALS=${TRIALS:-5}
WATCH=${WATCH:-20}
IMAGE=${ZTD_TESTAPP_IMAGE:-ztd-testapp:latest}
NAME=ztd-benchmon
DIR=$(mktemp -d /tmp/ztd-benchmon.XXXXXX)
Z=${ZTD_BIN_DIR:-$ROOT/target/release}
export COMPOSE_PROJECT_NAME=$NAME

cleanup() {
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$NAME-blue"); [ -z "$ids" ] || docker rm -f $ids >/dev/null
  nets=$(docker network ls -q --filter "label=com.docker.compose.project=$NAME-blue"); [ -z "$nets" ] || docker network rm $nets >/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
cleanup; mkdir -p "$DIR"; cd "$DIR"
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now_ns() { date +%s%N; }
service() { # name, environment (flow mapping), extra labels
  printf '  %s:\n    image: %s\n    container_name: %s-blue\n    environment: %s\n    labels: {deployment.color: blue, deployment.service: %s%s}\n' \
    "$1" "$IMAGE" "$1" "${2:-{\}}" "$1" "${3:-}"
}
echo blue > .current_deployment

# 1. Trip latency: a container crashes 3 s into the window; from its die event to the exit.
crash_stack() {
  { echo "services:"; service app '{CRASH_AFTER: 3s}'; } > blue.yml
  docker compose -p $NAME-blue -f blue.yml up -d --force-recreate >/dev/null 2>&1
}
died_at_ns() {
  docker events --since "$1" --until "$(( $(date +%s) + 1 ))" --filter container=app-blue --filter event=die --format '{{.TimeNano}}' | head -n 1
}
baseline_watch() { # the replaced monitor: count running containers every 5 s
  for _ in $(seq 6); do
    [ "$(docker ps -q --filter "label=com.docker.compose.project=$NAME-blue" | wc -l)" -lt 1 ] && return 1
    sleep 5
  done
}
measure_trip() { # command...
  for _ in $(seq "$TRIALS"); do
    crash_stack
    local since; since=$(date +%s)
    "$@" >/dev/null 2>&1 || true
    local done; done=$(now_ns)
    echo $(( (done - $(died_at_ns "$since")) / 1000000 ))
  done | median
}
echo "ztd-monitor bench"
printf '  %-48s %6s ms   (baseline: docker ps every 5 s, %s ms)\n' "crash to window trip (median of $TRIALS)" \
  "$(measure_trip "$Z/ztd-monitor" blue --for 30s)" "$(TRIALS=3 measure_trip baseline_watch)"

# 2. The monitor's own CPU and memory while streaming a 6-service stack.
{
  echo "services:"
  for s in ai-trading-bot bluefin-service mcp-memory mcp-omnisearch dashboard-backend dashboard-frontend; do
    service "$s" '{LOG_EVERY: 1s}' ', ztd.health.http: /health'
  done
} > blue.yml
docker compose -p $NAME-blue -f blue.yml up -d --force-recreate >/dev/null 2>&1
sleep 1
"$Z/ztd-monitor" --both --interval 2s >stream.jsonl 2>/dev/null &
pid=$!
sleep "$WATCH"
read -r utime stime < <(awk '{ print $14, $15 }' "/proc/$pid/stat")
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
kill -INT $pid; wait $pid || true
tick=$(getconf CLK_TCK)
cpu_ms=$(( (utime + stime) * 1000 / tick ))
lines=$(wc -l < stream.jsonl)
baseline_loop() { # the replaced monitor's refresh, every 2 s, both colors
  end=$(( $(date +%s) + WATCH ))
  while [ "$(date +%s)" -lt "$end" ]; do
    for c in blue green; do
      docker ps --filter "label=deployment.color=$c" --format '{{.Names}} {{.Status}}' >/dev/null
      ids=$(docker ps -q --filter "label=deployment.color=$c")
      [ -z "$ids" ] || docker stats --no-stream --format '{{.Name}} {{.CPUPerc}} {{.MemUsage}}' $ids >/dev/null
      [ -z "$ids" ] || docker logs --tail 5 --since 5s ai-trading-bot-$c >/dev/null 2>&1 || true
    done
    sleep 2
  done
}
export -f baseline_loop; export WATCH
base=$( { /usr/bin/time -f '%U %S %M' bash -c baseline_loop >/dev/null; } 2>&1 | tail -n 1)
base_cpu=$(awk '{ printf "%d", ($1 + $2) * 1000 }' <<<"$base")
printf '  %-48s %6s ms CPU, %s KiB peak RSS, %s JSON lines\n' "ztd-monitor --both, ${WATCH} s on 6 services" "$cpu_ms" "$rss" "$lines"
printf '  %-48s %6s ms CPU (bash and the docker CLI)\n' "baseline: the replaced monitor's loop, ${WATCH} s" "$base_cpu"
