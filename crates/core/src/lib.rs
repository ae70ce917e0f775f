//! The core of Stowage: the record model, collection specs, queries, the one [`Error`] type,
//! [`Store`] and [`Collection`], the [`Backend`](backend::Backend) interface that engines
//! implement, the [`layer`] mechanism and the memory backend.
//!
//! Services use the `stowage` facade, which re-exports this crate's user API and opens stores
//! by URL. Engine authors implement [`backend::Backend`] and run `stowage-testkit`'s
//! conformance suite (`stowage_testkit::suite`) against the real engine.
//!
//! # Decisions
//!
//! - **Ids** are 1–512 bytes of UTF-8 without NUL; **names** (namespaces, collections,
//!   indexes) are 1–63 ASCII letters, digits, `_` or `-`, so that they are valid unquoted on
//!   every engine. Names starting with `__` are reserved.
//! - **Versions** start at 1 in a fresh collection and grow by 1 on every write; a version is
//!   never given twice to one id, even across deletes and expiry (each collection keeps a
//!   version floor: see the [`backend`] docs), so an old ETag never matches a re-created
//!   record.
//! - **Writes answer what they stored**: version, `created_at`, `updated_at`, `expires_at`
//!   ([`RecordMeta`]).
//! - **TTL**: every write sets the expiry anew from its own TTL or the collection's default.
//!   Expired records are invisible at once to every read and precondition; purging only
//!   reclaims space. Time comes from the store's [`Clock`], or from the engine's where it
//!   claims [`Capabilities::engine_clock`].
//! - **Indexes** hold a record only when the field is present and not null. Ordering by an
//!   index returns only the records it holds. Multi-valued indexes match when any element
//!   matches and cannot be ordered by.
//! - **Spec changes** add or drop indexes, building added ones a page at a time while other
//!   instances keep writing; changing an existing index's path, type or flags is refused.
//!   Several stores over one backend (several processes) stay correct: every write carries
//!   the spec revision it was prepared with (see the [`backend`] docs).
//! - **Transactions** are optimistic ([`Transaction`], [`Store::transact`]): reads are
//!   remembered with their versions and checked by the commit's atomic batch.
//! - **Change feed** ([`Store::watch`], [`Collection::watch`]): one [`ChangeEvent`] per
//!   record written or deleted and one per bulk change (delete by prefix or query, purge,
//!   drop, spec change), numbered per namespace in commit order, published only for what
//!   committed; a token resumes; where continuity is lost (a watcher more than 1,024 events
//!   behind, a token older than what the engine keeps) the watcher gets a gap event,
//!   never silence. Memory keeps the last [`REPLAY_WINDOW`](backend::REPLAY_WINDOW) changes; redb logs them.
//! - **Layers** ([`layer`]) wrap a backend and forward what they do not change; metrics
//!   (feature `metrics`) and tracing (feature `tracing`) come as layers.
//! - **Retention** ([`Retention`] in a spec) is a rule; `stowage_ops::purge_retention` carries
//!   it out. Copy, compare, reconcile, mirror and check live in `stowage-ops` too, built on
//!   this crate's public API only.

#![deny(missing_docs)]

pub mod backend;
mod collection;
mod compare_and_set;
mod error;
mod feed;
pub mod layer;
mod memory;
mod mutation;
mod query;
mod record;
mod spec;
mod store;
mod transaction;
mod value;
pub mod whole_number;

pub use backend::{
    BatchScope, Capabilities, ChangeFeed, CollectionStats, Health, Precondition, RecordMeta,
};
pub use collection::{Batch, Collection, Committed, Put};
pub use error::{Error, ErrorKind, Result};
pub use feed::{ChangeEvent, ChangeOp, ChangeStream, ChangeToken};
pub use memory::MemoryBackend;
pub use mutation::{Mutate, Mutated, Mutation, TtlChange, MAX_MUTATIONS, MAX_PATH_CHARS};
pub use query::{Condition, Filter, Page, Query};
pub use record::{
    validate_id, validate_name, Body, ContentType, Record, RecordRef, StoredRecord, Timestamp,
    Version, Versioned, MAX_ID_BYTES, MAX_NAME_BYTES,
};
pub use spec::{CollectionSpec, IndexSpec, IndexType, RetainFrom, Retention, SpecChange};
pub use store::{Clock, ManualClock, Store, StoreBuilder, SystemClock, DEFAULT_NAMESPACE};
pub use transaction::{Transaction, TRANSACTION_ATTEMPTS};
pub use value::IndexValue;
