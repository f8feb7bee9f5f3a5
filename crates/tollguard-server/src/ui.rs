//! The dashboard, served by `tollguard serve` itself: server-rendered pages (minijinja), charts
//! as SVG (plotters), a live alert feed (server-sent events) and a few lines of JavaScript that
//! call the JSON API for actions (block, unblock, limits).
//!
//! Sign-in is with an API token: the sign-in form sets an HTTP-only, same-site cookie holding
//! it, and every page checks the token's scope as the API does. An operator sees everything; a
//! customer only its own account, alerts and incidents. The pages' actions call `/v1` with the
//! cookie and the `X-Tollguard-UI` header (see `auth`), so they obey the API's scope rules.

use crate::auth::{self, Scope};
use crate::{report, traffic, ApiError, AppState};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use tollguard_core::rater::Rater;
use tollguard_engine::{AccountGlance, AccountReport};

/// Accounts shown per page of the accounts list.
pub const PAGE: usize = 50;

fn env() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, src) in [
            ("base.html", include_str!("templates/ui/base.html")),
            ("login.html", include_str!("templates/ui/login.html")),
            ("overview.html", include_str!("templates/ui/overview.html")),
            ("accounts.html", include_str!("templates/ui/accounts.html")),
            ("account.html", include_str!("templates/ui/account.html")),
            ("alerts.html", include_str!("templates/ui/alerts.html")),
            ("incidents.html", include_str!("templates/ui/incidents.html")),
            ("_alerts.html", include_str!("templates/ui/_alerts.html")),
            ("_bars.html", include_str!("templates/ui/_bars.html")),
            ("_nav.html", include_str!("templates/ui/_nav.html")),
        ] {
            env.add_template(name, src).expect("dashboard templates parse");
        }
        env
    })
}

fn render(name: &str, ctx: Value) -> Response {
    match env()
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(format!("rendering {name}: {e:#}")).into_response(),
    }
}

/// The dashboard's routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/", get(overview))
        .route("/ui/accounts", get(accounts))
        .route("/ui/accounts/{account}", get(account))
        .route("/ui/accounts/{account}/daily", get(daily))
        .route("/ui/alerts", get(alerts))
        .route("/ui/incidents", get(incidents))
        .route("/ui/incidents/{id}", get(incident))
        .route("/ui/incidents/{id}/csv", get(incident_csv))
        .route("/ui/feed", get(feed))
}

/// A page's result: what it shows, or the response that stands in for it (sign-in, refusal).
type Shown<T> = Result<T, Box<Response>>;

/// Who is signed in, or the way to the sign-in page.
fn signed_in(s: &AppState, headers: &HeaderMap) -> Shown<(String, Scope)> {
    let back = || Box::new(Redirect::to("/ui/login").into_response());
    let token = auth::cookie_token(headers).ok_or_else(back)?;
    match auth::token_caller(s, &token) {
        Ok((_, Scope::Integration)) => {
            Err(Box::new(forbidden_page("an integration token cannot use the dashboard")))
        }
        Ok(c) => Ok(c),
        Err(_) => Err(back()),
    }
}

fn forbidden_page(why: &str) -> Response {
    let mut r = render("login.html", json!({ "error": why }));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

/// May `scope` see `account`?
fn may_see(scope: &Scope, account: &str) -> bool {
    match scope {
        Scope::Operator => true,
        Scope::Customer(own) => own == account,
        Scope::Integration => false,
    }
}

/// What every page's layout needs.
fn base(name: &str, scope: &Scope, page: &str) -> Value {
    let own = match scope {
        Scope::Customer(a) => Some(a.clone()),
        _ => None,
    };
    json!({ "who": name, "scope": scope.to_string(), "operator": *scope == Scope::Operator,
            "own_href": own.as_deref().map(|a| format!("/ui/accounts/{}", enc(a))), "own_account": own, "page": page })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

async fn login_page() -> Response {
    render("login.html", json!({}))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim().to_string();
    match auth::token_caller(&s, &token) {
        Ok((_, Scope::Integration)) => {
            forbidden_page("an integration token is for switches; sign in with an operator or customer token")
        }
        Ok((_, scope)) => {
            let to = match scope {
                Scope::Customer(a) => format!("/ui/accounts/{}", enc(&a)),
                _ => "/ui/".into(),
            };
            let secure = if s.opts.tls.is_some() { "; Secure" } else { "" };
            let cookie =
                format!("{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}", auth::COOKIE);
            (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, to)]).into_response()
        }
        Err(_) => {
            let mut r = render("login.html", json!({ "error": "unknown token" }));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

async fn logout() -> Response {
    let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::COOKIE);
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/ui/login".to_string())])
        .into_response()
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn money(units: i64) -> String {
    format!("{:.2}", Decimal::new(units, 4))
}

/// One account's row in the lists: the limit nearest its critical level first.
fn account_row(r: &AccountReport) -> Value {
    let mut limits: Vec<&tollguard_engine::LimitUsage> = r.limits.iter().collect();
    limits.sort_by_key(|l| std::cmp::Reverse(l.percent));
    let top = limits.first().map_or(0, |l| l.percent);
    json!({
        "account": r.account, "href": format!("/ui/accounts/{}", enc(&r.account)),
        "running": r.running_calls, "blocked": !r.blocks.is_empty(), "top": top,
        "limits": limits.iter().map(|l| bar(l)).collect::<Vec<_>>(),
    })
}

/// A limit as a bar: its use against the critical level, coloured by level.
fn bar(l: &tollguard_engine::LimitUsage) -> Value {
    let level = if l.percent >= 100 {
        "critical"
    } else if l.warning.as_ref().is_some_and(|w| {
        let (u, w) = (l.used.parse::<Decimal>().ok(), w.parse::<Decimal>().ok());
        u.zip(w).is_some_and(|(u, w)| u >= w)
    }) {
        "warning"
    } else {
        "ok"
    };
    json!({ "limit": l.limit, "extension": l.extension, "metric": l.metric, "window": l.window,
            "used": l.used, "max": l.max, "warning": l.warning, "percent": l.percent,
            "width": l.percent.clamp(0, 100), "level": level, "running": l.running_calls, "set_by": l.set_by })
}

/// Every account at a glance, now (names containing `needle`, lower case; all when empty).
/// The engine lock is taken for 64 accounts at a time, so that authorizations (the hot path)
/// wait for at most that many, however many accounts.
fn all_glances(s: &AppState, now: Timestamp, needle: &str) -> Vec<(String, AccountGlance)> {
    let names: Vec<String> = s
        .core
        .lock()
        .expect("engine lock")
        .engine
        .account_names()
        .filter(|a| needle.is_empty() || a.to_lowercase().contains(needle))
        .map(str::to_string)
        .collect();
    let mut glances = Vec::with_capacity(names.len());
    let mut names = names.into_iter();
    loop {
        let chunk: Vec<String> = names.by_ref().take(64).collect();
        if chunk.is_empty() {
            break;
        }
        let mut core = s.core.lock().expect("engine lock");
        glances.extend(chunk.into_iter().filter_map(|a| {
            let g = core.engine.account_glance(&a, now)?;
            Some((a, g))
        }));
    }
    glances
}

/// The full reports of a few accounts (the rows a page shows), in the order given.
fn reports_of(s: &AppState, now: Timestamp, names: &[&str]) -> Vec<AccountReport> {
    let mut core = s.core.lock().expect("engine lock");
    names.iter().filter_map(|a| core.engine.account_report(a, now)).collect()
}

/// For the operator's pages over all accounts: who is signed in, the time, and every account
/// whose name contains `needle` at a glance (off the async workers); a customer is sent to its
/// own account instead.
async fn every_account(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    needle: String,
) -> Shown<(String, Scope, Timestamp, Vec<(String, AccountGlance)>)> {
    let (name, scope) = signed_in(s, headers)?;
    if let Scope::Customer(own) = &scope {
        return Err(Box::new(Redirect::to(&format!("/ui/accounts/{}", enc(own))).into_response()));
    }
    let (st, now) = (s.clone(), s.now());
    let glances = tokio::task::spawn_blocking(move || all_glances(&st, now, &needle))
        .await
        .map_err(|e| Box::new(ApiError::internal(format!("listing accounts: {e}")).into_response()))?;
    Ok((name, scope, now, glances))
}

/// The rows of the accounts shown (full reports, built off the async workers).
async fn rows_of(s: &Arc<AppState>, now: Timestamp, shown: Vec<String>) -> Vec<Value> {
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = shown.iter().map(String::as_str).collect();
        reports_of(&st, now, &names).iter().map(account_row).collect()
    })
    .await
    .unwrap_or_default()
}

async fn overview(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, scope, now, mut glances) = match every_account(&s, &headers, String::new()).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (hours, per_second, running, currency) = {
        let core = s.core.lock().expect("engine lock");
        (
            core.traffic.last_hours(now, 24),
            core.traffic.per_second(now),
            core.engine.running_calls(),
            report::currency_of(core.engine.rater()),
        )
    };
    let blocked = glances.iter().filter(|(_, g)| g.blocked).count();
    let accounts = glances.len();
    glances.sort_by_key(|(_, g)| std::cmp::Reverse(g.top_percent));
    let burning = rows_of(&s, now, glances.into_iter().take(10).map(|(a, _)| a).collect()).await;
    let open = s.read(|r| r.incidents(None, Some("open"), 20)).await.unwrap_or_default();
    let recent = latest_alerts(&s, None, 20).await;
    let chart = overview_chart(&hours, &currency).unwrap_or_default();
    let this_hour = hours.last().cloned();
    render(
        "overview.html",
        merge(
            base(&name, &scope, "overview"),
            json!({
                "now": shown(now, &TimeZone::UTC), "currency": currency,
                "attempts_per_s": format!("{:.1}", per_second.0), "denied_per_s": format!("{:.1}", per_second.1),
                "running": running, "accounts": accounts, "blocked": blocked,
                "spend_hour": this_hour.as_ref().map(|h| money(h.spend)),
                "usual_hour": this_hour.and_then(|h| h.band).map(|b| format!("{} – {}", money(b.0), money(b.2))),
                "chart": chart,
                "burning": burning,
                "incidents": incident_rows(&open, &rater(&s)),
                "alerts": recent,
            }),
        ),
    )
}

/// The last 24 hours' spend against the same hours of the three weeks before.
fn overview_chart(hours: &[traffic::Hour], currency: &str) -> anyhow::Result<String> {
    let d = |u: i64| Decimal::new(u, 4);
    let spend: Vec<Decimal> = hours.iter().map(|h| d(h.spend)).collect();
    let band: Vec<(Decimal, Decimal)> =
        hours.iter().map(|h| h.band.map_or((Decimal::ZERO, Decimal::ZERO), |b| (d(b.0), d(b.2)))).collect();
    let first = hours.first().map_or(0, |h| (h.start.as_second().div_euclid(3600).rem_euclid(24)) as u32);
    report::hour_chart(&spend, &band, first, &format!("{currency} (UTC hours)"))
}

/// A time for people: `2026-01-17 23:05:12 +01:00`, to the second, in the zone given.
fn shown(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// An RFC 3339 time (as the API and the store write them) for people; as it is when it does
/// not read as one.
fn shown_str(t: &str, tz: &TimeZone) -> String {
    t.parse::<Timestamp>().map_or_else(|_| t.to_string(), |t| shown(t, tz))
}

/// The rater, for the accounts' zones.
fn rater(s: &AppState) -> Arc<Rater> {
    s.core.lock().expect("engine lock").engine.rater().clone()
}

/// Incidents for the lists.
fn incident_rows(incidents: &[tollguard_store::Incident], rater: &Rater) -> Vec<Value> {
    incidents.iter().map(|i| incident_row(i, rater)).collect()
}

/// An incident in the lists, its times in its account's zone.
fn incident_row(i: &tollguard_store::Incident, rater: &Rater) -> Value {
    let data: Value = serde_json::from_str(&i.data).unwrap_or_default();
    let opened = Timestamp::from_nanosecond(i.opened_ns as i128)
        .map(|t| shown(t, &rater.account(&i.account).tz))
        .unwrap_or_default();
    json!({ "id": i.id, "account": i.account, "state": i.state.replace('_', " "), "opened": opened,
            "href": format!("/ui/incidents/{}", i.id), "alerts": data["alerts"], "rule": data["first_alert"]["rule"],
            "cost": money(data["exposure_units"].as_i64().unwrap_or(0)), "denials": data["denials"] })
}

/// The newest `n` alerts, newest first.
async fn latest_alerts(s: &Arc<AppState>, account: Option<String>, n: u32) -> Vec<Value> {
    let rows = s.read(move |r| r.latest_alerts(account.as_deref(), n)).await.unwrap_or_default();
    rows.iter().map(|a| alert_row(a.id, &a.json)).collect()
}

fn alert_row(id: i64, json: &str) -> Value {
    let mut v: Value = serde_json::from_str(json).unwrap_or_default();
    v["id"] = json!(id);
    v["href"] = json!(format!("/ui/accounts/{}", enc(v["account"].as_str().unwrap_or(""))));
    v
}

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
}

async fn accounts(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let needle = q.q.clone().unwrap_or_default().to_lowercase();
    let (name, scope, now, mut glances) = match every_account(&s, &headers, needle.clone()).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let sort = q.sort.clone().unwrap_or_else(|| "usage".into());
    match sort.as_str() {
        "account" => glances.sort_by(|a, b| a.0.cmp(&b.0)),
        "running" => glances.sort_by_key(|(_, g)| std::cmp::Reverse(g.running_calls)),
        _ => glances.sort_by_key(|(_, g)| std::cmp::Reverse(g.top_percent)),
    }
    let total = glances.len();
    let pages = total.div_ceil(PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let names = glances.into_iter().skip((page - 1) * PAGE).take(PAGE).map(|(a, _)| a).collect();
    let shown = rows_of(&s, now, names).await;
    let link = |p: usize| format!("/ui/accounts?q={}&sort={}&page={p}", enc(&needle), enc(&sort));
    render(
        "accounts.html",
        merge(
            base(&name, &scope, "accounts"),
            json!({ "rows": shown, "q": needle, "sort": sort, "total": total, "page": page, "pages": pages,
                    "prev": (page > 1).then(|| link(page - 1)), "next": (page < pages).then(|| link(page + 1)) }),
        ),
    )
}

async fn account(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> Response {
    let (name, scope) = match signed_in(&s, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if !may_see(&scope, &account) {
        return forbidden_page("this account is not yours");
    }
    let now = s.now();
    let owner = if scope == Scope::Operator {
        tollguard_engine::LimitOwner::Operator
    } else {
        tollguard_engine::LimitOwner::Customer
    };
    let (report, running, own_limits, tz, currency) = {
        let mut core = s.core.lock().expect("engine lock");
        let tz = core.engine.rater().account(&account).tz.clone();
        let running: Vec<Value> = core
            .live
            .iter()
            .filter(|(_, l)| l.account == account)
            .map(|(id, l)| {
                json!({ "call_id": id, "attempted": shown(l.attempted, &tz),
                        "answered": l.answered.map(|a| shown(a, &tz)), "cap": l.cap })
            })
            .collect();
        let own: Vec<tollguard_engine::policy::LimitSpec> =
            core.engine.account_limits(&account, owner).iter().map(|l| l.spec.clone()).collect();
        let rater = core.engine.rater().clone();
        (core.engine.account_report(&account, now), running, own, tz, report::currency_of(&rater))
    };
    // Recent decisions, with each one's explanation.
    let (from, to) = (crate::ns(now - jiff::SignedDuration::from_hours(48)), crate::ns(now));
    crate::flush(&s).await;
    let a = account.clone();
    let decisions = s.read(move |r| r.decisions_of(&a, from, to)).await.unwrap_or_default();
    let calls: Vec<Value> = decisions
        .iter()
        .rev()
        .take(50)
        .map(|(_, j)| {
            let mut d: Value = serde_json::from_str(j).unwrap_or_default();
            if let Some(rate) = d["rate_per_minute_units"].as_i64() {
                d["rate"] = json!(money(rate));
            }
            if let Some(t) = d["time"].as_str() {
                d["time"] = json!(shown_str(t, &tz));
            }
            d
        })
        .collect();
    let a = account.clone();
    let incidents = s.read(move |r| r.incidents(Some(&a), None, 20)).await.unwrap_or_default();
    let today = tz.to_datetime(now).date();
    render(
        "account.html",
        merge(
            base(&name, &scope, "account"),
            json!({
                "account": account, "enc": enc(&account), "currency": currency, "now": shown(now, &tz), "zone": tz.iana_name(),
                "known": report.is_some(),
                "limits": report.as_ref().map(|r| r.limits.iter().map(bar).collect::<Vec<_>>()).unwrap_or_default(),
                "blocks": report.as_ref().map(|r| r.blocks.iter().map(|b| {
                    json!({ "extension": b.extension, "rule": b.rule, "until": b.until.as_deref().map(|u| shown_str(u, &tz)) })
                }).collect::<Vec<_>>()).unwrap_or_default(),
                "destinations_seen": report.as_ref().map_or(0, |r| r.destinations_seen),
                "new_destinations": report.as_ref().map(|r| r.new_destinations.iter().map(|d| json!({
                    "country": if d.country.is_empty() { "unknown country" } else { d.country.as_str() },
                    "number_type": if d.number_type == "any" { "" } else { d.number_type },
                    "first_call": shown_str(&d.first_call, &tz),
                    "status": match d.status {
                        "new" => "counted in the new destination's budget",
                        "allowed" => "allowed by an operator",
                        _ => "called in the account's first week: learned",
                    },
                    "new": d.status == "new",
                })).collect::<Vec<_>>()).unwrap_or_default(),
                "running": running,
                "own_limits": own_limits,
                "owner": if owner == tollguard_engine::LimitOwner::Operator { "operator" } else { "customer" },
                "calls": calls,
                "alerts": latest_alerts(&s, Some(account.clone()), 20).await,
                "incidents": incident_rows(&incidents, &rater(&s)),
                "today": today.to_string(),
                "yesterday": today.yesterday().map(|d| d.to_string()).unwrap_or_default(),
            }),
        ),
    )
}

#[derive(Deserialize)]
struct DailyQuery {
    date: Option<String>,
    format: Option<String>,
}

async fn daily(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<DailyQuery>,
) -> Response {
    let scope = match signed_in(&s, &headers) {
        Ok((_, scope)) => scope,
        Err(r) => return *r,
    };
    if !may_see(&scope, &account) {
        return forbidden_page("this account is not yours");
    }
    let now = s.now();
    let rater = s.core.lock().expect("engine lock").engine.rater().clone();
    let date = match q.date.as_deref() {
        None => rater.account(&account).tz.to_datetime(now).date(),
        Some(d) => match d.parse::<jiff::civil::Date>() {
            Ok(d) => d,
            Err(_) => {
                return ApiError::bad(format!("date: expected YYYY-MM-DD, found {d:?}")).into_response()
            }
        },
    };
    crate::flush(&s).await;
    let csv = q.format.as_deref() == Some("csv");
    let st = s.clone();
    let out = tokio::task::spawn_blocking(move || {
        let store = st.reader.lock().expect("reader lock");
        let r = report::daily_report(&store, &rater, &account, date, now)?;
        if csv {
            report::daily_csv(&r)
        } else {
            report::daily_html(&r)
        }
    })
    .await;
    match out {
        Ok(Ok(body)) if csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response(),
        Ok(Ok(body)) => Html(body).into_response(),
        Ok(Err(e)) if e.is::<report::Deleted>() => ApiError::gone(e.to_string()).into_response(),
        Ok(Err(e)) => ApiError::internal(format!("{e:#}")).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

async fn alerts(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, scope) = match signed_in(&s, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let account = match &scope {
        Scope::Customer(a) => Some(a.clone()),
        _ => None,
    };
    let rows = latest_alerts(&s, account, 200).await;
    render("alerts.html", merge(base(&name, &scope, "alerts"), json!({ "alerts": rows })))
}

async fn incidents(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (name, scope) = match signed_in(&s, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let account = match &scope {
        Scope::Customer(a) => Some(a.clone()),
        _ => None,
    };
    let rows = s.read(move |r| r.incidents(account.as_deref(), None, 200)).await.unwrap_or_default();
    render(
        "incidents.html",
        merge(base(&name, &scope, "incidents"), json!({ "incidents": incident_rows(&rows, &rater(&s)) })),
    )
}

/// The incident's report (timeline, every call, totals), for an incident the caller may see.
async fn incident_report(s: &Arc<AppState>, scope: &Scope, id: i64) -> Shown<report::IncidentReport> {
    let inc = s.read(move |r| r.incident(id)).await.map_err(|e| Box::new(e.into_response()))?;
    let Some(inc) = inc.filter(|i| may_see(scope, &i.account)) else {
        return Err(Box::new(ApiError::not_found(format!("no incident {id}")).into_response()));
    };
    crate::flush(s).await;
    let (st, now) = (s.clone(), s.now());
    let rater = s.core.lock().expect("engine lock").engine.rater().clone();
    let vat = s.opts.vat_percent;
    tokio::task::spawn_blocking(move || {
        let store = st.reader.lock().expect("reader lock");
        report::incident_report(&store, &rater, inc.id, now, vat, None)
    })
    .await
    .map_err(|e| Box::new(ApiError::internal(e.to_string()).into_response()))?
    .map_err(|e| match e.is::<report::Deleted>() {
        true => Box::new(ApiError::gone(e.to_string()).into_response()),
        false => Box::new(ApiError::internal(format!("{e:#}")).into_response()),
    })
}

async fn incident(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let (name, scope) = match signed_in(&s, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let r = match incident_report(&s, &scope, id).await {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let html = match report::incident_html(&r) {
        Ok(h) => h,
        Err(e) => return ApiError::internal(format!("{e:#}")).into_response(),
    };
    // The evidence pack as it prints, under the dashboard's navigation.
    let ctx = merge(base(&name, &scope, "incidents"), json!({ "csv": format!("/ui/incidents/{id}/csv") }));
    let nav = match env()
        .get_template("_nav.html")
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
    {
        Ok(n) => n,
        Err(e) => return ApiError::internal(format!("rendering the navigation: {e:#}")).into_response(),
    };
    // The report's own styles do not know the navigation's: bring them along.
    let style = "<style>nav.tg{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center;padding:.6rem 1rem;\
                 background:#1f2933;color:#fff;margin:-2rem -1rem 1rem}nav.tg a{color:#e6edf3;text-decoration:none}\
                 nav.tg a.on{border-bottom:2px solid #7fb3ff}nav.tg .brand{font-weight:700}nav.tg .me{margin-left:auto;\
                 display:flex;gap:.5rem;font-size:12.5px}nav.tg button{font:inherit;background:none;color:#e6edf3;\
                 border:1px solid #57606a;border-radius:4px}@media print{nav.tg{display:none}}</style>";
    Html(html.replacen("</head>", &format!("{style}</head>"), 1).replacen(
        "<body>",
        &format!("<body>\n{nav}"),
        1,
    ))
    .into_response()
}

async fn incident_csv(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let scope = match signed_in(&s, &headers) {
        Ok((_, scope)) => scope,
        Err(r) => return *r,
    };
    let r = match incident_report(&s, &scope, id).await {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match report::incident_csv(&r) {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"incident-{id}.csv\"")),
            ],
            csv,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("{e:#}")).into_response(),
    }
}

/// Alerts as they are stored, as server-sent events (`event: alert`, the alert's JSON with its
/// id); a customer gets only its own account's.
async fn feed(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let scope = match signed_in(&s, &headers) {
        Ok((_, scope)) => scope,
        Err(_) => return (StatusCode::UNAUTHORIZED, "not signed in").into_response(),
    };
    let rx = s.feed.subscribe();
    let stream = futures_util::stream::unfold((rx, scope), |(mut rx, scope)| async move {
        loop {
            match rx.recv().await {
                Ok(item) if may_see(&scope, &item.account) => {
                    let ev = SseEvent::default()
                        .event("alert")
                        .id(item.id.to_string())
                        .data(alert_row(item.id, &item.json).to_string());
                    return Some((Ok::<_, Infallible>(ev), (rx, scope)));
                }
                Ok(_) => continue,
                // Too slow a reader: tell it to reload rather than miss alerts silently.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let ev = SseEvent::default().event("lagged").data(n.to_string());
                    return Some((Ok(ev), (rx, scope)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
