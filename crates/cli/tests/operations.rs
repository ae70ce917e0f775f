//! Operations across engines: copy every engine into every engine, back each up and restore
//! it into each, migrate live under a mirror, and `stowage copy` killed and resumed.
//!
//! PostgreSQL is the machine's shared server (a scratch database per store, dropped at the
//! end); Redis is a private `redis-server` this test starts on a free port and stops.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
#![cfg(all(
    feature = "backend-postgres",
    feature = "backend-redis",
    feature = "backend-sqlite",
    feature = "backend-sled"
))]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stowage::archive::{backup_store, restore_store};
use stowage::ops::{
    check_store, compare_stores, copy_store, reconcile_stores, MirrorLayer, Overwrite, Selection,
};
use stowage::{CollectionSpec, IndexSpec, Put, Store};
use stowage_postgres::testkit::ScratchDatabase;
use stowage_redis::testkit::PrivateRedis;

const STOWAGE: &str = env!("CARGO_BIN_EXE_stowage");
const ENGINES: [&str; 6] = ["memory", "redb", "sqlite", "sled", "postgres", "redis"];

/// Makes fresh, empty stores of every engine, and cleans up after them.
struct Stores {
    dir: tempfile::TempDir,
    redis: PrivateRedis,
    databases: std::sync::Mutex<Vec<ScratchDatabase>>,
    next: AtomicUsize,
}

impl Stores {
    async fn new() -> Stores {
        let redis = tokio::task::spawn_blocking(PrivateRedis::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a private redis-server must start: {e}"));
        Stores {
            dir: tempfile::tempdir().unwrap(),
            redis,
            databases: std::sync::Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// A URL of a new, empty store of `engine`.
    fn url(&self, engine: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().display();
        match engine {
            "memory" => "memory://".to_owned(),
            "redb" => format!("redb://{dir}/s{n}.redb"),
            "sqlite" => format!("sqlite://{dir}/s{n}.db"),
            "sled" => format!("sled://{dir}/s{n}"),
            "postgres" => {
                let db = ScratchDatabase::create("stowage_ops").unwrap_or_else(|e| {
                    panic!("PostgreSQL must run at STOWAGE_TEST_POSTGRES_URL: {e}")
                });
                let url = format!("postgres://{}", db.location());
                self.databases.lock().unwrap().push(db);
                url
            }
            "redis" => format!("redis://{}/?prefix=s{n}", self.redis.address()),
            other => panic!("no engine {other}"),
        }
    }

    async fn open(&self, engine: &str) -> Store {
        Store::open(&self.url(engine)).await.unwrap()
    }
}

/// What every engine must carry: unicode ids, a 2 MiB body, unique and multi-valued
/// indexes, TTLs (one already expired: never copied), opaque bytes, two namespaces.
async fn fill(store: &Store) {
    let people = store
        .collection_with_spec::<Value>(
            "people",
            CollectionSpec::new()
                .index(IndexSpec::string("email", "/email").unique())
                .index(IndexSpec::string("tags", "/tags").multi())
                .index(IndexSpec::integer("age", "/age")),
        )
        .await
        .unwrap();
    let mut batch = store.batch();
    for i in 0..120 {
        batch.put(
            &people,
            &format!("ü-日本-{i:03}"),
            &json!({"email": format!("p{i}@x.org"), "tags": ["all", format!("t{}", i % 4)], "age": i}),
            Put::insert(),
        );
    }
    batch.commit().await.unwrap();
    people
        .put(
            "big",
            &json!({"email": "big@x.org", "blob": "é".repeat(1 << 20)}),
            Put::insert(),
        )
        .await
        .unwrap();
    people
        .put(
            "later",
            &json!({"email": "later@x.org"}),
            Put::insert().ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    people
        .put(
            "gone",
            &json!({"email": "gone@x.org"}),
            Put::insert().ttl(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    // U+0000 in indexed strings (unique and multi-valued) and in the body: valid JSON
    // every engine keeps, PostgreSQL included.
    people
        .put(
            "nul",
            &json!({"email": "nul\u{0}@x.org", "tags": ["a\u{0}b", "\u{0}"], "note": "\u{0}"}),
            Put::insert(),
        )
        .await
        .unwrap();
    // Updated twice: version 3 must arrive as 3.
    for v in 0..2 {
        people
            .put(
                "ü-日本-007",
                &json!({"email": "p7@x.org", "age": 70 + v}),
                Put::upsert(),
            )
            .await
            .unwrap();
    }
    let files = store
        .namespace("files")
        .unwrap()
        .collection_with_spec::<Value>("blobs", CollectionSpec::new())
        .await
        .unwrap();
    files
        .put_raw("bin/ø", vec![0u8, 255, 1, 2, 3], Put::insert())
        .await
        .unwrap();
}

/// Live records the fixture leaves once `gone` has expired.
const LIVE: u64 = 120 + 2 + 1 + 1;

async fn filled_sources(stores: &Stores) -> Vec<(&'static str, Store)> {
    let mut sources = Vec::new();
    for engine in ENGINES {
        let s = stores.open(engine).await;
        fill(&s).await;
        sources.push((engine, s));
    }
    // Every source's `gone` expires (engine clocks included).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sources
}

async fn assert_same(src: &Store, dst: &Store, what: &str) {
    let all = Selection::all();
    let cmp = compare_stores(src, dst, &all, 10).await.unwrap();
    assert!(cmp.agree(), "{what}: {cmp:?}");
    assert_eq!(cmp.source_records, LIVE, "{what}");
    let check = check_store(dst, dst, &all, 10, |_| None).await.unwrap();
    assert!(check.is_clean(), "{what}: {check:?}");
    assert_eq!(check.indexes, 3, "{what}");
    // The unique index holds at the destination.
    let people = dst.existing_collection::<Value>("people").await.unwrap();
    let e = people
        .put("dup", &json!({"email": "p3@x.org"}), Put::insert())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), stowage::ErrorKind::AlreadyExists, "{what}");
    let copied = people.get("ü-日本-007").await.unwrap().unwrap();
    assert_eq!(copied.version, 3, "{what}");
    for (index, value) in [
        ("email", "nul\u{0}@x.org"),
        ("tags", "a\u{0}b"),
        ("tags", "\u{0}"),
    ] {
        let found = people
            .query(&stowage::Query::new().eq(index, value))
            .await
            .unwrap();
        let ids: Vec<&str> = found.items.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["nul"], "{what}: {index} = {value:?}");
    }
}

/// Every engine copied into every engine (36 pairs) agrees record for record with its
/// source, and `verify` finds the copy's indexes sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_matrix_over_six_engines() {
    let stores = Stores::new().await;
    let sources = filled_sources(&stores).await;
    for (from, src) in &sources {
        for to in ENGINES {
            let dst = stores.open(to).await;
            let report = copy_store(
                src,
                &dst,
                &Selection::all(),
                Overwrite::Always,
                None,
                |_| {},
            )
            .await
            .unwrap();
            assert_eq!(report.records, LIVE, "{from} -> {to}");
            assert_same(src, &dst, &format!("copy {from} -> {to}")).await;
        }
    }
}

/// A backup of every engine restores into every engine (36 pairs), exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_each_engine_restores_into_each() {
    let stores = Stores::new().await;
    let sources = filled_sources(&stores).await;
    for (from, src) in &sources {
        let mut archive = Vec::new();
        let manifest = backup_store(src, &Selection::all(), &mut archive, |_| {})
            .await
            .unwrap();
        assert_eq!(manifest.records(), LIVE);
        for to in ENGINES {
            let dst = stores.open(to).await;
            restore_store(&dst, Cursor::new(&archive), |_| {})
                .await
                .unwrap();
            assert_same(src, &dst, &format!("backup {from} -> restore {to}")).await;
        }
    }
}

/// The IRN rollout done properly: SQLite is migrated to PostgreSQL and to Redis while four
/// writers update, insert and delete through a mirror; a background copy that never
/// undoes a newer write, one reconcile pass once the writers stop, and the two stores are
/// identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_under_write_load_ends_identical() {
    let stores = Stores::new().await;
    for to in ["postgres", "redis"] {
        let source = stores.open("sqlite").await;
        fill(&source).await;
        let target = stores.open(to).await;
        let mirror = Arc::new(MirrorLayer::new(
            source.backend().clone(),
            target.backend().clone(),
        ));
        let live = Store::with_backend(mirror.clone());
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let live = live.clone();
                tokio::spawn(async move {
                    let people = live.existing_collection::<Value>("people").await.unwrap();
                    for i in 0..60u64 {
                        let id = format!("ü-日本-{:03}", (i * 7 + w * 31) % 150);
                        if i % 6 == 0 {
                            people.delete(&id).await.unwrap();
                        } else {
                            people
                                .put(
                                    &id,
                                    &json!({"email": format!("{id}@w{w}"), "age": i}),
                                    Put::upsert(),
                                )
                                .await
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        let all = Selection::all();
        copy_store(&source, &target, &all, Overwrite::Older, None, |_| {})
            .await
            .unwrap();
        for w in writers {
            w.await.unwrap();
        }
        reconcile_stores(&source, &target, &all, 10).await.unwrap();
        let cmp = compare_stores(&source, &target, &all, 10).await.unwrap();
        assert!(cmp.agree(), "sqlite -> {to}: {cmp:?}");
        assert!(cmp.source_records > 100);
        assert_eq!(mirror.failures(), 0, "{:?}", mirror.last_failure());
        let check = check_store(&target, &target, &all, 10, |_| None)
            .await
            .unwrap();
        assert!(check.is_clean(), "{check:?}");
    }
}

async fn stowage(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(STOWAGE)
        .args(args)
        .env_remove("STOWAGE_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `stowage copy` SIGKILLed part-way resumes from its checkpoint and ends with exactly the
/// source's records; `stowage verify` agrees; backup, a damaged archive refused, restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_copy_resumes_and_the_commands_agree() {
    let stores = Stores::new().await;
    let src_url = stores.url("redb");
    {
        let src = Store::open(&src_url).await.unwrap();
        fill(&src).await;
        let bulk = src
            .collection_with_spec::<Value>(
                "bulk",
                CollectionSpec::new().index(IndexSpec::integer("n", "/n")),
            )
            .await
            .unwrap();
        for chunk in 0..40 {
            let mut b = src.batch();
            for i in 0..1000 {
                let n = chunk * 1000 + i;
                b.put(
                    &bulk,
                    &format!("b{n:06}"),
                    &json!({"n": n, "pad": "x".repeat(200)}),
                    Put::insert(),
                );
            }
            b.commit().await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dst_url = stores.url("sqlite");
    let checkpoint = stores.dir.path().join("copy.checkpoint");
    let cp = checkpoint.to_str().unwrap();
    let mut child = tokio::process::Command::new(STOWAGE)
        .args(["copy", &src_url, &dst_url, "--checkpoint", cp])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has saved a checkpoint, well before the end.
    let mut killed_at = None;
    for _ in 0..3000 {
        if let Ok(bytes) = std::fs::read(&checkpoint) {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            killed_at = Some(v["at"]["records"].as_u64().unwrap());
            child.start_kill().unwrap();
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.wait().await.unwrap();
    let killed_at = killed_at.expect("the copy saved a checkpoint before it was killed");
    assert!(killed_at < 40_000 + LIVE, "killed part-way, at {killed_at}");

    let (ok, out, err) =
        stowage(&["copy", &src_url, &dst_url, "--checkpoint", cp, "--verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("resuming after"), "{err}");
    assert!(out.contains("0 differences"), "{out}");
    assert!(
        !checkpoint.exists(),
        "a finished copy removes its checkpoint"
    );
    let (ok, out, _) = stowage(&["verify", &src_url, &dst_url]).await;
    assert!(
        ok && out.contains(&format!("{} records at the source", 40_000 + LIVE)),
        "{out}"
    );
    let (ok, out, err) = stowage(&["verify", &dst_url]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("4 indexes checked, 0 problems"), "{out}");

    // Backup, restore into Redis, a damaged archive refused before anything is written.
    let archive = stores.dir.path().join("store.archive");
    let file = archive.to_str().unwrap();
    let (ok, out, err) = stowage(&["backup", &src_url, file]).await;
    assert!(
        ok && out.contains(&format!("{} records", 40_000 + LIVE)),
        "{out}{err}"
    );
    let mut bytes = std::fs::read(&archive).unwrap();
    let damaged = stores.dir.path().join("damaged.archive");
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();
    let redis_url = stores.url("redis");
    let (ok, _, err) = stowage(&["restore", damaged.to_str().unwrap(), &redis_url]).await;
    assert!(!ok && err.contains("damaged at byte"), "{err}");
    let (ok, out, err) = stowage(&["collections", &redis_url]).await;
    assert!(
        !ok && err.contains("no store at"),
        "nothing restored: {out}{err}"
    );
    let (ok, out, err) = stowage(&["restore", file, &redis_url]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = stowage(&["verify", &src_url, &redis_url]).await;
    assert!(ok && out.contains("0 differences"), "{out}");
    let (ok, out, _) = stowage(&["stats", &redis_url]).await;
    assert!(
        ok && out.contains("bulk") && out.contains("n 40000"),
        "{out}"
    );
}

/// `stowage serve --mirror-to`: writes over HTTP reach both stores; `copy --keep-newer`
/// brings the older records without undoing them, and `verify` finds the two identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mirrors_writes_for_a_migration() {
    let stores = Stores::new().await;
    let old = stores.url("postgres");
    let new = stores.url("redis");
    {
        let s = Store::open(&old).await.unwrap();
        fill(&s).await;
    }
    let (_server, base, _out) = common::serve_with(&old, &["--mirror-to", &new]).await;
    let http = reqwest::Client::new();
    for i in 0..20 {
        let r = http
            .put(format!("{base}/v1/default/people/records/ü-日本-{i:03}"))
            .json(&json!({"email": format!("moved{i}@x.org"), "age": 1000 + i}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    let (ok, out, err) = stowage(&["copy", &old, &new, "--keep-newer", "--verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("20 records were newer at the destination and kept"),
        "{out}"
    );
    assert!(out.contains("0 differences"), "{out}");
}
