//! Prometheus metrics: requests by route, method and status, latency histograms by route;
//! backend operations come from `stowage_core::layer::MetricsLayer` through the same
//! recorder.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::RwLock;

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
/// status and the latency; never headers or bodies. Requests that failed (4xx, 5xx) are
/// logged at info, the others at debug (`RUST_LOG=stowage::http=debug`): a line per
/// successful request was a tenth of a GET's time under load.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    // The template is shared (an Arc inside), not copied.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    let seconds = start.elapsed().as_secs_f64();
    // tracing takes a level only as a constant.
    macro_rules! request_line {
        ($level:expr) => {
            tracing::event!(
                target: "stowage::http",
                $level,
                method = %method,
                route = %route,
                status = code,
                latency_ms = seconds * 1000.0,
                "request"
            )
        };
    }
    if code >= 400 {
        request_line!(tracing::Level::INFO);
    } else {
        request_line!(tracing::Level::DEBUG);
    }
    handles(route, method, code, |requests, duration| {
        requests.increment(1);
        duration.record(seconds);
    });
    resp
}

/// A route's request counter for (method, status) and its duration histogram.
type RouteHandles = (HashMap<(Method, u16), Counter>, Histogram);

/// Hands `use_them` the route's handles, resolved once per label set and kept: building a
/// metric key per request was a tenth of a GET's time.
fn handles(route: &str, method: Method, status: u16, use_them: impl FnOnce(&Counter, &Histogram)) {
    static HANDLES: OnceLock<RwLock<HashMap<String, RouteHandles>>> = OnceLock::new();
    let all = HANDLES.get_or_init(Default::default);
    let key = (method, status);
    if let Some((counters, duration)) = all.read().get(route) {
        if let Some(requests) = counters.get(&key) {
            use_them(requests, duration);
            return;
        }
    }
    let mut all = all.write();
    let (counters, duration) = all.entry(route.to_owned()).or_insert_with(|| {
        (
            HashMap::new(),
            metrics::histogram!("stowage_http_request_duration_seconds", "route" => route.to_owned()),
        )
    });
    let requests = counters.entry(key).or_insert_with_key(|(method, status)| {
        metrics::counter!(
            "stowage_http_requests_total",
            "route" => route.to_owned(),
            "method" => method.to_string(),
            "status" => status.to_string()
        )
    });
    use_them(requests, duration);
}
