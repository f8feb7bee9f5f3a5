#!/usr/bin/env bash
# tollguard replay (rating + engine, Asterisk CSV in, decisions out) against its own floor,
# tollguard rate (read, parse, rate, write) on the same file.
#
#   bash bench/replay.sh [ACCOUNTS] [DAYS]        (default 150 accounts x 30 days, ~710k CDRs)
#
# Environment: REPEAT=3 (runs of each timed command; the best is reported), SEED=42,
# PROFILE=dist (Cargo.toml's production build, fat LTO; PROFILE=release for the quicker one).
#
# The input is a simulated month (`tollguard simulate`, every fraud scenario and honest
# look-alike), cached in target/bench-data/. Timed, with the file in the page cache:
#   (a) taskset -c 0 tollguard rate --out /dev/null                 (the floor: no engine)
#   (b) taskset -c 0 tollguard replay --decisions-out /dev/null     (one core)
#   (c) tollguard replay --threads 2 --decisions-out /dev/null      (two cores)
# and prints CDRs/s and the ratio replay / rate. Whole processes, start-up included.
set -euo pipefail

ACCOUNTS="${1:-150}"
DAYS="${2:-30}"
REPEAT="${REPEAT:-3}"
SEED="${SEED:-42}"
PROFILE="${PROFILE:-dist}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
calc() { awk "BEGIN { print ($*) }"; }

echo "== cargo build --profile $PROFILE -p tollguard"
cargo build --profile "$PROFILE" -q -p tollguard
BIN="$ROOT/target/$PROFILE/tollguard"

DIR="$ROOT/target/bench-data/sim-$SEED-$ACCOUNTS-$DAYS"
if [[ ! -s "$DIR/Master.csv" ]]; then
    rm -rf "$DIR"
    "$BIN" simulate --seed "$SEED" --accounts "$ACCOUNTS" --days "$DAYS" --start 2026-01-05 --out-dir "$DIR" >/dev/null
fi
ROWS=$(wc -l <"$DIR/Master.csv")
cat "$DIR/Master.csv" >/dev/null
echo "== input: $DIR/Master.csv ($ROWS CDRs, $(($(stat -c %s "$DIR/Master.csv") / 1000000)) MB)"
COMMON=(--cdr "$DIR/Master.csv" --format asterisk --config "$DIR/tollguard.toml")

best() { # command... -> best wall seconds of REPEAT runs
    local b=""
    for _ in $(seq "$REPEAT"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        t1=$(date +%s.%N)
        local t
        t=$(calc "$t1 - $t0")
        if [[ -z "$b" ]] || awk "BEGIN { exit !($t < $b) }"; then b=$t; fi
    done
    echo "$b"
}

RATE=$(best taskset -c 0 "$BIN" rate "${COMMON[@]}" --out /dev/null)
ONE=$(best taskset -c 0 "$BIN" replay "${COMMON[@]}" --decisions-out /dev/null)
TWO=$(best "$BIN" replay "${COMMON[@]}" --threads 2 --decisions-out /dev/null)

printf '%-46s %8s %12s\n' "" "wall s" "CDRs/s"
printf '%-46s %8.3f %12.0f\n' "tollguard rate (taskset -c 0), the floor" "$RATE" "$(calc "$ROWS / $RATE")"
printf '%-46s %8.3f %12.0f\n' "tollguard replay (taskset -c 0)" "$ONE" "$(calc "$ROWS / $ONE")"
printf '%-46s %8.3f %12.0f\n' "tollguard replay --threads 2" "$TWO" "$(calc "$ROWS / $TWO")"
echo "ratio replay / rate on one core: $(calc "$ONE / $RATE")"
