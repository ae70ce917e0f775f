//! The engine-facing side of Stowage: the [`Backend`] trait and the types that cross it.
//!
//! Users never call a backend directly; they hold a [`crate::Store`]. An engine crate
//! implements [`Backend`] once, and the [`Store`](crate::Store) above it does everything
//! the engines share: input validation, serialization, index value extraction, cursor
//! encoding and the steps of a spec change. A backend therefore receives only checked input
//! (valid names and ids, index values of the declared types, specs that validate) and owes
//! only what needs the engine: atomic writes with their preconditions, unique checks, index
//! maintenance, ordered reads and the revision checks below.
//!
//! # Time
//!
//! Every call carries `now` from the store's clock: a record whose `expires_at <= now` is
//! invisible to every read and every precondition, whether or not it has been purged. A
//! write carries its TTL as a duration ([`WriteAction::Put`]), not an instant, and a write
//! returns what it stored ([`RecordMeta`]): an engine that claims
//! [`Capabilities::engine_clock`] adds the TTL to its own clock (PostgreSQL `now()`, Redis
//! `TIME`) and decides expiry by it, so instances with skewed clocks agree; the others use
//! the `now` they are given, which tests drive with a manual clock.
//!
//! # Several instances
//!
//! Two stores over one backend — two processes on one PostgreSQL, or two handles in one
//! process — each cache collection specs. What keeps them from corrupting each other:
//!
//! - Every stored spec has a [`Revision`], a number the engine gives from one counter for
//!   the whole store (so a collection dropped and created again never reuses one).
//! - Every [`WriteOp`] and [`QueryRequest`] carries the revision its index values, TTL and
//!   predicates were prepared with. The engine compares it with the stored revision *inside
//!   the transaction that writes or reads* and refuses a mismatch with
//!   [`Error::stale_spec`]; the store then reloads the spec, prepares the call again and
//!   retries (at most [`STALE_RETRIES`] times). So no write lands under a spec it
//!   was not prepared for: a record never misses the entries of an index another instance
//!   added, and no write resurrects a dropped index or collection.
//! - A collection that is gone answers NotFound; the store drops it from its cache, and
//!   writes never create collections, so a dropped collection stays dropped until someone
//!   declares it again.
//!
//! # Spec changes
//!
//! [`Backend::apply_spec`] is a compare-and-set on the revision and holds no per-record
//! data. The store changes a spec in three steps:
//!
//! 1. it stores the old spec plus the added indexes, listed in [`StoredSpec::building`]:
//!    from then on every write maintains them, but queries may not use them;
//! 2. it scans the records a page (256) at a time and hands
//!    each page's values to [`Backend::fill_index`] with the revision of step 1; the engine
//!    skips records written since they were read (their writes carried the entries) and
//!    checks unique values against the index as it stands — so the build needs memory for
//!    one page, and converges while other instances write;
//! 3. it stores the target spec with nothing building, which also drops indexes, switches
//!    `covering` and sets the default TTL.
//!
//! A build that cannot succeed (a value of the wrong type, a unique clash) puts the old
//! spec back. A build left half-done by a dead instance is finished by the next instance
//! that declares a spec containing it, and dropped by one that declares a spec without it.
//! When two instances change one spec at once, the second compare-and-set fails: that
//! caller gets Conflict, unless the spec now stored is the one it wanted (then both
//! succeed, and the later one helps finish the build). Index builds may run in several
//! instances at once; each fill is idempotent.
//!
//! # Versions and ETags
//!
//! A record's version is 1 above the version it replaces while it is live. A record
//! written where none is live gets [`first_version`]: one above the collection's *version
//! floor* and above the expired record it replaces. The floor is the highest version any
//! removed record of the collection had — delete, delete by prefix or query, purge, a
//! restore over another version, dropping the collection all raise it, and it outlives the
//! collection. So a version (and the ETag made of it) is never given twice to one id,
//! `If-Match` stays a plain compare, and a client holding an old ETag cannot overwrite a
//! record created after a delete. A fresh collection starts at 1; after a delete, new ids
//! start above the floor too. The numbers are the same on every engine.
//!
//! # Order of checks
//!
//! Within a write op, every engine checks in this order, so that the same call fails the
//! same way everywhere: the collection exists (NotFound) → the revision is current
//! (stale spec) → the precondition holds (AlreadyExists for an id taken, Conflict with the
//! current version) → unique indexes are free (AlreadyExists naming the index and the
//! record that holds the value, [`Error::holder`]).

use std::fmt::Debug;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::compare_and_set::{mutation_as_put, CompareAndSet, RecordLocks};
use crate::error::{Error, Result};
pub use crate::mutation::{Applied, Live, MutateAction, NewExpiry, Values};
use crate::record::{Body, RecordRef, StoredRecord, Timestamp, Version};
use crate::spec::CollectionSpec;
use crate::value::IndexValue;
pub use crate::value::{encode_string_prefix, sortable_i64, unsortable_i64};
// What engines and tools share with the store, kept out of the user-facing root: the change
// hub an engine feeds, and the page sizes and retry bounds the store works in.
pub use crate::collection::DELETE_CHUNK;
pub use crate::feed::{ChangeHub, REPLAY_WINDOW};
pub use crate::store::{SCAN_PAGE, STALE_RETRIES};

/// What a backend can do. [`crate::Store`] refuses with [`crate::ErrorKind::Unsupported`]
/// whatever a backend does not claim, and the conformance suite checks every claim.
///
/// It denies by default: [`Capabilities::default`] claims nothing, and each engine sets the
/// fields it implements, so a field added later is never claimed by an engine that has not
/// been taught it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How far a batch of several ops is atomic (all or nothing).
    pub batch_scope: BatchScope,
    /// The most ops one batch may hold (`None`: no limit beyond memory).
    pub max_batch_ops: Option<usize>,
    /// Unique indexes are enforced.
    pub unique_indexes: bool,
    /// Records may carry a TTL.
    pub ttl: bool,
    /// Bodies may be opaque bytes, not only JSON.
    pub binary_bodies: bool,
    /// Data outlives the process (a file or a server).
    pub persistent: bool,
    /// Several processes may open the store at once (a server engine).
    pub shared: bool,
    /// Expiry is decided by the engine's clock (PostgreSQL `now()`, Redis `TIME`), not by the
    /// `now` each call carries, so instances with skewed clocks agree.
    pub engine_clock: bool,
    /// What [`Backend`] offers as a change feed.
    pub change_feed: ChangeFeed,
    /// The largest encoded body, in bytes.
    pub max_body_bytes: usize,
    /// An acknowledged write was fsynced (or the server's equivalent) before it was
    /// acknowledged, so it survives a power failure, not only a crash of the process. False
    /// for memory, for relaxed durability, and for sled (its flush issues `sync_file_range`).
    pub fsync: bool,
    /// A query, a count or a scan page reads one consistent state. When false, each record
    /// returned is as of when it was read, and still matches the query then.
    pub snapshot_reads: bool,
    /// Blind indexes ([`crate::IndexSpec::blind`]) are kept as keyed hashes: claimed by the
    /// codec layer when it encrypts, by no engine.
    pub blind_indexes: bool,
    /// How [`WriteAction::Mutate`] is applied.
    pub mutations: MutationSupport,
}

/// How a backend applies mutations ([`crate::Mutate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MutationSupport {
    /// Not at all: [`crate::Collection::mutate`] is Unsupported.
    #[default]
    None,
    /// By compare-and-set: the backend reads the record, applies the mutations and writes
    /// where the version is unchanged, retrying inside the call when it changed (a layer
    /// that hides bodies from the engine beneath it). Callers see the same results, at the
    /// cost of retries under contention.
    CompareAndSet,
    /// By the engine, inside the write's own transaction: no retries. (Redis leaves some to
    /// compare-and-set: floats, integers past 2^53 and indexed paths; see `stowage_redis`.)
    Native,
}

/// How far an atomic batch may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BatchScope {
    /// Batches of more than one op are refused.
    #[default]
    None,
    /// Atomic across the records of one collection (a Redis Cluster hash slot).
    Collection,
    /// Atomic across every collection of one namespace.
    Namespace,
}

/// What kind of change feed a backend keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeFeed {
    /// None.
    #[default]
    None,
    /// Changes reach watchers while they watch; a restart loses the position.
    Live,
    /// Changes are logged, so a watcher resumes from a token, across restarts.
    Resumable,
}

/// The index values of one record: for each index that holds the record, its (sorted,
/// distinct) values. Indexes that do not hold the record are absent.
pub type IndexEntries = Vec<(String, Vec<IndexValue>)>;

/// The values `entries` holds for `index` (empty when the record is not in it).
pub fn entry_values<'a>(entries: &'a IndexEntries, index: &str) -> &'a [IndexValue] {
    entries
        .iter()
        .find(|(name, _)| name == index)
        .map_or(&[], |(_, v)| v.as_slice())
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

/// A collection's spec revision: a number the engine gives each stored spec, unique across
/// the store's life (a collection dropped and created again gets a new one). Every write op
/// and query carries the revision it was prepared with, and the engine refuses a mismatch
/// inside its transaction ([`Error::stale_spec`]): that is how an instance learns that
/// another changed the spec.
pub type Revision = u64;

/// A collection's spec as stored, with what the engine keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpec {
    /// The spec. It includes the indexes being built.
    pub spec: CollectionSpec,
    /// The revision (see [`Revision`]).
    pub revision: Revision,
    /// Indexes being built: writes must maintain them, queries may not use them yet.
    pub building: Vec<String>,
}

impl StoredSpec {
    /// The spec queries may use: without the indexes being built.
    pub fn queryable(&self) -> CollectionSpec {
        let mut spec = self.spec.clone();
        spec.indexes.retain(|i| !self.building.contains(&i.name));
        spec
    }
}

/// A spec change, applied by [`Backend::apply_spec`] as a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecUpdate {
    /// The revision the change was computed from; `None` creates the collection, which must
    /// not exist. Anything else current is a Conflict.
    pub expected: Option<Revision>,
    /// The new spec, building indexes included.
    pub spec: CollectionSpec,
    /// The indexes of `spec` still to be filled.
    pub building: Vec<String>,
}

/// A record's metadata: what a write stored, and what [`WriteAction::Restore`] stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordMeta {
    /// The version (the ETag).
    pub version: Version,
    /// When the record was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// When it expires, if it does.
    pub expires_at: Option<Timestamp>,
}

impl RecordMeta {
    /// The metadata of a stored record.
    pub fn of(rec: &StoredRecord) -> Self {
        RecordMeta {
            version: rec.version,
            created_at: rec.created_at,
            updated_at: rec.updated_at,
            expires_at: rec.expires_at,
        }
    }

    /// A stored record with this metadata.
    pub fn record(self, id: String, body: Body) -> StoredRecord {
        StoredRecord {
            id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            body,
        }
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every process and release (unlike `std`'s),
/// for what outlives a process — cursor fingerprints, and names an engine derives from
/// Stowage names (a PostgreSQL identifier for a name too long to use as it is).
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The version a record gets when it is written where no live record has its id: one
/// above the collection's version floor and above the expired record it replaces, if any.
///
/// The floor is the highest version any removed record of the collection had (deleted,
/// purged, dropped with its collection). So a version, and the ETag made of it, is never
/// given twice to one id, and a client holding an old ETag cannot overwrite a record
/// created after a delete (the ABA problem), while `If-Match` stays a plain compare.
pub fn first_version(floor: Version, replaced: Option<Version>) -> Version {
    floor.max(replaced.unwrap_or(0)) + 1
}

/// One write of an atomic batch.
#[derive(Debug, Clone)]
pub struct WriteOp {
    /// The collection, in the batch's namespace.
    pub collection: String,
    /// The spec revision the op was prepared with (index values, TTL).
    pub revision: Revision,
    /// The record id.
    pub id: String,
    /// What must hold first.
    pub precondition: Precondition,
    /// Write, delete or only check.
    pub action: WriteAction,
}

/// What a [`WriteOp`] does.
#[derive(Debug, Clone)]
pub enum WriteAction {
    /// Store this body: a live record's version + 1 and its `created_at` kept, or
    /// [`first_version`] and `created_at` = now.
    Put {
        /// The encoded body.
        body: Body,
        /// The record's index values under the op's spec revision.
        index: IndexEntries,
        /// The record expires this long after the engine's now (the call's `now`, or the
        /// engine's own clock where it has one); `None`: never.
        ttl: Option<Duration>,
    },
    /// Remove the record and its index entries (an expired one too).
    Delete,
    /// Write nothing: only the precondition counts. The read side of a transaction.
    Check,
    /// Apply mutations to the live record ([`MutateAction::apply`]) and store the result
    /// as a put would: version + 1 (or [`first_version`] where it creates the record),
    /// `updated_at` = now, the expiry [`NewExpiry`] says, unique values
    /// checked. The result carries the values at the mutated paths.
    Mutate(MutateAction),
    /// Store the record exactly as given — version, timestamps, expiry, body — replacing
    /// whatever was there: what copy and restore write (with no precondition). Writing the
    /// same record twice changes nothing, so a copy can resume. The precondition is checked
    /// as for any op: a rewrite that must not overwrite a newer write gives `Version`.
    Restore {
        /// The metadata to store.
        meta: RecordMeta,
        /// The encoded body.
        body: Body,
        /// The record's index values under the op's spec revision.
        index: IndexEntries,
    },
}

/// What one [`WriteOp`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    /// For a put, restore or mutation, what was stored; for a delete, the live record
    /// removed; for a check, the live record checked. `None`: there was no live record.
    pub meta: Option<RecordMeta>,
    /// For a mutation, the values at its paths afterwards ([`Applied::values`]); empty
    /// otherwise.
    pub values: Values,
}

impl WriteResult {
    /// The result of an op that is not a mutation.
    pub fn new(meta: Option<RecordMeta>) -> Self {
        WriteResult {
            meta,
            values: Vec::new(),
        }
    }
}

/// One predicate of a query, on one index — or on the record id itself when `index` is
/// [`RECORD_ID`] (a name no index may take). A record matches when any of its values for
/// the index matches (multi-valued indexes hold several).
///
/// Predicates on the id hold string values without U+0000 (no id has one), and the core
/// orders a request's filter so that an engine may narrow by its first predicate: id `eq`
/// / `in` first (a handful of point reads), then index predicates, then id ranges and
/// prefixes. [`filter_matches`] tests both kinds; [`id_span`] tells where a walk by id
/// may look.
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

/// The name a [`Predicate`] gives the record id (`"where": {"id": {…}}`); no index may
/// take it.
pub const RECORD_ID: &str = "id";

impl Predicate {
    /// Whether the predicate tests the record id rather than an index.
    pub fn on_id(&self) -> bool {
        self.index == RECORD_ID
    }
}

impl PredicateOp {
    /// Whether a record id passes (the values are strings). Only queries with an id
    /// predicate pay for the copy, once per record tested.
    pub fn test_id(&self, id: &str) -> bool {
        self.test(&IndexValue::String(id.to_owned()))
    }

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

/// Whether record `id` with these index values passes every predicate (the filter is an
/// AND).
pub fn filter_matches(filter: &[Predicate], id: &str, entries: &IndexEntries) -> bool {
    filter.iter().all(|p| {
        if p.on_id() {
            p.op.test_id(id)
        } else {
            entry_values(entries, &p.index).iter().any(|v| p.op.test(v))
        }
    })
}

/// Where a walk of the records by id may look, from the filter's predicates on the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSpan {
    /// Only these ids (sorted, each once), from `eq` / `in`, each passing every id
    /// predicate: point reads.
    Exact(Vec<String>),
    /// Ids within these bounds (from ranges and prefixes; unbounded without either).
    Range(Bound<String>, Bound<String>),
}

impl IdSpan {
    /// The span past a cursor: after `after` in the walk's direction.
    pub fn past(self, after: Option<&str>, descending: bool) -> IdSpan {
        let Some(after) = after else { return self };
        match self {
            IdSpan::Exact(mut ids) => {
                ids.retain(|id| {
                    if descending {
                        id.as_str() < after
                    } else {
                        id.as_str() > after
                    }
                });
                IdSpan::Exact(ids)
            }
            IdSpan::Range(lo, hi) => {
                let cursor = Bound::Excluded(after.to_owned());
                if descending {
                    IdSpan::Range(lo, tighter(hi, cursor, false))
                } else {
                    IdSpan::Range(tighter(lo, cursor, true), hi)
                }
            }
        }
    }

    /// A [`IdSpan::Range`]'s bounds, or `None` when they hold no string (which ordered
    /// maps' `range` would panic on) or the span is [`IdSpan::Exact`].
    pub fn bounds(&self) -> Option<(Bound<&str>, Bound<&str>)> {
        let IdSpan::Range(lo, hi) = self else {
            return None;
        };
        let empty = match (lo, hi) {
            (Bound::Included(l), Bound::Included(h)) => l > h,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
                l >= h
            }
            _ => false,
        };
        (!empty).then(|| {
            (
                lo.as_ref().map(String::as_str),
                hi.as_ref().map(String::as_str),
            )
        })
    }
}

/// The ids the filter's id predicates leave (see [`IdSpan`]).
pub fn id_span(filter: &[Predicate]) -> IdSpan {
    let on_id: Vec<&PredicateOp> = filter.iter().filter(|p| p.on_id()).map(|p| &p.op).collect();
    let exact = on_id.iter().find_map(|op| match op {
        PredicateOp::Eq(v) => Some(vec![v]),
        PredicateOp::In(vs) => Some(vs.iter().collect()),
        _ => None,
    });
    if let Some(values) = exact {
        let mut ids: Vec<String> = values
            .into_iter()
            .filter_map(|v| match v {
                IndexValue::String(s) if on_id.iter().all(|op| op.test_id(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        return IdSpan::Exact(ids);
    }
    let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
    for op in on_id {
        let (l, h) = match op {
            PredicateOp::Range(l, h) => (string_bound(l), string_bound(h)),
            PredicateOp::Prefix(p) => (
                Bound::Included(p.clone()),
                prefix_upper(p).map_or(Bound::Unbounded, Bound::Excluded),
            ),
            _ => continue,
        };
        lo = tighter(lo, l, true);
        hi = tighter(hi, h, false);
    }
    IdSpan::Range(lo, hi)
}

fn string_bound(b: &Bound<IndexValue>) -> Bound<String> {
    match b {
        Bound::Included(IndexValue::String(s)) => Bound::Included(s.clone()),
        Bound::Excluded(IndexValue::String(s)) => Bound::Excluded(s.clone()),
        _ => Bound::Unbounded,
    }
}

/// The tighter of two lower (`lower`) or upper bounds.
fn tighter(a: Bound<String>, b: Bound<String>, lower: bool) -> Bound<String> {
    let a_wins = match (&a, &b) {
        (Bound::Unbounded, _) => false,
        (_, Bound::Unbounded) => true,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            match x.cmp(y) {
                // At the same string, excluding it is tighter.
                std::cmp::Ordering::Equal => matches!(a, Bound::Excluded(_)),
                std::cmp::Ordering::Greater => lower,
                std::cmp::Ordering::Less => !lower,
            }
        }
    };
    if a_wins {
        a
    } else {
        b
    }
}

/// The smallest string above every string starting with `prefix`, if there is one: a
/// prefix test is a range on a B-tree that orders strings by bytes.
pub fn prefix_upper(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(c) = next {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
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
    /// The spec revision the predicates were resolved with (index names and types).
    pub revision: Revision,
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

impl QueryHit {
    /// The hit borrowed, as [`Backend::query_each`] hands hits out.
    pub fn as_hit_ref(&self) -> HitRef<'_> {
        HitRef {
            record: self.record.as_record_ref(),
            order_value: self.order_value.as_ref(),
        }
    }
}

/// What [`Backend::query_each`] hands each match to.
pub type OnHit<'a> = dyn for<'h> FnMut(HitRef<'h>) -> Result<()> + Send + 'a;

/// What [`Backend::get_with`] hands the record to.
pub type OnRecord<'a> = dyn for<'r> FnMut(RecordRef<'r>) -> Result<()> + Send + 'a;

/// Lends an owned record (if any) to `read`: [`Backend::get_with`] over an owned read.
pub(crate) fn lend_record(rec: Option<StoredRecord>, read: &mut OnRecord<'_>) -> Result<()> {
    match rec {
        Some(rec) => read(rec.as_record_ref()),
        None => Ok(()),
    }
}

/// Lends owned hits to `each` in order: [`Backend::query_each`] over an owned read.
pub(crate) fn lend_hits(hits: Vec<QueryHit>, each: &mut OnHit<'_>) -> Result<()> {
    for hit in hits {
        each(hit.as_hit_ref())?;
    }
    Ok(())
}

/// One match of a query read in place ([`Backend::query_each`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HitRef<'a> {
    /// The record.
    pub record: RecordRef<'a>,
    /// Its value in the order index (`None` when ordering by id).
    pub order_value: Option<&'a IndexValue>,
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

/// A record's values for the indexes being built, computed from the record at `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFill {
    /// The record id.
    pub id: String,
    /// The version the values were computed from. A record written since carries its own
    /// entries already (writes maintain building indexes): the engine skips it.
    pub version: Version,
    /// The values for the building indexes (empty lists for those that do not hold it).
    pub index: IndexEntries,
}

/// An engine the `stowage` facade opens by URL: each engine crate exports one
/// (`stowage_redb::engine()`, [`crate::MemoryBackend::engine`]) and the facade lists those
/// its cargo features compile in, so adding an engine touches no `match`.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// The URL scheme, without `://`: `redb`, `postgres`, …
    pub scheme: &'static str,
    /// Connects to (or opens) the store the URL names.
    pub connect: fn(EngineUrl) -> Connecting,
}

/// What [`Engine::connect`] returns: the backend, once connected.
pub type Connecting = futures_util::future::BoxFuture<'static, Result<Arc<dyn Backend>>>;

/// A store URL as an engine receives it: what stands between `://` and `?` (a path for
/// embedded engines, `user:password@host:port/db` for servers) and the query parameters the
/// facade does not take itself (it takes `namespace`).
#[derive(Clone, PartialEq, Eq)]
pub struct EngineUrl {
    /// The scheme, for messages.
    pub scheme: String,
    /// Between `://` and `?`. It may hold a password: never put it in an error.
    pub location: String,
    /// The decoded query parameters, in order.
    pub params: Vec<(String, String)>,
    /// Whether opening may make a new, empty store where the URL names none (a file, a
    /// folder, a catalog). `false` is for tools that only read or change what is there:
    /// a missing store is then [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) (`Error::no_store`) and nothing is
    /// created — not even a parent folder.
    pub create_if_missing: bool,
}

impl std::fmt::Debug for EngineUrl {
    // The location may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineUrl")
            .field("scheme", &self.scheme)
            .field(
                "params",
                &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl EngineUrl {
    /// A URL parameter that must be a whole number: InvalidInput naming it otherwise.
    pub fn number(scheme: &str, key: &str, value: &str) -> Result<u64> {
        value.parse::<u64>().map_err(|_| {
            Error::invalid(format!(
                "{scheme}:// parameter {key} must be a whole number, not {value:?}"
            ))
        })
    }

    /// InvalidInput naming the first parameter not in `known`.
    pub fn only_params(&self, known: &[&str]) -> Result<()> {
        match self
            .params
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => {
                let mut all = vec!["namespace"];
                all.extend_from_slice(known);
                Err(Error::invalid(format!(
                    "store URL parameter {k:?} is not known for {}:// (known: {})",
                    self.scheme,
                    all.join(", ")
                )))
            }
        }
    }
}

/// A storage engine. Object-safe: the store holds an `Arc<dyn Backend>`.
///
/// Implement it once per engine and run the conformance suite
/// (`stowage_testkit::suite`) against the real engine.
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// The engine's name: `memory`, `redb`, …
    fn name(&self) -> &'static str;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Every namespace holding at least one collection, ordered by name.
    async fn list_namespaces(&self) -> Result<Vec<String>>;

    /// The stored spec of one collection of `ns`, if it exists.
    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>>;

    /// Every collection of `ns` with its spec, ordered by name.
    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>>;

    /// Creates the collection or changes its spec, as a compare-and-set on the revision
    /// (Conflict when `update.expected` is not current), and returns the new revision.
    /// Indexes the new spec lacks are dropped with their entries; added ones start empty
    /// (the store fills them with [`Backend::fill_index`]); covering flips are applied to
    /// the stored entries. Holds no per-record data, so it is bounded whatever the size.
    async fn apply_spec(&self, ns: &str, collection: &str, update: &SpecUpdate)
        -> Result<Revision>;

    /// Adds one page of index values to the indexes being built, atomically: records no
    /// longer at the fill's version (written or removed since) are skipped; a unique clash
    /// with a live record is AlreadyExists naming the holder; a revision that is not
    /// current is [`Error::stale_spec`].
    async fn fill_index(
        &self,
        ns: &str,
        collection: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
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

    /// [`Backend::get`] handing the live record, if any, to `read` borrowed where the
    /// engine holds it, so that a typed read decodes it without an owned copy. An error
    /// from `read` is returned. The default runs [`Backend::get`]; engines that read in
    /// place override it.
    async fn get_with(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        lend_record(self.get(ns, collection, id, now).await?, read)
    }

    /// The live records with these ids, in the same order (`None`: absent or expired).
    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>>;

    /// Applies `ops` atomically, in order: each op is checked as if the ops before it had
    /// applied, in this order: the collection exists (NotFound), the op's revision is
    /// current ([`Error::stale_spec`]), the precondition holds (AlreadyExists or Conflict),
    /// unique indexes are free (AlreadyExists naming the index and the holder). On failure
    /// nothing is written and the error names the op ([`crate::Error::at_op`]).
    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>>;

    /// The live records matching a query, in its order, after its cursor, past its offset,
    /// up to its limit.
    async fn query(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<Vec<QueryHit>>;

    /// [`Backend::query`] handing each match to `each` as it is found, in the query's order,
    /// borrowed where the engine holds it — a typed read decodes straight from there,
    /// without an owned copy of every body. An error from `each` stops the walk and is
    /// returned. The default runs [`Backend::query`] and lends out its hits; engines that
    /// read in place (redb, sled) override it.
    async fn query_each(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
        each: &mut OnHit<'_>,
    ) -> Result<()> {
        lend_hits(self.query(ns, request, now).await?, each)
    }

    /// How many live records match the request's filter (its order, cursor, offset and
    /// limit are ignored).
    async fn count(&self, ns: &str, request: &QueryRequest, now: Timestamp) -> Result<u64>;

    /// Deletes up to `request.limit` live records matching the request's filter, atomically,
    /// and returns how many went. The store calls it in chunks until it deletes nothing.
    async fn delete_matching(
        &self,
        ns: &str,
        request: &QueryRequest,
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

    /// The changes of `ns` after token `after` (`None`: from now on), in commit order: one
    /// event per record written or deleted, one per bulk change, a gap where continuity was
    /// lost, nothing for what failed. Engines that claim [`ChangeFeed::None`] keep the
    /// default: Unsupported.
    async fn watch(
        &self,
        ns: &str,
        after: Option<crate::feed::ChangeToken>,
        now: Timestamp,
    ) -> Result<crate::feed::ChangeStream> {
        let _ = (ns, after, now);
        Err(Error::unsupported(self.name(), "a change feed"))
    }
}
