//! The `tollguard` binary, end to end: golden files for every real sample in ../shared/fixtures,
//! and the exact messages of bad input.
//!
//! Golden files live in `tests/golden/`; `UPDATE_GOLDEN=1 cargo test -p tollguard --test cli`
//! rewrites them (then review the diff).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollguard"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> Option<PathBuf> {
    let p = root().join("../shared/fixtures").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} not found (CI has ../shared/fixtures beside the project)", p.display());
        None
    }
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("run tollguard");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Compares `actual` with the golden file, or rewrites it with UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if want != actual {
        // The first line that differs (some golden files are thousands of lines long).
        let (n, w, g) = want
            .split_inclusive('\n')
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(actual.split_inclusive('\n').map(Some).chain(std::iter::repeat(None)))
            .enumerate()
            .find(|(_, (w, g))| w != g)
            .map(|(i, (w, g))| (i + 1, w.unwrap_or("(end of file)"), g.unwrap_or("(end of file)")))
            .expect("two different texts differ in a line");
        panic!(
            "{name} differs from the golden file at line {n}\n--- want\n{w}\n--- got\n{g}\n\
             (if the change is intended: UPDATE_GOLDEN=1 cargo test -p tollguard --test cli, then review the diff)"
        );
    }
}

fn deck() -> String {
    root().join("examples/quickstart/rates.csv").display().to_string()
}

/// Rates a fixture and checks the CSV on stdout and the summary's last lines.
fn rate_fixture(rel: &str, golden_name: &str, extra: &[&str]) -> Option<(String, String)> {
    let f = fixture(rel)?;
    let f = f.display().to_string();
    let d = deck();
    let mut args = vec!["rate", "--cdr", f.as_str(), "--rates", d.as_str()];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    golden(golden_name, &csv);
    Some((csv, text(&out.stderr)))
}

#[test]
fn asterisk_public_samples() {
    let Some((csv, err)) = rate_fixture(
        "asterisk/master_csv_lines_from_public_code_comments.csv",
        "asterisk_public_samples.csv",
        &["--format", "asterisk", "--tz", "Europe/Amsterdam", "--country", "NL"],
    ) else {
        return;
    };
    assert_eq!(csv.lines().count(), 6);
    assert!(err.contains("malformed 0"), "{err}");
}

#[test]
fn asterisk_cdr_custom_variant_is_refused_row_by_row() {
    let Some((csv, err)) = rate_fixture(
        "asterisk/Master_KelySaina_cdr_custom_variant.csv",
        "asterisk_cdr_custom_variant.csv",
        &["--format", "asterisk", "--country", "NL"],
    ) else {
        return;
    };
    assert_eq!(csv.lines().count(), 1, "header only");
    assert!(
        err.contains("Master_KelySaina_cdr_custom_variant.csv:1: expected 16, 18 or 21 columns"),
        "{err}"
    );
    assert!(err.contains("malformed 14"), "{err}");
}

#[test]
fn freeswitch_csv_docs_example() {
    let Some((csv, _)) = rate_fixture(
        "freeswitch/Master_csv_example_template_from_docs.csv",
        "freeswitch_csv_docs_example.csv",
        &["--format", "freeswitch-csv", "--country", "ES", "--tz", "Europe/Madrid"],
    ) else {
        return;
    };
    // 0034..., +34..., 34... and 00034...: the first three are the same Spanish mobile
    let e164: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').nth(4).unwrap()).collect();
    assert_eq!(e164, ["+34688886392", "+34688886392", "+34688886392", "+34688886392", ""]);
}

#[test]
fn freeswitch_excel_mangled_gets_clear_errors() {
    let Some((csv, err)) = rate_fixture(
        "freeswitch/Master_Kxingyunliushui_excel_mangled.csv",
        "freeswitch_excel_mangled.csv",
        &["--format", "freeswitch-csv", "--country", "CN"],
    ) else {
        return;
    };
    assert_eq!(csv.lines().count(), 1, "header only");
    assert!(
        err.contains("Master_Kxingyunliushui_excel_mangled.csv:1: field start_stamp: not a date-time YYYY-MM-DD HH:MM:SS: \"2020/2/10 22:41\" (re-saved by a spreadsheet?)"),
        "{err}"
    );
    assert!(err.contains("malformed 10"), "{err}");
}

#[test]
fn freeswitch_json_bodies() {
    for (rel, name) in [
        ("freeswitch/json_cdr_cgrates_fscdr_test.json", "freeswitch_json_fscdr.csv"),
        ("freeswitch/json_cdr_cgrates_fsevent_test_pair.json", "freeswitch_json_fsevent_pair.csv"),
    ] {
        let Some((csv, err)) = rate_fixture(rel, name, &["--format", "freeswitch-json", "--country", "US"])
        else {
            return;
        };
        assert_eq!(csv.lines().count(), 2, "{err}");
    }
}

#[test]
fn cucm_sample() {
    let Some((csv, _)) = rate_fixture(
        "cucm/cdr_sieteunoseis_cdr-examples.txt",
        "cucm_sample.csv",
        &["--format", "cucm", "--country", "US"],
    ) else {
        return;
    };
    assert_eq!(csv.lines().count(), 4);
}

#[test]
fn generic_cdr_stats_import() {
    let Some(f) = fixture("datasets/cdr-stats_CDRImport-2015-10-26.csv") else { return };
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cdr-stats.toml");
    let out = run(&[
        "rate",
        "--cdr",
        f.to_str().unwrap(),
        "--format",
        "generic",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    golden("generic_cdr_stats.csv", &text(&out.stdout));
}

/// The folder Cargo gives this crate's integration tests for their files (`target/tmp`):
/// each run replaces the last one's, and nothing is left in the system's temporary folder.
fn tmp() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(env!("CARGO_PKG_NAME"))
}

/// An empty folder of its own for a test, in [`tmp`].
fn scratch(name: &str) -> PathBuf {
    let dir = tmp().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_tmp(name: &str, body: &str) -> PathBuf {
    let dir = tmp().join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// `tollguard rate` of an Asterisk file on the quickstart deck, dialled in the Netherlands.
fn rate_nl(cdr: &Path) -> Output {
    let d = deck();
    run(&["rate", "--cdr", cdr.to_str().unwrap(), "--format", "asterisk", "--rates", &d, "--country", "NL"])
}

#[test]
fn the_summary_names_non_geographic_ranges_by_calling_code() {
    // Inmarsat (+870), Iridium (+8816) and +883 share the ISO code "001": the summary must tell
    // them apart. 61 s each, in 60/60: two minutes.
    let row = |id: &str, to: &str| {
        format!(
            "\"acme\",\"210\",\"{to}\",\"from-internal\",\"\",\"SIP/210-1\",\"SIP/trunk-1\",\"Dial\",\"\",\
             \"2011-06-11 23:10:00\",\"2011-06-11 23:10:05\",\"2011-06-11 23:11:06\",66,61,\"ANSWERED\",\"DOCUMENTATION\",\"{id}\",\"\"\n"
        )
    };
    let text_in =
        [row("s1", "00870772123456"), row("s2", "008816312345678"), row("s3", "008835100123456")].concat();
    let cdr = write_tmp("satellite.csv", &text_in);
    let out = rate_nl(&cdr);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("by country (cost, first deck): +881 1 calls 15.8000; +870 1 calls 13.0000; +883 1 calls 7.8000\n"),
        "{err}"
    );
}

#[test]
fn the_2011_pattern_is_priced_exactly() {
    // Our own rows: a call to East Timor of 61 s at 1.45/min in 60/60 costs 2.9000.
    let cdr = write_tmp(
        "tl.csv",
        "\"acme\",\"210\",\"0067077123456\",\"from-internal\",\"\",\"SIP/210-1\",\"SIP/trunk-1\",\"Dial\",\"\",\"2011-06-11 23:10:00\",\"2011-06-11 23:10:05\",\"2011-06-11 23:11:06\",66,61,\"ANSWERED\",\"DOCUMENTATION\",\"t1\",\"\"\n\
\"acme\",\"210\",\"0067077123457\",\"from-internal\",\"\",\"SIP/210-2\",\"SIP/trunk-2\",\"Dial\",\"\",\"2011-06-11 23:12:00\",,\"2011-06-11 23:12:30\",30,0,\"NO ANSWER\",\"DOCUMENTATION\",\"t2\",\"\"\n\
\"acme\",\"210\",\"00999123456\",\"from-internal\",\"\",\"SIP/210-3\",\"SIP/trunk-3\",\"Dial\",\"\",\"2011-06-11 23:13:00\",\"2011-06-11 23:13:01\",\"2011-06-11 23:14:00\",60,59,\"ANSWERED\",\"DOCUMENTATION\",\"t3\",\"\"\n\
\"acme\",\"210\",\"0048221234567\",\"from-internal\",\"\",\"SIP/210-4\",\"SIP/trunk-4\",\"Dial\",\"\",\"2011-06-11 23:15:00\",\"2011-06-11 23:15:01\",\"2011-06-11 23:16:00\",60,59,\"ANSWERED\",\"DOCUMENTATION\",\"t4\",\"\"\n",
    );
    let out = rate_nl(&cdr);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[1], "t1,acme,210,0067077123456,+67077123456,TL,mobile,critical,670,61,2.9000");
    assert_eq!(lines[2], "t2,acme,210,0067077123457,+67077123457,TL,mobile,critical,670,0,0.0000");
    // 00999...: no such country code: invalid, not priced, not silently zero
    assert_eq!(lines[3], "t3,acme,210,00999123456,,,invalid,,,59,");
    // Poland is not in the quickstart deck: unrated, cost empty, counted
    assert_eq!(lines[4], "t4,acme,210,0048221234567,+48221234567,PL,fixed,low,,59,");
    let err = text(&out.stderr);
    assert!(err.contains("priced 2  cost EUR 2.9000  unrated 1"), "{err}");
}

#[test]
fn price_one_call() {
    let d = deck();
    let out = run(&[
        "price",
        "--rates",
        &d,
        "--to",
        "+670 77 123 456",
        "--time",
        "2011-06-11T23:10:00+02:00",
        "--usage",
        "61s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2.9000\n");
    let out = run(&[
        "price",
        "--rates",
        &d,
        "--to",
        "+48221234567",
        "--time",
        "2011-06-11T23:10:00Z",
        "--usage",
        "61s",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "error: UNRATED_DESTINATION\n");
    // Not a number: the code on the first line, why on the next.
    let price = |to: &str, country: &[&str]| {
        let mut args =
            vec!["price", "--rates", &d, "--to", to, "--time", "2011-06-11T23:10:00Z", "--usage", "61s"];
        args.extend_from_slice(country);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(3), "{to}");
        text(&out.stderr)
    };
    assert_eq!(
        price("0201234567", &[]),
        "error: NOT_A_NUMBER\n  \"0201234567\" is not an international number (+ or 00 and a country code); \
         a national one needs --country\n"
    );
    assert_eq!(
        price("+99912345678", &["--country", "NL"]),
        "error: NOT_A_NUMBER\n  \"+99912345678\" is not a telephone number dialled in NL\n"
    );
}

#[test]
fn price_on_a_cgrates_plan() {
    let Some(dir) = fixture("cgrates/tariffplans") else { return };
    let plan = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let tutorial = plan("tutorial");
    let price = |p: &str, extra: &[&str]| {
        let mut args = vec!["price", "--cgrates-plan", p, "--time", "2024-05-15T12:00:00Z"];
        args.extend_from_slice(extra);
        run(&args)
    };
    // T1 of CGRateS's own tests: 0.4 connect + 0.2 + 60 x 0.00167.
    let out = price(
        &tutorial,
        &["--category", "call", "--subject", "1001", "--destination", "1002", "--usage", "120s"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0.7002\n");
    // The same call summed exactly, rounded once.
    let out = price(
        &tutorial,
        &["--subject", "1001", "--destination", "1002", "--usage", "120s", "--rounding", "total"],
    );
    assert_eq!(text(&out.stdout), "0.7000\n");
    // T4: *disconnect leaves the cost alone.
    let out =
        price(&tutorial, &["--rating-plans", "RP_1001;RP_1002", "--destination", "1003", "--usage", "1h"]);
    assert_eq!(text(&out.stdout), "36.0000\n");
    let out = price(&plan("tutorial2"), &["--subject", "1001", "--destination", "4003", "--usage", "1m"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "error: UNAUTHORIZED_DESTINATION\n");
    let out = price(
        &tutorial,
        &["--tenant", "nobody.org", "--subject", "1001", "--destination", "1002", "--usage", "1m"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "error: RATING_PLAN_NOT_FOUND\n");
}

#[test]
fn rate_and_replay_on_a_cgrates_plan() {
    let ex = root().join("examples");
    let cdr = ex.join("2011-pbx-hack/Master.csv");
    let plan = ex.join("cgrates-plan");
    let common =
        ["--cdr", cdr.to_str().unwrap(), "--format", "asterisk", "--cgrates-plan", plan.to_str().unwrap()];
    let local = ["--tz", "Europe/Amsterdam", "--country", "NL"];
    let out = run(&[&["rate"][..], &common, &local].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = text(&out.stdout);
    // 2685 s to East Timor: a whole first minute at 1.45, then 2625 s at round5(1.45 / 60).
    assert!(
        rows.contains(
            "1307833500.1443,bouwbedrijf,213,006707757449,+6707757449,TL,mobile,critical,670,2685,64.8963\n"
        ),
        "{rows}"
    );
    assert!(
        text(&out.stderr).contains("priced 3891  cost EUR 172399.7148  unrated 45"),
        "{}",
        text(&out.stderr)
    );
    let (decisions, _, err) = replay(&[&common[..], &local].concat());
    assert!(err.contains("cost as recorded EUR 172399.7148"), "{err}");
    assert_eq!(decisions.lines().count(), 4289);

    // MaxCost *disconnect: 0.03 a minute per second, MaxCost 0.06: the call may last 120 s.
    let dir = scratch("cgr");
    for f in ["Timings.csv", "Destinations.csv", "Rates.csv", "RatingPlans.csv", "RatingProfiles.csv"] {
        std::fs::copy(plan.join(f), dir.join(f)).unwrap();
    }
    let rates = std::fs::read_to_string(plan.join("DestinationRates.csv")).unwrap();
    std::fs::write(
        dir.join("DestinationRates.csv"),
        rates.replace("DR_EU,DST_DE,RT_EU,*up,4,,", "DR_EU,DST_DE,RT_EU,*up,4,0.06,*disconnect"),
    )
    .unwrap();
    let one = write_tmp(
        "cgr-one.csv",
        "\"acme\",\"201\",\"00492211234567\",\"from-internal\",\"\"\"201\"\" <201>\",\"SIP/201-1\",\"SIP/trunk-1\",\"Dial\",\"SIP/trunk/00492211234567\",\"2024-05-15 10:00:00\",\"2024-05-15 10:00:05\",\"2024-05-15 10:05:05\",305,300,\"ANSWERED\",\"DOCUMENTATION\",\"1715767200.1\",\"\"\n",
    );
    let (decisions, _, err) = replay(&[
        "--cdr",
        one.to_str().unwrap(),
        "--format",
        "asterisk",
        "--cgrates-plan",
        dir.to_str().unwrap(),
        "--country",
        "NL",
    ]);
    assert_eq!(
        decisions.trim(),
        r#"{"call_id":"1715767200.1","allowed":true,"max_duration_s":120,"rules":["tariff.max_cost"]}"#,
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reconcile_the_pbx_records_with_an_incomplete_carrier_export() {
    // Left: the 2011 example's PBX records (Asterisk, Amsterdam local time). Right: the carrier's
    // export of the same traffic in its own layout (its own ids, UTC epoch times, clocks 2 s
    // apart), with the East Timor calls of 12 June missing and some durations rounded otherwise.
    let ex = root().join("examples/2011-pbx-hack");
    let master = std::fs::read_to_string(ex.join("Master.csv")).unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let mut right = String::from("uuid,account,caller,called,start_epoch,duration,billsec,status\n");
    let (mut left_calls, mut dropped, mut longer, mut dropped_billsec) = (0u64, 0u64, 0u64, 0u64);
    let mut rd = csv::ReaderBuilder::new().has_headers(false).from_reader(master.as_bytes());
    for (n, rec) in rd.records().enumerate() {
        let r = rec.unwrap();
        left_calls += 1;
        let start: jiff::civil::DateTime = r[9].parse().unwrap();
        let epoch = tz.to_timestamp(start).unwrap().as_second() + 2;
        let billsec: u32 = r[13].parse().unwrap();
        if r[2].starts_with("00670") && r[9].starts_with("2011-06-12") {
            dropped += 1;
            dropped_billsec += billsec as u64;
            continue;
        }
        // Every 50th call is 30 s longer at the carrier; every 7th 1 s longer (within tolerance).
        let b = if n % 50 == 0 && billsec > 0 {
            longer += 1;
            billsec + 30
        } else if n % 7 == 0 && billsec > 0 {
            billsec + 1
        } else {
            billsec
        };
        right.push_str(&format!(
            "carrier-{n},{},{},{},{epoch},{},{b},{}\n",
            &r[0],
            &r[1],
            &r[2],
            b + 8,
            &r[14]
        ));
    }
    assert!(dropped > 100 && longer > 10);
    let carrier = write_tmp("carrier.csv", &right);
    let cfg = write_tmp(
        "reconcile.toml",
        "[generic_csv]\ncall_id = \"uuid\"\naccount = \"account\"\nsource = \"caller\"\ndialled = \"called\"\n\
         start = \"start_epoch\"\nduration = \"duration\"\nbillsec = \"billsec\"\ndisposition = \"status\"\ntime_format = \"epoch\"\n",
    );
    let dir = scratch("reconcile");
    let (calls, days) = (dir.join("calls.csv"), dir.join("days.csv"));
    let out = run(&[
        "reconcile",
        "--left",
        ex.join("Master.csv").to_str().unwrap(),
        "--left-format",
        "asterisk",
        "--right",
        carrier.to_str().unwrap(),
        "--right-format",
        "generic",
        "--config",
        cfg.to_str().unwrap(),
        "--rates",
        ex.join("rates.csv").to_str().unwrap(),
        "--tz",
        "Europe/Amsterdam",
        "--country",
        "NL",
        "--out",
        calls.to_str().unwrap(),
        "--days-out",
        days.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let days = std::fs::read_to_string(&days).unwrap();
    let total: Vec<&str> = days.lines().last().unwrap().split(',').collect();
    assert_eq!(total[0], "total");
    let n = |i: usize| total[i].parse::<u64>().unwrap();
    assert_eq!((n(1), n(2)), (left_calls, left_calls - dropped), "{days}");
    assert_eq!((n(3), n(4), n(5), n(6)), (left_calls - dropped, longer, dropped, 0), "{days}");
    let june12 = days.lines().find(|l| l.starts_with("2011-06-12,")).unwrap();
    assert!(june12.split(',').nth(5).unwrap().parse::<u64>().unwrap() == dropped, "{june12}");
    let rows = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(rows.lines().filter(|l| l.starts_with("left_only,")).count() as u64, dropped);
    // The cost of the gap is what the missing calls cost at the deck's rates: East Timor at 1.45 a
    // started minute.
    let missing: rust_decimal::Decimal = rows
        .lines()
        .filter(|l| l.starts_with("left_only,"))
        .map(|l| l.split(',').nth(8).unwrap().parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert!(missing > rust_decimal::Decimal::from(dropped_billsec / 60) * rust_decimal::Decimal::new(145, 2));
    assert!(text(&out.stdout).starts_with("day "), "{}", text(&out.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_names_file_and_line() {
    let deck = write_tmp(
        "bad-deck.csv",
        "prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s\n31,NL,0.02,0,60,60\n32,BE,0.0x,0,60,60\n",
    );
    let cdr = write_tmp("one.csv", "");
    let out = run(&[
        "rate",
        "--cdr",
        cdr.to_str().unwrap(),
        "--format",
        "asterisk",
        "--rates",
        deck.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!("error: {}:3: rate_per_minute: not a decimal amount: \"0.0x\"\n", deck.display())
    );
    // an input that cannot be read at all fails the run
    let out =
        run(&["rate", "--cdr", "/nonexistent/Master.csv", "--format", "asterisk", "--rates", &self::deck()]);
    assert_eq!(out.status.code(), Some(2));
    // The reason once, not again from the error's source.
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some("error: /nonexistent/Master.csv: No such file or directory (os error 2)"),
        "{}",
        text(&out.stderr)
    );
    // unknown format and unknown config keys are refused with their names
    let out = run(&["rate", "--cdr", "x", "--format", "asterix", "--rates", &self::deck()]);
    assert!(text(&out.stderr).contains("unknown format \"asterix\""), "{}", text(&out.stderr));
    let cfg = write_tmp(
        "bad.toml",
        "[defaults]\ncountry = \"NL\"\ntimezone = \"Europe/Amsterdam\"\ncurency = \"EUR\"\n",
    );
    let out = run(&["rate", "--cdr", "x", "--format", "asterisk", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown field `curency`"), "{}", text(&out.stderr));
}

/// Replays a file and returns (decisions, alerts, summary).
fn replay(args: &[&str]) -> (String, String, String) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // The process too: under cargo-nextest every test is a process of its own, counting from 0.
    let dir = scratch(&format!("replay-{}-{n}", std::process::id()));
    let dec = dir.join("decisions.jsonl");
    let al = dir.join("alerts.jsonl");
    let mut all: Vec<&str> = vec!["replay"];
    all.extend_from_slice(args);
    let (d, a) = (dec.to_str().unwrap().to_string(), al.to_str().unwrap().to_string());
    all.extend_from_slice(&["--decisions-out", &d, "--alerts-out", &a]);
    let out = run(&all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got =
        (std::fs::read_to_string(&dec).unwrap(), std::fs::read_to_string(&al).unwrap(), text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    got
}

#[test]
fn replay_quickstart_with_the_default_policy() {
    let cdr = root().join("examples/quickstart/Master.csv");
    let d = deck();
    let (decisions, alerts, summary) = replay(&[
        "--cdr",
        cdr.to_str().unwrap(),
        "--format",
        "asterisk",
        "--rates",
        &d,
        "--country",
        "NL",
        "--tz",
        "Europe/Amsterdam",
    ]);
    assert_eq!(decisions.lines().count(), 59, "one decision per CDR");
    golden("replay_quickstart_default.decisions.jsonl", &decisions);
    golden("replay_quickstart_default.alerts.jsonl", &alerts);
    assert!(summary.contains("cost as recorded EUR 766.9900  cost with tollguard EUR 4.2900"), "{summary}");
}

#[test]
fn replay_quickstart_with_a_500_a_day_limit_and_learning() {
    let cdr = root().join("examples/quickstart/Master.csv");
    let cfg = root().join("examples/quickstart/limit-500.toml");
    let (decisions, alerts, _) = replay(&[
        "--cdr",
        cdr.to_str().unwrap(),
        "--format",
        "asterisk",
        "--config",
        cfg.to_str().unwrap(),
        "--learn-until",
        "2011-06-11 12:00:00",
    ]);
    golden("replay_quickstart_500.decisions.jsonl", &decisions);
    golden("replay_quickstart_500.alerts.jsonl", &alerts);
    // emergency calls are allowed, always
    for line in decisions.lines().filter(|l| l.contains("\"emergency\"")) {
        assert!(line.contains("\"allowed\":true"), "{line}");
    }
}

#[test]
fn replay_output_is_the_same_every_run() {
    let cdr = root().join("examples/quickstart/Master.csv");
    let d = deck();
    let args = ["--cdr", cdr.to_str().unwrap(), "--format", "asterisk", "--rates", &d, "--country", "NL"];
    assert_eq!(replay(&args), replay(&args));
}

/// Three weeks of 20 simulated accounts from `start`, every scenario in them, in a fresh
/// temporary folder: its path.
fn simulated(name: &str, seed: u64, start: &str) -> PathBuf {
    let dir = tmp().join(format!("{name}-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    let (seed, d) = (seed.to_string(), dir.to_str().unwrap());
    let out = run(&[
        "simulate",
        "--seed",
        &seed,
        "--accounts",
        "20",
        "--days",
        "21",
        "--start",
        start,
        "--out-dir",
        d,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 3, failure_persistence: None, ..Default::default() })]
    /// On simulated traffic with every fraud scenario, replay gives the same decisions and
    /// alerts, byte for byte, on every run and for every number of threads.
    #[test]
    fn replay_is_the_same_every_run_and_for_any_number_of_threads(seed in 0u64..10_000, threads in 2usize..5) {
        let dir = simulated("threads", seed, "2026-01-12");
        let cdr = dir.join("Master.csv");
        let cfg = dir.join("tollguard.toml");
        let th = threads.to_string();
        let base = ["--cdr", cdr.to_str().unwrap(), "--format", "asterisk", "--config", cfg.to_str().unwrap()];
        let with = |n: &str| {
            let mut a = base.to_vec();
            a.extend_from_slice(&["--threads", n]);
            replay(&a)
        };
        let one = with("1");
        proptest::prop_assert!(!one.1.is_empty(), "the simulated traffic raised no alert: a weak test");
        proptest::prop_assert_eq!(&one, &with("1"));
        let many = with(&th);
        proptest::prop_assert_eq!(&one.0, &many.0);
        proptest::prop_assert_eq!(&one.1, &many.1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A record more than a day late in its file: the replay that reads as it goes stops, takes back
/// what it wrote, and replays the input read whole (the same result as on two threads, which
/// always reads whole); a malformed row is reported once all the same.
#[test]
fn replay_of_a_file_out_of_order_reads_it_whole() {
    let dir = simulated("late", 3, "2026-01-12");
    let csv = std::fs::read_to_string(dir.join("Master.csv")).unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    // The first call (Monday night) written last, after three weeks of calls; a bad row second.
    let first = lines.remove(0);
    lines.push(first);
    lines.insert(1, "\"acct001\",\"201\",\"0201234567\",\"from-internal\",bad");
    let n = lines.len();
    let late = dir.join("late.csv");
    std::fs::write(&late, lines.join("\n") + "\n").unwrap();
    let cfg = dir.join("tollguard.toml");
    let base = ["--cdr", late.to_str().unwrap(), "--format", "asterisk", "--config", cfg.to_str().unwrap()];
    let one = replay(&base);
    let mut two_args = base.to_vec();
    two_args.extend_from_slice(&["--threads", "2"]);
    let two = replay(&two_args);
    // What was written before the late record was found is taken back.
    assert_eq!(one.0.lines().count(), n - 1, "one decision per record read");
    assert!(one.0 == two.0, "decisions differ from those on two threads");
    assert_eq!(one.1, two.1);
    let note = format!("note: {}:{n} starts more than 24 hours before a record above it", late.display());
    assert!(one.2.contains(&note), "{}", one.2);
    assert_eq!(one.2.matches("skipped malformed row").count(), 1, "{}", one.2);
    assert!(one.2.contains(&format!("{}:2: ", late.display())), "{}", one.2);
    // The same records in their order: read as it goes, no note, the same decisions.
    let inorder = replay(&[
        "--cdr",
        dir.join("Master.csv").to_str().unwrap(),
        "--format",
        "asterisk",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!inorder.2.contains("note:"), "{}", inorder.2);
    let sorted = |s: &str| {
        let mut v: Vec<&str> = s.lines().collect();
        v.sort_unstable();
        v.join("\n")
    };
    assert_eq!(sorted(&inorder.0), sorted(&one.0));
    // Decisions to a pipe cannot be taken back: the input is read whole from the start.
    let mut piped = vec!["replay", "--decisions-out", "/dev/stdout"];
    piped.extend_from_slice(&base);
    let out = run(&piped);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout) == one.0, "decisions to a pipe differ");
    // An input from a pipe cannot be read twice: read whole from the start.
    #[cfg(unix)]
    {
        let fifo = dir.join("late.fifo");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let (f, body) = (fifo.clone(), std::fs::read(&late).unwrap());
        let writer = std::thread::spawn(move || std::fs::write(f, body));
        let mut args = vec!["--cdr", fifo.to_str().unwrap()];
        args.extend_from_slice(&base[2..]);
        let from_fifo = replay(&args);
        writer.join().unwrap().unwrap();
        assert!(from_fifo.0 == one.0, "decisions from a pipe differ");
        assert_eq!(from_fifo.1, one.1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tollguard replay` of the quickstart's Master.csv, then `second`, with the quickstart's deck;
/// `outputs`: the output flags and paths.
fn replay_quickstart_then(second: &str, outputs: &[&str]) -> std::process::Output {
    let cdr = root().join("examples/quickstart/Master.csv");
    let d = deck();
    let mut args = vec![
        "replay",
        "--cdr",
        cdr.to_str().unwrap(),
        "--cdr",
        second,
        "--format",
        "asterisk",
        "--rates",
        &d,
    ];
    args.extend_from_slice(outputs);
    run(&args)
}

/// An input that cannot be read fails the replay before its outputs are touched.
#[test]
fn replay_of_a_missing_file_leaves_the_old_output() {
    let dir = scratch("missing");
    let dec = dir.join("decisions.jsonl");
    std::fs::write(&dec, "last month's decisions\n").unwrap();
    let out = replay_quickstart_then("/nonexistent/Master.csv", &["--decisions-out", dec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    // The reason once, not again from the error's source.
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some("error: /nonexistent/Master.csv: No such file or directory (os error 2)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&dec).unwrap(), "last month's decisions\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_that_fails_half_way_leaves_the_old_outputs() {
    // /proc/self/mem opens as a regular file and fails at the first read (nothing is mapped at
    // address 0): an input that cannot be read any further, after the first input was replayed.
    if !std::path::Path::new("/proc/self/mem").exists() {
        eprintln!("skipped: no /proc/self/mem here to stand for an input that fails half way");
        return;
    }
    let dir = scratch("half-way");
    let (dec, alerts) = (dir.join("decisions.jsonl"), dir.join("alerts.jsonl"));
    std::fs::write(&dec, "last month's decisions\n").unwrap();
    std::fs::write(&alerts, "last month's alerts\n").unwrap();
    let cdr = root().join("examples/quickstart/Master.csv");
    let replay = |second: &str| {
        let outputs = ["--decisions-out", dec.to_str().unwrap(), "--alerts-out", alerts.to_str().unwrap()];
        replay_quickstart_then(second, &outputs)
    };
    let out = replay("/proc/self/mem");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some("error: /proc/self/mem: Input/output error (os error 5)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&dec).unwrap(), "last month's decisions\n");
    assert_eq!(std::fs::read_to_string(&alerts).unwrap(), "last month's alerts\n");
    let names = |dir: &std::path::Path| {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&dir), ["alerts.jsonl", "decisions.jsonl"], "no temporary file left behind");
    // A replay that succeeds replaces both: decisions.jsonl keeps its own permissions, and
    // alerts.jsonl, gone meanwhile, is as readable as a file created afresh.
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;
    #[cfg(unix)]
    std::fs::set_permissions(&dec, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&alerts).unwrap();
    let out = replay(cdr.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = std::fs::read_to_string(&dec).unwrap().lines().count();
    let rows = std::fs::read_to_string(&cdr).unwrap().lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines, 2 * rows, "one decision per record of the two inputs");
    assert_eq!(names(&dir), ["alerts.jsonl", "decisions.jsonl"]);
    #[cfg(unix)]
    {
        let created = dir.join("created");
        std::fs::write(&created, "").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dec), 0o600, "decisions.jsonl keeps its permissions");
        assert_eq!(mode(&alerts), mode(&created), "alerts.jsonl has the mode of a file created afresh");
        std::fs::remove_file(&created).unwrap();
        // Through a symbolic link: the file it points to is replaced, the link stays a link.
        let real = dir.join("real.jsonl");
        std::fs::write(&real, "old\n").unwrap();
        std::fs::remove_file(&dec).unwrap();
        std::os::unix::fs::symlink(&real, &dec).unwrap();
        let out = replay(cdr.to_str().unwrap());
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(std::fs::symlink_metadata(&dec).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap().lines().count(), 2 * rows);
        assert_eq!(names(&dir), ["alerts.jsonl", "decisions.jsonl", "real.jsonl"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scorecard_on_a_small_simulated_month_meets_the_targets() {
    let dir = simulated("sim", 5, "2026-01-05");
    let d = dir.to_str().unwrap();
    let out = run(&["evaluate", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    let line = |prefix: &str| {
        report
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}\n{report}"))
            .to_string()
    };
    let detected = line("incidents detected:");
    let (got, all) = detected.trim_start_matches("incidents detected: ").split_once(" of ").unwrap();
    assert_eq!(got, all, "{report}");
    assert_eq!(line("emergency calls denied:").split(' ').nth(3), Some("0"), "{report}");
    assert!(line("critical alerts on honest accounts:").ends_with(": 0"), "{report}");
    let worst: f64 = line("worst incident with tollguard: EUR ").rsplit(' ').next().unwrap().parse().unwrap();
    assert!(worst <= 500.0, "{report}");
    let honest = line("honest billable calls denied:");
    assert!(honest.starts_with("honest billable calls denied: 0 of"), "{report}");
    // The strategies' table: tollguard's row repeats its lines; the reference strategies let
    // emergency calls through; no protection detects nothing; only the limit raises alerts.
    let emergency = line("emergency calls denied: ").replace("emergency calls denied: ", "");
    let median = line("median time to detect: ").replace("median time to detect: ", "");
    let worst =
        line("worst incident with tollguard: EUR ").replace("worst incident with tollguard: EUR ", "");
    let tollguard = line("| tollguard |");
    assert!(
        tollguard.starts_with(&format!("| tollguard | {got} of {all} | {median} | {worst} |")),
        "{report}"
    );
    assert!(tollguard.ends_with(&format!("| {emergency} | 0 |")), "{report}");
    assert!(
        line("| no protection |").starts_with(&format!("| no protection | 0 of {all} | - |")),
        "{report}"
    );
    for (name, alerts) in [
        ("no protection", "n/a"),
        ("EUR 500/day on ended calls", "0"),
        ("daily report, next morning", "n/a"),
        ("react after 3 days", "n/a"),
    ] {
        assert!(line(&format!("| {name} |")).ends_with(&format!("| {emergency} | {alerts} |")), "{report}");
    }
}

/// The README's figures, and every alert and decision of both replays (golden files, which
/// hold caps, cuts, blocks, warnings and the spend limits' rules).
#[test]
fn example_2011_pbx_hack() {
    let dir = root().join("examples/2011-pbx-hack");
    let cdr = dir.join("Master.csv");
    for (cfg, golden_name, want) in [
        (
            "default.toml",
            "example_2011_default",
            [
                "cost as recorded EUR 174408.5440  cost with tollguard EUR 141.7440",
                "denied 2840  capped 4  cut 3  alerts 5 critical, 4 warning  unrated 0  malformed 0",
            ],
        ),
        (
            "limit-500.toml",
            "example_2011_limit_500",
            [
                "cost as recorded EUR 174408.5440  cost with tollguard EUR 8744.8600",
                "denied 3530  capped 99  cut 21  alerts 17 critical, 18 warning  unrated 0  malformed 0",
            ],
        ),
    ] {
        let c = dir.join(cfg);
        let (decisions, alerts, summary) = replay(&[
            "--cdr",
            cdr.to_str().unwrap(),
            "--format",
            "asterisk",
            "--config",
            c.to_str().unwrap(),
        ]);
        golden(&format!("{golden_name}.alerts.jsonl"), &alerts);
        golden(&format!("{golden_name}.decisions.jsonl"), &decisions);
        assert_eq!(decisions.lines().count(), 4289);
        for want in want {
            assert!(summary.contains(want), "{cfg}: {summary} (the README quotes these figures)");
        }
    }
}

/// The quickstart's Friday and Saturday night with destination rules and business hours.
const DESTINATION_RULES: &str = r#"
[defaults]
country = "NL"
timezone = "Europe/Amsterdam"
business_hours = "Mon-Fri 08:00-18:00"

[accounts.acme]
business_hours = "Mon-Fri 09:00-12:00, 13:00-17:00"
holidays = ["2011-06-13"]

[[decks]]
path = "DECK"

[policy]
defaults = false

[[policy.destinations]]
name = "acme.reception_no_germany"
accounts = ["acme"]
extensions = ["204"]
deny = { prefixes = ["+49"] }

[[policy.destinations]]
name = "acme.home_only_after_hours"
accounts = ["acme"]
allow_only = { countries = ["NL"] }
when = "outside_business_hours"
"#;

#[test]
fn replay_with_destination_rules_and_business_hours() {
    let cdr = root().join("examples/quickstart/Master.csv");
    let cfg = write_tmp("destinations.toml", &DESTINATION_RULES.replace("DECK", &deck()));
    let args = ["--cdr", cdr.to_str().unwrap(), "--format", "asterisk", "--config", cfg.to_str().unwrap()];
    let (decisions, alerts, _) = replay(&args);
    let decided: Vec<serde_json::Value> =
        decisions.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let by_id = |id: &str| decided.iter().find(|d| d["call_id"] == id).unwrap_or_else(|| panic!("{id}"));
    let denied_by = |id: &str| -> Vec<String> {
        let d = by_id(id);
        assert_eq!(d["allowed"], false, "{d}");
        d["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
    };
    let cdrs = std::fs::read_to_string(&cdr).unwrap();
    let id_of = |start: &str, to: &str| -> String {
        let line = cdrs
            .lines()
            .find(|l| l.contains(&format!("\"{start}")) && l.contains(&format!(",\"{to}\",")))
            .unwrap_or_else(|| panic!("{start} {to}"));
        line.rsplit(",\"").nth(1).unwrap().trim_end_matches('"').to_string()
    };
    // The reception (204) may not call Germany at any time.
    assert_eq!(denied_by(&id_of("2011-06-10 14:39", "0049301234567")), ["acme.reception_no_germany"]);
    // Germany from 210: at lunch (12:12, outside acme's own hours) denied, at 15:14 allowed.
    assert_eq!(denied_by(&id_of("2011-06-10 12:12", "0049301234567")), ["acme.home_only_after_hours"]);
    assert_eq!(by_id(&id_of("2011-06-10 15:14", "0049301234567"))["allowed"], true);
    // Dutch numbers at lunch, and emergency calls, are allowed.
    assert_eq!(by_id(&id_of("2011-06-10 12:38", "0031104567890"))["allowed"], true);
    assert_eq!(by_id(&id_of("2011-06-10 12:17", "112"))["allowed"], true);
    // The Saturday night hack to East Timor: every call denied by the after-hours rule.
    let timor: Vec<&serde_json::Value> = decided
        .iter()
        .filter(|d| {
            cdrs.lines().any(|l| l.contains(d["call_id"].as_str().unwrap()) && l.contains("\"0067077"))
        })
        .collect();
    assert!(timor.len() >= 12, "{timor:?}");
    for d in &timor {
        assert_eq!(d["allowed"], false, "{d}");
        assert_eq!(d["rules"], serde_json::json!(["acme.home_only_after_hours"]), "{d}");
    }
    // One alert per rule and account a day, not one per call.
    let alerted: Vec<serde_json::Value> = alerts.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rules: Vec<&str> = alerted.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        ["acme.home_only_after_hours", "acme.reception_no_germany", "acme.home_only_after_hours"]
    );
    assert_eq!(
        alerted[2]["message"],
        "acme.home_only_after_hours: +67077655318 (TL, critical risk) is not among the allowed destinations \
         (NL) outside business hours: denied"
    );
    assert_eq!(
        (alerted[2]["severity"].as_str(), alerted[2]["action"].as_str()),
        (Some("warning"), Some("deny"))
    );
}

#[test]
fn bad_business_hours_and_warning_actions_are_named() {
    let cdr = root().join("examples/quickstart/Master.csv");
    let replay_with = |name: &str, cfg: &str| {
        let cfg = write_tmp(name, &cfg.replace("DECK", &deck()));
        let out = run(&[
            "replay",
            "--cdr",
            cdr.to_str().unwrap(),
            "--format",
            "asterisk",
            "--config",
            cfg.to_str().unwrap(),
            "--decisions-out",
            "/dev/null",
        ]);
        assert_eq!(out.status.code(), Some(2));
        (cfg, text(&out.stderr))
    };
    let (cfg, e) = replay_with(
        "bad-hours.toml",
        &DESTINATION_RULES.replace("Mon-Fri 09:00-12:00", "Mon-Fry 09:00-12:00"),
    );
    assert!(e.contains(&cfg.display().to_string()) && e.contains("line 8"), "{e}");
    assert!(e.contains("\"Fry\" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"), "{e}");
    let (cfg, e) = replay_with("bad-holiday.toml", &DESTINATION_RULES.replace("2011-06-13", "2011-13-06"));
    assert!(e.contains(&cfg.display().to_string()) && e.contains("line 9"), "{e}");
    assert!(e.contains("holiday \"2011-13-06\" is not a date YYYY-MM-DD"), "{e}");
    let no_hours = DESTINATION_RULES
        .replace("business_hours = \"Mon-Fri 08:00-18:00\"\n", "")
        .replace("business_hours = \"Mon-Fri 09:00-12:00, 13:00-17:00\"\nholidays = [\"2011-06-13\"]\n", "");
    let (_, e) = replay_with("no-hours.toml", &no_hours);
    assert!(
        e.contains(
            "[policy]: destinations 2 (\"acme.home_only_after_hours\"): when = \"outside_business_hours\" needs \
             business hours for account \"acme\": set business_hours in [accounts.acme] or [defaults]"
        ),
        "{e}"
    );
    let warning_deny = format!(
        "{DESTINATION_RULES}\n[[policy.limit]]\nname = \"acme.daily\"\nmetric = \"spend\"\nwindow = \"day\"\n\
         max = \"100\"\nwarning_percent = 50\non_warning = [\"alert\", \"block\"]\n"
    );
    let (_, e) = replay_with("warning-block.toml", &warning_deny);
    assert!(
        e.contains(
            "[policy]: limit 1 (\"acme.daily\"): on_warning: \"block\" is not supported at the warning level, \
             only \"alert\" is (put \"block\" in on_critical)"
        ),
        "{e}"
    );
}
