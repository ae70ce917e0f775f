//! Stowage-on-redb next to raw redb, in one run, on the workload of `shared/benchmarks.md`.
//!
//! `cargo bench -p stowage-redb` prints a markdown table of ops/s and ratios. Both sides use
//! durable commits (fsync before the write returns). `STOWAGE_BENCH_N` scales the record
//! count (default 100,000; the fsync-per-write rows use 2,000).
//!
//! The 1 % query runs on a plain score index and on a covering one, each against the full
//! scan with a filter; a last row holds the plain one against the same query written by
//! hand on raw redb (a score index table walked, its ids sorted and looked up), which is
//! the floor for any query that reads its records from the records table.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use stowage_core::testkit::workload::{
    batches, bench_n, id_of, insert_all, print_feed_latency, print_table, rate, score_query,
    watcher_rows, workload, Plain, Rng, Row, User,
};
use stowage_core::{CollectionSpec, IndexSpec, Record, Store};
use stowage_redb::{RedbBackend, RedbConfig};

const RAW: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
const RAW_SCORE: TableDefinition<'_, &[u8], ()> = TableDefinition::new("score");

/// A raw score index key: the score's bits made order-preserving, then the id.
fn raw_score_key(score: f64, id: &str) -> Vec<u8> {
    let bits = score.to_bits();
    let sortable = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    let mut k = sortable.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// The indexed collection with a covering score index.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Covered(User);

impl Record for Covered {
    const COLLECTION: &'static str = "users_covering";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::float("score", "/score").covering())
            .index(IndexSpec::string("tags", "/tags").multi())
    }
    fn id(&self) -> String {
        id_of(self.0.id)
    }
}

struct Bench {
    dir: tempfile::TempDir,
    files: usize,
}

impl Bench {
    fn path(&mut self) -> std::path::PathBuf {
        self.files += 1;
        self.dir.path().join(format!("b{}.redb", self.files))
    }

    fn raw_db(&mut self) -> Arc<redb::Database> {
        Arc::new(redb::Database::create(self.path()).unwrap())
    }

    fn store(&mut self) -> Store {
        Store::new(RedbBackend::open(RedbConfig::new(self.path())).unwrap())
    }
}

/// Raw redb inserts, `per_txn` records per durable write transaction.
fn raw_insert(db: &redb::Database, users: &[User], per_txn: usize) -> Duration {
    let start = Instant::now();
    for chunk in users.chunks(per_txn) {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(RAW).unwrap();
            for u in chunk {
                t.insert(
                    id_of(u.id).as_str(),
                    serde_json::to_vec(u).unwrap().as_slice(),
                )
                .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    start.elapsed()
}

fn raw_get(db: &redb::Database, id: &str) -> User {
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(RAW).unwrap();
    let v = t.get(id).unwrap().unwrap();
    serde_json::from_slice(v.value()).unwrap()
}

/// The same query as a full scan with a filter on raw redb.
fn raw_scan(db: &redb::Database, lo: f64) -> usize {
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(RAW).unwrap();
    t.range::<&str>(..)
        .unwrap()
        .filter_map(|r| {
            let (_, v) = r.unwrap();
            let u: User = serde_json::from_slice(v.value()).unwrap();
            (u.score >= lo && u.score < lo + 1.0).then_some(u)
        })
        .count()
}

/// A hand-made score index beside the raw records: score's order-preserving bits ‖ id.
fn raw_score_index(db: &redb::Database, users: &[User]) {
    let txn = db.begin_write().unwrap();
    {
        let mut idx = txn.open_table(RAW_SCORE).unwrap();
        for u in users {
            idx.insert(raw_score_key(u.score, &id_of(u.id)).as_slice(), ())
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

/// The same query by hand on raw redb: the score index walked, its ids sorted and looked
/// up — the floor for any query that reads the records it returns.
fn raw_indexed_query(db: &redb::Database, lo: f64) -> usize {
    let txn = db.begin_read().unwrap();
    let idx = txn.open_table(RAW_SCORE).unwrap();
    let t = txn.open_table(RAW).unwrap();
    let (from, to) = (raw_score_key(lo, ""), raw_score_key(lo + 1.0, ""));
    let mut ids: Vec<Vec<u8>> = idx
        .range::<&[u8]>(from.as_slice()..to.as_slice())
        .unwrap()
        .map(|r| r.unwrap().0.value()[8..].to_vec())
        .collect();
    ids.sort_unstable();
    let users: Vec<User> = ids
        .iter()
        .map(|id| {
            let v = t.get(std::str::from_utf8(id).unwrap()).unwrap().unwrap();
            serde_json::from_slice(v.value()).unwrap()
        })
        .collect();
    users.len()
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
    // `STOWAGE_BENCH_SKIP_FSYNC=1` leaves out the two fsync-bound rows (for quick runs).
    let fsync_rows = std::env::var("STOWAGE_BENCH_SKIP_FSYNC").is_err();
    let (mut single, mut concurrent) = (f64::NAN, f64::NAN);
    let mut feed_latency: Option<Vec<Duration>> = None;
    if fsync_rows {
        // Durable single inserts, one writer. fsync latency drifts on shared machines, so
        // the two sides alternate in rounds and their times are summed.
        let raw_db = bench.raw_db();
        let store = bench.store();
        let (raw_time, ours_time) = rt.block_on(async {
            let coll = store.collection::<Plain>().await.unwrap();
            let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
            for round in few.chunks(n_fsync.div_ceil(4)) {
                raw_time += raw_insert(&raw_db, round, 1);
                let start = Instant::now();
                for u in round {
                    coll.insert(&Plain(u.clone())).await.unwrap();
                }
                ours_time += start.elapsed();
            }
            (raw_time, ours_time)
        });
        drop((store, raw_db));
        single = rate(n_fsync, ours_time);
        rows.push(Row {
            name: "durable single insert, 1 writer",
            n: n_fsync,
            stowage: single,
            raw: Some(rate(n_fsync, raw_time)),
        });

        // Durable inserts from 32 concurrent writers.
        let db = bench.raw_db();
        let raw = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = few
                .chunks(n_fsync.div_ceil(32))
                .map(|c| {
                    let (db, c) = (db.clone(), c.to_vec());
                    tokio::task::spawn_blocking(move || raw_insert(&db, &c, 1))
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            rate(n_fsync, start.elapsed())
        });
        drop(db);
        let store = bench.store();
        let ours = rt.block_on(async {
            let coll = store.collection::<Plain>().await.unwrap();
            rate(n_fsync, insert_all(&coll, few, 32).await)
        });
        drop(store);
        rows.push(Row {
            name: "durable inserts, 32 concurrent writers",
            n: n_fsync,
            stowage: ours,
            raw: Some(raw),
        });
        concurrent = ours;
        let store = bench.store();
        let (watch_rows, latencies) = rt.block_on(watcher_rows(&store, few));
        drop(store);
        rows.extend(watch_rows);
        feed_latency = Some(latencies);
    }

    // Batches of 100, no indexes; reads use the same files afterwards.
    let raw_db = bench.raw_db();
    let raw = rate(n, raw_insert(&raw_db, &users, 100));
    let store = bench.store();
    let plain: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (ours, coll) = rt.block_on(batches(&store, &plain));
    rows.push(Row {
        name: "batch of 100, no indexes",
        n,
        stowage: ours,
        raw: Some(raw),
    });

    // Batches of 100 with 2 indexes (score, tags multi).
    let (ours, indexed) = rt.block_on(batches(&store, &users));
    rows.push(Row {
        name: "batch of 100, 2 indexes",
        n,
        stowage: ours,
        raw: None,
    });
    let covered_users: Vec<Covered> = users.iter().cloned().map(Covered).collect();
    let (ours, covered) = rt.block_on(batches(&store, &covered_users));
    drop(covered_users);
    rows.push(Row {
        name: "batch of 100, 2 indexes, score covering",
        n,
        stowage: ours,
        raw: None,
    });

    // Point gets of every id in a second shuffled order, the two sides alternating in
    // rounds so that drift on a shared machine hits both alike.
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    Rng(7).shuffle(&mut ids);
    let (raw_time, ours_time) = rt.block_on(async {
        let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
        for round in ids.chunks(ids.len().div_ceil(4)) {
            let start = Instant::now();
            for id in round {
                std::hint::black_box(raw_get(&raw_db, id));
            }
            raw_time += start.elapsed();
            let start = Instant::now();
            for id in round {
                std::hint::black_box(coll.get(id).await.unwrap().unwrap());
            }
            ours_time += start.elapsed();
        }
        (raw_time, ours_time)
    });
    rows.push(Row {
        name: "point get, typed",
        n,
        stowage: rate(n, ours_time),
        raw: Some(rate(n, raw_time)),
    });

    // 64 concurrent gets.
    let ids = Arc::new(ids);
    let raw = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let (db, ids) = (raw_db.clone(), ids.clone());
                tokio::spawn(async move {
                    for id in ids.iter().skip(t).step_by(64) {
                        std::hint::black_box(raw_get(&db, id));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        rate(n, start.elapsed())
    });
    let ours = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let (coll, ids) = (coll.clone(), ids.clone());
                tokio::spawn(async move {
                    for id in ids.iter().skip(t).step_by(64) {
                        std::hint::black_box(coll.get(id).await.unwrap().unwrap());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        rate(n, start.elapsed())
    });
    rows.push(Row {
        name: "64 concurrent gets",
        n,
        stowage: ours,
        raw: Some(raw),
    });

    // A query matching 1% (a score range of width 1.0 of 0..100) against a full scan with
    // a filter, the way the seed's sled store answered queries, and against the same query
    // by hand on raw redb. The four alternate in rounds so that drift hits all alike.
    // `STOWAGE_BENCH_QUERIES` sets the queries per round (for profiling).
    let per_round: usize = std::env::var("STOWAGE_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rounds = 5;
    raw_score_index(&raw_db, &users);
    let mut times = [Duration::ZERO; 4];
    let (mut matched, mut matched_covering) = (0, 0);
    for round in 0..rounds {
        let los = || (0..per_round).map(move |q| ((round * per_round + q) % 99) as f64);
        let start = Instant::now();
        std::hint::black_box(raw_scan(&raw_db, (round % 99) as f64));
        times[0] += start.elapsed();
        let start = Instant::now();
        for lo in los() {
            std::hint::black_box(raw_indexed_query(&raw_db, lo));
        }
        times[1] += start.elapsed();
        let start = Instant::now();
        for lo in los() {
            matched += rt.block_on(score_query(&indexed, lo));
        }
        times[2] += start.elapsed();
        let start = Instant::now();
        for lo in los() {
            matched_covering += rt.block_on(score_query(&covered, lo));
        }
        times[3] += start.elapsed();
    }
    let queries = rounds * per_round;
    let raw = rate(rounds, times[0]);
    let raw_indexed = rate(queries, times[1]);
    let ours = rate(queries, times[2]);
    let ours_covering = rate(queries, times[3]);
    let (matched, matched_covering) = (matched / queries, matched_covering / queries);
    rows.push(Row {
        name: "indexed query, 1% (vs full scan + filter)",
        n: matched,
        stowage: ours,
        raw: Some(raw),
    });
    rows.push(Row {
        name: "indexed query, 1%, covering index (vs full scan + filter)",
        n: matched_covering,
        stowage: ours_covering,
        raw: Some(raw),
    });
    rows.push(Row {
        name: "indexed query, 1% (vs raw redb: index table walk + sorted gets)",
        n: matched,
        stowage: ours,
        raw: Some(raw_indexed),
    });

    println!(
        "\nStowage on redb vs raw redb, durability: immediate (fsync per commit) on both sides\n"
    );
    print_table(&rows);
    println!(
        "\n32 concurrent writers / 1 writer (Stowage): {:.1}x",
        concurrent / single
    );
    if let Some(latencies) = feed_latency {
        print_feed_latency(latencies);
    }
    println!("command: cargo bench -p stowage-redb   (STOWAGE_BENCH_N={n})");
}
