//! Stowage on Redis and Redis Cluster: the shared store of multi-instance services.
//!
//! Open it as `redis://…`, `rediss://…` or `redis+cluster://…` (see [`RedisConfig`])
//! through the `stowage` facade, or with [`RedisBackend::connect`].
//!
//! # Layout (readable with redis-cli)
//!
//! Every key of a namespace starts with `<prefix>:{<namespace>}:`; a record is a hash,
//! indexes are sorted sets of `value ‖ id` members walked with `ZRANGE … BYLEX`; see
//! `schema.rs` for every key. The incidents example, seen with redis-cli:
//!
//! ```text
//! $ redis-cli HGETALL 'stowage:{default}:rec:incidents:inc-0001'
//! type        json
//! created_at  1795944877746770
//! version     4
//! updated_at  1795944877840886
//! body        {"id":"inc-0001","title":"incident number 1","severity":"P1",…}
//! $ redis-cli ZRANGE 'stowage:{default}:ix:incidents:severity' 0 2
//! P0\x00\x00inc-0000   P0\x00\x00inc-0005   P0\x00\x00inc-0010
//! ```
//!
//! (A string value is stored in the sortable encoding: its bytes, `00 00`, then the id.)
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
//! - **Mutations** run in the same script: `mutate.lua` edits the JSON body in place, with the
//!   output Rust's `MutateAction::apply` gives, byte for byte (a property test compares them).
//!   What Lua's doubles cannot do exactly (floats, integers past 2^53), mutations of indexed
//!   fields, and bodies not in serde_json's compact form are left to compare-and-set
//!   (`mutate.rs`).
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
mod mutate;
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
