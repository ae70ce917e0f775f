//! Group commit: one writer thread owns every redb write transaction.
//!
//! Callers send jobs over a channel and wait for their answer. The writer takes every job
//! waiting in the queue, runs them one after another in one write transaction, commits once,
//! and only then answers all of them — so concurrent writers share one fsync, and no caller
//! hears "done" before its write is durable.
//!
//! A job that fails its own checks (a precondition, a unique index) is undone alone, from
//! an undo log of the keys it touched, and the others still commit. A storage error fails
//! the whole transaction and every job in it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use redb::{Database, ReadableTable, Table, WriteTransaction};
use stowage_core::{CollectionSpec, Error, ErrorKind, Result};
use tokio::sync::oneshot;

use crate::backend::storage_error;
use crate::config::Durability;
use crate::schema::{self, decode_spec};

/// The most jobs one commit takes, so that one commit's latency stays bounded.
const MAX_GROUP: usize = 512;

type Output = Box<dyn Any + Send>;
/// A collection's key in the spec cache: (namespace, collection).
type SpecKey = (String, String);
type SpecCache = HashMap<SpecKey, Arc<CollectionSpec>>;
type Work = Box<dyn for<'t> FnOnce(&mut Txn<'t>) -> Result<Output> + Send>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Output>>,
}

/// The handle to the writer thread. Dropping the last handle stops the thread after it has
/// committed what it holds.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    tx: parking_lot::Mutex<Option<Sender<Job>>>,
    thread: parking_lot::Mutex<Option<thread::JoinHandle<()>>>,
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    pub(crate) fn start(db: Arc<Database>, durability: Durability) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let mut writer = Writer::new(db, durability);
        writer.commits = commits.clone();
        let thread = thread::Builder::new()
            .name("stowage-redb-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::internal("cannot start the redb writer thread").with_source(e))?;
        Ok(GroupCommit {
            tx: parking_lot::Mutex::new(Some(tx)),
            thread: parking_lot::Mutex::new(Some(thread)),
            commits,
        })
    }

    /// How many write transactions have committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` in the next shared transaction and answers once that transaction is
    /// committed. If `work` fails, its writes are undone and the others' still commit.
    pub(crate) async fn run<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'t> FnOnce(&mut Txn<'t>) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Box::new(move |t| work(t).map(|r| Box::new(r) as Output)),
            reply,
        };
        let sent = match &*self.tx.lock() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the redb store is closed",
            ));
        }
        let out = answer
            .await
            .map_err(|_| Error::internal("the redb writer thread stopped"))??;
        out.downcast::<R>()
            .map(|b| *b)
            .map_err(|_| Error::internal("a redb job answered with the wrong type"))
    }

    /// Stops the writer after it has committed everything sent so far.
    pub(crate) fn stop(&self) {
        self.tx.lock().take();
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

/// A change to undo: the key's previous value in a table (by its slot in [`Txn`]).
struct Undo {
    table: usize,
    key: Vec<u8>,
    prev: Option<Vec<u8>>,
}

/// A table opened by a transaction, by slot number, so that hot paths neither hash nor copy
/// table names.
pub(crate) type TableId = usize;

/// One write transaction as jobs see it: tables opened once and kept, and every change
/// logged so that a failing job can be undone alone.
pub(crate) struct Txn<'t> {
    txn: &'t WriteTransaction,
    tables: Vec<Option<Table<'t, &'static [u8], &'static [u8]>>>,
    slots: HashMap<String, TableId>,
    undo: Vec<Undo>,
    specs: &'t mut SpecCache,
    // Spec cache changes made by the running job, undone with it.
    spec_undo: Vec<(SpecKey, Option<Arc<CollectionSpec>>)>,
}

impl<'t> Txn<'t> {
    /// The slot of a table, opening (and creating) it on first use.
    pub(crate) fn open(&mut self, name: &str) -> Result<TableId> {
        if let Some(&id) = self.slots.get(name) {
            return Ok(id);
        }
        let t = self
            .txn
            .open_table(schema::table(name))
            .map_err(storage_error)?;
        self.tables.push(Some(t));
        let id = self.tables.len() - 1;
        self.slots.insert(name.to_owned(), id);
        Ok(id)
    }

    fn at(&mut self, id: TableId) -> Result<&mut Table<'t, &'static [u8], &'static [u8]>> {
        self.tables
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::internal("a table was used after it was deleted"))
    }

    pub(crate) fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.at(table)?;
        Ok(t.get(key)
            .map_err(storage_error)?
            .map(|v| v.value().to_vec()))
    }

    /// Stores `value` and returns what the key held before.
    pub(crate) fn put(
        &mut self,
        table: TableId,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let prev = self
            .at(table)?
            .insert(key, value)
            .map_err(storage_error)?
            .map(|v| v.value().to_vec());
        self.undo.push(Undo {
            table,
            key: key.to_vec(),
            prev: prev.clone(),
        });
        Ok(prev)
    }

    pub(crate) fn remove(&mut self, table: TableId, key: &[u8]) -> Result<()> {
        let prev = self
            .at(table)?
            .remove(key)
            .map_err(storage_error)?
            .map(|v| v.value().to_vec());
        if prev.is_some() {
            self.undo.push(Undo {
                table,
                key: key.to_vec(),
                prev,
            });
        }
        Ok(())
    }

    /// Deletes a whole table. Not undoable: jobs call it only after all their checks passed.
    pub(crate) fn delete_table(&mut self, name: &str) -> Result<()> {
        if let Some(id) = self.slots.remove(name) {
            self.tables[id] = None;
        }
        self.txn
            .delete_table(schema::table(name))
            .map_err(storage_error)?;
        Ok(())
    }

    /// Up to `limit` keys and values of `table` after `after` (or from `from`), in order.
    pub(crate) fn page(
        &mut self,
        table: TableId,
        from: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.at(table)?;
        let range = match after {
            Some(a) => t.range::<&[u8]>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => t.range::<&[u8]>(from..),
        }
        .map_err(storage_error)?;
        let mut out = Vec::new();
        for item in range.take(limit) {
            let (k, v) = item.map_err(storage_error)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The spec of a collection, from the cache or the catalog.
    pub(crate) fn spec(&mut self, ns: &str, coll: &str) -> Result<Option<Arc<CollectionSpec>>> {
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
    pub(crate) fn set_spec(
        &mut self,
        ns: &str,
        coll: &str,
        spec: Option<&CollectionSpec>,
    ) -> Result<()> {
        let key = schema::catalog_key(ns, coll);
        let catalog = self.open(schema::CATALOG)?;
        match spec {
            Some(s) => {
                let json = serde_json::to_vec(s)
                    .map_err(|e| Error::internal("spec encoding").with_source(e))?;
                self.put(catalog, &key, &json)?;
            }
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

    fn rollback(&mut self) -> Result<()> {
        while let Some(Undo { table, key, prev }) = self.undo.pop() {
            let t = self.at(table)?;
            match prev {
                Some(v) => t
                    .insert(key.as_slice(), v.as_slice())
                    .map_err(storage_error)?,
                None => t.remove(key.as_slice()).map_err(storage_error)?,
            };
        }
        while let Some((k, prev)) = self.spec_undo.pop() {
            match prev {
                Some(s) => self.specs.insert(k, s),
                None => self.specs.remove(&k),
            };
        }
        Ok(())
    }
}

struct Writer {
    db: Arc<Database>,
    commits: Arc<AtomicU64>,
    durability: Durability,
    // The writer is the only one who changes specs, so its cache is always current.
    specs: SpecCache,
}

impl Writer {
    fn new(db: Arc<Database>, durability: Durability) -> Self {
        Writer {
            db,
            commits: Arc::default(),
            durability,
            specs: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        // In relaxed mode, a durable commit follows the last write by at most this long.
        let flush_interval = match self.durability {
            Durability::Relaxed { flush_interval } => Some(flush_interval),
            _ => None,
        };
        let mut dirty_since: Option<Instant> = None;
        loop {
            let first = match (flush_interval, dirty_since) {
                (Some(every), Some(since)) => {
                    let wait = every.saturating_sub(since.elapsed());
                    match rx.recv_timeout(wait) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            let Some(first) = first else {
                if self.flush().is_ok() {
                    dirty_since = None;
                }
                continue;
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let durable = flush_interval
                .is_none_or(|every| dirty_since.is_some_and(|since| since.elapsed() >= every));
            self.commit_group(jobs, durable);
            dirty_since = if durable {
                None
            } else {
                dirty_since.or(Some(Instant::now()))
            };
        }
        if dirty_since.is_some() {
            let _ = self.flush();
        }
    }

    /// An empty durable commit: makes every earlier non-durable commit durable.
    fn flush(&mut self) -> Result<()> {
        let txn = self.db.begin_write().map_err(storage_error)?;
        txn.commit().map_err(storage_error)
    }

    fn commit_group(&mut self, jobs: Vec<Job>, durable: bool) {
        let mut answers: Vec<(oneshot::Sender<Result<Output>>, Result<Output>)> =
            Vec::with_capacity(jobs.len());
        let outcome = self.run_jobs(jobs, durable, &mut answers);
        if let Err(e) = outcome {
            // The transaction did not commit: whatever the jobs changed in the cache is void.
            self.specs.clear();
            for (reply, _) in answers {
                let _ = reply.send(Err(Error::new(e.kind(), e.message().to_owned())));
            }
            return;
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }

    fn run_jobs(
        &mut self,
        jobs: Vec<Job>,
        durable: bool,
        answers: &mut Vec<(oneshot::Sender<Result<Output>>, Result<Output>)>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(storage_error)?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| Error::internal("cannot relax durability").with_source(e))?;
        }
        let mut failure = None;
        {
            let mut t = Txn {
                txn: &txn,
                tables: Vec::new(),
                slots: HashMap::new(),
                undo: Vec::new(),
                specs: &mut self.specs,
                spec_undo: Vec::new(),
            };
            for job in jobs {
                if failure.is_some() {
                    answers.push((job.reply, Err(Error::internal("aborted"))));
                    continue;
                }
                t.undo.clear();
                t.spec_undo.clear();
                let result = (job.work)(&mut t);
                if let Err(e) = &result {
                    if is_storage_failure(e) {
                        failure = Some(Error::new(e.kind(), e.message().to_owned()));
                    } else if let Err(undo_err) = t.rollback() {
                        failure = Some(undo_err);
                    }
                }
                answers.push((job.reply, result));
            }
        }
        if let Some(e) = failure {
            let _ = txn.abort();
            return Err(e);
        }
        txn.commit().map_err(storage_error)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Errors that leave the transaction unusable, as opposed to a job's own refusal.
fn is_storage_failure(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Corrupted
    )
}
