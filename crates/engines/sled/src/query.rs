//! The read side on sled for the shared ordered key-value read side,
//! [`stowage_kv::query`]. sled reads are lock-free and see the latest commit; they are
//! not a snapshot across calls, so the shared query walk checks each record it returns
//! against every predicate (`KvRead::SNAPSHOT` is false).

use std::ops::Bound;

use sled::{IVec, Tree};
use stowage_core::{Error, Result, StoredRecord, Timestamp};
use stowage_kv::query::{read_live, KvPairs, KvRead};

use crate::error::storage_error;
use crate::open::SledStore;
use crate::schema;

/// Reads of one store, each at the latest commit.
#[derive(Debug)]
pub struct Reader<'a>(pub(crate) &'a SledStore);

impl Reader<'_> {
    /// The live records with these ids; NotFound when the collection does not exist.
    ///
    /// A collection's trees outlive its drop, emptied, so the catalog says whether it
    /// exists — but only a missing record needs to ask: a drop empties the records tree in
    /// the same transaction as it removes the catalog entry, so a record found means the
    /// collection existed when it was read.
    pub(crate) fn live(
        &self,
        ns: &str,
        coll: &str,
        ids: &[&str],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        // Its records tree is created with the collection: none, no collection.
        let records = self
            .table(&schema::records_table(ns, coll))?
            .ok_or_else(|| Error::collection_not_found(ns, coll))?;
        let found = ids
            .iter()
            .map(|id| read_live(self, &records, id, now))
            .collect::<Result<Vec<_>>>()?;
        if found.iter().any(Option::is_none) && !self.exists(ns, coll)? {
            return Err(Error::collection_not_found(ns, coll));
        }
        Ok(found)
    }

    fn exists(&self, ns: &str, coll: &str) -> Result<bool> {
        match self.table(schema::CATALOG)? {
            Some(catalog) => catalog
                .contains_key(schema::catalog_key(ns, coll))
                .map_err(storage_error),
            None => Ok(false),
        }
    }
}

impl KvRead for Reader<'_> {
    type Table = Tree;
    type Bytes = IVec;
    const SNAPSHOT: bool = false;

    fn table(&self, name: &str) -> Result<Option<Tree>> {
        if let Some(t) = self.0.trees.read().get(name) {
            return Ok(Some(t.clone()));
        }
        // Opening a tree creates it: look first, so that reads create nothing.
        let exists = self
            .0
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes());
        if !exists {
            return Ok(None);
        }
        let tree = self.0.db.open_tree(name).map_err(storage_error)?;
        self.0.trees.write().insert(name.to_owned(), tree.clone());
        Ok(Some(tree))
    }

    fn get(&self, table: &Tree, key: &[u8]) -> Result<Option<IVec>> {
        table.get(key).map_err(storage_error)
    }

    fn range<'a>(
        &self,
        table: &'a Tree,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<KvPairs<'a, IVec>> {
        let range = table.range::<&[u8], _>((lower, upper));
        let pair = |item: sled::Result<(IVec, IVec)>| item.map_err(storage_error);
        Ok(if reverse {
            Box::new(range.rev().map(pair))
        } else {
            Box::new(range.map(pair))
        })
    }

    /// Counted by a walk: sled keeps no sizes.
    fn size(&self, table: &Tree) -> Result<(u64, u64)> {
        let (mut records, mut bytes) = (0u64, 0u64);
        for item in table {
            let (k, v) = item.map_err(storage_error)?;
            records += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((records, bytes))
    }
}
