//! Mutations for a backend that cannot apply them in its own transaction — a layer that hides
//! bodies from the engine beneath it (the codec layer), or an engine without a native path —
//! by compare-and-set: read the record, apply the mutations, write the result where the
//! version is still the one read, and start again when another writer got in between.
//!
//! The retries stay inside the call: callers see exactly what a native engine answers. Within
//! one instance, mutations of one record wait for each other on a lock (one of
//! [`STRIPES`] striped by record), so only other instances make an attempt fail; under
//! contention between instances, attempts back off with jitter.
//!
//! One limit the native path does not have: a mutation is applied to its record as read
//! before the batch, so it must come before any other write of that record in the batch
//! (a second mutation included): InvalidInput otherwise. Checks and later writes are fine.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::backend::{
    stable_hash, Backend, Live, MutateAction, Precondition, RecordMeta, Values, WriteAction,
    WriteOp, WriteResult,
};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{StoredRecord, Timestamp};

/// How many locks the records of one instance share.
pub(crate) const STRIPES: usize = 256;

/// How many times a compare-and-set is tried before the caller gets Unavailable.
pub(crate) const ATTEMPTS: usize = 100;

/// Locks by record within one instance ([`STRIPES`] of them, striped by collection and id):
/// writers of one hot record queue here instead of in the engine, where each waiter would
/// hold a connection, a transaction or a retry.
#[derive(Debug)]
pub struct RecordLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for RecordLocks {
    fn default() -> Self {
        RecordLocks {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl RecordLocks {
    /// The locks of the mutations' records among `ops`, taken in stripe order (so two
    /// batches never wait for each other in a circle); released when dropped.
    pub async fn lock_mutated(&self, ops: &[WriteOp]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = ops
            .iter()
            .filter(|op| matches!(op.action, WriteAction::Mutate(_)))
            .map(|op| {
                let key = format!("{}\0{}", op.collection, op.id);
                (stable_hash(&key) % STRIPES as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held = Vec::with_capacity(stripes.len());
        for s in stripes {
            held.push(self.stripes[s].lock().await);
        }
        held
    }
}

/// Applies mutations by compare-and-set over a backend (see the module docs). Keep one per
/// backend instance: its locks are what spares an instance's own writers from retrying.
#[derive(Debug, Default)]
pub struct CompareAndSet {
    locks: RecordLocks,
}

impl CompareAndSet {
    /// Locks for a new backend instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Backend::write`] of `ops` through `backend`, whose `get` reads records as the
    /// caller sees them and whose `write` takes every op but mutations: each mutation
    /// becomes the put of its result, conditioned on the version read. `now` decides which
    /// records are live and what remains of a kept TTL.
    pub async fn write(
        &self,
        backend: &dyn Backend,
        ns: &str,
        ops: Vec<WriteOp>,
        now: Timestamp,
    ) -> Result<Vec<WriteResult>> {
        let mutated: Vec<usize> = (0..ops.len())
            .filter(|&i| matches!(ops[i].action, WriteAction::Mutate(_)))
            .collect();
        if mutated.is_empty() {
            return backend.write(ns, ops, now).await;
        }
        check_mutations_first(&ops, &mutated)?;
        let _held = self.locks.lock_mutated(&ops).await;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            // A refusal (precondition, type, bound) is the caller's answer, not a race.
            let (written, values) = prepare(backend, ns, &ops, &mutated, now).await?;
            match backend.write(ns, written, now).await {
                Ok(mut results) => {
                    for (i, v) in values {
                        if let Some(r) = results.get_mut(i) {
                            r.values = v;
                        }
                    }
                    return Ok(results);
                }
                Err(e) if lost_race(&e, &mutated) => last = e.to_string(),
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "a mutation lost {ATTEMPTS} compare-and-set races with other writers in a row \
                 ({last}); try again"
            ),
        ))
    }
}

/// InvalidInput when a mutation follows another write of its record in the batch: it is
/// applied to the record as read before the batch.
fn check_mutations_first(ops: &[WriteOp], mutated: &[usize]) -> Result<()> {
    for &i in mutated {
        let m = &ops[i];
        let earlier = ops[..i].iter().position(|o| {
            o.collection == m.collection && o.id == m.id && !matches!(o.action, WriteAction::Check)
        });
        if let Some(j) = earlier {
            return Err(Error::invalid(format!(
                "op {j} of the batch writes record {:?} of collection {:?} before op {i} \
                 mutates it: on this backend (mutations by compare-and-set) a mutation comes \
                 before any other write of its record in a batch",
                m.id, m.collection
            ))
            .at_op(i));
        }
    }
    Ok(())
}

/// The batch with each mutation turned into the put of its result over the record as read
/// now, and the values of each; the error that refuses a mutation, naming its op.
async fn prepare(
    backend: &dyn Backend,
    ns: &str,
    ops: &[WriteOp],
    mutated: &[usize],
    now: Timestamp,
) -> Result<(Vec<WriteOp>, Vec<(usize, Values)>)> {
    let mut written = ops.to_vec();
    let mut values = Vec::with_capacity(mutated.len());
    for &i in mutated {
        let op = &ops[i];
        let WriteAction::Mutate(m) = &op.action else {
            continue;
        };
        let live = backend.get(ns, &op.collection, &op.id, now).await?;
        let (put, v) = mutation_as_put(op, m, live.as_ref(), now).map_err(|e| e.at_op(i))?;
        written[i] = put;
        values.push((i, v));
    }
    Ok((written, values))
}

/// Mutation op `op` (of `m`) as the put of its result over `live` — the record as read, at
/// `now` — conditioned on its version (or on its absence), with the values at its paths; the
/// op's own precondition checked first. A kept expiry becomes what remains of it at `now`.
/// Engines that cannot apply mutations where they store records write this put instead.
pub fn mutation_as_put(
    op: &WriteOp,
    m: &MutateAction,
    live: Option<&StoredRecord>,
    now: Timestamp,
) -> Result<(WriteOp, Values)> {
    op.precondition
        .check(&op.collection, &op.id, live.map(|r| r.version))?;
    let applied = m.apply(
        &op.collection,
        &op.id,
        live.map(|r| Live {
            body: &r.body,
            meta: RecordMeta::of(r),
        }),
    )?;
    // A kept expiry is handed over as what remains of it at `now` (the record is live).
    let ttl = applied.expiry.at(now).map(|at| {
        Duration::from_micros(u64::try_from(at.as_micros() - now.as_micros()).unwrap_or(1))
    });
    let put = WriteOp {
        collection: op.collection.clone(),
        revision: op.revision,
        id: op.id.clone(),
        precondition: live.map_or(Precondition::Absent, |r| Precondition::Version(r.version)),
        action: WriteAction::Put {
            body: applied.body,
            index: applied.index,
            ttl,
        },
    };
    Ok((put, applied.values))
}

/// Whether a failed write lost a race at a mutation's put (its record changed, or was
/// created, since it was read) rather than failing on the caller's input.
fn lost_race(e: &Error, mutated: &[usize]) -> bool {
    let at_mutation = e.batch_op().is_some_and(|i| mutated.contains(&i));
    let raced = e.kind() == ErrorKind::Conflict
        || (e.kind() == ErrorKind::AlreadyExists && e.index().is_none());
    at_mutation && raced
}

/// A pause before attempt `n`: growing to 10 ms, with jitter so that instances spread out.
fn backoff(n: usize) -> Duration {
    let mut h = DefaultHasher::new();
    (n, std::time::Instant::now()).hash(&mut h);
    let ceiling = 100 * (1_u64 << n.min(7)).min(100);
    Duration::from_micros(h.finish() % ceiling.max(1))
}
