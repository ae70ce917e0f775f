//! Batches that hold mutations: the record is locked, the mutation applied by Stowage, and the
//! result written by the collection's write function, all in one transaction.
//!
//! Why not inside the write function, in one statement: a mutation must keep the key order
//! of the body's untouched fields and give the same bytes and index values as on every other
//! engine, so it would need a second JSON implementation and a second index extractor in
//! PL/pgSQL kept identical to Stowage's. Locking instead (`SELECT … FOR UPDATE` in the
//! write's transaction) keeps one implementation, and still no caller ever retries: a
//! concurrent mutation of the record waits for the lock, as `UPDATE … SET n = n + 1` does.
//! A single mutation costs three round trips: `BEGIN` with the collection locks and the clock
//! (pipelined), the row lock, then the write function with `COMMIT` (pipelined). The row is
//! locked from the second to the end, so one round trip, the write and the commit's flush
//! stand between two mutations of one hot record.
//!
//! Ops run one at a time in batch order, each seeing the ones before it (they share the
//! transaction). A record that does not exist cannot be locked: two first mutations of one
//! id may both find it absent, and the second insert loses — a race, tried again from the
//! start, never shown to the caller.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures_util::future::{join, join_all};
use std::sync::Arc;

use stowage_core::backend::{mutation_as_put, WriteAction, WriteOp, WriteResult};
use stowage_core::{Error, Result, Timestamp};
use tokio_postgres::types::ToSql;

use crate::catalog::{LOCK_EXCLUSIVE, LOCK_SHARED};
use crate::error::pg_error;
use crate::open::PostgresBackend;
use crate::schema::{read_record, Layout, RECORD_COLUMNS};
use crate::write::{
    is_race, lock_modes, segment_params, written_meta, OpenTransaction, Outcome, Segment,
};

impl PostgresBackend {
    /// One attempt at a batch holding mutations (see the module docs).
    pub(crate) async fn mutate_attempt(
        &self,
        ns: &str,
        ops: &[WriteOp],
        now: Timestamp,
    ) -> Result<Outcome> {
        let target = self.inner.pool.target().to_owned();
        let failed = |e| pg_error(e, "writing", &target);
        // Layouts before the connection: a transaction waiting for a second connection
        // could starve the pool.
        let mut layouts = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.op_layout(ns, op).await {
                Ok(layout) => layouts.push(layout),
                Err(e) => return Ok(Outcome::Done(Err(e.at_op(i)))),
            }
        }
        // Mutations of one record from this instance queue here, not on the row lock, where
        // each would hold a connection and a transaction.
        let _held = self.inner.record_locks.lock_mutated(ops).await;
        let client = OpenTransaction::new(self.inner.pool.client("writing").await?);
        let c = client.client();
        let modes = lock_modes(ops);
        let engine_now = self.begin_locked(c, ns, &modes, now).await?;
        let mut results = Vec::with_capacity(ops.len());
        for (i, (op, layout)) in ops.iter().zip(layouts).enumerate() {
            let last = i + 1 == ops.len();
            let exclusive = modes[op.collection.as_str()];
            let step = self
                .mutate_one(c, op, layout, (engine_now, now), exclusive, last)
                .await?;
            let (written, segment, e) = match step {
                Step::Done(result) => {
                    results.push(result);
                    continue;
                }
                Step::CommitFailed(e) => {
                    client.finish();
                    return if is_race(&e) {
                        Ok(Outcome::Race(e.to_string()))
                    } else {
                        Err(failed(e))
                    };
                }
                Step::Refused(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    client.finish();
                    return Ok(Outcome::Done(Err(e.at_op(i))));
                }
                Step::Failed(written, segment, e) => (written, segment, e),
            };
            let _ = c.batch_execute("ROLLBACK").await;
            // The connection goes back before explaining, which may take another.
            client.finish();
            let mutated = matches!(op.action, WriteAction::Mutate(_));
            let one = std::slice::from_ref(&written);
            return Ok(match self.explain(ns, one, &segment, e, now).await? {
                // Another writer created the record first: not the caller's precondition.
                Outcome::Done(Err(e)) if mutated && is_lost_insert(&e) => {
                    Outcome::Race("a record was created by another writer".into())
                }
                Outcome::Done(Err(e)) => Outcome::Done(Err(e.at_op(i))),
                other => other,
            });
        }
        // The last op's step committed.
        client.finish();
        Ok(Outcome::Done(Ok(results)))
    }

    /// `BEGIN`, the advisory locks of the batch's collections in name order (as every write
    /// takes them: a row lock taken before them could deadlock with a spec change) and the
    /// transaction's clock, pipelined in one round trip. Returns the clock.
    async fn begin_locked(
        &self,
        c: &deadpool_postgres::Object,
        ns: &str,
        modes: &BTreeMap<&str, bool>,
        now: Timestamp,
    ) -> Result<Timestamp> {
        let target = self.inner.pool.target().to_owned();
        let failed = |e| pg_error(e, "writing", &target);
        let keys: Vec<(i64, bool)> = modes
            .iter()
            .map(|(coll, x)| (crate::schema::lock_key(ns, coll), *x))
            .collect();
        let lock_shared = c.prepare_cached(LOCK_SHARED).await.map_err(failed)?;
        let lock_exclusive = c.prepare_cached(LOCK_EXCLUSIVE).await.map_err(failed)?;
        let clock = c
            .prepare_cached("SELECT coalesce($1::timestamptz, now())")
            .await
            .map_err(failed)?;
        type P<'a> = &'a (dyn ToSql + Sync);
        let lock_params: Vec<[P<'_>; 1]> = keys.iter().map(|(k, _)| [k as P<'_>]).collect();
        let now_param = self.now_param(now);
        let (begun, (locked, engine_now)) = join(
            c.batch_execute("BEGIN"),
            join(
                join_all(keys.iter().zip(&lock_params).map(|((_, x), p)| {
                    c.execute(if *x { &lock_exclusive } else { &lock_shared }, p)
                })),
                c.query_one(&clock, &[&now_param]),
            ),
        )
        .await;
        begun.map_err(failed)?;
        for l in locked {
            l.map_err(failed)?;
        }
        let engine_now = Timestamp::from(engine_now.map_err(failed)?.get::<_, SystemTime>(0));
        Ok(engine_now)
    }

    /// One op of a mutating batch, inside its transaction: a mutation becomes the put of its
    /// result over the locked row. `exclusive`: the op's collection is locked exclusively
    /// ([`lock_modes`]). The last op sends `COMMIT` with its write, so the row lock is held
    /// for one round trip less.
    async fn mutate_one(
        &self,
        c: &deadpool_postgres::Object,
        op: &WriteOp,
        layout: Arc<Layout>,
        (engine_now, now): (Timestamp, Timestamp),
        exclusive: bool,
        last: bool,
    ) -> Result<Step> {
        let target = self.inner.pool.target().to_owned();
        let failed = |e| pg_error(e, "writing", &target);
        let (written, values) = match &op.action {
            WriteAction::Mutate(m) => {
                let select = format!(
                    "SELECT {RECORD_COLUMNS} FROM {} WHERE id = $1 FOR UPDATE",
                    layout.table
                );
                let stmt = c.prepare_cached(&select).await.map_err(failed)?;
                let row = c.query_opt(&stmt, &[&op.id]).await.map_err(failed)?;
                let stored = row.map(|r| read_record(&r, 0));
                let live = stored
                    .as_ref()
                    .filter(|r| r.expires_at.is_none_or(|x| x > engine_now));
                match mutation_as_put(op, m, live, engine_now) {
                    Ok(put) => put,
                    Err(e) => return Ok(Step::Refused(e)),
                }
            }
            _ => (op.clone(), Vec::new()),
        };
        let segment = Segment {
            layout,
            ops: vec![0],
        };
        let one = std::slice::from_ref(&written);
        let params = segment_params(one, &segment, self.now_param(now), exclusive)?;
        let stmt = match c.prepare_cached(&segment.layout.writer_call()).await {
            Ok(stmt) => stmt,
            // A write function gone or replaced is explained (and tried again) as a call's.
            Err(e) => return Ok(Step::Failed(written, segment, e)),
        };
        let refs = params.refs();
        let (rows, committed) = if last {
            // A failed write turns the COMMIT into a rollback.
            let (rows, committed) = join(c.query(&stmt, &refs), c.batch_execute("COMMIT")).await;
            (rows, Some(committed))
        } else {
            (c.query(&stmt, &refs).await, None)
        };
        let rows = match (rows, committed) {
            (Err(e), _) => return Ok(Step::Failed(written, segment, e)),
            (Ok(_), Some(Err(e))) => return Ok(Step::CommitFailed(e)),
            (Ok(rows), _) => rows,
        };
        let meta = rows.first().map(written_meta);
        Ok(Step::Done(WriteResult { meta, values }))
    }
}

/// What one op of a mutating batch came to.
enum Step {
    /// Written.
    Done(WriteResult),
    /// Refused before writing (precondition, type, bound): the caller's answer.
    Refused(Error),
    /// The write function failed on this op (as written: a mutation's put).
    Failed(WriteOp, Segment, tokio_postgres::Error),
    /// The last op was written, but `COMMIT` failed.
    CommitFailed(tokio_postgres::Error),
}

/// Whether a mutation's put failed because its record appeared meanwhile.
fn is_lost_insert(e: &Error) -> bool {
    e.kind() == stowage_core::ErrorKind::AlreadyExists && e.index().is_none()
}
