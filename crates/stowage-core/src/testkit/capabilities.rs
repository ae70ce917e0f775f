//! Every capability a backend claims holds; every one it does not claim answers Unsupported.

use std::sync::Arc;
use std::time::Duration;

use super::{expect_err, Account, Ctx, Fixture, Item};
use crate::{CollectionSpec, ErrorKind, Put};

/// `atomic_batch`: a failing op undoes the ops before it; unclaimed, batches of two are refused.
pub async fn atomic_batch(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("taken", 0)).await.unwrap();
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("first", 1))
        .insert(&items, &Item::new("taken", 2));
    let r = b.commit().await;
    if cx.store.capabilities().atomic_batch {
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
