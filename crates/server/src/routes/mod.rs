//! The HTTP API: one handler per route, each a thin translation onto the core `Store`, one
//! file per resource. This file holds what every handler shares.

mod batch;
mod collections;
mod operations;
mod query;
mod records;
mod watch;

pub(crate) use batch::batch;
pub(crate) use collections::{drop_collection, get_collection, list_collections, put_collection};
pub(crate) use operations::{fallback, healthz, metrics, openapi, readyz};
pub(crate) use query::{count, delete_where, get_many, query};
pub(crate) use records::{delete_record, get_record, list_records, patch_record, put_record};
pub(crate) use watch::{watch, watch_namespace};

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query as UrlQuery, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use stowage_core::{Collection, Store, Versioned};

use crate::auth::authorize;
use crate::config::{Right, ServerConfig};
use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Turns true when the server stops: watch streams end then.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// The sender of `stopping`, for a router that no server stops.
    pub(crate) _keep: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

pub(super) type ApiResult = Result<Response, ApiError>;

/// A JSON request body: 413 past the body limit, 400 naming the problem otherwise.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("the request body is larger than the server's limit")
            } else {
                ApiError::invalid(format!(
                    "the request body could not be read: {}",
                    r.body_text()
                ))
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::invalid(format!(
                "the request body is not valid JSON for this route: {e}"
            ))
        })
    }
}

pub(super) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::invalid(format!("bad path: {}", e.body_text())))
}

pub(super) fn url_query<T>(q: Result<UrlQuery<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|UrlQuery(t)| t)
        .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
}

impl AppState {
    pub(super) fn allow(
        &self,
        headers: &HeaderMap,
        ns: &str,
        right: Right,
    ) -> Result<Store, ApiError> {
        authorize(&self.config.tokens, headers, ns, right)?;
        Ok(self.store.namespace(ns)?)
    }

    pub(super) async fn collection(
        &self,
        headers: &HeaderMap,
        ns: &str,
        coll: &str,
        right: Right,
    ) -> Result<Collection<Value>, ApiError> {
        let store = self.allow(headers, ns, right)?;
        Ok(store.existing_collection::<Value>(coll).await?)
    }

    pub(super) fn cap(&self, limit: Option<usize>) -> usize {
        let max = self.config.limits.max_query_limit;
        limit.unwrap_or(max.min(100)).min(max)
    }
}

/// A record as listings and queries show it.
pub(super) fn item(r: Versioned<Value>) -> Value {
    json!({
        "id": r.id,
        "version": r.version,
        "body": r.value,
        "expires_at": r.expires_at.map(stowage_core::Timestamp::to_rfc3339),
    })
}

pub(super) fn page(p: stowage_core::Page<Value>) -> Response {
    let items: Vec<Value> = p.items.into_iter().map(item).collect();
    Json(json!({"items": items, "next_cursor": p.next_cursor})).into_response()
}
