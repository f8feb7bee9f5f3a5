//! Call records: intake over HTTP (our JSON, and FreeSWITCH `mod_json_cdr` as it posts), and
//! the rebuild of the engine from the event log at start.

use crate::{auth, ns, parse_json, take_decision, ApiError, ApiResult, AppState, Live, Write};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine as _;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, Disposition};
use tollguard_engine::{Alert, AlertAction, Attempt, Command, Effect, Engine, Event, Severity};
use tollguard_ingest::{Format, ReadError, ReadOptions};
use tollguard_store::Store;

/// A call record in the API (`POST /v1/cdrs`) and in the store.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The switch's call id (the same as in `/v1/authorize`, if the call was authorized).
    pub call_id: String,
    /// The account charged.
    pub account: String,
    /// The calling extension or number.
    pub extension: String,
    /// The number dialled, as dialled.
    pub to: String,
    /// When the call started (RFC 3339).
    pub start: String,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Talk time, seconds.
    pub billsec: u32,
    /// `answered`, `no_answer`, `busy`, `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// The trunk or destination channel, for direction rules.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trunk: String,
    /// The originating channel, for direction rules.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The dialplan context, for direction rules.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context: String,
}

fn time(field: &str, i: usize, s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("cdrs[{i}].{field}: not an RFC 3339 time with offset: {s:?} ({e})"))
}

impl Record {
    fn to_cdr(&self, i: usize) -> Result<Cdr, String> {
        for (field, v) in [("call_id", &self.call_id), ("account", &self.account), ("to", &self.to)] {
            if v.trim().is_empty() {
                return Err(format!("cdrs[{i}].{field} must not be empty"));
            }
        }
        let start = time("start", i, &self.start)?;
        let answer = self.answer.as_deref().map(|a| time("answer", i, a)).transpose()?;
        let end = self.end.as_deref().map(|e| time("end", i, e)).transpose()?;
        let disposition = match self.disposition.as_deref() {
            None => {
                if self.billsec > 0 {
                    Disposition::Answered
                } else {
                    Disposition::Unknown
                }
            }
            Some("answered") => Disposition::Answered,
            Some("no_answer") => Disposition::NoAnswer,
            Some("busy") => Disposition::Busy,
            Some("failed") => Disposition::Failed,
            Some(other) => {
                return Err(format!(
                    "cdrs[{i}].disposition: {other:?} is not answered, no_answer, busy or failed"
                ))
            }
        };
        Ok(Cdr {
            call_id: self.call_id.clone(),
            account: self.account.clone(),
            source: self.extension.clone(),
            dialled: self.to.clone(),
            context: self.context.clone(),
            channel: self.channel.clone(),
            dst_channel: self.trunk.clone(),
            start,
            answer,
            end,
            duration_s: end.map_or(self.billsec, |e| e.duration_since(start).as_secs().max(0) as u32),
            billsec: self.billsec,
            disposition,
            ..Cdr::default()
        })
    }

    fn from_cdr(c: &Cdr) -> Record {
        Record {
            call_id: c.call_id.clone(),
            account: c.account.clone(),
            extension: c.source.clone(),
            to: c.dialled.clone(),
            start: c.start.to_string(),
            answer: c.answer.map(|a| a.to_string()),
            end: c.end.map(|e| e.to_string()),
            billsec: c.billsec,
            disposition: match c.disposition {
                Disposition::Unknown => None,
                d => Some(d.as_str().to_string()),
            },
            trunk: c.dst_channel.clone(),
            channel: c.channel.clone(),
            context: c.context.clone(),
        }
    }
}

/// A stored record back as a [`Cdr`].
pub(crate) fn cdr_from_json(s: &str) -> Result<Cdr, String> {
    let r: Record = serde_json::from_str(s).map_err(|e| e.to_string())?;
    r.to_cdr(0)
}

/// A record's event in the log: whether its call was allowed by an authorization when the record
/// came (`null`: never authorized), and the record (`record_json`, a [`Record`] as JSON):
/// `{"allowed":true,"record":{...}}`.
pub(crate) fn logged_record(record_json: &str, allowed: Option<bool>) -> String {
    let allowed = match allowed {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    };
    format!("{{\"allowed\":{allowed},\"record\":{record_json}}}")
}

/// A record's event as [`logged_record`] writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggedRecord {
    allowed: Option<bool>,
    record: Record,
}

/// A record's event read back: the record, and whether its call was allowed when it came (from
/// the event; a log written before the event carried it says nothing, and `store`'s decision
/// of that call id is taken, as then).
fn record_from_log(store: &Store, payload: &str) -> anyhow::Result<Result<(Cdr, Option<bool>), String>> {
    if payload.starts_with("{\"allowed\":") {
        let r = match serde_json::from_str::<LoggedRecord>(payload) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        return Ok(r.record.to_cdr(0).map(|c| (c, r.allowed)));
    }
    let c = match cdr_from_json(payload) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    // (A store that cannot be read stops the rebuild: taken as "no decision", the record would
    // count where it should not.)
    let allowed = store
        .decision(&c.call_id)?
        .and_then(|(_, json)| serde_json::from_str::<StoredAllow>(&json).ok().and_then(|d| d.allow));
    Ok(Ok((c, allowed)))
}

/// Stores the records that are new (with a file checkpoint, in the same transaction), then hands
/// them to the engine; answers what was done.
pub(crate) async fn intake(
    s: &Arc<AppState>,
    cdrs: Vec<Cdr>,
    rejected: Vec<String>,
    checkpoint: Option<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let now = s.now();
    let new = store_records(s, &cdrs, checkpoint, now).await?;
    apply_records(s, &cdrs, &new, now);
    let new: Vec<bool> = new.iter().map(|&(fresh, ..)| fresh).collect();
    let fresh = new.iter().filter(|n| **n).count();
    s.metrics.records_new.fetch_add(fresh as u64, Ordering::Relaxed);
    s.metrics.records_duplicate.fetch_add((new.len() - fresh) as u64, Ordering::Relaxed);
    Ok(Json(json!({
        "received": new.len() + rejected.len(),
        "new": fresh,
        "duplicates": new.len() - fresh,
        "rejected": rejected,
    })))
}

/// Stores records received at `now` (with a file tail's checkpoint), each once; answers once
/// committed.
async fn store_records(
    s: &AppState,
    cdrs: &[Cdr],
    checkpoint: Option<(String, String)>,
    now: Timestamp,
) -> ApiResult<Vec<crate::RecordSeen>> {
    let records: Vec<(String, String, String, String)> = cdrs
        .iter()
        .map(|c| {
            let json = serde_json::to_string(&Record::from_cdr(c)).unwrap_or_default();
            (c.call_id.clone(), c.dst_channel.clone(), c.account.clone(), json)
        })
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.send(Write::Records { time_ns: ns(now), records, checkpoint, done: tx });
    rx.await
        .map_err(|_| ApiError::internal("the store is shutting down"))?
        .map_err(|e| ApiError::internal(format!("storing records: {e}")))
}

/// Stored records go to the engine: the new ones, unless the engine was rebuilt from a log that
/// had them already.
fn apply_records(s: &AppState, cdrs: &[Cdr], new: &[crate::RecordSeen], now: Timestamp) {
    let mut effects = vec![];
    {
        let mut core = s.core.lock().expect("engine lock");
        for (c, &(fresh, allowed, seq)) in cdrs.iter().zip(new) {
            // Stored before the engine was rebuilt from the log (a reload read it): in the
            // engine already. The engine's own memory of recorded calls does not cover it: it
            // forgets a record once one that ended more than the record grace later comes.
            if !fresh || seq <= core.rebuilt_through {
                continue;
            }
            if !record_counts(&core.engine, c, allowed, now) {
                continue;
            }
            if allowed == Some(false) {
                // Denied, and talked all the same: the switch does not act on the answers, so
                // nothing tollguard decides protects this account. Counted below, and said loudly.
                let tz = core.engine.rater().account(&c.account).tz.clone();
                effects.push(Effect::Alert(Alert {
                    time: tollguard_engine::alert_time(now, tz),
                    account: c.account.clone(),
                    extension: c.source.clone(),
                    severity: Severity::Critical,
                    rule: "integration.denied_call_connected".into(),
                    action: AlertAction::Alert,
                    call_id: c.call_id.clone(),
                    message: format!(
                        "call {} to {} was denied by tollguard but its record has {} s of talk time: the switch \
                         connected it anyway (check that the integration acts on tollguard's answers)",
                        c.call_id, c.dialled, c.billsec
                    ),
                }));
            }
            core.live.remove(&c.call_id);
            core.handle(Event::Record(c), now, &mut effects);
        }
    }
    s.store_effects(&mut effects);
}

/// `POST /v1/cdrs`: a JSON array of records (or `{"cdrs": [...]}`), idempotent on the call id and
/// leg (`trunk`; see [`tollguard_store::Batch::insert_cdr`]).
/// A record with a bad field is refused with the others stored; the answer names it.
pub(crate) async fn post_cdrs(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    auth::require(&s, &headers, auth::Need::Integration)?;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Body {
        List(Vec<serde_json::Value>),
        Wrapped { cdrs: Vec<serde_json::Value> },
    }
    let body: Body = parse_json(&body)?;
    let items = match body {
        Body::List(v) | Body::Wrapped { cdrs: v } => v,
    };
    let mut cdrs = vec![];
    let mut rejected = vec![];
    for (i, v) in items.into_iter().enumerate() {
        match serde_json::from_value::<Record>(v)
            .map_err(|e| format!("cdrs[{i}]: {e}"))
            .and_then(|r| r.to_cdr(i))
        {
            Ok(c) => cdrs.push(c),
            Err(e) => rejected.push(e),
        }
    }
    if cdrs.is_empty() && !rejected.is_empty() {
        return Err(ApiError::bad(rejected.join("; ")));
    }
    intake(&s, cdrs, rejected, None).await
}

/// `POST /v1/cdrs/freeswitch`: a `mod_json_cdr` body exactly as FreeSWITCH posts it: the JSON
/// itself (`encode=false`), `cdr=` and the URL-encoded JSON (`encode=true`), or `cdr=` and
/// base64 (`encode=base64`).
pub(crate) async fn post_freeswitch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    auth::require(&s, &headers, auth::Need::Integration)?;
    let json = freeswitch_body(&headers, &body)?;
    let (cdrs, rejected) = read_freeswitch(json)?;
    if cdrs.is_empty() {
        // A B-leg is refused by the reader on purpose (its A-leg is the call): accepted, not counted.
        if rejected.iter().all(|r| r.contains("B-leg")) && !rejected.is_empty() {
            return Ok(Json(json!({ "received": 1, "new": 0, "duplicates": 0, "rejected": rejected })));
        }
        return Err(ApiError::bad(if rejected.is_empty() {
            "no call record in the body".into()
        } else {
            rejected.join("; ")
        }));
    }
    intake(&s, cdrs, rejected, None).await
}

/// The records of a `mod_json_cdr` document (and the reasons of those refused).
fn read_freeswitch(json: Vec<u8>) -> ApiResult<(Vec<Cdr>, Vec<String>)> {
    let mut reader = tollguard_ingest::from_reader(
        Format::FreeswitchJson,
        Arc::from("request body"),
        Box::new(std::io::Cursor::new(json)),
        &ReadOptions::default(),
    )
    .map_err(|e| ApiError::bad(e.to_string()))?;
    let mut cdrs = vec![];
    let mut rejected = vec![];
    let mut cdr = Cdr::default();
    loop {
        match reader.read_into(&mut cdr) {
            Ok(true) => cdrs.push(cdr.clone()),
            Ok(false) => break,
            Err(ReadError::Row(bad)) => rejected.push(bad.to_string()),
            Err(e) => return Err(ApiError::bad(e.to_string())),
        }
    }
    Ok((cdrs, rejected))
}

fn freeswitch_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Vec<u8>> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(rest) = body.strip_prefix(b"cdr=") else {
        return Ok(body.to_vec());
    };
    if content_type.starts_with("application/x-www-form-base64-encoded") {
        let text: Vec<u8> = rest.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(text.strip_suffix(b"\0").unwrap_or(&text))
            .map_err(|e| ApiError::bad(format!("cdr=: not base64 ({e})")))
    } else {
        Ok(percent_encoding::percent_decode(rest).collect())
    }
}

/// Whether a new record goes to the engine, given what tollguard answered for its call (`None`:
/// never asked). Not when the call was authorized and ended longer ago than the record grace
/// (counted at its end: too late to correct, and not to be counted again), nor when tollguard
/// denied it and it has no talk time: the switch's record of the failed attempt costs nothing
/// and must not make its destination one the account has called (the first-call rules would
/// pass the next attempt). A denied call that talked anyway (a switch that did not wait for the
/// answer) is counted.
fn record_counts(engine: &Engine, c: &Cdr, allowed: Option<bool>, now: Timestamp) -> bool {
    match allowed {
        Some(true) => engine.knows_call(&c.call_id, now),
        Some(false) => c.billsec > 0,
        None => true,
    }
}

/// The engine as the event log makes it: a fresh engine handles every event again (ticks at its
/// deadlines in between), with the calls still running and the service's traffic figures
/// rebuilt on the way. [`Rebuilt::read`] reads what the log has after what was read before, so a
/// reload can rebuild at leisure and then catch up under the engine's lock.
pub(crate) struct Rebuilt {
    pub engine: Engine,
    pub traffic: crate::traffic::Traffic,
    pub live: HashMap<String, Live>,
    /// The position in the log of the last event handled (0: none).
    pub through: i64,
    /// Events handled.
    pub events: u64,
    effects: Vec<Effect>,
    /// What the engine knew before the time retention deleted rows from (read with the first
    /// events; `Some(None)`: there is none), handed to the engine when the log reaches that time.
    memory: Option<Option<Remembered>>,
}

/// What the engine knew before a time, by account.
type Remembered = (Timestamp, Vec<(String, tollguard_engine::MemorySeed)>);

/// What an attempt, answer or end in the event log says. Read typed, borrowing the log's text
/// (no JSON tree, no copy of each field); a field missing or `null` reads as absent. A payload
/// with a field of another type than it should have is read through a JSON tree instead, where
/// that field reads as absent too: as the log has always been read.
#[derive(Deserialize)]
struct CallEvent<'a> {
    #[serde(borrow, default)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    account: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    extension: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dialled: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    trunk: Option<Cow<'a, str>>,
    #[serde(default)]
    kamailio_h_entry: Option<u64>,
    #[serde(default)]
    kamailio_h_id: Option<u64>,
    #[serde(default)]
    billsec: Option<u64>,
}

impl<'a> CallEvent<'a> {
    fn parse(payload: &'a str) -> serde_json::Result<CallEvent<'a>> {
        serde_json::from_str(payload).or_else(|_| {
            let v: serde_json::Value = serde_json::from_str(payload)?;
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(|x| Cow::Owned(x.to_string()));
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
            Ok(CallEvent {
                call_id: s("call_id"),
                account: s("account"),
                extension: s("extension"),
                dialled: s("dialled"),
                trunk: s("trunk"),
                kamailio_h_entry: n("kamailio_h_entry"),
                kamailio_h_id: n("kamailio_h_id"),
                billsec: n("billsec"),
            })
        })
    }
}

/// A field of a [`CallEvent`], or the empty string.
fn text<'b>(f: &'b Option<Cow<'_, str>>) -> &'b str {
    f.as_deref().unwrap_or("")
}

/// Whether a stored decision allowed its call (the rest of it is not read).
#[derive(Deserialize)]
struct StoredAllow {
    allow: Option<bool>,
}

impl Rebuilt {
    pub(crate) fn new(engine: Engine) -> Rebuilt {
        Rebuilt {
            engine,
            traffic: crate::traffic::Traffic::default(),
            live: HashMap::new(),
            through: 0,
            events: 0,
            effects: vec![],
            memory: None,
        }
    }

    /// Nothing read yet, for an engine rating with `rater`, deciding with `policy` and
    /// remembering ended calls for `record_grace` (as the server runs it).
    pub(crate) fn empty(
        rater: std::sync::Arc<tollguard_core::rater::Rater>,
        policy: tollguard_engine::policy::Policy,
        record_grace: jiff::SignedDuration,
    ) -> Rebuilt {
        let mut engine = Engine::new(rater, policy);
        engine.set_record_grace(Some(record_grace));
        Rebuilt::new(engine)
    }

    /// A state restored from a snapshot taken at log position `through`.
    pub(crate) fn restored(
        engine: Engine,
        traffic: crate::traffic::Traffic,
        live: HashMap<String, Live>,
        through: i64,
        events: u64,
    ) -> Rebuilt {
        // (The snapshot's engine knows all it learnt, also from rows deleted since.)
        Rebuilt { engine, traffic, live, through, events, effects: vec![], memory: Some(None) }
    }

    /// Handles the events the log has after [`Rebuilt::through`]; returns how many.
    pub(crate) fn read(&mut self, store: &Store) -> anyhow::Result<u64> {
        if self.memory.is_none() {
            // The memory and the log as one state: a pruning between the two reads would leave
            // a gap between the memory's time and what is left of the log.
            return store.consistently(|store| self.read_first(store))?;
        }
        self.read_more(store)
    }

    /// [`Rebuilt::read`] the first time: what retention kept of the engine's memory, then the log.
    fn read_first(&mut self, store: &Store) -> anyhow::Result<u64> {
        self.memory = Some(match store.memory()? {
            Some((at, accounts)) => {
                let at = Timestamp::from_nanosecond(at as i128)?;
                let seeds = accounts
                    .into_iter()
                    .map(|(account, json)| {
                        let seed = serde_json::from_str(&json)
                            .map_err(|e| anyhow::anyhow!("the memory kept of account {account}: {e}"))?;
                        Ok((account, seed))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Some((at, seeds))
            }
            None => None,
        });
        self.read_more(store)
    }

    fn read_more(&mut self, store: &Store) -> anyhow::Result<u64> {
        let mut failed: Option<anyhow::Error> = None;
        let n = store.for_each_event_after(self.through, |e| {
            if failed.is_none() {
                let seq = e.seq;
                match self.handle(store, e) {
                    Ok(()) => self.through = seq,
                    Err(err) => failed = Some(err),
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        // The log has nothing from that time on yet: what it knew then is known now.
        self.remember(None);
        self.events += n;
        Ok(n)
    }

    /// Hands the engine what it knew before the time retention deleted rows from, once the log
    /// reaches that time (`now`; `None`: now, whatever the time).
    fn remember(&mut self, now: Option<Timestamp>) {
        let due = match &self.memory {
            Some(Some((at, _))) => now.is_none_or(|t| t >= *at),
            _ => false,
        };
        if due {
            if let Some(Some((_, seeds))) = self.memory.replace(None) {
                for (account, seed) in &seeds {
                    self.engine.seed_memory(account, seed);
                }
            }
        }
    }

    fn handle(&mut self, store: &Store, e: tollguard_store::StoredEvent) -> anyhow::Result<()> {
        let now = Timestamp::from_nanosecond(e.time_ns as i128).unwrap_or(Timestamp::UNIX_EPOCH);
        self.remember(Some(now));
        let Rebuilt { engine, traffic, live, effects, .. } = self;
        while let Some(d) = engine.next_deadline() {
            if d >= now {
                break;
            }
            crate::handle_counted(engine, traffic, Event::Tick, d, effects);
            effects.clear();
        }
        let kind = e.kind.as_str();
        match kind {
            "attempt" | "answer" | "end" => {
                let c = CallEvent::parse(&e.payload)
                    .map_err(|err| anyhow::anyhow!("event {} ({kind}): {err}", e.seq))?;
                let call_id = text(&c.call_id);
                match kind {
                    "attempt" => {
                        let account = text(&c.account);
                        let a = Attempt {
                            call_id,
                            account,
                            extension: text(&c.extension),
                            dialled: text(&c.dialled),
                            dst_channel: text(&c.trunk),
                            ..Attempt::default()
                        };
                        crate::handle_counted(engine, traffic, Event::Attempt(a), now, effects);
                        if let Some(d) = take_decision(effects) {
                            traffic.attempt(now, d.allowed);
                            if d.allowed {
                                live.insert(
                                    call_id.to_string(),
                                    Live {
                                        account: account.to_string(),
                                        attempted: now,
                                        answered: None,
                                        cap: d.max_duration_s,
                                        kamailio: None,
                                    },
                                );
                            }
                        }
                    }
                    "answer" => {
                        if let Some(l) = live.get_mut(call_id) {
                            l.answered.get_or_insert(now);
                            if let (Some(e), Some(i)) = (c.kamailio_h_entry, c.kamailio_h_id) {
                                l.kamailio = Some((e, i));
                            }
                        }
                        crate::handle_counted(engine, traffic, Event::Answer { call_id }, now, effects);
                    }
                    _ => {
                        live.remove(call_id);
                        let billsec = c.billsec.map(|b| b as u32);
                        crate::handle_counted(engine, traffic, Event::End { call_id, billsec }, now, effects);
                    }
                }
            }
            "record" => match record_from_log(store, &e.payload)? {
                Ok((c, allowed)) => {
                    // The same rule as at intake.
                    if !record_counts(engine, &c, allowed, now) {
                        return Ok(());
                    }
                    live.remove(&c.call_id);
                    crate::handle_counted(engine, traffic, Event::Record(&c), now, effects);
                }
                Err(err) => return Err(anyhow::anyhow!("event {} (record): {err}", e.seq)),
            },
            "command" => {
                let v: serde_json::Value = serde_json::from_str(&e.payload)
                    .map_err(|err| anyhow::anyhow!("event {} (command): {err}", e.seq))?;
                let str_of = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                let account = str_of("account");
                let extension = v.get("extension").and_then(|x| x.as_str()).map(str::to_string);
                let cmd = match str_of("command").as_str() {
                    "block" => {
                        let until =
                            v.get("until").and_then(|x| x.as_str()).and_then(|u| u.parse::<Timestamp>().ok());
                        let list = |k: &str| -> Vec<String> {
                            v[k].as_array()
                                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                                .unwrap_or_default()
                        };
                        let destinations =
                            crate::block_destinations(&list("countries"), &list("risk"), &list("prefixes"))
                                .unwrap_or_default();
                        Command::Block { account, extension, until, reason: str_of("reason"), destinations }
                    }
                    "allow" => Command::Allow {
                        account,
                        countries: v["countries"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
                            .unwrap_or_default(),
                        until: v
                            .get("until")
                            .and_then(|x| x.as_str())
                            .and_then(|u| u.parse::<Timestamp>().ok()),
                    },
                    "limits" => {
                        let owner = if str_of("owner") == "customer" {
                            tollguard_engine::LimitOwner::Customer
                        } else {
                            tollguard_engine::LimitOwner::Operator
                        };
                        // Validated when they were set; the ceiling is not checked again.
                        let limits = serde_json::from_value::<Vec<tollguard_engine::policy::LimitSpec>>(
                            v.get("limits").cloned().unwrap_or_default(),
                        )
                        .map_err(|err| err.to_string())
                        .and_then(|mut specs| {
                            // Logged before the warning level took only "alert": the engine never
                            // acted on the others, so they are dropped, as they were then.
                            for s in &mut specs {
                                if let Some(w) = s.on_warning.as_mut() {
                                    w.retain(|a| *a == tollguard_engine::policy::Action::Alert);
                                }
                            }
                            specs.iter().map(tollguard_engine::Limit::from_spec).collect()
                        });
                        match limits {
                            Ok(limits) => Command::SetLimits { account, owner, limits },
                            Err(err) => return Err(anyhow::anyhow!("event {} (limits): {err}", e.seq)),
                        }
                    }
                    _ => Command::Unblock {
                        account,
                        extension,
                        // Logged before "by" was: a customer's unblock said "automatic_only".
                        by: match (v["by"].as_str(), v["automatic_only"].as_bool()) {
                            (Some("customer"), _) => tollguard_engine::Unblocker::Customer,
                            (None, Some(true)) => tollguard_engine::Unblocker::AnyLimit,
                            _ => tollguard_engine::Unblocker::Operator,
                        },
                    },
                };
                crate::handle_counted(engine, traffic, Event::Command(cmd), now, effects);
            }
            other => return Err(anyhow::anyhow!("event {}: unknown kind {other:?}", e.seq)),
        }
        effects.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_common as common;

    #[test]
    fn a_log_with_limits_set_before_the_warning_level_took_only_alert_still_rebuilds() {
        // PUT /v1/accounts/X/limits took other actions at the warning level before (the engine
        // never acted on them); such a log must not stop the server from starting.
        let dir = common::temp_dir("rebuild-old-limits");
        let mut store = Store::open(&dir.join("tollguard.db")).unwrap();
        let limits = json!([{"name": "acme.day", "metric": "spend", "window": "day", "max": "10.00",
                             "warning_percent": 50, "on_warning": ["alert", "deny"], "on_critical": ["alert", "deny"]}]);
        let payload = json!({"command": "limits", "account": "acme", "owner": "operator", "limits": limits})
            .to_string();
        store.batch(|b| b.append_event(1_767_600_000_000_000_000, "command", &payload).map(|_| ())).unwrap();
        let mut r = Rebuilt::new(Engine::new(common::rater(), tollguard_engine::policy::Policy::builtin()));
        assert_eq!(r.read(&store).unwrap(), 1);
        let now = jiff::Timestamp::from_second(1_767_600_100).unwrap();
        let report = r.engine.account_report("acme", now).unwrap();
        assert!(report.limits.iter().any(|l| l.limit == "acme.day"), "{report:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_logged_before_its_event_carried_the_decision_takes_the_stored_one() {
        // Logs written before a record's event said whether its call was allowed: the rebuild
        // looks the decision up in the store, as it did then. Two such records, one of a call
        // with a stored decision (allowed, but the engine never saw it: not counted), one of a
        // call never authorized (counted); and one in today's form, which the store's decision
        // of its call id (a later call's) does not change.
        let dir = common::temp_dir("rebuild-old-records");
        let mut store = Store::open(&dir.join("tollguard.db")).unwrap();
        let t0: i64 = 1_767_600_000_000_000_000; // 2026-01-05T08:00:00Z
        let record = |id: &str| {
            serde_json::to_string(&Record {
                call_id: id.into(),
                account: "acme".into(),
                extension: "201".into(),
                to: "0067077123456".into(),
                start: "2026-01-05T07:50:00Z".into(),
                answer: Some("2026-01-05T07:50:05Z".into()),
                end: Some("2026-01-05T07:55:35Z".into()),
                billsec: 330,
                disposition: None,
                trunk: String::new(),
                channel: String::new(),
                context: String::new(),
            })
            .unwrap()
        };
        let allowed = r#"{"allow":true,"max_duration_s":null}"#;
        store
            .batch(|b| {
                b.put_decision("old-authorized", "acme", t0 - 600_000_000_000, allowed)?;
                b.put_decision("new-form", "acme", t0 + 1, allowed)?;
                b.append_event(t0, "record", &record("old-authorized"))?;
                b.append_event(t0, "record", &record("old-never-authorized"))?;
                b.append_event(t0, "record", &logged_record(&record("new-form"), None))?;
                Ok(())
            })
            .unwrap();
        let mut r = Rebuilt::new(Engine::new(common::rater(), tollguard_engine::policy::Policy::builtin()));
        assert_eq!(r.read(&store).unwrap(), 3);
        let now = jiff::Timestamp::from_second(1_767_600_100).unwrap();
        let report = serde_json::to_value(r.engine.account_report("acme", now).unwrap()).unwrap();
        let used = report["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["limit"] == "default.high_risk_spend_24h")
            .map(|l| l["used"].clone());
        assert_eq!(used, Some(json!("17.40")), "two of the three records, 8.70 each: {report}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_memory_retention_kept_reaches_the_engine_also_with_no_event_after_its_time() {
        let dir = common::temp_dir("rebuild-memory");
        let mut store = Store::open(&dir.join("tollguard.db")).unwrap();
        let t0 = jiff::Timestamp::from_second(1_767_607_200).unwrap(); // 2026-01-05T10:00:00Z
        let seed = tollguard_engine::MemorySeed {
            since: Some(t0),
            seen: vec![("TL+670/any".into(), t0.as_second())],
            alerted: vec![],
        };
        let kept = [("acme".to_string(), serde_json::to_string(&seed).unwrap())];
        let t1 = 1_776_000_000_000_000_000; // April 2026
        store
            .prune(t1, tollguard_store::MemoryUpdate { at: t1, put: &kept, remove: &[] }, 100, &|| true)
            .unwrap();
        let fresh =
            || Rebuilt::new(Engine::new(common::rater(), tollguard_engine::policy::Policy::builtin()));
        let mut r = fresh();
        assert_eq!(r.read(&store).unwrap(), 0, "an empty log");
        let now = jiff::Timestamp::from_nanosecond(t1 as i128).unwrap();
        let report = r.engine.account_report("acme", now).expect("the account, from its memory");
        assert_eq!(report.destinations_seen, 1, "{report:?}");
        // Restored from a snapshot: its engine knows already; the memory is not given again.
        let mut restored = Rebuilt::restored(fresh().engine, Default::default(), HashMap::new(), 0, 0);
        restored.read(&store).unwrap();
        assert!(restored.engine.account_report("acme", now).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_logged_call_event_reads_as_a_json_tree_reads_it() {
        let read = |p: &str| {
            let c = CallEvent::parse(p).unwrap();
            (text(&c.call_id).to_string(), text(&c.trunk).to_string(), c.billsec, c.kamailio_h_entry)
        };
        let s = |x: &str| x.to_string();
        // typed, borrowed; null and missing are absent; other fields are ignored
        assert_eq!(read(r#"{"call_id":"a","trunk":null,"lost":true}"#), (s("a"), s(""), None, None));
        assert_eq!(read(r#"{"call_id":"a\"b","billsec":12}"#), (s("a\"b"), s(""), Some(12), None));
        assert_eq!(read(r#"{"call_id":"k","kamailio_h_entry":7}"#), (s("k"), s(""), None, Some(7)));
        // a field of another type: absent, the others read (through the tree)
        assert_eq!(read(r#"{"call_id":"x","billsec":"12","trunk":"kpn"}"#), (s("x"), s("kpn"), None, None));
        assert_eq!(read(r#"{"call_id":5,"billsec":1.5}"#), (s(""), s(""), None, None));
        assert!(CallEvent::parse("{not json").is_err());
    }

    #[test]
    fn a_rebuild_read_in_two_parts_equals_one_read_of_the_whole_log() {
        // What a reload does: read the log, let more come, read what came.
        let dir = common::temp_dir("rebuild-parts");
        let mut store = Store::open(&dir.join("tollguard.db")).unwrap();
        let t0: i64 = 1_767_600_000_000_000_000; // 2026-01-05T08:00:00Z
        let attempt = |n: i64, to: &str| {
            let call = format!("c{n}");
            let payload =
                json!({"call_id": call, "account": "acme", "extension": "201", "dialled": to}).to_string();
            (t0 + n * 10_000_000_000, "attempt", payload)
        };
        let end = |n: i64| {
            let payload = json!({"call_id": format!("c{n}"), "billsec": 100}).to_string();
            (t0 + n * 10_000_000_000 + 5_000_000_000, "end", payload)
        };
        let events = |range: std::ops::Range<i64>| -> Vec<(i64, &str, String)> {
            range
                .flat_map(|n| [attempt(n, if n % 3 == 0 { "0067077123456" } else { "0201234567" }), end(n)])
                .collect()
        };
        let append = |store: &mut Store, evs: Vec<(i64, &str, String)>| {
            store
                .batch(|b| {
                    for (t, kind, payload) in &evs {
                        b.append_event(*t, kind, payload)?;
                    }
                    Ok(())
                })
                .unwrap();
        };
        // Calls 0..20 end; 20 is attempted and still running when the first read is taken.
        append(&mut store, events(0..20));
        append(&mut store, vec![attempt(20, "0067077123456")]);
        let fresh =
            || Rebuilt::new(Engine::new(common::rater(), tollguard_engine::policy::Policy::builtin()));
        let mut parts = fresh();
        assert_eq!(parts.read(&store).unwrap(), 41);
        assert!(parts.live.contains_key("c20"));
        append(&mut store, vec![end(20)]);
        append(&mut store, events(21..30));
        assert_eq!(parts.read(&store).unwrap(), 19);
        assert_eq!(parts.read(&store).unwrap(), 0, "nothing read twice");
        let mut whole = fresh();
        whole.read(&store).unwrap();
        assert_eq!((parts.events, parts.through), (whole.events, whole.through));
        assert_eq!((parts.events, parts.live.len()), (60, 0));
        let now = jiff::Timestamp::from_nanosecond(i128::from(t0) + 3_600_000_000_000).unwrap();
        let report =
            |r: &mut Rebuilt| serde_json::to_value(r.engine.account_report("acme", now).unwrap()).unwrap();
        assert_eq!(report(&mut parts), report(&mut whole));
        assert!(fresh().engine.account_report("acme", now).is_none(), "the report is what was read");
        let spent = report(&mut whole)["limits"].as_array().unwrap().iter().any(|l| l["used"] != "0.00");
        assert!(spent, "{}", report(&mut whole));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_record_stored_before_a_reload_counts_once() {
        // Stored, then the engine is rebuilt from a log that has it, then the intake hands it to
        // the (new) engine: it must not count twice.
        let dir = common::temp_dir("reload-record");
        let opts = crate::Options { database: dir.join("tollguard.db"), ..crate::Options::default() };
        let server =
            crate::Server::start(common::rater(), tollguard_engine::policy::Policy::builtin(), opts).unwrap();
        server.set_reloader(Box::new(|| Ok((common::rater(), tollguard_engine::policy::Policy::builtin()))));
        let s = server.state();
        let now = s.now();
        let at = |min: i64| (now - jiff::SignedDuration::from_mins(min)).to_string();
        let r = Record {
            call_id: "r1".into(),
            account: "acme".into(),
            extension: "201".into(),
            to: "0067077123456".into(),
            start: at(5),
            answer: Some(at(5)),
            end: Some(at(3)),
            billsec: 120,
            disposition: Some("answered".into()),
            trunk: String::new(),
            channel: String::new(),
            context: String::new(),
        };
        // Two calls; the first ended three hours before the second, so the engine, handling the
        // second, forgets the first (its record grace is 2 minutes).
        let mut earlier = r.clone();
        earlier.call_id = "r0".into();
        (earlier.start, earlier.answer, earlier.end) = (at(185), Some(at(185)), Some(at(183)));
        let cdrs = vec![earlier.to_cdr(0).unwrap(), r.to_cdr(0).unwrap()];
        let spent = |s: &AppState| {
            let report = s.core.lock().unwrap().engine.account_report("acme", now).unwrap();
            let v = serde_json::to_value(&report).unwrap();
            v["limits"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["limit"] == "default.high_risk_spend_24h")
                .unwrap()["used"]
                .clone()
        };
        // The overview's spend (ten-thousandths), all hours.
        let traffic = |s: &AppState| {
            s.core.lock().unwrap().traffic.last_hours(now, 24).iter().map(|h| h.spend).sum::<i64>()
        };
        let new = store_records(&s, &cdrs, None, now).await.unwrap();
        crate::reload(&s).await.unwrap();
        assert_eq!(spent(&s), "5.80", "the reload read the stored records");
        assert_eq!(traffic(&s), 58_000);
        apply_records(&s, &cdrs, &new, now);
        assert_eq!(spent(&s), "5.80", "and the intake did not count them again");
        assert_eq!(traffic(&s), 58_000);
        // A handler stores its effects after letting the engine's lock go, where a reload may
        // have swapped in traffic figures rebuilt from a log that has the event: its charges
        // were counted under the lock and are not counted again.
        let mut effects = vec![Effect::Charged { account: "acme".into(), units: 29_000 }];
        s.store_effects(&mut effects);
        assert_eq!(traffic(&s), 58_000, "counted once");
        // A record stored after the reload counts.
        let mut later = cdrs[1].clone();
        later.call_id = "r2".into();
        let new = store_records(&s, std::slice::from_ref(&later), None, now).await.unwrap();
        apply_records(&s, &[later], &new, now);
        assert_eq!(spent(&s), "8.70");
        assert_eq!(traffic(&s), 87_000);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_round_trips_through_its_stored_form() {
        let r = Record {
            call_id: "c1".into(),
            account: "acme".into(),
            extension: "201".into(),
            to: "0067077123456".into(),
            start: "2026-01-19T09:00:00Z".into(),
            answer: Some("2026-01-19T09:00:05Z".into()),
            end: Some("2026-01-19T09:05:35Z".into()),
            billsec: 330,
            disposition: Some("answered".into()),
            trunk: String::new(),
            channel: String::new(),
            context: String::new(),
        };
        let c = r.to_cdr(0).unwrap();
        assert_eq!(c.duration_s, 335);
        let back = cdr_from_json(&serde_json::to_string(&Record::from_cdr(&c)).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_fields_are_named_with_their_index() {
        let mut r: Record = serde_json::from_value(json!({
            "call_id": "c", "account": "a", "extension": "1", "to": "00311", "start": "yesterday", "billsec": 0
        }))
        .unwrap();
        assert!(r.to_cdr(3).unwrap_err().starts_with("cdrs[3].start: not an RFC 3339 time"));
        r.start = "2026-01-19T09:00:00Z".into();
        r.disposition = Some("ANSWERED".into());
        assert!(r.to_cdr(0).unwrap_err().contains("disposition"));
    }
}
