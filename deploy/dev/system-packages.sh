#!/usr/bin/env bash
# System tools the tests use, from Debian's packages, installed only when missing:
#   kcat      - an independent Kafka client (reads our topics and their wire-format header)
#   chromium  - headless browser that renders the demo's HTML report in a test
# No Java and no Maven: the broker and registry run on the Java runtime of the Python
# lock and are downloaded by checksummed lists (deploy/*/artifacts.lock).
set -euo pipefail
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "citeplus setup: please install ${missing[*]} (Debian packages); tests that need them will fail" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "==> installing Debian packages: ${missing[*]}" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
