//! `tollguard evaluate`: the detection scorecard. Replays labelled traffic (from `tollguard
//! simulate`, or any CDRs with a labels file) through the engine and prints, per scenario and in
//! total, what fraud would have cost without protection, what it costs with tollguard, how fast
//! it was stopped, and what honest traffic paid for it; beside it the same figures for reference
//! strategies on the same data.

use crate::config::{self, Overrides};
use crate::replay::{drive, read_cdrs};
use crate::InputArgs;
use anyhow::{anyhow, Context, Result};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollguard_core::cdr::Cdr;
use tollguard_core::numbering::Dialled;
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

/// One call as the reference strategies see it.
#[derive(Clone, Copy, Debug)]
struct RefCall {
    /// The account, as a number given in the order accounts first appear.
    account: u32,
    start: Timestamp,
    /// When it ended as recorded (its start if the record has no end).
    end: Timestamp,
    /// Its cost as recorded (its whole talk time).
    cost: Decimal,
    /// To an emergency number.
    emergency: bool,
    /// Labelled honest, priced and billed: one of the calls of "honest billable calls denied".
    honest_billable: bool,
    /// The fraud incident it belongs to (an index), if it is a fraud call.
    incident: Option<u32>,
}

/// What a reference strategy would have done on the same calls.
#[derive(Debug, Default, PartialEq)]
struct Reference {
    /// Per incident (by index): the cost of its calls that the strategy let through.
    loss: Vec<Decimal>,
    /// Per incident: seconds from its first call to when the strategy detects it, if it does.
    detect_s: Vec<Option<i64>>,
    /// Honest billable calls it denies.
    honest_denied: u64,
    /// Emergency calls it denies.
    emergency_denied: u64,
    /// Its critical alerts on accounts with no incident; `None` for a strategy that raises none.
    honest_critical: Option<u64>,
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
    // The same calls for the reference strategies: accounts and incidents by number.
    let mut calls: Vec<RefCall> = Vec::with_capacity(cdrs.len());
    let mut accounts: HashMap<String, u32> = HashMap::new();
    let mut incident_ids: HashMap<String, u32> = HashMap::new();
    let mut cdr = Cdr::default();
    for (i, (stored, o)) in cdrs.iter().zip(&replayed.outcomes).enumerate() {
        stored.load_into(&mut cdr);
        let c = &cdr;
        let rated = rater.rate(c);
        let account = match accounts.get(&c.account) {
            Some(&a) => a,
            None => {
                let a = accounts.len() as u32;
                accounts.insert(c.account.clone(), a);
                a
            }
        };
        calls.push(RefCall {
            account,
            start: c.start,
            end: c.end.unwrap_or(c.start),
            cost: rated.rows[0].map_or(Decimal::ZERO, |r| r.cost(c.billsec)),
            emergency: rated.dialled == Dialled::Emergency,
            honest_billable: false,
            incident: None,
        });
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
            let id = match incident_ids.get(&label.incident) {
                Some(&n) => n,
                None => {
                    let n = incident_ids.len() as u32;
                    incident_ids.insert(label.incident.clone(), n);
                    n
                }
            };
            if let Some(call) = calls.last_mut() {
                call.incident = Some(id);
            }
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
            if let Some(call) = calls.last_mut() {
                call.honest_billable = true;
            }
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
    let references = reference_strategies(&calls, incident_ids.len(), &setup.cdr_tz);
    for (name, &id) in &incident_ids {
        if let Some(inc) = incidents.get_mut(name) {
            for (k, r) in references.iter().enumerate() {
                inc.reference[k] = r.loss[id as usize];
            }
        }
    }

    print_table(&incidents);
    let total_exposure: Decimal = incidents.values().map(|i| i.exposure).sum();
    let total_loss: Decimal = incidents.values().map(|i| i.loss).sum();
    let mut ttd: Vec<i64> = incidents
        .values()
        .filter_map(|i| Some(i.detected?.duration_since(i.first?).as_secs().max(0)))
        .collect();
    let median = median(&mut ttd);
    let detected = ttd.len();
    let worst = incidents.values().map(|i| i.loss).max().unwrap_or_default();
    println!();
    println!("calls {}  malformed {malformed}  unlabelled {unlabelled}", cdrs.len());
    println!("incidents detected: {detected} of {}", incidents.len());
    println!("median time to detect: {}", median.map_or("-".into(), |s| format!("{s} s")));
    println!("worst incident with tollguard: EUR {worst:.2}");
    let pct = percent(total_loss, total_exposure);
    println!(
        "fraud loss with tollguard: EUR {total_loss:.2} of EUR {total_exposure:.2} exposure ({pct:.2}%)"
    );
    let honest_pct = share(honest_denied, honest_billable);
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

    // Every strategy side by side, tollguard first, from the same figures as the lines above.
    let mut rows = vec![Row {
        name: "tollguard",
        detect_s: ttd,
        loss: total_loss,
        worst,
        honest_denied,
        emergency_denied,
        honest_critical: Some(honest_critical),
    }];
    for (name, r) in STRATEGIES.iter().zip(&references) {
        rows.push(Row {
            name,
            detect_s: r.detect_s.iter().flatten().copied().collect(),
            loss: r.loss.iter().sum(),
            worst: r.loss.iter().max().copied().unwrap_or_default(),
            honest_denied: r.honest_denied,
            emergency_denied: r.emergency_denied,
            honest_critical: r.honest_critical,
        });
    }
    println!();
    print_strategies(&rows, incidents.len(), total_exposure, honest_billable, emergency);
    Ok(ExitCode::SUCCESS)
}

/// One strategy's figures on the whole data.
struct Row<'a> {
    name: &'a str,
    /// Seconds to detect each incident it detects.
    detect_s: Vec<i64>,
    loss: Decimal,
    worst: Decimal,
    honest_denied: u64,
    emergency_denied: u64,
    honest_critical: Option<u64>,
}

/// The strategies' table: the same measures as tollguard's lines, one row per strategy.
fn print_strategies(rows: &[Row], incidents: usize, exposure: Decimal, honest: u64, emergency: u64) {
    println!(
        "| strategy | incidents detected | median time to detect | worst incident EUR | loss / exposure EUR | honest billable calls denied | emergency calls denied | critical alerts on honest accounts |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let mut ttd = r.detect_s.clone();
        let median = median(&mut ttd).map_or("-".into(), |s| format!("{s} s"));
        let pct = percent(r.loss, exposure);
        let honest_pct = share(r.honest_denied, honest);
        println!(
            "| {} | {} of {incidents} | {median} | {:.2} | {:.2} / {exposure:.2} ({pct:.2}%) | {} of {honest} ({honest_pct:.4}%) | {} of {emergency} | {} |",
            r.name,
            ttd.len(),
            r.worst,
            r.loss,
            r.honest_denied,
            r.emergency_denied,
            r.honest_critical.map_or("n/a".into(), |n| n.to_string()),
        );
    }
}

/// The lower median of `v` (sorted on the way); `None` when it is empty.
fn median(v: &mut [i64]) -> Option<i64> {
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// `part` as a percentage of `whole` (0 of nothing).
fn percent(part: Decimal, whole: Decimal) -> Decimal {
    if whole.is_zero() {
        Decimal::ZERO
    } else {
        part * Decimal::from(100) / whole
    }
}

/// `part` of `whole` calls, percent (0 of none).
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
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
        let median = median(&mut ttd);
        let sum = |f: &dyn Fn(&Incident) -> Decimal| list.iter().map(|i| f(i)).sum::<Decimal>();
        println!(
            "| {s} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            list.len(),
            ttd.len(),
            median.map_or("-".to_string(), |v| v.to_string()),
            sum(&|i| i.exposure),
            sum(&|i| i.loss),
            list.iter().map(|i| i.loss).max().unwrap_or_default(),
            sum(&|i| i.reference[1]),
            sum(&|i| i.reference[2]),
            sum(&|i| i.reference[3]),
        );
    }
}

/// What each reference strategy (`STRATEGIES` order) would have done on the same calls; their
/// rules are in docs/detection.md. A fraud call a strategy lets through costs its full recorded
/// cost; no strategy denies an emergency call.
fn reference_strategies(calls: &[RefCall], incidents: usize, tz: &TimeZone) -> [Reference; 4] {
    let day = |t: Timestamp| tz.to_datetime(t).date();
    // Each incident's account, first call and the end of its last call.
    let mut spans: Vec<Option<(u32, Timestamp, Timestamp)>> = vec![None; incidents];
    for c in calls {
        if let Some(span) = c.incident.and_then(|i| spans.get_mut(i as usize)) {
            *span = Some(match *span {
                None => (c.account, c.start, c.end),
                Some((a, first, last)) => (a, first.min(c.start), last.max(c.end)),
            });
        }
    }
    let fraud_accounts: HashSet<u32> = spans.iter().flatten().map(|s| s.0).collect();

    let none = Reference { honest_critical: None, ..tally(calls, incidents, |_| false) };

    // EUR 500 a day counted on ended calls: per account and local day, the moment ended cost
    // reaches 500 stops calls that start later that day.
    let mut by_day: HashMap<(u32, Date), Vec<(Timestamp, Decimal)>> = HashMap::new();
    for c in calls {
        by_day.entry((c.account, day(c.start))).or_default().push((c.end, c.cost));
    }
    let mut stop_500: HashMap<(u32, Date), Timestamp> = HashMap::new();
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
    // Detected when the account is at the limit while the incident lasts: from its first call
    // (a day already at the limit then denies that call) to the end of its last.
    let detect_500 = spans
        .iter()
        .map(|s| {
            let (account, first, last) = (*s)?;
            let at_limit = stop_500
                .iter()
                .filter(|((a, d), _)| *a == account && *d >= day(first))
                .map(|(_, stop)| (*stop).max(first))
                .filter(|t| *t <= last)
                .min()?;
            Some(at_limit.duration_since(first).as_secs())
        })
        .collect();
    let limit = Reference {
        detect_s: detect_500,
        // Each time an account with no incident reaches the limit: the limit's alert.
        honest_critical: Some(stop_500.keys().filter(|(a, _)| !fraud_accounts.contains(a)).count() as u64),
        ..tally(calls, incidents, |c| stop_500.get(&(c.account, day(c.start))).is_some_and(|s| *s <= c.start))
    };

    // Acting on a report: the incident's account is blocked from when it is seen until the end
    // of the incident's last call, and at least to the end of that local day. Whoever reads the
    // report tells fraud from honest traffic: no alerts, and no honest account blocked.
    let acting = |seen: &dyn Fn(Timestamp) -> Timestamp| {
        let mut blocks: HashMap<u32, Vec<(Timestamp, Timestamp, Timestamp)>> = HashMap::new();
        for &(account, first, last) in spans.iter().flatten() {
            let from = seen(first);
            let midnight = day(from)
                .tomorrow()
                .ok()
                .and_then(|d| tz.to_timestamp(d.to_datetime(Time::midnight())).ok())
                .unwrap_or(from);
            blocks.entry(account).or_default().push((from, last, midnight));
        }
        let denies = |c: &RefCall| {
            blocks.get(&c.account).is_some_and(|v| {
                v.iter()
                    .any(|&(from, last, midnight)| from <= c.start && (c.start <= last || c.start < midnight))
            })
        };
        Reference {
            detect_s: spans
                .iter()
                .map(|s| s.map(|(_, first, _)| seen(first).duration_since(first).as_secs()))
                .collect(),
            honest_critical: None,
            ..tally(calls, incidents, denies)
        }
    };
    let morning = acting(&|first| next_business_morning(first, tz));
    let three_days = acting(&|first| first + SignedDuration::from_hours(72));
    [none, limit, morning, three_days]
}

/// Loss per incident and calls denied under a strategy that denies the calls `denies` says,
/// except emergency calls (every reference strategy lets those through, as tollguard does).
fn tally(calls: &[RefCall], incidents: usize, denies: impl Fn(&RefCall) -> bool) -> Reference {
    let mut r = Reference {
        loss: vec![Decimal::ZERO; incidents],
        detect_s: vec![None; incidents],
        ..Reference::default()
    };
    for c in calls {
        let denied = !c.emergency && denies(c);
        if denied {
            r.honest_denied += u64::from(c.honest_billable);
            r.emergency_denied += u64::from(c.emergency);
        } else if let Some(loss) = c.incident.and_then(|i| r.loss.get_mut(i as usize)) {
            *loss += c.cost;
        }
    }
    r
}

/// 09:00 local on the first business day (Monday to Friday) after the day of `t`.
fn next_business_morning(t: Timestamp, tz: &TimeZone) -> Timestamp {
    let mut d = tz.to_datetime(t).date().tomorrow().unwrap_or(tz.to_datetime(t).date());
    while d.weekday().to_monday_zero_offset() >= 5 {
        d = d.tomorrow().unwrap_or(d);
    }
    tz.to_timestamp(d.to_datetime(Time::constant(9, 0, 0, 0))).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call of `minutes` at local time `start` (+01:00) costing `cost` EUR; honest billable
    /// unless it belongs to an incident or costs nothing.
    fn call(account: u32, start: &str, minutes: i64, cost: i64, incident: Option<u32>) -> RefCall {
        let start: Timestamp = format!("{start}:00+01:00").parse().unwrap();
        RefCall {
            account,
            start,
            end: start + SignedDuration::from_mins(minutes),
            cost: Decimal::from(cost),
            emergency: false,
            honest_billable: incident.is_none() && cost > 0,
            incident,
        }
    }

    fn emergency(account: u32, start: &str) -> RefCall {
        RefCall { emergency: true, ..call(account, start, 5, 0, None) }
    }

    #[test]
    fn reference_strategies_on_a_hand_made_week() {
        let (i0, i1) = (Some(0), Some(1));
        let calls = [
            // Account 0, honest: EUR 550 ended by Monday 11:00 reaches the limit then.
            call(0, "2026-01-05T08:00", 60, 300, None),
            call(0, "2026-01-05T10:00", 60, 250, None),
            call(0, "2026-01-05T11:30", 10, 10, None), // denied by the limit
            emergency(0, "2026-01-05T12:00"),          // at the limit, let through
            call(0, "2026-01-06T00:30", 10, 10, None), // Tuesday locally (Monday in UTC): allowed
            // Account 1: incident 0 on Monday evening, EUR 200 a call.
            call(1, "2026-01-05T09:00", 10, 5, None),
            call(1, "2026-01-05T20:00", 30, 200, i0),
            call(1, "2026-01-05T20:30", 30, 200, i0),
            call(1, "2026-01-05T21:00", 30, 200, i0), // ends at 21:30 with EUR 605 ended: limit
            call(1, "2026-01-05T21:30", 30, 200, i0), // starts at the limit: denied
            call(1, "2026-01-05T22:00", 30, 200, i0), // denied; the incident ends at 22:30
            call(1, "2026-01-05T23:00", 10, 5, None), // honest, denied by the limit
            call(1, "2026-01-06T10:00", 10, 5, None), // after Tuesday's report: blocked
            emergency(1, "2026-01-06T10:30"),         // blocked account, let through
            call(1, "2026-01-07T10:00", 10, 5, None), // the block ended at Wednesday 00:00
            call(1, "2026-01-08T21:00", 10, 5, None), // 72 h after 20:00 Monday: blocked
            // Account 2: incident 1 from Friday evening, under the limit; Monday's report.
            call(2, "2026-01-09T18:00", 10, 50, i1),
            call(2, "2026-01-12T09:30", 10, 5, None), // blocked by the report (09:00)
            call(2, "2026-01-12T10:00", 10, 30, i1),  // denied by the report only
            call(2, "2026-01-12T19:00", 10, 5, None), // blocked by both (3 days: from 18:00)
        ];
        let tz = TimeZone::fixed(jiff::tz::offset(1));
        let [none, limit, morning, three_days] = reference_strategies(&calls, 2, &tz);
        let eur = |v: [i64; 2]| v.map(Decimal::from).to_vec();
        let h = |hours: i64| Some(hours * 3600);

        assert_eq!(none.loss, eur([1000, 80]));
        assert_eq!(none.detect_s, [None, None]);
        assert_eq!((none.honest_denied, none.emergency_denied, none.honest_critical), (0, 0, None));

        assert_eq!(limit.loss, eur([600, 80]));
        assert_eq!(limit.detect_s, [Some(5400), None], "90 minutes after the first fraud call");
        assert_eq!(limit.honest_denied, 2, "account 0 at 11:30, account 1 at 23:00");
        assert_eq!(limit.emergency_denied, 0);
        assert_eq!(limit.honest_critical, Some(1), "account 0 on Monday");

        assert_eq!(morning.loss, eur([1000, 50]));
        assert_eq!(morning.detect_s, [h(13), h(63)], "Tuesday 09:00; Friday evening to Monday 09:00");
        assert_eq!((morning.honest_denied, morning.emergency_denied, morning.honest_critical), (3, 0, None));

        assert_eq!(three_days.loss, eur([1000, 80]));
        assert_eq!(three_days.detect_s, [h(72), h(72)]);
        assert_eq!(three_days.honest_denied, 2);
        assert_eq!((three_days.emergency_denied, three_days.honest_critical), (0, None));
    }
}
