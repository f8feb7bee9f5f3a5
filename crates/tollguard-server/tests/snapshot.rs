//! Snapshots of the rebuilt state: a server started from a snapshot and the log after it is the
//! same as one that read the whole log, and a snapshot that does not fit is not used.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollguard_engine::policy::Policy;
use tollguard_server::{create_token, Clock, Options, Scope, Server};
use tower::ServiceExt;

mod common;
use common::{call, rater};

/// `/metrics` as text, and the value of one of its lines.
async fn metric(app: &Router, name: &str) -> i64 {
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let line =
        text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
    line[name.len() + 1..].parse().unwrap()
}

const ACCOUNTS: [&str; 3] = ["acme", "beta", "gamma"];

/// A server on `db` whose clock stands at `at`, keeping snapshots or not.
fn server(db: &Path, at: Timestamp, snapshots: bool) -> (Server, Clock) {
    let clock = Clock::driven(at, 0);
    let opts = Options {
        database: db.to_path_buf(),
        clock: clock.clone(),
        // Written at start and at the stop only (the test's runs are short).
        snapshot_every: snapshots.then_some(Duration::from_secs(3600)),
        ..Options::default()
    };
    (Server::start(rater(), Policy::builtin(), opts).unwrap(), clock)
}

/// `hours` of traffic from `from`: calls of three accounts (some to East Timor, which the
/// default rules care about), answered and ended or left running, records for some, an
/// operator's limits and a block; the clock moves and the server ticks as it goes.
async fn traffic(s: &Server, clock: &Clock, token: &str, from: Timestamp, hours: i64, tag: &str) {
    let app = s.router();
    let mut now = from;
    for i in 0..hours * 12 {
        now = from + SignedDuration::from_mins(5 * i);
        clock.set(now, 0);
        s.tick(now);
        let account = ACCOUNTS[(i % 3) as usize];
        let id = format!("{tag}-{i}");
        let to = match i % 7 {
            0 => "0067077123456",
            1 | 2 => "0612345678",
            3 => "001212555123",
            _ => "0201234567",
        };
        let body = json!({"call_id": id, "account": account, "extension": format!("2{:02}", i % 5), "from": "+31201234567", "to": to});
        let (st, d) = call(&app, "POST", "/v1/authorize", token, Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{d}");
        if d["allow"] != true || i % 11 == 10 {
            continue; // denied, or left running
        }
        call(&app, "POST", &format!("/v1/calls/{id}/answer"), token, Some(json!({}))).await;
        let talk = 30 + (i * 37) % 240;
        if i % 4 == 0 {
            // Ended by its record (a minute after the end).
            let start = now.to_string();
            let end = (now + SignedDuration::from_secs(talk)).to_string();
            let record = json!({"call_id": id, "account": account, "extension": "201", "to": to,
                                "start": start, "answer": start, "end": end, "billsec": talk});
            clock.set(now + SignedDuration::from_secs(talk + 60), 0);
            let (st, v) = call(&app, "POST", "/v1/cdrs", token, Some(json!([record]))).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        } else {
            clock.set(now + SignedDuration::from_secs(talk), 0);
            call(&app, "POST", &format!("/v1/calls/{id}/end"), token, Some(json!({"billsec": talk}))).await;
        }
        if i == 30 {
            let limits = json!({"limits": [{"name": format!("noc.{tag}"), "metric": "spend", "window": "day", "max": "3.00"}]});
            let (st, v) = call(&app, "PUT", "/v1/accounts/beta/limits", token, Some(limits)).await;
            assert!(st.is_success(), "{st} {v}");
        }
        if i == 45 {
            let (st, v) = call(
                &app,
                "POST",
                "/v1/accounts/gamma/block",
                token,
                Some(json!({"duration_s": 7200, "reason": "check"})),
            )
            .await;
            assert!(st.is_success(), "{st} {v}");
        }
    }
    s.flush().await;
    clock.set(now + SignedDuration::from_mins(5), 0);
}

/// What a server says of every account, and what it decides for a few more calls.
async fn observe(s: &Server, token: &str, at: Timestamp) -> Vec<Value> {
    let app = s.router();
    let mut seen = vec![];
    for a in ACCOUNTS {
        let (st, v) = call(&app, "GET", &format!("/v1/accounts/{a}"), token, None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        seen.push(v);
    }
    for (k, a) in ACCOUNTS.iter().enumerate() {
        for to in ["0067077999000", "0201234567"] {
            let body = json!({"call_id": format!("probe-{k}-{to}"), "account": a, "from": "+31201234567", "to": to, "time": at.to_string()});
            let (_, mut d) = call(&app, "POST", "/v1/authorize", token, Some(body)).await;
            d.as_object_mut().map(|o| o.remove("call_id"));
            seen.push(d);
        }
    }
    seen
}

/// The built-in policy with one limit's maximum changed: of the same shape, so only the
/// fingerprint tells the two apart.
fn other_policy() -> Policy {
    let mut p = Policy::builtin();
    p.limits[0].max += 10_000;
    p
}

fn copy_db(from: &Path, to_dir: &Path) -> PathBuf {
    std::fs::create_dir_all(to_dir).unwrap();
    let to = to_dir.join("tollguard.db");
    for ext in ["", "-wal", "-shm", ".snapshot"] {
        let f = PathBuf::from(format!("{}{ext}", from.display()));
        if f.exists() {
            std::fs::copy(&f, format!("{}{ext}", to.display())).unwrap();
        }
    }
    to
}

fn snapshot_of(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.snapshot", db.display()))
}

#[tokio::test]
async fn a_start_from_a_snapshot_and_the_log_after_it_equals_a_start_from_the_whole_log() {
    let dir = common::temp_dir("snapshot-tail");
    let db = dir.join("a").join("tollguard.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-12T06:00:00Z".parse().unwrap();

    // Two days of traffic, a stop (the snapshot is written), a day more after a restart.
    let (s, clock) = server(&db, t0, true);
    assert_eq!(s.state().from_snapshot, None, "no snapshot yet");
    traffic(&s, &clock, &token, t0, 48, "one").await;
    drop(s);
    let first = std::fs::read(snapshot_of(&db)).expect("a snapshot written at the stop");
    let t1 = t0 + SignedDuration::from_hours(49);
    let (s, clock) = server(&db, t1, true);
    let through = s.state().from_snapshot.expect("started from the snapshot");
    assert!(through > 500, "{through}");
    traffic(&s, &clock, &token, t1, 24, "two").await;
    drop(s);
    let t2 = t1 + SignedDuration::from_hours(25);

    // The first snapshot and the day after it, against the whole log read again.
    std::fs::write(snapshot_of(&db), &first).unwrap();
    let tail = copy_db(&db, &dir.join("tail"));
    let whole = copy_db(&db, &dir.join("whole"));
    std::fs::remove_file(snapshot_of(&whole)).unwrap();
    let (a, _) = server(&tail, t2, true);
    assert_eq!(a.state().from_snapshot, Some(through), "the older snapshot, then the log after it");
    let (b, _) = server(&whole, t2, false);
    assert_eq!(b.state().from_snapshot, None);
    assert_eq!(a.state().rebuilt_events, b.state().rebuilt_events);
    let (seen_a, seen_b) = (observe(&a, &token, t2).await, observe(&b, &token, t2).await);
    assert_eq!(seen_a, seen_b);
    // The traffic reached what the snapshot carries: spend, a limit set at run time, a block,
    // calls still running, decisions both ways.
    let text = serde_json::to_string(&seen_a).unwrap();
    // (noc.two replaced noc.one; the operator's block of the first day has run out.)
    for what in ["noc.two", "\"blocks\":[{", "\"allow\":false", "\"allow\":true"] {
        assert!(text.contains(what), "no {what} in {text}");
    }
    assert!(seen_a[..3].iter().any(|v| v["running_calls"].as_u64() > Some(0)), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_snapshot_that_does_not_fit_is_not_used() {
    let dir = common::temp_dir("snapshot-refused");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-12T06:00:00Z".parse().unwrap();
    let (s, clock) = server(&db, t0, true);
    traffic(&s, &clock, &token, t0, 12, "x").await;
    drop(s);
    let good = std::fs::read(snapshot_of(&db)).unwrap();
    let t1 = t0 + SignedDuration::from_hours(13);
    // (Each start below on a copy: what `observe` asks is logged too.)
    let (s, _) = server(&copy_db(&db, &dir.join("good")), t1, true);
    let through = s.state().from_snapshot.expect("a good snapshot is used");
    let expected = observe(&s, &token, t1).await;
    drop(s);

    // Damaged: one byte changed at the end.
    let mut damaged = good.clone();
    *damaged.last_mut().unwrap() ^= 1;
    for (what, bytes, policy) in [
        ("damaged", damaged, Policy::builtin()),
        ("another policy", good.clone(), other_policy()),
        ("cut short", good[..good.len() / 2].to_vec(), Policy::builtin()),
    ] {
        let copy = copy_db(&db, &dir.join(what.replace(' ', "-")));
        std::fs::write(snapshot_of(&copy), &bytes).unwrap();
        let opts = Options { database: copy.clone(), clock: Clock::driven(t1, 0), ..Options::default() };
        let s = Server::start(rater(), policy.clone(), opts).unwrap();
        assert_eq!(s.state().from_snapshot, None, "{what}: read the whole log instead");
        if what == "damaged" {
            assert_eq!(observe(&s, &token, t1).await, expected, "{what}: the same state from the log");
        }
        drop(s);
        // And the stop wrote a good one for next time.
        let opts = Options { database: copy, clock: Clock::driven(t1, 0), ..Options::default() };
        let s = Server::start(rater(), policy, opts).unwrap();
        assert!(s.state().from_snapshot.is_some(), "{what}: rewritten at the stop");
    }

    // Another database under the same snapshot: its log has other events at that position.
    let other = dir.join("other").join("tollguard.db");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    let other_token = create_token(&other, "noc", &Scope::Operator).unwrap();
    let (s, clock) = server(&other, t0, false);
    traffic(&s, &clock, &other_token, t0 + SignedDuration::from_mins(1), 12, "y").await;
    drop(s);
    std::fs::write(snapshot_of(&other), &good).unwrap();
    let (s, _) = server(&other, t1, true);
    assert_eq!(s.state().from_snapshot, None, "another log: not used");
    assert!(through > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn after_a_reload_the_snapshot_follows_the_new_configuration() {
    let dir = common::temp_dir("snapshot-reload");
    let db = dir.join("a").join("tollguard.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-12T06:00:00Z".parse().unwrap();
    let (s, clock) = server(&db, t0, true);
    traffic(&s, &clock, &token, t0, 6, "r").await;
    s.set_reloader(Box::new(|| Ok((rater(), other_policy()))));
    s.reload().await.unwrap();
    drop(s);
    let t1 = t0 + SignedDuration::from_hours(7);
    let start = |db: &Path, policy: Policy, snapshots: bool| {
        let opts = Options {
            database: db.to_path_buf(),
            clock: Clock::driven(t1, 0),
            snapshot_every: snapshots.then_some(Duration::from_secs(3600)),
            ..Options::default()
        };
        Server::start(rater(), policy, opts).unwrap()
    };
    // The stop wrote the state for the reloaded configuration: a start with it uses the file
    // and sees what a start reading the whole log with it sees.
    let (with, whole) = (copy_db(&db, &dir.join("with")), copy_db(&db, &dir.join("whole")));
    let a = start(&with, other_policy(), true);
    assert!(a.state().from_snapshot.is_some(), "written with the new configuration");
    let b = start(&whole, other_policy(), false);
    assert_eq!(observe(&a, &token, t1).await, observe(&b, &token, t1).await);
    drop((a, b));
    // A start with the old configuration does not use it.
    let s = start(&db, Policy::builtin(), true);
    assert_eq!(s.state().from_snapshot, None, "the snapshot is for the reloaded configuration");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A crash (no stop): the start uses the snapshot the thread wrote on its own, and the log
/// after it.
#[tokio::test]
async fn after_a_crash_the_last_periodic_snapshot_and_the_log_after_it_are_read() {
    let dir = common::temp_dir("snapshot-crash");
    let db = dir.join("a").join("tollguard.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-12T06:00:00Z".parse().unwrap();
    let clock = Clock::driven(t0, 0);
    let opts = Options {
        database: db.clone(),
        clock: clock.clone(),
        snapshot_every: Some(Duration::from_millis(300)),
        ..Options::default()
    };
    let s = Server::start(rater(), Policy::builtin(), opts).unwrap();
    traffic(&s, &clock, &token, t0, 12, "p").await;
    // The thread writes on its own (the log moved since the start's empty one).
    let snap = snapshot_of(&db);
    let mut waited = 0;
    while !snap.exists() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let periodic = std::fs::read(&snap).expect("a snapshot written without a stop");
    let app = s.router();
    assert!(metric(&app, "tollguard_snapshot_written_timestamp_seconds").await > 1_700_000_000);
    assert_eq!(metric(&app, "tollguard_snapshot_failures_total").await, 0);
    traffic(&s, &clock, &token, t0 + SignedDuration::from_hours(13), 6, "q").await;
    // The crash: the database as the writer left it, and the periodic snapshot, not the server's
    // stop.
    let crashed = copy_db(&db, &dir.join("crashed"));
    std::fs::write(snapshot_of(&crashed), &periodic).unwrap();
    std::mem::forget(s);
    let whole = copy_db(&crashed, &dir.join("whole"));
    std::fs::remove_file(snapshot_of(&whole)).unwrap();
    let t1 = t0 + SignedDuration::from_hours(20);
    let (a, _) = server(&crashed, t1, true);
    let through = a.state().from_snapshot.expect("the periodic snapshot is used");
    assert!(through > 0);
    let (b, _) = server(&whole, t1, false);
    assert!(b.state().rebuilt_events > through as u64 + 50, "the log went on after the snapshot");
    assert_eq!(a.state().rebuilt_events, b.state().rebuilt_events);
    assert_eq!(observe(&a, &token, t1).await, observe(&b, &token, t1).await);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A snapshot that cannot be written is counted and said; serving goes on.
#[tokio::test]
async fn a_snapshot_that_cannot_be_written_is_counted() {
    let dir = common::temp_dir("snapshot-unwritable");
    let db = dir.join("tollguard.db");
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    // Its temporary file's name is taken by a folder.
    std::fs::create_dir_all(dir.join("tollguard.db.snapshot.tmp")).unwrap();
    let t0: Timestamp = "2026-01-12T06:00:00Z".parse().unwrap();
    let clock = Clock::driven(t0, 0);
    let opts = Options {
        database: db.clone(),
        clock: clock.clone(),
        snapshot_every: Some(Duration::from_millis(100)),
        ..Options::default()
    };
    let s = Server::start(rater(), Policy::builtin(), opts).unwrap();
    traffic(&s, &clock, &token, t0, 2, "u").await;
    let app = s.router();
    let mut waited = 0;
    while metric(&app, "tollguard_snapshot_failures_total").await == 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(metric(&app, "tollguard_snapshot_failures_total").await > 0);
    let (st, _) = call(&app, "GET", "/v1/accounts/acme", &token, None).await;
    assert_eq!(st, StatusCode::OK);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Before a change of configuration (or an upgrade), `tollguard snapshot` prepares the next
/// start while the service runs: the start with the new configuration uses it and the log after
/// it, and sees what a start reading the whole log sees.
#[tokio::test]
async fn a_prepared_snapshot_serves_the_first_start_with_the_new_configuration() {
    let dir = common::temp_dir("snapshot-next");
    let db = dir.join("a").join("tollguard.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let token = create_token(&db, "noc", &Scope::Operator).unwrap();
    let t0: Timestamp = "2026-01-12T06:00:00Z".parse().unwrap();
    let (s, clock) = server(&db, t0, true);
    traffic(&s, &clock, &token, t0, 8, "m").await;
    // Prepared beside the running service, which goes on taking traffic, then stops (writing its
    // own snapshot, for the old configuration).
    let opts = Options { database: db.clone(), ..Options::default() };
    let (through, size) = tollguard_server::prepare_snapshot(rater(), other_policy(), &opts).unwrap();
    assert!(through > 0 && size > 0);
    let next = PathBuf::from(format!("{}.snapshot.next", db.display()));
    assert!(next.exists());
    traffic(&s, &clock, &token, t0 + SignedDuration::from_hours(9), 4, "n").await;
    drop(s);
    let t1 = t0 + SignedDuration::from_hours(14);
    let whole = copy_db(&db, &dir.join("whole"));
    std::fs::remove_file(snapshot_of(&whole)).unwrap();
    let start = |db: &Path, snapshots: bool| {
        let opts = Options {
            database: db.to_path_buf(),
            clock: Clock::driven(t1, 0),
            snapshot_every: snapshots.then_some(Duration::from_secs(3600)),
            ..Options::default()
        };
        Server::start(rater(), other_policy(), opts).unwrap()
    };
    let a = start(&db, true);
    assert_eq!(a.state().from_snapshot, Some(through), "the prepared snapshot, then the log after it");
    let b = start(&whole, false);
    assert_eq!(observe(&a, &token, t1).await, observe(&b, &token, t1).await);
    drop((a, b));
    // Written as the service's own, and the prepared one let go.
    assert!(!next.exists());
    let c = start(&db, true);
    let own = c.state().from_snapshot.expect("the service's own");
    assert!(own > through);
    drop(c);
    // Prepared again with nothing logged since: it fits, but the service's own is as late; the
    // start uses its own and lets the prepared one go.
    assert_eq!(tollguard_server::prepare_snapshot(rater(), other_policy(), &opts).unwrap().0, own);
    assert!(next.exists());
    let d = start(&db, true);
    assert_eq!(d.state().from_snapshot, Some(own));
    assert!(!next.exists());
    drop(d);
    // Not for a database that is not there, nor with snapshots off.
    let missing = Options { database: dir.join("missing.db"), ..Options::default() };
    let e = tollguard_server::prepare_snapshot(rater(), other_policy(), &missing).unwrap_err();
    assert!(format!("{e:#}").contains("no such database"), "{e:#}");
    assert!(!dir.join("missing.db").exists());
    let off = Options { database: db.clone(), snapshot_every: None, ..Options::default() };
    let e = tollguard_server::prepare_snapshot(rater(), other_policy(), &off).unwrap_err();
    assert!(format!("{e:#}").contains("snapshot_every is off"), "{e:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
