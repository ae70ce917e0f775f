//! Opening a database: the catalog made once, whoever comes first; a newer format refused.

#![allow(clippy::unwrap_used)]

mod support;

use stowage_core::ErrorKind;
use stowage_postgres::{PostgresConfig, PostgresPool, FORMAT_VERSION};
use support::FreshDatabase;

fn config(location: &str) -> PostgresConfig {
    PostgresConfig::from_url_parts(location, &[("pool_size".into(), "2".into())]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_opening_a_fresh_database_at_once_all_succeed() {
    let db = FreshDatabase::new().await;
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let c = config(&db.location());
            tokio::spawn(async move { PostgresPool::connect(&c).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    let rows = db
        .connect()
        .await
        .query("SELECT value FROM stowage.meta WHERE key = 'format'", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), FORMAT_VERSION);
}

#[tokio::test]
async fn a_newer_catalog_format_is_refused_and_left_alone() {
    let db = FreshDatabase::new().await;
    PostgresPool::connect(&config(&db.location()))
        .await
        .unwrap();
    let plain = db.connect().await;
    plain
        .execute(
            "UPDATE stowage.meta SET value = $1 WHERE key = 'format'",
            &[&(FORMAT_VERSION + 1)],
        )
        .await
        .unwrap();
    let e = PostgresPool::connect(&config(&db.location()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("upgrade Stowage"), "{e}");
    let format: i64 = plain
        .query_one("SELECT value FROM stowage.meta WHERE key = 'format'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(format, FORMAT_VERSION + 1, "left untouched");
}
