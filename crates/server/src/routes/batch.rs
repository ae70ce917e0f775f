//! Batches: several writes and checks, all or none.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stowage_core::{Collection, Precondition, Put};

use super::{path, ApiResult, AppState, JsonBody};
use crate::config::Right;
use crate::error::ApiError;

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
    /// Mutations of one record, as `PATCH` takes them.
    Mutate {
        collection: String,
        id: String,
        #[serde(default)]
        mutations: Vec<stowage_core::Mutation>,
        /// As `PATCH` takes it: `null` never expires, absent keeps the TTL.
        #[serde(default, deserialize_with = "super::records::ttl_change")]
        ttl: Option<Option<u64>>,
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
            | Self::Mutate { collection, .. }
            | Self::Check { collection, .. } => collection,
        }
    }
}

// Long: one arm per op kind, each translated onto the batch.
#[allow(clippy::too_many_lines)]
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
            BatchOp::Mutate {
                id,
                mutations,
                ttl,
                if_version,
                ..
            } => {
                let body = super::records::PatchBody::new(mutations.clone(), *ttl);
                let precondition = if_version.map_or(Precondition::None, Precondition::Version);
                b.mutate(
                    c,
                    id,
                    &body.into_mutate(precondition).map_err(|e| at(i, e))?,
                )
            }
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
    let results = b.commit_with_values().await?;
    let versions: Vec<Option<u64>> = results.iter().map(|r| r.meta.map(|m| m.version)).collect();
    // Per op, the values at the paths a mutation changed (null for other ops).
    let values: Vec<Value> = ops
        .iter()
        .zip(&results)
        .map(|(op, r)| match op {
            BatchOp::Mutate { .. } => super::records::values_object(&r.values),
            _ => Value::Null,
        })
        .collect();
    Ok(Json(json!({ "versions": versions, "values": values })).into_response())
}
