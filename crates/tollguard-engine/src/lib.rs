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
//! Limits count calls still running: spend is rate x elapsed, re-evaluated on every tick, so
//! twenty parallel calls are seen while they run. The maximum duration given at authorization
//! is the budget left, shared by the calls already running (see [`Engine::handle`]).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Direction};
use tollguard_core::numbering::{Dialled, NumberType, RiskTier, E164};
use tollguard_core::rater::Rater;
use tollguard_core::rating::RateRow;

pub mod policy;
mod window;

use policy::{Action, Limit, Metric, Policy, ScopeKind};
use window::Window;

/// A call about to be routed: what the switch knows before it rings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempt {
    /// The switch's call id.
    pub call_id: String,
    /// The account charged.
    pub account: String,
    /// The calling extension.
    pub extension: String,
    /// What was dialled, as dialled.
    pub dialled: String,
    /// Originating channel (for direction), if known.
    pub channel: String,
    /// Destination channel, if known.
    pub dst_channel: String,
    /// Dialplan context, if known.
    pub context: String,
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
    },
    /// Lift every block of an account (or of one extension).
    Unblock {
        /// Account.
        account: String,
        /// Extension, or all.
        extension: Option<String>,
    },
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A call is about to be routed: the engine answers with a decision.
    Attempt(Attempt),
    /// The call was answered.
    Answer {
        /// Call id.
        call_id: String,
    },
    /// The call ended; `billsec` when the switch says it (else time since answer).
    End {
        /// Call id.
        call_id: String,
        /// Talk time.
        billsec: Option<u32>,
    },
    /// Time passes: running calls are re-costed, limits re-checked, blocks expire.
    Tick,
    /// An operator command.
    Command(Command),
}

/// The answer to an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Call id.
    pub call_id: String,
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// The most talk time it may have; `None`: no cap.
    pub max_duration_s: Option<u32>,
    /// Names of the rules that decided or capped it (or would have, in report-only mode).
    pub rules: Vec<String>,
    /// The figures behind each rule, for people.
    pub explanation: Vec<String>,
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
}

#[derive(Clone, Debug)]
struct RateInfo {
    row: RateRow,
}

impl RateInfo {
    /// Cost in ten-thousandths for `talk` seconds.
    fn units(&self, talk: u32) -> i64 {
        to_units(self.row.cost(talk))
    }
}

fn to_units(d: Decimal) -> i64 {
    (d * Decimal::from(10_000)).trunc().try_into().unwrap_or(i64::MAX)
}

type StateKey = (u16, String);

#[derive(Clone, Debug)]
struct Call {
    account: String,
    extension: String,
    answered: Option<Timestamp>,
    rate: Option<RateInfo>,
    keys: Vec<StateKey>,
    cut: bool,
}

impl Call {
    fn running_units(&self, now: Timestamp) -> i64 {
        match (&self.rate, self.answered) {
            (Some(r), Some(a)) => r.units(now.duration_since(a).as_secs().max(0) as u32),
            _ => 0,
        }
    }

    fn rate_per_minute_units(&self) -> i64 {
        self.rate.as_ref().map_or(0, |r| to_units(r.row.rate_per_minute))
    }
}

#[derive(Clone, Debug)]
struct LimitState {
    window: Option<Window>,
    running: Vec<String>,
    /// Highest level alerted in the current episode: 0 none, 1 warning, 2 critical.
    alerted: u8,
}

#[derive(Clone, Debug)]
struct ActiveBlock {
    account: String,
    extension: Option<String>,
    /// The limit whose destinations are blocked; `None`: all destinations.
    limit: Option<u16>,
    until: Option<Timestamp>,
    rule: String,
}

#[derive(Clone, Debug, Default)]
struct AccountMemory {
    /// Kinds of destination the account has called ([`destination_kind`]).
    seen: Vec<u32>,
    /// Kinds whose first-call alert was raised (until they are called).
    alerted: Vec<u32>,
    /// High-risk numbers that rang in recently, and when.
    rang_in: Vec<(E164, Timestamp)>,
    /// Numbers whose wangiri alert was raised.
    wangiri_alerted: Vec<E164>,
}

impl AccountMemory {
    fn mark(&mut self, kind: u32) {
        if !self.seen.contains(&kind) {
            self.seen.push(kind);
        }
        self.alerted.retain(|k| *k != kind);
    }
}

/// A kind of destination, as the new-destination rule remembers them: the country, and for
/// revenue-share ranges (premium, personal, shared cost, UAN, satellite, international networks)
/// also the type, so an account's first call to its own country's premium numbers is new too.
fn destination_kind(region: u16, number_type: Option<NumberType>) -> u32 {
    let special = match number_type {
        Some(
            t @ (NumberType::Premium
            | NumberType::Personal
            | NumberType::SharedCost
            | NumberType::Uan
            | NumberType::Satellite
            | NumberType::InternationalNetwork),
        ) => t as u32 + 1,
        _ => 0,
    };
    (region as u32) << 8 | special
}

/// A budget that allows a call more than this many seconds gives no cap: ticks still cut the
/// call if the limit is reached while it runs.
pub const CAP_HORIZON_S: u32 = 4 * 3600;

/// A second block by the same limit on the same account within this time lasts until released.
pub const BLOCK_ESCALATION: SignedDuration = SignedDuration::from_hours(7 * 24);

/// How long an inbound call from a high-risk number is remembered for the wangiri rule.
pub const WANGIRI_MEMORY: SignedDuration = SignedDuration::from_hours(72);

/// How many such numbers an account remembers (the oldest is forgotten first).
pub const WANGIRI_NUMBERS: usize = 32;

/// Seconds given to a first call to a high-risk country in office hours.
pub const NEW_DESTINATION_CAP_S: u32 = 300;

/// The engine. See the crate documentation.
pub struct Engine {
    rater: Arc<Rater>,
    policy: Policy,
    learn_until: Option<Timestamp>,
    calls: HashMap<String, Call>,
    states: HashMap<StateKey, LimitState>,
    memory: HashMap<String, AccountMemory>,
    blocks: Vec<ActiveBlock>,
    /// Blocks set by limits: (account, limit, when), for escalation.
    block_history: Vec<(String, Option<u16>, Timestamp)>,
    scratch: Cdr,
}

struct Dest {
    country: &'static str,
    region: Option<u16>,
    number_type: Option<NumberType>,
    risk: Option<RiskTier>,
    rate: Option<RateInfo>,
}

impl Engine {
    /// An engine rating with `rater` and deciding with `policy`.
    pub fn new(rater: Arc<Rater>, policy: Policy) -> Engine {
        Engine {
            rater,
            policy,
            learn_until: None,
            calls: HashMap::new(),
            states: HashMap::new(),
            memory: HashMap::new(),
            blocks: Vec::new(),
            block_history: Vec::new(),
            scratch: Cdr::default(),
        }
    }

    /// Report-only learning until `t`: attempts before it update all state and may raise alerts,
    /// but every decision is allow with no cap.
    pub fn set_learn_until(&mut self, t: Option<Timestamp>) {
        self.learn_until = t;
    }

    /// Calls the engine believes are running (allowed and not ended).
    pub fn running_calls(&self) -> usize {
        self.calls.len()
    }

    /// Accounts the engine keeps state for, and the bytes of that state (limit windows, running
    /// call lists, destinations seen; hash-map overhead included as one key and value per entry).
    /// Calls in progress are not included: they are per call, not per account.
    pub fn account_state_bytes(&self) -> (usize, usize) {
        use std::mem::size_of;
        let mut bytes = 0;
        for ((_, scope), s) in &self.states {
            bytes += size_of::<(StateKey, LimitState)>() + scope.capacity();
            bytes += s.running.capacity() * size_of::<String>();
            if let Some(Window::Rolling { .. }) = s.window {
                bytes += size_of::<[window::Bucket; 24]>();
            }
        }
        for (account, m) in &self.memory {
            bytes += size_of::<(String, AccountMemory)>() + account.capacity();
            bytes += m.seen.capacity() * 4 + m.alerted.capacity() * 4;
            bytes += m.rang_in.capacity() * size_of::<(E164, Timestamp)>()
                + m.wangiri_alerted.capacity() * size_of::<E164>();
        }
        let accounts: std::collections::HashSet<&str> = self
            .states
            .keys()
            .map(|(_, s)| s.split('/').next().unwrap_or(""))
            .chain(self.memory.keys().map(String::as_str))
            .collect();
        (accounts.len(), bytes)
    }

    /// Handles one event at `now`, appending effects to `out`.
    pub fn handle(&mut self, event: Event, now: Timestamp, out: &mut Vec<Effect>) {
        match event {
            Event::Attempt(a) => self.attempt(a, now, out),
            Event::Answer { call_id } => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.answered.get_or_insert(now);
                }
            }
            Event::End { call_id, billsec } => self.end(&call_id, billsec, now),
            Event::Tick => self.tick(now, out),
            Event::Command(c) => self.command(c, out),
        }
    }

    fn local(&self, account: &str, now: Timestamp) -> DateTime {
        self.rater.account(account).tz.to_datetime(now)
    }

    fn is_night(&self, local: DateTime) -> bool {
        let (from, to) = self.policy.night_hours;
        let h = local.hour() as u8;
        let weekend = local.weekday().to_monday_zero_offset() >= 5;
        weekend || if from > to { h >= from || h < to } else { h >= from && h < to }
    }

    fn destination(&mut self, a: &Attempt, now: Timestamp) -> (Dialled, Direction, Dest) {
        let c = &mut self.scratch;
        c.clear();
        c.call_id.push_str(&a.call_id);
        c.account.push_str(&a.account);
        c.source.push_str(&a.extension);
        c.dialled.push_str(&a.dialled);
        c.channel.push_str(&a.channel);
        c.dst_channel.push_str(&a.dst_channel);
        c.context.push_str(&a.context);
        c.start = now;
        let r = self.rater.rate(&self.scratch);
        let dest = Dest {
            country: r.country,
            region: r.class.map(|c| c.region),
            number_type: r.class.map(|c| c.number_type),
            risk: r.class.map(|c| c.risk),
            rate: r.rows[0].map(|row| RateInfo { row: row.clone() }),
        };
        (r.dialled, r.direction, dest)
    }

    fn attempt(&mut self, a: Attempt, now: Timestamp, out: &mut Vec<Effect>) {
        let (dialled, direction, dest) = self.destination(&a, now);
        let learning = self.learn_until.is_some_and(|t| now < t);
        let mut d = Decision {
            call_id: a.call_id.clone(),
            allowed: true,
            max_duration_s: None,
            rules: vec![],
            explanation: vec![],
        };
        // Safety rule no policy overrides.
        if dialled == Dialled::Emergency {
            d.rules.push("emergency".into());
            d.explanation.push(format!("{} is an emergency number: always allowed", a.dialled));
            self.track(&a, None, vec![]);
            out.push(Effect::Decision(d));
            return;
        }
        let outbound = direction == Direction::Outbound && matches!(dialled, Dialled::E164(_));
        if !outbound {
            // Inbound and internal calls cost nothing: allowed, kept as evidence by the caller.
            // An inbound call from a high-risk foreign number is remembered: calling it back is
            // the wangiri pattern.
            if direction == Direction::Inbound && self.policy.new_destination_rules {
                let setup = self.rater.account(&a.account);
                if let Dialled::E164(from) = setup.plan.normalise(&a.extension) {
                    let class = self.rater.numbering().classify(&from);
                    if class.risk >= RiskTier::High {
                        let m = self.memory.entry(a.account.clone()).or_default();
                        m.rang_in.retain(|(n, at)| *n != from && now.duration_since(*at) < WANGIRI_MEMORY);
                        if m.rang_in.len() >= WANGIRI_NUMBERS {
                            m.rang_in.remove(0);
                        }
                        m.rang_in.push((from, now));
                    }
                }
            }
            out.push(Effect::Decision(d));
            return;
        }
        let local = self.local(&a.account, now);
        let mut deny = false;
        // Rules that denied the call; the others (caps, alerts) go to `d.rules`.
        let mut deny_rules: Vec<String> = vec![];
        let mut cap: Option<u32> = None;
        let mut alerts: Vec<Alert> = vec![];
        let mut cuts: Vec<(String, String)> = vec![];
        let mut new_blocks: Vec<ActiveBlock> = vec![];

        // Blocks in force (expired ones are removed by the next tick, which reports the Unblock).
        for b in &self.blocks {
            if b.until.is_some_and(|u| u <= now) {
                continue;
            }
            if b.account != a.account || b.extension.as_ref().is_some_and(|e| *e != a.extension) {
                continue;
            }
            let covered = match b.limit {
                None => true,
                Some(i) => {
                    self.policy.limits[i as usize].filter.matches(dest.country, dest.number_type, dest.risk)
                }
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

        // A first call to a high-risk kind of destination the account never called: a country
        // (East Timor), or a kind of range in a country it does call (its own premium numbers).
        if self.policy.new_destination_rules {
            if let (Some(region), Some(risk)) = (dest.region, dest.risk) {
                let kind = destination_kind(region, dest.number_type);
                let seen = self.memory.get(&a.account).is_some_and(|m| m.seen.contains(&kind));
                if !seen && risk >= RiskTier::High {
                    let night = self.is_night(local);
                    let revenue_share = matches!(
                        dest.number_type,
                        Some(
                            NumberType::Premium
                                | NumberType::Personal
                                | NumberType::Satellite
                                | NumberType::InternationalNetwork
                        )
                    );
                    let grave = risk == RiskTier::Critical || revenue_share;
                    let denied_here = grave && night;
                    let (rule, sev) = if denied_here {
                        deny = true;
                        deny_rules.push("default.new_critical_destination_night".into());
                        ("default.new_critical_destination_night", Severity::Critical)
                    } else {
                        cap = Some(cap.map_or(NEW_DESTINATION_CAP_S, |c| c.min(NEW_DESTINATION_CAP_S)));
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
                    // One alert per account and kind until it is called (not one per attempt).
                    let memory = self.memory.entry(a.account.clone()).or_default();
                    if !memory.alerted.contains(&kind) {
                        memory.alerted.push(kind);
                        alerts.push(self.alert(
                            now,
                            &a,
                            sev,
                            rule,
                            if denied_here { AlertAction::Deny } else { AlertAction::Alert },
                            format!("{what}: {done}"),
                        ));
                    }
                }
            }
        }

        // Calling back a high-risk number that rang in: wangiri.
        if self.policy.new_destination_rules {
            if let Dialled::E164(to) = dialled {
                let m = self.memory.entry(a.account.clone()).or_default();
                if let Some(&(_, rang)) =
                    m.rang_in.iter().find(|(n, at)| *n == to && now.duration_since(*at) < WANGIRI_MEMORY)
                {
                    let first_alert = !m.wangiri_alerted.contains(&to);
                    if first_alert {
                        m.wangiri_alerted.push(to);
                    }
                    deny = true;
                    deny_rules.push("default.wangiri_callback".into());
                    let msg = format!(
                        "call back to {to} ({}, {} risk), which rang in at {rang}: a wangiri callback, denied",
                        if dest.country.is_empty() { "unknown country" } else { dest.country },
                        dest.risk.unwrap_or_default()
                    );
                    d.explanation.push(msg.clone());
                    if first_alert {
                        alerts.push(self.alert(
                            now,
                            &a,
                            Severity::Critical,
                            "default.wangiri_callback",
                            AlertAction::Deny,
                            msg,
                        ));
                    }
                }
            }
        }

        // Limits.
        let mut keys = vec![];
        for (i, limit) in self.policy.limits.iter().enumerate() {
            if !limit.applies_to(&a.account)
                || !limit.filter.matches(dest.country, dest.number_type, dest.risk)
            {
                continue;
            }
            let scope = match limit.scope {
                ScopeKind::Account => a.account.clone(),
                ScopeKind::Extension => format!("{}/{}", a.account, a.extension),
            };
            let key = (i as u16, scope);
            let state = self.states.entry(key.clone()).or_insert_with(|| LimitState {
                window: limit.window.map(Window::new),
                running: vec![],
                alerted: 0,
            });
            let (used, budget_rates) = usage(limit, state, &self.calls, now, local, 1);
            let critical = used > limit.max || (limit.metric == Metric::Spend && used >= limit.max);
            let warning = limit.warning.is_some_and(|w| used >= w);
            let enforce = !limit.report_only;
            if critical {
                let acts = limit.on_critical;
                let msg = format!(
                    "{}{} reached {} (limit {})",
                    describe(limit),
                    window_text(limit),
                    limit.show(used),
                    limit.show(limit.max)
                );
                if acts.has(Action::Deny) && enforce {
                    deny = true;
                    deny_rules.push(limit.name.clone());
                } else if acts.has(Action::Deny) || acts.has(Action::Alert) {
                    d.rules.push(limit.name.clone());
                }
                d.explanation.push(msg.clone());
                if acts.has(Action::Cut) && enforce {
                    for id in &state.running {
                        cuts.push((id.clone(), limit.name.clone()));
                    }
                }
                if acts.has(Action::Block) && enforce && state.alerted < 2 {
                    new_blocks.push(ActiveBlock {
                        account: a.account.clone(),
                        extension: (limit.scope == ScopeKind::Extension).then(|| a.extension.clone()),
                        limit: Some(i as u16),
                        until: limit.block_for.map(|d| now + d),
                        rule: limit.name.clone(),
                    });
                }
                if acts.has(Action::Alert) && state.alerted < 2 {
                    state.alerted = 2;
                    let action = if acts.has(Action::Block) && enforce {
                        AlertAction::Block
                    } else if acts.has(Action::Deny) && enforce {
                        AlertAction::Deny
                    } else {
                        AlertAction::Alert
                    };
                    alerts.push(alert_for(
                        &self.rater.account(&a.account).tz,
                        now,
                        &a,
                        Severity::Critical,
                        &limit.name,
                        action,
                        msg,
                    ));
                }
            } else if warning && state.alerted < 1 && limit.on_warning.has(Action::Alert) {
                state.alerted = 1;
                let msg = warning_text(limit, used, "");
                alerts.push(alert_for(
                    &self.rater.account(&a.account).tz,
                    now,
                    &a,
                    Severity::Warning,
                    &limit.name,
                    AlertAction::Alert,
                    msg,
                ));
            }
            // The cap: what the budget left allows, shared by the calls already running.
            if !critical && enforce && limit.on_critical.has(Action::Cap) {
                let c = match limit.metric {
                    Metric::Spend => dest.rate.as_ref().map(|r| {
                        let left = limit.max - used - to_units(r.row.connection_fee);
                        let per_minute = budget_rates + to_units(r.row.rate_per_minute);
                        if left <= 0 {
                            0
                        } else if per_minute <= 0 {
                            u32::MAX
                        } else {
                            (left.saturating_mul(60) / per_minute).clamp(0, u32::MAX as i64) as u32
                        }
                    }),
                    Metric::CallDuration => Some(limit.max.clamp(0, u32::MAX as i64) as u32),
                    _ => None,
                };
                if let Some(c) = c {
                    if c == 0 {
                        deny = true;
                        deny_rules.push(limit.name.clone());
                        d.explanation.push(format!("{}: no budget left for this call", describe(limit)));
                    } else if c <= CAP_HORIZON_S && cap.is_none_or(|old| c < old) {
                        cap = Some(c);
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
            }
            keys.push(key);
        }

        for b in new_blocks {
            self.set_block(b, now, out);
        }
        for (id, rule) in cuts {
            self.cut(&id, &rule, out);
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
        for alert in alerts {
            out.push(Effect::Alert(alert));
        }
        if d.allowed {
            if let Some(region) = dest.region {
                self.memory
                    .entry(a.account.clone())
                    .or_default()
                    .mark(destination_kind(region, dest.number_type));
            }
            for k in &keys {
                if let Some(s) = self.states.get_mut(k) {
                    if let Some(w) = s.window.as_mut() {
                        w.add(now, local, 0, 1);
                    }
                    s.running.push(a.call_id.clone());
                }
            }
            self.track(&a, dest.rate, keys);
        }
        out.push(Effect::Decision(d));
    }

    /// Sets a block. A limit that blocks the same account again within
    /// [`BLOCK_ESCALATION`] blocks it until an operator releases it: an attack that resumes
    /// after each expiry is not a coincidence.
    fn set_block(&mut self, mut b: ActiveBlock, now: Timestamp, out: &mut Vec<Effect>) {
        let again = self.block_history.iter().any(|(acc, lim, at)| {
            *acc == b.account && *lim == b.limit && now.duration_since(*at) < BLOCK_ESCALATION
        });
        if again {
            b.until = None;
        }
        self.block_history.retain(|(_, _, at)| now.duration_since(*at) < BLOCK_ESCALATION);
        self.block_history.push((b.account.clone(), b.limit, now));
        out.push(Effect::Block {
            account: b.account.clone(),
            extension: b.extension.clone(),
            rule: b.rule.clone(),
            until: b.until,
        });
        self.blocks.push(b);
    }

    fn track(&mut self, a: &Attempt, rate: Option<RateInfo>, keys: Vec<StateKey>) {
        self.calls.insert(
            a.call_id.clone(),
            Call {
                account: a.account.clone(),
                extension: a.extension.clone(),
                answered: None,
                rate,
                keys,
                cut: false,
            },
        );
    }

    fn alert(
        &self,
        now: Timestamp,
        a: &Attempt,
        sev: Severity,
        rule: &str,
        action: AlertAction,
        msg: String,
    ) -> Alert {
        alert_for(&self.rater.account(&a.account).tz, now, a, sev, rule, action, msg)
    }

    fn cut(&mut self, call_id: &str, rule: &str, out: &mut Vec<Effect>) {
        if let Some(c) = self.calls.get_mut(call_id) {
            if !c.cut {
                c.cut = true;
                out.push(Effect::Cut { call_id: call_id.to_string(), rule: rule.to_string() });
            }
        }
    }

    fn end(&mut self, call_id: &str, billsec: Option<u32>, now: Timestamp) {
        let Some(call) = self.calls.remove(call_id) else { return };
        let talk = billsec
            .or_else(|| call.answered.map(|a| now.duration_since(a).as_secs().max(0) as u32))
            .unwrap_or(0);
        let units = call.rate.as_ref().map_or(0, |r| r.units(talk));
        let local = self.local(&call.account, now);
        for k in &call.keys {
            if let Some(s) = self.states.get_mut(k) {
                s.running.retain(|id| id != call_id);
                if let Some(w) = s.window.as_mut() {
                    w.add(now, local, units, 0);
                }
            }
        }
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let expired: Vec<ActiveBlock> =
            self.blocks.iter().filter(|b| b.until.is_some_and(|u| u <= now)).cloned().collect();
        self.blocks.retain(|b| b.until.is_none_or(|u| u > now));
        for b in expired {
            out.push(Effect::Unblock { account: b.account, extension: b.extension, rule: b.rule });
        }
        let learning = self.learn_until.is_some_and(|t| now < t);
        let mut keys: Vec<StateKey> =
            self.states.iter().filter(|(_, s)| !s.running.is_empty()).map(|(k, _)| k.clone()).collect();
        keys.sort();
        for key in keys {
            let limit = &self.policy.limits[key.0 as usize];
            let Some(first) = self.states[&key].running.first().cloned() else { continue };
            let Some(call) = self.calls.get(&first) else { continue };
            let account = call.account.clone();
            let extension = call.extension.clone();
            let local = self.local(&account, now);
            let enforce = !limit.report_only && !learning;
            let mut to_block = None;
            match limit.metric {
                Metric::Spend => {
                    let state = self.states.get_mut(&key).expect("key from the map");
                    let (used, _) = usage(limit, state, &self.calls, now, local, 0);
                    let a = Attempt { call_id: String::new(), account, extension, ..Attempt::default() };
                    if used >= limit.max {
                        let cut = limit.on_critical.has(Action::Cut) && enforce;
                        let running = state.running.clone();
                        if limit.on_critical.has(Action::Alert) && state.alerted < 2 {
                            state.alerted = 2;
                            let msg = format!(
                                "{}{} reached {} with {} calls running (limit {}){}",
                                describe(limit),
                                window_text(limit),
                                limit.show(used),
                                running.len(),
                                limit.show(limit.max),
                                if cut { ": running calls cut" } else { "" }
                            );
                            let action = if cut { AlertAction::Cut } else { AlertAction::Alert };
                            out.push(Effect::Alert(alert_for(
                                &self.rater.account(&a.account).tz,
                                now,
                                &a,
                                Severity::Critical,
                                &limit.name,
                                action,
                                msg,
                            )));
                        }
                        if limit.on_critical.has(Action::Block)
                            && enforce
                            && !self.blocks.iter().any(|b| b.limit == Some(key.0) && b.account == a.account)
                        {
                            let b = ActiveBlock {
                                account: a.account.clone(),
                                extension: (limit.scope == ScopeKind::Extension).then(|| a.extension.clone()),
                                limit: Some(key.0),
                                until: limit.block_for.map(|d| now + d),
                                rule: limit.name.clone(),
                            };
                            to_block = Some(b);
                        }
                        if cut {
                            let name = limit.name.clone();
                            for id in running {
                                self.cut(&id, &name, out);
                            }
                        }
                    } else if limit.warning.is_some_and(|w| used >= w)
                        && state.alerted < 1
                        && limit.on_warning.has(Action::Alert)
                    {
                        state.alerted = 1;
                        let msg = warning_text(limit, used, " with calls running");
                        out.push(Effect::Alert(alert_for(
                            &self.rater.account(&a.account).tz,
                            now,
                            &a,
                            Severity::Warning,
                            &limit.name,
                            AlertAction::Alert,
                            msg,
                        )));
                    }
                }
                Metric::CallDuration if enforce && limit.on_critical.has(Action::Cut) => {
                    let longest = SignedDuration::from_secs(limit.max);
                    let name = limit.name.clone();
                    let over: Vec<String> = self.states[&key]
                        .running
                        .iter()
                        .filter(|id| {
                            self.calls
                                .get(*id)
                                .and_then(|c| c.answered)
                                .is_some_and(|ans| now.duration_since(ans) >= longest)
                        })
                        .cloned()
                        .collect();
                    for id in over {
                        self.cut(&id, &name, out);
                    }
                }
                _ => {}
            }
            if let Some(b) = to_block {
                self.set_block(b, now, out);
            }
        }
        // Re-arm alerts of windows that fell back below their warning level.
        for (key, state) in self.states.iter_mut() {
            if state.alerted == 0 {
                continue;
            }
            let limit = &self.policy.limits[key.0 as usize];
            let account = key.1.split('/').next().unwrap_or("");
            let local = self.rater.account(account).tz.to_datetime(now);
            let (used, _) = usage(limit, state, &self.calls, now, local, 0);
            let level = limit.warning.unwrap_or(limit.max);
            if used < level && (limit.metric == Metric::Spend || limit.metric == Metric::Calls) {
                state.alerted = 0;
            }
        }
    }

    fn command(&mut self, c: Command, out: &mut Vec<Effect>) {
        match c {
            Command::Block { account, extension, until, reason } => {
                let rule = format!("operator.block: {reason}");
                out.push(Effect::Block {
                    account: account.clone(),
                    extension: extension.clone(),
                    rule: rule.clone(),
                    until,
                });
                self.blocks.push(ActiveBlock { account, extension, limit: None, until, rule });
            }
            Command::Unblock { account, extension } => {
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.blocks)
                    .into_iter()
                    .partition(|b| b.account == account && (extension.is_none() || b.extension == extension));
                self.blocks = kept;
                for b in gone {
                    out.push(Effect::Unblock { account: b.account, extension: b.extension, rule: b.rule });
                }
                // Windows that blocked start over, so released traffic is not cut again at once.
                for (key, s) in self.states.iter_mut() {
                    if key.1 == account || key.1.starts_with(&format!("{account}/")) {
                        s.alerted = 0;
                    }
                }
            }
        }
    }
}

/// (used, sum of per-minute rates of running calls) of a limit state; `extra` counts the call
/// being authorized for calls and concurrency.
fn usage(
    limit: &Limit,
    state: &mut LimitState,
    calls: &HashMap<String, Call>,
    now: Timestamp,
    local: DateTime,
    extra: i64,
) -> (i64, i64) {
    let running = state.running.iter().filter_map(|id| calls.get(id));
    match limit.metric {
        Metric::Spend => {
            let ended = state.window.as_mut().map_or(0, |w| w.totals(now, local).0);
            let (live, rates) =
                running.fold((0, 0), |(s, r), c| (s + c.running_units(now), r + c.rate_per_minute_units()));
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
    if to.is_empty() {
        what.to_string()
    } else {
        format!("{what} to {}", to.join(", "))
    }
}

fn alert_for(
    tz: &TimeZone,
    now: Timestamp,
    a: &Attempt,
    sev: Severity,
    rule: &str,
    action: AlertAction,
    message: String,
) -> Alert {
    Alert {
        time: now.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        account: a.account.clone(),
        extension: a.extension.clone(),
        severity: sev,
        rule: rule.to_string(),
        action,
        call_id: a.call_id.clone(),
        message,
    }
}
