//! Reading a CGRateS tariff-plan folder (the `*.csv` files of `cgr-loader`).
//!
//! Each file is comma separated, without quoting in practice; lines starting with `#` and blank
//! lines are skipped; fields are trimmed. Every error names the file and line.

use super::HashMap;
use super::{
    Activation, DestKey, Interval, MaxCost, MaxCostStrategy, Plan, Profile, Rating, RoundingMethod, Slice,
    Timing,
};
use crate::money::parse_amount;
use rust_decimal::Decimal;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A plan that cannot be loaded: which file, which line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The file (or the folder, for a missing file).
    pub file: PathBuf,
    /// 1-based line; 0 when the error is about the file as a whole.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for PlanError {}

/// The rows of one file: (line, fields).
struct Rows {
    file: PathBuf,
    rows: Vec<(u64, Vec<String>)>,
}

impl Rows {
    fn read(dir: &Path, name: &str, required: bool) -> Result<Rows, PlanError> {
        let file = dir.join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Rows { file, rows: vec![] });
            }
            Err(e) => return Err(PlanError { file, line: 0, message: format!("cannot read: {e}") }),
        };
        let mut rows = vec![];
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.contains('"') {
                return Err(PlanError {
                    file,
                    line: i as u64 + 1,
                    message: "quoted fields are not supported in tariff-plan files".into(),
                });
            }
            rows.push((i as u64 + 1, l.split(',').map(|f| f.trim().to_string()).collect()));
        }
        Ok(Rows { file, rows })
    }

    fn err(&self, line: u64, message: impl Into<String>) -> PlanError {
        PlanError { file: self.file.clone(), line, message: message.into() }
    }

    /// The rows, each checked to have at least `min` fields (missing trailing fields read as empty).
    fn each(&self, min: usize, what: &str) -> Result<Vec<(u64, Vec<&str>)>, PlanError> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (line, f) in &self.rows {
            if f.len() < min {
                return Err(self.err(*line, format!("{what} needs {min} fields, found {}", f.len())));
            }
            out.push((*line, f.iter().map(String::as_str).collect()));
        }
        Ok(out)
    }
}

/// Field `i`, or empty when the row is short.
fn field<'a>(f: &[&'a str], i: usize) -> &'a str {
    f.get(i).copied().unwrap_or("")
}

/// A Go-style duration as CGRateS writes them (`60s`, `1m`, `1h30m`, `0.5s`, `100ms`), in
/// nanoseconds. A plain integer is nanoseconds too (CGRateS reads `1024` as 1024 units: data
/// and SMS plans count units that way). Empty is zero.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let bad = || format!("not a duration: {s:?} (expected e.g. 60s, 1m, 1h30m or a plain number)");
    let b = t.as_bytes();
    let (mut i, mut total) = (0usize, 0u128);
    while i < b.len() {
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let num = &t[start..i];
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit: u128 = match &t[ustart..i] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let d: Decimal = num.parse().map_err(|_| bad())?;
        if num.is_empty() || d.is_sign_negative() {
            return Err(bad());
        }
        let ns = d * Decimal::from_i128_with_scale(unit as i128, 0);
        if !ns.fract().is_zero() {
            return Err(format!("{s:?} is not a whole number of nanoseconds"));
        }
        total += u128::try_from(ns.mantissa() / 10i128.pow(ns.scale())).map_err(|_| bad())?;
    }
    u64::try_from(total).map_err(|_| format!("duration {s:?} is too long"))
}

/// A list field: `*any` (or empty) is `None`; otherwise `;`-separated integers.
fn int_list(s: &str, lo: u32, hi: u32, what: &str) -> Result<Option<Vec<u32>>, String> {
    if s.is_empty() || s == "*any" {
        return Ok(None);
    }
    let mut v = vec![];
    for p in s.split(';') {
        let n: u32 = p.trim().parse().map_err(|_| format!("{what}: {p:?} is not a number"))?;
        if n < lo || n > hi {
            return Err(format!("{what}: {n} is outside {lo}..={hi}"));
        }
        v.push(n);
    }
    Ok(Some(v))
}

/// `HH:MM:SS` as seconds of the day; `*asap`, `*any` and empty are midnight.
fn time_of_day(s: &str) -> Result<u32, String> {
    if s.is_empty() || s == "*any" || s == "*asap" {
        return Ok(0);
    }
    // `start;end`: CGRateS keeps only the start (a timing runs to midnight); so do we.
    let s = s.split(';').next().unwrap_or_default().trim();
    if s.is_empty() {
        return Ok(0);
    }
    let p: Vec<&str> = s.split(':').collect();
    let bad = || format!("time {s:?} is not HH:MM:SS");
    if p.len() != 3 {
        return Err(bad());
    }
    let n = |x: &str, max: u32| x.parse::<u32>().ok().filter(|v| *v <= max).ok_or_else(bad);
    Ok(n(p[0], 23)? * 3600 + n(p[1], 59)? * 60 + n(p[2], 59)?)
}

fn weight(s: &str) -> Result<Decimal, String> {
    if s.is_empty() {
        return Ok(Decimal::ZERO);
    }
    s.parse::<Decimal>().map_err(|_| format!("weight {s:?} is not a number"))
}

/// An amount: plain decimals, or the exponent form a float column may hold (`1e-3`). At most
/// 12 decimals, so a price is computed in integers without overflow.
fn amount(s: &str, what: &str) -> Result<Decimal, String> {
    if s.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let d = match parse_amount(s) {
        Ok(d) => d,
        Err(e) => Decimal::from_scientific(s).map_err(|_| format!("{what}: {e}"))?,
    }
    .normalize();
    if d.scale() > 12 {
        return Err(format!("{what}: {s} has more than 12 decimals"));
    }
    if d > Decimal::from(crate::rating::MAX_AMOUNT) {
        return Err(format!("{what}: {s} is above {}", crate::rating::MAX_AMOUNT));
    }
    Ok(d)
}

/// An activation time: RFC 3339, or `YYYY-MM-DD[ HH:MM:SS]` read as UTC (CGRateS's default zone).
fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let dt: jiff::civil::DateTime = s
        .parse()
        .or_else(|_| s.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|e| e.to_string())?;
    jiff::tz::TimeZone::UTC.to_timestamp(dt).map_err(|e| e.to_string())
}

/// Loads the folder. See the module documentation of [`super`] for what is read.
pub fn load(dir: &Path) -> Result<Plan, PlanError> {
    if !dir.is_dir() {
        return Err(PlanError { file: dir.to_path_buf(), line: 0, message: "not a folder".into() });
    }
    // Timings.
    let mut timings: HashMap<String, u32> = HashMap::default();
    let mut timing_list: Vec<Timing> = vec![];
    let t = Rows::read(dir, "Timings.csv", false)?;
    for (line, f) in t.each(6, "a timing (ID, Years, Months, MonthDays, WeekDays, Time)")? {
        let e = |m: String| t.err(line, m);
        let timing = Timing {
            id: f[0].to_string(),
            years: int_list(f[1], 1, 9999, "years").map_err(e)?,
            months: int_list(f[2], 1, 12, "months").map_err(e)?,
            month_days: int_list(f[3], 1, 31, "month days").map_err(e)?,
            // CGRateS reads 0 and 7 as Sunday.
            week_days: int_list(f[4], 0, 7, "week days")
                .map_err(e)?
                .map(|v| v.into_iter().map(|d| if d == 0 { 7 } else { d }).collect()),
            start_s: time_of_day(f[5]).map_err(e)?,
        };
        if timings.insert(f[0].to_string(), timing_list.len() as u32).is_some() {
            return Err(t.err(line, format!("timing {} is defined twice", f[0])));
        }
        timing_list.push(timing);
    }

    // Destinations: prefix -> destination ids.
    let mut dest_ids: HashMap<String, u32> = HashMap::default();
    let mut dest_names: Vec<String> = vec![];
    let mut prefixes: Vec<(String, u32)> = vec![];
    let d = Rows::read(dir, "Destinations.csv", false)?;
    for (line, f) in d.each(2, "a destination (ID, Prefix)")? {
        let (id, prefix) = (f[0], f[1]);
        if id.is_empty() || prefix.is_empty() {
            return Err(d.err(line, "destination ID and prefix must not be empty"));
        }
        let n = dest_names.len() as u32;
        let idx = *dest_ids.entry(id.to_string()).or_insert_with(|| {
            dest_names.push(id.to_string());
            n
        });
        prefixes.push((super::prefix_key(prefix).to_string(), idx));
    }

    // Rates: ID -> rating (connect fee, slices).
    let r = Rows::read(dir, "Rates.csv", true)?;
    let mut rate_rows: HashMap<String, Vec<(u64, Decimal, Slice)>> = HashMap::default();
    let mut rate_order: Vec<String> = vec![];
    for (line, f) in
        r.each(6, "a rate (ID, ConnectFee, Rate, RateUnit, RateIncrement, GroupIntervalStart)")?
    {
        let e = |m: String| r.err(line, m);
        let fee = amount(f[1], "connect fee").map_err(e)?;
        let rate = amount(f[2], "rate").map_err(e)?;
        let unit_ns = parse_duration(f[3]).map_err(|m| r.err(line, format!("rate unit: {m}")))?;
        let increment_ns = parse_duration(f[4]).map_err(|m| r.err(line, format!("rate increment: {m}")))?;
        let group_start_ns =
            parse_duration(f[5]).map_err(|m| r.err(line, format!("group interval start: {m}")))?;
        if fee.is_sign_negative() || rate.is_sign_negative() {
            return Err(r.err(line, "connect fee and rate must not be negative"));
        }
        // CGRateS reads a zero unit or increment as one second.
        let unit_ns = if unit_ns == 0 { 1_000_000_000 } else { unit_ns };
        let increment_ns = if increment_ns == 0 { 1_000_000_000 } else { increment_ns };
        if !rate_rows.contains_key(f[0]) {
            rate_order.push(f[0].to_string());
        }
        rate_rows.entry(f[0].to_string()).or_default().push((
            line,
            fee,
            Slice { group_start_ns, rate, unit_ns, increment_ns },
        ));
    }
    let mut ratings: Vec<Rating> = vec![];
    let mut rating_ids: HashMap<String, u32> = HashMap::default();
    for id in rate_order {
        let mut rows = rate_rows.remove(&id).unwrap_or_default();
        // The connect fee is the first row's, in file order (CGRateS keeps one fee per rate ID).
        let connect_fee = rows[0].1;
        rows.sort_by_key(|(_, _, s)| s.group_start_ns);
        for w in rows.windows(2) {
            if w[0].2.group_start_ns == w[1].2.group_start_ns {
                return Err(
                    r.err(w[1].0, format!("rate {id} has two rows starting at the same group interval"))
                );
            }
        }
        // A rate whose first row starts later (RT_TEST_1 of CGRateS's `testit` plan) is read as
        // that row from the call's start.
        rating_ids.insert(id.clone(), ratings.len() as u32);
        ratings.push(Rating { id, connect_fee, slices: rows.into_iter().map(|(_, _, s)| s).collect() });
    }

    // Destination rates: ID -> [(destination, rating, rounding, max cost)].
    struct DestRate {
        dest: DestKey,
        rating: u32,
        method: RoundingMethod,
        decimals: u32,
        max_cost: Option<MaxCost>,
    }
    let dr = Rows::read(dir, "DestinationRates.csv", true)?;
    let mut dest_rates: HashMap<String, Vec<DestRate>> = HashMap::default();
    for (line, f) in dr.each(
        5,
        "a destination rate (ID, DestinationsID, RatesID, RoundingMethod, RoundingDecimals, MaxCost, MaxCostStrategy)",
    )? {
        let dest = if f[1] == "*any" {
            DestKey::Any
        } else {
            match dest_ids.get(f[1]) {
                Some(&i) => DestKey::Id(i),
                None => return Err(dr.err(line, format!("destination {} is not in Destinations.csv", f[1]))),
            }
        };
        let Some(&rating) = rating_ids.get(f[2]) else {
            return Err(dr.err(line, format!("rate {} is not in Rates.csv", f[2])));
        };
        let method = match f[3] {
            "*up" => RoundingMethod::Up,
            "*down" => RoundingMethod::Down,
            "*middle" => RoundingMethod::Middle,
            // CGRateS reads an empty method as none, and does not round with it.
            "" => RoundingMethod::None,
            m => return Err(dr.err(line, format!("rounding method {m:?} is not *up, *down or *middle"))),
        };
        // Empty reads as 0 (CGRateS's CSV loader), which leaves the total unrounded.
        let decimals: u32 = if f[4].is_empty() {
            0
        } else {
            f[4].parse().ok().filter(|d| *d <= 20).ok_or_else(|| {
                dr.err(line, format!("rounding decimals {:?} is not a number from 0 to 20", f[4]))
            })?
        };
        let mc = amount(field(&f, 5), "max cost").map_err(|m| dr.err(line, m))?;
        let max_cost = match field(&f, 6) {
            "" => None,
            _ if mc.is_zero() => None,
            "*free" => Some(MaxCost { amount: mc, strategy: MaxCostStrategy::Free }),
            "*disconnect" => Some(MaxCost { amount: mc, strategy: MaxCostStrategy::Disconnect }),
            s => return Err(dr.err(line, format!("max cost strategy {s:?} is not *free or *disconnect"))),
        };
        dest_rates.entry(f[0].to_string()).or_default().push(DestRate { dest, rating, method, decimals, max_cost });
    }

    // Rating plans: ID -> destination -> rate intervals.
    let rp = Rows::read(dir, "RatingPlans.csv", true)?;
    let mut plan_ids: HashMap<String, u32> = HashMap::default();
    let mut plans: Vec<super::RatingPlan> = vec![];
    // Per plan: destination -> index into its intervals (| TIMED).
    let mut entries: Vec<HashMap<u32, u32>> = vec![];
    for (line, f) in rp.each(4, "a rating plan (ID, DestinationRatesID, TimingID, Weight)")? {
        let Some(drs) = dest_rates.get(f[1]) else {
            return Err(rp.err(line, format!("destination rate {} is not in DestinationRates.csv", f[1])));
        };
        let timing = if f[2] == "*any" {
            None
        } else {
            match timings.get(f[2]) {
                Some(&t) => Some(t),
                None => return Err(rp.err(line, format!("timing {} is not in Timings.csv", f[2]))),
            }
        };
        let w = weight(f[3]).map_err(|m| rp.err(line, m))?;
        let n = plans.len() as u32;
        let idx = *plan_ids.entry(f[0].to_string()).or_insert_with(|| {
            plans.push(super::RatingPlan {
                id: f[0].to_string(),
                by_dest: super::DestIndex::Sparse(HashMap::default()),
                intervals: vec![],
                any: Default::default(),
            });
            n
        });
        let plan = &mut plans[idx as usize];
        if entries.len() <= idx as usize {
            entries.resize_with(idx as usize + 1, HashMap::default);
        }
        for x in drs {
            let rating = &ratings[x.rating as usize];
            let iv = Interval {
                timing,
                weight: w,
                rating: x.rating,
                fee: rating.connect_fee,
                slices: rating.slices.iter().cloned().collect(),
                method: x.method,
                decimals: x.decimals,
                max_cost: x.max_cost,
                dest_rate: Arc::from(f[1]),
            };
            match x.dest {
                DestKey::Any => plan.any.push(iv),
                DestKey::Id(d) => {
                    let next = plan.intervals.len() as u32;
                    let e = entries[idx as usize].entry(d).or_insert(next);
                    if *e == next {
                        plan.intervals.push(Default::default());
                    }
                    if iv.timing.is_some() {
                        *e |= super::TIMED;
                    }
                    plan.intervals[(*e & !super::TIMED) as usize].push(iv);
                }
            }
        }
    }

    for (p, e) in plans.iter_mut().zip(&entries) {
        p.by_dest = super::DestIndex::build(e, dest_names.len());
    }

    // Rating profiles: (tenant, category, subject) -> activations.
    let pf = Rows::read(dir, "RatingProfiles.csv", true)?;
    let mut profiles: super::Profiles = HashMap::default();
    for (line, f) in pf.each(
        5,
        "a rating profile (Tenant, Category, Subject, ActivationTime, RatingPlanID, FallbackSubject)",
    )? {
        let at: jiff::Timestamp = match f[3] {
            "" | "*asap" => jiff::Timestamp::UNIX_EPOCH,
            s => parse_time(s).map_err(|e| pf.err(line, format!("activation time {s:?}: {e}")))?,
        };
        let Some(&plan) = plan_ids.get(f[4]) else {
            return Err(pf.err(line, format!("rating plan {} is not in RatingPlans.csv", f[4])));
        };
        let fallback: Vec<String> =
            field(&f, 5).split(';').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        let p = profiles
            .entry(f[0].to_string())
            .or_default()
            .entry(f[1].to_string())
            .or_default()
            .entry(f[2].to_string())
            .or_insert_with(|| Profile { activations: vec![] });
        p.activations.push(Activation { at, plan, fallback });
    }
    for p in profiles.values_mut().flat_map(|c| c.values_mut()).flat_map(|s| s.values_mut()) {
        p.activations.sort_by_key(|a| a.at);
    }

    Ok(Plan::assemble(
        dir.to_path_buf(),
        timing_list,
        dest_names,
        prefixes,
        ratings,
        plans,
        plan_ids,
        profiles,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), 60_000_000_000);
        assert_eq!(parse_duration("1m").unwrap(), 60_000_000_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("0.5s").unwrap(), 500_000_000);
        assert_eq!(parse_duration("1024").unwrap(), 1024);
        assert_eq!(parse_duration("").unwrap(), 0);
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn times_and_lists() {
        assert_eq!(time_of_day("08:00:00").unwrap(), 8 * 3600);
        assert_eq!(time_of_day("*asap").unwrap(), 0);
        assert!(time_of_day("25:00:00").is_err());
        assert_eq!(int_list("1;2;3", 1, 7, "w").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(int_list("*any", 1, 7, "w").unwrap(), None);
        assert!(int_list("8", 1, 7, "w").is_err());
    }
}
