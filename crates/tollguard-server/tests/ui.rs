//! The dashboard without sockets: sign-in, what each scope may see, the cookie on the JSON API,
//! and the live alert feed.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::json;
use tollguard_engine::policy::Policy;
use tollguard_server::{create_token, Options, Scope, Server};
use tower::ServiceExt;

mod common;
use common::rater;

struct Page {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Page {
    let resp = app.clone().oneshot(req).await.unwrap();
    let get = |h: header::HeaderName| resp.headers().get(h).map(|v| v.to_str().unwrap().to_string());
    let (status, location, cookie) = (resp.status(), get(header::LOCATION), get(header::SET_COOKIE));
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Page { status, location, cookie, body: String::from_utf8_lossy(&bytes).into() }
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> Page {
    let mut req = Request::builder().uri(uri);
    if let Some(t) = token {
        req = req.header("cookie", format!("tollguard_token={t}"));
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn sign_in(app: &Router, token: &str) -> Page {
    let req = Request::builder()
        .method("POST")
        .uri("/ui/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    send(app, req).await
}

struct Fixture {
    server: Server,
    operator: String,
    acme: String,
    integration: String,
    globex: String,
}

fn fixture(name: &str) -> Fixture {
    let db = common::temp_dir(&format!("ui-{name}")).join("tollguard.db");
    let operator = create_token(&db, "noc", &Scope::Operator).unwrap();
    let acme = create_token(&db, "acme it", &Scope::Customer("acme".into())).unwrap();
    let integration = create_token(&db, "kamailio", &Scope::Integration).unwrap();
    let globex = create_token(&db, "globex it", &Scope::Customer("globex".into())).unwrap();
    let opts = Options { database: db, ..Options::default() };
    Fixture {
        server: Server::start(rater(), Policy::builtin(), opts).unwrap(),
        operator,
        acme,
        integration,
        globex,
    }
}

/// acme and globex make a call each; acme's first call to East Timor, last night at 02:00 in
/// Amsterdam (the account pages show 48 hours), is denied with a critical alert.
async fn traffic(app: &Router, f: &Fixture) {
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let yesterday = tz.to_datetime(jiff::Timestamp::now()).date().yesterday().unwrap();
    let at = |d: jiff::civil::Date, h| {
        tz.to_ambiguous_timestamp(d.at(h, 0, 0, 0)).compatible().unwrap().to_string()
    };
    let before = yesterday.yesterday().unwrap();
    for (id, account, to, time) in [
        ("c1", "acme", "0201234567", at(before, 10)),
        ("c2", "globex", "0201234567", at(before, 11)),
        ("c3", "acme", "0067077001234", at(yesterday, 2)),
    ] {
        let body = json!({ "call_id": id, "account": account, "from": "210", "to": to, "time": time });
        let req = Request::builder()
            .method("POST")
            .uri("/v1/authorize")
            .header("authorization", format!("Bearer {}", f.integration))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(send(app, req).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_goes_to_the_callers_start_page() {
    let f = fixture("signin");
    let app = f.server.router();
    let op = sign_in(&app, &f.operator).await;
    assert_eq!(op.status, StatusCode::SEE_OTHER);
    assert_eq!(op.location.as_deref(), Some("/ui/"));
    let cookie = op.cookie.unwrap();
    assert!(cookie.starts_with(&format!("tollguard_token={};", f.operator)), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    // A customer lands on its own account.
    assert_eq!(sign_in(&app, &f.acme).await.location.as_deref(), Some("/ui/accounts/acme"));
    // A switch's token and an unknown one do not sign in.
    let i = sign_in(&app, &f.integration).await;
    assert_eq!((i.status, i.cookie), (StatusCode::FORBIDDEN, None));
    let u = sign_in(&app, "tg_nonsense").await;
    assert_eq!((u.status, u.cookie), (StatusCode::UNAUTHORIZED, None));
    assert!(u.body.contains("unknown token"));
    // Without a cookie every page sends to the sign-in page.
    for uri in ["/ui/", "/ui/accounts", "/ui/accounts/acme", "/ui/alerts", "/ui/incidents"] {
        let p = get(&app, uri, None).await;
        assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/ui/login")), "{uri}");
    }
}

#[tokio::test]
async fn the_operator_sees_every_account_and_the_customer_only_its_own() {
    let f = fixture("scopes");
    let app = f.server.router();
    traffic(&app, &f).await;
    // Alerts are stored by the writer a few milliseconds later.
    let mut overview = get(&app, "/ui/", Some(&f.operator)).await;
    for _ in 0..100 {
        if overview.body.contains("default.new_critical_destination_night") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        overview = get(&app, "/ui/", Some(&f.operator)).await;
    }
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("<svg"), "no spend chart on the overview");
    assert!(overview.body.contains("acme") && overview.body.contains("globex"));
    assert!(overview.body.contains("default.new_critical_destination_night"), "the alert is not listed");
    let list = get(&app, "/ui/accounts?q=glo", Some(&f.operator)).await;
    assert!(list.body.contains(">globex</a>") && !list.body.contains(">acme</a>"), "{}", list.body);
    let acme = get(&app, "/ui/accounts/acme", Some(&f.operator)).await;
    assert_eq!(acme.status, StatusCode::OK, "{}", acme.body);
    assert!(acme.body.contains("0067077001234"), "the denied call is not in the recent calls");
    assert!(acme.body.contains("id=\"block\""), "an operator gets the block button");
    // Its first call, to the Netherlands, is listed as first called lately (in its first week).
    let listed = acme.body.split("id=\"new-destinations\"").nth(1).unwrap_or_default();
    let listed = listed.split("</table>").next().unwrap_or_default();
    assert!(listed.contains("<td>NL</td>") && listed.contains("learned"), "{listed}");
    assert!(!listed.contains("TL"), "a denied call is not a destination called: {listed}");

    // The customer: its own account page without the block button, not the others'.
    let own = get(&app, "/ui/accounts/acme", Some(&f.acme)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(!own.body.contains("id=\"block\""));
    assert_eq!(get(&app, "/ui/accounts/globex", Some(&f.acme)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/ui/accounts/globex/daily", Some(&f.acme)).await.status, StatusCode::FORBIDDEN);
    let to_own = get(&app, "/ui/", Some(&f.acme)).await;
    assert_eq!(to_own.location.as_deref(), Some("/ui/accounts/acme"));
    let alerts = get(&app, "/ui/alerts", Some(&f.acme)).await;
    assert!(alerts.body.contains("acme"));
    let incidents = get(&app, "/ui/incidents", Some(&f.acme)).await;
    let id = incidents.body.split(">#").nth(1).and_then(|s| s.split('<').next()).unwrap().to_string();
    let csv = get(&app, &format!("/ui/incidents/{id}/csv"), Some(&f.acme)).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.contains("0067077001234"));
    // An integration token in the cookie is refused.
    assert_eq!(get(&app, "/ui/accounts/acme", Some(&f.integration)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_cookie_works_on_the_api_only_with_the_dashboards_header() {
    let f = fixture("cookie");
    let app = f.server.router();
    let block = |ui: bool, token: &str| {
        let mut req = Request::builder()
            .method("POST")
            .uri("/v1/accounts/acme/block")
            .header("cookie", format!("tollguard_token={token}"))
            .header("content-type", "application/json");
        if ui {
            req = req.header("x-tollguard-ui", "1");
        }
        req.body(Body::from(r#"{"reason":"test"}"#)).unwrap()
    };
    // Another site's form can send the cookie but not the header: no cross-site request forgery.
    assert_eq!(send(&app, block(false, &f.operator)).await.status, StatusCode::UNAUTHORIZED);
    // The customer's cookie has the customer's rights: no block.
    assert_eq!(send(&app, block(true, &f.acme)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&app, block(true, &f.operator)).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_feed_streams_each_stored_alert_to_those_who_may_see_it() {
    let f = fixture("feed");
    let app = f.server.router();
    let open = |token: &str| {
        let app = app.clone();
        let req = Request::builder().uri("/ui/feed").header("cookie", format!("tollguard_token={token}"));
        async move { app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap() }
    };
    let (op, other) = (open(&f.operator).await, open(&f.globex).await);
    assert_eq!(op.status(), StatusCode::OK);
    assert_eq!(op.headers()[header::CONTENT_TYPE], "text/event-stream");
    traffic(&app, &f).await;
    let mut body = op.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let f = body.frame().await.unwrap().unwrap();
            if let Some(d) = f.data_ref() {
                let s = String::from_utf8_lossy(d).to_string();
                if s.contains("event: alert") {
                    return s;
                }
            }
        }
    })
    .await
    .expect("no alert on the operator's feed within 10 s");
    assert!(
        frame.contains("default.new_critical_destination_night") && frame.contains("\"account\":\"acme\""),
        "{frame}"
    );
    // globex's customer gets nothing of acme's (only keep-alives, if anything, within a second).
    let mut other = other.into_body();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        loop {
            match other.frame().await {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        if String::from_utf8_lossy(d).contains("event: alert") {
                            return true;
                        }
                    }
                }
                _ => return false,
            }
        }
    })
    .await;
    assert_ne!(seen, Ok(true), "another customer saw acme's alert");
}

/// The accounts list over many accounts: ranked by the limit nearest its critical level, paged,
/// searched; times to the second in the account's zone; a block "for 1 hour" from the account
/// page runs by the service's clock, not the browser's.
#[tokio::test]
async fn the_lists_rank_and_page_accounts_and_times_read_in_the_accounts_zone() {
    let db = common::temp_dir("ui-lists").join("tollguard.db");
    let operator = create_token(&db, "noc", &Scope::Operator).unwrap();
    let integration = create_token(&db, "kamailio", &Scope::Integration).unwrap();
    // A stopped clock on a Tuesday morning in Amsterdam (09:00 +01:00).
    let start: jiff::Timestamp = "2026-01-13T08:00:00Z".parse().unwrap();
    let clock = tollguard_server::Clock::driven(start, 0);
    let opts = Options { database: db, clock, ..Options::default() };
    let server = Server::start(rater(), Policy::builtin(), opts).unwrap();
    let app = server.router();
    let call = |id: String, account: String, to: &str| {
        let body = json!({ "call_id": id, "account": account, "from": "210", "to": to });
        Request::builder()
            .method("POST")
            .uri("/v1/authorize")
            .header("authorization", format!("Bearer {integration}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    // 60 accounts with one ordinary call running each; co07 and co42 get an operator's limit of
    // 10 channels, then co07 has 9 running (90%: the highest), co42 5 (50%).
    for i in 0..60 {
        assert_eq!(
            send(&app, call(format!("a{i}"), format!("co{i:02}"), "0201234567")).await.status,
            StatusCode::OK
        );
    }
    for (account, n) in [("co07", 8), ("co42", 4)] {
        let limits = Request::builder()
            .method("PUT")
            .uri(format!("/v1/accounts/{account}/limits"))
            .header("authorization", format!("Bearer {operator}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"limits":[{"name":"noc.channels","metric":"concurrent","max":"10"}]}"#))
            .unwrap();
        let put = send(&app, limits).await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.body);
        for k in 0..n {
            send(&app, call(format!("{account}-{k}"), account.into(), "0612345678")).await;
        }
    }
    let usage = |body: &str, account: &str| {
        let row =
            body.split(&format!(">{account}</a>")).nth(1).unwrap_or_else(|| panic!("{account} not listed"));
        row.split("<td class=\"n\">").nth(2).and_then(|s| s.split('%').next()).unwrap().to_string()
    };
    let first = get(&app, "/ui/accounts", Some(&operator)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("Page 1 of 2"), "60 accounts, 50 a page");
    let order: Vec<&str> = first
        .body
        .split("<a href=\"&#x2f;ui&#x2f;accounts&#x2f;")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(&order[..2], ["co07", "co42"], "nearest a limit first: {order:?}");
    assert_eq!(usage(&first.body, "co07"), "90");
    let second = get(&app, "/ui/accounts?sort=account&page=2", Some(&operator)).await;
    assert!(second.body.contains(">co50</a>") && !second.body.contains(">co49</a>"), "by name, page 2");
    let found = get(&app, "/ui/accounts?q=CO4", Some(&operator)).await;
    assert!(found.body.contains(">co42</a>") && !found.body.contains(">co07</a>"));
    let overview = get(&app, "/ui/", Some(&operator)).await;
    assert!(overview.body.contains("Accounts<b>60</b>"), "every account counted");
    let burning = overview.body.split("Nearest their limits now").nth(1).unwrap();
    assert!(burning.find(">co07</a>").unwrap() < burning.find(">co42</a>").unwrap());

    // A block for 1 hour as the account page sends it: until 10:00 by the service's clock.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/accounts/co07/block")
        .header("cookie", format!("tollguard_token={operator}"))
        .header("x-tollguard-ui", "1")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"reason":"test","duration_s":3600}"#))
        .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::NO_CONTENT);
    let page = get(&app, "/ui/accounts/co07", Some(&operator)).await;
    let head = &page.body[page.body.find("<h1>").unwrap()..][..400];
    assert!(head.contains("2026-01-13 09:00:00 +01:00 (Europe&#x2f;Amsterdam)"), "the page's time: {head}");
    assert!(page.body.contains("<td>2026-01-13 10:00:00 +01:00</td>"), "the block's end: {}", page.body);
    assert!(!page.body.contains("T08:00:00"), "no raw RFC 3339 on the page");
    let both = Request::builder()
        .method("POST")
        .uri("/v1/accounts/co07/block")
        .header("authorization", format!("Bearer {operator}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"until":"2026-01-14T00:00:00Z","duration_s":60}"#))
        .unwrap();
    let refused = send(&app, both).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("not both"), "{}", refused.body);
}
