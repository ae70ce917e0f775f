//! A fresh database per test, on the shared PostgreSQL (`STOWAGE_TEST_POSTGRES_URL`, by default
//! 127.0.0.1:5432 as `postgres` with trust auth), as sqlx's test helper does: tests share the server with other runs, so each makes its own
//! database and drops it afterwards, even when the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use stowage_postgres::testkit::TestServer;
use tokio_postgres::NoTls;

/// A database made for one test; dropped (with `WITH (FORCE)`) on drop.
pub struct FreshDatabase {
    pub name: String,
}

impl FreshDatabase {
    pub async fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("stowage_test_{}_{nanos}", std::process::id());
        admin(&format!("CREATE DATABASE \"{name}\"")).await;
        FreshDatabase { name }
    }

    /// The location part of a `postgres://` URL for this database.
    pub fn location(&self) -> String {
        TestServer::from_env().location(&self.name)
    }

    /// A plain connection to this database, to look at what Stowage wrote.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(Some(&self.name)).await
    }
}

/// A plain connection to database `db` (`None`: the admin database) on the shared server.
pub async fn connect(db: Option<&str>) -> tokio_postgres::Client {
    let server = TestServer::from_env();
    let (client, connection) = tokio_postgres::connect(&server.conninfo(db), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must run at STOWAGE_TEST_POSTGRES_URL ({}:{}): {e}",
                server.host, server.port
            )
        });
    tokio::spawn(connection);
    client
}

async fn admin(sql: &str) {
    connect(None)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        // Drop cannot await: a thread with its own runtime does the cleanup.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin(&sql))
        })
        .join();
    }
}

/// The conformance fixture: a database per store a test creates, dropped with the
/// fixture. `clock` is the `clock=` URL parameter the stores take.
pub struct PostgresFixture {
    clock: &'static str,
    databases: tokio::sync::Mutex<Vec<FreshDatabase>>,
}

impl PostgresFixture {
    /// Stores on the caller's clock (the suite drives time by hand).
    pub fn new() -> Self {
        Self::with_clock("caller")
    }

    /// Stores on `clock=…`.
    pub fn with_clock(clock: &'static str) -> Self {
        PostgresFixture {
            clock,
            databases: tokio::sync::Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl stowage_testkit::Fixture for PostgresFixture {
    async fn create(
        &self,
    ) -> stowage_core::Result<(std::sync::Arc<dyn stowage_core::backend::Backend>, String)> {
        let db = FreshDatabase::new().await;
        let location = db.location();
        self.databases.lock().await.push(db);
        Ok((self.open(&location).await?, location))
    }

    async fn open(
        &self,
        location: &str,
    ) -> stowage_core::Result<std::sync::Arc<dyn stowage_core::backend::Backend>> {
        let params = [("clock".to_owned(), self.clock.to_owned())];
        let config = stowage_postgres::PostgresConfig::from_url_parts(location, &params)?;
        Ok(std::sync::Arc::new(
            stowage_postgres::PostgresBackend::connect(config).await?,
        ))
    }

    async fn open_second(
        &self,
        location: &str,
        _first: &std::sync::Arc<dyn stowage_core::backend::Backend>,
    ) -> stowage_core::Result<std::sync::Arc<dyn stowage_core::backend::Backend>> {
        // Another instance: a pool of its own.
        self.open(location).await
    }
}
