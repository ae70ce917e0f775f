//! Stowage's near cache: an in-process, read-through cache of records in front of any
//! backend, kept coherent with the store.
//!
//! ```
//! # async fn demo() -> stowage_core::Result<()> {
//! use std::sync::Arc;
//! use stowage_cache::{CacheConfig, CacheLayer};
//! use stowage_core::{MemoryBackend, Store};
//!
//! let store = Store::builder(Arc::new(MemoryBackend::new()))
//!     .layer(|inner| {
//!         let config = CacheConfig::new(64 << 20).bypass("sessions");
//!         Arc::new(CacheLayer::new(inner, config).expect("memory has a change feed"))
//!     })
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # What it caches
//!
//! Point reads (`get`, `get_many`): each record found is kept with its version and expiry,
//! keyed by namespace, collection and id, in a [moka](https://docs.rs/moka) cache bounded
//! by bytes (id and body). Queries, counts and scans always go to the engine. A collection
//! named with [`CacheConfig::bypass`] is never cached (sessions, revocation lists: where a
//! stale read would be a security bug). An expired record is never served: each hit is
//! checked against the caller's clock (on an engine that expires by its own clock, a
//! record may be served for as long as the two clocks differ).
//!
//! # Coherence, and how stale a read can be
//!
//! - **This instance's writes** invalidate what they touch when they return, and a read
//!   that raced with one never caches what it read (a per-shard invalidation counter is
//!   compared before and after the engine read): a store reads its own writes.
//! - **Other instances' writes** arrive through the engine's change feed: the layer
//!   watches each namespace it caches from (starting before it caches anything there) and
//!   invalidates each record written or deleted, and the whole collection or namespace
//!   for bulk changes. A gap in the feed, or a feed that fails, clears everything of the
//!   namespace the cache cannot vouch for. A read served by the cache is at most as stale
//!   as the feed's delivery delay — measured on PostgreSQL and Redis by the
//!   `two_stores_stay_coherent` tests (p50 and p99 printed) — and never older than
//!   [`CacheConfig::max_age`] (60 s by default) even if a feed stalls without failing.
//! - A batch that fails (a transaction's check finding a newer version, say) also
//!   invalidates the records it checked, so a retry reads them afresh.
//! - An engine without a change feed that several processes share is refused: nothing
//!   would tell the cache of their writes. One without a feed that only this process opens
//!   (an embedded file) is cached with its own writes' invalidation.
//! - Over the codec layer the cache holds opened (decrypted) records: a namespace shredded
//!   with its collections dropped (`stowage shred`) is dropped from every cache with them;
//!   shredded with its records kept, cached records stay readable up to their max age.

#![deny(missing_docs)]

mod layer;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use layer::{CacheConfig, CacheLayer, CacheStats};
