//! Incidents: the alerts of one account grouped, from the first alert until an operator closes
//! it (open -> acknowledged -> resolved or false positive), with the timeline an operator and a
//! dispute need: first suspicious call, first alert, first denial, block, last call denied, and
//! counters. Kept by the writer thread, in the same transaction as what changes them.

use crate::{auth, flush, ApiError, ApiResult, AppState, Write};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tollguard_store::{Batch, Result as StoreResult, Store};

fn time(ns: i64) -> String {
    Timestamp::from_nanosecond(ns as i128).map(|t| t.to_string()).unwrap_or_default()
}

/// The open (or acknowledged) incident of each account that has one, as the writer thread keeps
/// it: read from the store once, changed in memory as alerts, denials, blocks, cuts and charges
/// join it, and written once per transaction ([`Incidents::write`]) with the last of its changes.
/// An account under attack has many calls in each transaction; its incident row is read and
/// parsed never and written once, instead of read, parsed and written for each call.
///
/// A transaction that fails leaves the memory ahead of the store: after
/// [`Incidents::rolled_back`], [`Incidents::begin`] reads it all again before the next one.
pub(crate) struct Incidents {
    active: HashMap<String, Active>,
    /// Changed in the transaction under way, not written yet.
    dirty: Vec<String>,
    /// Changed by a transaction that failed: to be read again from the store.
    stale: bool,
}

struct Active {
    id: i64,
    data: Value,
    updated_ns: i64,
    dirty: bool,
}

impl Incidents {
    /// None yet: the open and acknowledged incidents in the store (the newest, for an account
    /// with several) are read before the first transaction ([`Incidents::begin`]).
    pub(crate) fn new() -> Incidents {
        Incidents { active: HashMap::new(), dirty: vec![], stale: true }
    }

    /// Before a transaction: the incidents are read from the store if a failed transaction
    /// (or none yet) left the memory unsure. An error here is the transaction's: it must not go
    /// ahead without them (an alert would open a second incident, a denial would not count).
    pub(crate) fn begin(&mut self, store: &Store) -> StoreResult<()> {
        if !self.stale {
            return Ok(());
        }
        let mut rows = store.incidents(None, Some("open"), u32::MAX)?;
        rows.extend(store.incidents(None, Some("acknowledged"), u32::MAX)?);
        rows.sort_by_key(|r| r.id);
        self.active.clear();
        self.dirty.clear();
        for r in rows {
            let data = serde_json::from_str(&r.data).unwrap_or_default();
            self.active.insert(r.account, Active { id: r.id, data, updated_ns: r.updated_ns, dirty: false });
        }
        self.stale = false;
        Ok(())
    }

    /// Whether the account has an open or acknowledged incident.
    pub(crate) fn contains(&self, account: &str) -> bool {
        self.active.contains_key(account)
    }

    /// The account's incident's data, to change at `now_ns` (written by [`Incidents::write`]).
    fn change(&mut self, account: &str, now_ns: i64) -> Option<&mut Value> {
        let a = self.active.get_mut(account)?;
        if !a.dirty {
            a.dirty = true;
            self.dirty.push(account.to_string());
        }
        a.updated_ns = now_ns;
        Some(&mut a.data)
    }

    /// Writes each incident changed since the last write, in the open transaction `b`.
    pub(crate) fn write(&mut self, b: &mut Batch<'_>) -> StoreResult<()> {
        for account in std::mem::take(&mut self.dirty) {
            if let Some(a) = self.active.get_mut(&account) {
                a.dirty = false;
                b.update_incident(a.id, a.updated_ns, None, &a.data.to_string())?;
            }
        }
        Ok(())
    }

    /// The transaction failed: the memory is read again from the store before the next one.
    pub(crate) fn rolled_back(&mut self) {
        self.stale = true;
    }
}

/// An alert was stored: it opens the account's incident or joins the one open.
pub(crate) fn on_alert(
    b: &mut Batch<'_>,
    incidents: &mut Incidents,
    alert_id: i64,
    alert: &Value,
    now_ns: i64,
) -> StoreResult<()> {
    let account = alert["account"].as_str().unwrap_or("");
    let entry = json!({
        "id": alert_id, "time": alert["time"], "rule": alert["rule"], "severity": alert["severity"],
        "action": alert["action"], "call_id": alert["call_id"], "message": alert["message"],
    });
    let critical = alert["severity"] == "critical";
    let cut = alert["action"] == "cut";
    match incidents.change(account, now_ns) {
        None => {
            let data = json!({
                "first_suspicious_call": alert["call_id"],
                "first_alert": entry, "last_alert": entry,
                "alerts": 1, "critical_alerts": i64::from(critical), "cut_alerts": i64::from(cut),
                "first_denial": null, "last_denial": null, "denials": 0,
                "block": null,
                "history": [{ "time": time(now_ns), "state": "open", "by": "tollguard", "reason": alert["rule"] }],
            });
            let id = b.open_incident(account, now_ns, &data.to_string())?;
            incidents
                .active
                .insert(account.to_string(), Active { id, data, updated_ns: now_ns, dirty: false });
        }
        Some(d) => {
            d["last_alert"] = entry;
            add(d, "alerts", 1);
            add(d, "critical_alerts", i64::from(critical));
            add(d, "cut_alerts", i64::from(cut));
            if d["first_suspicious_call"].as_str().is_none_or(str::is_empty) {
                d["first_suspicious_call"] = alert["call_id"].clone();
            }
        }
    }
    Ok(())
}

/// Adds `n` to the counter `key` of an incident's data.
fn add(d: &mut Value, key: &str, n: i64) {
    d[key] = json!(d[key].as_i64().unwrap_or(0) + n);
}

/// A call was denied: part of the account's incident, if one is open.
pub(crate) fn on_denial(incidents: &mut Incidents, account: &str, decision: &Value, now_ns: i64) {
    let Some(d) = incidents.change(account, now_ns) else { return };
    let entry = json!({ "time": decision["time"], "call_id": decision["call_id"], "to": decision["to"],
                        "rules": decision["rules"] });
    if d["first_denial"].is_null() {
        d["first_denial"] = entry.clone();
    }
    d["last_denial"] = entry;
    add(d, "denials", 1);
    add(d, "refused_rate_units", decision["rate_per_minute_units"].as_i64().unwrap_or(0));
}

/// A call of the account was charged: its cost adds to the open incident's exposure.
pub(crate) fn on_charged(incidents: &mut Incidents, account: &str, units: i64, now_ns: i64) {
    if let Some(d) = incidents.change(account, now_ns) {
        add(d, "exposure_units", units);
    }
}

fn money(units: i64) -> String {
    format!("{:.2}", rust_decimal::Decimal::new(units, 4))
}

/// tollguard blocked the account: the first block goes on the timeline.
pub(crate) fn on_block(incidents: &mut Incidents, account: &str, details: &Value, now_ns: i64) {
    let Some(a) = incidents.active.get(account) else { return };
    if a.data["block"].is_null() {
        if let Some(d) = incidents.change(account, now_ns) {
            d["block"] = json!({ "time": time(now_ns), "rule": details["rule"], "until": details["until"] });
        }
    }
}

/// tollguard cut one of the account's running calls: counted, the first on the timeline.
pub(crate) fn on_cut(incidents: &mut Incidents, account: &str, details: &Value, now_ns: i64) {
    let Some(d) = incidents.change(account, now_ns) else { return };
    if d["first_cut"].is_null() {
        d["first_cut"] =
            json!({ "time": time(now_ns), "call_id": details["call_id"], "rule": details["rule"] });
    }
    add(d, "calls_cut", 1);
}

/// An operator's (or the customer's) step: acknowledge, resolve, or mark a false positive.
pub(crate) fn change(
    b: &mut Batch<'_>,
    incidents: &mut Incidents,
    id: i64,
    to: &'static str,
    by: &str,
    reason: &str,
    now_ns: i64,
) -> StoreResult<Result<String, String>> {
    // The store's row is current once what changed in memory is written.
    incidents.write(b)?;
    let Some((account, state, data)) = b.incident_data(id)? else {
        return Ok(Err(format!("no incident {id}")));
    };
    let allowed = matches!(
        (state.as_str(), to),
        ("open", "acknowledged") | ("open" | "acknowledged", "resolved" | "false_positive")
    );
    if !allowed {
        return Ok(Err(format!("incident {id} is {state}: it cannot become {to}")));
    }
    let mut d: Value = serde_json::from_str(&data).unwrap_or_default();
    if let Some(h) = d["history"].as_array_mut() {
        h.push(json!({ "time": time(now_ns), "state": to, "by": by, "reason": reason }));
    }
    b.update_incident(id, now_ns, Some(to), &d.to_string())?;
    b.audit(
        now_ns,
        by,
        "incident",
        &account,
        &json!({ "incident": id, "state": to, "reason": reason }).to_string(),
    )?;
    if incidents.active.get(&account).is_some_and(|a| a.id == id) {
        if to == "acknowledged" {
            incidents
                .active
                .insert(account.clone(), Active { id, data: d, updated_ns: now_ns, dirty: false });
        } else {
            incidents.active.remove(&account);
            // An older incident of the account still open (there should be none) is the one
            // its next alerts join, as the store says.
            if let Some((id, data, updated_ns)) = b.active_incident(&account)? {
                let data = serde_json::from_str(&data).unwrap_or_default();
                incidents.active.insert(account.clone(), Active { id, data, updated_ns, dirty: false });
            }
        }
    }
    Ok(Ok(account))
}

fn view(i: &tollguard_store::Incident) -> Value {
    let mut v: Value = serde_json::from_str(&i.data).unwrap_or_default();
    v["id"] = json!(i.id);
    v["account"] = json!(i.account);
    v["state"] = json!(i.state);
    v["opened"] = json!(time(i.opened_ns));
    v["updated"] = json!(time(i.updated_ns));
    // Money as strings: what the account's calls cost while the incident was open, and what the
    // calls tollguard refused would have cost together per minute they ran.
    let (exposure, refused) =
        (v["exposure_units"].as_i64().unwrap_or(0), v["refused_rate_units"].as_i64().unwrap_or(0));
    v["exposure_so_far"] = json!(money(exposure));
    v["refused_per_minute"] = json!(money(refused));
    if let Some(o) = v.as_object_mut() {
        o.remove("exposure_units");
        o.remove("refused_rate_units");
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    account: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/incidents`: newest first; a customer sees its own.
pub(crate) async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let account = match auth::scope(&s, &headers)? {
        crate::Scope::Operator => q.account.clone(),
        crate::Scope::Customer(own) if q.account.as_ref().is_none_or(|a| *a == own) => Some(own),
        _ => return Err(auth::forbidden()),
    };
    flush(&s).await;
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = s.read(move |r| r.incidents(account.as_deref(), q.state.as_deref(), limit)).await?;
    Ok(Json(json!({ "incidents": rows.iter().map(view).collect::<Vec<_>>() })))
}

/// `GET /v1/incidents/{id}`.
pub(crate) async fn get_one(
    State(s): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let scope = auth::scope(&s, &headers)?;
    flush(&s).await;
    let row = s.read(move |r| r.incident(id)).await?;
    let Some(i) = row else { return Err(ApiError::not_found(format!("no incident {id}"))) };
    match scope {
        crate::Scope::Operator => {}
        crate::Scope::Customer(own) if own == i.account => {}
        crate::Scope::Customer(_) => return Err(ApiError::not_found(format!("no incident {id}"))),
        crate::Scope::Integration => return Err(auth::forbidden()),
    }
    Ok(Json(view(&i)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepRequest {
    reason: Option<String>,
    /// With `false-positive`: the countries the account may now call without the first-call
    /// rules, and until when (RFC 3339; absent: until changed).
    allow: Option<AllowRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowRequest {
    countries: Vec<String>,
    until: Option<String>,
}

/// `POST /v1/incidents/{id}/{acknowledge|resolve|false-positive}` (operator).
pub(crate) async fn step(
    State(s): State<Arc<AppState>>,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    auth::require(&s, &headers, auth::Need::Operator)?;
    let to = match action.as_str() {
        "acknowledge" => "acknowledged",
        "resolve" => "resolved",
        "false-positive" => "false_positive",
        _ => return Err(ApiError::not_found("no such step: acknowledge, resolve or false-positive")),
    };
    let req: StepRequest = crate::parse_json_or_default(&body)?;
    if req.allow.is_some() && to != "false_positive" {
        return Err(ApiError::bad("allow goes with false-positive only"));
    }
    let until = match req.allow.as_ref().and_then(|a| a.until.as_deref()) {
        Some(u) => Some(crate::parse_time(Some(u), Timestamp::UNIX_EPOCH)?),
        None => None,
    };
    if let Some(a) = &req.allow {
        if a.countries.is_empty()
            || a.countries.iter().any(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(ApiError::bad("allow.countries: ISO 3166 alpha-2 codes, e.g. [\"TL\"]"));
        }
    }
    let who = auth::who(&s, &headers);
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.send(Write::IncidentStep {
        id,
        to,
        by: who.clone(),
        reason: req.reason.clone().unwrap_or_default(),
        done: tx,
    });
    match rx.await.map_err(|_| ApiError::internal("the store is shutting down"))? {
        Ok(Ok(account)) => {
            if let Some(a) = req.allow {
                // The allowance: the same honest traffic does not alert again.
                let countries: Vec<String> = a.countries.iter().map(|c| c.to_ascii_uppercase()).collect();
                let payload = json!({ "command": "allow", "account": account, "countries": countries,
                                      "until": until.map(|u| u.to_string()), "incident": id,
                                      "reason": req.reason });
                let cmd = tollguard_engine::Command::Allow { account: account.clone(), countries, until };
                crate::command(&s, &who, "allow", &account, cmd, payload.to_string());
            }
        }
        Ok(Err(e)) if e.starts_with("no incident") => return Err(ApiError::not_found(e)),
        Ok(Err(e)) => return Err(ApiError::new(StatusCode::CONFLICT, "incident_closed", e)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    get_one(State(s), Path(id), headers).await
}
