#!/usr/bin/env bash
# What pruning a store costs the calls: tollguard serve deleting a backlog past [server] retention
# while authorizations come at 1,000/s, against the same load on the same store with retention off.
#
#   bash bench/retention.sh [ROUNDS]      (default 2 rounds, by turns)
#
# The store is bench/reload.sh's event log (800,000 events, 400,000 calls of 10,000 accounts;
# built there if missing), copied, and every time in it but its last 1,000 events' moved 200 days
# back, its incidents resolved: with retention = "91d" the pruning at the start deletes nearly all
# of it (and keeps what the engine learnt for good of its 10,000 accounts). Prints the load generator's line (p50/p99/p99.9/max in microseconds) for both, and
# what the server said of the pruning (rows deleted, seconds).
set -euo pipefail
ROUNDS="${1:-2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SRC="$ROOT/target/bench-data/reload"
[[ -s "$SRC/tg.db" ]] || bash bench/reload.sh 0 >/dev/null
cargo build --release -q -p tollguard
cargo build --release -q -p tollguard-server --examples
BIN="$ROOT/target/release/tollguard"
LG="$ROOT/target/release/examples/loadgen"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

echo "== ageing a copy of the log by 200 days"
mkdir "$TMP/aged"
cp "$SRC/tg.db" "$TMP/aged/tg.db"
python3 - "$TMP/aged/tg.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ns = 200 * 86400 * 10**9
for table, col in [("events", "time_ns"), ("decisions", "time_ns"), ("cdrs", "received_ns"),
                   ("audit", "time_ns"), ("incidents", "opened_ns"), ("incidents", "updated_ns"),
                   ("outbox", "created_ns")]:
    db.execute(f"UPDATE {table} SET {col} = {col} - ?", (ns,))
# The log's last 1,000 events stay where they were: retention counts from the newest event.
db.execute("UPDATE events SET time_ns = time_ns + ? WHERE seq > (SELECT max(seq) - 1000 FROM events)", (ns,))
db.execute("""UPDATE alerts SET json = json_set(json, '$.time',
              strftime('%Y-%m-%dT%H:%M:%SZ', unixepoch(json_extract(json, '$.time')) - 200 * 86400, 'unixepoch'))""")
db.execute("UPDATE incidents SET state = 'resolved'")
db.commit()
print("rows:", {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ["events", "decisions", "cdrs", "alerts", "audit", "incidents"]})
EOF

for r in $(seq "$ROUNDS"); do
    for keep in 91d off; do
        rm -rf "$TMP/db" && mkdir "$TMP/db" && cp "$TMP/aged/tg.db" "$TMP/db/"
        cat >"$TMP/db/tollguard.toml" <<EOF
[defaults]
country = "NL"
timezone = "Europe/Amsterdam"
[[decks]]
path = "$ROOT/examples/quickstart/rates.csv"
[server]
database = "tg.db"
snapshot_every = "off"
retention = "$keep"
EOF
        P=$(port)
        "$BIN" serve --config "$TMP/db/tollguard.toml" --listen "127.0.0.1:$P" 2>"$TMP/log" &
        TG=$!
        for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$P/healthz" && break; sleep 0.1; done
        "$LG" "127.0.0.1:$P" "$(cat "$SRC/token")" 1000 20 32 10000 >"$TMP/out"
        said=$(grep -h "retention:" "$TMP/log" | sed 's/.*retention: //' || true)
        echo "$r retention=$keep | $(cat "$TMP/out") | ${said:-nothing deleted}"
        kill $TG
        wait $TG || true
    done
done
