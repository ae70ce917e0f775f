//! Checking a store's integrity: stored bodies, and indexes against records both ways.

use std::ops::Bound;

use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::copy::Selection;
use stowage_core::backend::SCAN_PAGE;
use stowage_core::backend::{
    CursorKey, Order, Predicate, PredicateOp, QueryHit, QueryRequest, Revision,
};
use stowage_core::IndexSpec;
use stowage_core::Result;
use stowage_core::Store;
use stowage_core::{ContentType, StoredRecord};

/// One thing [`check_store`] found wrong, or one way [`crate::compare_stores`] found two
/// stores to differ (`missing at destination`, `only at destination`, `version 3 != 4`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// The namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// The record, when it is about one.
    pub id: Option<String>,
    /// What is wrong.
    pub what: String,
}

/// What [`check_store`] looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// Records whose stored body was checked.
    pub records: u64,
    /// Indexes checked against their records.
    pub indexes: u64,
    /// What is wrong, up to the limit asked for.
    pub findings: Vec<Finding>,
    /// How many findings there are in all.
    pub finding_count: u64,
    /// What could not be checked, and why.
    pub not_checked: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.finding_count == 0
    }

    fn note(&mut self, limit: usize, ns: &str, coll: &str, id: Option<&str>, what: String) {
        self.finding_count += 1;
        if self.findings.len() < limit {
            self.findings.push(Finding {
                namespace: ns.to_owned(),
                collection: coll.to_owned(),
                id: id.map(str::to_owned),
                what,
            });
        }
    }
}

/// Checks the selected collections of a store:
///
/// - every stored body, read from `raw` (the engine under any codec layer), passes
///   `check_body` (the codec's frame checksum; `None` when it is sound);
/// - every index agrees with the records of `store` both ways: each record with a value
///   for the index is in it, and the index holds no record without one; for a
///   single-valued index, each entry's value is the record's own;
/// - no expired record is returned as live by a scan or an index walk.
///
/// Blind indexes are not walked (their keyed hashes answer only equality). Up to `limit`
/// findings are listed; all are counted.
pub async fn check_store(
    store: &Store,
    raw: &Store,
    selection: &Selection,
    limit: usize,
    check_body: impl Fn(&StoredRecord) -> Option<String>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let now = store.now();
    for ns in selection.namespaces_of(store).await? {
        for (name, spec) in selection.collections_of(store, &ns).await? {
            // Bodies, from the engine as stored.
            let before = report.finding_count;
            let raw_coll = raw
                .namespace(&ns)?
                .existing_collection::<Value>(&name)
                .await?;
            let mut records = std::pin::pin!(raw_coll.scan_stored(None));
            while let Some(rec) = records.try_next().await? {
                report.records += 1;
                if rec.is_expired(now) {
                    report.note(
                        limit,
                        &ns,
                        &name,
                        Some(&rec.id),
                        "an expired record is scanned as live".into(),
                    );
                }
                if let Some(why) = check_body(&rec) {
                    report.note(limit, &ns, &name, Some(&rec.id), why);
                }
            }
            if report.finding_count > before {
                report
                    .not_checked
                    .push(format!("{ns}/{name}: indexes (records are damaged)"));
                continue;
            }
            let Some(stored) = store.backend().load_spec(&ns, &name).await? else {
                continue;
            };
            for ix in &spec.indexes {
                if ix.blind {
                    report
                        .not_checked
                        .push(format!("{ns}/{name}: blind index {:?}", ix.name));
                    continue;
                }
                if stored.building.contains(&ix.name) {
                    report
                        .not_checked
                        .push(format!("{ns}/{name}: index {:?} (being built)", ix.name));
                    continue;
                }
                report.indexes += 1;
                check_index(store, &ns, &name, stored.revision, ix, limit, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// The index values of a record's body (empty when it has none, or is not JSON).
fn values_of(ix: &IndexSpec, rec: &StoredRecord) -> Vec<stowage_core::IndexValue> {
    if rec.body.content_type != ContentType::Json {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&rec.body.bytes)
        .ok()
        .and_then(|body| ix.extract(&body, &rec.id).ok())
        .unwrap_or_default()
}

/// The records an index holds, walked a page at a time: in id order, or in the index's
/// order (then each hit carries the value it is held under).
struct IndexWalk<'a> {
    store: &'a Store,
    ns: &'a str,
    request: QueryRequest,
    page: std::vec::IntoIter<QueryHit>,
    done: bool,
}

impl<'a> IndexWalk<'a> {
    fn new(
        store: &'a Store,
        ns: &'a str,
        collection: &str,
        revision: Revision,
        ix: &IndexSpec,
        by_value: bool,
    ) -> Self {
        let request = QueryRequest {
            collection: collection.to_owned(),
            revision,
            // Every value of the index: the records it holds, once each.
            filter: vec![Predicate {
                index: ix.name.clone(),
                op: PredicateOp::Range(Bound::Unbounded, Bound::Unbounded),
            }],
            order: Order {
                index: by_value.then(|| ix.name.clone()),
                descending: false,
            },
            after: None,
            offset: 0,
            limit: Some(SCAN_PAGE),
        };
        IndexWalk {
            store,
            ns,
            request,
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<QueryHit>> {
        loop {
            if let Some(hit) = self.page.next() {
                return Ok(Some(hit));
            }
            if self.done {
                return Ok(None);
            }
            let page = self
                .store
                .backend()
                .query(self.ns, &self.request, self.store.now())
                .await?;
            self.done = page.len() < SCAN_PAGE;
            self.request.after = page.last().map(|h| CursorKey {
                value: h.order_value.clone(),
                id: h.record.id.clone(),
            });
            self.page = page.into_iter();
        }
    }
}

async fn check_index(
    store: &Store,
    ns: &str,
    name: &str,
    revision: Revision,
    ix: &IndexSpec,
    limit: usize,
    report: &mut CheckReport,
) -> Result<()> {
    let now = store.now();
    let mut note = |id: &str, what: &str| {
        report.note(
            limit,
            ns,
            name,
            Some(id),
            format!("index {:?}: {what}", ix.name),
        );
    };
    // Both ways, by id: the records with a value against the records the index holds.
    let coll = store
        .namespace(ns)?
        .existing_collection::<Value>(name)
        .await?;
    let mut records = std::pin::pin!(coll.scan_stored(None));
    let mut held = IndexWalk::new(store, ns, name, revision, ix, false);
    let mut x = next_with_value(&mut records, ix).await?;
    let mut y = held.next().await?;
    loop {
        let side = match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(r), Some(h)) => r.id.as_bytes().cmp(h.record.id.as_bytes()),
        };
        if let (std::cmp::Ordering::Less, Some(r)) = (side, &x) {
            note(
                &r.id,
                "the record has a value but the index does not hold it",
            );
        }
        if let (std::cmp::Ordering::Greater, Some(h)) = (side, &y) {
            note(
                &h.record.id,
                "the index holds the record, which has no value for it",
            );
        }
        if let Some(h) = y
            .as_ref()
            .filter(|h| side.is_ge() && h.record.is_expired(now))
        {
            note(&h.record.id, "an expired record is indexed as live");
        }
        if side.is_le() {
            x = next_with_value(&mut records, ix).await?;
        }
        if side.is_ge() {
            y = held.next().await?;
        }
    }
    // Each entry's value, in index order (single-valued indexes: queries order only by those).
    if ix.multi {
        return Ok(());
    }
    let mut walk = IndexWalk::new(store, ns, name, revision, ix, true);
    while let Some(hit) = walk.next().await? {
        let values = values_of(ix, &hit.record);
        if !hit.order_value.as_ref().is_some_and(|v| values.contains(v)) {
            note(
                &hit.record.id,
                &format!(
                    "the index holds {:?}, the record {values:?}",
                    hit.order_value
                ),
            );
        }
        if hit.record.is_expired(now) {
            note(&hit.record.id, "an expired record is indexed as live");
        }
    }
    Ok(())
}

/// The next record of the scan that has a value for the index.
async fn next_with_value<S>(
    records: &mut std::pin::Pin<&mut S>,
    ix: &IndexSpec,
) -> Result<Option<StoredRecord>>
where
    S: futures_util::Stream<Item = Result<StoredRecord>>,
{
    while let Some(rec) = records.try_next().await? {
        if !values_of(ix, &rec).is_empty() {
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use stowage_core::backend::{Backend, QueryHit};
    use stowage_core::layer::Layer;
    use stowage_core::{CollectionSpec, IndexSpec, MemoryBackend, Put, Timestamp};

    /// An engine whose index lost one entry and kept a wrong value for another: its
    /// queries leave `lost` out and report `wrong` under another value.
    #[derive(Debug)]
    struct DamagedIndex(Arc<dyn Backend>);

    #[async_trait]
    impl Layer for DamagedIndex {
        fn inner(&self) -> &Arc<dyn Backend> {
            &self.0
        }
        async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
            let mut hits = self.0.query(ns, r, now).await?;
            hits.retain(|h| h.record.id != "lost");
            for h in &mut hits {
                if h.record.id == "wrong" && h.order_value.is_some() {
                    h.order_value = Some(stowage_core::IndexValue::Integer(-1));
                }
            }
            Ok(hits)
        }
    }

    #[tokio::test]
    async fn a_damaged_index_is_found_both_ways() {
        let engine: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let store = Store::from_backend(engine.clone());
        let c = store
            .collection_with_spec::<Value>(
                "things",
                CollectionSpec::new().index(IndexSpec::integer("n", "/n")),
            )
            .await
            .unwrap();
        for (id, n) in [("a", 1), ("lost", 2), ("wrong", 3), ("z", 4)] {
            c.put(id, &json!({"n": n}), Put::insert()).await.unwrap();
        }
        c.put("none", &json!({}), Put::insert()).await.unwrap();
        let all = Selection::all();
        let sound = check_store(&store, &store, &all, 10, |_| None)
            .await
            .unwrap();
        assert!(sound.is_clean(), "{sound:?}");
        assert_eq!((sound.records, sound.indexes), (5, 1));

        let damaged = Store::from_backend(Arc::new(DamagedIndex(engine)));
        let found = check_store(&damaged, &damaged, &all, 10, |r| {
            (r.id == "z").then(|| "fails its checksum".to_owned())
        })
        .await
        .unwrap();
        // z's body is damaged: its collection's indexes are not checked, and it says so.
        assert_eq!(found.finding_count, 1, "{found:?}");
        assert_eq!(found.not_checked.len(), 1);
        let found = check_store(&damaged, &damaged, &all, 10, |_| None)
            .await
            .unwrap();
        let what: Vec<(Option<&str>, &str)> = found
            .findings
            .iter()
            .map(|f| (f.id.as_deref(), f.what.as_str()))
            .collect();
        assert_eq!(found.finding_count, 2, "{what:?}");
        assert!(
            what[0].0 == Some("lost") && what[0].1.contains("does not hold"),
            "{what:?}"
        );
        assert!(
            what[1].0 == Some("wrong") && what[1].1.contains("Integer(-1)"),
            "{what:?}"
        );
    }
}
