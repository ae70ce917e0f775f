//! `stowage serve` on PostgreSQL: two servers over one database are two instances of one
//! service, the password in the URL never reaches their output, and `/readyz` follows the
//! database down and back up.

#![cfg(feature = "backend-postgres")]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{count_across, ready, serve, serve_with, SECRET, STOWAGE};
use reqwest::{Client, StatusCode};
use stowage_postgres::testkit::{ScratchDatabase, TestServer};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_count_exactly() {
    let db = ScratchDatabase::create("stowage_cli_test")
        .unwrap_or_else(|e| panic!("PostgreSQL must run at STOWAGE_TEST_POSTGRES_URL: {e}"));
    // The server's password, or one trust auth ignores: either is kept out of the output.
    let server = TestServer::from_env();
    let secret = server.password.clone().unwrap_or_else(|| SECRET.to_owned());
    let location = server.location(db.name());
    let url = format!(
        "postgres://{}:{secret}@{}",
        server.user,
        location.split_once('@').unwrap().1
    );
    // The second reads through a near cache: its reads follow the first's writes through
    // the change feed, and an If-Match on a stale read fails and is retried.
    let (_a, base_a, out_a) = serve(&url).await;
    let (_b, base_b, out_b) = serve_with(&url, &["--cache-mb", "16"]).await;
    count_across(&base_a, &base_b).await;
    // Ready, with the database's latency.
    let ready = ready(&base_a).await;
    assert_eq!(ready["backend"], "postgres");
    assert!(ready["latency_ms"].as_f64().unwrap() > 0.0, "{ready}");

    for out in [out_a, out_b] {
        let lines = out.lock().unwrap();
        assert!(lines.len() > 1, "the servers logged: {lines:?}");
        for l in lines.iter() {
            assert!(!l.contains(&secret), "the password reached the output: {l}");
        }
    }
}

#[tokio::test]
async fn a_server_it_cannot_reach_is_named_without_the_password() {
    let out = Command::new(STOWAGE)
        .args([
            "serve",
            "--url",
            &format!("postgres://postgres:{SECRET}@127.0.0.1:1/nowhere?connect_timeout_ms=2000"),
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
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

/// `/readyz` says the database is down while it is (503, `unavailable`, within the connect
/// timeout) and ready again, with its latency, once it is back; the server is never
/// restarted. The database is a private cluster the test crashes and restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database_down_and_back() {
    use stowage_postgres::testkit::PrivateCluster;
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a private PostgreSQL cluster must start: {e}")),
    );
    let url = format!(
        "postgres://{}?connect_timeout_ms=1000",
        cluster.location("postgres")
    );
    let (_server, base, _out) = serve(&url).await;
    let c = Client::new();
    let readyz = |c: Client, base: String| async move {
        let r = c.get(format!("{base}/readyz")).send().await.unwrap();
        let status = r.status();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = readyz(c.clone(), base.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["latency_ms"].as_f64().unwrap() > 0.0, "{body}");

    let down = cluster.clone();
    tokio::task::spawn_blocking(move || down.crash())
        .await
        .unwrap()
        .unwrap();
    let asked = std::time::Instant::now();
    let (status, body) = readyz(c.clone(), base.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["kind"], "unavailable", "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        asked.elapsed()
    );

    let up = cluster.clone();
    tokio::task::spawn_blocking(move || up.start_again())
        .await
        .unwrap()
        .unwrap();
    // A pooled connection that died with the server fails once, then is replaced.
    let mut ready = false;
    for _ in 0..50 {
        let (status, body) = readyz(c.clone(), base.clone()).await;
        if status == StatusCode::OK {
            assert!(body["latency_ms"].as_f64().unwrap() > 0.0, "{body}");
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once the database is back");
}
