//! The [`Backend`] impl of [`PostgresBackend`].

use async_trait::async_trait;
use stowage_core::backend::{
    Backend, BatchScope, Capabilities, ChangeFeed, CollectionStats, IndexFill, QueryHit,
    QueryRequest, Revision, ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use stowage_core::{ChangeStream, ChangeToken, Result, StoredRecord, Timestamp};

use crate::catalog::{list_entries, read_entries};
use crate::config::ClockSource;
use crate::open::PostgresBackend;
use crate::pool::Conn;

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.batch_scope = BatchScope::Namespace;
        // Applied in the write's transaction, under a row lock (mutate.rs).
        c.mutations = stowage_core::backend::MutationSupport::Native;
        c.unique_indexes = true;
        c.ttl = true;
        c.binary_bodies = true;
        c.persistent = true;
        c.shared = true;
        c.engine_clock = self.inner.clock == ClockSource::Database;
        if self.inner.change_log > 0 {
            c.change_feed = ChangeFeed::Resumable;
        }
        // PostgreSQL takes up to 1 GiB in a field; 64 MiB keeps one write's memory sane, as
        // on the embedded engines.
        c.max_body_bytes = 64 << 20;
        // As the server is configured: PostgreSQL's default (fsync, synchronous_commit on).
        c.fsync = true;
        c.snapshot_reads = true;
        c
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let client = self.inner.pool.client("listing namespaces").await?;
        let rows = Conn::Client(&client)
            .query(
                "SELECT DISTINCT namespace FROM stowage.collections ORDER BY namespace",
                &[],
            )
            .await
            .map_err(|e| {
                crate::error::pg_error(e, "listing namespaces", self.inner.pool.target())
            })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>> {
        let client = self.inner.pool.client("reading a spec").await?;
        let entry = read_entries(
            Conn::Client(&client),
            ns,
            &[collection],
            self.inner.pool.target(),
        )
        .await?
        .pop();
        Ok(entry.map(|(_, e)| e.stored))
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        let client = self.inner.pool.client("listing collections").await?;
        Ok(
            list_entries(Conn::Client(&client), ns, self.inner.pool.target())
                .await?
                .into_iter()
                .map(|(n, e)| (n, e.stored))
                .collect(),
        )
    }

    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        self.apply_spec_tx(ns, collection, update).await
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
        self.drop_collection_tx(ns, collection).await
    }

    async fn get(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        let mut got = self
            .get_records(ns, collection, &[id.to_owned()], now)
            .await?;
        Ok(got.pop().flatten())
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
        self.write_batch(ns, &ops, now).await
    }

    async fn query(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        self.run_query(ns, req, now).await
    }

    async fn count(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.count_matching(ns, req, now).await
    }

    async fn delete_matching(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.delete_query(ns, req, now).await
    }

    async fn scan(&self, ns: &str, req: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        self.scan_page(ns, req, now).await
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

    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        self.watch_changes(ns, after, now).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.pool.ping().await.map(drop)
    }
}
