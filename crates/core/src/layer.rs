//! Layers: backends that wrap a backend, change what they care about, and forward the rest.
//!
//! A [`Layer`] names the backend it wraps ([`Layer::inner`]) and overrides only the
//! methods it changes: every method of [`Backend`] has a default here that forwards to the
//! inner backend, and `impl<L: Layer> Backend for L` makes every layer a backend. So a
//! method added to the engine interface later is forwarded by every layer without touching
//! any of them. [`Layer::around`] sees every forwarded call by name — all a metrics or
//! logging layer needs.
//!
//! Stack layers with [`crate::StoreBuilder::layer`]; the first added is the innermost.
//!
//! ```
//! use std::sync::Arc;
//! use stowage_core::backend::Backend;
//! use stowage_core::layer::{Layer, PassThrough};
//! use stowage_core::{MemoryBackend, Store};
//!
//! let store = Store::builder(Arc::new(MemoryBackend::new()))
//!     .layer(|inner| Arc::new(PassThrough::new(inner)))
//!     .build()
//!     .unwrap();
//! ```

#[cfg(feature = "metrics")]
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use crate::backend::{
    lend_hits, lend_record, Backend, Capabilities, CollectionStats, IndexFill, OnHit, OnRecord,
    QueryHit, QueryRequest, Revision, ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use crate::error::Result;
use crate::feed::{ChangeStream, ChangeToken};
use crate::record::{StoredRecord, Timestamp};

/// One call passing through a layer: the [`Backend`] method's name and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// The method: `get`, `write`, `query`, …
    pub op: &'static str,
    /// The namespace, for calls about one.
    pub namespace: Option<&'a str>,
    /// The collection, for calls about one.
    pub collection: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(op: &'static str, namespace: Option<&'a str>, collection: Option<&'a str>) -> Self {
        Call {
            op,
            namespace,
            collection,
        }
    }
}

/// A backend that wraps another. Implement [`Layer::inner`] and the methods the layer
/// changes; everything else forwards.
#[async_trait]
pub trait Layer: std::fmt::Debug + Send + Sync + 'static {
    /// The backend this layer wraps.
    fn inner(&self) -> &Arc<dyn Backend>;

    /// Runs one forwarded call: the default just awaits `forward`. Override it to time,
    /// count or log every call in one place.
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        forward: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let _ = call;
        forward
    }

    /// Whether every body passes this layer unchanged, both ways (it overrides neither the
    /// reads nor `write`): then typed reads are lent straight from the inner backend
    /// ([`Backend::get_with`], [`Backend::query_each`]), without an owned copy of each
    /// body. Default `false`, which is always correct: a layer that rewrites bodies (a
    /// codec) or answers reads itself (a cache) has typed reads go through its own
    /// [`Layer::get`] and [`Layer::query`].
    fn leaves_bodies_alone(&self) -> bool {
        false
    }

    /// [`Backend::name`].
    fn name(&self) -> &'static str {
        self.inner().name()
    }
    /// [`Backend::capabilities`].
    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }
    /// [`Backend::list_namespaces`].
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.inner().list_namespaces().await
    }
    /// [`Backend::load_spec`].
    async fn load_spec(&self, ns: &str, c: &str) -> Result<Option<StoredSpec>> {
        self.inner().load_spec(ns, c).await
    }
    /// [`Backend::list_specs`].
    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        self.inner().list_specs(ns).await
    }
    /// [`Backend::apply_spec`].
    async fn apply_spec(&self, ns: &str, c: &str, update: &SpecUpdate) -> Result<Revision> {
        self.inner().apply_spec(ns, c, update).await
    }
    /// [`Backend::fill_index`].
    async fn fill_index(
        &self,
        ns: &str,
        c: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        self.inner().fill_index(ns, c, revision, fills, now).await
    }
    /// [`Backend::drop_collection`].
    async fn drop_collection(&self, ns: &str, c: &str) -> Result<bool> {
        self.inner().drop_collection(ns, c).await
    }
    /// [`Backend::get`].
    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        self.inner().get(ns, c, id, now).await
    }
    /// [`Backend::get_with`]: lent by the inner backend if the layer
    /// [leaves bodies alone](Layer::leaves_bodies_alone), else read through [`Layer::get`].
    async fn get_with(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        if self.leaves_bodies_alone() {
            return self.inner().get_with(ns, c, id, now, read).await;
        }
        lend_record(Layer::get(self, ns, c, id, now).await?, read)
    }
    /// [`Backend::get_many`].
    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        self.inner().get_many(ns, c, ids, now).await
    }
    /// [`Backend::write`].
    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        self.inner().write(ns, ops, now).await
    }
    /// [`Backend::query`].
    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        self.inner().query(ns, r, now).await
    }
    /// [`Backend::query_each`]: lent by the inner backend if the layer
    /// [leaves bodies alone](Layer::leaves_bodies_alone), else read through
    /// [`Layer::query`].
    async fn query_each(
        &self,
        ns: &str,
        r: &QueryRequest,
        now: Timestamp,
        each: &mut OnHit<'_>,
    ) -> Result<()> {
        if self.leaves_bodies_alone() {
            return self.inner().query_each(ns, r, now, each).await;
        }
        lend_hits(Layer::query(self, ns, r, now).await?, each)
    }
    /// [`Backend::count`].
    async fn count(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.inner().count(ns, r, now).await
    }
    /// [`Backend::delete_matching`].
    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        self.inner().delete_matching(ns, r, now).await
    }
    /// [`Backend::scan`].
    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        self.inner().scan(ns, r, now).await
    }
    /// [`Backend::delete_prefix`].
    async fn delete_prefix(&self, ns: &str, c: &str, p: &str, now: Timestamp) -> Result<u64> {
        self.inner().delete_prefix(ns, c, p, now).await
    }
    /// [`Backend::purge_expired`].
    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        self.inner().purge_expired(ns, now).await
    }
    /// [`Backend::stats`].
    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        self.inner().stats(ns).await
    }
    /// [`Backend::ping`].
    async fn ping(&self) -> Result<()> {
        self.inner().ping().await
    }
    /// [`Backend::watch`].
    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        self.inner().watch(ns, after, now).await
    }
}

/// Every layer is a backend: each call goes through [`Layer::around`] to the layer's own
/// method (which forwards unless the layer overrides it).
#[async_trait]
impl<L: Layer> Backend for L {
    fn name(&self) -> &'static str {
        Layer::name(self)
    }
    fn capabilities(&self) -> Capabilities {
        Layer::capabilities(self)
    }
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let call = Call::new("list_namespaces", None, None);
        self.around(call, Layer::list_namespaces(self)).await
    }
    async fn load_spec(&self, ns: &str, c: &str) -> Result<Option<StoredSpec>> {
        let call = Call::new("load_spec", Some(ns), Some(c));
        self.around(call, Layer::load_spec(self, ns, c)).await
    }
    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        let call = Call::new("list_specs", Some(ns), None);
        self.around(call, Layer::list_specs(self, ns)).await
    }
    async fn apply_spec(&self, ns: &str, c: &str, update: &SpecUpdate) -> Result<Revision> {
        let call = Call::new("apply_spec", Some(ns), Some(c));
        self.around(call, Layer::apply_spec(self, ns, c, update))
            .await
    }
    async fn fill_index(
        &self,
        ns: &str,
        c: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        let call = Call::new("fill_index", Some(ns), Some(c));
        self.around(call, Layer::fill_index(self, ns, c, revision, fills, now))
            .await
    }
    async fn drop_collection(&self, ns: &str, c: &str) -> Result<bool> {
        let call = Call::new("drop_collection", Some(ns), Some(c));
        self.around(call, Layer::drop_collection(self, ns, c)).await
    }
    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        let call = Call::new("get", Some(ns), Some(c));
        self.around(call, Layer::get(self, ns, c, id, now)).await
    }
    async fn get_with(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        // Seen by `around` as the `get` it is.
        let call = Call::new("get", Some(ns), Some(c));
        self.around(call, Layer::get_with(self, ns, c, id, now, read))
            .await
    }
    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let call = Call::new("get_many", Some(ns), Some(c));
        self.around(call, Layer::get_many(self, ns, c, ids, now))
            .await
    }
    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        // A batch may span collections: it is named by its first op's.
        let first = ops.first().map(|op| op.collection.clone());
        let call = Call::new("write", Some(ns), first.as_deref());
        self.around(call, Layer::write(self, ns, ops, now)).await
    }
    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        let call = Call::new("query", Some(ns), Some(&r.collection));
        self.around(call, Layer::query(self, ns, r, now)).await
    }
    async fn query_each(
        &self,
        ns: &str,
        r: &QueryRequest,
        now: Timestamp,
        each: &mut OnHit<'_>,
    ) -> Result<()> {
        // Seen by `around` as the `query` it is.
        let call = Call::new("query", Some(ns), Some(&r.collection));
        self.around(call, Layer::query_each(self, ns, r, now, each))
            .await
    }
    async fn count(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        let call = Call::new("count", Some(ns), Some(&r.collection));
        self.around(call, Layer::count(self, ns, r, now)).await
    }
    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        let call = Call::new("delete_matching", Some(ns), Some(&r.collection));
        self.around(call, Layer::delete_matching(self, ns, r, now))
            .await
    }
    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        let call = Call::new("scan", Some(ns), Some(&r.collection));
        self.around(call, Layer::scan(self, ns, r, now)).await
    }
    async fn delete_prefix(&self, ns: &str, c: &str, p: &str, now: Timestamp) -> Result<u64> {
        let call = Call::new("delete_prefix", Some(ns), Some(c));
        self.around(call, Layer::delete_prefix(self, ns, c, p, now))
            .await
    }
    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let call = Call::new("purge_expired", Some(ns), None);
        self.around(call, Layer::purge_expired(self, ns, now)).await
    }
    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        let call = Call::new("stats", Some(ns), None);
        self.around(call, Layer::stats(self, ns)).await
    }
    async fn ping(&self) -> Result<()> {
        self.around(Call::new("ping", None, None), Layer::ping(self))
            .await
    }
    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        let call = Call::new("watch", Some(ns), None);
        self.around(call, Layer::watch(self, ns, after, now)).await
    }
}

/// A layer that changes nothing: the base for tests that a stack forwards every call.
#[derive(Debug)]
pub struct PassThrough {
    inner: Arc<dyn Backend>,
}

impl PassThrough {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        PassThrough { inner }
    }
}

impl Layer for PassThrough {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
    fn leaves_bodies_alone(&self) -> bool {
        true
    }
}

/// Runs every backend operation in a `stowage.backend` span (op, namespace, collection) and
/// logs, at warn, failures beyond ordinary answers (Internal, Corrupted, Unavailable): a
/// NotFound or a Conflict is an answer, not an incident. Feature `tracing`.
#[cfg(feature = "tracing")]
#[derive(Debug)]
pub struct TracingLayer {
    inner: Arc<dyn Backend>,
}

#[cfg(feature = "tracing")]
impl TracingLayer {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        TracingLayer { inner }
    }
}

#[cfg(feature = "tracing")]
impl Layer for TracingLayer {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
    fn leaves_bodies_alone(&self) -> bool {
        true
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        forward: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "stowage.backend",
            op = call.op,
            namespace = call.namespace.unwrap_or(""),
            collection = call.collection.unwrap_or(""),
        );
        Box::pin(
            async move {
                let r = forward.await;
                if let Err(e) = &r {
                    use crate::ErrorKind::{Corrupted, Internal, Unavailable};
                    if matches!(e.kind(), Internal | Corrupted | Unavailable) {
                        tracing::warn!(kind = %e.kind(), error = %e, "backend operation failed");
                    }
                }
                r
            }
            .instrument(span),
        )
    }
}

/// Counts and times every backend call (by backend, namespace, collection, operation and
/// outcome) through the `metrics` facade, so the application picks the exporter (`stowage
/// serve` renders Prometheus). Feature `metrics`.
///
/// Each label set's handles are resolved once and kept: building a metric key per call
/// was a tenth of a served GET's time. So install the recorder before the store's first
/// operation — as the `metrics` crate asks of handles anyway.
#[cfg(feature = "metrics")]
pub struct MetricsLayer {
    inner: Arc<dyn Backend>,
    /// namespace → collection → (op, outcome) → operations counter.
    counters: MetricHandles<metrics::Counter>,
    /// op → duration histogram.
    durations: parking_lot::RwLock<HashMap<&'static str, metrics::Histogram>>,
}

/// Counters by namespace, then collection, then (op, outcome): looked up by borrowed names.
#[cfg(feature = "metrics")]
type MetricHandles<H> =
    parking_lot::RwLock<HashMap<String, HashMap<String, HashMap<(&'static str, &'static str), H>>>>;

#[cfg(feature = "metrics")]
impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MetricsLayer").field(&self.inner).finish()
    }
}

#[cfg(feature = "metrics")]
impl MetricsLayer {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        MetricsLayer {
            inner,
            counters: Default::default(),
            durations: Default::default(),
        }
    }

    fn count(&self, call: &Call<'_>, outcome: &'static str) {
        let (ns, coll) = (call.namespace.unwrap_or(""), call.collection.unwrap_or(""));
        let key = (call.op, outcome);
        if let Some(c) = self
            .counters
            .read()
            .get(ns)
            .and_then(|m| m.get(coll))
            .and_then(|m| m.get(&key))
        {
            c.increment(1);
            return;
        }
        let c = metrics::counter!(
            "stowage_backend_operations_total",
            "backend" => self.inner.name(),
            "namespace" => ns.to_owned(),
            "collection" => coll.to_owned(),
            "op" => call.op,
            "outcome" => outcome,
        );
        c.increment(1);
        self.counters
            .write()
            .entry(ns.to_owned())
            .or_default()
            .entry(coll.to_owned())
            .or_default()
            .insert(key, c);
    }

    fn time(&self, op: &'static str, seconds: f64) {
        if let Some(h) = self.durations.read().get(op) {
            h.record(seconds);
            return;
        }
        let h = metrics::histogram!(
            "stowage_backend_operation_duration_seconds",
            "backend" => self.inner.name(),
            "op" => op
        );
        h.record(seconds);
        self.durations.write().insert(op, h);
    }
}

#[cfg(feature = "metrics")]
impl Layer for MetricsLayer {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
    fn leaves_bodies_alone(&self) -> bool {
        true
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        forward: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let start = std::time::Instant::now();
            let r = forward.await;
            let outcome = match &r {
                Ok(_) => "ok",
                Err(e) => e.kind().as_str(),
            };
            self.count(&call, outcome);
            self.time(call.op, start.elapsed().as_secs_f64());
            r
        })
    }
}
