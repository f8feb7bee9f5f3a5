//! # tollguard-store
//!
//! What lasts: the event log the engine is rebuilt from (attempts, answers, ends, call records,
//! operator commands, each with its time), call records by id (idempotent intake), decisions,
//! alerts, API tokens (hashed) and file-tail checkpoints. Embedded SQLite in WAL mode: no
//! service to start.
//!
//! Payloads are JSON text written and read by the server; the store does not interpret them.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The cause.
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// The database could not take the write now but may later: busy or locked by another
    /// connection past the busy timeout, disk full, an I/O error, out of memory. Not: a write
    /// the database refuses for what it is (a constraint, a trigger, a type).
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        let StoreError::Sqlite { source, .. } = self;
        matches!(
            source.sqlite_error_code(),
            Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | OutOfMemory | CannotOpen)
        )
    }
}

/// Results of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log (assigned by the store; 0 when appending).
    pub seq: i64,
    /// When it happened (Unix nanoseconds).
    pub time_ns: i64,
    /// `attempt`, `answer`, `end`, `record` or `command`.
    pub kind: String,
    /// Its fields, as JSON.
    pub payload: String,
}

/// An alert as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAlert {
    /// Id, increasing.
    pub id: i64,
    /// Account.
    pub account: String,
    /// The alert, as JSON.
    pub json: String,
}

/// A message waiting for (or past) delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// Id, increasing.
    pub id: i64,
    /// Where it goes (a webhook's name).
    pub target: String,
    /// What is sent.
    pub body: String,
    /// Tries so far.
    pub attempts: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Why the last try failed.
    pub last_error: String,
}

/// An entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Id, increasing.
    pub id: i64,
    /// When (Unix nanoseconds).
    pub time_ns: i64,
    /// Who: a token's name and scope, or `tollguard` for automatic actions.
    pub actor: String,
    /// What: `block`, `unblock`, `limits`, `reload`, `cut`, ...
    pub action: String,
    /// The account concerned ("" for none).
    pub account: String,
    /// The details and the reason, as JSON.
    pub details: String,
}

/// An incident: alerts of one account grouped, with their timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// Account.
    pub account: String,
    /// `open`, `acknowledged`, `resolved` or `false_positive`.
    pub state: String,
    /// Opened (Unix nanoseconds).
    pub opened_ns: i64,
    /// Last changed.
    pub updated_ns: i64,
    /// Timeline and counters, as JSON.
    pub data: String,
}

/// A token as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    /// Name given at creation.
    pub name: String,
    /// `integration`, `operator` or `customer:<account>`.
    pub scope: String,
}

/// A connection to the store.
pub struct Store {
    conn: Connection,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cdrs (
    call_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    received_ns INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    call_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_account ON alerts(account, id);
CREATE INDEX IF NOT EXISTS decisions_account ON decisions(account, time_ns);
CREATE INDEX IF NOT EXISTS cdrs_account ON cdrs(account);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ns);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ns INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_ns);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    account TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_account ON audit(account, id);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_account ON incidents(account, state);
CREATE TABLE IF NOT EXISTS memory (
    account TEXT PRIMARY KEY,
    json TEXT NOT NULL
);
";

impl Store {
    /// Opens (creating if needed) the store at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Store> {
        let name = path.display().to_string();
        let err = |source| StoreError::Sqlite { path: name.clone(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        // A commit is durable once in the WAL; fsync at checkpoints (SQLite's advice for WAL).
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.pragma_update(None, "busy_timeout", 5000).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store { conn, path: name })
    }

    /// How long a write waits for another connection's lock before it fails as busy (5 s from
    /// [`Store::open`]).
    pub fn set_busy_timeout(&self, wait: std::time::Duration) -> Result<()> {
        self.conn.busy_timeout(wait).map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Runs `f` in one transaction (one commit for many writes).
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Batch<'_>) -> Result<T>) -> Result<T> {
        let path = self.path.clone();
        // Writing from the start: a transaction that read first would be refused (busy) once
        // another connection (a pruning) had committed meanwhile.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        let mut b = Batch { tx, path: path.clone() };
        let out = f(&mut b)?;
        b.tx.commit().map_err(|source| StoreError::Sqlite { path, source })?;
        Ok(out)
    }

    /// Events after position `seq` in the log (0: every event), in log order, to `f`.
    pub fn for_each_event_after(&self, seq: i64, f: impl FnMut(StoredEvent)) -> Result<u64> {
        self.events_where("WHERE seq > ?1", [seq], f)
    }

    /// The event at position `seq` of the log, if there is one.
    pub fn event(&self, seq: i64) -> Result<Option<StoredEvent>> {
        let mut found = None;
        self.events_where("WHERE seq = ?1", [seq], |e| found = Some(e))?;
        Ok(found)
    }

    /// Events with `from_ns <= time_ns <= to_ns`, in log order, to `f`.
    pub fn for_each_event_between(
        &self,
        from_ns: i64,
        to_ns: i64,
        f: impl FnMut(StoredEvent),
    ) -> Result<u64> {
        self.events_where("WHERE time_ns BETWEEN ?1 AND ?2", [from_ns, to_ns], f)
    }

    /// Events matching `filter` (a `WHERE` clause or nothing), in log order, to `f`.
    fn events_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
        mut f: impl FnMut(StoredEvent),
    ) -> Result<u64> {
        let sql = format!("SELECT seq, time_ns, kind, payload FROM events {filter} ORDER BY seq");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(p).map_err(|e| self.err(e))?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            f(StoredEvent {
                seq: r.get(0).map_err(|e| self.err(e))?,
                time_ns: r.get(1).map_err(|e| self.err(e))?,
                kind: r.get(2).map_err(|e| self.err(e))?,
                payload: r.get(3).map_err(|e| self.err(e))?,
            });
            n += 1;
        }
        Ok(n)
    }

    /// Decisions of one account made from `from_ns` to `to_ns`: (time, JSON), oldest first.
    pub fn decisions_of(&self, account: &str, from_ns: i64, to_ns: i64) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT time_ns, json FROM decisions WHERE account = ?1 AND time_ns BETWEEN ?2 AND ?3
                 ORDER BY time_ns, call_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![account, from_ns, to_ns], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Call records of one account (JSON), in the order received.
    pub fn cdrs_of(&self, account: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM cdrs WHERE account = ?1 ORDER BY received_ns, call_id")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params![account], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// A decision by call id.
    pub fn decision(&self, call_id: &str) -> Result<Option<(String, String)>> {
        self.conn
            .query_row("SELECT account, json FROM decisions WHERE call_id = ?1", [call_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Alerts after id `after`, oldest first, at most `limit`, of one account or all.
    pub fn alerts(&self, account: Option<&str>, after: i64, limit: u32) -> Result<Vec<StoredAlert>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, account, json FROM alerts WHERE id > ?1 AND (?2 IS NULL OR account = ?2)
                 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, account, limit], |r| {
                Ok(StoredAlert { id: r.get(0)?, account: r.get(1)?, json: r.get(2)? })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The newest `limit` alerts, of one account or all, newest first.
    pub fn latest_alerts(&self, account: Option<&str>, limit: u32) -> Result<Vec<StoredAlert>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, account, json FROM alerts WHERE ?1 IS NULL OR account = ?1 ORDER BY id DESC LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![account, limit], |r| {
                Ok(StoredAlert { id: r.get(0)?, account: r.get(1)?, json: r.get(2)? })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Whether a call record with this id is stored.
    pub fn has_cdr(&self, call_id: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM cdrs WHERE call_id = ?1", [call_id], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// Number of call records stored.
    pub fn cdr_count(&self) -> Result<u64> {
        self.conn.query_row("SELECT COUNT(*) FROM cdrs", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// The token with this hash.
    pub fn token(&self, hash: &str) -> Result<Option<StoredToken>> {
        self.conn
            .query_row("SELECT name, scope FROM tokens WHERE hash = ?1", [hash], |r| {
                Ok(StoredToken { name: r.get(0)?, scope: r.get(1)? })
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every token: name, scope and when it was created (nanoseconds), oldest first. The tokens
    /// themselves are not stored.
    pub fn tokens(&self) -> Result<Vec<(String, String, i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT name, scope, created_ns FROM tokens ORDER BY created_ns, name")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| self.err(e));
        rows
    }

    /// Outbox messages due at `now_ns` (pending, next try reached), oldest first.
    pub fn outbox_due(&self, now_ns: i64, limit: u32) -> Result<Vec<OutboxItem>> {
        self.outbox_query(
            "SELECT id, target, body, attempts, state, last_error FROM outbox
             WHERE state = 'pending' AND next_ns <= ?1 ORDER BY id LIMIT ?2",
            params![now_ns, limit],
        )
    }

    /// Outbox messages in a state, newest first.
    pub fn outbox_in(&self, state: &str, limit: u32) -> Result<Vec<OutboxItem>> {
        self.outbox_query(
            "SELECT id, target, body, attempts, state, last_error FROM outbox
             WHERE state = ?1 ORDER BY id DESC LIMIT ?2",
            params![state, limit],
        )
    }

    fn outbox_query(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<OutboxItem>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(p, |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    target: r.get(1)?,
                    body: r.get(2)?,
                    attempts: r.get(3)?,
                    state: r.get(4)?,
                    last_error: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Audit entries after id `after`, oldest first, of one account or all.
    pub fn audit(&self, account: Option<&str>, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, time_ns, actor, action, account, details FROM audit
                 WHERE id > ?1 AND (?2 IS NULL OR account = ?2) ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, account, limit], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    time_ns: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    account: r.get(4)?,
                    details: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// An incident by id.
    pub fn incident(&self, id: i64) -> Result<Option<Incident>> {
        Ok(self.incidents_where("id = ?1", params![id])?.pop())
    }

    /// Incidents of one account (or all) in a state (or all), newest first.
    pub fn incidents(&self, account: Option<&str>, state: Option<&str>, limit: u32) -> Result<Vec<Incident>> {
        self.incidents_where(
            "(?1 IS NULL OR account = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY id DESC LIMIT ?3",
            params![account, state, limit],
        )
    }

    fn incidents_where(&self, cond: &str, p: impl rusqlite::Params) -> Result<Vec<Incident>> {
        let sql =
            format!("SELECT id, account, state, opened_ns, updated_ns, data FROM incidents WHERE {cond}");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(p, |r| {
                Ok(Incident {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    state: r.get(2)?,
                    opened_ns: r.get(3)?,
                    updated_ns: r.get(4)?,
                    data: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// A checkpoint's value.
    pub fn checkpoint(&self, source: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM checkpoints WHERE source = ?1", [source], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// Writes inside one transaction ([`Store::batch`]).
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
    path: String,
}

impl Batch<'_> {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Appends an event to the log; returns its position.
    pub fn append_event(&mut self, time_ns: i64, kind: &str, payload: &str) -> Result<i64> {
        self.tx
            .prepare_cached("INSERT INTO events (time_ns, kind, payload) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![time_ns, kind, payload]))
            .map_err(|e| self.err(e))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Stores a call record unless it is stored already: true when it was new.
    ///
    /// A record is one leg of a call, named by its destination channel (`leg`, the record's
    /// JSON field `trunk`). A switch may write several under one id: Asterisk writes one for
    /// each `Dial` of a channel, all with the channel's `uniqueid`. The first record of an id
    /// is kept under the id; one of another leg under the id and the leg. A record without a
    /// leg, or of a leg kept already, is a duplicate, and so is any record of an id whose first
    /// record has talk time and no leg (that one stands for the whole call).
    pub fn insert_cdr(
        &mut self,
        call_id: &str,
        leg: &str,
        account: &str,
        received_ns: i64,
        json: &str,
    ) -> Result<bool> {
        if self.insert_cdr_as(call_id, account, received_ns, json)? {
            return Ok(true);
        }
        if leg.is_empty() {
            return Ok(false);
        }
        let (first, talked): (Option<String>, bool) = self
            .tx
            .prepare_cached(
                "SELECT json_extract(json, '$.trunk'), COALESCE(json_extract(json, '$.billsec'), 0) > 0
                 FROM cdrs WHERE call_id = ?1",
            )
            .and_then(|mut s| s.query_row([call_id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| self.err(e))?;
        // A record of the id with talk time and no leg stands for the whole call (the same call
        // from another source, with its destination channel this time). One with no talk time
        // and no leg is a failed attempt: Asterisk may write no destination channel for a
        // `Dial` that found no channel, before the next `Dial`'s leg.
        let first = first.unwrap_or_default();
        if first == leg || first.is_empty() && talked {
            return Ok(false);
        }
        self.insert_cdr_as(&format!("{call_id}\u{1f}{leg}"), account, received_ns, json)
    }

    /// Stores a record under `key` unless one is: true when it was new.
    fn insert_cdr_as(&mut self, key: &str, account: &str, received_ns: i64, json: &str) -> Result<bool> {
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO cdrs (call_id, account, received_ns, json) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(call_id) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![key, account, received_ns, json]))
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Whether a call was allowed, by its stored decision (`None`: no decision stored).
    pub fn was_allowed(&mut self, call_id: &str) -> Result<Option<bool>> {
        self.tx
            .prepare_cached("SELECT json_extract(json, '$.allow') FROM decisions WHERE call_id = ?1")
            .and_then(|mut s| s.query_row([call_id], |r| r.get::<_, Option<bool>>(0)).optional())
            .map(|o| o.map(|a| a.unwrap_or(false)))
            .map_err(|e| self.err(e))
    }

    /// Stores (or replaces) a decision.
    pub fn put_decision(&mut self, call_id: &str, account: &str, time_ns: i64, json: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO decisions (call_id, account, time_ns, json) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![call_id, account, time_ns, json]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores an alert; returns its id.
    pub fn add_alert(&mut self, account: &str, json: &str) -> Result<i64> {
        self.tx
            .prepare_cached("INSERT INTO alerts (account, json) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![account, json]))
            .map_err(|e| self.err(e))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Queues a message for a delivery target, due at once.
    pub fn enqueue(&mut self, target: &str, body: &str, now_ns: i64) -> Result<i64> {
        self.tx
            .prepare_cached("INSERT INTO outbox (target, body, created_ns, next_ns) VALUES (?1, ?2, ?3, ?3)")
            .and_then(|mut s| s.execute(params![target, body, now_ns]))
            .map_err(|e| self.err(e))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Records a try: delivered, or failed with the next try at `next_ns` (or dead, when
    /// `dead`).
    pub fn outbox_tried(&mut self, id: i64, ok: bool, error: &str, next_ns: i64, dead: bool) -> Result<()> {
        let state = if ok {
            "delivered"
        } else if dead {
            "dead"
        } else {
            "pending"
        };
        self.tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, state = ?2, last_error = ?3, next_ns = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, state, error, next_ns]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Appends to the audit log (there is no update or delete).
    pub fn audit(
        &mut self,
        time_ns: i64,
        actor: &str,
        action: &str,
        account: &str,
        details: &str,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO audit (time_ns, actor, action, account, details) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![time_ns, actor, action, account, details]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The account's newest incident that is open or acknowledged, if any: (id, data, updated).
    pub fn active_incident(&mut self, account: &str) -> Result<Option<(i64, String, i64)>> {
        self.tx
            .prepare_cached(
                "SELECT id, data, updated_ns FROM incidents WHERE account = ?1 AND state IN ('open', 'acknowledged')
                 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            .map_err(|e| self.err(e))
    }

    /// Opens an incident; returns its id.
    pub fn open_incident(&mut self, account: &str, now_ns: i64, data: &str) -> Result<i64> {
        self.tx
            .prepare_cached(
                "INSERT INTO incidents (account, state, opened_ns, updated_ns, data) VALUES (?1, 'open', ?2, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![account, now_ns, data]))
            .map_err(|e| self.err(e))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Updates an incident's timeline (and state, when given).
    pub fn update_incident(&mut self, id: i64, now_ns: i64, state: Option<&str>, data: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE incidents SET updated_ns = ?2, state = COALESCE(?3, state), data = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, now_ns, state, data]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// An incident's data and state, inside the transaction.
    pub fn incident_data(&mut self, id: i64) -> Result<Option<(String, String, String)>> {
        self.tx
            .query_row("SELECT account, state, data FROM incidents WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stores a token's hash, name and scope.
    pub fn add_token(&mut self, hash: &str, name: &str, scope: &str, created_ns: i64) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO tokens (hash, name, scope, created_ns) VALUES (?1, ?2, ?3, ?4)",
                params![hash, name, scope, created_ns],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Deletes the tokens named `name`; returns how many there were.
    pub fn remove_tokens(&mut self, name: &str) -> Result<usize> {
        self.tx.execute("DELETE FROM tokens WHERE name = ?1", [name]).map_err(|e| self.err(e))
    }

    /// Sets a checkpoint.
    pub fn set_checkpoint(&mut self, source: &str, value: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO checkpoints (source, value) VALUES (?1, ?2)
                 ON CONFLICT(source) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![source, value]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// What [`Store::prune`] deleted, by table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events of the log (attempts, answers, ends, records; never operator commands).
    pub events: u64,
    /// Call records.
    pub cdrs: u64,
    /// Decisions.
    pub decisions: u64,
    /// Alerts.
    pub alerts: u64,
    /// Audit entries.
    pub audit: u64,
    /// Resolved incidents and incidents closed as false positives.
    pub incidents: u64,
    /// Messages delivered or given up on.
    pub outbox: u64,
    /// Whether it stopped before the end because `go_on` said so.
    pub stopped: bool,
}

impl Pruned {
    /// Rows deleted in all.
    pub fn rows(&self) -> u64 {
        self.events + self.cdrs + self.decisions + self.alerts + self.audit + self.incidents + self.outbox
    }
}

/// How [`Store::prune`] changes the engine's memory it keeps, before it deletes anything.
#[derive(Clone, Copy, Debug)]
pub struct MemoryUpdate<'a> {
    /// The time the memory is of (Unix nanoseconds; at or after the pruning's, and any earlier
    /// pruning's).
    pub at: i64,
    /// Accounts whose memory is new or changed, with it (JSON).
    pub put: &'a [(String, String)],
    /// Accounts that have none any more.
    pub remove: &'a [String],
}

/// What [`Store::memory`] gives: the time, and by account the memory as JSON.
pub type KeptMemory = (i64, Vec<(String, String)>);

/// The checkpoint that keeps [`Store::pruned_before`].
const PRUNED_BEFORE: &str = "retention:pruned_before";

/// A table [`Store::prune`] deletes from.
struct Pruning {
    table: &'static str,
    /// The row's time, an SQL expression: Unix nanoseconds, or seconds where `nanos` is false.
    time: &'static str,
    nanos: bool,
    /// What is kept whatever its age (SQL).
    kept: &'static str,
    /// The newest row is kept: a table without `AUTOINCREMENT` would give its id again (a
    /// position in the log the engine has handled, an incident's id in a mail).
    keep_last: bool,
    /// Rows come in time order, near enough: the walk ends at a chunk with nothing old. Else
    /// (rows changed after they were added) the whole table is walked.
    in_order: bool,
}

const PRUNED: [Pruning; 7] = [
    // Operator commands (limits, blocks, allowances) make the state a start rebuilds: kept.
    Pruning {
        table: "events",
        time: "time_ns",
        nanos: true,
        kept: "kind = 'command'",
        keep_last: true,
        in_order: true,
    },
    Pruning { table: "cdrs", time: "received_ns", nanos: true, kept: "0", keep_last: true, in_order: true },
    // (A decision under a call id used again replaces the row: a new one at the end.)
    Pruning { table: "decisions", time: "time_ns", nanos: true, kept: "0", keep_last: true, in_order: true },
    // An alert's time is RFC 3339 with the account's offset.
    Pruning {
        table: "alerts",
        time: "unixepoch(json_extract(json, '$.time'))",
        nanos: false,
        kept: "0",
        keep_last: false,
        in_order: true,
    },
    Pruning { table: "audit", time: "time_ns", nanos: true, kept: "0", keep_last: true, in_order: true },
    // Few, and changed long after they were opened.
    Pruning {
        table: "incidents",
        time: "updated_ns",
        nanos: true,
        kept: "state IN ('open', 'acknowledged')",
        keep_last: true,
        in_order: false,
    },
    Pruning {
        table: "outbox",
        time: "created_ns",
        nanos: true,
        kept: "state = 'pending'",
        keep_last: true,
        in_order: true,
    },
];

impl Store {
    /// Deletes what is older than `before_ns` (Unix nanoseconds): the log's events but operator
    /// commands, call records (by when they were received), decisions, alerts, audit entries,
    /// closed incidents (by their last change) and messages no longer pending (by when they were
    /// queued). Tokens and checkpoints are kept.
    ///
    /// Each table is walked in the order rows were added, `chunk` rows per transaction (so that
    /// the server's writer waits at most one chunk), until a whole chunk has nothing old: rows
    /// come in time order, near enough (incidents, changed after they were opened, are walked
    /// whole). `go_on` is asked before each chunk (a stopping server says no); what was deleted
    /// until then stays deleted.
    ///
    /// `memory`: what the engine knew before its time that the log after it cannot teach again,
    /// changed from what an earlier pruning kept, with that time, before anything is deleted
    /// ([`Store::memory`]). The last row of each table stays (SQLite would give its id again).
    pub fn prune(
        &mut self,
        before_ns: i64,
        memory: MemoryUpdate<'_>,
        chunk: usize,
        go_on: &dyn Fn() -> bool,
    ) -> Result<Pruned> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let mut deleted = [0u64; PRUNED.len()];
        let mut stopped = false;
        let before_s = before_ns.div_euclid(1_000_000_000);
        // First: the memory, and the time rows before which may be gone from here on.
        if !go_on() {
            return Ok(Pruned { stopped: true, ..Pruned::default() });
        }
        let at = memory.at.max(before_ns).max(self.pruned_before()?.unwrap_or(i64::MIN));
        self.batch(|b| {
            for (account, json) in memory.put {
                // (An account keeps its place: a rebuild creates them in this order.)
                b.tx.prepare_cached(
                    "INSERT INTO memory (account, json) VALUES (?1, ?2)
                     ON CONFLICT(account) DO UPDATE SET json = excluded.json",
                )
                .and_then(|mut s| s.execute(params![account, json]))
                .map_err(|e| b.err(e))?;
            }
            for account in memory.remove {
                b.tx.prepare_cached("DELETE FROM memory WHERE account = ?1")
                    .and_then(|mut s| s.execute([account]))
                    .map_err(|e| b.err(e))?;
            }
            b.set_checkpoint(PRUNED_BEFORE, &at.to_string())
        })?;
        for (n, Pruning { table, time, nanos, kept, keep_last, in_order }) in deleted.iter_mut().zip(PRUNED) {
            let before = if nanos { before_ns } else { before_s };
            let select =
                format!("SELECT rowid, ({time}) < ?1 FROM {table} WHERE rowid > ?2 ORDER BY rowid LIMIT ?3");
            let delete = format!(
                "DELETE FROM {table} WHERE rowid > ?2 AND rowid <= ?3 AND ({time}) < ?1 AND NOT ({kept}){}",
                if keep_last {
                    format!(" AND rowid < (SELECT max(rowid) FROM {table})")
                } else {
                    String::new()
                }
            );
            let mut after = i64::MIN;
            loop {
                if !go_on() {
                    stopped = true;
                    break;
                }
                // Writing from the start: a read first would have to become a write after the
                // server's writer committed, which SQLite refuses at once (busy).
                let tx = self
                    .conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(err)?;
                let (mut last, mut any_old) = (None, false);
                {
                    let mut stmt = tx.prepare_cached(&select).map_err(err)?;
                    let mut rows = stmt.query(params![before, after, chunk as i64]).map_err(err)?;
                    while let Some(r) = rows.next().map_err(err)? {
                        last = Some(r.get::<_, i64>(0).map_err(err)?);
                        any_old |= r.get::<_, Option<bool>>(1).map_err(err)?.unwrap_or(false);
                    }
                }
                let Some(last) = last else { break };
                if any_old {
                    let mut stmt = tx.prepare_cached(&delete).map_err(err)?;
                    *n += stmt.execute(params![before, after, last]).map_err(err)? as u64;
                }
                tx.commit().map_err(err)?;
                if !any_old && in_order {
                    break;
                }
                after = last;
            }
            if stopped {
                break;
            }
        }
        let [events, cdrs, decisions, alerts, audit, incidents, outbox] = deleted;
        Ok(Pruned { events, cdrs, decisions, alerts, audit, incidents, outbox, stopped })
    }

    /// The time before which [`Store::prune`] has deleted (or begun to delete) rows, if it has
    /// (Unix nanoseconds): what the store says of earlier times is not whole.
    pub fn pruned_before(&self) -> Result<Option<i64>> {
        Ok(self.checkpoint(PRUNED_BEFORE)?.and_then(|v| v.parse().ok()))
    }

    /// Runs `f` in one read transaction: all it reads through this store is one state of the
    /// database (another connection's commits meanwhile are not seen).
    pub fn consistently<T>(&self, f: impl FnOnce(&Store) -> T) -> Result<T> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let out = f(self);
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// What the last [`Store::prune`] kept of the engine's memory: its time (Unix nanoseconds)
    /// and, by account, the memory as JSON, in the order given.
    pub fn memory(&self) -> Result<Option<KeptMemory>> {
        let Some(before) = self.pruned_before()? else { return Ok(None) };
        let mut stmt =
            self.conn.prepare("SELECT account, json FROM memory ORDER BY rowid").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        Ok(Some((before, rows.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| self.err(e))?)))
    }

    /// The time of the newest event in the log (Unix nanoseconds), if any.
    pub fn newest_event_ns(&self) -> Result<Option<i64>> {
        self.conn.query_row("SELECT max(time_ns) FROM events", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Of the incidents open, acknowledged, or closed at `closed_since_ns` or later (those
    /// [`Store::prune`] keeps at that time), the one opened first: (opened, account, id).
    pub fn oldest_kept_incident(&self, closed_since_ns: i64) -> Result<Option<(i64, String, i64)>> {
        self.conn
            .query_row(
                "SELECT opened_ns, account, id FROM incidents
                 WHERE state IN ('open', 'acknowledged') OR updated_ns >= ?1
                 ORDER BY opened_ns, id LIMIT 1",
                [closed_since_ns],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file in an empty folder of its own, removed with the folder when the test ends.
    fn temp(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::Builder::new().prefix(&format!("tollguard-store-{name}-")).tempdir().unwrap();
        let path = dir.path().join("tollguard.db");
        (dir, path)
    }

    #[test]
    fn what_is_written_is_read_back_after_reopening() {
        let (_dir, path) = temp("reopen");
        {
            let mut s = Store::open(&path).unwrap();
            s.batch(|b| {
                assert_eq!(b.append_event(10, "attempt", r#"{"call_id":"a"}"#)?, 1);
                assert_eq!(b.append_event(20, "end", r#"{"call_id":"a"}"#)?, 2);
                assert!(b.insert_cdr("a", "", "acme", 30, "{}")?);
                assert!(!b.insert_cdr("a", "", "acme", 31, "{}")?, "the same call id is stored once");
                // Two legs under one id (two `Dial`s of one Asterisk channel): each once.
                let leg = |d: &str| format!(r#"{{"call_id":"u","trunk":"{d}"}}"#);
                assert!(b.insert_cdr("u", "PJSIP/a-01", "acme", 32, &leg("PJSIP/a-01"))?);
                assert!(
                    !b.insert_cdr("u", "PJSIP/a-01", "acme", 33, &leg("PJSIP/a-01"))?,
                    "the first leg again"
                );
                assert!(b.insert_cdr("u", "PJSIP/b-02", "acme", 34, &leg("PJSIP/b-02"))?, "another leg");
                assert!(!b.insert_cdr("u", "PJSIP/b-02", "acme", 35, &leg("PJSIP/b-02"))?, "that leg again");
                assert!(!b.insert_cdr("u", "", "acme", 36, "{}")?, "no leg: the id's record");
                // The first record has no leg: with talk time it is the whole call; without,
                // a failed attempt that a leg may follow.
                assert!(b.insert_cdr("w", "", "acme", 37, r#"{"call_id":"w","billsec":300}"#)?);
                assert!(!b.insert_cdr("w", "PJSIP/a-03", "acme", 38, &leg("PJSIP/a-03"))?, "the same call");
                assert!(b.insert_cdr("f", "", "acme", 39, r#"{"call_id":"f","billsec":0}"#)?);
                assert!(b.insert_cdr("f", "PJSIP/b-04", "acme", 40, &leg("PJSIP/b-04"))?, "the next Dial");
                b.put_decision("a", "acme", 10, r#"{"allow":true}"#)?;
                assert_eq!(b.was_allowed("a")?, Some(true));
                assert_eq!(b.was_allowed("zz")?, None);
                b.add_alert("acme", r#"{"rule":"x"}"#)?;
                b.add_alert("other", r#"{"rule":"y"}"#)?;
                b.add_token("hash1", "kamailio", "integration", 1)?;
                b.set_checkpoint("tail:/var/log/Master.csv", "1234")?;
                Ok(())
            })
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let mut kinds = vec![];
        assert_eq!(s.for_each_event_after(0, |e| kinds.push((e.seq, e.time_ns, e.kind))).unwrap(), 2);
        assert_eq!(kinds, [(1, 10, "attempt".to_string()), (2, 20, "end".to_string())]);
        assert_eq!(s.cdr_count().unwrap(), 6, "a, two legs of u, w, two of f");
        assert!(s.has_cdr("a").unwrap());
        assert_eq!(s.decision("a").unwrap().unwrap().1, r#"{"allow":true}"#);
        assert_eq!(s.decision("b").unwrap(), None);
        assert_eq!(s.alerts(None, 0, 10).unwrap().len(), 2);
        let acme = s.alerts(Some("acme"), 0, 10).unwrap();
        assert_eq!(acme.len(), 1);
        assert_eq!(s.alerts(None, acme[0].id, 10).unwrap().len(), 1, "after an id");
        assert_eq!(s.token("hash1").unwrap().unwrap().scope, "integration");
        assert_eq!(s.checkpoint("tail:/var/log/Master.csv").unwrap().as_deref(), Some("1234"));
    }

    /// No memory to keep, at `at`.
    fn no_memory(at: i64) -> MemoryUpdate<'static> {
        MemoryUpdate { at, put: &[], remove: &[] }
    }

    #[test]
    fn the_memory_kept_changes_account_by_account_and_keeps_their_order() {
        let (_dir, path) = temp("memory");
        let mut s = Store::open(&path).unwrap();
        let row = |a: &str, j: &str| (a.to_string(), j.to_string());
        let put = [row("acme", "1"), row("beta", "1"), row("gamma", "1")];
        s.prune(10, MemoryUpdate { at: 10, put: &put, remove: &[] }, 10, &|| true).unwrap();
        let put = [row("acme", "2"), row("delta", "1")];
        s.prune(20, MemoryUpdate { at: 20, put: &put, remove: &["beta".to_string()] }, 10, &|| true).unwrap();
        let (at, rows) = s.memory().unwrap().unwrap();
        assert_eq!(at, 20);
        assert_eq!(rows, [row("acme", "2"), row("gamma", "1"), row("delta", "1")]);
    }

    /// Acknowledges `account`'s open incident.
    fn b_ack(s: &mut Store, account: &str) {
        s.batch(|b| {
            let (id, ..) = b.active_incident(account)?.expect("an open incident");
            b.update_incident(id, 1_000_000_000, Some("acknowledged"), "{}")
        })
        .unwrap();
    }

    #[test]
    fn prune_deletes_what_is_older_and_keeps_commands_open_incidents_and_pending_messages() {
        let (_dir, path) = temp("prune");
        let mut s = Store::open(&path).unwrap();
        let (old, new) = (1_000_000_000i64, 5_000_000_000i64); // 1 s and 5 s after 1970
        s.batch(|b| {
            b.append_event(old, "attempt", "{}")?;
            b.append_event(old, "command", r#"{"command":"block"}"#)?;
            b.append_event(new, "end", "{}")?;
            b.append_event(old, "record", "{}")?; // late, among new ones: deleted all the same
            b.append_event(new, "end", "{}")?;
            b.insert_cdr("c-old", "", "acme", old, "{}")?;
            b.insert_cdr("c-new", "", "acme", new, "{}")?;
            b.put_decision("reused", "acme", old, "{}")?;
            b.put_decision("d-old", "acme", old, "{}")?;
            b.put_decision("d-new", "acme", new, "{}")?;
            b.put_decision("d-late", "acme", old, "{}")?;
            b.put_decision("reused", "acme", new, "{}")?; // its first row, with a new time
            b.add_alert("acme", r#"{"time":"1970-01-01T01:00:01+01:00"}"#)?; // 1 s after 1970
            b.add_alert("acme", r#"{"time":"1970-01-01T00:00:05Z"}"#)?;
            b.add_alert("acme", r#"{"no":"time"}"#)?;
            b.audit(old, "noc", "block", "acme", "{}")?;
            b.audit(new, "noc", "unblock", "acme", "{}")?;
            let closed = b.open_incident("acme", old, "{}")?;
            b.update_incident(closed, old, Some("resolved"), "{}")?;
            b.open_incident("beta", old, "{}")?;
            let fp = b.open_incident("gamma", old - 1, "{}")?;
            b.update_incident(fp, new, Some("false_positive"), "{}")?;
            let delivered = b.enqueue("hook", "{}", old)?;
            b.outbox_tried(delivered, true, "", 0, false)?;
            b.enqueue("hook", "{}", old)?;
            let dead = b.enqueue("hook", "{}", old)?;
            b.outbox_tried(dead, false, "refused", 0, true)?;
            Ok(())
        })
        .unwrap();
        // beta's is open; gamma's closed at `new`, acme's at `old`.
        let oldest = |s: &Store, since: i64| s.oldest_kept_incident(since).unwrap().map(|(t, a, _)| (t, a));
        assert_eq!(oldest(&s, new + 1), Some((old, "beta".into())));
        assert_eq!(oldest(&s, new), Some((old - 1, "gamma".into())), "closed at `new`: kept then");
        b_ack(&mut s, "beta");
        assert_eq!(oldest(&s, new + 1), Some((old, "beta".into())), "acknowledged: still kept");
        let not_now = s.prune(3_000_000_000, no_memory(3_000_000_000), 2, &|| false).unwrap();
        assert_eq!((not_now.rows(), not_now.stopped), (0, true));
        assert_eq!(s.pruned_before().unwrap(), None);

        // Two rows a chunk: the late record among new events does not stop the walk.
        let pruned = s.prune(3_000_000_000, no_memory(3_000_000_000), 2, &|| true).unwrap();
        // Each table's last row stays (its id would be given again): the dead message. (The
        // decision under the reused id was added again at the end.)
        let expected = Pruned {
            events: 2,
            cdrs: 1,
            decisions: 2,
            alerts: 1,
            audit: 1,
            incidents: 1,
            outbox: 1,
            stopped: false,
        };
        assert_eq!(pruned, expected);
        let mut kinds = vec![];
        s.for_each_event_after(0, |e| kinds.push(e.kind)).unwrap();
        assert_eq!(kinds, ["command", "end", "end"]);
        assert!(!s.has_cdr("c-old").unwrap() && s.has_cdr("c-new").unwrap());
        let kept: Vec<bool> =
            ["reused", "d-old", "d-new", "d-late"].iter().map(|d| s.decision(d).unwrap().is_some()).collect();
        assert_eq!(kept, [true, false, true, false]);
        assert_eq!(s.alerts(None, 0, 10).unwrap().len(), 2, "the new one, and the one without a time");
        assert_eq!(s.audit(None, 0, 10).unwrap().len(), 1);
        let states: Vec<String> = s.incidents(None, None, 10).unwrap().into_iter().map(|i| i.state).collect();
        assert_eq!(states.len(), 2, "{states:?}");
        assert!(
            states.contains(&"acknowledged".to_string()) && states.contains(&"false_positive".to_string())
        );
        assert_eq!(s.outbox_in("pending", 10).unwrap().len(), 1);
        assert_eq!(s.outbox_in("dead", 10).unwrap().len(), 1);
        assert_eq!(
            s.prune(3_000_000_000, no_memory(3_000_000_000), 2, &|| true).unwrap().rows(),
            0,
            "nothing more"
        );
        assert_eq!(s.pruned_before().unwrap(), Some(3_000_000_000));
        s.prune(2_000_000_000, no_memory(2_000_000_000), 2, &|| true).unwrap();
        assert_eq!(s.pruned_before().unwrap(), Some(3_000_000_000), "the latest time stays");
    }

    #[test]
    fn prune_goes_on_while_another_connection_writes() {
        // The server's writer commits every few milliseconds while a pruning runs: a chunk that
        // read first and then wrote would be refused (busy) once the writer had committed.
        let (_dir, path) = temp("prune-busy");
        let mut s = Store::open(&path).unwrap();
        s.batch(|b| {
            for i in 0..20_000 {
                b.append_event(i, "attempt", "{}")?;
            }
            Ok(())
        })
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut w = Store::open(&path).unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    w.batch(|b| b.append_event(1_000_000_000_000, "end", "{}")).unwrap();
                    n += 1;
                }
                n
            })
        };
        let pruned = s.prune(1_000_000, no_memory(1_000_000), 100, &|| true);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().unwrap();
        // (The last row stays if the writer had not added one when its chunk came.)
        assert!(pruned.unwrap().events >= 19_999, "while {written} commits came");
        assert!(written > 0);
    }

    #[test]
    fn a_batch_that_reads_first_is_not_refused_for_another_connections_commit() {
        // The writer's batches read before they write (an incident's step); another connection
        // (a pruning) commits meanwhile. A batch that took the write lock only at its first
        // write would then be refused (busy) at once: it takes it at its start.
        let (_dir, path) = temp("batch-busy");
        let mut s = Store::open(&path).unwrap();
        let other = Store::open(&path).unwrap();
        other.set_busy_timeout(std::time::Duration::from_millis(100)).unwrap();
        let mut other = other;
        let mut theirs = None;
        s.batch(|b| {
            b.was_allowed("a")?;
            theirs = Some(other.batch(|o| o.append_event(1, "attempt", "{}")).map(|_| ()));
            b.append_event(2, "end", "{}").map(|_| ())
        })
        .unwrap();
        let theirs = theirs.unwrap();
        assert!(theirs.as_ref().is_err_and(|e| e.is_transient()), "waited for ours, then busy: {theirs:?}");
    }

    #[test]
    fn a_failed_batch_writes_nothing() {
        let (_dir, path) = temp("rollback");
        let mut s = Store::open(&path).unwrap();
        let r = s.batch(|b| {
            b.append_event(1, "attempt", "{}")?;
            b.add_token("h", "n", "operator", 1)?;
            b.add_token("h", "n", "operator", 1)?; // duplicate hash: fails
            Ok(())
        });
        assert!(r.unwrap_err().to_string().contains("tollguard.db"));
        assert_eq!(s.for_each_event_after(0, |_| {}).unwrap(), 0);
    }
}
