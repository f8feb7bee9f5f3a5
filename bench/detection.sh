#!/usr/bin/env bash
# The detection scorecard: simulate months of traffic with every fraud scenario and honest
# look-alike, replay them through the engine with the built-in policy, print the scorecard.
# Usage: bash bench/detection.sh [SEED ...]   (default seeds: 42 1 7 2026)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tollguard
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(42 1 7 2026)
out=target/detection
mkdir -p "$out"
for s in "${seeds[@]}"; do
  dir="$out/seed-$s"
  rm -rf "$dir"
  target/release/tollguard simulate --seed "$s" --accounts 150 --days 30 --start 2026-01-05 --out-dir "$dir" > "$dir.simulate.txt"
  echo "== seed $s (150 accounts x 30 days)"
  /usr/bin/time -f "evaluate took %e s" target/release/tollguard evaluate --dir "$dir"
done
