//! Every capability a backend claims holds; every one it does not claim answers Unsupported.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;
use std::time::Duration;

use super::{expect_err, Account, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{BatchScope, ChangeFeed, CollectionSpec, ErrorKind, Put};

/// `atomic_batch`: a failing op undoes the ops before it; unclaimed, batches of two are refused.
async fn atomic_batch(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("taken", 0)).await.unwrap();
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("first", 1))
        .insert(&items, &Item::new("taken", 2));
    let r = b.commit().await;
    if cx.store.capabilities().batch_scope >= BatchScope::Collection {
        expect_err(r, ErrorKind::AlreadyExists);
    } else {
        expect_err(r, ErrorKind::Unsupported);
    }
    assert!(items.get("first").await.unwrap().is_none());
}

/// `unique_indexes`: a clash is caught; unclaimed, declaring one is refused.
async fn unique_indexes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let r = cx.accounts().await;
    if !cx.store.capabilities().unique_indexes {
        let e = expect_err(r, ErrorKind::Unsupported);
        assert!(e.message().contains("unique"), "{e}");
        assert!(cx.store.collections().await.unwrap().is_empty());
        return;
    }
    let accounts = r.unwrap();
    accounts.insert(&Account::new("a", "e")).await.unwrap();
    expect_err(
        accounts.insert(&Account::new("b", "e")).await,
        ErrorKind::AlreadyExists,
    );
}

/// `ttl`: a record expires; unclaimed, TTL writes and default TTLs are refused.
async fn ttl(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let r = items
        .put(
            "t",
            &Item::new("t", 1),
            Put::insert().ttl(Duration::from_secs(1)),
        )
        .await;
    let spec = CollectionSpec::new().default_ttl(Duration::from_secs(5));
    let with_default = cx
        .store
        .collection_with_spec::<serde_json::Value>("s", spec)
        .await;
    if !cx.store.capabilities().ttl {
        expect_err(r, ErrorKind::Unsupported);
        expect_err(with_default, ErrorKind::Unsupported);
        assert!(items.get("t").await.unwrap().is_none());
        return;
    }
    r.unwrap();
    with_default.unwrap();
    cx.clock.advance(Duration::from_secs(1));
    assert!(items.get("t").await.unwrap().is_none());
}

/// `binary_bodies`: bytes round-trip; unclaimed, they are refused.
async fn binary_bodies(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let kv = cx.plain("kv").await;
    let r = kv
        .put_raw("k", vec![0u8, 159, 146, 150, 255], Put::upsert())
        .await;
    if !cx.store.capabilities().binary_bodies {
        expect_err(r, ErrorKind::Unsupported);
        assert!(kv.get_raw("k").await.unwrap().is_none());
        return;
    }
    r.unwrap();
    assert_eq!(
        kv.get_raw("k").await.unwrap().unwrap().value.as_ref(),
        [0u8, 159, 146, 150, 255]
    );
}

/// `persistent` (and the fixture's reopen): records written before a reopen are there after.
async fn persistent(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("kept", 7)).await.unwrap();
    items.upsert(&Item::new("kept", 8)).await.unwrap();
    drop(items);
    let cx = cx.reopen().await;
    let got = cx.items().await.get("kept").await.unwrap().unwrap();
    assert_eq!((got.version, got.value.n), (2, 8));
}

/// `max_body_bytes`: one byte more is refused with InvalidInput naming the limit.
async fn max_body_bytes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let max = cx.store.capabilities().max_body_bytes;
    let kv = cx.plain("kv").await;
    // A JSON string of max - 1 characters encodes to max + 1 bytes with its quotes.
    let too_big = serde_json::Value::String("x".repeat(max - 1));
    let e = expect_err(
        kv.put("big", &too_big, Put::upsert()).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains(&max.to_string()), "{e}");
    assert!(kv.get("big").await.unwrap().is_none());
    let fits = serde_json::Value::String("x".repeat(max.min(9 << 20) - 2));
    kv.put("fits", &fits, Put::upsert()).await.unwrap();
}

/// `batch_scope`: a batch within one collection works from `Collection` up, one across
/// collections from `Namespace` only; below its scope a batch is refused and writes nothing.
async fn batch_scope(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let scope = cx.store.capabilities().batch_scope;
    let items = cx.items().await;
    let kv = cx.plain("kv").await;
    let mut same = cx.store.batch();
    same.insert(&items, &Item::new("a", 1))
        .insert(&items, &Item::new("b", 2));
    let r = same.commit().await;
    if scope >= BatchScope::Collection {
        r.unwrap();
    } else {
        expect_err(r, ErrorKind::Unsupported);
    }
    let mut across = cx.store.batch();
    across
        .insert(&items, &Item::new("c", 3))
        .put(&kv, "k", &serde_json::json!(1), Put::insert());
    let r = across.commit().await;
    if scope >= BatchScope::Namespace {
        r.unwrap();
    } else {
        expect_err(r, ErrorKind::Unsupported);
        assert!(items.get("c").await.unwrap().is_none());
        assert!(kv.get("k").await.unwrap().is_none());
    }
    assert_eq!(
        items.get("a").await.unwrap().is_some(),
        scope >= BatchScope::Collection
    );
}

/// `max_batch_ops`: a batch of the maximum applies, one more op is refused with
/// InvalidInput naming the limit and writes nothing; without a limit 2,000 ops apply.
async fn max_batch_ops(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if cx.store.capabilities().batch_scope < BatchScope::Collection {
        return;
    }
    let kv = cx.plain("kv").await;
    let max = cx.store.capabilities().max_batch_ops;
    let fill = |n: usize, prefix: &str| {
        let mut b = cx.store.batch();
        for i in 0..n {
            b.put(
                &kv,
                &format!("{prefix}{i}"),
                &serde_json::json!(i),
                Put::insert(),
            );
        }
        b
    };
    match max {
        Some(max) => {
            let e = expect_err(
                fill(max + 1, "over").commit().await,
                ErrorKind::InvalidInput,
            );
            assert!(e.message().contains(&max.to_string()), "{e}");
            assert!(kv.get("over0").await.unwrap().is_none());
            assert_eq!(fill(max, "fits").commit().await.unwrap().len(), max);
        }
        None => assert_eq!(fill(2000, "many").commit().await.unwrap().len(), 2000),
    }
}

/// `shared`: a second instance opened on the same data while the first is open sees the
/// first's writes at once. (Embedded engines do not claim it: one owner per file.)
async fn shared(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !cx.store.capabilities().shared {
        return;
    }
    let items = cx.items().await;
    let second = cx.second().await;
    assert!(
        !Arc::ptr_eq(second.backend(), cx.store.backend()),
        "a shared engine's fixture opens a second connection"
    );
    items.insert(&Item::new("a", 1)).await.unwrap();
    let there = second.collection::<Item>().await.unwrap();
    assert_eq!(there.get("a").await.unwrap().unwrap().value.n, 1);
}

/// `engine_clock`: claimed, expiry follows the engine's clock, not the caller's (a caller
/// whose clock runs ahead does not expire records); unclaimed, it follows the store's.
async fn engine_clock(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !cx.store.capabilities().ttl {
        return;
    }
    let items = cx.items().await;
    items
        .put(
            "t",
            &Item::new("t", 1),
            Put::insert().ttl(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    cx.clock.advance(Duration::from_secs(601));
    let visible = items.get("t").await.unwrap().is_some();
    assert_eq!(visible, cx.store.capabilities().engine_clock);
}

/// `change_feed`: claimed, a watcher sees a write; unclaimed, watching is Unsupported.
async fn change_feed(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let watched = cx.store.watch(None).await;
    if cx.store.capabilities().change_feed == ChangeFeed::None {
        expect_err(watched.map(drop), ErrorKind::Unsupported);
        return;
    }
    let mut stream = watched.unwrap();
    items.insert(&Item::new("a", 1)).await.unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::StreamExt::next(&mut stream),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!((e.id.as_deref(), e.version), (Some("a"), Some(1)));
}

/// `blind_indexes`: `eq` and `in` find records by a blind index (unique and multi-valued
/// ones too, and one added to a collection that has records), `count` and `delete_where`
/// use it, a unique clash is caught; range, prefix and order are refused, and so is a blind
/// index that is not a string index. Unclaimed, declaring one is refused.
async fn blind_indexes(f: Arc<dyn Fixture>) {
    use serde_json::{json, Value};

    use stowage_core::{Filter, IndexSpec, Query};

    let cx = Ctx::new(f).await;
    let spec = CollectionSpec::new()
        .index(IndexSpec::string("email", "/email").blind().unique())
        .index(IndexSpec::string("tags", "/tags").blind().multi())
        .index(IndexSpec::string("city", "/city"));
    let r = cx
        .store
        .collection_with_spec::<Value>("people", spec.clone())
        .await;
    if !cx.store.capabilities().blind_indexes {
        let e = expect_err(r, ErrorKind::Unsupported);
        assert!(e.message().contains("blind"), "{e}");
        assert!(cx.store.collections().await.unwrap().is_empty());
        return;
    }
    let people = r.unwrap();
    for i in 0..30 {
        let body = json!({
            "email": format!("p{i}@example.com"),
            "tags": [format!("t{}", i % 3), "all"],
            "city": if i % 2 == 0 { "Oslo" } else { "Lima" },
            "name": format!("person {i}"),
        });
        people
            .put(&format!("p{i:02}"), &body, Put::insert())
            .await
            .unwrap();
    }
    let ids = |page: stowage_core::Page<Value>| -> Vec<String> {
        page.items.into_iter().map(|r| r.id).collect()
    };
    let q = Query::new().eq("email", "p7@example.com");
    assert_eq!(ids(people.query(&q).await.unwrap()), ["p07"]);
    let q = Query::new().any_of("email", ["p1@example.com", "p2@example.com", "nobody"]);
    assert_eq!(ids(people.query(&q).await.unwrap()), ["p01", "p02"]);
    let q = Query::new().eq("tags", "t1").eq("city", "Lima");
    assert_eq!(
        ids(people.query(&q).await.unwrap()),
        ["p01", "p07", "p13", "p19", "p25"]
    );
    assert_eq!(
        people
            .count(&Filter::new().eq("tags", "all"))
            .await
            .unwrap(),
        30
    );
    let clash = json!({"email": "p3@example.com", "tags": [], "city": "Rome"});
    let e = expect_err(
        people.put("other", &clash, Put::insert()).await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(e.index(), Some("email"), "{e}");
    // Only equality: no range, prefix or order.
    for bad in [
        Query::new().gte("email", "p"),
        Query::new().prefix("email", "p1"),
        Query::new().order_by("email"),
    ] {
        let e = expect_err(people.query(&bad).await, ErrorKind::InvalidInput);
        assert!(e.message().contains("blind"), "{e}");
    }
    let e = expect_err(
        cx.store
            .collection_with_spec::<Value>(
                "numbers",
                CollectionSpec::new().index(IndexSpec::integer("n", "/n").blind()),
            )
            .await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("string index"), "{e}");
    // A blind index added later indexes the records already there.
    let wider = spec.index(IndexSpec::string("name", "/name").blind());
    let people = cx
        .store
        .collection_with_spec::<Value>("people", wider)
        .await
        .unwrap();
    let q = Query::new().eq("name", "person 12");
    assert_eq!(ids(people.query(&q).await.unwrap()), ["p12"]);
    assert_eq!(
        people
            .delete_where(&Filter::new().eq("tags", "t0"))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        people
            .count(&Filter::new().eq("tags", "all"))
            .await
            .unwrap(),
        20
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    atomic_batch,
    unique_indexes,
    ttl,
    binary_bodies,
    persistent,
    max_body_bytes,
    batch_scope,
    max_batch_ops,
    shared,
    engine_clock,
    change_feed,
    blind_indexes
];
