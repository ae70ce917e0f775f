//! The store: a backend, a namespace, a clock and the catalog of collection specs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::RwLock;

use crate::backend::{
    Backend, Capabilities, CollectionStats, Health, IndexFill, ScanRequest, WriteOp,
};
use crate::collection::{Batch, Collection};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{validate_name, ContentType, Record, Timestamp};
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
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    namespace: Arc<str>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
    clock: Arc<dyn Clock>,
    // One entry per (namespace, collection) opened in this process. Every handle of a
    // collection shares its entry, so a spec change is seen by all of them at once, and
    // writes (read lock) never interleave with a spec change (write lock).
    catalog: Mutex<HashMap<(String, String), Arc<CollectionEntry>>>,
}

#[derive(Debug)]
pub(crate) struct CollectionEntry {
    pub(crate) name: String,
    pub(crate) spec: RwLock<Arc<CollectionSpec>>,
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

    pub(crate) fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// The collection of record type `T`, created if new. If its stored spec differs from
    /// `T::spec()`, the change is applied first: added indexes are built from the records
    /// already stored, dropped ones removed. A change that would alter an existing index is
    /// refused with InvalidInput and changes nothing.
    pub async fn collection<T: Record>(&self) -> Result<Collection<T>> {
        self.collection_with_spec(T::COLLECTION, T::spec()).await
    }

    /// The collection `name` holding `T` (often `serde_json::Value`), declared with `spec`
    /// at run time; created or changed as [`Store::collection`] says.
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
        let spec = self
            .shared
            .backend
            .load_spec(&self.namespace, name)
            .await?
            .ok_or_else(|| Error::collection_not_found(&self.namespace, name))?;
        Ok(Collection::new(self.clone(), self.cache(name, spec)))
    }

    /// Every collection of this namespace with its spec, ordered by name.
    pub async fn collections(&self) -> Result<Vec<(String, CollectionSpec)>> {
        self.shared.backend.list_specs(&self.namespace).await
    }

    /// Drops a collection with all its records; `false` when it did not exist.
    pub async fn drop_collection(&self, name: &str) -> Result<bool> {
        validate_name("collection", name)?;
        let entry = self.cached(name);
        // Hold the spec lock so no write of this process lands during the drop.
        let _guard = match &entry {
            Some(e) => Some(e.spec.write().await),
            None => None,
        };
        let dropped = self
            .shared
            .backend
            .drop_collection(&self.namespace, name)
            .await?;
        self.shared
            .catalog
            .lock()
            .remove(&(self.namespace.to_string(), name.to_owned()));
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

    /// Probes the backend and measures the round trip.
    pub async fn health(&self) -> Result<Health> {
        let start = Instant::now();
        self.shared.backend.ping().await?;
        Ok(Health {
            backend: self.shared.backend.name(),
            latency: start.elapsed(),
        })
    }

    pub(crate) async fn write(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<crate::backend::WriteResult>> {
        self.shared
            .backend
            .write(&self.namespace, ops, self.now())
            .await
    }

    fn cached(&self, name: &str) -> Option<Arc<CollectionEntry>> {
        self.shared
            .catalog
            .lock()
            .get(&(self.namespace.to_string(), name.to_owned()))
            .cloned()
    }

    fn cache(&self, name: &str, spec: CollectionSpec) -> Arc<CollectionEntry> {
        self.shared
            .catalog
            .lock()
            .entry((self.namespace.to_string(), name.to_owned()))
            .or_insert_with(|| {
                Arc::new(CollectionEntry {
                    name: name.to_owned(),
                    spec: RwLock::new(Arc::new(spec)),
                })
            })
            .clone()
    }

    fn check_supported(&self, spec: &CollectionSpec) -> Result<()> {
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
            if **entry.spec.read().await == spec {
                return Ok(entry);
            }
        }
        let backend = &self.shared.backend;
        let stored = backend.load_spec(&self.namespace, name).await?;
        let entry = self.cache(name, stored.clone().unwrap_or_else(|| spec.clone()));
        let mut current = entry.spec.write().await;
        match stored {
            None => {
                backend
                    .apply_spec(&self.namespace, name, &spec, Vec::new())
                    .await?
            }
            Some(old) if old == spec => {}
            Some(old) => {
                let change = old.diff(&spec)?;
                // A record written by another process between the backfill's read and the
                // apply makes the backend answer Conflict: compute the backfill again.
                let mut attempt = 0;
                loop {
                    let fills = self.backfill(name, &change.added).await?;
                    match backend
                        .apply_spec(&self.namespace, name, &spec, fills)
                        .await
                    {
                        Err(e) if e.kind() == ErrorKind::Conflict && attempt < 5 => attempt += 1,
                        other => break other?,
                    }
                }
            }
        }
        *current = Arc::new(spec);
        drop(current);
        Ok(entry)
    }

    /// The values of `added` indexes for every stored record, checked the way writes are
    /// (types, unique values) so that a change that cannot apply is refused before anything
    /// is written.
    async fn backfill(&self, name: &str, added: &[IndexSpec]) -> Result<Vec<IndexFill>> {
        let mut fills = Vec::new();
        if added.is_empty() {
            return Ok(fills);
        }
        let mut seen: Vec<HashMap<crate::value::IndexValue, String>> =
            vec![HashMap::new(); added.len()];
        let mut after = None;
        loop {
            let page = self
                .shared
                .backend
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
            let last = page.last().map(|r| r.id.clone());
            for rec in page {
                if rec.body.content_type != ContentType::Json {
                    return Err(Error::invalid(format!(
                        "cannot index collection {name:?}: record {:?} has a binary body",
                        rec.id
                    )));
                }
                let body: serde_json::Value =
                    serde_json::from_slice(&rec.body.bytes).map_err(|e| {
                        Error::new(
                            ErrorKind::Corrupted,
                            format!(
                                "record {:?} of collection {name:?} is not valid JSON: {e}",
                                rec.id
                            ),
                        )
                    })?;
                let mut index = Vec::new();
                for (ix, seen) in added.iter().zip(seen.iter_mut()) {
                    let values = ix.extract(&body, &rec.id).map_err(|e| {
                        Error::invalid(format!(
                            "cannot add index {:?} to collection {name:?}: {}",
                            ix.name,
                            e.message()
                        ))
                    })?;
                    if ix.unique {
                        for v in &values {
                            if let Some(other) = seen.insert(v.clone(), rec.id.clone()) {
                                return Err(Error::unique_violation(name, &ix.name, &other));
                            }
                        }
                    }
                    if !values.is_empty() {
                        index.push((ix.name.clone(), values));
                    }
                }
                if !index.is_empty() {
                    fills.push(IndexFill {
                        id: rec.id,
                        version: rec.version,
                        index,
                    });
                }
            }
            match last {
                Some(id) => after = Some(id),
                None => return Ok(fills),
            }
        }
    }
}

/// How many records one scan request fetches: large enough to amortize a round trip, small
/// enough that a scan's memory stays constant.
pub(crate) const SCAN_PAGE: usize = 256;
