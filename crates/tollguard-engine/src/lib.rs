//! # tollguard-engine
//!
//! The deterministic state machine at the centre of tollguard:
//! `engine.handle(event, now, &mut effects)`. It reads no clock, file or socket; the live server
//! feeds it with the wall clock and `tollguard replay` with event time, and both get the same
//! answers.
//!
//! - Events: a call attempt (authorize), answer, end, a late CDR, a tick (time passes), an
//!   operator command.
//! - Effects: a decision (allow, deny, allow with a maximum duration; with the rules and figures),
//!   an alert, a block, an unblock, a cut of a running call.
//!
//! Limits count calls still running: spend is rate x elapsed, so twenty parallel calls are seen
//! while they run. The maximum duration given at authorization is the budget left, shared by the
//! calls already running (see [`Engine::handle`]).
//!
//! Time: the engine keeps, for every limit with calls running, the earliest moment its level
//! could be reached at the rates running (a lower bound, from the billing increments and fees),
//! and [`Engine::next_deadline`] gives the earliest of them and of block expiries. A tick looks
//! only at limits whose deadline has come. The live server ticks every second; replay ticks at
//! the deadlines, rounded up to its tick grid. Each account's state changes only through its own
//! events and its own deadlines, so accounts can be replayed on separate engines and give the
//! same effects.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use tollguard_core::cdr::{CallParts, Cdr, Direction};
use tollguard_core::numbering::{Dialled, NumberType, RiskTier, E164};
use tollguard_core::rater::{Rated, Rater};
use tollguard_core::rating::RateRow;

pub mod baseline;
mod due;
pub mod policy;
mod snapshot;
mod window;

use baseline::{Baseline, Peaks};
pub use policy::Limit;
use policy::{Action, Metric, Policy, ScopeKind, When, WindowKind};
use window::{Local, Window};

/// A call about to be routed: what the switch knows before it rings (borrowed from the
/// caller's request or record: the engine copies what it keeps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// The switch's call id.
    pub call_id: &'a str,
    /// The account charged.
    pub account: &'a str,
    /// The calling extension.
    pub extension: &'a str,
    /// What was dialled, as dialled.
    pub dialled: &'a str,
    /// Originating channel (for direction), if known.
    pub channel: &'a str,
    /// Destination channel, if known.
    pub dst_channel: &'a str,
    /// Dialplan context, if known.
    pub context: &'a str,
    /// The call already rated by the caller, at the attempt's time with no talk time
    /// ([`Rater::rate_parts`] with `billsec` 0): replay rates each record once, for its summary
    /// too. `None`: the engine rates it.
    pub rated: Option<&'a Rated<'a>>,
}

/// Who lifts blocks, and so which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unblocker {
    /// An operator: every block.
    Operator,
    /// The account's customer: only the blocks set by limits the customer set for the account.
    /// The operator's blocks, and those of the policy's and the operator's limits, stay until an
    /// operator lifts them.
    Customer,
    /// Every block a limit set, none an operator set (a customer's unblock as logged before
    /// [`Unblocker::Customer`]; kept so that a log rebuilds as it happened).
    AnyLimit,
}

/// An operator command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Block an account (or one extension of it) for every destination, until a time or until
    /// unblocked.
    Block {
        /// Account.
        account: String,
        /// Extension, or all.
        extension: Option<String>,
        /// Until when; `None`: until unblocked.
        until: Option<Timestamp>,
        /// Why (shown in decisions).
        reason: String,
        /// Only these destinations; `None`: all (emergency numbers are never blocked).
        destinations: Option<Destinations>,
    },
    /// Lift every block of an account (or of one extension).
    Unblock {
        /// Account.
        account: String,
        /// Extension, or all.
        extension: Option<String>,
        /// Whose unblock it is: what it may lift.
        by: Unblocker,
    },
    /// After a false positive: the account may call these countries without the first-call
    /// rules (a new partner country), until a time or for good. Replaces earlier allowances.
    Allow {
        /// Account.
        account: String,
        /// ISO 3166 alpha-2 codes.
        countries: Vec<String>,
        /// Until when; `None`: until changed.
        until: Option<Timestamp>,
    },
    /// Replace the limits an operator, or the customer itself, set for one account. They apply
    /// besides the policy's (and the operator's, for a customer's): every limit must pass.
    SetLimits {
        /// Account.
        account: String,
        /// Who sets them.
        owner: LimitOwner,
        /// The limits (their `accounts` field is ignored: they are the account's).
        limits: Vec<Limit>,
    },
}

/// Destinations a block covers: any of the countries, risk tiers or E.164 prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Destinations {
    /// ISO 3166 alpha-2 codes (upper case).
    pub countries: Vec<String>,
    /// Risk tiers.
    pub risks: Vec<RiskTier>,
    /// E.164 prefixes, digits without `+`.
    pub prefixes: Vec<String>,
}

impl Destinations {
    /// Destinations as written (an operator's block, a `[[policy.destinations]]` list): ISO 3166
    /// alpha-2 codes (and `001`, non-geographic numbers, where `non_geographic` says so), risk
    /// tiers, E.164 prefixes with or without `+`. Empty lists give empty destinations.
    pub fn parse(
        countries: &[String],
        risk: &[String],
        prefixes: &[String],
        non_geographic: bool,
    ) -> Result<Destinations, String> {
        let mut d = Destinations::default();
        for c in countries {
            let alpha2 = c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic());
            let known = alpha2 || (non_geographic && c == "001");
            if !known {
                let or = if non_geographic { " (or 001)" } else { "" };
                return Err(format!("countries: {c:?} is not an ISO 3166 alpha-2 code{or}"));
            }
            d.countries.push(c.to_ascii_uppercase());
        }
        for r in risk {
            d.risks
                .push(RiskTier::parse(r).ok_or_else(|| {
                    format!("risk: {r:?} is not a risk tier (low, medium, high, critical)")
                })?);
        }
        for p in prefixes {
            let digits = p.strip_prefix('+').unwrap_or(p);
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("prefixes: {p:?} is not an E.164 prefix (e.g. \"+882\")"));
            }
            d.prefixes.push(digits.to_string());
        }
        Ok(d)
    }

    /// Whether it lists nothing.
    pub fn is_empty(&self) -> bool {
        self.countries.is_empty() && self.risks.is_empty() && self.prefixes.is_empty()
    }

    fn covers(&self, country: &str, risk: Option<RiskTier>, number: Option<&E164>) -> bool {
        self.countries.iter().any(|c| c == country)
            || risk.is_some_and(|r| self.risks.contains(&r))
            || number.is_some_and(|n| self.prefixes.iter().any(|p| n.as_str().starts_with(p.as_str())))
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.countries.clone();
        parts.extend(self.risks.iter().map(|r| format!("{r} risk")));
        parts.extend(self.prefixes.iter().map(|p| format!("+{p}")));
        parts.join(", ")
    }
}

/// Who set an account's own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitOwner {
    /// The carrier's operator.
    Operator,
    /// The account's own customer.
    Customer,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A call is about to be routed: the engine answers with a decision.
    Attempt(Attempt<'a>),
    /// The call was answered.
    Answer {
        /// Call id.
        call_id: &'a str,
    },
    /// The call ended; `billsec` when the switch says it (else time since answer).
    End {
        /// Call id.
        call_id: &'a str,
        /// Talk time.
        billsec: Option<u32>,
    },
    /// Time passes: limits whose deadline ([`Engine::next_deadline`]) has come are re-checked
    /// with their running calls re-costed, and blocks expire.
    Tick,
    /// An operator command.
    Command(Command),
    /// A call detail record arrived (after the call). For a call still running it ends it with
    /// the record's talk time; for one that ended within the grace period
    /// ([`Engine::set_record_grace`]) it corrects the cost counted (the record wins over the
    /// end event); for a call the engine never saw (an integration that sends only records) it
    /// counts the call at its end and checks the limits, alerting and blocking as at a tick.
    ///
    /// A switch may write several legs under one id (Asterisk's `uniqueid` for each `Dial` of
    /// a dialplan's failover), each with its own destination channel: the call costs what its
    /// legs' records say together. A record of a leg had before replaces that leg's. A record
    /// with no talk time for a running call that was answered is an earlier leg's: the call
    /// runs on.
    Record(&'a Cdr),
}

/// The answer to an attempt (one for each attempt handled: its call id is the attempt's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// The most talk time it may have; `None`: no cap.
    pub max_duration_s: Option<u32>,
    /// Names of the rules that decided or capped it (or would have, in report-only mode).
    pub rules: Vec<String>,
    /// The figures behind each rule, for people.
    pub explanation: Vec<String>,
    /// The destination's price per minute in the first deck, ten-thousandths (what a refused
    /// call would have cost for each minute it ran); `None` when unpriced or not outbound.
    pub rate_per_minute_units: Option<i64>,
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// A warning level was reached.
    Warning,
    /// A critical level was reached.
    Critical,
}

/// What was done about an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertAction {
    /// Nothing but the alert.
    Alert,
    /// A call was denied.
    Deny,
    /// Running calls were cut.
    Cut,
    /// The scope was blocked.
    Block,
}

/// An alert, as written to alerts.jsonl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Event time, RFC 3339 with the account's offset.
    pub time: String,
    /// Account.
    pub account: String,
    /// Extension ("" for account-wide alerts).
    pub extension: String,
    /// Severity.
    pub severity: Severity,
    /// Rule name.
    pub rule: String,
    /// What was done.
    pub action: AlertAction,
    /// The call that triggered it ("" when none).
    pub call_id: String,
    /// What happened, with figures.
    pub message: String,
}

/// What the engine asks the world to do or know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The answer to an attempt.
    Decision(Decision),
    /// An alert.
    Alert(Alert),
    /// A block was set.
    Block {
        /// Account.
        account: String,
        /// Extension, or all.
        extension: Option<String>,
        /// Trunk, or all (a per-trunk limit's block).
        trunk: Option<String>,
        /// Rule.
        rule: String,
        /// Until when.
        until: Option<Timestamp>,
    },
    /// A block ended.
    Unblock {
        /// Account.
        account: String,
        /// Extension, or all.
        extension: Option<String>,
        /// Rule of the block.
        rule: String,
    },
    /// End a running call now.
    Cut {
        /// Call id.
        call_id: String,
        /// Rule.
        rule: String,
    },
    /// What a call that ended (or a record, or a correction) added to the account's spend, in
    /// ten-thousandths of the first deck's currency.
    Charged {
        /// Account (shared with the engine's own copy of the name: no allocation per call).
        account: Arc<str>,
        /// Amount (negative for a correction down).
        units: i64,
    },
}

type Map<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A map keyed by text from outside: call ids, extensions, account codes. Hashed with a key drawn
/// at random once per map (aHash), not with [`Map`]'s fixed function: a SIP caller picks the
/// Call-ID a switch sends as `call_id`, and ids searched out to fall into one bucket under a
/// known function would make every lookup walk them all, under the engine's lock. Nothing
/// iterates these maps in an order that reaches an effect, so results stay the same run to run.
type TextMap<V> = std::collections::HashMap<String, V, ahash::RandomState>;

/// A call's price. `units` is exact; the rest is a linear view for budgets and deadlines:
/// cost(t) <= fee_up + 1 + rate_up x (t + increment) / 60 in ten-thousandths.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CallRate {
    exact: Exact,
    /// Fee and rate per minute in ten-thousandths, truncated (for caps).
    fee_u: i64,
    rate_u: i64,
    /// The same rounded up, for deadlines.
    fee_up: i128,
    rate_up: i128,
    /// The longest increment, seconds.
    increment_s: u32,
}

/// How the exact cost is computed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Exact {
    /// An A-Z deck row: round(fee + rate x billed / 60) to four decimals, in integers, with fee
    /// and rate as mantissas at a common scale.
    /// The cost is `(60 fee_m + rate_m billed) x mul / den`, rounded: `fee_m` and `rate_m`
    /// at `scale` decimals, `mul / den` bringing that to ten-thousandths of a minute's sixtieth.
    /// `fee` and `rate` as the deck has them, for amounts beyond 128 bits (absurd scales).
    Deck {
        fee_m: i128,
        rate_m: i128,
        mul: i128,
        den: i128,
        initial_s: u32,
        subsequent_s: u32,
        #[serde(with = "snapshot::decimal")]
        fee: Decimal,
        #[serde(with = "snapshot::decimal")]
        rate: Decimal,
    },
    /// A CGRateS plan's rates, priced from the call's start by the plan's rounding mode.
    Plan {
        /// Not in a snapshot: the rater's own plan (see [`snapshot`]).
        #[serde(serialize_with = "snapshot::no_plan", deserialize_with = "snapshot::rater_plan")]
        plan: Arc<tollguard_core::cgrates::Plan>,
        tariff: tollguard_core::cgrates::Tariff,
        start: Timestamp,
    },
}

/// Ten-thousandths rounded up.
fn units_up(d: Decimal) -> i128 {
    let scale = d.scale();
    // In 64 bits when it fits (every real price): a 128-bit division is a slow library call.
    if let Some(m) =
        i64::try_from(d.mantissa()).ok().and_then(|m| m.checked_mul(10_000)).filter(|_| scale <= 18)
    {
        let den = 10i64.pow(scale);
        return (m.div_euclid(den) + i64::from(m.rem_euclid(den) != 0)) as i128;
    }
    let m = d.mantissa() * 10_000;
    let den = 10i128.pow(scale);
    m.div_euclid(den) + i128::from(m.rem_euclid(den) != 0)
}

impl CallRate {
    fn new(row: &RateRow) -> CallRate {
        let scale = row.connection_fee.scale().max(row.rate_per_minute.scale());
        let at = |d: Decimal| d.mantissa() * 10i128.pow(scale - d.scale());
        CallRate {
            exact: Exact::Deck {
                fee_m: at(row.connection_fee),
                rate_m: at(row.rate_per_minute),
                mul: if scale >= 4 { 1 } else { 10i128.pow(4 - scale) },
                den: if scale >= 4 { 60 * 10i128.pow(scale - 4) } else { 60 },
                initial_s: row.initial_s,
                subsequent_s: row.subsequent_s,
                fee: row.connection_fee,
                rate: row.rate_per_minute,
            },
            fee_u: to_units(row.connection_fee),
            rate_u: to_units(row.rate_per_minute),
            fee_up: units_up(row.connection_fee),
            rate_up: units_up(row.rate_per_minute),
            increment_s: row.initial_s.max(row.subsequent_s.max(1)),
        }
    }

    /// A CGRateS tariff: the linear view takes the highest connect fee and per-minute rate the
    /// tariff may use (per-increment rounding included), so caps stay inside the budget.
    fn plan(
        plan: &Arc<tollguard_core::cgrates::Plan>,
        tariff: tollguard_core::cgrates::Tariff,
        start: Timestamp,
    ) -> CallRate {
        let (fee, per_minute, increment_s) = plan.bounds(&tariff);
        CallRate {
            exact: Exact::Plan { plan: plan.clone(), tariff, start },
            fee_u: to_units(fee),
            rate_u: units_up(per_minute).clamp(0, i64::MAX as i128) as i64,
            fee_up: units_up(fee),
            rate_up: units_up(per_minute),
            increment_s,
        }
    }

    /// Cost in ten-thousandths for `talk` seconds: exactly the deck row's or the plan's cost.
    fn units(&self, talk: u32) -> i64 {
        if talk == 0 {
            return 0;
        }
        match &self.exact {
            Exact::Deck { fee_m, rate_m, mul, den, initial_s, subsequent_s, fee, rate } => {
                let billed = tollguard_core::rating::billed_seconds(talk, *initial_s, *subsequent_s);
                // In 64 bits when everything fits (every real deck), else in 128.
                let small = (|| {
                    let (f, r, m, d) = (
                        i64::try_from(*fee_m).ok()?,
                        i64::try_from(*rate_m).ok()?,
                        i64::try_from(*mul).ok()?,
                        i64::try_from(*den).ok()?,
                    );
                    let num =
                        f.checked_mul(60)?.checked_add(r.checked_mul(billed as i64)?)?.checked_mul(m)?;
                    Some(rounded_div(num, d))
                })();
                small
                    .or_else(|| {
                        let num = fee_m
                            .checked_mul(60)?
                            .checked_add(rate_m.checked_mul(billed as i128)?)?
                            .checked_mul(*mul)?;
                        Some(rounded_div(num, *den).clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                    })
                    .unwrap_or_else(|| {
                        // Beyond 128 bits at a common scale: as the deck computes it.
                        let n = *fee * Decimal::from(60) + *rate * Decimal::from(billed);
                        rounded_units(tollguard_core::money::div_round(n, 60, 4))
                    })
            }
            Exact::Plan { plan, tariff, start } => {
                plan.cost(tariff, *start, talk as u64 * 1_000_000_000).map_or(0, rounded_units)
            }
        }
    }

    /// The longest talk time, at most `seconds`, whose billed time is no more than `seconds`: a
    /// cap ends a call at an increment boundary, so the budget is not overrun by the rounding
    /// up of a started increment. 0 when not even the first increment fits.
    fn whole_increments(&self, seconds: u32) -> u32 {
        match &self.exact {
            Exact::Deck { initial_s, subsequent_s, .. } => {
                let (first, next) = (*initial_s, (*subsequent_s).max(1));
                if seconds < first.max(1) {
                    0
                } else if seconds <= first {
                    first
                } else {
                    first + (seconds - first) / next * next
                }
            }
            // Whole multiples of the longest increment: never past a boundary of any slice.
            Exact::Plan { .. } => seconds / self.increment_s.max(1) * self.increment_s.max(1),
        }
    }

    /// With a CGRateS `*disconnect` MaxCost: the talk time at which it is reached.
    fn max_cost_cap(&self) -> Option<u32> {
        match &self.exact {
            Exact::Plan { plan, tariff, start } => plan
                .max_usage(tariff, *start, CAP_HORIZON_S as u64 * 1_000_000_000)
                .map(|ns| (ns / 1_000_000_000).min(u32::MAX as u64) as u32),
            Exact::Deck { .. } => None,
        }
    }

    /// The longest first or later increment: billed seconds never exceed talk + this.
    fn increment(&self) -> i128 {
        self.increment_s as i128
    }
}

/// The price of a deck row, from the cache (built there at its first call).
fn deck_rate(cache: &mut Map<RateKey, Arc<CallRate>>, row: &RateRow) -> Arc<CallRate> {
    let key =
        (row.connection_fee.serialize(), row.rate_per_minute.serialize(), row.initial_s, row.subsequent_s);
    if let Some(r) = cache.get(&key) {
        return Arc::clone(r);
    }
    if cache.len() >= MAX_DECK_RATES {
        cache.clear();
    }
    let r = Arc::new(CallRate::new(row));
    cache.insert(key, Arc::clone(&r));
    r
}

/// `num / den` rounded half away from zero (`den` > 0).
fn rounded_div<T>(num: T, den: T) -> T
where
    T: Copy
        + PartialOrd
        + From<i8>
        + std::ops::Div<Output = T>
        + std::ops::Rem<Output = T>
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Neg<Output = T>,
{
    let zero = T::from(0);
    let (q, r) = (num / den, num % den);
    let r = if r < zero { -r } else { r };
    // 2r >= den, without computing 2r (it may not fit).
    if r >= den - r {
        if num < zero {
            q - T::from(1)
        } else {
            q + T::from(1)
        }
    } else {
        q
    }
}

/// An amount in ten-thousandths, rounded half away from zero.
fn rounded_units(d: Decimal) -> i64 {
    let mut r = d.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    r.rescale(4);
    r.mantissa().clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// An amount in ten-thousandths, truncated toward zero.
fn to_units(d: Decimal) -> i64 {
    let m = d.mantissa();
    let s = d.scale();
    if let (Ok(m), 4..=18) = (i64::try_from(m), s) {
        return m / 10i64.pow(s - 4);
    }
    let u = if s >= 4 { m / 10i128.pow(s - 4) } else { m * 10i128.pow(4 - s) };
    u.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// A call the engine allowed and has not seen end.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Call {
    account: u32,
    /// The calling extension (the buffer is kept when the slot is reused).
    extension: String,
    /// The trunk it goes out on ("" unknown; the buffer is kept when the slot is reused).
    trunk: String,
    answered: Option<Timestamp>,
    rate: Option<Arc<CallRate>>,
    /// Where it goes, for limits set while it runs; `None`: counted by no limit (emergency).
    class: Option<DestClass>,
    /// The high-risk number at the other end (the caller of an inbound call), for the wangiri
    /// rule: what the call's end says about it.
    high_risk: Option<(E164, bool)>,
    /// The spend limit state whose budget left gave the call its cap, and the cap: a call that
    /// talks until it has used that budget up.
    capped_by: Option<(u32, u32)>,
    /// Limit states that count it.
    states: Vec<u32>,
    cut: bool,
    /// `call_duration` limits that alert without cutting whose alert this call raised (each
    /// raises it once per call).
    long_alerted: Vec<u16>,
}

/// What limits filter a call's destination by.
/// (Written in a snapshot as [`snapshot::DestClassText`].)
#[derive(Clone, Copy, Debug)]
pub(crate) struct DestClass {
    pub(crate) country: &'static str,
    pub(crate) number_type: Option<NumberType>,
    pub(crate) risk: Option<RiskTier>,
    /// A kind of destination the account first called lately (at the call's start).
    pub(crate) new: bool,
}

impl LimitState {
    /// A calendar window's new period (a new day for a daily limit) starts a new episode: its
    /// levels alert again. Otherwise a limit reached every night by an attack whose calls run over
    /// midnight (they keep the new day's spend above the warning level) alerted once in 17 days.
    /// Call after the window has been brought to `now` (`usage`, `totals`).
    fn new_period(&mut self) {
        if let Some(p) = self.window.as_ref().and_then(Window::period) {
            if p != self.alerted_in {
                self.alerted_in = p;
                self.alerted = 0;
            }
        }
    }
}

impl Call {
    fn running_units(&self, now: Timestamp) -> i64 {
        match (&self.rate, self.answered) {
            (Some(r), Some(a)) => r.units(now.duration_since(a).as_secs().max(0) as u32),
            _ => 0,
        }
    }

    fn rate_per_minute_units(&self) -> i64 {
        self.rate.as_ref().map_or(0, |r| r.rate_u)
    }
}

/// The linear view of what a set of running calls has cost ([`CallRate`]), summed over its
/// answered priced calls and kept as calls are answered and end: their spend at second `t` is
/// at most `fixed + (slope x t - offset) / 60` ten-thousandths. Deadlines and the "surely below"
/// test read it instead of visiting every running call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Linear {
    fixed: i128,
    slope: i128,
    offset: i128,
}

impl Linear {
    /// A call's terms: `fee_up + 1`, `rate_up`, and `rate_up x (answered - increment)`.
    fn terms(call: &Call) -> Option<(i128, i128, i128)> {
        match (&call.rate, call.answered) {
            (Some(r), Some(ans)) => {
                Some((r.fee_up + 1, r.rate_up, r.rate_up * (ans.as_second() as i128 - r.increment())))
            }
            _ => None,
        }
    }

    fn add(&mut self, call: &Call) {
        if let Some((f, s, o)) = Linear::terms(call) {
            self.fixed += f;
            self.slope += s;
            self.offset += o;
        }
    }

    fn remove(&mut self, call: &Call) {
        if let Some((f, s, o)) = Linear::terms(call) {
            self.fixed -= f;
            self.slope -= s;
            self.offset -= o;
        }
    }

    /// Whether `ended` plus what the calls have cost is surely below `level` at `now`.
    ///
    /// A call's whole seconds of talk at `now` are at most `now.as_second() + 1 -
    /// answered.as_second()` whatever the fractions (jiff truncates toward zero), and rates are
    /// never negative, so the bound is taken a second later than `now.as_second()`.
    fn surely_below(&self, ended: i64, level: i64, now: Timestamp) -> bool {
        let t = now.as_second() as i128 + 1;
        60 * (ended as i128 + self.fixed) + self.slope * t - self.offset < 60 * level as i128
    }
}

/// One limit counted for one account (or one extension of it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct LimitState {
    limit: u16,
    account: u32,
    window: Option<Window>,
    /// Call slots running in it.
    running: Vec<u32>,
    /// The linear view of their cost.
    linear: Linear,
    /// Highest level alerted in the current episode: 0 none, 1 warning, 2 critical.
    alerted: u8,
    /// The calendar period of the episode (see [`LimitState::new_period`]).
    alerted_in: i64,
    /// When a tick must look at it next.
    deadline: Option<Timestamp>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct ActiveBlock {
    /// Extension, or all.
    extension: Option<String>,
    /// Trunk, or all (a per-trunk limit's block).
    trunk: Option<String>,
    /// The limit whose destinations are blocked; `None`: see `destinations`.
    limit: Option<u16>,
    /// An operator's destinations; `None` (and no limit): all destinations.
    destinations: Option<Destinations>,
    until: Option<Timestamp>,
    rule: String,
    /// When it was set.
    set_at: Timestamp,
}

impl ActiveBlock {
    /// In force at `now` (an expired one goes at the next tick) for a call from `ext` on `trunk`.
    fn holds_for(&self, ext: &str, trunk: &str, now: Timestamp) -> bool {
        self.until.is_none_or(|u| u > now)
            && self.extension.as_ref().is_none_or(|e| e == ext)
            && self.trunk.as_ref().is_none_or(|t| t == trunk)
    }

    /// The block a limit's `block` action sets: its destinations, for the account (or the
    /// extension, for a per-extension limit), for `block_for` or until released.
    fn by_limit(limit: &Limit, li: u16, ext: &str, trunk: Option<String>, now: Timestamp) -> ActiveBlock {
        ActiveBlock {
            extension: (limit.scope == ScopeKind::Extension).then(|| ext.to_string()),
            trunk: trunk.filter(|_| limit.scope == ScopeKind::Trunk),
            limit: Some(li),
            destinations: None,
            until: limit.block_for.map(|d| later(now, d)),
            rule: limit.name.clone(),
            set_at: now,
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct AccountMemory {
    /// Kinds of destination the account has called ([`destination_kind`]), and when first
    /// (seconds since 1970; [`LEARNT`]: while it was being learned): the first-call rules, and
    /// limits with `new_destinations`.
    seen: Vec<(u32, i64)>,
    /// Kinds whose first-call alert was raised (until they are called).
    alerted: Vec<u32>,
    /// The account's earliest call to any destination: its first [`ACCOUNT_LEARNING`] are how
    /// its destinations become known.
    since: Option<Timestamp>,
    /// High-risk numbers that rang in recently with no conversation (unanswered, or
    /// [`ONE_RING_S`] at most), and when.
    rang_in: Vec<(E164, Timestamp)>,
    /// High-risk numbers the account has talked with (a conversation either way) and when last,
    /// oldest first: calling them back is not wangiri.
    talked: Vec<(E164, Timestamp)>,
    /// Numbers whose wangiri alert was raised (while they are remembered in `rang_in`).
    wangiri_alerted: Vec<E164>,
    /// The last callback the wangiri rule denied (when, the number, the caller's [`fnv1a`]),
    /// and the last time it raised a critical alert.
    wangiri_denied: Option<(Timestamp, E164, u64)>,
    wangiri_critical: Option<Timestamp>,
    /// Countries an operator allowed after a false positive (ISO alpha-2), until when.
    allowances: Vec<(String, Option<Timestamp>)>,
}

impl AccountMemory {
    /// A call with a high-risk number ended after `talk` seconds: a ring with no conversation
    /// is remembered for the wangiri rule (if it came in), a conversation clears the number.
    fn heard(&mut self, number: E164, inbound: bool, talk: u32, at: Timestamp) {
        if talk > ONE_RING_S {
            self.rang_in.retain(|(n, _)| *n != number);
            // The most recent last: a number talked with often stays.
            self.talked.retain(|(n, t)| *n != number && at.duration_since(*t) < TALKED_MEMORY);
            if self.talked.len() >= TALKED_NUMBERS {
                self.talked.remove(0);
            }
            self.talked.push((number, at));
        } else if inbound && !self.talked_with(number, at) {
            self.rang_in.retain(|(n, t)| *n != number && at.duration_since(*t) < WANGIRI_MEMORY);
            if self.rang_in.len() >= WANGIRI_NUMBERS {
                self.rang_in.remove(0);
            }
            self.rang_in.push((number, at));
        }
    }

    /// Whether the account has talked with `number` in the last [`TALKED_MEMORY`].
    fn talked_with(&self, number: E164, now: Timestamp) -> bool {
        self.talked.iter().any(|(n, t)| *n == number && now.duration_since(*t) < TALKED_MEMORY)
    }

    /// A call to `kind` at `at`; `learning`: the account's destinations are being learned, so
    /// a first call then makes nothing new. Records may come in any order: the earliest call
    /// counts.
    fn mark(&mut self, kind: u32, at: Timestamp, learning: bool) {
        if self.since.is_none_or(|s| at < s) {
            self.since = Some(at);
        }
        let stamp = if learning { LEARNT } else { at.as_second() };
        match self.seen.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, first)) => *first = (*first).min(stamp),
            None => self.seen.push((kind, stamp)),
        }
        self.alerted.retain(|k| *k != kind);
    }

    /// Whether the account has called `kind`.
    fn has_seen(&self, kind: u32) -> bool {
        self.first_call(kind).is_some()
    }

    /// When the account first called `kind` (seconds; [`LEARNT`]), if it has.
    fn first_call(&self, kind: u32) -> Option<i64> {
        self.seen.iter().find(|(k, _)| *k == kind).map(|&(_, t)| t)
    }

    /// Whether an operator allows `country` at `now`.
    fn allows(&self, country: &str, now: Timestamp) -> bool {
        self.allowances.iter().any(|(c, until)| c == country && until.is_none_or(|u| now < u))
    }
}

/// Everything the engine keeps about one account.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Account {
    name: Arc<str>,
    /// Not in a snapshot: the rater's, for the account (see [`Engine::restore`]).
    #[serde(skip, default = "TimeZone::unknown")]
    tz: TimeZone,
    /// Its limit states.
    states: Vec<u32>,
    /// The state of each account-wide limit, by limit index (`u32::MAX`: none yet).
    account_states: Vec<u32>,
    /// Limits set for this account alone, by the operator and by the customer (indices).
    own_limits: [Vec<u16>; 2],
    memory: AccountMemory,
    blocks: Vec<ActiveBlock>,
    /// Blocks set by limits: (limit, when), for escalation.
    block_history: Vec<(Option<u16>, Timestamp)>,
    /// The zone's offset and the span of time it holds for (from, until): local times inside it
    /// need no look-up in the zone's transitions.
    #[serde(skip, default = "no_offset")]
    offset: (jiff::tz::Offset, Timestamp, Timestamp),
    /// Priced outbound calls running (slots).
    running: Vec<u32>,
    /// The linear view of their cost.
    linear: Linear,
    /// What it usually spends per hour of the week (made at its first priced call).
    baseline: Option<Box<Baseline>>,
}

impl Account {
    /// Whether the block limit `li` (of `scope`) sets for the account, or for extension `ext` or
    /// trunk `trunk` of a per-extension or per-trunk limit, is held (expired ones go at the next
    /// tick): one extension's or trunk's block does not stand for another's.
    fn holds_block(&self, li: u16, scope: ScopeKind, ext: &str, trunk: &str) -> bool {
        let ext = (scope == ScopeKind::Extension).then_some(ext);
        let trunk = (scope == ScopeKind::Trunk).then_some(trunk);
        self.blocks
            .iter()
            .any(|b| b.limit == Some(li) && b.extension.as_deref() == ext && b.trunk.as_deref() == trunk)
    }

    /// `now` in the account's zone (several times an event: inline, the look-up out of line).
    #[inline]
    fn local(&mut self, now: Timestamp) -> Local {
        let (_, from, until) = &self.offset;
        if now < *from || now >= *until {
            self.look_up_offset(now);
        }
        Local::at(now, self.offset.0)
    }

    /// The zone's offset at `now` and the span of time it holds for.
    #[cold]
    #[inline(never)]
    fn look_up_offset(&mut self, now: Timestamp) {
        let offset = self.tz.to_offset(now);
        // The last transition at or before `now` (at the very end of time: `now` itself, so the
        // span is one instant and nothing overflows).
        let from = match now.checked_add(SignedDuration::from_nanos(1)) {
            Ok(next) => self.tz.preceding(next).next().map_or(Timestamp::MIN, |t| t.timestamp()),
            Err(_) => now,
        };
        let until = self.tz.following(now).next().map_or(Timestamp::MAX, |t| t.timestamp());
        self.offset = (offset, from, until);
    }
}

/// An offset that holds at no time: the next local time looks the zone up.
fn no_offset() -> (jiff::tz::Offset, Timestamp, Timestamp) {
    (jiff::tz::Offset::UTC, Timestamp::MAX, Timestamp::MIN)
}

/// `t + d`, or the end of time (a request's own time can be anything a timestamp holds).
pub fn later(t: Timestamp, d: SignedDuration) -> Timestamp {
    // Whole seconds after 1970 (deadlines, several an event): the seconds added, the fraction
    // kept; jiff's own addition goes through 128-bit nanoseconds.
    if d.subsec_nanos() == 0 && t.subsec_nanosecond() >= 0 {
        if let Some(s) = t.as_second().checked_add(d.as_secs()).filter(|s| *s >= 0) {
            if let Ok(r) = Timestamp::new(s, t.subsec_nanosecond()) {
                return r;
            }
        }
    }
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// A small deterministic hash of a text (FNV-1a): to tell extensions apart without keeping their
/// text, and to share accounts among replay threads.
pub fn fnv1a(text: &str) -> u64 {
    fnv1a_on(0xcbf2_9ce4_8422_2325, text.bytes())
}

/// [`fnv1a`] of several texts together, each ended by a byte no text has (so `("ab", "c")` and
/// `("a", "bc")` differ).
pub fn fnv1a_parts(parts: &[&str]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325, |h, part| fnv1a_on(h, part.bytes().chain([0xff])))
}

fn fnv1a_on(h: u64, bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A record's leg, by its destination channel (one id may carry several: see [`Event::Record`]).
fn leg_key(dst_channel: &str) -> u64 {
    fnv1a(dst_channel)
}

/// An alert's `time`: `now` in the account's zone, to the second, with its offset.
pub fn alert_time(now: Timestamp, tz: TimeZone) -> String {
    now.to_zoned_datetime(tz).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// "1 call running", "3 calls running", for alert texts.
fn calls_running(n: usize) -> String {
    if n == 1 {
        "1 call running".to_string()
    } else {
        format!("{n} calls running")
    }
}

/// The trunk a call goes out on, for limits with `scope = "trunk"`: a switch's trunk name as
/// given (`kpn`), or the peer of a channel name: `SIP/kpn-000005a2` and `PJSIP/kpn-00000012`
/// give `kpn`, FreeSWITCH's `sofia/gateway/kpn/0031...` gives `kpn`. Empty: no trunk known.
pub fn trunk_of(channel: &str) -> &str {
    // The prefixes below begin with `s` or `L`: other channels (`SIP/`, `PJSIP/`, ...) are not
    // compared with them (three library compares a call).
    if matches!(channel.as_bytes().first(), Some(b's' | b'L')) {
        if let Some(rest) = channel.strip_prefix("sofia/gateway/") {
            return rest.split('/').next().unwrap_or("");
        }
        // FreeSWITCH without a gateway: `sofia/external/0031201234567@sip.kpn.net` goes to the
        // host after `@`; without one there is no trunk to name (not one per number dialled).
        if let Some(rest) = channel.strip_prefix("sofia/") {
            return rest
                .rsplit_once('@')
                .map_or("", |(_, host)| host.split([':', ';', '>']).next().unwrap_or(""));
        }
        // Asterisk's local channels are not trunks.
        if channel.starts_with("Local/") {
            return "";
        }
    }
    // Byte loops rather than `split_once` and `rsplit_once`: this runs for every call attempt,
    // and the pattern searchers cost about 300 instructions on a 16-byte channel name.
    let Some(slash) = channel.bytes().position(|b| b == b'/') else { return channel };
    let peer = &channel[slash + 1..];
    // Asterisk adds "-" and a hexadecimal sequence number to the peer's name: the run of hex
    // digits at the end, if a "-" comes right before it and something before that.
    let b = peer.as_bytes();
    let mut seq = b.len();
    while seq > 0 && b[seq - 1].is_ascii_hexdigit() {
        seq -= 1;
    }
    if seq >= 2 && seq < b.len() && b[seq - 1] == b'-' {
        &peer[..seq - 1]
    } else {
        peer
    }
}

/// A kind of destination, as the new-destination rule remembers them: the country, and for
/// revenue-share ranges (premium, personal, pagers, shared cost, UAN, satellite, international networks)
/// and numbers the country's plan does not know also the type, so an account's first call to
/// its own country's premium numbers is new too.
fn destination_kind(region: u16, number_type: Option<NumberType>) -> u32 {
    let special = match number_type {
        None => NumberType::Unknown as u32 + 1,
        Some(
            t @ (NumberType::Unknown
            | NumberType::Premium
            | NumberType::Personal
            | NumberType::Pager
            | NumberType::SharedCost
            | NumberType::Uan
            | NumberType::Satellite
            | NumberType::InternationalNetwork),
        ) => t as u32 + 1,
        _ => 0,
    };
    (region as u32) << 8 | special
}

/// How many ended calls' id strings the engine keeps for reuse.
const SPARE_IDS: usize = 1024;

/// A budget that allows a call more than this many seconds gives no cap: ticks still cut the
/// call if the limit is reached while it runs.
pub const CAP_HORIZON_S: u32 = 4 * 3600;

/// A second block by the same limit on the same account within this time lasts until released.
pub const BLOCK_ESCALATION: SignedDuration = SignedDuration::from_hours(7 * 24);

/// How long an inbound ring from a high-risk number is remembered for the wangiri rule: a
/// week (a Friday evening's missed calls are called back on Monday, or later).
pub const WANGIRI_MEMORY: SignedDuration = SignedDuration::from_hours(7 * 24);

/// How many such numbers an account remembers (the oldest is forgotten first).
pub const WANGIRI_NUMBERS: usize = 32;

/// A second callback denied by the wangiri rule within this time raises a critical alert (the
/// first a warning).
pub const WANGIRI_BURST: SignedDuration = SignedDuration::from_hours(24);

/// Talk time, seconds, up to which a call from a high-risk number is a ring, not a
/// conversation (wangiri calls ring once and hang up, or are dropped at once).
pub const ONE_RING_S: u32 = 5;

/// How many high-risk numbers an account remembers having talked with.
pub const TALKED_NUMBERS: usize = 64;

/// How long a conversation with a high-risk number is remembered.
pub const TALKED_MEMORY: SignedDuration = SignedDuration::from_hours(90 * 24);

/// The history the engine's state at a time depends on, besides what it keeps for good (the
/// destinations an account has called, and its first call: [`Engine::memory_before`]): the
/// longest of its memories that look back a fixed time (a conversation with a high-risk
/// number, [`TALKED_MEMORY`]; the calendar month's window; the weeks of learned baselines) and
/// a day. A rebuild from a log that starts this long before a time, given that memory, has the
/// same state at that time: an event log may be pruned to it, no shorter.
pub const HISTORY_NEEDED: SignedDuration = SignedDuration::from_hours(91 * 24);

/// How long a kind of destination stays new after the account's first call to it (limits with
/// `new_destinations`).
pub const NEW_DESTINATION_AGE: SignedDuration = SignedDuration::from_hours(30 * 24);

/// An account's first calls, over this time from its earliest, are how its destinations become
/// known: none of them is new (records of its past, posted before the service goes live, count).
pub const ACCOUNT_LEARNING: SignedDuration = SignedDuration::from_hours(7 * 24);

/// The first-call time of a kind of destination called while the account was being learned.
const LEARNT: i64 = i64::MIN;

/// A call that ends this close to its cap, seconds, ran until it (the switch's timer and its
/// record's rounding differ by a second or two).
const CAP_SLACK_S: u32 = 2;

/// A destinations rule alerts at most once in this time for an account (it denies every call
/// it covers; the first denial says what the following ones would).
pub const DESTINATION_ALERT_QUIET: SignedDuration = SignedDuration::from_hours(24);

/// Seconds given to a first call to a high-risk country in office hours.
pub const NEW_DESTINATION_CAP_S: u32 = 300;

/// The furthest ahead a deadline is set, seconds (see [`Engine::next_deadline`]).
const HORIZON_S: i128 = 3600;

const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// The engine. See the crate documentation.
pub struct Engine {
    rater: Arc<Rater>,
    policy: Policy,
    /// How many of `policy.limits` are the policy's own (the rest were set for one account at
    /// run time).
    policy_limits: u16,
    /// Limit indices of the attempt at hand (reused).
    scratch_limits: Vec<u16>,
    /// Limit states of the attempt at hand (reused).
    scratch_keys: Vec<u32>,
    /// Call-id strings of ended calls, reused as keys of `calls` (no allocation per call).
    spare_ids: Vec<String>,
    learn_until: Option<Timestamp>,
    accounts: Vec<Account>,
    account_ids: TextMap<u32>,
    /// States of per-extension limits: (account, limit) -> extension -> state.
    extension_states: Map<(u32, u16), TextMap<u32>>,
    states: Vec<LimitState>,
    /// Call id -> slot in `slots`.
    calls: TextMap<u32>,
    slots: Vec<Call>,
    free_slots: Vec<u32>,
    /// Deadlines of states and block expiries of accounts; stale entries are skipped.
    due: BinaryHeap<Reverse<(Timestamp, u32)>>,
    /// The deadline of each limit state that has one (the same as `LimitState::deadline`).
    deadlines: due::Deadlines,
    /// How long an ended call is remembered for a correcting record; `None`: not at all.
    record_grace: Option<SignedDuration>,
    /// Calls ended within the grace period, by call id, and their ids in end order.
    recent: TextMap<Ended>,
    recent_order: std::collections::VecDeque<(Timestamp, String)>,
    /// The price of each deck row seen, by what it charges: built once, shared by its calls.
    deck_rates: Map<RateKey, Arc<CallRate>>,
    /// When each destinations rule last alerted for an account: (account, rule) -> time.
    destination_alerts: Map<(u32, u16), Timestamp>,
    /// What an outbound call to a high- or critical-risk destination no deck prices counts at
    /// (see [`unpriced_rate`]).
    unpriced: Option<Arc<CallRate>>,
    /// The call of the last attempt handled is followed to its end (see
    /// [`Engine::follows_last_attempt`]).
    last_followed: bool,
}

/// The price counted for an outbound call to a high- or critical-risk destination that no deck
/// row (nor a CGRateS plan) prices: the dearest row of the first deck, fee and increments
/// included. An unknown price to where fraud goes is taken as the worst known one, so such calls
/// count against spend limits and get caps from the budget (before, they counted nothing, and
/// an attack on a range missing from the deck went past every spend limit). `None` without a
/// deck.
fn unpriced_rate(rater: &Rater) -> Option<Arc<CallRate>> {
    let deck = rater.decks().first()?;
    deck.rows()
        .iter()
        .filter(|row| row.currency == deck.currency)
        // The dearest; of equals, the first in the file.
        .min_by_key(|row| (std::cmp::Reverse((row.rate_per_minute, row.connection_fee)), row.line))
        .map(|row| Arc::new(CallRate::new(row)))
}

/// What a deck row charges: connection fee and rate (as stored, scale included), increments.
type RateKey = ([u8; 16], [u8; 16], u32, u32);

/// Deck prices kept at most; beyond, the cache starts again (no deck has as many).
const MAX_DECK_RATES: usize = 1 << 16;

/// An ended call, remembered for a record that corrects it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Ended {
    account: u32,
    rate: Option<Arc<CallRate>>,
    /// See [`Call::high_risk`].
    high_risk: Option<(E164, bool)>,
    states: Vec<u32>,
    units: i64,
    at: Timestamp,
    /// The legs records gave (a hash of the destination channel, and the leg's cost): empty
    /// while `units` is what the end event said, which the first record replaces.
    legs: Vec<(u64, i64)>,
}

/// One limit's usage, for people and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitUsage {
    /// Limit name.
    pub limit: String,
    /// The extension counted, or `None` for the whole account.
    pub extension: Option<String>,
    /// The trunk counted (a per-trunk limit); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// `spend`, `calls`, `concurrent` or `call_duration`.
    pub metric: &'static str,
    /// The window, if any.
    pub window: Option<&'static str>,
    /// Used so far, running calls included (money with two decimals, or a count).
    pub used: String,
    /// The critical level.
    pub max: String,
    /// The warning level, if any.
    pub warning: Option<String>,
    /// Used as a share of the critical level, percent (rounded down).
    pub percent: i64,
    /// Calls running in it.
    pub running_calls: usize,
    /// `policy` (the configuration), `operator` or `customer` (set for this account at run time).
    pub set_by: &'static str,
}

/// What an account's memory knew before a time that the event log after it cannot teach again
/// ([`Engine::memory_before`], [`Engine::seed_memory`]): kinds of destination named as
/// `ISO+calling code/number type` (`TL+670/any`, `GB+44/premium`), which outlive a build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MemorySeed {
    /// The account's earliest call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Kinds of destination it called, and when first (Unix seconds).
    #[serde(default)]
    pub seen: Vec<(String, i64)>,
    /// Kinds whose first-call alert was raised and that it has not called since.
    #[serde(default)]
    pub alerted: Vec<String>,
}

/// A block in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockInfo {
    /// Extension, or `None` for the account.
    pub extension: Option<String>,
    /// The trunk of a per-trunk limit's block; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// The rule that set it.
    pub rule: String,
    /// Until when (RFC 3339), `None`: until released.
    pub until: Option<String>,
}

/// An account as the engine sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountReport {
    /// Account.
    pub account: String,
    /// Priced outbound calls running.
    pub running_calls: usize,
    /// Every limit with state for it.
    pub limits: Vec<LimitUsage>,
    /// Blocks in force.
    pub blocks: Vec<BlockInfo>,
    /// Kinds of destination it has called (countries and special ranges).
    pub destinations_seen: usize,
    /// Kinds of destination it first called in the last [`NEW_DESTINATION_AGE`], newest first
    /// (not those learned): what limits with `new_destinations` count.
    pub new_destinations: Vec<NewDestination>,
    /// Countries allowed after a false positive.
    pub allowances: Vec<Allowance>,
}

/// A kind of destination an account first called lately ([`AccountReport::new_destinations`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewDestination {
    /// ISO 3166 alpha-2 (`001` for international networks; empty when the country code is not
    /// known).
    pub country: String,
    /// `any` for the country's ordinary numbers, else the kind of range within it (`premium`,
    /// `satellite`, `unknown` for numbers its plan does not know, ...).
    pub number_type: &'static str,
    /// The account's first call to it (RFC 3339).
    pub first_call: String,
    /// `new`: its calls count in limits with `new_destinations`; `account_learning`: not, it
    /// was first called in the account's own first week; `allowed`: not, an operator allows
    /// the country.
    pub status: &'static str,
}

/// An account at a glance ([`Engine::account_glance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AccountGlance {
    /// Priced outbound calls running.
    pub running_calls: usize,
    /// Whether a block is in force.
    pub blocked: bool,
    /// The highest use of any limit, percent of its critical level (rounded down).
    pub top_percent: i64,
}

/// A country an account may call without the first-call rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allowance {
    /// ISO 3166 alpha-2.
    pub country: String,
    /// Until when (RFC 3339); `None`: until changed.
    pub until: Option<String>,
}

struct Dest {
    country: &'static str,
    region: Option<u16>,
    number_type: Option<NumberType>,
    risk: Option<RiskTier>,
    rate: Option<Arc<CallRate>>,
}

impl Engine {
    /// An engine rating with `rater` and deciding with `policy`.
    pub fn new(rater: Arc<Rater>, policy: Policy) -> Engine {
        let unpriced = unpriced_rate(&rater);
        Engine {
            rater,
            policy_limits: policy.limits.len() as u16,
            scratch_limits: Vec::new(),
            scratch_keys: Vec::new(),
            spare_ids: Vec::new(),
            policy,
            learn_until: None,
            accounts: Vec::new(),
            account_ids: TextMap::default(),
            extension_states: Map::default(),
            states: Vec::new(),
            calls: TextMap::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            due: BinaryHeap::new(),
            deadlines: due::Deadlines::default(),
            record_grace: None,
            recent: TextMap::default(),
            recent_order: std::collections::VecDeque::new(),
            deck_rates: Map::default(),
            unpriced,
            last_followed: false,
            destination_alerts: Map::default(),
        }
    }

    /// The engine's state as bytes (see [`snapshot`](crate::snapshot)): what
    /// [`Engine::restore`] takes back, with the same rater and policy, into an engine that goes
    /// on as this one would. The record grace ([`Engine::set_record_grace`]) is not in it.
    pub fn snapshot(&self) -> Vec<u8> {
        // Every field named: a new one does not compile until it is in the snapshot or said not
        // to need to be.
        let Engine {
            rater: _,      // the caller's, at restore
            policy,        // the caller's, but for the limits set at run time
            policy_limits, // checked at restore
            scratch_limits: _,
            scratch_keys: _,
            spare_ids: _,
            learn_until,
            accounts,
            account_ids,
            extension_states,
            states,
            calls,
            slots,
            free_slots,
            due,
            deadlines,
            record_grace: _, // the caller's
            recent,
            recent_order,
            deck_rates: _, // a cache
            destination_alerts,
            unpriced: _, // from the rater
            last_followed,
        } = self;
        let state = (
            snapshot::FORMAT,
            *policy_limits,
            &policy.limits[*policy_limits as usize..],
            learn_until,
            accounts,
            account_ids,
            extension_states,
            states,
            calls,
            slots,
            free_slots,
            due,
            deadlines,
            recent,
            recent_order,
            (destination_alerts, last_followed),
        );
        postcard::to_stdvec(&state).expect("an engine's state serializes")
    }

    /// An engine from [`Engine::snapshot`]'s bytes, rating with `rater` and deciding with
    /// `policy`: those the snapshot's engine had, or the restored one decides otherwise than it
    /// would have (the caller checks; see [`snapshot`](crate::snapshot)). Limits set at run time
    /// come from the snapshot.
    pub fn restore(rater: Arc<Rater>, policy: Policy, bytes: &[u8]) -> Result<Engine, String> {
        let mut e = Engine::new(rater, policy);
        let _plan = snapshot::PlanScope::set(e.rater.cgrates().map(|c| c.plan.clone()));
        #[allow(clippy::type_complexity)]
        let (
            format,
            policy_limits,
            runtime_limits,
            learn_until,
            mut accounts,
            account_ids,
            extension_states,
            states,
            calls,
            slots,
            free_slots,
            due,
            deadlines,
            recent,
            recent_order,
            (destination_alerts, last_followed),
        ): (
            u32,
            u16,
            Vec<Limit>,
            Option<Timestamp>,
            Vec<Account>,
            TextMap<u32>,
            Map<(u32, u16), TextMap<u32>>,
            Vec<LimitState>,
            TextMap<u32>,
            Vec<Call>,
            Vec<u32>,
            BinaryHeap<Reverse<(Timestamp, u32)>>,
            due::Deadlines,
            TextMap<Ended>,
            std::collections::VecDeque<(Timestamp, String)>,
            (Map<(u32, u16), Timestamp>, bool),
        ) = match postcard::from_bytes::<(u32,)>(bytes) {
            Ok((f,)) if f != snapshot::FORMAT => {
                return Err(format!(
                    "a snapshot of format {f}, and this build reads format {}",
                    snapshot::FORMAT
                ))
            }
            _ => postcard::from_bytes(bytes).map_err(|err| match snapshot::refused() {
                Some(why) => format!("reading the snapshot: {why}"),
                None => format!("reading the snapshot: {err}"),
            })?,
        };
        debug_assert_eq!(format, snapshot::FORMAT);
        if policy_limits != e.policy_limits {
            return Err(format!(
                "the snapshot's policy had {policy_limits} limits, this one has {}",
                e.policy_limits
            ));
        }
        for a in &mut accounts {
            a.tz = e.rater.account(&a.name).tz.clone();
        }
        e.policy.limits.extend(runtime_limits);
        e.learn_until = learn_until;
        e.accounts = accounts;
        e.account_ids = account_ids;
        e.extension_states = extension_states;
        e.states = states;
        e.calls = calls;
        e.slots = slots;
        e.free_slots = free_slots;
        e.due = due;
        e.deadlines = deadlines;
        e.recent = recent;
        e.recent_order = recent_order;
        e.destination_alerts = destination_alerts;
        e.last_followed = last_followed;
        Ok(e)
    }

    /// The rater the engine prices with.
    pub fn rater(&self) -> &Arc<Rater> {
        &self.rater
    }

    /// The accounts the engine keeps state for, in the order first seen.
    pub fn account_names(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|a| &*a.name)
    }

    /// Remember ended calls for this long, so that a call detail record arriving after the
    /// call's end corrects the cost counted instead of counting the call again. The live server
    /// sets it; replay does not need it.
    pub fn set_record_grace(&mut self, grace: Option<SignedDuration>) {
        self.record_grace = grace;
    }

    /// Calls `f` with every limit in force for an account and each scope counted under it (the
    /// account's, or each extension's that has called, in order): the limit's index, the
    /// extension, what is used now (running calls included) and the calls running in it.
    fn visit_limits(
        &mut self,
        acct: u32,
        now: Timestamp,
        mut f: impl FnMut(&Limit, u16, Option<&str>, i64, usize),
    ) {
        let local = self.accounts[acct as usize].local(now);
        let indices = self.limits_of(acct);
        let account = &self.accounts[acct as usize];
        for &li in &indices {
            let limit = &self.policy.limits[li as usize];
            if limit.retired || !limit.applies_to(&account.name) {
                continue;
            }
            let mut one = |ext: Option<&str>, sid: Option<u32>| {
                let (used, running) = match sid {
                    Some(sid) => {
                        let state = &mut self.states[sid as usize];
                        (usage(limit, state, &self.slots, now, local, 0).0, state.running.len())
                    }
                    None => (0, 0),
                };
                f(limit, li, ext, used, running);
            };
            match limit.scope {
                ScopeKind::Account => {
                    let sid = account.account_states.get(li as usize).copied().filter(|s| *s != u32::MAX);
                    one(None, sid)
                }
                ScopeKind::Extension | ScopeKind::Trunk => {
                    if let Some(m) = self.extension_states.get(&(acct, li)) {
                        let mut v: Vec<(&String, u32)> = m.iter().map(|(e, s)| (e, *s)).collect();
                        v.sort();
                        for (e, sid) in v {
                            one(Some(e), Some(sid));
                        }
                    }
                }
            }
        }
        self.scratch_limits = indices;
    }

    /// An account at a glance, for lists over many accounts (nothing formatted): `None` for an
    /// account the engine has no state for.
    pub fn account_glance(&mut self, account: &str, now: Timestamp) -> Option<AccountGlance> {
        let &acct = self.account_ids.get(account)?;
        let mut top_percent = 0;
        self.visit_limits(acct, now, |limit, _, _, used, _| {
            let percent = if limit.max > 0 { used.saturating_mul(100) / limit.max } else { 0 };
            top_percent = top_percent.max(percent);
        });
        let a = &self.accounts[acct as usize];
        Some(AccountGlance {
            running_calls: a.running.len(),
            blocked: a.blocks.iter().any(|b| b.until.is_none_or(|u| u > now)),
            top_percent,
        })
    }

    /// Usage of every limit of an account, its running calls and blocks; `None` for an account
    /// the engine has no state for.
    pub fn account_report(&mut self, account: &str, now: Timestamp) -> Option<AccountReport> {
        let &acct = self.account_ids.get(account)?;
        let mut limits = vec![];
        let (policy_limits, operator) =
            (self.policy_limits, self.accounts[acct as usize].own_limits[0].clone());
        self.visit_limits(acct, now, |limit, li, extension, used, running| {
            let set_by = if li < policy_limits {
                "policy"
            } else if operator.contains(&li) {
                "operator"
            } else {
                "customer"
            };
            limits.push(LimitUsage {
                limit: limit.name.clone(),
                extension: extension.filter(|_| limit.scope == ScopeKind::Extension).map(str::to_string),
                trunk: extension.filter(|_| limit.scope == ScopeKind::Trunk).map(str::to_string),
                metric: match limit.metric {
                    Metric::Spend => "spend",
                    Metric::Calls => "calls",
                    Metric::Concurrent => "concurrent",
                    Metric::CallDuration => "call_duration",
                },
                window: limit.window.map(|w| w.as_str()),
                used: limit.show(used),
                max: limit.show(limit.max),
                warning: limit.warning.map(|w| limit.show(w)),
                percent: if limit.max > 0 { used.saturating_mul(100) / limit.max } else { 0 },
                running_calls: running,
                set_by,
            });
        });
        let a = &self.accounts[acct as usize];
        Some(AccountReport {
            account: a.name.to_string(),
            running_calls: a.running.len(),
            limits,
            blocks: a
                .blocks
                .iter()
                .filter(|b| b.until.is_none_or(|u| u > now))
                .map(|b| BlockInfo {
                    extension: b.extension.clone(),
                    trunk: b.trunk.clone(),
                    rule: b.rule.clone(),
                    until: b.until.map(|u| u.to_string()),
                })
                .collect(),
            destinations_seen: a.memory.seen.len(),
            new_destinations: self.new_destinations(acct, now),
            allowances: a
                .memory
                .allowances
                .iter()
                .filter(|(_, u)| u.is_none_or(|u| now < u))
                .map(|(c, u)| Allowance { country: c.clone(), until: u.map(|u| u.to_string()) })
                .collect(),
        })
    }

    /// The kinds of destination an account first called in the last [`NEW_DESTINATION_AGE`].
    fn new_destinations(&self, acct: u32, now: Timestamp) -> Vec<NewDestination> {
        let m = &self.accounts[acct as usize].memory;
        let learning = self.learn_until.is_some_and(|t| now < t);
        let mut found: Vec<(i64, NewDestination)> = m
            .seen
            .iter()
            .filter(|&&(_, first)| {
                first != LEARNT && now.as_second().saturating_sub(first) < NEW_DESTINATION_AGE.as_secs()
            })
            .map(|&(kind, first)| {
                let country =
                    self.rater.numbering().region((kind >> 8) as u16).map_or("", |r| r.iso2.as_str());
                let number_type = match kind & 0xff {
                    0 => "any",
                    t => NumberType::ALL.get(t as usize - 1).map_or("unknown", |t| t.as_str()),
                };
                let status = if m.allows(country, now) {
                    "allowed"
                } else if self.is_new(acct, Some(kind), country, now, learning) {
                    "new"
                } else {
                    "account_learning"
                };
                let first_call = Timestamp::from_second(first).map(|t| t.to_string()).unwrap_or_default();
                (first, NewDestination { country: country.to_string(), number_type, first_call, status })
            })
            .collect();
        found.sort_by_key(|(first, d)| (std::cmp::Reverse(*first), d.country.clone(), d.number_type));
        found.into_iter().map(|(_, d)| d).collect()
    }

    /// Report-only learning until `t`: attempts before it update all state and may raise alerts,
    /// but every decision is allow with no cap.
    pub fn set_learn_until(&mut self, t: Option<Timestamp>) {
        self.learn_until = t;
    }

    /// Whether the engine is counting a call at `now`: running, or ended within the record grace
    /// period (so a record for it corrects its cost instead of counting it again).
    pub fn knows_call(&self, call_id: &str, now: Timestamp) -> bool {
        self.calls.contains_key(call_id)
            || self
                .recent
                .get(call_id)
                .is_some_and(|e| self.record_grace.is_some_and(|g| now.duration_since(e.at) <= g))
    }

    /// What each account's memory knew before `before` that a log starting then could not
    /// teach a rebuild again: its earliest call and the kinds of destination it first called,
    /// if before `before`, and the kinds whose first-call alert stands. Accounts with any of
    /// these only, in the order the engine first saw them. (A record that comes after `before`
    /// of a call that started before it is counted as known from `before` on.)
    pub fn memory_before(&self, before: Timestamp) -> Vec<(String, MemorySeed)> {
        // First calls are kept in whole seconds: one in the second `before` falls in counts.
        let cut = before.as_second() + i64::from(before.subsec_nanosecond() > 0);
        let text = |kind: u32| {
            let region = self.rater.numbering().region((kind >> 8) as u16)?;
            let special = match kind & 0xff {
                0 => "any",
                n => NumberType::ALL.get(n as usize - 1)?.as_str(),
            };
            Some(format!("{}+{}/{special}", region.iso2, region.calling_code))
        };
        self.accounts
            .iter()
            .filter_map(|a| {
                let m = &a.memory;
                let since = m.since.filter(|s| *s < before);
                let seen: Vec<(String, i64)> = m
                    .seen
                    .iter()
                    .filter(|(_, first)| *first < cut)
                    .filter_map(|&(k, f)| Some((text(k)?, f)))
                    .collect();
                let alerted: Vec<String> = m.alerted.iter().filter_map(|&k| text(k)).collect();
                if since.is_none() && seen.is_empty() && alerted.is_empty() {
                    return None;
                }
                Some((a.name.to_string(), MemorySeed { since, seen, alerted }))
            })
            .collect()
    }

    /// Gives an account the memory [`Engine::memory_before`] kept (what it knew already stays,
    /// the earlier first calls win). A kind of destination this build's numbering does not know
    /// is left out.
    pub fn seed_memory(&mut self, account: &str, seed: &MemorySeed) {
        let kind = |t: &str| -> Option<u32> {
            let (region, special) = t.split_once('/')?;
            let (iso2, cc) = region.split_once('+')?;
            let idx = tollguard_core::numbering::metadata::region_index(iso2, cc.parse().ok()?)?;
            let special = match special {
                "any" => 0,
                name => NumberType::parse(name)? as u32 + 1,
            };
            Some((idx as u32) << 8 | special)
        };
        let acct = self.account_id(account);
        let m = &mut self.accounts[acct as usize].memory;
        if let Some(s) = seed.since {
            if m.since.is_none_or(|x| s < x) {
                m.since = Some(s);
            }
        }
        for (t, first) in &seed.seen {
            let Some(k) = kind(t) else { continue };
            match m.seen.iter_mut().find(|(x, _)| *x == k) {
                Some((_, f)) => *f = (*f).min(*first),
                None => m.seen.push((k, *first)),
            }
        }
        for t in &seed.alerted {
            if let Some(k) = kind(t).filter(|k| !m.alerted.contains(k)) {
                m.alerted.push(k);
            }
        }
    }

    /// The block a limit set that is still in force (until released, or until a time after
    /// `now`) and was set first: (account, when). A rebuild must read the log from well before
    /// it to set it again (an operator's blocks are commands in the log, kept whatever their age).
    pub fn oldest_limit_block(&self, now: Timestamp) -> Option<(&str, Timestamp)> {
        self.accounts
            .iter()
            .flat_map(|a| {
                a.blocks
                    .iter()
                    .filter(|b| b.limit.is_some() && b.until.is_none_or(|u| u > now))
                    .map(|b| (&*a.name, b.set_at))
            })
            .min_by_key(|&(_, at)| at)
    }

    /// Calls the engine believes are running (allowed and not ended).
    pub fn running_calls(&self) -> usize {
        // Not the inbound calls from high-risk numbers followed for the wangiri rule.
        self.calls.values().filter(|&&c| !matches!(self.slots[c as usize].high_risk, Some((_, true)))).count()
    }

    /// Whether the engine follows the call of the last attempt it handled until it ends: an
    /// allowed outbound or emergency call, or an inbound one from a high-risk number. The
    /// answer and end of any other call change nothing in the engine (unless another call runs
    /// under the same id: they would end it), and a driver may leave them out (a replay does:
    /// about 3 calls in 10).
    pub fn follows_last_attempt(&self) -> bool {
        self.last_followed
    }

    /// The earliest time at which a tick has something to look at (a limit whose level the calls
    /// running could reach, a call reaching its longest duration, a block expiring); `None`
    /// when nothing changes without a new event. A tick before it does nothing.
    pub fn next_deadline(&mut self) -> Option<Timestamp> {
        // Block expiries: entries of blocks lifted since are skipped.
        let mut block = None;
        while let Some(&Reverse((t, acct))) = self.due.peek() {
            if self.accounts[acct as usize].blocks.iter().any(|b| b.until == Some(t)) {
                block = Some(t);
                break;
            }
            self.due.pop();
        }
        match (block, self.deadlines.peek().map(|(t, _)| t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accounts the engine keeps state for, and the bytes of that state (limit windows, running
    /// call lists, destinations seen, extension names; map overhead counted as one key and
    /// value per entry). Calls in progress are not included: they are per call, not per account.
    pub fn account_state_bytes(&self) -> (usize, usize) {
        use std::mem::size_of;
        let mut bytes = 0;
        for a in &self.accounts {
            // The name twice (the map's key, and shared with effects behind its two counts).
            bytes += size_of::<Account>() + size_of::<(String, u32)>() + 2 * a.name.len() + 16;
            bytes += (a.states.capacity() + a.account_states.capacity() + a.running.capacity()) * 4;
            bytes += a.baseline.as_ref().map_or(0, |_| size_of::<Baseline>());
            let m = &a.memory;
            bytes += m.seen.capacity() * size_of::<(u32, i64)>() + m.alerted.capacity() * 4;
            bytes += m
                .allowances
                .iter()
                .map(|(c, _)| size_of::<(String, Option<Timestamp>)>() + c.capacity())
                .sum::<usize>();
            bytes += m.rang_in.capacity() * size_of::<(E164, Timestamp)>()
                + m.wangiri_alerted.capacity() * size_of::<E164>()
                + m.talked.capacity() * size_of::<(E164, Timestamp)>();
            bytes += a.blocks.capacity() * size_of::<ActiveBlock>()
                + a.block_history.capacity() * size_of::<(Option<u16>, Timestamp)>();
        }
        for m in self.extension_states.values() {
            bytes += size_of::<((u32, u16), TextMap<u32>)>();
            bytes += m.keys().map(|e| size_of::<(String, u32)>() + e.capacity()).sum::<usize>();
        }
        for s in &self.states {
            bytes += size_of::<LimitState>();
            bytes += s.running.capacity() * 4;
            if let Some(Window::Rolling { ring, .. }) = &s.window {
                bytes += std::mem::size_of_val::<[window::Bucket]>(ring);
            }
        }
        (self.accounts.len(), bytes)
    }

    /// Handles one event at `now`, appending effects to `out`.
    pub fn handle(&mut self, event: Event<'_>, now: Timestamp, out: &mut Vec<Effect>) {
        match event {
            Event::Attempt(a) => {
                self.last_followed = false;
                self.attempt(a, now, out);
            }
            Event::Answer { call_id } => {
                if let Some(&slot) = self.calls.get(call_id) {
                    let c = &mut self.slots[slot as usize];
                    if c.answered.is_none() {
                        c.answered = Some(now);
                        // An unpriced call adds nothing (and is not among the account's running).
                        let c = &self.slots[slot as usize];
                        for &k in &c.states {
                            self.states[k as usize].linear.add(c);
                        }
                        self.accounts[c.account as usize].linear.add(c);
                        self.reschedule_call(slot, now, now);
                    }
                }
            }
            Event::End { call_id, billsec } => self.end(call_id, billsec, now, out),
            Event::Tick => self.tick(now, out),
            Event::Command(c) => self.command(c, now, out),
            Event::Record(c) => self.record(c, now, out),
        }
    }

    fn record(&mut self, c: &Cdr, now: Timestamp, out: &mut Vec<Effect>) {
        if let Some(&slot) = self.calls.get(c.call_id.as_str()) {
            if c.billsec == 0 && self.slots[slot as usize].answered.is_some() {
                // A leg with no talk time for a call that was answered: an earlier leg (a
                // failover's first `Dial`) while the answered one talks on; it costs nothing,
                // and the call ends with its own end or record.
                return;
            }
            self.end(&c.call_id, Some(c.billsec), now, out);
            if let Some(e) = self.recent.get_mut(c.call_id.as_str()) {
                e.legs = vec![(leg_key(&c.dst_channel), e.units)];
            }
            return;
        }
        if let Some(e) = self.recent.get_mut(c.call_id.as_str()) {
            // The record says what the call was (a ring or a conversation) when its end did not.
            if let Some((number, inbound)) = e.high_risk {
                let (acct, at) = (e.account, e.at);
                self.accounts[acct as usize].memory.heard(number, inbound, c.billsec, at);
            }
            let Some(e) = self.recent.get_mut(c.call_id.as_str()) else { return };
            // The first record replaces what the end event counted; a record of another leg
            // (an earlier leg failed, or the call went on to another) adds to it, where that
            // leg ended. A leg read again replaces itself.
            let leg = (leg_key(&c.dst_channel), e.rate.as_ref().map_or(0, |r| r.units(c.billsec)));
            let new_leg = !e.legs.is_empty() && e.legs.iter().all(|(k, _)| *k != leg.0);
            match e.legs.iter_mut().find(|(k, _)| *k == leg.0) {
                Some(had) => *had = leg,
                None => e.legs.push(leg),
            }
            let units = e.legs.iter().map(|(_, u)| u).sum::<i64>();
            let delta = units - e.units;
            if delta == 0 {
                return;
            }
            e.units = units;
            let at = if new_leg { c.end.unwrap_or(now).min(now) } else { e.at };
            let (acct, states) = (e.account, e.states.clone());
            out.push(Effect::Charged {
                account: Arc::clone(&self.accounts[acct as usize].name),
                units: delta,
            });
            let local = self.accounts[acct as usize].local(at);
            if new_leg {
                if let Some(b) = self.accounts[acct as usize].baseline.as_mut() {
                    b.add(local, delta);
                }
            }
            for &k in &states {
                if let Some(w) = self.states[k as usize].window.as_mut() {
                    w.add(at, local, delta, 0);
                }
                self.reschedule(k, now, now);
            }
            // More than was counted (with no call running, no tick comes for its limits).
            if delta > 0 {
                self.check_recorded(acct, states, c, now, out);
            }
            return;
        }
        // A call the engine never saw: count it where it ended.
        let a = Attempt {
            call_id: &c.call_id,
            account: &c.account,
            extension: &c.source,
            dialled: &c.dialled,
            channel: &c.channel,
            dst_channel: &c.dst_channel,
            context: &c.context,
            rated: None,
        };
        let (dialled, direction, dest) = self.destination(&a, c.start);
        let at = c.end.unwrap_or(now).min(now);
        if self.policy.new_destination_rules {
            // What the call says about a high-risk number at the other end (the wangiri rule).
            let other = match (direction, dialled) {
                (Direction::Outbound, Dialled::E164(to)) if dest.risk >= Some(RiskTier::High) => {
                    Some((to, false))
                }
                (Direction::Inbound, _) => match self.rater.account(&c.account).plan.normalise(&c.source) {
                    Dialled::E164(from) if self.rater.numbering().classify(&from).risk >= RiskTier::High => {
                        Some((from, true))
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some((number, inbound)) = other {
                let acct = self.account_id(&c.account);
                self.accounts[acct as usize].memory.heard(number, inbound, c.billsec, at);
            }
        }
        if dialled == Dialled::Emergency
            || direction != Direction::Outbound
            || !matches!(dialled, Dialled::E164(_))
        {
            return;
        }
        let units = dest.rate.as_ref().map_or(0, |r| r.units(c.billsec));
        let acct = self.account_id(&c.account);
        let local = self.accounts[acct as usize].local(at);
        let learning = self.learn_until.is_some_and(|t| now < t);
        let kind = dest.region.map(|region| destination_kind(region, dest.number_type));
        // Where it went is known from when it started (its cost from when it ended).
        let started = c.start.min(now);
        let new = self.is_new(acct, kind, dest.country, started, learning);
        // `when` looks at the call's start.
        let started_local = self.accounts[acct as usize].local(started);
        if let Some(kind) = kind {
            self.accounts[acct as usize].memory.mark(kind, started, learning);
        }
        if dest.rate.is_some() {
            let b = self.accounts[acct as usize].baseline.get_or_insert_with(Box::default);
            b.add(local, units);
        }
        let mut states = vec![];
        let limits = self.limits_of(acct);
        for &i in &limits {
            let i = i as usize;
            let limit = &self.policy.limits[i];
            if !limit.applies_to(&c.account)
                || !limit.filter.matches(dest.country, dest.number_type, dest.risk, new)
                || !self.in_time(limit.when, &c.account, started_local)
            {
                continue;
            }
            let Some(scope_ext) = limit.scope.key(&c.source, trunk_of(&c.dst_channel)) else { continue };
            let sid = self.state_id(acct, scope_ext, i as u16);
            if let Some(w) = self.states[sid as usize].window.as_mut() {
                w.add(at, local, units, 1);
            }
            states.push(sid);
        }
        self.scratch_limits = limits;
        let legs = vec![(leg_key(&c.dst_channel), units)];
        self.remember_ended(&c.call_id, acct, dest.rate, None, &states, units, at, legs);
        if units != 0 {
            out.push(Effect::Charged { account: Arc::clone(&self.accounts[acct as usize].name), units });
        }
        self.check_recorded(acct, states, c, now, out);
    }

    /// After record `c` added cost: the limit states it counts in (`states`), checked now as a
    /// tick would, and the account's usual spend for the hour.
    fn check_recorded(
        &mut self,
        acct: u32,
        states: Vec<u32>,
        c: &Cdr,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let learning = self.learn_until.is_some_and(|t| now < t);
        for sid in states {
            self.check_ended(sid, &c.source, &c.call_id, now, learning, out);
        }
        if let Some((Some(alert), _)) = self.unusual_hour(acct, &c.source, &c.call_id, now) {
            out.push(Effect::Alert(alert));
        }
    }

    /// A spend limit over a day or more whose budget a call used up (it talked until the cap the
    /// budget gave): the limit is reached as when no budget is left for a new call — its
    /// critical alert and its block. Caps keep spend just under the limit: without this, a drip
    /// of capped calls, one that stops for the day each time, would never reach it.
    #[allow(clippy::too_many_arguments)]
    fn budget_used_up(
        &mut self,
        sid: u32,
        ext: &str,
        rate: &CallRate,
        call_id: &str,
        now: Timestamp,
        learning: bool,
        out: &mut Vec<Effect>,
    ) {
        let s = &self.states[sid as usize];
        let (li, acct) = (s.limit, s.account);
        let limit = &self.policy.limits[li as usize];
        // Budgets of a day or more: a drip's. An hour's budget that one long call uses up is not
        // a pattern (the next call, or a tick, finds it reached if it goes on).
        let long = matches!(
            limit.window,
            Some(
                WindowKind::Day
                    | WindowKind::Week
                    | WindowKind::Month
                    | WindowKind::Rolling24h
                    | WindowKind::Rolling72h
                    | WindowKind::Rolling7d
            )
        );
        if limit.retired || limit.metric != Metric::Spend || !long {
            return;
        }
        let held = self.scope_blocked(acct, li, sid, ext);
        let local = self.accounts[acct as usize].local(now);
        let state = &mut self.states[sid as usize];
        let (used, _) = usage(limit, state, &self.slots, now, local, 0);
        // Used up only if what is left cannot pay another increment at this call's rate: the
        // cap was shared with calls that may have hung up early, and a calendar window may have
        // started afresh while the call ran.
        let increment = rate.increment_s as i64;
        if limit.max - used >= rate.fee_u + rate.rate_u.saturating_mul(increment) / 60 {
            return;
        }
        let enforce = !limit.report_only && !learning;
        let block = limit.on_critical.has(Action::Block) && enforce && !held;
        if limit.on_critical.has(Action::Alert) && state.alerted < 2 {
            state.alerted = 2;
            let msg = format!(
                "{}{} at {} of {}: a call talked until the cap its budget gave, the budget is used up",
                describe(limit),
                window_text(limit),
                limit.show(used),
                limit.show(limit.max)
            );
            let mut al = self.alert(acct, ext, now, call_id, Severity::Critical, &limit.name);
            al.action = if block { AlertAction::Block } else { AlertAction::Alert };
            al.message = msg;
            out.push(Effect::Alert(al));
        }
        if block {
            let b = ActiveBlock::by_limit(limit, li, ext, self.trunk_key(sid), now);
            self.set_block(acct, b, now, out);
        }
    }

    /// A limit after a record counted in it: alerts and blocks as at a tick (nothing runs to cut).
    fn check_ended(
        &mut self,
        sid: u32,
        ext: &str,
        call_id: &str,
        now: Timestamp,
        learning: bool,
        out: &mut Vec<Effect>,
    ) {
        let s = &self.states[sid as usize];
        let (li, acct) = (s.limit, s.account);
        let limit = &self.policy.limits[li as usize];
        if limit.retired || !matches!(limit.metric, Metric::Spend | Metric::Calls) {
            return;
        }
        let held = self.scope_blocked(acct, li, sid, ext);
        let local = self.accounts[acct as usize].local(now);
        let state = &mut self.states[sid as usize];
        let (used, _) = usage(limit, state, &self.slots, now, local, 0);
        state.new_period();
        let enforce = !limit.report_only && !learning;
        let level = limit.warning.unwrap_or(limit.max);
        if state.alerted > 0 && used < level {
            state.alerted = 0;
        }
        let critical = used > limit.max || (limit.metric == Metric::Spend && used >= limit.max);
        if critical {
            let block = limit.on_critical.has(Action::Block) && enforce && !held;
            if limit.on_critical.has(Action::Alert) && state.alerted < 2 {
                state.alerted = 2;
                let msg = format!(
                    "{}{} reached {} (limit {}) with a call record",
                    describe(limit),
                    window_text(limit),
                    limit.show(used),
                    limit.show(limit.max)
                );
                let mut al = self.alert(acct, ext, now, call_id, Severity::Critical, &limit.name);
                al.action = if block { AlertAction::Block } else { AlertAction::Alert };
                al.message = msg;
                out.push(Effect::Alert(al));
            }
            if block {
                let b = ActiveBlock::by_limit(limit, li, ext, self.trunk_key(sid), now);
                self.set_block(acct, b, now, out);
            }
        } else if limit.warning.is_some_and(|w| used >= w)
            && state.alerted < 1
            && limit.on_warning.has(Action::Alert)
        {
            state.alerted = 1;
            let msg = warning_text(limit, used, "");
            let mut al = self.alert(acct, ext, now, call_id, Severity::Warning, &limit.name);
            al.message = msg;
            out.push(Effect::Alert(al));
        }
    }

    /// Keeps an ended call for [`Engine::set_record_grace`], forgetting those past it.
    #[allow(clippy::too_many_arguments)]
    fn remember_ended(
        &mut self,
        call_id: &str,
        account: u32,
        rate: Option<Arc<CallRate>>,
        high_risk: Option<(E164, bool)>,
        states: &[u32],
        units: i64,
        at: Timestamp,
        legs: Vec<(u64, i64)>,
    ) {
        let Some(grace) = self.record_grace else { return };
        while let Some((t, _)) = self.recent_order.front() {
            if at.duration_since(*t) <= grace {
                break;
            }
            if let Some((_, id)) = self.recent_order.pop_front() {
                self.recent.remove(&id);
            }
        }
        self.recent.insert(
            call_id.to_string(),
            Ended { account, rate, high_risk, states: states.to_vec(), units, at, legs },
        );
        self.recent_order.push_back((at, call_id.to_string()));
    }

    fn account_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.account_ids.get(name) {
            return id;
        }
        let id = self.accounts.len() as u32;
        self.accounts.push(Account {
            name: name.into(),
            tz: self.rater.account(name).tz.clone(),
            states: vec![],
            account_states: vec![u32::MAX; self.policy.limits.len()],
            own_limits: [vec![], vec![]],
            memory: AccountMemory::default(),
            blocks: vec![],
            block_history: vec![],
            offset: no_offset(),
            running: vec![],
            linear: Linear::default(),
            baseline: None,
        });
        self.account_ids.insert(name.to_string(), id);
        id
    }

    /// Whether a call to `kind` (in `country`) at `now` goes to a destination the account first
    /// called lately: the first call is this one, or less than [`NEW_DESTINATION_AGE`] ago, and
    /// not while it was being learned (replay's learning, or the account's own first
    /// [`ACCOUNT_LEARNING`]); and the operator does not allow the country. A destination that was
    /// new when a `new_destinations` limit blocked it stays new while that block is in force.
    fn is_new(&self, acct: u32, kind: Option<u32>, country: &str, now: Timestamp, learning: bool) -> bool {
        let Some(kind) = kind else { return false };
        let a = &self.accounts[acct as usize];
        let m = &a.memory;
        if learning || m.allows(country, now) {
            return false;
        }
        let first = m.first_call(kind).unwrap_or(now.as_second());
        if first == LEARNT
            || m.since.is_none_or(|s| first.saturating_sub(s.as_second()) < ACCOUNT_LEARNING.as_secs())
        {
            return false;
        }
        let age = NEW_DESTINATION_AGE.as_secs();
        now.as_second().saturating_sub(first) < age
            || a.blocks.iter().any(|b| {
                b.limit.is_some_and(|i| self.policy.limits[i as usize].filter.new_only)
                    && b.until.is_none_or(|u| now < u)
                    && b.set_at.as_second().saturating_sub(first) < age
            })
    }

    fn is_night(&self, local: Local) -> bool {
        let (from, to) = self.policy.night_hours;
        let h = local.hour() as u8;
        let weekend = local.weekday() >= 5;
        weekend || if from > to { h >= from || h < to } else { h >= from && h < to }
    }

    /// Whether a rule with `when` applies to an account's call at a local time: its business
    /// hours say so (an account with none has no business hours: it is always outside them).
    fn in_time(&self, when: When, account: &str, local: Local) -> bool {
        when == When::Always
            || (when == When::BusinessHours)
                == self.policy.calendars.of(account).is_some_and(|b| b.is_open(local))
    }

    fn destination(&mut self, a: &Attempt, now: Timestamp) -> (Dialled, Direction, Dest) {
        let own;
        let r = match a.rated {
            Some(r) => r,
            None => {
                own = self.rater.rate_parts(&CallParts {
                    account: a.account,
                    source: a.extension,
                    dialled: a.dialled,
                    context: a.context,
                    channel: a.channel,
                    dst_channel: a.dst_channel,
                    start: now,
                    billsec: 0,
                    direction: Direction::Unknown,
                });
                &own
            }
        };
        let dest = Dest {
            country: r.country,
            region: r.class.map(|c| c.region),
            number_type: r.class.map(|c| c.number_type),
            risk: r.class.map(|c| c.risk),
            rate: match (r.rows[0], r.tariff, self.rater.cgrates()) {
                (Some(row), _, _) => Some(deck_rate(&mut self.deck_rates, row)),
                (None, Some(t), Some(c)) => Some(Arc::new(CallRate::plan(&c.plan, t, now))),
                _ if matches!(r.dialled, Dialled::E164(_))
                    && r.class.is_some_and(|c| c.risk >= RiskTier::High) =>
                {
                    self.unpriced.clone()
                }
                _ => None,
            },
        };
        (r.dialled, r.direction, dest)
    }

    fn alert(&self, acct: u32, ext: &str, now: Timestamp, call_id: &str, sev: Severity, rule: &str) -> Alert {
        let a = &self.accounts[acct as usize];
        Alert {
            time: alert_time(now, a.tz.clone()),
            account: a.name.to_string(),
            extension: ext.to_string(),
            severity: sev,
            rule: rule.to_string(),
            action: AlertAction::Alert,
            call_id: call_id.to_string(),
            message: String::new(),
        }
    }

    fn attempt(&mut self, a: Attempt, now: Timestamp, out: &mut Vec<Effect>) {
        let (dialled, direction, mut dest) = self.destination(&a, now);
        let learning = self.learn_until.is_some_and(|t| now < t);
        let mut d = Decision {
            allowed: true,
            max_duration_s: None,
            rules: vec![],
            explanation: vec![],
            rate_per_minute_units: dest.rate.as_ref().map(|r| r.rate_u),
        };
        // Safety rule no policy overrides.
        if dialled == Dialled::Emergency {
            d.rules.push("emergency".into());
            d.explanation.push(format!("{} is an emergency number: always allowed", a.dialled));
            let acct = self.account_id(a.account);
            self.track(a.call_id, acct, (a.extension, ""), None, None, &[]);
            out.push(Effect::Decision(d));
            return;
        }
        let outbound = direction == Direction::Outbound && matches!(dialled, Dialled::E164(_));
        // A service code or a string that is not a number, going out (`*67` and a number): no
        // limit can count it (it has no destination, no price), but a block of everything the
        // account, its extension or its trunk calls stops it too.
        let unreadable = !outbound
            && !matches!(direction, Direction::Inbound | Direction::Internal)
            && !matches!(dialled, Dialled::Internal);
        if unreadable {
            let blocks = self.blocks_of_everything(a.account, a.extension, trunk_of(a.dst_channel), now);
            if !blocks.is_empty() {
                for (rule, until) in blocks {
                    let until = until.map_or_else(|| "released".to_string(), |u| u.to_string());
                    d.explanation.push(format!(
                        "blocked by {rule} until {until}: {:?} is not a number, and every call of the account stops",
                        a.dialled
                    ));
                    if !d.rules.contains(&rule) {
                        d.rules.push(rule);
                    }
                }
                if learning {
                    // Report only, as for numbers.
                    d.rules = d.rules.iter().map(|r| format!("{r} (learning)")).collect();
                } else {
                    d.allowed = false;
                }
                out.push(Effect::Decision(d));
                return;
            }
        }
        if !outbound {
            // Inbound and internal calls cost nothing: allowed, kept as evidence by the caller.
            // An inbound call from a high-risk foreign number that ends with no conversation is
            // remembered: calling it back is the wangiri pattern.
            if direction == Direction::Inbound && self.policy.new_destination_rules {
                let setup = self.rater.account(a.account);
                if let Dialled::E164(from) = setup.plan.normalise(a.extension) {
                    let class = self.rater.numbering().classify(&from);
                    if class.risk >= RiskTier::High {
                        // Followed to its end: a ring with no conversation is remembered then.
                        let acct = self.account_id(a.account);
                        let slot = self.track(a.call_id, acct, (a.extension, ""), None, None, &[]);
                        self.slots[slot as usize].high_risk = Some((from, true));
                    }
                }
            }
            out.push(Effect::Decision(d));
            return;
        }
        let acct = self.account_id(a.account);
        let ext = a.extension;
        let trunk = trunk_of(a.dst_channel);
        let local = self.accounts[acct as usize].local(now);
        let kind = dest.region.map(|region| destination_kind(region, dest.number_type));
        let new = self.is_new(acct, kind, dest.country, now, learning);
        let mut deny = false;
        // Rules that denied the call; the others (caps, alerts) go to `d.rules`.
        let mut deny_rules: Vec<String> = vec![];
        let mut cap: Option<u32> = None;
        // The spend limit state whose budget gave the cap, if that is where it came from.
        let mut cap_state: Option<u32> = None;
        let mut alerts: Vec<Alert> = vec![];
        let mut cuts: Vec<(u32, u16)> = vec![];
        let mut new_blocks: Vec<ActiveBlock> = vec![];

        // Blocks in force (expired ones are removed by the next tick, which reports the Unblock).
        for b in &self.accounts[acct as usize].blocks {
            if !b.holds_for(ext, trunk, now) {
                continue;
            }
            let number = match &dialled {
                Dialled::E164(n) => Some(n),
                _ => None,
            };
            let covered = match (b.limit, &b.destinations) {
                (Some(i), _) => {
                    let limit = &self.policy.limits[i as usize];
                    limit.filter.matches(dest.country, dest.number_type, dest.risk, new)
                        && self.in_time(limit.when, a.account, local)
                }
                (None, Some(d)) => d.covers(dest.country, dest.risk, number),
                (None, None) => true,
            };
            if covered {
                deny = true;
                deny_rules.push(b.rule.clone());
                d.explanation.push(match b.until {
                    Some(u) => format!("blocked by {} until {u}", b.rule),
                    None => format!("blocked by {} until released", b.rule),
                });
            }
        }

        // Allowed and denied destinations ([[policy.destinations]]).
        if !self.policy.destinations.is_empty() {
            let number = match &dialled {
                Dialled::E164(n) => Some(n),
                _ => None,
            };
            for (ri, rule) in self.policy.destinations.iter().enumerate() {
                if !rule.applies_to(a.account, ext) || !self.in_time(rule.when, a.account, local) {
                    continue;
                }
                let Some(why) = rule.denies(dest.country, dest.risk, number) else { continue };
                deny = true;
                deny_rules.push(rule.name.clone());
                let what = format!(
                    "{}: {} ({}, {} risk) is {why}{}: denied",
                    rule.name,
                    number.map_or_else(|| a.dialled.to_string(), |n| n.to_string()),
                    if dest.country.is_empty() { "unknown country" } else { dest.country },
                    dest.risk.unwrap_or_default(),
                    rule.when.text()
                );
                // One alert per account and rule in a quiet period, not one per call.
                let key = (acct, ri as u16);
                if self
                    .destination_alerts
                    .get(&key)
                    .is_none_or(|t| now.duration_since(*t) >= DESTINATION_ALERT_QUIET)
                {
                    self.destination_alerts.insert(key, now);
                    let mut al = self.alert(acct, ext, now, a.call_id, Severity::Warning, &rule.name);
                    al.action = if learning { AlertAction::Alert } else { AlertAction::Deny };
                    al.message = what.clone();
                    alerts.push(al);
                }
                d.explanation.push(what);
            }
        }

        // A first call to a high-risk kind of destination the account never called: a country
        // (East Timor), or a kind of range in a country it does call (its own premium numbers).
        if self.policy.new_destination_rules {
            if let (Some(region), Some(risk)) = (dest.region, dest.risk) {
                let kind = destination_kind(region, dest.number_type);
                let seen = self.accounts[acct as usize].memory.has_seen(kind);
                let allowed = self.accounts[acct as usize].memory.allows(dest.country, now);
                if !seen && !allowed && risk >= RiskTier::High {
                    let night = self.is_night(local);
                    let revenue_share = matches!(
                        dest.number_type,
                        Some(
                            NumberType::Premium
                                | NumberType::Personal
                                | NumberType::Pager
                                | NumberType::Satellite
                                | NumberType::InternationalNetwork
                        )
                    );
                    // A number in a high-risk range that the country's plan does not know as any
                    // ordinary type is the mark of international revenue share fraud: the
                    // ranges resold to fraudsters are often not assigned at all.
                    let unassigned = matches!(dest.number_type, None | Some(NumberType::Unknown));
                    let grave = risk == RiskTier::Critical || revenue_share || unassigned;
                    let denied_here = grave && night;
                    let (rule, sev) = if denied_here {
                        deny = true;
                        deny_rules.push("default.new_critical_destination_night".into());
                        ("default.new_critical_destination_night", Severity::Critical)
                    } else {
                        if cap.is_none_or(|c| NEW_DESTINATION_CAP_S < c) {
                            cap = Some(NEW_DESTINATION_CAP_S);
                            cap_state = None;
                        }
                        let sev = if grave { Severity::Critical } else { Severity::Warning };
                        ("default.new_high_risk_destination", sev)
                    };
                    let what = format!(
                        "first call of account {} to {} {} numbers ({} risk){}",
                        a.account,
                        if dest.country.is_empty() { "unknown-country" } else { dest.country },
                        dest.number_type.map_or("unknown", |t| t.as_str()),
                        risk,
                        if night { " at night or at the weekend" } else { "" }
                    );
                    let done = if denied_here {
                        "denied".to_string()
                    } else {
                        format!("allowed for at most {NEW_DESTINATION_CAP_S} s")
                    };
                    if !denied_here {
                        d.rules.push(rule.into());
                    }
                    d.explanation.push(format!("{what}: {done}"));
                    // One alert per account and kind until it is called (not one per attempt). Not
                    // while learning: learning is how the account's destinations become known,
                    // so a first call then says nothing (the decision still names the rule).
                    let memory = &mut self.accounts[acct as usize].memory;
                    if !learning && !memory.alerted.contains(&kind) {
                        memory.alerted.push(kind);
                        let mut al = self.alert(acct, ext, now, a.call_id, sev, rule);
                        al.action = if denied_here { AlertAction::Deny } else { AlertAction::Alert };
                        al.message = format!("{what}: {done}");
                        alerts.push(al);
                    }
                }
            }
        }

        // Calling back a high-risk number that rang in: wangiri.
        if self.policy.new_destination_rules {
            if let Dialled::E164(to) = dialled {
                let m = &mut self.accounts[acct as usize].memory;
                if let Some(&(_, rang)) = m
                    .rang_in
                    .iter()
                    .find(|(n, at)| *n == to && now.duration_since(*at) < WANGIRI_MEMORY)
                    .filter(|_| !m.talked_with(to, now))
                {
                    let first_alert = !m.wangiri_alerted.contains(&to);
                    if first_alert {
                        let rang_in = &m.rang_in;
                        m.wangiri_alerted.retain(|n| rang_in.iter().any(|(r, _)| r == n));
                        m.wangiri_alerted.push(to);
                    }
                    // One denied callback is a warning (a missed call from abroad called back,
                    // now and then, is what two-way traffic looks like, and the caller may redial
                    // it); a second within WANGIRI_BURST by another extension or to another
                    // number is the pattern: staff are calling back one-ring numbers.
                    let caller = fnv1a(ext);
                    let previous = m
                        .wangiri_denied
                        .replace((now, to, caller))
                        .map(|(t, n, c)| (t, n != to || c != caller));
                    let escalate = previous
                        .is_some_and(|(t, other)| other && now.duration_since(t) < WANGIRI_BURST)
                        && m.wangiri_critical.is_none_or(|t| now.duration_since(t) >= WANGIRI_BURST);
                    if escalate {
                        m.wangiri_critical = Some(now);
                    }
                    deny = true;
                    deny_rules.push("default.wangiri_callback".into());
                    let mut msg = format!(
                        "call back to {to} ({}, {} risk), which rang in at {rang}: a wangiri callback, denied",
                        if dest.country.is_empty() { "unknown country" } else { dest.country },
                        dest.risk.unwrap_or_default()
                    );
                    if let (true, Some((p, _))) = (escalate, previous) {
                        msg.push_str(&format!(
                            "; another was denied at {p}: staff are calling back one-ring numbers"
                        ));
                    }
                    d.explanation.push(msg.clone());
                    if first_alert || escalate {
                        let sev = if escalate { Severity::Critical } else { Severity::Warning };
                        let mut al = self.alert(acct, ext, now, a.call_id, sev, "default.wangiri_callback");
                        al.action = AlertAction::Deny;
                        al.message = msg;
                        alerts.push(al);
                    }
                }
            }
        }

        // Limits: the policy's, then those set for this account. A call a block or a rule above
        // denies spends nothing: no budget is used up by it.
        let denied_already = deny;
        let mut keys = std::mem::take(&mut self.scratch_keys);
        keys.clear();
        let limits = self.limits_of(acct);
        for &i in &limits {
            let i = i as usize;
            let limit = &self.policy.limits[i];
            if !limit.applies_to(a.account)
                || !limit.filter.matches(dest.country, dest.number_type, dest.risk, new)
                || !self.in_time(limit.when, a.account, local)
            {
                continue;
            }
            let Some(scope_ext) = limit.scope.key(ext, trunk) else { continue };
            let sid = self.state_id(acct, scope_ext, i as u16);
            let limit = &self.policy.limits[i];
            let state = &mut self.states[sid as usize];
            let enforce = !limit.report_only;
            let (used, budget_rates) = if limit.metric == Metric::Spend {
                let ended = state.window.as_mut().map_or(0, |w| w.totals(now, local).0);
                // Far below its levels, with no cap to size, the spend need not be exact: the
                // ended calls' share compares with every level below as the whole does.
                let level = limit.warning.unwrap_or(limit.max).min(limit.max);
                debug_assert_eq!(state.linear, linear_of(&state.running, &self.slots));
                if !(enforce && limit.on_critical.has(Action::Cap))
                    && state.linear.surely_below(ended, level, now)
                {
                    debug_assert!(ended + running_spend(&state.running, &self.slots, now).0 < level);
                    (ended, 0)
                } else {
                    let (live, rates) = running_spend(&state.running, &self.slots, now);
                    (ended + live, rates)
                }
            } else {
                usage(limit, state, &self.slots, now, local, 1)
            };
            let over = used > limit.max || (limit.metric == Metric::Spend && used >= limit.max);
            let warning = limit.warning.is_some_and(|w| used >= w);
            // The cap: what the budget left allows, shared by the calls already running.
            let mut capped: Option<u32> = None;
            // A spend limit whose budget cannot pay this call's first increment is reached: the
            // caps keep spend just under the limit, and an attack that redials after each capped
            // call would otherwise be throttled for ever, never stopped. Only once the budget is
            // mostly spent (its warning level, or half): one dear call alone is just denied.
            let mut exhausted = false;
            if !over && enforce && limit.on_critical.has(Action::Cap) {
                let c = match limit.metric {
                    Metric::Spend => dest.rate.as_ref().map(|r| {
                        let left = limit.max - used - r.fee_u;
                        let per_minute = budget_rates + r.rate_u;
                        if left <= 0 {
                            0
                        } else if per_minute <= 0 {
                            u32::MAX
                        } else {
                            let seconds =
                                (left.saturating_mul(60) / per_minute).clamp(0, u32::MAX as i64) as u32;
                            r.whole_increments(seconds)
                        }
                    }),
                    Metric::CallDuration => Some(limit.max.clamp(0, u32::MAX as i64) as u32),
                    _ => None,
                };
                match c {
                    Some(0)
                        if limit.metric == Metric::Spend
                            && !denied_already
                            && used >= limit.warning.unwrap_or(limit.max / 2) =>
                    {
                        exhausted = true;
                    }
                    Some(0) => {
                        deny = true;
                        deny_rules.push(limit.name.clone());
                        d.explanation.push(format!("{}: no budget left for this call", describe(limit)));
                    }
                    other => capped = other,
                }
            }
            // An episode that fell back below its first level is over: alert again next time (an
            // exhausted budget is still the same episode, whatever its level).
            let level = limit.warning.unwrap_or(limit.max);
            let before = if limit.metric == Metric::Calls { used - 1 } else { used };
            state.new_period();
            if state.alerted > 0
                && before < level
                && !exhausted
                && matches!(limit.metric, Metric::Spend | Metric::Calls)
            {
                state.alerted = 0;
            }
            let critical = over || exhausted;
            // Blocks and cuts are enforcement: not while learning (alerts are raised then).
            let act = enforce && !learning;
            let blocked_already = self.scope_blocked(acct, i as u16, sid, ext);
            let state = &mut self.states[sid as usize];
            let mut alert: Option<(Severity, AlertAction, String)> = None;
            if critical {
                let acts = limit.on_critical;
                let msg = if exhausted {
                    format!(
                        "{}{} at {} of {}: no budget left for this call",
                        describe(limit),
                        window_text(limit),
                        limit.show(used),
                        limit.show(limit.max)
                    )
                } else {
                    format!(
                        "{}{} reached {} (limit {})",
                        describe(limit),
                        window_text(limit),
                        limit.show(used),
                        limit.show(limit.max)
                    )
                };
                if exhausted || acts.has(Action::Deny) && enforce {
                    deny = true;
                    deny_rules.push(limit.name.clone());
                } else if acts.has(Action::Deny) || acts.has(Action::Alert) {
                    d.rules.push(limit.name.clone());
                }
                d.explanation.push(msg.clone());
                // Running calls of an exhausted budget were given caps inside it: they end then.
                if acts.has(Action::Cut) && act && !exhausted {
                    for &slot in &state.running {
                        cuts.push((slot, i as u16));
                    }
                }
                if acts.has(Action::Block) && act && state.alerted < 2 && !blocked_already {
                    let trunk = Some(trunk.to_string());
                    new_blocks.push(ActiveBlock::by_limit(limit, i as u16, ext, trunk, now));
                }
                if acts.has(Action::Alert) && state.alerted < 2 {
                    state.alerted = 2;
                    let action = if acts.has(Action::Block) && act && !blocked_already {
                        AlertAction::Block
                    } else if (acts.has(Action::Deny) || exhausted) && enforce {
                        AlertAction::Deny
                    } else {
                        AlertAction::Alert
                    };
                    alert = Some((Severity::Critical, action, msg));
                }
            } else if warning && state.alerted < 1 && limit.on_warning.has(Action::Alert) {
                state.alerted = 1;
                alert = Some((Severity::Warning, AlertAction::Alert, warning_text(limit, used, "")));
            }
            if let Some(c) = capped {
                if c <= CAP_HORIZON_S && cap.is_none_or(|old| c < old) {
                    cap = Some(c);
                    cap_state = (limit.metric == Metric::Spend).then_some(sid);
                    if !d.rules.contains(&limit.name) {
                        d.rules.push(limit.name.clone());
                    }
                    d.explanation.push(format!(
                        "{}: {} left of {} allows {} s at the rates running",
                        describe(limit),
                        limit.show(limit.max - used),
                        limit.show(limit.max),
                        c
                    ));
                }
            }
            if let Some((sev, action, msg)) = alert {
                let mut al = self.alert(acct, ext, now, a.call_id, sev, &self.policy.limits[i].name);
                al.action = action;
                al.message = msg;
                alerts.push(al);
            }
            keys.push(sid);
        }
        self.scratch_limits = limits;

        // The account's own history: spend this hour against what it usually spends.
        if dest.rate.is_some() {
            let account = &mut self.accounts[acct as usize];
            if account.baseline.is_none() {
                account.baseline = Some(Box::default());
            }
            if let Some((alert, what)) = self.unusual_hour(acct, ext, a.call_id, now) {
                d.rules.push("default.unusual_hourly_spend".into());
                d.explanation.push(what);
                alerts.extend(alert);
            }
        }

        // A CGRateS destination rate with MaxCost *disconnect: the call may last until it is reached.
        if let Some(c) = dest.rate.as_deref().and_then(CallRate::max_cost_cap) {
            if !deny && cap.is_none_or(|old| c < old) {
                if c == 0 {
                    deny = true;
                    deny_rules.push("tariff.max_cost".into());
                } else {
                    cap = Some(c);
                    cap_state = None;
                    d.rules.push("tariff.max_cost".into());
                }
                d.explanation.push(format!("the tariff's MaxCost (*disconnect) is reached after {c} s"));
            }
        }

        for b in new_blocks {
            self.set_block(acct, b, now, out);
        }
        for (slot, limit) in cuts {
            self.cut(slot, limit, out);
        }
        // Each rule once (a limit's block and the limit itself name the same rule).
        let mut i = 0;
        while i < deny_rules.len() {
            if deny_rules[..i].contains(&deny_rules[i]) {
                deny_rules.remove(i);
            } else {
                i += 1;
            }
        }
        if learning {
            // Report only: what would have denied the call is named, nothing is enforced.
            d.rules = std::mem::take(&mut deny_rules);
            deny = false;
            cap = None;
        }
        d.allowed = !deny;
        d.max_duration_s = if deny { None } else { cap };
        if deny {
            // The rules that denied it; in learning mode they are reported on an allowed call.
            d.rules = deny_rules;
        }
        if learning && !d.rules.is_empty() {
            d.rules = d.rules.iter().map(|r| format!("{r} (learning)")).collect();
        }
        // The account's typical concurrency: a call that takes it above its learned level
        // (learned in learning mode too, said only after it).
        if d.allowed && dest.rate.is_some() && self.policy.new_destination_rules {
            let running = self.accounts[acct as usize].running.len() + 1;
            let peaks = self.accounts[acct as usize].baseline.as_mut().map(|b| b.peaks.start(local, running));
            if let (Some(Some((usual, news))), false) = (peaks, learning) {
                let part = if Peaks::part(local) == 0 { "in office hours" } else { "outside office hours" };
                let what = format!(
                    "{running} calls at once {part}: usual peak {} ({} in office hours; the second highest of {} days with calls), learned level {}",
                    usual.peak, usual.office_peak, usual.days, usual.level
                );
                d.rules.push("default.unusual_concurrency".into());
                if news {
                    let mut al = self.alert(
                        acct,
                        ext,
                        now,
                        a.call_id,
                        Severity::Warning,
                        "default.unusual_concurrency",
                    );
                    al.message = what.clone();
                    alerts.push(al);
                }
                d.explanation.push(what);
            }
        }
        for alert in alerts {
            out.push(Effect::Alert(alert));
        }
        if d.allowed {
            if let Some(kind) = kind {
                self.accounts[acct as usize].memory.mark(kind, now, learning);
            }
            let priced = dest.rate.is_some();
            let class =
                DestClass { country: dest.country, number_type: dest.number_type, risk: dest.risk, new };
            let slot = self.track(a.call_id, acct, (ext, trunk), dest.rate.take(), Some(class), &keys);
            if let (Dialled::E164(to), Some(RiskTier::High | RiskTier::Critical)) = (dialled, dest.risk) {
                self.slots[slot as usize].high_risk = Some((to, false));
            }
            self.slots[slot as usize].capped_by = cap_state.zip(d.max_duration_s);
            if priced {
                self.accounts[acct as usize].running.push(slot);
            }
            let keys = std::mem::take(&mut self.slots[slot as usize].states);
            for &k in &keys {
                let s = &mut self.states[k as usize];
                if let Some(w) = s.window.as_mut() {
                    w.add(now, local, 0, 1);
                }
                s.running.push(slot);
            }
            self.slots[slot as usize].states = keys;
            self.reschedule_call(slot, now, now);
        } else {
            // Denied: the limits it looked at may have alerted; their deadlines stand.
            for &k in &keys {
                self.reschedule(k, now, now);
            }
        }
        self.scratch_keys = keys;
        out.push(Effect::Decision(d));
    }

    /// The blocks in force at `now` that stop every call of `account` from `ext` on `trunk`,
    /// whatever it dials: (rule, until). An operator's block without destinations, and a limit's
    /// block whose limit looks at every destination at every hour. (A block of some destinations
    /// cannot be said to cover a call that is not a number.)
    fn blocks_of_everything(
        &self,
        account: &str,
        ext: &str,
        trunk: &str,
        now: Timestamp,
    ) -> Vec<(String, Option<Timestamp>)> {
        let Some(&acct) = self.account_ids.get(account) else { return vec![] };
        self.accounts[acct as usize]
            .blocks
            .iter()
            .filter(|b| {
                b.holds_for(ext, trunk, now)
                    && match (b.limit, &b.destinations) {
                        (Some(i), _) => {
                            let limit = &self.policy.limits[i as usize];
                            limit.filter.is_any() && limit.when == When::Always
                        }
                        (None, Some(_)) => false,
                        (None, None) => true,
                    }
            })
            .map(|b| (b.rule.clone(), b.until))
            .collect()
    }

    /// The limits that apply to an account: the policy's and its own (in the reused buffer).
    fn limits_of(&mut self, acct: u32) -> Vec<u16> {
        let mut v = std::mem::take(&mut self.scratch_limits);
        v.clear();
        v.extend(0..self.policy_limits);
        let a = &self.accounts[acct as usize];
        v.extend(a.own_limits[0].iter().chain(&a.own_limits[1]));
        v
    }

    fn set_limits(&mut self, account: &str, owner: LimitOwner, limits: Vec<Limit>, now: Timestamp) {
        let acct = self.account_id(account);
        let k = owner as usize;
        let old = std::mem::take(&mut self.accounts[acct as usize].own_limits[k]);
        for i in old {
            self.policy.limits[i as usize].retired = true;
        }
        for mut l in limits {
            if self.policy.limits.len() >= u16::MAX as usize {
                break;
            }
            l.accounts = vec![account.to_string()];
            l.retired = false;
            l.by_customer = owner == LimitOwner::Customer;
            self.policy.limits.push(l);
            let i = (self.policy.limits.len() - 1) as u16;
            self.accounts[acct as usize].own_limits[k].push(i);
        }
        // The calls the account has running count in the new limits from now: a limit of 10
        // channels set while 9 run leaves room for one more, and their spend counts in full.
        let local = self.accounts[acct as usize].local(now);
        let mut running: Vec<u32> = self
            .calls
            .values()
            .copied()
            .filter(|&c| self.slots[c as usize].account == acct && self.slots[c as usize].class.is_some())
            .collect();
        running.sort_unstable();
        for li in self.accounts[acct as usize].own_limits[k].clone() {
            for &slot in &running {
                let call = &self.slots[slot as usize];
                let (limit, class) = (&self.policy.limits[li as usize], call.class.expect("filtered above"));
                // A call running when the limit is set counts if the limit's `when` holds now.
                if !limit.filter.matches(class.country, class.number_type, class.risk, class.new)
                    || !self.in_time(limit.when, account, local)
                {
                    continue;
                }
                let Some(key) = limit.scope.key(&call.extension, &call.trunk).map(|k| k.map(str::to_string))
                else {
                    continue;
                };
                let sid = self.state_id(acct, key.as_deref(), li);
                let state = &mut self.states[sid as usize];
                if let Some(w) = state.window.as_mut() {
                    w.add(now, local, 0, 1);
                }
                state.running.push(slot);
                state.linear.add(&self.slots[slot as usize]);
                self.slots[slot as usize].states.push(sid);
            }
        }
        // Retired limits' states stop asking for ticks.
        let sids = self.accounts[acct as usize].states.clone();
        for sid in sids {
            self.reschedule(sid, now, now);
        }
    }

    /// The limits set for an account at run time by `owner`, as validated.
    pub fn account_limits(&self, account: &str, owner: LimitOwner) -> Vec<&Limit> {
        self.account_ids.get(account).map_or(vec![], |&a| {
            self.accounts[a as usize].own_limits[owner as usize]
                .iter()
                .map(|&i| &self.policy.limits[i as usize])
                .collect()
        })
    }

    /// The limits in force for an account (the policy's and its own), for checks such as a
    /// customer's limit against the operator's.
    pub fn limits_in_force(&self, account: &str) -> Vec<&Limit> {
        let own = self.account_ids.get(account).map(|&a| &self.accounts[a as usize].own_limits);
        self.policy.limits[..self.policy_limits as usize]
            .iter()
            .filter(|l| l.applies_to(account))
            .chain(own.into_iter().flat_map(|o| o.iter().flatten().map(|&i| &self.policy.limits[i as usize])))
            .collect()
    }

    /// Whether the block limit `li` sets for the scope of its state `sid` is held: the account's,
    /// or, for a per-extension or per-trunk limit, that extension's (`ext`) or that trunk's (a
    /// block of one trunk does not stand for another's).
    fn scope_blocked(&self, acct: u32, li: u16, sid: u32, ext: &str) -> bool {
        let scope = self.policy.limits[li as usize].scope;
        let trunk = if scope == ScopeKind::Trunk { self.trunk_key(sid) } else { None };
        self.accounts[acct as usize].holds_block(li, scope, ext, trunk.as_deref().unwrap_or(""))
    }

    /// The trunk of a per-trunk limit's state (blocks are rare: looked up, not kept).
    fn trunk_key(&self, sid: u32) -> Option<String> {
        let s = &self.states[sid as usize];
        if self.policy.limits[s.limit as usize].scope != ScopeKind::Trunk {
            return None;
        }
        let keys = self.extension_states.get(&(s.account, s.limit))?;
        keys.iter().find(|(_, &v)| v == sid).map(|(k, _)| k.clone())
    }

    /// The state of limit `limit` for an account, or for one of its extensions or trunks
    /// (`ext`: the extension or trunk of a per-extension or per-trunk limit); made when first
    /// needed.
    fn state_id(&mut self, acct: u32, ext: Option<&str>, limit: u16) -> u32 {
        let found = match ext {
            None => self.accounts[acct as usize]
                .account_states
                .get(limit as usize)
                .copied()
                .filter(|s| *s != u32::MAX),
            Some(e) => self.extension_states.get(&(acct, limit)).and_then(|m| m.get(e)).copied(),
        };
        if let Some(sid) = found {
            return sid;
        }
        let sid = self.states.len() as u32;
        self.states.push(LimitState {
            limit,
            account: acct,
            window: self.policy.limits[limit as usize].window.map(Window::new),
            running: vec![],
            linear: Linear::default(),
            alerted: 0,
            alerted_in: i64::MIN,
            deadline: None,
        });
        match ext {
            None => {
                let states = &mut self.accounts[acct as usize].account_states;
                if states.len() <= limit as usize {
                    states.resize(limit as usize + 1, u32::MAX);
                }
                states[limit as usize] = sid;
            }
            Some(e) => {
                self.extension_states.entry((acct, limit)).or_default().insert(e.to_string(), sid);
            }
        }
        self.accounts[acct as usize].states.push(sid);
        sid
    }

    /// Sets a block. A limit that blocks the same account again within
    /// [`BLOCK_ESCALATION`] blocks it until an operator releases it: an attack that resumes
    /// after each expiry is not a coincidence.
    fn set_block(&mut self, acct: u32, mut b: ActiveBlock, now: Timestamp, out: &mut Vec<Effect>) {
        let a = &mut self.accounts[acct as usize];
        let again = a
            .block_history
            .iter()
            .any(|(lim, at)| *lim == b.limit && now.duration_since(*at) < BLOCK_ESCALATION);
        if again {
            b.until = None;
        }
        a.block_history.retain(|(_, at)| now.duration_since(*at) < BLOCK_ESCALATION);
        a.block_history.push((b.limit, now));
        out.push(Effect::Block {
            account: a.name.to_string(),
            extension: b.extension.clone(),
            trunk: b.trunk.clone(),
            rule: b.rule.clone(),
            until: b.until,
        });
        if let Some(u) = b.until {
            self.due.push(Reverse((u, acct)));
        }
        a.blocks.push(b);
    }

    fn track(
        &mut self,
        call_id: &str,
        account: u32,
        (extension, trunk): (&str, &str),
        rate: Option<Arc<CallRate>>,
        class: Option<DestClass>,
        states: &[u32],
    ) -> u32 {
        self.last_followed = true;
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Call::default());
                (self.slots.len() - 1) as u32
            }
        };
        let c = &mut self.slots[slot as usize];
        c.account = account;
        c.extension.clear();
        c.extension.push_str(extension);
        c.trunk.clear();
        c.trunk.push_str(trunk);
        c.answered = None;
        c.rate = rate;
        c.class = class;
        c.high_risk = None;
        c.capped_by = None;
        c.states.clear();
        c.states.extend_from_slice(states);
        c.cut = false;
        c.long_alerted.clear();
        let mut key = self.spare_ids.pop().unwrap_or_default();
        key.clear();
        key.push_str(call_id);
        if let Some(old) = self.calls.insert(key, slot) {
            // The same call id twice: the first is forgotten, as if it had ended unbilled.
            self.release(old);
        }
        slot
    }

    fn release(&mut self, slot: u32) {
        let call = &self.slots[slot as usize];
        let acct = call.account as usize;
        let a = &mut self.accounts[acct];
        if let Some(i) = a.running.iter().position(|s| *s == slot) {
            a.running.remove(i);
            a.linear.remove(call);
        }
        for &k in &call.states {
            let s = &mut self.states[k as usize];
            s.running.retain(|s| *s != slot);
            s.linear.remove(call);
        }
        self.slots[slot as usize].states.clear();
        self.free_slots.push(slot);
    }

    fn cut(&mut self, slot: u32, limit: u16, out: &mut Vec<Effect>) {
        let c = &mut self.slots[slot as usize];
        if c.cut {
            return;
        }
        c.cut = true;
        let Some(id) = self.call_id_of(slot) else { return };
        out.push(Effect::Cut {
            call_id: id.to_string(),
            rule: self.policy.limits[limit as usize].name.clone(),
        });
    }

    /// The id of the call running in `slot` (a search: for cuts, which are rare).
    fn call_id_of(&self, slot: u32) -> Option<&str> {
        self.calls.iter().find(|(_, s)| **s == slot).map(|(id, _)| id.as_str())
    }

    fn end(&mut self, call_id: &str, billsec: Option<u32>, now: Timestamp, out: &mut Vec<Effect>) {
        let Some((key, slot)) = self.calls.remove_entry(call_id) else { return };
        if self.spare_ids.len() < SPARE_IDS {
            self.spare_ids.push(key);
        }
        let call = &self.slots[slot as usize];
        let talk = billsec
            .or_else(|| call.answered.map(|a| now.duration_since(a).as_secs().max(0) as u32))
            .unwrap_or(0);
        let units = call.rate.as_ref().map_or(0, |r| r.units(talk));
        // What the call says about a high-risk number: only from the switch's own talk time (a
        // lost call's is a guess; its record, if it comes, says it then).
        if let (Some((number, inbound)), Some(talk)) = (call.high_risk, billsec) {
            self.accounts[call.account as usize].memory.heard(number, inbound, talk, now);
        }
        let call = &self.slots[slot as usize];
        // It talked until its cap (the switch ends it then; a second or two either way): the
        // budget that gave the cap is used up, checked once the call's cost is counted.
        let used_up = call
            .capped_by
            .filter(|&(_, cap)| talk > 0 && talk.saturating_add(CAP_SLACK_S) >= cap)
            .map(|(sid, _)| sid);
        let used_up_by = used_up.map(|_| (call.extension.clone(), call.rate.clone()));
        let local = self.accounts[call.account as usize].local(now);
        let states = std::mem::take(&mut self.slots[slot as usize].states);
        let call = &self.slots[slot as usize];
        for &k in &states {
            let s = &mut self.states[k as usize];
            s.running.retain(|id| *id != slot);
            s.linear.remove(call);
            if let Some(w) = s.window.as_mut() {
                w.add(now, local, units, 0);
            }
        }
        for &k in &states {
            self.reschedule(k, now, now);
        }
        if let (Some(sid), Some((ext, Some(rate)))) = (used_up, used_up_by) {
            let learning = self.learn_until.is_some_and(|t| now < t);
            self.budget_used_up(sid, &ext, &rate, call_id, now, learning, out);
        }
        // Kept only when a late record may correct it (a shared count changed twice for nothing
        // otherwise).
        let acct = self.slots[slot as usize].account;
        let rate = self.record_grace.and(self.slots[slot as usize].rate.as_ref()).cloned();
        let high_risk = self.slots[slot as usize].high_risk;
        self.remember_ended(call_id, acct, rate, high_risk, &states, units, now, vec![]);
        if units != 0 {
            let account = Arc::clone(&self.accounts[acct as usize].name);
            out.push(Effect::Charged { account, units });
        }
        self.slots[slot as usize].states = states;
        self.slots[slot as usize].states.clear();
        let a = &mut self.accounts[acct as usize];
        if let Some(i) = a.running.iter().position(|s| *s == slot) {
            a.running.swap_remove(i);
            a.linear.remove(&self.slots[slot as usize]);
            if let Some(b) = a.baseline.as_mut() {
                b.add(local, units);
            }
            let ext = std::mem::take(&mut self.slots[slot as usize].extension);
            if let Some((Some(alert), _)) = self.unusual_hour(acct, &ext, "", now) {
                out.push(Effect::Alert(alert));
            }
            self.slots[slot as usize].extension = ext;
        }
        self.free_slots.push(slot);
    }

    /// The learned hourly level ([`baseline`]): the alert when the account's spend this hour
    /// (ended calls and what running calls have cost so far) has just gone above it, and the
    /// sentence for a decision's explanation while it is above.
    fn unusual_hour(
        &mut self,
        acct: u32,
        ext: &str,
        call_id: &str,
        now: Timestamp,
    ) -> Option<(Option<Alert>, String)> {
        if !self.policy.new_destination_rules {
            return None;
        }
        let a = &mut self.accounts[acct as usize];
        let local = a.local(now);
        let b = a.baseline.as_mut()?;
        let ended = b.this_hour(local);
        let usual = b.usual(local)?;
        debug_assert_eq!(a.linear, linear_of(&a.running, &self.slots));
        if a.linear.surely_below(ended, usual.level, now) {
            debug_assert!(ended + running_spend(&a.running, &self.slots, now).0 < usual.level);
            return None;
        }
        let (live, _) = running_spend(&a.running, &self.slots, now);
        let spend = ended + live;
        let level = if spend >= 2 * usual.level {
            2
        } else if spend >= usual.level {
            1
        } else {
            return None;
        };
        let money = |u: i64| format!("{:.2}", Decimal::new(u, 4));
        let what = format!(
            "spend this hour {} (ended calls {}, {} {}): usual for {} {:02}:00 is {} (MAD {}, {} samples), learned level {}{}",
            money(spend),
            money(ended),
            calls_running(a.running.len()),
            money(live),
            WEEKDAYS[local.weekday() as usize],
            local.hour(),
            money(usual.median),
            money(usual.mad),
            usual.samples,
            money(usual.level),
            if level == 2 { ", more than twice over" } else { "" },
        );
        if b.alerted >= level {
            return Some((None, what));
        }
        b.alerted = level;
        let sev = if level == 2 { Severity::Critical } else { Severity::Warning };
        let mut al = self.alert(acct, ext, now, call_id, sev, "default.unusual_hourly_spend");
        al.message = what.clone();
        Some((Some(al), what))
    }

    fn reschedule_call(&mut self, slot: u32, now: Timestamp, earliest: Timestamp) {
        let states = std::mem::take(&mut self.slots[slot as usize].states);
        for &k in &states {
            self.reschedule(k, now, earliest);
        }
        self.slots[slot as usize].states = states;
    }

    /// Sets a state's deadline: the earliest time, not before `earliest`, at which a tick could
    /// find something to do in it.
    fn reschedule(&mut self, sid: u32, now: Timestamp, earliest: Timestamp) {
        let deadline = self.compute_deadline(sid, now).map(|t| t.max(earliest));
        let s = &mut self.states[sid as usize];
        if s.deadline != deadline {
            s.deadline = deadline;
            self.deadlines.set(sid, deadline);
        }
    }

    fn compute_deadline(&mut self, sid: u32, now: Timestamp) -> Option<Timestamp> {
        let s = &self.states[sid as usize];
        if s.running.is_empty() {
            return None;
        }
        let limit = &self.policy.limits[s.limit as usize];
        if limit.retired {
            return None;
        }
        let enforce = !limit.report_only;
        // What a tick would enforce waits for the end of learning.
        let learning_until = self.learn_until.filter(|t| now < *t);
        let enforced_from = |t: Timestamp| learning_until.map_or(t, |l| t.max(l));
        let deadline = match limit.metric {
            Metric::Spend => {
                let acts = limit.on_critical;
                let acct = &mut self.accounts[s.account as usize];
                let enforcing = acts.has(Action::Cut)
                    && enforce
                    && s.running.iter().any(|&c| !self.slots[c as usize].cut)
                    || acts.has(Action::Block) && enforce && {
                        // The block of this state's extension or trunk (its calls share them).
                        let first = &self.slots[s.running[0] as usize];
                        !acct.holds_block(s.limit, limit.scope, &first.extension, &first.trunk)
                    };
                let alerting = acts.has(Action::Alert) && s.alerted < 2;
                let warn_matters =
                    limit.warning.is_some() && s.alerted < 1 && limit.on_warning.has(Action::Alert);
                if !enforcing && !alerting && !warn_matters {
                    return None;
                }
                let local = acct.local(now);
                let s = &mut self.states[sid as usize];
                let ended = s.window.as_mut().map_or(0, |w| w.totals(now, local).0) as i128;
                // Spend at t <= ended + sum over answered calls of
                //   fee_up + 1 + rate_up x (t - answered + increment) / 60.
                let Linear { fixed, slope, offset } = s.linear;
                debug_assert_eq!(s.linear, linear_of(&s.running, &self.slots));
                // The bound runs ahead of the spend by up to an increment a call: where it has
                // crossed a level the spend has not, the spend can cross it only when talk time
                // reaches its next whole second, not sooner (else a tick would come back at once,
                // a nanosecond later, and again, until the spend catches up).
                let mut actual: Option<i128> = None;
                let slots = &self.slots;
                let running = &s.running;
                let mut crossing = |level: i64| -> Option<Timestamp> {
                    let need = 60 * (level as i128 - ended - fixed);
                    let t = if slope == 0 {
                        if need > 0 {
                            return None;
                        }
                        now.as_second() as i128
                    } else {
                        let num = need + offset;
                        match (i64::try_from(num), i64::try_from(slope)) {
                            (Ok(n), Ok(d)) => n.div_euclid(d) as i128,
                            _ => num.div_euclid(slope),
                        }
                    };
                    if t <= now.as_second() as i128 {
                        let spent = *actual.get_or_insert_with(|| {
                            ended
                                + running
                                    .iter()
                                    .map(|&c| slots[c as usize].running_units(now) as i128)
                                    .sum::<i128>()
                        });
                        if spent < level as i128 {
                            return Some(later(now, SignedDuration::from_secs(1)));
                        }
                        return Some(now);
                    }
                    let t = t.min(now.as_second() as i128 + HORIZON_S);
                    Timestamp::from_second(t as i64).ok()
                };
                let mut at: Option<Timestamp> = None;
                let mut consider = |t: Option<Timestamp>| {
                    if let Some(t) = t {
                        at = Some(at.map_or(t, |a| a.min(t)));
                    }
                };
                if warn_matters {
                    consider(limit.warning.and_then(&mut crossing));
                }
                let max_at = if alerting || enforcing { crossing(limit.max) } else { None };
                if alerting {
                    consider(max_at);
                }
                if enforcing {
                    consider(max_at.map(enforced_from));
                }
                at
            }
            Metric::CallDuration if limit.on_critical.has(Action::Cut) && enforce => s
                .running
                .iter()
                .filter_map(|&c| {
                    let call = &self.slots[c as usize];
                    call.answered.filter(|_| !call.cut)
                })
                .min()
                .map(|ans| enforced_from(later(ans, SignedDuration::from_secs(limit.max)).max(now))),
            // Alert only (no cut, or report-only): each call that talks past it, once.
            Metric::CallDuration if alerts_without_cut(limit) => {
                let li = s.limit;
                s.running
                    .iter()
                    .filter_map(|&c| {
                        let call = &self.slots[c as usize];
                        call.answered.filter(|_| !call.cut && !call.long_alerted.contains(&li))
                    })
                    .min()
                    .map(|ans| later(ans, SignedDuration::from_secs(long_call_alert_after(limit))).max(now))
            }
            _ => None,
        };
        // A far deadline is looked at again within the horizon, so entries of calls that ended
        // long before it do not pile up in the heap.
        deadline.map(|t| t.min(later(now, SignedDuration::from_secs(HORIZON_S as i64))))
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let mut due_states = vec![];
        let mut due_accounts = vec![];
        while let Some(&Reverse((t, acct))) = self.due.peek() {
            if t > now {
                break;
            }
            self.due.pop();
            due_accounts.push(acct);
        }
        while let Some((t, id)) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            self.states[id as usize].deadline = None;
            due_states.push(id);
        }
        due_accounts.sort_unstable();
        due_accounts.dedup();
        for acct in due_accounts {
            let a = &mut self.accounts[acct as usize];
            let mut i = 0;
            while i < a.blocks.len() {
                if a.blocks[i].until.is_some_and(|u| u <= now) {
                    let b = a.blocks.remove(i);
                    out.push(Effect::Unblock {
                        account: a.name.to_string(),
                        extension: b.extension,
                        rule: b.rule,
                    });
                } else {
                    i += 1;
                }
            }
        }
        let learning = self.learn_until.is_some_and(|t| now < t);
        for sid in due_states {
            self.tick_state(sid, now, learning, out);
            // After this tick: a tick does not look at the same state twice (the next tick, or
            // replay's next grid step, looks again).
            self.reschedule(sid, now, later(now, SignedDuration::from_nanos(1)));
        }
    }

    /// A tick looks at one limit state whose deadline has come.
    fn tick_state(&mut self, sid: u32, now: Timestamp, learning: bool, out: &mut Vec<Effect>) {
        let s = &self.states[sid as usize];
        let li = s.limit;
        let limit = &self.policy.limits[li as usize];
        let Some(&first) = s.running.first() else { return };
        if limit.retired {
            return;
        }
        let acct = s.account;
        let ext = self.slots[first as usize].extension.clone();
        let ext = ext.as_str();
        let held = self.scope_blocked(acct, li, sid, ext);
        let local = self.accounts[acct as usize].local(now);
        let enforce = !limit.report_only && !learning;
        match limit.metric {
            Metric::Spend => {
                let state = &mut self.states[sid as usize];
                let (used, _) = usage(limit, state, &self.slots, now, local, 0);
                state.new_period();
                if state.alerted > 0 && used < limit.warning.unwrap_or(limit.max) {
                    state.alerted = 0;
                }
                if used >= limit.max {
                    // Past the warning level too: its alert is not due any more (with no
                    // critical alert configured, it would be due at every tick).
                    state.alerted = state.alerted.max(1);
                    let cut = limit.on_critical.has(Action::Cut) && enforce;
                    let block = limit.on_critical.has(Action::Block) && enforce && !held;
                    let running = state.running.clone();
                    if limit.on_critical.has(Action::Alert) && state.alerted < 2 {
                        state.alerted = 2;
                        let done = match (cut, block) {
                            (true, true) => ": running calls cut, its destinations blocked",
                            (true, false) => ": running calls cut",
                            (false, true) => ": its destinations blocked",
                            (false, false) => "",
                        };
                        let msg = format!(
                            "{}{} reached {} with {} (limit {}){done}",
                            describe(limit),
                            window_text(limit),
                            limit.show(used),
                            calls_running(running.len()),
                            limit.show(limit.max),
                        );
                        let mut al = self.alert(acct, ext, now, "", Severity::Critical, &limit.name);
                        // The block is what lasts (and what an operator may have to lift).
                        al.action = if block {
                            AlertAction::Block
                        } else if cut {
                            AlertAction::Cut
                        } else {
                            AlertAction::Alert
                        };
                        al.message = msg;
                        out.push(Effect::Alert(al));
                    }
                    if block {
                        let b = ActiveBlock::by_limit(limit, li, ext, self.trunk_key(sid), now);
                        self.set_block(acct, b, now, out);
                    }
                    if cut {
                        for slot in running {
                            self.cut(slot, li, out);
                        }
                    }
                } else if limit.warning.is_some_and(|w| used >= w)
                    && state.alerted < 1
                    && limit.on_warning.has(Action::Alert)
                {
                    state.alerted = 1;
                    let msg = warning_text(limit, used, " with calls running");
                    let mut al = self.alert(acct, ext, now, "", Severity::Warning, &limit.name);
                    al.message = msg;
                    out.push(Effect::Alert(al));
                }
            }
            Metric::CallDuration if enforce && limit.on_critical.has(Action::Cut) => {
                let longest = SignedDuration::from_secs(limit.max);
                let over: Vec<u32> = self.states[sid as usize]
                    .running
                    .iter()
                    .copied()
                    .filter(|&c| {
                        self.slots[c as usize].answered.is_some_and(|ans| now.duration_since(ans) >= longest)
                    })
                    .collect();
                let alert = limit.on_critical.has(Action::Alert);
                for slot in over {
                    // Each long call is its own event: its alert says which call was cut.
                    let call = &self.slots[slot as usize];
                    let limit = &self.policy.limits[li as usize];
                    if alert && !call.cut {
                        let talk = call.answered.map_or(0, |ans| now.duration_since(ans).as_secs().max(0));
                        let ext = call.extension.clone();
                        let id = self.call_id_of(slot).unwrap_or_default();
                        let mut al = self.alert(acct, &ext, now, id, Severity::Critical, &limit.name);
                        al.action = AlertAction::Cut;
                        al.message = format!(
                            "{} reached by a call talking for {} (limit {}): call cut",
                            describe(limit),
                            limit.show(talk),
                            limit.show(limit.max)
                        );
                        out.push(Effect::Alert(al));
                    }
                    self.cut(slot, li, out);
                }
            }
            Metric::CallDuration if alerts_without_cut(limit) => {
                let longest = SignedDuration::from_secs(long_call_alert_after(limit));
                let over: Vec<u32> = self.states[sid as usize]
                    .running
                    .iter()
                    .copied()
                    .filter(|&c| {
                        let call = &self.slots[c as usize];
                        !call.cut
                            && !call.long_alerted.contains(&li)
                            && call.answered.is_some_and(|ans| now.duration_since(ans) >= longest)
                    })
                    .collect();
                for slot in over {
                    let call = &mut self.slots[slot as usize];
                    call.long_alerted.push(li);
                    let talk = call.answered.map_or(0, |ans| now.duration_since(ans).as_secs().max(0));
                    let ext = call.extension.clone();
                    let limit = &self.policy.limits[li as usize];
                    let msg = format!(
                        "{} reached by a call talking for {} (limit {}){}",
                        describe(limit),
                        limit.show(talk),
                        limit.show(limit.max),
                        if limit.report_only && limit.on_critical.has(Action::Cut) {
                            ": not cut (report only)"
                        } else if long_call_alert_after(limit) > limit.max {
                            ": still running past its cap"
                        } else {
                            ": still running"
                        }
                    );
                    let name = limit.name.clone();
                    let id = self.call_id_of(slot).unwrap_or_default().to_string();
                    let mut al = self.alert(acct, &ext, now, &id, Severity::Critical, &name);
                    al.action = AlertAction::Alert;
                    al.message = msg;
                    out.push(Effect::Alert(al));
                }
            }
            _ => {}
        }
    }

    fn command(&mut self, c: Command, now: Timestamp, out: &mut Vec<Effect>) {
        match c {
            Command::Block { account, extension, until, reason, destinations } => {
                let acct = self.account_id(&account);
                let rule = match &destinations {
                    Some(d) => format!("operator.block ({}): {reason}", d.describe()),
                    None => format!("operator.block: {reason}"),
                };
                out.push(Effect::Block {
                    account,
                    extension: extension.clone(),
                    trunk: None,
                    rule: rule.clone(),
                    until,
                });
                if let Some(u) = until {
                    self.due.push(Reverse((u, acct)));
                }
                self.accounts[acct as usize].blocks.push(ActiveBlock {
                    extension,
                    trunk: None,
                    limit: None,
                    destinations,
                    until,
                    rule,
                    set_at: now,
                });
            }
            Command::SetLimits { account, owner, limits } => self.set_limits(&account, owner, limits, now),
            Command::Allow { account, countries, until } => {
                let acct = self.account_id(&account);
                self.accounts[acct as usize].memory.allowances =
                    countries.into_iter().map(|c| (c.to_ascii_uppercase(), until)).collect();
            }
            Command::Unblock { account, extension, by } => {
                let Some(&acct) = self.account_ids.get(&account) else { return };
                let limits = &self.policy.limits;
                let a = &mut self.accounts[acct as usize];
                let (gone, kept): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut a.blocks).into_iter().partition(|b| {
                        (extension.is_none() || b.extension == extension)
                            && match by {
                                Unblocker::Operator => true,
                                Unblocker::AnyLimit => b.limit.is_some(),
                                // Its limits, the current ones and those it has replaced since.
                                Unblocker::Customer => {
                                    b.limit.is_some_and(|l| limits[l as usize].by_customer)
                                }
                            }
                    });
                a.blocks = kept;
                if gone.is_empty() {
                    // Nothing lifted: the limits' episodes go on (a block that stays must not
                    // alert again as if new).
                    return;
                }
                for b in gone {
                    out.push(Effect::Unblock {
                        account: a.name.to_string(),
                        extension: b.extension,
                        rule: b.rule,
                    });
                }
                // Windows that blocked start over, so released traffic is not cut again at once.
                let sids = a.states.clone();
                for sid in sids {
                    self.states[sid as usize].alerted = 0;
                    self.reschedule(sid, now, now);
                }
            }
        }
    }
}

/// The linear view of `running`'s cost, summed call by call (what [`Linear`] keeps; checked
/// against it in debug builds).
fn linear_of(running: &[u32], calls: &[Call]) -> Linear {
    let mut l = Linear::default();
    for &c in running {
        l.add(&calls[c as usize]);
    }
    l
}

/// What running calls have cost at `now`, and the sum of their rates per minute.
fn running_spend(running: &[u32], calls: &[Call], now: Timestamp) -> (i64, i64) {
    running
        .iter()
        .map(|&c| &calls[c as usize])
        .fold((0, 0), |(s, r), c| (s + c.running_units(now), r + c.rate_per_minute_units()))
}

/// (used, sum of per-minute rates of running calls) of a limit state; `extra` counts the call
/// being authorized for calls and concurrency.
fn usage(
    limit: &Limit,
    state: &mut LimitState,
    calls: &[Call],
    now: Timestamp,
    local: Local,
    extra: i64,
) -> (i64, i64) {
    match limit.metric {
        Metric::Spend => {
            let ended = state.window.as_mut().map_or(0, |w| w.totals(now, local).0);
            let (live, rates) = running_spend(&state.running, calls, now);
            (ended + live, rates)
        }
        Metric::Calls => (state.window.as_mut().map_or(0, |w| w.totals(now, local).1 as i64) + extra, 0),
        Metric::Concurrent => (state.running.len() as i64 + extra, 0),
        Metric::CallDuration => (0, 0),
    }
}

/// The message of a warning level reached: `spend day at 412.00 of 500.00 (warning at 400.00)`.
fn warning_text(limit: &Limit, used: i64, context: &str) -> String {
    format!(
        "{}{} at {} of {}{context} (warning at {})",
        describe(limit),
        window_text(limit),
        limit.show(used),
        limit.show(limit.max),
        limit.show(limit.warning.unwrap_or(0))
    )
}

/// ` day`, ` rolling_1h`, ... or nothing, to follow [`describe`].
fn window_text(limit: &Limit) -> String {
    limit.window.map_or(String::new(), |w| format!(" {}", w.as_str()))
}

/// A `call_duration` limit that raises its alert for each call talking past it without cutting
/// it: `alert` without `cut`, or `report_only`. (In learning, a limit that cuts waits for the end
/// of learning instead.)
fn alerts_without_cut(limit: &Limit) -> bool {
    limit.on_critical.has(Action::Alert) && (limit.report_only || !limit.on_critical.has(Action::Cut))
}

/// Talk time, seconds, at which a call raises the alert of a limit that [`alerts_without_cut`]:
/// its `max`, or just past the cap's slack when the limit caps calls at `max` (a call the switch
/// ends at its cap is not reported; one still talking after it is).
fn long_call_alert_after(limit: &Limit) -> i64 {
    let capped = !limit.report_only && limit.on_critical.has(Action::Cap);
    limit.max.saturating_add(if capped { CAP_SLACK_S as i64 + 1 } else { 0 })
}

fn describe(limit: &Limit) -> String {
    let what = match limit.metric {
        Metric::Spend => "spend",
        Metric::Calls => "calls",
        Metric::Concurrent => "concurrent calls",
        Metric::CallDuration => "call duration",
    };
    let mut to = vec![];
    if limit.filter.risks != 0 {
        let tiers: Vec<&str> = RiskTier::ALL
            .iter()
            .filter(|t| limit.filter.risks & (1 << **t as u8) != 0)
            .map(|t| t.as_str())
            .collect();
        to.push(format!("{} risk", tiers.join("/")));
    }
    if !limit.filter.countries.is_empty() {
        to.push(limit.filter.countries.join("/"));
    }
    if limit.filter.new_only {
        to.push("destinations first called lately".into());
    }
    let what = if to.is_empty() { what.to_string() } else { format!("{what} to {}", to.join(", ")) };
    format!("{what}{}", limit.when.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tollguard_core::money::Currency;

    fn row(fee: Decimal, rate: Decimal, initial_s: u32, subsequent_s: u32) -> RateRow {
        RateRow {
            prefix: "670".into(),
            destination: "East Timor".into(),
            rate_per_minute: rate,
            connection_fee: fee,
            initial_s,
            subsequent_s,
            effective_from: None,
            band: None,
            currency: Currency::EUR,
            line: 2,
        }
    }

    /// Rows that charge the same share one price; a row that charges otherwise (scale, fee,
    /// rate or increments) gets its own, priced as if built afresh.
    #[test]
    fn the_history_needed_covers_every_memory_of_the_engine() {
        let days = |d: i64| SignedDuration::from_hours(24 * d);
        let memories = [
            TALKED_MEMORY,
            WANGIRI_MEMORY,
            BLOCK_ESCALATION,
            DESTINATION_ALERT_QUIET,
            NEW_DESTINATION_AGE,
            ACCOUNT_LEARNING,
            days(31),                                   // a calendar month's window
            days(7 * (baseline::WEEKS as i64 + 1) + 6), // learned weeks, from a Monday
            days(baseline::PEAK_DAYS as i64 + 1),       // daily peaks of concurrency
        ];
        for m in memories {
            assert!(HISTORY_NEEDED >= m + days(1), "{m:?}");
        }
    }

    #[test]
    fn deck_rates_are_shared_by_what_they_charge() {
        let mut cache = Map::default();
        let a = deck_rate(&mut cache, &row(Decimal::new(5, 2), Decimal::new(120, 2), 60, 60));
        let mut same = row(Decimal::new(5, 2), Decimal::new(120, 2), 60, 60);
        same.prefix = "31".into();
        assert!(Arc::ptr_eq(&a, &deck_rate(&mut cache, &same)));
        for other in [
            row(Decimal::new(50, 3), Decimal::new(120, 2), 60, 60),
            row(Decimal::new(5, 2), Decimal::new(121, 2), 60, 60),
            row(Decimal::new(5, 2), Decimal::new(120, 2), 30, 60),
            row(Decimal::new(5, 2), Decimal::new(120, 2), 60, 1),
        ] {
            let b = deck_rate(&mut cache, &other);
            assert!(!Arc::ptr_eq(&a, &b));
            for talk in [1, 59, 61, 3600] {
                assert_eq!(b.units(talk), CallRate::new(&other).units(talk));
            }
        }
        assert_eq!(cache.len(), 5);
    }

    proptest! {
        /// `later` is jiff's addition (or the end of time), whole seconds or not, before 1970
        /// or after.
        #[test]
        fn later_is_the_checked_addition(
            sec in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
            ns in -999_999_999i32..=999_999_999,
            d in proptest::num::i64::ANY,
            whole in proptest::bool::ANY,
        ) {
            let Ok(t) = Timestamp::new(sec, ns) else { return Ok(()) };
            let d = if whole {
                SignedDuration::from_secs(d % (1 << 40))
            } else {
                SignedDuration::from_nanos(d)
            };
            prop_assert_eq!(later(t, d), t.checked_add(d).unwrap_or(Timestamp::MAX));
        }

        /// The byte loops of `trunk_of` name the peer as the plain reading does: the part after
        /// the first "/", less a last "-" and hexadecimal digits when both sides are non-empty.
        #[test]
        fn trunk_of_reads_a_peer_as_split_and_rsplit_do(
            tech in "(SIP|PJSIP|IAX2|DAHDI|Local|sofia)?",
            rest in "[a-gxA-G0-9/@;-]{0,12}",
        ) {
            let channel = if tech.is_empty() { rest.clone() } else { format!("{tech}/{rest}") };
            let plain = if channel.starts_with("sofia/") || channel.starts_with("Local/") {
                None
            } else {
                Some(match channel.split_once('/') {
                    None => channel.as_str(),
                    Some((_, peer)) => match peer.rsplit_once('-') {
                        Some((name, seq))
                            if !name.is_empty() && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            name
                        }
                        _ => peer,
                    },
                })
            };
            if let Some(expected) = plain {
                prop_assert_eq!(trunk_of(&channel), expected, "{}", channel);
            }
        }

        /// The engine's integer cost is the deck's decimal cost, to the last ten-thousandth, and
        /// never more than the linear bound its deadlines are computed from (scales up to 28
        /// decimals, as far as `Decimal` goes: beyond 64 bits the 128-bit path).
        #[test]
        fn integer_cost_is_the_deck_cost_and_under_the_bound(
            fee in 0i64..2_000_000, fee_scale in 0u32..29,
            rate in 0i64..50_000_000, rate_scale in 0u32..29,
            initial in 0u32..120, subsequent in 1u32..120, talk in 0u32..50_000,
        ) {
            let r = row(Decimal::new(fee, fee_scale), Decimal::new(rate, rate_scale), initial, subsequent);
            let c = CallRate::new(&r);
            let exact = r.cost(talk);
            prop_assert_eq!(Decimal::new(c.units(talk), 4), exact);
            prop_assert_eq!(c.fee_u, (r.connection_fee * Decimal::from(10_000)).trunc().try_into().unwrap_or(i64::MAX));
            if talk > 0 {
                let bound = c.fee_up + 1 + c.rate_up * (talk as i128 + c.increment()) / 60;
                prop_assert!(c.units(talk) as i128 <= bound, "{} > {}", c.units(talk), bound);
            }
        }
    }
}
