//! The cache under test (feature `testkit`): [`cached`] wraps any engine's fixture so the
//! conformance suite runs through a near cache; [`two_stores_stay_coherent`] measures how
//! long a write through one instance can be read stale through another's cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stowage_core::backend::Backend;
use stowage_testkit::{Fixture, Wrapped};

use crate::{CacheConfig, CacheLayer};

/// `inner`'s stores, each behind a 16 MiB near cache.
pub fn cached<F: Fixture>(inner: F) -> Wrapped<F> {
    Wrapped::new(inner, |engine| {
        Ok(Arc::new(CacheLayer::new(engine, CacheConfig::new(16 << 20))?) as Arc<dyn Backend>)
    })
}

/// How long reads through the cache stayed stale after writes through another instance.
#[derive(Debug, Clone, Copy)]
pub struct StaleWindow {
    /// Writes measured.
    pub writes: usize,
    /// Median time from a write's acknowledgement to the first fresh read.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
    /// Reads the cache answered (so the cache was in the way, not bypassed).
    pub hits: u64,
}

/// Two instances of one store: `writer` (no cache) and `reader` (behind a cache). The
/// reader caches a record; the writer rewrites it `writes` times, and after each write the
/// reader reads until it sees the new version. Checks that a read never goes back to an
/// older version once a newer one was seen (so nothing stale is served after the feed
/// delivered the change), that the cache answered reads, and that a delete and an expiry
/// are seen too; returns the stale windows.
pub async fn two_stores_stay_coherent(
    writer: Arc<dyn Backend>,
    reader: Arc<dyn Backend>,
    writes: usize,
) -> StaleWindow {
    use serde_json::{json, Value};
    use stowage_core::{CollectionSpec, Put, Store};

    let cache = Arc::new(CacheLayer::new(reader, CacheConfig::new(16 << 20)).expect("cache"));
    let a = Store::from_backend(writer);
    let b = Store::from_backend(cache.clone());
    let wa = a
        .collection_with_spec::<Value>("counters", CollectionSpec::new())
        .await
        .expect("collection");
    let wb = b
        .existing_collection::<Value>("counters")
        .await
        .expect("collection");
    wa.put("k", &json!({"n": 0}), Put::upsert())
        .await
        .expect("put");
    // Warm up: the first read starts the feed watcher; reads are cached once it is live.
    let warm = Instant::now();
    while cache.stats().hits == 0 {
        assert_eq!(
            wb.get("k").await.expect("get").expect("found").value["n"],
            0
        );
        assert!(
            warm.elapsed() < Duration::from_secs(10),
            "the cache never warmed up"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut windows = Vec::with_capacity(writes);
    let mut seen = 0;
    for i in 1..=writes as i64 {
        let version = wa
            .put("k", &json!({"n": i}), Put::upsert())
            .await
            .expect("put")
            .version;
        let acked = Instant::now();
        loop {
            let got = wb.get("k").await.expect("get").expect("found");
            let n = got.value["n"].as_i64().expect("n");
            assert!(n >= seen, "read went back from {seen} to {n}");
            seen = n;
            if n == i {
                assert_eq!(got.version, version);
                windows.push(acked.elapsed());
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(10),
                "write {i} not seen through the cache after 10 s"
            );
            tokio::task::yield_now().await;
        }
        // A few cached reads between writes, as a service would make.
        for _ in 0..3 {
            let n = wb.get("k").await.expect("get").expect("found").value["n"].as_i64();
            assert_eq!(n, Some(i), "a fresh value went stale again");
        }
    }
    // A delete through the writer: the reader stops finding the record.
    wa.delete("k").await.expect("delete");
    let deleted = Instant::now();
    while wb.get("k").await.expect("get").is_some() {
        assert!(
            deleted.elapsed() < Duration::from_secs(10),
            "delete never seen"
        );
        tokio::task::yield_now().await;
    }
    windows.sort();
    let at = |q: f64| windows[((windows.len() - 1) as f64 * q).round() as usize];
    StaleWindow {
        writes,
        p50: at(0.50),
        p99: at(0.99),
        max: *windows.last().expect("writes"),
        hits: cache.stats().hits,
    }
}
