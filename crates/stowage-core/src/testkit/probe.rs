//! A pass-through backend that counts what the store asks of the one below it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{
    Backend, Capabilities, CollectionStats, IndexFill, QueryHit, QueryRequest, Revision,
    ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use crate::{Result, StoredRecord, Timestamp};

/// Forwards every call to `inner` and records the scan and index-build traffic, so tests
/// can check that scans and index builds go in bounded pages instead of loading a
/// collection at once.
#[derive(Debug)]
pub struct Probe {
    inner: Arc<dyn Backend>,
    scanned: AtomicU64,
    largest_scan_limit: AtomicUsize,
    filled: AtomicU64,
    largest_fill: AtomicUsize,
}

impl Probe {
    /// A probe over `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Probe {
            inner,
            scanned: AtomicU64::new(0),
            largest_scan_limit: AtomicUsize::new(0),
            filled: AtomicU64::new(0),
            largest_fill: AtomicUsize::new(0),
        }
    }

    /// Records returned by scan pages so far.
    pub fn scanned(&self) -> u64 {
        self.scanned.load(Ordering::SeqCst)
    }

    /// The largest page any scan asked for.
    pub fn largest_scan_limit(&self) -> usize {
        self.largest_scan_limit.load(Ordering::SeqCst)
    }

    /// Records handed to `fill_index` so far.
    pub fn filled(&self) -> u64 {
        self.filled.load(Ordering::SeqCst)
    }

    /// The most records one `fill_index` call carried.
    pub fn largest_fill(&self) -> usize {
        self.largest_fill.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Backend for Probe {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.inner.list_namespaces().await
    }
    async fn load_spec(&self, ns: &str, c: &str) -> Result<Option<StoredSpec>> {
        self.inner.load_spec(ns, c).await
    }
    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        self.inner.list_specs(ns).await
    }
    async fn apply_spec(&self, ns: &str, c: &str, update: &SpecUpdate) -> Result<Revision> {
        self.inner.apply_spec(ns, c, update).await
    }
    async fn fill_index(
        &self,
        ns: &str,
        c: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        self.largest_fill.fetch_max(fills.len(), Ordering::SeqCst);
        self.filled.fetch_add(fills.len() as u64, Ordering::SeqCst);
        self.inner.fill_index(ns, c, revision, fills, now).await
    }
    async fn drop_collection(&self, ns: &str, c: &str) -> Result<bool> {
        self.inner.drop_collection(ns, c).await
    }
    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        self.inner.get(ns, c, id, now).await
    }
    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        self.inner.get_many(ns, c, ids, now).await
    }
    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        self.inner.write(ns, ops, now).await
    }
    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        self.inner.query(ns, r, now).await
    }
    async fn count(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.inner.count(ns, r, now).await
    }
    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.inner.delete_matching(ns, r, now).await
    }
    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        self.largest_scan_limit.fetch_max(r.limit, Ordering::SeqCst);
        let page = self.inner.scan(ns, r, now).await?;
        assert!(page.len() <= r.limit, "a scan page exceeded its limit");
        self.scanned.fetch_add(page.len() as u64, Ordering::SeqCst);
        Ok(page)
    }
    async fn delete_prefix(&self, ns: &str, c: &str, p: &str, now: Timestamp) -> Result<u64> {
        self.inner.delete_prefix(ns, c, p, now).await
    }
    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        self.inner.purge_expired(ns, now).await
    }
    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        self.inner.stats(ns).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
