//! Stores on the shared Redis (`STOWAGE_TEST_REDIS_URL`, by default 127.0.0.1:6379), each under
//! a key prefix of its own that
//! the fixture removes afterwards (with `SCAN MATCH`, the one place it serves), even when
//! the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stowage_core::backend::Backend;

/// The shared Redis as a redis-rs URL.
pub fn server_url() -> String {
    let (scheme, location) = stowage_redis::testkit::shared_server();
    format!("{scheme}://{location}")
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test uses.
pub fn fresh_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t{}x{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Removes every key under `prefix`.
pub fn remove_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(server_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<Vec<u8>> = match redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}:*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<Vec<u8>>(&mut conn)
    {
        Ok(iter) => iter.filter_map(Result::ok).collect(),
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<i64> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
    }
}

/// A prefix removed on drop.
pub struct FreshPrefix(pub String);

impl FreshPrefix {
    pub fn new() -> Self {
        FreshPrefix(fresh_prefix())
    }
}

impl Drop for FreshPrefix {
    fn drop(&mut self) {
        remove_prefix(&self.0);
    }
}

/// Opens a store on the machine's Redis under `prefix`, with more URL parameters.
pub async fn open(
    prefix: &str,
    params: &[(&str, &str)],
) -> stowage_core::Result<stowage_redis::RedisBackend> {
    let mut p: Vec<(String, String)> = vec![("prefix".into(), prefix.into())];
    p.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (scheme, location) = stowage_redis::testkit::shared_server();
    let config = stowage_redis::RedisConfig::from_url_parts(&scheme, &location, &p)?;
    stowage_redis::RedisBackend::connect(config).await
}

/// The conformance fixture: a prefix per store a test creates, removed with the fixture
/// (on the shared server; a private cluster goes with its processes).
pub struct RedisFixture {
    scheme: String,
    /// On the shared server (prefixes to remove), not on a private cluster.
    shared: bool,
    location: String,
    clock: &'static str,
    prefixes: Mutex<Vec<FreshPrefix>>,
}

impl RedisFixture {
    /// Stores on the shared Redis and the caller's clock (the suite drives time by hand).
    pub fn new() -> Self {
        Self::with_clock("caller")
    }

    /// Stores on the shared Redis and `clock=…`.
    pub fn with_clock(clock: &'static str) -> Self {
        let (scheme, location) = stowage_redis::testkit::shared_server();
        RedisFixture {
            scheme,
            shared: true,
            location,
            clock,
            prefixes: Mutex::new(Vec::new()),
        }
    }

    /// Stores on a Redis Cluster reached through `nodes` (`HOST:PORT,…`), caller's clock.
    pub fn cluster(nodes: String) -> Self {
        RedisFixture {
            scheme: "redis+cluster".to_owned(),
            shared: false,
            location: nodes,
            clock: "caller",
            prefixes: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl stowage_testkit::Fixture for RedisFixture {
    async fn create(&self) -> stowage_core::Result<(Arc<dyn Backend>, String)> {
        let prefix = if self.shared {
            let p = FreshPrefix::new();
            let name = p.0.clone();
            self.prefixes.lock().unwrap().push(p);
            name
        } else {
            fresh_prefix()
        };
        Ok((self.open(&prefix).await?, prefix))
    }

    async fn open(&self, prefix: &str) -> stowage_core::Result<Arc<dyn Backend>> {
        let params = vec![
            ("prefix".to_owned(), prefix.to_owned()),
            ("clock".to_owned(), self.clock.to_owned()),
        ];
        let config =
            stowage_redis::RedisConfig::from_url_parts(&self.scheme, &self.location, &params)?;
        Ok(Arc::new(
            stowage_redis::RedisBackend::connect(config).await?,
        ))
    }

    async fn open_second(
        &self,
        location: &str,
        _first: &Arc<dyn Backend>,
    ) -> stowage_core::Result<Arc<dyn Backend>> {
        // Another instance: a connection of its own.
        self.open(location).await
    }
}
