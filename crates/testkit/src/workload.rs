//! The benchmark workload of `docs/benchmarks.md`, shared by every engine's benchmark:
//! the seeded records, their shuffled order, and the table every benchmark prints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use stowage_core::{Collection, CollectionSpec, IndexSpec, Query, Record, Store};

/// One record of the workload: about 200 bytes of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The record number (its id is [`id_of`] it).
    pub id: u64,
    /// `user-` and 8 digits.
    pub name: String,
    /// `user<n>@example.com`.
    pub email: String,
    /// 0 to 100, two decimals: the 1 % query's range.
    pub score: f64,
    /// A coin flip.
    pub active: bool,
    /// Two of eight words: the multi-valued index.
    pub tags: Vec<String>,
    /// A date in 2024, RFC 3339.
    pub created: String,
    /// 40 to 80 letters, making the body about 200 bytes.
    pub note: String,
}

/// The plain collection (no secondary indexes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plain(pub User);

/// The indexed collection: `score` (float) and `tags` (string, multi).
impl Record for User {
    const COLLECTION: &'static str = "users_indexed";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::float("score", "/score"))
            .index(IndexSpec::string("tags", "/tags").multi())
    }
    fn id(&self) -> String {
        id_of(self.id)
    }
}

impl Record for Plain {
    const COLLECTION: &'static str = "users";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
    }
    fn id(&self) -> String {
        id_of(self.0.id)
    }
}

/// Record `n`'s id: `k` and 15 digits, 16 bytes.
pub fn id_of(n: u64) -> String {
    format!("k{n:015}")
}

/// SplitMix64: the seeded generator of the workload.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Shuffles `v` in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

const WORDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

fn user(n: u64, rng: &mut Rng) -> User {
    let note_len = 40 + (rng.next_u64() % 40) as usize;
    let note: String = (0..note_len)
        .map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char)
        .collect();
    User {
        id: n,
        name: format!("user-{n:08}"),
        email: format!("user{n}@example.com"),
        score: (rng.next_u64() % 10_000) as f64 / 100.0,
        active: rng.next_u64().is_multiple_of(2),
        tags: vec![
            WORDS[(rng.next_u64() % 8) as usize].to_owned(),
            WORDS[(rng.next_u64() % 8) as usize].to_owned(),
        ],
        created: format!(
            "2024-{:02}-{:02}T{:02}:{:02}:00Z",
            1 + rng.next_u64() % 12,
            1 + rng.next_u64() % 28,
            rng.next_u64() % 24,
            rng.next_u64() % 60
        ),
        note,
    }
}

/// Users `0..n` in shuffled order (random keys).
pub fn workload(n: u64, seed: u64) -> Vec<User> {
    let mut rng = Rng(seed);
    let mut users: Vec<User> = (0..n).map(|i| user(i, &mut rng)).collect();
    rng.shuffle(&mut users);
    users
}

/// One row of a benchmark table.
#[derive(Debug)]
pub struct Row {
    /// What was measured.
    pub name: &'static str,
    /// How many operations (or matches, for queries).
    pub n: usize,
    /// Stowage's rate.
    pub stowage: f64,
    /// The raw engine's rate doing the same work (`None`: reported absolute).
    pub raw: Option<f64>,
}

/// Operations per second.
pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Prints `rows` as the markdown table of `docs/benchmarks.md`.
pub fn print_table(rows: &[Row]) {
    println!("| row | n | Stowage ops/s | raw ops/s | ratio |");
    println!("|---|---|---|---|---|");
    for r in rows {
        match r.raw {
            Some(raw) => println!(
                "| {} | {} | {:.0} | {:.0} | {:.2} |",
                r.name,
                r.n,
                r.stowage,
                raw,
                r.stowage / raw
            ),
            None => println!("| {} | {} | {:.0} | — | — |", r.name, r.n, r.stowage),
        }
    }
}

/// The record count from `STOWAGE_BENCH_N` (default 100,000).
pub fn bench_n() -> usize {
    std::env::var("STOWAGE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Opens `T`'s collection and inserts `items` in atomic batches of 100: the rate, and the
/// collection for the reads that follow.
pub async fn batches<T: Record>(store: &Store, items: &[T]) -> (f64, Collection<T>) {
    let coll = store.collection::<T>().await.unwrap();
    let start = Instant::now();
    for chunk in items.chunks(100) {
        let mut b = store.batch();
        for it in chunk {
            b.insert(&coll, it);
        }
        b.commit().await.unwrap();
    }
    (rate(items.len(), start.elapsed()), coll)
}

/// One 1 % query: the records with a score in `lo..lo + 1`; how many.
pub async fn score_query<T: Record>(coll: &Collection<T>, lo: f64) -> usize {
    coll.query(&Query::new().gte("score", lo).lt("score", lo + 1.0))
        .await
        .unwrap()
        .items
        .len()
}

/// Inserts `users` into `coll` from `writers` concurrent tasks; how long it took.
pub async fn insert_all(coll: &Collection<Plain>, users: &[User], writers: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = users
        .chunks(users.len().div_ceil(writers))
        .map(|c| {
            let (coll, c) = (coll.clone(), c.to_vec());
            tokio::spawn(async move {
                for u in c {
                    coll.insert(&Plain(u)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Gets every id of `ids` from `tasks` concurrent tasks (each id once); how long it took.
pub async fn gets(
    coll: &Collection<Plain>,
    ids: &std::sync::Arc<Vec<String>>,
    tasks: usize,
) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (coll, ids) = (coll.clone(), ids.clone());
            tokio::spawn(async move {
                for id in ids.iter().skip(t).step_by(tasks) {
                    std::hint::black_box(coll.get(id).await.unwrap().unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

/// Durable inserts into a watched namespace of `store` against an unwatched one, in
/// alternating rounds (the "raw" column is the unwatched rate), then the feed's latency:
/// one write per millisecond, each timed from the write call to its event's arrival.
pub async fn watcher_rows(store: &Store, users: &[User]) -> (Vec<Row>, Vec<Duration>) {
    use futures_util::StreamExt;
    let quiet = store.namespace("quiet").unwrap();
    let watched = store.namespace("watched").unwrap();
    let quiet = quiet.collection::<Plain>().await.unwrap();
    let watched = watched.collection::<Plain>().await.unwrap();
    // The watcher drains every event, as a consumer would.
    let mut stream = watched.watch(None).await.unwrap();
    let drain = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(e) = stream.next().await {
            e.unwrap();
            n += 1;
        }
        n
    });
    let (first, second) = users.split_at(users.len() / 2);
    let mut rows = Vec::new();
    for (name, writers, part) in [
        (
            "durable single insert, 1 writer, 1 watcher (raw: no watcher)",
            1,
            first,
        ),
        (
            "durable inserts, 32 writers, 1 watcher (raw: no watcher)",
            32,
            second,
        ),
    ] {
        let (mut quiet_time, mut watched_time) = (Duration::ZERO, Duration::ZERO);
        for round in part.chunks(part.len().div_ceil(4)) {
            quiet_time += insert_all(&quiet, round, writers).await;
            watched_time += insert_all(&watched, round, writers).await;
        }
        rows.push(Row {
            name,
            n: part.len(),
            stowage: rate(part.len(), watched_time),
            raw: Some(rate(part.len(), quiet_time)),
        });
    }
    drain.abort();

    let paced = store.namespace("paced").unwrap();
    let coll = paced.collection::<Plain>().await.unwrap();
    let mut events = coll.watch(None).await.unwrap();
    let arrivals = tokio::spawn(async move {
        let mut at = std::collections::HashMap::new();
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if let Some(id) = e.id {
                at.insert(id, Instant::now());
            }
            if at.len() == 2_000 {
                break;
            }
        }
        at
    });
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = Vec::new();
    for u in users.iter().cycle().take(2_000) {
        tick.tick().await;
        let p = Plain(User {
            id: u.id + 1_000_000 * sent.len() as u64,
            ..u.clone()
        });
        let id = p.id();
        let start = Instant::now();
        coll.insert(&p).await.unwrap();
        sent.push((id, start));
    }
    let at = arrivals.await.unwrap();
    let latencies = sent
        .into_iter()
        .map(|(id, start)| at[&id].duration_since(start))
        .collect();
    (rows, latencies)
}

/// Prints the change feed's latency from [`watcher_rows`]: p50 and p99.
pub fn print_feed_latency(mut latencies: Vec<Duration>) {
    latencies.sort();
    let l = &latencies;
    let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "change feed latency, write call to a collection watcher, 1 write/ms, {} writes: \
         p50 {:.2} ms, p99 {:.2} ms",
        l.len(),
        at(0.5),
        at(0.99)
    );
}

/// The raw engine side of [`compare_embedded`]: the same work done by hand — records as JSON
/// under their ids, writes made durable as the engine's best allows.
pub trait RawEngine: Send + Sync + 'static {
    /// Inserts `users`, `per_txn` per durable commit; how long it took.
    fn insert(&self, users: &[User], per_txn: usize) -> Duration;
    /// Reads and decodes one record.
    fn get(&self, id: &str) -> User;
    /// Adds 1 to the number stored under `key` (absent: 0) in one durable transaction.
    fn increment(&self, key: &str);
    /// The 1 % query as a full scan decoding every record and filtering on score.
    fn scan(&self, lo: f64) -> usize;
    /// Builds a score index by hand (score's order-preserving bits ‖ id).
    fn add_score_index(&self, users: &[User]);
    /// The 1 % query by hand: the score index walked, its ids sorted and looked up — the
    /// floor for any query that reads its records from the records table.
    fn indexed_query(&self, lo: f64) -> usize;
}

/// A raw score index key: the score's bits made order-preserving, then the id.
pub fn raw_score_key(score: f64, id: &str) -> Vec<u8> {
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
pub struct Covered(pub User);

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

/// An embedded engine's benchmark, in one run, on the rows of `docs/benchmarks.md`:
/// durable single inserts, 32 concurrent writers, the same two with a watcher, batches of
/// 100 (plain, 2 indexes, covering), point gets sequential and 64 at once, and the 1 %
/// query against a full scan and against the raw engine's own index walk. Each Stowage row
/// next to `raw_engine()`'s, in alternating rounds where drift could favour one side;
/// `new_store()` opens a new empty store of the engine. Prints a markdown table.
///
/// `STOWAGE_BENCH_N` scales the record count (default 100,000; the durable-per-write rows
/// use 2,000), `STOWAGE_BENCH_SKIP_FSYNC=1` leaves those out, `STOWAGE_BENCH_QUERIES` sets
/// the queries per round.
pub fn compare_embedded<R: RawEngine>(
    engine: &str,
    durability: &str,
    mut raw_engine: impl FnMut() -> R,
    mut new_store: impl FnMut() -> Store,
) {
    let n = bench_n();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let users = workload(n as u64, 42);
    let mut rows = Vec::new();
    // `STOWAGE_BENCH_SKIP_FSYNC=1` leaves out the fsync-bound rows (for quick runs).
    let durable = std::env::var("STOWAGE_BENCH_SKIP_FSYNC").is_err().then(|| {
        durable_rows(
            &rt,
            &users[..2_000.min(n)],
            &mut raw_engine,
            &mut new_store,
            &mut rows,
        )
    });
    // Batches; the reads use the same files afterwards.
    let raw_db = Arc::new(raw_engine());
    let store = new_store();
    let (coll, indexed, covered) = batch_rows(&rt, &users, &raw_db, &store, &mut rows);
    get_rows(&rt, &users, &raw_db, &coll, &mut rows);
    query_rows(&rt, &users, &raw_db, &indexed, &covered, &mut rows);

    println!("\nStowage on {engine} vs raw {engine}, durability: {durability} on both sides\n");
    print_table(&rows);
    if let Some(Durable {
        single,
        concurrent,
        feed_latency,
    }) = durable
    {
        println!(
            "\n32 concurrent writers / 1 writer (Stowage): {:.1}x",
            concurrent / single
        );
        print_feed_latency(feed_latency);
    }
    println!("command: cargo bench -p stowage-{engine}   (STOWAGE_BENCH_N={n})");
}

/// The durable rows' rates the summary lines need.
struct Durable {
    single: f64,
    concurrent: f64,
    feed_latency: Vec<Duration>,
}

/// Durable single inserts, 32 concurrent writers, and the same with a watcher, on `few`
/// records (each durable write waits for its fsync).
fn durable_rows<R: RawEngine>(
    rt: &tokio::runtime::Runtime,
    few: &[User],
    raw_engine: &mut impl FnMut() -> R,
    new_store: &mut impl FnMut() -> Store,
    rows: &mut Vec<Row>,
) -> Durable {
    let n_fsync = few.len();
    // Durable single inserts, one writer. fsync latency drifts on shared machines, so
    // the two sides alternate in rounds and their times are summed.
    let raw_db = Arc::new(raw_engine());
    let store = new_store();
    let (raw_time, ours_time) = rt.block_on(async {
        let coll = store.collection::<Plain>().await.unwrap();
        let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
        for round in few.chunks(n_fsync.div_ceil(4)) {
            raw_time += raw_db.insert(round, 1);
            let start = Instant::now();
            for u in round {
                coll.insert(&Plain(u.clone())).await.unwrap();
            }
            ours_time += start.elapsed();
        }
        (raw_time, ours_time)
    });
    drop((store, raw_db));
    let single = rate(n_fsync, ours_time);
    rows.push(Row {
        name: "durable single insert, 1 writer",
        n: n_fsync,
        stowage: single,
        raw: Some(rate(n_fsync, raw_time)),
    });

    // Durable inserts from 32 concurrent writers.
    let db = Arc::new(raw_engine());
    let raw = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = few
            .chunks(n_fsync.div_ceil(32))
            .map(|c| {
                let (db, c) = (db.clone(), c.to_vec());
                tokio::task::spawn_blocking(move || db.insert(&c, 1))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        rate(n_fsync, start.elapsed())
    });
    drop(db);
    let store = new_store();
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
    let concurrent = ours;
    let store = new_store();
    let (watch_rows, latencies) = rt.block_on(watcher_rows(&store, few));
    drop(store);
    rows.extend(watch_rows);

    // The hot counter: 64 tasks add 1 to one record.
    let per_task = counter_per_task();
    let db = Arc::new(raw_engine());
    let raw_time = rt.block_on(concurrently(64, per_task, move |_| {
        let db = db.clone();
        async move {
            tokio::task::spawn_blocking(move || db.increment("hot"))
                .await
                .unwrap();
        }
    }));
    let store = new_store();
    let name = "hot counter, 64 tasks: mutate (raw: read-modify-write in one transaction)";
    rows.extend(rt.block_on(counter_rows(&store, 64, per_task, name, raw_time)));
    drop(store);
    Durable {
        single,
        concurrent,
        feed_latency: latencies,
    }
}

/// Batches of 100: plain beside the raw engine, then with 2 indexes, then with a covering
/// index; returns the three collections, filled.
fn batch_rows<R: RawEngine>(
    rt: &tokio::runtime::Runtime,
    users: &[User],
    raw_db: &Arc<R>,
    store: &Store,
    rows: &mut Vec<Row>,
) -> (Collection<Plain>, Collection<User>, Collection<Covered>) {
    let n = users.len();
    // Batches of 100, no indexes; reads use the same files afterwards.
    let raw = rate(n, raw_db.insert(users, 100));
    let plain: Vec<Plain> = users.iter().cloned().map(Plain).collect();
    let (ours, coll) = rt.block_on(batches(store, &plain));
    rows.push(Row {
        name: "batch of 100, no indexes",
        n,
        stowage: ours,
        raw: Some(raw),
    });

    // Batches of 100 with 2 indexes (score, tags multi).
    let (ours, indexed) = rt.block_on(batches(store, users));
    rows.push(Row {
        name: "batch of 100, 2 indexes",
        n,
        stowage: ours,
        raw: None,
    });
    let covered_users: Vec<Covered> = users.iter().cloned().map(Covered).collect();
    let (ours, covered) = rt.block_on(batches(store, &covered_users));
    drop(covered_users);
    rows.push(Row {
        name: "batch of 100, 2 indexes, score covering",
        n,
        stowage: ours,
        raw: None,
    });

    (coll, indexed, covered)
}

/// Point gets of every id, one at a time and 64 at once, beside the raw engine's.
fn get_rows<R: RawEngine>(
    rt: &tokio::runtime::Runtime,
    users: &[User],
    raw_db: &Arc<R>,
    coll: &Collection<Plain>,
    rows: &mut Vec<Row>,
) {
    let n = users.len();
    // Point gets of every id in a second shuffled order, the two sides alternating in
    // rounds so that drift on a shared machine hits both alike.
    let mut ids: Vec<String> = users.iter().map(|u| id_of(u.id)).collect();
    Rng(7).shuffle(&mut ids);
    let (raw_time, ours_time) = rt.block_on(async {
        let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
        for round in ids.chunks(ids.len().div_ceil(4)) {
            let start = Instant::now();
            for id in round {
                std::hint::black_box(raw_db.get(id));
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
                        std::hint::black_box(db.get(id));
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
}

/// The 1 % query, on an index and on a covering index, against a full scan and against the
/// raw engine's own index walk.
fn query_rows<R: RawEngine>(
    rt: &tokio::runtime::Runtime,
    users: &[User],
    raw_db: &Arc<R>,
    indexed: &Collection<User>,
    covered: &Collection<Covered>,
    rows: &mut Vec<Row>,
) {
    // A query matching 1% (a score range of width 1.0 of 0..100) against a full scan with
    // a filter, the way a hand-written sled store without indexes answers queries, and against the same query
    // by hand on the raw engine. The four alternate in rounds so that drift hits all alike.
    // `STOWAGE_BENCH_QUERIES` sets the queries per round (for profiling).
    let per_round: usize = std::env::var("STOWAGE_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rounds = 5;
    raw_db.add_score_index(users);
    let mut times = [Duration::ZERO; 4];
    let (mut matched, mut matched_covering) = (0, 0);
    for round in 0..rounds {
        let los = || (0..per_round).map(move |q| ((round * per_round + q) % 99) as f64);
        let start = Instant::now();
        std::hint::black_box(raw_db.scan((round % 99) as f64));
        times[0] += start.elapsed();
        let start = Instant::now();
        for lo in los() {
            std::hint::black_box(raw_db.indexed_query(lo));
        }
        times[1] += start.elapsed();
        let start = Instant::now();
        for lo in los() {
            matched += rt.block_on(score_query(indexed, lo));
        }
        times[2] += start.elapsed();
        let start = Instant::now();
        for lo in los() {
            matched_covering += rt.block_on(score_query(covered, lo));
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
        name: "indexed query, 1% (vs raw: index walk + sorted gets)",
        n: matched,
        stowage: ours,
        raw: Some(raw_indexed),
    });
}

/// Runs `tasks` concurrent copies of `step` (each `per_task` times, given its task number);
/// how long it took.
pub async fn concurrently<F, Fut>(tasks: usize, per_task: usize, step: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let step = step.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    step(t).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

/// The hot-counter rows of every engine's bench: `tasks` concurrent tasks add 1 to one
/// record of `store`, `per_task` times each, with [`Collection::mutate`] — beside the
/// engine's own atomic increment (`raw`, measured by the caller the same way, named in
/// `raw_name`), and beside a compare-and-set loop through the typed API (read, then update
/// at the version read, again on Conflict), which is what callers wrote before mutations.
/// Each side checks its final count.
pub async fn counter_rows(
    store: &Store,
    tasks: usize,
    per_task: usize,
    raw_name: &'static str,
    raw: Duration,
) -> Vec<Row> {
    let n = tasks * per_task;
    let coll = store
        .collection_with_spec::<serde_json::Value>("counters", CollectionSpec::new())
        .await
        .unwrap();
    let c = coll.clone();
    let mutate = concurrently(tasks, per_task, move |_| {
        let c = c.clone();
        async move {
            c.mutate("hot", &stowage_core::Mutate::new().add("/n", 1))
                .await
                .unwrap();
        }
    })
    .await;
    let got = coll.get("hot").await.unwrap().unwrap().value["n"].as_u64();
    assert_eq!(got, Some(n as u64), "mutate counted every increment");
    coll.put(
        "cas",
        &serde_json::json!({"n": 0}),
        stowage_core::Put::insert(),
    )
    .await
    .unwrap();
    let c = coll.clone();
    let cas = concurrently(tasks, per_task, move |_| {
        let c = c.clone();
        async move { cas_increment(&c).await }
    })
    .await;
    let got = coll.get("cas").await.unwrap().unwrap().value["n"].as_u64();
    assert_eq!(got, Some(n as u64), "the loop counted every increment");
    vec![
        Row {
            name: raw_name,
            n,
            stowage: rate(n, mutate),
            raw: Some(rate(n, raw)),
        },
        Row {
            name: "hot counter: mutate (vs a compare-and-set loop through the typed API)",
            n,
            stowage: rate(n, mutate),
            raw: Some(rate(n, cas)),
        },
    ]
}

/// One increment of record `cas` by read, then update at that version, again on Conflict.
async fn cas_increment(c: &Collection<serde_json::Value>) {
    loop {
        let r = c.get("cas").await.unwrap().unwrap();
        let n = r.value["n"].as_u64().unwrap();
        let next = serde_json::json!({"n": n + 1});
        match c
            .put("cas", &next, stowage_core::Put::update(r.version))
            .await
        {
            Ok(_) => return,
            Err(e) if e.kind() == stowage_core::ErrorKind::Conflict => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// The hot counter's size from `STOWAGE_BENCH_COUNTER` (increments per task, default 50;
/// 64 tasks).
pub fn counter_per_task() -> usize {
    std::env::var("STOWAGE_BENCH_COUNTER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}
