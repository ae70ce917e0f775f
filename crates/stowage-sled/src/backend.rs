//! The [`Backend`] impl of [`SledBackend`]: reads on the caller's thread (sled reads are
//! lock-free), writes through the group-commit writer.

use async_trait::async_trait;
use stowage_core::backend::{
    Backend, BatchScope, Capabilities, ChangeFeed, CollectionStats, IndexFill, QueryHit,
    QueryRequest, Revision, ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use stowage_core::{ChangeStream, ChangeToken, Error, ErrorKind, Result, StoredRecord, Timestamp};

use crate::open::SledBackend;
use crate::schema;
use stowage_core::kv::query::{self as kv, Collect, KvRead};
use stowage_core::kv::write::{
    apply_spec_job, delete_found_job, delete_prefix_job, drop_job, fill_job, purge_job, write_job,
};

#[async_trait]
impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.batch_scope = BatchScope::Namespace;
        c.unique_indexes = true;
        c.ttl = true;
        c.binary_bodies = true;
        c.persistent = true;
        if self.inner.change_log > 0 {
            c.change_feed = ChangeFeed::Resumable;
        }
        // sled keeps each value whole in memory while it is written: 16 MiB keeps a write's
        // memory sane.
        c.max_body_bytes = 16 << 20;
        // What sled does not do: its flush is not an fsync (see the crate docs), and reads
        // are not snapshots.
        c.fsync = false;
        c.snapshot_reads = false;
        c
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        kv::namespaces(&self.read())
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>> {
        kv::read_spec(&self.read(), ns, collection)
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        kv::specs(&self.read(), ns)
    }

    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        let (ns, coll, update) = (ns.to_owned(), collection.to_owned(), update.clone());
        self.inner
            .writer
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
        self.inner
            .writer
            .run(move |t| fill_job(t, &ns, &coll, revision, fills, now))
            .await
    }

    async fn drop_collection(&self, ns: &str, collection: &str) -> Result<bool> {
        let (ns, coll) = (ns.to_owned(), collection.to_owned());
        self.inner
            .writer
            .run(move |t| drop_job(t, &ns, &coll))
            .await
    }

    async fn get(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        let found = self.read().get_live(ns, collection, &[id], now)?;
        Ok(found.into_iter().next().flatten())
    }

    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.read().get_live(ns, collection, &ids, now)
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let ns = ns.to_owned();
        self.inner
            .writer
            .run(move |t| write_job(t, &ns, ops, now))
            .await
    }

    async fn query(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        Ok(kv::run_query(&self.read(), ns, req, now, Collect::Page)?.hits)
    }

    async fn count(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        let all = QueryRequest {
            after: None,
            offset: 0,
            limit: None,
            ..req.clone()
        };
        Ok(kv::run_query(&self.read(), ns, &all, now, Collect::Count)?.count)
    }

    async fn delete_matching(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        // Found in a read transaction, deleted in a write job at the versions found: the
        // walk never holds the writer.
        let found = kv::run_query(&self.read(), ns, req, now, Collect::Ids)?.ids;
        if found.is_empty() {
            return Ok(0);
        }
        let (ns, coll, revision) = (ns.to_owned(), req.collection.clone(), req.revision);
        self.inner
            .writer
            .run(move |t| delete_found_job(t, &ns, &coll, revision, found, now))
            .await
    }

    async fn scan(&self, ns: &str, req: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        kv::scan_page(&self.read(), ns, req, now)
    }

    async fn delete_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let (ns, coll, prefix) = (ns.to_owned(), collection.to_owned(), prefix.to_owned());
        self.inner
            .writer
            .run(move |t| delete_prefix_job(t, &ns, &coll, &prefix, now))
            .await
    }

    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let colls: Vec<String> = kv::specs(&self.read(), ns)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let ns = ns.to_owned();
        self.inner
            .writer
            .run(move |t| purge_job(t, &ns, colls, now))
            .await
    }

    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        kv::collection_stats(&self.read(), ns)
    }

    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        if self.inner.change_log == 0 {
            return Err(Error::unsupported(
                self.name(),
                "a change feed (change_log=0)",
            ));
        }
        // The namespace's changes are logged from now on (and stay logged across restarts).
        let owned = ns.to_owned();
        self.inner.writer.run(move |t| t.start_log(&owned)).await?;
        self.inner.changes.watch_with(ns, after, |after| {
            kv::changes_after(&self.read(), ns, after, now)
        })
    }

    async fn ping(&self) -> Result<()> {
        self.read()
            .table(schema::META)?
            .ok_or_else(|| Error::new(ErrorKind::Corrupted, "the Stowage format marker is gone"))?;
        Ok(())
    }
}
