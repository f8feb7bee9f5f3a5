//! `tollguard demo`: the live service with its dashboard on simulated traffic, no setup needed.
//!
//! 1. A temporary folder gets the simulator's rate deck and configuration and an SQLite store.
//! 2. Three weeks of ordinary traffic of `--accounts` simulated companies are handed to the
//!    server as call records, each hour at its own time (the server's clock is driven), so the
//!    engine learns baselines and destinations as it would have.
//! 3. Every account gets the 2011 customer's limit (EUR 500 a day) and a concurrency limit, set
//!    by the operator through the API.
//! 4. The clock then runs `--speed` times faster from a Saturday evening, the server listens, and
//!    the rest of the weekend's traffic is played through the API (authorize, answer, end), with
//!    a 2011-style attack on one account: one extension, parallel long calls to East Timor (+670),
//!    redialled as soon as each ends, for as long as it is let through.
//!
//! The dashboard's address and two tokens (operator, and the attacked company's customer token)
//! are printed; `--info-file` writes them as JSON for scripts.

use crate::rate::setup;
use crate::InputArgs;
use anyhow::{anyhow, bail, Context, Result};
use axum::body::Body;
use axum::http::Request;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollguard_core::cdr::Cdr;
use tollguard_server::{Clock, Scope, Server};
use tower::ServiceExt as _;

/// Arguments of `tollguard demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Address the dashboard and API listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How many times faster than real time the weekend plays (60: an hour a minute).
    #[arg(long, default_value_t = 60)]
    speed: u32,
    /// Simulated companies.
    #[arg(long, default_value_t = 40)]
    accounts: usize,
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Real seconds after the start at which the attack begins.
    #[arg(long, default_value_t = 30)]
    attack_after: u64,
    /// Keep the store and configuration in this folder (default: a temporary one, removed at exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the address, tokens and attacked account here as JSON.
    #[arg(long)]
    info_file: Option<PathBuf>,
    /// Stop after this many real seconds (default: at Ctrl-C).
    #[arg(long)]
    exit_after: Option<u64>,
}

/// The account the attack runs on, and its extension.
const VICTIM: &str = "acct007";
const VICTIM_EXT: &str = "2011";
/// Channels the attackers use at once.
const CHANNELS: u32 = 6;

pub fn run(a: DemoArgs) -> Result<ExitCode> {
    if a.speed == 0 {
        bail!("--speed must be at least 1");
    }
    if a.accounts < 8 {
        bail!("--accounts must be at least 8 (the attack runs on {VICTIM})");
    }
    let (dir, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("tollguard-demo-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = demo(&a, &dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The simulated weeks: three full weeks from a Monday; the live part starts on the third
/// Saturday at 21:30 local time.
fn traffic(a: &DemoArgs, tz: &jiff::tz::TimeZone) -> Result<(Vec<Cdr>, Timestamp)> {
    let today = tz.to_datetime(Timestamp::now()).date();
    // The Monday three weeks before this one: the live part is last Saturday evening.
    let monday = today
        .checked_sub(jiff::Span::new().days(today.weekday().to_monday_zero_offset() as i64 + 21))
        .context("dates")?;
    let cfg = tollguard_sim::SimConfig {
        seed: a.seed,
        accounts: a.accounts,
        days: 21,
        start: monday,
        scenarios: vec![],
    };
    let mut csv = Vec::new();
    tollguard_sim::simulate(&cfg, &mut csv, std::io::sink()).context("simulating traffic")?;
    let options = tollguard_ingest::ReadOptions { tz: tz.clone(), generic: None };
    let mut reader = tollguard_ingest::from_reader(
        tollguard_ingest::Format::Asterisk,
        Arc::from("simulated Master.csv"),
        Box::new(std::io::Cursor::new(csv)),
        &options,
    )?;
    let mut cdrs = vec![];
    let mut c = Cdr::default();
    while reader.read_into(&mut c)? {
        cdrs.push(c.clone());
    }
    let saturday = monday.checked_add(jiff::Span::new().days(19)).context("dates")?;
    let t0 = tz.to_ambiguous_timestamp(saturday.at(21, 30, 0, 0)).compatible()?;
    Ok((cdrs, t0))
}

/// A request through the server's own router (the same handlers the listener serves).
async fn call(app: &axum::Router, method: &str, uri: &str, token: &str, body: Value) -> Result<(u16, Value)> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))?;
    let resp = app.clone().oneshot(req).await.map_err(|e| anyhow!("{uri}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// What the live part does next.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Ask for an ordinary call (index into the calls).
    Attempt(usize),
    /// The attackers dial on a channel.
    Attack(u32),
    Answer(String),
    End(String, u32),
}

fn demo(a: &DemoArgs, dir: &std::path::Path) -> Result<ExitCode> {
    std::fs::write(dir.join("rates.csv"), tollguard_sim::DECK_CSV)?;
    std::fs::write(dir.join("tollguard.toml"), tollguard_sim::CONFIG_TOML)?;
    let input = InputArgs {
        cdr: vec![],
        format: tollguard_ingest::Format::Asterisk,
        rates: vec![],
        cgrates_plan: None,
        config: Some(dir.join("tollguard.toml")),
        tz: None,
        country: None,
    };
    let setup = setup(&input)?;
    let tz = setup.rater.account(VICTIM).tz.clone();
    eprintln!("tollguard demo: simulating three weeks of {} companies ...", a.accounts);
    let (cdrs, t0) = traffic(a, &tz)?;
    let (history, live): (Vec<Cdr>, Vec<Cdr>) = cdrs.into_iter().partition(|c| c.start < t0);

    let mut options = setup.server.options.clone();
    options.database = dir.join("tollguard.db");
    let _ = std::fs::remove_file(&options.database);
    // Every run starts from an empty store: a snapshot would never be read.
    options.snapshot_every = None;
    options.tick = std::time::Duration::from_millis(250);
    let first = history.iter().map(|c| c.start).min().unwrap_or(t0);
    options.clock = Clock::driven(first, 0);
    let clock = options.clock.clone();
    let db = options.database.clone();
    let server = Server::start(Arc::new(setup.rater), setup.policy, options)?;
    let operator = tollguard_server::create_token(&db, "demo operator", &Scope::Operator)?;
    let customer = tollguard_server::create_token(&db, "demo customer", &Scope::Customer(VICTIM.into()))?;
    let state = server.state();
    let app = server.router();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // History, an hour at a time at the end of that hour.
        eprintln!("tollguard demo: {} calls of history handed to the server at their own times ...", history.len());
        let mut history = history;
        history.sort_by_key(|c| c.end.unwrap_or(c.start));
        let mut i = 0;
        while i < history.len() {
            let hour_end = Timestamp::from_second(
                (history[i].end.unwrap_or(history[i].start).as_second().div_euclid(3600) + 1) * 3600,
            )?;
            let j = i + history[i..].iter().take_while(|c| c.end.unwrap_or(c.start) < hour_end).count();
            clock.set(hour_end.min(t0), 0);
            state.take_records(history[i..j].to_vec()).await?;
            server.tick(hour_end.min(t0));
            i = j;
        }
        // The limit the 2011 customer asked for, and a concurrency limit, for every account.
        for n in 1..=a.accounts {
            let account = format!("acct{n:03}");
            let limits = json!({ "limits": [
                { "name": "eur_500_a_day", "metric": "spend", "window": "day", "max": "500", "warning_percent": 80 },
                { "name": "concurrent_calls", "metric": "concurrent", "max": "12" },
            ]});
            let (status, body) = call(&app, "PUT", &format!("/v1/accounts/{account}/limits"), &operator, limits).await?;
            if status >= 300 {
                bail!("setting the limits of {account}: {status} {body}");
            }
        }

        clock.set(t0, a.speed);
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        let attack_at = t0 + SignedDuration::from_secs((a.attack_after * a.speed as u64) as i64);
        println!("tollguard demo: dashboard {url}/ui/login");
        println!("  operator token:  {operator}");
        println!("  customer token ({VICTIM}):  {customer}");
        println!(
            "  simulated time from {} ({}), {}x; the attack on {VICTIM} starts in {} s; Ctrl-C stops",
            tz.to_datetime(t0).strftime("%a %Y-%m-%d %H:%M"),
            tz.iana_name().unwrap_or("local"),
            a.speed,
            a.attack_after
        );
        if let Some(f) = &a.info_file {
            let info = json!({ "url": url, "operator_token": operator, "customer_token": customer,
                               "attacked_account": VICTIM, "attack_at": attack_at.to_string(), "speed": a.speed });
            std::fs::write(f, info.to_string()).with_context(|| format!("cannot write {}", f.display()))?;
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(listener, async move {
            let _ = stop_rx.await;
        }));
        let played = play(&app, &operator, &clock, &live, t0, attack_at, a.speed);
        let stop = async {
            match a.exit_after {
                Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        tokio::select! {
            r = played => r?,
            _ = stop => {},
        }
        eprintln!("tollguard demo: stopping");
        let _ = stop_tx.send(());
        serving.await??;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Plays the weekend through the API as the clock reaches each step.
async fn play(
    app: &axum::Router,
    token: &str,
    clock: &Clock,
    live: &[Cdr],
    t0: Timestamp,
    attack_at: Timestamp,
    speed: u32,
) -> Result<()> {
    let mut due: BinaryHeap<Reverse<(Timestamp, Step)>> = BinaryHeap::new();
    for (i, c) in live.iter().enumerate() {
        due.push(Reverse((c.start, Step::Attempt(i))));
    }
    for ch in 0..CHANNELS {
        due.push(Reverse((attack_at + SignedDuration::from_secs(ch as i64 * 40), Step::Attack(ch))));
    }
    let mut attack_calls = 0u64;
    let end_of_play = t0 + SignedDuration::from_hours(26);
    while let Some(Reverse((at, step))) = due.pop() {
        if at > end_of_play {
            break;
        }
        let now = clock.now();
        if at > now {
            let wait = (at.duration_since(now).as_secs_f64() / speed as f64).max(0.0);
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        }
        match step {
            Step::Attempt(i) => {
                let c = &live[i];
                let body = json!({ "call_id": c.call_id, "account": c.account, "extension": c.source,
                                   "from": c.source, "to": c.dialled, "trunk": c.dst_channel });
                let (_, d) = call(app, "POST", "/v1/authorize", token, body).await?;
                if d["allow"] != true {
                    continue;
                }
                let ring = c.answer.map_or(SignedDuration::ZERO, |an| an.duration_since(c.start));
                let talk = match d["max_duration_s"].as_u64() {
                    Some(cap) => c.billsec.min(cap as u32),
                    None => c.billsec,
                };
                if c.billsec > 0 {
                    due.push(Reverse((c.start + ring, Step::Answer(c.call_id.clone()))));
                }
                let end = c.start + ring + SignedDuration::from_secs(talk as i64);
                due.push(Reverse((end, Step::End(c.call_id.clone(), talk))));
            }
            Step::Attack(ch) => {
                attack_calls += 1;
                let call_id = format!("attack-{ch}-{attack_calls}");
                // East Timor mobile numbers, as in 2011.
                let to =
                    format!("00670{}", 77_000_000 + (attack_calls * 7_919 + ch as u64 * 104_729) % 1_000_000);
                let body = json!({ "call_id": call_id, "account": VICTIM, "extension": VICTIM_EXT,
                                   "from": VICTIM_EXT, "to": to, "trunk": "SIP/carrier" });
                let (_, d) = call(app, "POST", "/v1/authorize", token, body).await?;
                if d["allow"] != true {
                    // Refused: the attackers try again a few minutes later.
                    due.push(Reverse((at + SignedDuration::from_mins(3), Step::Attack(ch))));
                    continue;
                }
                // 30 to 58 minutes, cut short by a cap.
                let want = 1_800 + (attack_calls * 337 % 1_700) as u32;
                let talk = d["max_duration_s"].as_u64().map_or(want, |cap| want.min(cap as u32));
                let answered = at + SignedDuration::from_secs(6);
                due.push(Reverse((answered, Step::Answer(call_id.clone()))));
                let end = answered + SignedDuration::from_secs(talk as i64);
                due.push(Reverse((end, Step::End(call_id, talk))));
                due.push(Reverse((end + SignedDuration::from_secs(20), Step::Attack(ch))));
            }
            Step::Answer(id) => {
                call(app, "POST", &format!("/v1/calls/{id}/answer"), token, json!({})).await?;
            }
            Step::End(id, billsec) => {
                let disposition = if billsec > 0 { "ANSWERED" } else { "NO ANSWER" };
                let body = json!({ "billsec": billsec, "disposition": disposition });
                call(app, "POST", &format!("/v1/calls/{id}/end"), token, body).await?;
            }
        }
    }
    // The weekend is over: the service keeps running until stopped.
    std::future::pending::<()>().await;
    Ok(())
}
