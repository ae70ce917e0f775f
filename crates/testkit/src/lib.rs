//! The conformance suite: the contract every backend passes against its real engine.
//!
//! A backend implements [`Fixture`] (how to make a fresh, isolated store and how to open it
//! again); a test binary with `harness = false` runs the suite against it, every test one
//! trial named `conformance::GROUP::TEST` (see [`suite`](mod@suite)):
//!
//! ```ignore
//! fn main() {
//!     stowage_testkit::main(stowage_testkit::suite("", MyFixture::new));
//! }
//! ```
//!
//! Tests read [`Capabilities`](stowage_core::Capabilities): a claimed capability is exercised, an
//! unclaimed one must answer [`Unsupported`](stowage_core::ErrorKind::Unsupported).
//! The property test ([`property`]) compares the backend with the memory model.

#![deny(missing_docs)]
// Suite tests are private functions listed in their group's `TESTS`: an unlisted one is dead.
#![deny(dead_code)]
// The suite is test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

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

mod batch;
mod capabilities;
mod catalog;
mod certificates;
mod copy;
mod covering;
pub mod crash;
mod crud;
pub mod embedded;
pub mod faults;
mod indexes;
mod instances;
mod invalid;
mod mutations;
pub mod probe;
mod property;
mod query;
mod retention;
mod scan;
pub mod suite;
mod transactions;
mod ttl;
mod values;
mod versions;
mod watch;
pub mod workload;

pub use certificates::make_certificates;
pub use suite::{find, in_one_process, main, suite, Test};

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

/// A [`Fixture`] for an engine that keeps each store in a file (or folder): every store is
/// a new path `store-N.EXTENSION` in one temporary folder, removed with the fixture.
pub struct FileFixture {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
    extension: &'static str,
    open: fn(&str) -> Result<Arc<dyn Backend>>,
    second_opens_again: bool,
}

impl std::fmt::Debug for FileFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileFixture")
            .field("dir", &self.dir.path())
            .field("extension", &self.extension)
            .finish_non_exhaustive()
    }
}

impl FileFixture {
    /// Stores opened (and created) at a path by `open`.
    pub fn new(extension: &'static str, open: fn(&str) -> Result<Arc<dyn Backend>>) -> Self {
        FileFixture {
            dir: tempfile::tempdir().expect("a temporary folder"),
            next: Default::default(),
            extension,
            open,
            second_opens_again: false,
        }
    }

    /// A second instance opens the path again (SQLite, where one process may hold a file
    /// twice) instead of sharing the first (redb and sled lock their file).
    #[must_use]
    pub fn second_opens_again(mut self) -> Self {
        self.second_opens_again = true;
        self
    }

    /// The folder the stores are in.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

#[async_trait]
impl Fixture for FileFixture {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self
            .dir
            .path()
            .join(format!("store-{n}.{}", self.extension));
        let location = path.to_string_lossy().into_owned();
        Ok((self.open(&location).await?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        (self.open)(location)
    }

    async fn open_second(
        &self,
        location: &str,
        first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        if self.second_opens_again {
            self.open(location).await
        } else {
            Ok(first.clone())
        }
    }
}
