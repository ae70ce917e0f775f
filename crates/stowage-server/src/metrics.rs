//! Prometheus metrics: requests by route, method and status, latency histograms by route;
//! backend operations come from `stowage_core::layer::MetricsLayer` through the same
//! recorder.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

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
