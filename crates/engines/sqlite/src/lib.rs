//! Stowage on SQLite: the small relational store of edge agents and single-machine services.
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use stowage_sqlite::{SqliteBackend, SqliteConfig};
//! let backend = SqliteBackend::open(SqliteConfig::new("./data/app.db"))?;
//! let store = stowage_core::Store::new(backend);
//! # let _ = store; Ok(()) }
//! ```
//!
//! Through the facade: `Store::open("sqlite://./data/app.db")`, or
//! `Store::open("sqlite::memory:")` for a private in-memory database (tests).
//!
//! # Layout
//!
//! A table per collection with typed index columns and B-trees, side tables for
//! multi-valued indexes, the catalog and its migrations in `stowage_*` tables: see
//! [`schema`]. Queries become SQL the same way as on PostgreSQL (`stowage_sql`).
//!
//! # Durability and group commit
//!
//! The database runs in WAL mode with `synchronous=FULL` by default: a write is
//! acknowledged after its commit is fsynced. All writes run on one writer thread that owns
//! the write connection; concurrent writes share a transaction and its fsync (group commit,
//! see `group_commit.rs`), each in a savepoint of its own, so one that fails is undone alone.
//! `synchronous=normal` in the URL skips the fsync of each commit: its risk is in
//! [`Synchronous::Normal`]. Reads run on a pool of read connections on tokio's blocking
//! threads, so async callers never block the runtime, and WAL lets them read while the
//! writer commits.
//!
//! # Files and processes
//!
//! A file that is not a SQLite database, or a SQLite database that is not a Stowage store,
//! or a store of a newer format, is refused and left untouched. While a store is open its
//! process holds a lock on the file: another process opening it gets Unavailable at once,
//! never a hang or a corrupted file. Within one process, opening the same file again shares
//! the open store (one writer, one change feed).
//!
//! # What it does not do
//!
//! No engine clock (expiry is decided by the `now` of each call, the store's clock); one
//! process per file (use PostgreSQL or Redis to share a store between processes).

#![deny(missing_docs)]

mod backend;
mod catalog;
mod config;
mod error;
mod feed;
mod group_commit;
mod open;
mod query;
pub mod schema;
mod write;

pub use catalog::table_of;
pub use config::{Location, SqliteConfig, Synchronous, URL_PARAMS};
pub use open::SqliteBackend;

use std::sync::Arc;

use stowage_core::backend::{Backend, Engine};
use stowage_core::Error;

/// The `sqlite://PATH` engine for the `stowage` facade (parameters: see [`URL_PARAMS`]).
pub fn engine() -> Engine {
    Engine {
        scheme: "sqlite",
        connect: |url| {
            Box::pin(async move {
                let mut config = SqliteConfig::from_url_parts(&url.location, &url.params)?;
                config.create_if_missing = url.create_if_missing;
                // Opening checks, locks and migrates the file: blocking work, kept off the
                // async threads.
                let backend = tokio::task::spawn_blocking(move || SqliteBackend::open(config))
                    .await
                    .map_err(|e| {
                        Error::internal("opening the SQLite store panicked").with_source(e)
                    })??;
                Ok(Arc::new(backend) as Arc<dyn Backend>)
            })
        },
    }
}
