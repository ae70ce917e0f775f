//! Folders: reopening, foreign and newer stores, a folder held by another owner, the group
//! commit, the change log across restarts, and queries while records move (sled reads are
//! not snapshots).

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::json;
use stowage_core::{CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query, Store};
use stowage_sled::{SledBackend, SledConfig};
use stowage_testkit::embedded;

fn open(path: &Path) -> stowage_core::Result<SledBackend> {
    SledBackend::open(SledConfig::new(path))
}

fn spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::float("score", "/score"))
        .index(IndexSpec::string("tags", "/tags").multi())
        .index(IndexSpec::string("email", "/email").unique())
}

#[tokio::test]
async fn reopen_finds_every_record_index_entry_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sled");
    embedded::reopen_finds_every_record_index_entry_and_ttl(|| Arc::new(open(&path).unwrap()))
        .await;
}

#[test]
fn a_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"notes").unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("is a file"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"notes");
}

#[test]
fn a_sled_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sled");
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("incidents")
            .unwrap()
            .insert("i1", "down")
            .unwrap();
        db.flush().unwrap();
    }
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("not a Stowage store"), "{e}");
    let db = sled::open(&path).unwrap();
    let tree = db.open_tree("incidents").unwrap();
    assert_eq!(tree.get("i1").unwrap().unwrap(), "down");
    assert!(!db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"stowage/meta"));
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sled");
    drop(open(&path).unwrap());
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree(stowage_sled::schema::META).unwrap();
        meta.insert(stowage_sled::schema::FORMAT_KEY, &99u32.to_le_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("newer Stowage"), "{e}");
}

#[test]
fn a_folder_held_by_another_owner_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.sled");
    let first = open(&path).unwrap();
    // sled's lock is an flock on its file: a second open — here from the same process,
    // through another descriptor, exactly as another process would — is refused.
    let started = Instant::now();
    let e = open(&path).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "not a hang");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("already open"), "{e}");
    drop(first);
    drop(open(&path).unwrap());
}

/// Closing a store frees its folder before the close returns: sled's own threads let go of
/// its lock a moment after the database is dropped, and a restart in the same process must
/// not be refused for it (CI saw "already open" on a busy machine before closing waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_frees_its_folder_at_once() {
    const ROUNDS: u64 = 40;
    const WRITES: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.sled");
    // A busy machine is what delays sled's threads: keep every core busy meanwhile.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let reopened = std::panic::AssertUnwindSafe(async {
        for round in 0..ROUNDS {
            let s = Store::new(open(&path).unwrap_or_else(|e| panic!("round {round}: {e}")));
            let c = s
                .collection_with_spec::<serde_json::Value>("c", spec())
                .await
                .unwrap();
            // Overwrites of sizeable records: sled frees and truncates log segments.
            let writes = (0..WRITES).map(|i| {
                let c = c.clone();
                let body = json!({"round": round, "pad": "x".repeat(4096)});
                async move { c.put(&format!("k{i}"), &body, Put::upsert()).await }
            });
            for w in futures_util::future::join_all(writes).await {
                w.unwrap();
            }
        }
    })
    .catch_unwind()
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    if let Err(panic) = reopened {
        std::panic::resume_unwind(panic);
    }
    let s = Store::new(open(&path).unwrap());
    let c = s
        .existing_collection::<serde_json::Value>("c")
        .await
        .unwrap();
    assert_eq!(c.count(&Filter::new()).await.unwrap(), WRITES);
}

#[tokio::test]
async fn relaxed_durability_keeps_everything_across_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relaxed.sled");
    embedded::relaxed_durability_keeps_everything_across_a_clean_close(|| {
        let mut c = SledConfig::new(&path);
        c.durability = stowage_sled::Durability::Relaxed {
            flush_interval: Duration::from_millis(20),
        };
        Arc::new(SledBackend::open(c).unwrap())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_a_failing_write_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("group.sled")).unwrap();
    let commits = backend.clone();
    embedded::concurrent_writers_share_commits_and_a_failing_write_fails_alone(
        Arc::new(backend),
        move || commits.commits(),
    )
    .await;
}

#[tokio::test]
async fn a_dropped_collection_is_gone_and_comes_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.sled");
    let s = Store::new(open(&path).unwrap());
    let c = s
        .collection_with_spec::<serde_json::Value>("c", spec())
        .await
        .unwrap();
    for i in 0..50 {
        let body = json!({"score": f64::from(i), "tags": ["x"], "email": format!("{i}@x")});
        c.put(&format!("k{i}"), &body, Put::insert()).await.unwrap();
    }
    assert!(s.drop_collection("c").await.unwrap());
    let e = c.get("k1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    drop((c, s));
    let s = Store::new(open(&path).unwrap());
    assert!(s.collections().await.unwrap().is_empty());
    let c = s
        .collection_with_spec::<serde_json::Value>("c", spec())
        .await
        .unwrap();
    assert_eq!(c.count(&Filter::new()).await.unwrap(), 0);
    assert_eq!(c.count(&Filter::new().eq("tags", "x")).await.unwrap(), 0);
    // The unique values of the dropped records are free again, and versions do not repeat.
    let meta = c
        .put("k1", &json!({"email": "1@x"}), Put::insert())
        .await
        .unwrap();
    assert!(meta.version > 1, "version {} repeats", meta.version);
}

/// sled reads are not snapshots: records move while a query walks an index. Whatever it
/// returns must match the query as the record was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_under_moving_records_return_only_matches() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::new(open(&dir.path().join("moving.sled")).unwrap());
    let c = s
        .collection_with_spec::<serde_json::Value>("c", spec())
        .await
        .unwrap();
    for i in 0..400 {
        let body = json!({"score": f64::from(i % 100), "tags": [format!("t{}", i % 4)]});
        c.put(&format!("k{i:03}"), &body, Put::insert())
            .await
            .unwrap();
    }
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for round in 0..30 {
                for i in (0..400).step_by(7) {
                    let body = json!({"score": f64::from((i + round * 13) % 100), "tags": [format!("t{}", (i + round) % 4)]});
                    c.put(&format!("k{i:03}"), &body, Put::upsert())
                        .await
                        .unwrap();
                }
            }
        })
    };
    let mut walks = 0;
    while !writer.is_finished() {
        let by_score = c
            .query(
                &Query::new()
                    .gte("score", 20.0)
                    .lt("score", 40.0)
                    .order_by("score"),
            )
            .await
            .unwrap();
        for item in &by_score.items {
            let score = item.value["score"].as_f64().unwrap();
            assert!(
                (20.0..40.0).contains(&score),
                "{} has score {score}",
                item.id
            );
        }
        let by_tag = c
            .query(&Query::new().eq("tags", "t1").gte("score", 50.0))
            .await
            .unwrap();
        for item in &by_tag.items {
            assert_eq!(item.value["tags"], json!(["t1"]), "{}", item.id);
            assert!(item.value["score"].as_f64().unwrap() >= 50.0, "{}", item.id);
        }
        walks += 1;
    }
    writer.await.unwrap();
    assert!(walks > 0);
}

#[tokio::test]
async fn a_watcher_resumes_after_a_restart_from_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sled");
    embedded::a_watcher_resumes_after_a_restart_from_its_token(|| Arc::new(open(&path).unwrap()))
        .await;
}

#[tokio::test]
async fn a_token_older_than_the_log_gets_a_gap_then_what_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SledConfig::new(dir.path().join("s.sled"));
    config.change_log = 50;
    embedded::a_token_older_than_the_log_gets_a_gap_then_what_is_kept(Arc::new(
        SledBackend::open(config).unwrap(),
    ))
    .await;
}
