//! Stowage-on-sled next to raw sled, in one run, on the workload of `docs/benchmarks.md`
//! and the same rows as the redb benchmark.
//!
//! `cargo bench -p stowage-sled` prints a markdown table of ops/s and ratios (the rows and
//! knobs: `stowage_testkit::workload::compare_embedded`). Both sides make each write
//! durable as far as sled can — `Db::flush` before it returns (see the crate docs: that is
//! `sync_file_range`, not `fsync`).
//!
//! Raw sled keeps records in one tree (id → JSON) and, for the last query row, a score
//! tree by hand (score's order-preserving bits ‖ id) walked with its ids sorted and looked
//! up: the floor for any query that reads its records from the records tree.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use stowage_core::Store;
use stowage_sled::{SledBackend, SledConfig};
use stowage_testkit::workload::{compare_embedded, id_of, raw_score_key, RawEngine, User};

/// Raw sled: the database and its records tree, flushed after each write.
struct RawSled {
    db: sled::Db,
    records: sled::Tree,
}

impl RawEngine for RawSled {
    fn insert(&self, users: &[User], per_txn: usize) -> Duration {
        let start = Instant::now();
        for chunk in users.chunks(per_txn) {
            if let [u] = chunk {
                self.records
                    .insert(id_of(u.id).as_bytes(), serde_json::to_vec(u).unwrap())
                    .unwrap();
            } else {
                let mut batch = sled::Batch::default();
                for u in chunk {
                    batch.insert(id_of(u.id).as_bytes(), serde_json::to_vec(u).unwrap());
                }
                self.records.apply_batch(batch).unwrap();
            }
            self.db.flush().unwrap();
        }
        start.elapsed()
    }

    fn increment(&self, key: &str) {
        self.records
            .transaction(|t| {
                let n = t.get(key)?.map_or(0, |v| {
                    serde_json::from_slice::<serde_json::Value>(&v).unwrap()["n"]
                        .as_u64()
                        .unwrap()
                });
                t.insert(
                    key,
                    serde_json::to_vec(&serde_json::json!({ "n": n + 1 })).unwrap(),
                )?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
        self.db.flush().unwrap();
    }

    fn get(&self, id: &str) -> User {
        let v = self.records.get(id).unwrap().unwrap();
        serde_json::from_slice(&v).unwrap()
    }

    fn scan(&self, lo: f64) -> usize {
        self.records
            .iter()
            .filter_map(|r| {
                let (_, v) = r.unwrap();
                let u: User = serde_json::from_slice(&v).unwrap();
                (u.score >= lo && u.score < lo + 1.0).then_some(u)
            })
            .count()
    }

    fn add_score_index(&self, users: &[User]) {
        let idx = self.db.open_tree("score").unwrap();
        let mut batch = sled::Batch::default();
        for u in users {
            batch.insert(raw_score_key(u.score, &id_of(u.id)), &[]);
        }
        idx.apply_batch(batch).unwrap();
        self.db.flush().unwrap();
    }

    fn indexed_query(&self, lo: f64) -> usize {
        let idx = self.db.open_tree("score").unwrap();
        let (from, to) = (raw_score_key(lo, ""), raw_score_key(lo + 1.0, ""));
        let mut ids: Vec<Vec<u8>> = idx
            .range(from..to)
            .map(|r| r.unwrap().0[8..].to_vec())
            .collect();
        ids.sort_unstable();
        let users: Vec<User> = ids
            .iter()
            .map(|id| serde_json::from_slice(&self.records.get(id).unwrap().unwrap()).unwrap())
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
        dir.path().join(format!("b{}.sled", files.get()))
    };
    compare_embedded(
        "sled",
        "immediate (Db::flush before a write returns: sync_file_range)",
        || {
            let db = sled::Config::new()
                .path(path())
                .cache_capacity(256 << 20)
                .flush_every_ms(None)
                .open()
                .unwrap();
            let records = db.open_tree("records").unwrap();
            RawSled { db, records }
        },
        || Store::new(SledBackend::open(SledConfig::new(path())).unwrap()),
    );
}
