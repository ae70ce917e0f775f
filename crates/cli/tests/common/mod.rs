//! What the tests of `stowage serve` have in common: starting a server
//! process and reading its output, the `If-Match` increments two servers race on, and the
//! kill test of the embedded stores.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `stowage` binary under test.
pub(crate) const STOWAGE: &str = env!("CARGO_BIN_EXE_stowage");
/// A password that must never reach any output.
pub(crate) const SECRET: &str = "hunter2-not-shown";

/// Every line a server prints, on stdout or stderr.
pub(crate) type Output = Arc<Mutex<Vec<String>>>;

/// Starts `stowage serve --url URL` on port 0; the server, its address and its output.
pub(crate) async fn serve(url: &str) -> (Child, String, Output) {
    serve_with(url, &[]).await
}

/// [`serve`] with more arguments.
pub(crate) async fn serve_with(url: &str, extra: &[&str]) -> (Child, String, Output) {
    let mut child = Command::new(STOWAGE)
        .args(["serve", "--url", url, "--addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("STOWAGE_CONFIG")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output: Output = Arc::default();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    output.lock().unwrap().push(line.clone());
    let base = line.split(" on ").nth(1).unwrap().trim().to_owned();
    let out = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = stdout.next_line().await {
            out.lock().unwrap().push(l);
        }
    });
    let out = output.clone();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(l)) = stderr.next_line().await {
            out.lock().unwrap().push(l);
        }
    });
    (child, base, output)
}

pub(crate) async fn increment(c: &Client, base: &str, times: u32) {
    let url = format!("{base}/v1/app/counters/records/hits");
    for _ in 0..times {
        loop {
            let r = c.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let etag = r.headers()["etag"].to_str().unwrap().to_owned();
            let n = r.json::<serde_json::Value>().await.unwrap()["n"]
                .as_i64()
                .unwrap();
            let put = c
                .put(&url)
                .header("if-match", etag)
                .json(&serde_json::json!({ "n": n + 1 }))
                .send()
                .await
                .unwrap();
            match put.status() {
                StatusCode::OK => break,
                StatusCode::PRECONDITION_FAILED => continue,
                other => panic!("unexpected {other}: {}", put.text().await.unwrap()),
            }
        }
    }
}

/// Declares collection `counters` of namespace `app` and writes its record `hits` at 0.
pub(crate) async fn start_counter(base: &str) {
    let c = Client::new();
    let r = c
        .put(format!("{base}/v1/app/collections/counters"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = c
        .put(format!("{base}/v1/app/counters/records/hits"))
        .json(&serde_json::json!({ "n": 0 }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// What `/readyz` answers.
pub(crate) async fn ready(base: &str) -> serde_json::Value {
    Client::new()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two servers over one shared store are two instances of one service: a record written
/// through one is read through the other, and 16 clients split across both, doing 50
/// `If-Match` increments each, end at exactly 800.
pub(crate) async fn count_across(base_a: &str, base_b: &str) {
    let c = Client::new();
    start_counter(base_a).await;
    // Written through one, read through the other.
    let r = c
        .get(format!("{base_b}/v1/app/counters/records/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // 16 clients split across both servers, 50 If-Match increments each.
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let base = if i % 2 == 0 { base_a } else { base_b }.to_owned();
            tokio::spawn(async move { increment(&Client::new(), &base, 50).await })
        })
        .collect();
    for t in clients {
        t.await.unwrap();
    }
    let r = c
        .get(format!("{base_b}/v1/app/counters/records/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"801\"");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["n"], 800);
}

/// `stowage serve` on an embedded store at `url` (one owner process): it serves 200
/// increments from 8 clients, a second process is refused the store at once with a message
/// holding `refused`, and after a SIGKILL a new server finds every acknowledged increment
/// and reports `backend`.
pub(crate) async fn serve_keeps_its_data_across_a_kill_and_owns_its_store(
    url: &str,
    refused: &str,
    backend: &str,
) {
    let url = url.to_owned();
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
    assert!(shown.contains(refused), "{shown}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // SIGKILL: no shutdown, no checkpoint. Every acknowledged write was made durable.
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
    assert_eq!(ready(&base).await["backend"], backend);
}
