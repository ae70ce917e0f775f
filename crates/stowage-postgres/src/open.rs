//! Opening a database: the catalog schema made if missing, and its format checked.
//!
//! Several instances may open one fresh database at once. `CREATE … IF NOT EXISTS` alone
//! races (two creators can both pass the check, and one then fails on PostgreSQL's own
//! catalog), so the bootstrap runs in one transaction under an advisory lock: the first
//! instance creates, the others wait and find everything there.

use stowage_core::backend::stable_hash;
use stowage_core::{Error, ErrorKind, Result};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use stowage_core::backend::{Backend, Engine, Revision, StoredSpec};
use stowage_core::Timestamp;

use crate::config::{ClockSource, PostgresConfig};
use crate::error::pg_error;
use crate::pool::PostgresPool;
use crate::schema::{quote, Layout, CATALOG_SCHEMA};

/// The catalog format this build writes and the newest it reads.
pub const FORMAT_VERSION: i64 = 1;

/// Makes the catalog if it is missing and checks its format: a database written by a newer
/// Stowage is refused (`Unsupported`) and left untouched.
pub(crate) async fn ensure_catalog(pool: &PostgresPool) -> Result<()> {
    let target = pool.target().to_owned();
    let mut client = pool.client("opening the catalog").await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error(e, "opening the catalog", &target))?;
    // Advisory lock keys are signed 64-bit: the hash's bits as they are.
    let key = stable_hash("stowage catalog bootstrap") as i64;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
        .await
        .map_err(|e| pg_error(e, "locking the catalog", &target))?;
    let s = quote(CATALOG_SCHEMA);
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.meta (
             key text COLLATE \"C\" PRIMARY KEY,
             value bigint NOT NULL);
         INSERT INTO {s}.meta (key, value) VALUES ('format', {FORMAT_VERSION})
             ON CONFLICT (key) DO NOTHING;
         -- One counter for every spec revision of the database: never reused.
         CREATE SEQUENCE IF NOT EXISTS {s}.revisions;
         -- A row per collection: its spec, where it lives, what is being built.
         CREATE TABLE IF NOT EXISTS {s}.collections (
             namespace text COLLATE \"C\" NOT NULL,
             collection text COLLATE \"C\" NOT NULL,
             revision bigint NOT NULL,
             spec jsonb NOT NULL,
             building jsonb NOT NULL,
             schema_name text NOT NULL,
             table_name text NOT NULL,
             PRIMARY KEY (namespace, collection));
         -- The highest version a removed record had, per collection; it outlives the
         -- collection, so a version is never given twice to one id.
         CREATE TABLE IF NOT EXISTS {s}.version_floors (
             namespace text COLLATE \"C\" NOT NULL,
             collection text COLLATE \"C\" NOT NULL,
             floor bigint NOT NULL,
             PRIMARY KEY (namespace, collection));
         -- Namespaces whose changes are logged (since someone first watched them), with
         -- the last token given. Appending to the log updates this row, so the row lock
         -- numbers a namespace's changes in commit order.
         CREATE TABLE IF NOT EXISTS {s}.feeds (
             namespace text COLLATE \"C\" PRIMARY KEY,
             last_token bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS {s}.changes (
             namespace text COLLATE \"C\" NOT NULL,
             token bigint NOT NULL,
             op text NOT NULL,
             collection text COLLATE \"C\",
             id text COLLATE \"C\",
             version bigint,
             count bigint,
             at timestamptz NOT NULL,
             PRIMARY KEY (namespace, token));"
    ))
    .await
    .map_err(|e| pg_error(e, "creating the catalog", &target))?;
    let format: i64 = tx
        .query_one(
            &format!("SELECT value FROM {s}.meta WHERE key = 'format'"),
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading the catalog format", &target))?
        .get(0);
    if format > FORMAT_VERSION {
        // Dropping the transaction rolls it back: nothing was changed.
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "postgres {target}: the Stowage catalog is format {format}, newer than this \
                 build reads ({FORMAT_VERSION}): upgrade Stowage"
            ),
        ));
    }
    tx.commit()
        .await
        .map_err(|e| pg_error(e, "creating the catalog", &target))
}

/// A Stowage store on one PostgreSQL database, shared by every instance that opens it.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PostgresBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: PostgresPool,
    pub clock: ClockSource,
    /// Layouts by spec revision. A revision names one spec for good, so an entry is never
    /// stale; the map is cleared when it grows past [`LAYOUT_CACHE`].
    pub layouts: Mutex<HashMap<Revision, Arc<Layout>>>,
    /// Who this instance is in the migrations table: application name, host and process.
    pub instance: String,
    /// Where the change feed's listening connection connects.
    pub pg: tokio_postgres::Config,
    /// Changes kept per watched namespace (0: no feed).
    pub change_log: u64,
    /// Namespaces named by NOTIFY on the listening connection, once a watch started it.
    pub notified: Mutex<Option<tokio::sync::broadcast::Sender<String>>>,
}

const LAYOUT_CACHE: usize = 4096;

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("pool", &self.inner.pool)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects to the database `config` names, making Stowage's catalog if it is missing.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let pool = PostgresPool::connect(&config).await?;
        let instance = format!(
            "{} pid {}",
            config.pg.get_application_name().unwrap_or("stowage"),
            std::process::id()
        );
        Ok(PostgresBackend {
            inner: Arc::new(Inner {
                pool,
                clock: config.clock,
                layouts: Mutex::new(HashMap::new()),
                instance,
                pg: config.pg.clone(),
                change_log: config.change_log,
                notified: Mutex::new(None),
            }),
        })
    }

    /// The `postgres://` engine, for the `stowage` facade.
    pub fn engine() -> Engine {
        Engine {
            scheme: "postgres",
            connect: |url| {
                Box::pin(async move {
                    let config = PostgresConfig::from_url_parts(&url.location, &url.params)?;
                    Ok(Arc::new(PostgresBackend::connect(config).await?) as Arc<dyn Backend>)
                })
            },
        }
    }

    /// The pool, for health checks and tools.
    pub fn pool(&self) -> &PostgresPool {
        &self.inner.pool
    }

    /// The caller's `now` where the store's clock decides, `None` where the database's does
    /// (the SQL then takes `now()`).
    pub(crate) fn now_param(&self, now: Timestamp) -> Option<SystemTime> {
        match self.inner.clock {
            ClockSource::Caller => Some(to_system_time(now)),
            _ => None,
        }
    }

    /// The layout of a collection at a stored spec's revision, from the cache or built.
    pub(crate) fn layout(
        &self,
        ns: &str,
        collection: &str,
        stored: StoredSpec,
    ) -> Result<Arc<Layout>> {
        if let Some(l) = self.inner.layouts.lock().get(&stored.revision) {
            return Ok(l.clone());
        }
        let revision = stored.revision;
        let layout = Arc::new(Layout::new(ns, collection, stored)?);
        let mut cache = self.inner.layouts.lock();
        if cache.len() >= LAYOUT_CACHE {
            cache.clear();
        }
        cache.insert(revision, layout.clone());
        Ok(layout)
    }
}

/// A Stowage timestamp as the `SystemTime` tokio-postgres writes as `timestamptz`.
pub(crate) fn to_system_time(t: Timestamp) -> SystemTime {
    let us = t.as_micros();
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}
