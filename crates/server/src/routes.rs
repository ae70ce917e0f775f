//! The HTTP API: one handler per route, each a thin translation onto the core `Store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query as UrlQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use stowage_core::{
    Collection, CollectionSpec, ErrorKind, Filter, Precondition, Put, Query, RecordMeta, Store,
    Versioned,
};

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

type ApiResult = Result<Response, ApiError>;

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

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::invalid(format!("bad path: {}", e.body_text())))
}

fn url_query<T>(q: Result<UrlQuery<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|UrlQuery(t)| t)
        .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
}

impl AppState {
    fn allow(&self, headers: &HeaderMap, ns: &str, right: Right) -> Result<Store, ApiError> {
        authorize(&self.config.tokens, headers, ns, right)?;
        Ok(self.store.namespace(ns)?)
    }

    async fn collection(
        &self,
        headers: &HeaderMap,
        ns: &str,
        coll: &str,
        right: Right,
    ) -> Result<Collection<Value>, ApiError> {
        let store = self.allow(headers, ns, right)?;
        Ok(store.existing_collection::<Value>(coll).await?)
    }

    fn cap(&self, limit: Option<usize>) -> usize {
        let max = self.config.limits.max_query_limit;
        limit.unwrap_or(max.min(100)).min(max)
    }
}

/// A record as listings and queries show it.
fn item(r: Versioned<Value>) -> Value {
    json!({
        "id": r.id,
        "version": r.version,
        "body": r.value,
        "expires_at": r.expires_at.map(|t| t.to_rfc3339()),
    })
}

fn page(p: stowage_core::Page<Value>) -> Response {
    let items: Vec<Value> = p.items.into_iter().map(item).collect();
    Json(json!({"items": items, "next_cursor": p.next_cursor})).into_response()
}

// ---- collections ----

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

// ---- records ----

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Parses `"7"` (or `7`) from If-Match; `*` means "any existing version".
fn parse_if_match(headers: &HeaderMap) -> Result<Option<Option<u64>>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::invalid("If-Match is not ASCII"))?
        .trim();
    if s == "*" {
        return Ok(Some(None));
    }
    let inner = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s);
    inner.parse::<u64>().map(|v| Some(Some(v))).map_err(|_| {
        ApiError::invalid(format!(
            "If-Match must be a version ETag such as \"7\", not {s:?}"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutParams {
    ttl: Option<u64>,
}

pub(crate) async fn get_record(
    State(st): State<AppState>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (ns, coll, id) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    // The stored JSON text goes out as it is: decoding it into a value only to encode it
    // again was a fifth of a GET's time (measured with benches/http-load.sh).
    let r = c
        .get_json_bytes(&id)
        .await?
        .ok_or_else(|| stowage_core::Error::not_found(&coll, &id))?;
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r.value,
    )
        .into_response();
    resp.headers_mut().insert(header::ETAG, etag(r.version));
    if let Some(t) = r.expires_at {
        if let Ok(v) = HeaderValue::from_str(&t.to_rfc3339()) {
            resp.headers_mut().insert("x-expires-at", v);
        }
    }
    Ok(resp)
}

pub(crate) async fn put_record(
    State(st): State<AppState>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Result<UrlQuery<PutParams>, QueryRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let (ns, coll, id) = path(p)?;
    let params = url_query(q)?;
    let c = st.collection(&headers, &ns, &coll, Right::Write).await?;
    let if_match = parse_if_match(&headers)?;
    let if_none_match = match headers.get(header::IF_NONE_MATCH) {
        None => false,
        Some(v) if v == "*" => true,
        Some(_) => return Err(ApiError::invalid("If-None-Match supports only *")),
    };
    let mut put = match (if_match, if_none_match) {
        (Some(_), true) => {
            return Err(ApiError::invalid(
                "give If-Match or If-None-Match, not both",
            ))
        }
        (Some(Some(v)), false) => Put::update(v),
        (Some(None), false) => Put::replace(),
        (None, true) => Put::insert(),
        (None, false) => Put::upsert(),
    };
    if let Some(ttl) = params.ttl {
        if ttl == 0 {
            return Err(ApiError::invalid("ttl must be at least 1 second"));
        }
        put = put.ttl(Duration::from_secs(ttl));
    }
    let meta = c.put(&id, &body, put).await?;
    // A write that created the record stamps both times with its own clock reading.
    let status = if meta.created_at == meta.updated_at && if_match.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(written(&id, &meta))).into_response();
    resp.headers_mut().insert(header::ETAG, etag(meta.version));
    Ok(resp)
}

/// What a write answers: the stored metadata, so clients need no read after it.
fn written(id: &str, meta: &RecordMeta) -> Value {
    json!({
        "id": id,
        "version": meta.version,
        "created_at": meta.created_at.to_rfc3339(),
        "updated_at": meta.updated_at.to_rfc3339(),
        "expires_at": meta.expires_at.map(|t| t.to_rfc3339()),
    })
}

pub(crate) async fn delete_record(
    State(st): State<AppState>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (ns, coll, id) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Write).await?;
    match parse_if_match(&headers)? {
        Some(Some(v)) => match c.delete_if_version(&id, v).await {
            Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(e) if e.kind() == ErrorKind::Conflict && e.current_version().is_none() => {
                Err(stowage_core::Error::not_found(&coll, &id).into())
            }
            Err(e) => Err(e.into()),
        },
        _ => {
            if c.delete(&id).await? {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(stowage_core::Error::not_found(&coll, &id).into())
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list_records(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<UrlQuery<ListParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (ns, coll) = path(p)?;
    let params = url_query(q)?;
    let c = st.collection(&headers, &ns, &coll, Right::Read).await?;
    let prefix = params.prefix.as_deref().filter(|p| !p.is_empty());
    let cursor = params.cursor.as_deref().filter(|c| !c.is_empty());
    Ok(page(c.list(prefix, cursor, st.cap(params.limit)).await?))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    // Read one by one, so that an error names its op.
    ops: Vec<Value>,
}

/// One op of a batch, told apart by `op`; each op takes only the fields it uses, so a field
/// that would be ignored (a body on a delete, a TTL on a check) is refused instead.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum BatchOp {
    Insert {
        collection: String,
        id: String,
        body: Value,
        #[serde(default, deserialize_with = "stowage_core::whole_number::option")]
        ttl: Option<u64>,
    },
    Upsert {
        collection: String,
        id: String,
        body: Value,
        #[serde(default, deserialize_with = "stowage_core::whole_number::option")]
        ttl: Option<u64>,
    },
    Update {
        collection: String,
        id: String,
        body: Value,
        #[serde(default, deserialize_with = "stowage_core::whole_number::option")]
        if_version: Option<u64>,
        #[serde(default, deserialize_with = "stowage_core::whole_number::option")]
        ttl: Option<u64>,
    },
    Delete {
        collection: String,
        id: String,
        #[serde(default, deserialize_with = "stowage_core::whole_number::option")]
        if_version: Option<u64>,
    },
    /// Writes nothing: the batch applies only if `if_version`, or `exists` true or false,
    /// holds for the record.
    Check {
        collection: String,
        id: String,
        #[serde(default, deserialize_with = "stowage_core::whole_number::option")]
        if_version: Option<u64>,
        exists: Option<bool>,
    },
}

impl BatchOp {
    fn collection(&self) -> &str {
        match self {
            Self::Insert { collection, .. }
            | Self::Upsert { collection, .. }
            | Self::Update { collection, .. }
            | Self::Delete { collection, .. }
            | Self::Check { collection, .. } => collection,
        }
    }
}

pub(crate) async fn batch(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult {
    let ns = path(p)?;
    let store = st.allow(&headers, &ns, Right::Write)?;
    let at = |i: usize, e: ApiError| e.at_op(i);
    let ops = body
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            serde_json::from_value::<BatchOp>(op)
                .map_err(|e| at(i, ApiError::invalid(format!("op {i} is not valid: {e}"))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut colls: HashMap<String, Collection<Value>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let name = op.collection();
        if !colls.contains_key(name) {
            let c = store
                .existing_collection::<Value>(name)
                .await
                .map_err(|e| ApiError::from(e.at_op(i)))?;
            colls.insert(name.to_owned(), c);
        }
    }
    let ttl_put = |i: usize, put: Put, ttl: Option<u64>| match ttl {
        Some(0) => Err(at(i, ApiError::invalid("ttl must be at least 1 second"))),
        Some(t) => Ok(put.ttl(Duration::from_secs(t))),
        None => Ok(put),
    };
    let mut b = store.batch();
    for (i, op) in ops.iter().enumerate() {
        let c = &colls[op.collection()];
        match op {
            BatchOp::Insert { id, body, ttl, .. } => {
                b.put(c, id, body, ttl_put(i, Put::insert(), *ttl)?)
            }
            BatchOp::Upsert { id, body, ttl, .. } => {
                b.put(c, id, body, ttl_put(i, Put::upsert(), *ttl)?)
            }
            BatchOp::Update {
                id,
                body,
                if_version,
                ttl,
                ..
            } => {
                let put = if_version.map_or(Put::replace(), Put::update);
                b.put(c, id, body, ttl_put(i, put, *ttl)?)
            }
            BatchOp::Delete {
                id,
                if_version: Some(v),
                ..
            } => b.delete_if_version(c, id, *v),
            BatchOp::Delete {
                id,
                if_version: None,
                ..
            } => b.delete(c, id),
            BatchOp::Check {
                id,
                if_version,
                exists,
                ..
            } => {
                let condition =
                    match (if_version, exists) {
                        (Some(v), None | Some(true)) => Precondition::Version(*v),
                        (None, Some(true)) => Precondition::Exists,
                        (None, Some(false)) => Precondition::Absent,
                        _ => return Err(at(
                            i,
                            ApiError::invalid(
                                "check needs if_version, or exists true or false (not both with \
                                 exists false)",
                            ),
                        )),
                    };
                b.check(c, id, condition)
            }
        };
    }
    let results = b.commit().await?;
    let versions: Vec<Option<u64>> = results.iter().map(|m| m.map(|m| m.version)).collect();
    Ok(Json(json!({ "versions": versions })).into_response())
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

// ---- operations ----

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
