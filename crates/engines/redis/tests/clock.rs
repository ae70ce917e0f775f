//! The server's clock (`clock=server`, the default) decides timestamps and expiry, so
//! instances whose own clocks disagree still agree on what has expired; records expire
//! natively.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use stowage_core::{ManualClock, Put, Store, Timestamp};
use stowage_testkit::{self as testkit, Item};
use support::{FreshPrefix, RedisFixture};

async fn store(prefix: &FreshPrefix, clock_offset_secs: i64) -> Store {
    let backend = support::open(&prefix.0, &[]).await.unwrap();
    let at = Timestamp::from_micros(Timestamp::now().as_micros() + clock_offset_secs * 1_000_000);
    Store::builder(Arc::new(backend))
        .clock(Arc::new(ManualClock::new(at)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn instances_with_skewed_clocks_agree_on_expiry() {
    let prefix = FreshPrefix::new();
    // One instance's clock runs an hour ahead, the other's an hour behind.
    let ahead = store(&prefix, 3600).await;
    let behind = store(&prefix, -3600).await;
    let items = ahead.collection::<Item>().await.unwrap();
    let ttl = Duration::from_secs(2);
    let before = Timestamp::now();
    items
        .put("t", &Item::new("t", 1), Put::insert().ttl(ttl))
        .await
        .unwrap();
    let after = Timestamp::now();
    // Written at the server's time, not the writer's.
    let there = behind.collection::<Item>().await.unwrap();
    let got = there
        .get("t")
        .await
        .unwrap()
        .expect("visible to the other instance");
    let slack = 5_000_000; // the server and this process share a machine
    assert!(
        got.created_at.as_micros() >= before.as_micros() - slack
            && got.created_at.as_micros() <= after.as_micros() + slack,
        "created_at {} is the server's time, not the writer's clock",
        got.created_at.to_rfc3339()
    );
    assert_eq!(got.expires_at, Some(got.created_at.saturating_add(ttl)));
    // The writer, whose clock says the TTL is long past, still sees it, and so does a count.
    assert!(items.get("t").await.unwrap().is_some());
    assert_eq!(items.count(&stowage_core::Filter::new()).await.unwrap(), 1);
    // Purging from the instance an hour ahead removes nothing that has not expired.
    assert_eq!(ahead.purge_expired().await.unwrap(), 0);
    // Once the server's clock passes the TTL, the record is gone for both, natively.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(items.get("t").await.unwrap().is_none());
    assert!(there.get("t").await.unwrap().is_none());
    assert_eq!(there.count(&stowage_core::Filter::new()).await.unwrap(), 0);
    assert_eq!(behind.purge_expired().await.unwrap(), 1);
}

/// The suite's check of the `engine_clock` claim, on stores that claim it.
#[test]
fn engine_clock_is_claimed_and_honoured() {
    testkit::find("capabilities::engine_clock").run(Arc::new(RedisFixture::with_clock("server")));
}
