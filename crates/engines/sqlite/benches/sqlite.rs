//! Stowage-on-SQLite next to raw rusqlite, in one run, on the workload of
//! `docs/benchmarks.md`.
//!
//! `cargo bench -p stowage-sqlite` prints a markdown table of ops/s and ratios. Both sides
//! use the same durability: WAL with `synchronous=FULL` (an fsync before a write returns).
//! The raw side does what a person would by hand: a table `(id TEXT PRIMARY KEY, body
//! TEXT)`, serde_json on the caller's thread, an autocommit `INSERT` per write, one
//! transaction of 100 `INSERT`s per batch, a `SELECT` and a decode per get, and for the 1 %
//! query a full scan that decodes every body and filters. `STOWAGE_BENCH_N` scales the
//! record count (default 100,000; the fsync-per-write rows use 2,000).

// A benchmark is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use stowage_core::Store;
use stowage_sqlite::{SqliteBackend, SqliteConfig};
use stowage_testkit::workload::{
    batches, bench_n, counter_per_task, counter_rows, gets, id_of, insert_all, print_table, rate,
    score_query, workload, Plain, Rng, Row, User,
};

struct Bench {
    dir: tempfile::TempDir,
    files: usize,
}

impl Bench {
    fn path(&mut self) -> PathBuf {
        self.files += 1;
        self.dir.path().join(format!("bench-{}.db", self.files))
    }

    fn store(&mut self) -> Store {
        Store::new(SqliteBackend::open(SqliteConfig::new(self.path())).unwrap())
    }

    /// A raw database with the store's durability.
    fn raw(&mut self) -> PathBuf {
        let path = self.path();
        raw_conn(&path)
            .execute_batch("CREATE TABLE records (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        path
    }
}

fn raw_conn(path: &PathBuf) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(60)).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    conn
}

/// Raw autocommit inserts, each its own durable transaction.
fn raw_insert(path: &PathBuf, users: &[User]) -> Duration {
    let conn = raw_conn(path);
    let start = Instant::now();
    let mut s = conn
        .prepare_cached("INSERT INTO records (id, body) VALUES (?1, ?2)")
        .unwrap();
    for u in users {
        s.execute(params![id_of(u.id), serde_json::to_string(u).unwrap()])
            .unwrap();
    }
    start.elapsed()
}

/// Raw batches of 100: one transaction of 100 inserts each.
fn raw_batches(path: &PathBuf, users: &[User]) -> Duration {
    let mut conn = raw_conn(path);
    let start = Instant::now();
    for chunk in users.chunks(100) {
        let tx = conn.transaction().unwrap();
        {
            let mut s = tx
                .prepare_cached("INSERT INTO records (id, body) VALUES (?1, ?2)")
                .unwrap();
            for u in chunk {
                s.execute(params![id_of(u.id), serde_json::to_string(u).unwrap()])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    start.elapsed()
}

/// Raw point gets of `ids`, each decoded.
fn raw_gets(conn: &Connection, ids: &[String]) -> Duration {
    let start = Instant::now();
    let mut s = conn
        .prepare_cached("SELECT body FROM records WHERE id = ?1")
        .unwrap();
    for id in ids {
        let body: String = s.query_row(params![id], |r| r.get(0)).unwrap();
        let u: User = serde_json::from_str(&body).unwrap();
        std::hint::black_box(u);
    }
    start.elapsed()
}

/// The 1 % query as a store without indexes answers it: every body read, decoded, filtered.
fn raw_scan(conn: &Connection, lo: f64) -> usize {
    let mut s = conn.prepare_cached("SELECT body FROM records").unwrap();
    let rows = s.query_map([], |r| r.get::<_, String>(0)).unwrap();
    let mut matched = 0;
    for body in rows {
        let u: User = serde_json::from_str(&body.unwrap()).unwrap();
        if u.score >= lo && u.score < lo + 1.0 {
            matched += 1;
        }
    }
    matched
}

fn main() {
    let n = bench_n();
    let n_fsync = 2_000.min(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut bench = Bench {
        dir: tempfile::tempdir_in(
            std::env::var("STOWAGE_BENCH_DIR")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
        )
        .unwrap(),
        files: 0,
    };
    let users = workload(n as u64, 42);
    let few = &users[..n_fsync];
    let mut rows = Vec::new();

    // Durable single inserts, one writer; the sides alternate in rounds (fsync latency
    // drifts on shared machines) and their times are summed.
    let raw = bench.raw();
    let store = bench.store();
    let (raw_time, ours_time) = rt.block_on(async {
        let coll = store.collection::<Plain>().await.unwrap();
        let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
        for round in few.chunks(n_fsync.div_ceil(4)) {
            raw_time += raw_insert(&raw, round);
            let start = Instant::now();
            for u in round {
                coll.insert(&Plain(u.clone())).await.unwrap();
            }
            ours_time += start.elapsed();
        }
        (raw_time, ours_time)
    });
    drop(store);
    let single = rate(n_fsync, ours_time);
    rows.push(Row {
        name: "durable single insert, 1 writer (raw: autocommit INSERT)",
        n: n_fsync,
        stowage: single,
        raw: Some(rate(n_fsync, raw_time)),
    });

    // Durable inserts from 32 concurrent writers: raw SQLite has one writer at a time, each
    // with its own commit; Stowage shares commits.
    let raw = Arc::new(bench.raw());
    let raw_rate = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = few
            .chunks(n_fsync.div_ceil(32))
            .map(|c| {
                let (raw, c) = (raw.clone(), c.to_vec());
                tokio::task::spawn_blocking(move || raw_insert(&raw, &c))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        rate(n_fsync, start.elapsed())
    });
    let store = bench.store();
    let concurrent = rt.block_on(async {
        let coll = store.collection::<Plain>().await.unwrap();
        rate(n_fsync, insert_all(&coll, few, 32).await)
    });
    drop(store);
    rows.push(Row {
        name: "durable inserts, 32 concurrent writers",
        n: n_fsync,
        stowage: concurrent,
        raw: Some(raw_rate),
    });

    // Batches of 100, durable, no indexes; then with the score and tags indexes.
    let raw = bench.raw();
    let raw_rate = rate(n, raw_batches(&raw, &users));
    let store = bench.store();
    let plain: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (ours_rate, plain_coll) = rt.block_on(batches(&store, &plain));
    drop(plain);
    rows.push(Row {
        name: "batch of 100, no indexes (raw: a transaction of 100 INSERTs)",
        n,
        stowage: ours_rate,
        raw: Some(raw_rate),
    });
    let (ours_rate, indexed) = rt.block_on(batches(&store, &users));
    rows.push(Row {
        name: "batch of 100, 2 indexes (score, tags multi)",
        n,
        stowage: ours_rate,
        raw: None,
    });

    // Point gets of every id in a shuffled order, sequential.
    let conn = raw_conn(&raw);
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    Rng(7).shuffle(&mut ids);
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in ids.chunks(ids.len().div_ceil(4)) {
        raw_time += raw_gets(&conn, round);
        let round = Arc::new(round.to_vec());
        ours_time += rt.block_on(gets(&plain_coll, &round, 1));
    }
    rows.push(Row {
        name: "point get, typed (raw: SELECT + decode)",
        n,
        stowage: rate(n, ours_time),
        raw: Some(rate(n, raw_time)),
    });

    // The 1 % query on the score index against a full scan with the filter.
    let (scans, queries) = (3, 100);
    let start = Instant::now();
    for i in 0..scans {
        std::hint::black_box(raw_scan(&conn, (i * 31 % 99) as f64));
    }
    let scan_time = start.elapsed();
    let (mut ours_time, mut matched) = (Duration::ZERO, 0);
    for i in 0..queries {
        let lo = (i * 31 % 99) as f64;
        let start = Instant::now();
        matched += rt.block_on(score_query(&indexed, lo));
        ours_time += start.elapsed();
    }
    rows.push(Row {
        name: "indexed query, 1% (vs full scan + filter)",
        n: matched / queries,
        stowage: rate(queries, ours_time),
        raw: Some(rate(scans, scan_time)),
    });
    drop(store);
    rows.extend(hot_counter(&mut bench, &rt));

    println!("\nStowage on SQLite vs raw rusqlite (WAL, synchronous=FULL on both sides)\n");
    print_table(&rows);
    println!(
        "\n32 concurrent writers / Stowage's own single writer: {:.1}x (goal >= 5x)",
        concurrent / single
    );
    println!("command: cargo bench -p stowage-sqlite   (STOWAGE_BENCH_N={n})");
}

/// The hot counter: 64 tasks add 1 to one record; raw, each task has its connection and
/// each increment is an autocommit `UPDATE … SET n = n + 1` (SQLite takes one writer at a
/// time; the others wait in the busy handler).
fn hot_counter(bench: &mut Bench, rt: &tokio::runtime::Runtime) -> Vec<Row> {
    let per_task = counter_per_task();
    let raw = Arc::new(bench.raw());
    raw_conn(&raw)
        .execute_batch(
            "CREATE TABLE counter (id TEXT PRIMARY KEY, n INTEGER NOT NULL); \
             INSERT INTO counter VALUES ('hot', 0);",
        )
        .unwrap();
    let raw_time = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let raw = raw.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = raw_conn(&raw);
                    for _ in 0..per_task {
                        conn.execute("UPDATE counter SET n = n + 1 WHERE id = 'hot'", [])
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    });
    let store = bench.store();
    let name = "hot counter, 64 tasks: mutate (raw: UPDATE … SET n = n + 1)";
    rt.block_on(counter_rows(&store, 64, per_task, name, raw_time))
}
