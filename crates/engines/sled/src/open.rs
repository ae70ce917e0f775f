//! Opening a store: the folder checks that refuse foreign and newer stores, and the
//! [`SledBackend`] handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use sled::{Db, Tree};
use stowage_core::backend::ChangeHub;
use stowage_core::{Error, ErrorKind, Result};
use stowage_kv::{GroupCommit, KvBackend};

use crate::config::SledConfig;
use crate::error::{open_error, storage_error};
use crate::schema::{self, FORMAT_KEY, FORMAT_VERSION};
use crate::write::SledEngine;

/// Records in one sled database: a tree per collection, a tree per index, an expiry tree per
/// collection, and the catalog. Every write call is one multi-tree transaction, shared with
/// the concurrent writers of the same moment (group commit).
///
/// Cloning shares the open database. It is closed when the last clone is dropped, after the
/// writer has committed everything it was given.
pub type SledBackend = KvBackend<SledStore>;

/// An open sled database: what [`SledBackend`] runs on, and where its own methods live.
#[derive(Debug)]
pub struct SledStore {
    // Field order matters: the writer stops (and commits) before the database closes.
    pub(crate) writer: GroupCommit,
    pub(crate) db: Db,
    /// Trees readers have found, by name. Trees are never dropped (see `write.rs`), so a
    /// handle stays right for as long as the store is open.
    pub(crate) trees: RwLock<HashMap<String, Tree>>,
    /// Where committed changes go to watchers.
    pub(crate) changes: Arc<ChangeHub>,
    /// The change log's retention per namespace (0: no feed).
    pub(crate) change_log: u64,
    path: PathBuf,
    /// Last, so it runs once everything above has let go of the database.
    _release: FolderRelease,
}

impl SledStore {
    /// Opens (or creates) the store in the folder `config.path` ([`SledBackend::open`]). Blocking: async callers run
    /// it with `spawn_blocking` (the facade does).
    ///
    /// A path that is a file, a sled database that is not a Stowage store (trees of its own
    /// and no Stowage format marker) and a store written by a newer format are refused with
    /// InvalidInput. A folder another process holds open is refused with Unavailable at
    /// once, without waiting.
    pub(crate) fn open_folder(config: SledConfig) -> Result<Self> {
        let path = config.path.clone();
        if path.is_file() {
            return Err(Error::invalid(format!(
                "{} is a file: a sled store is a folder",
                path.display()
            )));
        }
        // sled keeps its log in `<folder>/db`: without it there is no database to open.
        if !config.create_if_missing && !path.join("db").is_file() {
            return Err(Error::no_store(path.display(), "no sled database there"));
        }
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_bytes as u64)
            // The group commit decides when to flush: after each group (immediate), or
            // every flush interval (relaxed).
            .flush_every_ms(None)
            .open()
            .map_err(|e| open_error(&path, e))?;
        check_format(&db, &path)?;
        let changes = Arc::new(ChangeHub::default());
        let engine = SledEngine {
            db: db.clone(),
            trees: HashMap::new(),
        };
        let writer = GroupCommit::start(
            engine,
            config.durability,
            changes.clone(),
            config.change_log,
        )?;
        Ok(SledStore {
            writer,
            db,
            trees: RwLock::new(HashMap::new()),
            changes,
            change_log: config.change_log,
            _release: FolderRelease {
                lock_file: path.join(SLED_LOCK_FILE),
            },
            path,
        })
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many write transactions this handle has committed. With concurrent writers it
    /// is far below the number of writes: they share commits.
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }
}

/// Refuses a foreign or newer store; marks a new one.
fn check_format(db: &Db, path: &Path) -> Result<()> {
    let names = db.tree_names();
    let has_meta = names.iter().any(|n| n.as_ref() == schema::META.as_bytes());
    if !has_meta {
        // sled's default tree always exists; anything else is someone else's data.
        let foreign = names.len() > 1 || !db.is_empty();
        if foreign {
            return Err(Error::invalid(format!(
                "{} is a sled database but not a Stowage store: it holds data and no Stowage \
                 format marker",
                path.display()
            )));
        }
        let meta = db.open_tree(schema::META).map_err(storage_error)?;
        meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_le_bytes())
            .map_err(storage_error)?;
        db.open_tree(schema::CATALOG).map_err(storage_error)?;
        db.flush().map_err(storage_error)?;
        return Ok(());
    }
    let meta = db.open_tree(schema::META).map_err(storage_error)?;
    let version = meta
        .get(FORMAT_KEY)
        .map_err(storage_error)?
        .and_then(|v| v.as_ref().try_into().ok().map(u32::from_le_bytes))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupted,
                format!("{}: Stowage format marker is unreadable", path.display()),
            )
        })?;
    if version > FORMAT_VERSION {
        return Err(Error::invalid(format!(
            "{} was written by a newer Stowage (store format {version}; this build reads up to \
             {FORMAT_VERSION}): upgrade Stowage to open it",
            path.display()
        )));
    }
    Ok(())
}

/// The file in a sled folder that sled locks (`flock`) while the folder is open.
const SLED_LOCK_FILE: &str = "db";

/// How long closing waits for sled to unlock its folder.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Makes closing a store free its folder before the close returns.
///
/// sled's lock lives as long as the last clone of its running configuration, and sled's
/// own thread pool holds clones for a moment after the `Db` is dropped (a log buffer
/// write, a segment truncation). Without this, a store closed and opened again at once —
/// a restart in the same process, a test, `stowage copy` onto a store just written —
/// could be refused as "already open", more often the busier the machine. So closing
/// waits (bounded by [`RELEASE_WAIT`]) until the lock can be taken, and lets it go.
#[derive(Debug)]
struct FolderRelease {
    lock_file: PathBuf,
}

impl Drop for FolderRelease {
    fn drop(&mut self) {
        let started = Instant::now();
        loop {
            let Ok(file) = std::fs::File::open(&self.lock_file) else {
                return; // the folder is gone: nothing holds it
            };
            match file.try_lock() {
                // Dropping the file unlocks it.
                Ok(()) => return,
                // Locks unsupported here: there is nothing to wait for.
                Err(std::fs::TryLockError::Error(_)) => return,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < RELEASE_WAIT => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Another owner took the folder meanwhile, or sled is stuck: either way it
                // is not this store's to wait for any longer.
                Err(std::fs::TryLockError::WouldBlock) => return,
            }
        }
    }
}
