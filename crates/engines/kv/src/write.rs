//! The write side: every job here runs inside a shared write transaction on whoever holds
//! the commit right (see `group_commit.rs`), and a job that fails is undone alone.

use std::sync::Arc;

use stowage_core::backend::{
    first_version, Applied, IndexFill, Live, MutateAction, Precondition, RecordMeta, Revision,
    SpecUpdate, StoredSpec, WriteAction, WriteOp, WriteResult,
};
use stowage_core::{
    ChangeEvent, ChangeOp, Error, IndexValue, Result, StoredRecord, Timestamp, Version,
};

use super::group_commit::{TableId, Txn};
use super::schema::{
    decode_entries, decode_header, decode_record, encode_record, expiry_key, sortable_entries,
    utf8_id, StoredEntries, Tables,
};

/// A collection as a job writes it: its spec and its tables' slots, looked up once per job
/// rather than once per op.
struct WriteColl {
    ns: String,
    name: String,
    stored: Arc<StoredSpec>,
    records: TableId,
    expiry: TableId,
    /// Each index's name, table, and whether it is covering (keeps record copies).
    indexes: Vec<(String, TableId, bool)>,
}

impl WriteColl {
    fn open(t: &mut Txn<'_>, ns: &str, coll: &str) -> Result<Self> {
        let stored = t
            .spec(ns, coll)?
            .ok_or_else(|| Error::collection_not_found(ns, coll))?;
        let tables = Tables::new(ns, coll);
        let mut indexes = Vec::with_capacity(stored.spec.indexes.len());
        for ix in &stored.spec.indexes {
            indexes.push((
                ix.name.clone(),
                t.open(&tables.index(&ix.name))?,
                ix.covering,
            ));
        }
        Ok(WriteColl {
            ns: ns.to_owned(),
            name: coll.to_owned(),
            records: t.open(&tables.records)?,
            expiry: t.open(&tables.expiry)?,
            stored,
            indexes,
        })
    }

    fn check_revision(&self, revision: Revision) -> Result<()> {
        if revision != self.stored.revision {
            return Err(Error::stale_spec(&self.name));
        }
        Ok(())
    }

    fn index(&self, name: &str) -> Option<(TableId, bool)> {
        self.indexes
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, id, covering)| (*id, *covering))
    }

    fn floor(&self, t: &mut Txn<'_>) -> Result<Version> {
        t.floor(&self.ns, &self.name)
    }

    /// A record removed for good: the floor rises to its version.
    fn raise_floor(&self, t: &mut Txn<'_>, version: Version) -> Result<()> {
        t.raise_floor(&self.ns, &self.name, version)
    }

    /// Removes the index and expiry entries a stored record was written with.
    fn remove_entries(&self, t: &mut Txn<'_>, id: &str, bytes: &[u8]) -> Result<()> {
        for (name, values) in decode_entries(bytes)? {
            // Entries of an index the spec dropped went with its table.
            let Some((table, _)) = self.index(&name) else {
                continue;
            };
            for mut key in values {
                key.extend_from_slice(id.as_bytes());
                t.remove(table, &key)?;
            }
        }
        if let Some(at) = decode_header(bytes)?.expires_at {
            t.remove(self.expiry, &expiry_key(at, id))?;
        }
        Ok(())
    }

    /// Removes a stored record for good (delete, purge, delete by prefix or query).
    fn remove_record(&self, t: &mut Txn<'_>, id: &str, bytes: &[u8]) -> Result<()> {
        self.remove_entries(t, id, bytes)?;
        t.remove(self.records, id.as_bytes())?;
        self.raise_floor(t, decode_header(bytes)?.version)
    }

    /// Writes a record's index entries; those of covering indexes hold `record` (the
    /// stored bytes), the others nothing.
    fn add_index_entries<'e>(
        &self,
        t: &mut Txn<'_>,
        id: &str,
        index: impl IntoIterator<Item = &'e (String, Vec<Vec<u8>>)>,
        record: &[u8],
    ) -> Result<()> {
        for (name, values) in index {
            let (table, covering) = self.index(name).ok_or_else(|| {
                Error::internal(format!(
                    "index {name:?} is not in the spec of {:?}",
                    self.name
                ))
            })?;
            let value: &[u8] = if covering { record } else { &[] };
            for v in values {
                let mut key = Vec::with_capacity(v.len() + id.len());
                key.extend_from_slice(v);
                key.extend_from_slice(id.as_bytes());
                t.put(table, &key, value)?;
            }
        }
        Ok(())
    }

    /// The live record other than `id` holding `value` (sortable) in unique index `table`.
    fn unique_holder(
        &self,
        t: &mut Txn<'_>,
        table: TableId,
        value: &[u8],
        id: &str,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let mut after: Option<Vec<u8>> = None;
        // Nearly always the first entry at or past the value is another value (free) or
        // the record's own entry (an update): a first page of two says so without copying
        // entries that cannot match.
        let mut limit = 2;
        loop {
            let page = t.page(table, value, after.as_deref(), limit)?;
            limit = 16;
            let Some(last) = page.last().map(|(k, _)| k.clone()) else {
                return Ok(None);
            };
            for (k, _) in &page {
                let Some(other) = k.strip_prefix(value) else {
                    return Ok(None);
                };
                let other = utf8_id(other)?;
                if other == id {
                    continue;
                }
                if let Some(b) = t.get(self.records, other.as_bytes())? {
                    if !decode_header(&b)?.is_expired(now) {
                        return Ok(Some(other));
                    }
                }
            }
            after = Some(last);
        }
    }

    /// AlreadyExists naming the holder when a unique index of the spec already holds one
    /// of `encoded`'s values for another live record.
    fn check_unique(
        &self,
        t: &mut Txn<'_>,
        id: &str,
        encoded: &StoredEntries,
        now: Timestamp,
    ) -> Result<()> {
        for ix in self.stored.spec.indexes.iter().filter(|i| i.unique) {
            let Some((_, values)) = encoded.iter().find(|(n, _)| *n == ix.name) else {
                continue;
            };
            let (table, _) = self
                .index(&ix.name)
                .ok_or_else(|| Error::internal("unique index table missing"))?;
            for v in values {
                if let Some(holder) = self.unique_holder(t, table, v, id, now)? {
                    return Err(Error::unique_violation(&self.name, &ix.name, &holder));
                }
            }
        }
        Ok(())
    }

    /// Stores `rec` with its entries in place of whatever `stored` was.
    fn store(
        &self,
        t: &mut Txn<'_>,
        rec: &StoredRecord,
        encoded: &StoredEntries,
        stored: Option<&[u8]>,
    ) -> Result<()> {
        if let Some(b) = stored {
            self.remove_entries(t, &rec.id, b)?;
        }
        let bytes = encode_record(rec, encoded);
        t.put(self.records, rec.id.as_bytes(), &bytes)?;
        self.add_index_entries(t, &rec.id, encoded, &bytes)?;
        if let Some(at) = rec.expires_at {
            t.put(self.expiry, &expiry_key(at, &rec.id), &[])?;
        }
        Ok(())
    }

    /// Applies one op: revision, then precondition, then unique indexes (the order every
    /// engine keeps, so errors agree).
    // Long: the checks in the order every engine keeps (revision, precondition, unique values), visible in one place.
    #[allow(clippy::too_many_lines)]
    fn apply(&self, t: &mut Txn<'_>, op: WriteOp, now: Timestamp) -> Result<WriteResult> {
        self.check_revision(op.revision)?;
        let mut values = Vec::new();
        // What a mutation read of the record, for the put that stores its result.
        let mut read = None;
        let (body, index, meta) = match op.action {
            WriteAction::Mutate(ref m) => {
                let (applied, stored) = self.mutated(t, &op, m, now)?;
                values = applied.values;
                read = Some(stored);
                (
                    applied.body,
                    applied.index,
                    RecordMeta {
                        version: 0,
                        created_at: now,
                        updated_at: now,
                        expires_at: applied.expiry.at(now),
                    },
                )
            }
            WriteAction::Put { body, index, ttl } => (
                body,
                index,
                RecordMeta {
                    version: 0,
                    created_at: now,
                    updated_at: now,
                    expires_at: ttl.map(|d| now.saturating_add(d)),
                },
            ),
            WriteAction::Restore { meta, body, index } => {
                let stored = t.get(self.records, op.id.as_bytes())?;
                if op.precondition != Precondition::None {
                    let live = live_meta(stored.as_deref(), now)?;
                    op.precondition
                        .check(&self.name, &op.id, live.map(|m| m.version))?;
                }
                let encoded = sortable_entries(&index);
                self.check_unique(t, &op.id, &encoded, now)?;
                if let Some(b) = &stored {
                    let replaced = decode_header(b)?.version;
                    // Replacing another version forgets it: the floor keeps it from
                    // coming back.
                    if replaced != meta.version {
                        self.raise_floor(t, replaced)?;
                    }
                }
                self.store(t, &meta.record(op.id, body), &encoded, stored.as_deref())?;
                return Ok(WriteResult::new(Some(meta)));
            }
            WriteAction::Delete | WriteAction::Check => {
                let stored = t.get(self.records, op.id.as_bytes())?;
                let live = live_meta(stored.as_deref(), now)?;
                op.precondition
                    .check(&self.name, &op.id, live.map(|m| m.version))?;
                if matches!(op.action, WriteAction::Delete) {
                    if let Some(b) = &stored {
                        self.remove_record(t, &op.id, b)?;
                    }
                }
                return Ok(WriteResult::new(live));
            }
        };
        let encoded = sortable_entries(&index);
        let mut rec = meta.record(op.id, body);
        if op.precondition == Precondition::Absent {
            // Inserts write first and look at what they replaced: one B-tree walk instead of
            // two. A live record there fails the op, and the job's undo log restores it.
            rec.version = first_version(self.floor(t)?, None);
            let mut bytes = encode_record(&rec, &encoded);
            let prev = t.put(self.records, rec.id.as_bytes(), &bytes)?;
            if let Some(b) = &prev {
                let h = decode_header(b)?;
                let live = (!h.is_expired(now)).then_some(h.version);
                op.precondition.check(&self.name, &rec.id, live)?;
                self.remove_entries(t, &rec.id, b)?;
                if h.version >= rec.version {
                    // Over an expired record of a higher version: above it.
                    rec.version = first_version(self.floor(t)?, Some(h.version));
                    bytes = encode_record(&rec, &encoded);
                    t.put(self.records, rec.id.as_bytes(), &bytes)?;
                }
            }
            self.check_unique(t, &rec.id, &encoded, now)?;
            self.add_index_entries(t, &rec.id, &encoded, &bytes)?;
            if let Some(at) = rec.expires_at {
                t.put(self.expiry, &expiry_key(at, &rec.id), &[])?;
            }
        } else {
            let stored = match read {
                Some(stored) => stored,
                None => t.get(self.records, rec.id.as_bytes())?,
            };
            let header = stored.as_deref().map(decode_header).transpose()?;
            let live = header.filter(|h| !h.is_expired(now));
            op.precondition
                .check(&self.name, &rec.id, live.map(|h| h.version))?;
            self.check_unique(t, &rec.id, &encoded, now)?;
            match live {
                Some(h) => {
                    rec.version = h.version + 1;
                    rec.created_at = h.created_at;
                }
                None => rec.version = first_version(self.floor(t)?, header.map(|h| h.version)),
            }
            self.store(t, &rec, &encoded, stored.as_deref())?;
        }
        Ok(WriteResult {
            meta: Some(RecordMeta::of(&rec)),
            values,
        })
    }

    /// A mutation applied to the live record (read in this job's transaction, so no other
    /// write comes between): what the put that follows stores, and the stored bytes it read
    /// (the put replaces them without reading them again). The precondition is checked
    /// first, as the put path checks it again on the same state.
    fn mutated(
        &self,
        t: &mut Txn<'_>,
        op: &WriteOp,
        m: &MutateAction,
        now: Timestamp,
    ) -> Result<(Applied, Option<Vec<u8>>)> {
        let stored = t.get(self.records, op.id.as_bytes())?;
        let live = match stored.as_deref() {
            Some(b) if !decode_header(b)?.is_expired(now) => {
                Some(decode_record(op.id.as_bytes(), b)?)
            }
            _ => None,
        };
        op.precondition
            .check(&self.name, &op.id, live.as_ref().map(|r| r.version))?;
        let live = live.as_ref().map(|r| Live {
            body: &r.body,
            meta: RecordMeta::of(r),
        });
        Ok((m.apply(&self.name, &op.id, live)?, stored))
    }
}

/// The metadata of a stored record if it is live at `now`.
fn live_meta(stored: Option<&[u8]>, now: Timestamp) -> Result<Option<RecordMeta>> {
    let Some(b) = stored else {
        return Ok(None);
    };
    if decode_header(b)?.is_expired(now) {
        return Ok(None);
    }
    let rec = decode_record(b"", b)?;
    Ok(Some(RecordMeta::of(&rec)))
}

/// Applies a write call's ops in order (see `Backend::write`).
pub fn write_job(
    t: &mut Txn<'_>,
    ns: &str,
    ops: Vec<WriteOp>,
    now: Timestamp,
) -> Result<Vec<WriteResult>> {
    let mut colls: Vec<WriteColl> = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    // Unwatched namespaces (most) pay nothing for the change log.
    let logging = t.logs_changes(ns)?;
    for (i, op) in ops.into_iter().enumerate() {
        let at = if let Some(at) = colls.iter().position(|c| c.name == op.collection) {
            at
        } else {
            colls.push(WriteColl::open(t, ns, &op.collection).map_err(|e| e.at_op(i))?);
            colls.len() - 1
        };
        let change = match op.action {
            _ if !logging => None,
            WriteAction::Put { .. } | WriteAction::Restore { .. } | WriteAction::Mutate(_) => {
                Some(ChangeOp::Put)
            }
            WriteAction::Delete => Some(ChangeOp::Delete),
            WriteAction::Check => None,
        };
        let id = if change.is_some() {
            op.id.clone()
        } else {
            String::new()
        };
        let result = colls[at].apply(t, op, now).map_err(|e| e.at_op(i))?;
        if let (Some(kind), Some(meta)) = (change, result.meta) {
            let when = if kind == ChangeOp::Put {
                meta.updated_at
            } else {
                now
            };
            let change = ChangeEvent::new(kind, Some(&colls[at].name), when)
                .id(&id)
                .version(meta.version);
            t.log(ns, change)?;
        }
        results.push(result);
    }
    Ok(results)
}

/// Stores a spec change as a compare-and-set on the revision. Dropped indexes lose their
/// tables; added ones start empty (and any table left under their name goes); a covering
/// flip rewrites the flipped index's entries with or without record copies.
pub fn apply_spec_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    update: &SpecUpdate,
) -> Result<Revision> {
    let tables = Tables::new(ns, coll);
    let old = t.spec(ns, coll)?;
    let current = old.as_ref().map(|s| s.revision);
    if current != update.expected {
        return Err(Error::spec_conflict(coll, update.expected, current));
    }
    let new = StoredSpec {
        spec: update.spec.clone(),
        revision: t.next_revision()?,
        building: update.building.clone(),
    };
    let change = match &old {
        Some(old) => old.spec.diff(&new.spec)?,
        None => Default::default(),
    };
    for name in change
        .dropped
        .iter()
        .chain(change.added.iter().map(|i| &i.name))
    {
        t.delete_table(&tables.index(name))?;
    }
    t.set_spec(ns, coll, Some(&new))?;
    let wc = WriteColl::open(t, ns, coll)?;
    for name in &change.covering_changed {
        rewrite_copies(t, &wc, name)?;
    }
    t.log(
        ns,
        ChangeEvent::new(ChangeOp::Spec, Some(coll), Timestamp::now()),
    )?;
    Ok(new.revision)
}

/// Writes (or clears) the record copies of every entry of index `name`, as its covering
/// flag now says.
fn rewrite_copies(t: &mut Txn<'_>, wc: &WriteColl, name: &str) -> Result<()> {
    let ix = wc
        .stored
        .spec
        .index_named(name)
        .ok_or_else(|| Error::internal("flipped index missing"))?;
    let (table, covering) = wc
        .index(name)
        .ok_or_else(|| Error::internal("flipped index table missing"))?;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = t.page(table, &[], after.as_deref(), 512)?;
        let Some(last) = page.last().map(|(k, _)| k.clone()) else {
            return Ok(());
        };
        for (k, _) in page {
            let (_, id) = IndexValue::decode_sortable(ix.index_type, &k)?;
            let copy = if covering {
                t.get(wc.records, id)?.unwrap_or_default()
            } else {
                Vec::new()
            };
            t.put(table, &k, &copy)?;
        }
        after = Some(last);
    }
}

/// Adds a page of values to the building indexes (see `Backend::fill_index`).
pub fn fill_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    revision: Revision,
    fills: Vec<IndexFill>,
    now: Timestamp,
) -> Result<()> {
    let wc = WriteColl::open(t, ns, coll)?;
    wc.check_revision(revision)?;
    for f in fills {
        let Some(bytes) = t.get(wc.records, f.id.as_bytes())? else {
            continue;
        };
        if decode_header(&bytes)?.version != f.version {
            // Written since it was read: that write carried the entries.
            continue;
        }
        let filled = sortable_entries(&f.index);
        let mut entries: StoredEntries = decode_entries(&bytes)?
            .into_iter()
            .filter(|(n, _)| !filled.iter().any(|(name, _)| name == n))
            .collect();
        // Drop entries a previous fill of the same record (another instance helping) left.
        let previous = decode_entries(&bytes)?
            .into_iter()
            .filter(|(n, _)| filled.iter().any(|(name, _)| name == n));
        for (name, values) in previous {
            if let Some((table, _)) = wc.index(&name) {
                for mut key in values {
                    key.extend_from_slice(f.id.as_bytes());
                    t.remove(table, &key)?;
                }
            }
        }
        let filled: StoredEntries = filled.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        wc.check_unique(t, &f.id, &filled, now)?;
        entries.extend(filled.iter().cloned());
        let rec = decode_record(f.id.as_bytes(), &bytes)?;
        let bytes = encode_record(&rec, &entries);
        t.put(wc.records, f.id.as_bytes(), &bytes)?;
        // The new entries, and the copies every covering index keeps of the rewritten
        // record.
        let rewrite = entries.iter().filter(|(n, _)| {
            filled.iter().any(|(name, _)| name == n) || wc.index(n).is_some_and(|(_, c)| c)
        });
        wc.add_index_entries(t, &f.id, rewrite, &bytes)?;
    }
    Ok(())
}

/// Drops a collection's tables and entry; its floor rises to the highest version it held.
pub fn drop_job(t: &mut Txn<'_>, ns: &str, coll: &str) -> Result<bool> {
    let Some(stored) = t.spec(ns, coll)? else {
        return Ok(false);
    };
    let wc = WriteColl::open(t, ns, coll)?;
    let mut highest = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = t.page(wc.records, &[], after.as_deref(), 512)?;
        let Some(last) = page.last().map(|(k, _)| k.clone()) else {
            break;
        };
        for (_, v) in &page {
            highest = highest.max(decode_header(v)?.version);
        }
        after = Some(last);
    }
    wc.raise_floor(t, highest)?;
    let tables = Tables::new(ns, coll);
    for ix in &stored.spec.indexes {
        t.delete_table(&tables.index(&ix.name))?;
    }
    t.delete_table(&tables.expiry)?;
    t.delete_table(&tables.records)?;
    t.set_spec(ns, coll, None)?;
    t.log(
        ns,
        ChangeEvent::new(ChangeOp::Drop, Some(coll), Timestamp::now()),
    )?;
    Ok(true)
}

/// Deletes every record whose id starts with `prefix`; returns how many were live.
pub fn delete_prefix_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    prefix: &str,
    now: Timestamp,
) -> Result<u64> {
    let wc = WriteColl::open(t, ns, coll)?;
    let mut live = 0;
    loop {
        // Deleting what was read moves the start: always read from the prefix again.
        let page = t.page(wc.records, prefix.as_bytes(), None, 256)?;
        let matching: Vec<_> = page
            .into_iter()
            .take_while(|(k, _)| k.starts_with(prefix.as_bytes()))
            .collect();
        if matching.is_empty() {
            if live > 0 {
                let change = ChangeEvent::new(ChangeOp::DeletePrefix, Some(coll), now)
                    .id(prefix)
                    .count(live);
                t.log(ns, change)?;
            }
            return Ok(live);
        }
        for (k, v) in matching {
            if !decode_header(&v)?.is_expired(now) {
                live += 1;
            }
            wc.remove_record(t, &utf8_id(&k)?, &v)?;
        }
    }
}

/// Deletes the records a query found, each only if it is still live at the version found
/// (one written since may no longer match); returns how many went.
pub fn delete_found_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    revision: Revision,
    found: Vec<(String, Version)>,
    now: Timestamp,
) -> Result<u64> {
    let wc = WriteColl::open(t, ns, coll)?;
    wc.check_revision(revision)?;
    let mut deleted = 0;
    for (id, version) in found {
        let Some(b) = t.get(wc.records, id.as_bytes())? else {
            continue;
        };
        let h = decode_header(&b)?;
        if h.version == version && !h.is_expired(now) {
            wc.remove_record(t, &id, &b)?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        t.log(
            ns,
            ChangeEvent::new(ChangeOp::DeleteWhere, Some(coll), now).count(deleted),
        )?;
    }
    Ok(deleted)
}

/// Removes the expired records of `colls`; returns how many went.
pub fn purge_job(t: &mut Txn<'_>, ns: &str, colls: Vec<String>, now: Timestamp) -> Result<u64> {
    let mut purged = 0;
    let end = stowage_core::backend::sortable_i64(now.as_micros().saturating_add(1));
    for coll in colls {
        if t.spec(ns, &coll)?.is_none() {
            continue;
        }
        let wc = WriteColl::open(t, ns, &coll)?;
        loop {
            let page = t.page(wc.expiry, &[], None, 256)?;
            let due: Vec<_> = page
                .into_iter()
                .take_while(|(k, _)| k.as_slice() < end.as_slice())
                .collect();
            if due.is_empty() {
                break;
            }
            for (k, _) in due {
                let id = utf8_id(&k[8..])?;
                if let Some(b) = t.get(wc.records, id.as_bytes())? {
                    wc.remove_record(t, &id, &b)?;
                    purged += 1;
                }
                // Gone with the record already, unless it was left behind: never loop on it.
                t.remove(wc.expiry, &k)?;
            }
        }
    }
    if purged > 0 {
        t.log(
            ns,
            ChangeEvent::new(ChangeOp::Purge, None, now).count(purged),
        )?;
    }
    Ok(purged)
}
