//! Faults in the middle of a write load, on a `redis-server` of the test's own: the server
//! kills the store's connections, or crashes and comes back (with its data, without its
//! scripts). Calls fail with `Unavailable` or succeed, the store recovers without being
//! reopened, and no record disagrees with its indexes afterwards.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use stowage_core::{Collection, ErrorKind, Record, Store};
use stowage_redis::testkit::PrivateRedis;
use stowage_redis::{RedisBackend, RedisConfig};
use stowage_testkit::faults::WriteLoad;
use stowage_testkit::Item;

async fn store(server: &PrivateRedis) -> Store {
    let config = RedisConfig::from_url_parts(
        "redis",
        &server.address(),
        &[("connect_timeout_ms".into(), "1000".into())],
    )
    .unwrap();
    Store::new(RedisBackend::connect(config).await.unwrap())
}

/// Writes succeed again on the same store, after at most a few failures.
async fn recovers(items: &Collection<Item>) {
    let mut failures = 0;
    for i in 0..40 {
        match items.insert(&Item::new(format!("after-{i}"), i)).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        failures <= 10,
        "{failures} of 40 writes failed after the fault"
    );
    assert_eq!(items.get("after-39").await.unwrap().unwrap().value.n, 39);
}

/// Every index member names a stored record holding that value, and every stored record
/// is in every index its body puts it in: read with plain commands.
async fn consistent(server: &PrivateRedis) {
    let mut conn = redis::Client::open(format!("redis://{}", server.address()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let base = "stowage:{default}:";
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{base}ids:items"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let spec = Item::spec();
    let mut expected: HashMap<String, BTreeSet<Vec<u8>>> = HashMap::new();
    for id in &ids {
        let rec: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(format!("{base}rec:items:{id}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&rec["body"]).unwrap();
        for ix in &spec.indexes {
            for v in ix.extract(&body, id).unwrap() {
                let mut m = Vec::new();
                v.encode_sortable(&mut m);
                m.extend_from_slice(id.as_bytes());
                expected.entry(ix.name.clone()).or_default().insert(m);
            }
        }
    }
    for ix in &spec.indexes {
        let members: BTreeSet<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(format!("{base}ix:items:{}", ix.name))
            .arg(0)
            .arg(-1)
            .query_async::<Vec<Vec<u8>>>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let want = expected.remove(&ix.name).unwrap_or_default();
        assert_eq!(
            members.len(),
            want.len(),
            "index {} has {} members for {} expected",
            ix.name,
            members.len(),
            want.len()
        );
        assert!(
            members == want,
            "index {} disagrees with the records",
            ix.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_fail_cleanly_and_the_store_recovers() {
    let server = tokio::task::spawn_blocking(PrivateRedis::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a private redis-server must start: {e}"));
    let store = store(&server).await;
    let items = store.collection::<Item>().await.unwrap();
    let load = WriteLoad::start(&items);
    let mut admin = redis::Client::open(format!("redis://{}", server.address()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut killed = 0i64;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        killed += redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query_async::<i64>(&mut admin)
            .await
            .unwrap();
    }
    let (ok, unavailable) = load.finish().await;
    assert!(killed > 0, "connections were killed");
    assert!(ok > 0);
    eprintln!("killed {killed} connections; {ok} calls succeeded, {unavailable} were Unavailable");
    recovers(&items).await;
    consistent(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crashed_mid_load_fails_calls_cleanly_and_the_store_recovers() {
    let mut server = tokio::task::spawn_blocking(PrivateRedis::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a private redis-server must start: {e}"));
    let store = store(&server).await;
    let items = store.collection::<Item>().await.unwrap();
    let load = WriteLoad::start(&items);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok_before = load.succeeded();
    server.crash();
    // Down long enough that the connection's own quick reconnects give up on some calls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_again().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, unavailable) = load.finish().await;
    eprintln!(
        "{ok} calls succeeded ({ok_before} before the crash), {unavailable} were Unavailable"
    );
    assert!(ok_before > 0, "the load ran before the crash");
    assert!(unavailable > 0, "calls failed while the server was down");
    assert!(
        ok > ok_before,
        "calls succeeded again after the restart (scripts reloaded)"
    );
    recovers(&items).await;
    consistent(&server).await;
}
