//! [`CodecLayer`]: bodies framed on the way in, opened on the way out.

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::backend::{
    Backend, Capabilities, QueryHit, QueryRequest, ScanRequest, WriteAction, WriteOp, WriteResult,
};
use stowage_core::layer::Layer;
use stowage_core::{Error, Result, StoredRecord, Timestamp};

use crate::frame::{Codec, Place, OVERHEAD};
use crate::keyring::KeyRing;

/// How a [`CodecLayer`] frames bodies. The default compresses bodies of 256 bytes or more
/// with zstd level 3 and does not encrypt.
#[derive(Debug, Clone)]
pub struct CodecConfig {
    compress_from: Option<usize>,
    level: i32,
    ring: Option<KeyRing>,
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            compress_from: Some(256),
            level: 3,
            ring: None,
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

    /// Seals every body with `ring`'s newest key; any key of the ring opens what it sealed.
    pub fn encrypt(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }

    /// The key new writes are sealed with (`None`: not encrypting).
    pub fn newest_key(&self) -> Option<u32> {
        self.ring.as_ref().and_then(KeyRing::newest_id)
    }
}

/// A layer that stores every body as a frame (see the crate docs): compressed above a
/// size, sealed with a key ring if one is given, and always checksummed. A body that fails
/// its checksum or does not open is `Corrupted`, naming its collection and id, and is never
/// returned as data. Index values, ids, versions and times pass through unchanged.
#[derive(Debug)]
pub struct CodecLayer {
    inner: Arc<dyn Backend>,
    codec: Codec,
}

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
            inner,
            codec: Codec {
                compress_from: config.compress_from,
                level: config.level,
                ring: config.ring,
                max_body: caps.max_body_bytes,
            },
        })
    }

    fn open_record(
        &self,
        ns: &str,
        collection: &str,
        mut rec: StoredRecord,
    ) -> Result<StoredRecord> {
        let place = Place {
            ns,
            collection,
            id: &rec.id,
        };
        rec.body = self.codec.decode(place, &rec.body)?;
        Ok(rec)
    }
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
        c
    }

    async fn write(
        &self,
        ns: &str,
        mut ops: Vec<WriteOp>,
        now: Timestamp,
    ) -> Result<Vec<WriteResult>> {
        for op in &mut ops {
            let place = Place {
                ns,
                collection: &op.collection,
                id: &op.id,
            };
            match &mut op.action {
                WriteAction::Put { body, .. } | WriteAction::Restore { body, .. } => {
                    *body = self.codec.encode(place, body)?;
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
        match self.inner.get(ns, c, id, now).await? {
            Some(rec) => self.open_record(ns, c, rec).map(Some),
            None => Ok(None),
        }
    }

    async fn get_many(
        &self,
        ns: &str,
        c: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        self.inner
            .get_many(ns, c, ids, now)
            .await?
            .into_iter()
            .map(|r| r.map(|r| self.open_record(ns, c, r)).transpose())
            .collect()
    }

    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        self.inner
            .query(ns, r, now)
            .await?
            .into_iter()
            .map(|mut hit| {
                hit.record = self.open_record(ns, &r.collection, hit.record)?;
                Ok(hit)
            })
            .collect()
    }

    async fn scan(&self, ns: &str, r: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
        self.inner
            .scan(ns, r, now)
            .await?
            .into_iter()
            .map(|rec| self.open_record(ns, &r.collection, rec))
            .collect()
    }
}
