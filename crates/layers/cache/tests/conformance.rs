//! The conformance suite through the near cache on memory (the cache is outside the engine:
//! every engine sees the same calls), and two instances over one memory engine staying
//! coherent through its change feed. PostgreSQL and Redis run the coherence test in their
//! crates.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_cache::testkit::{cached, two_stores_stay_coherent};
use stowage_core::backend::Backend;
use stowage_core::MemoryBackend;
use stowage_testkit::MemoryFixture;

stowage_testkit::conformance_tests!(cached(MemoryFixture::new()));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_memory_stay_coherent() {
    let engine: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let w = two_stores_stay_coherent(engine.clone(), engine, 200).await;
    println!("memory: {w:?}");
    assert!(w.hits >= 600, "{w:?}");
}
