//! The rekey job: interrupted and resumed under concurrent writes, it ends with every
//! record sealed by the newest key, no metadata moved and no concurrent write lost; then
//! the old key is retired and everything still reads.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{json, Value};
use stowage_codec::{keys_in_use, rekey, CodecConfig, CodecLayer, KeyRing, RekeyCheckpoint};
use stowage_core::backend::Backend;
use stowage_core::{CollectionSpec, IndexSpec, MemoryBackend, Put, Query, Store, StoredRecord};
use stowage_redb::{RedbBackend, RedbConfig};

fn sealed_store(engine: &Arc<dyn Backend>, ring: &KeyRing) -> Store {
    let config = CodecConfig::new().compress_from(64).encrypt(ring.clone());
    Store::from_backend(Arc::new(CodecLayer::new(engine.clone(), config).unwrap()))
}

fn spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::integer("n", "/n"))
        .index(IndexSpec::string("email", "/email").unique())
}

/// Every stored record of every namespace and collection, by (namespace, collection, id).
async fn snapshot(store: &Store) -> BTreeMap<(String, String, String), StoredRecord> {
    let mut out = BTreeMap::new();
    for ns in store.namespaces().await.unwrap() {
        let s = store.namespace(&ns).unwrap();
        for (name, _) in s.collections().await.unwrap() {
            let c = s.existing_collection::<Value>(&name).await.unwrap();
            let recs: Vec<StoredRecord> = c.scan_stored(None).try_collect().await.unwrap();
            for r in recs {
                out.insert((ns.clone(), name.clone(), r.id.clone()), r);
            }
        }
    }
    out
}

async fn rekey_under_writes(engine: Arc<dyn Backend>) {
    let mut ring = KeyRing::generate();
    let old = sealed_store(&engine, &ring);
    for ns in ["alpha", "beta"] {
        let s = old.namespace(ns).unwrap();
        let users = s
            .collection_with_spec::<Value>("users", spec())
            .await
            .unwrap();
        for i in 0..600 {
            let body = json!({"n": i, "email": format!("u{i}@{ns}"), "pad": "x".repeat(i % 300)});
            let put = if i % 10 == 0 {
                Put::insert().ttl(Duration::from_secs(3600))
            } else {
                Put::insert()
            };
            users.put(&format!("u{i:04}"), &body, put).await.unwrap();
        }
        let blobs = s
            .collection_with_spec::<Value>("blobs", CollectionSpec::new())
            .await
            .unwrap();
        for i in 0..50u8 {
            blobs
                .put_raw(&format!("b{i:02}"), vec![i; 100], Put::insert())
                .await
                .unwrap();
        }
    }
    let before = snapshot(&old).await;
    assert_eq!(
        keys_in_use(&engine).await.unwrap(),
        BTreeMap::from([(1, 1300)])
    );

    // Rotate: writers get the new ring first, then the rekey runs beside them.
    ring.rotate();
    let new = sealed_store(&engine, &ring);
    let writer = {
        let users = new
            .namespace("alpha")
            .unwrap()
            .existing_collection::<Value>("users")
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut last = BTreeMap::new();
            for round in 0..300 {
                let id = format!("u{:04}", (round * 7) % 600);
                let body = json!({"n": 10_000 + round, "email": format!("w{round}@alpha")});
                users.put(&id, &body, Put::upsert()).await.unwrap();
                last.insert(id, body);
                tokio::task::yield_now().await;
            }
            last
        })
    };

    // The first run dies (a panic in its task, as a killed process would) after its third
    // batch; the second resumes from the checkpoint it reported.
    let saved = Arc::new(std::sync::Mutex::new(None::<RekeyCheckpoint>));
    let config = CodecConfig::new().compress_from(64).encrypt(ring.clone());
    let first = {
        let saved = saved.clone();
        tokio::spawn(rekey(engine.clone(), config.clone(), None, move |at| {
            *saved.lock().unwrap() = Some(at.clone());
            assert!(at.records < 3 * 256, "interrupted on purpose");
        }))
    };
    assert!(first.await.unwrap_err().is_panic());
    let checkpoint = saved.lock().unwrap().clone().unwrap();
    assert!(checkpoint.records >= 768, "{checkpoint:?}");
    let mut calls = 0;
    let report = rekey(engine.clone(), config, Some(checkpoint), |_| calls += 1)
        .await
        .unwrap();
    assert!(calls > 0);
    let written = writer.await.unwrap();
    assert_eq!(report.key, 2);
    // Every record counted once, whichever run did it; the writer may have changed a few
    // between their read and their rewrite.
    assert_eq!(
        report.records + report.changed_meanwhile,
        1300,
        "{report:?}"
    );

    // Nothing lost, nothing moved: the writer's last bodies are there; every other record
    // has its old version, times, expiry and body.
    let after = snapshot(&new).await;
    assert_eq!(after.len(), before.len());
    for (key, was) in &before {
        let now = &after[key];
        match written
            .get(&key.2)
            .filter(|_| key.0 == "alpha" && key.1 == "users")
        {
            Some(body) => {
                let stored: Value = serde_json::from_slice(&now.body.bytes).unwrap();
                assert_eq!(&stored, body, "{key:?}");
            }
            None => assert_eq!(now, was, "{key:?}"),
        }
    }
    assert_eq!(
        keys_in_use(&engine).await.unwrap(),
        BTreeMap::from([(2, 1300)])
    );

    // Key 1 retired: everything reads, indexes answer.
    ring.retire(1);
    let retired = sealed_store(&engine, &ring);
    assert_eq!(snapshot(&retired).await, after);
    let users = retired
        .namespace("beta")
        .unwrap()
        .existing_collection::<Value>("users")
        .await
        .unwrap();
    let hits = users
        .query(&Query::new().eq("email", "u17@beta"))
        .await
        .unwrap();
    assert_eq!(hits.items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_on_memory() {
    rekey_under_writes(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let engine = RedbBackend::open(RedbConfig::new(path.to_str().unwrap())).unwrap();
    rekey_under_writes(Arc::new(engine)).await;
}
