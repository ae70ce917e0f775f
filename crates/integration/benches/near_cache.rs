//! The near cache's point get (a hit) next to the raw engine's get, on redb and on
//! PostgreSQL, in one run, on the workload of `docs/benchmarks.md` (typed reads: every
//! id once, shuffled; the raw side decodes the same JSON into the same struct). Also the
//! same store's get without the cache, for scale.
//!
//! `cargo bench -p stowage-integration --bench near_cache` (`STOWAGE_BENCH_N` records, default 100,000).

// Benchmark code: a panic is how a run fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;
use stowage_cache::{CacheConfig, CacheLayer};
use stowage_core::backend::Backend;
use stowage_core::Store;
use stowage_testkit::workload::{
    batches, bench_n, gets, id_of, print_table, rate, workload, Plain, Row, User,
};

const USERS: redb::TableDefinition<'_, &str, &str> = redb::TableDefinition::new("users");

/// Raw redb: one table id → JSON, loaded in one transaction, read with a get and a decode.
fn raw_redb(path: &std::path::Path, users: &[User], ids: &[String]) -> Duration {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(USERS).unwrap();
        for u in users {
            t.insert(
                id_of(u.id).as_str(),
                serde_json::to_string(u).unwrap().as_str(),
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(USERS).unwrap();
    let start = Instant::now();
    for id in ids {
        let v = t.get(id.as_str()).unwrap().unwrap();
        let u: User = serde_json::from_str(v.value()).unwrap();
        std::hint::black_box(u);
    }
    start.elapsed()
}

/// Raw tokio-postgres: one table id → JSON text, read sequentially with a prepared select
/// and a decode (one connection, as the cached side reads one at a time).
async fn raw_postgres(location: &str, users: &[User], ids: &[String]) -> Duration {
    let (user_host, db) = location.split_once('/').unwrap();
    let (user, host_port) = user_host.split_once('@').unwrap();
    let (host, port) = host_port.split_once(':').unwrap();
    let (client, conn) = tokio_postgres::connect(
        &format!("host={host} port={port} user={user} dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE raw_users (id text COLLATE \"C\" PRIMARY KEY, body text NOT NULL)",
        )
        .await
        .unwrap();
    for chunk in users.chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|u| id_of(u.id)).collect();
        let bodies: Vec<String> = chunk
            .iter()
            .map(|u| serde_json::to_string(u).unwrap())
            .collect();
        client
            .execute(
                "INSERT INTO raw_users SELECT * FROM unnest($1::text[], $2::text[])",
                &[&ids, &bodies],
            )
            .await
            .unwrap();
    }
    let stmt = client
        .prepare("SELECT body FROM raw_users WHERE id = $1")
        .await
        .unwrap();
    let start = Instant::now();
    for id in ids {
        let row = client.query_one(&stmt, &[id]).await.unwrap();
        let u: User = serde_json::from_str(row.get(0)).unwrap();
        std::hint::black_box(u);
    }
    start.elapsed()
}

/// Loads the users through a plain store over `engine`, then reads every id through it
/// and through a cache over the same engine (once to fill it, then timed: every read a
/// hit). The plain and the cached rates.
async fn stowage_side(
    engine: Arc<dyn Backend>,
    users: &[User],
    ids: &Arc<Vec<String>>,
) -> (f64, f64, u64) {
    let plain = Store::from_backend(engine.clone());
    let items: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (_, coll) = batches(&plain, &items).await;
    let plain_rate = rate(ids.len(), gets(&coll, ids, 1).await);
    let cache = Arc::new(CacheLayer::new(engine, CacheConfig::new(1 << 30)).unwrap());
    let cached = Store::from_backend(cache.clone());
    let coll = cached.collection::<Plain>().await.unwrap();
    // The first read starts the feed watcher; reads are cached once it is live.
    while cache.stats().hits == 0 {
        coll.get(&ids[0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gets(&coll, ids, 1).await;
    let before = cache.stats().hits;
    let cached_rate = rate(ids.len(), gets(&coll, ids, 1).await);
    (plain_rate, cached_rate, cache.stats().hits - before)
}

fn main() {
    let n = bench_n();
    let users = workload(n as u64, 7);
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    stowage_testkit::workload::Rng(11).shuffle(&mut ids);
    let ids = Arc::new(ids);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let raw = rate(n, raw_redb(&dir.path().join("raw.redb"), &users, &ids));
    let engine = stowage_redb::RedbBackend::open(stowage_redb::RedbConfig::new(
        dir.path().join("stowage.redb").to_str().unwrap(),
    ))
    .unwrap();
    let (plain, cached, hits) = rt.block_on(stowage_side(Arc::new(engine), &users, &ids));
    assert_eq!(hits, n as u64, "every timed read was a hit");
    rows.push(Row {
        name: "redb: point get, near cache hit",
        n,
        stowage: cached,
        raw: Some(raw),
    });
    rows.push(Row {
        name: "redb: point get, no cache",
        n,
        stowage: plain,
        raw: Some(raw),
    });

    let db = stowage_postgres::testkit::ScratchDatabase::create("stowage_bench_cache").unwrap();
    let raw = rt.block_on(raw_postgres(&db.location(), &users, &ids));
    let raw = rate(n, raw);
    let config = stowage_postgres::PostgresConfig::from_url_parts(
        &db.location(),
        &[("sslmode".into(), "disable".into())],
    )
    .unwrap();
    let (plain, cached, hits) = rt.block_on(async {
        let engine = stowage_postgres::PostgresBackend::connect(config)
            .await
            .unwrap();
        stowage_side(Arc::new(engine), &users, &ids).await
    });
    assert_eq!(hits, n as u64, "every timed read was a hit");
    rows.push(Row {
        name: "postgres: point get, near cache hit",
        n,
        stowage: cached,
        raw: Some(raw),
    });
    rows.push(Row {
        name: "postgres: point get, no cache",
        n,
        stowage: plain,
        raw: Some(raw),
    });
    drop(db);

    println!("\nNear cache: typed point gets, one reader, every id once in shuffled order (the cached store read them all once before the timed pass); raw = the engine's own get + serde_json decode\n");
    print_table(&rows);
    println!(
        "command: cargo bench -p stowage-integration --bench near_cache   (STOWAGE_BENCH_N={n})"
    );
}
