//! The core of Stowage: the record model, collection specs, queries, the one [`Error`] type,
//! the [`Backend`](backend::Backend) SPI that engines implement, the memory backend, and (with
//! the `testkit` feature) the conformance suite every backend must pass.
//!
//! Services use the `stowage` facade, which re-exports this crate's user API and opens stores
//! by URL. Engine authors implement [`backend::Backend`] and call
//! [`conformance_tests!`] from their tests.
//!
//! # Decisions
//!
//! - **Ids** are 1–512 bytes of UTF-8 without NUL; **names** (namespaces, collections,
//!   indexes) are 1–63 ASCII letters, digits, `_` or `-`, so that they are valid unquoted on
//!   every engine. Names starting with `__` are reserved.
//! - **Versions** start at 1 and grow by 1 on every write; a delete forgets them, so a record
//!   inserted again starts at 1.
//! - **TTL**: every write sets the expiry anew from its own TTL or the collection's default.
//!   Expired records are invisible at once to every read and precondition; purging only
//!   reclaims space. Time comes from the store's [`Clock`].
//! - **Indexes** hold a record only when the field is present and not null. Ordering by an
//!   index returns only the records it holds. Multi-valued indexes match when any element
//!   matches and cannot be ordered by.
//! - **Spec changes** add or drop indexes (building added ones from stored records, all or
//!   nothing); changing an existing index's path, type or flags is refused. Within a process
//!   writes wait for a spec change; across processes, change specs while one instance runs.

#![deny(missing_docs)]

pub mod backend;
mod collection;
mod copy;
mod error;
mod memory;
mod query;
mod record;
mod spec;
mod store;
mod transaction;
mod value;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use backend::{
    BatchScope, Capabilities, ChangeFeed, CollectionStats, Health, Precondition, RecordMeta,
};
pub use collection::{Batch, Collection, Put, DELETE_CHUNK};
pub use copy::{copy_namespace, CopyReport};
pub use error::{Error, ErrorKind, Result};
pub use memory::MemoryBackend;
pub use query::{Condition, Filter, Page, Query};
pub use record::{
    validate_id, validate_name, Body, ContentType, Record, StoredRecord, Timestamp, Version,
    Versioned, MAX_ID_BYTES, MAX_NAME_BYTES,
};
pub use spec::{CollectionSpec, IndexSpec, IndexType, SpecChange};
pub use store::{
    Clock, ManualClock, Store, StoreBuilder, SystemClock, DEFAULT_NAMESPACE, STALE_RETRIES,
};
pub use transaction::{Transaction, TRANSACTION_ATTEMPTS};
pub use value::IndexValue;
