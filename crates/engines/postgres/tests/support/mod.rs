//! A fresh database per test, on the machine's PostgreSQL (127.0.0.1:5432, trust auth), as
//! sqlx's test helper does: tests share the server with other runs, so each makes its own
//! database and drops it afterwards, even when the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use tokio_postgres::NoTls;

const ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

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
        format!("postgres@127.0.0.1:5432/{}", self.name)
    }

    /// A plain connection to this database, to look at what Stowage wrote.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port=5432 user=postgres dbname={}",
                self.name
            ),
            NoTls,
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432: {e}"));
        tokio::spawn(connection);
        client
    }
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(ADMIN, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432: {e}"));
    tokio::spawn(connection);
    client
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
