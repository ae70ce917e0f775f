//! Faults: the server kills the store's connections in the middle of a write load. Calls
//! fail with `Unavailable` or succeed, the store recovers without being reopened, and no
//! row disagrees with its index columns or side tables afterwards.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stowage_core::testkit::Item;
use stowage_core::{ErrorKind, Put, Store};
use stowage_postgres::{PostgresBackend, PostgresConfig};
use support::FreshDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_fail_cleanly_and_the_store_recovers() {
    let db = FreshDatabase::new().await;
    let config = PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
    let store = Store::new(PostgresBackend::connect(config).await.unwrap());
    let items = store.collection::<Item>().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, unavailable) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (items, stop, ok, unavailable) =
                (items.clone(), stop.clone(), ok.clone(), unavailable.clone());
            tokio::spawn(async move {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{w}-{}", i % 50);
                    let upsert = i % 3 != 0;
                    let r = if upsert {
                        items
                            .put(&id, &Item::new(&id, i), Put::upsert())
                            .await
                            .map(drop)
                    } else {
                        items.delete(&id).await.map(drop)
                    };
                    match r {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.kind() == ErrorKind::Unavailable => {
                            unavailable.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => panic!("a killed connection must give Unavailable: {e}"),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    let admin = db.connect().await;
    let mut killed = 0i64;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        killed += admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND application_name = 'stowage'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(killed > 0, "connections were killed");
    assert!(ok.load(Ordering::Relaxed) > 0);
    eprintln!(
        "killed {killed} connections; {} calls succeeded, {} were Unavailable",
        ok.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed)
    );

    // The same store works again: a killed connection is not handed out twice.
    let mut failures = 0;
    for i in 0..20 {
        if items
            .insert(&Item::new(format!("after-{i}"), i))
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    assert!(
        failures <= 1,
        "{failures} of 20 writes failed after the faults"
    );
    assert_eq!(items.get("after-19").await.unwrap().unwrap().value.n, 19);

    // No row disagrees with its index columns or its side table.
    let wrong: i64 = admin
        .query_one(
            "SELECT count(*) FROM \"default\".items t \
             WHERE t.ix_n IS DISTINCT FROM (t.body::jsonb->>'n')::bigint \
             OR t.ix_name IS DISTINCT FROM t.body::jsonb->>'name' \
             OR ARRAY(SELECT s.value FROM \"default\".items__tags s WHERE s.id = t.id \
                      ORDER BY s.value) \
                IS DISTINCT FROM ARRAY(SELECT DISTINCT v FROM \
                      jsonb_array_elements_text(t.body::jsonb->'tags') AS v ORDER BY v)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        wrong, 0,
        "rows whose index entries disagree with their body"
    );
    let orphans: i64 = admin
        .query_one(
            "SELECT count(*) FROM \"default\".items__tags s \
             WHERE NOT EXISTS (SELECT 1 FROM \"default\".items t WHERE t.id = s.id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
}
