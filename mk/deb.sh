#!/usr/bin/env bash
# Builds the Debian package of ztd (target/deb/ztd_<version>_<arch>.deb) from the workspace:
# mk/install.sh lays the files out under /usr in a staging directory (man pages gzipped, as
# Debian does), then dpkg-deb builds it. Run by `make deb` on the release binaries.
#
#   mk/deb.sh [--bin-dir target/release] [--out target/deb] [--uncompressed]
#
# --uncompressed skips dpkg-deb's compression (the tests package the debug tools with it).
set -euo pipefail
bin_dir=target/release out=target/deb compression=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --uncompressed) compression=(-Znone); shift ;;
    *) echo "deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
command -v dpkg-deb >/dev/null 2>&1 || { echo "deb.sh: dpkg-deb is missing (Debian's dpkg)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
bash mk/install.sh install --prefix /usr --destdir "$stage" --bin-dir "$bin_dir" 2>/dev/null
gzip -9n "$stage"/usr/share/man/man1/*.1
doc="$stage/usr/share/doc/ztd"
install -d -m 0755 "$doc" "$stage/DEBIAN"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: ztd"
  echo
  echo "Files: *"
  echo "Copyright: 2026 The ztd developers"
  echo "License: MIT or Apache-2.0"
  echo
  sed 's/^/ /; s/^ $/ ./' LICENSE-MIT
} >"$doc/copyright"
gzip -9nc CHANGELOG.md >"$doc/changelog.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: ztd
Version: $version
Architecture: $arch
Maintainer: The ztd developers <ztd@users.noreply.github.com>
Installed-Size: $size
Section: admin
Priority: optional
Recommends: docker.io | docker-ce, docker-compose-v2 | docker-compose-plugin
Homepage: https://github.com/ztd-dev/ztd
Description: zero-downtime blue-green deploys for Docker Compose stacks
 Small Unix tools (ztd-detect, ztd-up, ztd-health, ztd-switch, ztd-monitor,
 ztd-rollback) that deploy a new version of a Compose stack beside the running
 one, check and watch it, switch traffic through an nginx front proxy or hand
 singletons over, and roll back by themselves. Each prints JSON and answers
 through its exit code. Needs a Docker engine and Compose v2.
CONTROL
mkdir -p "$out"
deb="$out/ztd_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compression[@]}" --build "$stage" "$deb" >/dev/null
echo "$deb"
