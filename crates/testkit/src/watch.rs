//! The change feed: every acknowledged change once and in order, resuming from a token,
//! bulk changes as events, nothing for what failed, and gaps instead of silent loss.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::{expect_err, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{
    BatchScope, ChangeEvent, ChangeFeed, ChangeOp, ChangeStream, ErrorKind, Filter, Precondition,
    Put,
};

/// Whether the backend keeps a feed; when it does not, checks that watching is refused.
async fn feed_supported(cx: &Ctx) -> bool {
    if cx.store.capabilities().change_feed != ChangeFeed::None {
        return true;
    }
    expect_err(cx.store.watch(None).await.map(drop), ErrorKind::Unsupported);
    let items = cx.items().await;
    expect_err(items.watch(None).await.map(drop), ErrorKind::Unsupported);
    false
}

/// The next event, within 10 s.
async fn next(stream: &mut ChangeStream) -> ChangeEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("an event, not an error")
}

/// No event for a moment.
async fn quiet(stream: &mut ChangeStream) {
    if let Ok(e) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("expected no event, got {e:?}");
    }
}

/// 4 concurrent writers put and delete: every acknowledged change arrives exactly once, in
/// version order per record, with its version; then nothing more.
async fn every_acknowledged_write_once_in_order(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !feed_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    let mut stream = items.watch(None).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let items = items.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..100 {
                    let id = format!("w{w}-{}", i % 20);
                    if i % 7 == 6 {
                        if items.delete(&id).await.unwrap() {
                            acked.push((id, ChangeOp::Delete));
                        }
                    } else {
                        let meta = items.put(&id, &Item::new(&id, i), Put::upsert()).await;
                        acked.push((id, ChangeOp::Put));
                        let _ = meta.unwrap();
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let mut seen: BTreeMap<String, Vec<(ChangeOp, u64)>> = BTreeMap::new();
    let mut last_token = 0;
    for _ in 0..acked.len() {
        let e = next(&mut stream).await;
        assert!(e.token > last_token, "tokens ascend");
        last_token = e.token;
        assert_eq!(e.collection.as_deref(), Some("items"));
        seen.entry(e.id.clone().unwrap())
            .or_default()
            .push((e.op, e.version.unwrap()));
    }
    quiet(&mut stream).await;
    let mut want: BTreeMap<String, Vec<ChangeOp>> = BTreeMap::new();
    for (id, op) in acked {
        want.entry(id).or_default().push(op);
    }
    for (id, events) in &seen {
        let ops: Vec<ChangeOp> = events.iter().map(|(op, _)| *op).collect();
        assert_eq!(
            Some(&ops),
            want.get(id),
            "record {id}: every change once, in order"
        );
        let puts: Vec<u64> = events
            .iter()
            .filter(|(op, _)| *op == ChangeOp::Put)
            .map(|(_, v)| *v)
            .collect();
        assert!(
            puts.windows(2).all(|w| w[0] < w[1]),
            "{id}: versions ascend"
        );
    }
    assert_eq!(seen.len(), want.len());
}

/// Watching again after a token returns exactly the changes after it, then live ones.
async fn resume_from_a_token_gets_exactly_the_rest(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !feed_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    let mut stream = cx.store.watch(None).await.unwrap();
    for i in 0..10 {
        items.insert(&Item::new(format!("k{i}"), i)).await.unwrap();
    }
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(next(&mut stream).await);
    }
    drop(stream);
    let mut resumed = cx.store.watch(Some(first[4].token)).await.unwrap();
    for want in &first[5..] {
        assert_eq!(&next(&mut resumed).await, want);
    }
    quiet(&mut resumed).await;
    items.insert(&Item::new("live", 1)).await.unwrap();
    let live = next(&mut resumed).await;
    assert_eq!(
        (live.op, live.id.as_deref(), live.token),
        (ChangeOp::Put, Some("live"), first[9].token + 1)
    );
    assert_eq!(live.version, Some(1));
}

/// Failed writes, failed batches, checks and deletes of nothing make no event.
async fn failed_ops_make_no_event(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !feed_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    let mut stream = items.watch(None).await.unwrap();
    expect_err(
        items.insert(&Item::new("a", 2)).await,
        ErrorKind::AlreadyExists,
    );
    expect_err(
        items.update(&Item::new("a", 2), 9).await,
        ErrorKind::Conflict,
    );
    assert!(!items.delete("absent").await.unwrap());
    if cx.store.capabilities().batch_scope >= BatchScope::Collection {
        let mut b = cx.store.batch();
        b.insert(&items, &Item::new("b", 1))
            .insert(&items, &Item::new("a", 3));
        expect_err(b.commit().await, ErrorKind::AlreadyExists);
        let mut b = cx.store.batch();
        b.check(&items, "a", Precondition::Version(1));
        b.commit().await.unwrap();
    }
    items.upsert(&Item::new("marker", 1)).await.unwrap();
    let e = next(&mut stream).await;
    assert_eq!((e.op, e.id.as_deref()), (ChangeOp::Put, Some("marker")));
    quiet(&mut stream).await;
}

/// Deletes by prefix and by query, purges, spec changes and drops are events of their own,
/// with counts; a collection's watch does not see another collection's changes.
async fn bulk_changes_are_events(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !feed_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    let mut all = cx.store.watch(None).await.unwrap();
    let mut only_items = items.watch(None).await.unwrap();
    let kv = cx.plain("kv").await;
    kv.put("x", &json!(1), Put::upsert()).await.unwrap();
    for i in 0..10 {
        items.insert(&Item::new(format!("p{i}"), i)).await.unwrap();
    }
    assert_eq!(items.delete_prefix("p0").await.unwrap(), 1);
    assert_eq!(
        items
            .delete_where(&Filter::new().gte("n", 5))
            .await
            .unwrap(),
        5
    );
    let mut expected = vec![
        (ChangeOp::Spec, Some("kv"), None),
        (ChangeOp::Put, Some("kv"), None),
    ];
    expected.extend((0..10).map(|_| (ChangeOp::Put, Some("items"), None)));
    expected.push((ChangeOp::DeletePrefix, Some("items"), Some(1)));
    expected.push((ChangeOp::DeleteWhere, Some("items"), Some(5)));
    if cx.store.capabilities().ttl {
        items
            .put(
                "t",
                &Item::new("t", 1),
                Put::insert().ttl(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        cx.clock.advance(Duration::from_secs(2));
        assert_eq!(cx.store.purge_expired().await.unwrap(), 1);
        expected.push((ChangeOp::Put, Some("items"), None));
        expected.push((ChangeOp::Purge, None, Some(1)));
    }
    assert!(cx.store.drop_collection("kv").await.unwrap());
    expected.push((ChangeOp::Drop, Some("kv"), None));
    for (op, coll, count) in &expected {
        let e = next(&mut all).await;
        assert_eq!((e.op, e.collection.as_deref()), (*op, *coll), "{e:?}");
        if count.is_some() {
            assert_eq!(e.count, *count, "{e:?}");
        }
    }
    for (op, coll, _) in expected.iter().filter(|(_, c, _)| *c != Some("kv")) {
        let e = next(&mut only_items).await;
        assert_eq!((e.op, e.collection.as_deref()), (*op, *coll), "{e:?}");
    }
    quiet(&mut only_items).await;
}

/// A consumer 12,000 changes behind gets every change in order, or a gap event where any
/// is missing: never a silent hole.
async fn slow_consumer_gets_every_change_or_a_gap(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !feed_supported(&cx).await {
        return;
    }
    let kv = cx.plain("kv").await;
    let mut stream = kv.watch(None).await.unwrap();
    const N: usize = 12_000;
    let step = super::batch_step(&cx.store, 500);
    let mut i = 0;
    while i < N {
        let mut b = cx.store.batch();
        for j in i..(i + step).min(N) {
            b.put(&kv, &format!("k{j:05}"), &json!(j), Put::upsert());
        }
        b.commit().await.unwrap();
        i += step;
    }
    let mut previous: Option<u64> = None;
    let mut after_gap = false;
    let mut gaps = 0;
    let mut delivered = 0;
    loop {
        let e = next(&mut stream).await;
        if e.op == ChangeOp::Gap {
            gaps += 1;
            after_gap = true;
            continue;
        }
        if let Some(p) = previous {
            assert!(
                e.token == p + 1 || after_gap,
                "token {} follows {p} with no gap event",
                e.token
            );
        }
        after_gap = false;
        previous = Some(e.token);
        delivered += 1;
        if e.id.as_deref() == Some(&format!("k{:05}", N - 1)) {
            break;
        }
    }
    assert!(
        delivered == N || gaps > 0,
        "{delivered} of {N} changes delivered and no gap"
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    every_acknowledged_write_once_in_order,
    resume_from_a_token_gets_exactly_the_rest,
    failed_ops_make_no_event,
    bulk_changes_are_events,
    slow_consumer_gets_every_change_or_a_gap
];
