#!/usr/bin/env bash
# The detection scorecard on an independent data set: months made by bench/independent/gen.py
# (written apart from tollguard-sim, with other fraud shapes and honest look-alikes), replayed
# through the built-in policy by `tollguard evaluate` (the first 7 days report-only).
#
#   bash bench/independent.sh [SEED:START ...]   (default 11:2026-03-16 22:2026-06-01 33:2026-11-02)
#
# Python 3 standard library only. The deck is the simulator's (`tollguard simulate` writes it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tollguard
BIN=target/release/tollguard
out=target/independent
mkdir -p "$out"
if [[ ! -s "$out/deck/rates.csv" ]]; then
    rm -rf "$out/deck"
    "$BIN" simulate --seed 1 --accounts 20 --days 30 --start 2026-01-05 --out-dir "$out/deck" >/dev/null
fi
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(11:2026-03-16 22:2026-06-01 33:2026-11-02)
for run in "${runs[@]}"; do
    seed=${run%%:*}
    start=${run#*:}
    dir="$out/month-$seed"
    python3 bench/independent/gen.py --seed "$seed" --start "$start" --deck "$out/deck/rates.csv" --out "$dir" >"$dir.gen.txt"
    echo "== independent month, seed $seed from $start ($(head -1 "$dir.gen.txt" | cut -d: -f2))"
    "$BIN" evaluate --dir "$dir"
done
