#!/usr/bin/env bash
# Builds go2rtc (github.com/AlexxIT/go2rtc, an independent Go WebRTC stack
# with a KVS viewer mode) for internal/interop/go2rtc, from the Go module
# proxy, unmodified, into a cache outside the repository. Idempotent: a
# cached binary is reused. Also installs iproute2 (Debian), which the tests
# use to give themselves a network namespace.
#
#   bash scripts/deps/go2rtc.sh        # prints the binary's path
#
# The proxy refuses `go install github.com/AlexxIT/go2rtc@VERSION` here, so
# the module is downloaded and built in its (read-only) module directory.
# A build takes about 2.5 minutes of CPU (3-4 minutes on 2 busy cores).
set -euo pipefail

GO2RTC_VERSION=v1.9.14
cache=${KVSRTC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvsrtc}
bin="$cache/go2rtc-$GO2RTC_VERSION"

if ! command -v ip >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi

if [ -x "$bin" ] && "$bin" -version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
dir=$(cd "$cache" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "github.com/AlexxIT/go2rtc@$GO2RTC_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  echo "go2rtc.sh: go mod download github.com/AlexxIT/go2rtc@$GO2RTC_VERSION gave no module directory" >&2
  exit 1
fi
start=$(date +%s)
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -o "$tmp" .)
mv -f "$tmp" "$bin"
echo "go2rtc.sh: built $bin in $(( $(date +%s) - start )) s" >&2
echo "$bin"
