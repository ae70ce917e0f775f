//! The conformance suite through the codec layer — compression and encryption both on, so
//! every body is compressed (from 16 bytes) and sealed — on memory and on redb files; and
//! what reaches the engine holds no plaintext.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use stowage_codec::{CodecConfig, CodecLayer, KeyRing};
use stowage_core::backend::Backend;
use stowage_core::testkit::{Fixture, MemoryFixture};
use stowage_core::Result;
use stowage_redb::{RedbBackend, RedbConfig};

/// The backends of `F`, each wrapped in a codec layer that compresses and encrypts.
struct Codec<F> {
    inner: F,
    ring: KeyRing,
}

impl<F> Codec<F> {
    fn new(inner: F) -> Self {
        Codec {
            inner,
            ring: KeyRing::generate(),
        }
    }

    fn wrap(&self, backend: Arc<dyn Backend>) -> Result<Arc<dyn Backend>> {
        let config = CodecConfig::new()
            .compress_from(16)
            .encrypt(self.ring.clone());
        Ok(Arc::new(CodecLayer::new(backend, config)?))
    }
}

#[async_trait]
impl<F: Fixture> Fixture for Codec<F> {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let (backend, location) = self.inner.create().await?;
        Ok((self.wrap(backend)?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        self.wrap(self.inner.open(location).await?)
    }

    async fn open_second(
        &self,
        location: &str,
        first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        // The first is already wrapped; a second instance shares it as the engine does.
        let _ = location;
        Ok(first.clone())
    }
}

/// redb files in one temporary folder.
struct Redb {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Fixture for Redb {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let location = self
            .dir
            .path()
            .join(format!("s{n}.redb"))
            .to_string_lossy()
            .into_owned();
        Ok((self.open(&location).await?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(RedbBackend::open(RedbConfig::new(location))?))
    }
}

mod memory {
    use super::*;

    stowage_core::conformance_tests!(Codec::new(MemoryFixture::new()));
}

mod redb {
    use super::*;

    stowage_core::conformance_tests!(Codec::new(Redb {
        dir: tempfile::tempdir().unwrap(),
        next: Default::default(),
    }));
}
