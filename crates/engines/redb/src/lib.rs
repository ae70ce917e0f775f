//! Stowage on [redb](https://docs.rs/redb): the embedded default backend. One file, no server.
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use stowage_core::Store;
//! use stowage_redb::{RedbBackend, RedbConfig};
//! let store = Store::new(RedbBackend::open(RedbConfig::new("./stowage-data/stowage.redb"))?);
//! # Ok(()) }
//! ```
//!
//! Services usually open it by URL through the `stowage` facade:
//! `redb://./stowage-data/stowage.redb?durability=immediate`.
//!
//! # Layout
//!
//! A table per collection (id → record), a table per index (sortable value ‖ id), an expiry
//! table per collection (sortable time ‖ id), a catalog of specs with their revisions, and
//! the version floors; see [`schema`] for the encodings. Every write call — a single write
//! or an atomic batch — is one write transaction, so a record and its index entries never
//! disagree, and the spec revision a write carries is checked in that transaction.
//!
//! Files written before format 2 (no revisions, no floors) are upgraded in place when
//! opened. A redb file has one owner: several stores in one process share one
//! `RedbBackend` (the conformance suite's second instance does), and another process
//! gets `Unavailable`.
//!
//! # Change feed
//!
//! A namespace's changes are logged (table `c/{ns}`) from the moment someone first watches
//! it, in the same transaction as each change, so a watcher resumes from its token after a
//! restart; namespaces nobody ever watched pay nothing. The log keeps the last
//! `change_log` changes per namespace (`?change_log=N`, default 100,000; 0 turns the feed
//! off); an older token gets a gap event, then what is kept. A job undone inside a shared
//! group commit logs and publishes nothing; changes are published after the commit —
//! after the fsync with immediate durability, before it with relaxed durability.
//!
//! A delete by query finds its matches in a read transaction and deletes them in a write
//! job, each only if it is still at the version found, so a long walk never holds the
//! writer.
//!
//! # Queries and covering indexes
//!
//! A query walks one index table: the one it is ordered by, else the one of its first
//! predicate (predicates are taken in index-name order, so `order_by` is how a caller
//! chooses the walk); the rest are tested on the index values each record was stored with. Each match found in a plain index costs a point read
//! of the records table — a random B-tree descent — so a query returning 1 % of a
//! collection runs about 26× faster than a full scan (measured), not 100×. An index declared
//! [`covering`](stowage_core::IndexSpec::covering) stores each record's bytes as the value
//! of its entries, and a query walking it reads records straight from the index range:
//! about 48–51× on the same query (`cargo bench -p stowage-redb`, 100,000 records, two runs
//! on a two-core machine; README quotes the same). The price is on writes and
//! space: every write of a record rewrites its copies (once per value for a multi-valued
//! index), and the index holds as many bytes as the records. Spec changes that rewrite
//! records (adding or dropping another index) rewrite the copies too, and switching the
//! flag on a live collection writes or clears every copy in one transaction.
//!
//! A query ordered by id (the default) sorts what its index found before reading: it holds
//! the entries it found in place (copies included) up to 16,384 of them, and copies out
//! the ids of the rest, whose records it then looks up.
//!
//! # Durability and group commit
//!
//! By default ([`Durability::Immediate`]) a write is acknowledged only after the commit that
//! holds it is fsynced. Concurrent writes share commits (see [`stowage_kv::group_commit`]): whoever
//! commits — a lone writer on its own thread, or the store's writer thread while a commit is
//! under way — takes every queued write into one transaction and one fsync, so 32
//! concurrent writers pay far less than 32 fsyncs. A write whose precondition fails inside
//! a shared commit is undone alone.
//! [`Durability::Relaxed`] skips the fsync and makes commits durable every flush interval;
//! its docs say exactly what that risks.
//!
//! # Files
//!
//! A file that is not a Stowage store, or one written by a newer format, is refused and left
//! untouched. redb locks the file: a second process opening it gets `Unavailable` at once.
//! Reads run on the caller's thread — redb reads are short and never wait for writers.
//! They share one read transaction, and the tables opened in it, until the next commit
//! (opening them was over a third of a point read): every commit drops the shared one
//! before its writers are answered, so a read never misses a write acknowledged before it
//! began, and a store that only writes pins no old pages. Typed reads decode records
//! straight from redb's pages (`Backend::query_each`, `Backend::get_with`), with no owned
//! copy of each body. `cargo bench -p stowage-redb --bench native_db` measures the embedded
//! rows against native_db and against raw redb with the same indexes kept by hand.

#![deny(missing_docs)]

mod backend;
mod config;
mod error;
mod open;
mod query;
pub mod schema;
mod write;

pub use config::{Durability, RedbConfig, URL_PARAMS};
pub use open::{RedbBackend, RedbStore};

use std::sync::Arc;

use stowage_core::backend::{Backend, Engine};
use stowage_core::Error;

/// The `redb://PATH` engine for the `stowage` facade (parameters: see [`URL_PARAMS`]).
pub fn engine() -> Engine {
    Engine {
        scheme: "redb",
        connect: |url| {
            Box::pin(async move {
                let mut config = RedbConfig::from_url_parts(&url.location, &url.params)?;
                config.create_if_missing = url.create_if_missing;
                // Opening checks and locks the file: blocking work, kept off the async
                // threads.
                let backend = tokio::task::spawn_blocking(move || RedbBackend::open(config))
                    .await
                    .map_err(|e| {
                        Error::internal("opening the redb store panicked").with_source(e)
                    })??;
                Ok(Arc::new(backend) as Arc<dyn Backend>)
            })
        },
    }
}
