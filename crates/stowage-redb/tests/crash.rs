//! Crash safety: a writer process is killed with SIGKILL at random moments; after each kill
//! the file reopens with every acknowledged write present and indexes agreeing with records.
//!
//! `STOWAGE_CRASH_CYCLES` sets the number of kill cycles (default 20).

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use stowage_core::{ErrorKind, Filter, Query, Store};
use stowage_redb::{RedbBackend, RedbConfig};

const WRITER: &str = env!("CARGO_BIN_EXE_stowage-redb-crash-writer");

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

async fn verify(path: &Path, acked: &Acked) -> usize {
    let store = Store::new(RedbBackend::open(RedbConfig::new(path)).expect("reopen after kill"));
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

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles: usize = std::env::var("STOWAGE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
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
        let mut child = Command::new(WRITER)
            .arg(&path)
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
        records = rt.block_on(verify(&path, &acked));
    }
    println!(
        "seed {seed}: {cycles} kill cycles, {} acknowledged ids verified, {records} records checked against their indexes",
        acked.len()
    );
    assert!(!acked.is_empty());
}
