//! `stowage serve` on a sled folder: it serves, a second process is refused the folder with
//! a clear error (never a hang), and after the server is killed a new one finds everything
//! the first acknowledged.

#![cfg(feature = "backend-sled")]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{increment, ready, serve, start_counter, STOWAGE};
use reqwest::{Client, StatusCode};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_data_across_a_kill_and_owns_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}/data/store.sled", dir.path().display());
    let (mut first, base, _out) = serve(&url).await;
    start_counter(&base).await;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move { increment(&Client::new(), &base, 25).await })
        })
        .collect();
    for t in clients {
        t.await.unwrap();
    }

    // Another process cannot open the file while the server has it: refused at once.
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(STOWAGE)
            .args(["serve", "--url", &url, "--addr", "127.0.0.1:0"])
            .env_remove("STOWAGE_CONFIG")
            .output(),
    )
    .await
    .expect("a second process must be refused, not left waiting")
    .unwrap();
    assert!(!out.status.success());
    let shown = String::from_utf8_lossy(&out.stderr);
    assert!(shown.contains("already open in another process"), "{shown}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // SIGKILL: no shutdown. Every acknowledged write was flushed before it was answered.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let (_second, base, _out) = serve(&url).await;
    let r = Client::new()
        .get(format!("{base}/v1/app/counters/records/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"201\"");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["n"], 200);
    assert_eq!(ready(&base).await["backend"], "sled");
}
