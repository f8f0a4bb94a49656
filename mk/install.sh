#!/usr/bin/env bash
# Installs or removes ztd: the six tools, their man pages and bash/zsh/fish completions (both
# generated from the tools' own clap definitions by `TOOL --generate man|bash|zsh|fish`), the
# drop-in scripts and the example stack. Run by `make install`, `make uninstall` and `make deb`.
#
#   mk/install.sh install|uninstall [--prefix /usr/local] [--destdir DIR] [--bin-dir target/release]
#
# Layout under DESTDIR/PREFIX: bin/ztd-*, share/man/man1/ztd-*.1, share/bash-completion/
# completions/ztd-*, share/zsh/site-functions/_ztd-*, share/fish/vendor_completions.d/ztd-*.fish,
# share/ztd/scripts/*.sh (to copy into a project, as the scripts they replace) and
# share/ztd/examples/{trading-bot,monitoring}. Uninstall removes exactly these, and share/ztd.
set -euo pipefail

TOOLS=(ztd-detect ztd-up ztd-health ztd-switch ztd-rollback ztd-monitor)
action=${1:-}
shift || true
prefix=/usr/local destdir= bin_dir=target/release
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $action in install|uninstall) ;; *) echo "usage: install.sh install|uninstall [--prefix P] [--destdir D] [--bin-dir B]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."

root="$destdir$prefix"
bin="$root/bin"
man="$root/share/man/man1"
bash_dir="$root/share/bash-completion/completions"
zsh_dir="$root/share/zsh/site-functions"
fish_dir="$root/share/fish/vendor_completions.d"
share="$root/share/ztd"

if [ "$action" = uninstall ]; then
  for tool in "${TOOLS[@]}"; do
    rm -f "$bin/$tool" "$man/$tool.1" "$man/$tool.1.gz" "$bash_dir/$tool" "$zsh_dir/_$tool" "$fish_dir/$tool.fish"
  done
  rm -rf "$share"
  echo "removed ztd from $root" >&2
  exit 0
fi

for tool in "${TOOLS[@]}"; do
  [ -x "$bin_dir/$tool" ] || { echo "install.sh: $bin_dir/$tool is missing: build first (make release)" >&2; exit 1; }
done
install -d -m 0755 "$bin" "$man" "$bash_dir" "$zsh_dir" "$fish_dir" "$share/scripts" "$share/examples"
for tool in "${TOOLS[@]}"; do
  install -m 0755 "$bin_dir/$tool" "$bin/$tool"
  "$bin_dir/$tool" --generate man >"$man/$tool.1"
  "$bin_dir/$tool" --generate bash >"$bash_dir/$tool"
  "$bin_dir/$tool" --generate zsh >"$zsh_dir/_$tool"
  "$bin_dir/$tool" --generate fish >"$fish_dir/$tool.fish"
  chmod 0644 "$man/$tool.1" "$bash_dir/$tool" "$zsh_dir/_$tool" "$fish_dir/$tool.fish"
done
install -m 0755 scripts/*.sh "$share/scripts/"
cp -R examples/trading-bot examples/monitoring "$share/examples/"
chmod -R u+rwX,go+rX,go-w "$share/examples"
echo "installed ztd in $root (tools in $bin)" >&2
