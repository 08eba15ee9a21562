#!/bin/sh
# Installs Skybridge release binaries (make release) on a Linux machine:
# the edge agent, the broker, or both, with their systemd units.
#
#   sh install.sh [--role edge|broker|all] [--join JOIN] [--dir DIR] [--root ROOT] [--arch ARCH] [--no-start]
#
#   --role     edge (default): skybridge-edge and its unit; broker: skybridge and its unit; all: both
#   --join     the node's join string (skybridge-cloud ctl token NODE ...), kept in /etc/skybridge/edge.env
#   --dir      where the release files are (default: this script's directory)
#   --root     install under ROOT instead of / (packaging, tests): no user is made, nothing is started
#   --arch     amd64, arm64, armv7, mips or mipsle (default: this machine's)
#   --no-start install only: no systemctl calls
#
# Every binary is checked against SHA256SUMS before it is installed.
set -eu

role=edge join="" dir=$(cd "$(dirname "$0")" && pwd) root="" arch="" start=1
while [ $# -gt 0 ]; do
  case $1 in
    --role) role=$2; shift 2 ;;
    --join) join=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --root) root=$2; start=0; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $role in edge|broker|all) ;; *) echo "install.sh: --role edge, broker or all" >&2; exit 2 ;; esac

if [ -z "$arch" ]; then
  m=$(uname -m)
  case $m in
    x86_64|amd64) arch=amd64 ;;
    aarch64|arm64) arch=arm64 ;;
    armv7*|armv8l) arch=armv7 ;;
    mips)
      # uname says mips for both byte orders: ask an ELF header (EI_DATA: 1 little, 2 big).
      if [ "$(dd if=/bin/sh bs=1 skip=5 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')" = 1 ]; then arch=mipsle; else arch=mips; fi ;;
    mipsel|mipsle) arch=mipsle ;;
    *) echo "install.sh: no release for $m (amd64, arm64, armv7, mips, mipsle)" >&2; exit 1 ;;
  esac
fi

sums="$dir/SHA256SUMS"
[ -f "$sums" ] || { echo "install.sh: $sums not found" >&2; exit 1; }

# verify FILE: its sha256 must be the one SHA256SUMS lists.
verify() {
  want=$(awk -v f="$1" '$2 == f || $2 == "*" f { print $1 }' "$sums")
  [ -n "$want" ] || { echo "install.sh: $1 is not in SHA256SUMS" >&2; exit 1; }
  got=$(sha256sum "$dir/$1" | awk '{ print $1 }')
  [ "$got" = "$want" ] || { echo "install.sh: $1: checksum mismatch (got $got, want $want)" >&2; exit 1; }
}

bins="" units=""
case $role in
  edge) bins="skybridge-edge"; units="skybridge-edge.service" ;;
  broker) bins="skybridge"; units="skybridge.service" ;;
  all) bins="skybridge-edge skybridge"; units="skybridge-edge.service skybridge.service" ;;
esac
for b in $bins; do verify "$b-linux-$arch"; done
for u in $units; do verify "$u"; done

mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/etc/skybridge"
for b in $bins; do
  # Written beside, then renamed: a running binary is never overwritten in place.
  install -m 0755 "$dir/$b-linux-$arch" "$root/usr/local/bin/.$b.new"
  mv -f "$root/usr/local/bin/.$b.new" "$root/usr/local/bin/$b"
done
for u in $units; do install -m 0644 "$dir/$u" "$root/etc/systemd/system/$u"; done

case $role in edge|all)
  if [ -n "$join" ]; then
    umask 077
    printf 'SKYBRIDGE_JOIN=%s\n' "$join" > "$root/etc/skybridge/edge.env"
    umask 022
  elif [ ! -f "$root/etc/skybridge/edge.env" ]; then
    echo "install.sh: no --join: put SKYBRIDGE_JOIN=... in /etc/skybridge/edge.env before the first start" >&2
  fi ;;
esac
case $role in broker|all)
  if [ ! -f "$root/etc/skybridge/skybridge.yaml" ]; then
    cat > "$root/etc/skybridge/skybridge.yaml" <<'YAML'
# Skybridge broker (docs/CONFIG.md lists every field).
listeners:
  - name: tcp
    type: tcp
    addr: 0.0.0.0:1883
admin:
  addr: 127.0.0.1:8081
storage:
  type: pebble
  dir: /var/lib/skybridge
log:
  level: info
YAML
  fi
  if [ -z "$root" ] && ! id skybridge >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/skybridge --shell /usr/sbin/nologin skybridge
  fi ;;
esac

echo "installed $bins ($arch) under ${root:-/}"
if [ "$start" = 1 ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  for u in $units; do systemctl enable --now "$u"; done
  echo "started $units"
fi
