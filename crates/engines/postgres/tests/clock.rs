//! The database's clock (`clock=database`, the default) decides timestamps and expiry, so
//! instances whose own clocks disagree still agree on what has expired.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use stowage_core::{ManualClock, Put, Store, Timestamp};
use stowage_postgres::{PostgresBackend, PostgresConfig};
use stowage_testkit::{self as testkit, Item};
use support::{FreshDatabase, PostgresFixture};

async fn store(db: &FreshDatabase, clock_offset_secs: i64) -> Store {
    let config = PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
    let backend = PostgresBackend::connect(config).await.unwrap();
    let at = Timestamp::from_micros(Timestamp::now().as_micros() + clock_offset_secs * 1_000_000);
    Store::builder(Arc::new(backend))
        .clock(Arc::new(ManualClock::new(at)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn instances_with_skewed_clocks_agree_on_expiry() {
    let db = FreshDatabase::new().await;
    // One instance's clock runs an hour ahead, the other's an hour behind.
    let ahead = store(&db, 3600).await;
    let behind = store(&db, -3600).await;
    let items = ahead.collection::<Item>().await.unwrap();
    let ten_minutes = Duration::from_secs(600);
    let before = Timestamp::now();
    items
        .put("t", &Item::new("t", 1), Put::insert().ttl(ten_minutes))
        .await
        .unwrap();
    let after = Timestamp::now();
    // Written at the database's time, not the writer's.
    let there = behind.collection::<Item>().await.unwrap();
    let got = there
        .get("t")
        .await
        .unwrap()
        .expect("visible to the other instance");
    let slack = 5_000_000; // the database and this process share a machine
    assert!(
        got.created_at.as_micros() >= before.as_micros() - slack
            && got.created_at.as_micros() <= after.as_micros() + slack,
        "created_at {} is the database's time, not the writer's clock",
        got.created_at.to_rfc3339()
    );
    assert_eq!(
        got.expires_at,
        Some(got.created_at.saturating_add(ten_minutes)),
        "the TTL runs from the database's now"
    );
    // The writer, whose clock says the TTL is long past, still sees it.
    assert!(items.get("t").await.unwrap().is_some());
    assert_eq!(items.count(&stowage_core::Filter::new()).await.unwrap(), 1);
    // Purging from the instance an hour ahead removes nothing that has not expired.
    assert_eq!(ahead.purge_expired().await.unwrap(), 0);
    // A rewrite from the instance behind moves updated_at forward, never back.
    let v2 = there
        .put("t", &Item::new("t", 2), Put::upsert())
        .await
        .unwrap();
    let now_there = there.get("t").await.unwrap().unwrap();
    assert_eq!(now_there.version, v2.version);
    assert!(now_there.updated_at >= got.updated_at);
    assert_eq!(now_there.created_at, got.created_at);
}

/// The suite's check of the `engine_clock` claim, on stores that claim it.
#[test]
fn engine_clock_is_claimed_and_honoured() {
    testkit::find("capabilities::engine_clock")
        .run(Arc::new(PostgresFixture::with_clock("database")));
}
