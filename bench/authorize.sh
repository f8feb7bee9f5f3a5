#!/usr/bin/env bash
# POST /v1/authorize under load: tollguard serve against a floor server on the same HTTP stack.
#
#   bash bench/authorize.sh [SECONDS]          (default 30 s per step)
#
# Both run on this machine's two cores together with the load generator (no pinning: the
# generator needs a core too). Steps: a warm-up of 10 s at 2,000/s over 10,000 accounts (every
# account gets state for every default limit), then 5,000, 10,000 and 20,000 authorizations/s for
# SECONDS each; every allowed call is ended at once (not measured), so running calls stay flat.
# Open loop (crates/tollguard-server/examples/loadgen.rs): latency from when a request is written;
# `late` counts requests written more than 2 ms after they were due (the server falling behind).
# The floor (examples/floor.rs) is axum with a fixed answer: no engine, no lock, no store.
# Prints p50/p99/p99.9/max in microseconds, errors, the server's resident memory after each step,
# the ratio tollguard / floor of the p99, and each server's CPU per call by thread (from /proc).
# PLATEAU=SECONDS adds a run at 5,000/s for that long printing tollguard's resident memory every
# 30 s (it levels off once the 2-minute record grace and the 32-second repeat-answer memory are
# full).
set -euo pipefail
SECONDS_PER_STEP="${1:-30}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
echo "== cargo build --release (tollguard, loadgen, floor)"
cargo build --release -q -p tollguard
cargo build --release -q -p tollguard-server --examples
BIN="$ROOT/target/release"
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU ticks (user + system) of each of a process's threads, summed by thread name
ticks() { for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
    awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort; }

TOKEN=$("$BIN/tollguard" token create --database "$DIR/tg.db" --name bench --scope integration 2>/dev/null)
P1=$(port)
"$BIN/tollguard" serve --rates examples/quickstart/rates.csv --country NL --tz Europe/Amsterdam \
    --database "$DIR/tg.db" --listen "127.0.0.1:$P1" 2>"$DIR/serve.log" &
TG=$!
P2=$(port)
"$BIN/examples/floor" "127.0.0.1:$P2" &
FLOOR=$!
for p in $P1 $P2; do
    for _ in $(seq 100); do curl -fs -o /dev/null -X POST "http://127.0.0.1:$p/v1/authorize" -H "Authorization: Bearer $TOKEN" -d '{}' 2>/dev/null && break; curl -s -o /dev/null "http://127.0.0.1:$p/healthz" && break; sleep 0.1; done
done

echo "== warm-up: 2,000/s for 10 s over 10,000 accounts"
"$BIN/examples/loadgen" "127.0.0.1:$P1" "$TOKEN" 2000 10 32 10000 >/dev/null
echo "   tollguard resident after warm-up: $(rss $TG) kB"
printf '%-10s %7s %9s %7s %7s %8s %8s %9s %9s %10s\n' server rate/s requests errors late p50_us p99_us p99.9_us max_us rss_kB
declare -A P99 CPU
for rate in 5000 10000 20000; do
    for who in tollguard floor; do
        if [[ $who == tollguard ]]; then addr="127.0.0.1:$P1"; pid=$TG; else addr="127.0.0.1:$P2"; pid=$FLOOR; fi
        ticks "$pid" >"$DIR/ticks.before"
        read -r r sent errors late p50 p99 p999 max < <("$BIN/examples/loadgen" "$addr" "$TOKEN" "$rate" "$SECONDS_PER_STEP" 32 10000)
        ticks "$pid" >"$DIR/ticks.after"
        printf '%-10s %7s %9s %7s %7s %8s %8s %9s %9s %10s\n' "$who" "$r" "$sent" "$errors" "$late" "$p50" "$p99" "$p999" "$max" "$(rss $pid)"
        # The server's CPU per call (authorization and end), by thread: the figure the p99 at a
        # rate depends on once the two cores are shared, and steadier than latency on a noisy host.
        CPU[$who$rate]=$(join "$DIR/ticks.before" "$DIR/ticks.after" | awk -v n="$sent" -v hz="$(getconf CLK_TCK)" \
            '{ d = ($3 - $2) * 1e6 / hz / n; if (d > 0) { printf "%s%s %.0f", sep, $1, d; sep = ", " }; t += d }
             END { printf "%s; total %.0f", (sep ? "" : "none"), t }')
        P99[$who$rate]=$p99
    done
done
for rate in 5000 10000 20000; do
    echo "ratio of p99 tollguard / floor at $rate/s: $(python3 -c "print(round(${P99[tollguard$rate]} / max(1, ${P99[floor$rate]}), 2))")"
done
for rate in 5000 10000 20000; do
    echo "server CPU per call at $rate/s, us by thread: tollguard ${CPU[tollguard$rate]}; floor ${CPU[floor$rate]}"
done
if [[ -n "${PLATEAU:-}" ]]; then
    echo "== plateau: 5,000/s for $PLATEAU s, tollguard resident memory every 30 s"
    "$BIN/examples/loadgen" "127.0.0.1:$P1" "$TOKEN" 5000 "$PLATEAU" 32 10000 >"$DIR/plateau.txt" &
    LG=$!
    t=0
    while kill -0 $LG 2>/dev/null; do
        echo "   t=${t}s rss $(rss $TG) kB"
        sleep 30
        t=$((t + 30))
    done
    read -r r sent errors late p50 p99 p999 max <"$DIR/plateau.txt"
    echo "   $sent requests, $errors errors, $late late; p50 $p50 us, p99 $p99 us, p99.9 $p999 us"
fi
grep -i error "$DIR/serve.log" | head -5 || true
