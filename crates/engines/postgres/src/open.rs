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
use std::time::SystemTime;

use parking_lot::Mutex;
use stowage_core::backend::{Backend, Engine, Revision, StoredSpec};
use stowage_core::{IndexType, Timestamp};

use crate::config::{ClockSource, PostgresConfig};
use crate::error::pg_error;
use crate::pool::PostgresPool;
use crate::schema::{quote, to_system_time, Layout, CATALOG_SCHEMA};

/// The catalog format this build writes and the newest it reads.
///
/// - 1: the first.
/// - 2: strings in index columns escape U+0000 and U+0001 (`schema::text_to_column`).
///   Opening a format-1 database rewrites the few values holding U+0001 once; run no
///   format-1 build against the database after that (it would write U+0001 unescaped and
///   refuse U+0000 as before).
pub const FORMAT_VERSION: i64 = 2;

/// Makes the catalog if it is missing (`create`; NotFound otherwise) and checks its format:
/// a database written by a newer Stowage is refused (`Unsupported`) and left untouched.
// Long: the catalog's DDL and each format upgrade, in order, in one transaction.
#[allow(clippy::too_many_lines)]
pub(crate) async fn ensure_catalog(pool: &PostgresPool, create: bool) -> Result<()> {
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
    if !create {
        let found: bool = tx
            .query_one("SELECT to_regclass('stowage.meta') IS NOT NULL", &[])
            .await
            .map_err(|e| pg_error(e, "looking for the catalog", &target))?
            .get(0);
        if !found {
            return Err(Error::no_store(
                format!("postgres {target}"),
                "the database holds no Stowage catalog",
            ));
        }
    }
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
    if format < 2 {
        escape_u0001(&tx, &target).await?;
    }
    if format < FORMAT_VERSION {
        tx.execute(
            &format!("UPDATE {s}.meta SET value = $1 WHERE key = 'format'"),
            &[&FORMAT_VERSION],
        )
        .await
        .map_err(|e| pg_error(e, "upgrading the catalog format", &target))?;
    }
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

/// Format 1 to 2: string index values holding U+0001 take the escape format 2 reads
/// (U+0000 could not be stored before, so no value holds it).
async fn escape_u0001(tx: &tokio_postgres::Transaction<'_>, target: &str) -> Result<()> {
    let rows = tx
        .query(
            "SELECT namespace, collection, revision, spec::text FROM stowage.collections",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading the catalog", target))?;
    let escape = |col: &str| format!("{col} = replace({col}, chr(1), chr(1) || chr(2))");
    for row in rows {
        let (ns, collection): (String, String) = (row.get(0), row.get(1));
        let spec = serde_json::from_str(row.get(3)).map_err(|e| {
            Error::new(
                ErrorKind::Corrupted,
                format!("postgres catalog: the spec of {ns}/{collection} cannot be read: {e}"),
            )
        })?;
        let stored = StoredSpec {
            spec,
            revision: row.get::<_, i64>(2) as Revision,
            building: Vec::new(),
        };
        let layout = Layout::new(&ns, &collection, stored)?;
        let strings = |t| t == IndexType::String;
        let mut updates: Vec<String> = layout
            .columns
            .iter()
            .filter(|c| strings(c.index_type))
            .map(|c| {
                format!(
                    "UPDATE {} SET {} WHERE strpos({}, chr(1)) > 0",
                    layout.table,
                    escape(&c.column),
                    c.column
                )
            })
            .collect();
        updates.extend(
            layout
                .sides
                .iter()
                .filter(|s| strings(s.index_type))
                .map(|s| {
                    format!(
                        "UPDATE {} SET {} WHERE strpos(value, chr(1)) > 0",
                        s.table,
                        escape("value")
                    )
                }),
        );
        for sql in updates {
            tx.execute(&sql, &[])
                .await
                .map_err(|e| pg_error(e, "upgrading the catalog format", target))?;
        }
    }
    Ok(())
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
    /// Where this instance's mutations of one record queue (see `mutate.rs`).
    pub record_locks: stowage_core::backend::RecordLocks,
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

impl PostgresPool {
    /// A pool for `config`, with the catalog made if missing and its format checked, so a
    /// wrong host or database fails here rather than at the first write.
    pub async fn connect(config: &PostgresConfig) -> Result<Self> {
        let pool = PostgresPool::new(config)?;
        ensure_catalog(&pool, config.create_if_missing).await?;
        Ok(pool)
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
                record_locks: stowage_core::backend::RecordLocks::default(),
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
                    let mut config = PostgresConfig::from_url_parts(&url.location, &url.params)?;
                    config.create_if_missing = url.create_if_missing;
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
