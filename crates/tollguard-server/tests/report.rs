//! The incident report: a night attack through the API, then its evidence pack (HTML and CSV
//! compared with checked-in snapshots, totals checked by hand).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollguard_engine::policy::Policy;
use tollguard_server::report::{incident_csv, incident_html, incident_report};
use tollguard_server::{create_token, Options, Scope, Server};
use tower::ServiceExt;

mod common;
use common::rater;

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req =
        Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn authorize(id: &str, ext: &str, to: &str, time: &str) -> Value {
    json!({ "call_id": id, "account": "acme", "extension": ext, "from": "+31201234567", "to": to, "time": time })
}

#[tokio::test]
async fn a_night_attack_gives_an_evidence_pack() {
    let db = common::temp_dir("report").join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let s = Server::start(rater(), Policy::builtin(), Options { database: db.clone(), ..Options::default() })
        .unwrap();
    let app = s.router();
    // Friday afternoon: ordinary traffic (before the incident, so not in it).
    let (_, v) = call(
        &app,
        "POST",
        "/v1/authorize",
        &token,
        Some(authorize("f1", "210", "0201234567", "2011-06-10T15:00:00+02:00")),
    )
    .await;
    assert_eq!(v["allow"], true, "{v}");
    // Saturday night: extension 213 calls East Timor, twice denied.
    for (id, at) in [("tl1", "2011-06-11T23:10:00+02:00"), ("tl2", "2011-06-11T23:12:00+02:00")] {
        let (_, v) =
            call(&app, "POST", "/v1/authorize", &token, Some(authorize(id, "213", "0067077123456", at)))
                .await;
        assert_eq!(v["allow"], false, "{v}");
    }
    // A call the PBX put through another way, known only by its record: 20 minutes to East Timor.
    let rec = json!([{ "call_id": "tl3", "account": "acme", "extension": "213", "to": "006707754605",
                       "start": "2011-06-11T23:20:00+02:00", "answer": "2011-06-11T23:20:10+02:00",
                       "end": "2011-06-11T23:40:10+02:00", "billsec": 1200 }]);
    let (st, v) = call(&app, "POST", "/v1/cdrs", &token, Some(rec)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // An ordinary call at night, answered, 65 s: two started minutes at 0.012.
    let (_, v) = call(
        &app,
        "POST",
        "/v1/authorize",
        &token,
        Some(authorize("n1", "210", "0201234567", "2011-06-11T23:40:00+02:00")),
    )
    .await;
    assert_eq!(v["allow"], true, "{v}");
    call(&app, "POST", "/v1/calls/n1/answer", &token, Some(json!({ "time": "2011-06-11T23:40:05+02:00" })))
        .await;
    let (st, _) = call(
        &app,
        "POST",
        "/v1/calls/n1/end",
        &token,
        Some(json!({ "billsec": 65, "time": "2011-06-11T23:41:10+02:00" })),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    s.flush().await;

    let (_, v) = call(&app, "GET", "/v1/incidents", &token, None).await;
    let id = v["incidents"][0]["id"].as_i64().expect("an incident");
    let store = tollguard_store::Store::open(&db).unwrap();
    let until: jiff::Timestamp = "2011-06-12T08:00:00+02:00".parse().unwrap();
    let mut r = incident_report(&store, &rater(), id, until, Decimal::from(21)).unwrap();

    // Four calls from the first suspicious one; the Friday call is before the incident.
    let ids: Vec<&str> = r.calls.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids, ["tl1", "tl2", "tl3", "n1"]);
    // 1200 s to East Timor at 1.45 a started minute = 29.0000; 65 s at 0.012 = 0.0240.
    assert_eq!((r.totals.cost.as_str(), r.totals.flagged_cost.as_str()), ("29.0240", "0.0000"));
    // VAT 21% of 29.024 = 6.09504, at the cent 6.10.
    assert_eq!((r.totals.vat.as_str(), r.totals.cost_incl_vat.as_str()), ("6.1000", "35.1240"));
    assert_eq!((r.totals.denied, r.totals.flagged, r.totals.billsec), (2, 2, 1265));
    let tl3 = &r.calls[2];
    assert_eq!(
        (tl3.e164.as_str(), tl3.country.as_str(), tl3.risk.as_str()),
        ("+6707754605", "TL", "critical")
    );
    assert_eq!((tl3.billsec_from.as_str(), tl3.decision.as_str()), ("record", "record only"));

    // The incident's own state changes are stamped with the server's clock: not part of the snapshot.
    for h in &mut r.history {
        h.time = "(server clock)".into();
    }
    insta::assert_snapshot!("incident.csv", incident_csv(&r).unwrap());
    insta::assert_snapshot!("incident.html", incident_html(&r).unwrap());
}
