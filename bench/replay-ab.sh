#!/usr/bin/env bash
# tollguard replay now against the same at an earlier commit, run by turns on one core.
#
#   bash bench/replay-ab.sh REV [RUNS]        (REV: any git revision; RUNS default 10)
#
# On these shared machines identical runs minutes apart differ by 30% or more, so a change of
# 10-20% shows only in runs taken by turns (before, after, after, before, ...), compared by
# their medians. The input is bench/replay.sh's simulated month (made if missing). REV is built
# once into target/ab/REV (a git worktree and its own target folder: the first build takes a few
# minutes). Each run is a whole process, `taskset -c 0 tollguard replay --decisions-out
# /dev/null`; `tollguard rate` on the same file is timed in each round too, as the floor.
# Prints each round, then median and fastest of each, the ratio of the medians, and user and
# system CPU seconds (system time is mostly the kernel handing out fresh memory).
#
# Environment: PROFILE=dist (the default: Cargo.toml's production build, fat LTO, given to REV
# too) or PROFILE=release.
set -euo pipefail
REV="${1:?usage: bench/replay-ab.sh REV [RUNS]}"
RUNS="${2:-10}"
PROFILE="${PROFILE:-dist}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHA=$(git rev-parse --short "$REV^{commit}")
echo "== cargo build --profile $PROFILE -p tollguard (now, and at $REV = $SHA)"
cargo build --profile "$PROFILE" -q -p tollguard
NEW="$ROOT/target/$PROFILE/tollguard"
# shellcheck source=bench/ab-build.sh
source "$ROOT/bench/ab-build.sh"
OLD=$(ab_binary "$SHA" "$PROFILE")

DIR="$ROOT/target/bench-data/sim-42-150-30"
if [[ ! -s "$DIR/Master.csv" ]]; then
    rm -rf "$DIR"
    "$NEW" simulate --seed 42 --accounts 150 --days 30 --start 2026-01-05 --out-dir "$DIR" >/dev/null
fi
ROWS=$(wc -l <"$DIR/Master.csv")
cat "$DIR/Master.csv" >/dev/null
COMMON=(--cdr "$DIR/Master.csv" --format asterisk --config "$DIR/tollguard.toml")
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

# wall, user and system seconds of one pinned run
timed() { /usr/bin/env time -f "%e %U %S" taskset -c 0 "$@" 2>&1 >/dev/null | tail -1; }
printf '%-6s %22s %22s %22s\n' round "rate (wall user sys)" "$SHA (wall user sys)" "now (wall user sys)"
for i in $(seq "$RUNS"); do
    if ((i % 2)); then
        o=$(timed "$OLD" replay "${COMMON[@]}" --decisions-out /dev/null)
        n=$(timed "$NEW" replay "${COMMON[@]}" --decisions-out /dev/null)
    else
        n=$(timed "$NEW" replay "${COMMON[@]}" --decisions-out /dev/null)
        o=$(timed "$OLD" replay "${COMMON[@]}" --decisions-out /dev/null)
    fi
    r=$(timed "$NEW" rate "${COMMON[@]}" --out /dev/null)
    printf '%-6s %22s %22s %22s\n' "$i" "$r" "$o" "$n"
    echo "$r $o $n" >>"$OUT"
done
python3 - "$OUT" "$ROWS" "$SHA" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
n, sha = int(sys.argv[2]), sys.argv[3]
med = lambda k: statistics.median(r[k] for r in rows)
print()
for name, k in (("rate (the floor)", 0), (f"replay at {sha}", 3), ("replay now", 6)):
    m = med(k)
    print(f"{name:<22} median {m:6.3f} s ({n / m:>9,.0f} CDRs/s)  fastest {min(r[k] for r in rows):6.3f} s"
          f"  user {med(k + 1):.2f} s  sys {med(k + 2):.2f} s")
print(f"ratio of the medians, now / {sha}: {med(6) / med(3):.3f};  now / rate: {med(6) / med(0):.2f}")
EOF
