//! Reports read from the store: the incident report, the evidence pack a dispute needs.
//!
//! What the 2011 invoice lacked: which calls (call id, time, extension, number dialled and as E.164,
//! country, type, risk, billed seconds, the rate used, cost), when it started and when it was noticed
//! (first call, first alert, first denial, block), which rules fired with their figures, totals
//! excluding and including VAT, and how every total was computed.
//!
//! The calls are every call of the account from the incident's first suspicious call (or its first
//! alert) to its end (closed: when it was closed; open: the time the report is made), whether a
//! rule fired on it or not: the report shows what happened, not only what tollguard noticed.
//! Billed seconds come from the call record where there is one (the record wins), else from the end
//! event; a lost call (no end) is counted from its answer to when tollguard closed it.

use anyhow::{anyhow, Result};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use tollguard_core::cdr::{Cdr, Direction};
use tollguard_core::numbering::Dialled;
use tollguard_core::rater::Rater;
use tollguard_core::reconcile::{self, Line, Side, Status};
use tollguard_store::Store;

/// One call of an incident report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CallLine {
    /// The switch's call id.
    pub call_id: String,
    /// When it was attempted, in the account's zone.
    pub time: String,
    /// The calling extension.
    pub extension: String,
    /// The number as dialled.
    pub dialled: String,
    /// As E.164 (`+...`), or what it is (`internal`, `emergency`, `invalid`).
    pub e164: String,
    /// ISO country code of the destination.
    pub country: String,
    /// Number type.
    pub number_type: String,
    /// Risk tier.
    pub risk: String,
    /// `allowed`, `allowed, capped at N s` or `denied`.
    pub decision: String,
    /// Rules that fired on it.
    pub rules: String,
    /// Billed seconds (empty: never answered).
    pub billsec: String,
    /// Where the billed seconds come from: `record`, `end`, `lost`, `not answered`, `denied`.
    pub billsec_from: String,
    /// The rate used: deck row or CGRateS tariff.
    pub rate: String,
    /// Cost, four decimals (empty: not priced).
    pub cost: String,
}

/// Totals of an incident report, as strings (money at four decimals, VAT at the cent).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Calls in the report.
    pub calls: u64,
    /// Allowed.
    pub allowed: u64,
    /// Denied.
    pub denied: u64,
    /// Answered (billed seconds > 0).
    pub answered: u64,
    /// Billed seconds.
    pub billsec: u64,
    /// Calls on which a rule fired.
    pub flagged: u64,
    /// Cost of every call, excluding VAT.
    pub cost: String,
    /// Cost of the calls a rule fired on, excluding VAT.
    pub flagged_cost: String,
    /// VAT on `cost`.
    pub vat: String,
    /// `cost + vat`.
    pub cost_incl_vat: String,
    /// The currency.
    pub currency: String,
}

/// One rule that fired, with how often and the figures of its first firing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleLine {
    /// The rule.
    pub rule: String,
    /// Calls it fired on.
    pub calls: u64,
    /// Alerts it raised.
    pub alerts: u64,
    /// When it first fired.
    pub first: String,
    /// Its figures, as the engine explained them the first time.
    pub figures: String,
}

/// One alert in the report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AlertLine {
    /// When.
    pub time: String,
    /// Severity.
    pub severity: String,
    /// Rule.
    pub rule: String,
    /// Action taken.
    pub action: String,
    /// The call that raised it.
    pub call_id: String,
    /// What it said.
    pub message: String,
}

/// A moment of the timeline.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Moment {
    /// What.
    pub what: String,
    /// When (empty: not yet).
    pub time: String,
    /// Detail.
    pub detail: String,
}

/// The incident report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IncidentReport {
    /// Incident id.
    pub id: i64,
    /// The account.
    pub account: String,
    /// `open`, `acknowledged`, `resolved`, `false_positive`.
    pub state: String,
    /// The zone times are shown in.
    pub zone: String,
    /// The calls' period: from.
    pub from: String,
    /// To.
    pub to: String,
    /// First call, first alert, first denial, block, closing.
    pub timeline: Vec<Moment>,
    /// Rules that fired.
    pub rules: Vec<RuleLine>,
    /// Alerts of the account in the period.
    pub alerts: Vec<AlertLine>,
    /// Every call of the account in the period.
    pub calls: Vec<CallLine>,
    /// Totals.
    pub totals: Totals,
    /// VAT rate, percent.
    pub vat_percent: String,
    /// How each total was computed.
    pub method: Vec<String>,
    /// The incident's state changes (who, when, why).
    pub history: Vec<Moment>,
    /// The service's calls set beside another party's records, when asked for.
    pub reconciliation: Option<Reconciliation>,
}

/// Another party's records of the account's traffic (e.g. the carrier's CDRs), to set beside the
/// calls the service saw.
#[derive(Clone, Debug)]
pub struct ReconcileWith {
    /// What they are, in words (e.g. `carrier.csv (asterisk)`).
    pub source: String,
    /// The records, priced with the service's rates.
    pub records: Vec<Side>,
    /// The account as the records name it (default: the incident's). Records naming no account
    /// are kept.
    pub account: Option<String>,
    /// Most seconds two start times of one call may differ.
    pub time_tolerance_s: u32,
    /// Most seconds two billed durations of one call may differ and still agree.
    pub duration_tolerance_s: u32,
}

/// Totals of one day of a reconciliation (or of all).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReconcileDay {
    /// `YYYY-MM-DD` in the account's zone, or `total`.
    pub day: String,
    /// Calls the service saw.
    pub ours: u64,
    /// Records of the other party.
    pub theirs: u64,
    /// Matched (agreeing or not on duration).
    pub matched: u64,
    /// Matched with durations beyond the tolerance.
    pub duration_differs: u64,
    /// Only the service saw.
    pub ours_only: u64,
    /// Only the other party has.
    pub theirs_only: u64,
    /// Billed seconds, ours.
    pub our_billsec: u64,
    /// Billed seconds, theirs.
    pub their_billsec: u64,
    /// Cost, ours.
    pub our_cost: String,
    /// Cost, theirs.
    pub their_cost: String,
    /// Theirs minus ours.
    pub difference: String,
}

/// One record the two sides do not agree on.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReconcileLine {
    /// `duration_differs`, `ours_only` or `theirs_only`.
    pub status: String,
    /// Start, in the account's zone.
    pub time: String,
    /// The number (E.164 where the plan reads it).
    pub number: String,
    /// Our call id.
    pub our_call_id: String,
    /// Theirs.
    pub their_call_id: String,
    /// Billed seconds, ours.
    pub our_billsec: String,
    /// Theirs.
    pub their_billsec: String,
    /// Cost, ours.
    pub our_cost: String,
    /// Theirs.
    pub their_cost: String,
    /// Theirs minus ours.
    pub difference: String,
    /// Where their record is (file and line).
    pub their_origin: String,
}

/// The reconciliation section of an incident report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Reconciliation {
    /// The other party's records, in words.
    pub source: String,
    /// Per day of the period.
    pub days: Vec<ReconcileDay>,
    /// Over the period.
    pub total: ReconcileDay,
    /// Every record the sides do not agree on, in time order.
    pub differences: Vec<ReconcileLine>,
    /// How the records were matched and counted.
    pub method: Vec<String>,
}

fn ns_to(ts: i64) -> Timestamp {
    Timestamp::from_nanosecond(ts as i128).unwrap_or_default()
}

fn show(t: Timestamp, tz: &TimeZone) -> String {
    tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn four(d: Decimal) -> String {
    format!("{:.4}", d.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
}

/// What is known of one call from the store.
#[derive(Default)]
struct Known {
    decision: Option<(Timestamp, Value)>,
    record: Option<Value>,
    answered: Option<Timestamp>,
    ended: Option<(Timestamp, Value)>,
}

/// Builds incident `id`'s report. `until`: the end of the period for an incident still open
/// (normally now). `vat_percent`: e.g. 21. `with`: another party's records to reconcile the calls
/// with.
pub fn incident_report(
    store: &Store,
    rater: &Rater,
    id: i64,
    until: Timestamp,
    vat_percent: Decimal,
    with: Option<&ReconcileWith>,
) -> Result<IncidentReport> {
    let inc = store.incident(id)?.ok_or_else(|| anyhow!("no incident {id}"))?;
    let data: Value = serde_json::from_str(&inc.data).unwrap_or_default();
    let account = inc.account.clone();
    let tz = rater.account(&account).tz.clone();
    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<Timestamp>().ok());
    // The period: from the first suspicious call (or the first alert) to the closing (or `until`).
    let first_alert_at = parse(&data["first_alert"]["time"]).unwrap_or(ns_to(inc.opened_ns));
    let first_call_id = data["first_suspicious_call"].as_str().unwrap_or("").to_string();
    let first_call_at = match store.decision(&first_call_id)? {
        Some((_, json)) => serde_json::from_str::<Value>(&json).ok().and_then(|v| parse(&v["time"])),
        None => None,
    };
    let from = first_call_at.unwrap_or(first_alert_at).min(first_alert_at);
    let history: Vec<Value> = data["history"].as_array().cloned().unwrap_or_default();
    let closed = matches!(inc.state.as_str(), "resolved" | "false_positive");
    let to = if closed {
        history.last().and_then(|h| parse(&h["time"])).unwrap_or(ns_to(inc.updated_ns))
    } else {
        until
    };
    let currency = currency_of(rater);
    if let Some(gone) = gone_before(store, from)? {
        return Err(anyhow::Error::new(Deleted(format!(
            "incident {id}: its calls from {} on are not all in the store any more ([server] retention deleted what came before {})",
            show(from, &tz),
            show(gone, &tz)
        ))));
    }
    let period = calls_of(store, rater, &account, from, to, closed)?;
    let mut rule_lines: HashMap<String, RuleLine> = HashMap::new();
    let mut rule_order: Vec<String> = vec![];
    let mut totals = Totals { currency: currency.clone(), ..Totals::default() };
    let (mut cost, mut flagged_cost) = (Decimal::ZERO, Decimal::ZERO);
    for c in &period {
        for (i, rule) in c.rules.iter().enumerate() {
            let line = rule_lines.entry(rule.clone()).or_insert_with(|| {
                rule_order.push(rule.clone());
                RuleLine {
                    rule: rule.clone(),
                    calls: 0,
                    alerts: 0,
                    first: show(c.start, &tz),
                    figures: c.explanation.get(i).cloned().unwrap_or_else(|| c.explanation.join("; ")),
                }
            });
            line.calls += 1;
        }
        let flagged = !c.rules.is_empty();
        totals.calls += 1;
        if c.allowed {
            totals.allowed += 1;
        } else {
            totals.denied += 1;
        }
        if c.billsec.is_some_and(|b| b > 0) {
            totals.answered += 1;
        }
        totals.billsec += u64::from(c.billsec.unwrap_or(0));
        totals.flagged += u64::from(flagged);
        cost += c.cost;
        if flagged {
            flagged_cost += c.cost;
        }
    }
    let reconciliation = with.map(|w| reconciliation(&period, w, &account, from, to, &tz, &currency));
    let lines: Vec<CallLine> = period.into_iter().map(|c| c.line).collect();

    // Alerts of the account in the period.
    let mut alerts = vec![];
    for (t, line) in alerts_of(store, &account, from, to, &tz)? {
        let l = rule_lines.entry(line.rule.clone()).or_insert_with(|| {
            rule_order.push(line.rule.clone());
            RuleLine {
                rule: line.rule.clone(),
                calls: 0,
                alerts: 0,
                first: show(t, &tz),
                figures: line.message.clone(),
            }
        });
        l.alerts += 1;
        alerts.push(line);
    }

    // VAT at the cent on the total, the way an invoice does it.
    let vat = (cost * vat_percent / Decimal::from(100))
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    totals.cost = four(cost);
    totals.flagged_cost = four(flagged_cost);
    totals.vat = four(vat);
    totals.cost_incl_vat = four(cost + vat);

    let moment = |what: &str, v: &Value, detail: String| Moment {
        what: what.into(),
        time: parse(&v["time"]).map(|t| show(t, &tz)).unwrap_or_default(),
        detail,
    };
    let first_call = lines.first().cloned();
    let mut timeline = vec![Moment {
        what: "first call of the period".into(),
        time: first_call.as_ref().map(|c| c.time.clone()).unwrap_or_default(),
        detail: first_call
            .map(|c| format!("{} to {} ({})", c.call_id, c.e164, c.decision))
            .unwrap_or_default(),
    }];
    timeline.push(moment(
        "first alert",
        &data["first_alert"],
        format!(
            "{} ({}): {}",
            data["first_alert"]["rule"].as_str().unwrap_or(""),
            data["first_alert"]["severity"].as_str().unwrap_or(""),
            data["first_alert"]["message"].as_str().unwrap_or("")
        ),
    ));
    timeline.push(moment(
        "first call denied",
        &data["first_denial"],
        format!(
            "{} to {}",
            data["first_denial"]["call_id"].as_str().unwrap_or(""),
            data["first_denial"]["to"].as_str().unwrap_or("")
        ),
    ));
    if !data["first_cut"].is_null() {
        timeline.push(moment(
            "first running call cut",
            &data["first_cut"],
            format!(
                "{} ({}), {} cut in all",
                data["first_cut"]["call_id"].as_str().unwrap_or(""),
                data["first_cut"]["rule"].as_str().unwrap_or(""),
                data["calls_cut"].as_i64().unwrap_or(1)
            ),
        ));
    }
    let block_detail = if data["block"].is_null() {
        String::new()
    } else {
        data["block"]["reason"].as_str().or(data["block"]["rule"].as_str()).unwrap_or("blocked").to_string()
    };
    timeline.push(moment("account blocked", &data["block"], block_detail));
    if closed {
        timeline.push(Moment {
            what: format!("incident {}", inc.state.replace('_', " ")),
            time: show(to, &tz),
            detail: String::new(),
        });
    }
    let history = history
        .iter()
        .map(|h| Moment {
            what: h["state"].as_str().unwrap_or("").to_string(),
            time: parse(&h["time"]).map(|t| show(t, &tz)).unwrap_or_default(),
            detail: format!(
                "by {}{}",
                h["by"].as_str().unwrap_or(""),
                h["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default()
            ),
        })
        .collect();

    let pricing = if rater.cgrates().is_some() {
        "the CGRateS tariff plan's price of the billed seconds (docs/integrations/cgrates.md)"
    } else {
        "fee + rate per minute x billed seconds / 60, billed seconds rounded up to the row's increments, \
         rounded once to 4 decimals (docs/rating.md)"
    };
    let method = vec![
        format!(
            "Calls: every call of account {account} attempted from {} to {} ({}), whether a rule fired on it or not.",
            show(from, &tz),
            show(to, &tz),
            tz.iana_name().unwrap_or("the account's zone")
        ),
        "Billed seconds: from the call record where there is one (the record wins); else from the end the \
         switch reported; a call whose end never came is counted from its answer to when tollguard closed it; \
         a denied call has none."
            .to_string(),
        format!("Cost of a call: {pricing}; inbound, internal and emergency calls are not priced."),
        format!(
            "Cost excluding VAT: the sum of the calls' costs, {} {} over {} calls ({} answered, {} billed seconds).",
            currency, totals.cost, totals.calls, totals.answered, totals.billsec
        ),
        format!(
            "Of which the calls a rule fired on: {} {} over {} calls.",
            currency, totals.flagged_cost, totals.flagged
        ),
        format!(
            "VAT: {vat_percent}% of the cost excluding VAT, rounded half up to the cent: {currency} {}; including VAT: \
             {currency} {}.",
            totals.vat, totals.cost_incl_vat
        ),
    ];
    let mut rules: Vec<RuleLine> = rule_order.iter().filter_map(|r| rule_lines.remove(r)).collect();
    rules.sort_by(|a, b| a.first.cmp(&b.first).then(a.rule.cmp(&b.rule)));

    Ok(IncidentReport {
        id,
        account,
        state: inc.state,
        zone: tz.iana_name().unwrap_or("").to_string(),
        from: show(from, &tz),
        to: show(to, &tz),
        timeline,
        rules,
        alerts,
        calls: lines,
        totals,
        vat_percent: vat_percent.normalize().to_string(),
        method,
        history,
        reconciliation,
    })
}

/// Sets the calls the service saw beside `with`'s records of the same period.
fn reconciliation(
    period: &[PeriodCall],
    with: &ReconcileWith,
    account: &str,
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
    currency: &str,
) -> Reconciliation {
    // Ours: the calls that went out (a denied call never reached the network).
    let ours: Vec<Side> = period
        .iter()
        .filter(|c| c.allowed)
        .map(|c| Side {
            call_id: c.line.call_id.clone(),
            origin: "tollguard".into(),
            start: c.start,
            number: if c.line.e164.starts_with('+') { c.line.e164.clone() } else { c.line.dialled.clone() },
            billsec: c.billsec.unwrap_or(0),
            cost: (!c.line.cost.is_empty()).then_some(c.cost),
            account: account.to_string(),
        })
        .collect();
    // Theirs: the records of the account in the period, widened by the time tolerance.
    let named = with.account.as_deref().unwrap_or(account);
    let tol = jiff::SignedDuration::from_secs(i64::from(with.time_tolerance_s));
    let (lo, hi) = (from - tol, to + tol);
    let theirs: Vec<Side> = with
        .records
        .iter()
        .filter(|r| (r.account.is_empty() || r.account == named) && (lo..=hi).contains(&r.start))
        .cloned()
        .collect();
    let outside = with.records.len() - theirs.len();
    let lines = reconcile::reconcile(ours, theirs, with.time_tolerance_s, with.duration_tolerance_s);
    let (days, all) = reconcile::per_day(&lines, tz);
    let day = |d: String, t: &reconcile::Totals| ReconcileDay {
        day: d,
        ours: t.left_calls,
        theirs: t.right_calls,
        matched: t.matched,
        duration_differs: t.duration_differs,
        ours_only: t.left_only,
        theirs_only: t.right_only,
        our_billsec: t.left_billsec,
        their_billsec: t.right_billsec,
        our_cost: four(t.left_cost),
        their_cost: four(t.right_cost),
        difference: four(t.right_cost - t.left_cost),
    };
    let differences = lines
        .iter()
        .filter(|l| l.status != Status::Matched)
        .map(|l: &Line| {
            let (a, b) = (l.left.as_ref(), l.right.as_ref());
            let cost = |s: Option<&Side>| s.and_then(|s| s.cost);
            let diff = cost(b).unwrap_or_default() - cost(a).unwrap_or_default();
            ReconcileLine {
                status: match l.status {
                    Status::LeftOnly => "ours_only",
                    Status::RightOnly => "theirs_only",
                    s => s.as_str(),
                }
                .to_string(),
                time: show(l.start(), tz),
                number: a.or(b).map(|s| s.number.clone()).unwrap_or_default(),
                our_call_id: a.map(|s| s.call_id.clone()).unwrap_or_default(),
                their_call_id: b.map(|s| s.call_id.clone()).unwrap_or_default(),
                our_billsec: a.map(|s| s.billsec.to_string()).unwrap_or_default(),
                their_billsec: b.map(|s| s.billsec.to_string()).unwrap_or_default(),
                our_cost: cost(a).map(four).unwrap_or_default(),
                their_cost: cost(b).map(four).unwrap_or_default(),
                difference: four(diff),
                their_origin: b.map(|s| s.origin.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let method = vec![
        format!(
            "Ours: the {} calls tollguard allowed in the period (denied calls never reached the network), with the \
             billed seconds and cost above. Theirs: the {} records of {} naming account {named} or no account \
             that started from {} to {} (the period widened by {} s); {outside} other records were left out.",
            all.left_calls,
            all.right_calls,
            with.source,
            show(lo, tz),
            show(hi, tz),
            with.time_tolerance_s
        ),
        format!(
            "Matching: by call id where both sides carry it; else the same number (E.164 where the dialling plan \
             reads it), start times at most {} s apart, the closest first. Each record is matched once.",
            with.time_tolerance_s
        ),
        format!(
            "A matched pair whose billed seconds differ by more than {} s is listed as duration_differs.",
            with.duration_tolerance_s
        ),
        format!(
            "Both sides are priced with the same rates, so a difference is the cost of the calls or seconds one \
             side lacks ({currency}, excluding VAT; theirs minus ours)."
        ),
    ];
    Reconciliation {
        source: with.source.clone(),
        days: days.iter().map(|(d, t)| day(d.to_string(), t)).collect(),
        total: day("total".into(), &all),
        differences,
        method,
    }
}

/// One call of an account in a period, as the store knows it, rated as the service rated it.
#[derive(Clone, Debug)]
pub struct PeriodCall {
    /// When it was attempted (or started, for a call known only by its record).
    pub start: Timestamp,
    /// Allowed (or known only by its record).
    pub allowed: bool,
    /// Billed seconds, when known.
    pub billsec: Option<u32>,
    /// Its cost (zero when not priced).
    pub cost: Decimal,
    /// ISO country of the destination.
    pub country: &'static str,
    /// The rules that fired on it, and the engine's explanation.
    pub rules: Vec<String>,
    /// The engine's explanation, one line per figure.
    pub explanation: Vec<String>,
    /// The line as reports show it.
    pub line: CallLine,
}

/// The alerts of `account` raised from `from` to `to`, oldest first, with their times.
fn alerts_of(
    store: &Store,
    account: &str,
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
) -> Result<Vec<(Timestamp, AlertLine)>> {
    let mut out = vec![];
    for a in store.alerts(Some(account), 0, u32::MAX)? {
        let v: Value = serde_json::from_str(&a.json).unwrap_or_default();
        let Some(t) = v["time"].as_str().and_then(|s| s.parse::<Timestamp>().ok()) else { continue };
        if t < from || t > to {
            continue;
        }
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let line = AlertLine {
            time: show(t, tz),
            severity: s("severity"),
            rule: s("rule"),
            action: s("action"),
            call_id: s("call_id"),
            message: s("message"),
        };
        out.push((t, line));
    }
    Ok(out)
}

/// The currency the rater prices in.
pub fn currency_of(rater: &Rater) -> String {
    rater
        .cgrates()
        .map(|c| c.currency)
        .or_else(|| rater.decks().first().map(|d| d.currency))
        .unwrap_or_default()
        .to_string()
}

/// Every call of `account` attempted from `from` to `to` (decisions and records), with billed
/// seconds from the record (which wins), the end event, or answer to close for a lost call;
/// `closed`: the period is over, so a call with no end was not answered.
pub fn calls_of(
    store: &Store,
    rater: &Rater,
    account: &str,
    from: Timestamp,
    to: Timestamp,
    closed: bool,
) -> Result<Vec<PeriodCall>> {
    // What the store knows of each call of the account in the period.
    let (from_ns, to_ns) = (from.as_nanosecond() as i64, to.as_nanosecond() as i64);
    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<Timestamp>().ok());
    let mut calls: BTreeMap<String, Known> = BTreeMap::new();
    for (t, json) in store.decisions_of(account, from_ns, to_ns)? {
        let v: Value = serde_json::from_str(&json).unwrap_or_default();
        let id = v["call_id"].as_str().unwrap_or("").to_string();
        calls.entry(id).or_default().decision = Some((ns_to(t), v));
    }
    for json in store.cdrs_of(account)? {
        let v: Value = serde_json::from_str(&json).unwrap_or_default();
        let Some(start) = parse(&v["start"]) else { continue };
        let id = v["call_id"].as_str().unwrap_or("").to_string();
        if (from..=to).contains(&start) || calls.contains_key(&id) {
            calls.entry(id).or_default().record = Some(v);
        }
    }
    // Answers and ends may come after the period's end (a call running at the closing).
    let horizon = to_ns.saturating_add(86_400 * 1_000_000_000);
    store.for_each_event_between(from_ns, horizon, |e| {
        if e.kind != "answer" && e.kind != "end" {
            return;
        }
        let v: Value = serde_json::from_str(&e.payload).unwrap_or_default();
        let Some(k) = v["call_id"].as_str().and_then(|id| calls.get_mut(id)) else { return };
        if e.kind == "answer" {
            k.answered.get_or_insert(ns_to(e.time_ns));
        } else if k.ended.is_none() {
            k.ended = Some((ns_to(e.time_ns), v));
        }
    })?;

    // Each call: rated as the live service rated it.
    let tz = rater.account(account).tz.clone();
    let mut lines: Vec<PeriodCall> = vec![];
    let mut cdr = Cdr::default();
    for (call_id, k) in &calls {
        let d = k.decision.as_ref().map(|(_, v)| v);
        let r = k.record.as_ref();
        let start = k
            .decision
            .as_ref()
            .map(|(t, _)| *t)
            .or_else(|| r.and_then(|r| parse(&r["start"])))
            .unwrap_or(from);
        let field = |name: &str, alt: &str| -> String {
            d.and_then(|d| d[name].as_str())
                .or_else(|| r.and_then(|r| r[alt].as_str()))
                .unwrap_or("")
                .to_string()
        };
        let allowed = d.is_none_or(|d| d["allow"].as_bool().unwrap_or(true));
        let (billsec, billsec_from): (Option<u32>, &str) = if let Some(r) = r {
            (r["billsec"].as_u64().map(|b| b as u32), "record")
        } else if !allowed {
            (None, "denied")
        } else if let Some((at, end)) = &k.ended {
            match (end["billsec"].as_u64(), k.answered) {
                (Some(b), _) => (Some(b as u32), "end"),
                (None, Some(ans)) => (Some(at.duration_since(ans).as_secs().max(0) as u32), "lost"),
                (None, None) => (None, "not answered"),
            }
        } else {
            (None, if closed { "not answered" } else { "running or not answered" })
        };
        cdr.clear();
        cdr.call_id.push_str(call_id);
        cdr.account.push_str(account);
        cdr.source.push_str(&field("extension", "extension"));
        cdr.dialled.push_str(&field("to", "to"));
        cdr.start = start;
        cdr.billsec = billsec.unwrap_or(0);
        if let Some(t) = r.and_then(|r| r["trunk"].as_str()) {
            cdr.dst_channel.push_str(t);
        }
        let rated = rater.rate(&cdr);
        let (e164, country, number_type, risk) = match (&rated.dialled, &rated.class) {
            (Dialled::E164(n), Some(c)) => (
                format!("+{}", n.as_str()),
                rated.country.to_string(),
                c.number_type.as_str().to_string(),
                c.risk.as_str().to_string(),
            ),
            (other, _) => (other.kind().to_string(), String::new(), String::new(), String::new()),
        };
        let priced = rated.direction == Direction::Outbound && billsec.is_some();
        let call_cost = if priced { rater.cost_of(&rated, start, cdr.billsec).map(|c| c.1) } else { None };
        let rate = describe_rate(rater, &rated, start);
        let rules: Vec<String> = d
            .and_then(|d| d["rules"].as_array())
            .map(|a| a.iter().filter_map(|r| r.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let explanation: Vec<String> = d
            .and_then(|d| d["explanation"].as_array())
            .map(|a| a.iter().filter_map(|r| r.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let decision = match (allowed, d.and_then(|d| d["max_duration_s"].as_u64())) {
            (false, _) => "denied".to_string(),
            (true, Some(cap)) => format!("allowed, capped at {cap} s"),
            (true, None) if d.is_none() => "record only".to_string(),
            (true, None) => "allowed".to_string(),
        };
        lines.push(PeriodCall {
            start,
            allowed,
            billsec,
            cost: call_cost.unwrap_or_default(),
            country: rated.country,
            line: CallLine {
                call_id: call_id.clone(),
                time: show(start, &tz),
                extension: cdr.source.clone(),
                dialled: cdr.dialled.clone(),
                e164,
                country,
                number_type,
                risk,
                decision,
                rules: rules.join(" "),
                billsec: billsec.map(|b| b.to_string()).unwrap_or_default(),
                billsec_from: billsec_from.to_string(),
                rate,
                cost: call_cost.map(four).unwrap_or_default(),
            },
            rules,
            explanation,
        });
    }
    lines.sort_by(|a, b| (a.start, &a.line.call_id).cmp(&(b.start, &b.line.call_id)));
    Ok(lines)
}

/// The rate that priced a call, in words.
fn describe_rate(rater: &Rater, r: &tollguard_core::rater::Rated<'_>, start: Timestamp) -> String {
    if let (Some(t), Some(c)) = (&r.tariff, rater.cgrates()) {
        let (dest, dr, rate) = c.plan.describe(t, start);
        return format!("{} {dest} {dr} {rate}", c.plan.plan_name(t));
    }
    match r.rows[0] {
        Some(row) => format!(
            "{} {} {}/min fee {} {}/{} s",
            row.prefix,
            row.destination,
            row.rate_per_minute,
            row.connection_fee,
            row.initial_s,
            row.subsequent_s
        ),
        None if r.is_unrated() => "unrated".into(),
        None => String::new(),
    }
}

/// The report as CSV: one line per call, then the totals as `# ` lines.
pub fn incident_csv(r: &IncidentReport) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "call_id",
        "time",
        "extension",
        "dialled",
        "e164",
        "country",
        "number_type",
        "risk",
        "decision",
        "rules",
        "billsec",
        "billsec_from",
        "rate",
        "cost",
    ])?;
    for c in &r.calls {
        w.write_record([
            &c.call_id,
            &c.time,
            &c.extension,
            &c.dialled,
            &c.e164,
            &c.country,
            &c.number_type,
            &c.risk,
            &c.decision,
            &c.rules,
            &c.billsec,
            &c.billsec_from,
            &c.rate,
            &c.cost,
        ])?;
    }
    let mut out = String::from_utf8(w.into_inner().map_err(|e| anyhow!("{e}"))?)?;
    let t = &r.totals;
    out.push_str(&format!(
        "# incident {} account {} ({}) {} to {} {}\n# calls {} allowed {} denied {} answered {} billsec {} flagged {}\n\
         # cost excl. VAT {} {}; flagged calls {} {}; VAT {}% {} {}; cost incl. VAT {} {}\n",
        r.id,
        r.account,
        r.state,
        r.from,
        r.to,
        r.zone,
        t.calls,
        t.allowed,
        t.denied,
        t.answered,
        t.billsec,
        t.flagged,
        t.currency,
        t.cost,
        t.currency,
        t.flagged_cost,
        r.vat_percent,
        t.currency,
        t.vat,
        t.currency,
        t.cost_incl_vat
    ));
    if let Some(x) = &r.reconciliation {
        out.push_str(&format!(
            "# reconciliation with {}: day ours theirs matched duration_differs ours_only theirs_only our_billsec \
             their_billsec our_cost their_cost difference\n",
            x.source
        ));
        for d in x.days.iter().chain(std::iter::once(&x.total)) {
            out.push_str(&format!(
                "# {} {} {} {} {} {} {} {} {} {} {} {}\n",
                d.day,
                d.ours,
                d.theirs,
                d.matched,
                d.duration_differs,
                d.ours_only,
                d.theirs_only,
                d.our_billsec,
                d.their_billsec,
                d.our_cost,
                d.their_cost,
                d.difference
            ));
        }
    }
    Ok(out)
}

/// The report as a self-contained HTML page (printable; the PDF is printed from it).
pub fn incident_html(r: &IncidentReport) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("incident.html", include_str!("templates/incident.html"))?;
    Ok(env
        .get_template("incident.html")?
        .render(minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)) })?)
}

/// One hour of a daily report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HourLine {
    /// Local hour, 0-23.
    pub hour: u8,
    /// Calls attempted in it.
    pub calls: u64,
    /// Calls answered.
    pub answered: u64,
    /// Billed seconds.
    pub billsec: u64,
    /// Spend, four decimals.
    pub spend: String,
    /// The usual band: the lowest and highest spend of this hour on the same weekday of the
    /// four weeks before (empty without history).
    pub usual_low: String,
    /// See `usual_low`.
    pub usual_high: String,
    /// Spend above the band's top.
    pub above_usual: bool,
}

/// One destination of a daily report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DestinationLine {
    /// ISO country (`001`: non-geographic).
    pub country: String,
    /// Number type.
    pub number_type: String,
    /// Risk tier.
    pub risk: String,
    /// Calls.
    pub calls: u64,
    /// Billed seconds.
    pub billsec: u64,
    /// Cost.
    pub cost: String,
    /// Not called in the 28 days before.
    pub new: bool,
}

/// The daily traffic report of one account: what the 2011 carrier offered, with thresholds.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DailyReport {
    /// The account.
    pub account: String,
    /// The local day.
    pub date: String,
    /// Its zone.
    pub zone: String,
    /// The currency.
    pub currency: String,
    /// Calls, answered, denied, billed seconds, spend of the day.
    pub calls: u64,
    /// Answered.
    pub answered: u64,
    /// Denied.
    pub denied: u64,
    /// Billed seconds.
    pub billsec: u64,
    /// Spend, four decimals.
    pub spend: String,
    /// Days of history the band rests on (0 to 4).
    pub history_days: u32,
    /// 24 hours.
    pub hours: Vec<HourLine>,
    /// Spend by hour against the band, as an SVG chart.
    pub chart_svg: String,
    /// Destinations by cost, highest first (at most 15).
    pub destinations: Vec<DestinationLine>,
    /// Countries called today and not in the 28 days before.
    pub new_countries: Vec<String>,
    /// Limits approached or reached: the warning and critical alerts of the day by rule.
    pub limits: Vec<RuleLine>,
    /// Every alert of the day.
    pub alerts: Vec<AlertLine>,
    /// Actions of the day (blocks, unblocks, limits, cuts): who, what, why.
    pub actions: Vec<Moment>,
}

/// The local midnight starting `date` in `tz` (the first instant of the day, also on a day whose
/// midnight a clock change skips).
fn day_start(date: jiff::civil::Date, tz: &TimeZone) -> Result<Timestamp> {
    Ok(tz.to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight())).compatible()?)
}

/// The time before which retention has deleted rows, if `from` is before it (a report from
/// `from` would not be whole).
fn gone_before(store: &Store, from: Timestamp) -> Result<Option<Timestamp>> {
    Ok(store.pruned_before()?.filter(|&gone| (from.as_nanosecond() as i64) < gone).map(ns_to))
}

/// A report asked for a time whose rows retention has deleted.
#[derive(Debug)]
pub struct Deleted(String);

impl std::fmt::Display for Deleted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Deleted {}

/// Builds the daily report of `account` for local day `date` ([`Deleted`] for a day before
/// what retention deleted).
pub fn daily_report(
    store: &Store,
    rater: &Rater,
    account: &str,
    date: jiff::civil::Date,
    now: Timestamp,
) -> Result<DailyReport> {
    let tz = rater.account(account).tz.clone();
    let from = day_start(date, &tz)?;
    let to = day_start(date.tomorrow()?, &tz)? - jiff::SignedDuration::from_nanos(1);
    if let Some(gone) = gone_before(store, from)? {
        return Err(anyhow::Error::new(Deleted(format!(
            "{date}: the store has nothing whole from before {} ([server] retention deleted it)",
            show(gone, &tz)
        ))));
    }
    let today = calls_of(store, rater, account, from, to, to < now)?;
    let history_from = day_start(date.checked_sub(jiff::Span::new().days(28))?, &tz)?;
    let before =
        calls_of(store, rater, account, history_from, from - jiff::SignedDuration::from_nanos(1), true)?;

    let hour_of = |t: Timestamp| tz.to_datetime(t).hour() as usize;
    // The band: this hour on the same weekday of the four weeks before, lowest and highest.
    let mut weeks = [[Decimal::ZERO; 24]; 4];
    let mut seen_weeks = [false; 4];
    for c in &before {
        let d = tz.to_datetime(c.start).date();
        let back = (date - d).get_days();
        if back > 0 && back % 7 == 0 && back <= 28 {
            let w = (back / 7 - 1) as usize;
            weeks[w][hour_of(c.start)] += c.cost;
            seen_weeks[w] = true;
        }
    }
    let history_days = seen_weeks.iter().filter(|s| **s).count() as u32;
    let mut hours: Vec<HourLine> = (0..24u8)
        .map(|h| HourLine {
            hour: h,
            calls: 0,
            answered: 0,
            billsec: 0,
            spend: String::new(),
            usual_low: String::new(),
            usual_high: String::new(),
            above_usual: false,
        })
        .collect();
    let mut spend = [Decimal::ZERO; 24];
    let (mut answered, mut denied, mut billsec, mut total) = (0u64, 0u64, 0u64, Decimal::ZERO);
    for c in &today {
        let h = hour_of(c.start);
        hours[h].calls += 1;
        if c.billsec.is_some_and(|b| b > 0) {
            hours[h].answered += 1;
            answered += 1;
        }
        hours[h].billsec += u64::from(c.billsec.unwrap_or(0));
        billsec += u64::from(c.billsec.unwrap_or(0));
        denied += u64::from(!c.allowed);
        spend[h] += c.cost;
        total += c.cost;
    }
    let mut band = vec![];
    for (h, line) in hours.iter_mut().enumerate() {
        line.spend = four(spend[h]);
        if history_days > 0 {
            let vals: Vec<Decimal> = (0..4).filter(|w| seen_weeks[*w]).map(|w| weeks[w][h]).collect();
            let (lo, hi) = (
                vals.iter().min().copied().unwrap_or_default(),
                vals.iter().max().copied().unwrap_or_default(),
            );
            line.usual_low = four(lo);
            line.usual_high = four(hi);
            line.above_usual = spend[h] > hi;
            band.push((lo, hi));
        }
    }

    // Destinations, and the countries new today.
    let known: std::collections::HashSet<&str> =
        before.iter().map(|c| c.country).filter(|c| !c.is_empty()).collect();
    let mut dests: BTreeMap<(String, String), DestinationLine> = BTreeMap::new();
    let mut costs: HashMap<(String, String), Decimal> = HashMap::new();
    let mut new_countries: Vec<String> = vec![];
    for c in &today {
        if c.country.is_empty() {
            continue;
        }
        let key = (c.line.country.clone(), c.line.number_type.clone());
        let e = dests.entry(key.clone()).or_insert_with(|| DestinationLine {
            country: c.line.country.clone(),
            number_type: c.line.number_type.clone(),
            risk: c.line.risk.clone(),
            calls: 0,
            billsec: 0,
            cost: String::new(),
            new: !known.contains(c.country),
        });
        e.calls += 1;
        e.billsec += u64::from(c.billsec.unwrap_or(0));
        *costs.entry(key).or_default() += c.cost;
        if !known.contains(c.country) && !new_countries.iter().any(|n| n == c.country) {
            new_countries.push(c.country.to_string());
        }
    }
    let mut destinations: Vec<(Decimal, DestinationLine)> = dests
        .into_iter()
        .map(|(k, mut d)| {
            let c = costs.get(&k).copied().unwrap_or_default();
            d.cost = four(c);
            (c, d)
        })
        .collect();
    destinations
        .sort_by(|a, b| b.0.cmp(&a.0).then(b.1.calls.cmp(&a.1.calls)).then(a.1.country.cmp(&b.1.country)));
    destinations.truncate(15);
    new_countries.sort();

    // Alerts and limits of the day.
    let mut alerts = vec![];
    let mut limits: BTreeMap<String, RuleLine> = BTreeMap::new();
    for (_, line) in alerts_of(store, account, from, to, &tz)? {
        let l = limits.entry(line.rule.clone()).or_insert_with(|| RuleLine {
            rule: line.rule.clone(),
            calls: 0,
            alerts: 0,
            first: line.time.clone(),
            figures: String::new(),
        });
        l.alerts += 1;
        // The last word: the highest level reached.
        l.figures = format!("{}: {}", line.severity, line.message);
        alerts.push(line);
    }
    let actions = store
        .audit(Some(account), 0, u32::MAX)?
        .into_iter()
        .filter(|e| (from..=to).contains(&ns_to(e.time_ns)))
        .map(|e| Moment {
            what: e.action,
            time: show(ns_to(e.time_ns), &tz),
            detail: format!("by {}: {}", e.actor, e.details),
        })
        .collect();

    let chart_svg = hour_chart(&spend, &band, 0, &currency_of(rater))?;
    Ok(DailyReport {
        account: account.to_string(),
        date: date.to_string(),
        zone: tz.iana_name().unwrap_or("").to_string(),
        currency: currency_of(rater),
        calls: today.len() as u64,
        answered,
        denied,
        billsec,
        spend: four(total),
        history_days,
        hours,
        chart_svg,
        destinations: destinations.into_iter().map(|d| d.1).collect(),
        new_countries,
        limits: limits.into_values().collect(),
        alerts,
        actions,
    })
}

/// Spend per hour as bars, the usual band as a shaded range behind them (plotters, SVG). The
/// first bar is hour of day `first_hour`.
pub(crate) fn hour_chart(
    spend: &[Decimal],
    band: &[(Decimal, Decimal)],
    first_hour: u32,
    currency: &str,
) -> Result<String> {
    use plotters::prelude::*;
    use rust_decimal::prelude::ToPrimitive;
    let f = |d: Decimal| d.to_f64().unwrap_or(0.0);
    let top = spend.iter().chain(band.iter().map(|b| &b.1)).map(|d| f(*d)).fold(0.0f64, f64::max);
    let top = if top <= 0.0 { 1.0 } else { top * 1.15 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..spend.len().max(1) as f64, 0f64..top)
            .map_err(|e| anyhow!("chart: {e}"))?;
        chart
            .configure_mesh()
            .x_labels(13)
            // A day's chart ends at 24; one that starts mid-day wraps past midnight.
            .x_label_formatter(&|h| {
                let h = *h as u32 + first_hour;
                format!("{:02}", if first_hour == 0 { h } else { h % 24 })
            })
            .y_desc(currency)
            .x_desc("hour")
            .disable_x_mesh()
            .draw()
            .map_err(|e| anyhow!("chart: {e}"))?;
        let shade = RGBColor(120, 160, 220).mix(0.25).filled();
        chart
            .draw_series(band.iter().enumerate().map(|(h, (lo, hi))| {
                Rectangle::new([(h as f64, f(*lo)), (h as f64 + 1.0, f(*hi).max(f(*lo)))], shade)
            }))
            .map_err(|e| anyhow!("chart: {e}"))?;
        chart
            .draw_series(spend.iter().enumerate().map(|(h, s)| {
                let over = band.get(h).is_some_and(|b| *s > b.1);
                let color = if over { RGBColor(200, 60, 40) } else { RGBColor(40, 90, 160) };
                Rectangle::new([(h as f64 + 0.15, 0.0), (h as f64 + 0.85, f(*s))], color.filled())
            }))
            .map_err(|e| anyhow!("chart: {e}"))?;
        root.present().map_err(|e| anyhow!("chart: {e}"))?;
    }
    Ok(svg)
}

/// The daily report as CSV: one line per hour, then `# ` lines for destinations and alerts.
pub fn daily_csv(r: &DailyReport) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "hour",
        "calls",
        "answered",
        "billsec",
        "spend",
        "usual_low",
        "usual_high",
        "above_usual",
    ])?;
    for h in &r.hours {
        w.write_record([
            format!("{:02}", h.hour),
            h.calls.to_string(),
            h.answered.to_string(),
            h.billsec.to_string(),
            h.spend.clone(),
            h.usual_low.clone(),
            h.usual_high.clone(),
            h.above_usual.to_string(),
        ])?;
    }
    let mut out = String::from_utf8(w.into_inner().map_err(|e| anyhow!("{e}"))?)?;
    out.push_str(&format!(
        "# account {} day {} {}: calls {} answered {} denied {} billsec {} spend {} {} (band from {} weeks)\n",
        r.account, r.date, r.zone, r.calls, r.answered, r.denied, r.billsec, r.currency, r.spend, r.history_days
    ));
    for d in &r.destinations {
        out.push_str(&format!(
            "# destination {} {} {} calls {} billsec {} cost {}{}\n",
            d.country,
            d.number_type,
            d.risk,
            d.calls,
            d.billsec,
            d.cost,
            if d.new { " NEW" } else { "" }
        ));
    }
    for a in &r.alerts {
        out.push_str(&format!("# alert {} {} {} {}: {}\n", a.time, a.severity, a.rule, a.action, a.message));
    }
    for a in &r.actions {
        out.push_str(&format!("# action {} {} {}\n", a.time, a.what, a.detail));
    }
    Ok(out)
}

/// The daily report as a self-contained HTML page.
pub fn daily_html(r: &DailyReport) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("daily.html", include_str!("templates/daily.html"))?;
    Ok(env
        .get_template("daily.html")?
        .render(minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)) })?)
}
