//! Crash safety: a writer process is killed with SIGKILL at random moments; after each kill
//! the file reopens with every acknowledged write present and indexes agreeing with records
//! (`stowage_testkit::crash`).
//!
//! `STOWAGE_CRASH_CYCLES` sets the number of kill cycles (default 20).

use stowage_core::Store;
use stowage_redb::{RedbBackend, RedbConfig};

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    stowage_testkit::crash::acknowledged_writes_survive_sigkill(
        env!("CARGO_BIN_EXE_stowage-redb-crash-writer"),
        &dir.path().join("crash.redb"),
        |path| Store::new(RedbBackend::open(RedbConfig::new(path)).expect("reopen after kill")),
    );
}
