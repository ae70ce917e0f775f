//! Expiry: expired records are invisible at once; purge reclaims them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;

use super::{expect_err, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{Clock, CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query};

const MIN: Duration = Duration::from_secs(60);

/// Whether the backend claims TTLs; when it does not, checks that a TTL write is refused.
async fn ttl_supported(cx: &Ctx) -> bool {
    if cx.store.capabilities().ttl {
        return true;
    }
    let items = cx.items().await;
    let r = items
        .put("t", &Item::new("t", 1), Put::upsert().ttl(MIN))
        .await;
    expect_err(r, ErrorKind::Unsupported);
    false
}

/// After its TTL a record is gone from get, get_many, query, count and scan, before any
/// purge.
async fn expired_records_are_invisible_everywhere(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !ttl_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    items
        .put("short", &Item::new("short", 1), Put::insert().ttl(MIN))
        .await
        .unwrap();
    items
        .put("long", &Item::new("long", 1), Put::insert().ttl(10 * MIN))
        .await
        .unwrap();
    items.insert(&Item::new("forever", 1)).await.unwrap();
    let got = items.get("short").await.unwrap().unwrap();
    assert_eq!(got.expires_at, Some(cx.clock.now().saturating_add(MIN)));

    cx.clock.advance(MIN);
    assert!(
        items.get("short").await.unwrap().is_none(),
        "expired at exactly expires_at"
    );
    let many = items.get_many(&["short", "long", "forever"]).await.unwrap();
    assert!(many[0].is_none() && many[1].is_some() && many[2].is_some());
    let q = items.query(&Query::new().eq("n", 1)).await.unwrap();
    let ids: Vec<_> = q.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["forever", "long"]);
    let ordered = items.query(&Query::new().order_by("n")).await.unwrap();
    assert_eq!(ordered.items.len(), 2);
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 2);
    assert_eq!(items.count(&Filter::new().eq("n", 1)).await.unwrap(), 2);
    let scanned: Vec<_> = items.scan().try_collect().await.unwrap();
    assert_eq!(scanned.len(), 2);
    // Preconditions see it gone too.
    expect_err(
        items.update(&Item::new("short", 2), 1).await,
        ErrorKind::Conflict,
    );
    assert!(!items.delete("short").await.unwrap());
}

/// purge removes expired records from storage and counts them; live ones stay.
async fn purge_reclaims_expired(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !ttl_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    for i in 0..10 {
        let ttl = if i < 6 { MIN } else { 100 * MIN };
        items
            .put(
                &format!("k{i}"),
                &Item::new(format!("k{i}"), i),
                Put::insert().ttl(ttl),
            )
            .await
            .unwrap();
    }
    let before = cx.store.stats().await.unwrap();
    let stored = |s: &[stowage_core::CollectionStats]| {
        s.iter()
            .find(|c| c.collection == "items")
            .map(|c| c.records)
    };
    assert_eq!(stored(&before), Some(10));
    assert_eq!(
        cx.store.purge_expired().await.unwrap(),
        0,
        "nothing is due yet"
    );
    cx.clock.advance(MIN + Duration::from_secs(1));
    assert_eq!(cx.store.purge_expired().await.unwrap(), 6);
    let after = cx.store.stats().await.unwrap();
    assert_eq!(stored(&after), Some(4));
    assert_eq!(cx.store.purge_expired().await.unwrap(), 0);
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 4);
    // Index entries went with the records: an insert reusing a purged id works.
    items.insert(&Item::new("k0", 0)).await.unwrap();
    assert_eq!(items.count(&Filter::new().eq("n", 0)).await.unwrap(), 1);
}

/// A record without TTL never expires.
async fn no_ttl_never_expires(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    cx.clock.advance(Duration::from_secs(100 * 365 * 24 * 3600));
    let got = items.get("a").await.unwrap().unwrap();
    assert_eq!(got.expires_at, None);
    assert_eq!(cx.store.purge_expired().await.unwrap(), 0);
}

/// The collection's default TTL applies to writes without one; a write's TTL overrides it.
async fn default_ttl_and_per_write_ttl(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let spec = CollectionSpec::new()
        .index(IndexSpec::string("s", "/s"))
        .default_ttl(Duration::from_secs(3600));
    let r = cx
        .store
        .collection_with_spec::<serde_json::Value>("sessions", spec.clone())
        .await;
    if !cx.store.capabilities().ttl {
        expect_err(r, ErrorKind::Unsupported);
        return;
    }
    let sessions = r.unwrap();
    let now = cx.clock.now();
    sessions
        .put("d", &serde_json::json!({"s": "x"}), Put::insert())
        .await
        .unwrap();
    sessions
        .put(
            "o",
            &serde_json::json!({"s": "x"}),
            Put::insert().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let d = sessions.get("d").await.unwrap().unwrap();
    assert_eq!(
        d.expires_at,
        Some(now.saturating_add(Duration::from_secs(3600)))
    );
    let o = sessions.get("o").await.unwrap().unwrap();
    assert_eq!(
        o.expires_at,
        Some(now.saturating_add(Duration::from_secs(60)))
    );
    cx.clock.advance(Duration::from_secs(61));
    assert_eq!(
        sessions.count(&Filter::new().eq("s", "x")).await.unwrap(),
        1
    );
}

/// An id whose record expired can be inserted again, at version 1.
async fn expired_id_can_be_inserted_again(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !ttl_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    items
        .put("a", &Item::new("a", 1), Put::insert().ttl(MIN))
        .await
        .unwrap();
    items
        .put("a", &Item::new("a", 1), Put::update(1).ttl(MIN))
        .await
        .unwrap();
    cx.clock.advance(2 * MIN);
    // The expired record's versions are not given again.
    assert_eq!(items.insert(&Item::new("a", 2)).await.unwrap(), 3);
    let got = items.get("a").await.unwrap().unwrap();
    assert_eq!((got.version, got.value.n, got.expires_at), (3, 2, None));
    assert_eq!(items.count(&Filter::new().eq("n", 1)).await.unwrap(), 0);
}

/// Every write sets the expiry anew: with a TTL it moves, without one it goes.
async fn rewrite_sets_expiry_anew(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !ttl_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    items
        .put("a", &Item::new("a", 1), Put::insert().ttl(MIN))
        .await
        .unwrap();
    cx.clock.advance(MIN / 2);
    items
        .put("a", &Item::new("a", 2), Put::update(1).ttl(MIN))
        .await
        .unwrap();
    cx.clock.advance(MIN / 2 + Duration::from_secs(1));
    assert_eq!(items.get("a").await.unwrap().unwrap().version, 2, "renewed");
    items.upsert(&Item::new("a", 3)).await.unwrap();
    cx.clock.advance(100 * MIN);
    let got = items.get("a").await.unwrap().unwrap();
    assert_eq!((got.version, got.expires_at), (3, None));
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    expired_records_are_invisible_everywhere,
    purge_reclaims_expired,
    no_ttl_never_expires,
    default_ttl_and_per_write_ttl,
    expired_id_can_be_inserted_again,
    rewrite_sets_expiry_anew
];
