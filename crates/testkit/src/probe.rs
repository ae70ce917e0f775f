//! A layer that counts the scan and index-build traffic the store sends below it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use stowage_core::backend::{Backend, IndexFill, Revision, ScanRequest};
use stowage_core::layer::Layer;
use stowage_core::{Result, StoredRecord, Timestamp};

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
impl Layer for Probe {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
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
    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        self.largest_scan_limit.fetch_max(r.limit, Ordering::SeqCst);
        let page = self.inner.scan(ns, r, now).await?;
        assert!(page.len() <= r.limit, "a scan page exceeded its limit");
        self.scanned.fetch_add(page.len() as u64, Ordering::SeqCst);
        Ok(page)
    }
}
