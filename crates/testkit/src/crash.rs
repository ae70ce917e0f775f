//! Crash safety, for every embedded engine: a writer process is killed with SIGKILL at
//! random moments; after each kill the store reopens with every acknowledged write present
//! and indexes agreeing with records.
//!
//! An engine crate builds a small writer binary whose `main` opens its store at the path it
//! is given and calls [`write_until_killed`], and a test that calls
//! [`acknowledged_writes_survive_sigkill`] with that binary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use serde_json::json;

use stowage_core::{CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query, Store};

/// The collection the crash test writes and checks.
pub fn spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::integer("n", "/n"))
        .index(IndexSpec::integer("n_covering", "/n").covering())
        .index(IndexSpec::string("tags", "/tags").multi())
}

/// The writer side: writes to `store` from 8 tasks until killed, printing `ready`, then
/// `ack ID N VERSION` after each write the store acknowledged.
pub async fn write_until_killed(store: Store) {
    let coll = store
        .collection_with_spec::<serde_json::Value>("crash", spec())
        .await
        .expect("open the collection");
    // A run number keeps ids unique across the parent's restarts.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000);
    println!("ready");
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let coll = coll.clone();
            tokio::spawn(async move {
                for seq in 0u64.. {
                    // Every third write rewrites the task's previous record; some carry a TTL.
                    let id = format!("r{run}-t{task}-{}", if seq % 3 == 2 { seq - 1 } else { seq });
                    let n = (seq * 7 + task) % 50;
                    let body = json!({"n": n, "tags": [format!("t{}", n % 4), "all"], "pad": "x".repeat(100)});
                    let mut put = Put::upsert();
                    if seq % 5 == 0 {
                        put = put.ttl(Duration::from_secs(3600));
                    }
                    let version = coll.put(&id, &body, put).await.expect("write").version;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {id} {n} {version}");
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// A small xorshift generator: the kill points need variety, not cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The last acknowledged write of each id: (n, version).
type Acked = HashMap<String, (i64, u64)>;

fn record_ack(line: &str, acked: &mut Acked) {
    let mut parts = line.split_whitespace();
    if parts.next() != Some("ack") {
        return;
    }
    let (Some(id), Some(n), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("malformed ack line {line:?}");
    };
    let (n, v): (i64, u64) = (n.parse().unwrap(), v.parse().unwrap());
    let e = acked.entry(id.to_owned()).or_insert((n, v));
    if v >= e.1 {
        *e = (n, v);
    }
}

async fn verify(store: Store, acked: &Acked) -> usize {
    let coll = match store
        .existing_collection::<serde_json::Value>("crash")
        .await
    {
        Ok(c) => c,
        // Killed before the collection was created: nothing can have been acknowledged.
        Err(e) if e.kind() == ErrorKind::NotFound && acked.is_empty() => return 0,
        Err(e) => panic!("{e}"),
    };
    // One scan reads every record; each acknowledged write must be in it.
    let all: Vec<_> = coll.scan().try_collect().await.unwrap();
    let found: HashMap<&str, (i64, u64)> = all
        .iter()
        .map(|r| (r.id.as_str(), (r.value["n"].as_i64().unwrap(), r.version)))
        .collect();
    for (id, (n, version)) in acked {
        let (got_n, got_version) = *found
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged {id} is lost"));
        assert!(
            got_version >= *version,
            "{id}: version {got_version} < acknowledged {version}"
        );
        if got_version == *version {
            assert_eq!(got_n, *n, "{id}: acknowledged value differs");
        }
    }
    // Indexes agree with records: every value's index lookup returns exactly the records
    // whose body holds it.
    let mut by_n: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut by_tag: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &all {
        by_n.entry(r.value["n"].as_i64().unwrap())
            .or_default()
            .insert(r.id.clone());
        for t in r.value["tags"].as_array().unwrap() {
            by_tag
                .entry(t.as_str().unwrap().to_owned())
                .or_default()
                .insert(r.id.clone());
        }
    }
    // The covering index's copies are the records: same versions, same bodies.
    let latest: HashMap<&str, (u64, &serde_json::Value)> = all
        .iter()
        .map(|r| (r.id.as_str(), (r.version, &r.value)))
        .collect();
    for n in 0..50 {
        let page = coll.query(&Query::new().eq("n", n)).await.unwrap();
        let ids: BTreeSet<String> = page.items.into_iter().map(|r| r.id).collect();
        let copies = coll.query(&Query::new().eq("n_covering", n)).await.unwrap();
        for r in &copies.items {
            assert_eq!(
                latest.get(r.id.as_str()),
                Some(&(r.version, &r.value)),
                "covering copy of {}",
                r.id
            );
        }
        let copied: BTreeSet<String> = copies.items.into_iter().map(|r| r.id).collect();
        assert_eq!(copied, ids, "covering index n = {n}");
        assert_eq!(ids, by_n.remove(&n).unwrap_or_default(), "index n = {n}");
    }
    for (tag, want) in by_tag {
        assert_eq!(
            coll.count(&Filter::new().eq("tags", tag.as_str()))
                .await
                .unwrap(),
            want.len() as u64
        );
    }
    assert_eq!(coll.count(&Filter::new()).await.unwrap(), all.len() as u64);
    all.len()
}

/// Starts `writer` (a binary that calls [`write_until_killed`] on the store at `path`) and
/// kills it with SIGKILL at random moments, `STOWAGE_CRASH_CYCLES` times (default 20);
/// after each kill, `open(path)` must find every acknowledged write, with indexes agreeing
/// with records. Prints the seed and what it checked.
pub fn acknowledged_writes_survive_sigkill(
    writer: &str,
    path: &Path,
    open: impl Fn(&Path) -> Store,
) {
    let cycles: usize = std::env::var("STOWAGE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let mut acked = Acked::new();
    let mut records = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(writer)
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the writer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(
            lines.next().unwrap().unwrap(),
            "ready",
            "cycle {cycle}: writer did not start"
        );
        let target = 1 + rng.next() % 200;
        for _ in 0..target {
            match lines.next() {
                Some(Ok(line)) => record_ack(&line, &mut acked),
                other => panic!("cycle {cycle}: writer stopped early: {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 20_000));
        child.kill().expect("SIGKILL the writer");
        child.wait().unwrap();
        // Lines printed before the kill were acknowledged too.
        for line in lines.map_while(Result::ok) {
            record_ack(&line, &mut acked);
        }
        records = rt.block_on(async { verify(open(path), &acked).await });
    }
    println!(
        "seed {seed}: {cycles} kill cycles, {} acknowledged ids verified, {records} records checked against their indexes",
        acked.len()
    );
    assert!(!acked.is_empty());
}
