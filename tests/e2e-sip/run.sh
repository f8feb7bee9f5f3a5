#!/usr/bin/env bash
# SIP end to end: SIPp (caller) -> Kamailio (authorizes each INVITE with tollguard) -> SIPp (far end).
#
#   bash tests/e2e-sip/run.sh
#
# Installs Kamailio and SIPp with apt-get when they are missing, builds tollguard, starts
# tollguard serve, Kamailio and a SIPp far end on 127.0.0.1 (free ports), and asserts:
#   1. ordinary calls complete (5 calls to Dutch numbers);
#   2. a burst to a high-risk range is refused with 403 once the policy triggers (5 allowed,
#      the next 3 refused);
#   3. a call given a cap is ended by the proxy's BYE at the cap (4 s, within the dialog
#      timer's 1 s granularity);
#   4. a running call is cut when a limit is crossed while it runs: tollguard asks Kamailio's
#      JSON-RPC (dlg.end_dlg) and SIPp sees the BYE within two seconds of the crossing;
#   5. calls that are never answered (the far end is busy: 486) end in tollguard within seconds
#      (Kamailio's event_route[dialog:failed]), not at tollguard's lost-call rule;
#   6. a caller other than the trusted PBX address cannot name the billed account (X-Account):
#      refused with 403 before tollguard is asked;
#   7. the account endpoint shows the usage, and every call's end reached tollguard (and no end
#      was reported for a call tollguard did not know);
#   8. with tollguard down, an ordinary call is refused (503: the configuration fails closed) and
#      an emergency call (112) still goes through.
# Everything is bounded in time; logs are kept in target/e2e-sip/ for people to read.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/e2e-sip"
OUT="$ROOT/target/e2e-sip"
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"

if ! command -v kamailio >/dev/null || ! command -v sipp >/dev/null \
    || [[ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/http_client.so ]] \
    || [[ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/jansson.so ]]; then
    echo "== installing kamailio and sipp (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq kamailio kamailio-utils-modules kamailio-json-modules kamailio-extra-modules sip-tester >/dev/null
fi

echo "== building tollguard"
(cd "$ROOT" && cargo build -q -p tollguard)
TG="$ROOT/target/debug/tollguard"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
SIP_PORT=$(free_udp_port)
UAS_PORT=$(free_udp_port)
UAC_PORT=$(free_udp_port)
RPC_PORT=$(free_port)

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "-- logs in $OUT"; tail -n 30 "$OUT/kamailio.log" "$OUT/tollguard.log" 2>/dev/null || true; exit 1; }

# tollguard
cp "$HERE/tollguard.toml" "$OUT/tollguard.toml"
cp "$HERE/rates.csv" "$OUT/rates.csv"
printf '\n[server]\nkamailio_rpc = "http://127.0.0.1:%s/RPC"\ntick_ms = 250\n' "$RPC_PORT" >>"$OUT/tollguard.toml"
INTEGRATION=$("$TG" token create --database "$OUT/tollguard.db" --name kamailio --scope integration 2>/dev/null)
OPERATOR=$("$TG" token create --database "$OUT/tollguard.db" --name noc --scope operator 2>/dev/null)
"$TG" serve --config "$OUT/tollguard.toml" --database "$OUT/tollguard.db" --listen "127.0.0.1:$HTTP_PORT" \
    >"$OUT/tollguard.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || fail "tollguard serve did not come up"

# Kamailio, from the documented configuration
sed -e "s|@LISTEN@|udp:127.0.0.1:$SIP_PORT|" \
    -e "s|@TOLLGUARD@|http://kamailio:$INTEGRATION@127.0.0.1:$HTTP_PORT/v1|" \
    -e "s|@NEXTHOP@|sip:127.0.0.1:$UAS_PORT|" -e "s|@RPC@|127.0.0.1:$RPC_PORT|" \
    -e "s|@PBX@|127.0.0.1|" \
    "$HERE/kamailio.cfg" >"$OUT/kamailio.cfg"
kamailio -c -f "$OUT/kamailio.cfg" >"$OUT/kamailio-check.log" 2>&1 || { cat "$OUT/kamailio-check.log"; fail "kamailio.cfg does not parse"; }
mkdir -p "$OUT/run"
kamailio -f "$OUT/kamailio.cfg" -DD -E -Y "$OUT/run" -P "$OUT/run/kamailio.pid" -m 128 -M 16 >"$OUT/kamailio.log" 2>&1 &
PIDS+=($!)
sleep 1
kill -0 "${PIDS[-1]}" 2>/dev/null || fail "kamailio did not start"

# The far end
timeout 120 sipp -sf "$HERE/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -bg -nostdin -trace_err \
    -error_file "$OUT/uas-errors.log" >/dev/null 2>&1 || true
UAS_PID=$(pgrep -f "sipp -sf $HERE/uas.xml" | head -1)
[[ -n "$UAS_PID" ]] || fail "the SIPp far end did not start"
PIDS+=("$UAS_PID")

uac() { # scenario account number calls -> exit status of sipp; UAC_IP=... to call from elsewhere
    local scenario="$1" account="$2" number="$3" calls="$4"
    timeout 60 sipp -sf "$HERE/$scenario" "127.0.0.1:$SIP_PORT" -i "${UAC_IP:-127.0.0.1}" -p "$UAC_PORT" \
        -s "$number" -key account "$account" -m "$calls" -l 1 -r 5 -nostdin -timeout 45s \
        -trace_err -error_file "$OUT/uac-$scenario-$account.err" \
        -trace_stat -stf "$OUT/uac-$scenario-$account.csv" >"$OUT/uac-$scenario-$account.log" 2>&1
}

echo "== 1. ordinary calls complete"
uac uac.xml e2e 0201234567 5 || fail "ordinary calls did not all complete"
echo "   5 calls to 0201234567 answered and hung up"

echo "== 2. a burst to a high-risk range is refused once the policy triggers"
uac uac.xml e2e 0067077123456 5 || fail "the first 5 calls to East Timor should pass"
uac uac_denied.xml e2e 0067077123456 3 || fail "calls 6-8 to East Timor should get 403"
echo "   5 calls to +670 answered, the next 3 refused with 403"

echo "== 3. a capped call is ended by the proxy at its cap"
t0=$(date +%s.%N)
uac uac_capped.xml capped 0067077123456 1 || fail "the capped call was not ended with a BYE"
t1=$(date +%s.%N)
took=$(python3 -c "print(round($t1 - $t0, 2))")
python3 - "$took" <<'PY' || fail "the capped call lasted ${took} s, not about 4 s"
import sys
took = float(sys.argv[1])
# cap 4 s; the dialog timer has 1 s granularity (may fire up to 1 s early); call setup adds a little
sys.exit(0 if 2.9 <= took <= 6.0 else 1)
PY
echo "   the call was given 4 s and ended by BYE after ${took} s (setup included)"

echo "== 4. a running call is cut when a limit is crossed"
t0=$(date +%s.%N)
uac uac_capped.xml cutme 0067077123456 1 || fail "the call was not cut with a BYE"
t1=$(date +%s.%N)
took=$(python3 -c "print(round($t1 - $t0, 2))")
# EUR 0.10 at EUR 1.45 a minute, billed by the second: 4 s cost 0.0967, the 5th second makes it
# 0.1208, so the limit is crossed 5 s after the answer (talk is counted in whole seconds); the
# tick (250 ms here) and the RPC follow: the BYE must come within two seconds of the crossing.
python3 - "$took" <<'PY' || fail "the cut came ${took} s after the INVITE, not within 2 s of the crossing (5 s)"
import sys
took = float(sys.argv[1])
sys.exit(0 if 4.9 <= took <= 7.0 else 1)
PY
echo "   cut by BYE ${took} s after the INVITE (the limit is crossed at 5 s of talk)"

running_calls() { # account -> its running calls as tollguard counts them
    curl -fs -H "Authorization: Bearer $OPERATOR" "http://127.0.0.1:$HTTP_PORT/v1/accounts/$1" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["running_calls"])'
}

echo "== 5. calls that are never answered end in tollguard at once"
uac uac_busy.xml unanswered 0201230486 3 || fail "the calls to the busy number should get 486"
# No cap on these calls: without the end from Kamailio's dialog:failed, tollguard would count them
# as running for 4 hours (lost_call_after). The end is posted as the 486 passes the proxy.
t0=$(date +%s.%N)
running=unknown
for _ in $(seq 20); do
    running=$(running_calls unanswered) || fail "tollguard does not know account unanswered"
    [[ "$running" == 0 ]] && break
    sleep 0.25
done
[[ "$running" == 0 ]] || fail "3 busy calls left $running running calls in tollguard after 5 s (no end reported)"
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
echo "   3 calls got 486 Busy Here; tollguard showed them ended within ${took} s of the last one (running calls 0)"

echo "== 6. only the trusted PBX address may name the billed account"
UAC_IP=127.0.0.2 uac uac_denied.xml stolen 0201234567 1 || fail "X-Account from 127.0.0.2 (not the PBX) should get 403"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OPERATOR" "http://127.0.0.1:$HTTP_PORT/v1/accounts/stolen")
[[ "$code" == 404 ]] || fail "tollguard was asked about account stolen (GET answered $code): the X-Account of an untrusted caller was used"
echo "   X-Account: stolen from 127.0.0.2 refused with 403; tollguard never heard of account stolen"

echo "== 7. tollguard saw it all"
sleep 1
acct=$(curl -fs -H "Authorization: Bearer $OPERATOR" "http://127.0.0.1:$HTTP_PORT/v1/accounts/e2e")
echo "$acct" >"$OUT/account-e2e.json"
python3 - "$acct" <<'PY' || fail "account usage is not what the calls should have left: $acct"
import json, sys
a = json.loads(sys.argv[1])
limits = {l["limit"]: l for l in a["limits"]}
assert limits["e2e.high_risk_calls_1h"]["used"] == "5", limits
assert a["running_calls"] == 0, a          # every end (BYE) was reported
assert a["calls"] == [], a
print("   account e2e: high-risk calls this hour", limits["e2e.high_risk_calls_1h"]["used"], "of 5; running calls 0")
PY
capped=$(curl -fs -H "Authorization: Bearer $OPERATOR" "http://127.0.0.1:$HTTP_PORT/v1/accounts/capped")
# Now and then (once in nine runs on 2026-12-06) Kamailio runs no event_route[dialog:end] for the dialog
# its timeout ended, so the end is never reported; why is not known (its log has the same
# "bye_reply_cb(): inconsistent dlg timer data" warning in runs that pass). tollguard's rule for
# lost ends then closes the call at its cap plus one minute (docs/api.md): wait for that, and say so.
if [[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["running_calls"])' "$capped")" != 0 ]]; then
    echo "   Kamailio did not report the capped call's end: waiting for tollguard's lost-end rule"
    for _ in $(seq 40); do
        sleep 2
        capped=$(curl -fs -H "Authorization: Bearer $OPERATOR" "http://127.0.0.1:$HTTP_PORT/v1/accounts/capped")
        [[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["running_calls"])' "$capped")" == 0 ]] && break
    done
fi
python3 - "$capped" <<'PY' || fail "the capped call's usage is wrong: $capped"
import json, sys
a = json.loads(sys.argv[1])
day = {l["limit"]: l for l in a["limits"]}["e2e.capped_day"]
assert a["running_calls"] == 0, a
assert day["used"] != "0.00", day
print("   account capped: spent", day["used"], "of", day["max"], "; running calls 0")
PY
metrics=$(curl -fs "http://127.0.0.1:$HTTP_PORT/metrics")
# Here-strings, not `echo | grep -q`: under pipefail, with both cores busy, 2 or 3 of 6,000 such
# checks on these very metrics failed although the line was there (grep -q closes the pipe at
# its first match), as one did in CI; none of 6,000 with a here-string.
grep -q 'tollguard_authorize_total{result="deny"} 3' <<<"$metrics" || fail "metrics: $(grep authorize_total <<<"$metrics")"
grep -q '^tollguard_cuts_total 1$' <<<"$metrics" || fail "metrics: $(grep cuts <<<"$metrics")"
grep -q '^tollguard_cuts_failed_total 0$' <<<"$metrics" || fail "metrics: $(grep cuts <<<"$metrics")"
# Every failed dialog (the busy calls) was a call tollguard knew; a denied call has no dialog.
if grep -q "to the failure of" "$OUT/kamailio.log"; then
    fail "Kamailio reported a failure tollguard did not accept: $(grep "to the failure of" "$OUT/kamailio.log" | head -3)"
fi
echo "== 8. with tollguard down, calls are refused but emergency calls go through"
TG_PID="${PIDS[0]}"
kill "$TG_PID"
for _ in $(seq 50); do
    kill -0 "$TG_PID" 2>/dev/null || break
    sleep 0.1
done
! kill -0 "$TG_PID" 2>/dev/null || fail "tollguard serve did not stop on SIGTERM"
uac uac_unavailable.xml e2e 0201234567 1 || fail "with tollguard down, a call to 0201234567 should get 503"
uac uac.xml e2e 112 1 || fail "with tollguard down, the emergency call to 112 was not put through"
grep -q "emergency call .* to 112: relayed anyway" "$OUT/kamailio.log" \
    || fail "Kamailio did not say it relayed the emergency call without tollguard"
echo "   a call to 0201234567 refused with 503; the call to 112 answered and hung up"
echo "== SIP end to end: all passed"
