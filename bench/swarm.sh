#!/usr/bin/env bash
# Figures for the README's "Beyond one machine": on a real 3-node Swarm (ztd-testkit's test bed,
# three engines in network namespaces of this machine; root), under a load loop against every
# node's published port:
#   - the baseline: Swarm's own way to move a published port from one service to another
#     (`docker service update --publish-rm` on the old, `--publish-add` on the new);
#   - ztd: a first deploy, then DEPLOYS deploys (web with the port, a side service, a handover
#     singleton) and a rollback, each pipeline's wall time, the switch's own time, the slowest
#     node's proxy confirmation and the singleton's gap.
# Run by `make bench-swarm` (after `make release images`). Takes about two minutes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BED="$BENCH_ROOT/ztd-testkit/swarm-testbed.sh"
DEPLOYS=${DEPLOYS:-3}
NODES=(1 2 3)
export SO_BASE=${SO_BASE:-/tmp/ztd-bench-swarm}
[ "$(id -u)" = 0 ] || { echo "bench/swarm.sh: the test bed needs root" >&2; exit 2; }
LOADER=$(ztd_loader)
WORK=$(mktemp -d /tmp/ztd-bench-swarm-stack.XXXXXX)
STACK=bench$$
mkdir -p "$WORK/$STACK"
cleanup() {
  pkill -f "ztd-testapp load http://10.99.0" 2>/dev/null || true
  sh "$BED" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

dn() { local n=$1; shift; DOCKER_HOST=unix:///run/so-n$n.sock docker "$@"; }
sh "$BED" down >/dev/null 2>&1 || true
sh "$BED" up >/dev/null
for n in "${NODES[@]}"; do
  docker save "$IMAGE" "${ZTD_PROXY_IMAGE:-ztd-nginx:latest}" | dn "$n" load -q >/dev/null &
done
wait
for n in "${NODES[@]}"; do dn 1 node update --label-add "ztd.engine=unix:///run/so-n$n.sock" "so-n$n" >/dev/null; done

# load PORT FILE-PREFIX: a load loop on every node, its reports in FILE-PREFIX.nN
start_load() {
  for n in "${NODES[@]}"; do
    "$LOADER" load "http://10.99.0.1$n:$1/" --interval 5ms >"$2.n$n" 2>&1 &
  done
}
stop_load() {
  pkill -INT -f "ztd-testapp load http://10.99.0.1.:$1/" || true
  sleep 0.5
  local failed=0 total=0 n
  for n in "${NODES[@]}"; do
    total=$((total + $(jq -r .total "$2.n$n")))
    failed=$((failed + $(jq -r .failed "$2.n$n")))
  done
  echo "$failed of $total"
}

# Baseline: Swarm alone moves port 9090 from service a to service b.
for s in a b; do
  dn 1 service create -d --no-resolve-image --name "$s" --mode global --endpoint-mode dnsrr \
    -e VERSION="$s" "$IMAGE" >/dev/null
done
dn 1 service update -d --publish-add mode=host,published=9090,target=8080 a >/dev/null
for n in "${NODES[@]}"; do until curl -sf -m1 "http://10.99.0.1$n:9090/" >/dev/null; do sleep 0.2; done; done
start_load 9090 "$WORK/base"
sleep 1
t0=$(now_ms)
dn 1 service update -d --publish-rm 9090 a >/dev/null
dn 1 service update -d --publish-add mode=host,published=9090,target=8080 b >/dev/null
# Until every node answers from b (Swarm may leave a node's new task pending: then 30 s).
base_ms=never
for _ in $(seq 300); do
  all=1
  for n in "${NODES[@]}"; do
    curl -s -m1 "http://10.99.0.1$n:9090/" | grep -q "from b" || all=
  done
  if [ -n "$all" ]; then base_ms=$(( $(now_ms) - t0 )); break; fi
  sleep 0.1
done
base=$(stop_load 9090 "$WORK/base")
base_nodes=$(for n in "${NODES[@]}"; do printf 'so-n%s: %s; ' "$n" "$(curl -s -m1 "http://10.99.0.1$n:9090/" || echo refused)"; done)
dn 1 service rm a b >/dev/null

# ztd.
cat >"$WORK/$STACK/compose.yaml" <<EOF
services:
  web:
    image: $IMAGE
    ports: ["8080:8080"]
    environment: {VERSION: "\${APP_VERSION:-v1}"}
    deploy: {replicas: 2}
  side:
    image: $IMAGE
    environment: {VERSION: "\${APP_VERSION:-v1}"}
  bot:
    image: $IMAGE
    environment: {VERSION: "\${APP_VERSION:-v1}"}
    labels: {ztd.switch: handover}
    healthcheck: {test: ["CMD", "/ztd-testapp", "probe"], interval: 1s, timeout: 2s, retries: 3}
EOF
cd "$WORK/$STACK"
export ZTD_ORCHESTRATOR=swarm DOCKER_HOST=unix:///run/so-n1.sock
APP_VERSION=v0 ztd-detect </dev/null | APP_VERSION=v0 ztd-up | ztd-health --wait | ztd-switch >/dev/null
start_load 8080 "$WORK/ztd"
sleep 1
printf '%-10s %9s %9s | %7s %7s %9s %8s | %12s %11s %7s\n' run pipeline switch ready proxy handovers stop_old \
  node_confirm old_stopped gap
report() { # name, wall ms, switch report
  jq -r --arg run "$1" --arg wall "$2" '[$run, $wall, .elapsed_ms, .steps_ms.ready, .steps_ms.proxy,
      .steps_ms.handovers, .steps_ms.stop_old, ([.proxy[].confirmed_ms] | max),
      ([.handovers[].stop_ms] | max // 0), ([.handovers[].gap_ms] | max // 0)]
    | "\(.[0]) \(.[1:] | map(tostring) | join(" "))"' <<<"$3" \
    | awk '{ printf "%-10s %9.0f %9.0f | %7.0f %7.0f %9.0f %8.0f | %12.0f %11.0f %7.0f\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
}
for i in $(seq "$DEPLOYS"); do
  t0=$(now_ms)
  out=$(APP_VERSION=v$i ztd-detect </dev/null | APP_VERSION=v$i ztd-up | ztd-health --wait | ztd-switch)
  report "deploy-$i" $(( $(now_ms) - t0 )) "$out"
done
t0=$(now_ms)
out=$(ztd-rollback </dev/null)
report rollback $(( $(now_ms) - t0 )) "$out"
sleep 1
ztd=$(stop_load 8080 "$WORK/ztd")
echo
echo "Swarm alone, port moved between two services: every node served the new one after ${base_ms} ms (never: not within 30 s); failed requests: $base; at the end: $base_nodes"
echo "(all times in ms; pipeline: detect | up | health --wait | switch; node_confirm: the slowest node's proxy;"
echo " old_stopped: from the old singleton's stop to its node's report; gap: from that report to the new one running)"
echo "ztd, $DEPLOYS deploys and a rollback: failed requests: $ztd"
