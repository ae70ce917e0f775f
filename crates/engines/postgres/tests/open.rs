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

/// A format-1 database (no escape for U+0000) is upgraded in place on open: string index
/// values holding U+0001, written unescaped then, are found by the same queries after.
#[tokio::test]
async fn format_1_values_holding_u0001_are_escaped_on_upgrade() {
    use serde_json::json;
    use stowage_core::{CollectionSpec, IndexSpec, Put, Query, Store};

    let db = FreshDatabase::new().await;
    let open = || async {
        let backend = stowage_postgres::PostgresBackend::connect(config(&db.location()))
            .await
            .unwrap();
        Store::new(backend)
    };
    let spec = CollectionSpec::new()
        .index(IndexSpec::string("name", "/name"))
        .index(IndexSpec::string("tags", "/tags").multi());
    let store = open().await;
    let coll = store
        .collection_with_spec::<serde_json::Value>("c", spec.clone())
        .await
        .unwrap();
    let body = json!({"name": "a\u{1}b", "tags": ["\u{1}", "plain"]});
    coll.put("r", &body, Put::insert()).await.unwrap();
    coll.put("s", &json!({"name": "plain"}), Put::insert())
        .await
        .unwrap();
    drop((coll, store));
    // What a format-1 build wrote: U+0001 as it is.
    let plain = db.connect().await;
    plain
        .batch_execute(
            "UPDATE \"default\".c SET ix_name = 'a' || chr(1) || 'b' WHERE id = 'r';
             UPDATE \"default\".c__tags SET value = chr(1) WHERE id = 'r' AND value <> 'plain';
             UPDATE stowage.meta SET value = 1 WHERE key = 'format';",
        )
        .await
        .unwrap();
    let store = open().await;
    let coll = store
        .collection_with_spec::<serde_json::Value>("c", spec)
        .await
        .unwrap();
    let ids = |q: Query| {
        let coll = coll.clone();
        async move {
            let page = coll.query(&q).await.unwrap();
            page.items.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(Query::new().eq("name", "a\u{1}b")).await, ["r"]);
    assert_eq!(ids(Query::new().eq("tags", "\u{1}")).await, ["r"]);
    assert_eq!(ids(Query::new().eq("tags", "plain")).await, ["r"]);
    assert_eq!(ids(Query::new().eq("name", "plain")).await, ["s"]);
    let format: i64 = plain
        .query_one("SELECT value FROM stowage.meta WHERE key = 'format'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(format, FORMAT_VERSION);
    // Strings without U+0000 or U+0001 stay as they are for psql.
    let name: String = plain
        .query_one("SELECT ix_name FROM \"default\".c WHERE id = 's'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "plain");
}
