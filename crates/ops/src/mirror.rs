//! The mirror layer: live migration from one backend to another.
//!
//! Reads go to the source; every write applied to the source is then applied to the target
//! as a restore of exactly what the source stored (same version, times and expiry), so the
//! two stay record-for-record equal while a background [`crate::copy_store`] (with
//! [`crate::Overwrite::Older`]) brings the records written before the mirror started. A
//! migration is then: put the mirror in front of the source, copy, compare with
//! [`crate::compare_stores`] (repairing with [`crate::reconcile_stores`]) until the two
//! agree, and switch the service's URL to the target.
//!
//! The source decides: a write that fails there fails, and nothing reaches the target. A
//! mirrored write that fails on the target (unreachable, say) does not fail the call: it is
//! counted ([`MirrorLayer::failures`]) and left for the reconcile pass to repair. The
//! target gets each op on its own, in the order the source applied them, as a
//! compare-and-set on its version, so two writers racing on one id never leave the older
//! write on the target.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use stowage_core::backend::{
    Backend, Capabilities, IndexFill, Precondition, QueryRequest, Revision, SpecUpdate,
    WriteAction, WriteOp, WriteResult,
};
use stowage_core::layer::Layer;
use stowage_core::Timestamp;
use stowage_core::{ErrorKind, Result};

/// Writes to a source backend and mirrors each one onto a target; reads from the source.
#[derive(Debug)]
pub struct MirrorLayer {
    source: Arc<dyn Backend>,
    target: Arc<dyn Backend>,
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
    // The target's spec revision per (namespace, collection), reloaded when stale.
    revisions: Mutex<HashMap<(String, String), Revision>>,
}

impl MirrorLayer {
    /// Mirrors `source`'s writes onto `target`.
    pub fn new(source: Arc<dyn Backend>, target: Arc<dyn Backend>) -> Self {
        MirrorLayer {
            source,
            target,
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            revisions: Mutex::new(HashMap::new()),
        }
    }

    /// Mirrored writes the target refused or could not take, since the layer started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Why the last mirrored write failed.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().clone()
    }

    fn failed(&self, what: &str, e: &stowage_core::Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock() = Some(format!("{what}: {e}"));
        #[cfg(feature = "tracing")]
        tracing::warn!(error = %e, what, "mirror: the target did not take a write");
    }

    /// The target's revision of a collection, declaring it there with `spec` if absent.
    async fn target_revision(&self, ns: &str, coll: &str, fresh: bool) -> Result<Revision> {
        let key = (ns.to_owned(), coll.to_owned());
        if !fresh {
            if let Some(r) = self.revisions.lock().get(&key) {
                return Ok(*r);
            }
        }
        let stored = if let Some(s) = self.target.load_spec(ns, coll).await? {
            s
        } else {
            let src = self
                .source
                .load_spec(ns, coll)
                .await?
                .ok_or_else(|| stowage_core::Error::collection_not_found(ns, coll))?;
            let update = SpecUpdate {
                expected: None,
                spec: src.spec,
                building: src.building,
            };
            match self.target.apply_spec(ns, coll, &update).await {
                // Another writer, or the background copy, declared it first.
                Err(e) if !matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists) => {
                    return Err(e)
                }
                _ => {}
            }
            self.target
                .load_spec(ns, coll)
                .await?
                .ok_or_else(|| stowage_core::Error::collection_not_found(ns, coll))?
        };
        self.revisions.lock().insert(key, stored.revision);
        Ok(stored.revision)
    }

    /// Applies one op the source applied (and what it stored) to the target.
    async fn mirror_op(&self, ns: &str, op: &WriteOp, done: &WriteResult, now: Timestamp) {
        let outcome = async {
            for attempt in 0..stowage_core::TRANSACTION_ATTEMPTS {
                let revision = self
                    .target_revision(ns, &op.collection, attempt > 0)
                    .await?;
                let current = self
                    .target
                    .get(ns, &op.collection, &op.id, now)
                    .await?
                    .map(|r| r.version);
                let action = match (&op.action, done.meta) {
                    (
                        WriteAction::Put { body, index, .. }
                        | WriteAction::Restore { body, index, .. },
                        Some(meta),
                    ) => {
                        // The target holds this write or a newer one already.
                        if current.is_some_and(|v| v >= meta.version) {
                            return Ok(());
                        }
                        WriteAction::Restore {
                            meta,
                            body: body.clone(),
                            index: index.clone(),
                        }
                    }
                    (WriteAction::Mutate(m), Some(meta)) => {
                        if current.is_some_and(|v| v >= meta.version) {
                            return Ok(());
                        }
                        // The source computed the body: mirror the record it holds now,
                        // this write's or a newer one (whose own write comes by later and
                        // finds it there).
                        let Some(rec) = self.source.get(ns, &op.collection, &op.id, now).await?
                        else {
                            return Ok(());
                        };
                        restore_of(rec, &m.spec)?
                    }
                    (WriteAction::Delete, Some(removed)) => {
                        // Only what the source removed, or older: never a newer write.
                        if current.is_none_or(|v| v > removed.version) {
                            return Ok(());
                        }
                        WriteAction::Delete
                    }
                    _ => return Ok(()),
                };
                let mirrored = WriteOp {
                    collection: op.collection.clone(),
                    revision,
                    id: op.id.clone(),
                    precondition: current.map_or(Precondition::Absent, Precondition::Version),
                    action,
                };
                match self.target.write(ns, vec![mirrored], now).await {
                    Ok(_) => return Ok(()),
                    // Another writer got there first, or the spec moved: look again.
                    Err(e)
                        if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists)
                            || e.is_stale_spec() => {}
                    Err(e) => return Err(e),
                }
            }
            Err(stowage_core::Error::new(
                ErrorKind::Conflict,
                "the target kept changing under the mirrored write",
            ))
        }
        .await;
        if let Err(e) = outcome {
            self.failed(&format!("{ns}/{}/{}", op.collection, op.id), &e);
        }
    }
}

/// A restore of `rec` indexed under `spec`.
fn restore_of(
    rec: stowage_core::StoredRecord,
    spec: &stowage_core::CollectionSpec,
) -> Result<WriteAction> {
    let index = if rec.body.content_type == stowage_core::ContentType::Json {
        let json: serde_json::Value = serde_json::from_slice(&rec.body.bytes).map_err(|e| {
            stowage_core::Error::new(
                ErrorKind::Corrupted,
                format!("record {:?} is not valid JSON: {e}", rec.id),
            )
        })?;
        spec.index_entries(&json, &rec.id)?
    } else {
        Vec::new()
    };
    Ok(WriteAction::Restore {
        meta: stowage_core::RecordMeta::of(&rec),
        body: rec.body,
        index,
    })
}

#[async_trait]
impl Layer for MirrorLayer {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.source
    }

    fn name(&self) -> &'static str {
        self.source.name()
    }

    /// The source's capabilities, narrowed to what the target also takes, so that no write
    /// the source accepts is one the target must refuse.
    fn capabilities(&self) -> Capabilities {
        let (mut c, t) = (self.source.capabilities(), self.target.capabilities());
        c.unique_indexes &= t.unique_indexes;
        c.ttl &= t.ttl;
        c.binary_bodies &= t.binary_bodies;
        c.max_body_bytes = c.max_body_bytes.min(t.max_body_bytes);
        c.blind_indexes &= t.blind_indexes;
        c
    }

    async fn apply_spec(&self, ns: &str, coll: &str, update: &SpecUpdate) -> Result<Revision> {
        let revision = self.source.apply_spec(ns, coll, update).await?;
        let mirrored = async {
            let expected = self.target.load_spec(ns, coll).await?.map(|s| s.revision);
            let target_update = SpecUpdate {
                expected,
                ..update.clone()
            };
            let r = self.target.apply_spec(ns, coll, &target_update).await?;
            self.revisions
                .lock()
                .insert((ns.to_owned(), coll.to_owned()), r);
            Ok::<_, stowage_core::Error>(())
        }
        .await;
        if let Err(e) = mirrored {
            self.failed(&format!("spec of {ns}/{coll}"), &e);
        }
        Ok(revision)
    }

    async fn fill_index(
        &self,
        ns: &str,
        coll: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        self.source
            .fill_index(ns, coll, revision, fills.clone(), now)
            .await?;
        let mirrored = async {
            let r = self.target_revision(ns, coll, true).await?;
            self.target.fill_index(ns, coll, r, fills, now).await
        }
        .await;
        if let Err(e) = mirrored {
            self.failed(&format!("index fill of {ns}/{coll}"), &e);
        }
        Ok(())
    }

    async fn drop_collection(&self, ns: &str, coll: &str) -> Result<bool> {
        let dropped = self.source.drop_collection(ns, coll).await?;
        self.revisions
            .lock()
            .remove(&(ns.to_owned(), coll.to_owned()));
        if let Err(e) = self.target.drop_collection(ns, coll).await {
            self.failed(&format!("drop of {ns}/{coll}"), &e);
        }
        Ok(dropped)
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let results = self.source.write(ns, ops.clone(), now).await?;
        for (op, done) in ops.iter().zip(&results) {
            self.mirror_op(ns, op, done, now).await;
        }
        Ok(results)
    }

    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        let n = self.source.delete_matching(ns, r, now).await?;
        let mirrored = async {
            let revision = self.target_revision(ns, &r.collection, true).await?;
            let request = QueryRequest {
                revision,
                ..r.clone()
            };
            self.target.delete_matching(ns, &request, now).await
        }
        .await;
        if let Err(e) = mirrored {
            self.failed(&format!("delete_where on {ns}/{}", r.collection), &e);
        }
        Ok(n)
    }

    async fn delete_prefix(&self, ns: &str, c: &str, p: &str, now: Timestamp) -> Result<u64> {
        let n = self.source.delete_prefix(ns, c, p, now).await?;
        if let Err(e) = self.target.delete_prefix(ns, c, p, now).await {
            self.failed(&format!("delete_prefix on {ns}/{c}"), &e);
        }
        Ok(n)
    }

    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let n = self.source.purge_expired(ns, now).await?;
        if let Err(e) = self.target.purge_expired(ns, now).await {
            self.failed(&format!("purge of {ns}"), &e);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{compare_stores, copy_store, reconcile_stores, Overwrite, Selection};
    use serde_json::{json, Value};
    use stowage_core::{CollectionSpec, IndexSpec, MemoryBackend, Put, Store};

    /// A migration under a write load: records written before the mirror are copied in
    /// the background while four writers update and delete through the mirror; once they
    /// stop, one reconcile pass leaves the two stores identical.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn migration_under_load_ends_identical() {
        let source: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let target: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let spec = CollectionSpec::new().index(IndexSpec::integer("n", "/n"));
        let before = Store::from_backend(source.clone());
        let coll = before
            .collection_with_spec::<Value>("things", spec)
            .await
            .unwrap();
        for i in 0..2000 {
            coll.put(&format!("t{i:05}"), &json!({"n": i}), Put::upsert())
                .await
                .unwrap();
        }
        let mirror = Arc::new(MirrorLayer::new(source.clone(), target.clone()));
        let live = Store::from_backend(mirror.clone());
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let live = live.clone();
                tokio::spawn(async move {
                    let c = live.existing_collection::<Value>("things").await.unwrap();
                    for i in 0..400u64 {
                        let id = format!("t{:05}", (i * 7 + w * 13) % 2500);
                        if i % 5 == 0 {
                            c.delete(&id).await.unwrap();
                        } else {
                            c.put(&id, &json!({"n": i, "w": w}), Put::upsert())
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        let dst = Store::from_backend(target.clone());
        let all = Selection::all();
        copy_store(&before, &dst, &all, Overwrite::Older, None, |_| {})
            .await
            .unwrap();
        for w in writers {
            w.await.unwrap();
        }
        reconcile_stores(&before, &dst, &all, 10).await.unwrap();
        let cmp = compare_stores(&before, &dst, &all, 10).await.unwrap();
        assert!(cmp.agree(), "{cmp:?}");
        assert!(cmp.source_records > 1000);
        assert_eq!(mirror.failures(), 0, "{:?}", mirror.last_failure());
    }
}
