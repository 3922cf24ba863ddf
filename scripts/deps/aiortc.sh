#!/usr/bin/env bash
# Installs aiortc for internal/interop/aiortc: Debian's python3-aiortc (with
# aioice, PyAV, numpy) and python3-websockets, for /usr/bin/python3.
# Idempotent: does nothing when /usr/bin/python3 already imports them.
set -euo pipefail

if /usr/bin/python3 -c 'import aiortc, aioice, websockets, av, numpy' >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
pkgs=(python3-aiortc python3-websockets)
# Fresh package lists first: a new machine's may be missing or stale.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
/usr/bin/python3 -c 'import aiortc, aioice, websockets, av, numpy' || {
  echo "scripts/deps/aiortc.sh: python3-aiortc is installed but /usr/bin/python3 cannot import it" >&2
  exit 1
}
