//! Group commit: one write transaction for every write waiting at the same moment, on any
//! ordered key-value engine ([`KvEngine`]).
//!
//! Callers queue jobs and wait for their answer. Whoever commits — the calling task itself
//! when no commit is under way, or the store's writer thread otherwise — takes every job in
//! the queue, runs them one after another in one write transaction, commits once, and only
//! then answers them all: concurrent writers share one fsync, and no caller hears "done"
//! before its write is durable.
//!
//! A lone writer commits on its own thread (inside `block_in_place`, so the async runtime
//! moves its other tasks away): handing each write to another thread and back costs two
//! wake-ups, a sizeable share of a durable write. On a current-thread runtime, or while
//! someone else is committing, the job waits for the writer thread instead.
//!
//! A job that fails its own checks (a precondition, a unique index) is undone alone, from
//! an undo log of the keys it touched, and the others still commit. A storage error fails
//! the whole transaction and every job in it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::schema::{self, decode_spec, decode_u64, encode_spec};
use stowage_core::backend::ChangeHub;
use stowage_core::backend::{Revision, StoredSpec};
use stowage_core::{ChangeEvent, Error, ErrorKind, Result, Version};

/// The most jobs one commit takes, so that one commit's latency stays bounded.
const MAX_GROUP: usize = 512;

type Output = Box<dyn Any + Send>;
/// A collection's key in the spec cache: (namespace, collection).
type SpecKey = (String, String);
type SpecCache = HashMap<SpecKey, Arc<StoredSpec>>;
type FloorCache = HashMap<SpecKey, Version>;
/// Per namespace: the last change logged, or `None` when nobody ever watched it (its
/// changes are not logged).
type LogCache = HashMap<String, Option<u64>>;
type Work = Box<dyn for<'t> FnOnce(&mut Txn<'t>) -> Result<Output> + Send>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Output>>,
}

/// What callers and the writer thread share.
struct Shared {
    queue: Mutex<Vec<Job>>,
    /// Signalled when a job is queued that nobody is committing yet, and on close.
    queued: Condvar,
    /// The right to commit: whoever holds it runs the next group.
    writer: Mutex<Writer>,
    closed: AtomicBool,
    commits: AtomicU64,
    /// The engine's name, for messages.
    engine: &'static str,
}

/// The handle to the commit machinery. Dropping the last handle stops the writer thread
/// after everything queued has committed.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("commits", &self.commits())
            .finish()
    }
}

impl GroupCommit {
    /// Starts the writer; `changes` receives what commits, `keep` is the change log's
    /// retention per namespace.
    pub fn start<E: KvEngine>(
        engine: E,
        durability: Durability,
        changes: Arc<ChangeHub>,
        keep: u64,
    ) -> Result<Self> {
        let engine_name = engine.name();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            queued: Condvar::new(),
            writer: Mutex::new(Writer::new(Box::new(engine), durability, changes, keep)),
            engine: engine_name,
            closed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        });
        let background = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("stowage-{engine_name}-writer"))
            .spawn(move || writer_thread(&background))
            .map_err(|e| {
                Error::internal(format!("cannot start the {engine_name} writer thread"))
                    .with_source(e)
            })?;
        Ok(GroupCommit {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// How many write transactions have committed.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` in the next shared transaction and answers once that transaction is
    /// committed. If `work` fails, its writes are undone and the others' still commit.
    pub async fn run<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'t> FnOnce(&mut Txn<'t>) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Box::new(move |t| work(t).map(|r| Box::new(r) as Output)),
            reply,
        };
        {
            let mut queue = self.shared.queue.lock();
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("the {} store is closed", self.shared.engine),
                ));
            }
            queue.push(job);
        }
        let led = can_block_here()
            && match self.shared.writer.try_lock() {
                Some(mut writer) => {
                    tokio::task::block_in_place(|| writer.commit_queued(&self.shared));
                    // A relaxed commit must become durable within the flush interval: the
                    // writer thread keeps that clock.
                    writer.flush_due().is_none()
                }
                None => false,
            };
        if !led || !self.shared.queue.lock().is_empty() {
            // Someone is committing (or this runtime cannot block): the writer thread takes
            // whatever is queued once the commit right is free.
            self.shared.queued.notify_one();
        }
        let out = answer
            .await
            .map_err(|_| Error::internal("the writer thread stopped before answering"))??;
        out.downcast::<R>()
            .map(|b| *b)
            .map_err(|_| Error::internal("a write job answered with the wrong type"))
    }

    /// Stops the writer thread after everything queued has committed.
    pub fn stop(&self) {
        {
            let _queue = self.shared.queue.lock();
            self.shared.closed.store(true, Ordering::SeqCst);
        }
        self.shared.queued.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether this task may block its thread for a commit: only on a multi-threaded runtime,
/// where `block_in_place` hands the thread's other tasks to the rest.
fn can_block_here() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// The writer thread: commits what callers queued but did not commit themselves, and in
/// relaxed mode makes commits durable every flush interval.
///
/// Lock order everywhere: the commit right (`writer`) before the queue, never the reverse.
fn writer_thread(shared: &Shared) {
    loop {
        let due = shared.writer.lock().flush_due();
        let mut queue = shared.queue.lock();
        if queue.is_empty() && !shared.closed.load(Ordering::SeqCst) {
            match due {
                Some(wait) => {
                    shared.queued.wait_for(&mut queue, wait);
                }
                None => shared.queued.wait(&mut queue),
            }
        }
        let (empty, closed) = (queue.is_empty(), shared.closed.load(Ordering::SeqCst));
        drop(queue);
        let mut writer = shared.writer.lock();
        match (empty, closed) {
            (true, true) => {
                writer.flush_if_dirty();
                return;
            }
            (true, false) => writer.flush_if_due(),
            (false, _) => writer.commit_queued(shared),
        }
    }
}

/// A change to undo: the key's previous value in a table (by its slot in [`Txn`]).
struct Undo {
    table: usize,
    key: Vec<u8>,
    prev: Option<Vec<u8>>,
}

/// A table opened by a transaction, by slot number, so that hot paths neither hash nor copy
/// table names.
pub type TableId = usize;

/// One write transaction as jobs see it: the engine's tables, and every change logged so
/// that a failing job can be undone alone.
#[allow(missing_debug_implementations)] // it holds the engine's open tables
pub struct Txn<'t> {
    tables: &'t mut dyn KvTables,
    undo: Vec<Undo>,
    specs: &'t mut SpecCache,
    // Spec cache changes made by the running job, undone with it.
    spec_undo: Vec<(SpecKey, Option<Arc<StoredSpec>>)>,
    floors: &'t mut FloorCache,
    floor_undo: Vec<(SpecKey, Option<Version>)>,
    logs: &'t mut LogCache,
    log_undo: Vec<(String, Option<Option<u64>>)>,
    /// How many changes a namespace's log keeps (0: none are logged).
    keep: u64,
    /// The changes the running job logged, published once the transaction commits.
    job_changes: Vec<(String, ChangeEvent)>,
}

impl Txn<'_> {
    /// The slot of a table, opening (and creating) it on first use.
    pub fn open(&mut self, name: &str) -> Result<TableId> {
        self.tables.open(name)
    }

    /// The value under `key`.
    pub fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tables.get(table, key)
    }

    /// Stores `value` and returns what the key held before.
    pub fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let prev = self.tables.insert(table, key, value)?;
        self.undo.push(Undo {
            table,
            key: key.to_vec(),
            prev: prev.clone(),
        });
        Ok(prev)
    }

    /// Removes `key`, if present.
    pub fn remove(&mut self, table: TableId, key: &[u8]) -> Result<()> {
        if let Some(prev) = self.tables.remove(table, key)? {
            self.undo.push(Undo {
                table,
                key: key.to_vec(),
                prev: Some(prev),
            });
        }
        Ok(())
    }

    /// Deletes a whole table. Not undoable: jobs call it only after all their checks passed.
    pub fn delete_table(&mut self, name: &str) -> Result<()> {
        self.tables.delete_table(name)
    }

    /// Up to `limit` keys and values of `table` after `after` (or from `from`), in order.
    pub fn page(
        &mut self,
        table: TableId,
        from: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tables.page(table, from, after, limit)
    }

    /// The spec of a collection, from the cache or the catalog.
    pub fn spec(&mut self, ns: &str, coll: &str) -> Result<Option<Arc<StoredSpec>>> {
        let key = (ns.to_owned(), coll.to_owned());
        if let Some(s) = self.specs.get(&key) {
            return Ok(Some(s.clone()));
        }
        let catalog = self.open(schema::CATALOG)?;
        let Some(bytes) = self.get(catalog, &schema::catalog_key(ns, coll))? else {
            return Ok(None);
        };
        let spec = Arc::new(decode_spec(coll, &bytes)?);
        self.specs.insert(key, spec.clone());
        Ok(Some(spec))
    }

    /// Records a collection's new spec (`None`: dropped) in the catalog and the cache.
    pub fn set_spec(&mut self, ns: &str, coll: &str, spec: Option<&StoredSpec>) -> Result<()> {
        let key = schema::catalog_key(ns, coll);
        let catalog = self.open(schema::CATALOG)?;
        match spec {
            Some(s) => drop(self.put(catalog, &key, &encode_spec(s))?),
            None => self.remove(catalog, &key)?,
        }
        let cache_key = (ns.to_owned(), coll.to_owned());
        let prev = match spec {
            Some(s) => self.specs.insert(cache_key.clone(), Arc::new(s.clone())),
            None => self.specs.remove(&cache_key),
        };
        self.spec_undo.push((cache_key, prev));
        Ok(())
    }

    /// A new spec revision, one above the last given (kept in the meta table).
    pub fn next_revision(&mut self) -> Result<Revision> {
        let meta = self.open(schema::META)?;
        let next = decode_u64(self.get(meta, schema::REVISION_KEY)?.as_deref()) + 1;
        self.put(meta, schema::REVISION_KEY, &next.to_le_bytes())?;
        Ok(next)
    }

    /// A collection's version floor (0 when none was kept), from the cache or the table:
    /// inserts read it, so it is remembered across transactions like specs.
    pub fn floor(&mut self, ns: &str, coll: &str) -> Result<Version> {
        let key = (ns.to_owned(), coll.to_owned());
        if let Some(f) = self.floors.get(&key) {
            return Ok(*f);
        }
        let table = self.open(schema::FLOORS)?;
        let f = decode_u64(self.get(table, &schema::catalog_key(ns, coll))?.as_deref());
        self.floors.insert(key, f);
        Ok(f)
    }

    /// Raises a collection's version floor to `version` if it is lower.
    pub fn raise_floor(&mut self, ns: &str, coll: &str, version: Version) -> Result<()> {
        let before = self.floor(ns, coll)?;
        if version > before {
            let table = self.open(schema::FLOORS)?;
            self.put(
                table,
                &schema::catalog_key(ns, coll),
                &version.to_le_bytes(),
            )?;
            let key = (ns.to_owned(), coll.to_owned());
            self.floors.insert(key.clone(), version);
            self.floor_undo.push((key, Some(before)));
        }
        Ok(())
    }

    /// The last change logged for `ns`, or `None` when its changes are not logged.
    fn log_state(&mut self, ns: &str) -> Result<Option<u64>> {
        if let Some(state) = self.logs.get(ns) {
            return Ok(*state);
        }
        let marks = self.open(schema::LOGGED)?;
        let state = if self.get(marks, ns.as_bytes())?.is_none() {
            None
        } else {
            let log = self.open(&schema::changes_table(ns))?;
            let last = self.tables.last_key(log)?;
            Some(last.map_or(0, |k| schema::decode_token(&k)))
        };
        self.logs.insert(ns.to_owned(), state);
        Ok(state)
    }

    /// From now on, `ns`'s changes are logged (a watcher asked for them).
    pub fn start_log(&mut self, ns: &str) -> Result<()> {
        if self.keep == 0 || self.log_state(ns)?.is_some() {
            return Ok(());
        }
        let marks = self.open(schema::LOGGED)?;
        self.put(marks, ns.as_bytes(), &[])?;
        let log = self.open(&schema::changes_table(ns))?;
        let last = self.tables.last_key(log)?;
        let last = last.map_or(0, |k| schema::decode_token(&k));
        self.log_undo.push((ns.to_owned(), Some(None)));
        self.logs.insert(ns.to_owned(), Some(last));
        Ok(())
    }

    /// Whether `ns`'s changes are logged: callers skip building changes nobody logs.
    pub fn logs_changes(&mut self, ns: &str) -> Result<bool> {
        Ok(self.log_state(ns)?.is_some())
    }

    /// Logs one change of `ns` in this transaction, if its changes are logged: numbered
    /// after the last, the oldest beyond the retention trimmed, and published after the
    /// commit (never if the job fails).
    pub fn log(&mut self, ns: &str, mut change: ChangeEvent) -> Result<()> {
        let Some(last) = self.log_state(ns)? else {
            return Ok(());
        };
        change.token = last + 1;
        let log = self.open(&schema::changes_table(ns))?;
        self.put(
            log,
            &schema::encode_token(change.token),
            &schema::encode_change(&change),
        )?;
        if change.token > self.keep {
            self.remove(log, &schema::encode_token(change.token - self.keep))?;
        }
        self.log_undo.push((ns.to_owned(), Some(Some(last))));
        self.logs.insert(ns.to_owned(), Some(change.token));
        self.job_changes.push((ns.to_owned(), change));
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        while let Some(Undo { table, key, prev }) = self.undo.pop() {
            match prev {
                Some(v) => self.tables.insert(table, &key, &v)?,
                None => self.tables.remove(table, &key)?,
            };
        }
        while let Some((k, prev)) = self.spec_undo.pop() {
            match prev {
                Some(s) => self.specs.insert(k, s),
                None => self.specs.remove(&k),
            };
        }
        while let Some((k, prev)) = self.floor_undo.pop() {
            match prev {
                Some(f) => self.floors.insert(k, f),
                None => self.floors.remove(&k),
            };
        }
        while let Some((ns, prev)) = self.log_undo.pop() {
            match prev {
                Some(state) => self.logs.insert(ns, state),
                None => self.logs.remove(&ns),
            };
        }
        self.job_changes.clear();
        Ok(())
    }
}

struct Writer {
    engine: Box<dyn KvEngine>,
    durability: Durability,
    // Only the commit right's holder changes specs and floors, so these caches are always
    // current.
    specs: SpecCache,
    floors: FloorCache,
    logs: LogCache,
    changes: Arc<ChangeHub>,
    keep: u64,
    /// In relaxed mode: since when commits have not been durable.
    dirty_since: Option<Instant>,
}

impl Writer {
    fn new(
        engine: Box<dyn KvEngine>,
        durability: Durability,
        changes: Arc<ChangeHub>,
        keep: u64,
    ) -> Self {
        Writer {
            engine,
            durability,
            specs: HashMap::new(),
            floors: HashMap::new(),
            logs: HashMap::new(),
            changes,
            keep,
            dirty_since: None,
        }
    }

    /// Commits one group: everything queued now (up to [`MAX_GROUP`]).
    fn commit_queued(&mut self, shared: &Shared) {
        let jobs = {
            let mut queue = shared.queue.lock();
            let take = queue.len().min(MAX_GROUP);
            queue.drain(..take).collect::<Vec<_>>()
        };
        if jobs.is_empty() {
            return;
        }
        // In relaxed mode a commit is durable only once the flush interval has passed.
        let durable = match self.durability {
            Durability::Relaxed { flush_interval } => self
                .dirty_since
                .is_some_and(|since| since.elapsed() >= flush_interval),
            _ => true,
        };
        if self.commit_group(jobs, durable) {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            self.dirty_since = if durable {
                None
            } else {
                self.dirty_since.or(Some(Instant::now()))
            };
        }
    }

    /// How long until relaxed commits must be made durable; `None` when nothing waits.
    fn flush_due(&self) -> Option<std::time::Duration> {
        match (self.durability, self.dirty_since) {
            (Durability::Relaxed { flush_interval }, Some(since)) => {
                Some(flush_interval.saturating_sub(since.elapsed()))
            }
            _ => None,
        }
    }

    fn flush_if_due(&mut self) {
        if self.flush_due().is_some_and(|wait| wait.is_zero()) {
            self.flush_if_dirty();
        }
    }

    /// Makes every earlier non-durable commit durable.
    fn flush_if_dirty(&mut self) {
        if self.dirty_since.is_none() {
            return;
        }
        if self.engine.flush().is_ok() {
            self.dirty_since = None;
        }
    }

    /// Runs and commits `jobs`, then answers each; whether the transaction committed.
    fn commit_group(&mut self, jobs: Vec<Job>, durable: bool) -> bool {
        let mut answers: Vec<(oneshot::Sender<Result<Output>>, Result<Output>)> =
            Vec::with_capacity(jobs.len());
        let outcome = self.run_jobs(jobs, durable, &mut answers);
        if let Err(e) = outcome {
            // The transaction did not commit: whatever the jobs changed in the cache is void.
            self.specs.clear();
            self.floors.clear();
            self.logs.clear();
            for (reply, _) in answers {
                let _ = reply.send(Err(Error::new(e.kind(), e.message().to_owned())));
            }
            return false;
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
        true
    }

    fn run_jobs(
        &mut self,
        jobs: Vec<Job>,
        durable: bool,
        answers: &mut Vec<(oneshot::Sender<Result<Output>>, Result<Output>)>,
    ) -> Result<()> {
        let mut committed: Vec<(String, ChangeEvent)> = Vec::new();
        let (specs, floors, logs, keep) =
            (&mut self.specs, &mut self.floors, &mut self.logs, self.keep);
        let mut jobs = Some(jobs);
        let outcome = self.engine.transact(durable, &mut |tables| {
            let mut failure = None;
            let mut t = Txn {
                tables,
                undo: Vec::new(),
                specs: &mut *specs,
                spec_undo: Vec::new(),
                floors: &mut *floors,
                floor_undo: Vec::new(),
                logs: &mut *logs,
                log_undo: Vec::new(),
                keep,
                job_changes: Vec::new(),
            };
            for job in jobs.take().into_iter().flatten() {
                if failure.is_some() {
                    answers.push((job.reply, Err(Error::internal("aborted"))));
                    continue;
                }
                t.undo.clear();
                t.spec_undo.clear();
                t.floor_undo.clear();
                t.log_undo.clear();
                let result = (job.work)(&mut t);
                if let Err(e) = &result {
                    if is_storage_failure(e) {
                        failure = Some(Error::new(e.kind(), e.message().to_owned()));
                    } else if let Err(undo_err) = t.rollback() {
                        failure = Some(undo_err);
                    }
                }
                committed.append(&mut t.job_changes);
                answers.push((job.reply, result));
            }
            failure.map_or(Ok(()), Err)
        });
        if let Err(e) = outcome {
            // A transaction that could not start ran no job: each still needs its answer.
            for job in jobs.into_iter().flatten() {
                answers.push((job.reply, Err(Error::new(e.kind(), e.message().to_owned()))));
            }
            return Err(e);
        }
        // Only now are the changes committed (durable, unless durability is relaxed).
        let mut by_ns: Vec<(String, Vec<ChangeEvent>)> = Vec::new();
        for (ns, change) in committed {
            match by_ns.iter_mut().find(|(n, _)| *n == ns) {
                Some((_, list)) => list.push(change),
                None => by_ns.push((ns, vec![change])),
            }
        }
        for (ns, changes) in by_ns {
            self.changes.publish_numbered(&ns, changes);
        }
        Ok(())
    }
}

/// One engine's raw operations on its tables inside one write transaction. Keys and values
/// are bytes; tables are created on first use.
pub trait KvTables {
    /// The slot of a table, opening (and creating) it on first use.
    fn open(&mut self, name: &str) -> Result<TableId>;
    /// The value under `key`.
    fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Stores `value`; returns what the key held before.
    fn insert(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Removes `key`; returns what it held.
    fn remove(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Deletes a whole table (its slot is unusable afterwards).
    fn delete_table(&mut self, name: &str) -> Result<()>;
    /// Up to `limit` keys and values of `table` after `after` (or from `from`), in order.
    fn page(
        &mut self,
        table: TableId,
        from: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The highest key of `table`.
    fn last_key(&mut self, table: TableId) -> Result<Option<Vec<u8>>>;
}

/// An ordered key-value engine under the group commit: it runs one write transaction at a
/// time, from the writer that holds the commit right.
pub trait KvEngine: Send + 'static {
    /// The engine's name, for thread names and messages ("redb").
    fn name(&self) -> &'static str;

    /// Runs `body` over the tables of one write transaction and commits it if `body`
    /// returns Ok — durably (fsynced, or what the engine's flush promises) when `durable`
    /// — else discards it. Ok only once the transaction committed. `body` runs at most
    /// once.
    fn transact(
        &mut self,
        durable: bool,
        body: &mut dyn FnMut(&mut dyn KvTables) -> Result<()>,
    ) -> Result<()>;

    /// Makes every earlier non-durable commit durable.
    fn flush(&mut self) -> Result<()>;
}

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every acknowledged write is on disk: its commit was made durable before the caller
    /// was answered. Concurrent writers share commits (group commit), so throughput grows
    /// with concurrency instead of paying one sync per write. The default.
    Immediate,
    /// Commits are not synced; a durable commit runs every `flush_interval` while writes
    /// arrive. A crash of the process or the machine loses the writes acknowledged since the
    /// last durable commit — up to `flush_interval` of them — but never leaves a torn or
    /// inconsistent store: records, indexes and TTLs stay in agreement.
    Relaxed {
        /// How often a durable commit bounds the loss.
        flush_interval: std::time::Duration,
    },
}

/// Errors that leave the transaction unusable, as opposed to a job's own refusal.
fn is_storage_failure(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Corrupted
    )
}
