//! The read side on redb: a read transaction is one snapshot ([`KvRead`]) for the shared
//! ordered key-value read side, [`stowage_kv::query`]. Entries are handed out as
//! redb's page guards, so a query copies nothing it does not return.
//!
//! Opening a read transaction and its tables is over a third of a point read's time, so
//! reads share one: [`ReadCache`] keeps the latest snapshot and the tables opened in it
//! until the next commit. Every commit bumps the cache's generation and drops the shared
//! snapshot before its writers hear "done", so a read that starts after a write was
//! acknowledged never gets a snapshot from before it; and a store that only writes pins
//! no old pages.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use redb::{AccessGuard, ReadOnlyTable, ReadTransaction, ReadableTableMetadata, TableError};
use stowage_core::Result;
use stowage_kv::query::{KvPairs, KvRead};

use crate::error::storage_error;
use crate::schema;

/// A redb table opened for reading, shared by the reads of one snapshot.
pub(crate) type RoTable = Arc<ReadOnlyTable<&'static [u8], &'static [u8]>>;

/// A key or value in place on its page.
pub struct Guard(AccessGuard<'static, &'static [u8]>);

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Guard").field(&self.as_ref()).finish()
    }
}

impl AsRef<[u8]> for Guard {
    fn as_ref(&self) -> &[u8] {
        self.0.value()
    }
}

/// One read transaction: every read through it sees the same commit. Clones share it,
/// and the tables opened in it.
#[derive(Debug, Clone)]
pub struct Snapshot(Arc<SnapshotInner>);

#[derive(Debug)]
struct SnapshotInner {
    txn: ReadTransaction,
    /// Tables opened so far, and names found missing (a snapshot never gains a table).
    tables: RwLock<HashMap<String, Option<RoTable>>>,
}

impl Snapshot {
    pub(crate) fn new(txn: ReadTransaction) -> Self {
        Snapshot(Arc::new(SnapshotInner {
            txn,
            tables: RwLock::new(HashMap::new()),
        }))
    }

    pub(crate) fn transaction(&self) -> &ReadTransaction {
        &self.0.txn
    }
}

/// The snapshot reads share until the next commit ([module docs](self)).
#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    /// Bumped by every commit, before its writers are answered.
    generation: AtomicU64,
    /// The shared snapshot and the generation read before it was begun.
    current: RwLock<Option<(u64, Snapshot)>>,
}

impl ReadCache {
    /// The shared snapshot if no commit has happened since it was begun, else a new one
    /// from `begin` (which becomes the shared one).
    pub(crate) fn snapshot(&self, begin: impl FnOnce() -> Result<Snapshot>) -> Result<Snapshot> {
        // Read before beginning: a commit in between makes the new snapshot look older
        // than it is (replaced once more, harmlessly), never newer.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((at, snapshot)) = &*self.current.read() {
            if *at == generation {
                return Ok(snapshot.clone());
            }
        }
        let snapshot = begin()?;
        let mut current = self.current.write();
        if current.as_ref().is_none_or(|(at, _)| *at <= generation) {
            *current = Some((generation, snapshot.clone()));
        }
        Ok(snapshot)
    }

    /// Called after every commit, before its writers are answered.
    pub(crate) fn committed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
        // Dropped outside the lock: the last reference ends the read transaction.
        let old = self.current.write().take();
        drop(old);
    }
}

impl KvRead for Snapshot {
    type Table = RoTable;
    type Bytes = Guard;
    const SNAPSHOT: bool = true;

    fn table(&self, name: &str) -> Result<Option<RoTable>> {
        if let Some(t) = self.0.tables.read().get(name) {
            return Ok(t.clone());
        }
        let table = match self.0.txn.open_table(schema::table(name)) {
            Ok(t) => Some(Arc::new(t)),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(storage_error(e)),
        };
        self.0.tables.write().insert(name.to_owned(), table.clone());
        Ok(table)
    }

    fn get(&self, table: &RoTable, key: &[u8]) -> Result<Option<Guard>> {
        Ok(table.get(key).map_err(storage_error)?.map(Guard))
    }

    fn range<'a>(
        &self,
        table: &'a RoTable,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<KvPairs<'a, Guard>> {
        let range = table
            .range::<&[u8]>((lower, upper))
            .map_err(storage_error)?;
        let pair = |item: std::result::Result<_, redb::StorageError>| {
            let (k, v) = item.map_err(storage_error)?;
            Ok((Guard(k), Guard(v)))
        };
        Ok(if reverse {
            Box::new(range.rev().map(pair))
        } else {
            Box::new(range.map(pair))
        })
    }

    fn size(&self, table: &RoTable) -> Result<(u64, u64)> {
        let stats = table.stats().map_err(storage_error)?;
        Ok((table.len().map_err(storage_error)?, stats.stored_bytes()))
    }
}
