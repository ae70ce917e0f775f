//! The conformance suite and the property test against the machine's PostgreSQL
//! (127.0.0.1:5432): each test gets a database of its own, dropped afterwards.
//!
//! The suite drives time with a manual clock, so its stores run with `clock=caller`; the
//! database's clock (the default) is tested in `tests/clock.rs`.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::backend::Backend;
use stowage_core::testkit::Fixture;
use stowage_core::Result;
use stowage_postgres::{PostgresBackend, PostgresConfig};
use support::FreshDatabase;
use tokio::sync::Mutex;

/// A database per store the test creates, dropped with the fixture.
struct PostgresFixture {
    databases: Mutex<Vec<FreshDatabase>>,
}

impl PostgresFixture {
    fn new() -> Self {
        PostgresFixture {
            databases: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Fixture for PostgresFixture {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let db = FreshDatabase::new().await;
        let location = db.location();
        self.databases.lock().await.push(db);
        Ok((self.open(&location).await?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        let params = [("clock".to_owned(), "caller".to_owned())];
        let config = PostgresConfig::from_url_parts(location, &params)?;
        Ok(Arc::new(PostgresBackend::connect(config).await?))
    }

    async fn open_second(
        &self,
        location: &str,
        _first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        self.open(location).await
    }
}

stowage_core::conformance_tests!(PostgresFixture::new());
