//! The engine-facing side of Stowage: the [`Backend`] trait and the types that cross it.
//!
//! Users never call a backend directly; they hold a [`crate::Store`]. An engine crate
//! implements [`Backend`] once, and the [`Store`](crate::Store) above it does everything
//! the engines share: input validation, serialization, index value extraction, TTL
//! arithmetic, cursor encoding and the catalog's spec changes. A backend therefore receives
//! only checked input (valid names and ids, index values of the declared types, specs that
//! validate) and owes only what needs the engine: atomic writes with their preconditions,
//! unique checks, index maintenance and ordered reads.
//!
//! Every call takes `now` from the store's clock: a record whose `expires_at <= now` is
//! invisible to every read and every precondition, whether or not it has been purged.

use std::fmt::Debug;
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::record::{Body, StoredRecord, Timestamp, Version};
use crate::spec::CollectionSpec;
use crate::value::IndexValue;
pub use crate::value::{encode_string_prefix, sortable_i64, unsortable_i64};

/// What a backend can do. [`crate::Store`] refuses with [`crate::ErrorKind::Unsupported`]
/// whatever a backend does not claim, and the conformance suite checks every claim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Batches of more than one op are atomic (all or nothing).
    pub atomic_batch: bool,
    /// Unique indexes are enforced.
    pub unique_indexes: bool,
    /// Records may carry a TTL.
    pub ttl: bool,
    /// Bodies may be opaque bytes, not only JSON.
    pub binary_bodies: bool,
    /// Data outlives the process (a file or a server).
    pub persistent: bool,
    /// The largest encoded body, in bytes.
    pub max_body_bytes: usize,
}

impl Capabilities {
    /// Everything, with bodies up to 64 MiB: what the memory backend claims.
    pub fn all() -> Self {
        Capabilities {
            atomic_batch: true,
            unique_indexes: true,
            ttl: true,
            binary_bodies: true,
            persistent: false,
            max_body_bytes: 64 << 20,
        }
    }
}

/// The index values of one record: for each index that holds the record, its (sorted,
/// distinct) values. Indexes that do not hold the record are absent.
pub type IndexEntries = Vec<(String, Vec<IndexValue>)>;

/// The values `entries` holds for `index` (empty when the record is not in it).
pub fn entry_values<'a>(entries: &'a IndexEntries, index: &str) -> &'a [IndexValue] {
    entries
        .iter()
        .find(|(name, _)| name == index)
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// What must hold before a write applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: upsert, or delete-if-present.
    None,
    /// No live record has the id: insert. Fails with AlreadyExists.
    Absent,
    /// A live record has the id, whatever its version. Fails with Conflict.
    Exists,
    /// The live record has this version. Fails with Conflict carrying the current version.
    Version(Version),
}

impl Precondition {
    /// Checks the precondition against the live record's version (`None`: absent or
    /// expired), with the error every backend gives.
    pub fn check(self, collection: &str, id: &str, current: Option<Version>) -> Result<()> {
        match self {
            Precondition::Absent if current.is_some() => Err(Error::id_exists(collection, id)),
            Precondition::Exists if current.is_none() => {
                Err(Error::conflict(collection, id, None, None))
            }
            Precondition::Version(v) if current != Some(v) => {
                Err(Error::conflict(collection, id, Some(v), current))
            }
            _ => Ok(()),
        }
    }
}

/// One write of an atomic batch.
#[derive(Debug, Clone)]
pub struct WriteOp {
    /// The collection, in the batch's namespace.
    pub collection: String,
    /// The record id.
    pub id: String,
    /// What must hold first.
    pub precondition: Precondition,
    /// Write or delete.
    pub action: WriteAction,
}

/// What a [`WriteOp`] does.
#[derive(Debug, Clone)]
pub enum WriteAction {
    /// Store this body (new version = old + 1, or 1; `created_at` kept when the record
    /// was live).
    Put {
        /// The encoded body.
        body: Body,
        /// The record's index values under the collection's current spec.
        index: IndexEntries,
        /// When the record expires, if it has a TTL.
        expires_at: Option<Timestamp>,
    },
    /// Remove the record and its index entries.
    Delete,
}

/// What one [`WriteOp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    /// For a put, the new version; for a delete, the version removed (`None`: there was no
    /// live record).
    pub version: Option<Version>,
}

/// One predicate of a query, on one index. A record matches when any of its values for the
/// index matches (multi-valued indexes hold several).
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// The index's name.
    pub index: String,
    /// The test.
    pub op: PredicateOp,
}

/// The test of a [`Predicate`]. Values already have the index's type.
#[derive(Debug, Clone, PartialEq)]
pub enum PredicateOp {
    /// Equal to.
    Eq(IndexValue),
    /// Equal to one of.
    In(Vec<IndexValue>),
    /// Within bounds.
    Range(Bound<IndexValue>, Bound<IndexValue>),
    /// A string starting with.
    Prefix(String),
}

impl PredicateOp {
    /// Whether one value passes.
    pub fn test(&self, v: &IndexValue) -> bool {
        match self {
            PredicateOp::Eq(x) => v == x,
            PredicateOp::In(xs) => xs.contains(v),
            PredicateOp::Range(lo, hi) => {
                (match lo {
                    Bound::Included(x) => v >= x,
                    Bound::Excluded(x) => v > x,
                    Bound::Unbounded => true,
                }) && (match hi {
                    Bound::Included(x) => v <= x,
                    Bound::Excluded(x) => v < x,
                    Bound::Unbounded => true,
                })
            }
            PredicateOp::Prefix(p) => {
                matches!(v, IndexValue::String(s) if s.starts_with(p.as_str()))
            }
        }
    }
}

impl PredicateOp {
    /// The smallest value the test can pass, when it has one: where an ascending walk of the
    /// index starts.
    pub fn lower_value(&self) -> Option<IndexValue> {
        match self {
            PredicateOp::Eq(v) => Some(v.clone()),
            PredicateOp::Range(Bound::Included(v) | Bound::Excluded(v), _) => Some(v.clone()),
            // Every string with the prefix sorts at or after the prefix itself.
            PredicateOp::Prefix(p) => Some(IndexValue::String(p.clone())),
            PredicateOp::In(_) | PredicateOp::Range(Bound::Unbounded, _) => None,
        }
    }

    /// Whether `v` and every larger value fail the test: where an ascending walk stops.
    pub fn is_past_upper(&self, v: &IndexValue) -> bool {
        match self {
            PredicateOp::Eq(x) => v > x,
            PredicateOp::Range(_, Bound::Included(x)) => v > x,
            PredicateOp::Range(_, Bound::Excluded(x)) => v >= x,
            PredicateOp::Prefix(p) => match v {
                IndexValue::String(s) => s.as_str() > p.as_str() && !s.starts_with(p.as_str()),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether `v` and every smaller value fail the test: where a descending walk stops.
    pub fn is_below_lower(&self, v: &IndexValue) -> bool {
        match self {
            PredicateOp::Eq(x) => v < x,
            PredicateOp::Range(Bound::Included(x), _) => v < x,
            PredicateOp::Range(Bound::Excluded(x), _) => v <= x,
            PredicateOp::Prefix(p) => matches!(v, IndexValue::String(s) if s.as_str() < p.as_str()),
            _ => false,
        }
    }
}

/// The predicate of `filter` that can bound a walk of `index` (not an `In`), if any.
pub fn walk_bound<'a>(filter: &'a [Predicate], index: &str) -> Option<&'a PredicateOp> {
    filter
        .iter()
        .find(|p| p.index == index && !matches!(p.op, PredicateOp::In(_)))
        .map(|p| &p.op)
}

/// Whether a record with these index values passes every predicate (the filter is an AND).
pub fn filter_matches(filter: &[Predicate], entries: &IndexEntries) -> bool {
    filter
        .iter()
        .all(|p| entry_values(entries, &p.index).iter().any(|v| p.op.test(v)))
}

/// How query results are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The index to order by (never a multi-valued one); `None` orders by id. Ordering by an
    /// index returns only the records that index holds.
    pub index: Option<String>,
    /// Largest first.
    pub descending: bool,
}

/// Where a page starts: strictly after this (order value, id) in the query's direction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CursorKey {
    /// The order index's value of the last record returned (`None` when ordering by id).
    pub value: Option<IndexValue>,
    /// The id of the last record returned.
    pub id: String,
}

/// A checked query, as a backend receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// The collection.
    pub collection: String,
    /// Predicates, all of which must hold.
    pub filter: Vec<Predicate>,
    /// The order.
    pub order: Order,
    /// Start after this key.
    pub after: Option<CursorKey>,
    /// Skip this many matches first (page / page_size callers).
    pub offset: u64,
    /// Return at most this many; `None`: all.
    pub limit: Option<usize>,
}

/// One match of a query: the record and the value it was ordered by.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryHit {
    /// The record.
    pub record: StoredRecord,
    /// Its value in the order index (`None` when ordering by id).
    pub order_value: Option<IndexValue>,
}

/// One page of a scan in ascending id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// The collection.
    pub collection: String,
    /// Only ids starting with this.
    pub prefix: Option<String>,
    /// Only ids greater than this.
    pub after: Option<String>,
    /// At most this many records.
    pub limit: usize,
}

/// One collection's size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectionStats {
    /// The collection.
    pub collection: String,
    /// Stored records, including expired ones not yet purged.
    pub records: u64,
    /// Stored bytes of ids and bodies, including expired records not yet purged.
    pub bytes: u64,
}

/// How a backend answered a health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The backend's name.
    pub backend: &'static str,
    /// How long the probe took.
    pub latency: Duration,
}

/// A record to index when a collection's spec gains indexes: the record's version when its
/// values were computed, and the values for the new indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFill {
    /// The record id.
    pub id: String,
    /// The version the values were computed from. If the record changed since, the backend
    /// refuses the whole spec change with Conflict, and the store computes it again.
    pub version: Version,
    /// The values for the added indexes.
    pub index: IndexEntries,
}

/// A storage engine. Object-safe: the store holds an `Arc<dyn Backend>`.
///
/// Implement it once per engine and run the conformance suite
/// (`stowage_core::conformance_tests!`, feature `testkit`) against the real engine.
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// The engine's name: `memory`, `redb`, …
    fn name(&self) -> &'static str;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;

    /// The stored spec of one collection of `ns`, if it exists.
    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<CollectionSpec>>;

    /// Every collection of `ns` with its spec, ordered by name.
    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, CollectionSpec)>>;

    /// Creates the collection or changes its spec, atomically: store `spec`, drop the indexes
    /// it no longer has, and add `fills` to the indexes it gains (checking unique ones).
    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        spec: &CollectionSpec,
        fills: Vec<IndexFill>,
    ) -> Result<()>;

    /// Drops a collection and all its records; `false` when it did not exist.
    async fn drop_collection(&self, ns: &str, collection: &str) -> Result<bool>;

    /// The live record with this id (`None`: absent or expired). The default asks
    /// [`Backend::get_many`]; engines override it to spare the point read's allocations.
    async fn get(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        let mut got = self.get_many(ns, collection, &[id.to_owned()], now).await?;
        Ok(got.pop().flatten())
    }

    /// The live records with these ids, in the same order (`None`: absent or expired).
    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>>;

    /// Applies `ops` atomically, in order: every precondition and unique index is checked
    /// as if the ops before it had applied. On failure nothing is written and the error
    /// names the op ([`crate::Error::at_op`]).
    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>>;

    /// The live records matching a query, in its order, after its cursor, past its offset,
    /// up to its limit.
    async fn query(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<Vec<QueryHit>>;

    /// How many live records match `filter`.
    async fn count(
        &self,
        ns: &str,
        collection: &str,
        filter: &[Predicate],
        now: Timestamp,
    ) -> Result<u64>;

    /// One page of live records in ascending id order.
    async fn scan(
        &self,
        ns: &str,
        request: &ScanRequest,
        now: Timestamp,
    ) -> Result<Vec<StoredRecord>>;

    /// Deletes every record whose id starts with `prefix`; returns how many live ones went.
    async fn delete_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64>;

    /// Removes records expired at `now` from every collection of `ns`; returns how many.
    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64>;

    /// The size of every collection of `ns`.
    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>>;

    /// A cheap round trip to the engine; an error when it is unreachable.
    async fn ping(&self) -> Result<()>;
}
