//! One record by id: read, write with preconditions, delete; and a listing by id.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stowage_core::{
    ErrorKind, Mutate, Mutated, Mutation, Precondition, Put, RecordMeta, TtlChange,
};

use super::{page, path, url_query, ApiResult, AppState, JsonBody};
use crate::config::Right;
use crate::error::ApiError;

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

/// `PATCH` of a record: mutations in JSON Patch's style, applied by the engine.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    #[serde(default)]
    mutations: Vec<Mutation>,
    /// Seconds to expire after now; `null` never expires; absent (`None`) keeps the TTL.
    #[serde(default, deserialize_with = "ttl_change")]
    ttl: Option<Option<u64>>,
}

/// A `ttl` that is there, as a number or `null` (serde's `default` makes an absent one `None`).
pub(crate) fn ttl_change<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<u64>>, D::Error> {
    stowage_core::whole_number::option(d).map(Some)
}

impl PatchBody {
    /// The body of a batch's `mutate` op.
    pub(crate) fn new(mutations: Vec<Mutation>, ttl: Option<Option<u64>>) -> Self {
        PatchBody { mutations, ttl }
    }

    /// The mutation with the precondition the request's headers give.
    pub(crate) fn into_mutate(self, precondition: Precondition) -> Result<Mutate, ApiError> {
        let mut m = Mutate::from_mutations(self.mutations).with_precondition(precondition);
        match self.ttl {
            Some(Some(0)) => return Err(ApiError::invalid("ttl must be at least 1 second")),
            Some(Some(t)) => m = m.ttl(Duration::from_secs(t)),
            Some(None) => m = m.ttl_change(TtlChange::Remove),
            None => {}
        }
        Ok(m)
    }
}

pub(crate) async fn patch_record(
    State(st): State<AppState>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult {
    let (ns, coll, id) = path(p)?;
    let c = st.collection(&headers, &ns, &coll, Right::Write).await?;
    let precondition = match (
        parse_if_match(&headers)?,
        headers.get(header::IF_NONE_MATCH),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give If-Match or If-None-Match, not both",
            ))
        }
        (Some(Some(v)), None) => Precondition::Version(v),
        (Some(None), None) => Precondition::Exists,
        (None, Some(v)) if v == "*" => Precondition::Absent,
        (None, Some(_)) => return Err(ApiError::invalid("If-None-Match supports only *")),
        (None, None) => Precondition::None,
    };
    let done = c.mutate(&id, &body.into_mutate(precondition)?).await?;
    // A mutation that created the record stamps both times with its own clock reading.
    let status = if done.meta.created_at == done.meta.updated_at {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(mutated(&id, &done))).into_response();
    resp.headers_mut()
        .insert(header::ETAG, etag(done.meta.version));
    Ok(resp)
}

/// What a mutation answers: the stored metadata and the values at the mutated paths.
pub(crate) fn mutated(id: &str, done: &Mutated) -> Value {
    let mut answer = written(id, &done.meta);
    answer["values"] = values_object(&done.values);
    answer
}

/// Mutated values as a JSON object keyed by path, in the order first mutated.
pub(crate) fn values_object(values: &[(String, Value)]) -> Value {
    Value::Object(values.iter().cloned().collect())
}

/// What a write answers: the stored metadata, so clients need no read after it.
fn written(id: &str, meta: &RecordMeta) -> Value {
    json!({
        "id": id,
        "version": meta.version,
        "created_at": meta.created_at.to_rfc3339(),
        "updated_at": meta.updated_at.to_rfc3339(),
        "expires_at": meta.expires_at.map(stowage_core::Timestamp::to_rfc3339),
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
