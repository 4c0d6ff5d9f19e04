#!/usr/bin/env bash
# go-image.sh makes a local stand-in for the golang image that Containerfile
# builds in, from this machine's Go, dash and CA certificates, and prints its
# name. CI needs it because it has no access to a container registry.
set -euo pipefail
goroot=$(go env GOROOT)
name=localhost/picluster-go:$(go env GOVERSION)
if podman image exists "$name"; then echo "$name"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/lib64" "$tmp/lib/x86_64-linux-gnu" "$tmp/etc/ssl/certs" "$tmp/tmp" "$tmp/root" "$tmp/usr/local"
cp /bin/dash "$tmp/bin/sh"
cp /lib64/ld-linux-x86-64.so.2 "$tmp/lib64/"
cp /lib/x86_64-linux-gnu/libc.so.6 "$tmp/lib/x86_64-linux-gnu/"
cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/"
chmod 1777 "$tmp/tmp"
tar -C "$tmp" -cf - . -C "$(dirname "$goroot")" --transform "s|^\./$(basename "$goroot")|./usr/local/go|" "./$(basename "$goroot")" |
  podman import --change 'ENV PATH=/usr/local/go/bin:/go/bin:/bin' --change 'ENV GOPATH=/go' \
    --change 'ENV HOME=/root' - "$name" >/dev/null
echo "$name"
