//! Stowage-on-redb next to native_db (typed records on redb, bincode) and next to raw redb
//! with the same indexes kept by hand, in one run, on the workload of `docs/benchmarks.md`.
//!
//! `cargo bench -p stowage-redb --bench native_db` prints a markdown table: each row's rate
//! on the three sides and Stowage's ratio to each. The record is one struct, [`Member`]: a
//! Stowage [`Record`] and a native_db model at once, with `score` as an integer index
//! (hundredths, 0–9,999) and a unique index on `email`. Every side commits durably (fsync
//! before the write returns); every side returns a range query's records in id order (the
//! order Stowage's API promises), so native_db's and raw redb's hits are sorted by id too.
//!
//! Raw redb keeps what a careful hand-written store would: the record as JSON by id, a score
//! table (score ‖ id → ()) and an email table (email → id) checked before each insert.
//!
//! `STOWAGE_BENCH_N` sets the record count (default 100,000; the durable single inserts
//! use 2,000, the 32 writers 10,000), `STOWAGE_BENCH_QUERIES` the range queries per round, `STOWAGE_BENCH_SKIP_FSYNC=1`
//! leaves out the two fsync-bound rows, `STOWAGE_BENCH_LAYERS=1` puts the Stowage store under
//! the metrics and tracing layers `stowage serve` stacks. `STOWAGE_BENCH_PROFILE=get|range|covering|writers`
//! then runs that Stowage operation for 20 s for a profiler (`perf record -g`), and
//! `=single|raw-single|native-single` does 2,000 durable single inserts on one side, for
//! counting what each commit writes (`strace -f -e trace=pwrite64,fdatasync`).

// A benchmark is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use native_db::{native_db, Builder, Database, Models, ToKey};
use native_model::{native_model, Model};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use stowage_core::layer::{MetricsLayer, TracingLayer};
use stowage_core::{Collection, CollectionSpec, IndexSpec, Query, Record, Store};
use stowage_redb::{RedbBackend, RedbConfig};
use stowage_testkit::workload::{bench_n, id_of, rate, workload, Rng};

/// One member: the workload's user with an integer score, for all three sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[native_model(id = 1, version = 1)]
#[native_db]
struct Member {
    #[primary_key]
    id: String,
    name: String,
    #[secondary_key(unique)]
    email: String,
    /// Hundredths of the workload's 0–100 score.
    #[secondary_key]
    score: u32,
    active: bool,
    tags: Vec<String>,
    created: String,
    note: String,
}

impl Record for Member {
    const COLLECTION: &'static str = "members";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::integer("score", "/score"))
            .index(IndexSpec::string("email", "/email").unique())
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// The same records with the score index covering (Stowage only: native_db has no such
/// index), for the covering query row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Covered(Member);

impl Record for Covered {
    const COLLECTION: &'static str = "members_covering";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::integer("score", "/score").covering())
            .index(IndexSpec::string("email", "/email").unique())
    }
    fn id(&self) -> String {
        self.0.id.clone()
    }
}

static MODELS: LazyLock<Models> = LazyLock::new(|| {
    let mut models = Models::new();
    models.define::<Member>().unwrap();
    models
});

const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
const SCORES: TableDefinition<'_, &[u8], ()> = TableDefinition::new("score");
const EMAILS: TableDefinition<'_, &str, &str> = TableDefinition::new("email");

/// Raw redb with both indexes kept by hand.
struct RawRedb(redb::Database);

impl RawRedb {
    fn insert(&self, members: &[Member], per_txn: usize) {
        for chunk in members.chunks(per_txn) {
            let txn = self.0.begin_write().unwrap();
            {
                let mut records = txn.open_table(RECORDS).unwrap();
                let mut scores = txn.open_table(SCORES).unwrap();
                let mut emails = txn.open_table(EMAILS).unwrap();
                for m in chunk {
                    assert!(emails.get(m.email.as_str()).unwrap().is_none());
                    let body = serde_json::to_vec(m).unwrap();
                    assert!(records
                        .insert(m.id.as_str(), body.as_slice())
                        .unwrap()
                        .is_none());
                    scores
                        .insert(score_key(m.score, &m.id).as_slice(), ())
                        .unwrap();
                    emails.insert(m.email.as_str(), m.id.as_str()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
    }

    fn get(&self, id: &str) -> Member {
        let txn = self.0.begin_read().unwrap();
        let t = txn.open_table(RECORDS).unwrap();
        let v = t.get(id).unwrap().unwrap();
        serde_json::from_slice(v.value()).unwrap()
    }

    fn range(&self, lo: u32, hi: u32) -> Vec<Member> {
        let txn = self.0.begin_read().unwrap();
        let scores = txn.open_table(SCORES).unwrap();
        let records = txn.open_table(RECORDS).unwrap();
        let (from, to) = (score_key(lo, ""), score_key(hi, ""));
        let mut ids: Vec<String> = scores
            .range::<&[u8]>(from.as_slice()..to.as_slice())
            .unwrap()
            .map(|r| String::from_utf8(r.unwrap().0.value()[4..].to_vec()).unwrap())
            .collect();
        ids.sort_unstable();
        ids.iter()
            .map(|id| {
                serde_json::from_slice(records.get(id.as_str()).unwrap().unwrap().value()).unwrap()
            })
            .collect()
    }
}

fn score_key(score: u32, id: &str) -> Vec<u8> {
    let mut k = score.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// native_db's side of every row.
struct Native(Database<'static>);

impl Native {
    fn insert(&self, members: &[Member], per_txn: usize) {
        for chunk in members.chunks(per_txn) {
            let rw = self.0.rw_transaction().unwrap();
            for m in chunk {
                rw.insert(m.clone()).unwrap();
            }
            rw.commit().unwrap();
        }
    }

    fn get(&self, id: &str) -> Member {
        let r = self.0.r_transaction().unwrap();
        r.get().primary(id.to_owned()).unwrap().unwrap()
    }

    fn range(&self, lo: u32, hi: u32) -> Vec<Member> {
        let r = self.0.r_transaction().unwrap();
        let mut hits: Vec<Member> = r
            .scan()
            .secondary(MemberKey::score)
            .unwrap()
            .range(lo..hi)
            .unwrap()
            .map(|m| m.unwrap())
            .collect();
        hits.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        hits
    }
}

/// Inserts `members` from `writers` threads, each calling `insert` with its share; the rate.
fn threaded(members: &[Member], writers: usize, insert: impl Fn(&[Member]) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for chunk in members.chunks(members.len().div_ceil(writers)) {
            let insert = &insert;
            s.spawn(move || insert(chunk));
        }
    });
    rate(members.len(), start.elapsed())
}

/// One side's work on a round of items.
type Side<'a, T> = dyn Fn(&[T]) + 'a;

/// Runs each side over `items` in `rounds` alternating rounds, so that drift on a shared
/// machine hits all alike; each side's total time.
fn alternate<T, const N: usize>(
    items: &[T],
    rounds: usize,
    sides: [&Side<'_, T>; N],
) -> [Duration; N] {
    let mut times = [Duration::ZERO; N];
    for round in items.chunks(items.len().div_ceil(rounds)) {
        for (side, time) in sides.iter().zip(&mut times) {
            let start = Instant::now();
            side(round);
            *time += start.elapsed();
        }
    }
    times
}

/// A row: Stowage's rate next to raw redb's and native_db's.
struct Row {
    name: &'static str,
    n: usize,
    stowage: f64,
    raw: Option<f64>,
    native: Option<f64>,
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    theirs.map_or("—".into(), |t| format!("{:.2}", ours / t))
}

fn rate_cell(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.0}"))
}

fn main() {
    let n = bench_n();
    let n_fsync = 2_000.min(n);
    let dir = tempfile::tempdir_in(
        std::env::var("STOWAGE_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let files = std::cell::Cell::new(0);
    let path = |kind: &str| {
        files.set(files.get() + 1);
        dir.path().join(format!("{kind}{}.redb", files.get()))
    };
    let raw_db = || RawRedb(redb::Database::create(path("raw")).unwrap());
    let native_db = || Native(Builder::new().create(&MODELS, path("native")).unwrap());
    // `STOWAGE_BENCH_LAYERS=1`: the store under the layers `stowage serve` stacks (metrics,
    // then tracing; no recorder or subscriber installed), to see what they cost.
    let layered = std::env::var("STOWAGE_BENCH_LAYERS").is_ok();
    let new_store = || {
        let backend = Arc::new(RedbBackend::open(RedbConfig::new(path("stowage"))).unwrap());
        let mut builder = Store::builder(backend);
        if layered {
            builder = builder
                .layer(|b| Arc::new(MetricsLayer::new(b)))
                .layer(|b| Arc::new(TracingLayer::new(b)));
        }
        builder.build().unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let members: Vec<Member> = workload(n as u64, 42)
        .into_iter()
        .map(|u| Member {
            id: id_of(u.id),
            name: u.name,
            email: u.email,
            score: (u.score * 100.0).round() as u32,
            active: u.active,
            tags: u.tags,
            created: u.created,
            note: u.note,
        })
        .collect();
    let few = &members[..n_fsync];
    // The 32-writer row runs ten times longer than 2,000 inserts take there (0.1 s), which
    // was too short to measure steadily.
    let n_concurrent = 10_000.min(n);
    let many = &members[..n_concurrent];
    let mut rows = Vec::new();

    // `STOWAGE_BENCH_SKIP_FSYNC=1` leaves out the fsync-bound rows (for profiling reads).
    let fsync_rows = std::env::var("STOWAGE_BENCH_SKIP_FSYNC").is_err();
    let (mut ours_32, mut group) = (f64::NAN, f64::NAN);

    // Durable single inserts, one writer; the three sides alternate in rounds so that fsync
    // drift on a shared machine hits all alike.
    if fsync_rows {
        let (raw, native, store) = (raw_db(), native_db(), new_store());
        let coll: Collection<Member> = rt.block_on(store.collection()).unwrap();
        let times = alternate(
            few,
            4,
            [
                &|round| raw.insert(round, 1),
                &|round| native.insert(round, 1),
                &|round| {
                    rt.block_on(async {
                        for m in round {
                            coll.insert(m).await.unwrap();
                        }
                    });
                },
            ],
        );
        rows.push(Row {
            name: "durable single insert, 1 writer, 2 indexes",
            n: n_fsync,
            stowage: rate(n_fsync, times[2]),
            raw: Some(rate(n_fsync, times[0])),
            native: Some(rate(n_fsync, times[1])),
        });
    }

    // Durable inserts from 32 concurrent writers: threads on raw redb and native_db (their
    // writers queue on redb's write lock), tasks on Stowage.
    if fsync_rows {
        let writers = 32;
        let raw = raw_db();
        let raw_32 = threaded(many, writers, |c| raw.insert(c, 1));
        let native = native_db();
        let native_32 = threaded(many, writers, |c| native.insert(c, 1));
        let backend = RedbBackend::open(RedbConfig::new(path("stowage"))).unwrap();
        let store = Store::new(backend.clone());
        let mut commits = 0;
        ours_32 = rt.block_on(async {
            let coll: Collection<Member> = store.collection().await.unwrap();
            commits = backend.commits();
            let start = Instant::now();
            let tasks: Vec<_> = many
                .chunks(n_concurrent.div_ceil(writers))
                .map(|c| {
                    let (coll, c) = (coll.clone(), c.to_vec());
                    tokio::spawn(async move {
                        for m in &c {
                            coll.insert(m).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            rate(n_concurrent, start.elapsed())
        });
        group = n_concurrent as f64 / (backend.commits() - commits) as f64;
        drop((store, backend));
        rows.push(Row {
            name: "durable inserts, 32 concurrent writers, 2 indexes",
            n: n_concurrent,
            stowage: ours_32,
            raw: Some(raw_32),
            native: Some(native_32),
        });
    }

    // Batches of 100 into fresh files, the three sides alternating in rounds of a tenth;
    // the reads below use these files.
    let (raw, native, store) = (raw_db(), native_db(), new_store());
    let coll: Collection<Member> = rt.block_on(store.collection()).unwrap();
    let times = alternate(
        &members,
        10,
        [
            &|round| raw.insert(round, 100),
            &|round| native.insert(round, 100),
            &|round| {
                rt.block_on(async {
                    for chunk in round.chunks(100) {
                        let mut b = store.batch();
                        for m in chunk {
                            b.insert(&coll, m);
                        }
                        b.commit().await.unwrap();
                    }
                });
            },
        ],
    );
    let [raw_batch, native_batch, ours_batch] = times.map(|t| rate(n, t));
    rows.push(Row {
        name: "batch of 100, 2 indexes",
        n,
        stowage: ours_batch,
        raw: Some(raw_batch),
        native: Some(native_batch),
    });
    let covered: Collection<Covered> = rt.block_on(async {
        let covered: Collection<Covered> = store.collection().await.unwrap();
        for chunk in members.chunks(100) {
            let mut b = store.batch();
            for m in chunk {
                b.insert(&covered, &Covered(m.clone()));
            }
            b.commit().await.unwrap();
        }
        covered
    });

    // Point gets of every id in a second shuffled order, alternating in rounds.
    let mut ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    Rng(7).shuffle(&mut ids);
    let times = alternate(
        &ids,
        20,
        [
            &|round| {
                for id in round {
                    std::hint::black_box(raw.get(id));
                }
            },
            &|round| {
                for id in round {
                    std::hint::black_box(native.get(id));
                }
            },
            &|round| {
                rt.block_on(async {
                    for id in round {
                        std::hint::black_box(coll.get(id).await.unwrap().unwrap());
                    }
                });
            },
        ],
    );
    rows.push(Row {
        name: "point get, typed",
        n,
        stowage: rate(n, times[2]),
        raw: Some(rate(n, times[0])),
        native: Some(rate(n, times[1])),
    });

    // Range queries matching 1 % (a score range of width 100 of 0..10,000), in id order on
    // every side; the hit counts must agree.
    let per_round: usize = std::env::var("STOWAGE_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rounds = 5;
    let los: Vec<u32> = (0..rounds * per_round)
        .map(|q| (q % 99) as u32 * 100)
        .collect();
    let hits: [RefCell<Vec<usize>>; 4] = Default::default();
    let query = |lo: u32| Query::new().gte("score", lo).lt("score", lo + 100);
    let times = alternate(
        &los,
        rounds,
        [
            &|round| {
                let found = round.iter().map(|&lo| raw.range(lo, lo + 100).len());
                hits[0].borrow_mut().extend(found);
            },
            &|round| {
                let found = round.iter().map(|&lo| native.range(lo, lo + 100).len());
                hits[1].borrow_mut().extend(found);
            },
            &|round| {
                rt.block_on(async {
                    for &lo in round {
                        let found = coll.query(&query(lo)).await.unwrap().items.len();
                        hits[2].borrow_mut().push(found);
                    }
                });
            },
            &|round| {
                rt.block_on(async {
                    for &lo in round {
                        let found = covered.query(&query(lo)).await.unwrap().items.len();
                        hits[3].borrow_mut().push(found);
                    }
                });
            },
        ],
    );
    let [raw_hits, native_hits, ours_hits, covered_hits] = hits.map(RefCell::into_inner);
    assert_eq!(raw_hits, native_hits);
    assert_eq!(raw_hits, ours_hits);
    assert_eq!(raw_hits, covered_hits);
    let matched: usize = raw_hits.iter().sum();
    let queries = rounds * per_round;
    let matched = matched / queries;
    rows.push(Row {
        name: "range query, 1 % on the score index",
        n: matched,
        stowage: rate(queries, times[2]),
        raw: Some(rate(queries, times[0])),
        native: Some(rate(queries, times[1])),
    });
    rows.push(Row {
        name: "range query, 1 %, score index covering",
        n: matched,
        stowage: rate(queries, times[3]),
        raw: Some(rate(queries, times[0])),
        native: Some(rate(queries, times[1])),
    });

    println!(
        "\nStowage on redb vs raw redb (same indexes by hand) vs native_db 0.8.2 (bincode), \
         durable commits on every side\n"
    );
    println!(
        "| row | n | Stowage ops/s | raw redb ops/s | native_db ops/s | / raw redb | / native_db |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            r.name,
            r.n,
            r.stowage,
            rate_cell(r.raw),
            rate_cell(r.native),
            ratio(r.stowage, r.raw),
            ratio(r.stowage, r.native)
        );
    }
    if fsync_rows {
        println!(
            "\n32 concurrent writers (Stowage) / 1 writer (raw redb): {:.1}x, {group:.1} writes \
             per commit",
            ours_32 / rows[0].raw.unwrap()
        );
    }
    println!("command: cargo bench -p stowage-redb --bench native_db   (STOWAGE_BENCH_N={n})");

    if let Ok(what) = std::env::var("STOWAGE_BENCH_PROFILE") {
        // Single durable inserts, 2,000 on one side only: for counting the bytes each
        // commit writes (strace -e pwrite64), not for timing.
        let fresh: Vec<Member> = (0..64).flat_map(|t| coll_copy(&ids, 0, t)).collect();
        match what.as_str() {
            "single" => rt.block_on(async {
                for m in &fresh[..2000] {
                    coll.insert(m).await.unwrap();
                }
            }),
            "raw-single" => raw.insert(&fresh[..2000], 1),
            "native-single" => native.insert(&fresh[..2000], 1),
            _ => rt.block_on(profile_loop(&what, &coll, &covered, &ids)),
        }
    }
}

/// 32 new members for writer `t` of profiling round `q`: unique ids and emails.
fn coll_copy(ids: &[String], q: u32, t: u32) -> Vec<Member> {
    (0..32)
        .map(|i| {
            let n = (q * 32 + t) * 32 + i;
            Member {
                id: format!("p{n:015}"),
                name: ids[n as usize % ids.len()].clone(),
                email: format!("p{n}@example.com"),
                score: n % 10_000,
                active: true,
                tags: vec!["alpha".into()],
                created: "2024-01-01T00:00:00Z".into(),
                note: "x".repeat(60),
            }
        })
        .collect()
}

/// `STOWAGE_BENCH_PROFILE=get|range|covering|writers`: after the table, runs that Stowage operation
/// for 20 s, inside this function, so a profiler's samples can be picked out by it.
#[inline(never)]
async fn profile_loop(
    what: &str,
    coll: &Collection<Member>,
    covered: &Collection<Covered>,
    ids: &[String],
) {
    let until = Instant::now() + Duration::from_secs(20);
    let query = |q: u32| {
        Query::new()
            .gte("score", q % 99 * 100)
            .lt("score", q % 99 * 100 + 100)
    };
    let mut q: u32 = 0;
    while Instant::now() < until {
        q += 1;
        match what {
            "get" => {
                for id in ids.iter().take(1000) {
                    std::hint::black_box(coll.get(id).await.unwrap());
                }
            }
            "range" => {
                std::hint::black_box(coll.query(&query(q)).await.unwrap());
            }
            "covering" => {
                std::hint::black_box(covered.query(&query(q)).await.unwrap());
            }
            "writers" => {
                // 32 concurrent durable writers, 32 inserts each, of copies under new ids.
                let tasks: Vec<_> = (0..32)
                    .map(|t| {
                        let coll = coll.clone();
                        let base = coll_copy(ids, q, t);
                        tokio::spawn(async move {
                            for m in base {
                                coll.insert(&m).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            }
            other => panic!("STOWAGE_BENCH_PROFILE={other}: get, range, covering or writers"),
        }
    }
}
