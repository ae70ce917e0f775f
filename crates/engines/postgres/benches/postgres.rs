//! Stowage-on-PostgreSQL next to raw tokio-postgres, in one run, on the workload of
//! `docs/benchmarks.md`.
//!
//! `cargo bench -p stowage-postgres` makes a database of its own on the machine's
//! PostgreSQL (`STOWAGE_BENCH_PG`, default `postgres@127.0.0.1:5432`), drops it at the end,
//! and prints a markdown table of ops/s and ratios. Both sides commit durably (PostgreSQL's
//! defaults: `synchronous_commit = on`, fsync at commit) and use the same pool
//! (deadpool-postgres) of the same size, in plain text (`sslmode=disable`; the default,
//! `prefer`, would encrypt Stowage's side only). The raw side does what a person would by hand: a
//! table of `(id text, body text)`, one prepared statement per operation, serde_json on the
//! client. `STOWAGE_BENCH_N` scales the record count (default 100,000; the single-insert
//! rows use 2,000).

// A benchmark is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use stowage_core::Store;
use stowage_postgres::{PostgresBackend, PostgresConfig};
use stowage_testkit::workload::{
    batches, bench_n, concurrently, counter_per_task, counter_rows, gets, id_of, insert_all,
    print_table, rate, score_query, workload, Plain, Rng, Row, User,
};
use tokio_postgres::NoTls;

fn server() -> String {
    std::env::var("STOWAGE_BENCH_PG").unwrap_or_else(|_| "postgres@127.0.0.1:5432".into())
}

async fn admin(sql: &str) {
    let (client, conn) =
        tokio_postgres::connect(&format!("postgresql://{}/postgres", server()), NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
}

/// The benchmark's database on the shared server: dropped at the end, even after a panic.
struct BenchDatabase(String);

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0);
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin(&sql));
        })
        .join();
    }
}

/// A raw pool of `size` connections to `db`, as the store's is made.
fn raw_pool(db: &str, size: usize) -> Pool {
    let config: tokio_postgres::Config = format!("postgresql://{}/{db}", server()).parse().unwrap();
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager).max_size(size).build().unwrap()
}

async fn store(db: &str, pool_size: usize) -> Store {
    let config = PostgresConfig::from_url_parts(
        &format!("{}/{db}", server()),
        &[
            ("pool_size".into(), pool_size.to_string()),
            // The raw side connects in plain text (NoTls): so does this one.
            ("sslmode".into(), "disable".into()),
        ],
    )
    .unwrap();
    Store::new(PostgresBackend::connect(config).await.unwrap())
}

/// The raw table: what a person writes by hand.
async fn raw_table(pool: &Pool, name: &str) {
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE TABLE {name} (id text COLLATE \"C\" PRIMARY KEY, body text NOT NULL)"
        ))
        .await
        .unwrap();
}

/// Raw single inserts from `writers` tasks, one autocommit statement each.
async fn raw_inserts(pool: &Pool, table: &str, users: &[User], writers: usize) -> Duration {
    let sql = format!("INSERT INTO {table} (id, body) VALUES ($1, $2)");
    let start = Instant::now();
    let tasks: Vec<_> = users
        .chunks(users.len().div_ceil(writers))
        .map(|c| {
            let (pool, c, sql) = (pool.clone(), c.to_vec(), sql.clone());
            tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                let stmt = client.prepare_cached(&sql).await.unwrap();
                for u in c {
                    let body = serde_json::to_string(&u).unwrap();
                    client.execute(&stmt, &[&id_of(u.id), &body]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Raw batches of 100: one `INSERT … SELECT FROM unnest(…)` each.
async fn raw_batches(pool: &Pool, table: &str, users: &[User]) -> Duration {
    let client = pool.get().await.unwrap();
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO {table} (id, body) SELECT * FROM unnest($1::text[], $2::text[])"
        ))
        .await
        .unwrap();
    let start = Instant::now();
    for chunk in users.chunks(100) {
        let ids: Vec<String> = chunk.iter().map(|u| id_of(u.id)).collect();
        let bodies: Vec<String> = chunk
            .iter()
            .map(|u| serde_json::to_string(u).unwrap())
            .collect();
        client.execute(&stmt, &[&ids, &bodies]).await.unwrap();
    }
    start.elapsed()
}

/// Raw gets from `tasks` tasks, each decoding into the struct.
async fn raw_gets(pool: &Pool, table: &str, ids: &Arc<Vec<String>>, tasks: usize) -> Duration {
    let sql = format!("SELECT body FROM {table} WHERE id = $1");
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (pool, ids, sql) = (pool.clone(), ids.clone(), sql.clone());
            tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                let stmt = client.prepare_cached(&sql).await.unwrap();
                for id in ids.iter().skip(t).step_by(tasks) {
                    let row = client.query_one(&stmt, &[id]).await.unwrap();
                    let u: User = serde_json::from_str(row.get(0)).unwrap();
                    std::hint::black_box(u);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

/// The 1 % query as hand-written stores without indexes answer it: every row read, the filter applied.
async fn raw_scan(pool: &Pool, table: &str, lo: f64) -> usize {
    let client = pool.get().await.unwrap();
    let stmt = client
        .prepare_cached(&format!(
            "SELECT body FROM {table} WHERE (body::jsonb->>'score')::float8 >= $1 \
             AND (body::jsonb->>'score')::float8 < $2"
        ))
        .await
        .unwrap();
    let rows = client.query(&stmt, &[&lo, &(lo + 1.0)]).await.unwrap();
    let users: Vec<User> = rows
        .iter()
        .map(|r| serde_json::from_str(r.get(0)).unwrap())
        .collect();
    users.len()
}

fn main() {
    let n = bench_n();
    let n_single = 2_000.min(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = BenchDatabase(format!("stowage_bench_{}", std::process::id()));
    rt.block_on(admin(&format!("CREATE DATABASE {}", db.0)));
    let rows = rt.block_on(run(&db.0, n, n_single));
    drop(db);
    println!(
        "\nStowage on PostgreSQL vs raw tokio-postgres (same deadpool pool), durability: \
         synchronous_commit=on (fsync at commit) on both sides\n"
    );
    print_table(&rows);
    println!("command: cargo bench -p stowage-postgres   (STOWAGE_BENCH_N={n})");
}

async fn run(db: &str, n: usize, n_single: usize) -> Vec<Row> {
    let users = workload(n as u64, 42);
    let few = &users[..n_single];
    let mut rows = Vec::new();
    let raw = raw_pool(db, 64);
    for t in ["raw_single", "raw_concurrent", "raw_batch"] {
        raw_table(&raw, t).await;
    }

    // Durable single inserts, one writer; the sides alternate in rounds so drift on a
    // shared machine hits both alike.
    let ours_store = store(db, 32).await;
    let single = ours_store.namespace("single").unwrap();
    let coll = single.collection::<Plain>().await.unwrap();
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in few.chunks(n_single.div_ceil(4)) {
        raw_time += raw_inserts(&raw, "raw_single", round, 1).await;
        ours_time += insert_all(&coll, round, 1).await;
    }
    rows.push(Row {
        name: "durable single insert, 1 writer",
        n: n_single,
        stowage: rate(n_single, ours_time),
        raw: Some(rate(n_single, raw_time)),
    });

    // 32 concurrent writers, a pool of 32 on both sides.
    let concurrent = ours_store.namespace("concurrent").unwrap();
    let coll = concurrent.collection::<Plain>().await.unwrap();
    let raw32 = raw_pool(db, 32);
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in few.chunks(n_single.div_ceil(2)) {
        raw_time += raw_inserts(&raw32, "raw_concurrent", round, 32).await;
        ours_time += insert_all(&coll, round, 32).await;
    }
    // PostgreSQL allows 100 connections: pools close before the next row opens theirs.
    drop(raw32);
    rows.push(Row {
        name: "durable inserts, 32 concurrent writers (pool of 32)",
        n: n_single,
        stowage: rate(n_single, ours_time),
        raw: Some(rate(n_single, raw_time)),
    });

    // Batches of 100.
    let raw_rate = rate(n, raw_batches(&raw, "raw_batch", &users).await);
    let plain: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (ours, plain_coll) = batches(&ours_store, &plain).await;
    drop(plain);
    rows.push(Row {
        name: "batch of 100, no indexes (raw: unnest insert)",
        n,
        stowage: ours,
        raw: Some(raw_rate),
    });
    let (ours, indexed) = batches(&ours_store, &users).await;
    rows.push(Row {
        name: "batch of 100, 2 indexes (score, tags multi)",
        n,
        stowage: ours,
        raw: None,
    });

    // Point gets of every id in a second shuffled order, sides alternating.
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    Rng(7).shuffle(&mut ids);
    let ids = Arc::new(ids);
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in ids.chunks(ids.len().div_ceil(4)) {
        let round = Arc::new(round.to_vec());
        raw_time += raw_gets(&raw, "raw_batch", &round, 1).await;
        ours_time += gets(&plain_coll, &round, 1).await;
    }
    rows.push(Row {
        name: "point get, typed",
        n,
        stowage: rate(n, ours_time),
        raw: Some(rate(n, raw_time)),
    });
    drop((
        plain_coll, indexed, coll, single, concurrent, ours_store, raw,
    ));
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in ids.chunks(ids.len().div_ceil(2)) {
        let round = Arc::new(round.to_vec());
        let raw64 = raw_pool(db, 64);
        raw_time += raw_gets(&raw64, "raw_batch", &round, 64).await;
        drop(raw64);
        let ours64 = store(db, 64).await;
        let coll64 = ours64.collection::<Plain>().await.unwrap();
        ours_time += gets(&coll64, &round, 64).await;
    }
    rows.push(Row {
        name: "64 concurrent gets (pool of 64)",
        n,
        stowage: rate(n, ours_time),
        raw: Some(rate(n, raw_time)),
    });

    // The 1 % query on the score index against a full scan with the filter.
    let raw = raw_pool(db, 4);
    let ours = store(db, 4).await;
    let indexed = ours.collection::<User>().await.unwrap();
    let (mut scan_time, mut ours_time, mut matched) = (Duration::ZERO, Duration::ZERO, 0);
    let (scans, queries) = (3, 60);
    for i in 0..scans {
        let start = Instant::now();
        std::hint::black_box(raw_scan(&raw, "raw_batch", (i * 31 % 99) as f64).await);
        scan_time += start.elapsed();
    }
    for i in 0..queries {
        let lo = (i * 31 % 99) as f64;
        let start = Instant::now();
        matched += score_query(&indexed, lo).await;
        ours_time += start.elapsed();
    }
    rows.push(Row {
        name: "indexed query, 1% (vs full scan + filter)",
        n: matched / queries,
        stowage: rate(queries, ours_time),
        raw: Some(rate(scans, scan_time)),
    });
    drop((raw, ours, indexed));

    // The hot counter: 64 tasks add 1 to one record, a pool of 32 on both sides.
    let per_task = counter_per_task();
    let raw32 = raw_pool(db, 32);
    let client = raw32.get().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE raw_counter (id text PRIMARY KEY, n bigint NOT NULL); \
             INSERT INTO raw_counter VALUES ('hot', 0)",
        )
        .await
        .unwrap();
    drop(client);
    let pool = raw32.clone();
    let raw_time = concurrently(64, per_task, move |_| {
        let pool = pool.clone();
        async move {
            let c = pool.get().await.unwrap();
            c.execute("UPDATE raw_counter SET n = n + 1 WHERE id = 'hot'", &[])
                .await
                .unwrap();
        }
    })
    .await;
    drop(raw32);
    let ours = store(db, 32).await;
    let name = "hot counter, 64 tasks: mutate (raw: UPDATE … SET n = n + 1)";
    rows.extend(counter_rows(&ours, 64, per_task, name, raw_time).await);
    rows
}
