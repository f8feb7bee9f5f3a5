#!/usr/bin/env bash
# Authorization latency while tollguard serve reloads its configuration (SIGHUP).
#
#   bash bench/reload.sh [ROUNDS] [BINARY...]     (default 2 rounds, this checkout's release binary)
#
# Builds once an event log of about 730,000 events (80 s of bench/authorize.sh's load at
# 5,000/s over 10,000 accounts, kept in target/bench-data/reload), then for each round and binary
# (by turns): a copy of that log, the server started on it, authorizations at 1,000/s for 12 s,
# and SIGHUP 4 s in. Prints the load generator's line (p50/p99/p99.9/max in microseconds) and
# what the server said of the reload. A reload that held the engine's lock for its whole rebuild
# shows as a max of seconds; one that rebuilds beside the running engine, as a max near the
# p99.9 of a run without a reload.
set -euo pipefail
ROUNDS="${1:-2}"
shift || true
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p tollguard
cargo build --release -q -p tollguard-server --examples
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=("$ROOT/target/release/tollguard")
LG="$ROOT/target/release/examples/loadgen"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SRC="$ROOT/target/bench-data/reload"
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
if [[ ! -s "$SRC/tg.db" ]]; then
    echo "== building an event log (80 s at 5,000 authorizations/s)"
    rm -rf "$SRC" && mkdir -p "$SRC"
    target/release/tollguard token create --database "$SRC/tg.db" --name bench --scope integration >"$SRC/token" 2>/dev/null
    P=$(port)
    target/release/tollguard serve --rates examples/quickstart/rates.csv --country NL --tz Europe/Amsterdam \
        --database "$SRC/tg.db" --listen "127.0.0.1:$P" 2>/dev/null &
    TG=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$P/healthz" && break; sleep 0.1; done
    "$LG" "127.0.0.1:$P" "$(cat "$SRC/token")" 5000 80 32 10000 >/dev/null
    kill $TG
    wait $TG || true
fi
echo "events in the log: $(python3 -c "import sqlite3; print(sqlite3.connect('$SRC/tg.db').execute('select count(*) from events').fetchone()[0])")"
echo "round binary | rate sent errors late p50_us p99_us p999_us max_us | server"
for r in $(seq "$ROUNDS"); do
    for BIN in "${BINS[@]}"; do
        rm -rf "$TMP/db" && mkdir "$TMP/db" && cp "$SRC/tg.db" "$TMP/db/"
        P=$(port)
        "$BIN" serve --rates examples/quickstart/rates.csv --country NL --tz Europe/Amsterdam \
            --database "$TMP/db/tg.db" --listen "127.0.0.1:$P" 2>"$TMP/log" &
        TG=$!
        for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$P/healthz" && break; sleep 0.1; done
        "$LG" "127.0.0.1:$P" "$(cat "$SRC/token")" 1000 12 32 10000 >"$TMP/out" &
        L=$!
        sleep 4
        kill -HUP $TG
        wait $L
        echo "$r $BIN | $(cat "$TMP/out") | $(grep -h reloaded "$TMP/log" || echo 'no reload said')"
        kill $TG
        wait $TG || true
    done
done
