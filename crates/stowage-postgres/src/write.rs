//! Writes: a batch in one transaction, in a fixed number of round trips whatever its size.
//!
//! 1. `BEGIN`;
//! 2. the advisory lock of each collection the batch touches (shared, or exclusive where it
//!    removes records), then the catalog rows of those collections;
//! 3. the stored rows of the batch's ids, read `FOR UPDATE` (one statement per collection);
//! 4. every op's statements, pipelined: preconditions were checked in Rust against the rows
//!    of step 3 as earlier ops of the batch left them, and the versions computed, so the
//!    statements only write;
//! 5. `COMMIT`.
//!
//! A unique index is enforced by its B-tree: a clash fails the statement (SQLSTATE 23505),
//! the transaction rolls back, and the holder is looked up afterwards to name it. Before a
//! record takes a unique value, an *expired* record holding it lets it go (its column is
//! cleared, its side row deleted): an expired holder never blocks a live writer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::{join, join4, join_all};
use stowage_core::backend::{
    first_version, IndexEntries, IndexFill, QueryRequest, RecordMeta, Revision, WriteAction,
    WriteOp, WriteResult,
};
use stowage_core::{Body, ChangeOp, ContentType, Error, ErrorKind, Result, Timestamp, Version};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::catalog::{lock, raise_floor, LOCK_EXCLUSIVE, LOCK_SHARED};
use crate::error::pg_error;
use crate::feed::{append, Pending};
use crate::open::{to_system_time, PostgresBackend};
use crate::pool::Conn;
use crate::query::{prefix_conditions, query_sql, read_error};
use crate::schema::{now_sql, typed_array, Layout, Param, Params, SqlValue};

/// How many times a batch that lost a race is tried again before the caller gets
/// `Unavailable`.
const RACE_RETRIES: usize = 8;

/// Why a batch attempt did not finish.
enum Outcome {
    /// The batch's answer (an error names its op).
    Done(Result<Vec<WriteResult>>),
    /// Another writer got in between (a row appeared that was not there when read, a
    /// deadlock): try again from the start.
    Race(String),
}

/// A stored row as step 3 read it, then as the batch's earlier ops left it.
#[derive(Debug, Clone, Copy)]
struct Current {
    version: Version,
    live: bool,
    /// The live record's metadata: from the row, or from an earlier op of the batch.
    meta: MetaOf,
}

/// Where a record's metadata comes from.
#[derive(Debug, Clone, Copy)]
enum MetaOf {
    Stored(RecordMeta),
    /// What op `n` of the batch wrote (known once its statement has run).
    Op(usize),
}

/// One statement of the batch, planned before anything runs.
struct Planned {
    op: usize,
    sql: String,
    params: Params,
    /// The op's record write: its RETURNING row is the op's result, and no row means
    /// another writer inserted the id in between.
    writes_record: Option<Version>,
}

/// What a planned op returns.
enum Answer {
    None,
    Meta(MetaOf),
    Written,
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
        for _ in 0..RACE_RETRIES {
            match self.write_attempt(ns, ops, now).await? {
                Outcome::Done(r) => return r,
                Outcome::Race(why) => last = why,
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

    async fn write_attempt(&self, ns: &str, ops: &[WriteOp], now: Timestamp) -> Result<Outcome> {
        let target = self.inner.pool.target().to_owned();
        let now_param = self.now_param(now);
        let client = OpenTransaction::new(self.inner.pool.client("writing").await?);
        let c = client.client();
        let failed = |e| pg_error(e, "writing", &target);

        // Locks in name order (every writer takes them in the same order, so two batches
        // over the same collections cannot deadlock).
        let mut touched: BTreeMap<&str, bool> = BTreeMap::new();
        for op in ops {
            let removes = matches!(op.action, WriteAction::Delete | WriteAction::Restore { .. });
            *touched.entry(op.collection.as_str()).or_default() |= removes;
        }
        let names: Vec<&str> = touched.keys().copied().collect();
        let lock_shared = c.prepare_cached(LOCK_SHARED).await.map_err(failed)?;
        let lock_exclusive = c.prepare_cached(LOCK_EXCLUSIVE).await.map_err(failed)?;
        let catalog = c
            .prepare_cached(&crate::catalog::select_entries())
            .await
            .map_err(failed)?;
        // The stored rows of the batch's ids, per collection whose table exists (a missing
        // one fails to prepare: the catalog then says the collection is gone).
        let mut reads = Vec::new();
        for name in &names {
            let sql = current_sql(ns, name);
            match c.prepare_cached(&sql).await {
                Ok(stmt) => {
                    let ids: Vec<&str> = ops
                        .iter()
                        .filter(|o| o.collection == *name)
                        .map(|o| o.id.as_str())
                        .collect();
                    reads.push((*name, sql, stmt, ids));
                }
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        let keys: Vec<(i64, bool)> = touched
            .iter()
            .map(|(coll, exclusive)| (crate::catalog::lock_key(ns, coll), *exclusive))
            .collect();

        // Round trip 1: BEGIN, the locks, the catalog rows, the stored rows.
        type P<'a> = &'a (dyn ToSql + Sync);
        let lock_params: Vec<[P<'_>; 1]> = keys.iter().map(|(k, _)| [k as P<'_>]).collect();
        let read_params: Vec<[P<'_>; 2]> = reads
            .iter()
            .map(|(_, _, _, ids)| [ids as P<'_>, &now_param as P<'_>])
            .collect();
        let (begun, locked, entries, read) = join4(
            c.batch_execute("BEGIN"),
            join_all(
                keys.iter()
                    .zip(&lock_params)
                    .map(|((_, exclusive), params)| {
                        let stmt = if *exclusive {
                            &lock_exclusive
                        } else {
                            &lock_shared
                        };
                        c.execute(stmt, params)
                    }),
            ),
            c.query(&catalog, &[&ns, &names]),
            join_all(
                reads
                    .iter()
                    .zip(&read_params)
                    .map(|((_, _, stmt, _), params)| c.query(stmt, params)),
            ),
        )
        .await;
        begun.map_err(failed)?;
        for l in locked {
            l.map_err(failed)?;
        }
        let mut layouts: HashMap<String, (Arc<Layout>, Version)> = HashMap::new();
        for row in entries.map_err(failed)? {
            let (name, entry) = crate::catalog::entry_of(&row)?;
            let layout = self.layout(ns, &name, entry.stored)?;
            layouts.insert(name, (layout, entry.floor));
        }
        let mut current: HashMap<(String, String), Current> = HashMap::new();
        for ((name, sql, _, _), rows) in reads.iter().zip(read) {
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) if is_missing(&e) => {
                    // Dropped since the statement was prepared: forget it and try again.
                    c.statement_cache.remove(sql, &[]);
                    return Ok(Outcome::Race("a collection was dropped meanwhile".into()));
                }
                Err(e) => return Err(failed(e)),
            };
            for row in rows {
                let version = row.get::<_, i64>(1) as Version;
                let meta = RecordMeta {
                    version,
                    created_at: Timestamp::from(row.get::<_, SystemTime>(2)),
                    updated_at: Timestamp::from(row.get::<_, SystemTime>(3)),
                    expires_at: row.get::<_, Option<SystemTime>>(4).map(Timestamp::from),
                };
                current.insert(
                    (name.to_string(), row.get(0)),
                    Current {
                        version,
                        live: row.get(5),
                        meta: MetaOf::Stored(meta),
                    },
                );
            }
        }

        // Check and plan each op, as the ops before it leave things.
        let mut planned: Vec<Planned> = Vec::new();
        let mut answers: Vec<Answer> = Vec::with_capacity(ops.len());
        let mut floors: HashMap<&str, (Version, bool)> = layouts
            .iter()
            .map(|(name, (_, floor))| (name.as_str(), (*floor, false)))
            .collect();
        let mut failure: Option<Error> = None;
        let mut events: Vec<Pending> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match plan_op(
                ns,
                i,
                op,
                &layouts,
                &mut current,
                &mut floors,
                &now_param,
                now,
                &mut planned,
                &mut events,
            ) {
                Ok(answer) => answers.push(answer),
                Err(e) => {
                    failure = Some(e.at_op(i));
                    break;
                }
            }
        }
        if failure.is_none() {
            for (coll, (floor, raised)) in &floors {
                if *raised {
                    let mut params = Params::default();
                    let (n, c, f) = (
                        params.push(ns.to_owned()),
                        params.push(coll.to_string()),
                        params.push(*floor as i64),
                    );
                    planned.push(Planned {
                        op: ops.len().saturating_sub(1),
                        sql: format!(
                            "INSERT INTO stowage.version_floors AS f (namespace, collection, \
                             floor) VALUES ({n}, {c}, {f}) ON CONFLICT (namespace, collection) \
                             DO UPDATE SET floor = greatest(f.floor, EXCLUDED.floor)"
                        ),
                        params,
                        writes_record: None,
                    });
                }
            }
            // Last: it holds the namespace's log row until commit.
            if let Some((sql, params)) = append(ns, &events, now_param) {
                planned.push(Planned {
                    op: ops.len().saturating_sub(1),
                    sql,
                    params,
                    writes_record: None,
                });
            }
        }

        // Round trip 2: every write, then COMMIT unless an op already failed its checks (a
        // failed statement turns the COMMIT into a rollback). Statements are prepared first
        // (once per connection), so they are sent in order.
        let mut statements = Vec::with_capacity(planned.len());
        for p in &planned {
            statements.push(c.prepare_cached(&p.sql).await.map_err(failed)?);
        }
        let refs: Vec<_> = planned.iter().map(|p| p.params.refs()).collect();
        let commit = failure.is_none();
        let (results, committed) = join(
            join_all(
                statements
                    .iter()
                    .zip(&refs)
                    .map(|(stmt, params)| c.query(stmt, params)),
            ),
            async {
                if commit {
                    c.batch_execute("COMMIT").await
                } else {
                    c.batch_execute("ROLLBACK").await
                }
            },
        )
        .await;
        let mut written: HashMap<usize, RecordMeta> = HashMap::new();
        for (p, result) in planned.iter().zip(results) {
            match result {
                Ok(rows) => {
                    if let (Some(version), Some(row)) = (p.writes_record, rows.first()) {
                        written.insert(p.op, crate::schema::read_times(row, version));
                    }
                }
                Err(e) => {
                    // The transaction ended with the COMMIT (as a rollback).
                    committed.map_err(failed)?;
                    client.finish();
                    return self.explain_failure(ops, p.op, e, &layouts).await;
                }
            }
        }
        if let Err(e) = committed {
            if is_race(&e) {
                client.finish();
                return Ok(Outcome::Race(e.to_string()));
            }
            return Err(failed(e));
        }
        client.finish();
        if let Some(e) = failure {
            return Ok(Outcome::Done(Err(e)));
        }
        let resolve = |m: MetaOf| match m {
            MetaOf::Stored(meta) => Some(meta),
            MetaOf::Op(j) => written.get(&j).copied(),
        };
        let results = answers
            .into_iter()
            .enumerate()
            .map(|(i, a)| WriteResult {
                meta: match a {
                    Answer::None => None,
                    Answer::Meta(m) => resolve(m),
                    Answer::Written => written.get(&i).copied(),
                },
            })
            .collect();
        Ok(Outcome::Done(Ok(results)))
    }

    /// Turns a failed statement into the batch's answer: a unique clash names the index and
    /// the holder; a lost race is tried again; anything else is the error.
    async fn explain_failure(
        &self,
        ops: &[WriteOp],
        at: usize,
        e: tokio_postgres::Error,
        layouts: &HashMap<String, (Arc<Layout>, Version)>,
    ) -> Result<Outcome> {
        if is_race(&e) {
            return Ok(Outcome::Race(e.to_string()));
        }
        let target = self.inner.pool.target();
        let op = &ops[at];
        let constraint = e
            .as_db_error()
            .filter(|d| *d.code() == SqlState::UNIQUE_VIOLATION)
            .and_then(|d| d.constraint().map(str::to_owned));
        let (Some(constraint), Some((layout, _))) = (constraint, layouts.get(&op.collection))
        else {
            return Ok(Outcome::Done(Err(pg_error(e, "writing", target).at_op(at))));
        };
        let Some(index) = layout.index_of_btree(&constraint).map(str::to_owned) else {
            // The primary key: another writer inserted the id since the batch read it.
            return Ok(Outcome::Race(format!(
                "{} was inserted by another writer",
                op.id
            )));
        };
        let values = match &op.action {
            WriteAction::Put { index: entries, .. }
            | WriteAction::Restore { index: entries, .. } => {
                stowage_core::backend::entry_values(entries, &index).to_vec()
            }
            _ => Vec::new(),
        };
        // The holder may be an earlier op of this batch (rolled back with it)...
        for earlier in ops[..at].iter().rev() {
            if earlier.collection != op.collection || earlier.id == op.id {
                continue;
            }
            if let WriteAction::Put { index: entries, .. }
            | WriteAction::Restore { index: entries, .. } = &earlier.action
            {
                let theirs = stowage_core::backend::entry_values(entries, &index);
                if values.iter().any(|v| theirs.contains(v)) {
                    return Ok(Outcome::Done(Err(Error::unique_violation(
                        &op.collection,
                        &index,
                        &earlier.id,
                    )
                    .at_op(at))));
                }
            }
        }
        // ...or a stored record.
        let client = self
            .inner
            .pool
            .client("finding a unique value's holder")
            .await?;
        if let Some(holder) = self
            .unique_holder(Conn::Client(&client), layout, &index, &values, &op.id, None)
            .await?
        {
            return Ok(Outcome::Done(Err(Error::unique_violation(
                &op.collection,
                &index,
                &holder,
            )
            .at_op(at))));
        }
        Ok(Outcome::Race(format!(
            "the holder of a value of unique index {index} went away"
        )))
    }

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
                    p.push(ids.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
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

/// Reads the stored rows of some ids `FOR UPDATE`: `$1` the ids, `$2` the caller's now.
fn current_sql(ns: &str, collection: &str) -> String {
    format!(
        "SELECT id, version, created_at, updated_at, expires_at, \
         expires_at IS NULL OR expires_at > {} FROM {} \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        now_sql("$2"),
        crate::schema::qualified_table(ns, collection)
    )
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
struct OpenTransaction {
    client: Option<deadpool_postgres::Object>,
}

impl OpenTransaction {
    fn new(client: deadpool_postgres::Object) -> Self {
        OpenTransaction {
            client: Some(client),
        }
    }

    fn client(&self) -> &deadpool_postgres::Object {
        // Set until `finish` or drop.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// The transaction ended (committed or rolled back): the connection may be reused.
    fn finish(mut self) {
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

/// Whether a failure is a lost race worth trying again: a deadlock or a serialization
/// failure between writers.
fn is_race(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Checks op `i` against the rows as the ops before it left them and plans its
/// statements.
#[allow(clippy::too_many_arguments)]
fn plan_op<'a>(
    ns: &str,
    i: usize,
    op: &'a WriteOp,
    layouts: &HashMap<String, (Arc<Layout>, Version)>,
    current: &mut HashMap<(String, String), Current>,
    floors: &mut HashMap<&'a str, (Version, bool)>,
    now_param: &Option<SystemTime>,
    now: Timestamp,
    planned: &mut Vec<Planned>,
    events: &mut Vec<Pending>,
) -> Result<Answer> {
    let (layout, _) = layouts
        .get(&op.collection)
        .ok_or_else(|| Error::collection_not_found(ns, &op.collection))?;
    if layout.stored.revision != op.revision {
        return Err(Error::stale_spec(&op.collection));
    }
    let key = (op.collection.clone(), op.id.clone());
    let cur = current.get(&key).copied();
    let live = cur.filter(|c| c.live);
    op.precondition
        .check(&op.collection, &op.id, live.map(|c| c.version))?;
    let floor = floors.entry(op.collection.as_str()).or_insert((0, false));
    match &op.action {
        WriteAction::Check => Ok(live.map_or(Answer::None, |c| Answer::Meta(c.meta))),
        WriteAction::Delete => {
            if let Some(c) = cur {
                let mut p = Params::default();
                let id = p.push(op.id.clone());
                planned.push(Planned {
                    op: i,
                    sql: format!("DELETE FROM {} WHERE id = {id}", layout.table),
                    params: p,
                    writes_record: None,
                });
                if c.version > floor.0 {
                    *floor = (c.version, true);
                }
                current.remove(&key);
            }
            if let Some(c) = live {
                events.push(Pending {
                    id: Some(op.id.clone()),
                    version: Some(c.version),
                    ..Pending::new(ChangeOp::Delete, &op.collection)
                });
            }
            Ok(live.map_or(Answer::None, |c| Answer::Meta(c.meta)))
        }
        WriteAction::Put { body, index, ttl } => {
            let version = match live {
                Some(c) => c.version + 1,
                None => first_version(floor.0, cur.map(|c| c.version)),
            };
            plan_record(
                i,
                op,
                layout,
                RecordWrite {
                    version,
                    body,
                    index,
                    created_at: None,
                    updated_at: None,
                    expires_at: None,
                    ttl_us: ttl.map(|t| t.as_micros() as f64),
                    existed: cur.is_some(),
                    keep_created: live.is_some(),
                },
                now_param,
                planned,
            )?;
            current.insert(
                key,
                Current {
                    version,
                    live: true,
                    meta: MetaOf::Op(i),
                },
            );
            events.push(Pending {
                id: Some(op.id.clone()),
                version: Some(version),
                ..Pending::new(ChangeOp::Put, &op.collection)
            });
            Ok(Answer::Written)
        }
        WriteAction::Restore { meta, body, index } => {
            if let Some(c) = cur.filter(|c| c.version != meta.version) {
                // Replacing another version forgets it: the floor keeps it from coming back.
                if c.version > floor.0 {
                    *floor = (c.version, true);
                }
            }
            plan_record(
                i,
                op,
                layout,
                RecordWrite {
                    version: meta.version,
                    body,
                    index,
                    created_at: Some(to_system_time(meta.created_at)),
                    updated_at: Some(to_system_time(meta.updated_at)),
                    expires_at: meta.expires_at.map(to_system_time),
                    ttl_us: None,
                    existed: cur.is_some(),
                    keep_created: false,
                },
                now_param,
                planned,
            )?;
            current.insert(
                key,
                Current {
                    version: meta.version,
                    live: meta.expires_at.is_none_or(|t| t > now),
                    meta: MetaOf::Op(i),
                },
            );
            events.push(Pending {
                id: Some(op.id.clone()),
                version: Some(meta.version),
                ..Pending::new(ChangeOp::Put, &op.collection)
            });
            Ok(Answer::Written)
        }
    }
}

/// What one record write stores.
struct RecordWrite<'a> {
    version: Version,
    body: &'a Body,
    index: &'a IndexEntries,
    created_at: Option<SystemTime>,
    updated_at: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    ttl_us: Option<f64>,
    existed: bool,
    keep_created: bool,
}

/// Plans the statements of one record write: expired holders of its unique values let
/// them go, the row is written, its side rows replaced.
fn plan_record(
    i: usize,
    op: &WriteOp,
    layout: &Layout,
    w: RecordWrite<'_>,
    now_param: &Option<SystemTime>,
    planned: &mut Vec<Planned>,
) -> Result<()> {
    let values = |name: &str| stowage_core::backend::entry_values(w.index, name);
    for c in layout.columns.iter().filter(|c| c.unique) {
        if let Some(v) = values(&c.index).first() {
            let mut p = Params::default();
            let (val, id, _) = (
                p.push(SqlValue(v.clone())),
                p.push(op.id.clone()),
                p.push(*now_param),
            );
            planned.push(Planned {
                op: i,
                sql: format!(
                    "UPDATE {t} SET {col} = NULL WHERE {col} = {val}::{ty} AND id <> {id} \
                     AND expires_at <= {now}",
                    t = layout.table,
                    col = c.column,
                    ty = crate::schema::cast_type(c.index_type)?,
                    now = now_sql("$3"),
                ),
                params: p,
                writes_record: None,
            });
        }
    }
    for s in layout.sides.iter().filter(|s| s.unique) {
        let vals = values(&s.index);
        if vals.is_empty() {
            continue;
        }
        let mut p = Params::default();
        let (val, id, _) = (
            p.push_boxed(typed_array(
                s.index_type,
                vals.iter().cloned().map(Some).collect(),
            )),
            p.push(op.id.clone()),
            p.push(*now_param),
        );
        planned.push(Planned {
            op: i,
            sql: format!(
                "DELETE FROM {side} s USING {t} r WHERE s.id = r.id AND s.value = ANY({val}::{ty}[]) \
                 AND r.id <> {id} AND r.expires_at <= {now}",
                side = s.table,
                t = layout.table,
                ty = crate::schema::cast_type(s.index_type)?,
                now = now_sql("$3"),
            ),
            params: p,
            writes_record: None,
        });
    }
    let (text, blob): (Option<String>, Option<Vec<u8>>) = match w.body.content_type {
        ContentType::Json => (
            Some(String::from_utf8(w.body.bytes.to_vec()).map_err(|_| {
                Error::invalid(format!("the JSON body of {:?} is not UTF-8", op.id))
            })?),
            None,
        ),
        _ => (None, Some(w.body.bytes.to_vec())),
    };
    let mut p = Params::default();
    p.push(op.id.clone());
    p.push(w.version as i64);
    p.push(text);
    p.push(blob);
    p.push(*now_param);
    p.push(w.created_at);
    p.push(w.updated_at);
    p.push(w.expires_at);
    p.push(w.ttl_us);
    for c in &layout.columns {
        let v: Param = match values(&c.index).first() {
            Some(v) => Box::new(SqlValue(v.clone())),
            None => Box::new(None::<SqlValue>),
        };
        p.push_boxed(v);
    }
    let sql = if w.existed {
        p.push(w.keep_created);
        layout.update.clone()
    } else {
        layout.insert.clone()
    };
    planned.push(Planned {
        op: i,
        sql,
        params: p,
        writes_record: Some(w.version),
    });
    for s in &layout.sides {
        if w.existed {
            let mut p = Params::default();
            let id = p.push(op.id.clone());
            planned.push(Planned {
                op: i,
                sql: format!("DELETE FROM {} WHERE id = {id}", s.table),
                params: p,
                writes_record: None,
            });
        }
        let vals = values(&s.index);
        if vals.is_empty() {
            continue;
        }
        let mut p = Params::default();
        let (val, id) = (
            p.push_boxed(typed_array(
                s.index_type,
                vals.iter().cloned().map(Some).collect(),
            )),
            p.push(op.id.clone()),
        );
        planned.push(Planned {
            op: i,
            sql: format!(
                "INSERT INTO {} (value, id) SELECT unnest({val}::{}[]), {id}",
                s.table,
                crate::schema::cast_type(s.index_type)?
            ),
            params: p,
            writes_record: None,
        });
    }
    Ok(())
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
                        &[&crate::catalog::lock_key(ns, "\0purge")],
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
