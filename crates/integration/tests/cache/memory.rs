//! Two instances over one memory engine stay coherent through its change feed.

use std::sync::Arc;

use stowage_cache::testkit::two_stores_stay_coherent;
use stowage_core::backend::Backend;
use stowage_core::MemoryBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_memory_stay_coherent() {
    let engine: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let w = two_stores_stay_coherent(engine.clone(), engine, 200).await;
    println!("memory: {w:?}");
    assert!(w.hits >= 600, "{w:?}");
}
