//! Collections: declare or change a spec, read it, list, drop.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use stowage_core::CollectionSpec;

use super::{path, ApiResult, AppState, JsonBody};
use crate::config::Right;
use crate::error::ApiError;

/// A collection named like the route segment would be unreachable.
const RESERVED: &[&str] = &["collections", "batch"];

pub(crate) async fn put_collection(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<CollectionSpec>,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let store = st.allow(&headers, &ns, Right::Admin)?;
    if RESERVED.contains(&coll.as_str()) {
        return Err(ApiError::invalid(format!(
            "collection name {coll:?} is reserved by the HTTP API"
        )));
    }
    // This server's API has no blind indexes unless its store encrypts (its OpenAPI
    // document leaves the field out): a request asking for one is refused as malformed.
    if let Some(ix) = spec.indexes.iter().find(|i| i.blind) {
        if !store.capabilities().blind_indexes {
            return Err(ApiError::invalid(format!(
                "index {:?} is blind, which needs a server started with a key ring \
                 (stowage serve --keyring)",
                ix.name
            )));
        }
    }
    let existed = store.backend().load_spec(&ns, &coll).await?.is_some();
    let c = store.collection_with_spec::<Value>(&coll, spec).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(c.spec())).into_response())
}

pub(crate) async fn get_collection(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    Ok(Json(c.spec()).into_response())
}

pub(crate) async fn list_collections(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let ns = path(p)?;
    let store = st.allow(&headers, &ns, Right::Read)?;
    let list: Vec<Value> = store
        .collections()
        .await?
        .into_iter()
        .map(|(name, spec)| json!({"name": name, "spec": spec}))
        .collect();
    Ok(Json(json!({ "collections": list })).into_response())
}

pub(crate) async fn drop_collection(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let store = st.allow(&headers, &ns, Right::Admin)?;
    if store.drop_collection(&coll).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(stowage_core::Error::collection_not_found(&ns, &coll).into())
    }
}
