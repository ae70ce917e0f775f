//! The rekey job: every record rewritten under the key ring's newest key, so older keys
//! can be retired.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stowage_core::backend::{Backend, ScanRequest};
use stowage_core::{ErrorKind, Result, Store, StoredRecord, Timestamp};

use crate::frame::sealed_with;
use crate::layer::{CodecConfig, CodecLayer};

/// Records read and rewritten per batch.
const REKEY_PAGE: usize = 256;

/// Where a rekey has got to: every record before this point — namespaces, then
/// collections, then ids, each in byte order — has been rewritten. Saved after every batch
/// (`stowage rekey` keeps it in a file), it lets an interrupted rekey resume where it
/// stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyCheckpoint {
    /// The key the records are being rewritten under: a checkpoint of a rekey to another
    /// key is not resumed (the run starts over).
    pub key: u32,
    /// The namespace being rewritten.
    pub namespace: String,
    /// The collection being rewritten.
    pub collection: String,
    /// The last id rewritten in it (`None`: none yet).
    pub after: Option<String>,
    /// Records rewritten before this point (for progress).
    pub records: u64,
    /// Records before this point another writer changed first (see [`RekeyReport`]).
    pub changed_meanwhile: u64,
}

impl RekeyCheckpoint {
    fn is_before(&self, ns: &str, collection: &str) -> bool {
        (ns, collection) < (self.namespace.as_str(), self.collection.as_str())
    }
}

/// What [`rekey`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RekeyReport {
    /// Records rewritten under the newest key (by this run and the runs it resumed).
    pub records: u64,
    /// Records another writer changed or deleted between the read and the rewrite: not
    /// rewritten, since the newer write is already sealed by its writer.
    pub changed_meanwhile: u64,
    /// The key the records were rewritten under.
    pub key: u32,
}

/// Rewrites every live record of every namespace of `engine` under the newest key of
/// `config`'s ring — version, timestamps, expiry and ETag unchanged, index entries
/// rewritten with it — a batch at a time, calling `progress` with the checkpoint after each
/// batch. A record written by someone else between the read and the rewrite is left as that
/// writer stored it: nothing written concurrently is lost (see
/// [`stowage_core::Collection::rewrite_all`]). Instances that keep writing must already
/// seal with the same newest key (give them the rotated ring first), or what they write
/// meanwhile stays under their key.
///
/// `resume` starts after a checkpoint a previous run reported. Afterwards
/// [`keys_in_use`] shows whether any older key still seals a record.
pub async fn rekey(
    engine: Arc<dyn Backend>,
    config: CodecConfig,
    resume: Option<RekeyCheckpoint>,
    mut progress: impl FnMut(&RekeyCheckpoint) + Send,
) -> Result<RekeyReport> {
    let key = config.newest_key().ok_or_else(|| {
        stowage_core::Error::invalid("rekey needs a key ring: nothing is sealed without one")
    })?;
    let layer: Arc<dyn Backend> = Arc::new(CodecLayer::new(engine, config)?);
    let store = Store::from_backend(layer.clone());
    let mut at = resume
        .filter(|at| at.key == key)
        .unwrap_or_else(|| RekeyCheckpoint {
            key,
            ..RekeyCheckpoint::default()
        });
    let mut report = RekeyReport {
        records: at.records,
        changed_meanwhile: at.changed_meanwhile,
        key,
    };
    let mut namespaces = layer.list_namespaces().await?;
    namespaces.sort();
    namespaces.retain(|ns| *ns >= at.namespace);
    for ns in &namespaces {
        let in_ns = store.namespace(ns)?;
        let mut collections: Vec<String> = in_ns
            .collections()
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        collections.sort();
        for name in collections {
            if at.is_before(ns, &name) {
                continue;
            }
            if (ns.as_str(), name.as_str()) != (at.namespace.as_str(), at.collection.as_str()) {
                at.namespace.clone_from(ns);
                at.collection.clone_from(&name);
                at.after = None;
            }
            let coll = in_ns
                .existing_collection::<serde_json::Value>(&name)
                .await?;
            loop {
                let request = ScanRequest {
                    collection: name.clone(),
                    prefix: None,
                    after: at.after.clone(),
                    limit: REKEY_PAGE,
                };
                let page = layer.scan(ns, &request, Timestamp::now()).await?;
                let Some(last) = page.last() else { break };
                at.after = Some(last.id.clone());
                let rewritten = rewrite(&coll, &page).await?;
                report.records += rewritten;
                report.changed_meanwhile += page.len() as u64 - rewritten;
                at.records = report.records;
                at.changed_meanwhile = report.changed_meanwhile;
                progress(&at);
                if page.len() < REKEY_PAGE {
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// Rewrites a page as one batch; when one of its records changed since it was read, one
/// record at a time, skipping those. How many were rewritten.
async fn rewrite(
    coll: &stowage_core::Collection<serde_json::Value>,
    page: &[StoredRecord],
) -> Result<u64> {
    match coll.rewrite_all(page).await {
        Ok(_) => Ok(page.len() as u64),
        Err(e) if e.kind() == ErrorKind::Conflict => {
            let mut rewritten = 0;
            for rec in page {
                match coll.rewrite_all(std::slice::from_ref(rec)).await {
                    Ok(_) => rewritten += 1,
                    Err(e) if e.kind() == ErrorKind::Conflict => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(rewritten)
        }
        Err(e) => Err(e),
    }
}

/// How many live records each key seals, read from the stored frames of every namespace
/// of `engine` (the engine itself, not a codec layer over it); key 0 counts records stored
/// unsealed. An older key absent from the answer can be retired: nothing needs it.
pub async fn keys_in_use(engine: &Arc<dyn Backend>) -> Result<BTreeMap<u32, u64>> {
    let mut usage = BTreeMap::new();
    let mut namespaces = engine.list_namespaces().await?;
    namespaces.retain(|ns| ns != crate::KEYS_NAMESPACE);
    for ns in namespaces {
        for (collection, _) in engine.list_specs(&ns).await? {
            let mut after = None;
            loop {
                let request = ScanRequest {
                    collection: collection.clone(),
                    prefix: None,
                    after: after.take(),
                    limit: REKEY_PAGE,
                };
                let page = engine.scan(&ns, &request, Timestamp::now()).await?;
                for rec in &page {
                    *usage
                        .entry(sealed_with(&rec.body).unwrap_or(0))
                        .or_insert(0) += 1;
                }
                match page.last() {
                    Some(last) if page.len() == REKEY_PAGE => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
    }
    Ok(usage)
}
