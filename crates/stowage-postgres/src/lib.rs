//! Stowage on PostgreSQL: where a service goes when several of its instances share state.
//!
//! **Status: in progress.** This crate holds the client side of the engine so far — the
//! `postgres://` URL ([`PostgresConfig`]), the connection pool ([`PostgresPool`]), the
//! mapping of PostgreSQL's errors onto [`stowage_core::ErrorKind`], and how Stowage names
//! become PostgreSQL identifiers ([`schema`]). The `Backend` (layout,
//! writes, queries, change feed) comes next; until then the `stowage` facade does not offer
//! `postgres://`.
//!
//! # Decisions
//!
//! - **Pool**: deadpool-postgres over tokio-postgres. It is the pool tokio-postgres users
//!   reach for, recycles connections by checking them, and keeps a prepared-statement cache
//!   per connection, so each statement is prepared once per connection.
//! - **Secrets**: the password is kept only inside tokio-postgres's config. It never appears
//!   in an error, a `Debug` output or a log line: errors are built from the host, port,
//!   database and user, never from the URL (tested).
//! - **TLS**: not in this build yet. `sslmode=disable` and `sslmode=prefer` (plain when the
//!   server offers no TLS) connect in plain text; `sslmode=require` is refused at once with
//!   `Unsupported`, never silently downgraded.

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
mod write;

pub use config::{ClockSource, PostgresConfig, URL_PARAMS};
pub use open::{PostgresBackend, FORMAT_VERSION};
pub use pool::PostgresPool;

/// The `postgres://` engine, for the `stowage` facade.
pub fn engine() -> stowage_core::backend::Engine {
    PostgresBackend::engine()
}
