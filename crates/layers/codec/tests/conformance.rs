//! The conformance suite through the codec layer — compression and encryption both on, so
//! every body is compressed (from 16 bytes) and sealed — on memory and on redb files; and
//! what reaches the engine holds no plaintext.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use stowage_codec::testkit::sealed;
use stowage_core::backend::Backend;
use stowage_core::Result;
use stowage_redb::{RedbBackend, RedbConfig};
use stowage_testkit::{Fixture, MemoryFixture};

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

    stowage_testkit::conformance_tests!(sealed(MemoryFixture::new()));
}

mod redb {
    use super::*;

    stowage_testkit::conformance_tests!(sealed(Redb {
        dir: tempfile::tempdir().unwrap(),
        next: Default::default(),
    }));
}
