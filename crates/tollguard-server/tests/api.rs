//! The HTTP API without sockets: every endpoint and every scope, restart from the store.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use jiff::tz::TimeZone;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tollguard_engine::policy::Policy;
use tollguard_server::{create_token, Options, Scope, Server};
use tower::ServiceExt;

mod common;
use common::rater;

struct Fixture {
    db: PathBuf,
    integration: String,
    operator: String,
    acme: String,
    other: String,
}

fn fixture(name: &str) -> Fixture {
    let db = common::temp_dir(&format!("api-{name}")).join("tollguard.db");
    Fixture {
        integration: create_token(&db, "kamailio", &Scope::Integration).unwrap(),
        operator: create_token(&db, "noc", &Scope::Operator).unwrap(),
        acme: create_token(&db, "acme it", &Scope::Customer("acme".into())).unwrap(),
        other: create_token(&db, "other", &Scope::Customer("other".into())).unwrap(),
        db,
    }
}

fn server(db: &Path) -> Server {
    let opts = Options { database: db.to_path_buf(), max_body_bytes: 64 * 1024, ..Options::default() };
    Server::start(rater(), Policy::builtin(), opts).unwrap()
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    raw(app, req.body(body).unwrap()).await
}

async fn raw(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// `POST /v1/authorize` with the integration token.
async fn authorize(app: &Router, f: &Fixture, body: Value) -> (StatusCode, Value) {
    call(app, "POST", "/v1/authorize", Some(&f.integration), Some(body)).await
}

fn authorize_body(call_id: &str, to: &str, time: &str) -> Value {
    json!({ "call_id": call_id, "account": "acme", "extension": "210", "from": "+31201234567", "to": to, "time": time })
}

/// Makes East Timor a country acme has called before (a record ten days old), so the first-call
/// rules, which differ between day and night, do not decide a test that runs on the wall clock.
async fn acme_has_called_east_timor(app: &Router, f: &Fixture) {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(240);
    let at = |s: i64| (t + jiff::SignedDuration::from_secs(s)).to_string();
    let batch = json!([{"call_id": "history-tl", "account": "acme", "extension": "201", "to": "0067077123456",
                        "start": at(0), "answer": at(5), "end": at(65), "billsec": 60}]);
    let (st, v) = call(app, "POST", "/v1/cdrs", Some(&f.integration), Some(batch)).await;
    assert_eq!((st, v["new"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
}

/// The limit named `name` in an account's JSON (`GET /v1/accounts/{id}`).
fn limit<'a>(account: &'a Value, name: &str) -> &'a Value {
    account["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == name)
        .unwrap_or_else(|| panic!("no limit {name} in {account}"))
}

#[tokio::test]
async fn authorize_needs_a_token_with_the_right_scope() {
    let f = fixture("scopes");
    let s = server(&f.db);
    let app = s.router();
    let body = authorize_body("c1", "0201234567", "2026-01-19T10:00:00+01:00");
    let (st, v) = call(&app, "POST", "/v1/authorize", None, Some(body.clone())).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (st, _) = call(&app, "POST", "/v1/authorize", Some("tg_nonsense"), Some(body.clone())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = call(&app, "POST", "/v1/authorize", Some(&f.acme), Some(body.clone())).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let (st, v) = authorize(&app, &f, body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allow"], true);
    let (st, _) = call(
        &app,
        "POST",
        "/v1/authorize",
        Some(&f.operator),
        Some(authorize_body("c2", "0201234567", "2026-01-19T10:00:01+01:00")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // Operator-only and reading endpoints.
    let (st, _) = call(&app, "POST", "/v1/accounts/acme/block", Some(&f.integration), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, "GET", "/v1/accounts/acme", Some(&f.integration), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, "GET", "/v1/accounts/acme", Some(&f.other), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.acme), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = call(&app, "GET", "/v1/alerts", Some(&f.integration), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, "GET", "/v1/alerts?account=acme", Some(&f.other), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, doc) = call(&app, "GET", "/openapi.json", None, None).await;
    for path in [
        "/v1/authorize",
        "/v1/calls/{call_id}/answer",
        "/v1/calls/{call_id}/end",
        "/v1/cdrs",
        "/v1/cdrs/freeswitch",
        "/v1/accounts/{account}",
        "/v1/accounts/{account}/block",
        "/v1/accounts/{account}/unblock",
        "/v1/alerts",
        "/v1/decisions/{call_id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }
    // Open: health, readiness, metrics, the API description.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (st, _) = call(&app, "GET", path, None, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_night_attack_is_denied_explained_alerted_and_visible() {
    let f = fixture("attack");
    let s = server(&f.db);
    let app = s.router();
    // Saturday 23:10 in Amsterdam: the first call of acme to East Timor.
    let (st, v) =
        authorize(&app, &f, authorize_body("tl1", "0067077123456", "2011-06-11T23:10:00+02:00")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["allow"], false);
    assert_eq!(v["rules"], json!(["default.new_critical_destination_night"]));
    assert!(v["explanation"][0].as_str().unwrap().contains("first call of account acme to TL"), "{v}");
    // Emergency numbers are never denied, even blocked.
    let (_, v) =
        call(&app, "POST", "/v1/accounts/acme/block", Some(&f.operator), Some(json!({"reason": "test"})))
            .await;
    assert_eq!(v, Value::String(String::new()));
    let (_, v) = authorize(&app, &f, authorize_body("e1", "112", "2011-06-11T23:11:00+02:00")).await;
    assert_eq!(v["allow"], true, "{v}");
    let (_, v) = authorize(&app, &f, authorize_body("n1", "0201234567", "2011-06-11T23:11:00+02:00")).await;
    assert_eq!(v["allow"], false, "blocked: {v}");
    assert!(v["rules"][0].as_str().unwrap().starts_with("operator.block"), "{v}");
    let (st, _) = call(&app, "POST", "/v1/accounts/acme/unblock", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = authorize(&app, &f, authorize_body("n2", "0201234567", "2011-06-11T23:12:00+02:00")).await;
    assert_eq!(v["allow"], true, "unblocked: {v}");
    // The decision with its explanation, for the operator and the account itself only.
    let (st, v) = call(&app, "GET", "/v1/decisions/tl1", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["allow"].as_bool(), v["to"].as_str()), (Some(false), Some("0067077123456")));
    let (st, _) = call(&app, "GET", "/v1/decisions/tl1", Some(&f.acme), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&app, "GET", "/v1/decisions/tl1", Some(&f.other), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&app, "GET", "/v1/decisions/nope", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The alert.
    s.flush().await;
    let (st, v) = call(&app, "GET", "/v1/alerts", Some(&f.acme), None).await;
    assert_eq!(st, StatusCode::OK);
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{v}");
    assert_eq!(
        (alerts[0]["severity"].as_str(), alerts[0]["call_id"].as_str()),
        (Some("critical"), Some("tl1"))
    );
    let (_, v) = call(&app, "GET", "/v1/alerts", Some(&f.other), None).await;
    assert_eq!(v["alerts"].as_array().unwrap().len(), 0, "another customer sees none of acme's");
    let (_, v) =
        call(&app, "GET", &format!("/v1/alerts?after={}", alerts[0]["id"]), Some(&f.operator), None).await;
    assert_eq!(v["alerts"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn usage_counts_running_calls_and_survives_a_restart() {
    let f = fixture("restart");
    let before;
    {
        let s = server(&f.db);
        let app = s.router();
        for i in 0..3 {
            let id = format!("c{i}");
            let (_, v) =
                authorize(&app, &f, authorize_body(&id, "0067077123456", "2026-01-19T10:00:00+01:00")).await;
            assert_eq!(v["allow"], true, "{v}");
            let (st, _) = call(
                &app,
                "POST",
                &format!("/v1/calls/{id}/answer"),
                Some(&f.integration),
                Some(json!({"time": "2026-01-19T10:00:05+01:00"})),
            )
            .await;
            assert_eq!(st, StatusCode::NO_CONTENT);
        }
        let (st, _) = call(
            &app,
            "POST",
            "/v1/calls/c0/end",
            Some(&f.integration),
            Some(json!({"billsec": 120, "time": "2026-01-19T10:02:05+01:00"})),
        )
        .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, v) =
            call(&app, "POST", "/v1/calls/c0/end", Some(&f.integration), Some(json!({"billsec": 120}))).await;
        assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (st, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["running_calls"], 2, "{v}");
        assert_eq!(v["calls"].as_array().unwrap().len(), 2);
        let day = limit(&v, "default.spend_day").clone();
        // c0: 2 minutes to East Timor = 2.90 ended, plus what c1 and c2 have cost by now.
        assert!(day["used"].as_str().unwrap().parse::<f64>().unwrap() >= 2.90, "{day}");
        before = v["limits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["limit"].clone(), l["max"].clone()))
            .collect::<Vec<_>>();
        s.flush().await;
    }
    let s = server(&f.db);
    assert_eq!(s.state().rebuilt_events, 7, "3 attempts, 3 answers, 1 end, and nothing else");
    let app = s.router();
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(v["running_calls"], 2, "the running calls are known again: {v}");
    let after = v["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["limit"].clone(), l["max"].clone()))
        .collect::<Vec<_>>();
    assert_eq!(before, after);
    // The calls can end after the restart.
    let (st, _) =
        call(&app, "POST", "/v1/calls/c1/end", Some(&f.integration), Some(json!({"billsec": 60}))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

/// The switch writes a record for the call tollguard denied (a failed attempt, no talk time):
/// stored, but it does not make East Timor a country the account has called.
#[tokio::test]
async fn the_record_of_a_denied_call_does_not_teach_its_destination() {
    let f = fixture("denied-record");
    let s = server(&f.db);
    let app = s.router();
    let night = |id: &str, time: &str| authorize_body(id, "0067077123456", time);
    let (_, v) = authorize(&app, &f, night("tl1", "2011-06-11T23:10:00+02:00")).await;
    assert_eq!(v["allow"], false, "{v}");
    let batch = json!([{"call_id": "tl1", "account": "acme", "extension": "210", "to": "0067077123456",
                        "start": "2011-06-11T21:10:00Z", "end": "2011-06-11T21:10:01Z", "billsec": 0,
                        "disposition": "failed"}]);
    let (st, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(batch)).await;
    assert_eq!((st, v["new"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (_, v) = authorize(&app, &f, night("tl2", "2011-06-11T23:20:00+02:00")).await;
    assert_eq!(
        (v["allow"].clone(), v["rules"].clone()),
        (json!(false), json!(["default.new_critical_destination_night"])),
        "{v}"
    );
    // The same after a restart, which handles the stored events again.
    s.flush().await;
    drop(app);
    drop(s);
    let s = server(&f.db);
    let app = s.router();
    let (_, v) = authorize(&app, &f, night("tl3", "2011-06-11T23:30:00+02:00")).await;
    assert_eq!(v["rules"], json!(["default.new_critical_destination_night"]), "{v}");
    // A switch that connects a denied call all the same: counted, and a critical alert says so.
    let batch = json!([{"call_id": "tl3", "account": "acme", "extension": "210", "to": "0067077123456",
                        "start": "2011-06-11T21:30:00Z", "answer": "2011-06-11T21:30:05Z",
                        "end": "2011-06-11T21:40:05Z", "billsec": 600, "disposition": "answered"}]);
    let (st, _) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(batch)).await;
    assert_eq!(st, StatusCode::OK);
    s.flush().await;
    let (_, v) = call(&app, "GET", "/v1/alerts", Some(&f.operator), None).await;
    let connected: Vec<_> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "integration.denied_call_connected")
        .collect();
    assert_eq!(connected.len(), 1, "{v}");
    assert_eq!(
        (connected[0]["call_id"].as_str(), connected[0]["severity"].as_str()),
        (Some("tl3"), Some("critical"))
    );
}

#[tokio::test]
async fn call_records_are_stored_once_and_counted_once() {
    let f = fixture("cdrs");
    let s = server(&f.db);
    let app = s.router();
    // Calls that ended a moment ago (counted in the last 24 hours).
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now - jiff::SignedDuration::from_secs(secs)).to_string();
    let batch = json!([
        {"call_id": "r1", "account": "acme", "extension": "201", "to": "0067077123456",
         "start": at(400), "answer": at(395), "end": at(65), "billsec": 330},
        {"call_id": "r2", "account": "acme", "extension": "201", "to": "0201234567",
         "start": at(300), "billsec": 0, "disposition": "no_answer"},
        {"call_id": "bad", "account": "acme", "extension": "201", "to": "0201234567", "start": "noon", "billsec": 0}
    ]);
    let (st, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(batch.clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["new"].as_u64(), v["duplicates"].as_u64()), (Some(2), Some(0)));
    assert!(v["rejected"][0].as_str().unwrap().starts_with("cdrs[2].start"), "{v}");
    let used = |v: &Value| limit(v, "default.high_risk_spend_24h")["used"].clone();
    let (_, first) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(used(&first), "8.70", "{first}");
    let (_, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(json!({ "cdrs": batch }))).await;
    assert_eq!((v["new"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(2)));
    let (_, again) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(used(&again), "8.70", "counted once");
    let (st, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(json!([{"call_id": "x"}]))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    assert!(v["error"]["message"].as_str().unwrap().contains("cdrs[0]"), "{v}");
    let (st, _) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(json!("nonsense"))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn each_leg_of_a_failover_under_one_call_id_is_stored_and_counted() {
    // Asterisk writes a record for each `Dial` of a channel, all under its `uniqueid`: here the
    // first carrier fails and the second connects. The second leg is not a duplicate.
    let f = fixture("legs");
    let s = server(&f.db);
    let app = s.router();
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now - jiff::SignedDuration::from_secs(secs)).to_string();
    let batch = json!([
        {"call_id": "1767000000.42", "account": "acme", "extension": "201", "to": "0067077123456",
         "trunk": "PJSIP/carrier1-00000001", "start": at(420), "billsec": 0, "disposition": "failed"},
        {"call_id": "1767000000.42", "account": "acme", "extension": "201", "to": "0067077123456",
         "trunk": "PJSIP/carrier2-00000002", "start": at(400), "answer": at(395), "end": at(65), "billsec": 330}
    ]);
    let (st, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(batch.clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((v["new"].as_u64(), v["duplicates"].as_u64()), (Some(2), Some(0)), "{v}");
    let used = |v: &Value| limit(v, "default.high_risk_spend_24h")["used"].clone();
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(used(&v), "8.70", "{v}");
    // Both legs again (a tail read again after a crash): duplicates, counted once.
    let (_, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(batch)).await;
    assert_eq!((v["new"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(2)), "{v}");
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(used(&v), "8.70", "{v}");
    // Rebuilt from the store at a restart: the same.
    s.flush().await;
    drop((app, s));
    let s = server(&f.db);
    assert_eq!(s.state().rebuilt_events, 2, "two records");
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(used(&v), "8.70", "{v}");
}

#[tokio::test]
async fn freeswitch_posts_are_read_in_all_three_encodings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/freeswitch/json_cdr_cgrates_fscdr_test.json");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} not found (CI has ../shared/fixtures beside the project)", path.display());
        return;
    };
    let f = fixture("freeswitch");
    let s = server(&f.db);
    let app = s.router();
    let post = |content_type: &str, body: String| {
        Request::builder()
            .method("POST")
            .uri("/v1/cdrs/freeswitch?uuid=3da8bf84-c133-4959-9e24-e72875cb33a1")
            .header("authorization", format!("Bearer {}", f.integration))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };
    // encode=false: the JSON itself.
    let (st, v) = raw(&app, post("application/json", doc.clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["new"], 1, "{v}");
    // Basic authentication with the token as password (mod_json_cdr's `cred`).
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("freeswitch:{}", f.integration));
    let req = Request::builder()
        .method("POST")
        .uri("/v1/cdrs/freeswitch")
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/json")
        .body(Body::from(doc.clone()))
        .unwrap();
    let (st, v) = raw(&app, req).await;
    assert_eq!((st, v["duplicates"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    // encode=true: cdr= and the URL-encoded JSON (switch_url_encode); the same call: a duplicate.
    let encoded: String = doc
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (st, v) = raw(&app, post("application/x-www-form-urlencoded", format!("cdr={encoded}"))).await;
    assert_eq!((st, v["duplicates"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    // encode=base64.
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_bytes());
    let (st, v) = raw(&app, post("application/x-www-form-base64-encoded", format!("cdr={b64}"))).await;
    assert_eq!((st, v["duplicates"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (st, v) = raw(&app, post("application/json", "{not json".into())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn the_same_call_id_asked_again_gets_the_same_answer_and_is_counted_once() {
    // A retransmitted INVITE makes the proxy ask again.
    let f = fixture("idempotent");
    let s = server(&f.db);
    let app = s.router();
    acme_has_called_east_timor(&app, &f).await;
    let mut body = authorize_body("dup", "0067077123456", "");
    body.as_object_mut().unwrap().remove("time"); // the server's clock: counted in the last hour
    let (_, first) = authorize(&app, &f, body.clone()).await;
    let (_, again) = authorize(&app, &f, body).await;
    assert_eq!(first, again);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(v["running_calls"], 1, "{v}");
    let calls = limit(&v, "default.high_risk_calls_1h");
    assert_eq!(calls["used"], "1", "{v}");
}

#[tokio::test]
async fn another_call_under_a_running_calls_id_is_denied_and_a_new_attempt_after_its_end_counts() {
    // A caller picks its SIP Call-ID: under the id of a running call, another number, another
    // account, or the same request once the call was answered, must not share its answer.
    let f = fixture("reused-id");
    let s = server(&f.db);
    let app = s.router();
    acme_has_called_east_timor(&app, &f).await;
    let mut body = authorize_body("same", "0067077123456", "");
    body.as_object_mut().unwrap().remove("time");
    let (_, first) = authorize(&app, &f, body.clone()).await;
    assert_eq!(first["allow"], true, "{first}");
    let reused = |v: &Value| v["allow"] == false && v["rules"] == json!(["call_id_reused"]);
    let mut other_number = body.clone();
    other_number["to"] = json!("0067077123457");
    let (st, v) = authorize(&app, &f, other_number).await;
    assert!(st == StatusCode::OK && reused(&v), "{v}");
    let mut other_account = body.clone();
    other_account["account"] = json!("globex");
    let (_, v) = authorize(&app, &f, other_account).await;
    assert!(reused(&v), "{v}");
    let mut emergency = body.clone();
    emergency["to"] = json!("112");
    let (_, v) = authorize(&app, &f, emergency).await;
    assert_eq!(
        (v["allow"].as_bool(), v["rules"].clone()),
        (Some(true), json!(["emergency"])),
        "never denied: {v}"
    );
    let (st, _) = call(&app, "POST", "/v1/calls/same/answer", Some(&f.integration), Some(json!({}))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = authorize(&app, &f, body.clone()).await;
    assert!(reused(&v), "answered: not a retransmission: {v}");
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    let used = |v: &Value| limit(v, "default.high_risk_calls_1h")["used"].clone();
    assert_eq!((v["running_calls"].as_u64(), used(&v)), (Some(1), json!("1")), "{v}");
    // Ended (say a 407 challenge was answered with the INVITE sent again under its Call-ID): a
    // new attempt, decided and counted.
    let (st, _) =
        call(&app, "POST", "/v1/calls/same/end", Some(&f.integration), Some(json!({"billsec": 0}))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = authorize(&app, &f, body).await;
    assert_eq!(v["allow"], true, "{v}");
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!((v["running_calls"].as_u64(), used(&v)), (Some(1), json!("2")), "{v}");
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    let m = m.as_str().unwrap_or_default().to_string();
    assert!(m.contains("tollguard_authorize_call_id_reused_total 3"), "{m}");
    // Each account denied so gets a warning, one an hour: acme's two denials make one.
    s.flush().await;
    let (_, v) = call(&app, "GET", "/v1/alerts", Some(&f.operator), None).await;
    let reused: Vec<(String, String)> = v["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .filter(|a| a["rule"] == "integration.call_id_reused")
        .map(|a| (a["account"].as_str().unwrap().to_string(), a["severity"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(reused, [("acme".into(), "warning".into()), ("globex".into(), "warning".into())], "{v}");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let f = fixture("errors");
    let s = server(&f.db);
    let app = s.router();
    let (st, v) = call(&app, "GET", "/v2/nothing", None, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (st, v) = authorize(&app, &f, json!({"call_id": "c"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("missing field"), "{v}");
    let mut body = authorize_body("c", "0201234567", "yesterday");
    let (st, v) = authorize(&app, &f, body.clone()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().starts_with("time:"), "{v}");
    body["time"] = json!("2026-01-19T10:00:00Z");
    body["colour"] = json!("blue");
    let (st, v) = authorize(&app, &f, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown field `colour`"), "{v}");
    let big = json!({ "call_id": "x".repeat(100_000) });
    let (st, v) = authorize(&app, &f, big).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{v}"
    );
    // What axum refuses itself has the same JSON form as every other error.
    let (st, v) = call(&app, "GET", "/v1/authorize", Some(&f.integration), None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
        "{v}"
    );
    let (st, v) = call(&app, "GET", "/v1/alerts?colour=blue", Some(&f.operator), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"), "{v}");
    let (st, v) = call(&app, "POST", "/v1/incidents/abc/acknowledge", Some(&f.operator), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{v}");
    let (st, _) = call(&app, "GET", "/v1/accounts/nobody", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// An Asterisk Master.csv row in Amsterdam time, ended `ago` seconds before now.
fn master_row(i: u32, to: &str, billsec: i64, ago: i64) -> String {
    let tz = TimeZone::get("Europe/Amsterdam").unwrap();
    let end = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago);
    let answer = end - jiff::SignedDuration::from_secs(billsec);
    let start = answer - jiff::SignedDuration::from_secs(4);
    let local = |t: jiff::Timestamp| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string();
    format!(
        "\"acme\",\"201\",\"{to}\",\"from-internal\",\"\",\"SIP/201-{i:08x}\",\"SIP/trunk-{i:08x}\",\"Dial\",\"\",\
         \"{}\",\"{}\",\"{}\",{},{billsec},\"ANSWERED\",\"DOCUMENTATION\",\"tail.{i}\",\"\"\n",
        local(start),
        local(answer),
        local(end),
        billsec + 4
    )
}

#[tokio::test]
async fn a_followed_master_csv_is_read_once_across_restarts() {
    let f = fixture("tail");
    let master = f.db.parent().unwrap().join("Master.csv");
    let opts = || Options {
        database: f.db.clone(),
        tails: vec![tollguard_server::TailSpec {
            path: master.clone(),
            format: tollguard_ingest::Format::Asterisk,
            options: tollguard_ingest::ReadOptions {
                tz: TimeZone::get("Europe/Amsterdam").unwrap(),
                generic: None,
            },
        }],
        ..Options::default()
    };
    let append = |text: &str| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&master)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    };
    let spent = |v: &Value| limit(v, "default.high_risk_spend_24h")["used"].clone();
    // Two East Timor calls of 2 minutes (EUR 2.90 each) and a Dutch one.
    append(&(master_row(1, "0067077123456", 120, 600) + &master_row(2, "0201234567", 60, 500)));
    let before;
    {
        let s = Server::start(rater(), Policy::builtin(), opts()).unwrap();
        assert_eq!(s.poll_tails().await.unwrap(), 2);
        assert_eq!(s.poll_tails().await.unwrap(), 0, "nothing new");
        append(&master_row(3, "0067077123457", 120, 400));
        let half = master_row(4, "0067077123458", 60, 300);
        append(&half[..50]);
        assert_eq!(s.poll_tails().await.unwrap(), 1, "the unfinished line waits");
        let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
        before = spent(&v);
        assert_eq!(before, "5.80", "{v}");
        append(&half[50..]);
    }
    // Restarted: the checkpoint was stored with the records; the rest of the file, once.
    let s = Server::start(rater(), Policy::builtin(), opts()).unwrap();
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(spent(&v), before, "rebuilt from the log");
    assert_eq!(s.poll_tails().await.unwrap(), 1);
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(spent(&v), "7.25");
    s.flush().await;
    let store = tollguard_store::Store::open(&f.db).unwrap();
    assert_eq!(store.cdr_count().unwrap(), 4);
}

#[tokio::test]
async fn limits_set_by_the_operator_and_the_customer_within_its_ceiling() {
    let f = fixture("limits");
    let spend_day = |max: &str| json!({ "limits": [{ "name": "own.day", "metric": "spend", "window": "day", "max": max }] });
    {
        let s = server(&f.db);
        let app = s.router();
        let (st, v) = call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.operator),
            Some(json!({ "limits": [{ "name": "noc.day", "metric": "spend", "window": "day", "max": "100.00" }] }))).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let noc = limit(&v, "noc.day").clone();
        assert_eq!((noc["set_by"].as_str(), noc["used"].as_str()), (Some("operator"), Some("0.00")));
        // The customer may only be stricter than the operator's EUR 100 a day.
        let (st, v) =
            call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.acme), Some(spend_day("200.00"))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(v["error"]["message"].as_str().unwrap().contains("above noc.day (100.00)"), "{v}");
        let (st, _) =
            call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.other), Some(spend_day("1.00"))).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) =
            call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.integration), Some(spend_day("1.00")))
                .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, v) = call(
            &app,
            "PUT",
            "/v1/accounts/acme/limits",
            Some(&f.acme),
            Some(json!({ "limits": [{ "name": "own.day", "metric": "spend", "max": "1.00" }] })),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("limits[0] (own.day): spend and calls limits need a window"),
            "{v}"
        );
        let (st, v) =
            call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.acme), Some(spend_day("1.00"))).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        // EUR 1.00 left: not a whole minute to East Timor at EUR 1.45.
        acme_has_called_east_timor(&app, &f).await;
        let mut body = authorize_body("lim1", "0067077123456", "");
        body.as_object_mut().unwrap().remove("time");
        let (_, v) = authorize(&app, &f, body).await;
        assert_eq!(v["allow"], false, "{v}");
        assert_eq!(v["rules"], json!(["own.day"]), "{v}");
        s.flush().await;
    }
    // After a restart the limits are back, with who set them.
    let s = server(&f.db);
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.acme), None).await;
    let by: Vec<(String, String)> = v["limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["set_by"] != "policy")
        .map(|l| (l["limit"].as_str().unwrap().into(), l["set_by"].as_str().unwrap().into()))
        .collect();
    assert_eq!(by, [("noc.day".to_string(), "operator".to_string()), ("own.day".into(), "customer".into())]);
}

#[tokio::test]
async fn a_record_long_after_the_end_of_an_authorized_call_is_not_counted_again() {
    let f = fixture("late-record");
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now - jiff::SignedDuration::from_secs(secs)).to_string();
    let spent = |v: &Value| limit(v, "default.high_risk_spend_24h")["used"].clone();
    {
        let s = server(&f.db);
        let app = s.router();
        acme_has_called_east_timor(&app, &f).await;
        let mut body = authorize_body("old1", "0067077123456", "");
        body["time"] = json!(at(600));
        let (_, v) = authorize(&app, &f, body).await;
        assert_eq!(v["allow"], true, "{v}");
        call(&app, "POST", "/v1/calls/old1/answer", Some(&f.integration), Some(json!({"time": at(600)})))
            .await;
        call(
            &app,
            "POST",
            "/v1/calls/old1/end",
            Some(&f.integration),
            Some(json!({"time": at(540), "billsec": 60})),
        )
        .await;
        // Nine minutes after the end (the grace is two): counted at its end, not again.
        let record = json!([{"call_id": "old1", "account": "acme", "extension": "210", "to": "0067077123456",
                             "start": at(600), "answer": at(600), "end": at(540), "billsec": 60}]);
        let (_, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(record)).await;
        assert_eq!(v["new"], 1, "stored as evidence: {v}");
        let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
        assert_eq!(spent(&v), "1.45", "{v}");
        s.flush().await;
    }
    let s = server(&f.db);
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(spent(&v), "1.45", "the same after rebuilding: {v}");
}

#[tokio::test]
async fn a_record_counts_the_same_after_a_rebuild_when_its_call_id_is_authorized_later() {
    // A record of a call never authorized counts; a later authorization under the same call id
    // (switches reuse ids) puts a decision in the store under that id. The rebuild takes what
    // the record's event logged, not that later decision: the same usage before and after.
    let f = fixture("record-id-reused");
    let no_snapshot = |db: &Path| {
        let opts = Options { database: db.to_path_buf(), snapshot_every: None, ..Options::default() };
        Server::start(rater(), Policy::builtin(), opts).unwrap()
    };
    let now = jiff::Timestamp::now();
    let at = |secs: i64| (now - jiff::SignedDuration::from_secs(secs)).to_string();
    let spent = |v: &Value| limit(v, "default.high_risk_spend_24h")["used"].clone();
    let live = {
        let s = no_snapshot(&f.db);
        let app = s.router();
        acme_has_called_east_timor(&app, &f).await;
        let record = json!([{"call_id": "reused1", "account": "acme", "extension": "201", "to": "0067077123456",
                             "start": at(900), "answer": at(895), "end": at(565), "billsec": 330}]);
        let (_, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(record)).await;
        assert_eq!(v["new"], 1, "{v}");
        let (_, v) = authorize(&app, &f, authorize_body("reused1", "0201234567", &at(60))).await;
        assert_eq!(v["allow"], true, "{v}");
        call(&app, "POST", "/v1/calls/reused1/end", Some(&f.integration), Some(json!({"billsec": 0}))).await;
        let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
        assert_eq!(spent(&v), "8.70", "the record counted: {v}");
        s.flush().await;
        v
    };
    let s = no_snapshot(&f.db);
    assert_eq!(s.state().from_snapshot, None);
    let (_, v) = call(&s.router(), "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(spent(&v), spent(&live), "the same after rebuilding from the log: {v}");
}

#[tokio::test]
async fn a_reload_applies_the_new_policy_and_keeps_the_calls_in_flight() {
    let f = fixture("reload");
    let s = server(&f.db);
    let app = s.router();
    let (st, v) = call(&app, "POST", "/v1/admin/reload", Some(&f.operator), None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("reload_failed")),
        "no configuration to read: {v}"
    );
    let mut body = authorize_body("r1", "0201234567", "");
    body.as_object_mut().unwrap().remove("time");
    let (_, v) = authorize(&app, &f, body.clone()).await;
    assert_eq!(v["allow"], true);
    // The new configuration: one call at a time for acme.
    s.set_reloader(Box::new(|| {
        let spec: tollguard_engine::policy::PolicySpec = toml::from_str(
            "[[limit]]\nname = \"one_at_a_time\"\naccounts = [\"acme\"]\nmetric = \"concurrent\"\nmax = \"1\"\n",
        )?;
        Ok((rater(), Policy::from_spec(&spec).map_err(anyhow::Error::msg)?))
    }));
    let (st, _) = call(&app, "POST", "/v1/admin/reload", Some(&f.integration), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = call(&app, "POST", "/v1/admin/reload", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["events"], 1);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(v["running_calls"], 1, "the call in flight is still known: {v}");
    body["call_id"] = json!("r2");
    let (_, v) = authorize(&app, &f, body).await;
    assert_eq!((v["allow"].as_bool(), v["rules"][0].as_str()), (Some(false), Some("one_at_a_time")), "{v}");
    let (st, _) =
        call(&app, "POST", "/v1/calls/r1/end", Some(&f.integration), Some(json!({"billsec": 10}))).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "and it can end");
}

type Posts = Arc<std::sync::Mutex<Vec<(bool, String)>>>;

/// A webhook receiver: answers 500 to the first `fail` posts, then 200; keeps (verified, body).
/// Over TLS with `tls` (a certificate and key).
async fn receiver(fail: usize, secret: &'static str) -> (u16, Posts) {
    receiver_on(fail, secret, None).await
}

async fn receiver_on(
    fail: usize,
    secret: &'static str,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> (u16, Posts) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let acceptor = tls.map(|(cert, key)| tollguard_server::tls::acceptor(&cert, &key).unwrap());
    let got: Posts = Arc::new(std::sync::Mutex::new(vec![]));
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            match &acceptor {
                // A client that refuses the certificate ends the handshake: next connection.
                Some(a) => {
                    if let Ok(mut t) = a.accept(s).await {
                        answer_hook(&mut t, fail, secret, &seen).await;
                    }
                }
                None => answer_hook(&mut { s }, fail, secret, &seen).await,
            }
        }
    });
    (port, got)
}

async fn answer_hook<S>(s: &mut S, fail: usize, secret: &str, seen: &Posts)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![];
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).await.unwrap_or(0);
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let header = |k: &str| {
                head.lines()
                    .find_map(|l| {
                        l.split_once(": ")
                            .filter(|(n, _)| n.eq_ignore_ascii_case(k))
                            .map(|(_, v)| v.to_string())
                    })
                    .unwrap_or_default()
            };
            let len: usize = header("content-length").parse().unwrap();
            if body.len() < len {
                continue;
            }
            let ts: i64 = header("x-tollguard-timestamp").parse().unwrap();
            let ok = header("x-tollguard-signature") == tollguard_server::webhook_signature(secret, ts, body);
            let n = {
                let mut g = seen.lock().unwrap();
                g.push((ok, body.to_string()));
                g.len()
            };
            let status = if n <= fail { "500 Internal Server Error" } else { "200 OK" };
            let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            let _ = s.shutdown().await;
            return;
        }
        if n == 0 {
            return;
        }
    }
}

/// A night call to East Timor: denied with one critical alert, stored when this returns.
async fn night_call_to_east_timor(s: &Server, app: &Router, f: &Fixture, call_id: &str) {
    authorize(app, f, authorize_body(call_id, "0067077123456", "2011-06-11T23:10:00+02:00")).await;
    s.flush().await;
}

/// An HTTPS receiver with a certificate of its own: trusted through `ca_file`, refused without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_to_https_receivers_whose_certificate_is_trusted() {
    let f = fixture("webhooks-tls");
    let Some((cert, key)) = common::test_cert(f.db.parent().unwrap()) else { return };
    let (port, got) = receiver_on(0, "s3cret-of-16-chars", Some((cert.clone(), key))).await;
    let hook = |name: &str, ca_file: Option<std::path::PathBuf>| tollguard_server::Webhook {
        name: name.into(),
        url: format!("https://localhost:{port}/hook"),
        ca_file,
        secret: "s3cret-of-16-chars".into(),
        min_severity: tollguard_engine::Severity::Warning,
        max_tries: 1,
    };
    let opts = Options {
        database: f.db.clone(),
        webhooks: vec![hook("trusted", Some(cert)), hook("untrusted", None)],
        ..Options::default()
    };
    let s = Server::start(rater(), Policy::builtin(), opts).unwrap();
    let app = s.router();
    night_call_to_east_timor(&s, &app, &f, "h1").await;
    assert_eq!(s.deliver(jiff::Timestamp::now()).await, 2, "one message per webhook");
    let posts = got.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "only the trusted one got through: {posts:?}");
    assert!(posts[0].0, "signed");
    let (_, v) = call(&app, "GET", "/v1/deliveries?state=delivered", Some(&f.operator), None).await;
    assert_eq!(v["deliveries"][0]["webhook"], "trusted", "{v}");
    let (_, v) = call(&app, "GET", "/v1/deliveries?state=dead", Some(&f.operator), None).await;
    assert_eq!(v["deliveries"][0]["webhook"], "untrusted", "{v}");
    let error = v["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("certificate"), "the refusal says why: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_posted_signed_retried_across_a_restart_and_dead_lettered() {
    let f = fixture("webhooks");
    let (port, got) = receiver(2, "s3cret").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // nobody listens
    let opts = || Options {
        database: f.db.clone(),
        webhooks: vec![
            tollguard_server::Webhook {
                name: "noc".into(),
                url: format!("http://127.0.0.1:{port}/hook"),
                ca_file: None,
                secret: "s3cret".into(),
                min_severity: tollguard_engine::Severity::Warning,
                max_tries: 8,
            },
            tollguard_server::Webhook {
                name: "gone".into(),
                url: format!("http://127.0.0.1:{closed}/hook"),
                ca_file: None,
                secret: "x".into(),
                min_severity: tollguard_engine::Severity::Critical,
                max_tries: 2,
            },
        ],
        ..Options::default()
    };
    let t0;
    {
        let s = Server::start(rater(), Policy::builtin(), opts()).unwrap();
        let app = s.router();
        night_call_to_east_timor(&s, &app, &f, "w1").await;
        t0 = jiff::Timestamp::now();
        assert_eq!(s.deliver(t0).await, 2, "one message per webhook");
        assert_eq!(s.deliver(t0).await, 0, "not again before the backoff");
    }
    // A restart in the middle of the retries: the outbox is in the store.
    let s = Server::start(rater(), Policy::builtin(), opts()).unwrap();
    assert_eq!(s.deliver(t0 + jiff::SignedDuration::from_secs(3)).await, 2);
    assert_eq!(
        s.deliver(t0 + jiff::SignedDuration::from_secs(10)).await,
        1,
        "the dead one is not tried again"
    );
    assert_eq!(s.deliver(t0 + jiff::SignedDuration::from_secs(100)).await, 0, "delivered");
    let posts = got.lock().unwrap().clone();
    assert_eq!(posts.len(), 3, "two failures, then delivered");
    assert!(posts.iter().all(|(ok, _)| *ok), "every post is signed");
    let alert: Value = serde_json::from_str(&posts[2].1).unwrap();
    assert_eq!(
        (alert["rule"].as_str(), alert["severity"].as_str()),
        (Some("default.new_critical_destination_night"), Some("critical"))
    );
    assert!(alert["id"].as_i64().is_some(), "{alert}");
    let app = s.router();
    let (st, v) = call(&app, "GET", "/v1/deliveries?state=dead", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::OK);
    let dead = v["deliveries"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{v}");
    assert_eq!((dead[0]["webhook"].as_str(), dead[0]["tries"].as_i64()), (Some("gone"), Some(2)));
    assert!(dead[0]["last_error"].as_str().unwrap().starts_with("connect"), "{v}");
    let (_, v) = call(&app, "GET", "/v1/deliveries?state=delivered", Some(&f.operator), None).await;
    assert_eq!(v["deliveries"][0]["tries"], 3, "{v}");
    let (st, _) = call(&app, "GET", "/v1/deliveries", Some(&f.acme), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_command_and_automatic_action_is_in_the_audit_log() {
    let f = fixture("audit");
    let s = server(&f.db);
    let app = s.router();
    let limits = json!({ "limits": [{ "name": "acme.calls", "metric": "calls", "window": "hour", "max": "1",
                                      "on_critical": ["alert", "deny", "block"], "block_for": "1h" }] });
    let (st, _) = call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.operator), Some(limits)).await;
    assert_eq!(st, StatusCode::OK);
    call(
        &app,
        "POST",
        "/v1/accounts/acme/block",
        Some(&f.operator),
        Some(json!({"reason": "PBX hacked, caller confirmed"})),
    )
    .await;
    call(&app, "POST", "/v1/accounts/acme/unblock", Some(&f.operator), None).await;
    for id in ["a1", "a2"] {
        let mut body = authorize_body(id, "0201234567", "");
        body.as_object_mut().unwrap().remove("time");
        authorize(&app, &f, body).await;
    }
    let (st, v) = call(&app, "GET", "/v1/audit", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::OK);
    let entries: Vec<(String, String, String)> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["account"].as_str().unwrap().into(),
            )
        })
        .collect();
    let noc = "noc (operator)".to_string();
    assert_eq!(
        entries,
        [
            (noc.clone(), "limits".into(), "acme".into()),
            (noc.clone(), "block".into(), "acme".into()),
            (noc.clone(), "unblock".into(), "acme".into()),
            ("tollguard".into(), "block".into(), "acme".into()),
        ],
        "{v}"
    );
    assert_eq!(v["audit"][1]["details"]["reason"], "PBX hacked, caller confirmed");
    assert_eq!(v["audit"][3]["details"]["rule"], "acme.calls");
    // The account sees its own entries; another customer none; CSV for export.
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&f.acme), None).await;
    assert_eq!(v["audit"].as_array().unwrap().len(), 4);
    let (st, _) = call(&app, "GET", "/v1/audit?account=acme", Some(&f.other), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&f.other), None).await;
    assert_eq!(v["audit"].as_array().unwrap().len(), 0);
    let (st, v) = call(&app, "GET", "/v1/audit?format=csv", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::OK);
    let csv = v.as_str().unwrap();
    assert!(csv.starts_with("id,time,actor,action,account,details\n"), "{csv}");
    assert_eq!(csv.lines().count(), 5);
}

#[tokio::test]
async fn alerts_group_into_an_incident_with_its_timeline_until_an_operator_closes_it() {
    let f = fixture("incidents");
    let s = server(&f.db);
    let app = s.router();
    for (id, t) in [("tl1", "2011-06-11T23:10:00+02:00"), ("tl2", "2011-06-11T23:12:00+02:00")] {
        let (_, v) = authorize(&app, &f, authorize_body(id, "0067077123456", t)).await;
        assert_eq!(v["allow"], false);
    }
    // While it is open, an ordinary call of the account runs and ends: its cost is exposure.
    authorize(&app, &f, authorize_body("nl1", "0201234567", "2011-06-11T23:13:00+02:00")).await;
    call(
        &app,
        "POST",
        "/v1/calls/nl1/answer",
        Some(&f.integration),
        Some(json!({"time": "2011-06-11T23:13:05+02:00"})),
    )
    .await;
    call(
        &app,
        "POST",
        "/v1/calls/nl1/end",
        Some(&f.integration),
        Some(json!({"billsec": 1500, "time": "2011-06-11T23:38:05+02:00"})),
    )
    .await;
    let (st, v) = call(&app, "GET", "/v1/incidents?state=open", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::OK);
    let list = v["incidents"].as_array().unwrap();
    // 25 minutes at EUR 0.012; the two refused calls to East Timor, EUR 1.45 a minute each.
    assert_eq!(
        (list[0]["exposure_so_far"].as_str(), list[0]["refused_per_minute"].as_str()),
        (Some("0.30"), Some("2.90")),
        "{v}"
    );
    assert_eq!(list.len(), 1, "{v}");
    let inc = &list[0];
    assert_eq!(inc["account"], "acme");
    assert_eq!(inc["first_suspicious_call"], "tl1");
    assert_eq!(inc["first_alert"]["rule"], "default.new_critical_destination_night");
    assert_eq!(
        (inc["first_denial"]["call_id"].as_str(), inc["last_denial"]["call_id"].as_str()),
        (Some("tl1"), Some("tl2"))
    );
    assert_eq!((inc["alerts"].as_i64(), inc["denials"].as_i64()), (Some(1), Some(2)), "{inc}");
    let id = inc["id"].as_i64().unwrap();
    let (_, v) = call(&app, "GET", "/v1/incidents", Some(&f.acme), None).await;
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "the customer sees its own");
    let (_, v) = call(&app, "GET", "/v1/incidents", Some(&f.other), None).await;
    assert_eq!(v["incidents"].as_array().unwrap().len(), 0);
    let (st, _) = call(&app, "GET", &format!("/v1/incidents/{id}"), Some(&f.other), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Acknowledged, then closed as a false positive, with who and why.
    let (st, _) = call(&app, "POST", &format!("/v1/incidents/{id}/acknowledge"), Some(&f.acme), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) =
        call(&app, "POST", &format!("/v1/incidents/{id}/acknowledge"), Some(&f.operator), None).await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("acknowledged")), "{v}");
    let (st, v) =
        call(&app, "POST", &format!("/v1/incidents/{id}/acknowledge"), Some(&f.operator), None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("incident_closed")), "{v}");
    let (st, v) = call(
        &app,
        "POST",
        &format!("/v1/incidents/{id}/false-positive"),
        Some(&f.operator),
        Some(json!({"reason": "site survey in Dili, agreed with the customer"})),
    )
    .await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("false_positive")), "{v}");
    let history: Vec<&str> =
        v["history"].as_array().unwrap().iter().map(|h| h["state"].as_str().unwrap()).collect();
    assert_eq!(history, ["open", "acknowledged", "false_positive"]);
    assert_eq!(v["history"][2]["by"], "noc (operator)");
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&f.operator), None).await;
    assert_eq!(v["audit"].as_array().unwrap().iter().filter(|e| e["action"] == "incident").count(), 2);
    // The next alert opens a new incident.
    let (_, _) =
        authorize(&app, &f, authorize_body("cu1", "005372345678", "2011-06-11T23:20:00+02:00")).await;
    let (_, v) = call(&app, "GET", "/v1/incidents", Some(&f.operator), None).await;
    assert_eq!(v["incidents"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["incidents"][0]["state"], "open");
}

#[tokio::test]
async fn a_false_positive_allowance_stops_the_repeat_alert_and_is_logged() {
    let f = fixture("allowance");
    let night = |id: &str, t: &str| authorize_body(id, "0067077123456", t);
    {
        let s = server(&f.db);
        let app = s.router();
        let (_, v) = authorize(&app, &f, night("n1", "2011-06-11T23:10:00+02:00")).await;
        assert_eq!(v["allow"], false);
        let (_, v) = call(&app, "GET", "/v1/incidents", Some(&f.operator), None).await;
        let id = v["incidents"][0]["id"].as_i64().unwrap();
        let (st, v) = call(&app, "POST", &format!("/v1/incidents/{id}/false-positive"), Some(&f.operator),
            Some(json!({ "reason": "engineers on site in Dili", "allow": { "countries": ["tl", "CU"], "until": "2031-01-01T00:00:00Z" } }))).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        // The same call the next night: no first-call rule, no alert (the spend limits on
        // high-risk ranges still count it and cap it).
        let (_, v) = authorize(&app, &f, night("n2", "2011-06-12T23:10:00+02:00")).await;
        assert_eq!(
            (v["allow"].as_bool(), v["rules"].clone()),
            (Some(true), json!(["default.high_risk_spend_1h"])),
            "{v}"
        );
        s.flush().await;
        let (_, v) = call(&app, "GET", "/v1/alerts", Some(&f.operator), None).await;
        assert_eq!(v["alerts"].as_array().unwrap().len(), 1, "only the first: {v}");
        let (_, v) = call(&app, "GET", "/v1/audit", Some(&f.operator), None).await;
        let allow = v["audit"].as_array().unwrap().iter().find(|e| e["action"] == "allow").unwrap().clone();
        assert_eq!(
            (allow["actor"].as_str(), allow["details"]["countries"][0].as_str()),
            (Some("noc (operator)"), Some("TL"))
        );
        assert_eq!(allow["details"]["reason"], "engineers on site in Dili");
        // Allow only with false-positive.
        let (st, _) = call(
            &app,
            "POST",
            &format!("/v1/incidents/{id}/resolve"),
            Some(&f.operator),
            Some(json!({ "allow": { "countries": ["TL"] } })),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
    }
    // Visible on the account, and still in force after a restart; it expires when asked.
    let s = server(&f.db);
    let app = s.router();
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.acme), None).await;
    let countries: Vec<&str> =
        v["allowances"].as_array().unwrap().iter().map(|a| a["country"].as_str().unwrap()).collect();
    assert_eq!(countries, ["TL", "CU"], "{v}");
    let cuba = |id: &str, t: &str| authorize_body(id, "005372345678", t);
    let (_, v) = authorize(&app, &f, cuba("c1", "2030-06-15T23:10:00+02:00")).await;
    assert_eq!(v["allow"], true, "allowed before the expiry: {v}");
    let f2 = fixture("allowance-expiry");
    let s2 = server(&f2.db);
    let app2 = s2.router();
    // On an account whose allowance has expired, the first-call rule is back.
    let (_, v) = authorize(&app2, &f2, cuba("c2", "2030-06-15T23:10:00+02:00")).await;
    let (_, inc) = call(&app2, "GET", "/v1/incidents", Some(&f2.operator), None).await;
    let id = inc["incidents"][0]["id"].as_i64().unwrap();
    assert_eq!(v["allow"], false);
    call(
        &app2,
        "POST",
        &format!("/v1/incidents/{id}/false-positive"),
        Some(&f2.operator),
        Some(json!({ "allow": { "countries": ["CU"], "until": "2030-06-16T00:00:00Z" } })),
    )
    .await;
    let (_, v) = authorize(&app2, &f2, cuba("c3", "2030-06-20T23:10:00+02:00")).await;
    assert_eq!(
        (v["allow"].as_bool(), v["rules"][0].as_str()),
        (Some(false), Some("default.new_critical_destination_night")),
        "{v}"
    );
}

#[tokio::test]
async fn destination_blocks_and_who_may_lift_them() {
    let f = fixture("dest-blocks");
    let s = server(&f.db);
    let app = s.router();
    let body = |id: &str, to: &str| {
        let mut b = authorize_body(id, to, "");
        b.as_object_mut().unwrap().remove("time");
        b
    };
    let (st, v) = call(
        &app,
        "POST",
        "/v1/accounts/acme/block",
        Some(&f.operator),
        Some(json!({ "countries": ["TLX"], "reason": "x" })),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = call(
        &app,
        "POST",
        "/v1/accounts/acme/block",
        Some(&f.operator),
        Some(json!({ "countries": ["TL"], "prefixes": ["+4930"], "reason": "IRSF wave" })),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = authorize(&app, &f, body("d1", "0067077123456")).await;
    assert_eq!(
        (v["allow"].as_bool(), v["rules"][0].as_str()),
        (Some(false), Some("operator.block (TL, +4930): IRSF wave")),
        "{v}"
    );
    let (_, v) = authorize(&app, &f, body("d2", "0201234567")).await;
    assert_eq!(v["allow"], true, "Dutch numbers are not blocked: {v}");
    // The customer may lift only the blocks of its own limits; the operator's block stays.
    let (st, _) = call(&app, "POST", "/v1/accounts/acme/unblock", Some(&f.other), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, "POST", "/v1/accounts/acme/unblock", Some(&f.acme), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = authorize(&app, &f, body("d3", "004930123456")).await;
    assert_eq!(v["allow"], false, "{v}");
    let (st, _) = call(&app, "POST", "/v1/accounts/acme/unblock", Some(&f.operator), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = authorize(&app, &f, body("d4", "004930123457")).await;
    assert_eq!(v["allow"], true, "{v}");
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&f.operator), None).await;
    let actions: Vec<(&str, &str)> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("noc (operator)", "block"), ("acme it (customer:acme)", "unblock"), ("noc (operator)", "unblock")]
    );
}

/// Every endpoint against every kind of caller: no token, integration, operator, the account's
/// customer, another customer. `A`: allowed (any status but 401/403), `U`: 401, `F`: 403,
/// `N`: 404 (another customer's data is not there).
#[tokio::test]
async fn every_endpoint_and_every_scope() {
    let f = fixture("matrix");
    let s = server(&f.db);
    let app = s.router();
    // An account with a decision, a running call and an incident.
    authorize(&app, &f, authorize_body("c0", "0067077123456", "2011-06-11T23:10:00+02:00")).await;
    let mut live = authorize_body("c1", "0201234567", "");
    live.as_object_mut().unwrap().remove("time");
    authorize(&app, &f, live).await;
    s.flush().await;
    let (_, v) = call(&app, "GET", "/v1/incidents", Some(&f.operator), None).await;
    let inc = v["incidents"][0]["id"].as_i64().unwrap();
    let record = json!([{"call_id": "r9", "account": "acme", "extension": "201", "to": "0201234567",
                         "start": "2026-01-19T09:00:00Z", "billsec": 0}]);
    let fs = r#"{"variables":{"uuid":"u1","accountcode":"acme","caller_id_number":"201","destination_number":"0201234567","start_epoch":"1700000000","billsec":"0"}}"#;
    let limits = json!({"limits": [{"name": "own", "metric": "calls", "window": "day", "max": "10"}]});
    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        // method, path, body, expected for [none, integration, operator, acme, other]
        (
            "POST",
            "/v1/authorize".into(),
            Some(authorize_body("m1", "0201234567", "2026-01-19T10:00:00+01:00")),
            "UAAFF",
        ),
        ("POST", "/v1/calls/c1/answer".into(), Some(json!({})), "UAAFF"),
        ("POST", "/v1/calls/zz/end".into(), Some(json!({})), "UAAFF"),
        ("POST", "/v1/cdrs".into(), Some(record), "UAAFF"),
        ("POST", "/v1/cdrs/freeswitch".into(), Some(serde_json::from_str(fs).unwrap()), "UAAFF"),
        ("GET", "/v1/accounts/acme".into(), None, "UFAAF"),
        ("PUT", "/v1/accounts/acme/limits".into(), Some(limits), "UFAAF"),
        ("POST", "/v1/accounts/acme/block".into(), Some(json!({"countries": ["CU"]})), "UFAFF"),
        ("POST", "/v1/accounts/acme/unblock".into(), Some(json!({})), "UFAAF"),
        ("GET", "/v1/alerts".into(), None, "UFAAA"),
        ("GET", "/v1/decisions/c0".into(), None, "UFAAN"),
        ("POST", "/v1/admin/reload".into(), None, "UFAFF"),
        ("GET", "/v1/deliveries".into(), None, "UFAFF"),
        ("GET", "/v1/audit".into(), None, "UFAAA"),
        ("GET", "/v1/incidents".into(), None, "UFAAA"),
        ("GET", format!("/v1/incidents/{inc}"), None, "UFAAN"),
        ("POST", format!("/v1/incidents/{inc}/acknowledge"), None, "UFAFF"),
        ("GET", "/healthz".into(), None, "AAAAA"),
        ("GET", "/readyz".into(), None, "AAAAA"),
        ("GET", "/metrics".into(), None, "AAAAA"),
        ("GET", "/openapi.json".into(), None, "AAAAA"),
    ];
    let tokens = [
        None,
        Some(f.integration.as_str()),
        Some(f.operator.as_str()),
        Some(f.acme.as_str()),
        Some(f.other.as_str()),
    ];
    let mut wrong = vec![];
    for (method, path, body, want) in &cases {
        for (tok, w) in tokens.iter().zip(want.chars()) {
            let (st, v) = call(&app, method, path, *tok, body.clone()).await;
            let ok = match w {
                'A' => {
                    st != StatusCode::UNAUTHORIZED
                        && st != StatusCode::FORBIDDEN
                        && st != StatusCode::NOT_FOUND
                        || (st == StatusCode::NOT_FOUND && path.contains("/calls/zz/"))
                }
                'U' => st == StatusCode::UNAUTHORIZED,
                'F' => st == StatusCode::FORBIDDEN,
                'N' => st == StatusCode::NOT_FOUND,
                _ => false,
            };
            if !ok {
                wrong.push(format!("{method} {path} as {:?}: {st} {v}", tok.map(|t| &t[..6])));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_call_whose_end_never_arrives_is_closed_and_a_later_record_corrects_it() {
    let f = fixture("lost");
    let s = server(&f.db);
    let app = s.router();
    let now = jiff::Timestamp::now();
    let ago = |secs: i64| now - jiff::SignedDuration::from_secs(secs);
    // A call to a Dutch number (EUR 0.012 a minute, whole minutes), answered 4 h 10 s ago.
    let mut body = authorize_body("lost1", "0201234567", "");
    body["time"] = json!(ago(4 * 3600 + 20).to_string());
    let (_, v) = authorize(&app, &f, body).await;
    assert_eq!((v["allow"].as_bool(), v["max_duration_s"].as_u64()), (Some(true), None));
    call(
        &app,
        "POST",
        "/v1/calls/lost1/answer",
        Some(&f.integration),
        Some(json!({"time": ago(4 * 3600 + 10).to_string()})),
    )
    .await;
    // Three and a half hours after the answer: still running (the rule is 4 hours).
    s.tick(ago(1800));
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(v["running_calls"], 1);
    // Past four hours: closed, counted as talking until then (240 minutes: EUR 2.88).
    s.tick(now);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(v["running_calls"], 0, "{v}");
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    assert!(m.as_str().unwrap().contains("tollguard_lost_calls_total 1"), "{m}");
    for healthy in ["tollguard_store_writes_lost_total 0", "tollguard_store_failing 0"] {
        assert!(m.as_str().unwrap().contains(healthy), "{m}");
    }
    // Its time was four hours behind the server's clock: counted (and warned about).
    assert!(m.as_str().unwrap().contains("tollguard_authorize_time_skewed_total 1"), "{m}");
    let mut body = authorize_body("now1", "0201234567", "");
    body["time"] = json!((jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3)).to_string());
    authorize(&app, &f, body).await;
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    assert!(m.as_str().unwrap().contains("tollguard_authorize_time_skewed_total 1"), "a few seconds: {m}");
    let day = |v: &Value| limit(v, "default.spend_day")["used"].clone();
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(day(&v), "2.89", "{v}");
    // The switch's record arrives (within the grace after the close): the record wins, 300 s.
    let record = json!([{"call_id": "lost1", "account": "acme", "extension": "210", "to": "0201234567",
                         "start": ago(4 * 3600 + 20).to_string(), "answer": ago(4 * 3600 + 10).to_string(),
                         "end": ago(4 * 3600 - 290).to_string(), "billsec": 300}]);
    let (_, v) = call(&app, "POST", "/v1/cdrs", Some(&f.integration), Some(record)).await;
    assert_eq!(v["new"], 1);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(day(&v), "0.06", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_the_switch_answers_with_no_such_dialog_ends_the_call_here() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A stand-in for Kamailio's JSON-RPC that no longer has the dialog.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let asked = Arc::new(std::sync::Mutex::new(vec![]));
    let seen = asked.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            // The whole request: headers and body may come in separate reads.
            let mut req = vec![];
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            seen.lock().unwrap().push(String::from_utf8_lossy(&req).to_string());
            s.write_all(b"HTTP/1.1 404 Dialog not found\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        }
    });
    let f = fixture("gone");
    let opts = Options {
        database: f.db.clone(),
        kamailio_rpc: Some(format!("http://127.0.0.1:{port}/RPC")),
        ..Options::default()
    };
    let s = Server::start(rater(), Policy::builtin(), opts).unwrap();
    let app = s.router();
    let limits = json!({ "limits": [{ "name": "tiny", "metric": "spend", "window": "rolling_24h", "max": "0.10",
                                      "on_critical": ["alert", "deny", "cut"] }] });
    call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.operator), Some(limits)).await;
    acme_has_called_east_timor(&app, &f).await;
    let now = jiff::Timestamp::now();
    let mut body = authorize_body("k1", "0067077123456", "");
    body["time"] = json!((now - jiff::SignedDuration::from_secs(20)).to_string());
    let (_, v) = authorize(&app, &f, body).await;
    assert_eq!(v["allow"], true, "{v}");
    call(&app, "POST", "/v1/calls/k1/answer", Some(&f.integration),
        Some(json!({ "time": (now - jiff::SignedDuration::from_secs(10)).to_string(), "kamailio_h_entry": 342, "kamailio_h_id": 56 }))).await;
    // Ten seconds of East Timor cost a minute, EUR 1.45: over the limit: cut.
    s.tick(now);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while asked.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "tollguard never asked the switch");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let req = asked.lock().unwrap()[0].clone();
    assert!(
        req.starts_with("POST /RPC HTTP/1.1")
            && req.contains(r#""method":"dlg.end_dlg""#)
            && req.contains("[342,56]"),
        "{req}"
    );
    // The cut is on the account's incident (counted, the first on its timeline) and in the
    // audit log under the account.
    let (_, v) = call(&app, "GET", "/v1/incidents?account=acme", Some(&f.operator), None).await;
    let inc = &v["incidents"][0];
    assert_eq!(
        (inc["calls_cut"].as_i64(), inc["first_cut"]["call_id"].as_str()),
        (Some(1), Some("k1")),
        "{v}"
    );
    assert_eq!(inc["first_cut"]["rule"], "tiny", "{v}");
    let (_, v) = call(&app, "GET", "/v1/audit?account=acme", Some(&f.operator), None).await;
    assert!(v.to_string().contains(r#""action":"cut""#), "{v}");
    // The evidence pack's timeline names it.
    let page = Request::builder()
        .uri(format!("/ui/incidents/{}", inc["id"]))
        .header("cookie", format!("tollguard_token={}", f.operator))
        .body(Body::empty())
        .unwrap();
    let page = app.clone().oneshot(page).await.unwrap();
    let html = String::from_utf8(page.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains("first running call cut") && html.contains("k1 (tiny), 1 cut in all"), "{html}");
    // The switch no longer has the dialog: the next tick ends the call here.
    s.tick(now + jiff::SignedDuration::from_secs(1));
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    assert_eq!(v["running_calls"], 0, "{v}");
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    assert!(m.as_str().unwrap().contains("tollguard_cuts_failed_total 0"), "not a failure: {m}");
}

#[tokio::test]
async fn a_cgrates_plan_prices_the_calls_and_its_max_cost_caps_them() {
    let plan_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cgrates-plan");
    let plan = tollguard_core::cgrates::Plan::load(&plan_dir).unwrap();
    let rater = Arc::try_unwrap(rater())
        .unwrap()
        .with_cgrates(tollguard_core::rater::CgratesPricing {
            plan: Arc::new(plan),
            tenant: "cgrates.org".into(),
            category: "call".into(),
            subjects: Default::default(),
            currency: tollguard_core::money::Currency::EUR,
        })
        .unwrap();
    let f = fixture("cgrates");
    let opts = Options { database: f.db.clone(), ..Options::default() };
    // No rules of our own: the tariff's MaxCost is what caps.
    let spec = tollguard_engine::policy::PolicySpec { defaults: false, ..Default::default() };
    let s = Server::start(Arc::new(rater), Policy::from_spec(&spec).unwrap(), opts).unwrap();
    let app = s.router();
    // Satellite: EUR 0.50 connect fee + 6.50 a minute in whole minutes, MaxCost 20 *disconnect
    // (connect fee not counted): the fourth minute is the one that reaches it.
    let body = authorize_body("sat1", "+881612345678", "2026-01-19T10:00:00+01:00");
    let (_, v) = authorize(&app, &f, body).await;
    assert_eq!(v["allow"], true, "{v}");
    assert!(v["rules"].as_array().unwrap().iter().any(|r| r == "tariff.max_cost"), "{v}");
    assert_eq!(v["max_duration_s"], 240, "{v}");
    // Germany at 0.03 a minute, per second: 125 s cost 125 x round5(0.0005) = 0.0625.
    let limits = json!({ "limits": [{ "name": "day", "metric": "spend", "window": "rolling_24h", "max": "100",
                                      "on_critical": ["alert"] }] });
    call(&app, "PUT", "/v1/accounts/acme/limits", Some(&f.operator), Some(limits)).await;
    let now = jiff::Timestamp::now();
    let ago = |s: i64| json!({ "time": (now - jiff::SignedDuration::from_secs(s)).to_string() });
    let mut body = authorize_body("de1", "+492211234567", "");
    body["time"] = ago(130)["time"].clone();
    let (_, v) = authorize(&app, &f, body).await;
    assert_eq!((v["allow"].clone(), v["max_duration_s"].clone()), (json!(true), Value::Null), "{v}");
    call(&app, "POST", "/v1/calls/de1/answer", Some(&f.integration), Some(ago(125))).await;
    let mut end = ago(0);
    end["billsec"] = json!(125);
    let (st, _) = call(&app, "POST", "/v1/calls/de1/end", Some(&f.integration), Some(end)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, v) = call(&app, "GET", "/v1/accounts/acme", Some(&f.operator), None).await;
    let day = limit(&v, "day").clone();
    // Shown to the cent; the test deck has no German rate, so this is the plan's price.
    assert_eq!(day["used"], "0.06", "{v}");
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_the_recheck_time() {
    let f = fixture("revoke");
    let start = jiff::Timestamp::now();
    let clock = tollguard_server::Clock::driven(start, 0);
    let opts = Options { database: f.db.clone(), clock: clock.clone(), ..Options::default() };
    let s = Server::start(rater(), Policy::builtin(), opts).unwrap();
    let app = s.router();
    let names: Vec<(String, String)> =
        tollguard_server::list_tokens(&f.db).unwrap().into_iter().map(|(n, s, _)| (n, s)).collect();
    assert!(names.contains(&("acme it".into(), "customer:acme".into())), "{names:?}");
    assert!(names.contains(&("kamailio".into(), "integration".into())), "{names:?}");
    let read = |token: String| {
        let app = app.clone();
        async move { call(&app, "GET", "/v1/alerts", Some(&token), None).await.0 }
    };
    // The customer's token is used (and so kept by the server), then revoked.
    assert_eq!(read(f.acme.clone()).await, StatusCode::OK);
    // A token the server has never seen is refused at once once revoked.
    let spare = create_token(&f.db, "spare", &Scope::Operator).unwrap();
    assert_eq!(tollguard_server::revoke_tokens(&f.db, "acme it").unwrap(), 1);
    assert_eq!(tollguard_server::revoke_tokens(&f.db, "spare").unwrap(), 1);
    assert_eq!(tollguard_server::revoke_tokens(&f.db, "nobody").unwrap(), 0);
    let typo = f.db.with_file_name("tolguard.db");
    let e = tollguard_server::revoke_tokens(&typo, "spare").unwrap_err().to_string();
    assert!(e.contains("no database at") && e.contains("tolguard.db") && !typo.exists(), "{e}");
    assert_eq!(read(spare).await, StatusCode::UNAUTHORIZED);
    // The one it has seen works until the server looks again, then not.
    clock.set(start + tollguard_server::TOKEN_RECHECK - jiff::SignedDuration::from_secs(1), 0);
    assert_eq!(read(f.acme.clone()).await, StatusCode::OK);
    clock.set(start + tollguard_server::TOKEN_RECHECK, 0);
    assert_eq!(read(f.acme.clone()).await, StatusCode::UNAUTHORIZED);
    // Nor does a clock set back keep a revoked token alive.
    let kamailio_read = |token: String| {
        let app = app.clone();
        async move { call(&app, "POST", "/v1/cdrs", Some(&token), Some(json!([]))).await.0 }
    };
    assert_eq!(kamailio_read(f.integration.clone()).await, StatusCode::OK);
    assert_eq!(tollguard_server::revoke_tokens(&f.db, "kamailio").unwrap(), 1);
    clock.set(start, 0);
    assert_eq!(kamailio_read(f.integration.clone()).await, StatusCode::UNAUTHORIZED);
    // The others are untouched; the revocation is in the audit log.
    assert_eq!(read(f.operator.clone()).await, StatusCode::OK);
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&f.operator), None).await;
    assert!(v.to_string().contains(r#""action":"revoke_token""#) && v.to_string().contains("acme it"), "{v}");
}
