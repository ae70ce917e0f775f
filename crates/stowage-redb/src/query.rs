//! The read side on redb: a read transaction is one snapshot ([`KvRead`]) for the shared
//! ordered key-value read side, [`stowage_core::kv::query`]. Entries are handed out as
//! redb's page guards, so a query copies nothing it does not return.

use std::ops::Bound;

use redb::{AccessGuard, ReadOnlyTable, ReadTransaction, ReadableTableMetadata, TableError};
use stowage_core::kv::query::{KvPairs, KvRead};
use stowage_core::Result;

use crate::error::storage_error;
use crate::schema;

/// A redb table opened for reading.
pub(crate) type RoTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

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

/// One read transaction: every read through it sees the same commit.
#[derive(Debug)]
pub struct Snapshot(pub(crate) ReadTransaction);

impl KvRead for Snapshot {
    type Table = RoTable;
    type Bytes = Guard;
    const SNAPSHOT: bool = true;

    fn table(&self, name: &str) -> Result<Option<RoTable>> {
        match self.0.open_table(schema::table(name)) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
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
