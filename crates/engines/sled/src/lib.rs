//! Stowage on [sled](https://docs.rs/sled/0.34.7): for services whose data already lives in
//! sled, so they can run on Stowage at once (and copy off sled later with `stowage copy`).
//! One folder, no server.
//!
//! ```no_run
//! # fn demo() -> stowage_core::Result<()> {
//! use stowage_core::Store;
//! use stowage_sled::{SledBackend, SledConfig};
//! let store = Store::new(SledBackend::open(SledConfig::new("./stowage-data/incidents.sled"))?);
//! # Ok(()) }
//! ```
//!
//! Services usually open it by URL through the `stowage` facade:
//! `sled://./stowage-data/incidents.sled?durability=immediate`.
//!
//! # Layout and writes
//!
//! The same ordered key-value layout as redb ([`stowage_kv::schema`]), a sled tree per
//! table: a tree per collection (id → record), per index (sortable value ‖ id), per
//! collection's expiries, the catalog and the version floors. Each record keeps the index
//! values it was written with, so a write or delete removes exactly its entries by point
//! keys.
//!
//! Every write call — a single write or an atomic batch — runs in one group commit, which
//! applies all of its trees' changes in one multi-tree sled transaction: a record and its
//! index entries are never seen apart, not even after a crash. sled's transactional trees
//! cannot read ranges, which unique indexes, deletes by prefix and purges need; so jobs run
//! against the committed trees with the group's own writes laid over them (see
//! `write.rs`), which is exact because the writer thread is the folder's only writer.
//!
//! # What sled guarantees, and what it does not
//!
//! - **Durability.** With `durability=immediate` (the default) a write is acknowledged after
//!   `Db::flush` returned for the commit that holds it; concurrent writers share one flush
//!   (group commit). sled's flush writes its log and, on Linux, calls
//!   `sync_file_range(SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER)` on the range it
//!   wrote — measured on this project's machine with `strace`: no `fsync` or `fdatasync`
//!   per flush. `sync_file_range` pushes the data pages to the device but neither the
//!   file's metadata nor the device's write cache: an acknowledged write survives a crash
//!   of the process, and usually of the kernel, but a power failure can lose it, or
//!   anything not yet on stable media. That is weaker than redb, SQLite (`synchronous=full`)
//!   and PostgreSQL, and [`Capabilities::fsync`](stowage_core::Capabilities) says so
//!   (`false`). `durability=relaxed` skips the flush per group and flushes every
//!   `flush_ms` instead.
//! - **Reads are not snapshots.** A point read, a query or a scan sees the latest commit at
//!   each step: a query re-checks each record it returns against every predicate, so it
//!   never returns a record that does not match, but a record written while the query runs
//!   may be seen at its new place, its old one, or neither ([`Capabilities::snapshot_reads`]
//!   is `false`).
//! - **One process.** sled locks its folder: a second process opening it gets `Unavailable`
//!   at once. Several stores in one process share one [`SledBackend`] (clone it). Dropping
//!   the last clone frees the folder before the drop returns (sled's own threads hold its
//!   lock a moment longer; closing waits for them, up to 5 s), so a store can be opened
//!   again at once.
//! - **Sizes.** sled keeps no counts: `stats` walks each collection's tree.
//! - **Trees are never dropped.** A dropped collection's or index's trees are emptied in the
//!   drop's transaction and stay, empty, in sled's tree list.
//! - sled 0.34.7 is sled's last stable release; its authors call its on-disk format
//!   unstable across versions. Copy off it with `stowage copy` rather than upgrading sled
//!   underneath a store.
//!
//! # Change feed
//!
//! As on redb: a namespace's changes are logged (tree `c/{ns}`) in the same transaction as
//! each change from the moment someone first watches it, published after the flush, and a
//! watcher resumes from its token after a restart (`?change_log=N`, default 100,000).
//!
//! [`Capabilities::snapshot_reads`]: stowage_core::Capabilities

#![deny(missing_docs)]

mod backend;
mod config;
mod error;
mod open;
mod query;
pub mod schema;
mod write;

pub use config::{Durability, SledConfig, URL_PARAMS};
pub use open::{SledBackend, SledStore};

use std::sync::Arc;

use stowage_core::backend::{Backend, Engine};
use stowage_core::Error;

/// The `sled://PATH` engine for the `stowage` facade (parameters: see [`URL_PARAMS`]).
pub fn engine() -> Engine {
    Engine {
        scheme: "sled",
        connect: |url| {
            Box::pin(async move {
                let mut config = SledConfig::from_url_parts(&url.location, &url.params)?;
                config.create_if_missing = url.create_if_missing;
                // Opening recovers and locks the folder: blocking work, kept off the async
                // threads.
                let backend = tokio::task::spawn_blocking(move || SledBackend::open(config))
                    .await
                    .map_err(|e| {
                        Error::internal("opening the sled store panicked").with_source(e)
                    })??;
                Ok(Arc::new(backend) as Arc<dyn Backend>)
            })
        },
    }
}
