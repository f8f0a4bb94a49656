#!/usr/bin/env bash
# Builds ztd's proxy image (ztd-nginx:latest) from the host's Debian nginx, because no registry is
# reachable: the image is a root filesystem assembled here and loaded into the local engine.
#
# Contents: /usr/sbin/nginx (Debian package nginx), the stream module ngx_stream_module.so
# (libnginx-mod-stream), every shared library both need per ldd (dynamic loader included),
# minimal /etc/passwd, /etc/group and /etc/nsswitch.conf, the directories nginx's compiled-in
# paths need (read from `nginx -V`), /run, /tmp (1777) and an empty /etc/ztd-proxy, where the
# generated configuration is bind-mounted as a directory. No shell, no package manager.
#
# Default command: nginx -e stderr -g 'daemon off;' -c /etc/ztd-proxy/nginx.conf, stop signal
# SIGQUIT (graceful). `docker import --change` on engine 20.10 rejects STOPSIGNAL ("stopsignal is
# not a valid change command"), so the rootfs goes in as a tar through a FROM scratch Dockerfile
# (ADD of a local tar keeps owners and modes, /tmp's sticky bit included) built by `docker build`.
#
# Idempotent: the image carries the sha256 of the host's nginx binary and stream module as a
# label; when the existing image carries the same value the build is skipped. A changed library
# alone does not trigger a rebuild: `docker rmi` the image to force one.
#
# Installs nginx and libnginx-mod-stream when missing and running as root (Debian/Ubuntu), and
# stops a host nginx service that the install started, so nothing is left holding port 80.
#
# Environment: ZTD_PROXY_IMAGE, the tag (default ztd-nginx:latest). Run by `make proxy-image`.
set -euo pipefail

IMAGE=${ZTD_PROXY_IMAGE:-ztd-nginx:latest}
NGINX=/usr/sbin/nginx
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
PACKAGES=(nginx libnginx-mod-stream)
INSTALL_CMD="apt-get install -y --no-install-recommends ${PACKAGES[*]}"
LABEL_SHA=org.ztd.nginx-sha256
LABEL_VERSION=org.ztd.nginx-version
LABEL_PACKAGE=org.ztd.nginx-package

die() {
  echo "build.sh: $*" >&2
  exit 1
}

# True when every package is installed per dpkg (or, without dpkg, when the files are there).
packages_installed() {
  if command -v dpkg-query >/dev/null 2>&1; then
    local p status
    for p in "${PACKAGES[@]}"; do
      status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
      [[ $status == installed ]] || return 1
    done
  fi
  [[ -x $NGINX && -f $STREAM_MODULE ]]
}

# The pid of the host's nginx service when it runs (its compiled-in pid file), else nothing.
host_nginx_pid() {
  local pid
  pid=$(cat /run/nginx.pid 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

install_packages() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "nginx and libnginx-mod-stream are needed on the host: run 'sudo $INSTALL_CMD'"
  fi
  local before after
  before=$(host_nginx_pid)
  echo "installing ${PACKAGES[*]} on the host" >&2
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # INSTALL_CMD is a fixed word list
  if ! $INSTALL_CMD >/dev/null; then
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $INSTALL_CMD >/dev/null
  fi
  # Debian's postinst starts the service unless policy-rc.d forbids it; a proxy image is what we
  # want, not a host nginx on port 80, so stop one the install started (best effort).
  after=$(host_nginx_pid)
  if [[ -n $after && $after != "$before" ]]; then
    echo "stopping the host nginx service the install started" >&2
    service nginx stop >/dev/null 2>&1 || "$NGINX" -s stop >/dev/null 2>&1 || true
  fi
  packages_installed || die "'$INSTALL_CMD' did not provide $NGINX and $STREAM_MODULE"
}

packages_installed || install_packages

sha=$(cat "$NGINX" "$STREAM_MODULE" | sha256sum | cut -d' ' -f1)
current=$(docker image inspect -f "{{index .Config.Labels \"$LABEL_SHA\"}}" "$IMAGE" 2>/dev/null \
  || true)
if [[ $current == "$sha" ]]; then
  echo "$IMAGE is up to date"
  exit 0
fi
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)

version=$("$NGINX" -v 2>&1 | sed -n 's|^nginx version: nginx/\([^ ]*\).*|\1|p')
[[ -n $version ]] || die "cannot read the version of $NGINX"
package=$(dpkg-query -W -f='${Version}' nginx 2>/dev/null || echo unknown)

work=$(mktemp -d "${TMPDIR:-/tmp}/ztd-nginx.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
ctx=$work/ctx
mkdir -p "$root" "$ctx"

# Copies a host file into the rootfs, dereferenced, into the canonical directory (merged /usr).
copy_in() {
  local src=$1 dir
  dir=$(realpath -e "$(dirname "$src")")
  mkdir -p "$root$dir"
  cp -L --preserve=mode "$src" "$root$dir/$(basename "$src")"
}

copy_in "$NGINX"
copy_in "$STREAM_MODULE"

# Shared libraries and the loader, as ldd reports them for the binary and the module.
libs=$(ldd "$NGINX" && ldd "$STREAM_MODULE") || die "ldd failed on $NGINX or $STREAM_MODULE"
if grep -q 'not found' <<<"$libs"; then
  die "missing libraries: $(grep 'not found' <<<"$libs" | tr -s ' \t' ' ' | paste -sd,)"
fi
while read -r lib; do
  copy_in "$lib"
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$libs" \
  | sort -u)

# Keep the host's merged-/usr symlinks so paths such as /lib64/ld-linux-x86-64.so.2 (the binary's
# interpreter) and /lib/x86_64-linux-gnu resolve as on the host.
for d in lib lib64 sbin; do
  if [[ -L /$d ]]; then
    target=$(readlink "/$d")
    if [[ -e $root/${target#/} ]]; then ln -s "$target" "$root/$d"; fi
  fi
done

# Directories of nginx's compiled-in paths: temp paths themselves, the parents of log, pid and
# lock files. The master runs as root and chowns the temp directories to the worker user.
while read -r opt; do
  key=${opt%%=*}
  path=${opt#*=}
  [[ $path == /* ]] || continue
  case $key in
    --http-*-temp-path) mkdir -p "$root$path" ;;
    --error-log-path | --http-log-path | --pid-path | --lock-path) mkdir -p "$root$(dirname "$path")" ;;
  esac
done < <("$NGINX" -V 2>&1 | tr ' ' '\n' | grep -E '^--[a-z-]+-path=')
mkdir -p "$root/etc/ztd-proxy" "$root/run" "$root/tmp" "$root/var/log/nginx"
chmod 1777 "$root/tmp"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
www-data:x:33:
nogroup:x:65534:
EOF
cat >"$root/etc/nsswitch.conf" <<'EOF'
# ztd-nginx: users and groups from /etc, host names from /etc/hosts then Docker's DNS.
passwd: files
group: files
hosts: files dns
EOF

tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$root" -cf "$ctx/rootfs.tar" .

cat >"$ctx/Dockerfile" <<EOF
# ztd's proxy image: Debian's nginx $package and its stream module on an assembled rootfs.
FROM scratch
ADD rootfs.tar /
LABEL $LABEL_VERSION="$version" $LABEL_PACKAGE="$package" $LABEL_SHA="$sha"
STOPSIGNAL SIGQUIT
CMD ["/usr/sbin/nginx", "-e", "stderr", "-g", "daemon off;", "-c", "/etc/ztd-proxy/nginx.conf"]
EOF

if ! docker build -q -t "$IMAGE" "$ctx" >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  die "docker build of $IMAGE failed"
fi

# The image this one replaces, if this script built it and nothing else uses or names it.
if [[ -n $old_id ]] && [[ $old_id != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]] \
  && [[ $(docker image inspect -f '{{len .RepoTags}}' "$old_id" 2>/dev/null) == 0 ]] \
  && [[ -n $(docker image inspect -f "{{index .Config.Labels \"$LABEL_SHA\"}}" "$old_id") ]]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi

bytes=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "built $IMAGE (nginx $version, $(((bytes + 524288) / 1048576)) MiB)"
