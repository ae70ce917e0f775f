//! Health, readiness, metrics, the OpenAPI document, and the answer to unknown routes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub(crate) async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.health().await {
        Ok(h) => Json(json!({
            "status": "ready",
            "backend": h.backend,
            "latency_ms": h.latency.as_secs_f64() * 1000.0,
        }))
        .into_response(),
        Err(e) => {
            let mut resp = ApiError::from(e).into_response();
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp
        }
    }
}

pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn openapi(State(st): State<AppState>) -> Response {
    let blind_indexes = st.store.capabilities().blind_indexes;
    Json(crate::openapi::document(
        !st.config.tokens.is_empty(),
        blind_indexes,
        st.config.limits.max_query_limit,
    ))
    .into_response()
}

pub(crate) async fn fallback() -> ApiError {
    ApiError::no_route()
}
