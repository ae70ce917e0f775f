//! The benchmark workload of `shared/benchmarks.md`, shared by every engine's benchmark:
//! the seeded records, their shuffled order, and the table every benchmark prints.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Collection, CollectionSpec, IndexSpec, Query, Record, Store};

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

/// Prints `rows` as the markdown table of `shared/benchmarks.md`.
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
