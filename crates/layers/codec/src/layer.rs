//! [`CodecLayer`]: bodies framed on the way in, opened on the way out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_core::backend::{
    Backend, Capabilities, CompareAndSet, IndexFill, QueryHit, QueryRequest, Revision, ScanRequest,
    WriteAction, WriteOp, WriteResult,
};
use stowage_core::layer::Layer;
use stowage_core::{Error, ErrorKind, Result, StoredRecord, Timestamp};

use crate::blind;
use crate::frame::{sealed_with, Codec, Place, OVERHEAD};
use crate::keyring::{KeyBytes, KeyRing};
use crate::keys::{DataKeys, KEYS_NAMESPACE};

/// How a [`CodecLayer`] frames bodies. The default compresses bodies of 256 bytes or more
/// with zstd level 3 and does not encrypt.
#[derive(Debug, Clone)]
pub struct CodecConfig {
    compress_from: Option<usize>,
    level: i32,
    ring: Option<KeyRing>,
    key_cache: Duration,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            compress_from: Some(256),
            level: 3,
            ring: None,
            key_cache: Duration::from_secs(1),
        }
    }
}

impl CodecConfig {
    /// Compression from 256 bytes on, no encryption.
    pub fn new() -> Self {
        CodecConfig::default()
    }

    /// Compresses bodies of at least `bytes` bytes (kept only where it saves space).
    /// Below a few hundred bytes zstd's frame costs more than it saves: 256 is the default.
    pub fn compress_from(mut self, bytes: usize) -> Self {
        self.compress_from = Some(bytes);
        self
    }

    /// Stores every body uncompressed.
    pub fn no_compression(mut self) -> Self {
        self.compress_from = None;
        self
    }

    /// zstd's level (1 fastest … 19 smallest; 3 by default).
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Encrypts every body: with its namespace's data key under `ring`'s newest key (see
    /// the crate docs); every key of the ring opens what it sealed.
    pub fn encrypt(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }

    /// How long unwrapped namespace data keys are used before they are read again (1 s by
    /// default): how long, at most, an instance keeps reading a namespace another instance
    /// shredded.
    pub fn key_cache(mut self, time: Duration) -> Self {
        self.key_cache = time;
        self
    }

    /// The key new writes are sealed with (`None`: not encrypting).
    pub fn newest_key(&self) -> Option<u32> {
        self.ring.as_ref().and_then(KeyRing::newest_id)
    }
}

/// A layer that stores every body as a frame (see the crate docs): compressed above a
/// size, sealed with the namespace's data key if a key ring is given, and always
/// checksummed. A body that fails its checksum or does not open is `Corrupted`, naming its
/// collection and id, and is never returned as data. Index values, ids, versions and times
/// pass through unchanged. The reserved namespace of the data keys is hidden.
#[derive(Debug)]
pub struct CodecLayer {
    inner: Arc<dyn Backend>,
    codec: Codec,
    keys: Option<DataKeys>,
    /// The blind indexes of each collection (namespace, collection) at the revision last
    /// seen.
    blind: Mutex<HashMap<(String, String), (Revision, BlindNames)>>,
    /// Applies mutations, which the engine cannot see into.
    mutations: CompareAndSet,
}

/// The blind indexes of one collection.
type BlindNames = Arc<Vec<String>>;

impl CodecLayer {
    /// Wraps `inner`. Unsupported when `inner` cannot store opaque bytes (a frame is
    /// binary).
    pub fn new(inner: Arc<dyn Backend>, config: CodecConfig) -> Result<Self> {
        let caps = inner.capabilities();
        if !caps.binary_bodies {
            return Err(Error::unsupported(
                inner.name(),
                "binary bodies, which the codec layer stores",
            ));
        }
        if config
            .ring
            .as_ref()
            .is_some_and(|r| r.newest_id().is_none())
        {
            return Err(Error::invalid("the codec layer's key ring holds no key"));
        }
        Ok(CodecLayer {
            mutations: CompareAndSet::new(),
            keys: config
                .ring
                .map(|ring| DataKeys::new(inner.clone(), ring, config.key_cache)),
            inner,
            codec: Codec {
                compress_from: config.compress_from,
                level: config.level,
                max_body: caps.max_body_bytes,
            },
            blind: Mutex::new(HashMap::new()),
        })
    }

    /// The blind indexes of collection `c` at `revision` (a spec never changes within a
    /// revision, so the answer is cached by it).
    async fn blind_names(&self, ns: &str, c: &str, revision: Revision) -> Result<BlindNames> {
        let key = (ns.to_owned(), c.to_owned());
        if let Some((r, names)) = self.blind.lock().get(&key) {
            if *r == revision {
                return Ok(names.clone());
            }
        }
        let Some(stored) = self.inner.load_spec(ns, c).await? else {
            // The engine answers for a missing collection.
            return Ok(Arc::default());
        };
        let names: BlindNames = Arc::new(
            stored
                .spec
                .indexes
                .iter()
                .filter(|i| i.blind)
                .map(|i| i.name.clone())
                .collect(),
        );
        self.blind
            .lock()
            .insert(key, (stored.revision, names.clone()));
        Ok(names)
    }

    /// The request with its blind-index predicates turned into tokens; `None` when the
    /// namespace has no data key yet, so nothing can match.
    async fn hide_query(&self, ns: &str, r: &QueryRequest) -> Result<Option<QueryRequest>> {
        let names = self.blind_names(ns, &r.collection, r.revision).await?;
        if !blind::touches(&r.filter, &names) {
            return Ok(Some(r.clone()));
        }
        let keys = self.keys.as_ref().ok_or_else(|| no_ring(&r.collection))?;
        let data_keys = keys.all_for_reading(ns).await?;
        if data_keys.is_empty() {
            return Ok(None);
        }
        let blind_keys: Vec<KeyBytes> = data_keys.iter().map(blind::blind_key).collect();
        let mut hidden = r.clone();
        blind::hide_filter(&mut hidden.filter, &names, &blind_keys);
        Ok(Some(hidden))
    }

    /// [`crate::shred`] through this layer, which also forgets the keys it cached: every
    /// record of `ns` is unreadable from now on. Whether the namespace had keys.
    pub async fn shred(&self, ns: &str) -> Result<bool> {
        let had = crate::keys::shred(&self.inner, ns).await?;
        if let Some(keys) = &self.keys {
            keys.forget(ns);
        }
        Ok(had)
    }

    /// Opens the bodies of `records` (all of namespace `ns`, collection `collection`),
    /// reading each data key they need once.
    async fn open_all(
        &self,
        ns: &str,
        collection: &str,
        records: Vec<&mut StoredRecord>,
    ) -> Result<()> {
        let mut keys: HashMap<u32, KeyBytes> = HashMap::new();
        for rec in records {
            let key = match (sealed_with(&rec.body), &self.keys) {
                (Some(id), Some(data_keys)) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(id) {
                        slot.insert(data_keys.for_reading(ns, id).await?);
                    }
                    keys.get(&id)
                }
                _ => None,
            };
            let place = Place {
                ns,
                collection,
                id: &rec.id,
            };
            rec.body = self.codec.decode(place, &rec.body, key)?;
        }
        Ok(())
    }
}

/// A collection with blind indexes reached through a codec layer without a key ring: its
/// values must not reach the engine in the clear.
fn no_ring(collection: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "collection {collection:?} has blind indexes: open the store with its key ring \
             (this codec layer does not encrypt)"
        ),
    )
}

/// Refuses the reserved namespace of the data keys to callers (the store refuses names
/// starting with `__` already; this guards callers of the backend itself).
fn guard(ns: &str) -> Result<()> {
    if ns == KEYS_NAMESPACE {
        return Err(Error::invalid(format!(
            "namespace {KEYS_NAMESPACE:?} is reserved for the codec layer's data keys"
        )));
    }
    Ok(())
}

#[async_trait]
impl Layer for CodecLayer {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = self.inner.capabilities();
        // What the caller may write: a frame adds its header, nonce, tag and checksum (and
        // an incompressible body is stored as it is).
        c.max_body_bytes = c.max_body_bytes.saturating_sub(OVERHEAD);
        c.blind_indexes = self.keys.is_some();
        // The engine beneath sees only sealed bodies: the layer applies mutations itself.
        c.mutations = stowage_core::backend::MutationSupport::CompareAndSet;
        c
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let mut names = self.inner.list_namespaces().await?;
        names.retain(|ns| ns != KEYS_NAMESPACE);
        Ok(names)
    }

    async fn write(
        &self,
        ns: &str,
        mut ops: Vec<WriteOp>,
        now: Timestamp,
    ) -> Result<Vec<WriteResult>> {
        guard(ns)?;
        if ops
            .iter()
            .any(|op| matches!(op.action, WriteAction::Mutate(_)))
        {
            // The engine would apply them to sealed bytes: they become puts of their results
            // here, which come back through this function.
            return self.mutations.write(self, ns, ops, now).await;
        }
        let writes_bodies = ops.iter().any(|op| {
            matches!(
                op.action,
                WriteAction::Put { .. } | WriteAction::Restore { .. }
            )
        });
        let seal = match &self.keys {
            Some(keys) if writes_bodies => Some(keys.for_writing(ns).await?),
            _ => None,
        };
        let blind_key = seal.as_ref().map(|(_, k)| blind::blind_key(k));
        for op in &mut ops {
            if let WriteAction::Put { index, .. } | WriteAction::Restore { index, .. } =
                &mut op.action
            {
                let names = self.blind_names(ns, &op.collection, op.revision).await?;
                if !names.is_empty() {
                    let key = blind_key.as_ref().ok_or_else(|| no_ring(&op.collection))?;
                    blind::hide_entries(index, &names, key);
                }
            }
        }
        for op in &mut ops {
            let place = Place {
                ns,
                collection: &op.collection,
                id: &op.id,
            };
            match &mut op.action {
                WriteAction::Put { body, .. } | WriteAction::Restore { body, .. } => {
                    *body =
                        self.codec
                            .encode(place, body, seal.as_ref().map(|(id, k)| (*id, k)))?;
                }
                _ => {}
            }
        }
        self.inner.write(ns, ops, now).await
    }

    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        guard(ns)?;
        let mut found = self.inner.get(ns, c, id, now).await?;
        self.open_all(ns, c, found.iter_mut().collect()).await?;
        Ok(found)
    }

    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        guard(ns)?;
        let mut found = self.inner.get_many(ns, c, ids, now).await?;
        self.open_all(ns, c, found.iter_mut().flatten().collect())
            .await?;
        Ok(found)
    }

    async fn fill_index(
        &self,
        ns: &str,
        c: &str,
        revision: Revision,
        mut fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        guard(ns)?;
        let names = self.blind_names(ns, c, revision).await?;
        if !names.is_empty() {
            let keys = self.keys.as_ref().ok_or_else(|| no_ring(c))?;
            let (_, data_key) = keys.for_writing(ns).await?;
            let blind_key = blind::blind_key(&data_key);
            for fill in &mut fills {
                blind::hide_entries(&mut fill.index, &names, &blind_key);
            }
        }
        self.inner.fill_index(ns, c, revision, fills, now).await
    }

    async fn count(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        guard(ns)?;
        match self.hide_query(ns, r).await? {
            Some(r) => self.inner.count(ns, &r, now).await,
            None => Ok(0),
        }
    }

    async fn delete_matching(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<u64> {
        guard(ns)?;
        match self.hide_query(ns, r).await? {
            Some(r) => self.inner.delete_matching(ns, &r, now).await,
            None => Ok(0),
        }
    }

    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        guard(ns)?;
        let Some(r) = self.hide_query(ns, r).await? else {
            return Ok(Vec::new());
        };
        let r = &r;
        let mut hits = self.inner.query(ns, r, now).await?;
        self.open_all(
            ns,
            &r.collection,
            hits.iter_mut().map(|h| &mut h.record).collect(),
        )
        .await?;
        Ok(hits)
    }

    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        guard(ns)?;
        let mut found = self.inner.scan(ns, r, now).await?;
        self.open_all(ns, &r.collection, found.iter_mut().collect())
            .await?;
        Ok(found)
    }
}
