//! Namespace data keys: what bodies are actually sealed with, and what crypto-shredding
//! destroys.
//!
//! Each namespace has its own data keys, one per ring key: bodies a ring key `k` seals are
//! sealed with the namespace's data key `k`, made at random on the namespace's first write
//! under `k` and stored *wrapped* (sealed with ring key `k`) in the engine itself, in the
//! reserved namespace `__keys` (collection `data_keys`, one record per namespace). So
//! every instance sharing the store finds the same data keys, and the ring file never
//! changes when a namespace appears.
//!
//! Destroying a namespace's record there ([`shred`]) makes every body of that namespace
//! unreadable at once — on any engine, and in any copy of its records made before (they
//! hold ciphertext only). A copy of the engine's own files (a redb file, a `pg_dump`)
//! holds the wrapped data keys too: it stays readable to whoever holds the ring keys of
//! the time, until those are retired (rotate, rekey, retire).
//!
//! Instances cache unwrapped data keys for [`crate::CodecConfig::key_cache`] (1 s by
//! default): after a shred by another instance, a process reads the namespace for at most
//! that long.
//!
//! A record of `data_keys` is binary, one entry per data key: the key id (u32 LE), the
//! ring key wrapping it (u32 LE), a 24-byte nonce and the sealed key (32 bytes and a
//! 16-byte tag), with the namespace and key id as associated data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{rand_core::RngCore, Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parking_lot::Mutex;
use stowage_core::backend::{Backend, Revision, SpecUpdate, WriteAction, WriteOp};
use stowage_core::{
    Body, CollectionSpec, Error, ErrorKind, Precondition, Result, Timestamp, Version,
};
use zeroize::Zeroizing;

use crate::keyring::{KeyBytes, KeyRing};

/// The reserved namespace holding every namespace's wrapped data keys. Names starting
/// with `__` are refused to callers, so no user data lands here.
pub const KEYS_NAMESPACE: &str = "__keys";
/// Its one collection: a record per namespace, id = the namespace.
const KEYS_COLLECTION: &str = "data_keys";
const NONCE: usize = 24;
const ENTRY: usize = 4 + 4 + NONCE + 32 + 16;
/// How often a write retries when another instance adds a data key at the same moment.
const ATTEMPTS: usize = 8;

/// A namespace's data keys as loaded: the record's version and the wrapped entries.
#[derive(Clone, Default)]
struct Loaded {
    version: Option<Version>,
    /// Key id → (wrapping ring key, nonce ‖ sealed key).
    wrapped: BTreeMap<u32, (u32, Vec<u8>)>,
}

struct Cached {
    at: Instant,
    loaded: Loaded,
    /// Keys unwrapped so far.
    open: HashMap<u32, KeyBytes>,
}

/// The data keys of every namespace of one engine, unwrapped on demand and cached.
pub(crate) struct DataKeys {
    engine: Arc<dyn Backend>,
    ring: KeyRing,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("ring", &self.ring)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn associated(ns: &str, id: u32) -> Vec<u8> {
    let mut aad = b"stowage data key\0".to_vec();
    aad.extend_from_slice(ns.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&id.to_le_bytes());
    aad
}

fn shredded(ns: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "namespace {ns:?} has no data keys: it was shredded (its records can never be \
             read again), or its records were sealed in another store"
        ),
    )
}

impl DataKeys {
    pub(crate) fn new(engine: Arc<dyn Backend>, ring: KeyRing, ttl: Duration) -> Self {
        DataKeys {
            engine,
            ring,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key new bodies of `ns` are sealed with: its data key under the ring's newest
    /// key, made (and stored, wrapped) if it does not exist yet.
    pub(crate) async fn for_writing(&self, ns: &str) -> Result<(u32, KeyBytes)> {
        let (id, ring_key) = self
            .ring
            .newest()
            .ok_or_else(|| Error::invalid("the key ring holds no key"))?;
        if let Some(key) = self.cached(ns, id, false)? {
            return Ok((id, key));
        }
        for _ in 0..ATTEMPTS {
            let loaded = self.load(ns).await?;
            if let Some(key) = self.cached(ns, id, true)? {
                return Ok((id, key));
            }
            // Not there: make it, and store it if nobody else did meanwhile.
            let mut key = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(key.as_mut());
            let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
            let sealed = XChaCha20Poly1305::new(ring_key.as_ref().into())
                .encrypt(
                    &nonce,
                    Payload {
                        msg: key.as_ref(),
                        aad: &associated(ns, id),
                    },
                )
                .map_err(|_| Error::internal("a data key could not be wrapped"))?;
            let mut next = loaded.clone();
            let mut entry = nonce.to_vec();
            entry.extend_from_slice(&sealed);
            next.wrapped.insert(id, (id, entry));
            let precondition = match loaded.version {
                Some(v) => Precondition::Version(v),
                None => Precondition::Absent,
            };
            match self.store(ns, &next, precondition).await {
                Ok(version) => {
                    next.version = Some(version);
                    let mut open = HashMap::new();
                    open.insert(id, key.clone());
                    self.cache.lock().insert(
                        ns.to_owned(),
                        Cached {
                            at: Instant::now(),
                            loaded: next,
                            open,
                        },
                    );
                    return Ok((id, key));
                }
                Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("the data key of namespace {ns:?} kept changing under concurrent writers"),
        ))
    }

    /// Data key `id` of `ns`, to open a body it sealed.
    pub(crate) async fn for_reading(&self, ns: &str, id: u32) -> Result<KeyBytes> {
        if let Some(key) = self.cached(ns, id, false)? {
            return Ok(key);
        }
        let loaded = self.load(ns).await?;
        if loaded.version.is_none() {
            return Err(shredded(ns));
        }
        self.cached(ns, id, true)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("namespace {ns:?} has no data key {id}: it was shredded since"),
            )
        })
    }

    /// Every data key of `ns` the ring can unwrap (for blind-index queries, which look
    /// for tokens under each). Empty when the namespace has none.
    pub(crate) async fn all_for_reading(&self, ns: &str) -> Result<Vec<KeyBytes>> {
        let fresh = self
            .cache
            .lock()
            .get(ns)
            .is_some_and(|c| c.at.elapsed() <= self.ttl);
        let ids: Vec<u32> = if fresh {
            self.cache
                .lock()
                .get(ns)
                .map(|c| c.loaded.wrapped.keys().copied().collect())
                .unwrap_or_default()
        } else {
            self.load(ns).await?.wrapped.keys().copied().collect()
        };
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            match self.cached(ns, id, true) {
                Ok(Some(k)) => keys.push(k),
                Ok(None) => {}
                // A data key under a retired ring key seals nothing any more.
                Err(e) if e.kind() == ErrorKind::Unavailable => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys)
    }

    /// Forgets what is cached for `ns` (after a shred through this instance).
    pub(crate) fn forget(&self, ns: &str) {
        self.cache.lock().remove(ns);
    }

    /// Key `id` of `ns` from the cache, unwrapping it if needed. `stale_ok`: take the
    /// cache however old (it was just loaded).
    fn cached(&self, ns: &str, id: u32, stale_ok: bool) -> Result<Option<KeyBytes>> {
        let mut cache = self.cache.lock();
        let Some(c) = cache.get_mut(ns) else {
            return Ok(None);
        };
        if !stale_ok && c.at.elapsed() > self.ttl {
            return Ok(None);
        }
        if let Some(k) = c.open.get(&id) {
            return Ok(Some(k.clone()));
        }
        let Some((wrapping, entry)) = c.loaded.wrapped.get(&id) else {
            return Ok(None);
        };
        let ring_key = self.ring.get(*wrapping).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "bodies of namespace {ns:?} are sealed under key {id}, which the key ring \
                     does not hold"
                ),
            )
        })?;
        let opened = Zeroizing::new(
            XChaCha20Poly1305::new(ring_key.as_ref().into())
                .decrypt(
                    XNonce::from_slice(&entry[..NONCE]),
                    Payload {
                        msg: &entry[NONCE..],
                        aad: &associated(ns, id),
                    },
                )
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Corrupted,
                        format!("data key {id} of namespace {ns:?} does not open: damaged"),
                    )
                })?,
        );
        let key: KeyBytes = Zeroizing::new(
            opened
                .as_slice()
                .try_into()
                .map_err(|_| Error::new(ErrorKind::Corrupted, "a data key is not 32 bytes"))?,
        );
        c.open.insert(id, key.clone());
        Ok(Some(key))
    }

    /// Reads `ns`'s record into the cache.
    async fn load(&self, ns: &str) -> Result<Loaded> {
        let found = match self
            .engine
            .get(KEYS_NAMESPACE, KEYS_COLLECTION, ns, Timestamp::now())
            .await
        {
            Ok(found) => found,
            // No namespace has keys yet.
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let loaded = match found {
            None => Loaded::default(),
            Some(rec) => Loaded {
                version: Some(rec.version),
                wrapped: parse(ns, &rec.body.bytes)?,
            },
        };
        let mut cache = self.cache.lock();
        let open = match cache.remove(ns) {
            // Unwrapped keys stay valid while their entry is unchanged.
            Some(c) => c
                .open
                .into_iter()
                .filter(|(id, _)| c.loaded.wrapped.get(id) == loaded.wrapped.get(id))
                .collect(),
            None => HashMap::new(),
        };
        cache.insert(
            ns.to_owned(),
            Cached {
                at: Instant::now(),
                loaded: loaded.clone(),
                open,
            },
        );
        Ok(loaded)
    }

    /// Writes `ns`'s record; its new version.
    async fn store(
        &self,
        ns: &str,
        loaded: &Loaded,
        precondition: Precondition,
    ) -> Result<Version> {
        let revision = ensure_collection(&self.engine).await?;
        let mut bytes = Vec::with_capacity(loaded.wrapped.len() * ENTRY);
        for (id, (wrapping, entry)) in &loaded.wrapped {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&wrapping.to_le_bytes());
            bytes.extend_from_slice(entry);
        }
        let op = WriteOp {
            collection: KEYS_COLLECTION.to_owned(),
            revision,
            id: ns.to_owned(),
            precondition,
            action: WriteAction::Put {
                body: Body::binary(bytes),
                index: Vec::new(),
                ttl: None,
            },
        };
        let done = self
            .engine
            .write(KEYS_NAMESPACE, vec![op], Timestamp::now())
            .await?;
        done.first()
            .and_then(|r| r.meta)
            .map(|m| m.version)
            .ok_or_else(|| Error::internal("the engine returned no version for a data key"))
    }
}

/// The wrapped entries of a `data_keys` record.
fn parse(ns: &str, bytes: &[u8]) -> Result<BTreeMap<u32, (u32, Vec<u8>)>> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(Error::new(
            ErrorKind::Corrupted,
            format!("the data keys of namespace {ns:?} are damaged (truncated)"),
        ));
    }
    Ok(bytes
        .chunks_exact(ENTRY)
        .map(|e| {
            let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let wrapping = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            (id, (wrapping, e[8..].to_vec()))
        })
        .collect())
}

/// The `data_keys` collection's spec revision, creating it on first use.
async fn ensure_collection(engine: &Arc<dyn Backend>) -> Result<Revision> {
    for _ in 0..ATTEMPTS {
        if let Some(s) = engine.load_spec(KEYS_NAMESPACE, KEYS_COLLECTION).await? {
            return Ok(s.revision);
        }
        let update = SpecUpdate {
            expected: None,
            spec: CollectionSpec::new(),
            building: Vec::new(),
        };
        match engine
            .apply_spec(KEYS_NAMESPACE, KEYS_COLLECTION, &update)
            .await
        {
            Ok(revision) => return Ok(revision),
            // Another instance made it first: read it.
            Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        "the data key collection could not be created",
    ))
}

/// Destroys the data keys of namespace `ns` of `engine` (the engine itself, below any
/// codec layer): every body sealed in `ns` can never be opened again, by any instance
/// (each stops within its key cache time) or from any copy of the records. Whether the
/// namespace had keys. Needs no key ring.
pub async fn shred(engine: &Arc<dyn Backend>, ns: &str) -> Result<bool> {
    stowage_core::validate_name("namespace", ns)?;
    let Some(spec) = engine.load_spec(KEYS_NAMESPACE, KEYS_COLLECTION).await? else {
        return Ok(false);
    };
    let op = WriteOp {
        collection: KEYS_COLLECTION.to_owned(),
        revision: spec.revision,
        id: ns.to_owned(),
        precondition: Precondition::None,
        action: WriteAction::Delete,
    };
    let done = engine
        .write(KEYS_NAMESPACE, vec![op], Timestamp::now())
        .await?;
    Ok(done.first().is_some_and(|r| r.meta.is_some()))
}
