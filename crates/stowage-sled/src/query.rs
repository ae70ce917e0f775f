//! The read side on sled for the shared ordered key-value read side,
//! [`stowage_core::kv::query`]. sled reads are lock-free and see the latest commit; they are
//! not a snapshot across calls, so the shared query walk checks each record it returns
//! against every predicate (`KvRead::SNAPSHOT` is false).

use std::ops::Bound;

use sled::{IVec, Tree};
use stowage_core::kv::query::{KvPairs, KvRead};
use stowage_core::{Error, Result};

use crate::error::storage_error;
use crate::open::Inner;
use crate::schema;

/// Reads of one store, each at the latest commit.
pub(crate) struct Reader<'a>(pub(crate) &'a Inner);

impl Reader<'_> {
    /// The records tree of a collection that exists (its trees outlive a drop, emptied: the
    /// catalog says whether it exists).
    pub(crate) fn records(&self, ns: &str, coll: &str) -> Result<Tree> {
        let exists = match self.table(schema::CATALOG)? {
            Some(catalog) => catalog
                .contains_key(schema::catalog_key(ns, coll))
                .map_err(storage_error)?,
            None => false,
        };
        if !exists {
            return Err(Error::collection_not_found(ns, coll));
        }
        stowage_core::kv::query::records(self, ns, coll)
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
        for item in table.iter() {
            let (k, v) = item.map_err(storage_error)?;
            records += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((records, bytes))
    }
}
