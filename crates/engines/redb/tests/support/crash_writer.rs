//! Test helper for the crash and lock tests: opens a store and writes to it from 8 tasks until
//! killed, printing `ack ID N VERSION` after each write the store acknowledged (see
//! `stowage_testkit::crash`).
//!
//! `stowage-redb-crash-writer PATH` — not a tool for users.

use stowage_core::Store;
use stowage_redb::{RedbBackend, RedbConfig};

#[tokio::main]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: stowage-redb-crash-writer PATH");
    let backend = RedbBackend::open(RedbConfig::new(path)).expect("open the store");
    stowage_testkit::crash::write_until_killed(Store::new(backend)).await;
}
