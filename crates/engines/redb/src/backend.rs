//! What redb supplies to be a `Backend` ([`KvStore`]; the `Backend` impl itself is
//! [`stowage_kv::KvBackend`]'s, shared with sled): reads on the caller's thread in a
//! read transaction, writes through the group-commit writer.

use stowage_core::backend::ChangeHub;
use stowage_core::backend::{BatchScope, Capabilities, ChangeFeed};
use stowage_core::Result;
use stowage_kv::{GroupCommit, KvStore};

use crate::config::RedbConfig;
use crate::open::RedbStore;
use crate::query::Snapshot;
use crate::Durability;

impl KvStore for RedbStore {
    type Config = RedbConfig;
    type Reader<'a> = Snapshot;

    fn open(config: RedbConfig) -> Result<Self> {
        RedbStore::open_file(config)
    }

    fn name(&self) -> &'static str {
        "redb"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::default();
        c.batch_scope = BatchScope::Namespace;
        c.unique_indexes = true;
        c.ttl = true;
        c.binary_bodies = true;
        c.persistent = true;
        if self.change_log > 0 {
            c.change_feed = ChangeFeed::Resumable;
        }
        // redb's limit on one value is far above this; 64 MiB keeps one write's memory sane.
        c.max_body_bytes = 64 << 20;
        c.fsync = self.durability == Durability::Immediate;
        c.snapshot_reads = true;
        c
    }

    fn reader(&self) -> Result<Snapshot> {
        self.read()
    }

    fn writer(&self) -> &GroupCommit {
        &self.writer
    }

    fn changes(&self) -> &ChangeHub {
        &self.changes
    }

    fn change_log(&self) -> u64 {
        self.change_log
    }
}
