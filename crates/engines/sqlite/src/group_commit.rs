//! The writer thread: every write runs on one thread that owns the write connection, and
//! concurrent writes share commits (group commit).
//!
//! Callers queue jobs; the thread takes every job queued (up to [`MAX_GROUP`]) into one
//! transaction (`BEGIN IMMEDIATE` … `COMMIT`), each job inside a savepoint of its own, so a
//! job that fails — a precondition, a unique clash — is rolled back alone and the others
//! commit. While one commit is being fsynced, the next jobs queue up and go together in the
//! next: 32 durable writers share a few fsyncs instead of paying 32. A job hears its result
//! only after its commit is durable (as `synchronous` says), and changes reach watchers
//! only after the commit.
//!
//! Async callers never block the runtime: they wait on a oneshot channel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use stowage_core::backend::ChangeHub;
use stowage_core::backend::{Revision, StoredSpec};
use stowage_core::{ChangeEvent, CollectionSpec, Error, ErrorKind, Result, Version};
use tokio::sync::oneshot;

use crate::error::sqlite_error;
use crate::schema::Layout;

/// The most jobs one transaction takes.
const MAX_GROUP: usize = 256;

type Finish = Box<dyn FnOnce(Result<()>) + Send>;
/// A write: run on the transaction, or told why there is none (then `f` never runs).
type WriteJob = Box<dyn FnOnce(std::result::Result<&mut Txn<'_>, Error>) -> (bool, Finish) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Msg {
    Write(WriteJob),
    /// A read on the writer's connection (an in-memory database has no other).
    Read(ReadJob),
}

/// The handle to the writer thread. Dropping it lets the thread finish what is queued,
/// close the connection and exit; drop waits for that.
#[derive(Debug)]
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Msg>>,
    commits: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread over `conn`.
    pub(crate) fn start(conn: Connection, hub: Arc<ChangeHub>, target: String) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Msg>();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let thread = std::thread::Builder::new()
            .name("stowage-sqlite-writer".into())
            .spawn(move || run(conn, receiver, &hub, &target, &counted))
            .map_err(|e| Error::internal("cannot start the SQLite writer thread").with_source(e))?;
        Ok(Writer {
            sender: Some(sender),
            commits,
            thread: Some(thread),
        })
    }

    /// Runs `f` in a write transaction shared with the writes queued beside it; its result
    /// once the transaction is committed. An error from `f` undoes what `f` did, and only
    /// that.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |t| {
            let r = t.and_then(f);
            let ok = r.is_ok();
            let finish: Finish = Box::new(move |commit: Result<()>| {
                let _ = tx.send(r.and_then(|v| commit.map(|()| v)));
            });
            (ok, finish)
        });
        self.send(Msg::Write(job))?;
        rx.await.map_err(|_| stopped())?
    }

    /// How many write transactions have committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the writer's connection outside any transaction of the writer's.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Read(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        })))?;
        rx.await.map_err(|_| stopped())?
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(msg)
            .map_err(|_| stopped())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the queue is empty.
        self.sender.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The same failure for another waiter (errors are not Clone: sources are not).
fn copy(e: &Error) -> Error {
    Error::new(e.kind(), e.message())
}

fn stopped() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the SQLite writer thread has stopped",
    )
}

/// The thread's loop.
fn run(
    conn: Connection,
    receiver: mpsc::Receiver<Msg>,
    hub: &ChangeHub,
    target: &str,
    commits: &AtomicU64,
) {
    while let Ok(first) = receiver.recv() {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        match first {
            Msg::Write(job) => writes.push(job),
            Msg::Read(job) => reads.push(job),
        }
        while writes.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(Msg::Write(job)) => writes.push(job),
                Ok(Msg::Read(job)) => reads.push(job),
                Err(_) => break,
            }
        }
        if !writes.is_empty() && commit_group(&conn, writes, hub, target) {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for read in reads {
            read(&conn);
        }
    }
}

/// Runs `jobs` in one transaction, each in a savepoint, and commits; whether it committed.
fn commit_group(conn: &Connection, jobs: Vec<WriteJob>, hub: &ChangeHub, target: &str) -> bool {
    let failed = |e: rusqlite::Error, doing: &str| sqlite_error(e, doing, target);
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = failed(e, "starting a write transaction");
        for job in jobs {
            // The job never runs (outside a transaction its statements would commit one by
            // one): its caller gets the error.
            let (_, finish) = job(Err(copy(&e)));
            finish(Ok(()));
        }
        return false;
    }
    let mut t = Txn::new(conn, target);
    let mut finishes = Vec::with_capacity(jobs.len());
    // A job alone needs no savepoint: if it fails, the whole transaction is rolled back.
    let alone = jobs.len() == 1;
    for job in jobs {
        let marked = t.events.len();
        t.floors.borrow_mut().clear();
        if alone {
            let (ok, finish) = job(Ok(&mut t));
            if !ok {
                let _ = conn.execute_batch("ROLLBACK");
                // The job's own error is its result.
                finish(Ok(()));
                return false;
            }
            finishes.push(finish);
            continue;
        }
        let saved = conn
            .prepare_cached("SAVEPOINT job")
            .and_then(|mut s| s.execute([]));
        let (ok, finish) = job(Ok(&mut t));
        let undone = if ok && saved.is_ok() {
            conn.prepare_cached("RELEASE job")
                .and_then(|mut s| s.execute([]))
        } else {
            t.events.truncate(marked);
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
                .map(|()| 0)
        };
        if let Err(e) = saved.and(undone) {
            // A savepoint that cannot be released or undone leaves the transaction in a
            // state nobody can vouch for: give it up.
            let e = failed(e, "ending a write's savepoint");
            let _ = conn.execute_batch("ROLLBACK");
            finish(Err(copy(&e)));
            for f in finishes {
                let f: Finish = f;
                f(Err(copy(&e)));
            }
            return false;
        }
        finishes.push(finish);
    }
    let events = std::mem::take(&mut t.events);
    drop(t);
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for (ns, batch) in group_by_namespace(events) {
                hub.publish_numbered(&ns, batch);
            }
            for f in finishes {
                f(Ok(()));
            }
            true
        }
        Err(e) => {
            let e = failed(e, "committing");
            let _ = conn.execute_batch("ROLLBACK");
            for f in finishes {
                f(Err(copy(&e)));
            }
            false
        }
    }
}

fn group_by_namespace(events: Vec<(String, ChangeEvent)>) -> Vec<(String, Vec<ChangeEvent>)> {
    let mut out: Vec<(String, Vec<ChangeEvent>)> = Vec::new();
    for (ns, e) in events {
        match out.iter_mut().find(|(n, _)| *n == ns) {
            Some((_, batch)) => batch.push(e),
            None => out.push((ns, vec![e])),
        }
    }
    out
}

/// A job's view of the shared write transaction.
pub(crate) struct Txn<'c> {
    pub conn: &'c Connection,
    target: &'c str,
    /// Logged changes, published after the commit.
    events: Vec<(String, ChangeEvent)>,
    /// Version floors read or raised by the running job (cleared between jobs: a job that
    /// is undone takes its raises with it).
    floors: RefCell<HashMap<(String, String), Version>>,
}

impl<'c> Txn<'c> {
    fn new(conn: &'c Connection, target: &'c str) -> Self {
        Txn {
            conn,
            target,
            events: Vec::new(),
            floors: RefCell::new(HashMap::new()),
        }
    }

    /// A SQLite error while doing `doing`.
    pub(crate) fn err(&self, doing: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let doing = doing.to_owned();
        move |e| sqlite_error(e, &doing, self.target)
    }

    /// The layout of a collection as stored now, if it exists.
    pub(crate) fn layout(&self, ns: &str, coll: &str) -> Result<Option<Layout>> {
        read_layout(self.conn, ns, coll, self.target)
    }

    /// The next spec revision of the store.
    pub(crate) fn next_revision(&self) -> Result<Revision> {
        let r: i64 = self
            .conn
            .query_row(
                "INSERT INTO stowage_meta (key, value) VALUES ('revision', 1) \
                 ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(self.err("numbering a spec"))?;
        Ok(r as Revision)
    }

    /// The version floor of a collection.
    pub(crate) fn floor(&self, ns: &str, coll: &str) -> Result<Version> {
        let key = (ns.to_owned(), coll.to_owned());
        if let Some(f) = self.floors.borrow().get(&key) {
            return Ok(*f);
        }
        let f: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT floor FROM stowage_floors WHERE namespace = ?1 AND collection = ?2",
            )
            .and_then(|mut s| s.query_row(params![ns, coll], |r| r.get(0)).optional())
            .map_err(self.err("reading a version floor"))?;
        let f = f.unwrap_or(0) as Version;
        self.floors.borrow_mut().insert(key, f);
        Ok(f)
    }

    /// Raises the version floor of a collection to `v` (a record of that version is gone).
    pub(crate) fn raise_floor(&self, ns: &str, coll: &str, v: Version) -> Result<()> {
        // A floor this job has read rises with the write; one it has not is read from the
        // database when needed.
        if let Some(f) = self
            .floors
            .borrow_mut()
            .get_mut(&(ns.to_owned(), coll.to_owned()))
        {
            *f = (*f).max(v);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO stowage_floors (namespace, collection, floor) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (namespace, collection) DO UPDATE SET floor = max(floor, ?3)",
            )
            .and_then(|mut s| s.execute(params![ns, coll, v as i64]))
            .map_err(self.err("raising a version floor"))?;
        Ok(())
    }

    /// Whether `ns`'s changes are logged (someone has watched it).
    pub(crate) fn logs_changes(&self, ns: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM stowage_log_heads WHERE namespace = ?1")
            .and_then(|mut s| s.exists(params![ns]))
            .map_err(self.err("reading the change log"))
    }

    /// Logs `ns`'s changes from now on.
    pub(crate) fn start_log(&self, ns: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO stowage_log_heads (namespace, last) VALUES (?1, 0) \
                 ON CONFLICT (namespace) DO NOTHING",
                params![ns],
            )
            .map_err(self.err("starting the change log"))?;
        Ok(())
    }

    /// Appends `event` to `ns`'s change log when it is watched, numbered in commit order,
    /// keeping about `keep` events; watchers hear it after the commit.
    pub(crate) fn log(&mut self, ns: &str, mut event: ChangeEvent, keep: u64) -> Result<()> {
        let token: Option<i64> = self
            .conn
            .prepare_cached(
                "UPDATE stowage_log_heads SET last = last + 1 WHERE namespace = ?1 RETURNING last",
            )
            .and_then(|mut s| s.query_row(params![ns], |r| r.get(0)).optional())
            .map_err(self.err("numbering a change"))?;
        let Some(token) = token else {
            return Ok(());
        };
        event.token = token as u64;
        let text = serde_json::to_string(&event)
            .map_err(|e| Error::internal("encoding a change event").with_source(e))?;
        self.conn
            .prepare_cached("INSERT INTO stowage_log (namespace, token, event) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![ns, token, text]))
            .map_err(self.err("logging a change"))?;
        // Trim in steps of 1 % so most writes delete nothing.
        let keep = keep.max(1) as i64;
        if token % (keep / 100).max(1) == 0 {
            self.conn
                .prepare_cached("DELETE FROM stowage_log WHERE namespace = ?1 AND token <= ?2")
                .and_then(|mut s| s.execute(params![ns, token - keep]))
                .map_err(self.err("trimming the change log"))?;
        }
        self.events.push((ns.to_owned(), event));
        Ok(())
    }
}

/// The layout of a collection as its catalog row says (`None`: no such collection). A row
/// that does not decode is Corrupted.
pub(crate) fn read_layout(
    conn: &Connection,
    ns: &str,
    coll: &str,
    target: &str,
) -> Result<Option<Layout>> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT revision, spec, building FROM stowage_collections \
             WHERE namespace = ?1 AND collection = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![ns, coll], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(|e| sqlite_error(e, "reading the catalog", target))?;
    let Some((revision, spec, building)) = row else {
        return Ok(None);
    };
    let stored = decode_spec(revision, &spec, &building)?;
    Ok(Some(Layout::new(ns, coll, stored)))
}

/// A stored spec from its catalog columns.
pub(crate) fn decode_spec(revision: i64, spec: &str, building: &str) -> Result<StoredSpec> {
    let corrupt = |what: &str, e: serde_json::Error| {
        Error::new(
            ErrorKind::Corrupted,
            format!("the catalog holds a {what} that does not decode: {e}"),
        )
    };
    let spec: CollectionSpec = serde_json::from_str(spec).map_err(|e| corrupt("spec", e))?;
    let building: Vec<String> =
        serde_json::from_str(building).map_err(|e| corrupt("building list", e))?;
    Ok(StoredSpec {
        spec,
        revision: revision as Revision,
        building,
    })
}
