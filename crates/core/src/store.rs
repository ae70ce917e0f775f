//! The store: a backend, a namespace, a clock and the catalog of collection specs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};

use crate::backend::{
    Backend, Capabilities, CollectionStats, Health, IndexEntries, IndexFill, ScanRequest,
    SpecUpdate, StoredSpec, WriteOp, WriteResult,
};
use crate::collection::{Batch, Collection};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{validate_name, ContentType, Record, StoredRecord, Timestamp};
use crate::spec::{CollectionSpec, IndexSpec};

/// The namespace a store uses unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where the store reads the time. Tests use [`ManualClock`] to expire records without
/// sleeping.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock();
        *t = t.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock()
    }
}

/// A handle to stored collections: a backend, a namespace and a clock. Cheap to clone; clones
/// share the catalog cache.
///
/// ```
/// # async fn demo() -> stowage_core::Result<()> {
/// use stowage_core::{MemoryBackend, Store};
/// let store = Store::new(MemoryBackend::new());
/// let billing = store.namespace("billing")?;
/// # Ok(()) }
/// ```
///
/// # Several instances
///
/// Two stores over one backend — two processes sharing PostgreSQL, or two handles in one
/// process — each cache specs. Every write op and query carries the spec revision it was
/// prepared with; the engine refuses a stale one inside its transaction, and the store then
/// reloads the spec and prepares the call again (at most [`STALE_RETRIES`] times). A
/// collection dropped elsewhere answers NotFound and leaves this store's cache, so declaring
/// it again creates it. See the `backend` module docs for spec changes.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    namespace: Arc<str>,
}

/// How often a call prepared with a stale spec is prepared again before the store gives up
/// with Conflict.
pub const STALE_RETRIES: usize = 8;

struct Shared {
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
    clock: Arc<dyn Clock>,
    // One entry per (namespace, collection) opened through this store. Every handle of a
    // collection shares its entry, so a reloaded spec is seen by all of them at once.
    catalog: Mutex<HashMap<(String, String), Arc<CollectionEntry>>>,
}

/// A collection as this store knows it: its name and the spec last loaded.
#[derive(Debug)]
pub(crate) struct CollectionEntry {
    pub(crate) name: String,
    loaded: Mutex<Arc<Loaded>>,
}

/// A stored spec with the part queries may use.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) stored: StoredSpec,
    pub(crate) queryable: CollectionSpec,
    /// The stored spec again, shared with the mutations that apply under it.
    pub(crate) spec: Arc<CollectionSpec>,
}

impl CollectionEntry {
    fn new(name: &str, stored: StoredSpec) -> Self {
        CollectionEntry {
            name: name.to_owned(),
            loaded: Mutex::new(Arc::new(Loaded::from(stored))),
        }
    }

    /// The spec last loaded.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.loaded.lock().clone()
    }

    /// Replaces the spec unless a newer revision is already in (revisions only grow).
    fn set(&self, stored: StoredSpec) {
        let mut loaded = self.loaded.lock();
        if stored.revision >= loaded.stored.revision {
            *loaded = Arc::new(Loaded::from(stored));
        }
    }
}

impl From<StoredSpec> for Loaded {
    fn from(stored: StoredSpec) -> Self {
        Loaded {
            queryable: stored.queryable(),
            spec: Arc::new(stored.spec.clone()),
            stored,
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.shared.backend.name())
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Builds a [`Store`] over a backend.
#[derive(Debug)]
pub struct StoreBuilder {
    backend: Arc<dyn Backend>,
    namespace: String,
    clock: Arc<dyn Clock>,
}

impl StoreBuilder {
    /// The namespace handles start in (default `"default"`).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// The clock TTLs are measured with (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Wraps the backend in a layer (see [`crate::layer`]): `wrap` receives the backend as
    /// stacked so far, so the first layer added is the innermost.
    pub fn layer(mut self, wrap: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>) -> Self {
        self.backend = wrap(self.backend);
        self
    }

    /// The store; InvalidInput when the namespace name is not valid.
    pub fn build(self) -> Result<Store> {
        validate_name("namespace", &self.namespace)?;
        let capabilities = self.backend.capabilities();
        Ok(Store {
            shared: Arc::new(Shared {
                backend: self.backend,
                capabilities,
                clock: self.clock,
                catalog: Mutex::new(HashMap::new()),
            }),
            namespace: self.namespace.into(),
        })
    }
}

impl Store {
    /// A store over `backend` in the default namespace with the system clock.
    pub fn new(backend: impl Backend) -> Store {
        Self::from_backend(Arc::new(backend))
    }

    /// A store over a shared backend, in the default namespace with the system clock.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Store {
        Self::builder(backend)
            .build()
            .expect("the default namespace is a valid name")
    }

    /// A builder over `backend`.
    pub fn builder(backend: Arc<dyn Backend>) -> StoreBuilder {
        StoreBuilder {
            backend,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same store in another namespace (a service or tenant).
    pub fn namespace(&self, ns: &str) -> Result<Store> {
        validate_name("namespace", ns)?;
        Ok(Store {
            shared: self.shared.clone(),
            namespace: ns.into(),
        })
    }

    /// This handle's namespace.
    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    /// Every namespace of the backend that holds at least one collection, by name. The
    /// reserved ones Stowage keeps for itself (names starting with `__`) are left out.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let mut names = self.shared.backend.list_namespaces().await?;
        names.retain(|n| !n.starts_with("__"));
        Ok(names)
    }

    /// The backend's name (`memory`, `redb`, …).
    pub fn backend_name(&self) -> &'static str {
        self.shared.backend.name()
    }

    /// The backend, for tools that work below the typed API.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }

    /// What the backend can do.
    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.capabilities
    }

    /// The time now on this store's [`Clock`]: what writes stamp and expiry is judged by.
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// The collection of record type `T`, created if new. If its stored spec differs from
    /// `T::spec()`, the change is applied first (see [`Store::collection_with_spec`]).
    pub async fn collection<T: Record>(&self) -> Result<Collection<T>> {
        self.collection_with_spec(T::COLLECTION, T::spec()).await
    }

    /// The collection `name` holding `T` (often `serde_json::Value`), declared with `spec`
    /// at run time, created if new.
    ///
    /// If the stored spec differs, it is changed in three steps, each a compare-and-set on
    /// the spec revision: the added indexes are stored as *building* (writes maintain them
    /// from then on, queries cannot use them yet); the records already stored are indexed a
    /// page at a time (bounded memory, converging while other instances write); then the
    /// target spec is stored, which also drops indexes, flips `covering` and sets the
    /// default TTL. A change that would alter an existing index is refused with
    /// InvalidInput; a build that fails (a value of the wrong type, a unique clash) puts the
    /// spec back and reports why. If another instance changes the spec meanwhile, this call
    /// answers Conflict unless the other instance wants the same spec, in which case both
    /// succeed (the later one helps finish the build).
    pub async fn collection_with_spec<T>(
        &self,
        name: &str,
        spec: CollectionSpec,
    ) -> Result<Collection<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let entry = self.define(name, spec).await?;
        Ok(Collection::new(self.clone(), entry))
    }

    /// An existing collection with its stored spec; NotFound when there is none.
    pub async fn existing_collection<T>(&self, name: &str) -> Result<Collection<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        validate_name("collection", name)?;
        if let Some(entry) = self.cached(name) {
            return Ok(Collection::new(self.clone(), entry));
        }
        let stored = self
            .shared
            .backend
            .load_spec(&self.namespace, name)
            .await?
            .ok_or_else(|| Error::collection_not_found(&self.namespace, name))?;
        Ok(Collection::new(self.clone(), self.cache(name, stored)))
    }

    /// Every collection of this namespace with its spec (indexes being built included),
    /// ordered by name.
    pub async fn collections(&self) -> Result<Vec<(String, CollectionSpec)>> {
        Ok(self
            .shared
            .backend
            .list_specs(&self.namespace)
            .await?
            .into_iter()
            .map(|(name, s)| (name, s.spec))
            .collect())
    }

    /// Drops a collection with all its records; `false` when it did not exist. Handles of
    /// it, here or in other instances, answer NotFound from then on.
    pub async fn drop_collection(&self, name: &str) -> Result<bool> {
        validate_name("collection", name)?;
        let dropped = self
            .shared
            .backend
            .drop_collection(&self.namespace, name)
            .await?;
        self.forget(name);
        Ok(dropped)
    }

    /// An atomic batch across collections of this namespace.
    pub fn batch(&self) -> Batch {
        Batch::new(self.clone())
    }

    /// Removes records whose TTL has passed from every collection of this namespace, and
    /// says how many. Expired records are invisible already; this reclaims their space.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.shared
            .backend
            .purge_expired(&self.namespace, self.now())
            .await
    }

    /// Records and bytes of every collection of this namespace.
    pub async fn stats(&self) -> Result<Vec<CollectionStats>> {
        self.shared.backend.stats(&self.namespace).await
    }

    /// The changes of this namespace after `after` (`None`: from now on), in commit order,
    /// then live ones (see [`ChangeEvent`](crate::ChangeEvent)). Unsupported where the
    /// backend keeps no feed ([`Capabilities::change_feed`]).
    pub async fn watch(&self, after: Option<crate::ChangeToken>) -> Result<crate::ChangeStream> {
        self.shared
            .backend
            .watch(&self.namespace, after, self.now())
            .await
    }

    /// Probes the backend and measures the round trip.
    pub async fn health(&self) -> Result<Health> {
        let start = Instant::now();
        self.shared.backend.ping().await?;
        Ok(Health {
            backend: self.shared.backend.name(),
            latency: start.elapsed(),
        })
    }

    /// Writes ops prepared from the current specs of `entries` (`first`, when the caller
    /// prepared them already), preparing them again with reloaded specs while the engine
    /// finds them stale.
    pub(crate) async fn write_prepared(
        &self,
        entries: &[&Arc<CollectionEntry>],
        mut first: Option<Vec<WriteOp>>,
        prepare: impl Fn() -> Result<Vec<WriteOp>>,
    ) -> Result<Vec<WriteResult>> {
        let mut attempt = 0;
        loop {
            let ops = match first.take() {
                Some(ops) => ops,
                None => prepare()?,
            };
            match self
                .shared
                .backend
                .write(&self.namespace, ops, self.now())
                .await
            {
                Err(e) if e.is_stale_spec() && attempt < STALE_RETRIES => {
                    attempt += 1;
                    for entry in entries {
                        self.reload(entry).await?;
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound && !e.is_record_not_found() => {
                    // A collection dropped by another instance leaves the cache. (A missing
                    // record — a touch of an expired session — says nothing of the spec.)
                    for entry in entries {
                        let _ = self.reload(entry).await;
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// Runs a call built from the current spec of `entry` (queries, counts), building it
    /// again with the reloaded spec while the engine finds it stale. A call the cached spec
    /// refuses (an index it does not know) is tried again once if the stored spec moved on.
    pub(crate) async fn with_spec<R, Fut>(
        &self,
        entry: &Arc<CollectionEntry>,
        call: impl Fn(Arc<Loaded>) -> Result<Fut>,
    ) -> Result<R>
    where
        Fut: std::future::Future<Output = Result<R>>,
    {
        let mut attempt = 0;
        loop {
            let loaded = entry.current();
            let outcome = match call(loaded.clone()) {
                Ok(fut) => fut.await,
                Err(e) => Err(e),
            };
            match outcome {
                Err(e)
                    if (e.is_stale_spec() || e.kind() == ErrorKind::InvalidInput)
                        && attempt < STALE_RETRIES =>
                {
                    attempt += 1;
                    let fresh = self.reload(entry).await?;
                    if !e.is_stale_spec() && fresh.stored.revision == loaded.stored.revision {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let _ = self.reload(entry).await;
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// Loads a collection's spec again; NotFound (and out of the cache) when it is gone.
    pub(crate) async fn reload(&self, entry: &CollectionEntry) -> Result<Arc<Loaded>> {
        if let Some(stored) = self
            .shared
            .backend
            .load_spec(&self.namespace, &entry.name)
            .await?
        {
            entry.set(stored);
            Ok(entry.current())
        } else {
            self.forget(&entry.name);
            Err(Error::collection_not_found(&self.namespace, &entry.name))
        }
    }

    fn forget(&self, name: &str) {
        self.shared
            .catalog
            .lock()
            .remove(&(self.namespace.to_string(), name.to_owned()));
    }

    fn cached(&self, name: &str) -> Option<Arc<CollectionEntry>> {
        self.shared
            .catalog
            .lock()
            .get(&(self.namespace.to_string(), name.to_owned()))
            .cloned()
    }

    fn cache(&self, name: &str, stored: StoredSpec) -> Arc<CollectionEntry> {
        let mut catalog = self.shared.catalog.lock();
        let entry = catalog
            .entry((self.namespace.to_string(), name.to_owned()))
            .or_insert_with(|| Arc::new(CollectionEntry::new(name, stored.clone())))
            .clone();
        entry.set(stored);
        entry
    }

    fn check_supported(&self, spec: &CollectionSpec) -> Result<()> {
        if !self.shared.capabilities.blind_indexes {
            if let Some(ix) = spec.indexes.iter().find(|i| i.blind) {
                return Err(Error::unsupported(
                    self.backend_name(),
                    &format!(
                        "blind indexes (index {:?}): they need the codec layer with a key ring",
                        ix.name
                    ),
                ));
            }
        }
        if !self.shared.capabilities.unique_indexes {
            if let Some(ix) = spec.indexes.iter().find(|i| i.unique) {
                return Err(Error::unsupported(
                    self.backend_name(),
                    &format!("unique indexes (index {:?})", ix.name),
                ));
            }
        }
        if spec.default_ttl_seconds.is_some() && !self.shared.capabilities.ttl {
            return Err(Error::unsupported(
                self.backend_name(),
                "TTLs (default_ttl_seconds)",
            ));
        }
        Ok(())
    }

    /// Creates the collection or brings its stored spec to `spec`.
    async fn define(&self, name: &str, spec: CollectionSpec) -> Result<Arc<CollectionEntry>> {
        validate_name("collection", name)?;
        spec.validate()?;
        self.check_supported(&spec)?;
        if let Some(entry) = self.cached(name) {
            let loaded = entry.current();
            if loaded.stored.spec == spec && loaded.stored.building.is_empty() {
                return Ok(entry);
            }
        }
        let backend = &self.shared.backend;
        let mut attempt = 0;
        loop {
            let stored = backend.load_spec(&self.namespace, name).await?;
            let outcome = match stored {
                Some(s) if s.spec == spec && s.building.is_empty() => Ok(s),
                Some(s) => self.change_spec(name, s, &spec).await,
                None => {
                    let update = SpecUpdate {
                        expected: None,
                        spec: spec.clone(),
                        building: Vec::new(),
                    };
                    backend
                        .apply_spec(&self.namespace, name, &update)
                        .await
                        .map(|revision| StoredSpec {
                            spec: spec.clone(),
                            revision,
                            building: Vec::new(),
                        })
                }
            };
            match outcome {
                Ok(stored) => return Ok(self.cache(name, stored)),
                Err(e) if e.kind() == ErrorKind::Conflict && attempt < STALE_RETRIES => {
                    // Another instance changed the spec. Wanting the same spec is no
                    // conflict: go again (and help finish its build); else it won.
                    attempt += 1;
                    let now = backend.load_spec(&self.namespace, name).await?;
                    if now.as_ref().is_some_and(|s| s.spec != spec) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The three steps of a spec change (see [`Store::collection_with_spec`]).
    async fn change_spec(
        &self,
        name: &str,
        stored: StoredSpec,
        target: &CollectionSpec,
    ) -> Result<StoredSpec> {
        let backend = &self.shared.backend;
        let change = stored.spec.diff(target)?;
        // Builds left unfinished (by a dead instance) that the target still wants are
        // finished here; the others are dropped in step 3.
        let mut building: Vec<String> = stored
            .building
            .iter()
            .filter(|b| target.index_named(b).is_some())
            .cloned()
            .collect();
        building.extend(change.added.iter().map(|i| i.name.clone()));
        let mut current = stored.clone();
        if !change.added.is_empty() {
            let mut spec = stored.spec.clone();
            spec.indexes.extend(change.added.iter().cloned());
            let update = SpecUpdate {
                expected: Some(stored.revision),
                spec,
                building: stored
                    .building
                    .iter()
                    .cloned()
                    .chain(change.added.iter().map(|i| i.name.clone()))
                    .collect(),
            };
            let revision = backend.apply_spec(&self.namespace, name, &update).await?;
            current = StoredSpec {
                spec: update.spec,
                revision,
                building: update.building,
            };
        }
        if !building.is_empty() {
            if let Err(e) = self.build_indexes(name, &current, &building).await {
                if !matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Unavailable) {
                    // The build cannot succeed: put back the spec from before.
                    let mut spec = current.spec.clone();
                    spec.indexes.retain(|i| !change.added.contains(i));
                    let back = SpecUpdate {
                        expected: Some(current.revision),
                        spec,
                        building: stored.building.clone(),
                    };
                    let _ = backend.apply_spec(&self.namespace, name, &back).await;
                }
                return Err(e);
            }
        }
        let update = SpecUpdate {
            expected: Some(current.revision),
            spec: target.clone(),
            building: Vec::new(),
        };
        let revision = backend.apply_spec(&self.namespace, name, &update).await?;
        Ok(StoredSpec {
            spec: update.spec,
            revision,
            building: update.building,
        })
    }

    /// Fills the `building` indexes from the records stored, a page at a time: each page's
    /// values go to the engine with the revision they were computed under, and records
    /// written since they were read are skipped (their writes carried the entries).
    async fn build_indexes(
        &self,
        name: &str,
        current: &StoredSpec,
        building: &[String],
    ) -> Result<()> {
        let indexes: Vec<&IndexSpec> = building
            .iter()
            .filter_map(|b| current.spec.index_named(b))
            .collect();
        let backend = &self.shared.backend;
        let mut after = None;
        loop {
            let page = backend
                .scan(
                    &self.namespace,
                    &ScanRequest {
                        collection: name.to_owned(),
                        prefix: None,
                        after: after.take(),
                        limit: SCAN_PAGE,
                    },
                    self.now(),
                )
                .await?;
            let full = page.len() == SCAN_PAGE;
            after = page.last().map(|r| r.id.clone());
            let mut fills = Vec::with_capacity(page.len());
            for rec in page {
                fills.push(IndexFill {
                    index: index_values(name, &indexes, &rec)?,
                    id: rec.id,
                    version: rec.version,
                });
            }
            if !fills.is_empty() {
                backend
                    .fill_index(&self.namespace, name, current.revision, fills, self.now())
                    .await?;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// A stored record's values for `indexes`, checked as writes check them.
fn index_values(name: &str, indexes: &[&IndexSpec], rec: &StoredRecord) -> Result<IndexEntries> {
    if rec.body.content_type != ContentType::Json {
        return Err(Error::invalid(format!(
            "cannot index collection {name:?}: record {:?} has a binary body",
            rec.id
        )));
    }
    let body: serde_json::Value = serde_json::from_slice(&rec.body.bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupted,
            format!(
                "record {:?} of collection {name:?} is not valid JSON: {e}",
                rec.id
            ),
        )
    })?;
    indexes
        .iter()
        .map(|ix| {
            let values = ix.extract(&body, &rec.id).map_err(|e| {
                Error::invalid(format!(
                    "cannot add index {:?} to collection {name:?}: {}",
                    ix.name,
                    e.message()
                ))
            })?;
            Ok((ix.name.clone(), values))
        })
        .collect()
}

/// How many records one scan request fetches: large enough to amortize a round trip, small
/// enough that a scan's memory stays constant.
pub const SCAN_PAGE: usize = 256;
