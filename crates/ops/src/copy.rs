//! Copying stores into other stores, records kept exactly as they are, and comparing two
//! stores record by record.
//!
//! Both walk namespaces, collections and ids in one order (by name, then ascending id, the
//! byte order every engine scans in), a page at a time: memory stays bounded whatever the
//! size, and where a copy stopped is one [`CopyCheckpoint`] it resumes from.

use std::collections::BTreeSet;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::Finding;
use stowage_core::backend::{BatchScope, Precondition};
use stowage_core::Collection;
use stowage_core::CollectionSpec;
use stowage_core::Store;
use stowage_core::{ErrorKind, Result};
use stowage_core::{StoredRecord, Timestamp};

/// What a copy or a comparison covers: every namespace and collection unless named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Only these namespaces (empty: all).
    pub namespaces: Vec<String>,
    /// Only collections of these names (empty: all).
    pub collections: Vec<String>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    fn namespace(&self, ns: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == ns)
    }

    fn collection(&self, name: &str) -> bool {
        self.collections.is_empty() || self.collections.iter().any(|n| n == name)
    }

    /// The selected namespaces of `store`, by name.
    pub async fn namespaces_of(&self, store: &Store) -> Result<Vec<String>> {
        let mut names = store.namespaces().await?;
        names.retain(|n| self.namespace(n));
        Ok(names)
    }

    /// The selected collections of one namespace of `store`, by name, with their specs.
    pub async fn collections_of(
        &self,
        store: &Store,
        ns: &str,
    ) -> Result<Vec<(String, CollectionSpec)>> {
        let mut specs = store.namespace(ns)?.collections().await?;
        specs.retain(|(name, _)| self.collection(name));
        Ok(specs)
    }
}

/// How a copy writes records that may already be at the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Overwrite {
    /// Replace whatever is there (a fresh destination, or a resumed copy).
    #[default]
    Always,
    /// Keep a destination record whose version is the source's or newer, and write only
    /// over the version read (a compare-and-set): what a background copy under a
    /// [`crate::MirrorLayer`] needs, so it never undoes a newer mirrored write.
    Older,
}

/// Where a copy has got to: the collection it is in and the last id it wrote there.
/// Everything before it (by namespace, collection, then id) is copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyCheckpoint {
    /// The namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// The last id written (`None`: none of this collection yet).
    pub after: Option<String>,
    /// Records written so far.
    pub records: u64,
    /// Bytes of ids and bodies written so far.
    pub bytes: u64,
}

impl CopyCheckpoint {
    /// Whether the collection `(ns, name)` comes before this checkpoint's.
    fn passed(&self, ns: &str, name: &str) -> bool {
        (ns, name) < (self.namespace.as_str(), self.collection.as_str())
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Collections declared at the destination.
    pub collections: u64,
    /// Records written there (with those written before the checkpoint resumed from).
    pub records: u64,
    /// Bytes of ids and bodies written.
    pub bytes: u64,
    /// Records left as they were at the destination because it held them at the source's
    /// version or newer ([`Overwrite::Older`]).
    pub kept_newer: u64,
}

/// Copies the selected namespaces and collections of `src` into `dst`: specs first (each
/// collection declared at the destination with the source's spec), then every live record
/// with [`Collection::restore`] — id, version, timestamps, expiry and body as they are — in
/// pages, batched where the destination batches. Expired records are not copied.
///
/// `resume` continues from a checkpoint a previous call reported; `on_page` is called after
/// every page written with where the copy is, which is the checkpoint to save. Copying
/// again is harmless: a record already there is written again unchanged. Records deleted
/// from the source are not deleted from the destination (compare the two with
/// [`compare_stores`]).
pub async fn copy_store(
    src: &Store,
    dst: &Store,
    selection: &Selection,
    overwrite: Overwrite,
    resume: Option<CopyCheckpoint>,
    mut on_page: impl FnMut(&CopyCheckpoint),
) -> Result<CopyReport> {
    let mut plan = Vec::new();
    for ns in selection.namespaces_of(src).await? {
        for (name, spec) in selection.collections_of(src, &ns).await? {
            plan.push((ns.clone(), name, spec));
        }
    }
    // Specs first, so that a copy stopped part-way leaves every collection declared.
    for (ns, name, spec) in &plan {
        dst.namespace(ns)?
            .collection_with_spec::<Value>(name, spec.clone())
            .await?;
    }
    let mut at = resume.unwrap_or_default();
    let mut report = CopyReport {
        collections: plan.len() as u64,
        records: at.records,
        bytes: at.bytes,
        kept_newer: 0,
    };
    let resumed = at.clone();
    for (ns, name, _) in &plan {
        if !resumed.namespace.is_empty() && resumed.passed(ns, name) {
            continue;
        }
        let after = if (ns.as_str(), name.as_str())
            == (resumed.namespace.as_str(), resumed.collection.as_str())
        {
            resumed.after.clone()
        } else {
            None
        };
        let from = src
            .namespace(ns)?
            .existing_collection::<Value>(name)
            .await?;
        let to = dst
            .namespace(ns)?
            .existing_collection::<Value>(name)
            .await?;
        at.namespace.clone_from(ns);
        at.collection.clone_from(name);
        at.after.clone_from(&after);
        report.kept_newer += copy_collection(&from, &to, after, overwrite, |page| {
            at.records += page.len() as u64;
            at.bytes += page.iter().map(record_bytes).sum::<u64>();
            at.after = page.last().map(|r| r.id.clone());
            on_page(&at);
        })
        .await?;
    }
    report.records = at.records;
    report.bytes = at.bytes;
    Ok(report)
}

/// Copies the records of `from` after id `after` into `to`, a page at a time, calling
/// `on_page` with each page written; returns how many were kept because `to` was newer.
async fn copy_collection(
    from: &Collection<Value>,
    to: &Collection<Value>,
    after: Option<String>,
    overwrite: Overwrite,
    mut on_page: impl FnMut(&[StoredRecord]),
) -> Result<u64> {
    let page_size = to
        .store()
        .capabilities()
        .max_batch_ops
        .map_or(WRITE_PAGE, |max| max.min(WRITE_PAGE));
    let mut kept = 0;
    let mut records = std::pin::pin!(from.scan_stored_from(None, after));
    let mut page: Vec<StoredRecord> = Vec::with_capacity(page_size);
    let mut bytes = 0;
    loop {
        let next = records.try_next().await?;
        let end = next.is_none();
        if let Some(rec) = next {
            bytes += record_bytes(&rec);
            page.push(rec);
        }
        if page.len() >= page_size || bytes >= WRITE_PAGE_BYTES || (end && !page.is_empty()) {
            kept += write_page(to, &page, overwrite).await?;
            on_page(&page);
            page.clear();
            bytes = 0;
        }
        if end {
            return Ok(kept);
        }
    }
}

/// Records per write of a copy (fewer where the destination's batches are smaller): 1,000
/// copies redb into PostgreSQL 2× faster than 256. Writes go one at a time: four in flight
/// made PostgreSQL 4–15× slower (concurrent batches into one collection contend there) and
/// Redis only 10 % faster.
const WRITE_PAGE: usize = 1000;
/// A copy's write closes once its records reach this many bytes.
const WRITE_PAGE_BYTES: u64 = 4 << 20;

/// Bytes of a record's id and body.
pub(crate) fn record_bytes(rec: &StoredRecord) -> u64 {
    (rec.id.len() + rec.body.bytes.len()) as u64
}

/// Writes one page; returns how many records were left because the destination was newer.
async fn write_page(
    to: &Collection<Value>,
    page: &[StoredRecord],
    overwrite: Overwrite,
) -> Result<u64> {
    let batched = to.store().capabilities().batch_scope >= BatchScope::Collection;
    match overwrite {
        Overwrite::Always if batched => {
            to.restore_all(page).await?;
        }
        Overwrite::Always => {
            for rec in page {
                to.restore(rec).await?;
            }
        }
        Overwrite::Older => {
            let mut kept = 0;
            for rec in page {
                if !restore_if_older(to, rec).await? {
                    kept += 1;
                }
            }
            return Ok(kept);
        }
    }
    Ok(0)
}

/// Stores `rec` unless the destination holds its id at `rec`'s version or newer; the
/// write is a compare-and-set on the version read, tried again while others write. `false`
/// when the destination's record was kept.
pub(crate) async fn restore_if_older(to: &Collection<Value>, rec: &StoredRecord) -> Result<bool> {
    for _ in 0..stowage_core::TRANSACTION_ATTEMPTS {
        let current = to.get_raw(&rec.id).await?.map(|r| r.version);
        if current.is_some_and(|v| v >= rec.version) {
            return Ok(false);
        }
        let precondition = current.map_or(Precondition::Absent, Precondition::Version);
        match to.restore_where(rec, precondition).await {
            Ok(_) => return Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    // Written again and again meanwhile: the writers are newer than this copy.
    Ok(false)
}

/// A record's digest: a 64-bit hash of its id, version, times, expiry, content type and
/// body bytes, the same in every process and release (FNV-1a).
pub fn record_digest(rec: &StoredRecord) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(rec.id.len() as u64).to_le_bytes());
    eat(rec.id.as_bytes());
    eat(&rec.version.to_le_bytes());
    eat(&rec.created_at.as_micros().to_le_bytes());
    eat(&rec.updated_at.as_micros().to_le_bytes());
    eat(&rec
        .expires_at
        .map_or(i64::MIN, Timestamp::as_micros)
        .to_le_bytes());
    eat(&[u8::from(matches!(
        rec.body.content_type,
        stowage_core::ContentType::Json
    ))]);
    eat(&rec.body.bytes);
    h
}

/// What [`compare_stores`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Comparison {
    /// Live records at the source.
    pub source_records: u64,
    /// Live records at the destination.
    pub destination_records: u64,
    /// Differences found (all of them, up to the limit asked for).
    pub differences: Vec<Finding>,
    /// How many differences there are in all.
    pub difference_count: u64,
}

impl Comparison {
    /// Whether the two stores hold the same records.
    pub fn agree(&self) -> bool {
        self.difference_count == 0
    }
}

/// Compares the selected collections of two stores: the same collections with the same
/// specs, and the same live records — id, version, times, expiry and body, by digest
/// ([`record_digest`]) — walking both in id order a page at a time. Up to `limit`
/// differences are listed; all are counted.
pub async fn compare_stores(
    src: &Store,
    dst: &Store,
    selection: &Selection,
    limit: usize,
) -> Result<Comparison> {
    walk_both(src, dst, selection, limit, false).await
}

/// [`compare_stores`], repairing each record difference on the way: a record missing at
/// the destination or older there is restored from the source (a compare-and-set, never
/// over a newer write), one only at the destination is deleted there (if still at the
/// version seen). Collections and specs are not changed. The differences found are
/// returned; compare again to see the two agree.
pub async fn reconcile_stores(
    src: &Store,
    dst: &Store,
    selection: &Selection,
    limit: usize,
) -> Result<Comparison> {
    walk_both(src, dst, selection, limit, true).await
}

async fn walk_both(
    src: &Store,
    dst: &Store,
    selection: &Selection,
    limit: usize,
    repair: bool,
) -> Result<Comparison> {
    let mut walk = Walk {
        src,
        dst,
        limit,
        repair,
        out: Comparison::default(),
    };
    let mut namespaces: BTreeSet<String> =
        selection.namespaces_of(src).await?.into_iter().collect();
    namespaces.extend(selection.namespaces_of(dst).await?);
    for ns in &namespaces {
        let a = selection.collections_of(src, ns).await?;
        let b = selection.collections_of(dst, ns).await?;
        let names: BTreeSet<&String> = a.iter().chain(b.iter()).map(|(n, _)| n).collect();
        for name in names {
            let spec_a = a.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            let spec_b = b.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            walk.compare_specs(ns, name, spec_a, spec_b);
            walk.compare_records(ns, name, spec_a.is_some(), spec_b.is_some())
                .await?;
        }
    }
    Ok(walk.out)
}

/// One comparison (or reconciliation) of two stores, and what it found so far.
struct Walk<'a> {
    src: &'a Store,
    dst: &'a Store,
    /// How many differences to list (all are counted).
    limit: usize,
    /// Whether to repair each record difference on the way.
    repair: bool,
    out: Comparison,
}

impl Walk<'_> {
    fn note(&mut self, ns: &str, coll: &str, id: Option<&str>, what: String) {
        self.out.difference_count += 1;
        if self.out.differences.len() < self.limit {
            self.out.differences.push(Finding {
                namespace: ns.to_owned(),
                collection: coll.to_owned(),
                id: id.map(str::to_owned),
                what,
            });
        }
    }

    /// A collection on one side only, or with specs that differ.
    fn compare_specs(
        &mut self,
        ns: &str,
        name: &str,
        spec_a: Option<&CollectionSpec>,
        spec_b: Option<&CollectionSpec>,
    ) {
        let what = match (spec_a, spec_b) {
            (Some(x), Some(y)) if x != y => {
                format!("spec differs: {} != {}", x.to_json(), y.to_json())
            }
            (Some(_), None) => "collection missing at destination".into(),
            (None, Some(_)) => "collection only at destination".into(),
            _ => return,
        };
        self.note(ns, name, None, what);
    }

    /// Walks one collection's live records on both sides in id order (a side where the
    /// collection is not `present` is empty), noting and, when repairing, fixing each
    /// difference.
    async fn compare_records(
        &mut self,
        ns: &str,
        name: &str,
        in_src: bool,
        in_dst: bool,
    ) -> Result<()> {
        let scan = |store: &Store, present: bool| {
            let store = store.clone();
            let (ns, name) = (ns.to_owned(), name.to_owned());
            async move {
                if !present {
                    return Ok(None);
                }
                let c = store
                    .namespace(&ns)?
                    .existing_collection::<Value>(&name)
                    .await?;
                Ok::<_, stowage_core::Error>(Some(c.scan_stored(None)))
            }
        };
        let fix = if self.repair && in_src && in_dst {
            Some(
                self.dst
                    .namespace(ns)?
                    .existing_collection::<Value>(name)
                    .await?,
            )
        } else {
            None
        };
        let mut left = scan(self.src, in_src).await?.map(Box::pin);
        let mut right = scan(self.dst, in_dst).await?.map(Box::pin);
        let mut x = next(&mut left).await?;
        let mut y = next(&mut right).await?;
        loop {
            // Which side is behind in id order: the source's record alone, the
            // destination's alone, or one id on both.
            let side = match (&x, &y) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(r), Some(s)) => r.id.as_bytes().cmp(s.id.as_bytes()),
            };
            match (side, x.take(), y.take()) {
                (std::cmp::Ordering::Less, Some(r), rest) => {
                    self.out.source_records += 1;
                    self.note(ns, name, Some(&r.id), "missing at destination".into());
                    if let Some(to) = &fix {
                        restore_if_older(to, &r).await?;
                    }
                    x = next(&mut left).await?;
                    y = rest;
                }
                (std::cmp::Ordering::Greater, rest, Some(s)) => {
                    self.out.destination_records += 1;
                    self.note(ns, name, Some(&s.id), "only at destination".into());
                    if let Some(to) = &fix {
                        delete_extra(to, self.src, ns, &s).await?;
                    }
                    x = rest;
                    y = next(&mut right).await?;
                }
                (_, Some(r), Some(s)) => {
                    self.out.source_records += 1;
                    self.out.destination_records += 1;
                    if record_digest(&r) != record_digest(&s) {
                        self.note(ns, name, Some(&r.id), describe_difference(&r, &s));
                        if let Some(to) = &fix {
                            repair_changed(to, &r, &s).await?;
                        }
                    }
                    x = next(&mut left).await?;
                    y = next(&mut right).await?;
                }
                _ => break,
            }
        }
        Ok(())
    }
}

/// Repairs a record that differs: the source's is restored unless the destination's is
/// newer (a mirrored write the source has too, or will).
async fn repair_changed(to: &Collection<Value>, r: &StoredRecord, s: &StoredRecord) -> Result<()> {
    if s.version != r.version {
        return restore_if_older(to, r).await.map(|_| ());
    }
    // Same version, other content: the source's is right.
    match to.restore_where(r, Precondition::Version(s.version)).await {
        Err(e) if e.kind() != ErrorKind::Conflict => Err(e),
        _ => Ok(()),
    }
}

/// Deletes a record found only at the destination, if the source still lacks it and the
/// destination still has the version seen.
async fn delete_extra(
    to: &Collection<Value>,
    src: &Store,
    ns: &str,
    rec: &StoredRecord,
) -> Result<()> {
    let at_source = src
        .namespace(ns)?
        .existing_collection::<Value>(to.name())
        .await?
        .get_raw(&rec.id)
        .await?;
    if at_source.is_none() {
        match to.delete_if_version(&rec.id, rec.version).await {
            Err(e) if !matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {
                return Err(e)
            }
            _ => {}
        }
    }
    Ok(())
}

async fn next<S>(stream: &mut Option<std::pin::Pin<Box<S>>>) -> Result<Option<StoredRecord>>
where
    S: futures_util::Stream<Item = Result<StoredRecord>>,
{
    match stream {
        Some(s) => s.try_next().await,
        None => Ok(None),
    }
}

/// Which fields of two records with one id differ.
fn describe_difference(a: &StoredRecord, b: &StoredRecord) -> String {
    let mut parts = Vec::new();
    if a.version != b.version {
        parts.push(format!("version {} != {}", a.version, b.version));
    }
    if a.created_at != b.created_at {
        parts.push(format!("created_at {} != {}", a.created_at, b.created_at));
    }
    if a.updated_at != b.updated_at {
        parts.push(format!("updated_at {} != {}", a.updated_at, b.updated_at));
    }
    if a.expires_at != b.expires_at {
        parts.push(format!(
            "expires_at {:?} != {:?}",
            a.expires_at, b.expires_at
        ));
    }
    if a.body != b.body {
        parts.push(format!(
            "body differs ({} != {} bytes)",
            a.body.bytes.len(),
            b.body.bytes.len()
        ));
    }
    parts.join(", ")
}

/// Copies every collection of `src`'s namespace into `dst`'s namespace (see
/// [`copy_store`]; here the two stores' own namespaces, which may differ).
pub async fn copy_namespace(src: &Store, dst: &Store) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    for (name, spec) in src.collections().await? {
        let from = src.existing_collection::<Value>(&name).await?;
        let to = dst.collection_with_spec::<Value>(&name, spec).await?;
        report.collections += 1;
        copy_collection(&from, &to, None, Overwrite::Always, |page| {
            report.records += page.len() as u64;
            report.bytes += page.iter().map(record_bytes).sum::<u64>();
        })
        .await?;
    }
    Ok(report)
}
