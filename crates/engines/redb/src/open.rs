//! Opening a store: the file checks that refuse foreign and newer files untouched, the
//! format upgrade, and the [`RedbBackend`] handle.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable};
use stowage_core::backend::ChangeHub;
use stowage_core::backend::StoredSpec;
use stowage_core::{Error, ErrorKind, Result};

use crate::config::RedbConfig;
use crate::error::{open_error, storage_error};
use stowage_kv::{GroupCommit, KvBackend};

use crate::write::RedbEngine;
use stowage_kv::query::KvRead;

use crate::query::{ReadCache, Snapshot};
use crate::schema::{
    self, decode_spec_v1, decode_u64, encode_spec, FORMAT_KEY, FORMAT_VERSION, REVISION_KEY,
};

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Records in one redb file: a table per collection, a table per index, an expiry table per
/// collection, and the catalog. Every write call is one write transaction, shared with the
/// concurrent writers of the same moment (group commit).
///
/// Cloning shares the open file. The file is closed when the last clone is dropped, after
/// the writer has committed everything it was given.
pub type RedbBackend = KvBackend<RedbStore>;

/// An open redb file: what [`RedbBackend`] runs on, and where its own methods live.
#[derive(Debug)]
pub struct RedbStore {
    // Field order matters: the writer stops (and commits) before the database closes, and
    // the shared read transaction ends before it too.
    pub(crate) writer: GroupCommit,
    reads: Arc<ReadCache>,
    pub(crate) db: Arc<Database>,
    /// Where committed changes go to watchers.
    pub(crate) changes: Arc<ChangeHub>,
    /// The change log's retention per namespace (0: no feed).
    pub(crate) change_log: u64,
    pub(crate) durability: crate::Durability,
    path: PathBuf,
}

impl RedbStore {
    /// Opens (or creates) the store at `config.path` ([`RedbBackend::open`]).
    ///
    /// A file that is not a Stowage store — not a redb file, or a redb file without Stowage's
    /// format marker — and a store written by a newer format are refused with InvalidInput,
    /// and the file is not modified. A store of an older format is upgraded in place. A
    /// file another process holds open is refused with Unavailable at once, without waiting.
    pub(crate) fn open_file(config: RedbConfig) -> Result<Self> {
        let path = config.path.clone();
        let existing = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        if existing {
            check_magic(&path)?;
            // Read the format through a read-only open first, so a refused file is never
            // written to. A file that needs crash recovery cannot be opened read-only; the
            // writable open below recovers it and checks again.
            match ReadOnlyDatabase::open(&path) {
                Ok(ro) => {
                    check_format(&ro, &path)?;
                    drop(ro);
                }
                Err(DatabaseError::RepairAborted) => {}
                Err(e) => return Err(open_error(&path, e)),
            }
        } else if !config.create_if_missing {
            return Err(Error::no_store(path.display(), "no redb file there"));
        } else if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        let db = redb::Builder::new()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        match check_format(&db, &path)? {
            Format::Fresh => write_marker(&db)?,
            Format::Old(1) => upgrade_from_1(&db)?,
            Format::Old(_) | Format::Current => {}
        }
        let db = Arc::new(db);
        let changes = Arc::new(ChangeHub::default());
        let reads = Arc::new(ReadCache::default());
        let writer = GroupCommit::start(
            RedbEngine {
                db: db.clone(),
                reads: reads.clone(),
            },
            config.durability,
            changes.clone(),
            config.change_log,
        )?;
        Ok(RedbStore {
            writer,
            reads,
            db,
            changes,
            change_log: config.change_log,
            durability: config.durability,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many write transactions this handle has committed. With concurrent writers it
    /// is far below the number of writes: they share commits.
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    /// The latest commit's snapshot, shared with the reads that come before the next
    /// commit.
    pub(crate) fn read(&self) -> Result<Snapshot> {
        self.reads.snapshot(|| {
            self.db
                .begin_read()
                .map(Snapshot::new)
                .map_err(storage_error)
        })
    }
}

fn check_magic(path: &Path) -> Result<()> {
    let mut head = [0u8; 9];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    if n < head.len() || head != REDB_MAGIC {
        return Err(Error::invalid(format!(
            "{} is not a Stowage store: it is not a redb file (left untouched)",
            path.display()
        )));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    Fresh,
    Old(u32),
    Current,
}

fn check_format(db: &impl ReadableDatabase, path: &Path) -> Result<Format> {
    let snapshot = Snapshot::new(db.begin_read().map_err(storage_error)?);
    let Some(meta) = snapshot.table(schema::META)? else {
        let tables = snapshot
            .transaction()
            .list_tables()
            .map_err(storage_error)?
            .count();
        if tables > 0 {
            return Err(Error::invalid(format!(
                "{} is a redb file but not a Stowage store: it holds {tables} other table(s) \
                 and no Stowage format marker (left untouched)",
                path.display()
            )));
        }
        return Ok(Format::Fresh);
    };
    let version = meta
        .get(FORMAT_KEY)
        .map_err(storage_error)?
        .and_then(|v| v.value().try_into().ok().map(u32::from_le_bytes))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupted,
                format!("{}: Stowage format marker is unreadable", path.display()),
            )
        })?;
    if version > FORMAT_VERSION {
        return Err(Error::invalid(format!(
            "{} was written by a newer Stowage (store format {version}; this build reads up to \
             {FORMAT_VERSION}): upgrade Stowage to open it (left untouched)",
            path.display()
        )));
    }
    Ok(if version == FORMAT_VERSION {
        Format::Current
    } else {
        Format::Old(version)
    })
}

/// Marks a new file as a Stowage store of this format.
fn write_marker(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(storage_error)?;
    {
        let mut meta = txn
            .open_table(schema::table(schema::META))
            .map_err(storage_error)?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
            .map_err(storage_error)?;
        txn.open_table(schema::table(schema::CATALOG))
            .map_err(storage_error)?;
    }
    txn.commit().map_err(storage_error)
}

/// Format 1 → 2, in one transaction: each catalog entry gets a revision and an empty
/// building list. Floors start at 0 (format 1 kept none).
fn upgrade_from_1(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(storage_error)?;
    {
        let mut catalog = txn
            .open_table(schema::table(schema::CATALOG))
            .map_err(storage_error)?;
        let mut entries = Vec::new();
        for item in catalog.iter().map_err(storage_error)? {
            let (k, v) = item.map_err(storage_error)?;
            let key = k.value().to_vec();
            let coll = String::from_utf8_lossy(&key).into_owned();
            entries.push((key, decode_spec_v1(&coll, v.value())?));
        }
        let mut revision = 0;
        for (key, spec) in entries {
            revision += 1;
            let stored = StoredSpec {
                spec,
                revision,
                building: Vec::new(),
            };
            catalog
                .insert(key.as_slice(), encode_spec(&stored).as_slice())
                .map_err(storage_error)?;
        }
        let mut meta = txn
            .open_table(schema::table(schema::META))
            .map_err(storage_error)?;
        let before = decode_u64(
            meta.get(REVISION_KEY)
                .map_err(storage_error)?
                .as_ref()
                .map(redb::AccessGuard::value),
        );
        meta.insert(REVISION_KEY, before.max(revision).to_le_bytes().as_slice())
            .map_err(storage_error)?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
            .map_err(storage_error)?;
    }
    txn.commit().map_err(storage_error)
}
