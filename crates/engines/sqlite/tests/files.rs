//! Files: the layout as the `sqlite3` shell sees it, reopening, foreign and newer files, a
//! file held by another process, and commits shared by concurrent writers.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stowage_core::{CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query, Store};
use stowage_sqlite::{table_of, SqliteBackend, SqliteConfig};
use stowage_testkit::embedded;

fn open(path: &Path) -> stowage_core::Result<SqliteBackend> {
    SqliteBackend::open(SqliteConfig::new(path))
}

fn spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::integer("seq", "/seq"))
        .index(IndexSpec::string("tags", "/tags").multi())
        .index(IndexSpec::string("email", "/email").unique())
}

#[tokio::test]
async fn the_layout_is_typed_columns_and_side_tables_that_sqlite_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let big = (1i64 << 53) + 1;
    {
        let s = Store::new(open(&path).unwrap()).namespace("app").unwrap();
        let c = s
            .collection_with_spec::<serde_json::Value>("Users", spec())
            .await
            .unwrap();
        for (id, seq) in [("b", big + 1), ("a", big), ("é", -5)] {
            c.put(
                id,
                &json!({"seq": seq, "tags": ["x", "y"], "email": format!("{id}@x")}),
                Put::insert(),
            )
            .await
            .unwrap();
        }
        // A collection whose name differs only in case has a table of its own.
        let lower = s
            .collection_with_spec::<serde_json::Value>("users", CollectionSpec::new())
            .await
            .unwrap();
        lower.put("z", &json!({}), Put::insert()).await.unwrap();
        assert_eq!(c.count(&Filter::new()).await.unwrap(), 3);
        assert_eq!(lower.count(&Filter::new()).await.unwrap(), 1);
        // Integers beyond 2^53 keep their order.
        let page = c
            .query(&Query::new().order_by("seq").descending())
            .await
            .unwrap();
        let ids: Vec<_> = page.items.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "é"]);
    }
    // Read with plain rusqlite, as the sqlite3 shell would.
    let raw = rusqlite::Connection::open(&path).unwrap();
    let table = table_of("app", "Users");
    let rows: Vec<(String, i64, String, Option<i64>)> = raw
        .prepare(&format!(
            "SELECT id, version, body, \"ix:seq\" FROM {table} ORDER BY id"
        ))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Ids sort by bytes: "é" (0xC3 0xA9) after "b".
    assert_eq!(rows[0].0, "a");
    assert_eq!(rows[2].0, "é");
    assert_eq!(rows[0].3, Some(big));
    assert_eq!(rows[1].3, Some(big + 1));
    assert!(rows[0].2.contains("\"email\":\"a@x\""), "{}", rows[0].2);
    let side = table.trim_end_matches('"').to_owned() + ".tags\"";
    let side = side.replace("Users~", "Users.tags~");
    let tags: i64 = raw
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name LIKE 'app.Users.tags%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        tags, 1,
        "one side table for the multi-valued index ({side})"
    );
    let migrations: i64 = raw
        .query_row("SELECT count(*) FROM stowage_migrations", [], |r| r.get(0))
        .unwrap();
    assert!(migrations >= 1);
}

fn assert_untouched(path: &Path, before: &[u8]) {
    assert!(
        std::fs::read(path).unwrap() == before,
        "the file was changed"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let before = b"these are my notes, not a database, and they are long enough".repeat(100);
    std::fs::write(&path, &before).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("not a SQLite database"), "{e}");
    assert_untouched(&path, &before);
}

#[test]
fn a_database_of_another_program_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
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
    let path = dir.path().join("new.db");
    drop(open(&path).unwrap());
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE stowage_meta SET value = 99 WHERE key = 'format'",
            [],
        )
        .unwrap();
        raw.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("newer Stowage"), "{e}");
    assert_untouched(&path, &before);
}

#[test]
fn a_file_open_in_another_process_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    let mut holder = Command::new(env!("CARGO_BIN_EXE_stowage-sqlite-crash-writer"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // Wait until it has written something.
    assert!(lines.next().unwrap().unwrap().starts_with("ack "));
    let started = Instant::now();
    let e = open(&path).unwrap_err();
    let waited = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("open in another process"), "{e}");
    assert!(waited < Duration::from_secs(2), "it waited {waited:?}");
    // Once the holder is gone, the file opens, with what the holder wrote.
    let s = Store::new(open(&path).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = s
            .existing_collection::<serde_json::Value>("crash")
            .await
            .unwrap();
        assert!(c.count(&Filter::new()).await.unwrap() > 0);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_a_failing_write_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("g.db")).unwrap();
    let commits = backend.clone();
    embedded::concurrent_writers_share_commits_and_a_failing_write_fails_alone(
        Arc::new(backend),
        move || commits.commits(),
    )
    .await;
}

#[tokio::test]
async fn a_watcher_resumes_after_a_restart_from_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    embedded::a_watcher_resumes_after_a_restart_from_its_token(|| Arc::new(open(&path).unwrap()))
        .await;
}

#[tokio::test]
async fn a_token_older_than_the_log_gets_a_gap_then_what_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SqliteConfig::new(dir.path().join("gap.db"));
    config.change_log = 50;
    embedded::a_token_older_than_the_log_gets_a_gap_then_what_is_kept(Arc::new(
        SqliteBackend::open(config).unwrap(),
    ))
    .await;
}
