//! Stowage over HTTP/JSON, for services in any language.
//!
//! [`router`] builds the axum `Router`; [`serve`] runs it on a listener until a shutdown
//! future completes, then drains in-flight requests — every write it acknowledged was
//! durable before its answer left, so a graceful stop loses nothing acknowledged.
//!
//! ```no_run
//! # async fn demo(store: stowage_core::Store) -> stowage_core::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await.unwrap();
//! // Serve until the process is stopped; pass a signal future for a graceful stop.
//! stowage_server::serve(listener, store, std::future::pending()).await
//! # }
//! ```
//!
//! # Decisions
//!
//! - Tokens are configured as SHA-256 hashes ([`hash_token`]); a token opens namespaces
//!   with one right, and `admin` ⊇ `write` ⊇ `read`. Without tokens the server refuses any
//!   address but loopback.
//! - Queries and listings without a `limit` get `min(100, max_query_limit)`; larger limits
//!   are cut to `max_query_limit`.
//! - `PUT` without preconditions upserts: 201 when the record is new (version 1), else 200.
//!   `If-Match: *` replaces an existing record whatever its version.
//! - The collection names `collections` and `batch` are reserved by the routes.
//! - `/healthz`, `/readyz`, `/metrics` and `/openapi.json` need no token.
//! - The router serves the caller's `Store` as it is: its clock, namespace and layers carry
//!   over. Backend operations appear in `/metrics` when the store was built with
//!   [`MetricsLayer`] (as `stowage serve` does).

#![deny(missing_docs)]

mod auth;
mod config;
mod error;
mod metrics;
mod openapi;
mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use stowage_core::{Error, ErrorKind, Result, Store};
use tokio::net::TcpListener;

pub use auth::hash_token;
pub use config::{Limits, Maintenance, Right, ServerConfig, TlsConfig, TokenConfig};
pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use stowage_core::layer::MetricsLayer;

/// The API's router over `store`, with metrics, body limit and timeout applied. Its watch
/// streams end only when clients leave; [`serve_with`] also ends them on shutdown.
pub fn router(store: Store, config: ServerConfig) -> Router {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    // Kept with the router, so its streams are never told to stop.
    let stop = Arc::new(stop);
    router_stopping(store, config, stopping, Some(stop))
}

fn router_stopping(
    store: Store,
    config: ServerConfig,
    stopping: tokio::sync::watch::Receiver<bool>,
    keep: Option<Arc<tokio::sync::watch::Sender<bool>>>,
) -> Router {
    let limits = config.limits.clone();
    let state = routes::AppState {
        store,
        config: Arc::new(config),
        metrics: metrics::prometheus(),
        stopping,
        _keep: keep,
    };
    Router::new()
        .route("/v1/{ns}/collections", get(routes::list_collections))
        .route(
            "/v1/{ns}/collections/{coll}",
            put(routes::put_collection)
                .get(routes::get_collection)
                .delete(routes::drop_collection),
        )
        .route("/v1/{ns}/{coll}/records", get(routes::list_records))
        .route(
            "/v1/{ns}/{coll}/records/{id}",
            get(routes::get_record)
                .put(routes::put_record)
                .patch(routes::patch_record)
                .delete(routes::delete_record),
        )
        .route("/v1/{ns}/{coll}/query", post(routes::query))
        .route("/v1/{ns}/{coll}/get", post(routes::get_many))
        .route("/v1/{ns}/{coll}/count", post(routes::count))
        .route("/v1/{ns}/{coll}/delete", post(routes::delete_where))
        .route("/v1/{ns}/batch", post(routes::batch))
        .route("/v1/{ns}/{coll}/watch", get(routes::watch))
        .route("/v1/{ns}/watch", get(routes::watch_namespace))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::fallback)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.timeout(),
        ))
        .with_state(state)
}

/// Serves the API with the default configuration until `shutdown` completes, then drains
/// in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(listener, store, ServerConfig::default(), shutdown).await
}

/// Serves the API with `config` until `shutdown` completes, then drains in-flight requests.
/// Refuses a non-loopback listener without tokens. With `config.tls`, serves HTTPS from the
/// PEM certificate chain and key it names (feature `tls`, on by default).
pub async fn serve_with(
    listener: TcpListener,
    store: Store,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr().map_err(|e| {
        Error::new(ErrorKind::Unavailable, "the listener has no address").with_source(e)
    })?;
    config.check(addr)?;
    // Watch streams never finish by themselves: they end first, then requests drain.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let purging = purge_in_background(
        store.clone(),
        config.maintenance.purge_every_seconds,
        stopping.clone(),
    );
    let app = router_stopping(store, config.clone(), stopping, None);
    let _purging = AbortOnDrop(purging);
    match config.tls.clone() {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "the HTTP server stopped").with_source(e)
            }),
        Some(tls) => serve_tls(listener, app, tls, shutdown).await,
    }
}

#[cfg(feature = "tls")]
async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: TlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // One process-wide crypto provider; a host that installed its own keeps it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map_err(|e| {
            Error::invalid(format!(
                "TLS certificate {:?} or key {:?} cannot be loaded: {e}",
                tls.cert, tls.key
            ))
        })?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Stop accepting, let requests in flight finish.
        stopper.graceful_shutdown(None);
    });
    let std_listener = listener.into_std().map_err(|e| {
        Error::new(ErrorKind::Unavailable, "the listener cannot be handed over").with_source(e)
    })?;
    axum_server::from_tcp_rustls(std_listener, rustls)
        .map_err(|e| {
            Error::new(ErrorKind::Unavailable, "the TLS listener cannot start").with_source(e)
        })?
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, "the HTTPS server stopped").with_source(e))
}

#[cfg(not(feature = "tls"))]
async fn serve_tls(
    _listener: TcpListener,
    _app: Router,
    _tls: TlsConfig,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Err(Error::unsupported(
        "HTTP server",
        "TLS in this build (enable the tls feature)",
    ))
}

/// Purges expired records, and records past their collection's retention rule, of every
/// namespace every `seconds` (0: never) until `stopping` turns true. Failures are logged and tried again at the next round.
fn purge_in_background(
    store: Store,
    seconds: u64,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if seconds == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let every = std::time::Duration::from_secs(seconds);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopping.changed() => return,
            }
            let namespaces = match store.namespaces().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "purge: listing namespaces failed");
                    continue;
                }
            };
            for name in namespaces {
                let ns = match store.namespace(&name) {
                    Ok(ns) => ns,
                    Err(e) => {
                        tracing::warn!(namespace = %name, error = %e, "purge failed");
                        continue;
                    }
                };
                match ns.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(namespace = %name, purged = n, "purged expired records");
                    }
                    Err(e) => tracing::warn!(namespace = %name, error = %e, "purge failed"),
                }
                // Retention rules: one server at a time per namespace (a lease).
                match stowage_ops::purge_retention(&ns).await {
                    Ok(r) if r.purged > 0 => tracing::info!(
                        namespace = %name, purged = r.purged, "purged records past retention"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(namespace = %name, error = %e, "retention purge failed");
                    }
                }
            }
        }
    }))
}

/// Stops the background task when the server stops, however it stops.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
