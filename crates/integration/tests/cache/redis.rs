//! Two instances (two connections) over one Redis prefix, one reading through a near
//! cache: a write through the other is never read stale once the change feed delivered
//! it; the window is printed (`cargo test -p stowage-integration --test cache redis -- --nocapture`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_core::backend::Backend;
use stowage_redis::testkit::FreshPrefix;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_stay_coherent() {
    let prefix = FreshPrefix::new();
    let writer: Arc<dyn Backend> =
        Arc::new(stowage_redis::testkit::open(&prefix.0, &[]).await.unwrap());
    let reader: Arc<dyn Backend> =
        Arc::new(stowage_redis::testkit::open(&prefix.0, &[]).await.unwrap());
    let w = stowage_cache::testkit::two_stores_stay_coherent(writer, reader, 300).await;
    println!("redis stale window: {w:?}");
    assert!(w.hits >= 900, "{w:?}");
}
