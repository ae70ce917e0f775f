//! Typed collection handles and atomic batches.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::backend::{IndexEntries, Precondition, ScanRequest, WriteAction, WriteOp};
use crate::error::{Error, ErrorKind, Result};
use crate::query::{encode_cursor, Filter, Page, Query};
use crate::record::{validate_id, Body, ContentType, Record, StoredRecord, Version, Versioned};
use crate::spec::CollectionSpec;
use crate::store::{CollectionEntry, Store, SCAN_PAGE};

/// How a write treats an existing record, and its TTL.
///
/// ```
/// use std::time::Duration;
/// use stowage_core::Put;
/// let p = Put::update(3).ttl(Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put {
    precondition: Precondition,
    ttl: Option<Duration>,
}

impl Put {
    /// Create only: AlreadyExists when a live record has the id.
    pub fn insert() -> Self {
        Put {
            precondition: Precondition::Absent,
            ttl: None,
        }
    }

    /// Create or replace.
    pub fn upsert() -> Self {
        Put {
            precondition: Precondition::None,
            ttl: None,
        }
    }

    /// Replace version `expected` only: Conflict (with the current version) otherwise.
    pub fn update(expected: Version) -> Self {
        Put {
            precondition: Precondition::Version(expected),
            ttl: None,
        }
    }

    /// Replace an existing record, whatever its version: Conflict when there is none.
    pub fn replace() -> Self {
        Put {
            precondition: Precondition::Exists,
            ttl: None,
        }
    }

    /// The record expires `ttl` after this write (instead of the collection's default TTL).
    /// Every write sets the expiry anew: a write without a TTL on a collection without a
    /// default TTL makes the record permanent.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The precondition.
    pub fn precondition(&self) -> Precondition {
        self.precondition
    }
}

/// A handle to one collection, holding records of type `T`. Cheap to clone.
///
/// `T` is a [`Record`] type for the typed API, or `serde_json::Value` for collections
/// declared at run time (with explicit ids through [`Collection::put`]).
pub struct Collection<T> {
    store: Store,
    entry: Arc<CollectionEntry>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            store: self.store.clone(),
            entry: self.entry.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("namespace", &self.store.namespace_name())
            .field("name", &self.entry.name)
            .finish()
    }
}

impl<T> Collection<T> {
    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }
}

impl<T: Record> Collection<T> {
    /// Inserts a new record; AlreadyExists when its id (or a unique index value) is taken.
    /// Returns the version (1).
    pub async fn insert(&self, value: &T) -> Result<Version> {
        self.put(&value.id(), value, Put::insert()).await
    }

    /// Inserts or replaces. Returns the new version.
    pub async fn upsert(&self, value: &T) -> Result<Version> {
        self.put(&value.id(), value, Put::upsert()).await
    }

    /// Replaces the record only if its current version is `expected` (optimistic
    /// concurrency); Conflict carrying the current version otherwise.
    pub async fn update(&self, value: &T, expected: Version) -> Result<Version> {
        self.put(&value.id(), value, Put::update(expected)).await
    }
}

impl<T> Collection<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    pub(crate) fn new(store: Store, entry: Arc<CollectionEntry>) -> Self {
        Collection {
            store,
            entry,
            _type: PhantomData,
        }
    }

    /// The collection's current spec.
    pub async fn spec(&self) -> CollectionSpec {
        (**self.entry.spec.read().await).clone()
    }

    fn ns(&self) -> &str {
        self.store.namespace_name()
    }

    /// The record with this id, or `None` when absent or expired.
    pub async fn get(&self, id: &str) -> Result<Option<Versioned<T>>> {
        self.fetch(id).await?.map(|r| self.decode(r)).transpose()
    }

    async fn fetch(&self, id: &str) -> Result<Option<StoredRecord>> {
        validate_id(id)?;
        self.store
            .backend()
            .get(self.ns(), self.name(), id, self.store.now())
            .await
    }

    /// The records with these ids, in the same order (`None` for absent or expired ones).
    pub async fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<Versioned<T>>>> {
        let ids = ids
            .iter()
            .map(|id| validate_id(id).map(|()| (*id).to_owned()))
            .collect::<Result<Vec<_>>>()?;
        self.get_stored(&ids)
            .await?
            .into_iter()
            .map(|r| r.map(|r| self.decode(r)).transpose())
            .collect()
    }

    /// The raw body of a record (JSON text or the bytes a binary put stored).
    pub async fn get_raw(&self, id: &str) -> Result<Option<Versioned<Bytes>>> {
        Ok(self.fetch(id).await?.map(|r| {
            let body = r.body.bytes.clone();
            with_value(r, body)
        }))
    }

    async fn get_stored(&self, ids: &[String]) -> Result<Vec<Option<StoredRecord>>> {
        self.store
            .backend()
            .get_many(self.ns(), self.name(), ids, self.store.now())
            .await
    }

    /// Writes `value` under `id` as `put` says. Returns the new version.
    pub async fn put(&self, id: &str, value: &T, put: Put) -> Result<Version> {
        let spec = self.entry.spec.read().await;
        let op = self.prepare_put(&spec, id, value, put)?;
        self.write_one(op)
            .await?
            .ok_or_else(|| Error::internal("backend returned no version for a put"))
    }

    /// Stores opaque bytes under `id` (a plain key-value collection: no indexes).
    pub async fn put_raw(&self, id: &str, bytes: impl Into<Bytes>, put: Put) -> Result<Version> {
        let spec = self.entry.spec.read().await;
        let op = self.prepare_raw(&spec, id, bytes.into(), put)?;
        self.write_one(op)
            .await?
            .ok_or_else(|| Error::internal("backend returned no version for a put"))
    }

    /// Writes one op (the caller holds the spec's read lock) and returns its version.
    async fn write_one(&self, op: WriteOp) -> Result<Option<Version>> {
        let results = self
            .store
            .write(vec![op])
            .await
            .map_err(Error::without_op)?;
        Ok(results.first().and_then(|r| r.version))
    }

    /// Deletes the record; `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        self.delete_where(id, Precondition::None).await
    }

    /// Deletes the record only at version `expected`; Conflict (with the current version,
    /// `None` when absent) otherwise.
    pub async fn delete_if_version(&self, id: &str, expected: Version) -> Result<()> {
        self.delete_where(id, Precondition::Version(expected))
            .await
            .map(|_| ())
    }

    async fn delete_where(&self, id: &str, precondition: Precondition) -> Result<bool> {
        validate_id(id)?;
        let _spec = self.entry.spec.read().await;
        let op = WriteOp {
            collection: self.name().to_owned(),
            id: id.to_owned(),
            precondition,
            action: WriteAction::Delete,
        };
        Ok(self.write_one(op).await?.is_some())
    }

    /// One page of records matching `query`.
    pub async fn query(&self, query: &Query) -> Result<Page<T>> {
        let spec = self.entry.spec.read().await.clone();
        let resolved = query.resolve(self.name(), &spec)?;
        let mut hits = self
            .store
            .backend()
            .query(self.ns(), &resolved.request, self.store.now())
            .await?;
        let mut next_cursor = None;
        if let Some(limit) = resolved.limit {
            if hits.len() > limit {
                hits.truncate(limit);
                next_cursor = hits.last().map(|h| {
                    encode_cursor(
                        resolved.fingerprint,
                        crate::backend::CursorKey {
                            value: h.order_value.clone(),
                            id: h.record.id.clone(),
                        },
                    )
                });
            }
        }
        let items = hits
            .into_iter()
            .map(|h| self.decode(h.record))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    /// How many records match `filter`.
    pub async fn count(&self, filter: &Filter) -> Result<u64> {
        let spec = self.entry.spec.read().await.clone();
        let preds = filter.resolve(&spec)?;
        self.store
            .backend()
            .count(self.ns(), self.name(), &preds, self.store.now())
            .await
    }

    /// Every record in id order, fetched a page at a time: memory stays constant however
    /// large the collection.
    pub fn scan(&self) -> impl Stream<Item = Result<Versioned<T>>> + Send + 'static {
        self.scan_ids(None)
    }

    /// Every record whose id starts with `prefix`, in id order, a page at a time.
    pub fn scan_prefix(
        &self,
        prefix: &str,
    ) -> impl Stream<Item = Result<Versioned<T>>> + Send + 'static {
        self.scan_ids(Some(prefix.to_owned()))
    }

    fn scan_ids(
        &self,
        prefix: Option<String>,
    ) -> impl Stream<Item = Result<Versioned<T>>> + Send + 'static {
        struct State<T> {
            coll: Collection<T>,
            prefix: Option<String>,
            after: Option<String>,
            page: std::vec::IntoIter<StoredRecord>,
            done: bool,
        }
        let state = State {
            coll: self.clone(),
            prefix,
            after: None,
            page: Vec::new().into_iter(),
            done: false,
        };
        futures_util::stream::try_unfold(state, |mut s| async move {
            loop {
                if let Some(rec) = s.page.next() {
                    let item = s.coll.decode(rec)?;
                    return Ok(Some((item, s)));
                }
                if s.done {
                    return Ok(None);
                }
                let request = ScanRequest {
                    collection: s.coll.name().to_owned(),
                    prefix: s.prefix.clone(),
                    after: s.after.take(),
                    limit: SCAN_PAGE,
                };
                let page = s
                    .coll
                    .store
                    .backend()
                    .scan(s.coll.ns(), &request, s.coll.store.now())
                    .await?;
                s.done = page.len() < SCAN_PAGE;
                s.after = page.last().map(|r| r.id.clone());
                s.page = page.into_iter();
            }
        })
    }

    /// One page of records in id order, optionally only ids starting with `prefix`: at most
    /// `limit`, after the page that returned `cursor`. The cursor is opaque and, like a
    /// query's, continues strictly after the last id it saw.
    pub async fn list(
        &self,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>> {
        if limit == 0 {
            return Err(Error::invalid("limit must be at least 1"));
        }
        let fingerprint = list_fingerprint(self.name(), prefix);
        let after = cursor
            .map(|c| crate::query::decode_cursor(c, fingerprint).map(|k| k.id))
            .transpose()?;
        let request = ScanRequest {
            collection: self.name().to_owned(),
            prefix: prefix.map(str::to_owned),
            after,
            limit: limit.saturating_add(1),
        };
        let mut page = self
            .store
            .backend()
            .scan(self.ns(), &request, self.store.now())
            .await?;
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|r| {
                encode_cursor(
                    fingerprint,
                    crate::backend::CursorKey {
                        value: None,
                        id: r.id.clone(),
                    },
                )
            })
        } else {
            None
        };
        let items = page
            .into_iter()
            .map(|r| self.decode(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Deletes every record whose id starts with `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(Error::invalid(
                "delete_prefix with an empty prefix would delete the whole collection: use \
                 Store::drop_collection for that",
            ));
        }
        let _spec = self.entry.spec.read().await;
        self.store
            .backend()
            .delete_prefix(self.ns(), self.name(), prefix, self.store.now())
            .await
    }

    fn decode(&self, rec: StoredRecord) -> Result<Versioned<T>> {
        if rec.body.content_type != ContentType::Json {
            return Err(Error::invalid(format!(
                "record {:?} of collection {:?} holds binary data: read it with get_raw",
                rec.id,
                self.name()
            )));
        }
        let value = serde_json::from_slice(&rec.body.bytes).map_err(|e| {
            Error::new(
                ErrorKind::Corrupted,
                format!(
                    "record {:?} of collection {:?} cannot be decoded as {}: {e}",
                    rec.id,
                    self.name(),
                    std::any::type_name::<T>()
                ),
            )
        })?;
        Ok(with_value(rec, value))
    }

    /// Checks and encodes one put: id, body size, index values, TTL.
    fn prepare_put(&self, spec: &CollectionSpec, id: &str, value: &T, put: Put) -> Result<WriteOp> {
        validate_id(id)?;
        let encode_err = |e: serde_json::Error| {
            Error::invalid(format!("record {id:?} cannot be serialized as JSON: {e}"))
        };
        let (bytes, index) = if spec.indexes.is_empty() {
            (serde_json::to_vec(value).map_err(encode_err)?, Vec::new())
        } else {
            let json = serde_json::to_value(value).map_err(encode_err)?;
            let index = extract_index(spec, &json, id)?;
            (serde_json::to_vec(&json).map_err(encode_err)?, index)
        };
        self.finish_op(spec, id, Body::json(bytes), index, put)
    }

    fn prepare_raw(
        &self,
        spec: &CollectionSpec,
        id: &str,
        bytes: Bytes,
        put: Put,
    ) -> Result<WriteOp> {
        validate_id(id)?;
        if !self.store.capabilities().binary_bodies {
            return Err(Error::unsupported(
                self.store.backend_name(),
                "binary bodies",
            ));
        }
        if !spec.indexes.is_empty() {
            return Err(Error::invalid(format!(
                "collection {:?} has indexes, so its bodies must be JSON: binary bodies belong in \
                 a collection without indexes",
                self.name()
            )));
        }
        self.finish_op(spec, id, Body::binary(bytes), Vec::new(), put)
    }

    fn finish_op(
        &self,
        spec: &CollectionSpec,
        id: &str,
        body: Body,
        index: IndexEntries,
        put: Put,
    ) -> Result<WriteOp> {
        let caps = self.store.capabilities();
        if body.bytes.len() > caps.max_body_bytes {
            return Err(Error::invalid(format!(
                "record {id:?} is {} bytes: the {} backend stores bodies of at most {} bytes",
                body.bytes.len(),
                self.store.backend_name(),
                caps.max_body_bytes
            )));
        }
        let ttl = put.ttl.or_else(|| spec.default_ttl_duration());
        if let Some(ttl) = ttl {
            if !caps.ttl {
                return Err(Error::unsupported(self.store.backend_name(), "TTLs"));
            }
            if ttl.is_zero() {
                return Err(Error::invalid("a TTL must be longer than zero"));
            }
        }
        Ok(WriteOp {
            collection: self.name().to_owned(),
            id: id.to_owned(),
            precondition: put.precondition,
            action: WriteAction::Put {
                body,
                index,
                expires_at: ttl.map(|t| self.store.now().saturating_add(t)),
            },
        })
    }
}

/// A record's metadata with a decoded value.
fn with_value<V>(rec: StoredRecord, value: V) -> Versioned<V> {
    Versioned {
        id: rec.id,
        version: rec.version,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        expires_at: rec.expires_at,
        value,
    }
}

/// The shape of a listing, bound into its cursors like a query's.
fn list_fingerprint(collection: &str, prefix: Option<&str>) -> u64 {
    crate::query::fingerprint_of(&serde_json::json!(["list", collection, prefix]).to_string())
}

fn extract_index(spec: &CollectionSpec, json: &Value, id: &str) -> Result<IndexEntries> {
    let mut entries = Vec::new();
    for ix in &spec.indexes {
        let values = ix.extract(json, id)?;
        if !values.is_empty() {
            entries.push((ix.name.clone(), values));
        }
    }
    Ok(entries)
}

/// An atomic batch of writes across collections of one namespace: all apply or none.
///
/// ```
/// # async fn demo(store: stowage_core::Store,
/// #     a: stowage_core::Collection<serde_json::Value>) -> stowage_core::Result<()> {
/// use stowage_core::Put;
/// let mut batch = store.batch();
/// batch.put(&a, "k1", &serde_json::json!({"n": 1}), Put::insert());
/// batch.delete(&a, "k0");
/// let versions = batch.commit().await?;
/// # Ok(()) }
/// ```
///
/// Ops are checked when added; the first bad one is reported by [`Batch::commit`], which
/// then writes nothing. An error names the failing op ([`Error::batch_op`]).
#[derive(Debug)]
pub struct Batch {
    store: Store,
    ops: Vec<PendingOp>,
    error: Option<Error>,
}

#[derive(Debug)]
struct PendingOp {
    entry: Arc<CollectionEntry>,
    id: String,
    precondition: Precondition,
    put: Option<(PendingBody, Option<Duration>)>,
}

#[derive(Debug)]
enum PendingBody {
    Json(Value),
    Raw(Bytes),
}

impl Batch {
    pub(crate) fn new(store: Store) -> Self {
        Batch {
            store,
            ops: Vec::new(),
            error: None,
        }
    }

    /// How many ops the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn push<T>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        precondition: Precondition,
        put: Option<(Result<PendingBody>, Option<Duration>)>,
    ) -> &mut Self {
        let i = self.ops.len();
        let put = match put {
            None => None,
            Some((Ok(body), ttl)) => Some((body, ttl)),
            Some((Err(e), _)) => {
                self.error.get_or_insert(e.at_op(i));
                None
            }
        };
        if coll.store.namespace_name() != self.store.namespace_name() {
            self.error.get_or_insert(
                Error::invalid(format!(
                    "collection {:?} is in namespace {:?}, the batch in {:?}: a batch stays in \
                     one namespace",
                    coll.name(),
                    coll.store.namespace_name(),
                    self.store.namespace_name()
                ))
                .at_op(i),
            );
        }
        self.ops.push(PendingOp {
            entry: coll.entry.clone(),
            id: id.to_owned(),
            precondition,
            put,
        });
        self
    }

    /// Adds a write of `value` under `id` (see [`Put`]).
    pub fn put<T: Serialize>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        value: &T,
        put: Put,
    ) -> &mut Self {
        let body = serde_json::to_value(value)
            .map(PendingBody::Json)
            .map_err(|e| {
                Error::invalid(format!("record {id:?} cannot be serialized as JSON: {e}"))
            });
        self.push(coll, id, put.precondition, Some((body, put.ttl)))
    }

    /// Adds a write of opaque bytes (collections without indexes).
    pub fn put_raw<T>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        bytes: impl Into<Bytes>,
        put: Put,
    ) -> &mut Self {
        self.push(
            coll,
            id,
            put.precondition,
            Some((Ok(PendingBody::Raw(bytes.into())), put.ttl)),
        )
    }

    /// Adds an insert of a typed record.
    pub fn insert<T: Record>(&mut self, coll: &Collection<T>, value: &T) -> &mut Self {
        self.put(coll, &value.id(), value, Put::insert())
    }

    /// Adds an upsert of a typed record.
    pub fn upsert<T: Record>(&mut self, coll: &Collection<T>, value: &T) -> &mut Self {
        self.put(coll, &value.id(), value, Put::upsert())
    }

    /// Adds an update of a typed record at version `expected`.
    pub fn update<T: Record>(
        &mut self,
        coll: &Collection<T>,
        value: &T,
        expected: Version,
    ) -> &mut Self {
        self.put(coll, &value.id(), value, Put::update(expected))
    }

    /// Adds a delete (no error when the record is absent).
    pub fn delete<T>(&mut self, coll: &Collection<T>, id: &str) -> &mut Self {
        self.push(coll, id, Precondition::None, None)
    }

    /// Adds a delete at version `expected`.
    pub fn delete_if_version<T>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        expected: Version,
    ) -> &mut Self {
        self.push(coll, id, Precondition::Version(expected), None)
    }

    /// Applies every op or none. Returns, per op, the new version of a put or the removed
    /// version of a delete (`None` when there was nothing to delete).
    pub async fn commit(self) -> Result<Vec<Option<Version>>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        // Read-lock each collection's spec once, in name order (spec changes take the write
        // lock, so a consistent order rules out deadlock), and keep the locks until the
        // backend has answered: the index values below stay those of the current spec.
        let mut entries: Vec<&Arc<CollectionEntry>> = self.ops.iter().map(|o| &o.entry).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let mut guards = Vec::with_capacity(entries.len());
        for e in &entries {
            guards.push((e.name.clone(), e.spec.read().await));
        }
        let mut ops = Vec::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let spec = guards
                .iter()
                .find(|(n, _)| *n == op.entry.name)
                .map(|(_, g)| Arc::clone(g))
                .ok_or_else(|| Error::internal("batch lost a collection"))?;
            let coll: Collection<Value> = Collection::new(self.store.clone(), op.entry.clone());
            let prepared = match &op.put {
                None => validate_id(&op.id).map(|()| WriteOp {
                    collection: op.entry.name.clone(),
                    id: op.id.clone(),
                    precondition: op.precondition,
                    action: WriteAction::Delete,
                }),
                Some((PendingBody::Json(v), ttl)) => coll.prepare_put(
                    &spec,
                    &op.id,
                    v,
                    Put {
                        precondition: op.precondition,
                        ttl: *ttl,
                    },
                ),
                Some((PendingBody::Raw(b), ttl)) => coll.prepare_raw(
                    &spec,
                    &op.id,
                    b.clone(),
                    Put {
                        precondition: op.precondition,
                        ttl: *ttl,
                    },
                ),
            };
            ops.push(prepared.map_err(|e| e.at_op(i))?);
        }
        // Input errors first: a caller fixing its batch should not learn about them one by one.
        if ops.len() > 1 && !self.store.capabilities().atomic_batch {
            return Err(Error::unsupported(
                self.store.backend_name(),
                "atomic batches",
            ));
        }
        let results = self.store.write(ops).await?;
        drop(guards);
        Ok(results.into_iter().map(|r| r.version).collect())
    }
}
