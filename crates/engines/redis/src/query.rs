//! Reads: records by id (pipelined `HGETALL`), scans of the ids sorted set, and queries that
//! walk an index's sorted set with `ZRANGE … BYLEX`, test the rest of the filter on the
//! records' index members (`…:ent:<c>`, no bodies), and fetch only the page they return.
//!
//! A record is live when its hash is there (where the server's clock decides, an expired
//! hash is gone at once) and its `expires_at` has not passed by the caller's clock (where
//! the caller's does). Index members of expired records stay until the purge; every read
//! skips them.

use std::ops::Bound;

use redis::AsyncCommands;
use stowage_core::backend::{
    encode_string_prefix, id_span, walk_bound, CursorKey, IdSpan, IndexEntries, Predicate,
    PredicateOp, QueryHit, QueryRequest, ScanRequest, StoredSpec,
};
use stowage_core::{
    Body, Error, ErrorKind, IndexType, IndexValue, Result, StoredRecord, Timestamp,
};

use crate::error::redis_error;
use crate::open::RedisBackend;
use crate::schema::{member, parse_micros, Keys};

/// How many members one `ZRANGE` reads.
const PAGE: usize = 512;

/// A record's entry in `…:ent:<c>`: its version, expiry and index members.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub version: u64,
    pub expires_at: Option<i64>,
    /// (index, members without the id).
    pub members: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// Decodes what `write.lua` packs: `{version, expires_at or false, {{index, unique,
    /// {members}}…}}`.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Entry> {
        let bad = || {
            Error::new(
                ErrorKind::Corrupted,
                "redis: a record's index entry cannot be decoded",
            )
        };
        let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|_| bad())?;
        let items = value.as_array().ok_or_else(bad)?;
        let number = |v: &rmpv::Value| {
            v.as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .or_else(|| v.as_f64().map(|f| f as u64))
        };
        let version = items.first().and_then(number).ok_or_else(bad)?;
        let expires_at = items
            .get(1)
            .and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)));
        let mut members = Vec::new();
        for ix in items.get(2).and_then(|v| v.as_array()).ok_or_else(bad)? {
            let parts = ix.as_array().ok_or_else(bad)?;
            let name = parts
                .first()
                .and_then(bytes_of)
                .and_then(|b| String::from_utf8(b.to_vec()).ok())
                .ok_or_else(bad)?;
            let list = parts
                .get(2)
                .and_then(|v| v.as_array())
                .map(|ms| ms.iter().filter_map(bytes_of).map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            members.push((name, list));
        }
        Ok(Entry {
            version,
            expires_at,
            members,
        })
    }

    /// Whether the record is live at `now` (µs) by its expiry.
    pub(crate) fn live_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|x| x > now)
    }

    /// The record's index values, typed by its spec.
    pub(crate) fn entries(&self, spec: &StoredSpec) -> Result<IndexEntries> {
        let mut out = IndexEntries::new();
        for (name, members) in &self.members {
            let Some(ix) = spec.spec.index_named(name) else {
                continue;
            };
            let values = members
                .iter()
                .map(|m| IndexValue::decode_sortable(ix.index_type, m).map(|(v, _)| v))
                .collect::<Result<Vec<_>>>()?;
            out.push((name.clone(), values));
        }
        Ok(out)
    }
}

fn bytes_of(v: &rmpv::Value) -> Option<&[u8]> {
    match v {
        rmpv::Value::String(s) => Some(s.as_bytes()),
        rmpv::Value::Binary(b) => Some(b),
        _ => None,
    }
}

/// The fields of a record hash reads take, in this order.
const FIELDS: [&str; 6] = [
    "version",
    "created_at",
    "updated_at",
    "expires_at",
    "type",
    "body",
];

/// A record hash's [`FIELDS`] as a stored record (`None`: no hash).
fn record_of(id: &str, fields: Vec<Option<Vec<u8>>>) -> Result<Option<StoredRecord>> {
    let [version, created, updated, expires, kind, body]: [Option<Vec<u8>>; 6] =
        fields.try_into().map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "redis: a record read answered the wrong fields",
            )
        })?;
    let Some(version) = version else {
        return Ok(None);
    };
    let time = |name: &str, v: Option<Vec<u8>>| -> Result<Timestamp> {
        let v = v.ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupted,
                format!("redis: record {id:?} has no {name}"),
            )
        })?;
        parse_micros(&v).map(Timestamp::from_micros)
    };
    let body = body.unwrap_or_default();
    let body = match kind.as_deref() {
        Some(b"json") => Body::json(String::from_utf8(body).map_err(|_| {
            Error::new(
                ErrorKind::Corrupted,
                format!("redis: the JSON body of {id:?} is not UTF-8"),
            )
        })?),
        _ => Body::binary(body),
    };
    Ok(Some(StoredRecord {
        id: id.to_owned(),
        version: parse_micros(&version)? as u64,
        created_at: time("created_at", created)?,
        updated_at: time("updated_at", updated)?,
        expires_at: expires
            .map(|x| parse_micros(&x).map(Timestamp::from_micros))
            .transpose()?,
        body,
    }))
}

/// The `ZRANGE … BYLEX` bounds of members whose value passes `op` (`None`: no bound).
fn value_bounds(op: Option<&PredicateOp>) -> (Vec<u8>, Vec<u8>) {
    let inclusive = |v: &IndexValue| {
        let mut b = vec![b'['];
        b.extend(member(v));
        b
    };
    // Every member with this value sorts before it: ids are UTF-8, never 0xFF.
    let past = |v: &IndexValue, open: u8| {
        let mut b = vec![open];
        b.extend(member(v));
        b.push(0xFF);
        b
    };
    let mut lo = b"-".to_vec();
    let mut hi = b"+".to_vec();
    match op {
        Some(PredicateOp::Eq(v)) => {
            lo = inclusive(v);
            hi = past(v, b'(');
        }
        Some(PredicateOp::Range(l, h)) => {
            match l {
                Bound::Included(v) => lo = inclusive(v),
                Bound::Excluded(v) => lo = past(v, b'('),
                Bound::Unbounded => {}
            }
            match h {
                Bound::Included(v) => hi = past(v, b'('),
                Bound::Excluded(v) => {
                    hi = vec![b'('];
                    hi.extend(member(v));
                }
                Bound::Unbounded => {}
            }
        }
        Some(PredicateOp::Prefix(p)) => {
            let mut start = Vec::new();
            encode_string_prefix(p, &mut start);
            lo = [&[b'['][..], &start].concat();
            // The byte after the prefix is never 0xFF (see `schema.rs`).
            hi = [&[b'('][..], &start, &[0xFF]].concat();
        }
        Some(PredicateOp::In(_)) | None => {}
    }
    (lo, hi)
}

impl RedisBackend {
    /// The server's clock in µs, or the caller's where it decides.
    async fn now_micros(&self, now: Timestamp) -> Result<i64> {
        if let Some(n) = self.caller_now(now) {
            return Ok(n);
        }
        let (s, us): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "reading the server's clock", &self.inner.target))?;
        Ok(s * 1_000_000 + us)
    }

    /// The records with these ids, live at `now`, in the same order (pipelined).
    pub(crate) async fn records(
        &self,
        keys: &Keys,
        collection: &str,
        ids: &[String],
        now: Option<i64>,
    ) -> Result<Vec<Option<StoredRecord>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |e| redis_error(e, "reading records", &self.inner.target);
        let hashes: Vec<Vec<Option<Vec<u8>>>> = if let [id] = ids {
            vec![redis::cmd("HMGET")
                .arg(keys.rec(collection, id))
                .arg(&FIELDS[..])
                .query_async(&mut self.conn())
                .await
                .map_err(failed)?]
        } else {
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.cmd("HMGET")
                    .arg(keys.rec(collection, id))
                    .arg(&FIELDS[..]);
            }
            pipe.query_async(&mut self.conn()).await.map_err(failed)?
        };
        // A dropped collection has no records left (the drop removes them with the spec):
        // only when a record is missing can the collection be, and it is NotFound then.
        if hashes.iter().any(|h| h[0].is_none()) {
            let exists: bool = self
                .conn()
                .hexists(keys.revs(), collection)
                .await
                .map_err(failed)?;
            if !exists {
                return Err(Error::collection_not_found(keys.namespace(), collection));
            }
        }
        ids.iter()
            .zip(hashes)
            .map(|(id, fields)| {
                Ok(record_of(id, fields)?
                    .filter(|r| now.is_none_or(|n| r.expires_at.is_none_or(|x| x.as_micros() > n))))
            })
            .collect()
    }

    pub(crate) async fn get_records(
        &self,
        ns: &str,
        collection: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<StoredRecord>>> {
        self.records(&self.keys(ns), collection, ids, self.caller_now(now))
            .await
    }

    /// One page of live records in ascending id order.
    pub(crate) async fn scan_page(
        &self,
        ns: &str,
        request: &ScanRequest,
        now: Timestamp,
    ) -> Result<Vec<StoredRecord>> {
        let keys = self.keys(ns);
        let mut lo = match (&request.after, &request.prefix) {
            (Some(after), _) => [&[b'('][..], after.as_bytes()].concat(),
            (None, Some(p)) => [&[b'['][..], p.as_bytes()].concat(),
            (None, None) => b"-".to_vec(),
        };
        let hi = match &request.prefix {
            // Ids are UTF-8: no id starting with the prefix has 0xFF after it.
            Some(p) => [&[b'('][..], p.as_bytes(), &[0xFF]].concat(),
            None => b"+".to_vec(),
        };
        if let (Some(after), Some(p)) = (&request.after, &request.prefix) {
            if after.as_str() < p.as_str() {
                lo = [&[b'['][..], p.as_bytes()].concat();
            }
        }
        let now = self.caller_now(now);
        let mut out = Vec::new();
        // Ids of records whose hash expired stay until the purge: read on until the page
        // is full or the range ends.
        while out.len() < request.limit {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(keys.ids(&request.collection))
                .arg(&lo)
                .arg(&hi)
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(request.limit.max(16))
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, "scanning", &self.inner.target))?;
            let Some(last) = ids.last() else { break };
            lo = [&[b'('][..], last.as_bytes()].concat();
            let done = ids.len() < request.limit.max(16);
            for r in self
                .records(&keys, &request.collection, &ids, now)
                .await?
                .into_iter()
                .flatten()
            {
                if out.len() < request.limit {
                    out.push(r);
                }
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// The spec a request was prepared with: stale spec when the collection moved on,
    /// NotFound when it is gone.
    pub(crate) async fn request_spec(
        &self,
        ns: &str,
        request: &QueryRequest,
    ) -> Result<std::sync::Arc<StoredSpec>> {
        // The revision is read every time (another instance may have changed or dropped
        // the collection); the spec itself comes from the cache.
        let current: Option<String> = self
            .conn()
            .hget(self.keys(ns).revs(), &request.collection)
            .await
            .map_err(|e| redis_error(e, "reading a spec", &self.inner.target))?;
        match current {
            None => Err(Error::collection_not_found(ns, &request.collection)),
            Some(r) if r != request.revision.to_string() => {
                Err(Error::stale_spec(&request.collection))
            }
            Some(_) => self
                .spec_at(ns, &request.collection, request.revision)
                .await?
                .ok_or_else(|| Error::stale_spec(&request.collection)),
        }
    }

    /// Every live record matching the request's filter, in its order, after its cursor:
    /// `(id, order value, entry)`, up to `want` of them (`None`: all).
    pub(crate) async fn matching(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
        want: Option<usize>,
    ) -> Result<Vec<Match>> {
        let spec = self.request_spec(ns, request).await?;
        let walk = Walk {
            keys: self.keys(ns),
            coll: request.collection.as_str(),
            spec: &spec,
            request,
            now: self.now_micros(now).await?,
            want,
        };
        match &request.order.index {
            Some(index) => self.walk_order_index(&walk, index).await,
            None => self.walk_by_id(&walk).await,
        }
    }

    /// Walks the order index in its order, a page of members at a time, from the cursor:
    /// the matches come out sorted.
    async fn walk_order_index(&self, walk: &Walk<'_>, index: &str) -> Result<Vec<Match>> {
        let request = walk.request;
        let ty = (walk.spec.spec.index_named(index))
            .map(|i| i.index_type)
            .ok_or_else(|| Error::invalid(format!("no index {index:?} to order by")))?;
        let descending = request.order.descending;
        let (mut lo, mut hi) = value_bounds(walk_bound(&request.filter, index));
        if let Some(CursorKey { value: Some(v), id }) = &request.after {
            let mut at = member(v);
            at.extend_from_slice(id.as_bytes());
            let after = [&[b'('][..], &at].concat();
            if descending {
                hi = after;
            } else {
                lo = after;
            }
        }
        let mut out = Vec::new();
        loop {
            let (from, to) = if descending { (&hi, &lo) } else { (&lo, &hi) };
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(walk.keys.ix(walk.coll, index))
                .arg(from)
                .arg(to)
                .arg("BYLEX");
            if descending {
                cmd.arg("REV");
            }
            let members: Vec<Vec<u8>> = cmd
                .arg("LIMIT")
                .arg(0)
                .arg(PAGE)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, "querying", &self.inner.target))?;
            let Some(last) = members.last() else { break };
            let next = [&[b'('][..], last].concat();
            if descending {
                hi = next;
            } else {
                lo = next;
            }
            let mut page = Vec::with_capacity(members.len());
            for m in &members {
                let (value, rest) = IndexValue::decode_sortable(ty, m)?;
                let id = String::from_utf8(rest.to_vec()).map_err(|_| {
                    Error::new(
                        ErrorKind::Corrupted,
                        "redis: an index member's id is not UTF-8",
                    )
                })?;
                page.push((id, Some(value)));
            }
            self.keep_matching(walk, page, &mut out).await?;
            if walk.full(&out) || members.len() < PAGE {
                break;
            }
        }
        Ok(out)
    }

    /// Ordered by id. With a predicate an index can answer, its members give the candidates,
    /// sorted by id here — unless ids named one by one come first; else the ids set is
    /// walked, within the id predicates' bounds.
    async fn walk_by_id(&self, walk: &Walk<'_>) -> Result<Vec<Match>> {
        let request = walk.request;
        let usable = (request.filter.iter())
            .take_while(|p| !p.on_id())
            .find(|p| walk.spec.building.iter().all(|b| b != &p.index));
        let mut ids: Vec<String> = match usable {
            Some(p) => self.ids_indexed(walk, p).await?,
            None => {
                self.ids_within(&walk.keys, walk.coll, id_span(&request.filter))
                    .await?
            }
        };
        let descending = request.order.descending;
        if descending {
            ids.reverse();
        }
        if let Some(after) = &request.after {
            ids.retain(|id| {
                if descending {
                    id.as_str() < after.id.as_str()
                } else {
                    id.as_str() > after.id.as_str()
                }
            });
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(PAGE) {
            let page = chunk.iter().map(|id| (id.clone(), None)).collect();
            self.keep_matching(walk, page, &mut out).await?;
            if walk.full(&out) {
                break;
            }
        }
        Ok(out)
    }

    /// The ids whose entries in `p`'s index fall within its value ranges, sorted, once each.
    async fn ids_indexed(&self, walk: &Walk<'_>, p: &Predicate) -> Result<Vec<String>> {
        let ty = (walk.spec.spec.index_named(&p.index)).map_or(IndexType::String, |i| i.index_type);
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = match &p.op {
            PredicateOp::In(values) => values
                .iter()
                .map(|v| value_bounds(Some(&PredicateOp::Eq(v.clone()))))
                .collect(),
            op => vec![value_bounds(Some(op))],
        };
        let mut ids = Vec::new();
        for (lo, hi) in ranges {
            let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                .arg(walk.keys.ix(walk.coll, &p.index))
                .arg(lo)
                .arg(hi)
                .arg("BYLEX")
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, "querying", &self.inner.target))?;
            for m in members {
                let (_, rest) = IndexValue::decode_sortable(ty, &m)?;
                if let Ok(id) = String::from_utf8(rest.to_vec()) {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The ids of a collection's ids set that `span` leaves, in order.
    async fn ids_within(&self, keys: &Keys, coll: &str, span: IdSpan) -> Result<Vec<String>> {
        if let IdSpan::Exact(ids) = span {
            return Ok(ids);
        }
        let Some((lo, hi)) = span.bounds() else {
            return Ok(Vec::new());
        };
        let lex = |b: Bound<&str>, open: &str| match b {
            Bound::Included(s) => format!("[{s}"),
            Bound::Excluded(s) => format!("({s}"),
            Bound::Unbounded => open.to_owned(),
        };
        redis::cmd("ZRANGE")
            .arg(keys.ids(coll))
            .arg(lex(lo, "-"))
            .arg(lex(hi, "+"))
            .arg("BYLEX")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "querying", &self.inner.target))
    }

    /// Adds the candidates of `page` that are live and pass the whole filter to `out`.
    async fn keep_matching(
        &self,
        walk: &Walk<'_>,
        page: Vec<(String, Option<IndexValue>)>,
        out: &mut Vec<Match>,
    ) -> Result<()> {
        let Walk {
            keys,
            coll,
            spec,
            request,
            now,
            want,
        } = walk;
        if page.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
        let packed: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(keys.ent(coll))
            .arg(&ids)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "querying", &self.inner.target))?;
        for ((id, value), packed) in page.into_iter().zip(packed) {
            let Some(packed) = packed else { continue };
            let entry = Entry::decode(&packed)?;
            if !entry.live_at(*now) {
                continue;
            }
            let entries = entry.entries(spec)?;
            if !stowage_core::backend::filter_matches(&request.filter, &id, &entries) {
                continue;
            }
            // An index walk meets a multi-valued record once per value: keep the first.
            if out
                .last()
                .is_some_and(|(last, _, _): &(String, _, _)| *last == id)
            {
                continue;
            }
            out.push((id, value, entry));
            if want.is_some_and(|w| out.len() >= w) {
                break;
            }
        }
        Ok(())
    }

    /// The query's page: matches after the cursor, `offset` skipped, `limit` kept, with
    /// their records.
    pub(crate) async fn run_query(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<Vec<QueryHit>> {
        let want = request
            .limit
            .map(|l| l.saturating_add(request.offset as usize));
        let matches = self.matching(ns, request, now, want).await?;
        let keep: Vec<(String, Option<IndexValue>)> = matches
            .into_iter()
            .skip(request.offset as usize)
            .take(request.limit.unwrap_or(usize::MAX))
            .map(|(id, v, _)| (id, v))
            .collect();
        let ids: Vec<String> = keep.iter().map(|(id, _)| id.clone()).collect();
        let records = self
            .records(
                &self.keys(ns),
                &request.collection,
                &ids,
                self.caller_now(now),
            )
            .await?;
        Ok(keep
            .into_iter()
            .zip(records)
            .filter_map(|((_, order_value), record)| {
                record.map(|record| QueryHit {
                    record,
                    order_value,
                })
            })
            .collect())
    }

    /// How many live records match the filter: index members and entries only, no bodies.
    pub(crate) async fn count_matching(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<u64> {
        let mut all = request.clone();
        all.after = None;
        all.order = stowage_core::backend::Order {
            index: None,
            descending: false,
        };
        if all.filter.is_empty() {
            // Every live record: the ids set, less the expired ones in the TTL set.
            self.request_spec(ns, &all).await?;
            let keys = self.keys(ns);
            let now = self.now_micros(now).await?;
            let (stored, expired): (u64, u64) = redis::pipe()
                .zcard(keys.ids(&all.collection))
                .zcount(keys.ttl(&all.collection), "-inf", now)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, "counting", &self.inner.target))?;
            return Ok(stored.saturating_sub(expired));
        }
        Ok(self.matching(ns, &all, now, None).await?.len() as u64)
    }

    /// Records and bytes per collection.
    pub(crate) async fn collection_stats(
        &self,
        ns: &str,
    ) -> Result<Vec<stowage_core::backend::CollectionStats>> {
        let keys = self.keys(ns);
        let mut out = Vec::new();
        for (name, _) in self.list_specs_now(ns).await? {
            let records: u64 = self
                .conn()
                .zcard(keys.ids(&name))
                .await
                .map_err(|e| redis_error(e, "reading stats", &self.inner.target))?;
            let bytes: Option<u64> = self
                .conn()
                .hget(keys.bytes(), &name)
                .await
                .map_err(|e| redis_error(e, "reading stats", &self.inner.target))?;
            out.push(stowage_core::backend::CollectionStats {
                collection: name,
                records,
                bytes: bytes.unwrap_or(0),
            });
        }
        Ok(out)
    }
}

/// A live record a query matched: its id, its value in the order index (when ordered by
/// one) and its entry.
pub(crate) type Match = (String, Option<IndexValue>, Entry);

/// What one query's walk reads and keeps.
struct Walk<'a> {
    keys: Keys,
    coll: &'a str,
    spec: &'a StoredSpec,
    request: &'a QueryRequest,
    /// Now, in microseconds, as the store's clock says.
    now: i64,
    /// How many matches to find (`None`: all).
    want: Option<usize>,
}

impl Walk<'_> {
    /// Whether `out` holds as many matches as wanted.
    fn full(&self, out: &[Match]) -> bool {
        self.want.is_some_and(|w| out.len() >= w)
    }
}
