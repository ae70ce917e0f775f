//! `stowage serve` on a sled folder: it serves, a second process is refused the folder with a
//! clear error (never a hang), and after the server is killed a new one finds everything
//! the first acknowledged.

#![cfg(feature = "backend-sled")]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_data_across_a_kill_and_owns_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}/data/store.sled", dir.path().display());
    common::serve_keeps_its_data_across_a_kill_and_owns_its_store(
        &url,
        "already open in another process",
        "sled",
    )
    .await;
}
