#!/usr/bin/env bash
# Post-dial delay that the authorization step adds: SIPp -> Kamailio -> SIPp far end, INVITE to
# 200 OK, with the Kamailio configuration of tests/e2e-sip (authorizing every INVITE with
# tollguard) against the same configuration with the authorization taken out.
#
#   bash bench/sip-pdd.sh [CALLS] [RATE]        (default 1000 calls at 50 calls/s)
#
# Installs kamailio and sipp when missing (apt-get). Per-call times come from the caller's SIPp
# message trace (-trace_msg: microsecond timestamps; SIPp's own response-time statistics count
# whole milliseconds): INVITE sent -> 200 OK received. Prints mean, p50, p99, max.
set -euo pipefail
CALLS="${1:-1000}"
RATE="${2:-50}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/tests/e2e-sip"
OUT="$ROOT/target/sip-pdd"
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
if ! command -v kamailio >/dev/null || ! command -v sipp >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio kamailio-utils-modules kamailio-json-modules kamailio-extra-modules sip-tester >/dev/null
fi
(cd "$ROOT" && cargo build --release -q -p tollguard)
TG="$ROOT/target/release/tollguard"
port() { python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_$1); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

cp "$HERE/tollguard.toml" "$HERE/rates.csv" .
# Ordinary calls only: no limit is reached in the run.
HTTP=$(port STREAM)
TOKEN=$("$TG" token create --database tg.db --name kamailio --scope integration 2>/dev/null)
"$TG" serve --config tollguard.toml --database tg.db --listen "127.0.0.1:$HTTP" 2>tollguard.log &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP/readyz" >/dev/null && break; sleep 0.1; done

UAS=$(port DGRAM)
timeout 600 sipp -sf "$HERE/uas.xml" -i 127.0.0.1 -p "$UAS" -bg -nostdin >/dev/null 2>&1 || true
PIDS+=("$(pgrep -f "sipp -sf $HERE/uas.xml -i 127.0.0.1 -p $UAS" | head -1)")

run() { # name cfg-filter
    local name="$1" sip rpc
    sip=$(port DGRAM)
    rpc=$(port STREAM)
    sed -e "s|@LISTEN@|udp:127.0.0.1:$sip|" -e "s|@TOLLGUARD@|http://kamailio:$TOKEN@127.0.0.1:$HTTP/v1|" \
        -e "s|@NEXTHOP@|sip:127.0.0.1:$UAS|" -e "s|@RPC@|127.0.0.1:$rpc|" -e "s|@PBX@|127.0.0.1|" \
        "$HERE/kamailio.cfg" | eval "$2" >"$name.cfg"
    mkdir -p "run-$name"
    kamailio -f "$name.cfg" -DD -E -Y "$OUT/run-$name" -P "$OUT/run-$name/pid" -m 128 -M 16 >"$name-kamailio.log" 2>&1 &
    local kpid=$!
    sleep 1
    (cd "run-$name" && timeout 300 sipp -sf "$HERE/uac.xml" "127.0.0.1:$sip" -i 127.0.0.1 -s 0201234567 \
        -key account pdd -m "$CALLS" -r "$RATE" -l 200 -nostdin -trace_msg >sipp.log 2>&1) || true
    kill "$kpid" 2>/dev/null || true
    wait "$kpid" 2>/dev/null || true
    python3 - "$name" "$OUT/run-$name" <<'PY'
import glob, re, sys
from datetime import datetime
name, run = sys.argv[1], sys.argv[2]
sent, got = {}, {}
text = open(glob.glob(run + "/*_messages.log")[0], errors="replace").read()
for block in re.split(r"^-{20,} ", text, flags=re.M)[1:]:
    head, _, msg = block.partition("\n")
    t = datetime.strptime(head.strip().replace("\t", " "), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    cid = re.search(r"^Call-ID:\s*(\S+)", msg, re.M | re.I)
    cseq = re.search(r"^CSeq:\s*(\d+ \w+)", msg, re.M | re.I)
    lines = [l for l in msg.splitlines() if l.strip()]
    first = lines[1] if len(lines) > 1 else ""
    if not cid or not cseq or cseq.group(1) != "1 INVITE":
        continue
    if "message sent" in msg.splitlines()[0] and first.startswith("INVITE"):
        sent.setdefault(cid.group(1), t)
    elif "message received" in msg.splitlines()[0] and first.startswith("SIP/2.0 200"):
        got.setdefault(cid.group(1), t)
v = sorted((got[c] - sent[c]) * 1000 for c in got if c in sent)
q = lambda p: v[min(len(v) - 1, int(len(v) * p))]
print(f"{name:24s} calls {len(v):5d}  mean {sum(v)/len(v):6.3f} ms  p50 {q(0.5):6.3f}  p99 {q(0.99):6.3f}  max {v[-1]:6.3f}")
PY
}
echo "== INVITE -> 200 OK through Kamailio, $CALLS calls at $RATE/s"
run "without-authorization" "sed -e 's|^\troute(AUTHORIZE);|\t# no authorization|'"
run "with-authorization" "cat"
