//! `tollguard reconcile`: two sets of records of the same traffic, side by side.
//!
//! In 2011 the carrier's first estimate (EUR 1,171 over four days) rested on one supplier's
//! incomplete records; the invoice (EUR 176,895.05) on others. Reconciling the PBX's own CDRs with
//! the carrier's shows such gaps call by call.
//!
//! Matching, in order:
//! 1. **By call id**, where both sides carry the same id (two exports of one system).
//! 2. **By number, time and duration** for the rest: the same dialled number (as E.164 when the
//!    dialling plan reads it, else the digits as written), start times at most `--time-tolerance`
//!    apart (default 5 s; clocks of two systems differ), billed seconds at most
//!    `--duration-tolerance` apart (default 2 s; systems round differently). Of several candidates
//!    the closest in time wins, then the closest in duration. Each record is matched once.
//!
//! Every record ends up `matched`, `duration_differs` (matched by time and number, duration
//! outside the tolerance), `left_only` or `right_only`. Both sides are priced with the same rates, so
//! the cost of a gap is the cost of its calls.

use crate::config::{self, Overrides};
use anyhow::{bail, Context, Result};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tollguard_core::cdr::Cdr;
use tollguard_core::numbering::Dialled;
use tollguard_core::rater::Rater;
use tollguard_ingest::{Format, ReadError, ReadOptions};

/// Arguments of `tollguard reconcile`.
#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// The first side's records (e.g. the PBX's own CDRs); repeat for several files.
    #[arg(long, required = true)]
    left: Vec<PathBuf>,
    /// Format of the left files.
    #[arg(long)]
    left_format: Format,
    /// Zone of local times in the left files (default `--tz`).
    #[arg(long)]
    left_tz: Option<String>,
    /// The second side's records (e.g. the carrier's); repeat for several files.
    #[arg(long, required = true)]
    right: Vec<PathBuf>,
    /// Format of the right files.
    #[arg(long)]
    right_format: Format,
    /// Zone of local times in the right files (default `--tz`).
    #[arg(long)]
    right_tz: Option<String>,
    /// A-Z rate deck both sides are priced with (or `--cgrates-plan`, or the configuration's).
    #[arg(long = "rates")]
    rates: Vec<PathBuf>,
    /// A CGRateS tariff plan both sides are priced with.
    #[arg(long)]
    cgrates_plan: Option<PathBuf>,
    /// Configuration file: dialling plans, decks, `[generic_csv]`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Zone of the report's days, and default zone of local times in both sides. Default UTC.
    #[arg(long)]
    tz: Option<String>,
    /// Dialling plan country for national numbers.
    #[arg(long)]
    country: Option<String>,
    /// Most seconds two start times of one call may differ.
    #[arg(long, default_value = "5")]
    time_tolerance: u32,
    /// Most seconds two billed durations of one call may differ and still agree.
    #[arg(long, default_value = "2")]
    duration_tolerance: u32,
    /// Write every record's line (CSV) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the totals per day (CSV) here.
    #[arg(long)]
    days_out: Option<PathBuf>,
}

/// How a record came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Both sides agree.
    Matched,
    /// Same call (number and time), durations differ beyond the tolerance.
    DurationDiffers,
    /// Only the left side has it.
    LeftOnly,
    /// Only the right side has it.
    RightOnly,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::DurationDiffers => "duration_differs",
            Status::LeftOnly => "left_only",
            Status::RightOnly => "right_only",
        }
    }
}

/// One side's record, as compared.
#[derive(Clone, Debug)]
pub struct Side {
    /// The record's call id.
    pub call_id: String,
    /// File and line.
    pub origin: String,
    /// When the call started.
    pub start: Timestamp,
    /// The number dialled, E.164 with `+` when the plan reads it, else as written.
    pub number: String,
    /// Billed seconds.
    pub billsec: u32,
    /// Its price (None: not priced: unrated, inbound, internal).
    pub cost: Option<Decimal>,
}

/// One line of the reconciliation.
#[derive(Clone, Debug)]
pub struct Line {
    /// How it came out.
    pub status: Status,
    /// The left record, if any.
    pub left: Option<Side>,
    /// The right record, if any.
    pub right: Option<Side>,
}

impl Line {
    fn start(&self) -> Timestamp {
        self.left.as_ref().or(self.right.as_ref()).map(|s| s.start).unwrap_or_default()
    }
}

/// Totals of one day (or of all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records on each side.
    pub left_calls: u64,
    /// Records on the right.
    pub right_calls: u64,
    /// Matched (agreeing or not on duration).
    pub matched: u64,
    /// With different durations.
    pub duration_differs: u64,
    /// Only on the left.
    pub left_only: u64,
    /// Only on the right.
    pub right_only: u64,
    /// Billed seconds on the left.
    pub left_billsec: u64,
    /// Billed seconds on the right.
    pub right_billsec: u64,
    /// Cost on the left.
    pub left_cost: Decimal,
    /// Cost on the right.
    pub right_cost: Decimal,
}

impl Totals {
    fn add(&mut self, l: &Line) {
        match l.status {
            Status::Matched => self.matched += 1,
            Status::DurationDiffers => {
                self.matched += 1;
                self.duration_differs += 1
            }
            Status::LeftOnly => self.left_only += 1,
            Status::RightOnly => self.right_only += 1,
        }
        if let Some(s) = &l.left {
            self.left_calls += 1;
            self.left_billsec += s.billsec as u64;
            self.left_cost += s.cost.unwrap_or_default();
        }
        if let Some(s) = &l.right {
            self.right_calls += 1;
            self.right_billsec += s.billsec as u64;
            self.right_cost += s.cost.unwrap_or_default();
        }
    }
}

/// Reads one side: every record, priced; malformed rows reported and counted.
fn read_side(
    paths: &[PathBuf],
    format: Format,
    options: &ReadOptions,
    rater: &Rater,
    malformed: &mut u64,
) -> Result<Vec<Side>> {
    let mut out = vec![];
    let mut cdr = Cdr::default();
    for path in paths {
        let mut reader = tollguard_ingest::open(format, path, options)?;
        loop {
            match reader.read_into(&mut cdr) {
                Ok(true) => {}
                Ok(false) => break,
                Err(ReadError::Row(bad)) => {
                    *malformed += 1;
                    eprintln!("warning: skipped malformed row: {bad}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let r = rater.rate(&cdr);
            let number = match &r.dialled {
                Dialled::E164(n) => format!("+{}", n.as_str()),
                _ => cdr.dialled.clone(),
            };
            let cost = rater.cost_of(&r, cdr.start, cdr.billsec).map(|c| c.1);
            out.push(Side {
                call_id: cdr.call_id.clone(),
                origin: format!("{}:{}", path.display(), cdr.line),
                start: cdr.start,
                number,
                billsec: cdr.billsec,
                cost,
            });
        }
    }
    Ok(out)
}

/// Matches two sides (see the module documentation). Lines come out in start-time order.
pub fn reconcile(left: Vec<Side>, right: Vec<Side>, time_tol_s: u32, duration_tol_s: u32) -> Vec<Line> {
    let mut lines = vec![];
    let mut right_used = vec![false; right.len()];
    let mut left_open = vec![];
    // 1. By call id, where the ids are shared.
    let by_id: HashMap<&str, usize> =
        right.iter().enumerate().map(|(i, s)| (s.call_id.as_str(), i)).collect();
    for (i, l) in left.iter().enumerate() {
        match by_id.get(l.call_id.as_str()) {
            Some(&j) if !l.call_id.is_empty() && !right_used[j] => {
                right_used[j] = true;
                let differs = l.billsec.abs_diff(right[j].billsec) > duration_tol_s;
                lines.push((i, Some(j), if differs { Status::DurationDiffers } else { Status::Matched }));
            }
            _ => left_open.push(i),
        }
    }
    // 2. By number, time and duration.
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, r) in right.iter().enumerate() {
        if !right_used[j] {
            by_number.entry(r.number.as_str()).or_default().push(j);
        }
    }
    for v in by_number.values_mut() {
        v.sort_by_key(|&j| right[j].start);
    }
    left_open.sort_by_key(|&i| left[i].start);
    let tol = jiff::SignedDuration::from_secs(time_tol_s as i64);
    for i in left_open {
        let l = &left[i];
        let best = by_number.get(l.number.as_str()).and_then(|cands| {
            let from = cands.partition_point(|&j| right[j].start < l.start - tol);
            cands[from..]
                .iter()
                .take_while(|&&j| right[j].start <= l.start + tol)
                .filter(|&&j| !right_used[j])
                .min_by_key(|&&j| {
                    let dt = (right[j].start.as_second() - l.start.as_second()).unsigned_abs();
                    (dt, right[j].billsec.abs_diff(l.billsec))
                })
                .copied()
        });
        match best {
            Some(j) => {
                right_used[j] = true;
                let differs = l.billsec.abs_diff(right[j].billsec) > duration_tol_s;
                lines.push((i, Some(j), if differs { Status::DurationDiffers } else { Status::Matched }));
            }
            None => lines.push((i, None, Status::LeftOnly)),
        }
    }
    let mut left: Vec<Option<Side>> = left.into_iter().map(Some).collect();
    let mut right: Vec<Option<Side>> = right.into_iter().map(Some).collect();
    let mut out: Vec<Line> = lines
        .into_iter()
        .map(|(i, j, status)| Line { status, left: left[i].take(), right: j.and_then(|j| right[j].take()) })
        .collect();
    for (j, used) in right_used.into_iter().enumerate() {
        if !used {
            out.push(Line { status: Status::RightOnly, left: None, right: right[j].take() });
        }
    }
    out.sort_by(|a, b| {
        (a.start(), a.left.as_ref().map(|s| &s.call_id), a.right.as_ref().map(|s| &s.call_id)).cmp(&(
            b.start(),
            b.left.as_ref().map(|s| &s.call_id),
            b.right.as_ref().map(|s| &s.call_id),
        ))
    });
    out
}

/// Totals per local day in `tz`, and over all.
pub fn per_day(lines: &[Line], tz: &TimeZone) -> (BTreeMap<jiff::civil::Date, Totals>, Totals) {
    let mut days: BTreeMap<jiff::civil::Date, Totals> = BTreeMap::new();
    let mut all = Totals::default();
    for l in lines {
        days.entry(tz.to_datetime(l.start()).date()).or_default().add(l);
        all.add(l);
    }
    (days, all)
}

fn money(d: Option<Decimal>) -> String {
    d.map(|d| format!("{:.4}", d)).unwrap_or_default()
}

/// The per-record CSV.
pub fn write_lines(w: &mut dyn Write, lines: &[Line], tz: &TimeZone) -> Result<()> {
    let mut c = csv::Writer::from_writer(w);
    c.write_record([
        "status",
        "start",
        "number",
        "left_call_id",
        "right_call_id",
        "left_billsec",
        "right_billsec",
        "billsec_difference",
        "left_cost",
        "right_cost",
        "cost_difference",
        "left_origin",
        "right_origin",
    ])?;
    for l in lines {
        let (a, b) = (l.left.as_ref(), l.right.as_ref());
        let start = tz.to_datetime(l.start()).strftime("%Y-%m-%d %H:%M:%S").to_string();
        let number = a.or(b).map_or("", |s| s.number.as_str());
        let bs = |s: Option<&Side>| s.map(|s| s.billsec.to_string()).unwrap_or_default();
        let diff_s = b.map_or(0, |s| s.billsec as i64) - a.map_or(0, |s| s.billsec as i64);
        let cost = |s: Option<&Side>| s.and_then(|s| s.cost);
        let diff_c = cost(b).unwrap_or_default() - cost(a).unwrap_or_default();
        c.write_record([
            l.status.as_str(),
            &start,
            number,
            a.map_or("", |s| s.call_id.as_str()),
            b.map_or("", |s| s.call_id.as_str()),
            &bs(a),
            &bs(b),
            &diff_s.to_string(),
            &money(cost(a)),
            &money(cost(b)),
            &money(Some(diff_c)),
            a.map_or("", |s| s.origin.as_str()),
            b.map_or("", |s| s.origin.as_str()),
        ])?;
    }
    c.flush()?;
    Ok(())
}

/// The per-day CSV (with a `total` line).
pub fn write_days(w: &mut dyn Write, days: &BTreeMap<jiff::civil::Date, Totals>, all: &Totals) -> Result<()> {
    let mut c = csv::Writer::from_writer(w);
    c.write_record([
        "day",
        "left_calls",
        "right_calls",
        "matched",
        "duration_differs",
        "left_only",
        "right_only",
        "left_billsec",
        "right_billsec",
        "left_cost",
        "right_cost",
        "cost_difference",
    ])?;
    let rows =
        days.iter().map(|(d, t)| (d.to_string(), t)).chain(std::iter::once(("total".to_string(), all)));
    for (day, t) in rows {
        c.write_record([
            day,
            t.left_calls.to_string(),
            t.right_calls.to_string(),
            t.matched.to_string(),
            t.duration_differs.to_string(),
            t.left_only.to_string(),
            t.right_only.to_string(),
            t.left_billsec.to_string(),
            t.right_billsec.to_string(),
            money(Some(t.left_cost)),
            money(Some(t.right_cost)),
            money(Some(t.right_cost - t.left_cost)),
        ])?;
    }
    c.flush()?;
    Ok(())
}

/// The human table: per day, then totals.
pub fn table(days: &BTreeMap<jiff::civil::Date, Totals>, all: &Totals) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<10} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7} {:>14} {:>14} {:>14}\n",
        "day",
        "left",
        "right",
        "matched",
        "durdif",
        "l-only",
        "r-only",
        "left cost",
        "right cost",
        "difference"
    ));
    let rows =
        days.iter().map(|(d, t)| (d.to_string(), t)).chain(std::iter::once(("total".to_string(), all)));
    for (day, t) in rows {
        s.push_str(&format!(
            "{:<10} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7} {:>14} {:>14} {:>14}\n",
            day,
            t.left_calls,
            t.right_calls,
            t.matched,
            t.duration_differs,
            t.left_only,
            t.right_only,
            money(Some(t.left_cost)),
            money(Some(t.right_cost)),
            money(Some(t.right_cost - t.left_cost)),
        ));
    }
    s
}

pub fn run(a: ReconcileArgs) -> Result<ExitCode> {
    let file = match &a.config {
        Some(p) => Some((p.as_path(), config::read(p)?)),
        None => None,
    };
    let over = Overrides {
        country: a.country.clone(),
        tz: a.tz.clone(),
        rates: a.rates.clone(),
        cgrates_plan: a.cgrates_plan.clone(),
    };
    let setup = config::build(file, &over)?;
    let zone = |z: &Option<String>| -> Result<TimeZone> {
        match z {
            Some(n) => config::zone(n),
            None => Ok(setup.cdr_tz.clone()),
        }
    };
    if a.time_tolerance > 3600 {
        bail!("--time-tolerance is at most 3600 s");
    }
    let mut malformed = 0;
    let left_opts = ReadOptions { tz: zone(&a.left_tz)?, generic: setup.generic.clone() };
    let right_opts = ReadOptions { tz: zone(&a.right_tz)?, generic: setup.generic.clone() };
    let left = read_side(&a.left, a.left_format, &left_opts, &setup.rater, &mut malformed)?;
    let right = read_side(&a.right, a.right_format, &right_opts, &setup.rater, &mut malformed)?;
    let lines = reconcile(left, right, a.time_tolerance, a.duration_tolerance);
    let (days, all) = per_day(&lines, &setup.cdr_tz);
    if let Some(p) = &a.out {
        let mut f = std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
        write_lines(&mut f, &lines, &setup.cdr_tz)?;
    }
    if let Some(p) = &a.days_out {
        let mut f = std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
        write_days(&mut f, &days, &all)?;
    }
    print!("{}", table(&days, &all));
    eprintln!(
        "reconciled {} left and {} right records: {} matched ({} with another duration), {} only left, {} only \
         right, malformed {malformed}",
        all.left_calls, all.right_calls, all.matched, all.duration_differs, all.left_only, all.right_only
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(id: &str, at: i64, number: &str, billsec: u32) -> Side {
        Side {
            call_id: id.into(),
            origin: String::new(),
            start: Timestamp::from_second(1_307_800_000 + at).unwrap(),
            number: number.into(),
            billsec,
            cost: Some(Decimal::from(billsec)),
        }
    }

    #[test]
    fn ids_first_then_number_time_and_duration() {
        let left = vec![
            side("a", 0, "+670771", 60),
            side("b", 100, "+670772", 120),
            side("c", 200, "+670773", 30),
            side("d", 300, "+31201", 10),
        ];
        let right = vec![
            side("a", 1, "+670771", 60),     // same id
            side("x1", 103, "+670772", 121), // 3 s later, 1 s longer: the same call
            side("x2", 204, "+670773", 90),  // same call, another duration
            side("x3", 500, "+670774", 45),  // only right
        ];
        let lines = reconcile(left, right, 5, 2);
        let got: Vec<(Status, Option<&str>, Option<&str>)> = lines
            .iter()
            .map(|l| {
                (
                    l.status,
                    l.left.as_ref().map(|s| s.call_id.as_str()),
                    l.right.as_ref().map(|s| s.call_id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Status::Matched, Some("a"), Some("a")),
                (Status::Matched, Some("b"), Some("x1")),
                (Status::DurationDiffers, Some("c"), Some("x2")),
                (Status::LeftOnly, Some("d"), None),
                (Status::RightOnly, None, Some("x3")),
            ]
        );
        let (days, all) = per_day(&lines, &TimeZone::UTC);
        assert_eq!(days.len(), 1);
        assert_eq!(
            (all.left_calls, all.right_calls, all.matched, all.left_only, all.right_only),
            (4, 4, 3, 1, 1)
        );
        assert_eq!(all.right_cost - all.left_cost, Decimal::from(316 - 220));
    }

    #[test]
    fn each_record_is_matched_once_and_the_closest_wins() {
        let left = vec![side("l1", 0, "+1", 60), side("l2", 2, "+1", 60)];
        let right = vec![side("r1", 3, "+1", 60), side("r2", 9, "+1", 60)];
        let lines = reconcile(left, right, 5, 2);
        // l1 takes r1 (3 s), l2 has only r2 within 7 s: outside 5 s, so both are alone.
        let statuses: Vec<Status> = lines.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [Status::Matched, Status::LeftOnly, Status::RightOnly]);
    }
}
