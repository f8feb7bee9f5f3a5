//! The incident report: a night attack through the API, then its evidence pack (HTML and CSV
//! compared with checked-in snapshots, totals checked by hand).

use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollguard_core::reconcile::Side;
use tollguard_engine::policy::Policy;
use tollguard_server::report::{incident_csv, incident_html, incident_report, ReconcileWith};
use tollguard_server::{create_token, Options, Scope, Server};

mod common;
use common::{call, rater};

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
    let mut r = incident_report(&store, &rater(), id, until, Decimal::from(21), None).unwrap();

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

    // The carrier's records of the same night, set beside ours: tl3 billed a minute longer, n1 the
    // same, a call tollguard never saw, and records outside the incident (another account, the
    // Friday) left out.
    let side = |id: &str, account: &str, at: &str, number: &str, billsec: u32, cost: &str| Side {
        call_id: id.into(),
        origin: format!("carrier.csv:{id}"),
        start: at.parse().unwrap(),
        number: number.into(),
        billsec,
        cost: Some(cost.parse().unwrap()),
        account: account.into(),
    };
    let with = ReconcileWith {
        source: "carrier.csv (asterisk)".into(),
        records: vec![
            side("c-f1", "acme", "2011-06-10T15:00:03+02:00", "+31201234567", 30, "0.0120"),
            side("c-tl3", "acme", "2011-06-11T23:20:03+02:00", "+6707754605", 1260, "30.4500"),
            side("c-n1", "", "2011-06-11T23:40:01+02:00", "+31201234567", 65, "0.0240"),
            side("c-x", "acme", "2011-06-11T23:50:00+02:00", "+6707754606", 600, "14.5000"),
            side("c-o", "other", "2011-06-11T23:45:00+02:00", "+6707754607", 600, "14.5000"),
        ],
        account: None,
        time_tolerance_s: 5,
        duration_tolerance_s: 2,
    };
    let r = incident_report(&store, &rater(), id, until, Decimal::from(21), Some(&with)).unwrap();
    let x = r.reconciliation.as_ref().expect("a reconciliation");
    let t = &x.total;
    // Ours: tl3 and n1 (tl1, tl2 were denied and never went out).
    assert_eq!(
        (t.ours, t.theirs, t.matched, t.duration_differs, t.ours_only, t.theirs_only),
        (2, 3, 2, 1, 0, 1)
    );
    assert_eq!(
        (t.our_cost.as_str(), t.their_cost.as_str(), t.difference.as_str()),
        ("29.0240", "44.9740", "15.9500")
    );
    assert_eq!(x.days.iter().map(|d| d.day.as_str()).collect::<Vec<_>>(), ["2011-06-11"]);
    let got: Vec<(&str, &str, &str, &str)> = x
        .differences
        .iter()
        .map(|l| (l.status.as_str(), l.our_call_id.as_str(), l.their_call_id.as_str(), l.difference.as_str()))
        .collect();
    assert_eq!(got, [("duration_differs", "tl3", "c-tl3", "1.4500"), ("theirs_only", "", "c-x", "14.5000")]);
    assert!(x.method[0].contains("; 2 other records were left out"), "{}", x.method[0]);
    let html = incident_html(&r).unwrap();
    assert!(html.contains("Reconciliation with carrier.csv (asterisk)"), "{html}");
    assert!(html.contains(">c-x</td>"), "{html}");
    let csv = incident_csv(&r).unwrap();
    assert!(csv.contains("# total 2 3 2 1 0 1 1265 1925 29.0240 44.9740 15.9500\n"), "{csv}");
}

#[tokio::test]
async fn a_daily_report_shows_the_hour_above_its_usual_band_and_the_new_country() {
    let db = common::temp_dir("daily").join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let s = Server::start(rater(), Policy::builtin(), Options { database: db.clone(), ..Options::default() })
        .unwrap();
    let app = s.router();
    // Four Mondays of ordinary traffic: calls of 300 s to Amsterdam at 10:00 (0.06 each), three
    // on 30 May, two on the others.
    let mut records = vec![];
    for (day, n) in
        [("2011-05-16", 2), ("2011-05-23", 2), ("2011-05-30", 3), ("2011-06-06", 2), ("2011-06-13", 2)]
    {
        for i in 0..n {
            records.push(json!({ "call_id": format!("{day}-{i}"), "account": "acme", "extension": "210",
                "to": "0201234567", "start": format!("{day}T10:0{i}:00+02:00"), "answer": format!("{day}T10:0{i}:05+02:00"),
                "end": format!("{day}T10:0{}:05+02:00", i + 5), "billsec": 300 }));
        }
    }
    // Monday 13 June, 02:55: the first call to East Timor is denied; at 03:00 one goes through
    // another way (its record: 20 minutes).
    let (_, v) = call(
        &app,
        "POST",
        "/v1/authorize",
        &token,
        Some(authorize("tl1", "213", "0067077123456", "2011-06-13T02:55:00+02:00")),
    )
    .await;
    assert_eq!(v["allow"], false, "{v}");
    records.push(json!({ "call_id": "tl3", "account": "acme", "extension": "213", "to": "006707754605",
        "start": "2011-06-13T03:00:00+02:00", "answer": "2011-06-13T03:00:10+02:00", "end": "2011-06-13T03:20:10+02:00", "billsec": 1200 }));
    let (st, v) = call(&app, "POST", "/v1/cdrs", &token, Some(Value::Array(records))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.flush().await;

    let store = tollguard_store::Store::open(&db).unwrap();
    let date: jiff::civil::Date = "2011-06-13".parse().unwrap();
    let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let r = tollguard_server::report::daily_report(&store, &rater(), "acme", date, now).unwrap();
    assert_eq!((r.calls, r.denied, r.answered, r.spend.as_str()), (4, 1, 3, "29.1200"));
    assert_eq!(r.history_days, 4);
    let ten = &r.hours[10];
    assert_eq!(
        (ten.spend.as_str(), ten.usual_low.as_str(), ten.usual_high.as_str(), ten.above_usual),
        ("0.1200", "0.1200", "0.1800", false)
    );
    let three = &r.hours[3];
    assert_eq!(
        (three.spend.as_str(), three.usual_high.as_str(), three.above_usual),
        ("29.0000", "0.0000", true)
    );
    assert_eq!(r.new_countries, ["TL"]);
    assert_eq!(
        (r.destinations[0].country.as_str(), r.destinations[0].cost.as_str(), r.destinations[0].new),
        ("TL", "29.0000", true)
    );
    assert_eq!((r.destinations[1].country.as_str(), r.destinations[1].new), ("NL", false));
    assert_eq!(r.alerts.len(), 1);
    assert!(r.chart_svg.starts_with("<svg") && r.chart_svg.contains("<rect"), "{}", &r.chart_svg[..80]);
    insta::assert_snapshot!("daily.csv", tollguard_server::report::daily_csv(&r).unwrap());
    insta::assert_snapshot!("daily.html", tollguard_server::report::daily_html(&r).unwrap());
}
