#!/usr/bin/env bash
# ztd's benchmark: wall time of ztd-detect and of one ztd-health pass on a 6-service stack, and
# how soon `ztd-health --wait` returns once the last container turns healthy, each compared in
# the same run with the shell approach of the scripts ztd replaces. Also the binary sizes.
# Run by `make bench` (release build and test image first).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BENCH_ROOT"

RUNS=${RUNS:-30}
TRIALS=${TRIALS:-5}
Z=$ZTD_BIN_DIR
NAME=ztd-bench
LAT=ztd-benchlat
DIR=$(mktemp -d /tmp/ztd-bench.XXXXXX)
export COMPOSE_PROJECT_NAME=$NAME

cleanup() {
  for p in $NAME-blue $NAME-green $LAT-blue; do
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
    [ -n "$ids" ] && docker rm -f $ids >/dev/null
    nets=$(docker network ls -q --filter "label=com.docker.compose.project=$p")
    [ -n "$nets" ] && docker network rm $nets >/dev/null
  done
  rm -rf "$DIR"
}
trap cleanup EXIT
cleanup; mkdir -p "$DIR"; cd "$DIR"

six_service_stack > blue.yml
docker compose -p $NAME-blue -f blue.yml up -d --quiet-pull >/dev/null 2>&1
echo blue > .current_deployment
"$Z/ztd-health" blue --wait --min-uptime 1s >/dev/null 2>&1 || { echo "bench stack did not become healthy" >&2; exit 1; }

# The replaced scripts' detection: running containers of the bot per color (docker CLI).
baseline_detect() {
  for c in blue green; do
    docker ps -q --filter "label=deployment.color=$c" --filter "label=deployment.service=ai-trading-bot" >/dev/null
  done
}
# The replaced health check, per container in turn: running, health, restarts, last 50 log lines.
baseline_health() {
  for s in ai-trading-bot bluefin-service mcp-memory mcp-omnisearch dashboard-backend dashboard-frontend; do
    c=$s-blue
    docker ps --filter "name=$c" --filter status=running -q >/dev/null
    docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c" >/dev/null
    docker inspect --format '{{.RestartCount}}' "$c" >/dev/null
    docker logs --tail 50 "$c" 2>&1 | grep -icE 'error|exception|critical' >/dev/null || true
  done
}

echo "ztd bench: 6-service stack, $RUNS runs each, median wall time"
printf '  %-44s %8s ms   (baseline: shell, %s ms)\n' "ztd-detect" "$(time_ms "$RUNS" "$Z/ztd-detect")" "$(time_ms "$RUNS" baseline_detect)"
printf '  %-44s %8s ms   (baseline: shell, %s ms)\n' "ztd-health (one pass, every check)" "$(time_ms "$RUNS" "$Z/ztd-health" blue)" "$(time_ms "$RUNS" baseline_health)"

# Latency of the wait: from the last container turning healthy to `ztd-health --wait` returning.
lat_service() { # kind: docker (a HEALTHCHECK) or http (a ztd.health.http probe)
  printf 'services:\n  lat:\n    image: %s\n    container_name: %s\n    environment: {HEALTHY_AFTER: 1500ms}\n' "$IMAGE" "$LAT"
  if [ "$1" = docker ]; then
    printf '    healthcheck: {test: ["CMD", "/ztd-testapp", "probe"], interval: 200ms, retries: 50}\n'
  else
    printf '    labels: {ztd.health.http: /health}\n'
  fi
}
# When it turned healthy: Docker's health_status event, or the app's own log line.
healthy_at_us() {
  if [ "$1" = docker ]; then
    docker events --since "$2" --until "$(( $(date +%s) + 1 ))" --filter "container=$LAT" \
      --format '{{.Action}} {{.TimeNano}}' |
      awk '/^health_status: healthy/ { print $NF; exit }' | sed 's/...$//'
  else
    date -d "$(docker logs -t "$LAT" 2>&1 | awk '/now healthy/ { print $1; exit }')" +%s%6N
  fi
}
# The replaced scripts' wait: check; on failure sleep HEALTH_CHECK_INTERVAL (5 s), up to 10 times.
baseline_wait() {
  for _ in $(seq 10); do
    if [ "$1" = docker ]; then
      [ "$(docker inspect --format '{{.State.Health.Status}}' "$LAT")" = healthy ] && return 0
    else
      ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$LAT")
      curl -sf "http://$ip:8080/health" >/dev/null && return 0
    fi
    sleep 5
  done
}
ztd_wait_kind() { "$Z/ztd-health" --project-name "$LAT" blue --wait; }
measure_wait() { # kind, command...
  local kind=$1; shift
  for _ in $(seq "$TRIALS"); do
    lat_service "$kind" > lat.yml
    local since; since=$(date +%s)
    docker compose -p "$LAT-blue" -f lat.yml up -d --force-recreate >/dev/null 2>&1
    "$@" "$kind" >/dev/null 2>&1 || true
    local returned; returned=$(now_us)
    sleep 0.3
    echo $(( returned - $(healthy_at_us "$kind" "$since") ))
  done | median | awk '{ printf "%.0f", $1 / 1000 }'
}
echo "from the last container turning healthy to the wait returning, median of $TRIALS"
for kind in docker http; do
  label="Docker HEALTHCHECK (engine events)"; [ "$kind" = http ] && label="HTTP probe label (polled)"
  printf '  %-44s %8s ms   (baseline: check, sleep 5s, %s ms)\n' "$label" \
    "$(measure_wait "$kind" ztd_wait_kind)" "$(TRIALS=3 measure_wait "$kind" baseline_wait)"
done

echo "stripped release binaries"
for b in "$Z"/ztd-detect "$Z"/ztd-health "$Z"/ztd-up "$Z"/ztd-switch "$Z"/ztd-rollback "$Z"/ztd-monitor; do
  printf '  %-44s %8s KiB\n' "$(basename "$b")" "$(( $(stat -c %s "$b") / 1024 ))"
done
# The kill and pause points of the recovery tests are compiled in only with fault-injection.
hooks=$(cat "$Z"/ztd-* | grep -c -a -e ZTD_FAULT -e ZTD_PAUSE || true)
printf '  %-44s %8s\n' "fault injection points in them (want 0)" "$hooks"
