//! End-to-end checks of the simulator on what it writes, read back with tollguard's own Asterisk
//! reader: determinism, well-formed rows, labels, order, pricing, and the shape of every scenario.

use jiff::civil::{date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use tollguard_core::cdr::{Cdr, Disposition};
use tollguard_core::money::Currency;
use tollguard_core::numbering::{DialPlan, Dialled, Numbering, RiskTier};
use tollguard_core::rating::{RateDeck, TimeBands};
use tollguard_ingest::asterisk::AsteriskReader;
use tollguard_ingest::{CdrReader, ReadError};
use tollguard_sim::{simulate, AccountKind, Scenario, SimConfig, Summary, DECK_CSV, TIMEZONE};

#[derive(Clone, Debug)]
struct Label {
    call_id: String,
    account: String,
    extension: String,
    scenario: String,
    fraud: bool,
    incident: String,
}

struct Out {
    cdr: Vec<u8>,
    labels: Vec<u8>,
    summary: Summary,
}

fn run(cfg: &SimConfig) -> Out {
    let (mut cdr, mut labels) = (Vec::new(), Vec::new());
    let summary = simulate(cfg, &mut cdr, &mut labels).unwrap();
    Out { cdr, labels, summary }
}

fn read_rows(cdr: &[u8]) -> (Vec<Cdr>, Vec<String>) {
    let mut r = AsteriskReader::new(
        Arc::from("Master.csv"),
        Box::new(std::io::Cursor::new(cdr.to_vec())),
        TimeZone::get(TIMEZONE).unwrap(),
    );
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let mut c = Cdr::default();
    loop {
        match r.read_into(&mut c) {
            Ok(true) => ok.push(c.clone()),
            Ok(false) => break,
            Err(ReadError::Row(e)) => bad.push(e.to_string()),
            Err(e) => panic!("{e}"),
        }
    }
    (ok, bad)
}

fn read_labels(labels: &[u8]) -> Vec<Label> {
    let text = std::str::from_utf8(labels).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("call_id,account,extension,scenario,kind,incident"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "{l}");
            assert!(f[4] == "honest" || f[4] == "fraud", "{l}");
            Label {
                call_id: f[0].into(),
                account: f[1].into(),
                extension: f[2].into(),
                scenario: f[3].into(),
                fraud: f[4] == "fraud",
                incident: f[5].into(),
            }
        })
        .collect()
}

/// The shared run: 40 accounts, 3 weeks, every scenario.
struct Shared {
    out: Out,
    rows: Vec<Cdr>,
    bad: Vec<String>,
    labels: Vec<Label>,
}

fn test_config() -> SimConfig {
    SimConfig { seed: 7, accounts: 40, days: 21, start: date(2026, 1, 5), scenarios: Scenario::ALL.to_vec() }
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let out = run(&test_config());
        let (rows, bad) = read_rows(&out.cdr);
        let labels = read_labels(&out.labels);
        Shared { out, rows, bad, labels }
    })
}

fn tz() -> TimeZone {
    TimeZone::get(TIMEZONE).unwrap()
}

fn local(t: Timestamp) -> DateTime {
    tz().to_datetime(t)
}

fn end(c: &Cdr) -> Timestamp {
    c.end.expect("every simulated row has an end")
}

/// Rows (with labels) of one scenario.
fn of(s: Scenario) -> Vec<(&'static Cdr, &'static Label)> {
    let sh = shared();
    sh.rows.iter().zip(&sh.labels).filter(|(_, l)| l.scenario == s.name()).collect()
}

fn is_night(t: DateTime) -> bool {
    t.hour() >= 22 || t.hour() < 6
}

fn is_office_hours(t: DateTime) -> bool {
    (8..18).contains(&t.hour()) && (t.weekday().to_monday_zero_offset() < 5)
}

/// Most calls running at once.
fn concurrency<'a>(calls: impl IntoIterator<Item = &'a Cdr>) -> usize {
    let mut ev: Vec<(Timestamp, i32)> = Vec::new();
    for c in calls {
        ev.push((c.start, 1));
        ev.push((end(c), -1));
    }
    ev.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

fn outbound(c: &Cdr) -> bool {
    c.context == "from-internal" && c.dialled.len() > 3
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let cfg = SimConfig {
        seed: 11,
        accounts: 16,
        days: 19,
        start: date(2026, 1, 5),
        scenarios: Scenario::ALL.to_vec(),
    };
    let a = run(&cfg);
    let b = run(&cfg);
    assert!(a.cdr == b.cdr, "Master.csv differs between two runs of one seed");
    assert!(a.labels == b.labels, "labels.csv differs between two runs of one seed");
    assert_eq!(a.summary.to_string(), b.summary.to_string());
    let c = run(&SimConfig { seed: 12, ..cfg.clone() });
    assert!(a.cdr != c.cdr);
    assert!(a.labels != c.labels);
}

#[test]
fn baseline_does_not_depend_on_the_scenarios() {
    let all = shared();
    let none = run(&SimConfig { scenarios: vec![], ..test_config() });
    let (rows, bad) = read_rows(&none.cdr);
    assert!(bad.is_empty());
    let touched: HashSet<&str> = all.out.summary.scenarios.iter().map(|i| i.account.as_str()).collect();
    let key = |c: &Cdr| (c.account.clone(), c.source.clone(), c.dialled.clone(), c.start, c.billsec);
    let a: Vec<_> = all.rows.iter().filter(|c| !touched.contains(c.account.as_str())).map(key).collect();
    let b: Vec<_> = rows.iter().filter(|c| !touched.contains(c.account.as_str())).map(key).collect();
    assert!(a.len() > 10_000);
    assert!(a == b, "accounts without a scenario changed when scenarios were added");
    assert_eq!(none.summary.fraud_calls, 0);
    assert!(read_labels(&none.labels).iter().all(|l| l.scenario == "baseline" && !l.fraud));
}

#[test]
fn every_row_parses_with_the_asterisk_reader_and_has_18_columns() {
    let sh = shared();
    assert!(sh.bad.is_empty(), "{} row errors, first: {:?}", sh.bad.len(), sh.bad.first());
    assert_eq!(sh.rows.len() as u64, sh.out.summary.calls);
    assert!(sh.rows.len() > 50_000, "{}", sh.rows.len());
    for line in std::str::from_utf8(&sh.out.cdr).unwrap().lines().step_by(97) {
        // 18 fields: commas outside quotes.
        let mut quoted = false;
        let commas = line
            .chars()
            .filter(|&ch| {
                if ch == '"' {
                    quoted = !quoted;
                }
                ch == ',' && !quoted
            })
            .count();
        assert_eq!(commas, 17, "{line}");
    }
    for c in &sh.rows {
        assert!(c.account.starts_with("acct"));
        assert_eq!(c.duration_s as i64, end(c).as_second() - c.start.as_second(), "{}", c.call_id);
        match c.disposition {
            Disposition::Answered => {
                assert!(c.billsec > 0 && c.answer.is_some(), "{}", c.call_id);
                assert_eq!(end(c).as_second() - c.answer.unwrap().as_second(), c.billsec as i64);
            }
            _ => assert!(c.billsec == 0 && c.answer.is_none(), "{}", c.call_id),
        }
        match c.context.as_str() {
            "from-trunk" => {
                assert!(c.channel.starts_with("SIP/trunk-") && c.dst_channel.starts_with("SIP/2"));
                assert!(c.dialled.len() == 3 && c.dialled.starts_with('2'));
            }
            "from-internal" => {
                assert!(c.channel.starts_with("SIP/2") && c.source.len() == 3, "{}", c.call_id);
                if c.dialled.len() > 3 {
                    assert!(c.dialled.starts_with('0') || c.dialled == "112");
                    assert!(c.dst_channel.starts_with("SIP/trunk-") || c.disposition == Disposition::Failed);
                } else if c.dialled != "112" {
                    assert!(c.dst_channel.starts_with("SIP/2"));
                }
            }
            other => panic!("context {other}"),
        }
    }
}

#[test]
fn call_ids_are_unique_and_every_call_is_labelled_in_row_order() {
    let sh = shared();
    assert_eq!(sh.rows.len(), sh.labels.len());
    let mut seen = HashSet::new();
    for (c, l) in sh.rows.iter().zip(&sh.labels) {
        assert!(seen.insert(c.call_id.as_str()), "duplicate call id {}", c.call_id);
        assert_eq!(c.call_id, l.call_id);
        assert_eq!(c.account, l.account);
        let ext = if c.context == "from-trunk" { &c.dialled } else { &c.source };
        assert_eq!(ext, &l.extension, "{}", c.call_id);
        let (secs, seq) = c.call_id.split_once('.').unwrap();
        assert_eq!(secs.parse::<i64>().unwrap(), c.start.as_second());
        assert!(seq.parse::<u32>().unwrap() > 0);
        if l.fraud {
            assert_eq!(l.incident, format!("{}-{}", l.scenario, l.account));
        } else {
            assert!(l.incident.is_empty());
        }
    }
    let fraud = sh.labels.iter().filter(|l| l.fraud).count() as u64;
    assert_eq!(fraud, sh.out.summary.fraud_calls);
    for i in &sh.out.summary.scenarios {
        let n = sh.labels.iter().filter(|l| l.scenario == i.scenario.name()).count() as u64;
        assert_eq!(n, i.calls, "{}", i.scenario);
        assert!(n > 0, "{} produced no calls", i.scenario);
        assert!(sh.labels.iter().filter(|l| l.scenario == i.scenario.name()).all(|l| l.account == i.account));
    }
}

#[test]
fn rows_are_in_end_time_order() {
    let sh = shared();
    assert!(sh.rows.windows(2).all(|w| end(&w[0]) <= end(&w[1])));
}

#[test]
fn every_outbound_number_is_priced_by_the_shipped_deck() {
    let sh = shared();
    let plan = DialPlan::for_country("NL").unwrap();
    let deck =
        RateDeck::parse("rates.csv", "rates", DECK_CSV.as_bytes(), &TimeBands::default(), Currency::EUR)
            .unwrap();
    let numbering = Numbering::builtin();
    let mut checked = 0;
    for (c, l) in sh.rows.iter().zip(&sh.labels) {
        if !outbound(c) {
            continue;
        }
        match plan.normalise(&c.dialled) {
            Dialled::Emergency => assert_eq!(c.dialled, "112"),
            Dialled::E164(n) => {
                assert!(deck.find(&n, c.start, 0).is_some(), "{} not priced", c.dialled);
                let risk = numbering.classify(&n).risk;
                if l.fraud {
                    assert!(risk >= RiskTier::High, "fraud to a {risk} destination: {}", c.dialled);
                }
                if ["new_partner_country", "long_conference", "diaspora_traffic"]
                    .contains(&l.scenario.as_str())
                {
                    assert!(risk <= RiskTier::Medium, "{} to {} ({risk})", l.scenario, c.dialled);
                }
                checked += 1;
            }
            other => panic!("{} reads as {other:?}", c.dialled),
        }
    }
    assert!(checked > 30_000);
}

#[test]
fn baseline_looks_like_office_telephony() {
    let sh = shared();
    let base: Vec<&Cdr> =
        sh.rows.iter().zip(&sh.labels).filter(|(_, l)| l.scenario == "baseline").map(|(c, _)| c).collect();
    let unanswered = base.iter().filter(|c| c.billsec == 0).count() as f64 / base.len() as f64;
    assert!((0.20..=0.30).contains(&unanswered), "unanswered {unanswered}");
    let mut talk: Vec<u32> = base.iter().filter(|c| c.billsec > 0).map(|c| c.billsec).collect();
    talk.sort();
    let median = talk[talk.len() / 2];
    assert!((60..=130).contains(&median), "median billsec {median}");
    assert!(talk.iter().filter(|&&b| b >= 1800).count() >= 20, "few calls of 30+ minutes");
    assert!(base.iter().any(|c| c.dialled == "112"), "no emergency call");
    let internal = base.iter().filter(|c| c.context == "from-internal" && c.dialled.len() == 3).count();
    let inbound = base.iter().filter(|c| c.context == "from-trunk").count();
    assert!(internal > base.len() / 30 && inbound > base.len() / 8, "internal {internal}, inbound {inbound}");
    for prefix in ["06", "0031", "00"] {
        let n = base.iter().filter(|c| outbound(c) && c.dialled.starts_with(prefix)).count();
        if prefix == "0031" {
            assert_eq!(n, 0, "national numbers are dialled with 0, not 0031");
        } else {
            assert!(n > 1000, "{prefix}: {n}");
        }
    }
    // Office accounts: office hours busy, nights and weekends quiet; shift operations steady.
    let kinds: HashMap<&str, AccountKind> =
        sh.out.summary.accounts.iter().map(|(a, k)| (a.as_str(), *k)).collect();
    let (mut office_day, mut office_night, mut office_weekend) = (0, 0, 0);
    let (mut shift_weekday, mut shift_weekend) = (0, 0);
    for c in &base {
        let t = local(c.start);
        let weekend = t.weekday().to_monday_zero_offset() >= 5;
        match kinds[c.account.as_str()] {
            AccountKind::ShiftOperation => {
                if weekend {
                    shift_weekend += 1
                } else {
                    shift_weekday += 1
                }
            }
            AccountKind::SmallOffice | AccountKind::MidCompany => {
                if weekend {
                    office_weekend += 1;
                } else if (9..17).contains(&t.hour()) {
                    office_day += 1;
                } else if t.hour() < 6 {
                    office_night += 1;
                }
            }
            _ => {}
        }
    }
    assert!(office_day > 40 * office_night, "day {office_day}, night {office_night}");
    // 15 weekdays, 6 weekend days in three weeks.
    assert!(office_day > 20 * office_weekend, "day {office_day}, weekend {office_weekend}");
    let per_day = |n: i32, days: i32| n as f64 / days as f64;
    let ratio = per_day(shift_weekend, 6) / per_day(shift_weekday, 15);
    assert!((0.8..1.1).contains(&ratio), "shift weekend/weekday {ratio}");
    // Traders call the diaspora in their baseline.
    let diaspora = base
        .iter()
        .filter(|c| kinds[c.account.as_str()] == AccountKind::Trader)
        .filter(|c| ["00234", "0091", "00212"].iter().any(|p| c.dialled.starts_with(p)))
        .count();
    assert!(diaspora > 300, "trader diaspora calls {diaspora}");
    // One person, one call: no extension of an honest account is in two calls at once.
    let mut by_ext: BTreeMap<(&str, &str), Vec<(Timestamp, Timestamp)>> = BTreeMap::new();
    for c in &base {
        if c.context == "from-internal" {
            by_ext.entry((&c.account, &c.source)).or_default().push((c.start, end(c)));
        }
    }
    for (k, mut v) in by_ext {
        v.sort();
        assert!(v.windows(2).all(|w| w[0].1 <= w[1].0), "{k:?} overlaps");
    }
}

#[test]
fn pbx_hack_night_is_parallel_long_calls_to_east_timor_from_one_extension_for_three_nights() {
    let rows = of(Scenario::PbxHackNight);
    assert!(rows.iter().all(|(c, l)| l.fraud && outbound(c) && c.dialled.starts_with("00670")));
    let exts: BTreeSet<&str> = rows.iter().map(|(c, _)| c.source.as_str()).collect();
    assert_eq!(exts.len(), 1);
    let long: Vec<&Cdr> = rows.iter().map(|(c, _)| *c).filter(|c| c.billsec >= 1200).collect();
    assert!(long.len() >= 30, "{}", long.len());
    for c in &long {
        assert!(c.billsec <= 3600);
        assert!(is_night(local(c.start)) && is_night(local(end(c))), "{} {}", local(c.start), local(end(c)));
    }
    assert!(concurrency(long.iter().copied()) >= 4);
    let nights: BTreeSet<_> =
        long.iter().map(|c| (local(c.start) - jiff::Span::new().hours(12)).date()).collect();
    assert_eq!(nights.len(), 3, "{nights:?}");
    // Short test calls come first.
    let first_long = long.iter().map(|c| c.start).min().unwrap();
    let tests: Vec<_> = rows.iter().filter(|(c, _)| c.start < first_long).collect();
    assert!(!tests.is_empty() && tests.iter().all(|(c, _)| c.billsec <= 90));
    // About EUR 400 an hour, as in 2011.
    let inc = shared().out.summary.scenarios.iter().find(|i| i.scenario == Scenario::PbxHackNight).unwrap();
    let mut hours = 0.0;
    for night in &nights {
        let on: Vec<&&Cdr> =
            long.iter().filter(|c| (local(c.start) - jiff::Span::new().hours(12)).date() == *night).collect();
        let a = on.iter().map(|c| c.start).min().unwrap();
        let b = on.iter().map(|c| end(c)).max().unwrap();
        hours += (b.as_second() - a.as_second()) as f64 / 3600.0;
    }
    let per_hour: f64 = inc.cost.to_string().parse::<f64>().unwrap() / hours;
    assert!((250.0..700.0).contains(&per_hour), "EUR {per_hour}/h");
}

#[test]
fn satellite_weekend_is_a_saturday_burst_of_8_to_15_channels() {
    let rows = of(Scenario::SatelliteWeekend);
    assert!(rows
        .iter()
        .all(|(c, _)| ["00870", "00881", "00882", "00883"].iter().any(|p| c.dialled.starts_with(p))));
    assert!(rows.iter().all(|(c, _)| local(c.start).weekday() == jiff::civil::Weekday::Saturday));
    let n = concurrency(rows.iter().map(|(c, _)| *c));
    assert!((8..=15).contains(&n), "{n} channels");
}

#[test]
fn slow_drip_is_a_few_long_premium_calls_a_working_day_for_ten_days_and_more() {
    let rows = of(Scenario::SlowDrip);
    let mut per_day: BTreeMap<jiff::civil::Date, usize> = BTreeMap::new();
    for (c, _) in &rows {
        let t = local(c.start);
        assert!(is_office_hours(t), "{t}");
        assert!((600..=1500).contains(&c.billsec));
        assert!(["0906", "0909", "004470"].iter().any(|p| c.dialled.starts_with(p)), "{}", c.dialled);
        *per_day.entry(t.date()).or_default() += 1;
    }
    assert!(per_day.values().all(|n| (2..=4).contains(n)));
    assert!(per_day.len() >= 8, "{} days", per_day.len());
    let first = *per_day.keys().next().unwrap();
    let last = *per_day.keys().last().unwrap();
    assert!(first.until(last).unwrap().get_days() >= 9, "{first} .. {last}");
    let exts: BTreeSet<&str> = rows.iter().map(|(c, _)| c.source.as_str()).collect();
    assert!(exts.len() >= 2);
}

#[test]
fn number_scan_sweeps_a_block_within_an_hour_then_calls_a_few_of_it_long() {
    let rows = of(Scenario::NumberScan);
    let short: Vec<&Cdr> = rows.iter().map(|(c, _)| *c).filter(|c| c.billsec < 60).collect();
    let block = &short[0].dialled[..short[0].dialled.len() - 3];
    assert!(short.iter().all(|c| c.dialled.starts_with(block) && c.dialled.len() == short[0].dialled.len()));
    let distinct: BTreeSet<&str> = short.iter().map(|c| c.dialled.as_str()).collect();
    assert!(distinct.len() >= 40 && distinct.len() == short.len());
    let first = short.iter().map(|c| c.start).min().unwrap();
    let last = short.iter().map(|c| c.start).max().unwrap();
    assert!(last.as_second() - first.as_second() < 3600);
    let failed = short.iter().filter(|c| c.billsec == 0).count() as f64 / short.len() as f64;
    assert!(failed >= 0.75, "{failed}");
    let burst: Vec<&Cdr> = rows.iter().map(|(c, _)| *c).filter(|c| c.billsec >= 600).collect();
    assert!(burst.len() >= 4);
    assert!(burst
        .iter()
        .all(|c| c.dialled.starts_with(block) && c.start.as_second() >= last.as_second() + 1800));
    let targets: BTreeSet<&str> = burst.iter().map(|c| c.dialled.as_str()).collect();
    assert!((2..=4).contains(&targets.len()));
    assert!(concurrency(burst.iter().copied()) >= 3);
}

#[test]
fn wangiri_callback_is_one_ring_calls_then_many_extensions_calling_back() {
    let rows = of(Scenario::WangiriCallback);
    let rang: Vec<&Cdr> = rows.iter().map(|(c, _)| *c).filter(|c| c.context == "from-trunk").collect();
    assert!(rang.len() >= 5);
    for c in &rang {
        assert!(c.billsec == 0 && c.duration_s <= 5, "{}", c.call_id);
        assert!(["00676", "00677", "00682", "00674", "00232", "00231", "00224"]
            .iter()
            .any(|p| c.source.starts_with(p)));
    }
    let back: Vec<&Cdr> = rows.iter().map(|(c, _)| *c).filter(|c| outbound(c)).collect();
    let exts: BTreeSet<&str> = back.iter().map(|c| c.source.as_str()).collect();
    assert!((5..=15).contains(&exts.len()), "{}", exts.len());
    for c in &back {
        assert!((60..=300).contains(&c.billsec));
        let rung_before =
            rang.iter().any(|r| r.source == c.dialled && r.dialled == c.source && end(r) <= c.start);
        assert!(rung_before, "{} called back {} without a missed call", c.source, c.dialled);
    }
}

#[test]
fn office_premium_new_country_calls_premium_numbers_of_a_country_the_account_never_calls() {
    let sh = shared();
    let rows = of(Scenario::OfficePremiumNewCountry);
    let account = &rows[0].1.account;
    let cc = ["00371", "00370", "0044"].into_iter().find(|p| rows[0].0.dialled.starts_with(p)).unwrap();
    assert!(rows.iter().all(|(c, _)| c.dialled.starts_with(cc) && is_office_hours(local(c.start))));
    let honest_there = sh
        .rows
        .iter()
        .zip(&sh.labels)
        .filter(|(c, l)| &l.account == account && !l.fraud && c.dialled.starts_with(cc))
        .count();
    assert_eq!(honest_there, 0);
    assert!((4..=10).contains(&rows.len()));
}

#[test]
fn multi_ext_night_cuba_is_several_extensions_one_channel_each_at_night() {
    let rows = of(Scenario::MultiExtNightCuba);
    let mut by_ext: BTreeMap<&str, Vec<&Cdr>> = BTreeMap::new();
    for (c, _) in &rows {
        assert!(["0053", "00252", "00224"].iter().any(|p| c.dialled.starts_with(p)));
        assert!((1800..=3600).contains(&c.billsec));
        assert!(is_night(local(c.start)) && is_night(local(end(c))));
        by_ext.entry(&c.source).or_default().push(c);
    }
    assert!(by_ext.len() >= 3);
    for v in by_ext.values() {
        assert_eq!(concurrency(v.iter().copied()), 1);
    }
    assert!(concurrency(rows.iter().map(|(c, _)| *c)) >= 3);
}

#[test]
fn pacific_daytime_burst_is_10_to_30_calls_within_two_hours() {
    let rows = of(Scenario::PacificDaytimeBurst);
    assert!((10..=30).contains(&rows.len()));
    let pacific = ["00674", "00676", "00677", "00678", "00682", "00683", "00686", "00688"];
    assert!(rows.iter().all(|(c, _)| pacific.iter().any(|p| c.dialled.starts_with(p))));
    assert!(rows.iter().all(|(c, _)| is_office_hours(local(c.start))));
    let first = rows.iter().map(|(c, _)| c.start.as_second()).min().unwrap();
    let last = rows.iter().map(|(c, _)| c.start.as_second()).max().unwrap();
    assert!(last - first <= 2 * 3600);
}

/// Baseline calls per local date of an account.
fn daily(account: &str) -> BTreeMap<jiff::civil::Date, usize> {
    let sh = shared();
    let mut m = BTreeMap::new();
    for (c, l) in sh.rows.iter().zip(&sh.labels) {
        if c.account == account && l.scenario == "baseline" {
            *m.entry(local(c.start).date()).or_default() += 1;
        }
    }
    m
}

fn median_weekday(m: &BTreeMap<jiff::civil::Date, usize>) -> usize {
    let mut v: Vec<usize> =
        m.iter().filter(|(d, _)| d.weekday().to_monday_zero_offset() < 5).map(|(_, n)| *n).collect();
    v.sort();
    v[v.len() / 2]
}

#[test]
fn campaign_day_is_five_to_six_times_a_normal_day() {
    let rows = of(Scenario::CampaignDay);
    assert!(rows.iter().all(|(_, l)| !l.fraud));
    let days: BTreeSet<_> = rows.iter().map(|(c, _)| local(c.start).date()).collect();
    assert!(days.len() <= 2, "{days:?}");
    let normal = median_weekday(&daily(&rows[0].1.account));
    let ratio = rows.len() as f64 / normal as f64;
    assert!((4.0..7.5).contains(&ratio), "{ratio}");
}

#[test]
fn new_partner_country_keeps_calling_a_new_ordinary_country() {
    let sh = shared();
    let rows = of(Scenario::NewPartnerCountry);
    let cc = if rows[0].0.dialled.starts_with("0048") { "0048" } else { "0055" };
    assert!(rows.iter().all(|(c, _)| c.dialled.starts_with(cc)));
    let days: BTreeSet<_> = rows.iter().map(|(c, _)| local(c.start).date()).collect();
    assert!(days.len() >= 3, "{days:?}");
    let account = &rows[0].1.account;
    let before = sh
        .rows
        .iter()
        .zip(&sh.labels)
        .filter(|(c, l)| &l.account == account && l.scenario == "baseline" && c.dialled.starts_with(cc))
        .count();
    assert_eq!(before, 0);
}

#[test]
fn long_conference_is_one_three_hour_call_to_the_us() {
    let rows = of(Scenario::LongConference);
    assert_eq!(rows.len(), 1);
    let c = rows[0].0;
    assert!(c.dialled.starts_with("001") && c.billsec >= 10_000 && c.disposition == Disposition::Answered);
}

#[test]
fn weekend_shift_is_a_weekend_at_weekday_volume() {
    let rows = of(Scenario::WeekendShift);
    let mut per_day: BTreeMap<jiff::civil::Date, usize> = BTreeMap::new();
    for (c, _) in &rows {
        *per_day.entry(local(c.start).date()).or_default() += 1;
    }
    let weekend: Vec<_> = per_day.iter().filter(|(d, _)| d.weekday().to_monday_zero_offset() >= 5).collect();
    assert_eq!(weekend.len(), 2, "{per_day:?}");
    let normal = median_weekday(&daily(&rows[0].1.account));
    for (d, n) in weekend {
        assert!(*n as f64 >= 0.5 * normal as f64, "{d}: {n} against {normal} on weekdays");
    }
}

#[test]
fn diaspora_traffic_is_a_busier_week_to_nigeria_india_morocco() {
    let sh = shared();
    let rows = of(Scenario::DiasporaTraffic);
    let account = &rows[0].1.account;
    let diaspora = |c: &Cdr| ["00234", "0091", "00212"].iter().any(|p| c.dialled.starts_with(p));
    assert!(rows.iter().all(|(c, _)| diaspora(c)));
    let week = |t: Timestamp| local(t).date().iso_week_date().week();
    let busy = week(rows[0].0.start);
    let mut per_week: BTreeMap<i8, usize> = BTreeMap::new();
    for c in sh.rows.iter().filter(|c| &c.account == account && diaspora(c)) {
        *per_week.entry(week(c.start)).or_default() += 1;
    }
    let others: Vec<usize> = per_week.iter().filter(|(w, _)| **w != busy).map(|(_, n)| *n).collect();
    let avg = others.iter().sum::<usize>() as f64 / others.len() as f64;
    assert!(avg > 5.0, "diaspora calls are part of the trader's baseline");
    assert!(per_week[&busy] as f64 > 1.5 * avg, "{per_week:?}");
}

#[test]
fn scenarios_start_after_the_learning_week() {
    let start = date(2026, 1, 12).to_zoned_datetime(tz()).unwrap().timestamp();
    let sh = shared();
    for (c, l) in sh.rows.iter().zip(&sh.labels) {
        if l.scenario != "baseline" {
            // pbx_hack_night's test calls may come the evening before its first night.
            assert!(c.start >= start, "{} {} at {}", l.scenario, c.call_id, local(c.start));
        }
    }
    assert_eq!(sh.out.summary.scenarios.len(), 13);
}

#[test]
fn what_cannot_be_simulated_is_refused() {
    let base = test_config();
    let err = |cfg: SimConfig| simulate(&cfg, std::io::sink(), std::io::sink()).unwrap_err().to_string();
    assert!(err(SimConfig { start: date(2026, 1, 6), ..base.clone() }).contains("must be a Monday"));
    assert!(err(SimConfig { days: 12, ..base.clone() }).contains("needs at least 14 days"));
    assert!(err(SimConfig { accounts: 4, ..base.clone() }).contains("give more --accounts"));
    assert!(err(SimConfig { accounts: 0, ..base.clone() }).contains("at least one account"));
    assert!(SimConfig { accounts: 1, days: 1, scenarios: vec![], ..base }.check().is_ok());
}
