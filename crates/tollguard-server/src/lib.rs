//! # tollguard-server
//!
//! The live service: the engine behind an HTTP API (axum), with the wall clock, embedded SQLite
//! persistence and bearer tokens. See `docs/api.md`.
//!
//! - The hot path (`POST /v1/authorize`) takes the engine's lock, decides, and hands what is to
//!   be stored to a writer thread: no database round trip.
//! - Call records (`POST /v1/cdrs`) are stored before the answer (idempotent on the call id):
//!   a record acknowledged is never lost, and one sent twice is counted once.
//! - Everything the engine was told is appended to the event log; on start the engine is
//!   rebuilt by handling the log again (ticks at its deadlines in between), so counters,
//!   baselines, destinations seen and blocks survive a restart or a crash.

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tollguard_core::rater::Rater;
use tollguard_engine::policy::Policy;
use tollguard_engine::{Attempt, Command, Decision, Effect, Engine, Event, Severity, Unblocker};
use tollguard_store::Store;

mod auth;
mod daily;
pub mod email;
mod incident;
mod records;
pub mod report;
pub mod retention;
mod snapshot;
/// What the integration tests share (a rater, a temporary folder), for the unit tests too.
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;
pub mod tls;
mod traffic;
mod ui;
mod webhook;

pub use webhook::{signature as webhook_signature, Webhook};

pub use auth::{create_token, hash_token, list_tokens, revoke_tokens, Scope, TOKEN_RECHECK};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The SQLite database file (created if missing).
    pub database: PathBuf,
    /// Time between ticks.
    pub tick: Duration,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// A call whose end never arrives (a lost BYE) is closed this long after it was answered
    /// (or attempted, if never answered), or at its cap plus [`Options::cap_grace`] when it had one.
    pub lost_call_after: SignedDuration,
    /// Added to a call's cap before it counts as lost.
    pub cap_grace: SignedDuration,
    /// How long after its end a call's record still corrects its cost.
    pub record_grace: SignedDuration,
    /// CDR files to follow (Asterisk or FreeSWITCH `Master.csv`), checkpointed in the store.
    pub tails: Vec<TailSpec>,
    /// Serve HTTPS with this certificate chain and key (PEM files); `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Kamailio's JSON-RPC over HTTP (`http://127.0.0.1:5071/RPC`): running calls that a limit
    /// cuts are ended there with `dlg.end_dlg` (BYE both ways).
    pub kamailio_rpc: Option<String>,
    /// Certificates to trust for an `https://` `kamailio_rpc` besides Mozilla's roots (PEM).
    pub kamailio_rpc_ca_file: Option<PathBuf>,
    /// Where alerts are posted (signed), with a persisted outbox.
    pub webhooks: Vec<Webhook>,
    /// Alerts by e-mail, from the same outbox.
    pub email: Option<email::Email>,
    /// The wall clock, or a faster one (`tollguard demo`).
    pub clock: Clock,
    /// VAT rate in percent, for the dashboard's incident reports.
    pub vat_percent: rust_decimal::Decimal,
    /// How often the rebuilt state is written to `DATABASE.snapshot` (it is also written at a
    /// graceful stop), so that a start reads only the event log after it; `None`: no snapshots,
    /// every start reads the whole log.
    pub snapshot_every: Option<Duration>,
    /// What is older than this is deleted from the store, once an hour ([`retention`]; at
    /// least [`tollguard_engine::HISTORY_NEEDED`]); `None`: nothing is deleted.
    pub retention: Option<SignedDuration>,
}

/// The server's clock: the wall clock, or one the caller drives (`tollguard demo` loads weeks of
/// history at their own times, then plays a day in minutes). Every time the server stamps,
/// decides or ticks with comes from it. Clones share the same clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// (wall time when set, clock time when set, speed); `None`: the wall clock.
    driven: Option<Arc<std::sync::RwLock<(Timestamp, Timestamp, u32)>>>,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Clock {
        Clock { driven: None }
    }

    /// A clock that reads `start` now and runs `speed` times faster than the wall clock
    /// (0: stands still until [`Clock::set`]).
    pub fn driven(start: Timestamp, speed: u32) -> Clock {
        Clock { driven: Some(Arc::new(std::sync::RwLock::new((Timestamp::now(), start, speed)))) }
    }

    /// Sets a driven clock to read `start` now and run at `speed`; the wall clock ignores it.
    pub fn set(&self, start: Timestamp, speed: u32) {
        if let Some(d) = &self.driven {
            *d.write().expect("clock lock") = (Timestamp::now(), start, speed);
        }
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        match &self.driven {
            None => Timestamp::now(),
            Some(d) => {
                let (wall, start, speed) = *d.read().expect("clock lock");
                let elapsed = Timestamp::now().duration_since(wall);
                start.saturating_add(elapsed * speed as i32).unwrap_or(start)
            }
        }
    }

    /// How many times faster than the wall clock it runs.
    pub fn speed(&self) -> u32 {
        self.driven.as_ref().map_or(1, |d| d.read().expect("clock lock").2)
    }
}

/// A CDR file `serve` follows.
#[derive(Clone, Debug)]
pub struct TailSpec {
    /// The file.
    pub path: PathBuf,
    /// `asterisk` or `freeswitch-csv`.
    pub format: tollguard_ingest::Format,
    /// Zone of its local times.
    pub options: tollguard_ingest::ReadOptions,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            database: PathBuf::from("tollguard.db"),
            tick: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            lost_call_after: SignedDuration::from_hours(4),
            cap_grace: SignedDuration::from_secs(60),
            record_grace: SignedDuration::from_mins(2),
            tails: vec![],
            tls: None,
            kamailio_rpc: None,
            kamailio_rpc_ca_file: None,
            webhooks: vec![],
            email: None,
            clock: Clock::wall(),
            vat_percent: rust_decimal::Decimal::ZERO,
            snapshot_every: Some(Duration::from_secs(600)),
            retention: None,
        }
    }
}

/// Where the writer answers, for each record, whether it was new and whether its call was
/// allowed by an authorization (or why none could be stored).
type RecordsDone = tokio::sync::oneshot::Sender<Result<Vec<RecordSeen>, String>>;

/// Where the writer answers an incident step.
type IncidentDone = tokio::sync::oneshot::Sender<Result<Result<String, String>, String>>;

/// A record as the store found it: new or not, whether its call was allowed by an
/// authorization (`None`: never authorized), and its position in the event log (new ones).
pub(crate) type RecordSeen = (bool, Option<bool>, i64);

/// What the writer thread stores.
enum Write {
    Event {
        time_ns: i64,
        kind: &'static str,
        payload: String,
    },
    Alert {
        account: String,
        json: String,
        /// Webhooks to queue it for, in the same transaction.
        targets: Vec<String>,
    },
    /// An incident's step, answered when stored: Ok(account) or why not.
    IncidentStep {
        id: i64,
        to: &'static str,
        by: String,
        reason: String,
        done: IncidentDone,
    },
    /// A call's cost counted for an account (for its open incident).
    Charged {
        account: std::sync::Arc<str>,
        units: i64,
    },
    /// A daily report queued for mailing, with the checkpoint of the day queued.
    DailyMail {
        account: String,
        date: String,
    },
    /// An audit log entry.
    Audit {
        time_ns: i64,
        actor: String,
        action: &'static str,
        account: String,
        details: String,
    },
    /// A delivery try and its outcome.
    Tried {
        id: i64,
        ok: bool,
        error: String,
        next_ns: i64,
        dead: bool,
    },
    /// Records to store if new; answers which were new.
    Records {
        time_ns: i64,
        /// Call id, leg (destination channel), account, record as JSON.
        records: Vec<(String, String, String, String)>,
        /// A file-tail checkpoint to store in the same transaction: (source, value).
        checkpoint: Option<(String, String)>,
        done: RecordsDone,
    },
    /// An attempt (for the log) and its decision, in one message.
    Authorized {
        time_ns: i64,
        attempt: String,
        call_id: String,
        account: String,
        decision: String,
    },
    /// Answers once everything sent before it is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Commit what came before, then stop.
    Shutdown,
}

/// An alert as stored, for the live feeds (`/ui/feed`).
#[derive(Debug)]
pub(crate) struct FeedItem {
    pub id: i64,
    pub account: String,
    pub json: String,
}

/// Where the writer announces stored alerts.
pub(crate) type AlertFeed = tokio::sync::broadcast::Sender<Arc<FeedItem>>;

/// A call the server has allowed and not seen end.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Live {
    account: String,
    attempted: Timestamp,
    answered: Option<Timestamp>,
    cap: Option<u32>,
    /// Kamailio's dialog identifiers (h_entry, h_id), reported at answer: how to cut it.
    kamailio: Option<(u64, u64)>,
}

#[derive(Default)]
struct Metrics {
    allowed: AtomicU64,
    denied: AtomicU64,
    answers: AtomicU64,
    ends: AtomicU64,
    records_new: AtomicU64,
    records_duplicate: AtomicU64,
    alerts_warning: AtomicU64,
    alerts_critical: AtomicU64,
    cuts: AtomicU64,
    lost_calls: AtomicU64,
    authorize_ns: AtomicU64,
    /// Authorizations whose `time` was more than [`CLOCK_SKEW`] from the server's clock.
    skewed: AtomicU64,
    /// Authorizations denied because their call id belonged to another call still running.
    reused_call_ids: AtomicU64,
    /// When the last warning about it was printed (seconds by the server's clock).
    skew_warned: std::sync::atomic::AtomicI64,
}

/// An authorization's `time` further than this from the server's clock is counted
/// (`tollguard_authorize_time_skewed_total`) and warned about, at most once a minute: a switch
/// whose clock is wrong gets night rules by day, and moves the account's windows.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

struct Core {
    engine: Engine,
    live: HashMap<String, Live>,
    /// Answers given in the last [`DECISION_MEMORY`], by call id: a retransmitted INVITE asks
    /// again, and must get the same answer without being counted twice.
    /// With what the request asked (see [`request_key`]).
    decided: HashMap<String, (Timestamp, AuthorizeResponse, u64)>,
    /// Their call ids in the order answered, to forget them in order.
    decided_order: std::collections::VecDeque<(Timestamp, String)>,
    /// Attempts per second and spend per hour of the whole service, for the overview.
    traffic: traffic::Traffic,
    /// The position in the event log of the last event the engine was rebuilt from (at start
    /// or at a reload): a record stored at or before it is in the engine already.
    rebuilt_through: i64,
    /// When each account last had an `integration.call_id_reused` alert (server clock): one an
    /// hour at most.
    reused_alerted: HashMap<String, Timestamp>,
}

/// At most one `integration.call_id_reused` alert per account in this time.
const REUSED_ALERT_QUIET: SignedDuration = SignedDuration::from_hours(1);

impl Core {
    /// The engine handles an event at `now`: see [`handle_counted`].
    fn handle(&mut self, event: Event<'_>, now: Timestamp, effects: &mut Vec<Effect>) {
        handle_counted(&mut self.engine, &mut self.traffic, event, now, effects);
    }
}

/// The engine handles an event at `now`, and what it charged counts in the service's traffic
/// figures at once: live under the engine's lock (a reload swaps the figures under that lock,
/// rebuilt from the log, so a charge is never in both), and in the rebuild the same way.
pub(crate) fn handle_counted(
    engine: &mut Engine,
    traffic: &mut traffic::Traffic,
    event: Event<'_>,
    now: Timestamp,
    effects: &mut Vec<Effect>,
) {
    let from = effects.len();
    engine.handle(event, now, effects);
    traffic.effects(now, &effects[from..]);
}

/// How long an authorization answer is repeated for the same call id: SIP's INVITE transaction
/// timeout (64 x T1 = 32 s), after which no retransmission comes.
pub const DECISION_MEMORY: SignedDuration = SignedDuration::from_secs(32);

/// Shared by every request.
pub struct AppState {
    core: Mutex<Core>,
    writer: mpsc::Sender<Write>,
    reader: Mutex<Store>,
    opts: Options,
    metrics: Metrics,
    /// The writer's failures.
    store_health: Arc<StoreHealth>,
    ready: AtomicBool,
    /// Tokens looked up: hash -> (name, scope, when looked up; see [`auth::TOKEN_RECHECK`]).
    tokens: Mutex<HashMap<String, (String, Scope, Timestamp)>>,
    tails: tokio::sync::Mutex<Vec<tollguard_ingest::tail::Tail>>,
    /// Builds the rater and policy again from the configuration, for a reload.
    reloader: Mutex<Option<Reloader>>,
    /// Held by the delivery round in progress (one at a time).
    delivering: tokio::sync::Mutex<()>,
    /// The last e-mail per (account, rule): when, and at what severity (quiet periods).
    mailed: Mutex<HashMap<(String, String), (std::time::Instant, Severity)>>,
    /// The last day whose daily report was queued, per account (from the store's checkpoints).
    daily_queued: Mutex<HashMap<String, jiff::civil::Date>>,
    /// Cuts the switch refused or could not be asked for (shared with the threads that ask).
    cut_failures: Arc<AtomicU64>,
    /// Calls the switch no longer knows (Kamailio answered a cut with 404): they ended, their
    /// end report was lost; the next tick ends them here.
    gone: Arc<Mutex<Vec<String>>>,
    /// Events handled when the engine was rebuilt at start (those in the snapshot included).
    pub rebuilt_events: u64,
    /// The log position of the snapshot the start restored, if it used one.
    pub from_snapshot: Option<i64>,
    /// Alerts as they are stored, for the dashboard's live feed.
    feed: AlertFeed,
    /// The snapshot thread's requests, if snapshots are kept.
    snapshots: Mutex<Option<mpsc::Sender<snapshot::Ask>>>,
    /// How the snapshots fare.
    snapshot_health: Arc<snapshot::Health>,
    /// How retention fares.
    retention_health: retention::Health,
    /// The hash of the memory retention last wrote for each account (`None`: not read yet).
    retention_written: Mutex<Option<HashMap<String, u64>>>,
}

/// Prepares a snapshot for the next start of this build of tollguard with this rater, policy
/// and options (`tollguard snapshot`): reads the whole event log of `opts.database` (while the
/// service runs on it, if it does) and writes `DATABASE.snapshot.next`, which the start uses
/// (with the log after it) in place of the service's own snapshot, written by another build or
/// with another configuration. Returns the log position and the file's size.
pub fn prepare_snapshot(rater: Arc<Rater>, policy: Policy, opts: &Options) -> Result<(i64, u64)> {
    if opts.snapshot_every.is_none() {
        anyhow::bail!("[server] snapshot_every is off: a start would not use a snapshot");
    }
    // Not created here: a mistyped path is an error, not an empty log.
    if !opts.database.is_file() {
        anyhow::bail!("{}: no such database", opts.database.display());
    }
    let fingerprint = snapshot::fingerprint(&rater, &policy, opts.record_grace)
        .context("the running executable cannot be read to fingerprint it")?;
    let store = Store::open(&opts.database)?;
    let mut rebuilt = records::Rebuilt::empty(rater, policy, opts.record_grace);
    rebuilt
        .read(&store)
        .with_context(|| format!("rebuilding the engine from {}", opts.database.display()))?;
    let path = snapshot::next_path_of(&opts.database);
    let size = snapshot::save(
        &path,
        fingerprint,
        (rebuilt.through, rebuilt.events),
        &snapshot::payload(&rebuilt),
        &store,
    )?;
    Ok((rebuilt.through, size))
}

/// Reads the configuration again: the rater and policy a reload starts from.
pub type Reloader = Box<dyn Fn() -> Result<(Arc<Rater>, Policy)> + Send + Sync>;

/// The server: state, writer thread, router.
pub struct Server {
    state: Arc<AppState>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The thread that keeps the snapshot (see [`snapshot`]).
    snapshotter: Option<std::thread::JoinHandle<()>>,
}

fn ns(t: Timestamp) -> i64 {
    t.as_nanosecond().clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Server {
    /// Opens the store, rebuilds the engine from the event log, starts the writer thread.
    pub fn start(rater: Arc<Rater>, policy: Policy, opts: Options) -> Result<Server> {
        if let Some(r) = opts.retention {
            retention::check(r).map_err(|e| anyhow::anyhow!("retention: {e}"))?;
        }
        let store = Store::open(&opts.database)?;
        // From the snapshot when there is a good one, then the log after it.
        let fingerprint =
            opts.snapshot_every.and_then(|_| snapshot::fingerprint(&rater, &policy, opts.record_grace));
        // The service's own snapshot, or one `tollguard snapshot` prepared for this build and
        // configuration: of those that fit, the later (only its state is read).
        let (own, next) = (snapshot::path_of(&opts.database), snapshot::next_path_of(&opts.database));
        let mut fitting: Option<(snapshot::Fitting, PathBuf)> = None;
        let mut refused = vec![];
        match opts.snapshot_every {
            Some(_) => {
                for path in [own.clone(), next.clone()] {
                    match snapshot::check(&path, fingerprint, &store) {
                        Ok(Some(f)) => {
                            if fitting.as_ref().is_none_or(|(old, _)| f.through > old.through) {
                                fitting = Some((f, path));
                            } else if path == next {
                                // Fits, but the service's own is as late: not needed any more.
                                let _ = std::fs::remove_file(&next);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => refused.push(format!("not using {}: {e:#}", path.display())),
                    }
                }
            }
            None if next.exists() => {
                refused.push(format!("not using {}: [server] snapshot_every is off", next.display()))
            }
            None => {}
        }
        let restored = fitting.and_then(|(f, path)| match f.decode((&rater, &policy), opts.record_grace) {
            Ok(r) => Some((r, f.body, path)),
            Err(e) => {
                refused.push(format!("not using {}: {e:#}", path.display()));
                None
            }
        });
        for r in &refused {
            match restored {
                Some(_) => eprintln!("tollguard serve: {r}"),
                None => eprintln!("warning: {r}; reading the whole event log"),
            }
        }
        let used_next = restored.as_ref().is_some_and(|(_, _, path)| *path == next);
        let snapshot_path = restored.as_ref().map_or(own, |(_, _, path)| path.clone());
        let from_snapshot = restored.as_ref().map(|(r, ..)| r.through);
        let (restored, mut on_disk) = match restored {
            Some((r, bytes, _)) => (Some(r), Some(bytes)),
            None => (None, None),
        };
        let mut rebuilt = restored
            .unwrap_or_else(|| records::Rebuilt::empty(rater.clone(), policy.clone(), opts.record_grace));
        let read_from = rebuilt.events;
        rebuilt
            .read(&store)
            .with_context(|| format!("rebuilding the engine from {}", opts.database.display()))?;
        if let Some(at) = from_snapshot {
            eprintln!(
                "tollguard serve: state at event {at} restored from {}; {} events after it handled",
                snapshot_path.display(),
                rebuilt.events - read_from
            );
        }
        // The snapshot thread starts from this state (and writes it, unless the file has it).
        let snapshot_health = Arc::new(snapshot::Health::default());
        let keeper = match (opts.snapshot_every, fingerprint) {
            (Some(every), Some(_)) => {
                // The file's own bytes when nothing came after it (no need to write it again).
                let on_disk = on_disk.take().filter(|_| from_snapshot == Some(rebuilt.through));
                let start = snapshot::Start {
                    // A prepared snapshot is written as the service's own.
                    on_disk: on_disk.is_some() && !used_next,
                    body: on_disk.unwrap_or_else(|| snapshot::payload(&rebuilt)),
                    through: rebuilt.through,
                    events: rebuilt.events,
                    used_next,
                };
                let (tx, rx) = mpsc::channel();
                let (db, grace, config) =
                    (opts.database.clone(), opts.record_grace, (rater.clone(), policy.clone()));
                let health = snapshot_health.clone();
                let h = std::thread::Builder::new()
                    .name("tollguard-snapshot".into())
                    .spawn(move || snapshot::keep(db, config, start, every, grace, (rx, health)))
                    .context("starting the snapshot thread")?;
                Some((tx, h))
            }
            (Some(_), None) => {
                eprintln!(
                    "warning: snapshots are off: the running executable cannot be read to fingerprint it"
                );
                None
            }
            (None, _) => None,
        };
        let (snapshots, snapshotter) = match keeper {
            Some((tx, h)) => (Some(tx), Some(h)),
            None => (None, None),
        };
        let records::Rebuilt {
            engine, traffic, live, through: rebuilt_through, events: rebuilt_events, ..
        } = rebuilt;
        let mut tails = vec![];
        for t in &opts.tails {
            let from = store
                .checkpoint(&tail_source(&t.path))?
                .map(|v| v.parse::<tollguard_ingest::tail::Checkpoint>())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            tails.push(
                tollguard_ingest::tail::Tail::new(&t.path, t.format, t.options.clone(), from)
                    .map_err(anyhow::Error::msg)?,
            );
        }
        let reader = Store::open(&opts.database)?;
        let (tx, rx) = mpsc::channel::<Write>();
        let writer_store = Store::open(&opts.database)?;
        let store_health = Arc::new(StoreHealth::default());
        let writer_health = store_health.clone();
        let (clock, alerts_feed) = (opts.clock.clone(), tokio::sync::broadcast::channel(256).0);
        let feed = alerts_feed.clone();
        let writer = std::thread::Builder::new()
            .name("tollguard-writer".into())
            .spawn(move || write_loop(writer_store, rx, clock, feed, writer_health, STORE_RETRY_FOR))
            .context("starting the writer thread")?;
        let state = Arc::new(AppState {
            core: Mutex::new(Core {
                engine,
                live,
                decided: HashMap::new(),
                decided_order: std::collections::VecDeque::new(),
                reused_alerted: HashMap::new(),
                traffic,
                rebuilt_through,
            }),
            writer: tx,
            reader: Mutex::new(reader),
            opts,
            metrics: Metrics::default(),
            store_health,
            ready: AtomicBool::new(true),
            tokens: Mutex::new(HashMap::new()),
            tails: tokio::sync::Mutex::new(tails),
            reloader: Mutex::new(None),
            delivering: tokio::sync::Mutex::new(()),
            mailed: Mutex::new(HashMap::new()),
            daily_queued: Mutex::new(HashMap::new()),
            cut_failures: Arc::new(AtomicU64::new(0)),
            gone: Arc::new(Mutex::new(Vec::new())),
            rebuilt_events,
            from_snapshot,
            feed: alerts_feed,
            snapshots: Mutex::new(snapshots),
            snapshot_health,
            retention_health: retention::Health::default(),
            retention_written: Mutex::new(None),
        });
        Ok(Server { state, writer: Some(writer), snapshotter })
    }

    /// The shared state.
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Time passes: ticks the engine, closes lost calls, stores what came of it.
    pub fn tick(&self, now: Timestamp) {
        tick(&self.state, now);
    }

    /// Serves on `listener` until `shutdown` resolves, ticking every [`Options::tick`]; then
    /// stops taking requests, lets those in flight finish, and flushes the store.
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let state = self.state.clone();
        let every = state.opts.tick;
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || tick(&s, s.now())).await;
                if let Err(e) = poll_tails(&state).await {
                    eprintln!("error: following CDR files: {e:#}");
                }
            }
        });
        // Deliveries on a loop of their own: a slow webhook or mail server never delays a tick.
        let state = self.state.clone();
        let deliverer = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                daily::queue_due(&state, state.now()).await;
                webhook::deliver(&state, state.now()).await;
            }
        });
        let pruner = tokio::spawn(retention::keep(self.state.clone()));
        // Answers are small and latency matters: no Nagle delay (see ../shared/notes).
        match &self.state.opts.tls {
            Some((cert, key)) => {
                let acceptor = tls::acceptor(cert, key)?;
                let listener = tls::TlsListener::new(listener, acceptor)?;
                axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await?;
            }
            None => {
                use axum::serve::ListenerExt as _;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await?;
            }
        }
        ticker.abort();
        deliverer.abort();
        pruner.abort();
        self.state.ready.store(false, Ordering::SeqCst);
        self.close();
        Ok(())
    }

    /// Reads what the followed CDR files gained since the last poll, stores it with the files'
    /// checkpoints, and hands the new records to the engine; returns how many were new.
    pub async fn poll_tails(&self) -> Result<usize> {
        poll_tails(&self.state).await
    }

    /// Sets how a reload reads the configuration again (`POST /v1/admin/reload`, SIGHUP).
    pub fn set_reloader(&self, r: Reloader) {
        *self.state.reloader.lock().expect("reloader lock") = Some(r);
    }

    /// Reads the configuration again and rebuilds the engine from the event log with it;
    /// returns the events handled. Calls in flight stay known; connections stay open.
    pub async fn reload(&self) -> Result<u64> {
        self.state.reload("tollguard (reload)").await
    }

    /// Posts the alerts whose delivery is due at `now` to their webhooks, once each; returns
    /// how many were tried. The serve loop does this every tick.
    pub async fn deliver(&self, now: Timestamp) -> usize {
        webhook::deliver(&self.state, now).await
    }

    /// Queues the daily report mails due at `now` (what the delivery loop does each second);
    /// returns how many were queued.
    pub async fn queue_daily_reports(&self, now: Timestamp) -> usize {
        let n = daily::queue_due(&self.state, now).await;
        flush(&self.state).await;
        n
    }

    /// Deletes what is past `[server] retention` at `now` (what the serve loop does every
    /// hour); `None` without a retention.
    pub fn prune(&self, now: Timestamp) -> Result<Option<retention::Report>> {
        retention::prune(&self.state, now)
    }

    /// Waits until everything handed to the writer is committed.
    pub async fn flush(&self) {
        flush(&self.state).await;
    }

    /// Stops the writer after it has committed everything, then writes the snapshot of the
    /// whole log (also done on drop).
    pub fn close(&mut self) {
        if let Some(h) = self.writer.take() {
            self.state.send(Write::Shutdown);
            let _ = h.join();
        }
        if let Some(h) = self.snapshotter.take() {
            let asks = self.state.snapshots.lock().expect("snapshots lock").take();
            let (tx, rx) = mpsc::channel();
            if asks.is_some_and(|a| a.send(snapshot::Ask::Finish(tx)).is_ok()) {
                // Bounded: the thread may be reading much of the log (a slow disk, a long time
                // since the last write). A stop does not wait for that (the file it has stays;
                // the next start reads more).
                if rx.recv_timeout(SNAPSHOT_STOP_WAIT).is_err() {
                    eprintln!(
                        "warning: the snapshot was not written in {} s; the last one stays",
                        SNAPSHOT_STOP_WAIT.as_secs()
                    );
                    return;
                }
            }
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

/// The checkpoint name of a followed file.
fn tail_source(path: &std::path::Path) -> String {
    format!("tail:{}", path.display())
}

async fn poll_tails(state: &Arc<AppState>) -> Result<usize> {
    let mut tails = state.tails.lock().await;
    let mut new = 0;
    for t in tails.iter_mut() {
        let (mut cdrs, mut bad) = (vec![], vec![]);
        let moved = t.poll(&mut cdrs, &mut bad).with_context(|| format!("reading {}", t.path().display()))?;
        for b in &bad {
            eprintln!("warning: skipped malformed row: {b}");
        }
        if !moved {
            continue;
        }
        let checkpoint = Some((tail_source(t.path()), t.checkpoint().to_string()));
        let rejected = bad.iter().map(|b| b.to_string()).collect();
        let answer = records::intake(state, cdrs, rejected, checkpoint)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        new += answer.0["new"].as_u64().unwrap_or(0) as usize;
    }
    Ok(new)
}

/// A reload: a new engine is built from the log with the new rater and policy, on its own
/// connection to the store, while the old one goes on deciding calls; then, under the engine's
/// lock (decisions wait for it), it handles what the log got meanwhile and takes the old one's
/// place. Nothing is lost or counted twice, and calls wait only for the last catch-up, not for
/// the whole log (hours of it after months of traffic).
async fn reload(state: &Arc<AppState>) -> Result<u64> {
    let (rater, policy) = {
        let r = state.reloader.lock().expect("reloader lock");
        let r = r
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this server has no configuration file to read again"))?;
        r()?
    };
    let st = state.clone();
    tokio::task::spawn_blocking(move || -> Result<u64> {
        let store = Store::open(&st.opts.database)?;
        let config = (rater.clone(), policy.clone());
        let mut rebuilt = records::Rebuilt::empty(rater, policy, st.opts.record_grace);
        // Unhurried, until what came while reading is little (or after a few rounds).
        for _ in 0..8 {
            if rebuilt.read(&store)? <= RELOAD_CATCH_UP {
                break;
            }
        }
        // The snapshot thread takes up this state (its own rebuild would read the whole log again).
        let keeping = st.snapshots.lock().expect("snapshots lock").is_some();
        let start = keeping.then(|| snapshot::Start {
            body: snapshot::payload(&rebuilt),
            through: rebuilt.through,
            events: rebuilt.events,
            on_disk: false,
            used_next: false,
        });
        flush_blocking(&st, None);
        rebuilt.read(&store)?;
        let mut core = st.core.lock().expect("engine lock");
        // Everything the old engine handled is in the log once the writer has stored what was
        // sent before this (each handler sends its event under the engine's lock). A store that
        // is failing must not hold decisions up: then the running configuration stays.
        if !flush_blocking(&st, Some(RELOAD_LOCK_WAIT)) {
            anyhow::bail!(
                "the store took more than {} s to write what came before the reload; the running configuration stays",
                RELOAD_LOCK_WAIT.as_secs()
            );
        }
        rebuilt.read(&store)?;
        let old = (
            std::mem::replace(&mut core.engine, rebuilt.engine),
            std::mem::replace(&mut core.live, rebuilt.live),
        );
        core.traffic = rebuilt.traffic;
        core.rebuilt_through = rebuilt.through;
        // The snapshot follows the new configuration, from the state rebuilt here (sent under
        // the engine's lock: of two reloads, the one whose engine serves is the last it hears).
        if let (Some(asks), Some(start)) = (st.snapshots.lock().expect("snapshots lock").as_ref(), start) {
            let _ = asks.send(snapshot::Ask::Configure { rater: config.0, policy: config.1, start });
        }
        // The old engine (every account's state) is let go after the lock.
        drop(core);
        drop(old);
        Ok(rebuilt.events)
    })
    .await?
}

/// How long a stop waits for the snapshot thread to write the state of the whole log.
const SNAPSHOT_STOP_WAIT: Duration = Duration::from_secs(45);

/// Events a reload's last read before taking the engine's lock may leave for the read under it.
const RELOAD_CATCH_UP: u64 = 1000;

/// How long a reload waits, holding the engine's lock, for the writer to store what came before.
const RELOAD_LOCK_WAIT: Duration = Duration::from_secs(1);

/// [`flush`], for a thread that may block, waiting at most `limit`: whether it was done (or the
/// writer has stopped: nothing more will be stored).
fn flush_blocking(state: &AppState, limit: Option<Duration>) -> bool {
    use tokio::sync::oneshot::error::TryRecvError;
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    state.send(Write::Flush(tx));
    let until = limit.map(|l| std::time::Instant::now() + l);
    loop {
        match rx.try_recv() {
            Ok(()) | Err(TryRecvError::Closed) => return true,
            Err(TryRecvError::Empty) if until.is_some_and(|u| std::time::Instant::now() >= u) => {
                return false
            }
            Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

async fn flush(state: &AppState) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.send(Write::Flush(tx));
    let _ = rx.await;
}

/// How long the writer gathers writes before it commits them together (group commit). 10 ms
/// rather than 2: the pages every commit rewrites (the tables' last pages, the write-ahead log's
/// frames and checkpoints) are shared by five times as many calls.
const COMMIT_EVERY: Duration = Duration::from_millis(10);

/// The writer thread: commits what arrives in batches, one transaction for what came within
/// [`COMMIT_EVERY`] of the first (at most 4,096 writes).
///
/// A batch that fails is stored again one write per transaction, so that one write the database
/// refuses (a constraint, a trigger) loses only itself. A write that fails because the database
/// cannot write now (busy or locked past the busy timeout, disk full, an I/O error) is tried again,
/// waiting 50 ms, then twice as long each time up to a second, for as long as the store has been
/// failing less than `retry_for` ([`STORE_RETRY_FOR`]). A write that still fails is lost, and so is
/// the rest of its batch without being tried (each would wait out the busy timeout); the next batch
/// starts afresh. A lost write is said on stderr with what it was, counted
/// (`tollguard_store_writes_lost_total`), and answered with the error where a request waits for it
/// (records, incident steps).
fn write_loop(
    mut store: Store,
    rx: mpsc::Receiver<Write>,
    clock: Clock,
    feed: AlertFeed,
    health: Arc<StoreHealth>,
    retry_for: Duration,
) {
    let time_now_ns = || ns(clock.now());
    let mut incidents = incident::Incidents::new();
    let mut stop = false;
    let mut behind = false;
    // Since when writes the database could not take now have been failing (none since).
    let mut failing_since: Option<std::time::Instant> = None;
    while !stop {
        let Ok(first) = rx.recv() else { break };
        let mut batch = vec![first];
        // Gather for COMMIT_EVERY without waiting on the channel: a receiver blocked in
        // `recv` is woken by every send (a context switch per write at thousands a second);
        // asleep, it is woken once per batch. A flush or shutdown is not kept waiting.
        // After a full batch the next one is already waiting: no sleep then.
        if !behind && !matches!(batch[0], Write::Flush(_) | Write::Shutdown) {
            std::thread::sleep(COMMIT_EVERY);
        }
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        behind = batch.len() == 4096;
        let mut acks = vec![];
        // Only flushes: what came before is committed already (no transaction, which would
        // wait for the write lock, say for a pruning's chunk).
        let nothing_to_store = batch.iter().all(|w| matches!(w, Write::Flush(_) | Write::Shutdown));
        let together = if nothing_to_store {
            Ok(batch.iter().map(|_| Stored::Nothing).collect())
        } else {
            incidents.begin(&store).and_then(|()| {
                store.batch(|b| {
                    let stored = batch
                        .iter()
                        .map(|w| store_write(b, w, &mut incidents, &time_now_ns))
                        .collect::<Result<Vec<_>, _>>()?;
                    incidents.write(b)?;
                    Ok(stored)
                })
            })
        };
        match together {
            Ok(stored) => {
                failing_since = None;
                health.failing.store(false, Ordering::Relaxed);
                for (w, out) in batch.into_iter().zip(stored) {
                    deliver(w, Ok(out), &feed, &mut acks, &mut stop);
                }
            }
            Err(e) => {
                incidents.rolled_back();
                health.batches_failed.fetch_add(1, Ordering::Relaxed);
                let n = batch.iter().filter(|w| !matches!(w, Write::Flush(_) | Write::Shutdown)).count();
                eprintln!("error: storing {n} writes together: {e}; storing them one at a time");
                let mut gave_up = false;
                for w in batch {
                    let out = if matches!(w, Write::Flush(_) | Write::Shutdown) {
                        Ok(Stored::Nothing)
                    } else if gave_up {
                        Err(lose(&w, &health, "not tried: the store has been failing too long"))
                    } else {
                        let r = store_alone(
                            &mut store,
                            &w,
                            &mut incidents,
                            &time_now_ns,
                            (retry_for, &mut failing_since, &health.failing),
                        );
                        r.map_err(|(e, too_long)| {
                            gave_up |= too_long;
                            lose(&w, &health, &e)
                        })
                    };
                    deliver(w, out, &feed, &mut acks, &mut stop);
                }
            }
        }
        for a in acks {
            let _ = a.send(());
        }
    }
}

/// How long the writer keeps trying writes the database cannot take now (see [`write_loop`]).
pub const STORE_RETRY_FOR: Duration = Duration::from_secs(60);

/// The writer's failures, for `/metrics`.
#[derive(Default)]
pub(crate) struct StoreHealth {
    /// Batches whose transaction failed (their writes were then stored one at a time).
    batches_failed: AtomicU64,
    /// Writes given up on.
    writes_lost: AtomicU64,
    /// The last write tried failed and is being tried again.
    failing: AtomicBool,
}

/// What storing a write gave, handed out once its transaction has committed.
enum Stored {
    Nothing,
    Records(Vec<RecordSeen>),
    Step(Result<String, String>),
    Alert(FeedItem),
}

/// Stores one write in its own transaction, trying again while the database cannot write now and
/// has been failing less than `retry_for` (see [`write_loop`]); `failing` is set while it waits to
/// try again. On failure: why, and whether the store has been failing too long.
fn store_alone(
    store: &mut Store,
    w: &Write,
    incidents: &mut incident::Incidents,
    time_now_ns: &dyn Fn() -> i64,
    (retry_for, failing_since, failing): (Duration, &mut Option<std::time::Instant>, &AtomicBool),
) -> Result<Stored, (String, bool)> {
    let mut wait = Duration::from_millis(50);
    loop {
        let r = incidents.begin(store).and_then(|()| {
            store.batch(|b| {
                let out = store_write(b, w, incidents, time_now_ns)?;
                incidents.write(b)?;
                Ok(out)
            })
        });
        failing.store(false, Ordering::Relaxed);
        match r {
            Ok(out) => {
                *failing_since = None;
                return Ok(out);
            }
            Err(e) => {
                incidents.rolled_back();
                if !e.is_transient() {
                    return Err((e.to_string(), false));
                }
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= retry_for {
                    // Given up: the next batch gets a whole `retry_for` again.
                    *failing_since = None;
                    return Err((e.to_string(), true));
                }
                failing.store(true, Ordering::Relaxed);
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Counts and says a write that is lost; the message for whoever waits for it.
fn lose(w: &Write, health: &StoreHealth, why: &str) -> String {
    health.writes_lost.fetch_add(1, Ordering::Relaxed);
    eprintln!("error: lost a write ({}): {why}", w.what());
    why.to_string()
}

/// Stores one write in the open transaction `b`.
fn store_write(
    b: &mut tollguard_store::Batch<'_>,
    w: &Write,
    incidents: &mut incident::Incidents,
    time_now_ns: &dyn Fn() -> i64,
) -> tollguard_store::Result<Stored> {
    match w {
        Write::Event { time_ns, kind, payload } => {
            b.append_event(*time_ns, kind, payload)?;
        }
        Write::Authorized { time_ns, attempt, call_id, account, decision } => {
            b.append_event(*time_ns, "attempt", attempt)?;
            b.put_decision(call_id, account, *time_ns, decision)?;
            if incidents.contains(account) && decision.contains("\"allow\":false") {
                let d: serde_json::Value = serde_json::from_str(decision).unwrap_or_default();
                incident::on_denial(incidents, account, &d, *time_ns);
            }
        }
        Write::Alert { account, json, targets } => {
            let id = b.add_alert(account, json)?;
            let alert: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
            incident::on_alert(b, incidents, id, &alert, time_now_ns())?;
            if !targets.is_empty() {
                let mut v = alert.clone();
                v["id"] = json!(id);
                let body = v.to_string();
                for t in targets {
                    b.enqueue(t, &body, time_now_ns())?;
                }
            }
            return Ok(Stored::Alert(FeedItem { id, account: account.clone(), json: json.clone() }));
        }
        Write::DailyMail { account, date } => {
            let body = json!({ "account": account, "date": date }).to_string();
            b.enqueue("email-daily", &body, time_now_ns())?;
            b.set_checkpoint(&daily::checkpoint(account), date)?;
        }
        Write::Tried { id, ok, error, next_ns, dead } => b.outbox_tried(*id, *ok, error, *next_ns, *dead)?,
        Write::Audit { time_ns, actor, action, account, details } => {
            b.audit(*time_ns, actor, action, account, details)?;
            if actor == "tollguard" && matches!(*action, "block" | "cut") && incidents.contains(account) {
                let d: serde_json::Value = serde_json::from_str(details).unwrap_or_default();
                if *action == "block" {
                    incident::on_block(incidents, account, &d, *time_ns);
                } else {
                    incident::on_cut(incidents, account, &d, *time_ns);
                }
            }
        }
        Write::Charged { account, units } => incident::on_charged(incidents, account, *units, time_now_ns()),
        Write::IncidentStep { id, to, by, reason, .. } => {
            return Ok(Stored::Step(incident::change(b, incidents, *id, to, by, reason, time_now_ns())?));
        }
        Write::Records { time_ns, records, checkpoint, .. } => {
            let mut new = Vec::with_capacity(records.len());
            for (call_id, leg, account, json) in records {
                let fresh = b.insert_cdr(call_id, leg, account, *time_ns, json)?;
                let (allowed, seq) = if fresh {
                    // Logged with the record: a rebuild reads the log alone (a later decision
                    // under the same call id, or retention, changes the decisions table).
                    let allowed = b.was_allowed(call_id)?;
                    (
                        allowed,
                        b.append_event(*time_ns, "record", &crate::records::logged_record(json, allowed))?,
                    )
                } else {
                    (None, 0)
                };
                new.push((fresh, allowed, seq));
            }
            if let Some((source, value)) = checkpoint {
                b.set_checkpoint(source, value)?;
            }
            return Ok(Stored::Records(new));
        }
        Write::Flush(_) | Write::Shutdown => {}
    }
    Ok(Stored::Nothing)
}

/// Hands out what a write gave once committed, or why it was lost, to whoever waits for it;
/// flushes are answered by the caller once the whole batch is through.
fn deliver(
    w: Write,
    out: Result<Stored, String>,
    feed: &AlertFeed,
    acks: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    stop: &mut bool,
) {
    match (w, out) {
        (Write::Records { done, .. }, Ok(Stored::Records(new))) => {
            let _ = done.send(Ok(new));
        }
        (Write::Records { done, .. }, Err(e)) => {
            let _ = done.send(Err(e));
        }
        (Write::IncidentStep { done, .. }, Ok(Stored::Step(r))) => {
            let _ = done.send(Ok(r));
        }
        (Write::IncidentStep { done, .. }, Err(e)) => {
            let _ = done.send(Err(e));
        }
        (Write::Flush(tx), _) => acks.push(tx),
        (Write::Shutdown, _) => *stop = true,
        // Stored: now the live feeds may show it (no receiver is not an error).
        (_, Ok(Stored::Alert(item))) => {
            let _ = feed.send(Arc::new(item));
        }
        _ => {}
    }
}

impl Write {
    /// What the write is, for the message when it is lost.
    fn what(&self) -> String {
        match self {
            Write::Event { time_ns, kind, payload } => format!("{kind} event at {time_ns} ns: {payload}"),
            Write::Authorized { call_id, decision, .. } => {
                format!("attempt and decision of call {call_id}: {decision}")
            }
            Write::Alert { json, .. } => format!("alert {json}"),
            Write::DailyMail { account, date } => format!("daily report of {account} for {date}"),
            Write::Tried { id, .. } => format!("outcome of delivery {id}"),
            Write::Audit { action, account, details, .. } => format!("audit {action} {account}: {details}"),
            Write::Charged { account, units } => format!("{units} units charged to {account}'s incident"),
            Write::IncidentStep { id, to, .. } => format!("incident {id} to {to}"),
            Write::Records { records, .. } => {
                let ids: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
                format!("{} records: {}", ids.len(), ids.join(" "))
            }
            Write::Flush(_) => "flush".into(),
            Write::Shutdown => "shutdown".into(),
        }
    }
}

impl AppState {
    /// The time now, by the server's clock.
    pub fn now(&self) -> Timestamp {
        self.opts.clock.now()
    }

    /// The server's clock.
    pub fn clock(&self) -> &Clock {
        &self.opts.clock
    }

    /// Takes call records as `POST /v1/cdrs` does (stored before they count, idempotent on the
    /// call id); returns how many were new.
    pub async fn take_records(self: &Arc<Self>, cdrs: Vec<tollguard_core::cdr::Cdr>) -> Result<usize> {
        let answer =
            records::intake(self, cdrs, vec![], None).await.map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(answer.0["new"].as_u64().unwrap_or(0) as usize)
    }

    /// Runs a read on the store's reader connection, off the async workers.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> tollguard_store::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || f(&st.reader.lock().expect("reader lock")))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Ends a running call at the switch: Kamailio's `dlg.end_dlg` when the call reported its
    /// dialog and a JSON-RPC address is configured. Done on a thread of its own (the call path
    /// does not wait for Kamailio).
    fn cut(&self, call_id: &str, rule: &str) {
        let (Some(url), Some((h_entry, h_id))) = (
            self.opts.kamailio_rpc.clone(),
            self.core.lock().expect("engine lock").live.get(call_id).and_then(|l| l.kamailio),
        ) else {
            eprintln!("warning: call {call_id} must be cut ({rule}) but its switch gave no way to end it");
            self.cut_failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let body = json!({ "jsonrpc": "2.0", "method": "dlg.end_dlg", "params": [h_entry, h_id], "id": 1 })
            .to_string();
        let (call_id, state_metrics, gone) =
            (call_id.to_string(), self.cut_failures.clone(), self.gone.clone());
        let ca = self.opts.kamailio_rpc_ca_file.clone();
        std::thread::spawn(move || match rpc_post(&url, ca.as_deref(), &body) {
            Ok(()) => {}
            // No such dialog: the call already ended at the switch (its own timeout, say)
            // and its end did not reach us.
            Err(e) if e.to_string().contains(" 404") => gone.lock().expect("gone lock").push(call_id),
            Err(e) => {
                eprintln!("error: cutting call {call_id} through {url}: {e}");
                state_metrics.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// See [`Server::reload`]; `actor` is written to the audit log.
    pub async fn reload(self: &Arc<Self>, actor: &str) -> Result<u64> {
        let n = reload(self).await?;
        self.audit(actor, "reload", "", json!({ "events": n }));
        Ok(n)
    }

    /// Appends to the audit log: who, what, on which account, and the details (with the reason).
    fn audit(&self, actor: &str, action: &'static str, account: &str, details: serde_json::Value) {
        self.send(Write::Audit {
            time_ns: ns(self.now()),
            actor: actor.to_string(),
            action,
            account: account.to_string(),
            details: details.to_string(),
        });
    }

    fn send(&self, w: Write) {
        let _ = self.writer.send(w);
    }

    /// Sends the alerts among `effects` to the writer (and leaves the rest). Takes no engine
    /// lock: authorize calls it while holding it, so the alert is stored before the decision
    /// that joins its incident.
    fn send_alerts(&self, effects: &mut Vec<Effect>) {
        effects.retain(|e| {
            let Effect::Alert(a) = e else { return true };
            match a.severity {
                Severity::Critical => self.metrics.alerts_critical.fetch_add(1, Ordering::Relaxed),
                _ => self.metrics.alerts_warning.fetch_add(1, Ordering::Relaxed),
            };
            let json = serde_json::to_string(a).unwrap_or_default();
            let mut targets: Vec<String> = self
                .opts
                .webhooks
                .iter()
                .filter(|w| a.severity >= w.min_severity)
                .map(|w| w.name.clone())
                .collect();
            if let Some(cfg) = &self.opts.email {
                // One mail per account and rule in a quiet period, unless it got worse.
                let key = (a.account.clone(), a.rule.clone());
                let mut mailed = self.mailed.lock().expect("mailed lock");
                let quiet =
                    mailed.get(&key).is_some_and(|(at, sev)| at.elapsed() < cfg.quiet && a.severity <= *sev);
                if a.severity >= cfg.min_severity && !quiet {
                    mailed.insert(key, (std::time::Instant::now(), a.severity));
                    targets.push("email".into());
                }
            }
            self.send(Write::Alert { account: a.account.clone(), json, targets });
            false
        });
    }

    /// Stores effects: alerts (and cuts, as alerts' actions are already in them). Their charges
    /// are in the traffic figures already: counted under the engine's lock with the event that
    /// made them (a reload swaps the figures under that lock, rebuilt from the log; a charge
    /// counted after the lock was let go could be in both).
    fn store_effects(&self, effects: &mut Vec<Effect>) {
        self.send_alerts(effects);
        for e in effects.drain(..) {
            match e {
                Effect::Alert(_) | Effect::Decision(_) => {}
                Effect::Cut { call_id, rule } => {
                    self.metrics.cuts.fetch_add(1, Ordering::Relaxed);
                    let account = {
                        let core = self.core.lock().expect("engine lock");
                        core.live.get(&call_id).map(|l| l.account.clone()).unwrap_or_default()
                    };
                    self.audit("tollguard", "cut", &account, json!({ "call_id": call_id, "rule": rule }));
                    self.cut(&call_id, &rule);
                }
                Effect::Block { account, extension, trunk, rule, until } => self.audit(
                    "tollguard",
                    "block",
                    &account,
                    json!({ "extension": extension, "trunk": trunk, "rule": rule, "until": until.map(|u| u.to_string()) }),
                ),
                Effect::Unblock { account, extension, rule } => self.audit(
                    "tollguard",
                    "unblock",
                    &account,
                    json!({ "extension": extension, "rule": rule }),
                ),
                Effect::Charged { account, units, .. } => self.send(Write::Charged { account, units }),
            }
        }
    }
}

/// A JSON-RPC request over HTTP/1.1 (Kamailio's `xhttp`, plain on loopback or over TLS with
/// `ca_file`'s certificates trusted too); an error unless the answer is 200 with a `result`.
fn rpc_post(url: &str, ca_file: Option<&std::path::Path>, body: &str) -> Result<()> {
    let tls = match ca_file {
        Some(f) => Some(tls::client_config(Some(f))?),
        None => None,
    };
    let (status, answer) =
        http_post(url, "", body, Duration::from_secs(2), tls.as_ref()).map_err(anyhow::Error::msg)?;
    if status.starts_with("HTTP/1.1 200") && answer.contains("\"result\"") {
        Ok(())
    } else {
        Err(anyhow::anyhow!("unexpected answer: {}", if status.is_empty() { "(none)" } else { &status }))
    }
}

/// Where a POST goes: `http://` or `https://`, host, port (80 or 443 when not given), path.
struct Url<'a> {
    https: bool,
    host: &'a str,
    port: u16,
    path: String,
}

/// Whether `url` is an address the server can post to (`http://` or `https://`, a host, a port
/// that is a number): for checking configurations at start.
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(|_| ())
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(format!("not an http:// or https:// address: {url}")),
    };
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let default = if https { 443 } else { 80 };
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| format!("bad port in {url}"));
    let (host, port) = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("bad address in {url}"))?;
            (h, if after.is_empty() { default } else { port_of(after.trim_start_matches(':'))? })
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (authority, default),
        },
    };
    if host.is_empty() {
        return Err(format!("no host in {url}"));
    }
    Ok(Url { https, host, port, path })
}

/// One JSON POST over HTTP/1.1, plain or TLS (`https://`, verified against `tls`'s roots: see
/// [`tls::client_config`]); `headers` are extra header lines, each ending in CRLF; the
/// connection is closed after. The answer's status line and the whole answer. Webhooks and
/// Kamailio's JSON-RPC.
pub(crate) fn http_post(
    url: &str,
    headers: &str,
    body: &str,
    timeout: Duration,
    tls: Option<&Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<(String, String), String> {
    use std::io::{Read, Write};
    let u = parse_url(url)?;
    // An IPv6 address in brackets, in the address and in the Host header alike.
    let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.to_string() };
    let addr = format!("{host}:{}", u.port);
    let tcp = std::net::TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let host_header =
        if (u.https && u.port == 443) || (!u.https && u.port == 80) { host } else { addr.clone() };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        u.path,
        body.len()
    );
    let mut out = Vec::new();
    if u.https {
        let config = match tls {
            Some(c) => c.clone(),
            None => tls::client_config(None).map_err(|e| e.to_string())?,
        };
        let name = rustls_pki_types::ServerName::try_from(u.host.to_string())
            .map_err(|e| format!("{}: not a host name for TLS ({e})", u.host))?;
        let conn =
            tokio_rustls::rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        let mut s = tokio_rustls::rustls::StreamOwned::new(conn, tcp);
        s.write_all(request.as_bytes()).map_err(|e| format!("TLS with {addr}: {e}"))?;
        // A server may close without TLS's close_notify: what came before counts.
        let _ = s.read_to_end(&mut out);
    } else {
        let mut s = tcp;
        s.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
        let _ = s.read_to_end(&mut out);
    }
    let answer = String::from_utf8_lossy(&out).into_owned();
    let status = answer.lines().next().unwrap_or("").to_string();
    Ok((status, answer))
}

fn tick(state: &AppState, now: Timestamp) {
    let mut effects = vec![];
    {
        let mut core = state.core.lock().expect("engine lock");
        core.handle(Event::Tick, now, &mut effects);
        while let Some((at, _)) = core.decided_order.front() {
            if now.duration_since(*at) < DECISION_MEMORY {
                break;
            }
            if let Some((at, id)) = core.decided_order.pop_front() {
                // Unless the id was decided again since (a new attempt under it).
                if core.decided.get(&id).is_some_and(|(kept, ..)| *kept == at) {
                    core.decided.remove(&id);
                }
            }
        }
        // Lost calls: closed by the documented rule, counted as talking until now.
        let lost: Vec<String> = core
            .live
            .iter()
            .filter(|(_, l)| {
                let from = l.answered.unwrap_or(l.attempted);
                let limit = match l.cap {
                    Some(cap) => SignedDuration::from_secs(cap as i64) + state.opts.cap_grace,
                    None => state.opts.lost_call_after,
                };
                now.duration_since(from) >= limit
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            core.live.remove(&id);
            core.handle(Event::End { call_id: &id, billsec: None }, now, &mut effects);
            state.metrics.lost_calls.fetch_add(1, Ordering::Relaxed);
            let payload = json!({ "call_id": id, "lost": true }).to_string();
            state.send(Write::Event { time_ns: ns(now), kind: "end", payload });
        }
        // Calls the switch said it no longer has: ended now.
        let gone = std::mem::take(&mut *state.gone.lock().expect("gone lock"));
        for id in gone {
            if core.live.remove(&id).is_some() {
                core.handle(Event::End { call_id: &id, billsec: None }, now, &mut effects);
                let payload = json!({ "call_id": id, "gone_at_switch": true }).to_string();
                state.send(Write::Event { time_ns: ns(now), kind: "end", payload });
            }
        }
    }
    state.store_effects(&mut effects);
}

/// An API error: status, machine-readable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GONE, "deleted", message)
    }
    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": { "code": self.code, "message": self.message } })))
            .into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn router(state: Arc<AppState>) -> Router {
    let max = state.opts.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], OPENAPI) }))
        .route("/v1/authorize", post(authorize))
        .route("/v1/calls/{call_id}/answer", post(answer))
        .route("/v1/calls/{call_id}/end", post(end))
        .route("/v1/cdrs", post(records::post_cdrs))
        .route("/v1/cdrs/freeswitch", post(records::post_freeswitch))
        .route("/v1/accounts/{account}", get(account))
        .route("/v1/accounts/{account}/limits", axum::routing::put(put_limits))
        .route("/v1/accounts/{account}/block", post(block))
        .route("/v1/accounts/{account}/unblock", post(unblock))
        .route("/v1/alerts", get(alerts))
        .route("/v1/decisions/{call_id}", get(decision))
        .route("/v1/admin/reload", post(admin_reload))
        .route("/v1/deliveries", get(webhook::deliveries))
        .route("/v1/audit", get(audit_log))
        .route("/v1/incidents", get(incident::list))
        .route("/v1/incidents/{id}", get(incident::get_one))
        .route("/v1/incidents/{id}/{step}", post(incident::step))
        .merge(ui::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint (see /openapi.json)") })
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// The errors axum makes itself under /v1 (a body over the size limit, a query or a path
/// parameter it cannot read, a method the endpoint does not take) come as plain text: they are
/// given the API's JSON form, `{"error": {"code", "message"}}`, like every other error.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/v1/");
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !api || json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    // The API's own error, with the other headers axum set (`Allow` on a 405).
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

/// The OpenAPI description of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn admin_reload(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    auth::require(&s, &headers, auth::Need::Operator)?;
    let n = s
        .reload(&auth::who(&s, &headers))
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "reload_failed", format!("{e:#}")))?;
    Ok(Json(json!({ "reloaded": true, "events": n })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<u32>,
    account: Option<String>,
    format: Option<String>,
}

/// `GET /v1/audit`: who did what, when and why, oldest first after an id; `format=csv` exports.
async fn audit_log(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let account = match auth::scope(&s, &headers)? {
        Scope::Operator => q.account.clone(),
        Scope::Customer(own) if q.account.as_ref().is_none_or(|a| *a == own) => Some(own),
        _ => return Err(auth::forbidden()),
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad(format!("format must be json or csv, found {other:?}"))),
    };
    flush(&s).await;
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let rows = s.read(move |r| r.audit(account.as_deref(), q.after.unwrap_or(0), limit)).await?;
    let time = |ns: i64| Timestamp::from_nanosecond(ns as i128).map(|t| t.to_string()).unwrap_or_default();
    if csv {
        let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        let mut out = String::from("id,time,actor,action,account,details\n");
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                r.id,
                time(r.time_ns),
                quote(&r.actor),
                quote(&r.action),
                quote(&r.account),
                quote(&r.details)
            ));
        }
        return Ok(([("content-type", "text/csv; charset=utf-8")], out).into_response());
    }
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({ "id": r.id, "time": time(r.time_ns), "actor": r.actor, "action": r.action,
                    "account": r.account,
                    "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or_default() })
        })
        .collect();
    Ok(Json(json!({ "audit": items })).into_response())
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> String {
    let m = &s.metrics;
    let (running, accounts) = {
        let core = s.core.lock().expect("engine lock");
        (core.engine.running_calls(), core.engine.account_state_bytes().0)
    };
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let decided = g(&m.allowed) + g(&m.denied);
    format!(
        "# HELP tollguard_authorize_total Call attempts decided, by result.\n\
         # TYPE tollguard_authorize_total counter\n\
         tollguard_authorize_total{{result=\"allow\"}} {}\n\
         tollguard_authorize_total{{result=\"deny\"}} {}\n\
         # HELP tollguard_authorize_seconds_sum Time spent deciding, engine lock included.\n\
         # TYPE tollguard_authorize_seconds_sum counter\n\
         tollguard_authorize_seconds_sum {:.6}\n\
         tollguard_authorize_seconds_count {decided}\n\
         # HELP tollguard_call_events_total Answers and ends reported.\n\
         # TYPE tollguard_call_events_total counter\n\
         tollguard_call_events_total{{event=\"answer\"}} {}\n\
         tollguard_call_events_total{{event=\"end\"}} {}\n\
         # HELP tollguard_records_total Call records received, by whether they were new.\n\
         # TYPE tollguard_records_total counter\n\
         tollguard_records_total{{result=\"new\"}} {}\n\
         tollguard_records_total{{result=\"duplicate\"}} {}\n\
         # HELP tollguard_alerts_total Alerts raised, by severity.\n\
         # TYPE tollguard_alerts_total counter\n\
         tollguard_alerts_total{{severity=\"warning\"}} {}\n\
         tollguard_alerts_total{{severity=\"critical\"}} {}\n\
         # HELP tollguard_cuts_total Running calls the engine asked to end.\n\
         # TYPE tollguard_cuts_total counter\n\
         tollguard_cuts_total {}\n\
         # HELP tollguard_cuts_failed_total Cuts the switch could not be asked for, or refused.\n\
         # TYPE tollguard_cuts_failed_total counter\n\
         tollguard_cuts_failed_total {}\n\
         # HELP tollguard_lost_calls_total Calls closed because their end never arrived.\n\
         # TYPE tollguard_lost_calls_total counter\n\
         tollguard_lost_calls_total {}\n\
         # HELP tollguard_authorize_time_skewed_total Authorizations whose time was more than 5 minutes from the server's clock.\n\
         # TYPE tollguard_authorize_time_skewed_total counter\n\
         tollguard_authorize_time_skewed_total {}\n\
         # HELP tollguard_authorize_call_id_reused_total Authorizations denied because their call id belonged to another call still running.\n\
         # TYPE tollguard_authorize_call_id_reused_total counter\n\
         tollguard_authorize_call_id_reused_total {}\n\
         # HELP tollguard_store_batches_failed_total Writer transactions that failed (their writes were then stored one at a time).\n\
         # TYPE tollguard_store_batches_failed_total counter\n\
         tollguard_store_batches_failed_total {}\n\
         # HELP tollguard_store_writes_lost_total Writes (events, decisions, alerts, records, audit entries) the store did not take, each said on stderr.\n\
         # TYPE tollguard_store_writes_lost_total counter\n\
         tollguard_store_writes_lost_total {}\n\
         # HELP tollguard_store_failing 1 while the writer is waiting to try again a write the database could not take.\n\
         # TYPE tollguard_store_failing gauge\n\
         tollguard_store_failing {}\n\
         # HELP tollguard_snapshot_written_timestamp_seconds When the snapshot file last held the state (Unix time; 0: not since the start).\n\
         # TYPE tollguard_snapshot_written_timestamp_seconds gauge\n\
         tollguard_snapshot_written_timestamp_seconds {}\n\
         # HELP tollguard_snapshot_failures_total Snapshot writes (or their reads of the log) that failed, each said on stderr.\n\
         # TYPE tollguard_snapshot_failures_total counter\n\
         tollguard_snapshot_failures_total {}\n\
         # HELP tollguard_retention_deleted_rows_total Rows deleted from the store as past [server] retention.\n\
         # TYPE tollguard_retention_deleted_rows_total counter\n\
         tollguard_retention_deleted_rows_total {}\n\
         # HELP tollguard_retention_failures_total Prunings of the store that failed, each said on stderr.\n\
         # TYPE tollguard_retention_failures_total counter\n\
         tollguard_retention_failures_total {}\n\
         # HELP tollguard_retention_before_timestamp_seconds Rows from before this time were deleted by the last pruning (Unix time; 0: none since the start, or no retention).\n\
         # TYPE tollguard_retention_before_timestamp_seconds gauge\n\
         tollguard_retention_before_timestamp_seconds {}\n\
         # HELP tollguard_running_calls Calls allowed and not ended.\n\
         # TYPE tollguard_running_calls gauge\n\
         tollguard_running_calls {running}\n\
         # HELP tollguard_accounts Accounts with state.\n\
         # TYPE tollguard_accounts gauge\n\
         tollguard_accounts {accounts}\n",
        g(&m.allowed),
        g(&m.denied),
        g(&m.authorize_ns) as f64 / 1e9,
        g(&m.answers),
        g(&m.ends),
        g(&m.records_new),
        g(&m.records_duplicate),
        g(&m.alerts_warning),
        g(&m.alerts_critical),
        g(&m.cuts),
        s.cut_failures.load(Ordering::Relaxed),
        g(&m.lost_calls),
        g(&m.skewed),
        g(&m.reused_call_ids),
        g(&s.store_health.batches_failed),
        g(&s.store_health.writes_lost),
        u8::from(s.store_health.failing.load(Ordering::Relaxed)),
        s.snapshot_health.written.load(Ordering::Relaxed),
        g(&s.snapshot_health.failures),
        g(&s.retention_health.deleted),
        g(&s.retention_health.failures),
        s.retention_health.before.load(Ordering::Relaxed),
    )
}

/// `POST /v1/authorize`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The switch's call id.
    pub call_id: String,
    /// The account charged.
    pub account: String,
    /// The calling extension; default: `from`.
    pub extension: Option<String>,
    /// The trunk the call leaves by, if known (a channel name for direction rules).
    pub trunk: Option<String>,
    /// The caller.
    pub from: String,
    /// The number dialled, as dialled.
    pub to: String,
    /// When the call started (RFC 3339); default: the server's clock.
    pub time: Option<String>,
}

/// The answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuthorizeResponse {
    /// The call id.
    pub call_id: String,
    /// Whether the call may go ahead.
    pub allow: bool,
    /// The most talk time it may have; null: no cap.
    pub max_duration_s: Option<u32>,
    /// Rules that decided or capped it.
    pub rules: Vec<String>,
    /// The figures behind them.
    pub explanation: Vec<String>,
}

/// A time as sent (RFC 3339 with offset), or `now` when none was.
pub(crate) fn parse_time(t: Option<&str>, now: Timestamp) -> ApiResult<Timestamp> {
    match t {
        None => Ok(now),
        Some(s) => s
            .parse::<Timestamp>()
            .map_err(|e| ApiError::bad(format!("time: not an RFC 3339 time with offset: {s:?} ({e})"))),
    }
}

/// What an authorization asked, as one number: a retransmission asks the same.
fn request_key(req: &AuthorizeRequest, extension: &str) -> u64 {
    let trunk = req.trunk.as_deref().unwrap_or("");
    tollguard_engine::fnv1a_parts(&[&req.account, extension, &req.from, &req.to, trunk])
}

fn nonempty(field: &str, v: &str) -> ApiResult<()> {
    if v.trim().is_empty() {
        Err(ApiError::bad(format!("{field} must not be empty")))
    } else {
        Ok(())
    }
}

async fn authorize(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<AuthorizeResponse>> {
    auth::require(&s, &headers, auth::Need::Integration)?;
    let req: AuthorizeRequest = parse_json(&body)?;
    nonempty("call_id", &req.call_id)?;
    nonempty("account", &req.account)?;
    nonempty("to", &req.to)?;
    let clock = s.now();
    let now = parse_time(req.time.as_deref(), clock)?;
    let skew = now.duration_since(clock);
    if skew.abs() > CLOCK_SKEW {
        s.metrics.skewed.fetch_add(1, Ordering::Relaxed);
        let last = s.metrics.skew_warned.load(Ordering::Relaxed);
        if clock.as_second().saturating_sub(last) >= 60
            && s.metrics
                .skew_warned
                .compare_exchange(last, clock.as_second(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            eprintln!(
                "warning: call {}: its time {now} is {} s {} tollguard's clock; decisions use it (night rules, windows). \
                 Check the switch's clock, or leave `time` out",
                req.call_id,
                skew.as_secs().abs(),
                if skew.is_negative() { "behind" } else { "ahead of" },
            );
        }
    }
    let started = std::time::Instant::now();
    let extension = req.extension.as_deref().unwrap_or(&req.from);
    let attempt = Attempt {
        call_id: &req.call_id,
        account: &req.account,
        extension,
        dialled: &req.to,
        channel: "",
        dst_channel: req.trunk.as_deref().unwrap_or(""),
        context: "",
        rated: None,
    };
    let mut effects = vec![];
    // One critical section: a retransmission racing the first ask gets the first answer.
    let rate;
    let answer = {
        let mut core = s.core.lock().expect("engine lock");
        // The same call id again. A retransmission of the same request, while the call has not
        // been answered, gets the same answer. Another request under the id of a call still
        // running is another call (a caller picks its SIP Call-ID): denied, so that it cannot
        // share the first call's answer and go uncounted. Under the id of a call that has ended
        // (an INVITE sent again after a 407 challenge keeps its Call-ID), it is a new attempt.
        let key = request_key(&req, extension);
        let running = core.live.get(&req.call_id).map(|l| l.answered.is_none());
        if let Some((_, answer, k)) = core.decided.get(&req.call_id) {
            if *k == key && (!answer.allow || running == Some(true)) {
                return Ok(Json(answer.clone()));
            }
        }
        if running.is_some() {
            // Emergency numbers are never denied (nothing to count: they cost nothing).
            let emergency = core.engine.rater().account(&req.account).plan.normalise(&req.to)
                == tollguard_core::numbering::Dialled::Emergency;
            // Said as a warning (at most one an hour per account): the denial is not a decision
            // of its own (the id's stored decision is the running call's), and an integration
            // that reuses ids, or a caller forging them, is for someone to look at.
            let clock = s.now();
            let quiet = core
                .reused_alerted
                .get(&req.account)
                .is_some_and(|t| clock.duration_since(*t) < REUSED_ALERT_QUIET);
            if !emergency && !quiet {
                core.reused_alerted.insert(req.account.clone(), clock);
                let tz = core.engine.rater().account(&req.account).tz.clone();
                let first = core.live.get(&req.call_id).map(|l| l.account.clone()).unwrap_or_default();
                effects.push(Effect::Alert(tollguard_engine::Alert {
                    time: tollguard_engine::alert_time(now, tz),
                    account: req.account.clone(),
                    extension: extension.to_string(),
                    severity: Severity::Warning,
                    rule: "integration.call_id_reused".into(),
                    action: tollguard_engine::AlertAction::Deny,
                    call_id: req.call_id.clone(),
                    message: format!(
                        "a call from {extension} to {} was denied: its call id {} belongs to a call of {first} still \
                         running. Each call needs its own id: check the integration, or whoever sends these requests \
                         (at most one such alert an hour per account)",
                        req.to, req.call_id
                    ),
                }));
            }
            drop(core);
            s.store_effects(&mut effects);
            if emergency {
                s.metrics.allowed.fetch_add(1, Ordering::Relaxed);
                return Ok(Json(AuthorizeResponse {
                    call_id: req.call_id.clone(),
                    allow: true,
                    max_duration_s: None,
                    rules: vec!["emergency".into()],
                    explanation: vec![format!("{} is an emergency number: always allowed", req.to)],
                }));
            }
            s.metrics.denied.fetch_add(1, Ordering::Relaxed);
            s.metrics.reused_call_ids.fetch_add(1, Ordering::Relaxed);
            return Ok(Json(AuthorizeResponse {
                call_id: req.call_id.clone(),
                allow: false,
                max_duration_s: None,
                rules: vec!["call_id_reused".into()],
                explanation: vec![format!(
                    "call id {} belongs to a call still running: each call needs its own id (only a \
                     retransmission of the same request, before the answer, gets the same answer)",
                    req.call_id
                )],
            }));
        }
        core.handle(Event::Attempt(attempt), now, &mut effects);
        let d = take_decision(&mut effects).ok_or_else(|| ApiError::internal("no decision"))?;
        core.traffic.attempt(s.now(), d.allowed);
        if d.allowed {
            core.live.insert(
                req.call_id.clone(),
                Live {
                    account: req.account.clone(),
                    attempted: now,
                    answered: None,
                    cap: d.max_duration_s,
                    kamailio: None,
                },
            );
        }
        rate = d.rate_per_minute_units;
        let answer = AuthorizeResponse {
            call_id: req.call_id.clone(),
            allow: d.allowed,
            max_duration_s: d.max_duration_s,
            rules: d.rules,
            explanation: d.explanation,
        };
        // Kept by the server's clock (not the request's `time`), so they expire in order.
        let kept = s.now();
        core.decided.insert(req.call_id.clone(), (kept, answer.clone(), key));
        core.decided_order.push_back((kept, req.call_id.clone()));
        // Logged under the engine lock, so the log keeps the order the engine saw (a rebuild
        // replays it in that order); alerts first: an alert opens the account's incident,
        // which the denial then joins.
        s.send_alerts(&mut effects);
        let attempt = serde_json::to_string(&StoredAttempt {
            call_id: &req.call_id,
            account: &req.account,
            extension,
            dialled: &req.to,
            trunk: req.trunk.as_deref(),
        })
        .unwrap_or_default();
        let decision = serde_json::to_string(&StoredDecision {
            call_id: &answer.call_id,
            account: &req.account,
            extension,
            from: &req.from,
            to: &req.to,
            time: now.to_string(),
            allow: answer.allow,
            max_duration_s: answer.max_duration_s,
            rules: &answer.rules,
            explanation: &answer.explanation,
            rate_per_minute_units: rate,
        })
        .unwrap_or_default();
        s.send(Write::Authorized {
            time_ns: ns(now),
            attempt,
            call_id: req.call_id.clone(),
            account: req.account.clone(),
            decision,
        });
        answer
    };
    let m = &s.metrics;
    m.authorize_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    if answer.allow { &m.allowed } else { &m.denied }.fetch_add(1, Ordering::Relaxed);
    s.store_effects(&mut effects);
    Ok(Json(answer))
}

/// An attempt in the event log.
#[derive(Serialize)]
struct StoredAttempt<'a> {
    call_id: &'a str,
    account: &'a str,
    extension: &'a str,
    dialled: &'a str,
    trunk: Option<&'a str>,
}

/// A decision as `GET /v1/decisions/{id}` shows it.
#[derive(Serialize)]
struct StoredDecision<'a> {
    call_id: &'a str,
    account: &'a str,
    extension: &'a str,
    from: &'a str,
    to: &'a str,
    time: String,
    allow: bool,
    max_duration_s: Option<u32>,
    rules: &'a [String],
    explanation: &'a [String],
    /// The destination's price per minute, ten-thousandths.
    rate_per_minute_units: Option<i64>,
}

/// The decision among the effects of one attempt (the engine gives one for each attempt).
fn take_decision(effects: &mut Vec<Effect>) -> Option<Decision> {
    let i = effects.iter().position(|e| matches!(e, Effect::Decision(_)))?;
    match effects.remove(i) {
        Effect::Decision(d) => Some(d),
        _ => None,
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

/// A request body whose fields are all optional: an empty body is the default.
pub(crate) fn parse_json_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.is_empty() {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

/// `POST /v1/calls/{id}/answer`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerRequest {
    time: Option<String>,
    /// Kamailio's `$dlg(h_entry)` and `$dlg(h_id)`: lets tollguard end the call through
    /// Kamailio's JSON-RPC (`dlg.end_dlg`) when a limit is crossed while it runs.
    kamailio_h_entry: Option<u64>,
    kamailio_h_id: Option<u64>,
}

async fn answer(
    State(s): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    auth::require(&s, &headers, auth::Need::Integration)?;
    let req: AnswerRequest = parse_json_or_default(&body)?;
    let now = parse_time(req.time.as_deref(), s.now())?;
    let mut effects = vec![];
    {
        let mut core = s.core.lock().expect("engine lock");
        let Some(l) = core.live.get_mut(&call_id) else {
            return Err(ApiError::not_found(format!(
                "call {call_id} is not running (never allowed, or ended)"
            )));
        };
        l.answered.get_or_insert(now);
        if let (Some(e), Some(i)) = (req.kamailio_h_entry, req.kamailio_h_id) {
            l.kamailio = Some((e, i));
        }
        core.handle(Event::Answer { call_id: &call_id }, now, &mut effects);
        // Logged under the engine lock: the log keeps the order the engine saw (a rebuild
        // replays it in that order).
        let payload = json!({ "call_id": call_id, "kamailio_h_entry": req.kamailio_h_entry, "kamailio_h_id": req.kamailio_h_id });
        s.send(Write::Event { time_ns: ns(now), kind: "answer", payload: payload.to_string() });
    }
    s.metrics.answers.fetch_add(1, Ordering::Relaxed);
    s.store_effects(&mut effects);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/calls/{id}/end`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndRequest {
    billsec: Option<u32>,
    disposition: Option<String>,
    time: Option<String>,
}

async fn end(
    State(s): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    auth::require(&s, &headers, auth::Need::Integration)?;
    let req: EndRequest = parse_json_or_default(&body)?;
    let now = parse_time(req.time.as_deref(), s.now())?;
    let mut effects = vec![];
    {
        let mut core = s.core.lock().expect("engine lock");
        if core.live.remove(&call_id).is_none() {
            return Err(ApiError::not_found(format!(
                "call {call_id} is not running (never allowed, or ended)"
            )));
        }
        core.handle(Event::End { call_id: &call_id, billsec: req.billsec }, now, &mut effects);
        let payload = json!({ "call_id": call_id, "billsec": req.billsec, "disposition": req.disposition });
        s.send(Write::Event { time_ns: ns(now), kind: "end", payload: payload.to_string() });
    }
    s.metrics.ends.fetch_add(1, Ordering::Relaxed);
    s.store_effects(&mut effects);
    Ok(StatusCode::NO_CONTENT)
}

async fn account(
    State(s): State<Arc<AppState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth::require(&s, &headers, auth::Need::Read(&account))?;
    let now = s.now();
    let (report, running) = {
        let mut core = s.core.lock().expect("engine lock");
        let running: Vec<serde_json::Value> = core
            .live
            .iter()
            .filter(|(_, l)| l.account == account)
            .map(|(id, l)| {
                json!({ "call_id": id, "attempted": l.attempted.to_string(),
                        "answered": l.answered.map(|a| a.to_string()), "max_duration_s": l.cap })
            })
            .collect();
        (core.engine.account_report(&account, now), running)
    };
    let report = report.ok_or_else(|| ApiError::not_found(format!("account {account} has no calls yet")))?;
    let mut v = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    v["calls"] = serde_json::Value::Array(running);
    Ok(Json(v).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsRequest {
    limits: Vec<tollguard_engine::policy::LimitSpec>,
}

/// Validates an account's limits as sent; a customer's may only be stricter than the limits in
/// force that it did not set itself (the policy's and the operator's: its ceiling).
pub(crate) fn validate_limits(
    engine: &Engine,
    account: &str,
    owner: tollguard_engine::LimitOwner,
    specs: &[tollguard_engine::policy::LimitSpec],
) -> Result<Vec<tollguard_engine::Limit>, String> {
    let mut limits = vec![];
    for (i, spec) in specs.iter().enumerate() {
        if !spec.accounts.is_empty() {
            return Err(format!(
                "limits[{i}] ({}): accounts: not allowed here (the limit is the account's)",
                spec.name
            ));
        }
        let l = tollguard_engine::Limit::from_spec(spec)
            .map_err(|e| format!("limits[{i}] ({}): {e}", spec.name))?;
        if owner == tollguard_engine::LimitOwner::Customer {
            let customer = engine.account_limits(account, tollguard_engine::LimitOwner::Customer);
            for ceiling in engine.limits_in_force(account) {
                if customer.iter().any(|c| std::ptr::eq(*c, ceiling)) {
                    continue; // its own earlier limits are being replaced
                }
                let same = ceiling.metric == l.metric
                    && ceiling.window == l.window
                    && ceiling.scope == l.scope
                    && ceiling.filter == l.filter
                    && !ceiling.report_only;
                if same && l.max > ceiling.max {
                    return Err(format!(
                        "limits[{i}] ({}): {} is above {} ({}): a customer's limit can only be stricter",
                        l.name,
                        l.show(l.max),
                        ceiling.name,
                        ceiling.show(ceiling.max)
                    ));
                }
            }
        }
        limits.push(l);
    }
    Ok(limits)
}

async fn put_limits(
    State(s): State<Arc<AppState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let scope = auth::require(&s, &headers, auth::Need::Read(&account))?;
    let owner = match scope {
        Scope::Operator => tollguard_engine::LimitOwner::Operator,
        Scope::Customer(_) => tollguard_engine::LimitOwner::Customer,
        Scope::Integration => return Err(auth::forbidden()),
    };
    let req: LimitsRequest = parse_json(&body)?;
    let now = s.now();
    let mut effects = vec![];
    let report = {
        let mut core = s.core.lock().expect("engine lock");
        let limits = validate_limits(&core.engine, &account, owner, &req.limits).map_err(ApiError::bad)?;
        let cmd = Command::SetLimits { account: account.clone(), owner, limits };
        core.handle(Event::Command(cmd), now, &mut effects);
        let payload =
            json!({ "command": "limits", "account": account, "owner": owner, "limits": req.limits });
        s.send(Write::Event { time_ns: ns(now), kind: "command", payload: payload.to_string() });
        s.audit(&auth::who(&s, &headers), "limits", &account, payload);
        core.engine.account_report(&account, now)
    };
    s.store_effects(&mut effects);
    Ok(Json(report).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    extension: Option<String>,
    /// RFC 3339; absent (and no `duration_s`): until unblocked.
    until: Option<String>,
    /// For this many seconds from now by the service's clock (instead of `until`).
    duration_s: Option<u32>,
    reason: Option<String>,
    /// Only calls to these countries (ISO alpha-2) ...
    #[serde(default)]
    countries: Vec<String>,
    /// ... or risk tiers ...
    #[serde(default)]
    risk: Vec<String>,
    /// ... or E.164 prefixes (`+4930` or `4930`); all empty: every destination.
    #[serde(default)]
    prefixes: Vec<String>,
}

/// The destinations of a block request, validated; `None`: all destinations.
pub(crate) fn block_destinations(
    countries: &[String],
    risk: &[String],
    prefixes: &[String],
) -> Result<Option<tollguard_engine::Destinations>, String> {
    let d = tollguard_engine::Destinations::parse(countries, risk, prefixes, false)?;
    Ok((!d.is_empty()).then_some(d))
}

async fn block(
    State(s): State<Arc<AppState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    auth::require(&s, &headers, auth::Need::Operator)?;
    let who = auth::who(&s, &headers);
    let req: BlockRequest = parse_json_or_default(&body)?;
    let until = match (req.until.as_deref(), req.duration_s) {
        (Some(_), Some(_)) => return Err(ApiError::bad("give until or duration_s, not both")),
        (Some(u), None) => Some(parse_time(Some(u), Timestamp::UNIX_EPOCH)?),
        (None, Some(0)) => return Err(ApiError::bad("duration_s must be at least 1")),
        (None, Some(d)) => Some(s.now() + jiff::SignedDuration::from_secs(d.into())),
        (None, None) => None,
    };
    let reason = req.reason.unwrap_or_else(|| format!("by {who}"));
    let destinations = block_destinations(&req.countries, &req.risk, &req.prefixes).map_err(ApiError::bad)?;
    let cmd = Command::Block {
        account: account.clone(),
        extension: req.extension.clone(),
        until,
        reason: reason.clone(),
        destinations,
    };
    let payload = json!({ "command": "block", "account": account, "extension": req.extension,
                          "until": until.map(|u| u.to_string()), "reason": reason,
                          "countries": req.countries, "risk": req.risk, "prefixes": req.prefixes });
    command(&s, &who, "block", &account, cmd, payload.to_string());
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnblockRequest {
    extension: Option<String>,
}

async fn unblock(
    State(s): State<Arc<AppState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    // An operator lifts every block; the account's customer only those of the limits it set.
    let by = match auth::require(&s, &headers, auth::Need::Read(&account))? {
        Scope::Operator => Unblocker::Operator,
        Scope::Customer(_) => Unblocker::Customer,
        Scope::Integration => return Err(auth::forbidden()),
    };
    let req: UnblockRequest = parse_json_or_default(&body)?;
    let cmd = Command::Unblock { account: account.clone(), extension: req.extension.clone(), by };
    let payload = json!({ "command": "unblock", "account": account, "extension": req.extension,
                          "by": if by == Unblocker::Customer { "customer" } else { "operator" } });
    command(&s, &auth::who(&s, &headers), "unblock", &account, cmd, payload.to_string());
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn command(
    s: &AppState,
    who: &str,
    action: &'static str,
    account: &str,
    cmd: Command,
    payload: String,
) {
    let now = s.now();
    let mut effects = vec![];
    {
        let mut core = s.core.lock().expect("engine lock");
        core.handle(Event::Command(cmd), now, &mut effects);
        s.send(Write::Event { time_ns: ns(now), kind: "command", payload: payload.clone() });
    }
    // The blocks it set or lifted are this entry, not automatic actions.
    effects.retain(|e| !matches!(e, Effect::Block { .. } | Effect::Unblock { .. }));
    s.audit(who, action, account, serde_json::from_str(&payload).unwrap_or_default());
    s.store_effects(&mut effects);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    after: Option<i64>,
    limit: Option<u32>,
    account: Option<String>,
}

async fn alerts(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AlertsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let scope = auth::scope(&s, &headers)?;
    let account = match &scope {
        Scope::Customer(own) => {
            if q.account.as_ref().is_some_and(|a| a != own) {
                return Err(auth::forbidden());
            }
            Some(own.clone())
        }
        Scope::Operator => q.account.clone(),
        Scope::Integration => return Err(auth::forbidden()),
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = s.read(move |r| r.alerts(account.as_deref(), q.after.unwrap_or(0), limit)).await?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            let mut v: serde_json::Value = serde_json::from_str(&r.json).unwrap_or_default();
            v["id"] = json!(r.id);
            v
        })
        .collect();
    Ok(Json(json!({ "alerts": items })))
}

async fn decision(
    State(s): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let scope = auth::scope(&s, &headers)?;
    if scope == Scope::Integration {
        return Err(auth::forbidden());
    }
    // A decision made a moment ago may still be on its way to the store.
    flush(&s).await;
    let id = call_id.clone();
    let row = s.read(move |r| r.decision(&id)).await?;
    let Some((account, json)) = row else {
        return Err(ApiError::not_found(format!("no decision for call {call_id}")));
    };
    if let Scope::Customer(own) = &scope {
        if *own != account {
            return Err(ApiError::not_found(format!("no decision for call {call_id}")));
        }
    }
    Ok(Json(serde_json::from_str(&json).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database file in the temporary folder.
    fn temp_db(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::Builder::new().prefix(&format!("tollguard-writer-{name}-")).tempdir().unwrap();
        let db = dir.path().join("store.db");
        (dir, db)
    }

    fn authorized(call_id: &str) -> Write {
        Write::Authorized {
            time_ns: 1_767_600_000_000_000_000,
            attempt: format!(r#"{{"call_id":"{call_id}"}}"#),
            call_id: call_id.into(),
            account: "acct1".into(),
            decision: format!(r#"{{"call_id":"{call_id}","allow":true}}"#),
        }
    }

    /// acct1's call `call_id` denied at `time_ns`, with `more` fields in its decision (`,"k":v`).
    fn denied(call_id: &str, time_ns: i64, more: &str) -> Write {
        Write::Authorized {
            time_ns,
            attempt: "{}".into(),
            call_id: call_id.into(),
            account: "acct1".into(),
            decision: format!(r#"{{"call_id":"{call_id}","allow":false,"rules":["x"]{more}}}"#),
        }
    }

    /// `units` charged to acct1.
    fn charged(units: i64) -> Write {
        Write::Charged { account: "acct1".into(), units }
    }

    /// A store of its own with an open incident of acct1 (its data `data`): the folder (removed
    /// when dropped), the file, the store and the incident's id.
    fn with_incident(name: &str, data: &str) -> (tempfile::TempDir, std::path::PathBuf, Store, i64) {
        let (dir, db) = temp_db(name);
        let mut store = Store::open(&db).unwrap();
        let id = store.batch(|b| b.open_incident("acct1", 1, data)).unwrap();
        (dir, db, store, id)
    }

    /// Runs the writer over `writes` (one batch: all are queued before it starts) to the end.
    fn run_writer(store: Store, writes: Vec<Write>) -> (Arc<StoreHealth>, Vec<i64>) {
        let (tx, rx) = mpsc::channel();
        for w in writes {
            tx.send(w).unwrap();
        }
        tx.send(Write::Shutdown).unwrap();
        let (feed, mut published) = tokio::sync::broadcast::channel(16);
        let health = Arc::new(StoreHealth::default());
        write_loop(store, rx, Clock::wall(), feed, health.clone(), STORE_RETRY_FOR);
        let mut ids = vec![];
        while let Ok(item) = published.try_recv() {
            ids.push(item.id);
        }
        (health, ids)
    }

    fn decided(db: &std::path::Path) -> Vec<String> {
        let c = rusqlite::Connection::open(db).unwrap();
        let mut q = c.prepare("SELECT call_id FROM decisions ORDER BY call_id").unwrap();
        let ids = q.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
        ids
    }

    #[test]
    fn a_write_the_database_refuses_loses_only_itself() {
        let (_dir, db) = temp_db("refused");
        let store = Store::open(&db).unwrap();
        refuse_decision(&db, "c-2");
        let alert =
            Write::Alert { account: "acct1".into(), json: r#"{"account":"acct1"}"#.into(), targets: vec![] };
        let (health, published) =
            run_writer(store, vec![authorized("c-1"), authorized("c-2"), alert, authorized("c-3")]);
        assert_eq!(decided(&db), ["c-1", "c-3"]);
        let c = rusqlite::Connection::open(&db).unwrap();
        let attempts: i64 =
            c.query_row("SELECT count(*) FROM events WHERE kind = 'attempt'", [], |r| r.get(0)).unwrap();
        assert_eq!(attempts, 2, "c-2's attempt went with its decision");
        let alerts: i64 = c.query_row("SELECT count(*) FROM alerts", [], |r| r.get(0)).unwrap();
        assert_eq!((alerts, published.len()), (1, 1), "the alert is stored, then published");
        assert_eq!(health.batches_failed.load(Ordering::Relaxed), 1);
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 1);
        assert!(!health.failing.load(Ordering::Relaxed));
    }

    /// The writer on its own thread, as the server runs it.
    fn spawn_writer(
        store: Store,
        retry_for: Duration,
    ) -> (mpsc::Sender<Write>, std::thread::JoinHandle<()>, Arc<StoreHealth>) {
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(StoreHealth::default());
        let h = health.clone();
        let feed = tokio::sync::broadcast::channel(16).0;
        let t = std::thread::spawn(move || write_loop(store, rx, Clock::wall(), feed, h, retry_for));
        (tx, t, health)
    }

    /// Sends a flush and waits until the writer has handled everything before it.
    fn flushed(tx: &mpsc::Sender<Write>) {
        let (done, wait) = tokio::sync::oneshot::channel();
        tx.send(Write::Flush(done)).unwrap();
        wait.blocking_recv().unwrap();
    }

    /// Holds the write lock from another connection for `hold`, from when this returns.
    fn lock_for(db: &std::path::Path, hold: Duration) -> std::thread::JoinHandle<()> {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let db = db.to_path_buf();
        let t = std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("BEGIN EXCLUSIVE; INSERT OR REPLACE INTO checkpoints VALUES ('held', 'x');")
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(hold);
            c.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        t
    }

    fn refuse_decision(db: &std::path::Path, call_id: &str) {
        rusqlite::Connection::open(db)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON decisions WHEN NEW.call_id = '{call_id}'
                 BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;"
            ))
            .unwrap();
    }

    #[test]
    fn a_failed_batch_does_not_leave_its_incident_bookkeeping_behind() {
        // acct1 has an open incident; a batch denies c-1, resolves the incident, and has a write
        // the database refuses: stored one at a time, c-1's denial still counts in the incident.
        let (_dir, db, store, id) = with_incident("incident", "{}");
        refuse_decision(&db, "c-2");
        let (done, _answer) = tokio::sync::oneshot::channel();
        let resolve =
            Write::IncidentStep { id, to: "resolved", by: "noc".into(), reason: "test".into(), done };
        let (health, _) = run_writer(store, vec![denied("c-1", 2, ""), resolve, authorized("c-2")]);
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 1);
        let incident = Store::open(&db).unwrap().incident(id).unwrap().unwrap();
        assert_eq!(incident.state, "resolved");
        assert!(incident.data.contains(r#""denials":1"#), "{}", incident.data);
    }

    #[test]
    fn an_incident_changed_many_times_in_one_batch_keeps_every_change() {
        // The writer keeps the incident in memory and writes it once per transaction: what an
        // operator's step in the middle of the batch writes must not be lost, nor what came
        // before or after it.
        let (_dir, db, store, id) = with_incident("incident-batch", r#"{"history":[]}"#);
        const RATE: &str = r#","rate_per_minute_units":7"#;
        let (done, answer) = tokio::sync::oneshot::channel();
        let ack =
            Write::IncidentStep { id, to: "acknowledged", by: "noc".into(), reason: "seen".into(), done };
        let (health, _) = run_writer(
            store,
            vec![denied("c-1", 2, RATE), charged(100), ack, denied("c-2", 3, RATE), charged(50)],
        );
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 0);
        assert_eq!(answer.blocking_recv().unwrap(), Ok(Ok("acct1".to_string())));
        let incident = Store::open(&db).unwrap().incident(id).unwrap().unwrap();
        assert_eq!(incident.state, "acknowledged");
        let d: serde_json::Value = serde_json::from_str(&incident.data).unwrap();
        assert_eq!(d["denials"], 2, "{d}");
        assert_eq!(d["refused_rate_units"], 14, "{d}");
        assert_eq!(d["exposure_units"], 150, "{d}");
        assert_eq!(
            (d["first_denial"]["call_id"].as_str(), d["last_denial"]["call_id"].as_str()),
            (Some("c-1"), Some("c-2"))
        );
        assert_eq!(d["history"][0]["state"], "acknowledged", "{d}");
        assert!(incident.updated_ns > 3, "the last change's time: {}", incident.updated_ns);
    }

    #[test]
    fn a_failed_batch_counts_each_change_of_an_incident_once() {
        // The batch changes the incident in memory, then fails on a refused write; stored again
        // one write at a time from what the store holds, each denial and charge counts once.
        let (_dir, db, store, id) = with_incident("incident-retry", "{}");
        refuse_decision(&db, "c-2");
        let (health, _) = run_writer(
            store,
            vec![denied("c-1", 2, ""), charged(100), authorized("c-2"), denied("c-3", 2, ""), charged(50)],
        );
        assert_eq!(health.batches_failed.load(Ordering::Relaxed), 1);
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 1);
        let d: serde_json::Value =
            serde_json::from_str(&Store::open(&db).unwrap().incident(id).unwrap().unwrap().data).unwrap();
        assert_eq!((d["denials"].as_i64(), d["exposure_units"].as_i64()), (Some(2), Some(150)), "{d}");
    }

    #[test]
    fn a_refused_write_does_not_shorten_the_wait_for_a_later_lock() {
        let (_dir, db) = temp_db("stale");
        let store = Store::open(&db).unwrap();
        store.set_busy_timeout(Duration::from_millis(100)).unwrap();
        refuse_decision(&db, "c-0");
        let (tx, writer, health) = spawn_writer(store, Duration::from_secs(2));
        tx.send(authorized("c-0")).unwrap();
        flushed(&tx);
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 1);
        // Longer than the retry time later, the database is locked for half a second.
        std::thread::sleep(Duration::from_millis(2500));
        let holder = lock_for(&db, Duration::from_millis(500));
        tx.send(authorized("c-1")).unwrap();
        flushed(&tx);
        holder.join().unwrap();
        tx.send(Write::Shutdown).unwrap();
        writer.join().unwrap();
        assert_eq!(decided(&db), ["c-1"], "c-1 waited for the lock");
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn past_the_retry_time_a_batch_is_given_up_at_once_and_the_next_one_tries_again() {
        let (_dir, db) = temp_db("give-up");
        let store = Store::open(&db).unwrap();
        store.set_busy_timeout(Duration::from_millis(100)).unwrap();
        let (tx, writer, health) = spawn_writer(store, Duration::from_millis(300));
        let holder = lock_for(&db, Duration::from_millis(1500));
        let started = std::time::Instant::now();
        for id in ["c-1", "c-2", "c-3"] {
            tx.send(authorized(id)).unwrap();
        }
        flushed(&tx);
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 3);
        assert!(started.elapsed() < Duration::from_millis(1400), "given up without waiting for each");
        holder.join().unwrap();
        tx.send(authorized("c-4")).unwrap();
        flushed(&tx);
        tx.send(Write::Shutdown).unwrap();
        writer.join().unwrap();
        assert_eq!(decided(&db), ["c-4"]);
        assert!(!health.failing.load(Ordering::Relaxed));
    }

    #[test]
    fn a_flush_with_nothing_to_store_before_it_does_not_wait_for_the_write_lock() {
        // (A reload flushes under the engine's lock: it must not wait for a pruning's chunk.)
        let (_dir, db) = temp_db("flush-locked");
        let (tx, writer, _) = spawn_writer(Store::open(&db).unwrap(), STORE_RETRY_FOR);
        tx.send(authorized("c-1")).unwrap();
        flushed(&tx);
        let holder = lock_for(&db, Duration::from_millis(1000));
        let started = std::time::Instant::now();
        flushed(&tx);
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        holder.join().unwrap();
        tx.send(Write::Shutdown).unwrap();
        writer.join().unwrap();
        assert_eq!(decided(&db), ["c-1"]);
    }

    #[test]
    fn writes_wait_out_a_locked_database() {
        let (_dir, db) = temp_db("locked");
        let store = Store::open(&db).unwrap();
        store.set_busy_timeout(Duration::from_millis(100)).unwrap();
        // Another connection holds the write lock for a second.
        let holder = lock_for(&db, Duration::from_millis(1000));
        let (tx, writer, health) = spawn_writer(store, STORE_RETRY_FOR);
        for id in ["c-1", "c-2", "c-3"] {
            tx.send(authorized(id)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(600));
        assert!(health.failing.load(Ordering::Relaxed), "the gauge shows the wait");
        holder.join().unwrap();
        tx.send(Write::Shutdown).unwrap();
        writer.join().unwrap();
        assert_eq!(decided(&db), ["c-1", "c-2", "c-3"], "nothing lost");
        assert_eq!(health.batches_failed.load(Ordering::Relaxed), 1);
        assert_eq!(health.writes_lost.load(Ordering::Relaxed), 0);
        assert!(!health.failing.load(Ordering::Relaxed), "not failing once stored");
    }

    #[test]
    fn post_addresses_read_with_their_default_ports() {
        let u = |s| parse_url(s).map(|u| (u.https, u.host.to_string(), u.port, u.path));
        assert_eq!(u("http://127.0.0.1:5071/RPC"), Ok((false, "127.0.0.1".into(), 5071, "/RPC".into())));
        assert_eq!(
            u("https://hooks.example.com/services/T0/B1"),
            Ok((true, "hooks.example.com".into(), 443, "/services/T0/B1".into()))
        );
        assert_eq!(u("http://noc.example"), Ok((false, "noc.example".into(), 80, "/".into())));
        assert_eq!(u("https://[::1]:8443/hook"), Ok((true, "::1".into(), 8443, "/hook".into())));
        assert_eq!(u("https://[::1]/hook"), Ok((true, "::1".into(), 443, "/hook".into())));
        assert!(u("ftp://x/y").unwrap_err().contains("not an http:// or https://"));
        assert!(u("http://x:http/y").unwrap_err().contains("bad port"));
        assert!(u("https:///y").unwrap_err().contains("no host"));
    }
}
