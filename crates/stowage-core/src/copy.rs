//! Copying a namespace from one store into another, records kept exactly as they are.

use futures_util::TryStreamExt;
use serde_json::Value;

use crate::backend::BatchScope;
use crate::error::Result;
use crate::record::StoredRecord;
use crate::store::{Store, SCAN_PAGE};

/// What [`copy_namespace`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Collections declared at the destination.
    pub collections: u64,
    /// Records written there.
    pub records: u64,
}

/// Copies every collection of `src`'s namespace into `dst`'s namespace: each spec is
/// declared at the destination (built from the copied records), then every live record is
/// written with [`crate::Collection::restore`] — id, version, timestamps, expiry and body as
/// they are — a page at a time, so memory stays bounded and ETags survive the copy.
///
/// Copying again is harmless and resumes an interrupted copy: a record already there is
/// written again unchanged. Records deleted from the source since are not deleted from the
/// destination.
pub async fn copy_namespace(src: &Store, dst: &Store) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    for (name, spec) in src.collections().await? {
        let from = src.existing_collection::<Value>(&name).await?;
        let to = dst.collection_with_spec::<Value>(&name, spec).await?;
        report.collections += 1;
        let batched = dst.capabilities().batch_scope >= BatchScope::Collection;
        let page_size = dst
            .capabilities()
            .max_batch_ops
            .map_or(SCAN_PAGE, |max| max.min(SCAN_PAGE));
        let mut records = std::pin::pin!(from.scan_stored(None));
        let mut page: Vec<StoredRecord> = Vec::with_capacity(page_size);
        loop {
            let next = records.try_next().await?;
            let end = next.is_none();
            page.extend(next);
            if page.len() >= page_size || (end && !page.is_empty()) {
                if batched {
                    to.restore_all(&page).await?;
                } else {
                    for rec in &page {
                        to.restore(rec).await?;
                    }
                }
                report.records += page.len() as u64;
                page.clear();
            }
            if end {
                break;
            }
        }
    }
    Ok(report)
}
