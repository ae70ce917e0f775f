//! Stowage on PostgreSQL: where a service goes when several of its instances share state.
//!
//! Open it as `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` through the `stowage` facade
//! (feature `backend-postgres`), or with [`PostgresBackend::connect`]. Every instance that
//! opens the database shares its collections, versions, unique indexes and change feed.
//!
//! # Layout (readable with psql)
//!
//! A schema per namespace, a table per collection (`id text COLLATE "C"`, `version`, the
//! body, `created_at`, `updated_at`, `expires_at`, a typed column per single-valued index
//! with a B-tree, unique where declared), a side table of `(value, id)` per multi-valued
//! index, and `__migrations` recording each spec change (revision, what, when, which
//! instance). The catalog lives in schema `stowage`: specs with their revisions, version
//! floors, the change log. See [`schema`] for names and types.
//!
//! # Decisions
//!
//! - **Body as `text`, not `jsonb`**: `jsonb` reorders keys and drops duplicates, and a
//!   body comes back exactly as stored on every engine. Index values are typed columns
//!   filled by Stowage, so queries never need the JSON; `body::jsonb` still serves ad-hoc
//!   SQL. Opaque bodies go in `bytea`.
//! - **Pool**: deadpool-postgres over tokio-postgres, each statement prepared once per
//!   connection. Connections are handed out most recently used first and recycled without
//!   a round trip (a connection the server closed is dropped when it comes back).
//! - **Writes** run in two round trips whatever the batch size: `BEGIN`, the collections'
//!   advisory locks, the catalog rows and the stored rows (`FOR UPDATE`) pipelined; then
//!   every write and `COMMIT` pipelined. Preconditions and versions are computed between the
//!   two, so the second trip only writes. A unique index is its B-tree; an expired holder of
//!   a value gives it up before a live writer takes it. Writes take a shared advisory lock
//!   on their collection and spec changes an exclusive one, so a write never commits under
//!   a spec it was not prepared for.
//! - **Clock**: PostgreSQL's `now()` decides timestamps and expiry (`clock=database`, the
//!   default), so instances with skewed clocks agree; `clock=caller` uses the store's clock
//!   instead (the conformance suite drives time by hand).
//! - **Change feed**: a log table written in each write's transaction, numbered in commit
//!   order, with LISTEN/NOTIFY to wake watchers on their own connection (see `feed.rs`).
//!   Only namespaces someone has watched are logged; `change_log=N` keeps N changes each.
//! - **Purge** deletes expired records in chunks of 1,000, one instance per namespace at a
//!   time (an advisory lock), and trims the change log.
//! - **Secrets**: the password is kept only inside tokio-postgres's config. It never appears
//!   in an error, a `Debug` output or a log line: errors are built from the host, port,
//!   database and user, never from the URL (tested).
//! - **TLS**: not in this build yet. `sslmode=disable` and `sslmode=prefer` (plain when the
//!   server offers no TLS) connect in plain text; `sslmode=require` is refused at once with
//!   `Unsupported`, never silently downgraded.
//!
//! # Known limits
//!
//! A write costs about seven statements on the server (begin, lock, catalog, row read,
//! write, log, commit) where a hand-written insert costs one; on a two-core machine that
//! makes single inserts about 0.4 of raw tokio-postgres, and a batch of 100 writes each
//! record with its own statement. See the benchmark (`cargo bench -p stowage-postgres`).

#![deny(missing_docs)]

mod backend;
mod catalog;
mod config;
mod error;
mod feed;
mod open;
mod pool;
mod query;
pub mod schema;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls;
mod write;
mod writer;

pub use config::{ClockSource, PostgresConfig, URL_PARAMS};
pub use open::{PostgresBackend, FORMAT_VERSION};
pub use pool::PostgresPool;

/// The `postgres://` engine, for the `stowage` facade.
pub fn engine() -> stowage_core::backend::Engine {
    PostgresBackend::engine()
}
