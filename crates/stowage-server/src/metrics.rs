//! Prometheus metrics: requests by route, method and status, latency histograms by route,
//! and backend operations by backend and operation.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use stowage_core::backend::Backend;
use stowage_core::layer::{Call, Layer};
use stowage_core::Result;

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

/// Middleware: counts, times and logs every request by its route template. The log line
/// has the method, the route template (never the path: ids can be personal data), the
/// status and the latency; never headers or bodies.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    tracing::info!(
        target: "stowage::http",
        method = %method,
        route = %route,
        status = code,
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    let status = code.to_string();
    metrics::counter!("stowage_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("stowage_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// Counts and times every backend call (by backend, namespace, collection, operation and
/// outcome) through the `metrics` facade: a layer, so it forwards what it does not see.
#[derive(Debug)]
pub struct MetricsLayer(Arc<dyn Backend>);

impl MetricsLayer {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        MetricsLayer(inner)
    }
}

impl Layer for MetricsLayer {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.0
    }

    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        forward: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let start = Instant::now();
            let r = forward.await;
            let backend = self.0.name();
            let outcome = match &r {
                Ok(_) => "ok",
                Err(e) => e.kind().as_str(),
            };
            metrics::counter!(
                "stowage_backend_operations_total",
                "backend" => backend,
                "namespace" => call.namespace.unwrap_or("").to_owned(),
                "collection" => call.collection.unwrap_or("").to_owned(),
                "op" => call.op,
                "outcome" => outcome,
            )
            .increment(1);
            metrics::histogram!("stowage_backend_operation_duration_seconds", "backend" => backend, "op" => call.op)
                .record(start.elapsed().as_secs_f64());
            r
        })
    }
}
