#!/usr/bin/env python3
"""The DuckDB baseline of `tollguard rate`: the same per-call longest-prefix cost in one SQL statement.

    python3 bench/duckdb-rate.py MASTER_CSV DECK_CSV OUT [REPEAT] [--form=unnest|keys|joins] [--threads=N]

Reads the Asterisk cdr_csv file, normalises the dialled number the simple Dutch way
(0 + national -> 31 + rest; 00 + international -> rest; extensions, short numbers and calls from
the trunk are not priced), finds the longest deck prefix, applies the contract's cost rule exactly
(billsec 0 -> 0; billed = initial if billsec <= initial else initial + ceil((billsec - initial) /
subsequent) * subsequent; cost = fee + rate * billed / 60 rounded once to 4 dp, half away from
zero) and writes one CSV row per CDR to OUT (/dev/null for timing).

Longest prefix, three forms (all equality hash joins; a non-equi starts_with join is ~3x slower):
  unnest (default): cdr x range(1, 7) joined on prefix = left(e164, n), the longest deck row kept
                    with arg_max per call, joined back to the calls on call_id;
  keys:             the same, but over the distinct 6-digit heads left(e164, 6) of the numbers
                    (far fewer than calls), joined back on the head: same result, less work;
  joins:            six LEFT JOINs, one per prefix length, coalesced longest first (slowest).

Prints "WALL_S CPU_S THREADS VERSION": the fastest of REPEAT runs of the statement alone (the Python
start, `import duckdb` and loading the 500-row deck are not counted; CPU is the process's user + sys
time over all threads). Default threads: all cores; --threads=1 for a one-core figure.
"""

import sys
import time

import duckdb

CDR_COLUMNS = [
    ("accountcode", "VARCHAR"), ("src", "VARCHAR"), ("dst", "VARCHAR"), ("dcontext", "VARCHAR"),
    ("clid", "VARCHAR"), ("channel", "VARCHAR"), ("dstchannel", "VARCHAR"), ("lastapp", "VARCHAR"),
    ("lastdata", "VARCHAR"), ("start", "TIMESTAMP"), ("answer", "TIMESTAMP"), ("end", "TIMESTAMP"),
    ("duration", "INTEGER"), ("billsec", "INTEGER"), ("disposition", "VARCHAR"),
    ("amaflags", "VARCHAR"), ("uniqueid", "VARCHAR"), ("userfield", "VARCHAR"),
]
DECK_COLUMNS = [
    ("prefix", "VARCHAR"), ("destination", "VARCHAR"), ("rate_per_minute", "DECIMAL(12,4)"),
    ("connection_fee", "DECIMAL(12,4)"), ("initial_increment_s", "INTEGER"),
    ("subsequent_increment_s", "INTEGER"),
]


def columns(cols):
    return "{" + ", ".join(f"'{c}': '{t}'" for c, t in cols) + "}"


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def query(master, out, form):
    cdr = f"""
    cdr AS (
      SELECT uniqueid AS call_id, accountcode AS account, src AS source, dst AS dialled, billsec,
        CASE
          WHEN dcontext IN ('from-trunk', 'from-pstn', 'from-external', 'from-did') THEN NULL
          WHEN NOT regexp_full_match(dst, '[0-9]+') THEN NULL
          WHEN starts_with(dst, '00') AND length(dst) BETWEEN 9 AND 17 THEN substr(dst, 3)
          WHEN starts_with(dst, '0') AND NOT starts_with(dst, '00')
               AND length(dst) BETWEEN 6 AND 12 THEN '31' || substr(dst, 2)
        END AS e164
      FROM read_csv({lit(master)}, header = false, auto_detect = false, delim = ',',
                    quote = '"', escape = '"', columns = {columns(CDR_COLUMNS)})
    )"""
    deck_cols = ", ".join(f"b.d.{c} AS {c}" for c, _ in DECK_COLUMNS)
    if form == "unnest":
        matched = f"""{cdr},
    best AS (
      SELECT c.call_id, arg_max(d, r.n) AS d
      FROM cdr c, range(1, 7) r(n), deck d
      WHERE c.e164 IS NOT NULL AND d.prefix = left(c.e164, r.n)
      GROUP BY c.call_id
    ),
    matched AS (
      SELECT c.*, {deck_cols} FROM cdr c LEFT JOIN best b USING (call_id)
    )"""
    elif form == "keys":
        matched = f"""{cdr},
    keys AS (SELECT DISTINCT left(e164, 6) AS k FROM cdr WHERE e164 IS NOT NULL),
    best AS (
      SELECT k, arg_max(d, r.n) AS d
      FROM keys, range(1, 7) r(n), deck d
      WHERE d.prefix = left(k, r.n)
      GROUP BY k
    ),
    matched AS (
      SELECT c.*, {deck_cols} FROM cdr c LEFT JOIN best b ON b.k = left(c.e164, 6)
    )"""
    else:
        joins = "\n".join(
            f"      LEFT JOIN deck d{n} ON d{n}.prefix = left(c.e164, {n})" for n in range(6, 0, -1)
        )
        pick = lambda col: "coalesce(" + ", ".join(f"d{n}.{col}" for n in range(6, 0, -1)) + f") AS {col}"
        matched = f"""{cdr},
    matched AS (
      SELECT c.*, {", ".join(pick(col) for col, _ in DECK_COLUMNS)}
      FROM cdr c
{joins}
    )"""
    return f"""
COPY (
  WITH {matched},
  priced AS (
    SELECT *,
      CASE WHEN billsec = 0 THEN 0
           WHEN billsec <= initial_increment_s THEN initial_increment_s
           ELSE initial_increment_s
                + ((billsec - initial_increment_s + subsequent_increment_s - 1) // subsequent_increment_s)
                  * subsequent_increment_s
      END AS billed
    FROM matched
  )
  SELECT call_id, account, source, dialled, '+' || e164 AS e164, prefix, billsec,
    CASE WHEN prefix IS NULL THEN NULL
         WHEN billsec = 0 THEN 0.0000::DECIMAL(18, 4)
         -- N = 60 fee + rate billed, in units of 1e-4, is an integer; cost = round(N / 60) * 1e-4,
         -- half away from zero, in integers (DuckDB divides DECIMALs as DOUBLE)
         ELSE ((CAST((connection_fee * 60 + rate_per_minute * billed) * 10000 AS HUGEINT) + 30) // 60)
              * 0.0001::DECIMAL(5, 4)
    END AS cost
  FROM priced
) TO {lit(out)} (FORMAT csv, HEADER true)
"""


def main(argv):
    form = "unnest"
    threads = None
    args = []
    for a in argv[1:]:
        if a.startswith("--form="):
            form = a.split("=", 1)[1]
        elif a.startswith("--threads="):
            threads = int(a.split("=", 1)[1])
        else:
            args.append(a)
    if len(args) not in (3, 4) or form not in ("unnest", "keys", "joins"):
        sys.stderr.write(__doc__)
        return 2
    master, deck, out = args[:3]
    repeat = int(args[3]) if len(args) == 4 else 1
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute(
        f"CREATE TABLE deck AS SELECT * FROM read_csv({lit(deck)}, header = true, auto_detect = false, "
        f"columns = {columns(DECK_COLUMNS)})"
    )
    sql = query(master, out, form)
    best = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        con.execute(sql)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or dt < best[0]:
            best = (dt, cpu)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"{best[0]:.3f} {best[1]:.3f} {threads} {duckdb.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
