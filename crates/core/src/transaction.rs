//! Optimistic transactions: read records, stage writes, commit them as one atomic batch
//! that also checks every record read.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::backend::{Precondition, RecordMeta};
use crate::collection::{Collection, Put};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Version, Versioned};
use crate::store::{CollectionEntry, Store};

/// How many times [`Store::transact`] runs a transaction that keeps meeting conflicts.
pub const TRANSACTION_ATTEMPTS: usize = 10;

/// A unit of work: the records it read, with their versions, and the writes it staged.
///
/// Nothing is written until [`Transaction::commit`], which applies every staged write as
/// one atomic batch on the condition that every record read is still at the version read
/// (or still absent). If another writer got there first, the commit fails with Conflict and
/// writes nothing; [`Store::transact`] then runs the whole unit again.
///
/// Reads see the store, not the transaction's own staged writes. Only point reads are
/// checked: a query inside a transaction is not (no phantom protection), so a rule that
/// depends on which records match a query needs a record that every writer reads.
#[derive(Debug)]
pub struct Transaction {
    store: Store,
    reads: Vec<(Arc<CollectionEntry>, String, Option<Version>)>,
    writes: Vec<Staged>,
}

#[derive(Debug)]
struct Staged {
    entry: Arc<CollectionEntry>,
    id: String,
    write: Option<(Value, Put)>,
}

impl Transaction {
    pub(crate) fn new(store: Store) -> Self {
        Transaction {
            store,
            reads: Vec::new(),
            writes: Vec::new(),
        }
    }

    /// Reads a record and remembers its version (or its absence) for the commit to check.
    /// Reading one record twice at different versions fails at once with Conflict: the
    /// transaction cannot commit any more.
    pub async fn get<T>(&mut self, coll: &Collection<T>, id: &str) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.same_namespace(coll)?;
        let got = coll.get(id).await?;
        let version = got.as_ref().map(|r| r.version);
        let entry = coll.entry();
        match self
            .reads
            .iter()
            .find(|(e, i, _)| Arc::ptr_eq(e, entry) && i == id)
        {
            Some((_, _, seen)) if *seen != version => {
                return Err(Error::conflict(coll.name(), id, *seen, version));
            }
            Some(_) => {}
            None => self.reads.push((entry.clone(), id.to_owned(), version)),
        }
        Ok(got)
    }

    /// Stages a write of `value` under `id`. If the transaction read the record, the write
    /// applies only at the version read; otherwise `put`'s precondition holds. A later
    /// staged write of the same record replaces an earlier one.
    pub fn put<T: Serialize>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        value: &T,
        put: Put,
    ) -> Result<()> {
        self.same_namespace(coll)?;
        let value = serde_json::to_value(value)
            .map_err(|e| Error::invalid(format!("record {id:?} cannot be serialized: {e}")))?;
        self.stage(coll.entry(), id, Some((value, put)));
        Ok(())
    }

    /// Stages a delete of `id` (at the version read, if the transaction read it).
    pub fn delete<T>(&mut self, coll: &Collection<T>, id: &str) -> Result<()> {
        self.same_namespace(coll)?;
        self.stage(coll.entry(), id, None);
        Ok(())
    }

    fn same_namespace<T>(&self, coll: &Collection<T>) -> Result<()> {
        if coll.store().namespace_name() != self.store.namespace_name() {
            return Err(Error::invalid(format!(
                "collection {:?} is in namespace {:?}, the transaction in {:?}",
                coll.name(),
                coll.store().namespace_name(),
                self.store.namespace_name()
            )));
        }
        Ok(())
    }

    fn stage(&mut self, entry: &Arc<CollectionEntry>, id: &str, write: Option<(Value, Put)>) {
        self.writes
            .retain(|s| !(Arc::ptr_eq(&s.entry, entry) && s.id == id));
        self.writes.push(Staged {
            entry: entry.clone(),
            id: id.to_owned(),
            write,
        });
    }

    /// The version read for a record, if the transaction read it: `Some(None)` when it was
    /// read as absent.
    fn read_version(&self, entry: &Arc<CollectionEntry>, id: &str) -> Option<Option<Version>> {
        self.reads
            .iter()
            .find(|(e, i, _)| Arc::ptr_eq(e, entry) && i == id)
            .map(|(_, _, v)| *v)
    }

    /// Applies the staged writes as one atomic batch that also checks every record read.
    /// Conflict (or AlreadyExists for a record read as absent) when another writer changed
    /// what was read: nothing is written. Returns, per staged write in staging order, what
    /// it stored or removed.
    pub async fn commit(self) -> Result<Vec<Option<RecordMeta>>> {
        let mut batch = self.store.batch();
        let guard = |read: Option<Version>| match read {
            Some(v) => Precondition::Version(v),
            None => Precondition::Absent,
        };
        for s in &self.writes {
            let coll: Collection<Value> = Collection::new(self.store.clone(), s.entry.clone());
            let read = self.read_version(&s.entry, &s.id);
            match &s.write {
                Some((value, put)) => {
                    let mut put = *put;
                    if let Some(read) = read {
                        put = put.with_precondition(guard(read));
                    }
                    batch.put(&coll, &s.id, value, put);
                }
                None => match read {
                    Some(Some(v)) => {
                        batch.delete_if_version(&coll, &s.id, v);
                    }
                    // Read as absent: deleting nothing, as long as it stays absent.
                    Some(None) => {
                        batch.check(&coll, &s.id, Precondition::Absent);
                    }
                    None => {
                        batch.delete(&coll, &s.id);
                    }
                },
            }
        }
        let written = batch.len();
        for (entry, id, read) in &self.reads {
            if self
                .writes
                .iter()
                .any(|s| Arc::ptr_eq(&s.entry, entry) && s.id == *id)
            {
                continue;
            }
            let coll: Collection<Value> = Collection::new(self.store.clone(), entry.clone());
            batch.check(&coll, id, guard(*read));
        }
        if written == 0 {
            // Nothing to write: the reads were consistent when made, which is all a
            // read-only unit of work can ask.
            return Ok(Vec::new());
        }
        let mut results = batch.commit().await.map_err(Error::without_op)?;
        results.truncate(written);
        Ok(results)
    }
}

/// Whether a failed commit is worth running again: the records read changed meanwhile.
pub(crate) fn is_retryable(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Conflict => true,
        // A record read as absent that someone created; a unique clash (index) is final.
        ErrorKind::AlreadyExists => e.index().is_none(),
        _ => false,
    }
}

impl Store {
    /// A new transaction in this store's namespace (see [`Transaction`]).
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// Runs `work` in a transaction and commits it, running it again from the start when
    /// the commit meets a conflict, at most [`TRANSACTION_ATTEMPTS`] times. `work` may run
    /// several times, so it should only read and stage.
    ///
    /// ```
    /// # async fn demo(store: stowage_core::Store,
    /// #     wallets: stowage_core::Collection<serde_json::Value>) -> stowage_core::Result<()> {
    /// use stowage_core::Put;
    /// store
    ///     .transact(|tx| {
    ///         let wallets = wallets.clone();
    ///         Box::pin(async move {
    ///             let a = tx.get(&wallets, "a").await?.map_or(0, |r| r.value["n"].as_i64().unwrap_or(0));
    ///             tx.put(&wallets, "a", &serde_json::json!({"n": a + 1}), Put::upsert())?;
    ///             Ok(())
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transact<F, R>(&self, work: F) -> Result<R>
    where
        F: for<'t> FnMut(&'t mut Transaction) -> BoxFuture<'t, Result<R>>,
    {
        self.transact_with(TRANSACTION_ATTEMPTS, work).await
    }

    /// [`Store::transact`] with another bound on the attempts (at least 1).
    pub async fn transact_with<F, R>(&self, attempts: usize, mut work: F) -> Result<R>
    where
        F: for<'t> FnMut(&'t mut Transaction) -> BoxFuture<'t, Result<R>>,
    {
        let mut attempt = 1;
        loop {
            let mut tx = self.transaction();
            let out = work(&mut tx).await?;
            match tx.commit().await {
                Ok(_) => return Ok(out),
                Err(e) if is_retryable(&e) && attempt < attempts => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}
