//! Reads: point gets, queries, counts and scans, each one statement SQLite answers from its
//! B-trees, on a read connection (WAL: readers never wait for the writer).
//!
//! A query becomes one `SELECT` built by `stowage_sql` — the same shape as on
//! PostgreSQL — with its filter, order, keyset cursor, offset and limit in SQL. The spec
//! revision is read in the same read transaction as the rows, so an answer is never
//! computed under a spec other than the one the caller prepared it with.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};
use stowage_core::backend::{CollectionStats, QueryHit, QueryRequest, ScanRequest};
use stowage_core::{
    ChangeEvent, ChangeToken, Error, IndexType, IndexValue, Result, StoredRecord, Timestamp,
    Version,
};
use stowage_sql::{query_sql, Dialect, SqlParam, SqlParams};

use crate::error::{is_missing_table, sqlite_error};
use crate::group_commit::read_layout;
use crate::schema::{
    index_value, quote, read_record, records_table, Layout, RECORD_COLUMNS, RECORD_COLUMNS_T,
};

/// SQLite's way of writing what differs between SQL dialects.
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn placeholder(&self, n: usize) -> String {
        format!("?{n}")
    }

    fn typed(&self, n: usize, _t: IndexType) -> Result<String> {
        // Columns are STRICT and typed: a bound value compares as its column's type.
        Ok(format!("?{n}"))
    }

    fn any_of(
        &self,
        expr: &str,
        _t: IndexType,
        values: &[IndexValue],
        params: &mut SqlParams,
    ) -> Result<String> {
        if values.is_empty() {
            return Ok("0".to_owned());
        }
        let list: Vec<String> = values
            .iter()
            .map(|v| format!("?{}", params.push(SqlParam::Value(v.clone()))))
            .collect();
        Ok(format!("{expr} IN ({})", list.join(", ")))
    }

    fn now(&self, n: usize) -> String {
        format!("?{n}")
    }
}

/// A parameter as SQLite binds it.
fn bind(p: &SqlParam, now: Timestamp) -> Value {
    match p {
        SqlParam::Value(v) => crate::schema::sql_value(v),
        SqlParam::Id(id) => Value::Text(id.clone()),
        SqlParam::Now(t) => Value::Integer(t.unwrap_or(now).as_micros()),
        // Never pushed by this dialect (lists are expanded).
        _ => Value::Null,
    }
}

/// A read error: a missing table means the collection is gone.
fn read_error(e: rusqlite::Error, ns: &str, coll: &str, doing: &str, target: &str) -> Error {
    if is_missing_table(&e) {
        return Error::collection_not_found(ns, coll);
    }
    sqlite_error(e, doing, target)
}

/// The live records with these ids, in the same order.
pub(crate) fn get_records(
    conn: &Connection,
    target: &str,
    ns: &str,
    coll: &str,
    ids: &[String],
    now: Timestamp,
) -> Result<Vec<Option<StoredRecord>>> {
    let table = quote(&records_table(ns, coll));
    let failed = |e| read_error(e, ns, coll, "reading records", target);
    let mut s = conn
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM {table} WHERE id = ?1 \
             AND (expires_at IS NULL OR expires_at > ?2)"
        ))
        .map_err(failed)?;
    ids.iter()
        .map(|id| {
            let mut rows = s.query(params![id, now.as_micros()]).map_err(failed)?;
            match rows.next().map_err(failed)? {
                Some(row) => Ok(Some(read_record(row).map_err(failed)?)),
                None => Ok(None),
            }
        })
        .collect()
}

/// What a query run collects.
pub(crate) enum Collect {
    /// The page of hits.
    Page,
    /// Ids and versions, to delete.
    Ids,
}

/// What a query run found.
#[derive(Default)]
pub(crate) struct Found {
    pub hits: Vec<QueryHit>,
    pub ids: Vec<(String, Version)>,
}

/// The collection's layout at the request's revision: NotFound, or a stale spec.
fn layout_at(
    conn: &Connection,
    target: &str,
    ns: &str,
    coll: &str,
    revision: u64,
) -> Result<Layout> {
    let layout = read_layout(conn, ns, coll, target)?
        .ok_or_else(|| Error::collection_not_found(ns, coll))?;
    if layout.stored.revision != revision {
        return Err(Error::stale_spec(coll));
    }
    Ok(layout)
}

/// Runs a query in one read transaction (the spec and the rows from one snapshot).
pub(crate) fn run_query(
    conn: &Connection,
    target: &str,
    ns: &str,
    req: &QueryRequest,
    now: Timestamp,
    collect: Collect,
) -> Result<Found> {
    let coll = &req.collection;
    let failed = |e| read_error(e, ns, coll, "querying", target);
    let tx = conn.unchecked_transaction().map_err(failed)?;
    let layout = layout_at(&tx, target, ns, coll, req.revision)?;
    let sql = query_sql(&Sqlite, &layout.queryable(), req, Some(now))?;
    let mut values: Vec<Value> = sql.params.0.iter().map(|p| bind(p, now)).collect();
    let limit = req.limit.map_or(-1, |l| l as i64);
    values.push(Value::Integer(limit));
    values.push(Value::Integer(req.offset as i64));
    let (limit_at, offset_at) = (values.len() - 1, values.len());
    let order_type = req
        .order
        .index
        .as_ref()
        .and_then(|i| layout.stored.spec.index_named(i))
        .map(|i| i.index_type);
    let select = match (&collect, &sql.order_column) {
        (Collect::Ids, _) => "t.id, t.version".to_owned(),
        (Collect::Page, Some(col)) => format!("{RECORD_COLUMNS_T}, {col}"),
        (Collect::Page, None) => RECORD_COLUMNS_T.to_owned(),
    };
    let text = format!(
        "SELECT {select} FROM {} t WHERE {} ORDER BY {} LIMIT ?{limit_at} OFFSET ?{offset_at}",
        layout.table,
        sql.conditions.join(" AND "),
        sql.order_by
    );
    let mut found = Found::default();
    {
        let mut s = tx.prepare_cached(&text).map_err(failed)?;
        let mut rows = s.query(params_from_iter(values.iter())).map_err(failed)?;
        while let Some(row) = rows.next().map_err(failed)? {
            match collect {
                Collect::Ids => found.ids.push((
                    row.get(0).map_err(failed)?,
                    row.get::<_, i64>(1).map_err(failed)? as Version,
                )),
                Collect::Page => {
                    let record = read_record(row).map_err(failed)?;
                    let order_value = match order_type {
                        Some(t) => index_value(t, row.get_ref(7).map_err(failed)?)?,
                        None => None,
                    };
                    found.hits.push(QueryHit {
                        record,
                        order_value,
                    });
                }
            }
        }
    }
    tx.finish().map_err(failed)?;
    Ok(found)
}

/// How many live records match the request's filter.
pub(crate) fn count(
    conn: &Connection,
    target: &str,
    ns: &str,
    req: &QueryRequest,
    now: Timestamp,
) -> Result<u64> {
    let coll = &req.collection;
    let failed = |e| read_error(e, ns, coll, "counting", target);
    let tx = conn.unchecked_transaction().map_err(failed)?;
    let layout = layout_at(&tx, target, ns, coll, req.revision)?;
    let all = QueryRequest {
        after: None,
        offset: 0,
        limit: None,
        ..req.clone()
    };
    let sql = query_sql(&Sqlite, &layout.queryable(), &all, Some(now))?;
    let values: Vec<Value> = sql.params.0.iter().map(|p| bind(p, now)).collect();
    let n: i64 = tx
        .prepare_cached(&format!(
            "SELECT count(*) FROM {} t WHERE {}",
            layout.table,
            sql.conditions.join(" AND ")
        ))
        .and_then(|mut s| s.query_row(params_from_iter(values.iter()), |r| r.get(0)))
        .map_err(failed)?;
    tx.finish().map_err(failed)?;
    Ok(n as u64)
}

/// One page of live records in ascending id order.
pub(crate) fn scan(
    conn: &Connection,
    target: &str,
    ns: &str,
    req: &ScanRequest,
    now: Timestamp,
) -> Result<Vec<StoredRecord>> {
    let coll = &req.collection;
    let failed = |e| read_error(e, ns, coll, "scanning", target);
    let table = quote(&records_table(ns, coll));
    let mut conditions = vec!["(expires_at IS NULL OR expires_at > ?1)".to_owned()];
    let mut values = vec![Value::Integer(now.as_micros())];
    if let Some(prefix) = &req.prefix {
        values.push(Value::Text(prefix.clone()));
        conditions.push(format!("id >= ?{}", values.len()));
        if let Some(upper) = stowage_sql::prefix_upper(prefix) {
            values.push(Value::Text(upper));
            conditions.push(format!("id < ?{}", values.len()));
        }
    }
    if let Some(after) = &req.after {
        values.push(Value::Text(after.clone()));
        conditions.push(format!("id > ?{}", values.len()));
    }
    values.push(Value::Integer(req.limit as i64));
    let text = format!(
        "SELECT {RECORD_COLUMNS} FROM {table} WHERE {} ORDER BY id LIMIT ?{}",
        conditions.join(" AND "),
        values.len()
    );
    let mut s = conn.prepare_cached(&text).map_err(failed)?;
    let rows = s
        .query_map(params_from_iter(values.iter()), read_record)
        .map_err(failed)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(failed)
}

/// Records and bytes (ids and bodies) of every collection of `ns`.
pub(crate) fn stats(conn: &Connection, target: &str, ns: &str) -> Result<Vec<CollectionStats>> {
    let mut out = Vec::new();
    for (name, _) in crate::catalog::list_specs(conn, ns)? {
        let table = quote(&records_table(ns, &name));
        let (records, bytes): (i64, i64) = conn
            .query_row(
                &format!(
                    "SELECT count(*), coalesce(sum(length(CAST(id AS BLOB)) + \
                     coalesce(length(CAST(body AS BLOB)), length(blob), 0)), 0) FROM {table}"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| read_error(e, ns, &name, "measuring a collection", target))?;
        out.push(CollectionStats {
            collection: name,
            records: records as u64,
            bytes: bytes as u64,
        });
    }
    Ok(out)
}

/// The logged changes of `ns` after `after`, with a gap first when the log no longer holds
/// the next one.
pub(crate) fn changes_after(
    conn: &Connection,
    target: &str,
    ns: &str,
    after: ChangeToken,
    now: Timestamp,
) -> Result<Vec<ChangeEvent>> {
    let failed = |e| sqlite_error(e, "reading the change log", target);
    let rows: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT token, event FROM stowage_log WHERE namespace = ?1 AND token > ?2 \
             ORDER BY token",
        )
        .and_then(|mut s| {
            s.query_map(params![ns, after as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(failed)?;
    let mut out = Vec::with_capacity(rows.len() + 1);
    for (i, (token, text)) in rows.into_iter().enumerate() {
        let token = token as u64;
        if i == 0 && token > after + 1 {
            out.push(ChangeEvent::gap(after, now));
        }
        let mut change: ChangeEvent = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                stowage_core::ErrorKind::Corrupted,
                format!("the change log holds an event that does not decode: {e}"),
            )
        })?;
        change.token = token;
        out.push(change);
    }
    Ok(out)
}
