//! Snapshots of the state rebuilt from the event log, so that a start reads only the log's tail.
//!
//! A start handles the whole event log again (the state is a function of it, with the
//! configuration): about 25 s per month of a busy company PBX's history, 45 min per month of a
//! carrier's at 100 calls/s. A snapshot file beside the database (`DATABASE.snapshot`) holds
//! the rebuilt state at some position of the log: the engine ([`Engine::snapshot`]), the
//! overview's traffic figures and the calls running. A start restores it and handles the
//! events after that position only.
//!
//! A snapshot is used only when it is surely the state a rebuild would reach: it names the
//! build that wrote it and the configuration it was rebuilt with (a fingerprint: a hash of the
//! tollguard executable, the rater and the policy), and the log event at its position (whose
//! content must still be there: a database restored from a backup, or another database, does
//! not match). Its bytes carry a checksum. Anything else is said on stderr and the log is
//! read whole, as without a snapshot.
//!
//! The snapshot is kept by a thread of its own, beside the serving engine: it follows the log
//! with a rebuild of its own (a second engine, as much memory again), writes the file every
//! [`crate::Options::snapshot_every`] and once more at a graceful stop, each time to a
//! temporary file renamed over the old one. A reload with a new configuration hands it the state
//! the reload rebuilt, which it goes on from.

use crate::records::Rebuilt;
use crate::traffic::Traffic;
use crate::Live;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;
use tollguard_core::rater::Rater;
use tollguard_engine::policy::Policy;
use tollguard_engine::Engine;
use tollguard_store::Store;

/// The first bytes of a snapshot file.
const MAGIC: &[u8; 20] = b"tollguard snapshot\n\0";

/// The layout after [`MAGIC`].
const FORMAT: u32 = 1;

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Where the snapshot of `database` is kept.
pub(crate) fn path_of(database: &Path) -> PathBuf {
    with_suffix(database, ".snapshot")
}

/// Where `tollguard snapshot` prepares one for the next start, with the build and configuration
/// it will have (before an upgrade or a change of configuration, while the service runs).
pub(crate) fn next_path_of(database: &Path) -> PathBuf {
    with_suffix(database, ".snapshot.next")
}

/// What a snapshot says about itself.
#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    fingerprint: u64,
    /// The position in the log of the last event in the state, and a hash of that event.
    through: i64,
    through_event: u64,
    /// Events the state was built from.
    events: u64,
    /// A hash of the state's bytes, and their length.
    checksum: u64,
    len: u64,
}

/// The state's bytes: the engine's snapshot, the traffic figures, the calls running.
type Payload = (Vec<u8>, Traffic, HashMap<String, Live>);

/// A deterministic hash (SipHash with fixed keys: the same in every run of one build).
fn hasher() -> std::hash::DefaultHasher {
    std::hash::DefaultHasher::new()
}

/// A hash of bytes, the same in every run of a build (the snapshot's checksum, retention's
/// memory written).
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = hasher();
    h.write(b);
    h.finish()
}

/// Feeds text written with `write!` to a hasher.
struct HashWriter<'a>(&'a mut std::hash::DefaultHasher);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// A hash of the running executable's bytes (read once): state written by another build is
/// not read back (its engine may decide otherwise). `None` when it cannot be read.
fn build_hash() -> Option<u64> {
    static BUILD: OnceLock<Option<u64>> = OnceLock::new();
    *BUILD.get_or_init(|| {
        let exe = std::env::current_exe().ok()?;
        std::fs::read(exe).ok().map(|b| hash_bytes(&b))
    })
}

/// The version of the system's time zone database (`# version 2025b`, the first line of
/// `tzdata.zi`), which jiff reads zones from before its own bundled copy: a tzdata update
/// changes local times, hence the state. Empty when there is none (the bundled copy is in the
/// executable).
fn tzdata_version() -> String {
    let dir = std::env::var_os("TZDIR").map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
    std::fs::read_to_string(dir.join("tzdata.zi"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// The fingerprint of this build with this rater, policy and record grace (which ended calls
/// the engine remembers), on this system's time zone data; `None`: the executable cannot be
/// read, and snapshots are not used.
pub(crate) fn fingerprint(rater: &Rater, policy: &Policy, record_grace: jiff::SignedDuration) -> Option<u64> {
    let mut h = hasher();
    h.write_u64(build_hash()?);
    rater.describe(&mut HashWriter(&mut h)).ok()?;
    std::fmt::Write::write_fmt(
        &mut HashWriter(&mut h),
        format_args!("{policy:?}|{record_grace:?}|{}", tzdata_version()),
    )
    .ok()?;
    Some(h.finish())
}

/// A hash of the log's event at `seq`, or `None` if the log has none there.
fn event_hash(store: &Store, seq: i64) -> Result<Option<u64>> {
    Ok(store.event(seq)?.as_ref().map(hash_event))
}

fn hash_event(e: &tollguard_store::StoredEvent) -> u64 {
    let mut h = hasher();
    h.write_i64(e.seq);
    h.write_i64(e.time_ns);
    h.write(e.kind.as_bytes());
    h.write(e.payload.as_bytes());
    h.finish()
}

/// `rebuilt`'s state as bytes (the part of a snapshot after its header).
pub(crate) fn payload(rebuilt: &Rebuilt) -> Vec<u8> {
    let payload: Payload = (rebuilt.engine.snapshot(), rebuilt.traffic.clone(), rebuilt.live.clone());
    postcard::to_stdvec(&payload).expect("the state serializes")
}

/// Writes a state ([`payload`]) at log position `through` to `path`, through a temporary file
/// beside it renamed over it once on disk; returns the file's size.
pub(crate) fn save(
    path: &Path,
    fingerprint: u64,
    (through, events): (i64, u64),
    body: &[u8],
    store: &Store,
) -> Result<u64> {
    let through_event = match event_hash(store, through)? {
        Some(h) => h,
        // An empty log: nothing to save time on.
        None if through == 0 => return Ok(0),
        None => bail!("the log has no event {through} any more"),
    };
    let header = Header {
        format: FORMAT,
        fingerprint,
        through,
        through_event,
        events,
        checksum: hash_bytes(body),
        len: body.len() as u64,
    };
    let head = postcard::to_stdvec(&header).context("writing the header")?;
    let tmp = with_suffix(path, ".tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&(head.len() as u32).to_le_bytes())?;
        f.write_all(&head)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().with_context(|| format!("writing {}", tmp.display()))?;
    Ok((MAGIC.len() + 4 + head.len() + body.len()) as u64)
}

/// A state from its bytes ([`payload`]) at log position `through`.
fn decode(
    body: &[u8],
    (rater, policy): (&Arc<Rater>, &Policy),
    (through, events): (i64, u64),
    record_grace: jiff::SignedDuration,
) -> Result<Rebuilt> {
    let (engine, traffic, live): Payload = postcard::from_bytes(body).context("an unreadable state")?;
    let mut engine = Engine::restore(rater.clone(), policy.clone(), &engine).map_err(anyhow::Error::msg)?;
    engine.set_record_grace(Some(record_grace));
    Ok(Rebuilt::restored(engine, traffic, live, through, events))
}

/// A snapshot file that fits: its log position, the events in it, its state's bytes.
pub(crate) struct Fitting {
    pub through: i64,
    pub events: u64,
    pub body: Vec<u8>,
}

impl Fitting {
    /// The state it holds.
    pub(crate) fn decode(
        &self,
        config: (&Arc<Rater>, &Policy),
        record_grace: jiff::SignedDuration,
    ) -> Result<Rebuilt> {
        decode(&self.body, config, (self.through, self.events), record_grace)
    }
}

/// `path`'s snapshot, if it is one a rebuild with this fingerprint (build, rater, policy, grace)
/// would reach on `store`'s log (its state not read yet: [`Fitting::decode`]); `Ok(None)` without
/// a file; an error says why it is not used.
pub(crate) fn check(path: &Path, fingerprint: Option<u64>, store: &Store) -> Result<Option<Fitting>> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Some(fingerprint) = fingerprint else { bail!("the running executable cannot be read to check it") };
    let rest = bytes.strip_prefix(MAGIC.as_slice()).context("not a tollguard snapshot")?;
    let (len, rest) = rest.split_at_checked(4).context("cut short")?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let (head, body) = rest.split_at_checked(len).context("cut short")?;
    let header: Header = postcard::from_bytes(head).context("an unreadable header")?;
    if header.format != FORMAT {
        bail!("a snapshot of format {}, and this build reads format {FORMAT}", header.format);
    }
    if header.fingerprint != fingerprint {
        bail!("written by another build of tollguard or with another configuration");
    }
    if header.len != body.len() as u64 || header.checksum != hash_bytes(body) {
        bail!("damaged (its checksum does not match)");
    }
    let event = store.event(header.through)?;
    if event.as_ref().map(hash_event) != Some(header.through_event) {
        bail!("written for another event log (event {} is not the one it was taken at)", header.through);
    }
    // Taken before rows that came after it were deleted as past retention (a file kept while
    // snapshots were off, a service stopped for months): the log after it is not whole.
    if let (Some(gone), Some(e)) = (store.pruned_before()?, event) {
        if e.time_ns < gone {
            bail!("older than what retention has deleted from the log since");
        }
    }
    let at = bytes.len() - body.len();
    bytes.drain(..at);
    Ok(Some(Fitting { through: header.through, events: header.events, body: bytes }))
}

/// How the snapshots fare, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// When the file last held the state (Unix seconds by the wall clock; 0: not yet).
    pub written: std::sync::atomic::AtomicI64,
    /// Writes (or reads of the log for one) that failed, each said on stderr.
    pub failures: std::sync::atomic::AtomicU64,
}

impl Health {
    fn written_now(&self) {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.written.store(now as i64, std::sync::atomic::Ordering::Relaxed);
    }

    fn failed(&self) {
        self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the snapshot thread is asked to do.
pub(crate) enum Ask {
    /// Follow the log with this configuration from the state a reload rebuilt with it.
    Configure { rater: Arc<Rater>, policy: Policy, start: Start },
    /// Catch up with the log, write the file, answer, and stop.
    Finish(mpsc::Sender<()>),
}

/// Where the snapshot thread starts: the state the server started with, as bytes, and
/// whether the file holds it already.
pub(crate) struct Start {
    pub body: Vec<u8>,
    pub through: i64,
    pub events: u64,
    pub on_disk: bool,
    /// The start used a prepared snapshot (`.snapshot.next`): removed once this one is written.
    pub used_next: bool,
}

/// The thread that keeps the snapshot: it writes the state the server started with (unless the
/// file has it), then follows the log and writes the file again every `every` (when the log
/// moved), and at an [`Ask::Finish`].
pub(crate) fn keep(
    database: PathBuf,
    (rater, policy): (Arc<Rater>, Policy),
    start: Start,
    every: Duration,
    record_grace: jiff::SignedDuration,
    (asks, health): (mpsc::Receiver<Ask>, Arc<Health>),
) {
    let path = path_of(&database);
    let store = match Store::open(&database) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: snapshots: cannot open {}: {e:#}; starts will read the whole log",
                database.display()
            );
            health.failed();
            return;
        }
    };
    // Writes a start's state (unless the file has it) and takes it up: the fingerprint, the
    // position written, the state.
    let begin = |start: Start, rater: Arc<Rater>, policy: Policy| {
        let fingerprint = crate::snapshot::fingerprint(&rater, &policy, record_grace);
        let mut written = start.on_disk.then_some(start.through);
        if start.on_disk {
            health.written_now();
        }
        if let Some(fp) = fingerprint.filter(|_| !start.on_disk) {
            match save(&path, fp, (start.through, start.events), &start.body, &store) {
                Ok(0) => health.written_now(),
                Ok(_) => {
                    written = Some(start.through);
                    health.written_now();
                    if start.used_next {
                        let _ = std::fs::remove_file(next_path_of(&database));
                    }
                }
                Err(e) => {
                    eprintln!("error: snapshots: {e:#}");
                    health.failed();
                }
            }
        }
        let rebuilt =
            match decode(&start.body, (&rater, &policy), (start.through, start.events), record_grace) {
                Ok(r) => r,
                Err(e) => {
                    // Not expected (the bytes were just made): follow the log from its start.
                    eprintln!("error: snapshots: {e:#}; following the log from its start");
                    Rebuilt::empty(rater, policy, record_grace)
                }
            };
        (fingerprint, written, rebuilt)
    };
    let (mut fingerprint, mut written, mut rebuilt) = begin(start, rater, policy);
    let step = |rebuilt: &mut Rebuilt, fingerprint: Option<u64>, written: &mut Option<i64>| {
        let Some(fp) = fingerprint else { return };
        if let Err(e) = rebuilt.read(&store) {
            eprintln!("error: snapshots: reading the event log: {e:#}");
            health.failed();
            return;
        }
        if *written == Some(rebuilt.through) {
            health.written_now(); // the file holds the state still (nothing was logged since)
            return;
        }
        match save(&path, fp, (rebuilt.through, rebuilt.events), &payload(rebuilt), &store) {
            Ok(0) => health.written_now(), // an empty log: nothing to hold
            Ok(_) => {
                *written = Some(rebuilt.through);
                health.written_now();
            }
            Err(e) => {
                eprintln!("error: snapshots: {e:#}");
                health.failed();
            }
        }
    };
    // The next periodic write (a deadline: messages in between do not put it off).
    let mut due = std::time::Instant::now() + every;
    loop {
        match asks.recv_timeout(due.saturating_duration_since(std::time::Instant::now())) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                step(&mut rebuilt, fingerprint, &mut written);
                due = std::time::Instant::now() + every;
            }
            Ok(Ask::Configure { rater, policy, start }) => {
                if crate::snapshot::fingerprint(&rater, &policy, record_grace) == fingerprint {
                    continue; // a reload that changed nothing the state depends on
                }
                drop(rebuilt);
                (fingerprint, written, rebuilt) = begin(start, rater, policy);
            }
            Ok(Ask::Finish(done)) => {
                step(&mut rebuilt, fingerprint, &mut written);
                let _ = done.send(());
                return;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
