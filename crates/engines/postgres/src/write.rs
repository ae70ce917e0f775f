//! Writes: every op of a batch runs inside the collection's write function on the server
//! (see `writer.rs`), so a single write is one statement and one round trip, and a batch of
//! any size in one collection is one statement too.
//!
//! The batch is cut into *segments* — runs of ops on one collection at one spec revision
//! in which each id appears once, no delete follows a write and no put follows a restore —
//! and each segment is one call. One segment runs on its own (its statement is its transaction); several run
//! pipelined between `BEGIN` and `COMMIT` in one round trip, after the collections'
//! advisory locks taken in name order (so two batches over the same collections cannot
//! deadlock). Segments run in op order, so an op sees every op before it.
//!
//! A unique index is enforced by its B-tree: a clash fails the statement (SQLSTATE 23505),
//! the transaction rolls back, and the holder is looked up afterwards to name it. A clash
//! that no holder explains came from the order of rows inside one set-based statement (a
//! value handed from one record to another in the same segment): the batch then runs
//! again one op per segment, which is exact. Before a record takes a unique value, an
//! *expired* record holding it lets it go: an expired holder never blocks a live writer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::{join, join3, join_all};
use stowage_core::backend::{
    entry_values, IndexFill, QueryRequest, RecordMeta, Revision, WriteAction, WriteOp, WriteResult,
};
use stowage_core::{
    ChangeOp, ContentType, Error, ErrorKind, IndexValue, Precondition, Result, Timestamp, Version,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::catalog::{lock, raise_floor, LOCK_EXCLUSIVE, LOCK_SHARED};
use crate::error::pg_error;
use crate::feed::{append, Pending};
use crate::open::PostgresBackend;
use crate::pool::Conn;
use crate::query::{prefix_conditions, query_sql, read_error};
use crate::schema::to_system_time;
use crate::schema::{now_sql, typed_array, Layout, Params, SqlValue};
use crate::writer;

/// How many times a batch that lost a race is tried again before the caller gets
/// `Unavailable`.
const RACE_RETRIES: usize = 8;

/// Why a batch attempt did not finish.
pub(crate) enum Outcome {
    /// The batch's answer (an error names its op).
    Done(Result<Vec<WriteResult>>),
    /// Another writer got in between (a row appeared that was not there when read, a
    /// deadlock, a spec change while the call started): try again from the start.
    Race(String),
    /// A failure inside one segment whose op order matters (a unique clash no holder
    /// explains, a precondition failing after ops that might clash): run again one op per
    /// segment.
    OneByOne,
}

/// A run of a batch's ops that one call of the collection's write function applies.
pub(crate) struct Segment {
    pub(crate) layout: Arc<Layout>,
    /// Positions in the batch, in order.
    pub(crate) ops: Vec<usize>,
}

impl PostgresBackend {
    /// Applies a batch, trying again when it loses a race with another writer.
    pub(crate) async fn write_batch(
        &self,
        ns: &str,
        ops: &[WriteOp],
        now: Timestamp,
    ) -> Result<Vec<WriteResult>> {
        let mut last = String::new();
        let mut one_by_one = false;
        let mutates = ops
            .iter()
            .any(|op| matches!(op.action, WriteAction::Mutate(_)));
        for _ in 0..RACE_RETRIES {
            let attempt = if mutates {
                self.mutate_attempt(ns, ops, now).await?
            } else {
                self.write_attempt(ns, ops, now, one_by_one).await?
            };
            match attempt {
                Outcome::Done(r) => return r,
                Outcome::Race(why) => last = why,
                Outcome::OneByOne if !one_by_one => one_by_one = true,
                Outcome::OneByOne => last = "a unique clash no holder explains".into(),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "postgres {}: a batch lost {RACE_RETRIES} races with other writers in a row \
                 ({last}); try again",
                self.inner.pool.target()
            ),
        ))
    }

    /// The layout an op was prepared with: from the cache by revision, or from the
    /// catalog (NotFound when the collection is gone, stale spec when it moved on).
    pub(crate) async fn op_layout(&self, ns: &str, op: &WriteOp) -> Result<Arc<Layout>> {
        if let Some(layout) = self.inner.layouts.lock().get(&op.revision) {
            if layout.ns == ns && layout.collection == op.collection {
                return Ok(layout.clone());
            }
        }
        let client = self.inner.pool.client("reading the catalog").await?;
        let (layout, _) = self
            .checked_layout(Conn::Client(&client), ns, &op.collection, Some(op.revision))
            .await?;
        Ok(layout)
    }

    /// Cuts a batch into segments (see the module docs); `one_by_one` makes one per op.
    async fn segments(&self, ns: &str, ops: &[WriteOp], one_by_one: bool) -> Result<Vec<Segment>> {
        let mut segments: Vec<Segment> = Vec::new();
        let mut ids: HashSet<&str> = HashSet::new();
        let (mut wrote, mut restored) = (false, false);
        for (i, op) in ops.iter().enumerate() {
            let puts = matches!(op.action, WriteAction::Put { .. });
            let restores = matches!(op.action, WriteAction::Restore { .. });
            let deletes = matches!(op.action, WriteAction::Delete);
            let joins = segments.last().is_some_and(|s| {
                !one_by_one
                    && s.layout.collection == op.collection
                    && s.layout.stored.revision == op.revision
                    && !ids.contains(op.id.as_str())
                    && !(deletes && wrote)
                    && !(puts && restored)
            });
            if joins {
                if let Some(s) = segments.last_mut() {
                    s.ops.push(i);
                }
            } else {
                let layout = self.op_layout(ns, op).await.map_err(|e| e.at_op(i))?;
                segments.push(Segment {
                    layout,
                    ops: vec![i],
                });
                ids.clear();
                (wrote, restored) = (false, false);
            }
            ids.insert(op.id.as_str());
            wrote |= puts || restores;
            restored |= restores;
        }
        Ok(segments)
    }

    // Long: one transaction's round trips in order (locks, one call per segment, what each failure means).
    #[allow(clippy::too_many_lines)]
    async fn write_attempt(
        &self,
        ns: &str,
        ops: &[WriteOp],
        now: Timestamp,
        one_by_one: bool,
    ) -> Result<Outcome> {
        let segments = match self.segments(ns, ops, one_by_one).await {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::Done(Err(e))),
        };
        let target = self.inner.pool.target().to_owned();
        let failed = |e| pg_error(e, "writing", &target);
        let now_param = self.now_param(now);
        let exclusive = lock_modes(ops);
        let mut calls = Vec::with_capacity(segments.len());
        for s in &segments {
            let coll = s.layout.collection.as_str();
            let params = segment_params(ops, s, now_param, exclusive[coll])?;
            calls.push(params);
        }

        let client = OpenTransaction::new(self.inner.pool.client("writing").await?);
        let c = client.client();
        let mut statements = Vec::with_capacity(segments.len());
        for s in &segments {
            match c.prepare_cached(&s.layout.writer_call()).await {
                Ok(stmt) => statements.push(stmt),
                Err(e) => {
                    client.finish();
                    return self.explain(ns, ops, s, e, now).await;
                }
            }
        }
        let refs: Vec<_> = calls.iter().map(Params::refs).collect();
        let results = if segments.len() == 1 {
            // One statement: its own transaction.
            vec![c.query(&statements[0], &refs[0]).await]
        } else {
            let lock_shared = c.prepare_cached(LOCK_SHARED).await.map_err(failed)?;
            let lock_exclusive = c.prepare_cached(LOCK_EXCLUSIVE).await.map_err(failed)?;
            let keys: Vec<(i64, bool)> = exclusive
                .iter()
                .map(|(coll, x)| (crate::schema::lock_key(ns, coll), *x))
                .collect();
            type P<'a> = &'a (dyn ToSql + Sync);
            let lock_params: Vec<[P<'_>; 1]> = keys.iter().map(|(k, _)| [k as P<'_>]).collect();
            let (begun, (locked, results), committed) = join3(
                c.batch_execute("BEGIN"),
                join(
                    join_all(keys.iter().zip(&lock_params).map(|((_, x), p)| {
                        c.execute(if *x { &lock_exclusive } else { &lock_shared }, p)
                    })),
                    join_all(
                        statements
                            .iter()
                            .zip(&refs)
                            .map(|(stmt, p)| c.query(stmt, p)),
                    ),
                ),
                // A failed statement turns the COMMIT into a rollback.
                c.batch_execute("COMMIT"),
            )
            .await;
            begun.map_err(failed)?;
            for l in locked {
                if let Err(e) = l {
                    committed.map_err(failed)?;
                    client.finish();
                    return self.explain(ns, ops, &segments[0], e, now).await;
                }
            }
            if let Err(e) = committed {
                if let Some((s, e)) = segments
                    .iter()
                    .zip(results)
                    .find_map(|(s, r)| r.err().map(|e| (s, e)))
                {
                    client.finish();
                    return self.explain(ns, ops, s, e, now).await;
                }
                if is_race(&e) {
                    client.finish();
                    return Ok(Outcome::Race(e.to_string()));
                }
                return Err(failed(e));
            }
            results
        };
        client.finish();
        let mut metas: HashMap<usize, RecordMeta> = HashMap::new();
        for (s, result) in segments.iter().zip(results) {
            let rows = match result {
                Ok(rows) => rows,
                Err(e) => return self.explain(ns, ops, s, e, now).await,
            };
            // A segment holds each id once: a row's id names its op.
            let at: HashMap<&str, usize> = s.ops.iter().map(|&i| (ops[i].id.as_str(), i)).collect();
            for row in rows {
                let Some(&i) = at.get(row.get::<_, &str>(0)) else {
                    return Err(Error::internal(format!(
                        "postgres {target}: the write function reported an id it was not given"
                    )));
                };
                metas.insert(i, written_meta(&row));
            }
        }
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let meta = metas.get(&i).copied();
            if meta.is_none()
                && matches!(
                    op.action,
                    WriteAction::Put { .. } | WriteAction::Restore { .. }
                )
            {
                return Err(Error::internal(format!(
                    "postgres {target}: the write function reported nothing for op {i}"
                )));
            }
            results.push(WriteResult::new(meta));
        }
        Ok(Outcome::Done(Ok(results)))
    }

    /// Turns a failed call of segment `s` into the batch's answer.
    pub(crate) async fn explain(
        &self,
        ns: &str,
        ops: &[WriteOp],
        s: &Segment,
        e: tokio_postgres::Error,
        now: Timestamp,
    ) -> Result<Outcome> {
        let target = self.inner.pool.target();
        let first = s.ops[0];
        let coll = &s.layout.collection;
        let Some(code) = e.code().map(SqlState::code) else {
            return Err(pg_error(e, "writing", target));
        };
        match code {
            // A segment of several ops does not say which failed first: one by one will.
            writer::FAILED_PRECONDITION if s.ops.len() > 1 => Ok(Outcome::OneByOne),
            writer::FAILED_PRECONDITION => {
                // The detail is "<op> <live version or nothing>".
                let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or("");
                let live = detail
                    .split(' ')
                    .nth(1)
                    .and_then(|p| p.parse::<Version>().ok());
                let op = &ops[first];
                match op.precondition.check(&op.collection, &op.id, live) {
                    Err(err) => Ok(Outcome::Done(Err(err.at_op(first)))),
                    // The record changed back meanwhile.
                    Ok(()) => Ok(Outcome::Race("a precondition moved".into())),
                }
            }
            writer::STALE_SPEC => Ok(Outcome::Done(Err(Error::stale_spec(coll).at_op(first)))),
            writer::GONE => Ok(Outcome::Done(Err(
                Error::collection_not_found(ns, coll).at_op(first)
            ))),
            writer::OUTDATED => Ok(Outcome::Race("the spec changed while writing".into())),
            writer::ORDER_MATTERS => Ok(Outcome::OneByOne),
            _ if is_race(&e) => Ok(Outcome::Race(e.to_string())),
            _ if *e.code().unwrap_or(&SqlState::SUCCESSFUL_COMPLETION)
                == SqlState::UNDEFINED_FUNCTION
                || is_missing(&e) =>
            {
                self.missing_writer(ns, &ops[first], first).await
            }
            // In a set-based statement, a clash may come from the order rows went in.
            _ if *e.code().unwrap_or(&SqlState::SUCCESSFUL_COMPLETION)
                == SqlState::UNIQUE_VIOLATION
                && s.ops.len() > 1 =>
            {
                Ok(Outcome::OneByOne)
            }
            _ if *e.code().unwrap_or(&SqlState::SUCCESSFUL_COMPLETION)
                == SqlState::UNIQUE_VIOLATION =>
            {
                self.explain_clash(ops, s, e, now).await
            }
            _ => Err(pg_error(e, "writing", target).at_op(first)),
        }
    }

    /// A write function (or its table) was not there: the collection is gone, its spec
    /// moved on, or the database was made before write functions (then it is made now).
    async fn missing_writer(&self, ns: &str, op: &WriteOp, at: usize) -> Result<Outcome> {
        let target = self.inner.pool.target().to_owned();
        let mut client = self.inner.pool.client("making a write function").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(e, "making a write function", &target))?;
        lock(Conn::Tx(&tx), ns, &op.collection, true, &target).await?;
        let layout = match self
            .checked_layout(Conn::Tx(&tx), ns, &op.collection, Some(op.revision))
            .await
        {
            Ok((layout, _)) => layout,
            Err(e) => return Ok(Outcome::Done(Err(e.at_op(at)))),
        };
        tx.batch_execute(&layout.writer_ddl()?)
            .await
            .map_err(|e| pg_error(e, "making a write function", &target))?;
        tx.commit()
            .await
            .map_err(|e| pg_error(e, "making a write function", &target))?;
        Ok(Outcome::Race("the write function was missing".into()))
    }

    /// Names the holder of a unique value the one op of segment `s` clashed on: an
    /// earlier op of the batch, or a stored live record.
    async fn explain_clash(
        &self,
        ops: &[WriteOp],
        s: &Segment,
        e: tokio_postgres::Error,
        now: Timestamp,
    ) -> Result<Outcome> {
        let layout = &s.layout;
        let constraint = e
            .as_db_error()
            .and_then(|d| d.constraint())
            .map(str::to_owned);
        let Some(index) = constraint
            .as_deref()
            .and_then(|c| layout.index_of_btree(c))
            .map(str::to_owned)
        else {
            // The primary key: another writer inserted an id since the call locked rows.
            return Ok(Outcome::Race("an id was inserted by another writer".into()));
        };
        let client = self
            .inner
            .pool
            .client("finding a unique value's holder")
            .await?;
        let written = |op: &WriteOp| -> Vec<IndexValue> {
            match &op.action {
                WriteAction::Put { index: entries, .. }
                | WriteAction::Restore { index: entries, .. } => {
                    entry_values(entries, &index).to_vec()
                }
                _ => Vec::new(),
            }
        };
        // A clash is explained here only for a segment of one op (see `explain`).
        let at = s.ops[0];
        let op = &ops[at];
        let values = written(op);
        // The latest earlier op of each other id of the collection says what that record
        // holds now (the batch rolled back, but those ops ran before this one).
        let mut rewritten: HashSet<&str> = HashSet::new();
        for other in ops[..at].iter().rev() {
            if other.collection != op.collection
                || other.id == op.id
                || matches!(other.action, WriteAction::Check)
                || !rewritten.insert(other.id.as_str())
            {
                continue;
            }
            if written(other).iter().any(|v| values.contains(v)) {
                return Ok(Outcome::Done(Err(Error::unique_violation(
                    &op.collection,
                    &index,
                    &other.id,
                )
                .at_op(at))));
            }
        }
        let holder = self
            .unique_holder(
                Conn::Client(&client),
                layout,
                &index,
                &values,
                &op.id,
                self.now_param(now),
            )
            .await?;
        Ok(match holder {
            Some(holder) if !rewritten.contains(holder.as_str()) => Outcome::Done(Err(
                Error::unique_violation(&op.collection, &index, &holder).at_op(at),
            )),
            _ => Outcome::Race(format!(
                "the holder of a value of unique index {index} went away"
            )),
        })
    }
}

/// The arguments of one call of a segment's write function (see `Layout::writer_call`).
// Long: one array per parameter of the write function, in the order of its signature.
#[allow(clippy::too_many_lines)]
pub(crate) fn segment_params(
    ops: &[WriteOp],
    s: &Segment,
    now: Option<SystemTime>,
    exclusive: bool,
) -> Result<Params> {
    let layout = &s.layout;
    let n = s.ops.len();
    let mut ord = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut actions = Vec::with_capacity(n);
    let mut conds = Vec::with_capacity(n);
    let mut expects = Vec::with_capacity(n);
    let mut bodies: Vec<Option<String>> = Vec::with_capacity(n);
    let mut blobs: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
    let mut ttls = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut updated = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut columns: Vec<Vec<Option<IndexValue>>> =
        vec![Vec::with_capacity(n); layout.columns.len()];
    let mut sides: Vec<(Vec<i32>, Vec<Option<IndexValue>>)> =
        vec![Default::default(); layout.sides.len()];
    for (pos, &i) in s.ops.iter().enumerate() {
        let op = &ops[i];
        ord.push(i as i32);
        ids.push(op.id.clone());
        let (cond, expect) = match op.precondition {
            Precondition::None => (writer::COND_NONE, None),
            Precondition::Absent => (writer::COND_ABSENT, None),
            Precondition::Exists => (writer::COND_EXISTS, None),
            Precondition::Version(v) => (writer::COND_VERSION, Some(v as i64)),
        };
        let (action, body, index, ttl, meta) = match &op.action {
            // `mutate_attempt` turns each into a put first.
            WriteAction::Mutate(_) => {
                return Err(Error::internal(
                    "postgres: a mutation reached the write function",
                ))
            }
            WriteAction::Check => (writer::ACTION_CHECK, None, None, None, None),
            WriteAction::Delete => (writer::ACTION_DELETE, None, None, None, None),
            WriteAction::Put { body, index, ttl } => (
                writer::ACTION_PUT,
                Some(body),
                Some(index),
                ttl.map(|t| t.as_micros() as f64),
                None,
            ),
            WriteAction::Restore { meta, body, index } => (
                writer::ACTION_RESTORE,
                Some(body),
                Some(index),
                None,
                Some(meta),
            ),
        };
        actions.push(action);
        conds.push(cond);
        expects.push(expect);
        let (text, blob) = match body {
            Some(b) if b.content_type == ContentType::Json => (
                Some(String::from_utf8(b.bytes.to_vec()).map_err(|_| {
                    Error::invalid(format!("the JSON body of {:?} is not UTF-8", op.id)).at_op(i)
                })?),
                None,
            ),
            Some(b) => (None, Some(b.bytes.to_vec())),
            None => (None, None),
        };
        bodies.push(text);
        blobs.push(blob);
        ttls.push(ttl);
        versions.push(meta.map(|m| m.version as i64));
        created.push(meta.map(|m| to_system_time(m.created_at)));
        updated.push(meta.map(|m| to_system_time(m.updated_at)));
        expires.push(meta.and_then(|m| m.expires_at.map(to_system_time)));
        for (c, values) in layout.columns.iter().zip(&mut columns) {
            values.push(index.and_then(|e| entry_values(e, &c.index).first().cloned()));
        }
        for (side, (at, values)) in layout.sides.iter().zip(&mut sides) {
            for v in index.map_or(&[][..], |e| entry_values(e, &side.index)) {
                at.push(pos as i32 + 1);
                values.push(Some(v.clone()));
            }
        }
    }
    let mut counts = [0i32; writer::COUNTS];
    for (&action, &cond) in actions.iter().zip(&conds) {
        let kind = match (action, cond) {
            (writer::ACTION_PUT, writer::COND_NONE) => writer::COUNT_PUT_ANY,
            (writer::ACTION_PUT, writer::COND_ABSENT) => writer::COUNT_PUT_ABSENT,
            (writer::ACTION_PUT, _) => writer::COUNT_PUT_LIVE,
            (writer::ACTION_RESTORE, _) => writer::COUNT_RESTORE,
            (writer::ACTION_CHECK, _) => writer::COUNT_CHECK,
            _ => writer::COUNT_DELETE,
        };
        counts[kind - 1] += 1;
    }
    let mut p = Params::default();
    p.push(layout.stored.revision as i64);
    p.push(now);
    p.push(exclusive);
    p.push(counts.to_vec());
    p.push(ord);
    p.push(ids);
    p.push(actions);
    p.push(conds);
    p.push(expects);
    p.push(bodies);
    p.push(blobs);
    p.push(ttls);
    p.push(versions);
    p.push(created);
    p.push(updated);
    p.push(expires);
    for (c, values) in layout.columns.iter().zip(columns) {
        p.push_boxed(typed_array(c.index_type, values));
    }
    for (side, (at, values)) in layout.sides.iter().zip(sides) {
        p.push(at);
        p.push_boxed(typed_array(side.index_type, values));
    }
    Ok(p)
}

impl PostgresBackend {
    /// The record other than `id` that holds one of `values` in unique index `index`, if
    /// any. Expired holders count too when `now` is `None` (the batch has rolled back, and a
    /// clash came from the B-tree, which holds them until a writer clears them).
    pub(crate) async fn unique_holder(
        &self,
        conn: Conn<'_>,
        layout: &Layout,
        index: &str,
        values: &[stowage_core::IndexValue],
        id: &str,
        now: Option<SystemTime>,
    ) -> Result<Option<String>> {
        let target = self.inner.pool.target();
        for v in values {
            let sql = if let Some(c) = layout.column(index) {
                format!(
                    "SELECT id FROM {} WHERE {} = $1::{} AND id <> $2 \
                     AND (expires_at IS NULL OR expires_at > {}) LIMIT 1",
                    layout.table,
                    c.column,
                    crate::schema::cast_type(c.index_type)?,
                    now_sql("$3")
                )
            } else if let Some(s) = layout.side(index) {
                format!(
                    "SELECT s.id FROM {} s JOIN {} t ON t.id = s.id WHERE s.value = $1::{} \
                     AND s.id <> $2 AND (t.expires_at IS NULL OR t.expires_at > {}) LIMIT 1",
                    s.table,
                    layout.table,
                    crate::schema::cast_type(s.index_type)?,
                    now_sql("$3")
                )
            } else {
                return Ok(None);
            };
            let value = SqlValue(v.clone());
            let rows = conn
                .query(&sql, &[&value, &id, &now])
                .await
                .map_err(|e| pg_error(e, "finding a unique value's holder", target))?;
            if let Some(row) = rows.first() {
                return Ok(Some(row.get(0)));
            }
        }
        Ok(None)
    }

    /// Adds a page of values to the indexes being built (see `Backend::fill_index`).
    // Long: one transaction: lock, revision check, then one statement per index column and side table.
    #[allow(clippy::too_many_lines)]
    pub(crate) async fn fill_page(
        &self,
        ns: &str,
        collection: &str,
        revision: Revision,
        fills: &[IndexFill],
        now: Timestamp,
    ) -> Result<()> {
        let target = self.inner.pool.target().to_owned();
        let now_param = self.now_param(now);
        let mut client = self.inner.pool.client("building an index").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(e, "building an index", &target))?;
        let conn = Conn::Tx(&tx);
        lock(conn, ns, collection, false, &target).await?;
        let (layout, _) = self
            .checked_layout(conn, ns, collection, Some(revision))
            .await?;
        let building = &layout.stored.building;
        let ids: Vec<&str> = fills.iter().map(|f| f.id.as_str()).collect();
        let versions: Vec<i64> = fills.iter().map(|f| f.version as i64).collect();
        let mut statements: Vec<(String, Params)> = Vec::new();
        for name in building {
            let values =
                |f: &IndexFill| stowage_core::backend::entry_values(&f.index, name).to_vec();
            if let Some(c) = layout.column(name) {
                let ty = crate::schema::cast_type(c.index_type)?;
                let column: Vec<Option<stowage_core::IndexValue>> =
                    fills.iter().map(|f| values(f).into_iter().next()).collect();
                if c.unique {
                    let mut p = Params::default();
                    let vals = p.push_boxed(typed_array(c.index_type, column.clone()));
                    p.push(now_param);
                    statements.push((
                        format!(
                            "UPDATE {t} SET {col} = NULL WHERE {col} = ANY({vals}::{ty}[]) \
                             AND expires_at <= {now}",
                            t = layout.table,
                            col = c.column,
                            now = now_sql("$2"),
                        ),
                        p,
                    ));
                }
                let mut p = Params::default();
                let (i, v, x) = (
                    p.push(
                        ids.iter()
                            .map(std::string::ToString::to_string)
                            .collect::<Vec<_>>(),
                    ),
                    p.push(versions.clone()),
                    p.push_boxed(typed_array(c.index_type, column)),
                );
                statements.push((
                    format!(
                        "UPDATE {t} SET {col} = u.x FROM unnest({i}::text[], {v}::bigint[], \
                         {x}::{ty}[]) AS u(id, version, x) \
                         WHERE {t}.id = u.id AND {t}.version = u.version",
                        t = layout.table,
                        col = c.column,
                    ),
                    p,
                ));
            } else if let Some(s) = layout.side(name) {
                let ty = crate::schema::cast_type(s.index_type)?;
                let (mut pid, mut pver, mut pval) = (Vec::new(), Vec::new(), Vec::new());
                for f in fills {
                    for v in values(f) {
                        pid.push(f.id.clone());
                        pver.push(f.version as i64);
                        pval.push(Some(v));
                    }
                }
                if pid.is_empty() {
                    continue;
                }
                if s.unique {
                    let mut p = Params::default();
                    let vals = p.push_boxed(typed_array(s.index_type, pval.clone()));
                    p.push(now_param);
                    statements.push((
                        format!(
                            "DELETE FROM {side} s USING {t} r WHERE s.id = r.id \
                             AND s.value = ANY({vals}::{ty}[]) AND r.expires_at <= {now}",
                            side = s.table,
                            t = layout.table,
                            now = now_sql("$2"),
                        ),
                        p,
                    ));
                }
                let mut p = Params::default();
                let (i, v, x) = (
                    p.push(pid),
                    p.push(pver),
                    p.push_boxed(typed_array(s.index_type, pval)),
                );
                statements.push((
                    format!(
                        "INSERT INTO {side} (value, id) SELECT u.x, u.id \
                         FROM unnest({i}::text[], {v}::bigint[], {x}::{ty}[]) AS u(id, version, x) \
                         JOIN {t} r ON r.id = u.id AND r.version = u.version \
                         ON CONFLICT DO NOTHING",
                        side = s.table,
                        t = layout.table,
                    ),
                    p,
                ));
            }
        }
        for (sql, params) in &statements {
            if let Err(e) = conn.execute(sql, &params.refs()).await {
                drop(tx);
                return Err(self.explain_fill_failure(e, &layout, fills, now).await);
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_error(e, "building an index", &target))
    }

    async fn explain_fill_failure(
        &self,
        e: tokio_postgres::Error,
        layout: &Layout,
        fills: &[IndexFill],
        now: Timestamp,
    ) -> Error {
        let target = self.inner.pool.target();
        let index = e
            .as_db_error()
            .filter(|d| *d.code() == SqlState::UNIQUE_VIOLATION)
            .and_then(|d| d.constraint())
            .and_then(|c| layout.index_of_btree(c))
            .map(str::to_owned);
        let Some(index) = index else {
            return pg_error(e, "building an index", target);
        };
        // A clash within the page: the earlier record holds the value.
        let mut seen: HashMap<&stowage_core::IndexValue, &str> = HashMap::new();
        for f in fills {
            for v in stowage_core::backend::entry_values(&f.index, &index) {
                if let Some(holder) = seen.insert(v, &f.id) {
                    return Error::unique_violation(&layout.collection, &index, holder);
                }
            }
        }
        // A clash with a stored record.
        if let Ok(client) = self
            .inner
            .pool
            .client("finding a unique value's holder")
            .await
        {
            for f in fills {
                let values = stowage_core::backend::entry_values(&f.index, &index);
                if let Ok(Some(holder)) = self
                    .unique_holder(
                        Conn::Client(&client),
                        layout,
                        &index,
                        values,
                        &f.id,
                        self.now_param(now),
                    )
                    .await
                {
                    return Error::unique_violation(&layout.collection, &index, &holder);
                }
            }
        }
        pg_error(e, "building an index", target)
    }
}

/// A missing schema or table.
fn is_missing(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME)
}

/// A pooled connection with a transaction of statements sent by hand (so that `BEGIN` and
/// `COMMIT` travel with other statements). If it is dropped before [`OpenTransaction::finish`]
/// — the caller's future was cancelled mid-transaction — the connection is closed instead
/// of going back to the pool, and PostgreSQL rolls the transaction back.
pub(crate) struct OpenTransaction {
    client: Option<deadpool_postgres::Object>,
}

impl OpenTransaction {
    pub(crate) fn new(client: deadpool_postgres::Object) -> Self {
        OpenTransaction {
            client: Some(client),
        }
    }

    pub(crate) fn client(&self) -> &deadpool_postgres::Object {
        // Set until `finish` or drop.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// The transaction ended (committed or rolled back): the connection may be reused.
    pub(crate) fn finish(mut self) {
        self.client.take();
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Per collection of a batch, whether its advisory lock is taken exclusively: when an op
/// removes records (see catalog.rs).
pub(crate) fn lock_modes(ops: &[WriteOp]) -> BTreeMap<&str, bool> {
    let mut exclusive: BTreeMap<&str, bool> = BTreeMap::new();
    for op in ops {
        let removes = matches!(op.action, WriteAction::Delete | WriteAction::Restore { .. });
        *exclusive.entry(op.collection.as_str()).or_default() |= removes;
    }
    exclusive
}

/// What a row the write function returns says was stored (`o_id` first, then the meta).
pub(crate) fn written_meta(row: &tokio_postgres::Row) -> RecordMeta {
    RecordMeta {
        version: row.get::<_, i64>(1) as Version,
        created_at: Timestamp::from(row.get::<_, SystemTime>(2)),
        updated_at: Timestamp::from(row.get::<_, SystemTime>(3)),
        expires_at: row.get::<_, Option<SystemTime>>(4).map(Timestamp::from),
    }
}

/// Whether a failure is a lost race worth trying again: a deadlock or a serialization
/// failure between writers, or a write function replaced under the call.
pub(crate) fn is_race(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || is_replaced_function(e)
    })
}

/// Whether a call found the write function dropped under it: a spec change replaces the
/// function (DROP and CREATE in one transaction) while another connection's cached plan
/// still names the old one, and PostgreSQL answers XX000 "cache lookup failed for
/// function". Trying again plans the call afresh against the new function.
fn is_replaced_function(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == SqlState::INTERNAL_ERROR
            && d.message().starts_with("cache lookup failed for function")
    })
}

/// The change event of a removal, from how many live records went.
type EventOf<'a> = Box<dyn FnOnce(u64) -> Pending + Send + 'a>;

/// How many expired records one purge transaction deletes.
const PURGE_CHUNK: i64 = 1000;

impl PostgresBackend {
    /// Deletes up to the request's limit of live records matching its filter.
    pub(crate) async fn delete_query(
        &self,
        ns: &str,
        req: &QueryRequest,
        now: Timestamp,
    ) -> Result<u64> {
        let now_param = self.now_param(now);
        self.remove(ns, &req.collection, Some(req.revision), now, |layout| {
            let mut q = query_sql(layout, req, now_param)?;
            let offset = q.params.push(req.offset as i64);
            let limit = q.params.push(req.limit.map(|l| l as i64));
            let sql = format!(
                "DELETE FROM {table} WHERE id IN (SELECT t.id FROM {table} t WHERE {conds} \
                 ORDER BY {order} OFFSET {offset}::bigint LIMIT {limit}::bigint) \
                 RETURNING version, true",
                table = layout.table,
                conds = q.conditions.join(" AND "),
                order = q.order_by,
            );
            let event = |n| Pending {
                count: Some(n),
                ..Pending::new(ChangeOp::DeleteWhere, &req.collection)
            };
            Ok((sql, q.params, Box::new(event) as EventOf<'_>))
        })
        .await
    }

    /// Deletes every record whose id starts with `prefix`; returns how many live ones went.
    pub(crate) async fn delete_id_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let now_param = self.now_param(now);
        self.remove(ns, collection, None, now, |layout| {
            let mut params = Params::default();
            let now_at = params.push(now_param);
            let mut conditions = prefix_conditions("id", prefix, &mut params);
            conditions.push("true".to_owned());
            let sql = format!(
                "DELETE FROM {} WHERE {} RETURNING version, \
                 expires_at IS NULL OR expires_at > {}",
                layout.table,
                conditions.join(" AND "),
                now_sql(&now_at)
            );
            let event = |n| Pending {
                id: Some(prefix.to_owned()),
                count: Some(n),
                ..Pending::new(ChangeOp::DeletePrefix, collection)
            };
            Ok((sql, params, Box::new(event) as EventOf<'_>))
        })
        .await
    }

    /// Runs one `DELETE … RETURNING version, live` that `plan` builds from the collection's
    /// layout, under the collection's exclusive lock; raises the floor, logs the event for
    /// the live records removed, and returns how many those were.
    async fn remove<'a>(
        &self,
        ns: &str,
        collection: &str,
        revision: Option<Revision>,
        now: Timestamp,
        plan: impl FnOnce(&Layout) -> Result<(String, Params, EventOf<'a>)>,
    ) -> Result<u64> {
        let target = self.inner.pool.target().to_owned();
        let mut client = self.inner.pool.client("deleting").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(e, "deleting", &target))?;
        let conn = Conn::Tx(&tx);
        lock(conn, ns, collection, true, &target).await?;
        let (layout, _) = self.checked_layout(conn, ns, collection, revision).await?;
        let (sql, params, event) = plan(&layout)?;
        let rows = conn
            .query(&sql, &params.refs())
            .await
            .map_err(|e| read_error(e, ns, collection, "deleting", &target))?;
        let live = rows.iter().filter(|r| r.get::<_, bool>(1)).count() as u64;
        self.finish_removal(tx, ns, collection, &rows, event(live), now, &target)
            .await?;
        Ok(live)
    }

    /// Removes expired records of every collection of `ns`, a chunk per transaction. One
    /// instance purges a namespace at a time: a chunk that finds another instance's purge
    /// lock held stops, and leaves the rest to it.
    pub(crate) async fn purge(&self, ns: &str, now: Timestamp) -> Result<u64> {
        self.trim_changes(ns).await?;
        let target = self.inner.pool.target().to_owned();
        let names: Vec<String> = {
            let client = self.inner.pool.client("purging").await?;
            crate::catalog::list_entries(Conn::Client(&client), ns, &target)
                .await?
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        let mut purged = 0u64;
        for name in names {
            loop {
                let mut client = self.inner.pool.client("purging").await?;
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| pg_error(e, "purging", &target))?;
                let conn = Conn::Tx(&tx);
                let mine: bool = conn
                    .query(
                        "SELECT pg_try_advisory_xact_lock($1)",
                        &[&crate::schema::lock_key(ns, "\0purge")],
                    )
                    .await
                    .map_err(|e| pg_error(e, "purging", &target))?
                    .first()
                    .is_some_and(|r| r.get(0));
                if !mine {
                    return Ok(purged);
                }
                lock(conn, ns, &name, true, &target).await?;
                let layout = match self.checked_layout(conn, ns, &name, None).await {
                    Ok((layout, _)) => layout,
                    // Dropped since it was listed.
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                };
                let sql = format!(
                    "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= {now} \
                     LIMIT $2) RETURNING version",
                    t = layout.table,
                    now = now_sql("$1"),
                );
                let rows = conn
                    .query(&sql, &[&self.now_param(now), &PURGE_CHUNK])
                    .await
                    .map_err(|e| read_error(e, ns, &name, "purging", &target))?;
                let n = rows.len();
                let event = Pending {
                    collection: None,
                    count: Some(n as u64),
                    ..Pending::new(ChangeOp::Purge, &name)
                };
                self.finish_removal(tx, ns, &name, &rows, event, now, &target)
                    .await?;
                purged += n as u64;
                if (n as i64) < PURGE_CHUNK {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Raises the floor to the highest version removed (column 0 of `removed`), logs
    /// `event` when it counts something, and commits.
    #[allow(clippy::too_many_arguments)]
    async fn finish_removal(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        ns: &str,
        collection: &str,
        removed: &[tokio_postgres::Row],
        event: Pending,
        now: Timestamp,
        target: &str,
    ) -> Result<()> {
        let highest = removed
            .iter()
            .map(|r| r.get::<_, i64>(0) as Version)
            .max()
            .unwrap_or(0);
        raise_floor(Conn::Tx(&tx), ns, collection, highest, target).await?;
        if event.count.is_some_and(|n| n > 0) {
            if let Some((sql, params)) = append(ns, &[event], self.now_param(now)) {
                Conn::Tx(&tx)
                    .execute(&sql, &params.refs())
                    .await
                    .map_err(|e| pg_error(e, "logging a change", target))?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| pg_error(e, "deleting", target))
    }
}
