//! The client against the shared PostgreSQL (`STOWAGE_TEST_POSTGRES_URL`): a missing server
//! fails these tests, in CI and out of it.

#![allow(clippy::unwrap_used)]

mod support;

use stowage_core::ErrorKind;
use stowage_postgres::testkit::TestServer;
use stowage_postgres::{PostgresConfig, PostgresPool};
use support::FreshDatabase;

/// `USER:PASSWORD@HOST:PORT/DB` on the shared server: its password, or one trust auth ignores.
fn with_password(db: &str) -> (String, String) {
    let s = TestServer::from_env();
    let password = s
        .password
        .clone()
        .unwrap_or_else(|| "unused-by-trust".into());
    let location = format!("{}:{password}@{}:{}/{db}", s.user, s.host, s.port);
    (location, password)
}

fn config(location: &str, params: &[(&str, &str)]) -> PostgresConfig {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PostgresConfig::from_url_parts(location, &params).unwrap()
}

#[tokio::test]
async fn connects_and_pings_the_real_server() {
    let db = FreshDatabase::new().await;
    let (location, password) = with_password(&db.name);
    let pool = PostgresPool::connect(&config(&location, &[("pool_size", "2")]))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run at STOWAGE_TEST_POSTGRES_URL: {e}"));
    let latency = pool.ping().await.unwrap();
    assert!(latency.as_secs() < 5, "{latency:?}");
    let s = TestServer::from_env();
    assert_eq!(
        pool.target(),
        format!("{}@{}:{}/{}", s.user, s.host, s.port, db.name)
    );
    assert!(!format!("{pool:?}").contains(&password));
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_keeps_the_password_out() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let e = PostgresPool::connect(&config(
        "postgres:hunter2@127.0.0.1:1/test",
        &[("connect_timeout_ms", "2000")],
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("postgres@127.0.0.1:1/test"), "{e}");
    for shown in [e.to_string(), format!("{e:?}"), format!("{e:#}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[tokio::test]
async fn an_unknown_database_is_reported_by_name() {
    let (location, password) = with_password("stowage_no_such_database");
    let e = PostgresPool::connect(&config(&location, &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("stowage_no_such_database"), "{e}");
    assert!(!format!("{e:?}").contains(&password), "{e:?}");
}

/// The identifiers `schema.rs` derives are ones PostgreSQL takes as they are: a reserved
/// schema name mapped, a 63-byte table, a hashed index column and B-tree name.
#[tokio::test]
async fn derived_names_are_accepted_by_postgresql_unchanged() {
    use stowage_postgres::schema::{btree_name, index_column, quote, records_table, schema_name};
    let client = support::connect(None).await;
    // Its own schema: other runs share the server.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ns = format!("pg_test_{}_{nanos}", std::process::id());
    let schema = schema_name(&ns);
    let table = records_table(&format!("T{}", "x".repeat(62)));
    let column = index_column(&"I".repeat(63));
    let btree = btree_name(&table, &column);
    let sql = format!(
        "CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (id text COLLATE \"C\" PRIMARY KEY, {c} bigint); \
         CREATE INDEX {b} ON {s}.{t} ({c});",
        s = quote(&schema),
        t = quote(&table),
        c = quote(&column),
        b = quote(&btree)
    );
    let made = client.batch_execute(&sql).await;
    let names: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 \
             UNION ALL SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            &[&schema, &btree],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&schema)))
        .await
        .unwrap();
    made.unwrap();
    assert_eq!(
        names,
        vec![table, btree],
        "PostgreSQL kept both names whole"
    );
}
