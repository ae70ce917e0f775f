//! The [`Backend`] impl of [`SqliteBackend`]: reads on the read connections, writes through
//! the group-commit writer thread.

use async_trait::async_trait;
use stowage_core::backend::{
    Backend, BatchScope, Capabilities, ChangeFeed, CollectionStats, IndexFill, QueryHit,
    QueryRequest, Revision, ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use stowage_core::{ChangeStream, ChangeToken, Error, Result, StoredRecord, Timestamp};

use crate::catalog::{apply_spec_job, drop_job, list_namespaces, list_specs};
use crate::error::sqlite_error;
use crate::group_commit::read_layout;
use crate::open::SqliteBackend;
use crate::query::{count, get_records, run_query, scan, stats, Collect};
use crate::write::{delete_found_job, delete_prefix_job, fill_job, purge_job, write_job};

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.batch_scope = BatchScope::Namespace;
        // The writer applies mutations in its transaction.
        c.mutations = stowage_core::backend::MutationSupport::Native;
        c.unique_indexes = true;
        c.ttl = true;
        c.binary_bodies = true;
        c.persistent = self.path().is_some();
        if self.inner.config.change_log > 0 {
            c.change_feed = ChangeFeed::Resumable;
        }
        // SQLite's default limit on one value is 1 GB; 64 MiB keeps one write's memory
        // sane, as on redb.
        c.max_body_bytes = 64 << 20;
        c.fsync = self.inner.config.synchronous == crate::Synchronous::Full;
        c.snapshot_reads = true;
        c
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.read(|conn, target| {
            list_namespaces(conn).map_err(|e| sqlite_error(e, "listing namespaces", target))
        })
        .await
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>> {
        let (ns, coll) = (ns.to_owned(), collection.to_owned());
        self.read(move |conn, target| Ok(read_layout(conn, &ns, &coll, target)?.map(|l| l.stored)))
            .await
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        let ns = ns.to_owned();
        self.read(move |conn, _| list_specs(conn, &ns)).await
    }

    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        let (ns, coll, update) = (ns.to_owned(), collection.to_owned(), update.clone());
        let keep = self.inner.config.change_log;
        self.inner
            .writer
            .run(move |t| apply_spec_job(t, &ns, &coll, &update, keep))
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
        let keep = self.inner.config.change_log;
        self.inner
            .writer
            .run(move |t| drop_job(t, &ns, &coll, keep))
            .await
    }

    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let (ns, coll, ids) = (ns.to_owned(), collection.to_owned(), ids.to_vec());
        self.read_point(move |conn, target| get_records(conn, target, &ns, &coll, &ids, now))
            .await
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let ns = ns.to_owned();
        let keep = self.inner.config.change_log;
        self.inner
            .writer
            .run(move |t| write_job(t, &ns, ops, now, keep))
            .await
    }

    async fn query(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        let (ns, req) = (ns.to_owned(), req.clone());
        self.read(move |conn, target| {
            Ok(run_query(conn, target, &ns, &req, now, Collect::Page)?.hits)
        })
        .await
    }

    async fn count(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        let (ns, req) = (ns.to_owned(), req.clone());
        self.read(move |conn, target| count(conn, target, &ns, &req, now))
            .await
    }

    async fn delete_matching(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        // Found on a read connection, deleted in a write job at the versions found: the
        // search never holds the writer.
        let (owned_ns, owned_req) = (ns.to_owned(), req.clone());
        let found = self
            .read(move |conn, target| {
                Ok(run_query(conn, target, &owned_ns, &owned_req, now, Collect::Ids)?.ids)
            })
            .await?;
        if found.is_empty() {
            return Ok(0);
        }
        let (ns, coll, revision) = (ns.to_owned(), req.collection.clone(), req.revision);
        let keep = self.inner.config.change_log;
        self.inner
            .writer
            .run(move |t| delete_found_job(t, &ns, &coll, revision, found, now, keep))
            .await
    }

    async fn scan(&self, ns: &str, req: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        let (ns, req) = (ns.to_owned(), req.clone());
        self.read(move |conn, target| scan(conn, target, &ns, &req, now))
            .await
    }

    async fn delete_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let (ns, coll, prefix) = (ns.to_owned(), collection.to_owned(), prefix.to_owned());
        let keep = self.inner.config.change_log;
        self.inner
            .writer
            .run(move |t| delete_prefix_job(t, &ns, &coll, &prefix, now, keep))
            .await
    }

    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let colls: Vec<String> = self
            .list_specs(ns)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let ns = ns.to_owned();
        let keep = self.inner.config.change_log;
        self.inner
            .writer
            .run(move |t| purge_job(t, &ns, colls, now, keep))
            .await
    }

    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        let ns = ns.to_owned();
        self.read(move |conn, target| stats(conn, target, &ns))
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn, target| {
            conn.query_row("SELECT 1 FROM stowage_meta LIMIT 1", [], |_| Ok(()))
                .map_err(|e| sqlite_error(e, "pinging", target))
        })
        .await
    }

    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        if self.inner.config.change_log == 0 {
            return Err(Error::unsupported(
                self.name(),
                "a change feed (change_log=0)",
            ));
        }
        self.watch_changes(ns, after, now).await
    }
}
