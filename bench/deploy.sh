#!/usr/bin/env bash
# ztd's deploy benchmark: how the cost of a deploy grows with the stack. Deploys of the bundled
# example stack (4 services) and of a generated 50-service stack of the same shape, through the
# design's pipeline under a load loop: wall time and failed requests, compared in the same run
# with in-place `docker compose up -d` re-deploys of the same stack (what the replaced scripts
# amounted to); for the example also the app's own start-to-healthy time (from Docker events and
# the app's log), the difference (ztd's overhead) and the switch's steps; a timeline of the last
# deploy of each stack from the tools' step reports; and ztd-detect and one ztd-health pass at
# 6 and 50 services. Run by `make bench`; ZTD_BIN_DIR sets where the tools are.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BENCH_ROOT"
DEPLOYS=${DEPLOYS:-3}        # ztd deploys and in-place re-deploys of the example stack
DEPLOYS50=${DEPLOYS50:-2}    # the same for the 50-service stack
RUNS=${RUNS:-20}             # runs of ztd-detect and ztd-health per stack size
export SWITCH_ARGS=${SWITCH_ARGS:-}
NAME=ztd-benchdeploy; BASE=ztd-benchinplace
NAME50=ztd-benchdeploy50; BASE50=ztd-benchinplace50
SIX=ztd-benchdeploy6
DIR=$(mktemp -d /tmp/ztd-benchdeploy.XXXXXX)
LOADER=$(ztd_loader)
LOAD_PID=; WATCHER=

# Everything of the given projects: containers first (the proxy's too, or Docker 20.10 refuses to
# remove its network), then networks, volumes, and the ztd-keep/... tags of retained versions.
# Containers are stopped before they are removed: a `docker rm -f` of 50 running containers once
# left Docker 20.10 counting an endpoint on a network with none, which no removal then clears.
# Network removal is retried a while; a network it keeps refusing is named on stderr.
remove_stacks() {
  local base p ids nets vols tags try
  for base in "$@"; do
    for p in $base $base-blue $base-green $base-shared $base-ztd; do
      ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
      [ -z "$ids" ] || { docker stop -t 2 $ids >/dev/null 2>&1 || true; docker rm -f $ids >/dev/null; }
    done
  done
  for base in "$@"; do
    for p in $base $base-blue $base-green $base-shared $base-ztd; do
      for try in $(seq 20); do
        nets=$(docker network ls -q --filter "label=com.docker.compose.project=$p")
        [ -n "$nets" ] || break
        docker network rm $nets >/dev/null 2>&1 && break
        if [ "$try" = 20 ]; then
          echo "warning: could not remove network(s) of $p: $(docker network ls --format '{{.Name}}' --filter "label=com.docker.compose.project=$p" | xargs)" >&2
        else
          sleep 0.5
        fi
      done
    done
    for p in $base $base-shared; do
      vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$p"); [ -z "$vols" ] || docker volume rm $vols >/dev/null
    done
    tags=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^ztd-keep/$base-" || true)
    [ -z "$tags" ] || docker rmi $tags >/dev/null
  done
}
ALL="$NAME $BASE $NAME50 $BASE50 $SIX"
cleanup() {
  [ -z "$LOAD_PID" ] || { touch "$DIR/stop"; kill "$LOAD_PID" 2>/dev/null || true; }
  [ -z "$WATCHER" ] || kill "$WATCHER" 2>/dev/null || true
  set +e; remove_stacks $ALL; rm -rf "$DIR"
}
trap cleanup EXIT
remove_stacks $ALL

start_load() { # port, output
  rm -f "$DIR/stop"
  "$LOADER" load "http://127.0.0.1:$1/" --interval 5ms --stop-file "$DIR/stop" >"$2" &
  LOAD_PID=$!
  sleep 0.5
}
stop_load() { touch "$DIR/stop"; wait "$LOAD_PID"; LOAD_PID=; }
json_num() { grep -o "\"$1\":[0-9]*" "$2" | cut -d: -f2; }
wait_http() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; }
# pipeline VERSION UP_REPORT SWITCH_REPORT: one ztd deploy from the current directory.
pipeline() {
  APP_VERSION=$1 UP_JSON=$2 bash -o pipefail -c \
    'ztd-detect </dev/null | ztd-up | tee "$UP_JSON" | ztd-health --wait | ztd-switch $SWITCH_ARGS' >"$3" 2>"$3.err" ||
    { echo "ztd deploy $1 of $COMPOSE_PROJECT_NAME failed:" >&2; cat "$3.err" >&2; exit 1; }
}
detect() { ztd-detect </dev/null; }
# wait_settled: until no switch is journaled (a --stop-old background stop has finished), so the
# next deploy is not timed waiting for the last one's.
wait_settled() {
  for _ in $(seq 600); do
    [ "$(ztd-detect </dev/null 2>/dev/null | jq -r .journal)" = null ] && return 0
    sleep 0.1
  done
  echo "the background stop did not finish" >&2; exit 1
}
# detect_health SERVICES COLOR: median of RUNS runs of ztd-detect and of one ztd-health pass.
detect_health() {
  ztd-health "$2" >/dev/null 2>&1 || echo "  (note: ztd-health $2 did not pass on the $1-service stack)"
  echo "$1 $(time_ms "$RUNS" detect) $(time_ms "$RUNS" ztd-health "$2")" >>"$DIR/dh"
}

# engine_ms KEY: the time the last deploy's Compose and engine spent on containers, from its
# reports: reading the compose file, creating and starting the new color, stopping and starting
# the singleton, stopping the old color.
engine_ms() {
  jq -n --slurpfile up "$DIR/$1.up" --slurpfile sw "$DIR/$1.switch" '
    ([$up[0].steps[] | select(.name == "read compose file" or .name == "create" or .name == "start" or .name == "shared services") | .duration_ms] | add)
    + ([$sw[0].handovers[] | .stop_ms + .gap_ms] | add // 0)
    + ([$sw[0].steps[] | select(.name == "stop_old") | .duration_ms] | add // 0) | floor'
}

# ztd_deploys KEY PROJECT N: a first deploy, then N deploys under load, each timed; the last one's
# reports and start kept for the timeline. For the example, the app's own start-to-healthy time.
ztd_deploys() {
  local key=$1 name=$2 n=$3 i t0 t1 color events app up_app svc id start ready bot_start bot_ready
  cd "$DIR/$key"
  export COMPOSE_PROJECT_NAME=$name DEMO_PORT; DEMO_PORT=$(free_port 18480)
  pipeline v1 "$DIR/$key.up.1" "$DIR/$key.switch.1"
  wait_settled
  start_load "$DEMO_PORT" "$DIR/$key.load.json"
  for i in $(seq 2 $((n + 1))); do
    events="$DIR/$key.events.$i"
    if [ "${key%bg}" = example ]; then
      docker events --since "$(date +%s.%N)" --filter type=container --filter label=deployment.color \
        --format '{{index .Actor.Attributes "com.docker.compose.project"}} {{index .Actor.Attributes "com.docker.compose.service"}} {{.ID}} {{.Action}} {{.TimeNano}}' >"$events" &
      WATCHER=$!
    fi
    t0=$(now_ms)
    pipeline "v$i" "$DIR/$key.up" "$DIR/$key.switch"
    t1=$(now_ms)
    jq -r '.handovers[0] | .gap_ms - (.start_ms // 0)' "$DIR/$key.switch" >>"$DIR/$key.gaps"
    echo "$t0 $t1" >"$DIR/$key.t0"
    wait_settled
    [ "${key%bg}" = example ] || { echo "$((t1 - t0)) 0 $(engine_ms "$key")" >>"$DIR/$key.runs"; continue; }
    sleep 0.5; kill "$WATCHER"; wait "$WATCHER" 2>/dev/null || true; WATCHER=
    color=$(jq -r .to "$DIR/$key.switch")
    # The app's own start-to-healthy time on the deploy's critical path: the services started by
    # ztd-up, then the singleton started at the switch, each ready when the app logs that it
    # listens (its probes pass from then on). Containers are found by project and
    # service: their names depend on what other projects on the host hold.
    up_app=0
    for svc in dashboard memory; do
      read -r id start < <(awk -v p="$name-$color" -v s=$svc '$1 == p && $2 == s && $4 == "start" { print $3, $NF; exit }' "$events") ||
        { echo "no start event of $svc-$color" >&2; exit 1; }
      ready=$(date -d "$(docker logs -t "$id" 2>&1 | awk '/listening on port/ { print $1; exit }')" +%s%N)
      if [ $((ready - start)) -gt $up_app ]; then up_app=$((ready - start)); fi
    done
    read -r id bot_start < <(awk -v p="$name-$color" '$1 == p && $2 == "trading-bot" && $4 == "start" { print $3, $NF; exit }' "$events") ||
      { echo "no start event of trading-bot-$color" >&2; exit 1; }
    bot_ready=$(date -d "$(docker logs -t "$id" 2>&1 | awk '/listening on port/ { print $1; exit }')" +%s%N)
    # The test app logs that it listens before the engine's start event: ~0 each.
    app=$((up_app + (bot_ready > bot_start ? bot_ready - bot_start : 0)))
    echo "$((t1 - t0)) $((app / 1000000)) $(engine_ms "$key")" >>"$DIR/$key.runs"
  done
  stop_load
}

# inplace_deploys KEY PROJECT N: the same stack by plain Compose, a first up, then N in-place
# re-deploys with a changed APP_VERSION under the same load loop, each timed.
inplace_deploys() {
  local key=$1 name=$2 n=$3 i t0 t1
  mkdir -p "$DIR/$key-base" && cp "$DIR/$key/compose.yaml" "$DIR/$key-base/" && cd "$DIR/$key-base"
  export COMPOSE_PROJECT_NAME=$name DEMO_PORT; DEMO_PORT=$(free_port 18480)
  APP_VERSION=v1 docker compose up -d >/dev/null 2>"$DIR/$key.base.err" || { cat "$DIR/$key.base.err" >&2; exit 1; }
  wait_http "$DEMO_PORT"
  start_load "$DEMO_PORT" "$DIR/$key.base.json"
  for i in $(seq 2 $((n + 1))); do
    t0=$(now_ms)
    APP_VERSION=v$i docker compose up -d >/dev/null 2>"$DIR/$key.base.err" || { cat "$DIR/$key.base.err" >&2; exit 1; }
    t1=$(now_ms)
    echo $((t1 - t0)) >>"$DIR/$key.base.runs"
    wait_http "$DEMO_PORT"
  done
  sleep 1; stop_load
}

# timeline KEY: each step of the last deploy's ztd-up and ztd-switch reports, from the pipeline's
# start (started_unix_ms), then the pipeline's end; durations only where a report has no start.
timeline() {
  local key=$1 t0 t1 tool
  read -r t0 t1 <"$DIR/$key.t0"
  echo "  timeline of the last deploy (ms from the pipeline's start; start, duration, tool:step)"
  for tool in up switch; do
    jq -r --arg tool "ztd-$tool" --argjson t0 "$t0" \
      '.steps[] | [(if .started_unix_ms then .started_unix_ms - $t0 else "" end), .duration_ms, "\($tool):\(.name)"] | @tsv' "$DIR/$key.$tool"
  done | awk -F'\t' '{ if ($1 == "") printf "    %8s   %7.0f  %s\n", "", $2, $3; else printf "    +%7.0f   %7.0f  %s\n", $1, $2, $3 }'
  printf '    +%7d   %7s  %s\n' $((t1 - t0)) "" "end of the pipeline"
  if ! jq -e -s '[.[].steps[] | has("started_unix_ms")] | all' "$DIR/$key.up" "$DIR/$key.switch" >/dev/null; then
    echo "    (steps without a start: these tools' reports carry no started_unix_ms)"
  fi
}

# report KEY DESCRIPTION N: the ztd and in-place figures of one stack; a line for the summary.
report() {
  local key=$1 n=$3 bkey=${5:-$1} mode=${6:-wait} wall base total failed btotal bfailed ratio
  wall=$(awk '{ print $1 }' "$DIR/$key.runs" | median | awk '{ printf "%.0f", $1 }')
  base=$(median <"$DIR/$bkey.base.runs" | awk '{ printf "%.0f", $1 }')
  total=$(json_num total "$DIR/$key.load.json"); failed=$(json_num failed "$DIR/$key.load.json")
  btotal=$(json_num total "$DIR/$bkey.base.json"); bfailed=$(json_num failed "$DIR/$bkey.base.json")
  ratio=$(awk -v a="$wall" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
  echo "ztd deploy of $2, --stop-old $mode, $n deploys, median"
  printf '  %-44s %8s ms\n' "wall time of the pipeline" "$wall"
  if [ "${key%bg}" = example ]; then
    printf '  %-44s %8s ms\n' "app's own start-to-healthy time" "$(awk '{ print $2 }' "$DIR/$key.runs" | median)" \
      "ztd overhead (wall - app)" "$(awk '{ print $1 - $2 }' "$DIR/$key.runs" | median)"
  fi
  printf '  %-44s %8s ms\n' "  of which Compose and the engine on containers" "$(awk '{ print $3 }' "$DIR/$key.runs" | median)" \
    "  of which ztd itself" "$(awk '{ print $1 - $2 - $3 }' "$DIR/$key.runs" | median)"
  printf '  %-44s %8s of %s\n' "failed requests under load (all deploys)" "$failed" "$total"
  if [ "${key%bg}" = example ]; then
    echo "  steps of the last switch: $(jq -c '[.steps[] | {(.name): .duration_ms}] | add' "$DIR/$key.switch")"
    echo "  handover: $(jq -c '.handovers[0] | {stop_ms, gap_ms, start_ms, healthy_ms}' "$DIR/$key.switch")"
    printf '  %-44s %8s ms   (target: at most 100 ms)\n' "singleton gap beyond the engine's start, median" \
      "$(median <"$DIR/$key.gaps" | awk '{ printf "%.0f", $1 }')"
  fi
  timeline "$key"
  echo "baseline: in-place 'docker compose up -d' of the same stack, $n re-deploys, median"
  printf '  %-44s %8s ms\n' "wall time" "$base"
  printf '  %-44s %8s of %s\n' "failed requests under load (all re-deploys)" "$bfailed" "$btotal"
  printf '  %-44s %8s\n' "ztd / in-place" "$ratio"
  printf '  %8s %11s %9s ms %9s ms %13s %14s %16s\n' "$4" "$mode" "$wall" "$base" "$ratio" "$failed/$total" "$bfailed/$btotal" >>"$DIR/summary"
}

# 1. The example stack: ztd as it stops the old color by default (before answering), then with
# --stop-old background (after), then in place.
mkdir -p "$DIR/example" "$DIR/examplebg" && cp examples/trading-bot/compose.yaml "$DIR/example/" &&
  cp examples/trading-bot/compose.yaml "$DIR/examplebg/"
SWITCH_ARGS="--stop-old wait" ztd_deploys example $NAME "$DEPLOYS"
remove_stacks $NAME
SWITCH_ARGS="--stop-old background" ztd_deploys examplebg $NAME "$DEPLOYS"
remove_stacks $NAME
inplace_deploys example $BASE "$DEPLOYS"
remove_stacks $BASE
report example "the example stack (4 services, one a handover singleton)" "$DEPLOYS" 4 example wait
report examplebg "the example stack (4 services, one a handover singleton)" "$DEPLOYS" 4 example background

# 2. The same shape at 50 services; detect and health measured while it is deployed.
mkdir -p "$DIR/s50" "$DIR/s50bg" && stack_of 50 >"$DIR/s50/compose.yaml" && cp "$DIR/s50/compose.yaml" "$DIR/s50bg/"
SWITCH_ARGS="--stop-old wait" ztd_deploys s50 $NAME50 "$DEPLOYS50"
detect_health 50 "$(jq -r .to "$DIR/s50.switch")"
remove_stacks $NAME50
SWITCH_ARGS="--stop-old background" ztd_deploys s50bg $NAME50 "$DEPLOYS50"
remove_stacks $NAME50
inplace_deploys s50 $BASE50 "$DEPLOYS50"
remove_stacks $BASE50
report s50 "a generated 50-service stack of the same shape (47 side services)" "$DEPLOYS50" 50 s50 wait
report s50bg "a generated 50-service stack of the same shape (47 side services)" "$DEPLOYS50" 50 s50 background

# 3. Detect and health on run.sh's 6-service stack, blue by plain Compose.
mkdir -p "$DIR/six" && cd "$DIR/six" && six_service_stack >blue.yml
export COMPOSE_PROJECT_NAME=$SIX
docker compose -p $SIX-blue -f blue.yml up -d --quiet-pull >/dev/null 2>&1
echo blue >.current_deployment
# The default wait: one of the services has no probe and passes once up for 10 s.
ztd-health blue --wait >/dev/null 2>&1 || { echo "6-service stack did not become healthy" >&2; exit 1; }
detect_health 6 blue
remove_stacks $SIX

echo "how the cost of a deploy grows with the stack (median wall time; failed requests of all)"
printf '  %8s %11s %12s %12s %13s %14s %16s\n' services --stop-old ztd in-place ztd/in-place "failed ztd" "failed in-place"
cat "$DIR/summary"
echo "ztd-detect and one ztd-health pass, median of $RUNS runs"
printf '  %8s %12s %12s\n' services ztd-detect ztd-health
sort -n "$DIR/dh" | awk '{ printf "  %8s %9s ms %9s ms%s\n", $1, $2, $3, ($1 == 50 ? sprintf("   (target: under 50 ms, %s)", ($3 < 50 ? "met" : "missed")) : "") }'
