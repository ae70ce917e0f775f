//! [`CacheLayer`]: point reads served from memory, invalidated by this store's writes and
//! by the change feed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use stowage_core::backend::{Backend, ChangeFeed, QueryRequest, WriteAction, WriteOp, WriteResult};
use stowage_core::layer::Layer;
use stowage_core::{ChangeEvent, ChangeOp, Error, Result, StoredRecord, Timestamp};

/// Shards of the invalidation counters: a read caches what it read only if no write of
/// its shard was invalidated meanwhile.
const SHARDS: usize = 64;
/// How long a namespace whose feed failed is served without caching before the feed is
/// tried again.
const RETRY_FEED: Duration = Duration::from_secs(1);
/// What an entry costs besides its id and body (its key, metadata, the cache's own).
const ENTRY_OVERHEAD: usize = 128;

/// How a [`CacheLayer`] caches.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    max_bytes: u64,
    max_age: Duration,
    bypass: HashSet<String>,
}

impl CacheConfig {
    /// A cache holding at most `max_bytes` of records (ids and bodies, plus a small
    /// overhead per entry), least recently and frequently used first out.
    pub fn new(max_bytes: u64) -> Self {
        CacheConfig {
            max_bytes,
            max_age: Duration::from_secs(60),
            bypass: HashSet::new(),
        }
    }

    /// Entries older than this are read again even if no change was heard of (60 s by
    /// default): the bound on staleness when a change feed stalls without failing.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Never caches `collection` (in any namespace): every read goes to the engine.
    pub fn bypass(mut self, collection: impl Into<String>) -> Self {
        self.bypass.insert(collection.into());
        self
    }
}

/// What a cache has done, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to the engine (bypassed collections included).
    pub misses: u64,
    /// Records held now.
    pub entries: u64,
    /// Their weight in bytes.
    pub bytes: u64,
}

/// Where a namespace's change feed is.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// Being subscribed: not cached from yet.
    Starting,
    /// Watched: cached from.
    Live,
    /// Failed at this time: not cached from until [`RETRY_FEED`] later.
    Failed(Instant),
}

/// The part of the cache its feed watchers share.
struct Shared {
    records: moka::sync::Cache<String, StoredRecord>,
    /// Invalidation counters by shard, each behind the lock its check-and-insert takes.
    epochs: Vec<Mutex<u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    feeds: Mutex<HashMap<String, Feed>>,
}

impl Shared {
    fn shard(key: &str) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    fn epoch(&self, key: &str) -> u64 {
        *self.epochs[Self::shard(key)].lock()
    }

    /// Caches `rec` unless its shard saw an invalidation since `epoch` was read.
    fn insert_if_unchanged(&self, key: String, epoch: u64, rec: StoredRecord) {
        let guard = self.epochs[Self::shard(&key)].lock();
        if *guard == epoch {
            self.records.insert(key, rec);
        }
    }

    fn invalidate(&self, key: &str) {
        let mut guard = self.epochs[Self::shard(key)].lock();
        *guard += 1;
        self.records.invalidate(key);
    }

    /// Invalidates every entry whose key starts with `prefix` (a collection's or a
    /// namespace's), and every read in flight.
    fn invalidate_prefix(&self, prefix: &str) {
        for epoch in &self.epochs {
            *epoch.lock() += 1;
        }
        let doomed: Vec<Arc<String>> = self
            .records
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            self.records.invalidate(k.as_str());
        }
    }

    /// What one change of namespace `ns` invalidates.
    fn apply(&self, ns: &str, event: &ChangeEvent) {
        match (event.op, &event.collection, &event.id) {
            (ChangeOp::Put | ChangeOp::Delete, Some(c), Some(id)) => {
                self.invalidate(&key(ns, c, id));
            }
            (ChangeOp::Spec, _, _) => {}
            (_, Some(c), _) => self.invalidate_prefix(&collection_prefix(ns, c)),
            _ => self.invalidate_prefix(&namespace_prefix(ns)),
        }
    }
}

fn key(ns: &str, c: &str, id: &str) -> String {
    let mut k = String::with_capacity(ns.len() + c.len() + id.len() + 2);
    k.push_str(ns);
    k.push('\0');
    k.push_str(c);
    k.push('\0');
    k.push_str(id);
    k
}

fn collection_prefix(ns: &str, c: &str) -> String {
    format!("{ns}\0{c}\0")
}

fn namespace_prefix(ns: &str) -> String {
    format!("{ns}\0")
}

fn live(rec: &StoredRecord, now: Timestamp) -> bool {
    rec.expires_at.is_none_or(|at| at > now)
}

/// A layer that answers point reads from memory (see the crate docs for what it caches
/// and how stale a read can be).
pub struct CacheLayer {
    inner: Arc<dyn Backend>,
    shared: Arc<Shared>,
    bypass: HashSet<String>,
    /// The engine has a change feed: other instances' writes are heard of.
    feed: bool,
    watchers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("inner", &self.inner)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for CacheLayer {
    fn drop(&mut self) {
        for w in self.watchers.lock().drain(..) {
            w.abort();
        }
    }
}

impl CacheLayer {
    /// Wraps `inner`. Unsupported when `inner` is shared by processes and has no change
    /// feed: nothing would tell this cache of their writes.
    pub fn new(inner: Arc<dyn Backend>, config: CacheConfig) -> Result<Self> {
        let caps = inner.capabilities();
        let feed = caps.change_feed != ChangeFeed::None;
        if caps.shared && !feed {
            return Err(Error::unsupported(
                inner.name(),
                "a change feed, which a near cache over a shared store needs",
            ));
        }
        let records = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &String, v: &StoredRecord| {
                u32::try_from(k.len() + v.body.bytes.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_live(config.max_age)
            .build();
        Ok(CacheLayer {
            inner,
            shared: Arc::new(Shared {
                records,
                epochs: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                feeds: Mutex::new(HashMap::new()),
            }),
            bypass: config.bypass,
            feed,
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// Hits, misses and what the cache holds.
    pub fn stats(&self) -> CacheStats {
        let records = &self.shared.records;
        records.run_pending_tasks();
        CacheStats {
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            entries: records.entry_count(),
            bytes: records.weighted_size(),
        }
    }

    /// Whether reads of `ns` may be cached now: its change feed is watched (started here
    /// if it is not), or the engine has none and only this process opens it.
    fn cacheable(&self, ns: &str) -> bool {
        if !self.feed {
            return true;
        }
        let mut feeds = self.shared.feeds.lock();
        match feeds.get(ns) {
            Some(Feed::Live) => return true,
            Some(Feed::Starting) => return false,
            Some(Feed::Failed(at)) if at.elapsed() < RETRY_FEED => return false,
            _ => {}
        }
        feeds.insert(ns.to_owned(), Feed::Starting);
        drop(feeds);
        let task = tokio::spawn(watch(
            Arc::downgrade(&self.shared),
            self.inner.clone(),
            ns.to_owned(),
        ));
        let mut watchers = self.watchers.lock();
        watchers.retain(|w| !w.is_finished());
        watchers.push(task);
        false
    }

    /// The cached live record under `key`, counting the hit or the miss.
    fn cached(&self, key: &str, now: Timestamp) -> Option<StoredRecord> {
        let found = self.shared.records.get(key).filter(|r| live(r, now));
        let counter = match found {
            Some(_) => &self.shared.hits,
            None => &self.shared.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }
}

/// Watches namespace `ns` for as long as the cache lives, invalidating what each change
/// touches; when the feed ends or fails, forgets the namespace (nothing vouches for it).
async fn watch(shared: Weak<Shared>, inner: Arc<dyn Backend>, ns: String) {
    let set = |state: Feed| {
        if let Some(s) = shared.upgrade() {
            s.feeds.lock().insert(ns.clone(), state);
        }
    };
    let Ok(mut stream) = inner.watch(&ns, None, Timestamp::now()).await else {
        set(Feed::Failed(Instant::now()));
        return;
    };
    set(Feed::Live);
    while let Some(event) = stream.next().await {
        let Some(s) = shared.upgrade() else { return };
        match event {
            Ok(e) => s.apply(&ns, &e),
            Err(_) => break,
        }
    }
    if let Some(s) = shared.upgrade() {
        // Stop caching first, then forget: a read in flight sees the bumped counters.
        s.feeds
            .lock()
            .insert(ns.clone(), Feed::Failed(Instant::now()));
        s.invalidate_prefix(&namespace_prefix(&ns));
    }
}

impl CacheLayer {
    /// Whether reads of a collection go straight to the engine: bypassed collections, and
    /// Stowage's reserved namespaces (`__maintenance` leases: a stale lease would make an
    /// instance skip its turn).
    fn bypassed(&self, ns: &str, c: &str) -> bool {
        self.bypass.contains(c) || ns.starts_with("__")
    }
}

#[async_trait]
impl Layer for CacheLayer {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        if self.bypassed(ns, c) {
            self.shared.misses.fetch_add(1, Ordering::Relaxed);
            return self.inner.get(ns, c, id, now).await;
        }
        let key = key(ns, c, id);
        if let Some(rec) = self.cached(&key, now) {
            return Ok(Some(rec));
        }
        let cacheable = self.cacheable(ns);
        let epoch = self.shared.epoch(&key);
        let found = self.inner.get(ns, c, id, now).await?;
        if let Some(rec) = found.as_ref().filter(|r| cacheable && live(r, now)) {
            self.shared.insert_if_unchanged(key, epoch, rec.clone());
        }
        Ok(found)
    }

    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        if self.bypassed(ns, c) {
            self.shared
                .misses
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            return self.inner.get_many(ns, c, ids, now).await;
        }
        let keys: Vec<String> = ids.iter().map(|id| key(ns, c, id)).collect();
        let mut out: Vec<Option<StoredRecord>> = keys.iter().map(|k| self.cached(k, now)).collect();
        let missing: Vec<usize> = (0..ids.len()).filter(|i| out[*i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let cacheable = self.cacheable(ns);
        let epochs: Vec<u64> = missing
            .iter()
            .map(|i| self.shared.epoch(&keys[*i]))
            .collect();
        let wanted: Vec<String> = missing.iter().map(|i| ids[*i].clone()).collect();
        let found = self.inner.get_many(ns, c, &wanted, now).await?;
        for ((i, epoch), rec) in missing.into_iter().zip(epochs).zip(found) {
            if let Some(r) = rec.as_ref().filter(|r| cacheable && live(r, now)) {
                self.shared
                    .insert_if_unchanged(keys[i].clone(), epoch, r.clone());
            }
            out[i] = rec;
        }
        Ok(out)
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let keys: Vec<(String, bool)> = ops
            .iter()
            .map(|op| {
                let check = matches!(op.action, WriteAction::Check);
                (key(ns, &op.collection, &op.id), check)
            })
            .collect();
        let result = self.inner.write(ns, ops, now).await;
        // Written records, whatever the outcome (an engine error may come after the
        // commit); checked ones too when the batch failed: a failed check means what this
        // instance read was stale (a transaction retrying must read afresh).
        for (k, check) in &keys {
            if !check || result.is_err() {
                self.shared.invalidate(k);
            }
        }
        result
    }

    async fn drop_collection(&self, ns: &str, c: &str) -> Result<bool> {
        let result = self.inner.drop_collection(ns, c).await;
        self.shared.invalidate_prefix(&collection_prefix(ns, c));
        result
    }

    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        let result = self.inner.delete_matching(ns, r, now).await;
        self.shared
            .invalidate_prefix(&collection_prefix(ns, &r.collection));
        result
    }

    async fn delete_prefix(&self, ns: &str, c: &str, p: &str, now: Timestamp) -> Result<u64> {
        let result = self.inner.delete_prefix(ns, c, p, now).await;
        self.shared.invalidate_prefix(&collection_prefix(ns, c));
        result
    }
}
