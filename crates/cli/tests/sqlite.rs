//! `stowage serve` on a SQLite file: it serves, a second process is refused the file with a
//! clear error (never a hang), and after the server is killed a new one finds everything
//! the first acknowledged.

#![cfg(feature = "backend-sqlite")]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_data_across_a_kill_and_owns_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/data/store.db", dir.path().display());
    common::serve_keeps_its_data_across_a_kill_and_owns_its_store(
        &url,
        "open in another process",
        "sqlite",
    )
    .await;
}
