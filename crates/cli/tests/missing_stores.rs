//! Commands that read or repair a store open an existing one only: pointed at a path, a
//! database or a prefix that holds no store, each fails with "no store at …" and a non-zero
//! exit, and leaves nothing behind — no file, no folder, no catalog, no key. Only `serve`,
//! `put`, `restore` and the destination of `copy` make a store.

#![cfg(all(feature = "backend-postgres", feature = "backend-redis"))]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use stowage_postgres::testkit::{ScratchDatabase, TestServer};
use stowage_redis::testkit::PrivateRedis;

const STOWAGE: &str = env!("CARGO_BIN_EXE_stowage");

fn stowage(args: &[&str]) -> Output {
    Command::new(STOWAGE)
        .args(args)
        .env_remove("STOWAGE_URL")
        .env_remove("STOWAGE_KEYRING")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every command that must not make a store, against `url`; files it writes go in `dir`.
fn read_only_commands(url: &str, dir: &Path) -> Vec<Vec<String>> {
    let file = |name: &str| dir.join(name).display().to_string();
    let keyring = file("keyring");
    if !Path::new(&keyring).exists() {
        assert!(stowage(&["keyring", "new", &keyring]).status.success());
    }
    let to = format!("redb://{}", file("copy.redb"));
    let commands: [&[&str]; 11] = [
        &["stats", url],
        &["collections", url],
        &["verify", url],
        &["get", "--url", url, "c", "r"],
        &["query", "--url", url, "c", "{}"],
        &["backup", url, &file("backup.archive")],
        &["purge", url],
        // Made here once the source exists: the second store `verify` compares with.
        &["copy", url, &to, "--checkpoint", &file("copy.checkpoint")],
        &["verify", url, &to],
        &["rekey", "--url", url, "--keyring", &keyring],
        &["shred", "--url", url, "default"],
    ];
    commands
        .iter()
        .map(|c| c.iter().map(std::string::ToString::to_string).collect())
        .collect()
}

/// Each read-only command fails on `url` saying there is no store, and `nothing_made`
/// still holds afterwards.
fn each_refuses(url: &str, dir: &Path, nothing_made: impl Fn() -> bool) {
    for args in read_only_commands(url, dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = stowage(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded on {url}");
        assert!(err.contains("no store at"), "{args:?}: {err}");
        assert!(nothing_made(), "{args:?} made something at {url}");
    }
}

/// Once `put` has made the store, every read-only command opens it.
fn each_opens_once_made(url: &str, dir: &Path) {
    let out = stowage(&["put", "--url", url, "c", "r", r#"{"a":1}"#]);
    assert!(out.status.success(), "put: {}", stderr(&out));
    for args in read_only_commands(url, dir) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = stowage(&args);
        let err = stderr(&out);
        assert!(!err.contains("no store at"), "{args:?}: {err}");
        // The store was written without a key ring: rekey and shred open it, then fail
        // for that reason alone.
        match args[0] {
            "rekey" => assert!(err.contains("not a codec frame"), "{err}"),
            "shred" => assert!(err.contains("has no data keys"), "{err}"),
            _ => assert!(out.status.success(), "{args:?}: {err}"),
        }
    }
}

#[test]
fn embedded_paths_that_hold_no_store_are_refused_and_left_absent() {
    for engine in ["redb", "sqlite", "sled"] {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("typo");
        let url = format!("{engine}://{}/store", folder.display());
        each_refuses(&url, dir.path(), || !folder.exists());
        // An empty file is no store either, and stays empty.
        if engine == "sled" {
            // A folder without a sled database in it.
            std::fs::create_dir_all(folder.join("store")).unwrap();
            each_refuses(&url, dir.path(), || {
                std::fs::read_dir(folder.join("store")).unwrap().count() == 0
            });
        } else {
            std::fs::create_dir(&folder).unwrap();
            std::fs::write(folder.join("store"), b"").unwrap();
            each_refuses(&url, dir.path(), || {
                std::fs::metadata(folder.join("store")).unwrap().len() == 0
                    && std::fs::read_dir(&folder).unwrap().count() == 1
            });
        }
        each_opens_once_made(&url, dir.path());
    }
}

#[test]
fn memory_stores_never_exist_before_they_are_opened() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["memory://", "sqlite::memory:"] {
        each_refuses(url, dir.path(), || true);
    }
}

fn psql(db: &ScratchDatabase, sql: &str) -> String {
    let server = TestServer::from_env();
    let out = Command::new("psql")
        .arg(format!("postgres://{}", server.location(db.name())))
        .args(["-tAc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// PostgreSQL: a database without Stowage's catalog is no store (and is given none); a
/// missing database is NotFound, as Stowage never creates databases.
#[test]
fn a_postgres_database_without_the_catalog_is_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = ScratchDatabase::create("stowage_cli_missing")
        .unwrap_or_else(|e| panic!("PostgreSQL must run at STOWAGE_TEST_POSTGRES_URL: {e}"));
    let url = format!("postgres://{}", db.location());
    let no_catalog = || {
        psql(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'stowage'",
        ) == "0"
    };
    each_refuses(&url, dir.path(), no_catalog);
    each_opens_once_made(&url, dir.path());

    let gone = format!(
        "postgres://{}",
        TestServer::from_env().location(&format!("{}_gone", db.name()))
    );
    let out = stowage(&["stats", &gone]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Redis: a prefix under which no collection was ever made is no store, and no key is
/// written under it.
#[test]
fn a_redis_prefix_without_collections_is_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let redis = PrivateRedis::start().unwrap_or_else(|e| panic!("redis-server must start: {e}"));
    let url = format!("redis://{}/?prefix=typo", redis.address());
    let keys = || {
        let out = Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "DBSIZE"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    each_refuses(&url, dir.path(), || keys() == "0");
    each_opens_once_made(&url, dir.path());
}
