#!/usr/bin/env bash
# Dashboard page loads with 10,000 accounts: the overview and the accounts list against the
# sign-in page of the same server (a template rendered with no account in it), the floor.
#
#   bash bench/dashboard.sh [ACCOUNTS] [REQUESTS]     (default 10,000 accounts, 30 loads a page)
#
# tollguard serve (release, default policy, SQLite in a temporary folder) gets state for every
# account from the authorize load generator (2,000 authorizations/s over ACCOUNTS accounts,
# every allowed call ended at once, until each account has called about twice), and an operator
# limit on every 100th account. Then each page is loaded REQUESTS times in turn by curl with the
# operator's sign-in cookie, one at a time on a kept connection-less curl each (the time is
# curl's time_total: connect, server, transfer). Prints median, p95 and max in milliseconds per
# page, the page's size, and the ratio of the medians page / sign-in page. While the pages load,
# nothing else runs; LOAD=RATE runs authorizations at RATE/s for 20 s alone, then for 60 s from
# just before the loads, and prints both latencies (they share the engine lock and the two cores
# with the pages).
set -euo pipefail
ACCOUNTS="${1:-10000}"
REQUESTS="${2:-30}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
echo "== cargo build --release (tollguard, loadgen)"
cargo build --release -q -p tollguard
cargo build --release -q -p tollguard-server --example loadgen
BIN="$ROOT/target/release"
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

INTEGRATION=$("$BIN/tollguard" token create --database "$DIR/tg.db" --name bench --scope integration 2>/dev/null)
OPERATOR=$("$BIN/tollguard" token create --database "$DIR/tg.db" --name noc --scope operator 2>/dev/null)
P=$(port)
"$BIN/tollguard" serve --rates examples/quickstart/rates.csv --country NL --tz Europe/Amsterdam \
    --database "$DIR/tg.db" --listen "127.0.0.1:$P" 2>"$DIR/serve.log" &
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$P/healthz" && break; sleep 0.1; done

echo "== state for $ACCOUNTS accounts: authorizations at 2,000/s for $((ACCOUNTS / 1000)) s"
"$BIN/examples/loadgen" "127.0.0.1:$P" "$INTEGRATION" 2000 $((ACCOUNTS / 1000)) 32 "$ACCOUNTS" >/dev/null
for ((i = 0; i < ACCOUNTS; i += 100)); do
    curl -fs -o /dev/null -X PUT "http://127.0.0.1:$P/v1/accounts/$(printf acct%05d $i)/limits" \
        -H "Authorization: Bearer $OPERATOR" -H 'Content-Type: application/json' \
        -d '{"limits":[{"name":"noc.daily","metric":"spend","window":"day","max":"500.00","warning_percent":80,"on_critical":["alert","deny"]}]}'
done
SHOWN=$(curl -fs -H "Cookie: tollguard_token=$OPERATOR" "http://127.0.0.1:$P/ui/" | grep -o 'Accounts<b>[0-9]*</b>' | head -1 || true)
echo "   the overview says: ${SHOWN:-?}"

if [[ -n "${LOAD:-}" ]]; then
    echo "   authorizations at $LOAD/s for 20 s with no page loads (rate sent errors late p50 p99 p99.9 max, us):"
    echo "   $("$BIN/examples/loadgen" "127.0.0.1:$P" "$INTEGRATION" "$LOAD" 20 32 "$ACCOUNTS")"
    "$BIN/examples/loadgen" "127.0.0.1:$P" "$INTEGRATION" "$LOAD" 60 32 "$ACCOUNTS" >"$DIR/load.txt" &
    LG=$!
    sleep 2
fi

load() { # path -> prints "median p95 max bytes" in ms
    local path=$1
    for _ in $(seq "$REQUESTS"); do
        curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' \
            -H "Cookie: tollguard_token=$OPERATOR" "http://127.0.0.1:$P$path"
    done | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
bad = [r for r in rows if r[2] != "200"]
if bad:
    sys.exit(f"HTTP {bad[0][2]} for a page load")
t = sorted(float(r[0]) * 1000 for r in rows)
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print(f"{t[len(t) // 2]:.1f} {q(0.95):.1f} {t[-1]:.1f} {rows[-1][1]}")'
}

printf '%-34s %9s %9s %9s %9s %7s\n' page median_ms p95_ms max_ms bytes ratio
FLOOR=$(load /ui/login)
read -r fm _ <<<"$FLOOR"
for path in /ui/login /ui/ "/ui/accounts" "/ui/accounts?sort=account&page=100" "/ui/accounts?q=acct99"; do
    read -r m p95 mx bytes <<<"$(load "$path")"
    printf '%-34s %9s %9s %9s %9s %7s\n' "$path" "$m" "$p95" "$mx" "$bytes" "$(python3 -c "print(round($m / max($fm, 0.01), 1))")"
done
if [[ -n "${LOAD:-}" ]]; then
    wait $LG
    echo "   authorizations at $LOAD/s during the page loads (rate sent errors late p50 p99 p99.9 max, us): $(cat "$DIR/load.txt")"
fi
grep -i error "$DIR/serve.log" | head -5 || true
