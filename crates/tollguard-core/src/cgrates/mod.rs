//! CGRateS tariff plans: read a plan folder as `cgr-loader` would, and price calls as CGRateS
//! does, to the last decimal.
//!
//! ## What is read
//!
//! `Timings.csv`, `Destinations.csv`, `Rates.csv`, `DestinationRates.csv`, `RatingPlans.csv` and
//! `RatingProfiles.csv` of one folder (`Timings` and `Destinations` may be absent when nothing
//! refers to them). Lines starting with `#` and blank lines are skipped. Durations are Go
//! durations (`60s`, `1m`); a plain number is nanoseconds, as in CGRateS (data and SMS plans
//! count units that way).
//!
//! ## How a call is priced (see docs/integrations/cgrates.md)
//!
//! 1. **Profile.** `tenant, category, subject`; a subject without a profile uses the `*any`
//!    subject. Of the profile's activations, the newest at or before the call's start applies
//!    to the whole call (CGRateS splits a call at a later activation but keeps the earlier
//!    plan's rates). A call before the first activation, or one whose plan has no rate for the
//!    destination, goes through the fallback subjects (`FallbackSubject`, `;`-separated; the
//!    subject and two levels of fallback, CGRateS's recursion limit of three); without one it is
//!    refused with `UNAUTHORIZED_DESTINATION`.
//! 2. **Destination.** The longest prefix of the dialled string that some destination of the
//!    plan holds wins; when several destinations hold that prefix, the one with an interval active
//!    at the call's start and the highest weight wins. No prefix: the plan's `*any` rates. A
//!    leading `+` is ignored on both sides, so `+49` and `49` are the same prefix.
//! 3. **Interval.** Of the destination's rate intervals active at an instant (timing: years,
//!    months, month days, weekdays, from its start time to the end of the day), the highest
//!    weight wins, then the latest start time. The call is split where the winner changes and at
//!    midnight, in the plan's zone (wall-clock times on a day with a clock change).
//! 4. **Slices.** Within an interval, the rate row whose `GroupIntervalStart` is the largest not
//!    after the time already talked applies; the call is split at each later row's start.
//! 5. **Increments.** Each piece is rounded up to whole increments of its row. A piece rounded
//!    past the next split pushes the next piece back.
//! 6. **Cost** ([`Rounding`]): per increment (CGRateS): each piece costs
//!    `n x round(round(n x increment x rate / unit, D) / n, D)`, half up, `D` = 5 by default;
//!    or total (our A-Z rule): the exact sum. The connect fee of the first piece's rate is
//!    added once; `MaxCost` with `*free` caps the total; the total is rounded with the rounding
//!    method and decimals of the destination rate with the most decimals among the pieces.
//!    Zero usage costs zero.
//! 7. **`*disconnect`** leaves the cost alone; [`Plan::max_usage`] gives the talk time at which
//!    the increments paid (connect fee excluded) reach `MaxCost`.
//!
//! CGRateS computes in binary floating point; we compute in exact decimals. The two agree except
//! where a float's representation error decides a half-way rounding.

mod load;

pub use load::{load, parse_duration, PlanError};

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use smallvec::SmallVec;
use std::collections::HashMap as StdMap;

/// Maps on the pricing path: FxHash (the keys are ours, not an attacker's).
pub(crate) type HashMap<K, V> = StdMap<K, V, rustc_hash::FxBuildHasher>;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const NS: u64 = 1_000_000_000;
/// Digit prefixes up to this long are found in [`Plan::digit_prefixes`].
const MAX_DIGIT_KEY: usize = 18;

/// The key of a digit prefix: its value, and its length in the top bits (so `031` and `31`
/// differ).
fn digit_key(p: &[u8]) -> u64 {
    let v = p.iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
    v | (p.len() as u64) << 59
}

/// A destination reference naming a list in [`Plan::multi`].
const MULTI: u32 = 1 << 31;
const DAY_NS: u64 = 86_400 * NS;

/// How fallback subjects may nest.
const FALLBACK_DEPTH: usize = 3;

/// A rounding method of `DestinationRates.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundingMethod {
    /// `*up`: away from zero on any remainder.
    Up,
    /// `*down`: toward zero.
    Down,
    /// `*middle`: half away from zero.
    Middle,
    /// Empty: not rounded (CGRateS's `utils.Round` with no method).
    None,
}

/// How a plan's pieces are summed: the rounding mode of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// CGRateS: each increment's cost rounded half up to `decimals` before summing.
    PerIncrement {
        /// CGRateS `general.rounding_decimals` (5 in its shipped configuration).
        decimals: u32,
    },
    /// Exact sum of `rate x billed / unit`, rounded once at the end (the A-Z deck rule).
    Total,
}

impl Default for Rounding {
    fn default() -> Self {
        Rounding::PerIncrement { decimals: 5 }
    }
}

/// What happens at `MaxCost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxCostStrategy {
    /// The cost stops growing.
    Free,
    /// The cost is not capped; the call may last only until it is reached.
    Disconnect,
}

/// `MaxCost` and its strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxCost {
    /// The amount.
    pub amount: Decimal,
    /// What happens there.
    pub strategy: MaxCostStrategy,
}

/// A timing of `Timings.csv`.
#[derive(Clone, Debug)]
pub(crate) struct Timing {
    #[allow(dead_code)]
    id: String,
    years: Option<Vec<u32>>,
    months: Option<Vec<u32>>,
    month_days: Option<Vec<u32>>,
    /// 1 = Monday .. 7 = Sunday.
    week_days: Option<Vec<u32>>,
    /// Start, seconds after midnight; the timing runs to the end of the day.
    start_s: u32,
}

impl Timing {
    fn day_matches(&self, d: &DateTime) -> bool {
        let has = |l: &Option<Vec<u32>>, v: u32| l.as_ref().is_none_or(|l| l.contains(&v));
        has(&self.years, d.year() as u32)
            && has(&self.months, d.month() as u32)
            && has(&self.month_days, d.day() as u32)
            && has(&self.week_days, d.weekday().to_monday_one_offset() as u32)
    }
}

/// One row of a rate: a slice of the call from `group_start_ns` on.
#[derive(Clone, Debug)]
pub(crate) struct Slice {
    group_start_ns: u64,
    rate: Decimal,
    unit_ns: u64,
    increment_ns: u64,
}

/// A rate of `Rates.csv`: connect fee and slices by group interval start.
#[derive(Clone, Debug)]
pub(crate) struct Rating {
    id: String,
    connect_fee: Decimal,
    slices: Vec<Slice>,
}

/// The slices of a rate kept inline with each interval: one fewer memory load per price.
pub(crate) type Slices = SmallVec<[Slice; 2]>;

/// The slice for `elapsed_ns` into the call, and where the next one starts.
fn slice_at(slices: &[Slice], elapsed_ns: u64) -> (&Slice, Option<u64>) {
    let k = slices.partition_point(|s| s.group_start_ns <= elapsed_ns).saturating_sub(1);
    (&slices[k], slices.get(k + 1).map(|s| s.group_start_ns))
}

/// A rate interval: one destination rate of a rating plan under one timing.
#[derive(Clone, Debug)]
pub(crate) struct Interval {
    timing: Option<u32>,
    weight: Decimal,
    rating: u32,
    /// The rate's connect fee and slices, copied here.
    fee: Decimal,
    slices: Slices,
    method: RoundingMethod,
    decimals: u32,
    max_cost: Option<MaxCost>,
    dest_rate: Arc<str>,
}

/// A destination's intervals in a plan (mostly one).
pub(crate) type Intervals = SmallVec<[Interval; 1]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) enum DestKey {
    Any,
    Id(u32),
}

/// Destination id -> index into a plan's intervals, with [`TIMED`] set when some interval has a
/// timing: enough to choose a destination without reading its intervals. Dense (a vector over
/// all destination ids) when the plan rates many of them, else a map.
#[derive(Clone, Debug)]
pub(crate) enum DestIndex {
    Dense(Vec<u32>),
    Sparse(HashMap<u32, u32>),
}

/// In a [`DestIndex`] value: some interval of the destination has a timing.
const TIMED: u32 = 1 << 31;

impl DestIndex {
    fn get(&self, d: u32) -> Option<u32> {
        match self {
            DestIndex::Dense(v) => v.get(d as usize).copied().filter(|&k| k != u32::MAX),
            DestIndex::Sparse(m) => m.get(&d).copied(),
        }
    }

    /// Built from (destination, index, timed) of one plan, over `n` destination ids.
    pub(crate) fn build(entries: &HashMap<u32, u32>, n: usize) -> DestIndex {
        if entries.len() * 8 >= n {
            let mut v = vec![u32::MAX; n];
            for (&d, &k) in entries {
                v[d as usize] = k;
            }
            DestIndex::Dense(v)
        } else {
            DestIndex::Sparse(entries.clone())
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RatingPlan {
    id: String,
    /// Destination id -> its intervals.
    by_dest: DestIndex,
    intervals: Vec<Intervals>,
    any: Intervals,
}

#[derive(Clone, Debug)]
pub(crate) struct Activation {
    at: Timestamp,
    plan: u32,
    fallback: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Profile {
    activations: Vec<Activation>,
}

/// Tenant -> category -> subject -> profile.
pub(crate) type Profiles = HashMap<String, HashMap<String, HashMap<String, Profile>>>;

/// A destination or prefix as matched: a leading `+` is ignored.
fn prefix_key(s: &str) -> &str {
    s.strip_prefix('+').unwrap_or(s)
}

/// Why a call cannot be priced, with CGRateS's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceError {
    /// No profile for the subject, nor for `*any`.
    RatingPlanNotFound,
    /// The plans that apply have no rate for the destination at that time.
    UnauthorizedDestination,
    /// A named rating plan is not in the folder.
    UnknownRatingPlan(String),
}

impl PriceError {
    /// The CGRateS error code.
    pub fn code(&self) -> &'static str {
        match self {
            PriceError::RatingPlanNotFound => "RATING_PLAN_NOT_FOUND",
            PriceError::UnauthorizedDestination => "UNAUTHORIZED_DESTINATION",
            PriceError::UnknownRatingPlan(_) => "RATING_PLAN_NOT_FOUND",
        }
    }
}

impl std::fmt::Display for PriceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceError::UnknownRatingPlan(p) => write!(f, "RATING_PLAN_NOT_FOUND: no rating plan {p}"),
            e => f.write_str(e.code()),
        }
    }
}

impl std::error::Error for PriceError {}

/// The rates that apply to one call: a destination of one rating plan. Cheap to copy; priced
/// with [`Plan::cost`] and [`Plan::max_usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tariff {
    plan: u32,
    dest: DestKey,
    /// Length of the matched prefix (0 for `*any`).
    pub prefix_len: u16,
}

/// A loaded tariff plan folder.
#[derive(Debug)]
pub struct Plan {
    dir: PathBuf,
    timings: Vec<Timing>,
    dest_names: Vec<String>,
    /// Digit prefixes (without `+`) of up to 18 digits -> destinations: keyed by [`digit_key`],
    /// a table small enough to stay in cache (a trie over 10,000 prefixes does not).
    digit_prefixes: HashMap<u64, u32>,
    /// Bit `n` set: some prefix in `digit_prefixes` has `n` digits.
    digit_lens: u32,
    /// Other prefixes (`voicemail`, longer than 18 digits) -> destinations.
    other: HashMap<Box<str>, u32>,
    /// Bit `n` set: some prefix in `other` has `n` bytes.
    other_lens: u64,
    /// Destination lists of prefixes held by more than one destination.
    multi: Vec<Vec<u32>>,
    prefix_count: usize,
    ratings: Vec<Rating>,
    plans: Vec<RatingPlan>,
    plan_ids: HashMap<String, u32>,
    profiles: Profiles,
    /// The zone timings are read in (CGRateS: the server's; UTC by default).
    tz: TimeZone,
    /// Its offset in seconds when it has only one: midnights without a zone lookup.
    fixed_offset_s: Option<i64>,
    /// How pieces are summed.
    pub rounding: Rounding,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: PathBuf,
        timings: Vec<Timing>,
        dest_names: Vec<String>,
        prefixes: Vec<(String, u32)>,
        ratings: Vec<Rating>,
        plans: Vec<RatingPlan>,
        plan_ids: HashMap<String, u32>,
        profiles: Profiles,
    ) -> Plan {
        // One destination per prefix is the rule; a prefix shared by several gets a list.
        let mut lists: HashMap<String, Vec<u32>> = HashMap::default();
        let mut order = vec![];
        for (p, d) in prefixes {
            let v = lists.entry(p.clone()).or_default();
            if v.is_empty() {
                order.push(p);
            }
            if !v.contains(&d) {
                v.push(d);
            }
        }
        let (mut digit_prefixes, mut digit_lens, mut other, mut other_lens, mut multi) =
            (HashMap::default(), 0u32, HashMap::default(), 0u64, vec![]);
        let prefix_count = order.len();
        for p in order {
            let ids = lists.remove(&p).unwrap_or_default();
            let r = if ids.len() == 1 {
                ids[0]
            } else {
                multi.push(ids);
                MULTI | (multi.len() as u32 - 1)
            };
            if p.len() <= MAX_DIGIT_KEY && p.bytes().all(|b| b.is_ascii_digit()) {
                digit_lens |= 1 << p.len();
                digit_prefixes.insert(digit_key(p.as_bytes()), r);
            } else {
                other_lens |= 1u64 << p.len().min(63);
                other.insert(p.into_boxed_str(), r);
            }
        }
        Plan {
            dir,
            timings,
            dest_names,
            digit_prefixes,
            digit_lens,
            other,
            other_lens,
            multi,
            prefix_count,
            ratings,
            plans,
            plan_ids,
            profiles,
            tz: TimeZone::UTC,
            fixed_offset_s: Some(0),
            rounding: Rounding::default(),
        }
    }

    /// Reads the plan's timings in `tz` (CGRateS uses the server's zone).
    pub fn set_timezone(&mut self, tz: TimeZone) {
        self.fixed_offset_s = tz.to_fixed_offset().ok().map(|o| o.seconds() as i64);
        self.tz = tz;
    }

    /// Loads a plan folder.
    pub fn load(dir: &Path) -> Result<Plan, PlanError> {
        load::load(dir)
    }

    /// The folder the plan was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of destination prefixes.
    pub fn prefixes(&self) -> usize {
        self.prefix_count
    }

    /// The rates for a call of `subject` to `destination` starting at `start`, found through the
    /// profiles (with `*any` and fallback subjects). Allocates nothing.
    pub fn tariff(
        &self,
        tenant: &str,
        category: &str,
        subject: &str,
        destination: &str,
        start: Timestamp,
    ) -> Result<Tariff, PriceError> {
        let subjects =
            self.profiles.get(tenant).and_then(|c| c.get(category)).ok_or(PriceError::RatingPlanNotFound)?;
        let profile =
            subjects.get(subject).or_else(|| subjects.get("*any")).ok_or(PriceError::RatingPlanNotFound)?;
        self.through_profile(profile, destination, start, 0, &mut |s| subjects.get(s))
    }

    fn through_profile<'p>(
        &'p self,
        profile: &'p Profile,
        destination: &str,
        start: Timestamp,
        depth: usize,
        lookup: &mut dyn FnMut(&str) -> Option<&'p Profile>,
    ) -> Result<Tariff, PriceError> {
        let acts = &profile.activations;
        let k = acts.partition_point(|a| a.at <= start);
        // Before the first activation CGRateS falls back to the `*any` subject.
        let (found, fallback): (Option<Tariff>, &[String]) = if k == 0 {
            (None, &[])
        } else {
            let a = &acts[k - 1];
            (self.match_destination(a.plan, destination, start), &a.fallback)
        };
        if let Some(t) = found {
            return Ok(t);
        }
        // CGRateS counts the subject itself as the first level.
        if depth + 1 < FALLBACK_DEPTH {
            let any = ["*any"];
            let keys = if k == 0 { &any[..] } else { &[][..] }
                .iter()
                .copied()
                .chain(fallback.iter().map(String::as_str));
            for s in keys {
                if let Some(p) = lookup(s) {
                    if let Ok(t) = self.through_profile(p, destination, start, depth + 1, lookup) {
                        return Ok(t);
                    }
                }
            }
        }
        Err(PriceError::UnauthorizedDestination)
    }

    /// The rates for `destination` in the named rating plans, the first that has them (as
    /// CGRateS's `GetRatingPlansCost`).
    pub fn tariff_in_plans(
        &self,
        plans: &[&str],
        destination: &str,
        start: Timestamp,
    ) -> Result<Tariff, PriceError> {
        // As CGRateS, a plan that is not there is passed over like one without the destination.
        let mut known = false;
        for p in plans {
            let Some(&i) = self.plan_ids.get(*p) else { continue };
            known = true;
            if let Some(t) = self.match_destination(i, destination, start) {
                return Ok(t);
            }
        }
        Err(if known {
            PriceError::UnauthorizedDestination
        } else {
            PriceError::UnknownRatingPlan(plans.join(";"))
        })
    }

    fn match_destination(&self, plan: u32, destination: &str, start: Timestamp) -> Option<Tariff> {
        let rp = &self.plans[plan as usize];
        let dest = prefix_key(destination);
        if !dest.is_empty() && dest != "*any" {
            let mut local: Option<DateTime> = None;
            // Of the destinations holding one prefix: one with an interval active at the start,
            // the highest weight first.
            let mut pick = |r: u32| -> Option<u32> {
                let ids = if r & MULTI != 0 {
                    &self.multi[(r & !MULTI) as usize][..]
                } else {
                    std::slice::from_ref(&r)
                };
                let mut best: Option<(Decimal, u32)> = None;
                for &d in ids {
                    let Some(e) = rp.by_dest.get(d) else { continue };
                    if ids.len() == 1 && e & TIMED == 0 {
                        // The usual case: one destination, rated at any time.
                        return Some(d);
                    }
                    let ivs = &rp.intervals[(e & !TIMED) as usize];
                    if e & TIMED != 0 {
                        let local = local.get_or_insert_with(|| self.tz.to_datetime(start));
                        if !ivs.iter().any(|iv| iv.timing.is_none() || self.active(iv, local)) {
                            continue;
                        }
                    }
                    let w = ivs.iter().map(|iv| iv.weight).max().unwrap_or_default().max(Decimal::ZERO);
                    if best.is_none_or(|(bw, _)| w > bw) {
                        best = Some((w, d));
                    }
                }
                best.map(|b| b.1)
            };
            let digits = dest.bytes().take_while(u8::is_ascii_digit).count();
            if self.other_lens != 0 {
                let from = if digits > MAX_DIGIT_KEY { MAX_DIGIT_KEY + 1 } else { digits + 1 };
                for len in (from..=dest.len().min(63)).rev() {
                    if self.other_lens & (1u64 << len) == 0 || !dest.is_char_boundary(len) {
                        continue;
                    }
                    if let Some(d) = self.other.get(&dest[..len]).and_then(|&r| pick(r)) {
                        return Some(Tariff { plan, dest: DestKey::Id(d), prefix_len: len as u16 });
                    }
                }
            }
            let b = dest.as_bytes();
            let mut keys = [0u64; MAX_DIGIT_KEY + 1];
            let n = digits.min(MAX_DIGIT_KEY);
            let mut v = 0u64;
            for i in 0..n {
                v = v * 10 + u64::from(b[i] - b'0');
                keys[i + 1] = v;
            }
            for len in (1..=n).rev() {
                if self.digit_lens & (1 << len) == 0 {
                    continue;
                }
                let key = keys[len] | (len as u64) << 59;
                if let Some(d) = self.digit_prefixes.get(&key).and_then(|&r| pick(r)) {
                    return Some(Tariff { plan, dest: DestKey::Id(d), prefix_len: len as u16 });
                }
            }
        }
        (!rp.any.is_empty()).then_some(Tariff { plan, dest: DestKey::Any, prefix_len: 0 })
    }

    fn intervals(&self, t: &Tariff) -> &[Interval] {
        let rp = &self.plans[t.plan as usize];
        match t.dest {
            DestKey::Any => &rp.any,
            DestKey::Id(d) => {
                rp.by_dest.get(d).map_or(&[], |e| rp.intervals[(e & !TIMED) as usize].as_slice())
            }
        }
    }

    fn active(&self, iv: &Interval, local: &DateTime) -> bool {
        match iv.timing {
            None => true,
            Some(t) => {
                let t = &self.timings[t as usize];
                t.day_matches(local) && seconds_of_day(local) >= t.start_s
            }
        }
    }

    /// The interval that applies at `local`, and the time of day (seconds; 86,400 = midnight) at
    /// which the choice may change next: the next start time of an interval later that day.
    fn select<'a>(&self, ivs: &'a [Interval], local: &DateTime) -> (Option<&'a Interval>, u32) {
        let now_s = seconds_of_day(local);
        let mut next_s = 86_400;
        let mut best: Option<(&Interval, u32)> = None;
        for iv in ivs {
            let start_s = iv.timing.map_or(0, |t| self.timings[t as usize].start_s);
            if start_s > now_s {
                next_s = next_s.min(start_s);
                continue;
            }
            if !self.active(iv, local) {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, bs)) => iv.weight > b.weight || iv.weight == b.weight && start_s > bs,
            };
            if better {
                best = Some((iv, start_s));
            }
        }
        (best.map(|b| b.0), next_s)
    }

    /// Nanoseconds from `at` (whose local time is `local`) to `second_of_day` of the same local
    /// day (86,400: the next midnight), through the zone, so a day with a clock change is right.
    fn until(&self, at: Timestamp, local: &DateTime, second_of_day: u32) -> u64 {
        let date = local.date();
        let civil = if second_of_day >= 86_400 {
            date.tomorrow().map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        } else {
            let (h, m, s) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
            jiff::civil::Time::new(h as i8, m as i8, s as i8, 0).map(|t| date.to_datetime(t))
        };
        civil
            .ok()
            .and_then(|c| self.tz.to_ambiguous_timestamp(c).compatible().ok())
            .and_then(|b| u64::try_from(at.duration_until(b).as_nanos()).ok())
            .unwrap_or(DAY_NS)
            .max(1)
    }

    /// The pieces of a call: (interval, slice, billed ns, increments), in order. `f` sees each;
    /// returning `false` stops the walk.
    fn walk<'a>(
        &'a self,
        t: &Tariff,
        start: Timestamp,
        usage_ns: u64,
        mut f: impl FnMut(&'a Interval, &'a Slice, u64) -> bool,
    ) -> Result<(), PriceError> {
        let ivs = self.intervals(t);
        let untimed = ivs.iter().all(|iv| iv.timing.is_none());
        let mut pos = 0u64;
        while pos < usage_ns {
            let at = start
                .checked_add(jiff::SignedDuration::from_nanos(pos.min(i64::MAX as u64) as i64))
                .map_err(|_| PriceError::UnauthorizedDestination)?;
            let (iv, change_in) = match self.fixed_offset_s {
                // Only `*any` timings: the first of the highest weight, until midnight.
                Some(off) if untimed => {
                    let into_day =
                        (at.as_second() + off).rem_euclid(86_400) as u64 * NS + at.subsec_nanosecond() as u64;
                    let best = ivs.iter().fold(None::<&Interval>, |b, iv| match b {
                        Some(b) if b.weight >= iv.weight => Some(b),
                        _ => Some(iv),
                    });
                    (best, DAY_NS - into_day)
                }
                _ => {
                    let local = self.tz.to_datetime(at);
                    let (iv, next_s) = self.select(ivs, &local);
                    (iv, self.until(at, &local, next_s))
                }
            };
            let iv = iv.ok_or(PriceError::UnauthorizedDestination)?;
            let (slice, next_group) = slice_at(&iv.slices, pos);
            let mut end = usage_ns.min(pos.saturating_add(change_in));
            if let Some(g) = next_group {
                end = end.min(g);
            }
            let dur = end - pos;
            let n = dur.div_ceil(slice.increment_ns);
            if !f(iv, slice, n) {
                break;
            }
            pos = pos.saturating_add(n.saturating_mul(slice.increment_ns));
        }
        Ok(())
    }

    /// What a piece of `n` increments of `slice` costs, at scale `D` for per-increment rounding.
    fn piece_cost(&self, slice: &Slice, n: u64) -> Decimal {
        if slice.rate.is_zero() || n == 0 {
            return Decimal::ZERO;
        }
        let den = (slice.unit_ns as i128) * 10i128.pow(slice.rate.scale());
        let num = slice
            .rate
            .mantissa()
            .checked_mul(n as i128)
            .and_then(|v| v.checked_mul(slice.increment_ns as i128));
        let exact = match self.rounding {
            Rounding::PerIncrement { decimals } => {
                num.and_then(|num| num.checked_mul(10i128.pow(decimals))).and_then(|np| {
                    let each = div_half_up(div_half_up(np, den), n as i128);
                    Decimal::try_from_i128_with_scale(each.checked_mul(n as i128)?, decimals).ok()
                })
            }
            // Exact while it fits 28 digits; the total is rounded once at the end.
            Rounding::Total => num.and_then(|num| {
                Decimal::try_from_i128_with_scale(num, 0)
                    .ok()?
                    .checked_div(Decimal::try_from_i128_with_scale(den, 0).ok()?)
            }),
        };
        // Only a call of centuries at an absurd rate gets here: the most a price can say.
        exact.unwrap_or(Decimal::MAX)
    }

    /// The cost of a call on `t` starting at `start` with `usage_ns` of talk time.
    pub fn cost(&self, t: &Tariff, start: Timestamp, usage_ns: u64) -> Result<Decimal, PriceError> {
        if usage_ns == 0 {
            return Ok(Decimal::ZERO);
        }
        let mut total = Decimal::ZERO;
        let mut first = true;
        let mut round: Option<(u32, RoundingMethod)> = None;
        self.walk(t, start, usage_ns, |iv, slice, n| {
            if first {
                total += iv.fee;
                first = false;
            }
            total += self.piece_cost(slice, n);
            if let Some(MaxCost { amount, strategy: MaxCostStrategy::Free }) = iv.max_cost {
                total = total.min(amount);
            }
            if round.is_none_or(|(d, _)| iv.decimals > d) {
                round = Some((iv.decimals, iv.method));
            }
            true
        })?;
        Ok(match round {
            Some((d, m)) if d > 0 => round_to(total, d, m),
            _ => total,
        })
    }

    /// The longest talk time (ns, at most `limit_ns`) a call on `t` may have before `MaxCost`
    /// with `*disconnect` is reached: increments are counted while the cost paid so far (connect
    /// fee excluded) is below it. `None` when no `*disconnect` applies.
    pub fn max_usage(&self, t: &Tariff, start: Timestamp, limit_ns: u64) -> Option<u64> {
        let mut seen = false;
        let mut allowed = 0u64;
        let mut paid = Decimal::ZERO;
        let mut stopped = false;
        let _ = self.walk(t, start, limit_ns, |iv, slice, n| {
            let Some(MaxCost { amount, strategy: MaxCostStrategy::Disconnect }) = iv.max_cost else {
                allowed += n * slice.increment_ns;
                paid += self.piece_cost(slice, n);
                return true;
            };
            seen = true;
            let each = self.piece_cost(slice, 1);
            let left = amount - paid;
            if left <= Decimal::ZERO {
                stopped = true;
                return false;
            }
            let k = if each.is_zero() { n } else { (left / each).ceil().to_u64().unwrap_or(u64::MAX).min(n) };
            allowed += k * slice.increment_ns;
            paid += each * Decimal::from(k);
            if k < n || paid >= amount {
                stopped = true;
                return false;
            }
            true
        });
        let _ = stopped;
        seen.then_some(allowed.min(limit_ns))
    }

    /// What [`Plan::cost`] used, for explanations: the destination's name, the matched prefix's
    /// destination rate and rate at the call's start.
    pub fn describe(&self, t: &Tariff, start: Timestamp) -> (String, String, String) {
        let dest = match t.dest {
            DestKey::Any => "*any".to_string(),
            DestKey::Id(d) => self.dest_names[d as usize].clone(),
        };
        let local = self.tz.to_datetime(start);
        let (iv, _) = self.select(self.intervals(t), &local);
        match iv {
            Some(iv) => (dest, iv.dest_rate.to_string(), self.ratings[iv.rating as usize].id.clone()),
            None => (dest, String::new(), String::new()),
        }
    }

    /// The name of the tariff's rating plan.
    pub fn plan_name(&self, t: &Tariff) -> &str {
        &self.plans[t.plan as usize].id
    }

    /// Bounds for live accounting: (connect fee, most per minute, longest increment in seconds)
    /// over every rate the tariff may use. The cost of `s` seconds is at most
    /// `fee + per_minute x (s + increment) / 60`. The fee includes what the destination rate's
    /// rounding of the total may add (up to one unit of its last decimal kept: 0.01 for `*up`
    /// to 2 decimals, worth more than a whole increment at a small rate).
    pub fn bounds(&self, t: &Tariff) -> (Decimal, Decimal, u32) {
        let (mut fee, mut per_minute, mut inc) = (Decimal::ZERO, Decimal::ZERO, 1u64);
        let mut rounding = Decimal::ZERO;
        for iv in self.intervals(t) {
            fee = fee.max(iv.fee);
            if iv.decimals > 0 && matches!(iv.method, RoundingMethod::Up | RoundingMethod::Middle) {
                rounding = rounding.max(Decimal::new(1, iv.decimals));
            }
            for s in &iv.slices {
                // One increment's cost as charged, spread over a minute (rounded up).
                let one = self.piece_cost(s, 1);
                let rounded = match self.rounding {
                    Rounding::PerIncrement { decimals } => one + Decimal::new(1, decimals),
                    Rounding::Total => one,
                };
                let pm = rounded * Decimal::from(60 * NS) / Decimal::from(s.increment_ns);
                per_minute = per_minute.max(pm);
                inc = inc.max(s.increment_ns);
            }
        }
        (fee + rounding, per_minute, inc.div_ceil(NS).min(u32::MAX as u64) as u32)
    }
}

use rust_decimal::prelude::ToPrimitive;

fn seconds_of_day(d: &DateTime) -> u32 {
    d.hour() as u32 * 3600 + d.minute() as u32 * 60 + d.second() as u32
}

/// `num / den` rounded half away from zero (`den > 0`).
fn div_half_up(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// Rounds as CGRateS's `utils.Round`, in exact decimals.
pub fn round_to(v: Decimal, decimals: u32, method: RoundingMethod) -> Decimal {
    use rust_decimal::RoundingStrategy as S;
    let s = match method {
        RoundingMethod::Up => S::AwayFromZero,
        RoundingMethod::Down => S::ToZero,
        RoundingMethod::Middle => S::MidpointAwayFromZero,
        RoundingMethod::None => return v,
    };
    let mut r = v.round_dp_with_strategy(decimals, s);
    r.rescale(decimals);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plan written to a fresh folder from (file, text) pairs.
    fn plan_from(files: &[(&str, &str)]) -> Plan {
        let dir = std::env::temp_dir().join(format!(
            "tg-cgr-unit-{}-{}",
            std::process::id(),
            std::thread::current().name().unwrap_or("t").replace(':', "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (f, text) in files {
            std::fs::write(dir.join(f), text).unwrap();
        }
        let p = Plan::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        p.unwrap()
    }

    /// tutorial2's shape (peak and off-peak timings), a `*free` and a `*disconnect` destination.
    fn plan(rounding: Rounding) -> Plan {
        let files = [
            (
                "Timings.csv",
                "#ID,Years,Months,MonthDays,WeekDays,Time\nPEAK,*any,*any,*any,1;2;3;4;5,08:00:00\n\
                 OFFPEAK_MORNING,*any,*any,*any,1;2;3;4;5,00:00:00\nOFFPEAK_EVENING,*any,*any,*any,1;2;3;4;5,19:00:00\n\
                 OFFPEAK_WEEKEND,*any,*any,*any,6;7,00:00:00\n",
            ),
            ("Destinations.csv", "DST_10,10\nDST_FREE,+44\nDST_DISC,+670\nDST_LON,+4420\nDST_VM,voicemail\nDST_VM,0106\n"),
            (
                "Rates.csv",
                "RT_120C,0.2,1.2,1m,1m,0\nRT_120C,,1.2,1m,1s,1m\nRT_60C,0.1,0.01,1s,1s,0\n\
                 RT_20CNT,0.4,0.2,60s,60s,0s\nRT_20CNT,0,0.1,60s,1s,60s\nRT_SEC,0,0.01,1s,1s,0\n",
            ),
            (
                "DestinationRates.csv",
                "DR_PEAK,DST_10,RT_120C,*up,4,,\nDR_OFF,DST_10,RT_60C,*up,4,,\n\
                 DR_FREE,DST_FREE,RT_20CNT,*up,4,0.5,*free\nDR_DISC,DST_DISC,RT_SEC,*up,4,0.12,*disconnect\nDR_LON,DST_LON,RT_20CNT,*up,4,,\nDR_VM,DST_VM,RT_SEC,*up,4,,\n",
            ),
            (
                "RatingPlans.csv",
                "RP,DR_PEAK,PEAK,10\nRP,DR_OFF,OFFPEAK_MORNING,10\nRP,DR_OFF,OFFPEAK_EVENING,10\n\
                 RP,DR_OFF,OFFPEAK_WEEKEND,10\nRP,DR_FREE,*any,10\nRP,DR_DISC,*any,10\nRP,DR_LON,*any,10\nRP,DR_VM,*any,10\n",
            ),
            ("RatingProfiles.csv", "cgrates.org,call,*any,2019-03-01T00:00:00Z,RP,\n"),
        ];
        let mut p = plan_from(&files);
        p.rounding = rounding;
        p
    }

    fn price(p: &Plan, dest: &str, at: &str, secs: u64) -> Result<Decimal, PriceError> {
        let at: Timestamp = at.parse().unwrap();
        let t = p.tariff("cgrates.org", "call", "1001", dest, at)?;
        p.cost(&t, at, secs * NS)
    }

    #[test]
    fn latest_start_wins_and_a_call_is_split_where_the_timing_changes() {
        let p = plan(Rounding::default());
        // Monday 09:00: PEAK (08:00) beats OFFPEAK_MORNING (00:00): 0.2 + one minute at 1.2.
        assert_eq!(price(&p, "1003", "2019-03-11T09:00:00Z", 45).unwrap(), Decimal::new(14, 1));
        // Monday 21:00: OFFPEAK_EVENING: 0.1 + 45 x 0.01.
        assert_eq!(price(&p, "1003", "2019-03-11T21:00:00Z", 45).unwrap(), Decimal::new(55, 2));
        // 18:59:30 for 90 s: 30 s of peak rounded to its one-minute increment (1.2, fee 0.2),
        // then the last 30 s at the evening's 0.01 a second.
        assert_eq!(price(&p, "1003", "2019-03-11T18:59:30Z", 90).unwrap(), Decimal::new(170, 2));
    }

    #[test]
    fn the_rounding_mode_is_the_plans() {
        // 120 s on RT_20CNT: 0.4 + 0.2 + 60 x round5(0.1 / 60) = 0.7002 per increment (CGRateS),
        // 0.7000 summed exactly.
        let at = "2024-05-15T12:00:00Z";
        assert_eq!(
            price(&plan(Rounding::default()), "+442071234567", at, 120).unwrap().to_string(),
            "0.7002"
        );
        assert_eq!(price(&plan(Rounding::Total), "+442071234567", at, 120).unwrap().to_string(), "0.7000");
        // *free: 0.4 fee + 0.2 for the first minute + 0.1 for the next would be 0.7; capped at 0.5.
        assert_eq!(price(&plan(Rounding::default()), "+447700900123", at, 120).unwrap(), Decimal::new(5, 1));
        assert_eq!(price(&plan(Rounding::default()), "+447700900123", at, 0).unwrap(), Decimal::ZERO);
    }

    #[test]
    fn disconnect_gives_the_time_at_which_max_cost_is_reached() {
        let p = plan(Rounding::default());
        let at: Timestamp = "2024-05-15T12:00:00Z".parse().unwrap();
        let t = p.tariff("cgrates.org", "call", "x", "+6707000000", at).unwrap();
        // 0.01 a second, MaxCost 0.12: twelve seconds; the cost itself is not capped.
        assert_eq!(p.max_usage(&t, at, 3600 * NS), Some(12 * NS));
        assert_eq!(p.cost(&t, at, 3600 * NS).unwrap(), Decimal::from(36));
        let t = p.tariff("cgrates.org", "call", "x", "1003", at).unwrap();
        assert_eq!(p.max_usage(&t, at, 3600 * NS), None);
    }

    #[test]
    fn prefixes_digits_and_others() {
        let p = plan(Rounding::default());
        let at = "2024-05-13T21:00:00Z";
        // `voicemail` and `0106` at 0.01 a second; `10...` (not `0106`) off-peak at 0.1 + 0.01 a second.
        assert_eq!(price(&p, "voicemail", at, 10).unwrap(), Decimal::new(1, 1));
        assert_eq!(price(&p, "voicemail2", at, 10).unwrap(), Decimal::new(1, 1));
        assert_eq!(price(&p, "0106123", at, 10).unwrap(), Decimal::new(1, 1));
        assert_eq!(price(&p, "106123", at, 10).unwrap(), Decimal::new(2, 1));
        assert_eq!(price(&p, "010", at, 10), Err(PriceError::UnauthorizedDestination));
        // A leading + is ignored on both sides; 20 digits is past the digit table and still found.
        assert_eq!(price(&p, "+4420123", at, 60).unwrap(), Decimal::new(6, 1));
        assert_eq!(price(&p, "44201234567890123456", at, 60).unwrap(), Decimal::new(6, 1));
    }

    #[test]
    fn a_day_with_a_clock_change_splits_at_local_eight() {
        // 1 an hour off-peak, 10 an hour from 08:00, per second; Berlin springs forward at 02:00.
        let mut p = plan_from(&[
            ("Timings.csv", "OFF,*any,*any,*any,*any,00:00:00\nPEAK,*any,*any,*any,*any,08:00:00;18:00:00\n"),
            ("Destinations.csv", "DST,49\n"),
            ("Rates.csv", "RT_OFF,0,1,1h,1s,0\nRT_PEAK,0,1e1,1h,1s,0\n"),
            ("DestinationRates.csv", "DR_OFF,DST,RT_OFF,*up,4,,\nDR_PEAK,DST,RT_PEAK,*up,4,,\n"),
            ("RatingPlans.csv", "RP,DR_OFF,OFF,10\nRP,DR_PEAK,PEAK,10\n"),
            ("RatingProfiles.csv", "cgrates.org,call,*any,2014-01-14 00:00:00,RP,\n"),
        ]);
        p.set_timezone(TimeZone::get("Europe/Berlin").unwrap());
        // 01:30 CET for 7 h: 5.5 h off-peak (the clock skips 02:00-03:00), 1.5 h from 08:00 CEST.
        let at: Timestamp = "2024-03-31T00:30:00Z".parse().unwrap();
        let t = p.tariff("cgrates.org", "call", "x", "4930123", at).unwrap();
        // Per second: round5(1 / 3600) = 0.00028 x 19,800 s + round5(10 / 3600) = 0.00278 x 5,400 s.
        assert_eq!(p.cost(&t, at, 7 * 3600 * NS).unwrap(), Decimal::new(205560, 4));
    }

    #[test]
    fn empty_rounding_leaves_the_total_unrounded_and_fallbacks_stop_at_three_levels() {
        let p = plan_from(&[
            ("Destinations.csv", "DST,1002\nDST_9,9\n"),
            ("Rates.csv", "RT,0.4,0.2,60s,60s,0s\nRT,0,0.1,60s,1s,60s\n"),
            ("DestinationRates.csv", "DR,DST,RT,,,,\nDR_9,DST_9,RT,*up,4,,\n"),
            ("RatingPlans.csv", "RP,DR,*any,10\nRP_9,DR_9,*any,10\n"),
            (
                "RatingProfiles.csv",
                "cgrates.org,call,A,2014-01-14T00:00:00Z,RP_9,B\ncgrates.org,call,B,2014-01-14T00:00:00Z,RP_9,C\n\
                 cgrates.org,call,C,2014-01-14T00:00:00Z,RP,\ncgrates.org,call,X,2014-01-14T00:00:00Z,RP_9,A\n",
            ),
        ]);
        let at: Timestamp = "2024-05-15T12:00:00Z".parse().unwrap();
        // A -> B -> C: the third level prices; X -> A -> B -> C would be the fourth.
        let t = p.tariff("cgrates.org", "call", "A", "1002", at).unwrap();
        assert_eq!(
            p.tariff("cgrates.org", "call", "X", "1002", at),
            Err(PriceError::UnauthorizedDestination)
        );
        // 61 s: 0.4 + 0.2 + 0.00167, not rounded to 4 decimals (no method, no decimals).
        assert_eq!(p.cost(&t, at, 61 * NS).unwrap(), Decimal::new(60167, 5));
    }

    #[test]
    fn unknown_destinations_are_refused() {
        let p = plan(Rounding::default());
        assert_eq!(price(&p, "4003", "2024-05-15T12:00:00Z", 60), Err(PriceError::UnauthorizedDestination));
    }

    proptest! {
        /// What live accounting assumes of a tariff ([`Plan::bounds`]): the cost of `s` seconds is
        /// at most `fee + per_minute x (s + increment) / 60` as the engine counts it (in
        /// ten-thousandths, fee and rate rounded up, plus one for its own rounding of the cost);
        /// whatever the destination rate's rounding (up, middle, down, to 0-6 decimals) and the
        /// plan's (per increment, or of the total). Amounts in ten-thousandths (fee) and
        /// millionths (rate per unit).
        #[test]
        fn cost_stays_under_the_linear_bound(
            // Small amounts too: a rounding step can be worth more than a whole increment.
            fee in prop_oneof![0i64..100, 0i64..100_000], rate in prop_oneof![0i64..10_000, 0i64..10_000_000],
            unit in prop::sample::select(vec!["1s", "60s"]), inc in prop::sample::select(vec!["1s", "6s", "60s"]),
            method in prop::sample::select(vec!["*up", "*middle", "*down"]), decimals in 0u32..7,
            total in any::<bool>(), secs in 0u64..20_000,
        ) {
            let rates = format!("RT,{},{},{unit},{inc},0s\n", Decimal::new(fee, 4), Decimal::new(rate, 6));
            let dest_rates = format!("DR,DST,RT,{method},{decimals},,\n");
            let mut p = plan_from(&[
                ("Destinations.csv", "DST,+31\n"),
                ("Rates.csv", &rates),
                ("DestinationRates.csv", &dest_rates),
                ("RatingPlans.csv", "RP,DR,*any,10\n"),
                ("RatingProfiles.csv", "cgrates.org,call,*any,2019-03-01T00:00:00Z,RP,\n"),
            ]);
            if total {
                p.rounding = Rounding::Total;
            }
            let at: Timestamp = "2024-05-15T12:00:00Z".parse().unwrap();
            let t = p.tariff("cgrates.org", "call", "x", "+31201234567", at).unwrap();
            let cost = p.cost(&t, at, secs * NS).unwrap();
            let (f, per_minute, increment) = p.bounds(&t);
            // In ten-thousandths, as the engine keeps them: the cost rounded half away from zero,
            // fee and rate rounded up; the engine's `+ 1` covers its own rounding only.
            let units = |d: Decimal| d * Decimal::from(10_000);
            let spent = units(cost.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero));
            let (fee_up, rate_up) = (units(f).ceil(), units(per_minute).ceil());
            prop_assert!(
                (spent - fee_up - Decimal::ONE) * Decimal::from(60) <= rate_up * Decimal::from(secs + increment as u64),
                "{secs} s cost {cost}: above {f} + {per_minute} x ({secs} + {increment}) / 60"
            );
        }

        #[test]
        fn cost_never_falls_as_usage_grows(a in 0u64..20_000, b in 0u64..20_000, dest in 0usize..3,
                                           start in 1_552_000_000i64..1_560_000_000, total in any::<bool>()) {
            let p = plan(if total { Rounding::Total } else { Rounding::default() });
            let at = Timestamp::from_second(start).unwrap();
            let d = ["1003", "+447700900123", "+6707000000"][dest];
            let t = p.tariff("cgrates.org", "call", "x", d, at).unwrap();
            let (lo, hi) = (a.min(b), a.max(b));
            let (cl, ch) = (p.cost(&t, at, lo * NS).unwrap(), p.cost(&t, at, hi * NS).unwrap());
            prop_assert!(cl <= ch, "{lo} s costs {cl}, {hi} s costs {ch}");
            if dest == 1 {
                prop_assert!(ch <= Decimal::new(5, 1), "*free: {ch} above MaxCost");
            }
        }
    }
}
