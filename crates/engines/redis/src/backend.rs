//! The [`Backend`] impl of [`RedisBackend`].

use async_trait::async_trait;
use stowage_core::backend::{
    Backend, BatchScope, Capabilities, ChangeFeed, CollectionStats, IndexFill, MutationSupport,
    QueryHit, QueryRequest, Revision, ScanRequest, SpecUpdate, StoredSpec, WriteAction, WriteOp,
    WriteResult,
};
use stowage_core::{ChangeStream, ChangeToken, Result, StoredRecord, Timestamp};

use crate::config::ClockSource;
use crate::open::RedisBackend;

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        // Every key of a namespace carries its hash tag: one script reaches them all, on a
        // cluster too.
        c.batch_scope = BatchScope::Namespace;
        // In the write script; by compare-and-set for what it leaves (see mutate.rs).
        c.mutations = MutationSupport::Native;
        c.unique_indexes = true;
        c.ttl = true;
        c.binary_bodies = true;
        c.persistent = true;
        c.shared = true;
        c.engine_clock = self.inner.config.clock == ClockSource::Server;
        if self.inner.config.change_log > 0 {
            c.change_feed = ChangeFeed::Resumable;
        }
        // Redis takes strings up to 512 MB, but a body travels as one argument of the
        // write script, which holds the server while it runs: 64 MiB bounds that pause,
        // as the other engines bound one write's memory.
        c.max_body_bytes = 64 << 20;
        // Redis acknowledges before its append-only file is fsynced (everysec at best), and
        // a query reads an index, then records, in separate commands.
        c.fsync = false;
        c.snapshot_reads = false;
        c
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.namespaces_now().await
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>> {
        self.load_spec_now(ns, collection).await
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        self.list_specs_now(ns).await
    }

    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        self.apply_spec_now(ns, collection, update, Timestamp::now())
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
        self.fill_page(ns, collection, revision, &fills, now).await
    }

    async fn drop_collection(&self, ns: &str, collection: &str) -> Result<bool> {
        self.drop_collection_now(ns, collection, Timestamp::now())
            .await
    }

    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        self.get_records(ns, collection, ids, now).await
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let mutates = ops
            .iter()
            .any(|op| matches!(op.action, WriteAction::Mutate(_)));
        if !mutates || crate::mutate::native(&ops) {
            if let Some(results) = self.write_batch(ns, &ops, now).await? {
                return Ok(results);
            }
        }
        // What the script leaves: read, apply, write where unchanged (the puts come back
        // through here).
        self.inner.mutations.write(self, ns, ops, now).await
    }

    async fn query(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<Vec<QueryHit>> {
        self.run_query(ns, request, now).await
    }

    async fn count(&self, ns: &str, request: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.count_matching(ns, request, now).await
    }

    async fn delete_matching(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<u64> {
        self.delete_query(ns, request, now).await
    }

    async fn scan(
        &self,
        ns: &str,
        request: &ScanRequest,
        now: Timestamp,
    ) -> Result<Vec<StoredRecord>> {
        self.scan_page(ns, request, now).await
    }

    async fn delete_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        self.delete_id_prefix(ns, collection, prefix, now).await
    }

    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        self.purge(ns, now).await
    }

    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        self.collection_stats(ns).await
    }

    async fn ping(&self) -> Result<()> {
        RedisBackend::ping(self).await
    }

    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        self.watch_changes(ns, after, now).await
    }
}
