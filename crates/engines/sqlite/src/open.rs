//! Opening a store: the file lock, the pragmas, the migrations, and the [`SqliteBackend`]
//! handle with its writer thread and read connections.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use stowage_core::backend::ChangeHub;
use stowage_core::{Error, ErrorKind, Result, Timestamp};

use crate::config::{Location, SqliteConfig, Synchronous};
use crate::error::sqlite_error;
use crate::group_commit::Writer;
use crate::schema::{CATALOG_DDL, FORMAT_VERSION};

/// Records in one SQLite database: a table per collection with typed index columns, side
/// tables for multi-valued indexes, and the catalog. Every write runs on one writer thread
/// and shares its commit with the writes queued beside it (group commit); reads run on a
/// pool of read connections, off the async threads.
///
/// Cloning shares the database. Opening the same file twice in one process shares it too:
/// both handles see one writer, one change feed. Another *process* opening the file is
/// refused with Unavailable at once (the store holds a lock on the file while open).
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    // Field order matters: the writer commits what is queued and closes its connection, then
    // the readers close, and only then is the file lock released.
    pub(crate) writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// Where committed changes go to watchers.
    pub(crate) changes: Arc<ChangeHub>,
    pub(crate) config: SqliteConfig,
    /// The database for messages: its path, or `:memory:`.
    pub(crate) target: String,
    /// The canonical path, the key of [`OPEN`].
    path: Option<PathBuf>,
    _lock: Option<File>,
}

/// The databases this process has open, by canonical path: a second open shares the first.
static OPEN: Mutex<Option<HashMap<PathBuf, Weak<Inner>>>> = Mutex::new(None);

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let mut open = OPEN.lock();
            if let Some(map) = open.as_mut() {
                // Only our own entry: a new open may have replaced it already.
                if map.get(path).is_some_and(|w| w.strong_count() == 0) {
                    map.remove(path);
                }
            }
        }
    }
}

impl SqliteBackend {
    /// Opens (or creates) the store `config` names. Blocking: async callers run it with
    /// `spawn_blocking` (the facade does).
    ///
    /// A file that is not a SQLite database, or a SQLite database that is not a Stowage
    /// store (tables of its own and no Stowage catalog), or a store of a newer format, is
    /// refused and left untouched. A file another process holds is refused with
    /// Unavailable, without waiting.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        if !config.create_if_missing {
            no_store_unless_there(&config.location)?;
        }
        match &config.location {
            Location::Memory => Self::start(config, None, None),
            Location::File(path) => {
                let path = path.clone();
                prepare_dir(&path)?;
                let mut open = OPEN.lock();
                let map = open.get_or_insert_with(HashMap::new);
                // Already open here: share it. This comes before opening the file below,
                // because closing any descriptor of a database file drops the POSIX locks
                // the process's SQLite connections hold on it.
                if let Some(inner) = path
                    .canonicalize()
                    .ok()
                    .and_then(|c| map.get(&c))
                    .and_then(Weak::upgrade)
                {
                    return Ok(SqliteBackend { inner });
                }
                // Create the file so it can be canonicalized and locked.
                let lock = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("cannot open {}: {e}", path.display()),
                        )
                    })?;
                let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
                // An advisory lock (flock) on the database file: SQLite's own locks are
                // fcntl locks, which it takes and drops per transaction; this one says the
                // file belongs to this process while the store is open. The file stays
                // open until the connections are closed (see Inner's field order).
                match lock.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            format!(
                                "{} is open in another process: a SQLite store has one owner \
                                 process at a time",
                                path.display()
                            ),
                        ))
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            format!("cannot lock {}: {e}", path.display()),
                        ))
                    }
                }
                let backend = Self::start(config, Some(canonical.clone()), Some(lock))?;
                map.insert(canonical, Arc::downgrade(&backend.inner));
                Ok(backend)
            }
        }
    }

    fn start(config: SqliteConfig, path: Option<PathBuf>, lock: Option<File>) -> Result<Self> {
        let target = match &config.location {
            Location::Memory => ":memory:".to_owned(),
            Location::File(p) => p.display().to_string(),
        };
        let conn = connect(&config, &target, true)?;
        // Check before anything is written: WAL mode rewrites the file header.
        check_format(&conn, &target)?;
        if config.location != Location::Memory {
            enable_wal(&conn, &target)?;
        }
        migrate(&conn, &target)?;
        let changes = Arc::new(ChangeHub::default());
        let writer = Writer::start(conn, changes.clone(), target.clone())?;
        Ok(SqliteBackend {
            inner: Arc::new(Inner {
                writer,
                readers: Mutex::new(Vec::new()),
                changes,
                config,
                target,
                path,
                _lock: lock,
            }),
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.config.location {
            Location::File(p) => Some(p),
            _ => None,
        }
    }

    /// How many write transactions this store has committed. With concurrent writers it is
    /// far below the number of writes: they share commits.
    pub fn commits(&self) -> u64 {
        self.inner.writer.commits()
    }

    /// Runs `f` on a read connection, off the async threads; in memory, on the writer's
    /// connection (an in-memory database has only that one).
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.inner.config.location == Location::Memory {
            let target = self.inner.target.clone();
            return self.inner.writer.read(move |conn| f(conn, &target)).await;
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|e| Error::internal("a SQLite read panicked").with_source(e))?
    }

    /// Runs a point read on the caller's thread. In WAL mode a reader never waits for the
    /// writer, and a point read is a few B-tree pages (as on redb, whose reads run on the
    /// caller's thread too): a hop to a blocking thread would cost several times the read.
    /// Queries, scans and counts, whose size has no bound, go through [`Self::read`].
    pub(crate) async fn read_point<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.inner.config.location == Location::Memory {
            return self.read(f).await;
        }
        self.inner.with_reader(f)
    }
}

impl Inner {
    /// Runs `f` on a pooled read connection (opened when the pool is empty).
    fn with_reader<R>(&self, f: impl FnOnce(&Connection, &str) -> Result<R>) -> Result<R> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => connect(&self.config, &self.target, false)?,
        };
        let r = f(&conn, &self.target);
        let mut readers = self.readers.lock();
        if readers.len() < self.config.readers {
            readers.push(conn);
        }
        r
    }
}

/// NotFound unless `location` is a file holding something (SQLite makes an empty file a
/// database on its first write).
fn no_store_unless_there(location: &Location) -> Result<()> {
    match location {
        Location::File(path) if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) => Ok(()),
        Location::File(path) => Err(Error::no_store(path.display(), "no SQLite file there")),
        _ => Err(Error::no_store(
            "sqlite::memory:",
            "an in-memory database lives only in the process that made it",
        )),
    }
}

fn prepare_dir(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot create {}: {e}", parent.display()),
            )
        })?;
    }
    Ok(())
}

/// Opens a connection with the store's pragmas: the writer's (`write`) or a reader's.
fn connect(config: &SqliteConfig, target: &str, write: bool) -> Result<Connection> {
    let failed = |e| refused_or(e, "opening the database", target);
    let conn = match &config.location {
        Location::Memory => Connection::open_in_memory().map_err(failed)?,
        Location::File(path) => {
            let flags = if write {
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            } else {
                OpenFlags::SQLITE_OPEN_READ_ONLY
            } | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(path, flags).map_err(failed)?
        }
    };
    conn.busy_timeout(config.busy_timeout()).map_err(failed)?;
    // Enough prepared statements for every collection's reads and writes.
    conn.set_prepared_statement_cache_capacity(256);
    let synchronous = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // Memory-mapped reads: pages come straight from the operating system's cache instead
    // of a read() and a copy each (a 1 % query read 1.4x faster with it), shared by every
    // connection of the process.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF; \
         PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; \
         PRAGMA mmap_size = 268435456;"
    ))
    .map_err(failed)?;
    Ok(conn)
}

/// The migrations, in order: each runs once, in a transaction, and is recorded in
/// `stowage_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "the catalog and the change log", CATALOG_DDL)];

/// A file that is not a database is refused as such; other errors say what failed.
fn refused_or(e: rusqlite::Error, doing: &str, target: &str) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            Error::invalid(format!(
                "{target} is not a Stowage store: it is not a SQLite database (left untouched)"
            ))
        }
        e => sqlite_error(e, doing, target),
    }
}

/// WAL: readers read while the writer commits.
fn enable_wal(conn: &Connection, target: &str) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| sqlite_error(e, "turning on write-ahead logging", target))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!("{target}: SQLite refused write-ahead logging (journal mode {mode})"),
        ));
    }
    Ok(())
}

/// Refuses, without writing to it, a database that is not a Stowage store or is of a newer
/// format.
fn check_format(conn: &Connection, target: &str) -> Result<()> {
    let failed = |e| sqlite_error(e, "reading the catalog", target);
    let has_meta: bool = conn
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'stowage_meta'")
        .and_then(|mut s| s.exists([]))
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                Error::invalid(format!(
                    "{target} is not a Stowage store: it is not a SQLite database (left untouched)"
                ))
            }
            e => failed(e),
        })?;
    if has_meta {
        let format: Option<i64> = conn
            .query_row(
                "SELECT value FROM stowage_meta WHERE key = 'format'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(failed)?;
        if let Some(format) = format.filter(|f| *f > FORMAT_VERSION) {
            return Err(Error::invalid(format!(
                "{target} was written by a newer Stowage (store format {format}; this build \
                 reads up to {FORMAT_VERSION}): upgrade Stowage to open it (left untouched)"
            )));
        }
    } else {
        let others: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(failed)?;
        if others > 0 {
            return Err(Error::invalid(format!(
                "{target} is a SQLite database but not a Stowage store: it holds {others} other \
                 table(s) and no Stowage catalog (left untouched)"
            )));
        }
    }
    Ok(())
}

/// Applies the migrations the store lacks, each in a transaction, recorded in
/// `stowage_migrations`.
fn migrate(conn: &Connection, target: &str) -> Result<()> {
    let failed = |e| sqlite_error(e, "reading the catalog", target);
    let has_meta: bool = conn
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'stowage_meta'")
        .and_then(|mut s| s.exists([]))
        .map_err(failed)?;
    let applied: i64 = if has_meta {
        conn.query_row(
            "SELECT coalesce(max(version), 0) FROM stowage_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(failed)?
    } else {
        0
    };
    let failed = |e| sqlite_error(e, "migrating the catalog", target);
    for (version, description, ddl) in MIGRATIONS.iter().filter(|(v, ..)| *v > applied) {
        let tx = conn.unchecked_transaction().map_err(failed)?;
        tx.execute_batch(ddl).map_err(failed)?;
        tx.execute(
            "INSERT INTO stowage_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![version, description, Timestamp::now().as_micros()],
        )
        .map_err(failed)?;
        tx.execute(
            "INSERT INTO stowage_meta (key, value) VALUES ('format', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = ?1",
            params![FORMAT_VERSION],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}
