//! The write side on redb: one redb write transaction per group commit. The jobs themselves
//! (what a write, a drop or a purge does to the tables) are the shared ordered key-value
//! write engine, [`stowage_kv::write`].

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use redb::{Database, ReadableTable, Table, WriteTransaction};
use stowage_core::{Error, Result};
use stowage_kv::{KvEngine, KvTables, TableId};

use crate::error::storage_error;
use crate::query::ReadCache;
use crate::schema;

/// The redb database under the group commit.
pub(crate) struct RedbEngine {
    pub(crate) db: Arc<Database>,
    /// Told of every commit, before the writers are answered.
    pub(crate) reads: Arc<ReadCache>,
}

impl KvEngine for RedbEngine {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn transact(
        &mut self,
        durable: bool,
        body: &mut dyn FnMut(&mut dyn KvTables) -> Result<()>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(storage_error)?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| Error::internal("cannot relax durability").with_source(e))?;
        }
        let outcome = {
            let mut tables = RedbTables {
                txn: &txn,
                tables: Vec::new(),
                slots: HashMap::new(),
            };
            body(&mut tables)
        };
        match outcome {
            Ok(()) => {
                txn.commit().map_err(storage_error)?;
                self.reads.committed();
                Ok(())
            }
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    /// An empty durable commit: makes every earlier non-durable commit durable.
    fn flush(&mut self) -> Result<()> {
        let txn = self.db.begin_write().map_err(storage_error)?;
        txn.commit().map_err(storage_error)
    }
}

/// The tables of one redb write transaction, opened once each and kept by slot.
struct RedbTables<'t> {
    txn: &'t WriteTransaction,
    tables: Vec<Option<Table<'t, &'static [u8], &'static [u8]>>>,
    slots: HashMap<String, TableId>,
}

impl<'t> RedbTables<'t> {
    fn at(&mut self, id: TableId) -> Result<&mut Table<'t, &'static [u8], &'static [u8]>> {
        self.tables
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::internal("a table was used after it was deleted"))
    }
}

impl KvTables for RedbTables<'_> {
    fn open(&mut self, name: &str) -> Result<TableId> {
        if let Some(&id) = self.slots.get(name) {
            return Ok(id);
        }
        let t = self
            .txn
            .open_table(schema::table(name))
            .map_err(storage_error)?;
        self.tables.push(Some(t));
        let id = self.tables.len() - 1;
        self.slots.insert(name.to_owned(), id);
        Ok(id)
    }

    fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let got = self.at(table)?.get(key).map_err(storage_error)?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    fn insert(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let prev = self.at(table)?.insert(key, value).map_err(storage_error)?;
        Ok(prev.map(|v| v.value().to_vec()))
    }

    fn remove(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let prev = self.at(table)?.remove(key).map_err(storage_error)?;
        Ok(prev.map(|v| v.value().to_vec()))
    }

    fn delete_table(&mut self, name: &str) -> Result<()> {
        if let Some(id) = self.slots.remove(name) {
            self.tables[id] = None;
        }
        self.txn
            .delete_table(schema::table(name))
            .map_err(storage_error)?;
        Ok(())
    }

    fn page(
        &mut self,
        table: TableId,
        from: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.at(table)?;
        let range = match after {
            Some(a) => t.range::<&[u8]>((Bound::Excluded(a), Bound::Unbounded)),
            None => t.range::<&[u8]>(from..),
        }
        .map_err(storage_error)?;
        let mut out = Vec::new();
        for item in range.take(limit) {
            let (k, v) = item.map_err(storage_error)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn last_key(&mut self, table: TableId) -> Result<Option<Vec<u8>>> {
        let last = self.at(table)?.last().map_err(storage_error)?;
        Ok(last.map(|(k, _)| k.value().to_vec()))
    }
}
