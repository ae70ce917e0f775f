//! [`RedbBackend`]: reads on the caller's thread, writes through the group-commit writer.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    AccessGuard, Database, DatabaseError, ReadOnlyDatabase, ReadOnlyTable, ReadTransaction,
    ReadableDatabase, ReadableTableMetadata, TableError,
};
use stowage_core::backend::{
    filter_matches, walk_bound, Backend, Capabilities, CollectionStats, IndexFill, Precondition,
    Predicate, PredicateOp, QueryHit, QueryRequest, ScanRequest, WriteAction, WriteOp, WriteResult,
};
use stowage_core::{CollectionSpec, Error, ErrorKind, IndexValue, Result, StoredRecord, Timestamp};

use crate::config::RedbConfig;
use crate::group_commit::{GroupCommit, TableId, Txn};
use crate::schema::{
    self, decode_entries, decode_header, decode_record, decode_spec, encode_record, expiry_key,
    index_key, sortable_entries, typed_entries, StoredEntries, Tables, FORMAT_KEY, FORMAT_VERSION,
};

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Records in one redb file: a table per collection, a table per index, an expiry table per
/// collection, and the catalog. Every write call is one write transaction, shared with the
/// concurrent writers of the same moment (group commit).
///
/// Cloning shares the open file. The file is closed when the last clone is dropped, after
/// the writer has committed everything it was given.
#[derive(Debug, Clone)]
pub struct RedbBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // Field order matters: the writer stops (and commits) before the database closes.
    writer: GroupCommit,
    db: Arc<Database>,
    path: PathBuf,
}

/// Maps a redb error onto a portable kind.
pub(crate) fn storage_error(e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    let kind = match &e {
        redb::Error::Corrupted(_) => ErrorKind::Corrupted,
        redb::Error::ValueTooLarge(_) => ErrorKind::InvalidInput,
        redb::Error::Io(_) | redb::Error::DatabaseAlreadyOpen | redb::Error::PreviousIo => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("redb: {e}")).with_source(e)
}

fn open_error(path: &Path, e: DatabaseError) -> Error {
    match e {
        DatabaseError::DatabaseAlreadyOpen => Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is already open in another process (or by another store of this one): \
                 a redb store has one owner at a time",
                path.display()
            ),
        ),
        DatabaseError::UpgradeRequired(v) => Error::invalid(format!(
            "{} uses redb file format {v}, which this build cannot open",
            path.display()
        )),
        other => storage_error(other),
    }
}

impl RedbBackend {
    /// Opens (or creates) the store at `config.path`.
    ///
    /// A file that is not a Stowage store — not a redb file, or a redb file without Stowage's
    /// format marker — and a store written by a newer format are refused with InvalidInput,
    /// and the file is not modified. A file another process holds open is refused with
    /// Unavailable at once, without waiting.
    pub fn open(config: RedbConfig) -> Result<Self> {
        let path = config.path.clone();
        let existing = std::fs::metadata(&path)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        if existing {
            check_magic(&path)?;
            // Read the format through a read-only open first, so a refused file is never
            // written to. A file that needs crash recovery cannot be opened read-only; the
            // writable open below recovers it and checks again.
            match ReadOnlyDatabase::open(&path) {
                Ok(ro) => {
                    check_format(&ro, &path)?;
                    drop(ro);
                }
                Err(DatabaseError::RepairAborted) => {}
                Err(e) => return Err(open_error(&path, e)),
            }
        } else if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        let db = redb::Builder::new()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        if check_format(&db, &path)? == Format::Fresh {
            let txn = db.begin_write().map_err(storage_error)?;
            {
                let mut meta = txn
                    .open_table(schema::table(schema::META))
                    .map_err(storage_error)?;
                meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
                    .map_err(storage_error)?;
                txn.open_table(schema::table(schema::CATALOG))
                    .map_err(storage_error)?;
            }
            txn.commit().map_err(storage_error)?;
        }
        let db = Arc::new(db);
        let writer = GroupCommit::start(db.clone(), config.durability)?;
        Ok(RedbBackend {
            inner: Arc::new(Inner { writer, db, path }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many write transactions this handle has committed. With concurrent writers it
    /// is far below the number of writes: they share commits.
    pub fn commits(&self) -> u64 {
        self.inner.writer.commits()
    }

    fn read(&self) -> Result<ReadTransaction> {
        self.inner.db.begin_read().map_err(storage_error)
    }

    /// Runs a query in a fresh read transaction: the page, or with `count_only` the number
    /// of matches (records are then not decoded).
    fn run_query(
        &self,
        ns: &str,
        req: &QueryRequest,
        now: Timestamp,
        count_only: bool,
    ) -> Result<(Vec<QueryHit>, u64)> {
        let rtx = self.read()?;
        let (spec, records) = open_collection(&rtx, ns, &req.collection)?;
        QueryRun {
            rtx: &rtx,
            tables: Tables::new(ns, &req.collection),
            spec: &spec,
            records: &records,
            req,
            now,
            skip: req.offset,
            limit: req.limit.unwrap_or(usize::MAX),
            hits: Vec::new(),
            count_only,
            counted: 0,
        }
        .run()
    }

    /// The records table of a collection, in a fresh read transaction.
    fn records(&self, ns: &str, coll: &str) -> Result<RoTable> {
        let rtx = self.read()?;
        open_ro(&rtx, &schema::records_table(ns, coll))?
            .ok_or_else(|| Error::collection_not_found(ns, coll))
    }
}

/// The live record with this id.
fn read_live(records: &RoTable, id: &str, now: Timestamp) -> Result<Option<StoredRecord>> {
    let Some(v) = records.get(id.as_bytes()).map_err(storage_error)? else {
        return Ok(None);
    };
    let v = v.value();
    if decode_header(v)?.is_expired(now) {
        return Ok(None);
    }
    decode_record(id, v).map(Some)
}

fn check_magic(path: &Path) -> Result<()> {
    let mut head = [0u8; 9];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    if n < head.len() || head != REDB_MAGIC {
        return Err(Error::invalid(format!(
            "{} is not a Stowage store: it is not a redb file (left untouched)",
            path.display()
        )));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    Fresh,
    Current,
}

fn check_format(db: &impl ReadableDatabase, path: &Path) -> Result<Format> {
    let rtx = db.begin_read().map_err(storage_error)?;
    let Some(meta) = open_ro(&rtx, schema::META)? else {
        let tables = rtx.list_tables().map_err(storage_error)?.count();
        if tables > 0 {
            return Err(Error::invalid(format!(
                "{} is a redb file but not a Stowage store: it holds {tables} other table(s) \
                 and no Stowage format marker (left untouched)",
                path.display()
            )));
        }
        return Ok(Format::Fresh);
    };
    let version = meta
        .get(FORMAT_KEY)
        .map_err(storage_error)?
        .and_then(|v| v.value().try_into().ok().map(u32::from_le_bytes))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupted,
                format!("{}: Stowage format marker is unreadable", path.display()),
            )
        })?;
    if version > FORMAT_VERSION {
        return Err(Error::invalid(format!(
            "{} was written by a newer Stowage (store format {version}; this build reads up to \
             {FORMAT_VERSION}): upgrade Stowage to open it (left untouched)",
            path.display()
        )));
    }
    Ok(Format::Current)
}

type RoTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Opens a table for reading; `None` when it does not exist (yet).
fn open_ro(rtx: &ReadTransaction, name: &str) -> Result<Option<RoTable>> {
    match rtx.open_table(schema::table(name)) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(storage_error(e)),
    }
}

fn read_spec(rtx: &ReadTransaction, ns: &str, coll: &str) -> Result<Option<CollectionSpec>> {
    let Some(catalog) = open_ro(rtx, schema::CATALOG)? else {
        return Ok(None);
    };
    let got = catalog
        .get(schema::catalog_key(ns, coll).as_slice())
        .map_err(storage_error)?;
    got.map(|v| decode_spec(coll, v.value())).transpose()
}

/// A collection's spec and records table, or NotFound.
fn open_collection(
    rtx: &ReadTransaction,
    ns: &str,
    coll: &str,
) -> Result<(CollectionSpec, RoTable)> {
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
    spec: &'a CollectionSpec,
    records: &'a RoTable,
    req: &'a QueryRequest,
    now: Timestamp,
    skip: u64,
    limit: usize,
    hits: Vec<QueryHit>,
    /// Count matches without decoding them (for `count`).
    count_only: bool,
    counted: u64,
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
            let entries = typed_entries(self.spec, decode_entries(bytes)?)?;
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
        if self.count_only {
            self.counted += 1;
            return Ok(true);
        }
        self.hits.push(QueryHit {
            record: decode_record(utf8_id(id)?, bytes)?,
            order_value,
        });
        Ok(self.hits.len() < self.limit)
    }

    /// An index's type, and whether it is covering.
    fn index_kind(&self, index: &str) -> Result<(stowage_core::IndexType, bool)> {
        self.spec
            .index_named(index)
            .map(|i| (i.index_type, i.covering))
            .ok_or_else(|| Error::invalid(format!("{index:?} is not an index of this collection")))
    }

    /// The page, and how many matched when counting.
    fn run(mut self) -> Result<(Vec<QueryHit>, u64)> {
        let req = self.req;
        match &req.order.index {
            Some(index) => self.by_index(index)?,
            None => self.by_id()?,
        }
        Ok((self.hits, self.counted))
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
            self.hits.reserve(found.len().min(self.limit));
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

fn utf8_id(k: &[u8]) -> Result<String> {
    String::from_utf8(k.to_vec())
        .map_err(|_| Error::new(ErrorKind::Corrupted, "a stored id is not UTF-8"))
}

// ---- writes: each runs inside a shared transaction on the writer thread ----

/// A collection as a job writes it: its spec and its tables' slots, looked up once per job
/// rather than once per op.
struct WriteColl {
    name: String,
    spec: Arc<CollectionSpec>,
    records: TableId,
    expiry: TableId,
    /// Each index's name, table, and whether it is covering (keeps record copies).
    indexes: Vec<(String, TableId, bool)>,
}

impl WriteColl {
    fn open(t: &mut Txn<'_>, ns: &str, coll: &str) -> Result<Self> {
        let spec = t
            .spec(ns, coll)?
            .ok_or_else(|| Error::collection_not_found(ns, coll))?;
        let tables = Tables::new(ns, coll);
        let mut indexes = Vec::with_capacity(spec.indexes.len());
        for ix in &spec.indexes {
            indexes.push((
                ix.name.clone(),
                t.open(&tables.index(&ix.name))?,
                ix.covering,
            ));
        }
        Ok(WriteColl {
            name: coll.to_owned(),
            records: t.open(&tables.records)?,
            expiry: t.open(&tables.expiry)?,
            spec,
            indexes,
        })
    }

    fn index(&self, name: &str) -> Option<TableId> {
        self.indexes
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, id, _)| *id)
    }

    fn is_covering(&self, name: &str) -> bool {
        self.indexes.iter().any(|(n, _, c)| n == name && *c)
    }

    /// Removes the index and expiry entries a stored record was written with.
    fn remove_entries(&self, t: &mut Txn<'_>, id: &str, bytes: &[u8]) -> Result<()> {
        for (name, values) in decode_entries(bytes)? {
            // Entries of an index the spec dropped went with its table.
            let Some(table) = self.index(&name) else {
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

    fn remove_record(&self, t: &mut Txn<'_>, id: &str, bytes: &[u8]) -> Result<()> {
        self.remove_entries(t, id, bytes)?;
        t.remove(self.records, id.as_bytes())
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
            let (_, table, covering) =
                self.indexes
                    .iter()
                    .find(|(n, ..)| n == name)
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "index {name:?} is not in the spec of {:?}",
                            self.name
                        ))
                    })?;
            let value: &[u8] = if *covering { record } else { &[] };
            for v in values {
                let mut key = Vec::with_capacity(v.len() + id.len());
                key.extend_from_slice(v);
                key.extend_from_slice(id.as_bytes());
                t.put(*table, &key, value)?;
            }
        }
        Ok(())
    }

    /// Whether a live record other than `id` holds `value` (sortable) in unique index `table`.
    fn unique_taken(
        &self,
        t: &mut Txn<'_>,
        table: TableId,
        value: &[u8],
        id: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = t.page(table, value, after.as_deref(), 16)?;
            let Some(last) = page.last().map(|(k, _)| k.clone()) else {
                return Ok(false);
            };
            for (k, _) in &page {
                let Some(other) = k.strip_prefix(value) else {
                    return Ok(false);
                };
                let other = utf8_id(other)?;
                if other == id {
                    continue;
                }
                if let Some(b) = t.get(self.records, other.as_bytes())? {
                    if !decode_header(&b)?.is_expired(now) {
                        return Ok(true);
                    }
                }
            }
            after = Some(last);
        }
    }

    fn apply(&self, t: &mut Txn<'_>, op: WriteOp, now: Timestamp) -> Result<WriteResult> {
        let (body, index, expires_at) = match op.action {
            WriteAction::Put {
                body,
                index,
                expires_at,
            } => (body, index, expires_at),
            WriteAction::Delete => {
                let stored = t.get(self.records, op.id.as_bytes())?;
                let live = live_version(stored.as_deref(), now)?;
                op.precondition.check(&self.name, &op.id, live)?;
                if let Some(b) = &stored {
                    self.remove_record(t, &op.id, b)?;
                }
                return Ok(WriteResult { version: live });
            }
        };
        let encoded = sortable_entries(&index);
        for ix in self.spec.indexes.iter().filter(|i| i.unique) {
            let Some((_, values)) = encoded.iter().find(|(n, _)| *n == ix.name) else {
                continue;
            };
            let table = self
                .index(&ix.name)
                .ok_or_else(|| Error::internal("unique index table missing"))?;
            for v in values {
                if self.unique_taken(t, table, v, &op.id, now)? {
                    return Err(Error::unique_violation(&self.name, &ix.name, &op.id));
                }
            }
        }
        let mut rec = StoredRecord {
            id: op.id,
            version: 1,
            created_at: now,
            updated_at: now,
            expires_at,
            body,
        };
        let bytes = if op.precondition == Precondition::Absent {
            // Inserts write first and look at what they replaced: one B-tree walk instead of
            // two. A live record there fails the op, and the job's undo log restores it.
            let bytes = encode_record(&rec, &encoded);
            let prev = t.put(self.records, rec.id.as_bytes(), &bytes)?;
            if let Some(b) = prev {
                op.precondition
                    .check(&self.name, &rec.id, live_version(Some(&b), now)?)?;
                self.remove_entries(t, &rec.id, &b)?;
            }
            bytes
        } else {
            let stored = t.get(self.records, rec.id.as_bytes())?;
            let live = match &stored {
                Some(b) => Some(decode_header(b)?).filter(|h| !h.is_expired(now)),
                None => None,
            };
            op.precondition
                .check(&self.name, &rec.id, live.map(|h| h.version))?;
            if let Some(h) = live {
                rec.version = h.version + 1;
                rec.created_at = h.created_at;
            }
            if let Some(b) = &stored {
                self.remove_entries(t, &rec.id, b)?;
            }
            let bytes = encode_record(&rec, &encoded);
            t.put(self.records, rec.id.as_bytes(), &bytes)?;
            bytes
        };
        self.add_index_entries(t, &rec.id, &encoded, &bytes)?;
        if let Some(at) = rec.expires_at {
            t.put(self.expiry, &expiry_key(at, &rec.id), &[])?;
        }
        Ok(WriteResult {
            version: Some(rec.version),
        })
    }
}

/// The version of a stored record if it is live at `now`.
fn live_version(stored: Option<&[u8]>, now: Timestamp) -> Result<Option<u64>> {
    match stored {
        Some(b) => {
            let h = decode_header(b)?;
            Ok((!h.is_expired(now)).then_some(h.version))
        }
        None => Ok(None),
    }
}

fn write_job(
    t: &mut Txn<'_>,
    ns: &str,
    ops: Vec<WriteOp>,
    now: Timestamp,
) -> Result<Vec<WriteResult>> {
    let mut colls: Vec<WriteColl> = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let at = match colls.iter().position(|c| c.name == op.collection) {
            Some(at) => at,
            None => {
                colls.push(WriteColl::open(t, ns, &op.collection).map_err(|e| e.at_op(i))?);
                colls.len() - 1
            }
        };
        results.push(colls[at].apply(t, op, now).map_err(|e| e.at_op(i))?);
    }
    Ok(results)
}

fn apply_spec_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    spec: &CollectionSpec,
    fills: Vec<IndexFill>,
) -> Result<()> {
    let tables = Tables::new(ns, coll);
    let old = t.spec(ns, coll)?;
    let records = t.open(&tables.records)?;
    // Every check before any change: the change is all or nothing.
    let mut seen = HashSet::new();
    for f in &fills {
        let current = match t.get(records, f.id.as_bytes())? {
            Some(b) => Some(decode_header(&b)?.version),
            None => None,
        };
        if current != Some(f.version) {
            return Err(Error::conflict(coll, &f.id, Some(f.version), current));
        }
        for (name, values) in &f.index {
            if spec.index_named(name).is_some_and(|i| i.unique) {
                for v in values {
                    if !seen.insert((name.clone(), v.clone())) {
                        return Err(Error::unique_violation(coll, name, &f.id));
                    }
                }
            }
        }
    }
    let Some(old) = old else {
        // A new collection: its tables exist from now on, empty.
        t.set_spec(ns, coll, Some(spec))?;
        WriteColl::open(t, ns, coll)?;
        return Ok(());
    };
    let change = old.diff(spec)?;
    for name in &change.dropped {
        t.delete_table(&tables.index(name))?;
    }
    t.set_spec(ns, coll, Some(spec))?;
    let wc = WriteColl::open(t, ns, coll)?;
    if change.is_empty() {
        return Ok(());
    }
    let added: HashSet<&str> = change.added.iter().map(|i| i.name.as_str()).collect();
    let keep = |name: &str| spec.index_named(name).is_some() && !added.contains(name);
    let mut fills: HashMap<String, StoredEntries> = fills
        .into_iter()
        .map(|f| (f.id, sortable_entries(&f.index)))
        .collect();
    // Rewrite each record's remembered entries: kept indexes as they were, added ones from
    // the fills.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = t.page(wc.records, &[], after.as_deref(), 512)?;
        let Some(last) = page.last().map(|(k, _)| k.clone()) else {
            break;
        };
        for (k, v) in page {
            let id = utf8_id(&k)?;
            let mut entries: Vec<_> = decode_entries(&v)?
                .into_iter()
                .filter(|(n, _)| keep(n))
                .collect();
            let rec = decode_record(&id, &v)?;
            if let Some(new) = fills.remove(&id) {
                entries.extend(new);
            }
            let bytes = encode_record(&rec, &entries);
            t.put(wc.records, &k, &bytes)?;
            // New entries, the copies every covering index keeps of the rewritten record,
            // and every entry of an index that gains or loses its copies.
            let rewrite = entries.iter().filter(|(n, _)| {
                added.contains(n.as_str())
                    || wc.is_covering(n)
                    || change.covering_changed.contains(n)
            });
            wc.add_index_entries(t, &id, rewrite, &bytes)?;
        }
        after = Some(last);
    }
    Ok(())
}

fn drop_job(t: &mut Txn<'_>, ns: &str, coll: &str) -> Result<bool> {
    let Some(spec) = t.spec(ns, coll)? else {
        return Ok(false);
    };
    let tables = Tables::new(ns, coll);
    for ix in &spec.indexes {
        t.delete_table(&tables.index(&ix.name))?;
    }
    t.delete_table(&tables.expiry)?;
    t.delete_table(&tables.records)?;
    t.set_spec(ns, coll, None)?;
    Ok(true)
}

fn delete_prefix_job(
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

fn purge_job(t: &mut Txn<'_>, ns: &str, colls: Vec<String>, now: Timestamp) -> Result<u64> {
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
    Ok(purged)
}

#[async_trait]
impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::all();
        c.persistent = true;
        c
    }

    async fn load_spec(&self, ns: &str, collection: &str) -> Result<Option<CollectionSpec>> {
        read_spec(&self.read()?, ns, collection)
    }

    async fn list_specs(&self, ns: &str) -> Result<Vec<(String, CollectionSpec)>> {
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

    async fn apply_spec(
        &self,
        ns: &str,
        collection: &str,
        spec: &CollectionSpec,
        fills: Vec<IndexFill>,
    ) -> Result<()> {
        let (ns, coll, spec) = (ns.to_owned(), collection.to_owned(), spec.clone());
        self.inner
            .writer
            .run(move |t| apply_spec_job(t, &ns, &coll, &spec, fills))
            .await
    }

    async fn drop_collection(&self, ns: &str, collection: &str) -> Result<bool> {
        let (ns, coll) = (ns.to_owned(), collection.to_owned());
        self.inner
            .writer
            .run(move |t| drop_job(t, &ns, &coll))
            .await
    }

    async fn get(
        &self,
        ns: &str,
        collection: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        read_live(&self.records(ns, collection)?, id, now)
    }

    async fn get_many(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        let records = self.records(ns, collection)?;
        ids.iter().map(|id| read_live(&records, id, now)).collect()
    }

    async fn write(&self, ns: &str, ops: Vec<WriteOp>, now: Timestamp) -> Result<Vec<WriteResult>> {
        let ns = ns.to_owned();
        self.inner
            .writer
            .run(move |t| write_job(t, &ns, ops, now))
            .await
    }

    async fn query(&self, ns: &str, req: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        Ok(self.run_query(ns, req, now, false)?.0)
    }

    async fn count(
        &self,
        ns: &str,
        collection: &str,
        filter: &[Predicate],
        now: Timestamp,
    ) -> Result<u64> {
        let req = QueryRequest {
            collection: collection.to_owned(),
            filter: filter.to_vec(),
            order: stowage_core::backend::Order {
                index: None,
                descending: false,
            },
            after: None,
            offset: 0,
            limit: None,
        };
        Ok(self.run_query(ns, &req, now, true)?.1)
    }

    async fn scan(&self, ns: &str, req: &ScanRequest, now: Timestamp) -> Result<Vec<StoredRecord>> {
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

    async fn delete_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let (ns, coll, prefix) = (ns.to_owned(), collection.to_owned(), prefix.to_owned());
        self.inner
            .writer
            .run(move |t| delete_prefix_job(t, &ns, &coll, &prefix, now))
            .await
    }

    async fn purge_expired(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let colls: Vec<String> = self
            .list_specs(ns)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let ns = ns.to_owned();
        self.inner
            .writer
            .run(move |t| purge_job(t, &ns, colls, now))
            .await
    }

    async fn stats(&self, ns: &str) -> Result<Vec<CollectionStats>> {
        let specs = self.list_specs(ns).await?;
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

    async fn ping(&self) -> Result<()> {
        let rtx = self.read()?;
        open_ro(&rtx, schema::META)?
            .ok_or_else(|| Error::new(ErrorKind::Corrupted, "the Stowage format marker is gone"))?;
        Ok(())
    }
}
