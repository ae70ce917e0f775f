//! Reads share one snapshot until the next commit: they must still see every write that was
//! acknowledged before they began, and a store that only writes must pin no old pages.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stowage_core::backend::Backend;
use stowage_core::{CollectionSpec, IndexSpec, Query, Record, Store};
use stowage_redb::{RedbBackend, RedbConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    id: String,
    n: u64,
    pad: String,
}

impl Record for Doc {
    const COLLECTION: &'static str = "docs";
    fn spec() -> CollectionSpec {
        CollectionSpec::new().index(IndexSpec::integer("n", "/n"))
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_an_acknowledged_write_sees_it_from_either_instance() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> =
        Arc::new(RedbBackend::open(RedbConfig::new(dir.path().join("s.redb"))).unwrap());
    let store = |b: &Arc<dyn Backend>| Store::builder(b.clone()).build().unwrap();
    let (a, b) = (store(&backend), store(&backend));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                let writer = a.collection::<Doc>().await.unwrap();
                let reader = b.collection::<Doc>().await.unwrap();
                let id = format!("d{t}");
                for n in 0..200 {
                    let doc = Doc {
                        id: id.clone(),
                        n: n * 8 + t,
                        pad: String::new(),
                    };
                    writer.upsert(&doc).await.unwrap();
                    // Point read and query, both through the other instance.
                    let got = reader.get(&id).await.unwrap().unwrap();
                    assert_eq!(
                        got.value.n, doc.n,
                        "task {t} write {n}: get saw an older write"
                    );
                    let hits = reader
                        .query(&Query::new().eq("n", doc.n))
                        .await
                        .unwrap()
                        .items;
                    assert_eq!(hits.len(), 1, "task {t} write {n}: query missed the write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn writes_after_a_read_do_not_grow_the_file_with_old_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::new(RedbBackend::open(RedbConfig::new(&path)).unwrap());
    let docs = store.collection::<Doc>().await.unwrap();
    let pad = "x".repeat(64 << 10);
    let doc = |n| Doc {
        id: "big".into(),
        n,
        pad: pad.clone(),
    };
    docs.upsert(&doc(0)).await.unwrap();
    // The read leaves a shared snapshot behind; the commits below must let it go, or
    // every overwritten 64 KiB version stays pinned in the file.
    assert!(docs.get("big").await.unwrap().is_some());
    for n in 1..=500 {
        docs.upsert(&doc(n)).await.unwrap();
    }
    drop((docs, store));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size < 8 << 20,
        "500 overwrites of one 64 KiB record left a {size}-byte file (32 MB if every version \
         were pinned)"
    );
}
