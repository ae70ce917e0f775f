//! Stowage-on-Redis next to raw redis-rs, in one run, on the workload of
//! `docs/benchmarks.md`.
//!
//! `cargo bench -p stowage-redis` works under a key prefix of its own on the machine's Redis
//! (`STOWAGE_BENCH_REDIS`, default `127.0.0.1:6379`), removes its keys at the end, and
//! prints a markdown table of ops/s and ratios. Both sides use the same connection type
//! (redis-rs's `ConnectionManager`, one multiplexed connection). The raw side does what a
//! person would by hand: a string key per record holding its JSON (`SET`/`GET`), serde_json
//! on the client, a pipeline of `SET`s for a batch. `STOWAGE_BENCH_N` scales the record
//! count (default 100,000; the sequential-write row uses 5,000).

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use stowage_core::{Collection, Store};
use stowage_redis::{RedisBackend, RedisConfig};
use stowage_testkit::workload::{
    batches, bench_n, concurrently, counter_per_task, counter_rows, gets, id_of, print_table, rate,
    score_query, workload, Plain, Rng, Row, User,
};

fn server() -> String {
    std::env::var("STOWAGE_BENCH_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into())
}

/// The bench's keys on the shared server: removed at the end, even after a panic.
struct BenchPrefix(String);

impl Drop for BenchPrefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(format!("redis://{}", server())) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<Vec<u8>> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}*", self.0))
            .arg("COUNT")
            .arg(10_000)
            .clone()
            .iter::<Vec<u8>>(&mut conn)
            .map(|i| i.filter_map(Result::ok).collect())
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: redis::RedisResult<i64> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
        }
    }
}

async fn raw_conn() -> ConnectionManager {
    redis::Client::open(format!("redis://{}", server()))
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
}

async fn store(prefix: &str) -> Store {
    let config =
        RedisConfig::from_url_parts("redis", &server(), &[("prefix".into(), prefix.to_owned())])
            .unwrap();
    Store::new(RedisBackend::connect(config).await.unwrap())
}

/// Raw sequential `SET`s of serde_json bodies.
async fn raw_sets(conn: &ConnectionManager, prefix: &str, users: &[User]) -> Duration {
    let mut conn = conn.clone();
    let start = Instant::now();
    for u in users {
        let body = serde_json::to_string(u).unwrap();
        conn.set::<_, _, ()>(format!("{prefix}raw:{}", id_of(u.id)), body)
            .await
            .unwrap();
    }
    start.elapsed()
}

async fn inserts(coll: &Collection<Plain>, users: &[User]) -> Duration {
    let start = Instant::now();
    for u in users {
        coll.insert(&Plain(u.clone())).await.unwrap();
    }
    start.elapsed()
}

/// Raw batches of 100: one pipeline of `SET`s each.
async fn raw_batches(conn: &ConnectionManager, prefix: &str, users: &[User]) -> Duration {
    let mut conn = conn.clone();
    let start = Instant::now();
    for chunk in users.chunks(100) {
        let mut pipe = redis::pipe();
        for u in chunk {
            pipe.set(
                format!("{prefix}raw:{}", id_of(u.id)),
                serde_json::to_string(u).unwrap(),
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    start.elapsed()
}

/// Raw gets from `tasks` tasks on one multiplexed connection, each decoding the struct.
async fn raw_gets(
    conn: &ConnectionManager,
    prefix: &str,
    ids: &Arc<Vec<String>>,
    tasks: usize,
) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (mut conn, ids, prefix) = (conn.clone(), ids.clone(), prefix.to_owned());
            tokio::spawn(async move {
                for id in ids.iter().skip(t).step_by(tasks) {
                    let body: String = conn.get(format!("{prefix}raw:{id}")).await.unwrap();
                    let u: User = serde_json::from_str(&body).unwrap();
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

/// The 1 % query as a hand-written Redis store (a key per record, no index) answers it without an index: every record read
/// (`SCAN` + `MGET`), decoded, filtered.
async fn raw_scan(conn: &ConnectionManager, prefix: &str, lo: f64) -> usize {
    let mut conn = conn.clone();
    let mut cursor = 0u64;
    let mut matched = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}raw:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let bodies: Vec<String> = conn.mget(&keys).await.unwrap();
            for b in bodies {
                let u: User = serde_json::from_str(&b).unwrap();
                if u.score >= lo && u.score < lo + 1.0 {
                    matched += 1;
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            return matched;
        }
    }
}

fn main() {
    let n = bench_n();
    let n_single = 5_000.min(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = BenchPrefix(format!("bench{}", std::process::id()));
    let rows = rt.block_on(run(&prefix.0, n, n_single));
    drop(prefix);
    println!(
        "\nStowage on Redis vs raw redis-rs (one ConnectionManager each, the machine's Redis)\n"
    );
    print_table(&rows);
    println!("command: cargo bench -p stowage-redis   (STOWAGE_BENCH_N={n})");
}

async fn run(prefix: &str, n: usize, n_single: usize) -> Vec<Row> {
    let users = workload(n as u64, 42);
    let few = &users[..n_single];
    let raw_prefix = format!("{prefix}:");
    let conn = raw_conn().await;
    let ours = store(prefix).await;
    let mut rows = Vec::new();

    // Sequential single writes, the sides alternating in rounds.
    let single = ours.namespace("single").unwrap();
    let coll = single.collection::<Plain>().await.unwrap();
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in few.chunks(n_single.div_ceil(4)) {
        raw_time += raw_sets(&conn, &raw_prefix, round).await;
        ours_time += inserts(&coll, round).await;
    }
    rows.push(Row {
        name: "single write, sequential (raw: SET)",
        n: n_single,
        stowage: rate(n_single, ours_time),
        raw: Some(rate(n_single, raw_time)),
    });

    // Batches of 100.
    let raw_rate = rate(n, raw_batches(&conn, &raw_prefix, &users).await);
    let plain: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (ours_rate, plain_coll) = batches(&ours, &plain).await;
    drop(plain);
    rows.push(Row {
        name: "batch of 100, no indexes (raw: pipeline of 100 SETs)",
        n,
        stowage: ours_rate,
        raw: Some(raw_rate),
    });
    let (ours_rate, indexed) = batches(&ours, &users).await;
    rows.push(Row {
        name: "batch of 100, 2 indexes (score, tags multi)",
        n,
        stowage: ours_rate,
        raw: None,
    });

    // Point gets of every id in a shuffled order, sequential then 64 at once.
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    Rng(7).shuffle(&mut ids);
    for (name, tasks) in [
        ("point get, typed, sequential (raw: GET + decode)", 1),
        ("64 concurrent gets", 64),
    ] {
        let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
        for round in ids.chunks(ids.len().div_ceil(4)) {
            let round = Arc::new(round.to_vec());
            raw_time += raw_gets(&conn, &raw_prefix, &round, tasks).await;
            ours_time += gets(&plain_coll, &round, tasks).await;
        }
        rows.push(Row {
            name,
            n,
            stowage: rate(n, ours_time),
            raw: Some(rate(n, raw_time)),
        });
    }

    // The 1 % query on the score index against a full scan with the filter.
    let (mut scan_time, mut ours_time, mut matched) = (Duration::ZERO, Duration::ZERO, 0);
    let (scans, queries) = (3, 60);
    for i in 0..scans {
        let start = Instant::now();
        std::hint::black_box(raw_scan(&conn, &raw_prefix, (i * 31 % 99) as f64).await);
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

    rows.extend(counter(&ours, &conn, &raw_prefix).await);
    rows
}

/// The hot counter: 64 tasks add 1 to one record.
async fn counter(ours: &Store, conn: &ConnectionManager, raw_prefix: &str) -> Vec<Row> {
    let per_task = counter_per_task();
    let (key, c) = (format!("{raw_prefix}hot"), conn.clone());
    let raw = concurrently(64, per_task, move |_| {
        let (mut c, key) = (c.clone(), key.clone());
        async move {
            let _: i64 = c.hincr(&key, "n", 1).await.unwrap();
        }
    })
    .await;
    let counters = ours.namespace("counters").unwrap();
    let name = "hot counter, 64 tasks: mutate (raw: HINCRBY)";
    counter_rows(&counters, 64, per_task, name, raw).await
}
