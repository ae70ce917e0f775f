//! Prometheus metrics: requests by route, method and status, latency histograms by route,
//! and backend operations by backend and operation.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use stowage_core::backend::{
    Backend, Capabilities, CollectionStats, IndexFill, QueryHit, QueryRequest, Revision,
    ScanRequest, SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use stowage_core::{Result, StoredRecord, Timestamp};

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process's Prometheus recorder. It is global (the `metrics` facade has one recorder
/// per process), so every server of the process shares it; if the host installed its own
/// recorder first, Stowage's metrics go to that one and `/metrics` renders an empty page.
pub(crate) fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets(LATENCY_BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            builder()
                .install_recorder()
                .unwrap_or_else(|_| builder().build_recorder().handle())
        })
        .clone()
}

/// Middleware: counts and times every request by its route template.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("stowage_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("stowage_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// A backend that times every operation of the one it wraps.
#[derive(Debug)]
pub(crate) struct Metered(pub(crate) Arc<dyn Backend>);

impl Metered {
    fn record<T>(&self, op: &'static str, start: Instant, r: &Result<T>) {
        let backend = self.0.name();
        let outcome = if r.is_ok() { "ok" } else { "error" };
        metrics::counter!("stowage_backend_operations_total", "backend" => backend, "op" => op, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("stowage_backend_operation_duration_seconds", "backend" => backend, "op" => op)
            .record(start.elapsed().as_secs_f64());
    }
}

macro_rules! timed {
    ($self:ident, $op:literal, $call:expr) => {{
        let start = Instant::now();
        let r = $call.await;
        $self.record($op, start, &r);
        r
    }};
}

#[async_trait]
impl Backend for Metered {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        timed!(self, "list_namespaces", self.0.list_namespaces())
    }
    async fn load_spec(&self, ns: &str, c: &str) -> Result<Option<StoredSpec>> {
        timed!(self, "load_spec", self.0.load_spec(ns, c))
    }
    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        timed!(self, "list_specs", self.0.list_specs(ns))
    }
    async fn apply_spec(&self, ns: &str, c: &str, update: &SpecUpdate) -> Result<Revision> {
        timed!(self, "apply_spec", self.0.apply_spec(ns, c, update))
    }
    async fn fill_index(
        &self,
        ns: &str,
        c: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        timed!(
            self,
            "fill_index",
            self.0.fill_index(ns, c, revision, fills, now)
        )
    }
    async fn drop_collection(&self, ns: &str, c: &str) -> Result<bool> {
        timed!(self, "drop_collection", self.0.drop_collection(ns, c))
    }
    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        timed!(self, "get", self.0.get(ns, c, id, now))
    }
    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        timed!(self, "get_many", self.0.get_many(ns, c, ids, now))
    }
    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        timed!(self, "write", self.0.write(ns, ops, now))
    }
    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        timed!(self, "query", self.0.query(ns, r, now))
    }
    async fn count(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        timed!(self, "count", self.0.count(ns, r, now))
    }
    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        timed!(self, "delete_matching", self.0.delete_matching(ns, r, now))
    }
    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        timed!(self, "scan", self.0.scan(ns, r, now))
    }
    async fn delete_prefix(&self, ns: &str, c: &str, p: &str, now: Timestamp) -> Result<u64> {
        timed!(self, "delete_prefix", self.0.delete_prefix(ns, c, p, now))
    }
    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        timed!(self, "purge_expired", self.0.purge_expired(ns, now))
    }
    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        timed!(self, "stats", self.0.stats(ns))
    }
    async fn ping(&self) -> Result<()> {
        timed!(self, "ping", self.0.ping())
    }
}
