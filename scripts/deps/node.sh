#!/usr/bin/env bash
# Installs what internal/interop/node needs: Node and npm (Debian's npm
# package, when they are missing) and the npm packages pinned in
# internal/interop/node/js/package-lock.json: the official KVS WebRTC JS SDK
# 2.9.0, the AWS SDK for JavaScript v2, ws, and @roamhq/wrtc 0.10.0, whose
# libwebrtc binary is a prebuilt file inside a per-platform npm package
# (@roamhq/wrtc-linux-x64, -linux-arm64, ...) that npm picks by os/cpu, so
# no install script is needed (and none is run: --ignore-scripts).
#
# Idempotent: npm ci runs only when the lock file changed since the last
# install (or the install is broken).
#
#   bash scripts/deps/node.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing Debian's npm (and nodejs)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

dir=internal/interop/node/js
stamp="$dir/node_modules/.kvsrtc-lock-sha256"
sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
loads() {
  (cd "$dir" && node -e 'require("@roamhq/wrtc"); require("amazon-kinesis-video-streams-webrtc"); require("aws-sdk"); require("ws")') >/dev/null 2>&1
}
if [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && loads; then
  exit 0
fi
echo "npm ci in $dir"
(cd "$dir" && npm ci --legacy-peer-deps --ignore-scripts --no-audit --no-fund --loglevel=error)
if ! (cd "$dir" && AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1 node -e 'require("@roamhq/wrtc"); require("amazon-kinesis-video-streams-webrtc"); require("aws-sdk"); require("ws")'); then
  echo "node.sh: the npm packages in $dir do not load with $(node --version) on $(uname -sm); @roamhq/wrtc ships binaries for linux x64/arm64, macOS and Windows x64 only" >&2
  exit 1
fi
echo "$sum" > "$stamp"
