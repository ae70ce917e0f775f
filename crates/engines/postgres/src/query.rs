//! Reads: point gets, queries, counts and scans, each one statement that PostgreSQL answers
//! from the B-trees.
//!
//! A query becomes one `SELECT` with its filter, order, keyset cursor (`(value, id) >
//! (…)`, which a B-tree on `(value, id)` walks from), offset and limit in SQL, so no page
//! reads more than it returns plus its offset. Multi-valued predicates are `EXISTS` on the
//! side table's `(value, id)` B-tree. The spec revision is checked in the same statement
//! (`EXISTS` on the catalog row): an answer is never computed under a spec other than the
//! one the caller prepared it with; when nothing comes back, a second look says whether the
//! collection is gone, the spec changed, or nothing matched.

use std::sync::Arc;
use std::time::SystemTime;

use stowage_core::backend::{CollectionStats, Order, QueryHit, QueryRequest, ScanRequest};
use stowage_core::{Error, ErrorKind, IndexType, IndexValue, Result, StoredRecord, Timestamp};
use stowage_sql::{self as sql, Dialect, SqlLayout, SqlParam, SqlParams};
use tokio_postgres::error::SqlState;

use crate::catalog::list_entries;
use crate::error::pg_error;
use crate::open::PostgresBackend;
use crate::pool::Conn;
use crate::schema::{
    cast_type, now_sql, read_record, typed_array, Layout, Params, SqlValue, RECORD_COLUMNS,
};

/// A query as SQL: the `WHERE` clause (live records matching the filter, after the
/// cursor) and the `ORDER BY`, over records table alias `t`.
pub(crate) struct QuerySql {
    pub params: Params,
    pub conditions: Vec<String>,
    pub order_by: String,
    /// The order column, selected beside the record (`None` when ordering by id).
    pub order_column: Option<String>,
}

/// PostgreSQL's way of writing what differs between SQL dialects: `$n` placeholders cast
/// to the column's type, lists as one typed array (`= ANY($n::bigint[])`), and now as the
/// caller's time or the server's `now()`.
struct Postgres;

impl Dialect for Postgres {
    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    fn typed(&self, n: usize, t: IndexType) -> Result<String> {
        Ok(format!("${n}::{}", cast_type(t)?))
    }

    fn any_of(
        &self,
        expr: &str,
        t: IndexType,
        values: &[IndexValue],
        params: &mut SqlParams,
    ) -> Result<String> {
        let n = params.push(SqlParam::Values(t, values.to_vec()));
        Ok(format!("{expr} = ANY(${n}::{}[])", cast_type(t)?))
    }

    fn now(&self, n: usize) -> String {
        now_sql(&format!("${n}"))
    }
}

impl SqlLayout for Layout {
    fn column(&self, index: &str) -> Option<(&str, IndexType)> {
        Layout::column(self, index).map(|c| (c.column.as_str(), c.index_type))
    }

    fn side(&self, index: &str) -> Option<(&str, IndexType)> {
        Layout::side(self, index).map(|s| (s.table.as_str(), s.index_type))
    }
}

/// Builds the SQL of a query's filter, order and cursor (`stowage_sql`, shared with
/// SQLite), with its parameters as PostgreSQL binds them. `now` is the caller's time, or
/// `None` for the server's.
pub(crate) fn query_sql(
    layout: &Layout,
    req: &QueryRequest,
    now: Option<SystemTime>,
) -> Result<QuerySql> {
    let q = sql::query_sql(&Postgres, layout, req, None)?;
    let mut params = Params::default();
    for p in q.params.0 {
        match p {
            SqlParam::Value(v) => params.push(SqlValue(v)),
            SqlParam::Values(t, vs) => {
                params.push_boxed(typed_array(t, vs.into_iter().map(Some).collect()))
            }
            SqlParam::Id(id) => params.push(id),
            SqlParam::Now(_) => params.push(now),
            other => {
                return Err(Error::internal(format!(
                    "postgres cannot bind query parameter {other:?}"
                )))
            }
        };
    }
    Ok(QuerySql {
        params,
        conditions: q.conditions,
        order_by: q.order_by,
        order_column: q.order_column,
    })
}

/// A missing schema or table means the collection is gone.
pub(crate) fn read_error(
    e: tokio_postgres::Error,
    ns: &str,
    collection: &str,
    doing: &str,
    target: &str,
) -> Error {
    let gone = e
        .code()
        .is_some_and(|c| *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME);
    if gone {
        return Error::collection_not_found(ns, collection);
    }
    // A column dropped since the caller read the spec: its spec is stale.
    if e.code() == Some(&SqlState::UNDEFINED_COLUMN) {
        return Error::stale_spec(collection);
    }
    pg_error(e, doing, target)
}

impl PostgresBackend {
    /// The live records with these ids, in the same order.
    pub(crate) async fn get_records(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("reading").await?;
        let table = crate::schema::qualified_table(ns, collection);
        let now = self.now_param(now);
        let rows = if let [id] = ids {
            Conn::Client(&client)
                .query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM {table} WHERE id = $1 \
                         AND (expires_at IS NULL OR expires_at > {})",
                        now_sql("$2")
                    ),
                    &[id, &now],
                )
                .await
        } else {
            Conn::Client(&client)
                .query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM {table} WHERE id = ANY($1) \
                         AND (expires_at IS NULL OR expires_at > {})",
                        now_sql("$2")
                    ),
                    &[&ids, &now],
                )
                .await
        }
        .map_err(|e| read_error(e, ns, collection, "reading", target))?;
        if let [_] = ids {
            return Ok(vec![rows.first().map(|r| read_record(r, 0))]);
        }
        let found: std::collections::HashMap<String, StoredRecord> = rows
            .iter()
            .map(|r| {
                let rec = read_record(r, 0);
                (rec.id.clone(), rec)
            })
            .collect();
        // In the order asked; an id asked twice gets its record twice.
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    /// The layout a request was prepared with: from the cache by revision, or read and
    /// checked.
    pub(crate) async fn request_layout(
        &self,
        conn: Conn<'_>,
        ns: &str,
        collection: &str,
        revision: u64,
    ) -> Result<Arc<Layout>> {
        if let Some(l) = self.inner.layouts.lock().get(&revision) {
            if l.ns == ns && l.collection == collection {
                return Ok(l.clone());
            }
        }
        Ok(self
            .checked_layout(conn, ns, collection, Some(revision))
            .await?
            .0)
    }

    /// Nothing came back: NotFound if the collection is gone, stale spec if its revision
    /// moved, `Ok` if nothing matched.
    async fn confirm_empty(
        &self,
        conn: Conn<'_>,
        ns: &str,
        collection: &str,
        revision: u64,
    ) -> Result<()> {
        self.checked_layout(conn, ns, collection, Some(revision))
            .await
            .map(drop)
    }

    /// One page of a query.
    pub(crate) async fn run_query(
        &self,
        ns: &str,
        req: &QueryRequest,
        now: Timestamp,
    ) -> Result<Vec<QueryHit>> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("querying").await?;
        let conn = Conn::Client(&client);
        let layout = self
            .request_layout(conn, ns, &req.collection, req.revision)
            .await?;
        let mut q = query_sql(&layout, req, self.now_param(now))?;
        let revision_check = revision_check(&mut q.params, ns, &req.collection, req.revision);
        let offset = q.params.push(req.offset as i64);
        let limit = q.params.push(req.limit.map(|l| l as i64));
        let order_select = q
            .order_column
            .as_ref()
            .map_or(String::new(), |c| format!(", {c}"));
        let sql = format!(
            "SELECT {cols}{order_select} FROM {table} t WHERE {conds} AND {revision_check} \
             ORDER BY {order} OFFSET {offset}::bigint LIMIT {limit}::bigint",
            cols = prefixed_columns(),
            table = layout.table,
            conds = q.conditions.join(" AND "),
            order = q.order_by,
        );
        let rows = conn
            .query(&sql, &q.params.refs())
            .await
            .map_err(|e| read_error(e, ns, &req.collection, "querying", target))?;
        if rows.is_empty() {
            self.confirm_empty(conn, ns, &req.collection, req.revision)
                .await?;
        }
        let index_type = req
            .order
            .index
            .as_ref()
            .and_then(|i| layout.column(i))
            .map(|c| c.index_type);
        rows.iter()
            .map(|row| {
                let record = read_record(row, 0);
                let order_value = match index_type {
                    Some(t) => Some(read_index_value(row, 7, t)?),
                    None => None,
                };
                Ok(QueryHit {
                    record,
                    order_value,
                })
            })
            .collect()
    }

    /// How many live records match a query's filter.
    pub(crate) async fn count_matching(
        &self,
        ns: &str,
        req: &QueryRequest,
        now: Timestamp,
    ) -> Result<u64> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("counting").await?;
        let conn = Conn::Client(&client);
        let layout = self
            .request_layout(conn, ns, &req.collection, req.revision)
            .await?;
        let all = QueryRequest {
            after: None,
            offset: 0,
            limit: None,
            order: Order {
                index: None,
                descending: false,
            },
            ..req.clone()
        };
        let mut q = query_sql(&layout, &all, self.now_param(now))?;
        let revision_check = revision_check(&mut q.params, ns, &req.collection, req.revision);
        let sql = format!(
            "SELECT count(*) FROM {} t WHERE {} AND {revision_check}",
            layout.table,
            q.conditions.join(" AND ")
        );
        let row = conn
            .query(&sql, &q.params.refs())
            .await
            .map_err(|e| read_error(e, ns, &req.collection, "counting", target))?;
        let n: i64 = row.first().map_or(0, |r| r.get(0));
        if n == 0 {
            self.confirm_empty(conn, ns, &req.collection, req.revision)
                .await?;
        }
        Ok(n as u64)
    }

    /// One page of live records in id order.
    pub(crate) async fn scan_page(
        &self,
        ns: &str,
        req: &ScanRequest,
        now: Timestamp,
    ) -> Result<Vec<StoredRecord>> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("scanning").await?;
        let mut params = Params::default();
        let now_at = params.push(self.now_param(now));
        let mut conditions = vec![format!(
            "(expires_at IS NULL OR expires_at > {})",
            now_sql(&now_at)
        )];
        conditions.extend(prefix_conditions(
            "id",
            req.prefix.as_deref().unwrap_or(""),
            &mut params,
        ));
        if let Some(after) = &req.after {
            conditions.push(format!("id > {}", params.push(after.clone())));
        }
        let limit = params.push(req.limit as i64);
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {} WHERE {} ORDER BY id LIMIT {limit}",
            crate::schema::qualified_table(ns, &req.collection),
            conditions.join(" AND ")
        );
        let rows = Conn::Client(&client)
            .query(&sql, &params.refs())
            .await
            .map_err(|e| read_error(e, ns, &req.collection, "scanning", target))?;
        Ok(rows.iter().map(|r| read_record(r, 0)).collect())
    }

    /// The size of every collection of a namespace.
    pub(crate) async fn collection_stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        let target = self.inner.pool.target();
        let client = self.inner.pool.client("reading stats").await?;
        let conn = Conn::Client(&client);
        let mut stats = Vec::new();
        for (name, _) in list_entries(conn, ns, target).await? {
            let sql = format!(
                "SELECT count(*), coalesce(sum(octet_length(id) \
                 + coalesce(octet_length(body), octet_length(blob))), 0)::bigint FROM {}",
                crate::schema::qualified_table(ns, &name)
            );
            let row = conn
                .query(&sql, &[])
                .await
                .map_err(|e| read_error(e, ns, &name, "reading stats", target))?;
            let (records, bytes): (i64, i64) = row.first().map_or((0, 0), |r| (r.get(0), r.get(1)));
            stats.push(CollectionStats {
                collection: name,
                records: records as u64,
                bytes: bytes as u64,
            });
        }
        Ok(stats)
    }
}

/// `EXISTS` on the catalog row at the request's revision.
pub(crate) fn revision_check(
    params: &mut Params,
    ns: &str,
    collection: &str,
    revision: u64,
) -> String {
    let (n, c, r) = (
        params.push(ns.to_owned()),
        params.push(collection.to_owned()),
        params.push(revision as i64),
    );
    format!(
        "EXISTS (SELECT 1 FROM stowage.collections WHERE namespace = {n} AND collection = {c} \
         AND revision = {r})"
    )
}

/// The conditions of ids starting with `prefix`: a range a B-tree walks.
pub(crate) fn prefix_conditions(column: &str, prefix: &str, params: &mut Params) -> Vec<String> {
    if prefix.is_empty() {
        return Vec::new();
    }
    let mut c = vec![format!("{column} >= {}", params.push(prefix.to_owned()))];
    if let Some(upper) = sql::prefix_upper(prefix) {
        c.push(format!("{column} < {}", params.push(upper)));
    }
    c
}

/// [`RECORD_COLUMNS`] of alias `t`.
fn prefixed_columns() -> String {
    RECORD_COLUMNS
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An index column's value from a row.
fn read_index_value(
    row: &tokio_postgres::Row,
    at: usize,
    t: stowage_core::IndexType,
) -> Result<IndexValue> {
    use stowage_core::IndexType;
    Ok(match t {
        IndexType::String => IndexValue::String(crate::schema::text_from_column(row.get(at))),
        IndexType::Integer => IndexValue::Integer(row.get(at)),
        IndexType::Float => IndexValue::Float(row.get(at)),
        IndexType::Bool => IndexValue::Bool(row.get(at)),
        IndexType::Timestamp => {
            IndexValue::Timestamp(Timestamp::from(row.get::<_, SystemTime>(at)))
        }
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("postgres cannot read {} index values yet", other.describe()),
            ))
        }
    })
}
