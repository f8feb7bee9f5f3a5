//! `tollguard reconcile`: two sets of records of the same traffic, side by side.
//!
//! In 2011 the carrier's first estimate (EUR 1,171 over four days) rested on one supplier's
//! incomplete records; the invoice (EUR 176,895.05) on others. Reconciling the PBX's own CDRs with
//! the carrier's shows such gaps call by call.
//!
//! The matching is `tollguard_core::reconcile` (by call id, then by number, time and duration
//! within tolerances). Both sides are priced with the same rates, so the cost of a gap is the cost
//! of its calls.

use crate::config::{self, Overrides};
use anyhow::{bail, Context, Result};
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tollguard_core::cdr::Cdr;
use tollguard_core::numbering::Dialled;
use tollguard_core::rater::Rater;
use tollguard_core::reconcile::{per_day, reconcile, Line, Side, Totals};
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

/// Reads one side: every record, priced; malformed rows reported and counted.
pub fn read_side(
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
                account: cdr.account.clone(),
            });
        }
    }
    Ok(out)
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
