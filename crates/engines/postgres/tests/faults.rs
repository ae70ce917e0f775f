//! Faults in the middle of a write load: the server kills the store's connections, or the
//! whole server goes down and comes back. Calls fail with `Unavailable` or succeed, the
//! store recovers without being reopened, and no row disagrees with its index columns or
//! side tables afterwards.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use stowage_core::{Collection, ErrorKind, Store};
use stowage_postgres::testkit::PrivateCluster;
use stowage_postgres::{PostgresBackend, PostgresConfig};
use stowage_testkit::faults::WriteLoad;
use stowage_testkit::Item;
use support::FreshDatabase;
use tokio_postgres::NoTls;

/// The same store works again, without being reopened: a few calls may meet a connection
/// that died with the fault (at most one per pooled connection), then every one succeeds.
async fn recovers(items: &Collection<Item>, pool_size: usize) {
    let mut failures = 0;
    for i in 0..40 {
        if let Err(e) = items.insert(&Item::new(format!("after-{i}"), i)).await {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            failures += 1;
        }
    }
    assert!(
        failures <= pool_size,
        "{failures} of 40 writes failed after the fault"
    );
    assert_eq!(items.get("after-39").await.unwrap().unwrap().value.n, 39);
}

/// No row disagrees with its index columns or its side table, and no side row is orphaned.
async fn consistent(admin: &tokio_postgres::Client) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_fail_cleanly_and_the_store_recovers() {
    let db = FreshDatabase::new().await;
    let config = PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
    let pool_size = config.pool_size;
    let store = Store::new(PostgresBackend::connect(config).await.unwrap());
    let items = store.collection::<Item>().await.unwrap();
    let load = WriteLoad::start(&items);
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
    let (ok, unavailable) = load.finish().await;
    assert!(killed > 0, "connections were killed");
    assert!(ok > 0);
    eprintln!("killed {killed} connections; {ok} calls succeeded, {unavailable} were Unavailable");
    recovers(&items, pool_size).await;
    consistent(&admin).await;
}

/// A server of the test's own goes down as in a crash (`pg_ctl stop -m immediate`) in the
/// middle of the load and comes back after recovery, on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_load_fails_calls_cleanly_and_the_store_recovers() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a private PostgreSQL cluster must start: {e}")),
    );
    let config = PostgresConfig::from_url_parts(
        &cluster.location("postgres"),
        &[("connect_timeout_ms".into(), "2000".into())],
    )
    .unwrap();
    let pool_size = config.pool_size;
    let store = Store::new(PostgresBackend::connect(config).await.unwrap());
    let items = store.collection::<Item>().await.unwrap();
    let load = WriteLoad::start(&items);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok_before = load.succeeded();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.crash())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, unavailable) = load.finish().await;
    eprintln!(
        "{ok} calls succeeded ({ok_before} before the crash), {unavailable} were Unavailable"
    );
    assert!(ok_before > 0, "the load ran before the crash");
    assert!(unavailable > 0, "calls failed while the server was down");
    assert!(ok > ok_before, "calls succeeded again after the restart");
    recovers(&items, pool_size).await;

    let (admin, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            cluster.port()
        ),
        NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    consistent(&admin).await;
}
