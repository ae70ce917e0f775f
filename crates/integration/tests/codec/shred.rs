//! Crypto-shredding on memory and on a redb file (two stores over one engine); `postgres.rs`
//! and `redis.rs` beside this file run the same test with two connections.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_codec::testkit::shred_leaves_other_namespaces_intact;
use stowage_core::backend::Backend;
use stowage_core::MemoryBackend;
use stowage_redb::{RedbBackend, RedbConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shred_on_memory() {
    let engine: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    shred_leaves_other_namespaces_intact(engine.clone(), engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shred_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let engine: Arc<dyn Backend> =
        Arc::new(RedbBackend::open(RedbConfig::new(path.to_str().unwrap())).unwrap());
    shred_leaves_other_namespaces_intact(engine.clone(), engine).await;
    // The file holds the data keys only wrapped: no namespace's data key in the clear is
    // checked by construction (they are sealed before they are written).
}
