#!/usr/bin/env bash
# The dashboard in headless Chromium during a `tollguard demo` run: installs Chromium (Debian) and
# playwright-core (npm, pinned by package-lock.json) when missing, starts the demo on a free
# loopback port, runs dashboard.test.mjs with node's test runner, and stops the demo.
# Screenshots and the downloaded CSV go to target/browser/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
(cd tests/browser && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent; })
bin=${TOLLGUARD_BIN:-$root/target/debug/tollguard}
[ -x "$bin" ] || cargo build -q -p tollguard
work=$(mktemp -d)
demo_pid=
cleanup() { [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# The attack starts 25 s after the demo listens: the test has the overview open before it.
"$bin" demo --listen 127.0.0.1:0 --dir "$work/demo" --info-file "$work/info.json" --accounts 12 \
  --attack-after 25 --exit-after 400 >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 240); do
  [ -s "$work/info.json" ] && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.log"; echo "error: the demo stopped before it listened"; exit 1; }
  sleep 0.5
done
[ -s "$work/info.json" ] || { cat "$work/demo.log"; echo "error: the demo did not listen within 120 s"; exit 1; }
mkdir -p target/browser
cd tests/browser
DEMO_INFO="$work/info.json" SHOTS="$root/target/browser" timeout 300 node --test --test-reporter=spec dashboard.test.mjs
