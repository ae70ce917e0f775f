//! Every capability a backend claims holds; every one it does not claim answers Unsupported.

use std::sync::Arc;
use std::time::Duration;

use super::{expect_err, Account, Ctx, Fixture, Item};
use crate::{BatchScope, ChangeFeed, CollectionSpec, ErrorKind, Put};

/// `atomic_batch`: a failing op undoes the ops before it; unclaimed, batches of two are refused.
pub async fn atomic_batch(f: Arc<dyn Fixture>) {
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
pub async fn unique_indexes(f: Arc<dyn Fixture>) {
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
pub async fn ttl(f: Arc<dyn Fixture>) {
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
pub async fn binary_bodies(f: Arc<dyn Fixture>) {
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
pub async fn persistent(f: Arc<dyn Fixture>) {
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
pub async fn max_body_bytes(f: Arc<dyn Fixture>) {
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
pub async fn batch_scope(f: Arc<dyn Fixture>) {
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
pub async fn max_batch_ops(f: Arc<dyn Fixture>) {
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
pub async fn shared(f: Arc<dyn Fixture>) {
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
pub async fn engine_clock(f: Arc<dyn Fixture>) {
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
pub async fn change_feed(f: Arc<dyn Fixture>) {
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
