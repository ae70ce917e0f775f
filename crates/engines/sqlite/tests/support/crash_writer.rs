//! Test helper for the crash and lock tests: opens a store and writes to it from 8 tasks until
//! killed, printing `ack ID N VERSION` after each write the store acknowledged (see
//! `stowage_testkit::crash`).
//!
//! `stowage-sqlite-crash-writer PATH` — not a tool for users.

use stowage_core::Store;
use stowage_sqlite::{SqliteBackend, SqliteConfig};

#[tokio::main]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: stowage-sqlite-crash-writer PATH");
    let backend = SqliteBackend::open(SqliteConfig::new(path)).expect("open the store");
    stowage_testkit::crash::write_until_killed(Store::new(backend)).await;
}
