//! The memory backend: ordered maps behind a lock per namespace. It is the reference model
//! the property test compares every other backend with, so it favours plain, obviously
//! correct code over cleverness; it is still indexed (queries walk B-tree ranges, never the
//! whole collection when an index can answer).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{
    filter_matches, first_version, id_span, walk_bound, Backend, BatchScope, Capabilities,
    ChangeFeed, CollectionStats, IdSpan, IndexEntries, IndexFill, Live, MutationSupport,
    PredicateOp, QueryHit, QueryRequest, RecordMeta, Revision, ScanRequest, SpecUpdate, StoredSpec,
    WriteAction, WriteOp, WriteResult,
};
use crate::error::{Error, Result};
use crate::feed::{ChangeEvent, ChangeHub, ChangeOp, ChangeStream, ChangeToken};
use crate::record::{StoredRecord, Timestamp, Version};
use crate::value::IndexValue;

/// Records in process memory: for tests, caches and the model of every other backend.
///
/// Clones share the same data, so a clone handed to a new [`crate::Store`] behaves like
/// reopening a persistent store (its catalog included).
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    namespaces: RwLock<HashMap<String, Arc<RwLock<Namespace>>>>,
    capabilities: Capabilities,
    /// The last spec revision given, for the whole store.
    revisions: AtomicU64,
    /// The change feed: published under the namespace's write lock, so in commit order.
    changes: ChangeHub,
}

#[derive(Debug, Default)]
struct Namespace {
    collections: BTreeMap<String, MemCollection>,
    /// Version floors of dropped collections: they outlive the collection, so one created
    /// again under the name never repeats a version.
    floors: HashMap<String, Version>,
}

#[derive(Debug)]
struct MemCollection {
    spec: StoredSpec,
    /// The highest version a removed record had (see [`first_version`]).
    floor: Version,
    records: BTreeMap<String, MemRecord>,
    indexes: HashMap<String, BTreeSet<(IndexValue, String)>>,
    expiry: BTreeSet<(Timestamp, String)>,
    bytes: u64,
}

#[derive(Debug, Clone)]
struct MemRecord {
    rec: StoredRecord,
    index: IndexEntries,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty memory backend that claims every capability it has.
    pub fn new() -> Self {
        Self::with_capabilities(Self::full_capabilities())
    }

    /// The `memory://` engine: each open is a new, empty store; it takes no location and
    /// no parameters.
    pub fn engine() -> crate::backend::Engine {
        crate::backend::Engine {
            scheme: "memory",
            connect: |url| {
                Box::pin(async move {
                    url.only_params(&[])?;
                    if !url.location.is_empty() {
                        return Err(Error::invalid(
                            "memory:// takes no location: each open is a new, empty store",
                        ));
                    }
                    if !url.create_if_missing {
                        return Err(Error::no_store(
                            "memory://",
                            "a memory store lives only in the process that made it",
                        ));
                    }
                    Ok(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
                })
            },
        }
    }

    /// What the memory backend can do: everything but persistence, sharing between
    /// processes and an engine clock, with bodies up to 64 MiB.
    pub fn full_capabilities() -> Capabilities {
        Capabilities {
            batch_scope: BatchScope::Namespace,
            unique_indexes: true,
            ttl: true,
            binary_bodies: true,
            change_feed: ChangeFeed::Live,
            max_body_bytes: 64 << 20,
            snapshot_reads: true,
            mutations: MutationSupport::Native,
            ..Capabilities::default()
        }
    }

    /// An empty memory backend that claims only `capabilities`: a stand-in for a more limited
    /// engine in tests. The store refuses what is not claimed.
    pub fn with_capabilities(capabilities: Capabilities) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                namespaces: RwLock::new(HashMap::new()),
                capabilities,
                revisions: AtomicU64::new(0),
                changes: ChangeHub::default(),
            }),
        }
    }

    fn namespace(&self, ns: &str) -> Arc<RwLock<Namespace>> {
        if let Some(n) = self.inner.namespaces.read().get(ns) {
            return n.clone();
        }
        self.inner
            .namespaces
            .write()
            .entry(ns.to_owned())
            .or_default()
            .clone()
    }
}

fn record_size(rec: &StoredRecord) -> u64 {
    (rec.id.len() + rec.body.bytes.len()) as u64
}

impl MemCollection {
    fn new(spec: StoredSpec, floor: Version) -> Self {
        MemCollection {
            spec,
            floor,
            records: BTreeMap::new(),
            indexes: HashMap::new(),
            expiry: BTreeSet::new(),
            bytes: 0,
        }
    }

    fn check_revision(&self, name: &str, revision: Revision) -> Result<()> {
        if revision != self.spec.revision {
            return Err(Error::stale_spec(name));
        }
        Ok(())
    }

    /// Removes a record for good: the floor rises to its version.
    fn remove_raising(&mut self, id: &str) -> Option<MemRecord> {
        let r = self.remove(id)?;
        self.floor = self.floor.max(r.rec.version);
        Some(r)
    }

    fn live(&self, id: &str, now: Timestamp) -> Option<&MemRecord> {
        self.records.get(id).filter(|r| !r.rec.is_expired(now))
    }

    fn remove(&mut self, id: &str) -> Option<MemRecord> {
        let r = self.records.remove(id)?;
        for (name, values) in &r.index {
            if let Some(set) = self.indexes.get_mut(name) {
                for v in values {
                    set.remove(&(v.clone(), id.to_owned()));
                }
            }
        }
        if let Some(t) = r.rec.expires_at {
            self.expiry.remove(&(t, id.to_owned()));
        }
        self.bytes -= record_size(&r.rec);
        Some(r)
    }

    fn add(&mut self, r: MemRecord) {
        let id = &r.rec.id;
        for (name, values) in &r.index {
            let set = self.indexes.entry(name.clone()).or_default();
            for v in values {
                set.insert((v.clone(), id.clone()));
            }
        }
        if let Some(t) = r.rec.expires_at {
            self.expiry.insert((t, id.clone()));
        }
        self.bytes += record_size(&r.rec);
        self.records.insert(id.clone(), r);
    }

    /// The live record other than `id` holding `value` in index `name`, if any.
    fn holder(&self, name: &str, value: &IndexValue, id: &str, now: Timestamp) -> Option<&str> {
        let set = self.indexes.get(name)?;
        set.range((
            Bound::Included((value.clone(), String::new())),
            Bound::Unbounded,
        ))
        .take_while(|(v, _)| v == value)
        .map(|(_, other)| other.as_str())
        .find(|other| *other != id && self.live(other, now).is_some())
    }

    fn check_unique(
        &self,
        coll: &str,
        id: &str,
        index: &IndexEntries,
        now: Timestamp,
    ) -> Result<()> {
        for ix in self.spec.spec.indexes.iter().filter(|i| i.unique) {
            if let Some((_, values)) = index.iter().find(|(n, _)| *n == ix.name) {
                for v in values {
                    if let Some(holder) = self.holder(&ix.name, v, id, now) {
                        return Err(Error::unique_violation(coll, &ix.name, holder));
                    }
                }
            }
        }
        Ok(())
    }

    /// Ids the index holds under values that pass `op`, ascending by (value, id).
    fn index_ids<'a>(&'a self, index: &str, op: &PredicateOp) -> Vec<&'a str> {
        let Some(set) = self.indexes.get(index) else {
            return Vec::new();
        };
        if let PredicateOp::In(values) = op {
            return values
                .iter()
                .flat_map(|v| self.index_ids(index, &PredicateOp::Eq(v.clone())))
                .collect();
        }
        let start = match op.lower_value() {
            Some(v) => Bound::Included((v, String::new())),
            None => Bound::Unbounded,
        };
        set.range((start, Bound::Unbounded))
            .take_while(|(v, _)| !op.is_past_upper(v))
            .filter(|(v, _)| op.test(v))
            .map(|(_, id)| id.as_str())
            .collect()
    }

    /// One page of matches, cloned out.
    fn query(&self, req: &QueryRequest, now: Timestamp) -> Vec<QueryHit> {
        let mut hits = Vec::new();
        let limit = req.limit.unwrap_or(usize::MAX);
        self.walk(req, now, |r, order_value| {
            hits.push(QueryHit {
                record: r.rec.clone(),
                order_value: order_value.cloned(),
            });
            hits.len() < limit
        });
        hits
    }

    /// Calls `emit` with each live match in the query's order, after its cursor and offset,
    /// until `emit` returns false. Counting walks without copying a record.
    // Long: one walk per order (an index, the id) over the same locked maps: the branches share the guard and the cursor.
    #[allow(clippy::too_many_lines)]
    fn walk(
        &self,
        req: &QueryRequest,
        now: Timestamp,
        mut emit: impl FnMut(&MemRecord, Option<&IndexValue>) -> bool,
    ) {
        let mut skip = req.offset;
        // Called in result order; false once the page is full.
        let mut visit = |id: &str, order_value: Option<&IndexValue>| -> bool {
            let Some(r) = self.live(id, now) else {
                return true;
            };
            if !filter_matches(&req.filter, id, &r.index) {
                return true;
            }
            if skip > 0 {
                skip -= 1;
                return true;
            }
            emit(r, order_value)
        };
        if let Some(index) = &req.order.index {
            let Some(set) = self.indexes.get(index) else {
                return;
            };
            // A predicate on the order index bounds the walk.
            let bound = walk_bound(&req.filter, index);
            let cursor = req
                .after
                .as_ref()
                .and_then(|c| c.value.clone().map(|v| (v, c.id.clone())));
            if req.order.descending {
                let end = cursor.map_or(Bound::Unbounded, Bound::Excluded);
                for (v, id) in set.range((Bound::Unbounded, end)).rev() {
                    if bound.is_some_and(|op| op.is_past_upper(v)) {
                        continue;
                    }
                    if bound.is_some_and(|op| op.is_below_lower(v)) || !visit(id, Some(v)) {
                        break;
                    }
                }
            } else {
                let mut start = match bound.and_then(PredicateOp::lower_value) {
                    Some(v) => Bound::Included((v, String::new())),
                    None => Bound::Unbounded,
                };
                if let Some(c) = cursor {
                    let later = match &start {
                        Bound::Included(s) => c >= *s,
                        _ => true,
                    };
                    if later {
                        start = Bound::Excluded(c);
                    }
                }
                for (v, id) in set.range((start, Bound::Unbounded)) {
                    if bound.is_some_and(|op| op.is_past_upper(v)) || !visit(id, Some(v)) {
                        break;
                    }
                }
            }
        } else {
            let after = req.after.as_ref().map(|c| c.id.as_str());
            let in_range = |id: &str| match after {
                None => true,
                Some(a) if req.order.descending => id < a,
                Some(a) => id > a,
            };
            // The first predicate narrows the candidates through its index.
            if let Some(p) = req.filter.first().filter(|p| !p.on_id()) {
                let ids: BTreeSet<&str> = self
                    .index_ids(&p.index, &p.op)
                    .into_iter()
                    .filter(|id| in_range(id))
                    .collect();
                let ordered: Box<dyn Iterator<Item = &&str>> = if req.order.descending {
                    Box::new(ids.iter().rev())
                } else {
                    Box::new(ids.iter())
                };
                for id in ordered {
                    if !visit(id, None) {
                        break;
                    }
                }
            } else {
                // Else the ids the filter names, or the range it bounds them to.
                let span = id_span(&req.filter).past(after, req.order.descending);
                let ids: Box<dyn DoubleEndedIterator<Item = &str>> = match &span {
                    IdSpan::Exact(ids) => Box::new(ids.iter().map(String::as_str)),
                    IdSpan::Range(..) => match span.bounds() {
                        Some(range) => Box::new(
                            self.records
                                .range::<str, _>(range)
                                .map(|(id, _)| id.as_str()),
                        ),
                        None => Box::new(std::iter::empty()),
                    },
                };
                let ordered: Box<dyn Iterator<Item = &str>> = if req.order.descending {
                    Box::new(ids.rev())
                } else {
                    ids
                };
                for id in ordered {
                    if !visit(id, None) {
                        break;
                    }
                }
            }
        }
    }
}

/// The namespace with the collection `name`, or NotFound.
fn collection<'a>(ns_name: &str, ns: &'a Namespace, name: &str) -> Result<&'a MemCollection> {
    ns.collections
        .get(name)
        .ok_or_else(|| Error::collection_not_found(ns_name, name))
}

impl MemCollection {
    /// Stores a put's (or a mutation's) record over whatever `op.id` holds: version + 1
    /// over a live record, or the first version; unique values checked first.
    fn put(
        &mut self,
        (collection, id): (&str, &str),
        body: crate::record::Body,
        index: IndexEntries,
        expires_at: Option<Timestamp>,
        now: Timestamp,
        undo: &mut Vec<Undo>,
    ) -> Result<RecordMeta> {
        self.check_unique(collection, id, &index, now)?;
        let live = self.live(id, now).map(|r| RecordMeta::of(&r.rec));
        let stored_version = self.records.get(id).map(|r| r.rec.version);
        let meta = RecordMeta {
            version: match live {
                Some(m) => m.version + 1,
                None => first_version(self.floor, stored_version),
            },
            created_at: live.map_or(now, |m| m.created_at),
            updated_at: now,
            expires_at,
        };
        let prev = self.remove(id);
        undo.push((collection.to_owned(), id.to_owned(), prev, self.floor));
        self.add(MemRecord {
            rec: meta.record(id.to_owned(), body),
            index,
        });
        Ok(meta)
    }
}

/// What a batch op replaced, to put back if a later op fails.
type Undo = (String, String, Option<MemRecord>, Version);

impl Namespace {
    /// Applies one op, pushing what it replaced onto `undo`.
    fn apply(
        &mut self,
        ns: &str,
        op: WriteOp,
        now: Timestamp,
        undo: &mut Vec<Undo>,
    ) -> Result<WriteResult> {
        let coll = self
            .collections
            .get_mut(&op.collection)
            .ok_or_else(|| Error::collection_not_found(ns, &op.collection))?;
        coll.check_revision(&op.collection, op.revision)?;
        let live = coll.live(&op.id, now).map(|r| RecordMeta::of(&r.rec));
        let check = |live: Option<RecordMeta>| {
            op.precondition
                .check(&op.collection, &op.id, live.map(|m| m.version))
        };
        match op.action {
            WriteAction::Put { body, index, ttl } => {
                check(live)?;
                let expires_at = ttl.map(|t| now.saturating_add(t));
                let meta =
                    coll.put((&op.collection, &op.id), body, index, expires_at, now, undo)?;
                Ok(WriteResult::new(Some(meta)))
            }
            WriteAction::Mutate(ref m) => {
                check(live)?;
                let current = live.and_then(|meta| {
                    let body = &coll.records.get(&op.id)?.rec.body;
                    Some(Live { body, meta })
                });
                let applied = m.apply(&op.collection, &op.id, current)?;
                let expires_at = applied.expiry.at(now);
                let meta = coll.put(
                    (&op.collection, &op.id),
                    applied.body,
                    applied.index,
                    expires_at,
                    now,
                    undo,
                )?;
                Ok(WriteResult {
                    meta: Some(meta),
                    values: applied.values,
                })
            }
            WriteAction::Delete => {
                check(live)?;
                // An expired record goes too: it is already invisible.
                let floor = coll.floor;
                let prev = coll.remove_raising(&op.id);
                if prev.is_some() {
                    undo.push((op.collection, op.id, prev, floor));
                }
                Ok(WriteResult::new(live))
            }
            WriteAction::Check => {
                check(live)?;
                Ok(WriteResult::new(live))
            }
            WriteAction::Restore { meta, body, index } => {
                check(live)?;
                coll.check_unique(&op.collection, &op.id, &index, now)?;
                let floor = coll.floor;
                let prev = coll.remove(&op.id);
                // Replacing another version forgets it: the floor keeps it from coming back.
                if let Some(p) = prev.as_ref().filter(|p| p.rec.version != meta.version) {
                    coll.floor = coll.floor.max(p.rec.version);
                }
                undo.push((op.collection, op.id.clone(), prev, floor));
                coll.add(MemRecord {
                    rec: meta.record(op.id, body),
                    index,
                });
                Ok(WriteResult::new(Some(meta)))
            }
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for (coll, id, prev, floor) in undo.into_iter().rev() {
            if let Some(c) = self.collections.get_mut(&coll) {
                c.remove(&id);
                if let Some(p) = prev {
                    c.add(p);
                }
                c.floor = floor;
            }
        }
    }

    fn collection_mut(&mut self, ns: &str, name: &str) -> Result<&mut MemCollection> {
        self.collections
            .get_mut(name)
            .ok_or_else(|| Error::collection_not_found(ns, name))
    }
}

impl MemoryBackend {
    fn next_revision(&self) -> Revision {
        self.inner.revisions.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Publishes what committed, while the caller still holds the namespace's write lock.
    fn publish(&self, ns: &str, events: Vec<ChangeEvent>) {
        if self.inner.capabilities.change_feed != ChangeFeed::None {
            self.inner.changes.publish(ns, events);
        }
    }

    /// One bulk event when `count` records went.
    fn publish_bulk(&self, ns: &str, op: ChangeOp, coll: Option<&str>, count: u64, now: Timestamp) {
        if count > 0 {
            self.publish(ns, vec![ChangeEvent::new(op, coll, now).count(count)]);
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities.clone()
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .inner
            .namespaces
            .read()
            .iter()
            .filter(|(_, ns)| !ns.read().collections.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<StoredSpec>> {
        let ns = self.namespace(ns);
        let ns = ns.read();
        Ok(ns.collections.get(collection).map(|c| c.spec.clone()))
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        let ns = self.namespace(ns);
        let ns = ns.read();
        Ok(ns
            .collections
            .iter()
            .map(|(n, c)| (n.clone(), c.spec.clone()))
            .collect())
    }

    async fn apply_spec(
        &self,
        ns_name: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let current = ns.collections.get(collection).map(|c| c.spec.revision);
        if current != update.expected {
            return Err(Error::spec_conflict(collection, update.expected, current));
        }
        let spec = StoredSpec {
            spec: update.spec.clone(),
            revision: self.next_revision(),
            building: update.building.clone(),
        };
        let revision = spec.revision;
        let spec_event = || {
            vec![ChangeEvent::new(
                ChangeOp::Spec,
                Some(collection),
                Timestamp::now(),
            )]
        };
        let Some(coll) = ns.collections.get_mut(collection) else {
            let floor = ns.floors.get(collection).copied().unwrap_or(0);
            ns.collections
                .insert(collection.to_owned(), MemCollection::new(spec, floor));
            self.publish(ns_name, spec_event());
            return Ok(revision);
        };
        let change = coll.spec.spec.diff(&spec.spec)?;
        // Dropped indexes lose their entries; added ones start empty, so entries a record
        // remembers under an added name (an index of that name dropped earlier) go too.
        let gone: HashSet<&str> = change
            .dropped
            .iter()
            .map(String::as_str)
            .chain(change.added.iter().map(|i| i.name.as_str()))
            .collect();
        if !gone.is_empty() {
            coll.indexes.retain(|name, _| !gone.contains(name.as_str()));
            for r in coll.records.values_mut() {
                r.index.retain(|(name, _)| !gone.contains(name.as_str()));
            }
        }
        coll.spec = spec;
        self.publish(ns_name, spec_event());
        Ok(revision)
    }

    async fn fill_index(
        &self,
        ns_name: &str,
        collection: &str,
        revision: Revision,
        fills: Vec<IndexFill>,
        now: Timestamp,
    ) -> Result<()> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let coll = ns.collection_mut(ns_name, collection)?;
        coll.check_revision(collection, revision)?;
        let current =
            |coll: &MemCollection, f: &IndexFill| coll.records.get(&f.id).map(|r| r.rec.version);
        // Check everything before changing anything: a page is all or nothing.
        let mut seen: HashMap<(&str, &IndexValue), &str> = HashMap::new();
        for f in fills.iter().filter(|f| current(coll, f) == Some(f.version)) {
            for (name, values) in &f.index {
                if !coll.spec.spec.index_named(name).is_some_and(|i| i.unique) {
                    continue;
                }
                for v in values {
                    let holder = coll
                        .holder(name, v, &f.id, now)
                        .or_else(|| seen.insert((name.as_str(), v), &f.id));
                    if let Some(holder) = holder {
                        return Err(Error::unique_violation(collection, name, holder));
                    }
                }
            }
        }
        for f in fills {
            if current(coll, &f) != Some(f.version) {
                continue;
            }
            if let Some(mut r) = coll.remove(&f.id) {
                r.index
                    .retain(|(name, _)| !f.index.iter().any(|(n, _)| n == name));
                r.index
                    .extend(f.index.into_iter().filter(|(_, v)| !v.is_empty()));
                coll.add(r);
            }
        }
        Ok(())
    }

    async fn drop_collection(&self, ns_name: &str, collection: &str) -> Result<bool> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let Some(coll) = ns.collections.remove(collection) else {
            return Ok(false);
        };
        let highest = coll.records.values().map(|r| r.rec.version).max();
        let floor = coll.floor.max(highest.unwrap_or(0));
        ns.floors.insert(collection.to_owned(), floor);
        let dropped = ChangeEvent::new(ChangeOp::Drop, Some(collection), Timestamp::now());
        self.publish(ns_name, vec![dropped]);
        Ok(true)
    }

    async fn get_many(
        &self,
        ns_name: &str,
        name: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let ns = self.namespace(ns_name);
        let ns = ns.read();
        let coll = collection(ns_name, &ns, name)?;
        Ok(ids
            .iter()
            .map(|id| coll.live(id, now).map(|r| r.rec.clone()))
            .collect())
    }

    async fn write(
        &self,
        ns_name: &str,
        ops: Vec<WriteOp>,
        now: Timestamp,
    ) -> Result<Vec<WriteResult>> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let mut undo = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let (collection, id) = (op.collection.clone(), op.id.clone());
            let op_kind = match op.action {
                WriteAction::Put { .. } | WriteAction::Restore { .. } | WriteAction::Mutate(_) => {
                    Some(ChangeOp::Put)
                }
                WriteAction::Delete => Some(ChangeOp::Delete),
                WriteAction::Check => None,
            };
            match ns.apply(ns_name, op, now, &mut undo) {
                Ok(r) => {
                    if let (Some(kind), Some(meta)) = (op_kind, r.meta) {
                        let at = if kind == ChangeOp::Put {
                            meta.updated_at
                        } else {
                            now
                        };
                        events.push(
                            ChangeEvent::new(kind, Some(&collection), at)
                                .id(&id)
                                .version(meta.version),
                        );
                    }
                    results.push(r);
                }
                Err(e) => {
                    ns.rollback(undo);
                    return Err(e.at_op(i));
                }
            }
        }
        self.publish(ns_name, events);
        Ok(results)
    }

    async fn query(
        &self,
        ns_name: &str,
        req: &QueryRequest,
        now: Timestamp,
    ) -> Result<Vec<QueryHit>> {
        let ns = self.namespace(ns_name);
        let ns = ns.read();
        let coll = collection(ns_name, &ns, &req.collection)?;
        coll.check_revision(&req.collection, req.revision)?;
        Ok(coll.query(req, now))
    }

    async fn count(&self, ns_name: &str, req: &QueryRequest, now: Timestamp) -> Result<u64> {
        let ns = self.namespace(ns_name);
        let ns = ns.read();
        let coll = collection(ns_name, &ns, &req.collection)?;
        coll.check_revision(&req.collection, req.revision)?;
        if req.filter.is_empty() {
            let expired = coll.expiry.iter().take_while(|(t, _)| *t <= now).count();
            return Ok((coll.records.len() - expired) as u64);
        }
        let all = QueryRequest {
            after: None,
            offset: 0,
            limit: None,
            ..req.clone()
        };
        let mut n = 0u64;
        coll.walk(&all, now, |_, _| {
            n += 1;
            true
        });
        Ok(n)
    }

    async fn delete_matching(
        &self,
        ns_name: &str,
        req: &QueryRequest,
        now: Timestamp,
    ) -> Result<u64> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let coll = ns.collection_mut(ns_name, &req.collection)?;
        coll.check_revision(&req.collection, req.revision)?;
        let mut ids = Vec::new();
        let limit = req.limit.unwrap_or(usize::MAX);
        coll.walk(req, now, |r, _| {
            ids.push(r.rec.id.clone());
            ids.len() < limit
        });
        for id in &ids {
            coll.remove_raising(id);
        }
        let n = ids.len() as u64;
        self.publish_bulk(
            ns_name,
            ChangeOp::DeleteWhere,
            Some(&req.collection),
            n,
            now,
        );
        Ok(n)
    }

    async fn scan(
        &self,
        ns_name: &str,
        req: &ScanRequest,
        now: Timestamp,
    ) -> Result<Vec<StoredRecord>> {
        let ns = self.namespace(ns_name);
        let ns = ns.read();
        let coll = collection(ns_name, &ns, &req.collection)?;
        let prefix = req.prefix.as_deref().unwrap_or("");
        let start = match &req.after {
            Some(a) if a.as_str() >= prefix => Bound::Excluded(a.as_str()),
            _ => Bound::Included(prefix),
        };
        Ok(coll
            .records
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(id, _)| id.starts_with(prefix))
            .filter(|(_, r)| !r.rec.is_expired(now))
            .take(req.limit)
            .map(|(_, r)| r.rec.clone())
            .collect())
    }

    async fn delete_prefix(
        &self,
        ns_name: &str,
        name: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let coll = ns.collection_mut(ns_name, name)?;
        let ids: Vec<String> = coll
            .records
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(id, _)| id.starts_with(prefix))
            .map(|(id, _)| id.clone())
            .collect();
        let mut live = 0;
        for id in ids {
            if coll
                .remove_raising(&id)
                .is_some_and(|r| !r.rec.is_expired(now))
            {
                live += 1;
            }
        }
        if live > 0 {
            let event = ChangeEvent::new(ChangeOp::DeletePrefix, Some(name), now)
                .id(prefix)
                .count(live);
            self.publish(ns_name, vec![event]);
        }
        Ok(live)
    }

    async fn purge_expired(&self, ns_name: &str, now: Timestamp) -> Result<u64> {
        let ns = self.namespace(ns_name);
        let mut ns = ns.write();
        let mut purged = 0;
        for coll in ns.collections.values_mut() {
            let due: Vec<String> = coll
                .expiry
                .iter()
                .take_while(|(t, _)| *t <= now)
                .map(|(_, id)| id.clone())
                .collect();
            for id in due {
                coll.remove_raising(&id);
                purged += 1;
            }
        }
        self.publish_bulk(ns_name, ChangeOp::Purge, None, purged, now);
        Ok(purged)
    }

    async fn stats(&self, ns_name: &str) -> Result<Vec<CollectionStats>> {
        let ns = self.namespace(ns_name);
        let ns = ns.read();
        Ok(ns
            .collections
            .iter()
            .map(|(name, c)| CollectionStats {
                collection: name.clone(),
                records: c.records.len() as u64,
                bytes: c.bytes,
            })
            .collect())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn watch(
        &self,
        ns: &str,
        after: Option<ChangeToken>,
        now: Timestamp,
    ) -> Result<ChangeStream> {
        if self.inner.capabilities.change_feed == ChangeFeed::None {
            return Err(Error::unsupported(self.name(), "a change feed"));
        }
        Ok(self.inner.changes.watch(ns, after, now))
    }
}
