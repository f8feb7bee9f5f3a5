#!/usr/bin/env bash
# Whether tollguard replay now gives the same output as at an earlier commit: decisions, alerts
# and the summary, byte for byte, on two simulated months (seeds 42 and 7, 150 accounts, 30
# days), on one thread and on two. For changes meant to make replay faster and nothing else.
#
#   bash bench/replay-same.sh REV        (REV: any git revision)
#
# Environment: PROFILE=release (the default) or dist; REV is built once into target/ab/ as
# bench/replay-ab.sh builds it. Exits 1 on the first difference, naming it.
set -euo pipefail
REV="${1:?usage: bench/replay-same.sh REV}"
PROFILE="${PROFILE:-release}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHA=$(git rev-parse --short "$REV^{commit}")
cargo build --profile "$PROFILE" -q -p tollguard
NEW="$ROOT/target/$PROFILE/tollguard"
# shellcheck source=bench/ab-build.sh
source "$ROOT/bench/ab-build.sh"
OLD=$(ab_binary "$SHA" "$PROFILE")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for seed in 42 7; do
    DIR="$ROOT/target/bench-data/sim-$seed-150-30"
    if [[ ! -s "$DIR/Master.csv" ]]; then
        rm -rf "$DIR"
        "$NEW" simulate --seed "$seed" --accounts 150 --days 30 --start 2026-01-05 --out-dir "$DIR" >/dev/null
    fi
    for threads in 1 2; do
        for side in old new; do
            bin=$NEW
            [[ $side == old ]] && bin=$OLD
            "$bin" replay --cdr "$DIR/Master.csv" --format asterisk --config "$DIR/tollguard.toml" \
                --threads "$threads" --decisions-out "$OUT/$side.dec" --alerts-out "$OUT/$side.al" \
                >"$OUT/$side.out" 2>&1
        done
        for x in dec al out; do
            if ! cmp -s "$OUT/old.$x" "$OUT/new.$x"; then
                echo "differs from $SHA: seed $seed, $threads thread(s), $x (decisions, alerts, summary)"
                exit 1
            fi
        done
        echo "seed $seed, $threads thread(s): the same as $SHA ($(wc -l <"$OUT/new.dec") decisions)"
    done
done
