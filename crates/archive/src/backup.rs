//! Backup of a store into an archive, and restore of an archive into any store.

use std::io::{Read, Seek, SeekFrom, Write};

use futures_util::TryStreamExt;
use serde_json::Value;
use stowage_core::{
    BatchScope, Error, ErrorKind, Result, Store, StoredRecord, TRANSACTION_ATTEMPTS,
};
use stowage_ops::Selection;

use crate::format::{
    check_archive, ArchiveReader, ArchiveWriter, ArchivedSpec, Item, Manifest, FRAME_TARGET_BYTES,
    FRAME_TARGET_RECORDS,
};

/// Progress of a backup or restore: records and bytes of ids and bodies so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records so far.
    pub records: u64,
    /// Bytes of their ids and bodies.
    pub bytes: u64,
}

/// Writes the selected namespaces and collections of `store` into an archive on `out`:
/// every spec, then every live record — id, version, times, expiry, body as stored — in
/// checksummed zstd frames, then the manifest, which is returned. Reads are paged, so
/// memory stays bounded; each record is as of when its page was read (a backup taken
/// while others write is not one snapshot of the whole store).
pub async fn backup_store<W: Write>(
    store: &Store,
    selection: &Selection,
    out: W,
    mut progress: impl FnMut(Progress),
) -> Result<Manifest> {
    let mut writer = ArchiveWriter::new(out)?;
    let mut plan = Vec::new();
    for ns in selection.namespaces_of(store).await? {
        for (collection, spec) in selection.collections_of(store, &ns).await? {
            writer.spec(&ArchivedSpec {
                namespace: ns.clone(),
                collection: collection.clone(),
                spec,
            })?;
            plan.push((ns.clone(), collection));
        }
    }
    let mut done = Progress::default();
    for (ns, collection) in &plan {
        let coll = store
            .namespace(ns)?
            .existing_collection::<Value>(collection)
            .await?;
        let mut records = std::pin::pin!(coll.scan_stored(None));
        let mut frame: Vec<StoredRecord> = Vec::new();
        let mut frame_bytes = 0;
        loop {
            let next = records.try_next().await?;
            let end = next.is_none();
            if let Some(rec) = next {
                frame_bytes += rec.id.len() + rec.body.bytes.len();
                frame.push(rec);
            }
            let full = frame.len() >= FRAME_TARGET_RECORDS || frame_bytes >= FRAME_TARGET_BYTES;
            if full || (end && !frame.is_empty()) {
                writer.records(ns, collection, &frame)?;
                done.records += frame.len() as u64;
                done.bytes += frame_bytes as u64;
                progress(done);
                frame.clear();
                frame_bytes = 0;
            }
            if end {
                break;
            }
        }
    }
    let (manifest, _) = writer.finish()?;
    Ok(manifest)
}

/// Restores an archive into `store` (any engine, of any kind): the archive is first read
/// whole and checked — a damaged one is refused before anything is written — then its
/// collections are declared and its records restored exactly (versions, times, expiry),
/// batched where the engine batches. Collections the archive holds must not exist in the
/// store yet. If a write fails part-way, every collection this restore created is dropped
/// again, so no half-restored namespace is left behind.
pub async fn restore_store<R: Read + Seek>(
    store: &Store,
    mut input: R,
    mut progress: impl FnMut(Progress),
) -> Result<Manifest> {
    let manifest = check_archive(&mut input)?;
    input.seek(SeekFrom::Start(0)).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot read the archive: {e}"),
        )
    })?;
    for c in &manifest.collections {
        let exists = store
            .namespace(&c.namespace)?
            .collections()
            .await?
            .iter()
            .any(|(n, _)| *n == c.collection);
        if exists {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{}/{} already exists in the destination: restore into a store without \
                     the archive's collections (or drop them first); nothing was written",
                    c.namespace, c.collection
                ),
            ));
        }
    }
    let mut created: Vec<(String, String)> = Vec::new();
    let outcome = write_archive(store, input, &mut created, &mut progress).await;
    if let Err(e) = outcome {
        let mut undone = 0;
        for (ns, collection) in &created {
            if let Ok(s) = store.namespace(ns) {
                if s.drop_collection(collection).await.is_ok() {
                    undone += 1;
                }
            }
        }
        return Err(Error::new(
            e.kind(),
            format!(
                "restore failed, and the {undone} of {} collections it had created were dropped \
                 again: {}",
                created.len(),
                e.message()
            ),
        ));
    }
    Ok(manifest)
}

async fn write_archive<R: Read>(
    store: &Store,
    input: R,
    created: &mut Vec<(String, String)>,
    progress: &mut impl FnMut(Progress),
) -> Result<()> {
    let mut reader = ArchiveReader::new(input)?;
    let mut done = Progress::default();
    let caps = store.capabilities().clone();
    let page = if caps.batch_scope >= BatchScope::Collection {
        caps.max_batch_ops.unwrap_or(500).min(500)
    } else {
        1
    };
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Spec(s) => {
                store
                    .namespace(&s.namespace)?
                    .collection_with_spec::<Value>(&s.collection, s.spec)
                    .await?;
                created.push((s.namespace, s.collection));
            }
            Item::Records {
                namespace,
                collection,
                records,
            } => {
                let coll = store
                    .namespace(&namespace)?
                    .existing_collection::<Value>(&collection)
                    .await?;
                for chunk in records.chunks(page) {
                    restore_chunk(&coll, chunk).await?;
                    done.records += chunk.len() as u64;
                    done.bytes += chunk
                        .iter()
                        .map(|r| (r.id.len() + r.body.bytes.len()) as u64)
                        .sum::<u64>();
                    progress(done);
                }
            }
            Item::End(_) => break,
        }
    }
    Ok(())
}

/// Restores one chunk, trying a temporary failure (a busy engine) again a few times.
async fn restore_chunk(
    coll: &stowage_core::Collection<Value>,
    chunk: &[StoredRecord],
) -> Result<()> {
    let mut attempt = 0;
    loop {
        let r = if chunk.len() == 1 {
            coll.restore(&chunk[0]).await.map(|_| ())
        } else {
            coll.restore_all(chunk).await.map(|_| ())
        };
        match r {
            Err(e) if e.is_temporary() && attempt < TRANSACTION_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}
