//! The conformance suite and the property test against real SQLite files (a second instance
//! opens the file again), and once more against private in-memory databases.

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::backend::Backend;
use stowage_core::{Error, Result};
use stowage_sqlite::{SqliteBackend, SqliteConfig};
use stowage_testkit::{suite, FileFixture, Fixture};

fn files() -> FileFixture {
    FileFixture::new("db", |path| {
        Ok(Arc::new(SqliteBackend::open(SqliteConfig::new(path))?) as Arc<dyn Backend>)
    })
    .second_opens_again()
}

/// In-memory databases (`sqlite::memory:`) live as long as a handle does: the fixture keeps
/// one, so a "reopen" finds the data, as a restart of a persistent engine would.
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
        let kept = self.0.lock();
        let i: usize = location
            .parse()
            .map_err(|_| Error::invalid("bad memory fixture location"))?;
        Ok(Arc::new(kept[i].clone()))
    }
}

fn main() {
    let mut trials = suite("", files);
    trials.extend(suite("memory", MemoryFixture::default));
    stowage_testkit::main(trials);
}
