//! The conformance suite and the property test against real redb files.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::backend::Backend;
use stowage_core::Result;
use stowage_redb::{RedbBackend, RedbConfig};
use stowage_testkit::Fixture;

/// Each store is a new file in one temporary folder, removed with the fixture.
struct RedbFixture {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

impl RedbFixture {
    fn new() -> Self {
        RedbFixture {
            dir: tempfile::tempdir().expect("a temporary folder"),
            next: Default::default(),
        }
    }
}

#[async_trait]
impl Fixture for RedbFixture {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.redb"));
        let location = path.to_string_lossy().into_owned();
        Ok((self.open(&location).await?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(RedbBackend::open(RedbConfig::new(location))?))
    }
}

stowage_testkit::conformance_tests!(RedbFixture::new());

/// The suite again under two stacked pass-through layers.
mod layered {
    use super::RedbFixture;
    use stowage_testkit::Layered;

    stowage_testkit::conformance_tests!(Layered(RedbFixture::new()));
}
