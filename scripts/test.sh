#!/usr/bin/env bash
# Installs what the kvsrtc tests need (Debian packages, pinned Go tools) and
# runs every check and test. CI (.ci/run) runs exactly this script.
#
#   bash scripts/test.sh           # install missing tools, then all checks and tests
#   FUZZTIME=30s bash scripts/test.sh   # longer fuzz pass (default 20000 inputs per target)
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_VERSION=v2.15.0
# A count, not a duration: Go's fuzzer can fail a run with "context deadline
# exceeded" when the time runs out in the middle of an input.
FUZZTIME=${FUZZTIME:-20000x}
export PATH="$(go env GOPATH)/bin:$PATH"

step() { printf '\n=== %s\n' "$*"; }

# --- install -----------------------------------------------------------------
need_apt=()
command -v aws >/dev/null 2>&1 || need_apt+=(awscli)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)   # internal/browsertest (headless, driven by chromedp)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)             # the official JS SDKs for internal/browsertest
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The official KVS WebRTC JS SDK and AWS SDK (pinned in package-lock.json),
# unmodified, for the interoperability tests in Chromium.
npm_dir=internal/browsertest/js
npm_stamp="$npm_dir/node_modules/.kvsrtc-lock-sha256"
npm_sum=$(sha256sum "$npm_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_sum" ]; then
  step "npm ci in $npm_dir"
  (cd "$npm_dir" && npm ci --legacy-peer-deps --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$npm_sum" > "$npm_stamp"
fi
# Independent stacks for the interoperability tests (internal/interop): each
# scripts/deps/*.sh installs one (Debian, npm or Go module proxy packages only)
# and is idempotent.
for dep in scripts/deps/*.sh; do
  [ -e "$dep" ] || continue
  step "deps: $dep"
  bash "$dep"
done
if ! golangci-lint version 2>/dev/null | grep -q "${GOLANGCI_VERSION#v}"; then
  step "installing golangci-lint $GOLANGCI_VERSION"
  go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_VERSION}"
fi

# --- static checks -----------------------------------------------------------
step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi
step "go mod tidy -diff"
go mod tidy -diff
step "go vet"
go vet ./...
step "golangci-lint"
golangci-lint run ./...
step "build"
go build -o /dev/null ./cmd/kvsrtc

# --- tests -------------------------------------------------------------------
# The Chromium suite runs on its own, after the rest: 25 tabs decoding video
# next to aiortc and the soak test left too little of a 2-core machine, and
# pages that time out and retry say nothing about the code.
step "go test -race (all but the browser suite)"
go test -race -count=1 -timeout 30m $(go list ./... | grep -v '/internal/browsertest$')
step "go test -race ./internal/browsertest"
go test -race -count=1 -timeout 30m ./internal/browsertest

step "fuzz ($FUZZTIME per target)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fz in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $fz"
    go test -run='^$' -fuzz="^${fz}\$" -fuzztime="$FUZZTIME" "$pkg" >/tmp/kvsrtc-fuzz.log 2>&1 || { cat /tmp/kvsrtc-fuzz.log; exit 1; }
  done
done
echo
echo "all checks passed"
