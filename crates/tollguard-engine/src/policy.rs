//! The policy: limits per scope with warning and critical levels, each with its actions.
//!
//! Written in TOML (`[[limit]]` tables in the configuration, or the built-in
//! `default-policy.toml`), validated once into [`Policy`]. Every field is documented on
//! [`LimitSpec`]; `docs/policy.md` is the user reference.

use jiff::SignedDuration;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollguard_core::money::parse_amount;
use tollguard_core::numbering::{NumberType, RiskTier};

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
}

fn default_true() -> bool {
    true
}

impl Default for PolicySpec {
    /// No configuration at all: the built-in rules.
    fn default() -> Self {
        PolicySpec { defaults: true, night_hours: None, limit: Vec::new() }
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

/// A set of actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// A validated limit.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Replaced by an account's newer limits: no longer applied (its state stays until its calls end).
    pub retired: bool,
    /// As it was written (for editors that show it again).
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

    /// Validates a policy; `defaults` adds the built-in rules first.
    pub fn from_spec(spec: &PolicySpec) -> Result<Policy, String> {
        let mut specs = Vec::new();
        if spec.defaults {
            let builtin: PolicySpec =
                toml::from_str(DEFAULT_POLICY).map_err(|e| format!("built-in policy: {e}"))?;
            specs.extend(builtin.limit);
        }
        specs.extend(spec.limit.iter().cloned());
        let mut limits = Vec::new();
        for (i, l) in specs.iter().enumerate() {
            limits.push(validate(l).map_err(|e| format!("limit {} ({:?}): {e}", i + 1, l.name))?);
        }
        let night = spec.night_hours.unwrap_or([20, 7]);
        if night[0] > 23 || night[1] > 23 {
            return Err("night_hours must be hours 0-23".into());
        }
        Ok(Policy { limits, new_destination_rules: spec.defaults, night_hours: (night[0], night[1]) })
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
        retired: false,
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
