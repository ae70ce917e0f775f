//! Create, read, update, delete.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{expect_err, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{Clock, CollectionSpec, ErrorKind, IndexSpec, Put};

/// An insert is readable with version 1 and equal timestamps.
async fn insert_then_get(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let item = Item::new("a", 1);
    assert_eq!(items.insert(&item).await.unwrap(), 1);
    let got = items.get("a").await.unwrap().expect("present");
    assert_eq!(got.value, item);
    assert_eq!(got.id, "a");
    assert_eq!(got.version, 1);
    assert_eq!(got.created_at, cx.clock.now());
    assert_eq!(got.updated_at, got.created_at);
    assert_eq!(got.expires_at, None);
}

/// A second insert of the same id fails and leaves the first.
async fn insert_existing_id_is_already_exists(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    let e = expect_err(
        items.insert(&Item::new("a", 2)).await,
        ErrorKind::AlreadyExists,
    );
    assert!(e.message().contains("\"a\""), "{e}");
    assert_eq!(e.index(), None);
    assert_eq!(items.get("a").await.unwrap().unwrap().value.n, 1);
}

/// Upsert creates at 1, replaces at 2, keeps created_at, moves updated_at.
async fn upsert_creates_then_replaces(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    assert_eq!(items.upsert(&Item::new("a", 1)).await.unwrap(), 1);
    let first = items.get("a").await.unwrap().unwrap();
    cx.clock.advance(Duration::from_secs(5));
    assert_eq!(items.upsert(&Item::new("a", 2)).await.unwrap(), 2);
    let second = items.get("a").await.unwrap().unwrap();
    assert_eq!(second.value.n, 2);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(
        second.updated_at,
        first.updated_at.saturating_add(Duration::from_secs(5))
    );
}

/// Absent ids read as None.
async fn get_missing_is_none(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    assert!(items.get("nope").await.unwrap().is_none());
    items.insert(&Item::new("a", 1)).await.unwrap();
    assert!(
        items.get("A").await.unwrap().is_none(),
        "ids are case-sensitive"
    );
}

/// get_many answers in the order asked, with None for the absent.
async fn get_many_keeps_order(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    for (i, id) in ["c", "a", "b"].iter().enumerate() {
        items.insert(&Item::new(*id, i as i64)).await.unwrap();
    }
    let got = items.get_many(&["b", "zz", "a", "c", "a"]).await.unwrap();
    let ids: Vec<Option<&str>> = got
        .iter()
        .map(|r| r.as_ref().map(|r| r.id.as_str()))
        .collect();
    assert_eq!(ids, vec![Some("b"), None, Some("a"), Some("c"), Some("a")]);
    assert!(items.get_many(&[]).await.unwrap().is_empty());
}

/// delete says whether a record was there.
async fn delete_says_whether_present(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    assert!(items.delete("a").await.unwrap());
    assert!(items.get("a").await.unwrap().is_none());
    assert!(!items.delete("a").await.unwrap());
}

/// A deleted id created again never reuses a version it had (see `versions`).
async fn reinsert_after_delete_gets_a_new_version(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    items.upsert(&Item::new("a", 2)).await.unwrap();
    items.delete("a").await.unwrap();
    assert_eq!(items.insert(&Item::new("a", 3)).await.unwrap(), 3);
}

/// A collection of JSON values declared at run time, with explicit ids.
async fn json_collection_with_runtime_spec(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let spec = CollectionSpec::from_json(
        r#"{"indexes":[{"name":"severity","path":"/severity","type":"string"}]}"#,
    )
    .unwrap();
    let incidents = cx
        .store
        .collection_with_spec::<serde_json::Value>("incidents", spec)
        .await
        .unwrap();
    let body = json!({"severity": "P0", "nested": {"a": [1, 2, {"b": null}]}, "s": "ü✓"});
    assert_eq!(
        incidents
            .put("i-1", &body, Put::insert())
            .await
            .unwrap()
            .version,
        1
    );
    assert_eq!(incidents.get("i-1").await.unwrap().unwrap().value, body);
    let again = cx
        .store
        .existing_collection::<serde_json::Value>("incidents")
        .await
        .unwrap();
    assert_eq!(
        again.spec().indexes,
        vec![IndexSpec::string("severity", "/severity")]
    );
    let e = expect_err(
        cx.store
            .existing_collection::<serde_json::Value>("nothing")
            .await,
        ErrorKind::NotFound,
    );
    assert!(e.message().contains("nothing"), "{e}");
}

/// Opaque bytes in a collection without indexes (when the backend claims binary bodies).
async fn raw_bodies(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let kv = cx.plain("kv").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let r = kv.put_raw("blob", bytes.clone(), Put::upsert()).await;
    if !cx.store.capabilities().binary_bodies {
        expect_err(r, ErrorKind::Unsupported);
        return;
    }
    assert_eq!(r.unwrap().version, 1);
    let got = kv.get_raw("blob").await.unwrap().unwrap();
    assert_eq!(got.value.as_ref(), bytes.as_slice());
    let e = expect_err(kv.get("blob").await, ErrorKind::InvalidInput);
    assert!(e.message().contains("get_raw"), "{e}");
    let items = cx.items().await;
    let e = expect_err(
        items.put_raw("x", vec![1u8], Put::upsert()).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("has indexes"), "{e}");
}

/// A write answers what it stored — version, `created_at`, `updated_at`, `expires_at` —
/// equal to what a read then returns, so callers need no read after a write.
async fn write_returns_what_was_stored(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let created = items
        .put("a", &Item::new("a", 1), Put::insert())
        .await
        .unwrap();
    let now = cx.clock.now();
    assert_eq!(
        (
            created.version,
            created.created_at,
            created.updated_at,
            created.expires_at
        ),
        (1, now, now, None)
    );
    cx.clock.advance(Duration::from_secs(5));
    let ttl = cx.store.capabilities().ttl;
    let put = if ttl {
        Put::update(1).ttl(Duration::from_secs(60))
    } else {
        Put::update(1)
    };
    let updated = items.put("a", &Item::new("a", 2), put).await.unwrap();
    let later = cx.clock.now();
    assert_eq!(
        (updated.version, updated.created_at, updated.updated_at),
        (2, now, later)
    );
    assert_eq!(
        updated.expires_at,
        ttl.then(|| later.saturating_add(Duration::from_secs(60)))
    );
    let read = items.get("a").await.unwrap().unwrap();
    assert_eq!(
        (
            read.version,
            read.created_at,
            read.updated_at,
            read.expires_at
        ),
        (
            updated.version,
            updated.created_at,
            updated.updated_at,
            updated.expires_at
        )
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    insert_then_get,
    insert_existing_id_is_already_exists,
    upsert_creates_then_replaces,
    get_missing_is_none,
    get_many_keeps_order,
    delete_says_whether_present,
    reinsert_after_delete_gets_a_new_version,
    json_collection_with_runtime_spec,
    raw_bodies,
    write_returns_what_was_stored
];
