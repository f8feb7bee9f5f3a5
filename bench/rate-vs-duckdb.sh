#!/usr/bin/env bash
# tollguard rate against DuckDB on the same Asterisk Master.csv and the same 500-row deck.
#
#   bash bench/rate-vs-duckdb.sh [ROWS]        (default 5000000)
#
# Environment: REPEAT=3 (runs of each timed command; the best is reported),
#              SAMPLE=10000 (rows of the file used to check that both give the same costs).
#
# What it does:
#   1. installs duckdb for Python if missing (pip install duckdb);
#   2. cargo build --release -p tollguard;
#   3. generates ROWS rows and the deck with bench/gen-asterisk.py, cached in target/bench-data/;
#   4. checks on a SAMPLE-row file that tollguard and DuckDB price every call the same;
#   5. times, best of REPEAT, with the file in the page cache:
#        (a) tollguard rate ... --out /dev/null                      (whole process)
#        (b) the same pinned to one core with taskset -c 0
#        (c) DuckDB (Python API, default threads) computing the same per-call longest-prefix
#            cost and writing the same kind of CSV to /dev/null      (query only: the Python
#            start and `import duckdb` are not counted), see bench/duckdb-rate.py
#        (d) the same DuckDB query with SET threads = 1
#        (e) DuckDB --form=keys: the longest prefix found once per distinct 6-digit head of the
#            numbers instead of once per call (same result, a cleverer query), default threads
#      and prints wall and CPU times, rows/s, MB/s and the ratio DuckDB / tollguard.
set -euo pipefail

ROWS="${1:-5000000}"
REPEAT="${REPEAT:-3}"
SAMPLE="${SAMPLE:-10000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="$ROOT/target/bench-data"
calc() { awk "BEGIN { print ($*) }"; }  # (parenthesised: a bare > would redirect)
mkdir -p "$DATA"

if ! python3 -c 'import duckdb' 2>/dev/null; then
    echo "== installing duckdb (pip install duckdb)"
    pip install --quiet duckdb
fi

echo "== cargo build --release -p tollguard"
cargo build --release -p tollguard
BIN="$ROOT/target/release/tollguard"

gen() { # ROWS -> prints the path of the cached Master.csv; the deck is $DATA/deck.csv
    local n="$1" f="$DATA/master-$1.csv"
    if [[ ! -s "$f" || ! -s "$DATA/deck.csv" ]]; then
        echo "== generating $n rows -> $f" >&2
        local t0=$(date +%s.%N)
        python3 bench/gen-asterisk.py "$n" "$f.tmp" "$DATA/deck.csv"
        mv "$f.tmp" "$f"
        echo "   generated in $(calc "$(date +%s.%N) - $t0") s" >&2
    fi
    echo "$f"
}

MASTER="$(gen "$ROWS")"
SAMPLE_FILE="$(gen "$SAMPLE")"
DECK="$DATA/deck.csv"
BYTES=$(stat -c %s "$MASTER")
echo "== input: $MASTER ($ROWS rows, $((BYTES / 1000000)) MB), deck $DECK ($(($(wc -l <"$DECK") - 1)) rows)"

# The DuckDB side is bench/duckdb-rate.py: one SQL statement, same work, see its docstring.
DUCK=(python3 "$ROOT/bench/duckdb-rate.py")

# ---------------------------------------------------------------------------------------------
echo "== check: $SAMPLE rows, tollguard and DuckDB must price every call the same"
"$BIN" rate --cdr "$SAMPLE_FILE" --format asterisk --rates "$DECK" --country NL --tz Europe/Amsterdam \
    --out "$DATA/check-tollguard.csv" 2>"$DATA/check-tollguard.log"
for form in unnest keys; do
    echo "   -- duckdb --form=$form"
    "${DUCK[@]}" "$SAMPLE_FILE" "$DECK" "$DATA/check-duckdb.csv" 1 --form=$form >/dev/null
    python3 - "$DATA/check-tollguard.csv" "$DATA/check-duckdb.csv" <<'PY'
import sys, duckdb
tg, dk = sys.argv[1], sys.argv[2]
con = duckdb.connect()
opts = "header = true, all_varchar = true"
con.execute(f"CREATE TABLE tg AS SELECT * FROM read_csv('{tg}', {opts})")
con.execute(f"CREATE TABLE dk AS SELECT * FROM read_csv('{dk}', {opts})")
t_tg, n_tg = con.execute("SELECT sum(cost::DECIMAL(18,4)), count(cost) FROM tg").fetchone()
t_dk, n_dk = con.execute("SELECT sum(cost::DECIMAL(18,4)), count(cost) FROM dk").fetchone()
rows_tg, rows_dk = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tg", "dk")]
diff = con.execute("""
    SELECT count(*) FILTER (WHERE coalesce(tg.cost, '') <> coalesce(dk.cost, '')),
           count(*) FILTER (WHERE coalesce(tg.prefix, '') <> coalesce(dk.prefix, '')),
           count(*) FILTER (WHERE tg.call_id IS NULL OR dk.call_id IS NULL)
    FROM tg FULL JOIN dk USING (call_id)""").fetchone()
print(f"   rows out: tollguard {rows_tg}, duckdb {rows_dk}")
print(f"   priced calls: tollguard {n_tg}, duckdb {n_dk}")
print(f"   total cost:   tollguard {t_tg}, duckdb {t_dk}")
print(f"   rows whose cost differs: {diff[0]}, whose prefix differs: {diff[1]}, missing on one side: {diff[2]}")
if diff[0]:
    for r in con.execute("""SELECT tg.call_id, tg.dialled, tg.e164, tg.prefix, dk.prefix, tg.billsec, tg.cost, dk.cost
                            FROM tg JOIN dk USING (call_id) WHERE coalesce(tg.cost, '') <> coalesce(dk.cost, '')
                            LIMIT 10""").fetchall():
        print("   differs:", r)
print("   AGREE" if t_tg == t_dk and diff == (0, 0, 0) else "   DIFFER (see above)")
PY
done
sed -n 's/^/   tollguard: /p' "$DATA/check-tollguard.log" | head -2

# ---------------------------------------------------------------------------------------------
echo "== warming the page cache"
cat "$MASTER" >/dev/null

# Other processes' share of the machine while a command ran, from /proc/stat less the command's
# own CPU time: a figure taken while something else was busy is flagged (the machine has 2 cores).
HZ=$(getconf CLK_TCK)
busy() { local _c u n s i w q sq st; read -r _c u n s i w q sq st _ </proc/stat; echo "$((u + n + s + q + sq + st)) $((u + n + s + i + w + q + sq + st))"; }
OTHERS_MAX=0

timed() { # command... -> "WALL CPU OTHERS%" (CPU = user + sys of the command)
    local b1 t1 b2 t2 out wall u sys others
    read -r b1 t1 < <(busy)
    out=$( { TIMEFORMAT='%R %U %S'; time "$@" >"$DATA/last.out" 2>"$DATA/last.log"; } 2>&1 )
    read -r b2 t2 < <(busy)
    read -r wall u sys <<<"$out"
    others=$(calc "100 * (($b2 - $b1) - ($u + $sys) * $HZ) / ($t2 - $t1)")
    echo "$wall $(calc "$u + $sys") $others"
}

note_others() { # OTHERS% -> warns and remembers the worst
    if (($(calc "$1 > 5"))); then echo "   warning: other processes used ${1}% of the machine during this run" >&2; fi
    if (($(calc "$1 > $OTHERS_MAX"))); then OTHERS_MAX=$1; fi
}

best_of() { # command... -> R_WALL, R_CPU of the fastest of REPEAT runs
    local wall c o
    R_WALL="" R_CPU=""
    for _ in $(seq "$REPEAT"); do
        read -r wall c o < <(timed "$@")
        printf '   run: %s s wall, %s s CPU, other processes %.1f%%\n' "$wall" "$c" "$o"
        note_others "$o"
        if [[ -z "$R_WALL" ]] || (($(calc "$wall < $R_WALL"))); then R_WALL=$wall R_CPU=$c; fi
    done
}

duck_best_of() { # duckdb-rate.py options... -> R_WALL, R_CPU, R_THREADS of the fastest query of REPEAT runs
    local w c th o
    R_WALL="" R_CPU="" R_THREADS=""
    for _ in $(seq "$REPEAT"); do
        read -r _ _ o < <(timed "${DUCK[@]}" "$MASTER" "$DECK" /dev/null 1 "$@")
        read -r w c th _ <"$DATA/last.out"
        printf '   run: %s s wall, %s s CPU (query), other processes %.1f%%\n' "$w" "$c" "$o"
        note_others "$o"
        if [[ -z "$R_WALL" ]] || (($(calc "$w < $R_WALL"))); then R_WALL=$w R_CPU=$c R_THREADS=$th; fi
    done
}

TG=("$BIN" rate --cdr "$MASTER" --format asterisk --rates "$DECK" --country NL --tz Europe/Amsterdam --out /dev/null)
echo "== (a) tollguard rate, best of $REPEAT: ${TG[*]}"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
best_of "${TG[@]}"
T_TG=$R_WALL C_TG=$R_CPU
sed -n 's/^/   /p' "$DATA/last.log" | head -2
echo "== (b) the same with taskset -c 0 (one core)"
best_of taskset -c 0 "${TG[@]}"
T_TG1=$R_WALL C_TG1=$R_CPU
echo "== (c) DuckDB $(python3 -c 'import duckdb; print(duckdb.__version__)'), default threads, best of $REPEAT (query only)"
duck_best_of
T_DK=$R_WALL C_DK=$R_CPU DK_THREADS=$R_THREADS
echo "== (d) DuckDB with SET threads = 1, best of $REPEAT (query only)"
duck_best_of --threads=1
T_DK1=$R_WALL C_DK1=$R_CPU
echo "== (e) DuckDB --form=keys (longest prefix of the distinct 6-digit heads only), default threads"
duck_best_of --form=keys
T_DKK=$R_WALL C_DKK=$R_CPU
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== results: $ROWS rows, $((BYTES / 1000000)) MB, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
printf '   %-32s %8s  %8s  %10s  %8s\n' "" "wall s" "CPU s" "rows/s" "MB/s"
row() { printf '   %-32s %8.3f  %8.3f  %10.0f  %8.1f\n' "$1" "$2" "$3" "$(calc "$ROWS / $2")" "$(calc "$BYTES / $2 / 1000000")"; }
row "tollguard rate" "$T_TG" "$C_TG"
row "tollguard rate (taskset -c 0)" "$T_TG1" "$C_TG1"
row "duckdb ($DK_THREADS threads)" "$T_DK" "$C_DK"
row "duckdb (1 thread)" "$T_DK1" "$C_DK1"
row "duckdb --form=keys ($DK_THREADS threads)" "$T_DKK" "$C_DKK"
printf '   ratio duckdb / tollguard, wall: %.2f (tollguard on one core: %.2f); CPU: %.2f\n' \
    "$(calc "$T_DK / $T_TG")" "$(calc "$T_DK / $T_TG1")" "$(calc "$C_DK / $C_TG")"
printf '   one core each (duckdb 1 thread / tollguard taskset -c 0), wall: %.2f\n' "$(calc "$T_DK1 / $T_TG1")"
printf '   duckdb --form=keys / tollguard, wall: %.2f\n' "$(calc "$T_DKK / $T_TG")"
if (($(calc "$OTHERS_MAX > 5"))); then
    echo "   NOTE: other processes used up to ${OTHERS_MAX}% of the machine during some runs: rerun on an idle machine"
else
    echo "   (other processes used at most ${OTHERS_MAX}% of the machine during the timed runs)"
fi
