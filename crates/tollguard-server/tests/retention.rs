//! Retention: what is older than `[server] retention` is deleted, what the state needs is kept,
//! and a start from what is left decides as the running server did.

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::path::Path;
use tollguard_engine::policy::Policy;
use tollguard_server::{create_token, Clock, Options, Scope, Server};

mod common;
use common::{call, rater};

const DAY: SignedDuration = SignedDuration::from_hours(24);

/// A server on `db` whose clock stands at `at`, keeping 91 days, no snapshots (a start reads
/// what is left of the log).
fn server(db: &Path, at: Timestamp) -> (Server, Clock) {
    server_with(db, at, false)
}

/// [`server`], keeping snapshots or not (written at the start and at the stop).
fn server_with(db: &Path, at: Timestamp, snapshots: bool) -> (Server, Clock) {
    let clock = Clock::driven(at, 0);
    let opts = Options {
        database: db.to_path_buf(),
        clock: clock.clone(),
        snapshot_every: snapshots.then_some(std::time::Duration::from_secs(3600)),
        retention: Some(DAY * 91),
        ..Options::default()
    };
    (Server::start(rater(), Policy::builtin(), opts).unwrap(), clock)
}

/// Calls of acme and beta from `from`, one every 10 minutes for `n`: Dutch numbers, answered,
/// ended, every third ended by its record. Returns the call ids.
async fn calls(s: &Server, clock: &Clock, token: &str, from: Timestamp, n: i64, tag: &str) -> Vec<String> {
    let app = s.router();
    let mut ids = vec![];
    for i in 0..n {
        let now = from + SignedDuration::from_mins(10 * i);
        clock.set(now, 0);
        s.tick(now);
        let (account, id) = (["acme", "beta"][(i % 2) as usize], format!("{tag}-{i}"));
        let to = if i % 5 == 0 { "0612345678" } else { "0201234567" };
        let body =
            json!({"call_id": id, "account": account, "extension": "201", "from": "+31201234567", "to": to});
        let (st, d) = call(&app, "POST", "/v1/authorize", token, Some(body)).await;
        assert_eq!((st, &d["allow"]), (StatusCode::OK, &json!(true)), "{d}");
        call(&app, "POST", &format!("/v1/calls/{id}/answer"), token, Some(json!({}))).await;
        let talk = 60 + i * 7;
        clock.set(now + SignedDuration::from_secs(talk), 0);
        if i % 3 == 0 {
            let (start, end) = (now.to_string(), (now + SignedDuration::from_secs(talk)).to_string());
            let record = json!([{"call_id": id, "account": account, "extension": "201", "to": to,
                                 "start": start, "answer": start, "end": end, "billsec": talk}]);
            let (st, v) = call(&app, "POST", "/v1/cdrs", token, Some(record)).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        } else {
            call(&app, "POST", &format!("/v1/calls/{id}/end"), token, Some(json!({"billsec": talk}))).await;
        }
        ids.push(id);
    }
    s.flush().await;
    ids
}

/// `/metrics` as text.
async fn metrics(app: &axum::Router) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::builder().uri("/metrics").body(axum::body::Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Every account's limits and blocks as the server reports them.
async fn state_of(s: &Server, token: &str) -> Vec<Value> {
    let app = s.router();
    let mut out = vec![];
    for a in ["acme", "beta", "gamma"] {
        let (st, v) = call(&app, "GET", &format!("/v1/accounts/{a}"), token, None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        out.push(json!({"limits": v["limits"], "blocks": v["blocks"], "running": v["running_calls"]}));
    }
    out
}

#[tokio::test]
async fn what_is_past_retention_goes_and_what_the_state_needs_stays() {
    let dir = common::temp_dir("retention");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let old: Timestamp = "2026-01-05T08:00:00Z".parse().unwrap();
    let (s, clock) = server(&db, old);
    let app = s.router();

    // Months ago: the operator's commands, calls, and a night call to East Timor that is
    // denied and opens an incident.
    clock.set(old, 0);
    let limits =
        json!({"limits": [{"name": "noc.beta_day", "metric": "spend", "window": "day", "max": "3.00"}]});
    let (st, v) = call(&app, "PUT", "/v1/accounts/beta/limits", &token, Some(limits)).await;
    assert!(st.is_success(), "{st} {v}");
    let (st, v) =
        call(&app, "POST", "/v1/accounts/gamma/block", &token, Some(json!({"reason": "unpaid"}))).await;
    assert!(st.is_success(), "{st} {v}");
    let old_ids = calls(&s, &clock, &token, old, 30, "old").await;
    let night = old + SignedDuration::from_hours(15); // 23:00 in Amsterdam
    clock.set(night, 0);
    let body = json!({"call_id": "old-night", "account": "acme", "extension": "201", "from": "+31201234567", "to": "0067077123456"});
    let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
    assert_eq!(d["allow"], false, "{d}");
    s.flush().await;
    let (_, incidents) = call(&app, "GET", "/v1/incidents?state=open", &token, None).await;
    let incident = incidents["incidents"][0]["id"].as_i64().unwrap_or_else(|| panic!("{incidents}"));

    // Four months later: a day of calls.
    let now = old + DAY * 120;
    let new_ids = calls(&s, &clock, &token, now, 30, "new").await;
    let at = now + SignedDuration::from_hours(6);
    clock.set(at, 0);
    s.tick(at);
    let before = state_of(&s, &token).await;

    // The open incident holds everything back: its calls are the evidence.
    let r = s.prune(at).unwrap().expect("a retention");
    assert_eq!(r.pruned.rows(), 0, "{r:?}");
    assert!(r.held_by.as_deref().is_some_and(|h| h.contains(&format!("incident {incident}"))), "{r:?}");
    assert!(r.before < old, "{r:?}");

    // Resolved the day after it opened (the clock set back for it), it no longer does: it is
    // past retention itself, and goes with its evidence.
    clock.set(old + DAY, 0);
    let uri = format!("/v1/incidents/{incident}/resolve");
    let (st, v) = call(&app, "POST", &uri, &token, Some(json!({"reason": "done"}))).await;
    assert!(st.is_success(), "{st} {v}");
    s.flush().await;
    clock.set(at, 0);
    let r = s.prune(at).unwrap().expect("a retention");
    // (Retention from the newest event, a few hours before `at`.)
    assert!(r.held_by.is_none() && r.before <= at - DAY * 91 && r.before > at - DAY * 92, "{r:?}");
    let p = &r.pruned;
    // 30 calls: attempts, answers, ends or records; the denied call's attempt; alerts.
    assert!(p.events >= 91 && p.decisions == 31 && p.cdrs == 10, "{p:?}");
    // (The incident is the newest of its table: it stays, its evidence goes.)
    assert!(p.alerts >= 1 && p.audit >= 1 && p.incidents == 0, "{p:?}");
    let text = metrics(&app).await;
    assert!(text.contains(&format!("tollguard_retention_deleted_rows_total {}", p.rows())), "{text}");
    assert!(text.contains(&format!("tollguard_retention_before_timestamp_seconds {}", r.before.as_second())));

    // Evidence: the old calls' decisions and alerts are gone, the new ones are there.
    let (st, _) = call(&app, "GET", &format!("/v1/decisions/{}", old_ids[0]), &token, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&app, "GET", &format!("/v1/decisions/{}", new_ids[0]), &token, None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, alerts) = call(&app, "GET", "/v1/alerts?account=acme", &token, None).await;
    let old_alerts =
        alerts["alerts"].as_array().unwrap().iter().filter(|a| a["call_id"] == "old-night").count();
    assert_eq!(old_alerts, 0, "{alerts}");
    assert_eq!(s.prune(at).unwrap().unwrap().pruned.rows(), 0, "nothing more");
    // A report of a day whose rows are gone says so, instead of showing a quiet day.
    let store = tollguard_store::Store::open(&db).unwrap();
    let day = |t: Timestamp| jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap().to_datetime(t).date();
    let e = tollguard_server::report::daily_report(&store, &rater(), "acme", day(old), at).unwrap_err();
    assert!(e.to_string().contains("[server] retention deleted it"), "{e}");
    let r = tollguard_server::report::daily_report(&store, &rater(), "acme", day(now), at).unwrap();
    assert!(r.calls > 0, "{r:?}");
    let ui = |uri: String| {
        let req = axum::http::Request::builder()
            .uri(uri)
            .header("cookie", format!("tollguard_token={token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        tower::ServiceExt::oneshot(app.clone(), req)
    };
    // The incident is still there (the newest of its table), its calls are not: its report
    // says so instead of showing part of it.
    assert_eq!(ui(format!("/ui/incidents/{incident}")).await.unwrap().status(), StatusCode::GONE);
    let page = |date: jiff::civil::Date| {
        let req = axum::http::Request::builder()
            .uri(format!("/ui/accounts/acme/daily?date={date}"))
            .header("cookie", format!("tollguard_token={token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        tower::ServiceExt::oneshot(app.clone(), req)
    };
    assert_eq!(page(day(old)).await.unwrap().status(), StatusCode::GONE);
    assert_eq!(page(day(now)).await.unwrap().status(), StatusCode::OK);
    drop(app);
    drop(s);

    // A start from what is left: the operator's limit and block (commands, kept) and the
    // usage of the last day are as they were.
    let (s, _) = server(&db, at);
    assert_eq!(s.state().from_snapshot, None);
    let after = state_of(&s, &token).await;
    assert_eq!(after, before);
    let text = serde_json::to_string(&after).unwrap();
    for what in ["noc.beta_day", "operator.block: unpaid"] {
        assert!(text.contains(what), "no {what} in {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_block_a_limit_set_until_released_holds_retention_back() {
    let dir = common::temp_dir("retention-block");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let old: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    let (s, clock) = server(&db, old);
    let app = s.router();
    // A limit that blocks until released (no block_for), crossed by one call.
    let limits = json!({"limits": [{"name": "noc.acme_day", "metric": "spend", "window": "day", "max": "1.00",
                                    "on_critical": ["alert", "block"]}]});
    let (st, v) = call(&app, "PUT", "/v1/accounts/acme/limits", &token, Some(limits)).await;
    assert!(st.is_success(), "{st} {v}");
    calls(&s, &clock, &token, old, 1, "warmup").await;
    let body = json!({"call_id": "pricey", "account": "acme", "extension": "201", "from": "+31201234567", "to": "0201234567"});
    let start = old + SignedDuration::from_hours(1);
    clock.set(start, 0);
    let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
    assert_eq!(d["allow"], true, "{d}");
    call(&app, "POST", "/v1/calls/pricey/answer", &token, Some(json!({}))).await;
    // At 1.2 cents a minute it crosses EUR 1.00 in its 84th minute, while it runs.
    for m in (5..=120).step_by(5) {
        s.tick(start + SignedDuration::from_mins(m));
    }
    let end = start + SignedDuration::from_hours(2);
    clock.set(end, 0);
    call(&app, "POST", "/v1/calls/pricey/end", &token, Some(json!({"billsec": 7200}))).await;
    s.flush().await;
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", &token, None).await;
    assert_eq!(v["blocks"][0]["rule"], "noc.acme_day", "{v}");
    assert_eq!(v["blocks"][0]["until"], Value::Null, "{v}");
    // Its incident closed, the block alone holds the log back.
    let (_, incidents) = call(&app, "GET", "/v1/incidents?state=open", &token, None).await;
    for i in incidents["incidents"].as_array().unwrap() {
        let id = i["id"].as_i64().unwrap();
        call(&app, "POST", &format!("/v1/incidents/{id}/resolve"), &token, Some(json!({"reason": "x"})))
            .await;
    }
    s.flush().await;
    let at = old + DAY * 200;
    let r = s.prune(at).unwrap().unwrap();
    assert!(r.held_by.as_deref().is_some_and(|h| h.contains("a block of account acme")), "{r:?}");
    assert_eq!(r.pruned.events, 0, "{r:?}");
    // Released: the calls that set it go.
    clock.set(at, 0);
    let (st, v) = call(&app, "POST", "/v1/accounts/acme/unblock", &token, Some(json!({}))).await;
    assert!(st.is_success(), "{st} {v}");
    s.flush().await;
    let r = s.prune(at).unwrap().unwrap();
    assert_eq!(r.held_by, None, "{r:?}");
    // (The newest decision stays: a table's last row is kept.)
    assert!(r.pruned.events >= 4 && r.pruned.decisions == 1, "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn used(v: &Value, name: &str) -> Value {
    v["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == name)
        .map(|l| l["used"].clone())
        .unwrap_or(Value::Null)
}

async fn resolve_all(app: &axum::Router, token: &str) {
    for st in ["open", "acknowledged"] {
        let (_, incidents) = call(app, "GET", &format!("/v1/incidents?state={st}"), token, None).await;
        for i in incidents["incidents"].as_array().unwrap() {
            let id = i["id"].as_i64().unwrap();
            call(app, "POST", &format!("/v1/incidents/{id}/resolve"), token, Some(json!({"reason": "x"})))
                .await;
        }
    }
}

/// Months without traffic (or a clock that jumped forward): the log is kept from `retention`
/// before its newest event, not emptied; a record that comes then counts, live and after a
/// rebuild (had the newest events gone, the next one would have had the position of one the
/// engine had handled, and been skipped).
#[tokio::test]
async fn after_months_without_traffic_the_log_is_kept_and_the_next_record_counts() {
    let dir = common::temp_dir("retention-seq");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let old: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    {
        let (s, clock) = server(&db, old);
        let app = s.router();
        clock.set(old, 0);
        let (st, v) =
            call(&app, "POST", "/v1/accounts/gamma/block", &token, Some(json!({"reason": "unpaid"}))).await;
        assert!(st.is_success(), "{v}");
        for i in 0..20 {
            let id = format!("c{i}");
            let body = json!({"call_id": id, "account": "acme", "extension": "201", "from": "+31201234567", "to": "0201234567"});
            let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
            assert_eq!(d["allow"], true, "{d}");
            call(&app, "POST", &format!("/v1/calls/{id}/end"), &token, Some(json!({"billsec": 0}))).await;
        }
        s.flush().await;
        resolve_all(&app, &token).await;
        s.flush().await;
    }
    let now = old + DAY * 200;
    let (s, clock) = server(&db, now);
    clock.set(now, 0);
    let r = s.prune(now).unwrap().unwrap();
    assert!(r.held_by.as_deref().is_some_and(|h| h.contains("the newest event")), "{r:?}");
    assert_eq!(r.pruned.events, 0, "{r:?}");
    let app = s.router();
    let at = |secs: i64| (now - SignedDuration::from_secs(secs)).to_string();
    let record = json!([{"call_id": "fresh1", "account": "acme", "extension": "201", "to": "0067077123456",
                         "start": at(900), "answer": at(895), "end": at(565), "billsec": 330}]);
    let (st, v) = call(&app, "POST", "/v1/cdrs", &token, Some(record)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["new"], 1, "{v}");
    s.flush().await;
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", &token, None).await;
    let live = used(&v, "default.high_risk_spend_24h");
    drop(app);
    drop(s);
    let (s, _) = server(&db, now);
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", &token, None).await;
    let rebuilt = used(&v, "default.high_risk_spend_24h");
    assert_eq!(live, rebuilt, "live engine and rebuild differ");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A destination whose first call is past retention is still known to a rebuild from what is
/// left: a later night call to it, allowed live, is allowed and counted again.
#[tokio::test]
async fn a_destination_first_called_before_retention_stays_known_to_a_rebuild() {
    let dir = common::temp_dir("retention-dest");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap(); // 11:00 Amsterdam, Monday
    let (s, clock) = server(&db, t0);
    let app = s.router();
    clock.set(t0, 0);
    let body = json!({"call_id": "day-tl", "account": "acme", "extension": "201", "from": "+31201234567", "to": "0067077123456"});
    let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
    assert_eq!(d["allow"], true, "{d}");
    call(&app, "POST", "/v1/calls/day-tl/answer", &token, Some(json!({}))).await;
    clock.set(t0 + SignedDuration::from_secs(60), 0);
    call(&app, "POST", "/v1/calls/day-tl/end", &token, Some(json!({"billsec": 55}))).await;
    s.flush().await;
    resolve_all(&app, &token).await; // (closed then: it holds nothing back)
    s.flush().await;
    // 100 days later, at night (Tuesday 23:00 Amsterdam)
    let t1: Timestamp = "2026-04-14T21:00:00Z".parse().unwrap();
    clock.set(t1, 0);
    s.tick(t1);
    let body = json!({"call_id": "night-tl", "account": "acme", "extension": "201", "from": "+31201234567", "to": "0067077123456"});
    let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
    assert_eq!(d["allow"], true, "{d}");
    call(&app, "POST", "/v1/calls/night-tl/answer", &token, Some(json!({}))).await;
    clock.set(t1 + SignedDuration::from_secs(340), 0);
    call(&app, "POST", "/v1/calls/night-tl/end", &token, Some(json!({"billsec": 330}))).await;
    s.flush().await;
    let at = t1 + SignedDuration::from_secs(3600);
    clock.set(at, 0);
    s.tick(at);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", &token, None).await;
    let live = (used(&v, "default.high_risk_spend_24h"), v["destinations_seen"].clone());
    assert_eq!(live.0, "8.70", "{v}");
    let r = s.prune(at).unwrap().unwrap();
    assert!(r.pruned.events >= 3, "the first call's attempt, answer and end: {r:?}");
    drop(app);
    drop(s);
    let (s, clock) = server(&db, at);
    clock.set(at, 0);
    let app = s.router();
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", &token, None).await;
    let rebuilt = (used(&v, "default.high_risk_spend_24h"), v["destinations_seen"].clone());
    let body = json!({"call_id": "night-tl2", "account": "acme", "extension": "201", "from": "+31201234567", "to": "0067077123456"});
    let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
    assert_eq!(live, rebuilt, "usage differs after a rebuild from the pruned log");
    assert_eq!(d["allow"], true, "East Timor is a destination acme has called: {d}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An account silent for longer than retention is not learnt again like a new one: a
/// `new_destinations` limit that blocked it until released blocks it again after a rebuild.
#[tokio::test]
async fn a_dormant_accounts_block_by_a_new_destinations_limit_survives_a_rebuild() {
    let dir = common::temp_dir("retention-dormant");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    let (s, clock) = server(&db, t0);
    let app = s.router();
    clock.set(t0, 0);
    let limits = json!({"limits": [{"name": "noc.new_dest", "metric": "calls", "window": "day", "max": "2",
                                    "new_destinations": true, "on_critical": ["alert", "block"]}]});
    let (st, v) = call(&app, "PUT", "/v1/accounts/acme/limits", &token, Some(limits)).await;
    assert!(st.is_success(), "{st} {v}");
    for i in 0..3 {
        let id = format!("nl{i}");
        let body = json!({"call_id": id, "account": "acme", "extension": "201", "from": "+31201234567", "to": "0201234567"});
        let (_, d) = call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
        assert_eq!(d["allow"], true, "{d}");
        call(&app, "POST", &format!("/v1/calls/{id}/end"), &token, Some(json!({"billsec": 10}))).await;
    }
    // 200 days later (a Tuesday, daytime): calls to Belgium, a new destination
    let t1: Timestamp = "2026-07-21T09:00:00Z".parse().unwrap();
    for i in 0..4 {
        let now = t1 + SignedDuration::from_mins(i * 5);
        clock.set(now, 0);
        s.tick(now);
        let id = format!("be{i}");
        let body = json!({"call_id": id, "account": "acme", "extension": "201", "from": "+31201234567", "to": "003221234567"});
        call(&app, "POST", "/v1/authorize", &token, Some(body)).await;
        call(&app, "POST", &format!("/v1/calls/{id}/end"), &token, Some(json!({"billsec": 10}))).await;
    }
    s.flush().await;
    resolve_all(&app, &token).await;
    s.flush().await;
    let at = t1 + SignedDuration::from_hours(1);
    clock.set(at, 0);
    s.tick(at);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", &token, None).await;
    let live = v["blocks"].clone();
    assert_eq!(live[0]["rule"], "noc.new_dest", "{v}");
    let r = s.prune(at).unwrap().unwrap();
    assert!(r.pruned.events >= 6, "the calls of January: {r:?}");
    drop(app);
    drop(s);
    let (s, clock) = server(&db, at);
    clock.set(at, 0);
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", &token, None).await;
    let rebuilt = v["blocks"].clone();
    assert_eq!(live, rebuilt, "blocks differ after a rebuild from the pruned log");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A snapshot taken before rows that came after it were deleted (kept while the service was
/// stopped for months) is not used: the log after it is not whole.
#[tokio::test]
async fn a_snapshot_older_than_what_retention_deleted_is_not_used() {
    let dir = common::temp_dir("retention-snapshot");
    let db = dir.join("tollguard.db");
    let snapshot = dir.join("tollguard.db.snapshot");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let old: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    {
        let (s, clock) = server_with(&db, old, true);
        calls(&s, &clock, &token, old, 10, "old").await;
        // The log's last event is a command (kept whatever its age).
        let limits =
            json!({"limits": [{"name": "noc.day", "metric": "spend", "window": "day", "max": "30.00"}]});
        let (st, v) = call(&s.router(), "PUT", "/v1/accounts/acme/limits", &token, Some(limits)).await;
        assert!(st.is_success(), "{st} {v}");
        s.flush().await;
    }
    let first = std::fs::read(&snapshot).expect("written at the stop");
    let at = old + DAY * 200;
    {
        let (s, clock) = server_with(&db, at, true);
        assert!(s.state().from_snapshot.is_some(), "nothing deleted yet: it fits");
        calls(&s, &clock, &token, at - DAY * 100, 4, "middle").await;
        calls(&s, &clock, &token, at, 4, "new").await;
        let r = s.prune(at).unwrap().unwrap();
        assert!(r.pruned.events > 0, "{r:?}");
    }
    std::fs::write(&snapshot, &first).unwrap();
    let (s, _) = server_with(&db, at, true);
    assert_eq!(s.state().from_snapshot, None, "the old snapshot is refused; the log is read");
    let _ = std::fs::remove_dir_all(&dir);
}
