#!/usr/bin/env bash
# Time from `tollguard serve`'s start to its first /readyz answer, on the same event log with and
# without a snapshot, by turns.
#
#   bash bench/restart.sh [ROUNDS]      (default 3)
#
# Uses bench/reload.sh's event log (about 730,000 events, built once into target/bench-data/reload
# by that script; run it first). Each round copies the log twice: one copy starts with no
# snapshot (the whole log is handled again) and is stopped with SIGTERM, which writes its
# snapshot; then both copies are started again, the one with its snapshot removed first. Prints
# each start's time and what the server said, then the medians and their ratio.
set -euo pipefail
ROUNDS="${1:-3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p tollguard
BIN="$ROOT/target/release/tollguard"
SRC="$ROOT/target/bench-data/reload"
[[ -s "$SRC/tg.db" ]] || { echo "no event log: run bash bench/reload.sh first" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts serve on $1; sets SECS to the seconds to the first /readyz answer and PID to its pid.
start() {
    local db=$1 p t0
    p=$(port)
    t0=$(date +%s.%N)
    "$BIN" serve --rates examples/quickstart/rates.csv --country NL --tz Europe/Amsterdam \
        --database "$db" --listen "127.0.0.1:$p" >/dev/null 2>>"$db.log" &
    PID=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$p/readyz"; do sleep 0.01; done
    SECS=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$(date +%s.%N)" "$t0")
}
stop() {
    kill -TERM "$PID"
    wait "$PID" || true
}

: >"$TMP/times"
for r in $(seq "$ROUNDS"); do
    rm -rf "$TMP/db" && mkdir -p "$TMP/db"
    cp "$SRC/tg.db" "$TMP/db/tg.db"
    rm -f "$TMP/db/tg.db.snapshot"
    start "$TMP/db/tg.db"; first=$SECS
    stop
    snap=$(stat -c %s "$TMP/db/tg.db.snapshot")
    mv "$TMP/db/tg.db.snapshot" "$TMP/snapshot"
    if ((r % 2)); then
        start "$TMP/db/tg.db"; whole=$SECS; stop
        cp "$TMP/snapshot" "$TMP/db/tg.db.snapshot"
        start "$TMP/db/tg.db"; from=$SECS; stop
    else
        cp "$TMP/snapshot" "$TMP/db/tg.db.snapshot"
        start "$TMP/db/tg.db"; from=$SECS; stop
        rm -f "$TMP/db/tg.db.snapshot"
        start "$TMP/db/tg.db"; whole=$SECS; stop
    fi
    echo "round $r: first start ${first} s; whole log ${whole} s; from the snapshot (${snap} bytes) ${from} s"
    grep -h "restored\|handled again\|not using" "$TMP/db/tg.db.log" | sed 's/^/    /'
    rm -f "$TMP/db/tg.db.log"
    echo "$whole $from" >>"$TMP/times"
done
python3 - "$TMP/times" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
w, s = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
print(f"median: whole log {w:.2f} s, from the snapshot {s:.2f} s, ratio {s / w:.3f}")
EOF
