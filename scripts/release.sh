#!/usr/bin/env bash
# release.sh builds picluster's release artifacts: one static binary per
# platform and a SHA256SUMS file, in dist/ (or $OUT).
#
#   scripts/release.sh            # version from git describe --tags --always --dirty
#   scripts/release.sh v1.2.0     # an explicit version
#   PLATFORMS="linux/arm64" OUT=/tmp/rel scripts/release.sh
#
# The binaries are built with CGO_ENABLED=0 (static, no libc needed),
# -trimpath (no local paths inside), without symbol tables, and with the
# version and commit stamped in internal/buildinfo, which "picluster version"
# prints. Check a download with: sha256sum -c --ignore-missing SHA256SUMS
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
platforms=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64}
out=${OUT:-dist}
pkg=github.com/picluster/picluster/internal/buildinfo

mkdir -p "$out"
rm -f "$out"/picluster_* "$out"/SHA256SUMS
echo "picluster $version ($commit) with $(go version)"
for p in $platforms; do
  goos=${p%/*} goarch=${p#*/}
  name=picluster_${version}_${goos}_${goarch}
  [ "$goos" = windows ] && name=$name.exe
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath -buildvcs=false \
    -ldflags "-s -w -buildid= -X $pkg.version=$version -X $pkg.commit=$commit" \
    -o "$out/$name" ./cmd/picluster
done

cd "$out"
if command -v sha256sum >/dev/null; then sum=(sha256sum); else sum=(shasum -a 256); fi
"${sum[@]}" picluster_* > SHA256SUMS
echo
printf '%10s  %s\n' bytes artifact
for f in picluster_*; do printf '%10d  %s\n' "$(wc -c < "$f")" "$f"; done
echo
cat SHA256SUMS
