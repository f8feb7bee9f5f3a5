#!/usr/bin/env bash
# tollguard serve's CPU per call now against the same at an earlier commit, run by turns.
#
#   bash bench/serve-ab.sh REV [RATE] [SECONDS] [ROUNDS]     (defaults 8000/s, 15 s, 3 rounds)
#
# The server's CPU per call (an authorization and its end, by thread, from /proc) is the figure
# the p99 at a rate depends on once the two cores are shared, and it moves far less with the
# host's noise than latency does; still, runs minutes apart differ by 10-20% here, so the two
# binaries run by turns. Each run: a fresh server and database, the warm-up of bench/authorize.sh
# (2,000/s for 10 s over 10,000 accounts), then RATE for SECONDS with the same load generator.
# REV is built once into target/ab/REV (a git worktree and its own target folder, as
# bench/replay-ab.sh does).
set -euo pipefail
REV="${1:?usage: bench/serve-ab.sh REV [RATE] [SECONDS] [ROUNDS]}"
RATE="${2:-8000}"
SECS="${3:-15}"
ROUNDS="${4:-3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHA=$(git rev-parse --short "$REV^{commit}")
echo "== cargo build --release (now, and tollguard at $REV = $SHA)"
cargo build --release -q -p tollguard
cargo build --release -q -p tollguard-server --examples
# shellcheck source=bench/ab-build.sh
source "$ROOT/bench/ab-build.sh"
declare -A BIN=([now]="$ROOT/target/release/tollguard" [$SHA]="$(ab_binary "$SHA")")
LG="$ROOT/target/release/examples/loadgen"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU ticks (user + system) of each of a process's threads, summed by thread name
ticks() { for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
    awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort; }
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
echo "round binary | rate sent errors late p50_us p99_us p999_us max_us | CPU us per call by thread"
for r in $(seq "$ROUNDS"); do
    for who in "$SHA" now; do
        rm -rf "$DIR/db" && mkdir "$DIR/db"
        TOKEN=$("${BIN[$who]}" token create --database "$DIR/db/tg.db" --name bench --scope integration 2>/dev/null)
        P=$(port)
        "${BIN[$who]}" serve --rates examples/quickstart/rates.csv --country NL --tz Europe/Amsterdam \
            --database "$DIR/db/tg.db" --listen "127.0.0.1:$P" 2>"$DIR/serve.log" &
        TG=$!
        for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$P/healthz" && break; sleep 0.1; done
        "$LG" "127.0.0.1:$P" "$TOKEN" 2000 10 32 10000 >/dev/null
        ticks $TG >"$DIR/before"
        out=$("$LG" "127.0.0.1:$P" "$TOKEN" "$RATE" "$SECS" 32 10000)
        ticks $TG >"$DIR/after"
        n=$(echo "$out" | awk '{print $2}')
        cpu=$(join "$DIR/before" "$DIR/after" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" \
            '{ d = ($3 - $2) * 1e6 / hz / n; if (d > 0.05) printf "%s %.1f, ", $1, d; t += d } END { printf "total %.1f", t }')
        echo "$r $who | $out | $cpu"
        kill $TG
        wait $TG 2>/dev/null || true
    done
done
