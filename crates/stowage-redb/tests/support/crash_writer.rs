//! Test helper for the crash and lock tests: opens a store and writes to it from 8 tasks until
//! killed, printing `ack ID N VERSION` after each write the store acknowledged.
//!
//! `stowage-redb-crash-writer PATH` — not a tool for users.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use stowage_core::{CollectionSpec, IndexSpec, Put, Store};
use stowage_redb::{RedbBackend, RedbConfig};

/// The collection the crash test writes and checks.
pub fn spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::integer("n", "/n"))
        .index(IndexSpec::integer("n_covering", "/n").covering())
        .index(IndexSpec::string("tags", "/tags").multi())
}

#[tokio::main]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: stowage-redb-crash-writer PATH");
    let backend = RedbBackend::open(RedbConfig::new(path)).expect("open the store");
    let store = Store::new(backend);
    let coll = store
        .collection_with_spec::<serde_json::Value>("crash", spec())
        .await
        .expect("open the collection");
    // A run number keeps ids unique across the parent's restarts.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    println!("ready");
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let coll = coll.clone();
            tokio::spawn(async move {
                for seq in 0u64.. {
                    // Every third write rewrites the task's previous record; some carry a TTL.
                    let id = format!("r{run}-t{task}-{}", if seq % 3 == 2 { seq - 1 } else { seq });
                    let n = (seq * 7 + task) % 50;
                    let body = json!({"n": n, "tags": [format!("t{}", n % 4), "all"], "pad": "x".repeat(100)});
                    let mut put = Put::upsert();
                    if seq % 5 == 0 {
                        put = put.ttl(Duration::from_secs(3600));
                    }
                    let version = coll.put(&id, &body, put).await.expect("write").version;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {id} {n} {version}");
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}
