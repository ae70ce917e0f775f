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
//! - **U+0000 in indexed strings**: PostgreSQL's `text` refuses it, JSON allows it, and
//!   every other engine keeps it. Index columns and side tables hold strings escaped
//!   (U+0000 as U+0001 U+0001, U+0001 as U+0001 U+0002; see `schema::text_to_column`):
//!   one-to-one, byte order and prefixes kept, so eq, in, ranges, prefixes, order, cursors
//!   and unique indexes answer as elsewhere. Every other string is stored as it is. The
//!   alternatives were worse: `bytea` columns would show every value as hex in `psql`, and
//!   no escape can leave every NUL-free string unchanged (they already use up the column).
//!   Catalog format 2; opening a format-1 database escapes its U+0001 values once. Bodies
//!   are JSON text, where U+0000 is always written `\u0000`, so they need nothing.
//! - **Pool**: deadpool-postgres over tokio-postgres, each statement prepared once per
//!   connection. Connections are handed out most recently used first and recycled without
//!   a round trip (a connection the server closed is dropped when it comes back).
//! - **Writes** run on the server: each collection has a generated PL/pgSQL function (see
//!   `writer.rs`), remade with every spec change, that takes a run of a batch's ops as
//!   arrays and applies them with set-based statements planned once per connection. A
//!   single write, or a batch in one collection, is one statement and one round trip (its
//!   own transaction); a batch over several collections is one call per run, pipelined
//!   between `BEGIN` and `COMMIT` in one round trip. Versions, timestamps and expiry are
//!   computed there. A unique index is its B-tree; an expired holder of a value gives it up
//!   before a live writer takes it. Where op order could change the answer inside one
//!   set-based statement (a unique value handed between records of one batch, which op of
//!   several failed first), the batch runs again one op per call, which is exact. Writes
//!   take a shared advisory lock on their collection and spec changes an exclusive one, so
//!   a write never commits under a spec it was not prepared for.
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
//! - **TLS**: rustls through tokio-postgres-rustls (the `ring` provider the HTTP server
//!   uses too), with libpq's `sslmode` meanings: `disable`, `prefer` (the default: TLS when
//!   the server offers it), `require`, `verify-ca` and `verify-full`, the last two against
//!   `sslrootcert=PATH`. `require` without `sslrootcert` encrypts without authenticating the
//!   server, as libpq does. See `tls.rs`.
//! - **Tests that need a server to go down** start their own with
//!   `testkit::PrivateCluster` (feature `testkit`): never the machine's shared one.

//! # Known limits
//!
//! A write is one call of a PL/pgSQL function doing an advisory lock, a catalog read and
//! an `INSERT … ON CONFLICT … RETURNING`, where a hand-written insert is one plain
//! `INSERT`: on a two-core machine single inserts run at about 0.4 of raw tokio-postgres
//! (pgbench measured the function alone at about 0.5 of a plain insert, so most of the gap
//! is on the server). Batches of 100 run at about 0.4 of a raw `unnest` insert, which
//! returns nothing; Stowage returns each record's version and times. See the benchmark
//! (`cargo bench -p stowage-postgres`). Isolation between test runs is a database per
//! store (dropped afterwards) rather than a schema, since a namespace is a schema already.
//! A batch over several collections may meet another batch over the same records in the
//! opposite order: PostgreSQL detects the deadlock (after `deadlock_timeout`, 1 s by
//! default) and the batch is tried again.

#![deny(missing_docs)]

mod backend;
mod catalog;
mod config;
mod error;
mod feed;
mod mutate;
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
