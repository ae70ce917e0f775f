//! The conformance suite and the property test against real sled databases.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::backend::Backend;
use stowage_core::Result;
use stowage_sled::{SledBackend, SledConfig};
use stowage_testkit::Fixture;

/// Each store is a new file in one temporary folder, removed with the fixture.
struct SledFixture {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

impl SledFixture {
    fn new() -> Self {
        SledFixture {
            dir: tempfile::tempdir().expect("a temporary folder"),
            next: Default::default(),
        }
    }
}

#[async_trait]
impl Fixture for SledFixture {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.sled"));
        let location = path.to_string_lossy().into_owned();
        Ok((self.open(&location).await?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(SledBackend::open(SledConfig::new(location))?))
    }
}

stowage_testkit::conformance_tests!(SledFixture::new());

/// The suite again under two stacked pass-through layers.
mod layered {
    use super::SledFixture;
    use stowage_testkit::Layered;

    stowage_testkit::conformance_tests!(Layered(SledFixture::new()));
}
