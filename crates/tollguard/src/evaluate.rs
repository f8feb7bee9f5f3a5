//! `tollguard evaluate`: the detection scorecard. Replays labelled traffic (from `tollguard
//! simulate`, or any CDRs with a labels file) through the engine and prints, per scenario and in
//! total, what fraud would have cost without protection, what it costs with tollguard, how fast
//! it was stopped, and what honest traffic paid for it; beside it the same figures for reference
//! strategies on the same data.

use crate::config::{self, Overrides};
use crate::replay::{drive, read_cdrs};
use crate::InputArgs;
use anyhow::{anyhow, Context, Result};
use jiff::civil::Time;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, CdrStore};
use tollguard_core::numbering::Dialled;
use tollguard_core::rater::Rater;
use tollguard_engine::Severity;
use tollguard_ingest::{Format, ReadOptions};

/// Arguments of `tollguard evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// A folder written by `tollguard simulate` (Master.csv, labels.csv, tollguard.toml).
    #[arg(long)]
    dir: PathBuf,
    /// Days from the first call run report-only (the learning week operators run first).
    #[arg(long, default_value_t = 7)]
    learn_days: i64,
}

struct Label {
    scenario: String,
    fraud: bool,
    incident: String,
}

fn read_labels(path: &PathBuf) -> Result<HashMap<String, Label>> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = rdr.headers()?.clone();
    let col = |name: &str| {
        h.iter().position(|x| x == name).ok_or_else(|| anyhow!("{}: no column {name:?}", path.display()))
    };
    let (id, sc, kind, inc) = (col("call_id")?, col("scenario")?, col("kind")?, col("incident")?);
    let mut out = HashMap::new();
    for (n, r) in rdr.records().enumerate() {
        let r = r.with_context(|| format!("{}:{}", path.display(), n + 2))?;
        let get = |i: usize| r.get(i).unwrap_or("").to_string();
        out.insert(get(id), Label { scenario: get(sc), fraud: get(kind) == "fraud", incident: get(inc) });
    }
    Ok(out)
}

#[derive(Default, Clone)]
struct Incident {
    scenario: String,
    account: String,
    first: Option<Timestamp>,
    exposure: Decimal,
    loss: Decimal,
    detected: Option<Timestamp>,
    /// Loss of each reference strategy, in `STRATEGIES` order.
    reference: [Decimal; 4],
}

const STRATEGIES: [&str; 4] =
    ["no protection", "EUR 500/day on ended calls", "daily report, next morning", "react after 3 days"];

pub fn run(args: EvaluateArgs) -> Result<ExitCode> {
    let cfg_path = args.dir.join("tollguard.toml");
    let file = config::read(&cfg_path)?;
    let setup = config::build(Some((&cfg_path, file)), &Overrides::default())?;
    let input = InputArgs {
        cdr: vec![args.dir.join("Master.csv")],
        format: Format::Asterisk,
        rates: vec![],
        cgrates_plan: None,
        config: None,
        tz: None,
        country: None,
    };
    let options = ReadOptions { tz: setup.cdr_tz.clone(), generic: None };
    let (cdrs, malformed) = read_cdrs(&input, &options)?;
    let labels = read_labels(&args.dir.join("labels.csv"))?;
    let rater = Arc::new(setup.rater.clone());
    let learn_until =
        cdrs.iter().map(|c| c.start()).min().map(|t| t + SignedDuration::from_hours(24 * args.learn_days));
    let replayed = drive(rater.clone(), setup.policy.clone(), learn_until, &cdrs, 1);

    let mut incidents: BTreeMap<String, Incident> = BTreeMap::new();
    let mut honest_billable = 0u64;
    let mut honest_denied = 0u64;
    let mut honest_cut_short = 0u64;
    let mut emergency = 0u64;
    let mut emergency_denied = 0u64;
    let mut unlabelled = 0u64;
    let mut cdr = Cdr::default();
    for (i, (stored, o)) in cdrs.iter().zip(&replayed.outcomes).enumerate() {
        stored.load_into(&mut cdr);
        let c = &cdr;
        let rated = rater.rate(c);
        if rated.dialled == Dialled::Emergency {
            emergency += 1;
            if !o.allowed {
                emergency_denied += 1;
            }
        }
        let Some(label) = labels.get(&c.call_id) else {
            unlabelled += 1;
            continue;
        };
        if label.fraud {
            let inc = incidents.entry(label.incident.clone()).or_default();
            inc.scenario = label.scenario.clone();
            inc.account = c.account.clone();
            inc.first = Some(inc.first.map_or(c.start, |f| f.min(c.start)));
            if let Some(row) = rated.rows[0] {
                inc.exposure += row.cost(c.billsec);
                if o.allowed {
                    inc.loss += row.cost(o.talk);
                }
            }
            let stop = if !o.allowed { Some(c.start) } else { replayed.cut_time(i) };
            if let Some(s) = stop {
                inc.detected = Some(inc.detected.map_or(s, |d| d.min(s)));
            }
        } else if rated.is_priceable() && c.billsec > 0 {
            honest_billable += 1;
            if !o.allowed {
                honest_denied += 1;
            } else if o.talk < c.billsec {
                honest_cut_short += 1;
            }
        }
    }
    // A critical alert on the incident's account after its first call also detects it.
    let fraud_accounts: HashSet<String> = incidents.values().map(|i| i.account.clone()).collect();
    let mut honest_critical = 0u64;
    for a in &replayed.alerts {
        if a.severity != Severity::Critical {
            continue;
        }
        let Ok(t) = a.time.parse::<Timestamp>() else { continue };
        if !fraud_accounts.contains(&a.account) {
            honest_critical += 1;
            continue;
        }
        for inc in incidents.values_mut().filter(|i| i.account == a.account) {
            if inc.first.is_some_and(|f| t >= f) {
                inc.detected = Some(inc.detected.map_or(t, |d| d.min(t)));
            }
        }
    }
    reference_strategies(&cdrs, &labels, &rater, &setup.cdr_tz, &mut incidents);

    print_table(&incidents);
    let total_exposure: Decimal = incidents.values().map(|i| i.exposure).sum();
    let total_loss: Decimal = incidents.values().map(|i| i.loss).sum();
    let mut ttd: Vec<i64> = incidents
        .values()
        .filter_map(|i| Some(i.detected?.duration_since(i.first?).as_secs().max(0)))
        .collect();
    ttd.sort();
    let detected = ttd.len();
    let median = ttd.get(ttd.len().saturating_sub(1) / 2).copied();
    let worst = incidents.values().map(|i| i.loss).max().unwrap_or_default();
    println!();
    println!("calls {}  malformed {malformed}  unlabelled {unlabelled}", cdrs.len());
    println!("incidents detected: {detected} of {}", incidents.len());
    println!("median time to detect: {}", median.map_or("-".into(), |s| format!("{s} s")));
    println!("worst incident with tollguard: EUR {worst:.2}");
    let pct = if total_exposure.is_zero() {
        Decimal::ZERO
    } else {
        total_loss * Decimal::from(100) / total_exposure
    };
    println!(
        "fraud loss with tollguard: EUR {total_loss:.2} of EUR {total_exposure:.2} exposure ({pct:.2}%)"
    );
    let honest_pct =
        if honest_billable == 0 { 0.0 } else { honest_denied as f64 * 100.0 / honest_billable as f64 };
    println!(
        "honest billable calls denied: {honest_denied} of {honest_billable} ({honest_pct:.4}%); cut short: {honest_cut_short}"
    );
    println!("emergency calls denied: {emergency_denied} of {emergency}");
    println!("critical alerts on honest accounts: {honest_critical}");
    let (accounts, bytes) = replayed.state;
    println!(
        "engine state: {bytes} bytes for {accounts} accounts ({} bytes per account)",
        bytes / accounts.max(1)
    );
    for (k, name) in STRATEGIES.iter().enumerate() {
        let l: Decimal = incidents.values().map(|i| i.reference[k]).sum();
        let w = incidents.values().map(|i| i.reference[k]).max().unwrap_or_default();
        println!("reference {name}: loss EUR {l:.2}, worst incident EUR {w:.2}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(incidents: &BTreeMap<String, Incident>) {
    let mut by: BTreeMap<&str, Vec<&Incident>> = BTreeMap::new();
    for i in incidents.values() {
        by.entry(i.scenario.as_str()).or_default().push(i);
    }
    println!(
        "| scenario | incidents | detected | median detect s | exposure EUR | loss EUR | worst EUR | 500/day EUR | next morning EUR | 3 days EUR |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (s, list) in by {
        let mut ttd: Vec<i64> =
            list.iter().filter_map(|i| Some(i.detected?.duration_since(i.first?).as_secs().max(0))).collect();
        ttd.sort();
        let sum = |f: &dyn Fn(&Incident) -> Decimal| list.iter().map(|i| f(i)).sum::<Decimal>();
        println!(
            "| {s} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            list.len(),
            ttd.len(),
            ttd.get(ttd.len().saturating_sub(1) / 2).map_or("-".to_string(), |v| v.to_string()),
            sum(&|i| i.exposure),
            sum(&|i| i.loss),
            list.iter().map(|i| i.loss).max().unwrap_or_default(),
            sum(&|i| i.reference[1]),
            sum(&|i| i.reference[2]),
            sum(&|i| i.reference[3]),
        );
    }
}

/// Loss of each reference strategy per incident: fraud calls that start before the strategy
/// stops the account cost their full recorded cost.
fn reference_strategies(
    cdrs: &CdrStore,
    labels: &HashMap<String, Label>,
    rater: &Rater,
    tz: &jiff::tz::TimeZone,
    incidents: &mut BTreeMap<String, Incident>,
) {
    // EUR 500 a day counted on ended calls: per account and local day, the moment ended cost
    // reaches 500 stops calls that start later that day.
    let mut by_day: HashMap<(String, jiff::civil::Date), Vec<(Timestamp, Decimal)>> = HashMap::new();
    let full = |c: &Cdr| rater.rate(c).rows[0].map_or(Decimal::ZERO, |r| r.cost(c.billsec));
    let mut cdr = Cdr::default();
    for stored in cdrs.iter() {
        stored.load_into(&mut cdr);
        let c = &cdr;
        let end = c.end.unwrap_or(c.start);
        by_day.entry((c.account.clone(), tz.to_datetime(c.start).date())).or_default().push((end, full(c)));
    }
    let mut stop_500: HashMap<(String, jiff::civil::Date), Timestamp> = HashMap::new();
    for (k, mut v) in by_day {
        v.sort();
        let mut sum = Decimal::ZERO;
        for (end, cost) in v {
            sum += cost;
            if sum >= Decimal::from(500) {
                stop_500.insert(k, end);
                break;
            }
        }
    }
    for stored in cdrs.iter() {
        stored.load_into(&mut cdr);
        let c = &cdr;
        let Some(label) = labels.get(&c.call_id).filter(|l| l.fraud) else { continue };
        let Some(inc) = incidents.get_mut(&label.incident) else { continue };
        let cost = full(c);
        inc.reference[0] += cost;
        let day = tz.to_datetime(c.start).date();
        if stop_500.get(&(c.account.clone(), day)).is_none_or(|s| c.start < *s) {
            inc.reference[1] += cost;
        }
        let first = inc.first.unwrap_or(c.start);
        // The next business day's 09:00 after the incident's first call.
        let mut d = tz.to_datetime(first).date().tomorrow().unwrap_or(tz.to_datetime(first).date());
        while d.weekday().to_monday_zero_offset() >= 5 {
            d = d.tomorrow().unwrap_or(d);
        }
        let morning = tz.to_timestamp(d.to_datetime(Time::constant(9, 0, 0, 0))).unwrap_or(first);
        if c.start < morning {
            inc.reference[2] += cost;
        }
        if c.start < first + SignedDuration::from_hours(72) {
            inc.reference[3] += cost;
        }
    }
}
