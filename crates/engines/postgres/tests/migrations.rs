//! Spec changes on a live collection: an index added to 10,000 records is backfilled in
//! chunks while another instance keeps writing, and ends exact; a change that cannot apply
//! is refused and changes nothing. Each change is recorded in the namespace's
//! `__migrations` table.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use stowage_core::{CollectionSpec, ErrorKind, IndexSpec, Put, Query, Store};
use stowage_postgres::{PostgresBackend, PostgresConfig};
use support::FreshDatabase;

async fn store(db: &FreshDatabase) -> Store {
    let config = PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
    Store::new(PostgresBackend::connect(config).await.unwrap())
}

const RECORDS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_added_under_load_is_backfilled_exactly() {
    let db = FreshDatabase::new().await;
    let first = store(&db).await;
    let second = store(&db).await;
    let plain = CollectionSpec::new();
    let events = first
        .collection_with_spec::<Value>("events", plain.clone())
        .await
        .unwrap();
    for chunk in 0..RECORDS / 500 {
        let mut batch = first.batch();
        for i in chunk * 500..(chunk + 1) * 500 {
            batch.put(
                &events,
                &format!("e{i:05}"),
                &json!({"kind": format!("k{}", i % 10), "n": i}),
                Put::insert(),
            );
        }
        batch.commit().await.unwrap();
    }

    // The other instance rewrites records (changing their kind) and adds new ones while
    // the index is built.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let theirs = second
            .collection_with_spec::<Value>("events", plain.clone())
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = if i.is_multiple_of(2) {
                    format!("e{:05}", (i * 7919) % RECORDS)
                } else {
                    format!("new{i:06}")
                };
                theirs
                    .put(
                        &id,
                        &json!({"kind": format!("w{}", i % 3), "n": i}),
                        Put::upsert(),
                    )
                    .await
                    .unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    while writes.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let indexed = plain.clone().index(IndexSpec::string("kind", "/kind"));
    let events = first
        .collection_with_spec::<Value>("events", indexed)
        .await
        .unwrap();
    let during = writes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(during > 20, "the other instance wrote during the build");

    // Every row's index column agrees with its body.
    let client = db.connect().await;
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM \"default\".events \
             WHERE ix_kind IS DISTINCT FROM body::jsonb->>'kind'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "rows whose ix_kind disagrees with their body");
    let total: i64 = client
        .query_one("SELECT count(*) FROM \"default\".events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(total as u64 >= RECORDS);
    // And queries through the index see them all.
    let mut through_index = 0;
    for kind in (0..10)
        .map(|k| format!("k{k}"))
        .chain((0..3).map(|k| format!("w{k}")))
    {
        through_index += events
            .count(&stowage_core::Filter::new().eq("kind", kind.as_str()))
            .await
            .unwrap();
    }
    assert_eq!(through_index, total as u64);
    let page = events
        .query(&Query::new().eq("kind", "k3").limit(5))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);

    let changes: Vec<String> = client
        .query(
            "SELECT change FROM \"default\".__migrations WHERE collection = 'events' \
             ORDER BY revision",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        changes[0].starts_with("create collection events"),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.contains("add index kind (building)")),
        "{changes:?}"
    );
    assert!(
        changes.iter().any(|c| c.contains("index kind built")),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_change_that_cannot_apply_changes_nothing() {
    let db = FreshDatabase::new().await;
    let store = store(&db).await;
    let plain = CollectionSpec::new();
    let people = store
        .collection_with_spec::<Value>("people", plain.clone())
        .await
        .unwrap();
    for (id, email) in [
        ("a", "x@example.com"),
        ("b", "x@example.com"),
        ("c", "y@example.com"),
    ] {
        people
            .put(id, &json!({ "email": email }), Put::insert())
            .await
            .unwrap();
    }
    let unique = plain
        .clone()
        .index(IndexSpec::string("email", "/email").unique());
    let e = store
        .collection_with_spec::<Value>("people", unique)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.message().contains("email"), "{e}");
    // The spec and the table are as they were.
    assert_eq!(
        store
            .backend()
            .load_spec("default", "people")
            .await
            .unwrap()
            .unwrap()
            .spec,
        plain
    );
    let client = db.connect().await;
    let columns: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'default' AND table_name = 'people' AND column_name = 'ix_email'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 0, "the half-built column is gone");
    // A type change of an existing index is refused before anything is touched.
    let typed = plain.clone().index(IndexSpec::string("email", "/email"));
    store
        .collection_with_spec::<Value>("people", typed)
        .await
        .unwrap();
    let retyped = plain.index(IndexSpec::integer("email", "/email"));
    let e = store
        .collection_with_spec::<Value>("people", retyped)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(
        people.get("a").await.unwrap().unwrap().value["email"],
        "x@example.com"
    );
}
