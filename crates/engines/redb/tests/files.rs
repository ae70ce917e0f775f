//! Files: reopening, foreign and newer files, and a file held by another process.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;
use stowage_core::{CollectionSpec, ErrorKind, IndexSpec, Put, Query, Store};
use stowage_redb::{RedbBackend, RedbConfig};
use stowage_testkit::embedded;

fn open(path: &Path) -> stowage_core::Result<RedbBackend> {
    RedbBackend::open(RedbConfig::new(path))
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
    let path = dir.path().join("s.redb");
    embedded::reopen_finds_every_record_index_entry_and_ttl(|| Arc::new(open(&path).unwrap()))
        .await;
}

fn assert_untouched(path: &Path, before: &[u8]) {
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the refused file was modified"
    );
}

#[test]
fn a_file_that_is_not_redb_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content = b"these are somebody's notes, not a database".repeat(100);
    std::fs::write(&path, &content).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("not a Stowage store") && e.message().contains("not a redb file"),
        "{e}"
    );
    assert_untouched(&path, &content);
}

#[test]
fn a_redb_file_of_another_program_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &str, u64> =
                redb::TableDefinition::new("their_table");
            txn.open_table(def).unwrap().insert("a", &1).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("not a Stowage store"), "{e}");
    assert_untouched(&path, &before);
}

#[test]
fn a_store_of_a_newer_format_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.redb");
    drop(open(&path).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &[u8], &[u8]> =
                redb::TableDefinition::new(stowage_redb::schema::META);
            let mut meta = txn.open_table(def).unwrap();
            meta.insert(
                stowage_redb::schema::FORMAT_KEY,
                99u32.to_le_bytes().as_slice(),
            )
            .unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("newer Stowage") && e.message().contains("99"),
        "{e}"
    );
    assert_untouched(&path, &before);
}

#[test]
fn an_empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, b"").unwrap();
    drop(open(&path).unwrap());
    drop(open(&path).unwrap());
}

#[test]
fn a_file_open_in_another_process_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stowage-redb-crash-writer"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let started = Instant::now();
    let result = open(&path);
    let waited = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("already open"), "{e}");
    assert!(
        waited < Duration::from_secs(5),
        "answered in {waited:?}, not a hang"
    );
    // Once the other process is gone the file opens (after crash recovery).
    drop(open(&path).unwrap());
}

#[tokio::test]
async fn relaxed_durability_keeps_everything_across_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relaxed.redb");
    embedded::relaxed_durability_keeps_everything_across_a_clean_close(|| {
        let mut c = RedbConfig::new(&path);
        c.durability = stowage_redb::Durability::Relaxed {
            flush_interval: Duration::from_millis(20),
        };
        Arc::new(RedbBackend::open(c).unwrap())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_a_failing_write_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("group.redb")).unwrap();
    let commits = backend.clone();
    embedded::concurrent_writers_share_commits_and_a_failing_write_fails_alone(
        Arc::new(backend),
        move || commits.commits(),
    )
    .await;
}

/// The bytes each entry of an index table holds, read with raw redb after the store closed.
fn index_values(path: &Path, table: &str) -> Vec<usize> {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    let db = redb::Database::open(path).unwrap();
    let rtx = db.begin_read().unwrap();
    let t = rtx
        .open_table(TableDefinition::<&[u8], &[u8]>::new(table))
        .unwrap();
    t.iter()
        .unwrap()
        .map(|e| e.unwrap().1.value().len())
        .collect()
}

#[tokio::test]
async fn covering_copies_come_and_go_with_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let with = |covering: bool| {
        let ix = IndexSpec::float("score", "/score");
        CollectionSpec::new().index(if covering { ix.covering() } else { ix })
    };
    // (covering, records written in that state, entries after)
    let steps = [
        (true, 0..50, 50),
        (false, 50..100, 100),
        (true, 100..100, 100),
        (false, 100..100, 100),
    ];
    for (covering, writes, entries) in steps {
        {
            let s = Store::new(open(&path).unwrap());
            let c = s
                .collection_with_spec::<serde_json::Value>("c", with(covering))
                .await
                .unwrap();
            for i in writes {
                c.put(&format!("k{i:03}"), &json!({"score": i}), Put::insert())
                    .await
                    .unwrap();
            }
        }
        let values = index_values(&path, "i/default/c/score");
        assert_eq!(values.len(), entries);
        if covering {
            // Every entry holds its record, those written while it held none included.
            assert!(values.iter().all(|&n| n > 38), "{values:?}");
        } else {
            // Switched off, the copies are gone, not left to take space.
            assert!(values.iter().all(|&n| n == 0), "{values:?}");
        }
    }
}

/// Turns a store written by this build into what format 1 wrote: bare specs in the
/// catalog, no revision counter, no floors, marker 1.
fn downgrade_to_format_1(path: &Path) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let catalog_def = redb::TableDefinition::<&[u8], &[u8]>::new(stowage_redb::schema::CATALOG);
        let mut catalog = txn.open_table(catalog_def).unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = catalog
            .iter()
            .unwrap()
            .map(|i| {
                let (k, v) = i.unwrap();
                let entry: serde_json::Value = serde_json::from_slice(v.value()).unwrap();
                (
                    k.value().to_vec(),
                    serde_json::to_vec(&entry["spec"]).unwrap(),
                )
            })
            .collect();
        for (k, v) in entries {
            catalog.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        let meta_def = redb::TableDefinition::<&[u8], &[u8]>::new(stowage_redb::schema::META);
        let mut meta = txn.open_table(meta_def).unwrap();
        meta.insert(
            stowage_redb::schema::FORMAT_KEY,
            1u32.to_le_bytes().as_slice(),
        )
        .unwrap();
        meta.remove(stowage_redb::schema::REVISION_KEY).unwrap();
    }
    txn.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new(
        stowage_redb::schema::FLOORS,
    ))
    .unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_format_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let s = Store::new(open(&path).unwrap());
        let c = s
            .collection_with_spec::<serde_json::Value>("c", spec())
            .await
            .unwrap();
        for i in 0..50 {
            let body = json!({"score": f64::from(i), "tags": ["a"], "email": format!("u{i}@x")});
            c.put(&format!("k{i:02}"), &body, Put::insert())
                .await
                .unwrap();
        }
    }
    downgrade_to_format_1(&path);
    let s = Store::new(open(&path).unwrap());
    let c = s
        .existing_collection::<serde_json::Value>("c")
        .await
        .unwrap();
    assert_eq!(c.spec(), spec());
    let page = c
        .query(
            &Query::new()
                .gte("score", 10.0)
                .lt("score", 20.0)
                .order_by("score"),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 10);
    let e = c
        .put("dup", &json!({"email": "u7@x"}), Put::insert())
        .await
        .unwrap_err();
    assert_eq!(e.holder(), Some("k07"));
    // Versions never repeat from the upgrade on.
    let body = json!({"score": 1.0, "email": "u1@x"});
    c.put("k01", &body, Put::upsert()).await.unwrap();
    assert!(c.delete("k01").await.unwrap());
    let again = c.put("k01", &body, Put::insert()).await.unwrap();
    assert_eq!(
        again.version, 3,
        "the deleted record's version 2 is not given again"
    );
    drop((c, s));
    let db = redb::Database::open(&path).unwrap();
    let rtx = db.begin_read().unwrap();
    let meta = rtx
        .open_table(redb::TableDefinition::<&[u8], &[u8]>::new(
            stowage_redb::schema::META,
        ))
        .unwrap();
    let format = meta.get(stowage_redb::schema::FORMAT_KEY).unwrap().unwrap();
    assert_eq!(format.value(), 2u32.to_le_bytes().as_slice());
}

/// The next change on a stream, within 10 s.
#[tokio::test]
async fn a_watcher_resumes_after_a_restart_from_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    embedded::a_watcher_resumes_after_a_restart_from_its_token(|| Arc::new(open(&path).unwrap()))
        .await;
}

#[tokio::test]
async fn a_token_older_than_the_log_gets_a_gap_then_what_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RedbConfig::new(dir.path().join("s.redb"));
    config.change_log = 50;
    embedded::a_token_older_than_the_log_gets_a_gap_then_what_is_kept(Arc::new(
        RedbBackend::open(config).unwrap(),
    ))
    .await;
}
