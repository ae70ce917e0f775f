//! Stowage on Redis and Redis Cluster: the shared store of multi-instance services.
//!
//! Open it as `redis://…`, `rediss://…` or `redis+cluster://…` (see [`RedisConfig`])
//! through the `stowage` facade, or with [`RedisBackend::connect`].
//!
//! # Layout (readable with redis-cli)
//!
//! Every key of a namespace starts with `<prefix>:{<namespace>}:`; a record is a hash
//! (`HGETALL stowage:{app}:rec:incidents:i-1`); indexes are sorted sets of
//! `value ‖ id` members walked with `ZRANGE … BYLEX`; see `schema.rs` for every key.
//!
//! # Decisions
//!
//! - **Client**: redis-rs 1.x. One multiplexed connection per backend that reconnects by
//!   itself (`ConnectionManager`: commands from every task share it, pipelined, with no
//!   pool to size), or the cluster client's connection, which follows slot moves.
//! - **Every write is one Lua script** (`write.lua`), called by SHA and loaded again after
//!   `NOSCRIPT` (a restarted server): it checks each op — spec revision, precondition,
//!   unique values — against the records as the ops before it leave them, then writes
//!   records, index members, unique claims, TTL and the change log together. Redis does not
//!   undo a failed script, so nothing is written until every op has passed.
//! - **Time**: the script takes `TIME` from the server (`clock=server`, the default), so
//!   instances with skewed clocks agree; records then expire natively (`PEXPIREAT`).
//! - **Change feed**: a stream per namespace appended by the same scripts (see `feed.rs`).
//! - **Numbers in Lua** are doubles: versions and microsecond times are exact below 2^53
//!   (about 285 years of microseconds). Index values never pass through Lua numbers: they
//!   are byte strings in the sortable encoding.
//!
//! # Known limits
//!
//! Dropping a collection is one script over all its keys, so it holds the server for a
//! time that grows with the collection. A namespace lives on one cluster shard.

#![deny(missing_docs)]

mod backend;
mod catalog;
mod config;
mod error;
mod feed;
mod open;
mod query;
mod schema;
#[cfg(feature = "testkit")]
pub mod testkit;
mod write;

pub use config::{ClockSource, RedisConfig, URL_PARAMS};
pub use open::RedisBackend;

/// The `redis://` engines, for the `stowage` facade.
pub fn engines() -> Vec<stowage_core::backend::Engine> {
    RedisBackend::engines()
}
