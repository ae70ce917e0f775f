//! The conformance suite: the contract every backend passes against its real engine.
//!
//! A backend crate implements [`Fixture`] (how to make a fresh, isolated store and how to
//! open it again) and expands [`conformance_tests!`](crate::conformance_tests) in a test
//! file; every test of the suite becomes one `#[test]` named `conformance::GROUP::TEST`:
//!
//! ```ignore
//! stowage_testkit::conformance_tests!(my_backend::tests::MyFixture::new());
//! ```
//!
//! Tests read [`Capabilities`](stowage_core::Capabilities): a claimed capability is exercised, an
//! unclaimed one must answer [`Unsupported`](stowage_core::ErrorKind::Unsupported).
//! The property test ([`property`]) compares the backend with the memory model.

#![deny(missing_docs)]
// The suite is test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use stowage_core::backend::Backend;
use stowage_core::{
    Collection, CollectionSpec, Error, ErrorKind, IndexSpec, ManualClock, MemoryBackend, Record,
    Result, Store, Timestamp,
};

pub mod batch;
pub mod capabilities;
pub mod catalog;
mod certificates;
pub mod copy;
pub mod covering;
pub mod crash;
pub mod crud;
pub mod embedded;
pub mod faults;
pub mod indexes;
pub mod instances;
pub mod invalid;
pub mod probe;
pub mod property;
pub mod query;
pub mod retention;
pub mod scan;
pub mod transactions;
pub mod ttl;
pub mod values;
pub mod versions;
pub mod watch;
pub mod workload;

pub use certificates::make_certificates;

/// How the suite gets stores of the backend under test.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// Opens a new, empty, isolated store (its own file, schema or key prefix) and returns
    /// it with a location string that [`Fixture::open`] understands.
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)>;

    /// Opens the store at `location` again. The suite drops every handle to the previous
    /// backend first, as a restarted process would.
    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>>;

    /// A second backend over the same data while `first` stays open, as another instance
    /// of the service would have. The default shares `first` (an embedded engine has one
    /// owner per file); engines shared by processes open a connection of their own.
    async fn open_second(
        &self,
        location: &str,
        first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        let _ = location;
        Ok(first.clone())
    }
}

/// A [`Fixture`] over [`MemoryBackend`]: "reopening" hands a new store the same data, which
/// is what a persistent engine does across a restart.
#[derive(Debug)]
pub struct MemoryFixture {
    capabilities: stowage_core::Capabilities,
    stores: Mutex<Vec<MemoryBackend>>,
}

impl MemoryFixture {
    /// Memory backends claiming every capability.
    pub fn new() -> Self {
        Self::with_capabilities(MemoryBackend::full_capabilities())
    }

    /// Memory backends claiming only `capabilities`, to check the unclaimed paths.
    pub fn with_capabilities(capabilities: stowage_core::Capabilities) -> Self {
        MemoryFixture {
            capabilities,
            stores: Mutex::new(Vec::new()),
        }
    }
}

impl Default for MemoryFixture {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let b = MemoryBackend::with_capabilities(self.capabilities.clone());
        let mut stores = self.stores.lock();
        stores.push(b.clone());
        Ok((Arc::new(b), (stores.len() - 1).to_string()))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        let i: usize = location
            .parse()
            .map_err(|_| Error::invalid("bad memory fixture location"))?;
        let b = self.stores.lock()[i].clone();
        Ok(Arc::new(b))
    }
}

/// A fixture whose backends are wrapped in two [`PassThrough`](stowage_core::layer::PassThrough)
/// layers: the suite over it fails if a layer drops or changes a call.
#[derive(Debug)]
pub struct Layered<F>(pub F);

impl<F: Fixture> Layered<F> {
    fn wrap(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        use stowage_core::layer::PassThrough;
        Arc::new(PassThrough::new(Arc::new(PassThrough::new(backend))))
    }
}

#[async_trait]
impl<F: Fixture> Fixture for Layered<F> {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let (backend, location) = self.0.create().await?;
        Ok((Self::wrap(backend), location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        Ok(Self::wrap(self.0.open(location).await?))
    }

    async fn open_second(
        &self,
        location: &str,
        first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        Ok(Self::wrap(self.0.open_second(location, first).await?))
    }
}

/// A fixture whose stores are each wrapped by `wrap` (a layer under test: the codec, the
/// cache). A second instance is opened from the engine under the first, not from the
/// wrapped first (which would wrap twice), and wrapped alike; an embedded engine's second
/// instance shares the first.
pub struct Wrapped<F> {
    inner: F,
    wrap: WrapFn,
    /// The engine under each wrapped store, by location. Weak: the suite drops every
    /// handle before reopening, and an embedded engine has one owner.
    engines: Mutex<std::collections::HashMap<String, std::sync::Weak<dyn Backend>>>,
}

type WrapFn = Box<dyn Fn(Arc<dyn Backend>) -> Result<Arc<dyn Backend>> + Send + Sync>;

impl<F> std::fmt::Debug for Wrapped<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapped").finish_non_exhaustive()
    }
}

impl<F: Fixture> Wrapped<F> {
    /// `inner`'s stores, each wrapped by `wrap`.
    pub fn new(
        inner: F,
        wrap: impl Fn(Arc<dyn Backend>) -> Result<Arc<dyn Backend>> + Send + Sync + 'static,
    ) -> Self {
        Wrapped {
            inner,
            wrap: Box::new(wrap),
            engines: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn wrap_at(&self, location: &str, engine: Arc<dyn Backend>) -> Result<Arc<dyn Backend>> {
        self.engines
            .lock()
            .insert(location.to_owned(), Arc::downgrade(&engine));
        (self.wrap)(engine)
    }
}

#[async_trait]
impl<F: Fixture> Fixture for Wrapped<F> {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let (engine, location) = self.inner.create().await?;
        Ok((self.wrap_at(&location, engine)?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        let engine = self.inner.open(location).await?;
        self.wrap_at(location, engine)
    }

    async fn open_second(
        &self,
        location: &str,
        first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        let engine = self
            .engines
            .lock()
            .get(location)
            .and_then(std::sync::Weak::upgrade);
        let Some(engine) = engine else {
            return Ok(first.clone());
        };
        let second = self.inner.open_second(location, &engine).await?;
        if Arc::ptr_eq(&second, &engine) {
            return Ok(first.clone());
        }
        (self.wrap)(second)
    }
}

/// Runs one suite test on a fresh multi-threaded runtime. The macro's tests call this.
pub fn run<F, Fut>(fixture: F, test: fn(Arc<dyn Fixture>) -> Fut)
where
    F: Fixture,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(test(Arc::new(fixture)));
}

/// A fresh store with a manual clock, as every suite test starts.
pub struct Ctx {
    /// The store under test.
    pub store: Store,
    /// The clock the store reads; advance it to expire records.
    pub clock: Arc<ManualClock>,
    /// Where the fixture put the store.
    pub location: String,
    fixture: Arc<dyn Fixture>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("store", &self.store).finish()
    }
}

impl Ctx {
    /// A new, empty store from the fixture.
    pub async fn new(fixture: Arc<dyn Fixture>) -> Ctx {
        let (backend, location) = fixture.create().await.expect("fixture creates a store");
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        Ctx {
            store: store_over(backend, &clock),
            clock,
            location,
            fixture,
        }
    }

    /// Drops this store and opens its location again, as a restarted process would.
    pub async fn reopen(self) -> Ctx {
        let Ctx {
            store,
            clock,
            location,
            fixture,
        } = self;
        drop(store);
        let backend = fixture
            .open(&location)
            .await
            .expect("fixture reopens the store");
        Ctx {
            store: store_over(backend, &clock),
            clock,
            location,
            fixture,
        }
    }

    /// A second store over the same data, with its own catalog cache, as another instance
    /// of the service has (same clock and namespace).
    pub async fn second(&self) -> Store {
        let backend = self
            .fixture
            .open_second(&self.location, self.store.backend())
            .await
            .expect("fixture opens a second instance");
        store_over(backend, &self.clock)
    }

    /// A store over `wrap(backend)`, for probes: same data, clock and namespace, its own
    /// catalog cache.
    pub fn store_over(&self, backend: Arc<dyn Backend>) -> Store {
        store_over(backend, &self.clock)
    }

    /// The [`Item`] collection.
    pub async fn items(&self) -> Collection<Item> {
        self.store.collection::<Item>().await.expect("open items")
    }

    /// A collection of JSON values without indexes: a plain key-value space.
    pub async fn plain(&self, name: &str) -> Collection<serde_json::Value> {
        self.store
            .collection_with_spec(name, CollectionSpec::new())
            .await
            .expect("open a plain collection")
    }

    /// The [`Account`] collection (a unique index).
    pub async fn accounts(&self) -> Result<Collection<Account>> {
        self.store.collection::<Account>().await
    }
}

fn store_over(backend: Arc<dyn Backend>, clock: &Arc<ManualClock>) -> Store {
    Store::builder(backend)
        .clock(clock.clone())
        .build()
        .expect("a store")
}

/// The suite's record type: one field per index type, plus a multi-valued index; the float
/// index is covering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The id.
    pub id: String,
    /// Indexed as string.
    pub name: String,
    /// Indexed as integer.
    pub n: i64,
    /// Indexed as float.
    pub score: f64,
    /// Indexed as bool.
    pub active: bool,
    /// Indexed as timestamp (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Indexed as multi-valued string.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Record for Item {
    const COLLECTION: &'static str = "items";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::string("name", "/name"))
            .index(IndexSpec::integer("n", "/n"))
            // Covering, so that every suite test and the property test walking `score`
            // read record copies on engines that keep them; the other indexes look up.
            .index(IndexSpec::float("score", "/score").covering())
            .index(IndexSpec::bool("active", "/active"))
            .index(IndexSpec::timestamp("at", "/at"))
            .index(IndexSpec::string("tags", "/tags").multi())
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

impl Item {
    /// An item whose fields derive from `n`.
    pub fn new(id: impl Into<String>, n: i64) -> Item {
        Item {
            id: id.into(),
            name: format!("name-{:03}", n.rem_euclid(1000)),
            n,
            score: n as f64 / 4.0 - 10.0,
            active: n % 2 == 0,
            at: Some(
                Timestamp::from_micros(1_700_000_000_000_000 + n * 3_600_000_000).to_rfc3339(),
            ),
            tags: vec![format!("t{}", n % 3), format!("u{}", n % 5)],
        }
    }
}

/// A record type with a unique index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The id.
    pub id: String,
    /// Unique.
    pub email: String,
    /// A counter.
    pub balance: i64,
}

impl Record for Account {
    const COLLECTION: &'static str = "accounts";
    fn spec() -> CollectionSpec {
        CollectionSpec::new().index(IndexSpec::string("email", "/email").unique())
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

impl Account {
    /// An account.
    pub fn new(id: &str, email: &str) -> Account {
        Account {
            id: id.to_owned(),
            email: email.to_owned(),
            balance: 0,
        }
    }
}

/// The versions of a batch's results.
pub fn versions(
    results: Vec<Option<stowage_core::RecordMeta>>,
) -> Vec<Option<stowage_core::Version>> {
    results.into_iter().map(|m| m.map(|m| m.version)).collect()
}

/// Asserts that `r` failed with `kind` and returns the error.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind) -> Error {
    match r {
        Ok(v) => panic!("expected a {kind} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "wrong kind: {e}");
            e
        }
    }
}

/// Inserts items `0..n` with ids `prefix` + zero-padded number, in batches.
pub async fn fill(coll: &Collection<Item>, store: &Store, prefix: &str, n: i64) {
    let step = batch_step(store, 500) as i64;
    let mut i = 0;
    while i < n {
        let mut b = store.batch();
        for j in i..(i + step).min(n) {
            b.insert(coll, &Item::new(format!("{prefix}{j:06}"), j));
        }
        b.commit().await.expect("fill");
        i += step;
    }
}

/// How many writes to one collection a test may put in one batch: `want`, or less where the
/// backend allows less (1 without batches).
pub fn batch_step(store: &Store, want: usize) -> usize {
    let caps = store.capabilities();
    if caps.batch_scope >= stowage_core::BatchScope::Collection {
        caps.max_batch_ops.map_or(want, |max| max.min(want))
    } else {
        1
    }
}

/// A short pause for races to interleave.
pub async fn yield_a_little() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Every group's source, so that [`suite_is_complete`] can compare the test functions
/// written with the tests the macro registers.
pub const GROUP_SOURCES: &[(&str, &str)] = &[
    ("batch", include_str!("batch.rs")),
    ("capabilities", include_str!("capabilities.rs")),
    ("catalog", include_str!("catalog.rs")),
    ("copy", include_str!("copy.rs")),
    ("covering", include_str!("covering.rs")),
    ("crud", include_str!("crud.rs")),
    ("indexes", include_str!("indexes.rs")),
    ("instances", include_str!("instances.rs")),
    ("invalid", include_str!("invalid.rs")),
    ("property", include_str!("property.rs")),
    ("query", include_str!("query.rs")),
    ("retention", include_str!("retention.rs")),
    ("scan", include_str!("scan.rs")),
    ("transactions", include_str!("transactions.rs")),
    ("ttl", include_str!("ttl.rs")),
    ("values", include_str!("values.rs")),
    ("versions", include_str!("versions.rs")),
    ("watch", include_str!("watch.rs")),
];

/// Checks that the macro registers every test function the groups define and nothing else:
/// a test written but not registered would otherwise never run. `registered` is the
/// macro's list, group by group.
pub fn suite_is_complete(registered: &[(&str, &[&str])]) {
    let mut missing = Vec::new();
    for (group, source) in GROUP_SOURCES {
        let written: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter(|l| l.contains("(f: Arc<dyn Fixture>)"))
            .filter_map(|l| l.split('(').next())
            .collect();
        let listed = registered
            .iter()
            .find(|(g, _)| g == group)
            .map_or(&[][..], |(_, tests)| tests);
        for t in &written {
            if !listed.contains(t) {
                missing.push(format!("{group}::{t} is written but not registered"));
            }
        }
        for t in listed {
            if !written.contains(t) {
                missing.push(format!("{group}::{t} is registered but not written"));
            }
        }
    }
    for (group, _) in registered {
        if !GROUP_SOURCES.iter().any(|(g, _)| g == group) {
            missing.push(format!("group {group} has no entry in GROUP_SOURCES"));
        }
    }
    assert!(
        missing.is_empty(),
        "conformance_tests! is out of date: {missing:#?}"
    );
}

/// Expands to one `#[test]` per suite test, in modules `conformance::GROUP`, each running
/// against a fixture made by `$fixture` (an expression evaluated once per test), and a
/// `conformance::suite_is_complete` test that fails when a group defines a test the list
/// below does not register.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::__conformance_tests! { $fixture;
            crud { insert_then_get, insert_existing_id_is_already_exists, upsert_creates_then_replaces,
                   get_missing_is_none, get_many_keeps_order, delete_says_whether_present,
                   reinsert_after_delete_gets_a_new_version, json_collection_with_runtime_spec,
                   raw_bodies, write_returns_what_was_stored }
            versions { update_at_current_version, update_at_stale_version_is_conflict,
                       update_of_missing_is_conflict, delete_if_version, insert_race_one_winner,
                       cas_counter, versions_never_repeat, precondition_before_unique }
            ttl { expired_records_are_invisible_everywhere, purge_reclaims_expired, no_ttl_never_expires,
                  default_ttl_and_per_write_ttl, expired_id_can_be_inserted_again,
                  rewrite_sets_expiry_anew }
            indexes { every_index_type, unique_violation_names_index, unique_value_freed_by_update_and_delete,
                      multi_valued_index, missing_or_null_fields_are_not_indexed,
                      update_moves_index_entries }
            covering { covering_answers_match_plain_ones, covering_index_follows_spec_changes,
                       many_matches_sort_by_id }
            query { every_predicate, range_bounds, and_of_predicates, order_by_index_both_ways,
                    order_by_id_both_ways, cursor_pages_cover_everything_once,
                    cursor_under_concurrent_inserts, cursor_survives_deletes, page_and_page_size,
                    count_matches_query, cursor_of_another_query_is_refused, filter_on_id }
            scan { scan_100k_in_bounded_pages, scan_prefix, delete_prefix, list_pages_by_cursor,
                   delete_where_in_chunks }
            batch { batch_applies_all, failing_precondition_writes_nothing, unique_clash_writes_nothing,
                    later_ops_see_earlier_ones, bad_op_is_named_before_anything_is_written,
                    check_op_writes_nothing }
            values { large_value_8_mib, unicode_ids, stats_and_health, json_key_order_is_kept,
                     nul_in_strings }
            catalog { spec_survives_reopen, added_index_sees_existing_records,
                      dropped_index_cannot_be_queried, incompatible_change_is_refused,
                      unique_index_over_duplicates_is_refused, list_and_drop_collections,
                      namespaces_are_isolated, namespaces_are_listed }
            instances { index_added_while_other_instance_writes, spec_changes_while_other_instance_writes,
                        dropped_collection_is_not_found_elsewhere, concurrent_spec_changes,
                        index_build_is_bounded_and_exact, unfinished_build_is_finished_or_dropped }
            transactions { transfers_keep_the_total, write_skew_is_refused,
                           read_as_absent_then_created_retries }
            copy { copy_keeps_every_record_exactly, rewrite_only_where_unchanged,
                   copy_store_resumes_compares_and_checks }
            retention { rules_purge_what_is_past_them, one_instance_purges_at_a_time }
            watch { every_acknowledged_write_once_in_order, resume_from_a_token_gets_exactly_the_rest,
                    failed_ops_make_no_event, bulk_changes_are_events,
                    slow_consumer_gets_every_change_or_a_gap }
            invalid { empty_id, id_over_512_bytes, undeclared_index, wrong_value_type,
                      bad_spec, bad_names }
            capabilities { atomic_batch, unique_indexes, ttl, binary_bodies, persistent,
                           max_body_bytes, batch_scope, max_batch_ops, shared, engine_clock,
                           change_feed, blind_indexes }
            property { random_operations_match_the_memory_model }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($fixture:expr; $($group:ident { $($test:ident),* $(,)? })*) => {
        mod conformance {
            $(
                mod $group {
                    #[allow(unused_imports)]
                    use super::super::*;
                    $(
                        #[test]
                        fn $test() {
                            $crate::run($fixture, $crate::$group::$test);
                        }
                    )*
                }
            )*

            #[test]
            fn suite_is_complete() {
                $crate::suite_is_complete(&[
                    $( (stringify!($group), &[ $( stringify!($test) ),* ]) ),*
                ]);
            }
        }
    };
}
