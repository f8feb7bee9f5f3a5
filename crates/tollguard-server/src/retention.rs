//! Retention: what is older than `[server] retention` is deleted from the store, once an hour
//! (docs/operations.md, "Disk and retention").
//!
//! The log is what a start (without a snapshot) and a reload rebuild the engine from, so it is
//! never cut shorter than [`HISTORY_NEEDED`] (the configuration refuses a shorter retention),
//! operator commands are kept whatever their age, and the time before which rows go is held
//! back for what still needs older rows: a block a limit set that is still in force (a rebuild
//! must set it again, from the calls that caused it: held `retention` before it) and an incident
//! still kept (its calls, decisions and alerts are the evidence: held a week before its opening).
//! What the engine learnt for good from the rows deleted (the destinations each account has
//! called, and its first call) is kept in the store with them gone, for a rebuild
//! ([`tollguard_engine::Engine::memory_before`]).

use crate::snapshot::hash_bytes;
use crate::AppState;
use jiff::{SignedDuration, Timestamp};
use std::sync::atomic::Ordering;
use tollguard_engine::HISTORY_NEEDED;
use tollguard_store::{Pruned, Store};

/// Rows deleted per transaction: the writer waits at most that long for the store.
const CHUNK: usize = 2_000;

/// How often the store is pruned.
pub(crate) const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Checks a retention against what the engine needs.
pub fn check(retention: SignedDuration) -> Result<(), String> {
    if retention < HISTORY_NEEDED {
        return Err(format!(
            "{} days is shorter than the {} days of history the engine's state depends on",
            retention.as_hours() / 24,
            HISTORY_NEEDED.as_hours() / 24
        ));
    }
    Ok(())
}

/// What one pruning did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Rows older than this were deleted.
    pub before: Timestamp,
    /// What held `before` back from `now - retention`, if anything.
    pub held_by: Option<String>,
    /// The rows deleted, by table.
    pub pruned: Pruned,
}

/// How long before an incident's opening its evidence is kept (its first suspicious call comes
/// before its first alert: a slow drip's, days before).
const INCIDENT_LEAD: SignedDuration = SignedDuration::from_hours(7 * 24);

/// A hold shorter than this is not said: every incident kept holds a week or so (its lead and
/// its length), and the log's newest event is always a little before now.
const HOLD_SAID: SignedDuration = SignedDuration::from_hours(8 * 24);

/// The time before which rows go at `now`, and what held it back.
fn cutoff(s: &AppState, store: &Store, retention: SignedDuration, now: Timestamp) -> anyhow::Result<Report> {
    let back = |t: Timestamp, by: SignedDuration| t.checked_sub(by).unwrap_or(Timestamp::MIN);
    let base = back(now, retention);
    let mut before = base;
    let mut held_by = None;
    let mut hold = |at: Timestamp, why: String| {
        if at < before {
            before = at;
            held_by = Some(why);
        }
    };
    // A log that had nothing for months is not emptied: never more than what came `retention`
    // before its newest event.
    if let Some(newest) = store.newest_event_ns()? {
        let newest = Timestamp::from_nanosecond(newest as i128)?;
        hold(back(newest, retention), format!("the newest event in the log, at {newest}"));
    }
    let block = {
        let core = s.core.lock().expect("engine lock");
        core.engine.oldest_limit_block(now).map(|(account, at)| (account.to_string(), at))
    };
    if let Some((account, at)) = block {
        hold(back(at, retention), format!("a block of account {account} in force since {at}"));
    }
    if let Some((opened_ns, account, id)) = store.oldest_kept_incident(crate::ns(base))? {
        let at = Timestamp::from_nanosecond(opened_ns as i128)?;
        hold(back(at, INCIDENT_LEAD), format!("incident {id} of account {account}, opened {at}"));
    }
    let held_by = held_by.filter(|_| before < back(base, HOLD_SAID));
    Ok(Report { before, held_by, pruned: Pruned::default() })
}

/// Deletes what is past retention at `now` (nothing without a retention); says on stderr what
/// was deleted and what held it back. Stops between two chunks once the server stops.
pub(crate) fn prune(s: &AppState, now: Timestamp) -> anyhow::Result<Option<Report>> {
    let Some(retention) = s.opts.retention else { return Ok(None) };
    let mut store = Store::open(&s.opts.database)?;
    let mut report = cutoff(s, &store, retention, now)?;
    let before_ns = crate::ns(report.before);
    // What the engine knew before the time rows are gone from (this pruning's, or an earlier
    // one's if later), for a rebuild from what is left.
    let memory_ns = before_ns.max(store.pruned_before()?.unwrap_or(i64::MIN));
    let memory = {
        let at = Timestamp::from_nanosecond(memory_ns as i128)?;
        s.core.lock().expect("engine lock").engine.memory_before(at)
    };
    let memory: Vec<(String, String)> = memory
        .into_iter()
        .map(|(account, m)| Ok((account, serde_json::to_string(&m)?)))
        .collect::<anyhow::Result<_>>()?;
    // Only what changed since the last pruning is written (most accounts learn nothing new in
    // an hour): what is in the store is known by its hash.
    let mut written = s.retention_written.lock().expect("retention lock");
    if written.is_none() {
        let rows = store.memory()?.map(|(_, rows)| rows).unwrap_or_default();
        *written =
            Some(rows.into_iter().map(|(account, json)| (account, hash_bytes(json.as_bytes()))).collect());
    }
    let known = written.as_mut().expect("read above");
    let put: Vec<(String, String)> = memory
        .iter()
        .filter(|(a, json)| known.get(a) != Some(&hash_bytes(json.as_bytes())))
        .cloned()
        .collect();
    let now_kept: std::collections::HashSet<&str> = memory.iter().map(|(a, _)| a.as_str()).collect();
    let remove: Vec<String> = known.keys().filter(|a| !now_kept.contains(a.as_str())).cloned().collect();
    let ready = &s.ready;
    let took = std::time::Instant::now();
    let update = tollguard_store::MemoryUpdate { at: memory_ns, put: &put, remove: &remove };
    report.pruned = store.prune(before_ns, update, CHUNK, &|| ready.load(Ordering::SeqCst))?;
    if report.pruned.stopped {
        // The memory may or may not have been written: read it again next time.
        *written = None;
    } else {
        for (a, json) in &put {
            known.insert(a.clone(), hash_bytes(json.as_bytes()));
        }
        for a in &remove {
            known.remove(a);
        }
    }
    let took = took.elapsed().as_secs_f64();
    let m = &s.retention_health;
    m.deleted.fetch_add(report.pruned.rows(), Ordering::Relaxed);
    m.before.store(report.before.as_second(), Ordering::Relaxed);
    let p = &report.pruned;
    if p.rows() > 0 || report.held_by.is_some() {
        eprintln!(
            "tollguard serve: retention: deleted what came before {}{}: {} events, {} records, {} decisions, {} alerts, {} audit entries, {} incidents, {} messages in {took:.1} s{}",
            report.before,
            report.held_by.as_ref().map(|h| format!(" (held back by {h})")).unwrap_or_default(),
            p.events,
            p.cdrs,
            p.decisions,
            p.alerts,
            p.audit,
            p.incidents,
            p.outbox,
            if p.stopped { "; stopped by the shutdown" } else { "" },
        );
    }
    Ok(Some(report))
}

/// How retention fares, for `/metrics`.
#[derive(Default)]
pub(crate) struct Health {
    /// Rows deleted since the start.
    pub deleted: std::sync::atomic::AtomicU64,
    /// Prunings that failed.
    pub failures: std::sync::atomic::AtomicU64,
    /// Rows before this time (Unix seconds) were deleted by the last pruning (0: none yet).
    pub before: std::sync::atomic::AtomicI64,
}

/// The serve loop's pruning: once at the start, then every [`EVERY`]; a failure is said and
/// counted, and tried again at the next.
pub(crate) async fn keep(s: std::sync::Arc<AppState>) {
    if s.opts.retention.is_none() {
        return;
    }
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let state = s.clone();
        let done = tokio::task::spawn_blocking(move || prune(&state, state.now())).await;
        let failed = match done {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            s.retention_health.failures.fetch_add(1, Ordering::Relaxed);
            eprintln!("error: retention: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_retention_shorter_than_the_history_the_engine_needs_is_refused() {
        let days = |d: i64| jiff::SignedDuration::from_hours(24 * d);
        assert!(super::check(days(91)).is_ok());
        assert!(super::check(days(400)).is_ok());
        let e = super::check(days(30)).unwrap_err();
        assert!(e.contains("30 days") && e.contains("91 days"), "{e}");
    }
}
