//! The read side: opening tables in a read transaction, point reads, scans, and the
//! query walk (which index it walks, covering copies, sorting by id).

use std::ops::Bound;

use redb::{AccessGuard, ReadOnlyTable, ReadTransaction, ReadableTableMetadata, TableError};
use stowage_core::backend::{
    filter_matches, walk_bound, CollectionStats, Predicate, PredicateOp, QueryHit, QueryRequest,
    ScanRequest, StoredSpec,
};
use stowage_core::{
    ChangeEvent, ChangeToken, Error, IndexValue, Result, StoredRecord, Timestamp, Version,
};

use crate::error::{bad_id, storage_error};
use crate::open::RedbBackend;
use crate::schema::{
    self, decode_entries, decode_header, decode_record, decode_spec, index_key, typed_entries,
    Tables,
};

/// What a query run collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collect {
    /// The page of records.
    Page,
    /// Only how many match (records are not decoded).
    Count,
    /// The ids and versions of the matches, for a delete by query.
    Ids,
}

/// What a query run found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) hits: Vec<QueryHit>,
    pub(crate) count: u64,
    pub(crate) ids: Vec<(String, Version)>,
}

impl RedbBackend {
    /// Runs a query in a fresh read transaction, after checking its spec revision.
    pub(crate) fn run_query(
        &self,
        ns: &str,
        req: &QueryRequest,
        now: Timestamp,
        collect: Collect,
    ) -> Result<Found> {
        let rtx = self.read()?;
        let (stored, records) = open_collection(&rtx, ns, &req.collection)?;
        if stored.revision != req.revision {
            return Err(Error::stale_spec(&req.collection));
        }
        QueryRun {
            rtx: &rtx,
            tables: Tables::new(ns, &req.collection),
            stored: &stored,
            records: &records,
            req,
            now,
            skip: req.offset,
            limit: req.limit.unwrap_or(usize::MAX),
            collect,
            found: Found::default(),
        }
        .run()
    }

    /// The records table of a collection, in a fresh read transaction.
    pub(crate) fn records(&self, ns: &str, coll: &str) -> Result<RoTable> {
        let rtx = self.read()?;
        open_ro(&rtx, &schema::records_table(ns, coll))?
            .ok_or_else(|| Error::collection_not_found(ns, coll))
    }

    /// Every collection of `ns` with its stored spec, by name.
    pub(crate) fn specs(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        let rtx = self.read()?;
        let Some(catalog) = open_ro(&rtx, schema::CATALOG)? else {
            return Ok(Vec::new());
        };
        let prefix = schema::catalog_key(ns, "");
        let mut out = Vec::new();
        for item in catalog
            .range::<&[u8]>(prefix.as_slice()..)
            .map_err(storage_error)?
        {
            let (k, v) = item.map_err(storage_error)?;
            let Some(name) = k.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            let name = utf8_id(name)?;
            let spec = decode_spec(&name, v.value())?;
            out.push((name, spec));
        }
        Ok(out)
    }

    /// Every namespace with a collection, by name: the catalog's keys, skipping from one
    /// namespace to the next.
    pub(crate) fn namespaces(&self) -> Result<Vec<String>> {
        let rtx = self.read()?;
        let Some(catalog) = open_ro(&rtx, schema::CATALOG)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<String> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut range = catalog
                .range::<&[u8]>(from.as_slice()..)
                .map_err(storage_error)?;
            let Some(item) = range.next() else {
                return Ok(out);
            };
            let (k, _) = item.map_err(storage_error)?;
            let key = k.value();
            let ns = key.split(|b| *b == 0).next().unwrap_or(key);
            out.push(utf8_id(ns)?);
            // Past every key of this namespace: `ns 0x01` sorts after `ns 0x00 …`.
            from = ns.to_vec();
            from.push(1);
        }
    }

    /// One page of live records in id order.
    pub(crate) fn scan_page(
        &self,
        ns: &str,
        req: &ScanRequest,
        now: Timestamp,
    ) -> Result<Vec<StoredRecord>> {
        let rtx = self.read()?;
        let (_, records) = open_collection(&rtx, ns, &req.collection)?;
        let prefix = req.prefix.as_deref().unwrap_or("").as_bytes();
        let range = match req.after.as_deref().map(str::as_bytes) {
            Some(a) if a >= prefix => {
                records.range::<&[u8]>((Bound::Excluded(a), Bound::Unbounded))
            }
            _ => records.range::<&[u8]>(prefix..),
        }
        .map_err(storage_error)?;
        let mut out = Vec::new();
        for item in range {
            let (k, v) = item.map_err(storage_error)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            if decode_header(v.value())?.is_expired(now) {
                continue;
            }
            out.push(decode_record(utf8_id(k.value())?, v.value())?);
            if out.len() >= req.limit {
                break;
            }
        }
        Ok(out)
    }

    /// The logged changes of `ns` after `after`, with a gap event first when the log no
    /// longer holds the change right after it (trimmed by the retention).
    pub(crate) fn changes_after(
        &self,
        ns: &str,
        after: ChangeToken,
        now: Timestamp,
    ) -> Result<Vec<ChangeEvent>> {
        let rtx = self.read()?;
        let Some(log) = open_ro(&rtx, &schema::changes_table(ns))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let from = schema::encode_token(after.saturating_add(1));
        for (i, item) in log
            .range::<&[u8]>(from.as_slice()..)
            .map_err(storage_error)?
            .enumerate()
        {
            let (k, v) = item.map_err(storage_error)?;
            let token = schema::decode_token(k.value());
            if i == 0 && token > after + 1 {
                out.push(ChangeEvent::gap(after, now));
            }
            let mut change = schema::decode_change(v.value())?;
            change.token = token;
            out.push(change);
        }
        Ok(out)
    }

    /// Records and bytes of every collection of `ns`.
    pub(crate) fn collection_stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        let specs = self.specs(ns)?;
        let rtx = self.read()?;
        let mut out = Vec::with_capacity(specs.len());
        for (name, _) in specs {
            let (records, bytes) = match open_ro(&rtx, &Tables::new(ns, &name).records)? {
                Some(t) => {
                    let stats = t.stats().map_err(storage_error)?;
                    (t.len().map_err(storage_error)?, stats.stored_bytes())
                }
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
}

/// The live record with this id.
pub(crate) fn read_live(
    records: &RoTable,
    id: &str,
    now: Timestamp,
) -> Result<Option<StoredRecord>> {
    let Some(v) = records.get(id.as_bytes()).map_err(storage_error)? else {
        return Ok(None);
    };
    let v = v.value();
    if decode_header(v)?.is_expired(now) {
        return Ok(None);
    }
    decode_record(id, v).map(Some)
}

pub(crate) type RoTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Opens a table for reading; `None` when it does not exist (yet).
pub(crate) fn open_ro(rtx: &ReadTransaction, name: &str) -> Result<Option<RoTable>> {
    match rtx.open_table(schema::table(name)) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(storage_error(e)),
    }
}

pub(crate) fn read_spec(rtx: &ReadTransaction, ns: &str, coll: &str) -> Result<Option<StoredSpec>> {
    let Some(catalog) = open_ro(rtx, schema::CATALOG)? else {
        return Ok(None);
    };
    let got = catalog
        .get(schema::catalog_key(ns, coll).as_slice())
        .map_err(storage_error)?;
    got.map(|v| decode_spec(coll, v.value())).transpose()
}

/// A collection's spec and records table, or NotFound.
fn open_collection(rtx: &ReadTransaction, ns: &str, coll: &str) -> Result<(StoredSpec, RoTable)> {
    let spec = read_spec(rtx, ns, coll)?.ok_or_else(|| Error::collection_not_found(ns, coll))?;
    let records = open_ro(rtx, &Tables::new(ns, coll).records)?
        .ok_or_else(|| Error::collection_not_found(ns, coll))?;
    Ok((spec, records))
}

/// Runs one query over a read transaction, walking an index table when the order or the
/// first predicate allows it.
struct QueryRun<'a> {
    rtx: &'a ReadTransaction,
    tables: Tables,
    stored: &'a StoredSpec,
    records: &'a RoTable,
    req: &'a QueryRequest,
    now: Timestamp,
    skip: u64,
    limit: usize,
    collect: Collect,
    found: Found,
}

impl QueryRun<'_> {
    /// Adds the record with this id if it is live and matches `rest` (the predicates the
    /// walk has not already established); false once the page is full.
    fn visit(
        &mut self,
        id: &[u8],
        order_value: Option<IndexValue>,
        rest: &[Predicate],
    ) -> Result<bool> {
        let Some(bytes) = self.records.get(id).map_err(storage_error)? else {
            return Ok(true);
        };
        self.visit_stored(id, bytes.value(), order_value, rest)
    }

    /// [`QueryRun::visit`] for a record already in hand (from a covering index).
    fn visit_stored(
        &mut self,
        id: &[u8],
        bytes: &[u8],
        order_value: Option<IndexValue>,
        rest: &[Predicate],
    ) -> Result<bool> {
        if decode_header(bytes)?.is_expired(self.now) {
            return Ok(true);
        }
        // Decoding a record's index entries costs more than the lookup: only when needed.
        if !rest.is_empty() {
            let entries = typed_entries(&self.stored.spec, decode_entries(bytes)?)?;
            if !filter_matches(rest, &entries) {
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
                self.found.hits.push(QueryHit {
                    record: decode_record(utf8_id(id)?, bytes)?,
                    order_value,
                });
                Ok(self.found.hits.len() < self.limit)
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
        let Some(table) = open_ro(self.rtx, &self.tables.index(index))? else {
            return Ok(());
        };
        let req = self.req;
        let bound = walk_bound(&req.filter, index);
        // The walked index holds one value per record (ordering by a multi-valued index is
        // refused), so its own predicates are tested on the key; the rest on the record.
        let (on_index, rest): (Vec<Predicate>, Vec<Predicate>) =
            req.filter.iter().cloned().partition(|p| p.index == index);
        let passes = |v: &IndexValue| on_index.iter().all(|p| p.op.test(v));
        let cursor = self
            .req
            .after
            .as_ref()
            .and_then(|c| c.value.as_ref().map(|v| index_key(v, &c.id)));
        if !self.req.order.descending {
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
            let range = table
                .range::<&[u8]>((as_ref(&start), Bound::Unbounded))
                .map_err(storage_error)?;
            for item in range {
                let (k, stored) = item.map_err(storage_error)?;
                let (v, id) = IndexValue::decode_sortable(ty, k.value())?;
                if bound.is_some_and(|op| op.is_past_upper(&v)) {
                    break;
                }
                if passes(&v)
                    && !self.visit_entry(id, covering.then(|| stored.value()), Some(v), &rest)?
                {
                    break;
                }
            }
        } else {
            let end = cursor.map_or(Bound::Unbounded, Bound::Excluded);
            let range = table
                .range::<&[u8]>((Bound::Unbounded, as_ref(&end)))
                .map_err(storage_error)?;
            for item in range.rev() {
                let (k, stored) = item.map_err(storage_error)?;
                let (v, id) = IndexValue::decode_sortable(ty, k.value())?;
                if bound.is_some_and(|op| op.is_past_upper(&v)) {
                    continue;
                }
                if bound.is_some_and(|op| op.is_below_lower(&v)) {
                    break;
                }
                if passes(&v)
                    && !self.visit_entry(id, covering.then(|| stored.value()), Some(v), &rest)?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Visits one match of a walked index: the copy a covering index holds, or the record
    /// looked up by id.
    fn visit_entry(
        &mut self,
        id: &[u8],
        stored: Option<&[u8]>,
        order_value: Option<IndexValue>,
        rest: &[Predicate],
    ) -> Result<bool> {
        match stored {
            Some(bytes) => self.visit_stored(id, bytes, order_value, rest),
            None => self.visit(id, order_value, rest),
        }
    }

    /// The entries the index holds under values that pass `op` (in index order, possibly
    /// naming a record twice).
    fn candidates(&self, index: &str, op: &PredicateOp, out: &mut Vec<Candidate>) -> Result<()> {
        if let PredicateOp::In(values) = op {
            for v in values {
                self.candidates(index, &PredicateOp::Eq(v.clone()), out)?;
            }
            return Ok(());
        }
        let (ty, covering) = self.index_kind(index)?;
        let Some(table) = open_ro(self.rtx, &self.tables.index(index))? else {
            return Ok(());
        };
        let start = op.lower_value().map(|v| {
            let mut b = Vec::new();
            v.encode_sortable(&mut b);
            b
        });
        let range = match &start {
            Some(s) => table.range::<&[u8]>(s.as_slice()..),
            None => table.range::<&[u8]>(..),
        }
        .map_err(storage_error)?;
        for item in range {
            let (key, stored) = item.map_err(storage_error)?;
            let (v, id) = IndexValue::decode_sortable(ty, key.value())?;
            if op.is_past_upper(&v) {
                break;
            }
            if !op.test(&v) {
                continue;
            }
            if out.len() < MAX_HELD_ENTRIES {
                // The guards keep the entry's page alive: no copy of the id, nor of the
                // record a covering index holds, until it is emitted.
                let id_at = key.value().len() - id.len();
                out.push(Candidate::Held {
                    key,
                    id_at,
                    stored: covering.then_some(stored),
                });
            } else {
                out.push(Candidate::Id(id.to_vec()));
            }
        }
        Ok(())
    }

    fn by_id(&mut self) -> Result<()> {
        let req = self.req;
        let after = req.after.as_ref().map(|c| c.id.clone());
        let desc = req.order.descending;
        if let Some(p) = req.filter.first() {
            // The first predicate narrows the candidates through its index.
            let mut found = Vec::new();
            self.candidates(&p.index, &p.op, &mut found)?;
            // Sorting a vector beats a tree for the one pass that follows.
            found.sort_unstable_by(|a, b| a.id().cmp(b.id()));
            found.dedup_by(|a, b| a.id() == b.id());
            if self.collect == Collect::Page {
                self.found.hits.reserve(found.len().min(self.limit));
            }
            let in_range = |c: &Candidate| match &after {
                None => true,
                Some(a) if desc => c.id() < a.as_bytes(),
                Some(a) => c.id() > a.as_bytes(),
            };
            let ordered: Box<dyn Iterator<Item = Candidate>> = if desc {
                Box::new(found.into_iter().rev().filter(in_range))
            } else {
                Box::new(found.into_iter().filter(in_range))
            };
            // Every candidate passed the first predicate already.
            for c in ordered {
                if !self.visit_entry(c.id(), c.stored(), None, &req.filter[1..])? {
                    break;
                }
            }
            return Ok(());
        }
        let bound = after.as_ref().map(|a| a.as_bytes());
        let range = match (bound, desc) {
            (None, _) => self.records.range::<&[u8]>(..),
            (Some(a), false) => self
                .records
                .range::<&[u8]>((Bound::Excluded(a), Bound::Unbounded)),
            (Some(a), true) => self.records.range::<&[u8]>(..a),
        }
        .map_err(storage_error)?;
        let iter: Box<dyn Iterator<Item = _>> = if desc {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for item in iter {
            let (k, v) = item.map_err(storage_error)?;
            if decode_header(v.value())?.is_expired(self.now) {
                continue;
            }
            if !self.emit(k.value(), v.value(), None)? {
                break;
            }
        }
        Ok(())
    }
}

/// How many index entries a query holds in place while it sorts what its index found.
/// Each pins its page (and a covering entry its record copy); past this, ids are copied
/// out and their records looked up, so memory stays near 40 bytes per further match.
const MAX_HELD_ENTRIES: usize = 16_384;

/// A match an index walk found, to be sorted by id before it is visited.
enum Candidate {
    /// The entry in place: its key (value ‖ id), where the id starts, and the record copy
    /// when the index is covering.
    Held {
        key: AccessGuard<'static, &'static [u8]>,
        id_at: usize,
        stored: Option<AccessGuard<'static, &'static [u8]>>,
    },
    /// An id copied out, past [`MAX_HELD_ENTRIES`].
    Id(Vec<u8>),
}

impl Candidate {
    fn id(&self) -> &[u8] {
        match self {
            Candidate::Held { key, id_at, .. } => &key.value()[*id_at..],
            Candidate::Id(id) => id,
        }
    }

    fn stored(&self) -> Option<&[u8]> {
        match self {
            Candidate::Held {
                stored: Some(s), ..
            } => Some(s.value()),
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

pub(crate) fn utf8_id(k: &[u8]) -> Result<String> {
    String::from_utf8(k.to_vec()).map_err(|_| bad_id())
}
