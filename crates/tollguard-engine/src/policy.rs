//! The policy: limits per scope with warning and critical levels, each with its actions.
//!
//! Written in TOML (`[[limit]]` tables in the configuration, or the built-in
//! `default-policy.toml`), validated once into [`Policy`]. Every field is documented on
//! [`LimitSpec`]; `docs/policy.md` is the user reference.

use jiff::SignedDuration;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollguard_core::money::parse_amount;
use tollguard_core::numbering::{NumberType, RiskTier, E164};

use crate::window::{days_since_epoch, Local};
use crate::Destinations;

/// The `[policy]` table and its `[[policy.limit]]` entries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Keep the built-in default rules (zero-configuration protection) besides these limits.
    /// Default true.
    #[serde(default = "default_true")]
    pub defaults: bool,
    /// Local hours counted as night for the new-destination rules, `[from, to)`, e.g. `[20, 7]`.
    /// Weekends (Saturday, Sunday) count as night all day. Default `[20, 7]`.
    #[serde(default)]
    pub night_hours: Option<[u8; 2]>,
    /// Limits.
    #[serde(default)]
    pub limit: Vec<LimitSpec>,
    /// Allowed and denied destinations: `[[policy.destinations]]`.
    #[serde(default)]
    pub destinations: Vec<DestinationsSpec>,
}

fn default_true() -> bool {
    true
}

impl Default for PolicySpec {
    /// No configuration at all: the built-in rules.
    fn default() -> Self {
        PolicySpec { defaults: true, night_hours: None, limit: Vec::new(), destinations: Vec::new() }
    }
}

/// One `[[limit]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Name, shown in decisions and alerts (`rules`).
    pub name: String,
    /// Accounts it applies to; empty: every account.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// What is counted together: `account` (default) or `extension` (each extension of an
    /// account on its own).
    #[serde(default)]
    pub scope: ScopeKind,
    /// `spend` (money, in the first deck's currency), `calls` (calls allowed in the window),
    /// `concurrent` (calls running at once) or `call_duration` (seconds of one call).
    pub metric: Metric,
    /// For `spend` and `calls`: `hour`, `day`, `week` (from Monday), `month` (calendar, in the
    /// account's zone) or `rolling_1h`, `rolling_24h`, `rolling_72h`, `rolling_7d`.
    #[serde(default)]
    pub window: Option<WindowKind>,
    /// The critical level: a decimal amount for `spend`, a whole number otherwise.
    pub max: String,
    /// The warning level as a percentage of `max` (e.g. 80). Default: no warning.
    #[serde(default)]
    pub warning_percent: Option<u8>,
    /// Actions at the warning level. Default `["alert"]`.
    #[serde(default)]
    pub on_warning: Option<Vec<Action>>,
    /// Actions at the critical level. Default: `spend` `["alert", "deny", "cap", "cut"]`;
    /// `calls` and `concurrent` `["alert", "deny"]`; `call_duration` `["cap", "cut"]`.
    #[serde(default)]
    pub on_critical: Option<Vec<Action>>,
    /// How long a `block` action lasts, e.g. `"2h"`, `"30m"`; absent: until an operator unblocks.
    #[serde(default)]
    pub block_for: Option<String>,
    /// Only calls to these destination countries (ISO alpha-2, `001` for non-geographic).
    #[serde(default)]
    pub countries: Vec<String>,
    /// Only calls to these number types (`premium`, `satellite`, ...).
    #[serde(default)]
    pub number_types: Vec<String>,
    /// Only calls to these risk tiers (`high`, `critical`, ...).
    #[serde(default)]
    pub risk: Vec<String>,
    /// Only calls to a kind of destination (a country; a revenue-share or unknown-type range
    /// within it) that the account first called in the last 30 days, not while learning nor in
    /// the account's own first 7 days of calls: a new destination's own budget until it has a
    /// history. An operator's allowance for the country lifts it. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_destinations: bool,
    /// Report only: alerts are raised, but calls are never denied, capped, cut or blocked.
    #[serde(default)]
    pub report_only: bool,
    /// When calls count in it, by the account's business hours at the call's start: `always`
    /// (default), `business_hours` or `outside_business_hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
}

/// What a limit counts together.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// The whole account.
    #[default]
    Account,
    /// Each extension of an account.
    Extension,
    /// Each trunk of an account (the authorization's `trunk`, or the peer of a record's
    /// destination channel: see [`crate::trunk_of`]); calls with no trunk are not counted.
    Trunk,
}

impl ScopeKind {
    /// Which of a limit's states counts a call from extension `ext` on trunk `trunk`:
    /// `Some(None)` the account's, `Some(Some(key))` that extension's or trunk's; `None`: the call
    /// is not counted (a per-trunk limit, and no trunk known).
    pub(crate) fn key<'a>(self, ext: &'a str, trunk: &'a str) -> Option<Option<&'a str>> {
        match self {
            ScopeKind::Account => Some(None),
            ScopeKind::Extension => Some(Some(ext)),
            ScopeKind::Trunk if trunk.is_empty() => None,
            ScopeKind::Trunk => Some(Some(trunk)),
        }
    }
}

/// What a limit measures.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Money, counting calls still running (rate x elapsed).
    Spend,
    /// Calls allowed in the window.
    Calls,
    /// Calls running at once.
    Concurrent,
    /// Seconds of talk time of one call.
    CallDuration,
}

/// Windows of `spend` and `calls` limits.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Calendar hour in the account's zone.
    Hour,
    /// Calendar day in the account's zone (resets at local midnight).
    Day,
    /// Calendar week from Monday 00:00 local.
    Week,
    /// Calendar month.
    Month,
    /// The last 60 minutes (5-minute steps).
    #[serde(rename = "rolling_1h")]
    Rolling1h,
    /// The last 24 hours (1-hour steps).
    #[serde(rename = "rolling_24h")]
    Rolling24h,
    /// The last 72 hours (3-hour steps).
    #[serde(rename = "rolling_72h")]
    Rolling72h,
    /// The last 7 days (7-hour steps).
    #[serde(rename = "rolling_7d")]
    Rolling7d,
}

impl WindowKind {
    /// The name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Hour => "hour",
            WindowKind::Day => "day",
            WindowKind::Week => "week",
            WindowKind::Month => "month",
            WindowKind::Rolling1h => "rolling_1h",
            WindowKind::Rolling24h => "rolling_24h",
            WindowKind::Rolling72h => "rolling_72h",
            WindowKind::Rolling7d => "rolling_7d",
        }
    }
}

/// What happens at a level.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Raise an alert (warning or critical, by level).
    Alert,
    /// Deny new calls that match.
    Deny,
    /// Give new calls at most the time the budget left allows.
    Cap,
    /// End matching calls that are running.
    Cut,
    /// Block the scope for matching destinations (`block_for`, or until unblocked).
    Block,
}

impl Action {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Deny => "deny",
            Action::Cap => "cap",
            Action::Cut => "cut",
            Action::Block => "block",
        }
    }
}

/// A set of actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actions(u8);

impl Actions {
    fn from_list(list: &[Action]) -> Actions {
        Actions(list.iter().fold(0, |m, a| m | (1 << *a as u8)))
    }

    /// Whether the set holds `a`.
    pub fn has(self, a: Action) -> bool {
        self.0 & (1 << a as u8) != 0
    }
}

/// Which calls a limit looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestFilter {
    /// Countries (empty: any).
    pub countries: Vec<String>,
    /// Number types bit set (0: any).
    pub types: u16,
    /// Risk tiers bit set (0: any).
    pub risks: u8,
    /// Only calls to a kind of destination the account called first lately.
    pub new_only: bool,
}

impl DestFilter {
    /// Whether a destination passes; `new`: the account first called its kind lately.
    pub fn matches(
        &self,
        country: &str,
        number_type: Option<NumberType>,
        risk: Option<RiskTier>,
        new: bool,
    ) -> bool {
        if self.new_only && !new {
            return false;
        }
        if !self.countries.is_empty() && !self.countries.iter().any(|c| c == country) {
            return false;
        }
        if self.types != 0 && number_type.is_none_or(|t| self.types & (1 << t as u16) == 0) {
            return false;
        }
        if self.risks != 0 && risk.is_none_or(|r| self.risks & (1 << r as u8) == 0) {
            return false;
        }
        true
    }

    /// True when the filter passes every call.
    pub fn is_any(&self) -> bool {
        self.countries.is_empty() && self.types == 0 && self.risks == 0 && !self.new_only
    }
}

/// When a limit or a destinations rule applies, by the account's business hours at the call's
/// start (in the account's zone; a holiday is outside business hours all day).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// At any time.
    #[default]
    Always,
    /// In the account's business hours.
    BusinessHours,
    /// Outside them: nights, weekends and holidays as the account's business hours say.
    OutsideBusinessHours,
}

impl When {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            When::Always => "always",
            When::BusinessHours => "business_hours",
            When::OutsideBusinessHours => "outside_business_hours",
        }
    }

    /// ` in business hours`, ` outside business hours`, or nothing, to follow a description.
    pub fn text(self) -> &'static str {
        match self {
            When::Always => "",
            When::BusinessHours => " in business hours",
            When::OutsideBusinessHours => " outside business hours",
        }
    }
}

/// One `[[policy.destinations]]`: destinations denied, or the only ones allowed, for outbound
/// calls of every account or of some (and optionally of some extensions).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DestinationsSpec {
    /// Name, shown in decisions and alerts (`rules`).
    pub name: String,
    /// Accounts it applies to; empty: every account.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Calling extensions it applies to; empty: every extension.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Calls to any of these are denied.
    #[serde(default)]
    pub deny: Option<DestinationList>,
    /// Calls to anything but these are denied (countries and prefixes).
    #[serde(default)]
    pub allow_only: Option<DestinationList>,
    /// When it applies: `always` (default), `business_hours` or `outside_business_hours`.
    #[serde(default)]
    pub when: Option<When>,
}

/// Destinations as written: `{ countries = ["CU"], risk = ["critical"], prefixes = ["+882"] }`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DestinationList {
    /// ISO 3166 alpha-2 codes (`001` for non-geographic numbers).
    #[serde(default)]
    pub countries: Vec<String>,
    /// Risk tiers (`low`, `medium`, `high`, `critical`).
    #[serde(default)]
    pub risk: Vec<String>,
    /// E.164 prefixes, e.g. `"+882"` (the `+` is optional).
    #[serde(default)]
    pub prefixes: Vec<String>,
}

impl DestinationList {
    /// Validated into the destinations blocks use.
    fn validate(&self) -> Result<Destinations, String> {
        let d = Destinations::parse(&self.countries, &self.risk, &self.prefixes, true)?;
        if d.is_empty() {
            return Err("it lists no countries, risk tiers or prefixes".into());
        }
        Ok(d)
    }
}

/// A validated `[[policy.destinations]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationRule {
    /// Name, as in `rules`.
    pub name: String,
    /// Accounts (empty: all).
    pub accounts: Vec<String>,
    /// Calling extensions (empty: all).
    pub extensions: Vec<String>,
    /// Denied destinations.
    pub deny: Option<Destinations>,
    /// The only destinations allowed.
    pub allow_only: Option<Destinations>,
    /// When it applies.
    pub when: When,
}

impl DestinationRule {
    /// Validates one rule as written.
    pub fn from_spec(s: &DestinationsSpec) -> Result<DestinationRule, String> {
        if s.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        let deny = s.deny.as_ref().map(|d| d.validate().map_err(|e| format!("deny: {e}"))).transpose()?;
        let allow_only = s
            .allow_only
            .as_ref()
            .map(|d| d.validate().map_err(|e| format!("allow_only: {e}")))
            .transpose()?;
        if allow_only.as_ref().is_some_and(|d| !d.risks.is_empty()) {
            return Err("allow_only: takes countries and prefixes, not risk tiers (deny them instead)".into());
        }
        if deny.is_none() && allow_only.is_none() {
            return Err("give deny, allow_only or both".into());
        }
        Ok(DestinationRule {
            name: s.name.clone(),
            accounts: s.accounts.clone(),
            extensions: s.extensions.clone(),
            deny,
            allow_only,
            when: s.when.unwrap_or_default(),
        })
    }

    /// Whether it applies to calls of an account's extension.
    pub fn applies_to(&self, account: &str, extension: &str) -> bool {
        (self.accounts.is_empty() || self.accounts.iter().any(|a| a == account))
            && (self.extensions.is_empty() || self.extensions.iter().any(|e| e == extension))
    }

    /// Why a call to this destination is denied, or `None` when the rule lets it through.
    pub fn denies(&self, country: &str, risk: Option<RiskTier>, number: Option<&E164>) -> Option<String> {
        if let Some(d) = &self.deny {
            if d.covers(country, risk, number) {
                return Some(format!("among the denied destinations ({})", d.describe()));
            }
        }
        match &self.allow_only {
            Some(d) if !d.covers(country, risk, number) => {
                Some(format!("not among the allowed destinations ({})", d.describe()))
            }
            _ => None,
        }
    }
}

/// Business hours in a week: `"Mon-Fri 08:00-12:30, 13:30-18:00; Sat 09:00-12:00"`.
///
/// Parts separated by `;`, each days (`Mon-Fri`, `Sat`, `Mon,Wed,Fri`; full names too) then one
/// or more ranges `HH:MM-HH:MM` separated by commas; `24:00` may end a range, and a range whose
/// end is before its start runs past midnight into the next day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WeeklyHours {
    /// (weekday, 0 on Monday; from; to) in minutes of the local day, `[from, to)`.
    ranges: Vec<(u8, u16, u16)>,
}

const DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl WeeklyHours {
    /// Parses the text (see the type).
    pub fn parse(text: &str) -> Result<WeeklyHours, String> {
        let example = "e.g. \"Mon-Fri 08:00-18:00\"";
        let mut ranges = Vec::new();
        for part in text.split(';') {
            let part = part.trim();
            let Some((days, times)) = part.split_once(char::is_whitespace) else {
                return Err(format!("business hours {text:?}: {part:?} is not days then times ({example})"));
            };
            let days = parse_days(days).map_err(|e| format!("business hours {text:?}: {e}"))?;
            let mut any = false;
            for r in times.split(|c: char| c == ',' || c.is_whitespace()).filter(|r| !r.is_empty()) {
                any = true;
                let bad = || format!("business hours {text:?}: {r:?} is not a range HH:MM-HH:MM ({example})");
                let (from, to) = r.split_once('-').ok_or_else(bad)?;
                let (from, to) = (minutes(from, false).ok_or_else(bad)?, minutes(to, true).ok_or_else(bad)?);
                if from == to {
                    return Err(format!("business hours {text:?}: {r:?} is an empty range"));
                }
                for d in (0..7u8).filter(|d| days & (1 << d) != 0) {
                    if from < to {
                        ranges.push((d, from, to));
                    } else {
                        // Past midnight: the rest of the day, and the next morning.
                        ranges.push((d, from, 24 * 60));
                        if to > 0 {
                            ranges.push(((d + 1) % 7, 0, to));
                        }
                    }
                }
            }
            if !any {
                return Err(format!("business hours {text:?}: {part:?} has no times ({example})"));
            }
        }
        ranges.sort_unstable();
        Ok(WeeklyHours { ranges })
    }

    /// Whether the week's hours hold a local weekday (0 on Monday) and minute of the day.
    fn holds(&self, weekday: u8, minute: u16) -> bool {
        self.ranges.iter().any(|&(d, from, to)| d == weekday && from <= minute && minute < to)
    }
}

impl TryFrom<String> for WeeklyHours {
    type Error = String;
    fn try_from(s: String) -> Result<WeeklyHours, String> {
        WeeklyHours::parse(&s)
    }
}

/// Days as a bit set (bit 0 Monday): `Mon-Fri`, `Sat,Sun`, `Fri-Mon` (wraps), full names too.
fn parse_days(text: &str) -> Result<u8, String> {
    let day = |s: &str| {
        let l = s.to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|n| l.len() >= 3 && n.starts_with(&l))
            .map(|i| i as u8)
            .ok_or_else(|| format!("{s:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
    };
    let mut set = 0u8;
    for item in text.split(',').filter(|s| !s.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                let (mut d, b) = (day(a)?, day(b)?);
                set |= 1 << d;
                while d != b {
                    d = (d + 1) % 7;
                    set |= 1 << d;
                }
            }
            None => set |= 1 << day(item)?,
        }
    }
    if set == 0 {
        return Err(format!("{text:?} names no days"));
    }
    Ok(set)
}

/// `HH:MM` (or `H:MM`) as minutes of the day; `24:00` only as a range's end.
fn minutes(s: &str, end: bool) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// A holiday, `YYYY-MM-DD`, a date in the account's own zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Holiday {
    /// Local days since 1970-01-01.
    day: i64,
}

impl Holiday {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Holiday, String> {
        let bad = |why: String| format!("holiday {s:?} is not a date YYYY-MM-DD{why}");
        if s.len() != 10 {
            return Err(bad(String::new()));
        }
        let d: jiff::civil::Date = s.parse().map_err(|e| bad(format!(": {e}")))?;
        Ok(Holiday { day: days_since_epoch(d.year() as i64, d.month() as i64, d.day() as i64) })
    }
}

impl TryFrom<String> for Holiday {
    type Error = String;
    fn try_from(s: String) -> Result<Holiday, String> {
        Holiday::parse(&s)
    }
}

/// An account's business hours and holidays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusinessHours {
    hours: WeeklyHours,
    /// Local days since 1970, sorted.
    holidays: Vec<i64>,
}

impl BusinessHours {
    /// Business hours with holidays (closed all day).
    pub fn new(hours: WeeklyHours, holidays: &[Holiday]) -> BusinessHours {
        let mut days: Vec<i64> = holidays.iter().map(|h| h.day).collect();
        days.sort_unstable();
        days.dedup();
        BusinessHours { hours, holidays: days }
    }

    /// Whether a local time is in business hours.
    pub(crate) fn is_open(&self, local: Local) -> bool {
        self.holidays.binary_search(&local.day()).is_err()
            && self.hours.holds(local.weekday() as u8, local.minute_of_day() as u16)
    }
}

/// Business hours by account, and for the accounts without their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calendars {
    /// For every account without its own.
    pub default: Option<BusinessHours>,
    /// By account.
    pub accounts: std::collections::BTreeMap<String, BusinessHours>,
}

impl Calendars {
    /// An account's business hours, if it has any.
    pub fn of(&self, account: &str) -> Option<&BusinessHours> {
        self.accounts.get(account).or(self.default.as_ref())
    }

    /// Checks that every account a rule with `when` applies to has business hours.
    fn check(&self, when: When, accounts: &[String]) -> Result<(), String> {
        if when == When::Always {
            return Ok(());
        }
        let w = when.as_str();
        if accounts.is_empty() {
            if self.default.is_none() {
                return Err(format!(
                    "when = {w:?} needs business hours for every account: set business_hours in [defaults]"
                ));
            }
        } else if let Some(a) = accounts.iter().find(|a| self.of(a).is_none()) {
            return Err(format!(
                "when = {w:?} needs business hours for account {a:?}: set business_hours in [accounts.{a}] \
                 or [defaults]"
            ));
        }
        Ok(())
    }
}

/// A validated limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Name, as in `rules`.
    pub name: String,
    /// Accounts (empty: all).
    pub accounts: Vec<String>,
    /// Scope.
    pub scope: ScopeKind,
    /// Metric.
    pub metric: Metric,
    /// Window (spend and calls).
    pub window: Option<WindowKind>,
    /// Critical level: money in ten-thousandths for spend, else a count or seconds.
    pub max: i64,
    /// Warning level in the same unit.
    pub warning: Option<i64>,
    /// Actions at the warning level.
    pub on_warning: Actions,
    /// Actions at the critical level.
    pub on_critical: Actions,
    /// How long a block lasts.
    pub block_for: Option<SignedDuration>,
    /// Destinations it looks at.
    pub filter: DestFilter,
    /// Alerts only.
    pub report_only: bool,
    /// When calls count in it.
    pub when: When,
    /// Replaced by an account's newer limits: no longer applied (its state stays until its calls end).
    pub retired: bool,
    /// Set for an account by its customer at run time (set by the engine): the customer may lift
    /// its blocks, also after replacing it.
    pub by_customer: bool,
    /// As it was written (for editors that show it again).
    #[serde(with = "crate::snapshot::json_text")]
    pub spec: LimitSpec,
}

impl Limit {
    /// Whether the limit applies to an account.
    pub fn applies_to(&self, account: &str) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|a| a == account)
    }

    /// Formats an amount in the limit's unit for messages.
    pub fn show(&self, v: i64) -> String {
        match self.metric {
            Metric::Spend => format!("{:.2}", Decimal::new(v, 4)),
            Metric::CallDuration => format!("{v} s"),
            _ => v.to_string(),
        }
    }
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The limits, built-in defaults first when kept.
    pub limits: Vec<Limit>,
    /// Whether the built-in new-destination rules are on.
    pub new_destination_rules: bool,
    /// Night hours `[from, to)`.
    pub night_hours: (u8, u8),
    /// Allowed and denied destinations (`[[policy.destinations]]`), in order.
    pub destinations: Vec<DestinationRule>,
    /// Accounts' business hours (`when`).
    pub calendars: Calendars,
}

/// Parses `"2h"`, `"30m"`, `"90s"`, `"1d"`.
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().map_err(|_| format!("not a duration: {s:?} (e.g. 30m, 2h, 1d)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("not a duration: {s:?} (e.g. 30m, 2h, 1d)")),
    };
    Ok(SignedDuration::from_secs(secs))
}

/// The built-in default policy (see `default-policy.toml` and docs/policy.md).
pub const DEFAULT_POLICY: &str = include_str!("default-policy.toml");

impl Policy {
    /// The built-in policy alone.
    pub fn builtin() -> Policy {
        Policy::from_spec(&PolicySpec::default()).expect("the built-in policy is valid")
    }

    /// Validates a policy; `defaults` adds the built-in rules first. Accounts have no business
    /// hours: a rule with `when` is refused.
    pub fn from_spec(spec: &PolicySpec) -> Result<Policy, String> {
        Policy::from_spec_with(spec, Calendars::default())
    }

    /// Validates a policy with the accounts' business hours: every account a rule with `when`
    /// applies to must have them.
    pub fn from_spec_with(spec: &PolicySpec, calendars: Calendars) -> Result<Policy, String> {
        let mut specs = Vec::new();
        if spec.defaults {
            let builtin: PolicySpec =
                toml::from_str(DEFAULT_POLICY).map_err(|e| format!("built-in policy: {e}"))?;
            specs.extend(builtin.limit);
        }
        specs.extend(spec.limit.iter().cloned());
        let mut limits = Vec::new();
        for (i, l) in specs.iter().enumerate() {
            let at = |e: String| format!("limit {} ({:?}): {e}", i + 1, l.name);
            let limit = validate(l).map_err(at)?;
            calendars.check(limit.when, &limit.accounts).map_err(at)?;
            limits.push(limit);
        }
        let mut destinations = Vec::new();
        for (i, r) in spec.destinations.iter().enumerate() {
            let at = |e: String| format!("destinations {} ({:?}): {e}", i + 1, r.name);
            let rule = DestinationRule::from_spec(r).map_err(at)?;
            calendars.check(rule.when, &rule.accounts).map_err(at)?;
            destinations.push(rule);
        }
        let night = spec.night_hours.unwrap_or([20, 7]);
        if night[0] > 23 || night[1] > 23 {
            return Err("night_hours must be hours 0-23".into());
        }
        Ok(Policy {
            limits,
            new_destination_rules: spec.defaults,
            night_hours: (night[0], night[1]),
            destinations,
            calendars,
        })
    }
}

impl Limit {
    /// Validates one limit as written (the `[[policy.limit]]` fields).
    pub fn from_spec(l: &LimitSpec) -> Result<Limit, String> {
        validate(l)
    }
}

fn validate(l: &LimitSpec) -> Result<Limit, String> {
    if l.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    let max = match l.metric {
        Metric::Spend => {
            let d = parse_amount(&l.max).map_err(|e| format!("max: {e}"))?;
            (d * Decimal::from(10_000)).trunc().try_into().map_err(|_| "max is too large".to_string())?
        }
        _ => l
            .max
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("max must be a whole number, found {:?}", l.max))?,
    };
    if max <= 0 {
        return Err("max must be above zero".into());
    }
    match (l.metric, l.window) {
        (Metric::Spend | Metric::Calls, None) => return Err("spend and calls limits need a window".into()),
        (Metric::Concurrent | Metric::CallDuration, Some(_)) => {
            return Err("concurrent and call_duration limits take no window".into())
        }
        _ => {}
    }
    let warning = match l.warning_percent {
        Some(p) if p == 0 || p >= 100 => return Err("warning_percent must be 1-99".into()),
        Some(p) => Some(max * p as i64 / 100),
        None => None,
    };
    if let Some(a) = l.on_warning.iter().flatten().find(|a| **a != Action::Alert) {
        return Err(format!(
            "on_warning: {:?} is not supported at the warning level, only \"alert\" is (put {:?} in on_critical)",
            a.as_str(),
            a.as_str()
        ));
    }
    let default_critical: &[Action] = match l.metric {
        Metric::Spend => &[Action::Alert, Action::Deny, Action::Cap, Action::Cut],
        Metric::Calls | Metric::Concurrent => &[Action::Alert, Action::Deny],
        Metric::CallDuration => &[Action::Cap, Action::Cut],
    };
    let mut types = 0u16;
    for t in &l.number_types {
        let t = NumberType::parse(t).ok_or_else(|| format!("unknown number type {t:?}"))?;
        types |= 1 << t as u16;
    }
    let mut risks = 0u8;
    for r in &l.risk {
        let r = RiskTier::parse(r).ok_or_else(|| format!("unknown risk tier {r:?}"))?;
        risks |= 1 << r as u8;
    }
    Ok(Limit {
        name: l.name.clone(),
        accounts: l.accounts.clone(),
        scope: l.scope,
        metric: l.metric,
        window: l.window,
        max,
        warning,
        on_warning: Actions::from_list(l.on_warning.as_deref().unwrap_or(&[Action::Alert])),
        on_critical: Actions::from_list(l.on_critical.as_deref().unwrap_or(default_critical)),
        block_for: l.block_for.as_deref().map(parse_duration).transpose()?,
        filter: DestFilter {
            countries: l.countries.iter().map(|c| c.to_ascii_uppercase()).collect(),
            types,
            risks,
            new_only: l.new_destinations,
        },
        report_only: l.report_only,
        when: l.when.unwrap_or_default(),
        retired: false,
        by_customer: false,
        spec: l.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_policy_is_valid() {
        let p = Policy::builtin();
        assert!(p.limits.iter().any(|l| l.name == "default.high_risk_spend_1h"));
        assert!(p.new_destination_rules);
    }

    #[test]
    fn business_hours_past_midnight_wrap_into_the_next_day_and_holidays_close_all_day() {
        use jiff::civil::date;
        let hours = WeeklyHours::parse("Sat-Sun 22:00-02:00; friday 08:00-24:00").unwrap();
        // 2026-01-09 is a Friday, 2026-01-12 a Monday.
        let b = BusinessHours::new(hours, &[Holiday::parse("2026-01-10").unwrap()]);
        for (at, open) in [
            (date(2026, 1, 9).at(23, 59, 59, 0), true),
            (date(2026, 1, 10).at(0, 0, 0, 0), false), // Saturday is a holiday: Friday's 24:00 ends there
            (date(2026, 1, 10).at(23, 0, 0, 0), false),
            (date(2026, 1, 11).at(1, 59, 0, 0), true), // Saturday's range runs into Sunday, not a holiday
            (date(2026, 1, 11).at(2, 0, 0, 0), false),
            (date(2026, 1, 11).at(22, 0, 0, 0), true),
            (date(2026, 1, 12).at(1, 59, 59, 0), true), // Sunday's range wraps into Monday
            (date(2026, 1, 12).at(2, 0, 0, 0), false),
            (date(2026, 1, 12).at(12, 0, 0, 0), false),
        ] {
            assert_eq!(b.is_open(Local::new(at)), open, "{at}");
        }
    }

    #[test]
    fn bad_limits_are_named() {
        let spec: PolicySpec = toml::from_str(
            "defaults = false\n[[limit]]\nname = \"daily\"\nmetric = \"spend\"\nmax = \"500\"\n",
        )
        .unwrap();
        assert_eq!(
            Policy::from_spec(&spec).unwrap_err(),
            "limit 1 (\"daily\"): spend and calls limits need a window"
        );
        let spec: PolicySpec = toml::from_str(
            "defaults = false\n[[limit]]\nname = \"daily\"\nmetric = \"spend\"\nwindow = \"day\"\nmax = \"500,00\"\n",
        )
        .unwrap();
        assert!(Policy::from_spec(&spec).unwrap_err().contains("max: not a decimal amount"));
        let e = toml::from_str::<PolicySpec>(
            "[[limit]]\nname = \"x\"\nmetric = \"spend\"\nwindow = \"dayly\"\nmax = \"1\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `dayly`"), "{e}");
    }
}
