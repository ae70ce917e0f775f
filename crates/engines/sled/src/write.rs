//! The write side on sled: each group commit is one multi-tree sled transaction. The jobs
//! themselves (what a write, a drop or a purge does to the tables) are the shared ordered
//! key-value write engine, [`stowage_kv::write`].
//!
//! sled's transactional trees can read points but not ranges, and a job needs ranges (a
//! unique index's holders, a delete by prefix, a purge). So jobs run against an overlay:
//! reads see the trees' committed state — which only this writer changes: the folder is
//! locked to one process and the process has one writer — with the group's own writes laid
//! over it, ranges included. When the group is done, each tree's writes become one
//! `Batch`, and every touched tree's batch is applied in one sled transaction: all of the
//! group's writes, on every tree, become visible and recoverable together.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use sled::transaction::{TransactionError, Transactional};
use sled::{Batch, Db, Tree};
use stowage_core::{Error, Result};
use stowage_kv::{KvEngine, KvTables, TableId};

use crate::error::storage_error;

/// The sled database under the group commit.
pub(crate) struct SledEngine {
    pub(crate) db: Db,
    /// Trees opened so far, by name: opening one is a lookup in sled's own map, but this
    /// skips the name's hashing into an `IVec` and the lock.
    pub(crate) trees: HashMap<String, Tree>,
}

impl KvEngine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn transact(
        &mut self,
        durable: bool,
        body: &mut dyn FnMut(&mut dyn KvTables) -> Result<()>,
    ) -> Result<()> {
        let mut tables = SledTables {
            db: &self.db,
            trees: &mut self.trees,
            slots: Vec::new(),
            names: HashMap::new(),
        };
        body(&mut tables)?;
        let mut written: Vec<Slot> = tables
            .slots
            .into_iter()
            .filter(|s| !s.writes.is_empty())
            .collect();
        match written.as_mut_slice() {
            [] => return Ok(()),
            // One key in one tree: sled writes a key atomically by itself, and a transaction
            // would cost a second log write (it rolls sled's I/O buffer before and after).
            [slot] if slot.writes.len() == 1 => {
                if let Some((key, value)) = slot.writes.pop_first() {
                    match value {
                        Some(v) => drop(slot.tree.insert(key, v).map_err(storage_error)?),
                        None => drop(slot.tree.remove(key).map_err(storage_error)?),
                    }
                }
            }
            _ => apply_together(written)?,
        }
        if durable {
            self.db.flush().map_err(storage_error)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.db.flush().map(drop).map_err(storage_error)
    }
}

/// Applies every slot's writes at once: one atomic batch, or one multi-tree sled
/// transaction applying a batch per tree.
fn apply_together(slots: Vec<Slot>) -> Result<()> {
    let mut trees = Vec::with_capacity(slots.len());
    let mut batches = Vec::with_capacity(slots.len());
    for slot in slots {
        let mut batch = Batch::default();
        for (k, v) in slot.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        trees.push(slot.tree);
        batches.push(batch);
    }
    if let ([tree], [_]) = (trees.as_slice(), batches.as_slice()) {
        // One tree: its own atomic batch, without a transaction's per-key bookkeeping.
        let batch = batches.pop().unwrap_or_default();
        return tree.apply_batch(batch).map_err(storage_error);
    }
    let refs: Vec<&Tree> = trees.iter().collect();
    refs.as_slice()
        .transaction(|views| {
            for (view, batch) in views.iter().zip(&batches) {
                view.apply_batch(batch)?;
            }
            Ok(())
        })
        .map_err(|e: TransactionError<()>| match e {
            TransactionError::Storage(e) => storage_error(e),
            TransactionError::Abort(()) => Error::internal("a sled transaction aborted"),
        })
}

/// One tree as the running group sees it: its committed state and the group's writes.
struct Slot {
    tree: Tree,
    /// The group's writes, `None` for a removal.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// The trees of one group commit, each with the group's writes laid over it.
struct SledTables<'e> {
    db: &'e Db,
    trees: &'e mut HashMap<String, Tree>,
    slots: Vec<Slot>,
    names: HashMap<String, TableId>,
}

impl SledTables<'_> {
    fn slot(&mut self, table: TableId) -> Result<&mut Slot> {
        self.slots
            .get_mut(table)
            .ok_or_else(|| Error::internal("a sled table slot is unknown"))
    }
}

impl KvTables for SledTables<'_> {
    fn open(&mut self, name: &str) -> Result<TableId> {
        if let Some(&id) = self.names.get(name) {
            return Ok(id);
        }
        let tree = if let Some(t) = self.trees.get(name) {
            t.clone()
        } else {
            let t = self.db.open_tree(name).map_err(storage_error)?;
            self.trees.insert(name.to_owned(), t.clone());
            t
        };
        self.slots.push(Slot {
            tree,
            writes: BTreeMap::new(),
        });
        self.names.insert(name.to_owned(), self.slots.len() - 1);
        Ok(self.slots.len() - 1)
    }

    fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let slot = self.slot(table)?;
        if let Some(v) = slot.writes.get(key) {
            return Ok(v.clone());
        }
        Ok(slot
            .tree
            .get(key)
            .map_err(storage_error)?
            .map(|v| v.to_vec()))
    }

    fn insert(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let prev = self.get(table, key)?;
        self.slot(table)?
            .writes
            .insert(key.to_vec(), Some(value.to_vec()));
        Ok(prev)
    }

    fn remove(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let prev = self.get(table, key)?;
        if prev.is_some() {
            self.slot(table)?.writes.insert(key.to_vec(), None);
        }
        Ok(prev)
    }

    /// Removes every key, in this transaction; the emptied tree stays (sled drops trees
    /// outside transactions, so dropping it here could not be undone with the rest).
    fn delete_table(&mut self, name: &str) -> Result<()> {
        let table = self.open(name)?;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.page(table, &[], after.as_deref(), 1024)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            let slot = self.slot(table)?;
            for (k, _) in page {
                slot.writes.insert(k, None);
            }
        }
    }

    fn page(
        &mut self,
        table: TableId,
        from: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let slot = self.slot(table)?;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included(from),
        };
        let mut committed = slot.tree.range::<&[u8], _>((lower, Bound::Unbounded));
        let mut own = slot
            .writes
            .range::<[u8], _>((lower, Bound::Unbounded))
            .peekable();
        let mut next_committed = committed.next().transpose().map_err(storage_error)?;
        let mut out = Vec::new();
        while out.len() < limit {
            // The smaller key of the two; on a tie the group's write wins.
            let take_own = match (&next_committed, own.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((ck, _)), Some((ok, _))) => ok.as_slice() <= ck.as_ref(),
            };
            if take_own {
                let Some((k, v)) = own.next() else { break };
                if next_committed
                    .as_ref()
                    .is_some_and(|(ck, _)| ck.as_ref() == k.as_slice())
                {
                    next_committed = committed.next().transpose().map_err(storage_error)?;
                }
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
            } else if let Some((k, v)) = next_committed.take() {
                out.push((k.to_vec(), v.to_vec()));
                next_committed = committed.next().transpose().map_err(storage_error)?;
            }
        }
        Ok(out)
    }

    fn last_key(&mut self, table: TableId) -> Result<Option<Vec<u8>>> {
        let slot = self.slot(table)?;
        let own = slot
            .writes
            .iter()
            .rev()
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        let mut committed = None;
        for item in slot.tree.iter().rev() {
            let (k, _) = item.map_err(storage_error)?;
            // A key the group removed is not there any more.
            if !matches!(slot.writes.get(k.as_ref()), Some(None)) {
                committed = Some(k.to_vec());
                break;
            }
        }
        Ok(own.max(committed))
    }
}
