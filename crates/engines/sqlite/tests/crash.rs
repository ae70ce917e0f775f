//! Crash safety: a writer process is killed with SIGKILL at random moments; after each kill
//! the file reopens with every acknowledged write present and indexes agreeing with records
//! (`stowage_testkit::crash`).
//!
//! `STOWAGE_CRASH_CYCLES` sets the number of kill cycles (default 20).

use stowage_core::Store;
use stowage_sqlite::{SqliteBackend, SqliteConfig};

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    stowage_testkit::crash::acknowledged_writes_survive_sigkill(
        env!("CARGO_BIN_EXE_stowage-sqlite-crash-writer"),
        &dir.path().join("crash.db"),
        |path| Store::new(SqliteBackend::open(SqliteConfig::new(path)).expect("reopen after kill")),
    );
}
