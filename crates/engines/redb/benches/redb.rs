//! Stowage-on-redb next to raw redb, in one run, on the workload of `docs/benchmarks.md`.
//!
//! `cargo bench -p stowage-redb` prints a markdown table of ops/s and ratios (the rows and
//! knobs: `stowage_testkit::workload::compare_embedded`). Both sides use durable
//! commits (fsync before the write returns).
//!
//! The 1 % query runs on a plain score index and on a covering one, each against the full
//! scan with a filter; a last row holds the plain one against the same query written by
//! hand on raw redb (a score index table walked, its ids sorted and looked up), which is
//! the floor for any query that reads its records from the records table.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use stowage_core::Store;
use stowage_redb::{RedbBackend, RedbConfig};
use stowage_testkit::workload::{compare_embedded, id_of, raw_score_key, RawEngine, User};

const RAW: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
const RAW_SCORE: TableDefinition<'_, &[u8], ()> = TableDefinition::new("score");

/// Raw redb: records as JSON by id in one table, durable commits.
struct RawRedb(redb::Database);

impl RawEngine for RawRedb {
    fn insert(&self, users: &[User], per_txn: usize) -> Duration {
        let start = Instant::now();
        for chunk in users.chunks(per_txn) {
            let txn = self.0.begin_write().unwrap();
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

    fn increment(&self, key: &str) {
        let txn = self.0.begin_write().unwrap();
        {
            let mut t = txn.open_table(RAW).unwrap();
            let n = t.get(key).unwrap().map_or(0, |v| {
                serde_json::from_slice::<serde_json::Value>(v.value()).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            });
            let next = serde_json::to_vec(&serde_json::json!({ "n": n + 1 })).unwrap();
            t.insert(key, next.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    fn get(&self, id: &str) -> User {
        let txn = self.0.begin_read().unwrap();
        let t = txn.open_table(RAW).unwrap();
        let v = t.get(id).unwrap().unwrap();
        serde_json::from_slice(v.value()).unwrap()
    }

    fn scan(&self, lo: f64) -> usize {
        let txn = self.0.begin_read().unwrap();
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

    fn add_score_index(&self, users: &[User]) {
        let txn = self.0.begin_write().unwrap();
        {
            let mut idx = txn.open_table(RAW_SCORE).unwrap();
            for u in users {
                idx.insert(raw_score_key(u.score, &id_of(u.id)).as_slice(), ())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn indexed_query(&self, lo: f64) -> usize {
        let txn = self.0.begin_read().unwrap();
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
}

fn main() {
    let dir = tempfile::tempdir_in(
        std::env::var("STOWAGE_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let files = Cell::new(0);
    let path = || {
        files.set(files.get() + 1);
        dir.path().join(format!("b{}.redb", files.get()))
    };
    compare_embedded(
        "redb",
        "immediate (fsync per commit)",
        || RawRedb(redb::Database::create(path()).unwrap()),
        || Store::new(RedbBackend::open(RedbConfig::new(path())).unwrap()),
    );
}
