//! The conformance suite and the property test against real SQLite files, and once more
//! against in-memory databases.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::backend::Backend;
use stowage_core::Result;
use stowage_sqlite::{SqliteBackend, SqliteConfig};
use stowage_testkit::Fixture;

/// Each store is a new file in one temporary folder, removed with the fixture. A second
/// instance opens the same file again: in one process it shares the open store.
struct SqliteFixture {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

impl SqliteFixture {
    fn new() -> Self {
        SqliteFixture {
            dir: tempfile::tempdir().expect("a temporary folder"),
            next: Default::default(),
        }
    }
}

#[async_trait]
impl Fixture for SqliteFixture {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.db"));
        let location = path.to_string_lossy().into_owned();
        Ok((self.open(&location).await?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(SqliteBackend::open(SqliteConfig::new(location))?))
    }

    async fn open_second(
        &self,
        location: &str,
        _first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        self.open(location).await
    }
}

stowage_testkit::conformance_tests!(SqliteFixture::new());

/// The suite on private in-memory databases (`sqlite::memory:`), where tests run.
mod memory {
    use super::*;

    /// In-memory databases live as long as a handle does: the fixture keeps one, so a
    /// "reopen" finds the data, as a restart of a persistent engine would.
    #[derive(Default)]
    struct MemoryFixture(parking_lot::Mutex<Vec<SqliteBackend>>);

    #[async_trait]
    impl Fixture for MemoryFixture {
        async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
            let backend = SqliteBackend::open(SqliteConfig::memory())?;
            let mut kept = self.0.lock();
            kept.push(backend.clone());
            Ok((Arc::new(backend), (kept.len() - 1).to_string()))
        }

        async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
            let i: usize = location.parse().unwrap();
            Ok(Arc::new(self.0.lock()[i].clone()))
        }
    }

    stowage_testkit::conformance_tests!(MemoryFixture::default());
}
