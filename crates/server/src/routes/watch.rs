//! The change feed as server-sent events, of a collection or a namespace.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{path, url_query, ApiResult, AppState};
use crate::config::Right;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchParams {
    after: Option<u64>,
}

/// Where a watch resumes: `Last-Event-ID` (what an EventSource sends on reconnect), else
/// `?after=`; both must be a token of at most 18 digits ([`crate::openapi::MAX_TOKEN`]).
fn resume_token(headers: &HeaderMap, after: Option<u64>) -> Result<Option<u64>, ApiError> {
    if after.is_some_and(|t| t > crate::openapi::MAX_TOKEN) {
        return Err(ApiError::invalid(format!(
            "after must be a change token of at most {}",
            crate::openapi::MAX_TOKEN
        )));
    }
    match headers.get("last-event-id") {
        None => Ok(after),
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID must be a change token: 1 to 18 digits")
                })?,
        )),
    }
}

/// Server-sent events: `id:` the resume token, `event:` the op, `data:` the event as JSON;
/// a comment every 15 s keeps idle connections open; the stream ends when the client
/// leaves (dropping it) or the server stops.
fn sse(
    changes: stowage_core::ChangeStream,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let events = changes.map(|r| {
        Ok::<_, std::convert::Infallible>(match r {
            Ok(e) => {
                let op = serde_json::to_value(e.op)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                Event::default()
                    .id(e.token.to_string())
                    .event(op)
                    .data(serde_json::to_string(&e).unwrap_or_default())
            }
            Err(e) => Event::default().event("error").data(e.to_string()),
        })
    });
    let stop = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    Sse::new(events.take_until(stop))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

pub(crate) async fn watch(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<UrlQuery<WatchParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let after = resume_token(&headers, url_query(q)?.after)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    Ok(sse(c.watch(after).await?, st.stopping.clone()))
}

pub(crate) async fn watch_namespace(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<UrlQuery<WatchParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let ns = path(p)?;
    let after = resume_token(&headers, url_query(q)?.after)?;
    let store = st.allow(&headers, &ns, Right::Read)?;
    Ok(sse(store.watch(after).await?, st.stopping.clone()))
}
