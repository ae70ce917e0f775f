//! Copying a namespace into another store with restore writes: every record and its
//! metadata arrive exactly.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{json, Value};

use super::{fill, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{CollectionSpec, Put, Query, Store, StoredRecord};
use stowage_ops::copy_namespace;

/// Every stored record of every collection of a namespace, with its spec.
async fn snapshot(store: &Store) -> BTreeMap<String, (CollectionSpec, Vec<StoredRecord>)> {
    let mut out = BTreeMap::new();
    for (name, spec) in store.collections().await.unwrap() {
        let coll = store.existing_collection::<Value>(&name).await.unwrap();
        let records: Vec<StoredRecord> = coll.scan_stored(None).try_collect().await.unwrap();
        out.insert(name, (spec, records));
    }
    out
}

/// A namespace with indexed, updated, deleted, expiring and binary records, and a second
/// namespace, is copied into a fresh store: specs and every record's id, version,
/// timestamps, expiry and body bytes are equal; copying again changes nothing; ETags carry
/// over; the destination's indexes answer like the source's.
async fn copy_keeps_every_record_exactly(f: Arc<dyn Fixture>) {
    let src = Ctx::new(f.clone()).await;
    let items = src.items().await;
    fill(&items, &src.store, "i", 300).await;
    for i in 0..40 {
        items
            .upsert(&Item::new(format!("i{i:06}"), 1000 + i))
            .await
            .unwrap();
    }
    items.delete_prefix("i00002").await.unwrap();
    let caps = src.store.capabilities().clone();
    if caps.ttl {
        src.clock.advance(Duration::from_secs(3));
        items
            .put(
                "t1",
                &Item::new("t1", 5),
                Put::upsert().ttl(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
    }
    let kv = src.plain("kv").await;
    kv.put("j", &json!({"a": [1, 2]}), Put::upsert())
        .await
        .unwrap();
    if caps.binary_bodies {
        kv.put_raw("b", vec![0u8, 255, 7], Put::upsert())
            .await
            .unwrap();
    }
    let other = src.store.namespace("other").unwrap();
    other
        .collection_with_spec::<Value>("notes", CollectionSpec::new())
        .await
        .unwrap()
        .put("n1", &json!({"text": "hi"}), Put::insert())
        .await
        .unwrap();

    let dst = Ctx::new(f).await;
    let namespaces = src.store.namespaces().await.unwrap();
    assert_eq!(namespaces, vec!["default".to_owned(), "other".to_owned()]);
    for ns in &namespaces {
        let (from, to) = (
            src.store.namespace(ns).unwrap(),
            dst.store.namespace(ns).unwrap(),
        );
        let report = copy_namespace(&from, &to).await.unwrap();
        let before = snapshot(&from).await;
        assert_eq!(report.collections, before.len() as u64);
        assert_eq!(
            report.records,
            before.values().map(|(_, r)| r.len() as u64).sum::<u64>()
        );
        assert_eq!(snapshot(&to).await, before, "namespace {ns} copied exactly");
        // Again: nothing changes (a resumed copy).
        copy_namespace(&from, &to).await.unwrap();
        assert_eq!(snapshot(&to).await, before, "a second copy changes nothing");
    }
    assert_eq!(dst.store.namespaces().await.unwrap(), namespaces);

    // An ETag read at the source applies at the destination.
    let at_src = items.get("i000100").await.unwrap().unwrap();
    let copied = dst.items().await;
    let v = copied
        .update(&Item::new("i000100", 77), at_src.version)
        .await
        .unwrap();
    assert_eq!(v, at_src.version + 1);
    items
        .update(&Item::new("i000100", 77), at_src.version)
        .await
        .unwrap();
    // Indexes answer alike.
    for q in [
        Query::new().gte("n", 100).lt("n", 1020).order_by("n"),
        Query::new().eq("tags", "t1"),
        Query::new()
            .gte("score", 0.0)
            .order_by("score")
            .descending(),
    ] {
        let shown = |p: stowage_core::Page<Item>| -> Vec<(String, u64, Item)> {
            p.items
                .into_iter()
                .map(|r| (r.id, r.version, r.value))
                .collect()
        };
        let a = shown(items.query(&q).await.unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, shown(copied.query(&q).await.unwrap()));
    }
}

/// A rewrite stores records again exactly as read — version, times, expiry kept, the body
/// as given, indexes following it — only where the live record still has the version read:
/// a batch holding one record updated, deleted or expired since is Conflict and writes
/// nothing.
async fn rewrite_only_where_unchanged(f: Arc<dyn Fixture>) {
    let ctx = Ctx::new(f).await;
    let items = ctx.items().await;
    fill(&items, &ctx.store, "r", 4).await;
    let read: Vec<StoredRecord> = items.scan_stored(None).try_collect().await.unwrap();
    assert_eq!(read.len(), 4);
    // Bodies as another layer might store them: same records, new bytes.
    let moved = |rec: &StoredRecord, n: i64| {
        let mut rec = rec.clone();
        rec.body =
            stowage_core::Body::json(serde_json::to_vec(&Item::new(rec.id.clone(), n)).unwrap());
        rec
    };
    let metas = items
        .rewrite_all(&[moved(&read[0], 500), moved(&read[1], 501)])
        .await
        .unwrap();
    assert_eq!(metas[0], stowage_core::backend::RecordMeta::of(&read[0]));
    let again: Vec<StoredRecord> = items.scan_stored(None).try_collect().await.unwrap();
    assert_eq!(
        (again[0].version, again[0].created_at, again[0].updated_at),
        (read[0].version, read[0].created_at, read[0].updated_at),
        "a rewrite moves no version or time"
    );
    assert_eq!(items.get(&read[1].id).await.unwrap().unwrap().value.n, 501);
    let by_n = items.query(&Query::new().eq("n", 500)).await.unwrap();
    assert_eq!(by_n.items.len(), 1, "the index follows the rewritten body");

    // Record 2 is updated and record 3 deleted after they were read.
    items
        .upsert(&Item::new(read[2].id.clone(), 900))
        .await
        .unwrap();
    items.delete(&read[3].id).await.unwrap();
    for stale in [&read[2], &read[3]] {
        let e = items
            .rewrite_all(&[moved(&read[0], 600), moved(stale, 601)])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), stowage_core::ErrorKind::Conflict, "{e}");
    }
    assert_eq!(
        items.get(&read[0].id).await.unwrap().unwrap().value.n,
        500,
        "a batch with a stale record writes nothing"
    );
    assert_eq!(items.get(&read[2].id).await.unwrap().unwrap().value.n, 900);
    assert!(items.get(&read[3].id).await.unwrap().is_none());
    // A plain restore still replaces whatever is there.
    items.restore(&read[2]).await.unwrap();
    assert_eq!(
        items.get(&read[2].id).await.unwrap().unwrap().version,
        read[2].version
    );
}

/// A whole-store copy (every namespace) resumes from any checkpoint it reported and ends
/// with the source's records; the comparison agrees, then names each record changed,
/// removed or added at the destination, and reconciling repairs them all. The integrity
/// check finds every index in agreement with its records, expired records included.
async fn copy_store_resumes_compares_and_checks(f: Arc<dyn Fixture>) {
    let src = Ctx::new(f.clone()).await;
    let items = src.items().await;
    fill(&items, &src.store, "c", 250).await;
    let caps = src.store.capabilities().clone();
    if caps.ttl {
        items
            .put(
                "short",
                &Item::new("short", 7),
                Put::upsert().ttl(Duration::from_secs(2)),
            )
            .await
            .unwrap();
    }
    // Engines without unique indexes hold a plain record instead.
    let unique = u64::from(caps.unique_indexes);
    if caps.unique_indexes {
        let accounts = src.accounts().await.unwrap();
        accounts
            .insert(&crate::Account::new("a1", "a1@x.org"))
            .await
            .unwrap();
    } else {
        src.plain("kv")
            .await
            .put("a1", &json!({}), Put::insert())
            .await
            .unwrap();
    }
    src.store
        .namespace("other")
        .unwrap()
        .collection_with_spec::<Value>("notes", CollectionSpec::new())
        .await
        .unwrap()
        .put("ü-1", &json!({"text": "é"}), Put::insert())
        .await
        .unwrap();
    if caps.ttl {
        // Expired at the source: not copied, and not live anywhere.
        src.clock.advance(Duration::from_secs(3));
    }
    let all = stowage_ops::Selection::all();
    let dst = Ctx::new(f).await;
    let mut checkpoints = Vec::new();
    let report = stowage_ops::copy_store(
        &src.store,
        &dst.store,
        &all,
        stowage_ops::Overwrite::Always,
        None,
        |at| checkpoints.push(at.clone()),
    )
    .await
    .unwrap();
    assert_eq!(report.records, 252);
    assert_eq!(report.collections, 3);
    assert!(checkpoints.len() >= 3, "{checkpoints:?}");
    // Resumed from its first checkpoint: the same end.
    let again = stowage_ops::copy_store(
        &src.store,
        &dst.store,
        &all,
        stowage_ops::Overwrite::Always,
        Some(checkpoints[0].clone()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(again.records, 252);
    let cmp = stowage_ops::compare_stores(&src.store, &dst.store, &all, 10)
        .await
        .unwrap();
    assert!(cmp.agree(), "{cmp:?}");
    assert_eq!((cmp.source_records, cmp.destination_records), (252, 252));

    let copied = dst.items().await;
    copied.upsert(&Item::new("c000003", 999)).await.unwrap();
    copied.delete("c000004").await.unwrap();
    copied.upsert(&Item::new("extra", 1)).await.unwrap();
    let cmp = stowage_ops::compare_stores(&src.store, &dst.store, &all, 10)
        .await
        .unwrap();
    assert_eq!(cmp.difference_count, 3, "{cmp:?}");
    let named: Vec<(Option<&str>, &str)> = cmp
        .differences
        .iter()
        .map(|d| (d.id.as_deref(), d.what.as_str()))
        .collect();
    assert!(
        named.contains(&(Some("c000004"), "missing at destination")),
        "{named:?}"
    );
    assert!(
        named.contains(&(Some("extra"), "only at destination")),
        "{named:?}"
    );
    assert!(named
        .iter()
        .any(|(id, what)| *id == Some("c000003") && what.contains("version")));
    // The destination's c000003 is newer: reconcile keeps it (it would be a mirrored write),
    // restores c000004 and removes the extra record.
    stowage_ops::reconcile_stores(&src.store, &dst.store, &all, 10)
        .await
        .unwrap();
    let cmp = stowage_ops::compare_stores(&src.store, &dst.store, &all, 10)
        .await
        .unwrap();
    assert_eq!(cmp.difference_count, 1, "{cmp:?}");
    items.upsert(&Item::new("c000003", 5)).await.unwrap();
    items.upsert(&Item::new("c000003", 6)).await.unwrap();
    stowage_ops::reconcile_stores(&src.store, &dst.store, &all, 10)
        .await
        .unwrap();
    assert!(
        stowage_ops::compare_stores(&src.store, &dst.store, &all, 10)
            .await
            .unwrap()
            .agree()
    );

    for ctx in [&src, &dst] {
        let check = stowage_ops::check_store(&ctx.store, &ctx.store, &all, 10, |_| None)
            .await
            .unwrap();
        assert!(check.is_clean(), "{check:?}");
        // Items' six indexes and the accounts' unique one.
        assert_eq!(check.indexes, 6 + unique, "{check:?}");
        assert_eq!(check.records, 252);
    }
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    copy_keeps_every_record_exactly,
    rewrite_only_where_unchanged,
    copy_store_resumes_compares_and_checks
];
