//! The read side over any ordered key-value engine ([`KvRead`]): point reads, scans, the
//! catalog, the change log, and the query walk (which index it walks, covering copies,
//! sorting by id).

use std::ops::Bound;

use super::schema::{
    self, decode_entries, decode_header, decode_record, decode_spec, entries_hold, index_key,
    record_ref, typed_entries, utf8_id, utf8_id_ref, Tables,
};
use stowage_core::backend::{
    filter_matches, id_span, walk_bound, CollectionStats, HitRef, IdSpan, OnHit, OnRecord,
    Predicate, PredicateOp, QueryHit, QueryRequest, ScanRequest, StoredSpec,
};
use stowage_core::{
    ChangeEvent, ChangeToken, Error, IndexValue, Result, StoredRecord, Timestamp, Version,
};

/// Keys and values as a [`KvRead`] hands them out.
pub type KvPairs<'a, B> = Box<dyn Iterator<Item = Result<(B, B)>> + 'a>;

/// How the shared read side reads one engine: a redb read transaction (one snapshot), or
/// a sled database (each read sees the latest commit).
pub trait KvRead {
    /// An open table.
    type Table;
    /// A key or value in place (a page guard, a reference-counted buffer).
    type Bytes: AsRef<[u8]>;

    /// Whether every read of this view sees the same commit. When not, a query checks each
    /// record it returns against every predicate, since an index entry it walked may be
    /// older than the record it leads to.
    const SNAPSHOT: bool;

    /// The table `name`; `None` when it does not exist (reads never create tables).
    fn table(&self, name: &str) -> Result<Option<Self::Table>>;
    /// The value under `key`.
    fn get(&self, table: &Self::Table, key: &[u8]) -> Result<Option<Self::Bytes>>;
    /// The entries between `lower` and `upper`, in key order or reversed.
    fn range<'a>(
        &self,
        table: &'a Self::Table,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<KvPairs<'a, Self::Bytes>>;
    /// How many entries `table` holds and about how many bytes they take.
    fn size(&self, table: &Self::Table) -> Result<(u64, u64)>;
}

/// Runs a query over `r`, after checking its spec revision.
pub fn run_query<R: KvRead>(
    r: &R,
    ns: &str,
    req: &QueryRequest,
    now: Timestamp,
    collect: Collect,
) -> Result<Found> {
    walk(r, ns, req, now, collect, None)
}

/// Runs a query over `r`, handing each match to `each` in place as it is found
/// ([`stowage_core::backend::Backend::query_each`]).
pub fn query_each<R: KvRead>(
    r: &R,
    ns: &str,
    req: &QueryRequest,
    now: Timestamp,
    each: &mut OnHit<'_>,
) -> Result<()> {
    walk(r, ns, req, now, Collect::Page, Some(each)).map(drop)
}

fn walk<'e, R: KvRead>(
    r: &R,
    ns: &str,
    req: &QueryRequest,
    now: Timestamp,
    collect: Collect,
    each: Option<&'e mut OnHit<'e>>,
) -> Result<Found> {
    let (stored, records) = open_collection(r, ns, &req.collection)?;
    if stored.revision != req.revision {
        return Err(Error::stale_spec(&req.collection));
    }
    QueryRun {
        r,
        tables: Tables::new(ns, &req.collection),
        stored: &stored,
        records: &records,
        req,
        now,
        skip: req.offset,
        limit: req.limit.unwrap_or(usize::MAX),
        collect,
        each,
        emitted: 0,
        found: Found::default(),
        walked: None,
    }
    .run()
}

/// The records table of a collection, or NotFound.
pub fn records<R: KvRead>(r: &R, ns: &str, coll: &str) -> Result<R::Table> {
    r.table(&schema::records_table(ns, coll))?
        .ok_or_else(|| Error::collection_not_found(ns, coll))
}

/// The stored spec of a collection.
pub fn read_spec<R: KvRead>(r: &R, ns: &str, coll: &str) -> Result<Option<StoredSpec>> {
    let Some(catalog) = r.table(schema::CATALOG)? else {
        return Ok(None);
    };
    r.get(&catalog, &schema::catalog_key(ns, coll))?
        .map(|v| decode_spec(coll, v.as_ref()))
        .transpose()
}

/// Every collection of `ns` with its stored spec, by name.
pub fn specs<R: KvRead>(r: &R, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
    let Some(catalog) = r.table(schema::CATALOG)? else {
        return Ok(Vec::new());
    };
    let prefix = schema::catalog_key(ns, "");
    let mut out = Vec::new();
    for item in r.range(&catalog, Bound::Included(&prefix), Bound::Unbounded, false)? {
        let (k, v) = item?;
        let Some(name) = k.as_ref().strip_prefix(prefix.as_slice()) else {
            break;
        };
        let name = utf8_id(name)?;
        let spec = decode_spec(&name, v.as_ref())?;
        out.push((name, spec));
    }
    Ok(out)
}

/// Every namespace with a collection, by name: the catalog's keys, skipping from one
/// namespace to the next.
pub fn namespaces<R: KvRead>(r: &R) -> Result<Vec<String>> {
    let Some(catalog) = r.table(schema::CATALOG)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    let mut from: Vec<u8> = Vec::new();
    loop {
        let mut range = r.range(&catalog, Bound::Included(&from), Bound::Unbounded, false)?;
        let Some(item) = range.next() else {
            return Ok(out);
        };
        let (k, _) = item?;
        let key = k.as_ref();
        let ns = key.split(|b| *b == 0).next().unwrap_or(key);
        out.push(utf8_id(ns)?);
        // Past every key of this namespace: `ns 0x01` sorts after `ns 0x00 …`.
        from = ns.to_vec();
        from.push(1);
    }
}

/// One page of live records in id order.
pub fn scan_page<R: KvRead>(
    r: &R,
    ns: &str,
    req: &ScanRequest,
    now: Timestamp,
) -> Result<Vec<StoredRecord>> {
    let (_, records) = open_collection(r, ns, &req.collection)?;
    let prefix = req.prefix.as_deref().unwrap_or("").as_bytes();
    let lower = match req.after.as_deref().map(str::as_bytes) {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let mut out = Vec::new();
    for item in r.range(&records, lower, Bound::Unbounded, false)? {
        let (k, v) = item?;
        if !k.as_ref().starts_with(prefix) {
            break;
        }
        if decode_header(v.as_ref())?.is_expired(now) {
            continue;
        }
        out.push(decode_record(k.as_ref(), v.as_ref())?);
        if out.len() >= req.limit {
            break;
        }
    }
    Ok(out)
}

/// The logged changes of `ns` after `after`, with a gap event first when the log no
/// longer holds the change right after it (trimmed by the retention).
pub fn changes_after<R: KvRead>(
    r: &R,
    ns: &str,
    after: ChangeToken,
    now: Timestamp,
) -> Result<Vec<ChangeEvent>> {
    let Some(log) = r.table(&schema::changes_table(ns))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let from = schema::encode_token(after.saturating_add(1));
    let range = r.range(&log, Bound::Included(&from), Bound::Unbounded, false)?;
    for (i, item) in range.enumerate() {
        let (k, v) = item?;
        let token = schema::decode_token(k.as_ref());
        if i == 0 && token > after + 1 {
            out.push(ChangeEvent::gap(after, now));
        }
        let mut change = schema::decode_change(v.as_ref())?;
        change.token = token;
        out.push(change);
    }
    Ok(out)
}

/// Records and bytes of every collection of `ns`.
pub fn collection_stats<R: KvRead>(r: &R, ns: &str) -> Result<Vec<CollectionStats>> {
    let mut out = Vec::new();
    for (name, _) in specs(r, ns)? {
        let (records, bytes) = match r.table(&Tables::new(ns, &name).records)? {
            Some(t) => r.size(&t)?,
            None => (0, 0),
        };
        out.push(CollectionStats {
            collection: name,
            records,
            bytes,
        });
    }
    Ok(out)
}

/// The live record with this id.
pub fn read_live<R: KvRead>(
    r: &R,
    records: &R::Table,
    id: &str,
    now: Timestamp,
) -> Result<Option<StoredRecord>> {
    let mut found = None;
    read_live_with(r, records, id, now, &mut |rec| {
        found = Some(rec.to_stored());
        Ok(())
    })?;
    Ok(found)
}

/// Hands the live record with this id to `read` in place, if there is one.
pub fn read_live_with<R: KvRead>(
    r: &R,
    records: &R::Table,
    id: &str,
    now: Timestamp,
    read: &mut OnRecord<'_>,
) -> Result<()> {
    let Some(v) = r.get(records, id.as_bytes())? else {
        return Ok(());
    };
    let v = v.as_ref();
    if decode_header(v)?.is_expired(now) {
        return Ok(());
    }
    read(record_ref(id.as_bytes(), v)?)
}

/// A collection's spec and records table, or NotFound.
fn open_collection<R: KvRead>(r: &R, ns: &str, coll: &str) -> Result<(StoredSpec, R::Table)> {
    let spec = read_spec(r, ns, coll)?.ok_or_else(|| Error::collection_not_found(ns, coll))?;
    Ok((spec, records(r, ns, coll)?))
}

/// What a query run collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collect {
    /// The page of records.
    Page,
    /// Only how many match (records are not decoded).
    Count,
    /// The ids and versions of the matches, for a delete by query.
    Ids,
}

/// What a query run found.
#[derive(Debug, Default)]
pub struct Found {
    /// The page of records ([`Collect::Page`]).
    pub hits: Vec<QueryHit>,
    /// How many matched ([`Collect::Count`]).
    pub count: u64,
    /// The ids and versions that matched ([`Collect::Ids`]).
    pub ids: Vec<(String, Version)>,
}

/// Runs one query over a read transaction, walking an index table when the order or the
/// first predicate allows it.
struct QueryRun<'a, 'e, R: KvRead> {
    r: &'a R,
    tables: Tables,
    stored: &'a StoredSpec,
    records: &'a R::Table,
    req: &'a QueryRequest,
    now: Timestamp,
    skip: u64,
    limit: usize,
    collect: Collect,
    /// Where [`Collect::Page`] hands its matches when set, instead of `found.hits`.
    each: Option<&'e mut OnHit<'e>>,
    /// How many matches went to `each`.
    emitted: usize,
    found: Found,
    /// Without a snapshot: the index whose entries lead to records — each record visited
    /// must still hold the value of the entry that led to it.
    walked: Option<String>,
}

impl<R: KvRead> QueryRun<'_, '_, R> {
    /// Visits one match of an index, whose entry held `value` (sortable) for record `id`:
    /// the copy a covering index holds (`stored`), or the record looked up by id. Adds the
    /// record if it is live and matches `rest` (the predicates the walk has not already
    /// established); false once the page is full.
    fn visit_entry(
        &mut self,
        id: &[u8],
        value: &[u8],
        stored: Option<&[u8]>,
        order_value: Option<IndexValue>,
        rest: &[Predicate],
    ) -> Result<bool> {
        if let Some(bytes) = stored {
            self.visit_stored(id, value, bytes, order_value, rest)
        } else {
            let Some(bytes) = self.r.get(self.records, id)? else {
                return Ok(true);
            };
            self.visit_stored(id, value, bytes.as_ref(), order_value, rest)
        }
    }

    /// [`QueryRun::visit_entry`] with the record in hand.
    fn visit_stored(
        &mut self,
        id: &[u8],
        value: &[u8],
        bytes: &[u8],
        order_value: Option<IndexValue>,
        rest: &[Predicate],
    ) -> Result<bool> {
        if decode_header(bytes)?.is_expired(self.now) {
            return Ok(true);
        }
        // Without a snapshot the record may have moved since its entry was read: it still
        // holds the value, so the predicates the entry passed still pass, or it is skipped.
        if let Some(index) = &self.walked {
            if !entries_hold(bytes, index, value)? {
                return Ok(true);
            }
        }
        // Decoding a record's index entries costs more than the lookup: only when needed.
        if !rest.is_empty() {
            let entries = typed_entries(&self.stored.spec, decode_entries(bytes)?)?;
            if !filter_matches(rest, utf8_id_ref(id)?, &entries) {
                return Ok(true);
            }
        }
        self.emit(id, bytes, order_value)
    }

    /// Takes a live match: skips it for the offset, counts it, or decodes it into the page;
    /// false once the page is full.
    fn emit(&mut self, id: &[u8], bytes: &[u8], order_value: Option<IndexValue>) -> Result<bool> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(true);
        }
        match self.collect {
            Collect::Count => {
                self.found.count += 1;
                Ok(true)
            }
            Collect::Ids => {
                let version = decode_header(bytes)?.version;
                self.found.ids.push((utf8_id(id)?, version));
                Ok(self.found.ids.len() < self.limit)
            }
            Collect::Page => {
                if let Some(each) = &mut self.each {
                    each(HitRef {
                        record: record_ref(id, bytes)?,
                        order_value: order_value.as_ref(),
                    })?;
                    self.emitted += 1;
                    Ok(self.emitted < self.limit)
                } else {
                    self.found.hits.push(QueryHit {
                        record: decode_record(id, bytes)?,
                        order_value,
                    });
                    Ok(self.found.hits.len() < self.limit)
                }
            }
        }
    }

    /// An index's type, and whether it is covering.
    fn index_kind(&self, index: &str) -> Result<(stowage_core::IndexType, bool)> {
        self.stored
            .spec
            .index_named(index)
            .map(|i| (i.index_type, i.covering))
            .ok_or_else(|| Error::invalid(format!("{index:?} is not an index of this collection")))
    }

    /// What the walk found.
    fn run(mut self) -> Result<Found> {
        let req = self.req;
        match &req.order.index {
            Some(index) => self.by_index(index)?,
            None => self.by_id()?,
        }
        Ok(self.found)
    }

    fn by_index(&mut self, index: &str) -> Result<()> {
        let (ty, covering) = self.index_kind(index)?;
        let Some(table) = self.r.table(&self.tables.index(index))? else {
            return Ok(());
        };
        let req = self.req;
        let bound = walk_bound(&req.filter, index);
        // The walked index holds one value per record (ordering by a multi-valued index is
        // refused), so its own predicates are tested on the key; the rest on the record.
        let (on_index, rest): (Vec<Predicate>, Vec<Predicate>) =
            req.filter.iter().cloned().partition(|p| p.index == index);
        if !R::SNAPSHOT {
            self.walked = Some(index.to_owned());
        }
        let passes = |v: &IndexValue| on_index.iter().all(|p| p.op.test(v));
        let cursor = self
            .req
            .after
            .as_ref()
            .and_then(|c| c.value.as_ref().map(|v| index_key(v, &c.id)));
        if self.req.order.descending {
            let end = cursor.map_or(Bound::Unbounded, Bound::Excluded);
            let range = self.r.range(&table, Bound::Unbounded, as_ref(&end), true)?;
            for item in range {
                let (k, stored) = item?;
                let (v, id) = IndexValue::decode_sortable(ty, k.as_ref())?;
                if bound.is_some_and(|op| op.is_past_upper(&v)) {
                    continue;
                }
                if bound.is_some_and(|op| op.is_below_lower(&v)) {
                    break;
                }
                let value = &k.as_ref()[..k.as_ref().len() - id.len()];
                if passes(&v)
                    && !self.visit_entry(
                        id,
                        value,
                        covering.then(|| stored.as_ref()),
                        Some(v),
                        &rest,
                    )?
                {
                    break;
                }
            }
        } else {
            let lower = bound.and_then(PredicateOp::lower_value).map(|v| {
                let mut b = Vec::new();
                v.encode_sortable(&mut b);
                b
            });
            let start = match (cursor, lower) {
                (Some(c), Some(l)) if c < l => Bound::Included(l),
                (Some(c), _) => Bound::Excluded(c),
                (None, Some(l)) => Bound::Included(l),
                (None, None) => Bound::Unbounded,
            };
            let range = self
                .r
                .range(&table, as_ref(&start), Bound::Unbounded, false)?;
            for item in range {
                let (k, stored) = item?;
                let (v, id) = IndexValue::decode_sortable(ty, k.as_ref())?;
                if bound.is_some_and(|op| op.is_past_upper(&v)) {
                    break;
                }
                let value = &k.as_ref()[..k.as_ref().len() - id.len()];
                if passes(&v)
                    && !self.visit_entry(
                        id,
                        value,
                        covering.then(|| stored.as_ref()),
                        Some(v),
                        &rest,
                    )?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The entries the index holds under values that pass `op` (in index order, possibly
    /// naming a record twice).
    fn candidates(
        &self,
        index: &str,
        op: &PredicateOp,
        out: &mut Vec<Candidate<R::Bytes>>,
    ) -> Result<()> {
        if let PredicateOp::In(values) = op {
            for v in values {
                self.candidates(index, &PredicateOp::Eq(v.clone()), out)?;
            }
            return Ok(());
        }
        let (ty, covering) = self.index_kind(index)?;
        let Some(table) = self.r.table(&self.tables.index(index))? else {
            return Ok(());
        };
        let start = op.lower_value().map(|v| {
            let mut b = Vec::new();
            v.encode_sortable(&mut b);
            b
        });
        let lower = match &start {
            Some(s) => Bound::Included(s.as_slice()),
            None => Bound::Unbounded,
        };
        for item in self.r.range(&table, lower, Bound::Unbounded, false)? {
            let (key, stored) = item?;
            let (v, id) = IndexValue::decode_sortable(ty, key.as_ref())?;
            if op.is_past_upper(&v) {
                break;
            }
            if !op.test(&v) {
                continue;
            }
            if out.len() < MAX_HELD_ENTRIES {
                // The guards keep the entry's page alive: no copy of the id, nor of the
                // record a covering index holds, until it is emitted.
                let id_at = key.as_ref().len() - id.len();
                out.push(Candidate::Held {
                    key,
                    id_at,
                    stored: covering.then_some(stored),
                });
            } else {
                let id_at = key.as_ref().len() - id.len();
                out.push(Candidate::Copied {
                    key: key.as_ref().to_vec(),
                    id_at,
                });
            }
        }
        Ok(())
    }

    fn by_id(&mut self) -> Result<()> {
        let req = self.req;
        let after = req.after.as_ref().map(|c| c.id.clone());
        let desc = req.order.descending;
        if let Some(p) = req.filter.first().filter(|p| !p.on_id()) {
            // The first predicate narrows the candidates through its index.
            let mut found = Vec::new();
            self.candidates(&p.index, &p.op, &mut found)?;
            // Sorting a vector beats a tree for the one pass that follows. The ids are
            // sorted as slices beside their positions: cheaper to compare and move than
            // the entries, whose bytes sit behind the engine's page guards.
            let mut order: Vec<(&[u8], usize)> =
                found.iter().enumerate().map(|(i, c)| (c.id(), i)).collect();
            order.sort_unstable_by(|a, b| a.0.cmp(b.0));
            order.dedup_by(|a, b| a.0 == b.0);
            if self.collect == Collect::Page && self.each.is_none() {
                self.found.hits.reserve(order.len().min(self.limit));
            }
            let in_range = |(id, _): &&(&[u8], usize)| match &after {
                None => true,
                Some(a) if desc => *id < a.as_bytes(),
                Some(a) => *id > a.as_bytes(),
            };
            let ordered: Box<dyn Iterator<Item = &(&[u8], usize)>> = if desc {
                Box::new(order.iter().rev().filter(in_range))
            } else {
                Box::new(order.iter().filter(in_range))
            };
            // Every candidate passed the first predicate already.
            if !R::SNAPSHOT {
                self.walked = Some(p.index.clone());
            }
            for &(id, i) in ordered {
                let c = &found[i];
                if !self.visit_entry(id, c.value(), c.stored(), None, &req.filter[1..])? {
                    break;
                }
            }
            return Ok(());
        }
        // Else the ids the filter names, or the range it bounds them to; every predicate is
        // on the id then (index ones would have come first), tested on each record.
        let span = id_span(&req.filter).past(after.as_deref(), desc);
        if let IdSpan::Exact(ids) = &span {
            let ordered: Box<dyn Iterator<Item = &String>> = if desc {
                Box::new(ids.iter().rev())
            } else {
                Box::new(ids.iter())
            };
            for id in ordered {
                let Some(bytes) = self.r.get(self.records, id.as_bytes())? else {
                    continue;
                };
                if !self.visit_stored(id.as_bytes(), &[], bytes.as_ref(), None, &req.filter)? {
                    break;
                }
            }
            return Ok(());
        }
        let Some((lower, upper)) = span.bounds() else {
            return Ok(());
        };
        for item in self.r.range(
            self.records,
            lower.map(str::as_bytes),
            upper.map(str::as_bytes),
            desc,
        )? {
            let (k, v) = item?;
            if !self.visit_stored(k.as_ref(), &[], v.as_ref(), None, &req.filter)? {
                break;
            }
        }
        Ok(())
    }
}

/// How many index entries a query holds in place while it sorts what its index found.
/// Each pins its page (and a covering entry its record copy); past this, keys are copied
/// out and their records looked up, so memory stays near 60 bytes per further match.
const MAX_HELD_ENTRIES: usize = 16_384;

/// A match an index walk found, to be sorted by id before it is visited.
enum Candidate<B> {
    /// The entry in place: its key (value ‖ id), where the id starts, and the record copy
    /// when the index is covering.
    Held {
        key: B,
        id_at: usize,
        stored: Option<B>,
    },
    /// A key (value ‖ id) copied out, past [`MAX_HELD_ENTRIES`].
    Copied { key: Vec<u8>, id_at: usize },
}

impl<B: AsRef<[u8]>> Candidate<B> {
    fn key(&self) -> (&[u8], usize) {
        match self {
            Candidate::Held { key, id_at, .. } => (key.as_ref(), *id_at),
            Candidate::Copied { key, id_at } => (key, *id_at),
        }
    }

    fn id(&self) -> &[u8] {
        let (key, id_at) = self.key();
        &key[id_at..]
    }

    /// The index value (sortable) of the entry.
    fn value(&self) -> &[u8] {
        let (key, id_at) = self.key();
        &key[..id_at]
    }

    fn stored(&self) -> Option<&[u8]> {
        match self {
            Candidate::Held {
                stored: Some(s), ..
            } => Some(s.as_ref()),
            _ => None,
        }
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
