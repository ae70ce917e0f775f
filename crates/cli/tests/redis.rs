//! `stowage serve` on Redis: two servers over one Redis are two instances of one service,
//! and the password in the URL never reaches their output or their errors. The Redis is a
//! private `redis-server` requiring that password.

#![cfg(feature = "backend-redis")]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::{count_across, ready, serve_with, SECRET, STOWAGE};
use stowage_redis::testkit::PrivateRedis;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_count_exactly() {
    let redis = tokio::task::spawn_blocking(|| PrivateRedis::start_with_password(SECRET))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a private redis-server must start: {e}"));
    let url = format!("redis://:{SECRET}@{}", redis.address());
    // Both read through near caches, kept coherent by the change feed.
    let cached = ["--cache-mb", "16", "--cache-bypass", "sessions"];
    let (_a, base_a, out_a) = serve_with(&url, &cached).await;
    let (_b, base_b, out_b) = serve_with(&url, &cached).await;
    count_across(&base_a, &base_b).await;
    assert_eq!(ready(&base_a).await["backend"], "redis");

    for out in [out_a, out_b] {
        let lines = out.lock().unwrap();
        assert!(lines.len() > 1, "the servers logged: {lines:?}");
        for l in lines.iter() {
            assert!(!l.contains(SECRET), "the password reached the output: {l}");
        }
    }

    // A wrong password is refused, naming the server and never the password given.
    let out = Command::new(STOWAGE)
        .args([
            "serve",
            "--url",
            &format!("redis://:wrong-{SECRET}@{}", redis.address()),
            "--addr",
            "127.0.0.1:0",
        ])
        .env_remove("STOWAGE_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains(&redis.address()), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}
