//! What sled supplies to be a `Backend` ([`KvStore`]; the `Backend` impl itself is
//! [`stowage_kv::KvBackend`]'s, shared with redb): reads on the caller's thread (sled
//! reads are lock-free), writes through the group-commit writer.

use stowage_core::backend::ChangeHub;
use stowage_core::backend::{BatchScope, Capabilities, ChangeFeed, OnRecord};
use stowage_core::{Result, StoredRecord, Timestamp};
use stowage_kv::{GroupCommit, KvStore};

use crate::config::SledConfig;
use crate::open::SledStore;
use crate::query::Reader;

impl KvStore for SledStore {
    type Config = SledConfig;
    type Reader<'a> = Reader<'a>;

    fn open(config: SledConfig) -> Result<Self> {
        SledStore::open_folder(config)
    }

    fn name(&self) -> &'static str {
        "sled"
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
        // sled keeps each value whole in memory while it is written: 16 MiB keeps a write's
        // memory sane.
        c.max_body_bytes = 16 << 20;
        // What sled does not do: its flush is not an fsync (see the crate docs), and reads
        // are not snapshots.
        c.fsync = false;
        c.snapshot_reads = false;
        c
    }

    fn reader(&self) -> Result<Reader<'_>> {
        Ok(Reader(self))
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

    /// A get asks the catalog only when a record is missing (see [`Reader::live`]).
    fn get_one(
        &self,
        r: &Reader<'_>,
        ns: &str,
        coll: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        Ok(r.live(ns, coll, &[id], now)?.pop().flatten())
    }

    /// As [`KvStore::get_one`], lending the record (sled's checked read copies it anyway).
    fn get_one_with(
        &self,
        r: &Reader<'_>,
        ns: &str,
        coll: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        match self.get_one(r, ns, coll, id, now)? {
            Some(rec) => read(rec.as_record_ref()),
            None => Ok(()),
        }
    }

    /// As [`KvStore::get_one`], for many ids.
    fn get_live(
        &self,
        r: &Reader<'_>,
        ns: &str,
        coll: &str,
        ids: &[&str],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        r.live(ns, coll, ids, now)
    }
}
