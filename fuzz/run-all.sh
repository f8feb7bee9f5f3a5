#!/usr/bin/env bash
# Runs every fuzz target briefly: fuzz/run-all.sh [SECONDS] [TARGET...]   (default 30 s each)
#                  seeds the corpora only:  fuzz/run-all.sh --seed
#
# Seeds fuzz/corpus/<target>/ first: from ../shared/fixtures when it is there (read in place,
# never committed: fuzz/corpus is git-ignored; some fixtures are copyleft), from the project's own
# examples, and from a few inputs written here. Needs cargo-fuzz; on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets it pass its nightly flags (-Zsanitizer=address, ...).
# Exit status 1 when a target found a crash (its input is in fuzz/artifacts/<target>/).
set -uo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
fixtures=../shared/fixtures
targets_all=(asterisk freeswitch_csv freeswitch_json cucm generic dialplan_normalise rate_deck rate_cost risk_list)

# seed TARGET FILE...: the first 16 KiB of each existing file into fuzz/corpus/TARGET/
seed() {
    local t=$1 f
    shift
    mkdir -p "fuzz/corpus/$t"
    for f in "$@"; do
        [ -f "$f" ] && head -c 16384 "$f" >"fuzz/corpus/$t/seed-$(basename "$f")"
    done
    return 0
}
# put TARGET NAME TEXT: one input written here (printf format)
put() {
    mkdir -p "fuzz/corpus/$1"
    printf "$3" >"fuzz/corpus/$1/seed-$2"
}

seed_all() {
    seed asterisk "$fixtures"/asterisk/*.csv examples/quickstart/Master.csv
    seed freeswitch_csv "$fixtures"/freeswitch/Master_*.csv
    seed freeswitch_json "$fixtures"/freeswitch/*.json
    seed cucm "$fixtures"/cucm/*.txt
    seed generic "$fixtures"/datasets/cdr-stats_CDRImport-2015-10-26.csv
    put generic rfc3339 'callid;accountcode;caller_id_number;destination_number;starting_date;duration;hangup_cause_id;answersec;waitsec\nx1;acme;210;+31201234567;2024-01-02T10:00:00+01:00;60;16;2024-01-02T10:00:05+01:00;2024-01-02T10:01:00+01:00\n'
    put generic epoch 'switch,callid,accountcode,caller_id_number,destination_number,dialcode,channel,starting_date,answersec,progresssec,hangup_cause,hangup_cause_id,duration,billsec\nsw1,,acme,210,0031201234567,31,SIP/210,1700000000,1700000005,1700000065,NORMAL_CLEARING,16,65,60\n'
    local i=0 n
    for n in 0201234567 '+31 20 123 4567' 'sip:+31201234567@pbx.example;user=phone' 'tel:+1-212-555-1234' \
        9011670771234567 912125551234 9911 810670771234567 84951234567 '*97' 201 '00 (49) 30/1234567'; do
        put dialplan_normalise "n$i" "$n"
        i=$((i + 1))
    done
    seed rate_deck examples/quickstart/rates.csv
    put rate_deck dated 'prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s,effective_from,currency\n+31,NL,0.0120,0,60,60,,EUR\n31,NL,0.0100,0.05,30,6,2024-07-01,USD\n316,NL mobile,0.065,0,1,1,2024-07-01T00:00:00+02:00,\n'
    put rate_deck wide 'prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s\n882,Intl networks,1234567890.1234567890,99999999.9999,0,1\n8821,Sat,0.00000000000000000001,0,4294967295,4294967295\n'
    mkdir -p fuzz/corpus/rate_cost
    cp fuzz/corpus/rate_deck/seed-* fuzz/corpus/rate_cost/
    seed risk_list crates/tollguard-core/data/risk.csv "$fixtures"/fraud_lists/kazoo_nanp_offshore_premium_blacklist.csv
}

if [ "${1:-}" = --seed ]; then
    seed_all
    exit 0
fi
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${targets_all[@]}")

seed_all
cargo fuzz build || exit 2
failed=()
mkdir -p fuzz/target/run-all
for t in "${targets[@]}"; do
    log=fuzz/target/run-all/$t.log
    echo "== $t: ${secs}s (log: $log)"
    # -timeout: an input that takes 10 s is reported as a hang (a reader that never ends)
    cargo fuzz run "$t" -- -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    status=$?
    grep -E 'stat::number_of_executed_units|panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|Reproduce with' "$log"
    grep -E '^#[0-9]+' "$log" | tail -n 1
    [ $status -ne 0 ] && failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s each without a crash"
