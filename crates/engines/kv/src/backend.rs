//! An ordered key-value engine as a [`Backend`]: the engine supplies a [`KvStore`] — how to
//! open it, read it and what it can do — and [`KvBackend`] is its `Backend`: reads on the
//! caller's thread through [`KvRead`], writes as jobs of [`super::write`] through the
//! engine's [`GroupCommit`].

use std::fmt::Debug;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;

use super::query::{self as kv, Collect, KvRead};
use super::schema;
use super::write::{
    apply_spec_job, delete_found_job, delete_prefix_job, drop_job, fill_job, purge_job, write_job,
};
use super::GroupCommit;
use stowage_core::backend::ChangeHub;
use stowage_core::backend::{
    Backend, Capabilities, CollectionStats, IndexFill, OnHit, OnRecord, QueryHit, QueryRequest,
    Revision, ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use stowage_core::{ChangeStream, ChangeToken, Error, ErrorKind, Result, StoredRecord, Timestamp};

/// What an ordered key-value engine supplies to be a [`Backend`] as a [`KvBackend`].
pub trait KvStore: Send + Sync + Debug + 'static {
    /// How to open it.
    type Config;
    /// A view for reads (a read transaction, or the database itself).
    type Reader<'a>: KvRead
    where
        Self: 'a;

    /// Opens (or creates) the store. Blocking.
    fn open(config: Self::Config) -> Result<Self>
    where
        Self: Sized;
    /// The engine's name ("redb").
    fn name(&self) -> &'static str;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// A view for reads, at the latest commit.
    fn reader(&self) -> Result<Self::Reader<'_>>;
    /// The group commit every write goes through.
    fn writer(&self) -> &GroupCommit;
    /// Where committed changes go to watchers.
    fn changes(&self) -> &ChangeHub;
    /// How many changes a watched namespace's log keeps (0: no change feed).
    fn change_log(&self) -> u64;

    /// The live record with this id; NotFound when the collection does not exist.
    fn get_one(
        &self,
        r: &Self::Reader<'_>,
        ns: &str,
        coll: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        kv::read_live(r, &kv::records(r, ns, coll)?, id, now)
    }

    /// [`KvStore::get_one`] lending the record to `read` in place.
    fn get_one_with(
        &self,
        r: &Self::Reader<'_>,
        ns: &str,
        coll: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        kv::read_live_with(r, &kv::records(r, ns, coll)?, id, now, read)
    }

    /// The live records with these ids; NotFound when the collection does not exist.
    fn get_live(
        &self,
        r: &Self::Reader<'_>,
        ns: &str,
        coll: &str,
        ids: &[&str],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let records = kv::records(r, ns, coll)?;
        ids.iter()
            .map(|id| kv::read_live(r, &records, id, now))
            .collect()
    }
}

/// An ordered key-value store as a [`Backend`]. Cloning shares the open store; it closes
/// when the last clone is dropped, after its writer committed everything it was given.
/// It dereferences to the engine's [`KvStore`] for the engine's own methods.
#[derive(Debug)]
pub struct KvBackend<S>(Arc<S>);

impl<S> Clone for KvBackend<S> {
    fn clone(&self) -> Self {
        KvBackend(self.0.clone())
    }
}

impl<S: KvStore> KvBackend<S> {
    /// Opens (or creates) the store `config` names. Blocking: async callers run it with
    /// `spawn_blocking` (the facade does).
    pub fn open(config: S::Config) -> Result<Self> {
        S::open(config).map(|s| KvBackend(Arc::new(s)))
    }
}

impl<S> Deref for KvBackend<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

#[async_trait]
impl<S: KvStore> Backend for KvBackend<S> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = self.0.capabilities();
        // The write job applies mutations in its transaction, on every store beneath.
        c.mutations = stowage_core::backend::MutationSupport::Native;
        c
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        kv::namespaces(&self.0.reader()?)
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>> {
        kv::read_spec(&self.0.reader()?, ns, collection)
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        kv::specs(&self.0.reader()?, ns)
    }

    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        let (ns, coll, update) = (ns.to_owned(), collection.to_owned(), update.clone());
        self.0
            .writer()
            .run(move |t| apply_spec_job(t, &ns, &coll, &update))
            .await
    }

    async fn fill_index(
        &self,
        ns: &str,
        collection: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        let (ns, coll) = (ns.to_owned(), collection.to_owned());
        self.0
            .writer()
            .run(move |t| fill_job(t, &ns, &coll, revision, fills, now))
            .await
    }

    async fn drop_collection(&self, ns: &str, collection: &str) -> Result<bool> {
        let (ns, coll) = (ns.to_owned(), collection.to_owned());
        self.0.writer().run(move |t| drop_job(t, &ns, &coll)).await
    }

    async fn get(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        self.0.get_one(&self.0.reader()?, ns, collection, id, now)
    }

    async fn get_with(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        self.0
            .get_one_with(&self.0.reader()?, ns, collection, id, now, read)
    }

    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.0
            .get_live(&self.0.reader()?, ns, collection, &ids, now)
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let ns = ns.to_owned();
        self.0
            .writer()
            .run(move |t| write_job(t, &ns, ops, now))
            .await
    }

    async fn query(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        Ok(kv::run_query(&self.0.reader()?, ns, req, now, Collect::Page)?.hits)
    }

    async fn query_each(
        &self,
        ns: &str,
        req: &QueryRequest,
        now: Timestamp,
        each: &mut OnHit<'_>,
    ) -> Result<()> {
        kv::query_each(&self.0.reader()?, ns, req, now, each)
    }

    async fn count(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        let all = QueryRequest {
            after: None,
            offset: 0,
            limit: None,
            ..req.clone()
        };
        Ok(kv::run_query(&self.0.reader()?, ns, &all, now, Collect::Count)?.count)
    }

    async fn delete_matching(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        // Found in a read transaction, deleted in a write job at the versions found: the
        // walk never holds the writer.
        let found = kv::run_query(&self.0.reader()?, ns, req, now, Collect::Ids)?.ids;
        if found.is_empty() {
            return Ok(0);
        }
        let (ns, coll, revision) = (ns.to_owned(), req.collection.clone(), req.revision);
        self.0
            .writer()
            .run(move |t| delete_found_job(t, &ns, &coll, revision, found, now))
            .await
    }

    async fn scan(&self, ns: &str, req: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        kv::scan_page(&self.0.reader()?, ns, req, now)
    }

    async fn delete_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let (ns, coll, prefix) = (ns.to_owned(), collection.to_owned(), prefix.to_owned());
        self.0
            .writer()
            .run(move |t| delete_prefix_job(t, &ns, &coll, &prefix, now))
            .await
    }

    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let colls: Vec<String> = kv::specs(&self.0.reader()?, ns)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let ns = ns.to_owned();
        self.0
            .writer()
            .run(move |t| purge_job(t, &ns, colls, now))
            .await
    }

    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        kv::collection_stats(&self.0.reader()?, ns)
    }

    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        if self.0.change_log() == 0 {
            return Err(Error::unsupported(
                self.name(),
                "a change feed (change_log=0)",
            ));
        }
        // The namespace's changes are logged from now on (and stay logged across restarts).
        let owned = ns.to_owned();
        self.0.writer().run(move |t| t.start_log(&owned)).await?;
        self.0.changes().watch_with(ns, after, |after| {
            kv::changes_after(&self.0.reader()?, ns, after, now)
        })
    }

    async fn ping(&self) -> Result<()> {
        self.0
            .reader()?
            .table(schema::META)?
            .ok_or_else(|| Error::new(ErrorKind::Corrupted, "the Stowage format marker is gone"))?;
        Ok(())
    }
}
