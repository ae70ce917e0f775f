//! Reads and deletes by predicate: query, many by id, count, delete where.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use stowage_core::{Filter, Query};

use super::{item, page, path, ApiResult, AppState, JsonBody};
use crate::config::Right;
use crate::error::ApiError;

pub(crate) async fn query(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    JsonBody(mut q): JsonBody<Query>,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    if q.page.is_some() || q.page_size.is_some() {
        q.page_size = q.page_size.map(|s| s.min(st.config.limits.max_query_limit));
    } else {
        q.limit = Some(st.cap(q.limit));
    }
    Ok(page(c.query(&q).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetManyBody {
    ids: Vec<String>,
}

/// Many records by id in one request and one engine call: `items` holds those found, in
/// the order asked, `missing` the ids of those not found (absent or expired), in the order
/// asked. A record asked for twice is answered twice.
pub(crate) async fn get_many(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<GetManyBody>,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    let max = st.config.limits.max_query_limit;
    if body.ids.is_empty() || body.ids.len() > max {
        return Err(ApiError::invalid(format!(
            "ids holds {} ids: give 1 to {max} (the server's max_query_limit)",
            body.ids.len()
        )));
    }
    let ids: Vec<&str> = body.ids.iter().map(String::as_str).collect();
    let found = c.get_many(&ids).await?;
    let mut missing = Vec::new();
    let mut items = Vec::with_capacity(found.len());
    for (id, record) in body.ids.iter().zip(found) {
        match record {
            Some(r) => items.push(item(r)),
            None => missing.push(id),
        }
    }
    Ok(Json(json!({"items": items, "missing": missing})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountBody {
    #[serde(default, rename = "where")]
    filter: Filter,
}

pub(crate) async fn count(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CountBody>,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    Ok(Json(json!({"count": c.count(&body.filter).await?})).into_response())
}

pub(crate) async fn delete_where(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CountBody>,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Write).await?;
    Ok(Json(json!({"deleted": c.delete_where(&body.filter).await?})).into_response())
}
