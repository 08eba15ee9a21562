#!/usr/bin/env bash
# Static release binaries (CGO_ENABLED=0) of skybridge, skybridge-edge and
# skybridge-cloud for linux amd64, arm64, armv7, mips and mipsle, with
# SHA256SUMS, the systemd units and the install script.
#
#   edge/deploy/release.sh [DIST]          (make release; DIST defaults to dist)
#   RELEASE_ARCHES="armv7 mips" edge/deploy/release.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
dist=${1:-dist}
arches=${RELEASE_ARCHES:-amd64 arm64 armv7 mips mipsle}
go=${GO:-go}
rm -rf "$dist"
mkdir -p "$dist"
for arch in $arches; do
  goarm="" gomips=""
  case $arch in
    amd64|arm64|mips64|mips64le|riscv64) goarch=$arch ;;
    armv7) goarch=arm goarm=7 ;;
    armv6) goarch=arm goarm=6 ;;
    mips|mipsle) goarch=$arch gomips=softfloat ;; # no FPU on most MIPS routers
    *) echo "release: unknown arch $arch" >&2; exit 2 ;;
  esac
  for bin in skybridge skybridge-edge skybridge-cloud; do
    CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm GOMIPS=$gomips \
      "$go" build -trimpath -ldflags="-s -w" -o "$dist/$bin-linux-$arch" "./cmd/$bin"
  done
  echo "built $arch"
done
cp edge/deploy/install.sh edge/deploy/skybridge-edge.service edge/deploy/skybridge.service "$dist/"
(cd "$dist" && sha256sum -- * > SHA256SUMS)
ls -l "$dist"
