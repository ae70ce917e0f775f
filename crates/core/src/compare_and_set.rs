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
//! A mutation that follows other writes of its record in the batch (a second mutation, a put,
//! a delete) applies to the record as they leave it, as on a native engine; only the first
//! write of each record depends on what was read. One limit the native path does not have: an
//! `if_version` on such a mutation needs the version those writes give, which is known only
//! when the first of them is a mutation (conditioned on the version read), a put at a version
//! or a restore; InvalidInput otherwise.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::backend::{
    stable_hash, Backend, Live, MutateAction, Precondition, RecordMeta, Values, WriteAction,
    WriteOp, WriteResult,
};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{StoredRecord, Timestamp, Version};

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
        let _held = self.locks.lock_mutated(&ops).await;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            // A refusal (precondition, type, bound) is the caller's answer, not a race.
            let (written, values) = prepare(backend, ns, &ops, now).await?;
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

/// A record as the batch's earlier writes leave it, for a mutation that follows them.
#[derive(Debug, Clone, Default)]
struct Chained {
    /// The record (its version field unused); `None`: absent.
    record: Option<StoredRecord>,
    /// Its version at commit, when the writes before make it certain.
    version: Option<Version>,
}

impl Chained {
    /// After write `op` over `self` (a put: a live record's version + 1 when known; a record it
    /// creates takes a version the engine picks).
    fn after(&self, op: &WriteOp, now: Timestamp) -> Chained {
        // A put at a version gives the next one, whatever was read.
        let version = match op.precondition {
            Precondition::Version(v) => Some(v + 1),
            _ => self.record.as_ref().and(self.version).map(|v| v + 1),
        };
        match &op.action {
            WriteAction::Put { body, ttl, .. } => Chained {
                record: Some(StoredRecord {
                    id: op.id.clone(),
                    version: 0,
                    created_at: now,
                    updated_at: now,
                    expires_at: ttl.map(|d| now.saturating_add(d)),
                    body: body.clone(),
                }),
                version,
            },
            WriteAction::Restore { meta, body, .. } => Chained {
                record: meta
                    .expires_at
                    .is_none_or(|x| x > now)
                    .then(|| meta.record(op.id.clone(), body.clone())),
                version: Some(meta.version),
            },
            WriteAction::Delete => Chained::default(),
            WriteAction::Check | WriteAction::Mutate(_) => self.clone(),
        }
    }
}

/// The batch with each mutation turned into the put of its result, and the values of each;
/// the error that refuses a mutation, naming its op. The first write of a record that is a
/// mutation applies to the record as read now, conditioned on its version; a mutation after
/// other writes of its record applies to what they leave (see the module docs).
async fn prepare(
    backend: &dyn Backend,
    ns: &str,
    ops: &[WriteOp],
    now: Timestamp,
) -> Result<(Vec<WriteOp>, Vec<(usize, Values)>)> {
    let mut written = ops.to_vec();
    let mut values = Vec::new();
    let mut chains: HashMap<(&str, &str), Chained> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if matches!(op.action, WriteAction::Check) {
            continue;
        }
        let key = (op.collection.as_str(), op.id.as_str());
        let WriteAction::Mutate(m) = &op.action else {
            let before = chains.remove(&key).unwrap_or_default();
            chains.insert(key, before.after(op, now));
            continue;
        };
        let (put, v, before) = if let Some(before) = chains.remove(&key) {
            let (put, v) = chained_put(op, m, &before, now).map_err(|e| e.at_op(i))?;
            (put, v, before)
        } else {
            let live = backend.get(ns, &op.collection, &op.id, now).await?;
            let (put, v) = mutation_as_put(op, m, live.as_ref(), now).map_err(|e| e.at_op(i))?;
            let version = live.as_ref().map(|r| r.version);
            (
                put,
                v,
                Chained {
                    record: live,
                    version,
                },
            )
        };
        chains.insert(key, before.after(&put, now));
        written[i] = put;
        values.push((i, v));
    }
    Ok((written, values))
}

/// Mutation `op` over the record as the batch's earlier writes leave it: its own precondition
/// checked against that state, then its result put with no condition of its own (the writes
/// before it in the same atomic batch decide what it applies to).
fn chained_put(
    op: &WriteOp,
    m: &MutateAction,
    before: &Chained,
    now: Timestamp,
) -> Result<(WriteOp, Values)> {
    let live = before.record.as_ref();
    if let (Precondition::Version(_), Some(_), None) = (op.precondition, live, before.version) {
        return Err(Error::invalid(format!(
            "record {:?} of collection {:?} is written earlier in the batch, so its version is \
             not known before commit on this backend (mutations by compare-and-set): an \
             if_version on a later mutation of it needs the first write to be a mutation or a \
             put at a version",
            op.id, op.collection
        )));
    }
    op.precondition.check(
        &op.collection,
        &op.id,
        live.map(|_| before.version.unwrap_or_default()),
    )?;
    applied_put(op, m, live, now, Precondition::None)
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
    let condition = live.map_or(Precondition::Absent, |r| Precondition::Version(r.version));
    applied_put(op, m, live, now, condition)
}

/// The put of `m`'s result over `live`, written under `condition`, with the values at its
/// paths.
fn applied_put(
    op: &WriteOp,
    m: &MutateAction,
    live: Option<&StoredRecord>,
    now: Timestamp,
    condition: Precondition,
) -> Result<(WriteOp, Values)> {
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
        precondition: condition,
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
