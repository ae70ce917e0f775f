//! Retention: purging records older than their collection's rule, one instance at a time.
//!
//! A rule counting from a body field with a timestamp index on it is one range delete on
//! the index per purge. Any other rule (`created_at`, `updated_at`: no engine indexes
//! record times; a field without an index) walks the collection, deleting each old record
//! only if it is still at the version read, so a record written meanwhile is kept.
//!
//! Several instances sharing a store take turns through a lease: a record in the reserved
//! namespace `__maintenance` (collection `leases`, one record per namespace), taken with a
//! compare-and-set and held for [`LEASE`]. The one holding it purges; the others skip the
//! round. A purge outliving its lease is harmless: deletes are version-checked.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::Value;

use stowage_core::backend::{Backend, Precondition, SpecUpdate, WriteAction, WriteOp};
use stowage_core::Filter;
use stowage_core::Store;
use stowage_core::{Body, Timestamp, Version};
use stowage_core::{CollectionSpec, RetainFrom};
use stowage_core::{ErrorKind, Result};

/// The reserved namespace holding maintenance leases.
pub const MAINTENANCE_NAMESPACE: &str = "__maintenance";
const LEASES: &str = "leases";
/// How long a lease is held unless released first.
pub const LEASE: Duration = Duration::from_secs(600);

/// What one [`purge_retention`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Records purged.
    pub purged: u64,
    /// Another instance held the namespace's lease: nothing was done this time.
    pub skipped: bool,
}

/// Purges, from every collection of `store`'s namespace with a retention rule, the records
/// older than the rule keeps (see [`stowage_core::Retention`]), and says how many went. Another
/// instance purging the namespace at the same time makes this call skip (see
/// [`RetentionReport::skipped`]).
pub async fn purge_retention(store: &Store) -> Result<RetentionReport> {
    let specs: Vec<(String, CollectionSpec)> = store
        .collections()
        .await?
        .into_iter()
        .filter(|(_, spec)| spec.retention.is_some())
        .collect();
    if specs.is_empty() {
        return Ok(RetentionReport::default());
    }
    let holder = format!("retention-{}", unique_holder());
    let lease = format!("retention:{}", store.namespace_name());
    let Some(version) = take_lease(store.backend(), &lease, &holder, store.now()).await? else {
        return Ok(RetentionReport {
            purged: 0,
            skipped: true,
        });
    };
    let mut purged = 0;
    let outcome = async {
        for (name, spec) in &specs {
            purged += purge_collection(store, name, spec).await?;
        }
        Ok::<_, stowage_core::Error>(())
    }
    .await;
    release_lease(store.backend(), &lease, version, store.now()).await;
    outcome?;
    Ok(RetentionReport {
        purged,
        skipped: false,
    })
}

async fn purge_collection(store: &Store, name: &str, spec: &CollectionSpec) -> Result<u64> {
    let Some(rule) = &spec.retention else {
        return Ok(0);
    };
    let cutoff = Timestamp::from_micros(
        store
            .now()
            .as_micros()
            .saturating_sub(i64::try_from(rule.keep().as_micros()).unwrap_or(i64::MAX)),
    );
    let coll = match store.existing_collection::<Value>(name).await {
        Ok(c) => c,
        // Dropped meanwhile: nothing to purge.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // A timestamp index on the rule's field: one range delete (once it is built).
    if let Some(ix) = spec.retention_index() {
        if !coll.index_ready(&ix.name) {
            return Ok(0);
        }
        return coll
            .delete_where(&Filter::new().lt(ix.name.as_str(), cutoff.to_rfc3339()))
            .await;
    }
    let time_of = |rec: &stowage_core::StoredRecord| match &rule.from {
        RetainFrom::CreatedAt => Some(rec.created_at),
        RetainFrom::UpdatedAt => Some(rec.updated_at),
        RetainFrom::Field(path) => serde_json::from_slice::<Value>(&rec.body.bytes)
            .ok()
            .and_then(|body| {
                body.pointer(path)
                    .and_then(Value::as_str)
                    .and_then(|t| Timestamp::parse_rfc3339(t).ok())
            }),
        // A rule this build does not know purges nothing rather than guessing.
        _ => None,
    };
    let mut purged = 0;
    let mut records = std::pin::pin!(coll.scan_stored(None));
    while let Some(rec) = records.try_next().await? {
        if time_of(&rec).is_none_or(|t| t >= cutoff) {
            continue;
        }
        match coll.delete_if_version(&rec.id, rec.version).await {
            Ok(()) => purged += 1,
            // Written or deleted since it was read: not ours to purge.
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(purged)
}
/// A name unique to this call: the process id, a counter and the clock.
fn unique_holder() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Timestamp::now().as_micros()
    )
}

/// Takes the lease `name` for `holder` unless another holds it unexpired; the lease
/// record's version when taken.
pub async fn take_lease(
    backend: &Arc<dyn Backend>,
    name: &str,
    holder: &str,
    now: Timestamp,
) -> Result<Option<Version>> {
    let revision = leases_revision(backend).await?;
    let current = backend
        .get(MAINTENANCE_NAMESPACE, LEASES, name, now)
        .await?;
    let precondition = match &current {
        None => Precondition::Absent,
        Some(rec) => {
            let until = serde_json::from_slice::<Value>(&rec.body.bytes)
                .ok()
                .and_then(|v| v.get("until_micros").and_then(Value::as_i64))
                .unwrap_or(0);
            if until > now.as_micros() {
                return Ok(None);
            }
            Precondition::Version(rec.version)
        }
    };
    let until = now.saturating_add(LEASE).as_micros();
    let body = serde_json::json!({"holder": holder, "until_micros": until});
    let op = WriteOp {
        collection: LEASES.to_owned(),
        revision,
        id: name.to_owned(),
        precondition,
        action: WriteAction::Put {
            body: Body::json(body.to_string().into_bytes()),
            index: Vec::new(),
            ttl: None,
        },
    };
    match backend.write(MAINTENANCE_NAMESPACE, vec![op], now).await {
        Ok(results) => Ok(results.first().and_then(|r| r.meta).map(|m| m.version)),
        // Another instance took it first.
        Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the lease up, if it is still the one taken (at `version`). Failing to is harmless:
/// the lease runs out.
pub async fn release_lease(
    backend: &Arc<dyn Backend>,
    name: &str,
    version: Version,
    now: Timestamp,
) {
    let Ok(revision) = leases_revision(backend).await else {
        return;
    };
    let op = WriteOp {
        collection: LEASES.to_owned(),
        revision,
        id: name.to_owned(),
        precondition: Precondition::Version(version),
        action: WriteAction::Delete,
    };
    let _ = backend.write(MAINTENANCE_NAMESPACE, vec![op], now).await;
}

/// The leases collection's revision, creating it on first use.
async fn leases_revision(backend: &Arc<dyn Backend>) -> Result<stowage_core::backend::Revision> {
    if let Some(stored) = backend.load_spec(MAINTENANCE_NAMESPACE, LEASES).await? {
        return Ok(stored.revision);
    }
    let update = SpecUpdate {
        expected: None,
        spec: CollectionSpec::new(),
        building: Vec::new(),
    };
    match backend
        .apply_spec(MAINTENANCE_NAMESPACE, LEASES, &update)
        .await
    {
        Ok(revision) => Ok(revision),
        // Another instance created it first.
        Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists) => backend
            .load_spec(MAINTENANCE_NAMESPACE, LEASES)
            .await?
            .map(|s| s.revision)
            .ok_or(e),
        Err(e) => Err(e),
    }
}
