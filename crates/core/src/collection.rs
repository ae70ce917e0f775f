//! Typed collection handles and atomic batches.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::backend::{
    BatchScope, CursorKey, IndexEntries, MutateAction, MutationSupport, Order, Precondition,
    QueryRequest, RecordMeta, ScanRequest, Values, WriteAction, WriteOp, WriteResult,
};
use crate::error::{Error, ErrorKind, Result};
use crate::mutation::{Mutate, Mutated};
use crate::query::{encode_cursor, Filter, Page, Query};
use crate::record::{
    decode_json, validate_id, Body, ContentType, Record, RecordRef, StoredRecord, Version,
    Versioned,
};
use crate::spec::CollectionSpec;
use crate::store::{CollectionEntry, Loaded, Store, SCAN_PAGE};

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

    /// The same put under another precondition.
    pub fn with_precondition(mut self, precondition: Precondition) -> Self {
        self.precondition = precondition;
        self
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

    /// The collection's spec as this handle last loaded it (indexes being built included).
    pub fn spec(&self) -> CollectionSpec {
        self.entry.current().stored.spec.clone()
    }

    /// The store this collection belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the index `name` is declared and built, so that queries may use it (an index
    /// added to a spec is built a page at a time; until then queries on it are refused).
    pub fn index_ready(&self, name: &str) -> bool {
        self.entry.current().queryable.index_named(name).is_some()
    }

    pub(crate) fn entry(&self) -> &Arc<CollectionEntry> {
        &self.entry
    }
}

impl<T: Record> Collection<T> {
    /// Inserts a new record; AlreadyExists when its id (or a unique index value) is taken.
    /// Returns the version (1).
    pub async fn insert(&self, value: &T) -> Result<Version> {
        Ok(self.put(&value.id(), value, Put::insert()).await?.version)
    }

    /// Inserts or replaces. Returns the new version.
    pub async fn upsert(&self, value: &T) -> Result<Version> {
        Ok(self.put(&value.id(), value, Put::upsert()).await?.version)
    }

    /// Replaces the record only if its current version is `expected` (optimistic
    /// concurrency); Conflict carrying the current version otherwise.
    pub async fn update(&self, value: &T, expected: Version) -> Result<Version> {
        Ok(self
            .put(&value.id(), value, Put::update(expected))
            .await?
            .version)
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

    fn ns(&self) -> &str {
        self.store.namespace_name()
    }

    /// The record with this id, or `None` when absent or expired.
    pub async fn get(&self, id: &str) -> Result<Option<Versioned<T>>> {
        validate_id(id)?;
        let mut found = None;
        self.store
            .backend()
            .get_with(self.ns(), self.name(), id, self.store.now(), &mut |rec| {
                found = Some(self.decode_ref(rec)?);
                Ok(())
            })
            .await?;
        Ok(found)
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

    /// The record's JSON text as stored, not decoded: for handing it on as it is (the HTTP
    /// server answers a GET with it). A binary body is the same error as [`Collection::get`].
    pub async fn get_json_bytes(&self, id: &str) -> Result<Option<Versioned<Bytes>>> {
        validate_id(id)?;
        let mut found = None;
        self.store
            .backend()
            .get_with(self.ns(), self.name(), id, self.store.now(), &mut |rec| {
                if rec.content_type != ContentType::Json {
                    return Err(self.binary_body(rec.id));
                }
                found = Some(Versioned {
                    value: Bytes::copy_from_slice(rec.body),
                    id: rec.id.to_owned(),
                    version: rec.version,
                    created_at: rec.created_at,
                    updated_at: rec.updated_at,
                    expires_at: rec.expires_at,
                });
                Ok(())
            })
            .await?;
        Ok(found)
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

    /// Writes `value` under `id` as `put` says. Returns what was stored: the version,
    /// timestamps and expiry.
    pub async fn put(&self, id: &str, value: &T, put: Put) -> Result<RecordMeta> {
        self.write_one(|loaded| self.prepare_put(loaded, id, value, put))
            .await?
            .ok_or_else(|| Error::internal("backend returned no metadata for a put"))
    }

    /// Stores opaque bytes under `id` (a plain key-value collection: no indexes).
    pub async fn put_raw(&self, id: &str, bytes: impl Into<Bytes>, put: Put) -> Result<RecordMeta> {
        let bytes = bytes.into();
        self.write_one(|loaded| self.prepare_raw(loaded, id, bytes.clone(), put))
            .await?
            .ok_or_else(|| Error::internal("backend returned no metadata for a put"))
    }

    /// Stores a record exactly as given — id, version, timestamps, expiry, body — whatever
    /// the collection holds under its id: what copy and restore write, so ETags survive
    /// them. Writing the same record again changes nothing. Its index values are those of
    /// this collection's spec.
    pub async fn restore(&self, record: &StoredRecord) -> Result<RecordMeta> {
        self.write_one(|loaded| self.prepare_restore(loaded, record, Precondition::None))
            .await?
            .ok_or_else(|| Error::internal("backend returned no metadata for a restore"))
    }

    /// [`Collection::restore`] where `precondition` holds of the live record (AlreadyExists
    /// or Conflict, and nothing written, otherwise): a copy that must not undo a newer
    /// write restores over the version it read.
    pub async fn restore_where(
        &self,
        record: &StoredRecord,
        precondition: Precondition,
    ) -> Result<RecordMeta> {
        self.write_one(|loaded| self.prepare_restore(loaded, record, precondition))
            .await?
            .ok_or_else(|| Error::internal("backend returned no metadata for a restore"))
    }

    /// [`Collection::restore`] for several records, as one atomic batch.
    pub async fn restore_all(&self, records: &[StoredRecord]) -> Result<Vec<RecordMeta>> {
        self.restore_batch(records, |_| Precondition::None).await
    }

    /// Stores each record again exactly as given — version, timestamps, expiry, body —
    /// where the live record still has that version, as one atomic batch: Conflict, and
    /// nothing written, when any of them was changed, deleted or expired since it was read.
    /// A layer that changes how bodies are stored (the codec layer's rekey) rewrites records
    /// with it: no version, time or ETag moves, and no concurrent write is lost.
    pub async fn rewrite_all(&self, records: &[StoredRecord]) -> Result<Vec<RecordMeta>> {
        self.restore_batch(records, |r| Precondition::Version(r.version))
            .await
    }

    async fn restore_batch(
        &self,
        records: &[StoredRecord],
        precondition: impl Fn(&StoredRecord) -> Precondition,
    ) -> Result<Vec<RecordMeta>> {
        let results = self
            .store
            .write_prepared(&[&self.entry], None, || {
                let loaded = self.entry.current();
                records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        self.prepare_restore(&loaded, r, precondition(r))
                            .map_err(|e| e.at_op(i))
                    })
                    .collect()
            })
            .await?;
        results
            .into_iter()
            .map(|r| {
                r.meta
                    .ok_or_else(|| Error::internal("backend returned no metadata for a restore"))
            })
            .collect()
    }

    /// Writes one op prepared from the current spec (again if the engine finds the spec
    /// stale) and returns what it did.
    async fn write_one(
        &self,
        prepare: impl Fn(&Loaded) -> Result<WriteOp>,
    ) -> Result<Option<RecordMeta>> {
        Ok(self.write_one_result(prepare).await?.meta)
    }

    async fn write_one_result(
        &self,
        prepare: impl Fn(&Loaded) -> Result<WriteOp>,
    ) -> Result<WriteResult> {
        let results = self
            .store
            .write_prepared(&[&self.entry], None, || {
                prepare(&self.entry.current()).map(|op| vec![op])
            })
            .await
            .map_err(Error::without_op)?;
        results
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("backend returned no result for a write"))
    }

    /// Applies `mutate` to record `id` atomically, inside the engine's write (see
    /// [`Mutate`]): returns the new version, times and expiry, and the values at the
    /// mutated paths — so a caller learns a counter's new value without a read.
    ///
    /// A bound an `add` would pass is Conflict carrying the current value
    /// ([`Error::current_value`]); a precondition that fails is Conflict with the current
    /// version; the wrong type at a path is InvalidInput; a mutation that does not create
    /// records ([`Mutate::creates`]) of an absent one is NotFound. Nothing is written then.
    ///
    /// ```
    /// # async fn demo(hits: stowage_core::Collection<serde_json::Value>)
    /// #     -> stowage_core::Result<()> {
    /// use stowage_core::Mutate;
    /// let done = hits.mutate("home", &Mutate::new().add("/n", 1)).await?;
    /// println!("seen {} times", done.integer("/n").unwrap_or(0));
    /// # Ok(()) }
    /// ```
    pub async fn mutate(&self, id: &str, mutate: &Mutate) -> Result<Mutated> {
        let result = self
            .write_one_result(|loaded| self.prepare_mutate(loaded, id, mutate))
            .await?;
        let meta = result
            .meta
            .ok_or_else(|| Error::internal("backend returned no metadata for a mutation"))?;
        Ok(Mutated {
            meta,
            values: result.values,
        })
    }

    /// Deletes the record; `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        self.delete_at(id, Precondition::None).await
    }

    /// Deletes the record only at version `expected`; Conflict (with the current version,
    /// `None` when absent) otherwise.
    pub async fn delete_if_version(&self, id: &str, expected: Version) -> Result<()> {
        self.delete_at(id, Precondition::Version(expected))
            .await
            .map(|_| ())
    }

    async fn delete_at(&self, id: &str, precondition: Precondition) -> Result<bool> {
        validate_id(id)?;
        let meta = self
            .write_one(|loaded| {
                Ok(WriteOp {
                    collection: self.name().to_owned(),
                    revision: loaded.stored.revision,
                    id: id.to_owned(),
                    precondition,
                    action: WriteAction::Delete,
                })
            })
            .await?;
        Ok(meta.is_some())
    }

    /// Deletes every record matching `filter` and returns how many went. It works in
    /// chunks of [`DELETE_CHUNK`] records, each atomic, until a chunk finds nothing: a
    /// record written while it runs may or may not go, and an error part-way leaves the
    /// chunks before it deleted. An empty filter is refused (drop the collection instead).
    pub async fn delete_where(&self, filter: &Filter) -> Result<u64> {
        if filter.is_empty() {
            return Err(Error::invalid(
                "delete_where with an empty filter would delete the whole collection: use \
                 Store::drop_collection for that",
            ));
        }
        let mut deleted = 0;
        loop {
            let n = self
                .store
                .with_spec(&self.entry, |loaded| {
                    let request = self.filter_request(&loaded, filter, Some(DELETE_CHUNK))?;
                    Ok(async move {
                        self.store
                            .backend()
                            .delete_matching(self.ns(), &request, self.store.now())
                            .await
                    })
                })
                .await?;
            deleted += n;
            if n == 0 {
                return Ok(deleted);
            }
        }
    }

    /// A request for the records matching `filter`, in id order.
    fn filter_request(
        &self,
        loaded: &Loaded,
        filter: &Filter,
        limit: Option<usize>,
    ) -> Result<QueryRequest> {
        Ok(QueryRequest {
            collection: self.name().to_owned(),
            revision: loaded.stored.revision,
            filter: filter.resolve(&loaded.queryable)?,
            order: Order {
                index: None,
                descending: false,
            },
            after: None,
            offset: 0,
            limit,
        })
    }

    /// One page of records matching `query`.
    pub async fn query(&self, query: &Query) -> Result<Page<T>> {
        self.store
            .with_spec(&self.entry, |loaded| {
                let resolved =
                    query.resolve(self.name(), loaded.stored.revision, &loaded.queryable)?;
                Ok(async move {
                    // The backend is asked for one match past the limit, which says whether
                    // a next page exists; the records are decoded where the engine holds
                    // them, and only the last kept one's key is copied, for the cursor.
                    let limit = resolved.limit.unwrap_or(usize::MAX);
                    let mut items = Vec::new();
                    let (mut last, mut more) = (None, false);
                    self.store
                        .backend()
                        .query_each(self.ns(), &resolved.request, self.store.now(), &mut |hit| {
                            if items.len() == limit {
                                more = true;
                                return Ok(());
                            }
                            items.push(self.decode_ref(hit.record)?);
                            if items.len() == limit {
                                last = Some(CursorKey {
                                    value: hit.order_value.cloned(),
                                    id: hit.record.id.to_owned(),
                                });
                            }
                            Ok(())
                        })
                        .await?;
                    let next_cursor = last
                        .filter(|_| more)
                        .map(|key| encode_cursor(resolved.fingerprint, key));
                    Ok(Page { items, next_cursor })
                })
            })
            .await
    }

    /// How many records match `filter`.
    pub async fn count(&self, filter: &Filter) -> Result<u64> {
        self.store
            .with_spec(&self.entry, |loaded| {
                let request = self.filter_request(&loaded, filter, None)?;
                Ok(async move {
                    self.store
                        .backend()
                        .count(self.ns(), &request, self.store.now())
                        .await
                })
            })
            .await
    }

    /// How many live records the index `name` holds (those with a value for it): what
    /// `stowage stats` shows per index. InvalidInput for an index not declared (or still
    /// being built).
    pub async fn indexed(&self, name: &str) -> Result<u64> {
        self.store
            .with_spec(&self.entry, |loaded| {
                if loaded.queryable.index_named(name).is_none() {
                    return Err(Error::invalid(format!(
                        "collection {:?} has no index {name:?} that queries may use",
                        self.name()
                    )));
                }
                let mut request = self.filter_request(&loaded, &Filter::new(), None)?;
                request.filter = vec![crate::backend::Predicate {
                    index: name.to_owned(),
                    op: crate::backend::PredicateOp::Range(
                        std::ops::Bound::Unbounded,
                        std::ops::Bound::Unbounded,
                    ),
                }];
                Ok(async move {
                    self.store
                        .backend()
                        .count(self.ns(), &request, self.store.now())
                        .await
                })
            })
            .await
    }

    /// Every record in id order, fetched a page at a time: memory stays constant however
    /// large the collection.
    pub fn scan(&self) -> impl Stream<Item = Result<Versioned<T>>> + Send + 'static {
        let coll = self.clone();
        futures_util::TryStreamExt::and_then(self.scan_stored(None), move |rec| {
            std::future::ready(coll.decode(rec))
        })
    }

    /// Every record whose id starts with `prefix`, in id order, a page at a time.
    pub fn scan_prefix(
        &self,
        prefix: &str,
    ) -> impl Stream<Item = Result<Versioned<T>>> + Send + 'static {
        let coll = self.clone();
        futures_util::TryStreamExt::and_then(
            self.scan_stored(Some(prefix.to_owned())),
            move |rec| std::future::ready(coll.decode(rec)),
        )
    }

    /// Every record as stored (metadata and encoded body), in id order, a page at a time,
    /// optionally only ids starting with `prefix`: what copy and backup read.
    pub fn scan_stored(
        &self,
        prefix: Option<String>,
    ) -> impl Stream<Item = Result<StoredRecord>> + Send + 'static {
        self.scan_stored_from(prefix, None)
    }

    /// [`Collection::scan_stored`] from the first id greater than `after` (`None`: from the
    /// start): how a copy resumes.
    pub fn scan_stored_from(
        &self,
        prefix: Option<String>,
        after: Option<String>,
    ) -> impl Stream<Item = Result<StoredRecord>> + Send + 'static {
        struct State {
            store: Store,
            collection: String,
            prefix: Option<String>,
            after: Option<String>,
            page: std::vec::IntoIter<StoredRecord>,
            done: bool,
        }
        let state = State {
            store: self.store.clone(),
            collection: self.name().to_owned(),
            prefix,
            after,
            page: Vec::new().into_iter(),
            done: false,
        };
        futures_util::stream::try_unfold(state, |mut s| async move {
            loop {
                if let Some(rec) = s.page.next() {
                    return Ok(Some((rec, s)));
                }
                if s.done {
                    return Ok(None);
                }
                let request = ScanRequest {
                    collection: s.collection.clone(),
                    prefix: s.prefix.clone(),
                    after: s.after.take(),
                    limit: SCAN_PAGE,
                };
                let page = s
                    .store
                    .backend()
                    .scan(s.store.namespace_name(), &request, s.store.now())
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

    /// The changes of this collection after `after` (`None`: from now on), with the
    /// namespace-wide events that concern it too (purges, gaps); see [`Store::watch`].
    pub async fn watch(&self, after: Option<crate::ChangeToken>) -> Result<crate::ChangeStream> {
        use futures_util::StreamExt;
        let name = self.name().to_owned();
        let all = self.store.watch(after).await?;
        Ok(all
            .filter(move |e| {
                let keep = match e {
                    Ok(e) => e.collection.as_deref().is_none_or(|c| c == name),
                    Err(_) => true,
                };
                std::future::ready(keep)
            })
            .boxed())
    }

    /// Deletes every record whose id starts with `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(Error::invalid(
                "delete_prefix with an empty prefix would delete the whole collection: use \
                 Store::drop_collection for that",
            ));
        }
        self.store
            .backend()
            .delete_prefix(self.ns(), self.name(), prefix, self.store.now())
            .await
    }

    fn decode(&self, rec: StoredRecord) -> Result<Versioned<T>> {
        let value = self.decode_body(&rec.id, rec.body.content_type, &rec.body.bytes)?;
        Ok(with_value(rec, value))
    }

    /// [`Collection::decode`] of a record read in place.
    fn decode_ref(&self, rec: RecordRef<'_>) -> Result<Versioned<T>> {
        Ok(Versioned {
            value: self.decode_body(rec.id, rec.content_type, rec.body)?,
            id: rec.id.to_owned(),
            version: rec.version,
            created_at: rec.created_at,
            updated_at: rec.updated_at,
            expires_at: rec.expires_at,
        })
    }

    fn binary_body(&self, id: &str) -> Error {
        Error::invalid(format!(
            "record {id:?} of collection {:?} holds binary data: read it with get_raw",
            self.name()
        ))
    }

    fn decode_body(&self, id: &str, content_type: ContentType, body: &[u8]) -> Result<T> {
        if content_type != ContentType::Json {
            return Err(self.binary_body(id));
        }
        decode_json(body).map_err(|e| {
            Error::new(
                ErrorKind::Corrupted,
                format!(
                    "record {id:?} of collection {:?} cannot be decoded as {}: {e}",
                    self.name(),
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// Checks and encodes one put: id, body size, index values, TTL.
    fn prepare_put(&self, loaded: &Loaded, id: &str, value: &T, put: Put) -> Result<WriteOp> {
        validate_id(id)?;
        let spec = &loaded.stored.spec;
        let encode_err = |e: serde_json::Error| {
            Error::invalid(format!("record {id:?} cannot be serialized as JSON: {e}"))
        };
        let (bytes, index) = if spec.indexes.is_empty() {
            (serde_json::to_vec(value).map_err(encode_err)?, Vec::new())
        } else {
            let json = serde_json::to_value(value).map_err(encode_err)?;
            let index = spec.index_entries(&json, id)?;
            (serde_json::to_vec(&json).map_err(encode_err)?, index)
        };
        self.finish_op(loaded, id, Body::json(bytes), index, put)
    }

    fn prepare_raw(&self, loaded: &Loaded, id: &str, bytes: Bytes, put: Put) -> Result<WriteOp> {
        validate_id(id)?;
        self.check_raw(loaded)?;
        self.finish_op(loaded, id, Body::binary(bytes), Vec::new(), put)
    }

    fn check_raw(&self, loaded: &Loaded) -> Result<()> {
        if !self.store.capabilities().binary_bodies {
            return Err(Error::unsupported(
                self.store.backend_name(),
                "binary bodies",
            ));
        }
        if !loaded.stored.spec.indexes.is_empty() {
            return Err(Error::invalid(format!(
                "collection {:?} has indexes, so its bodies must be JSON: binary bodies belong in \
                 a collection without indexes",
                self.name()
            )));
        }
        Ok(())
    }

    fn check_body(&self, id: &str, body: &Body) -> Result<()> {
        let caps = self.store.capabilities();
        if body.bytes.len() > caps.max_body_bytes {
            return Err(Error::invalid(format!(
                "record {id:?} is {} bytes: the {} backend stores bodies of at most {} bytes",
                body.bytes.len(),
                self.store.backend_name(),
                caps.max_body_bytes
            )));
        }
        Ok(())
    }

    fn finish_op(
        &self,
        loaded: &Loaded,
        id: &str,
        body: Body,
        index: IndexEntries,
        put: Put,
    ) -> Result<WriteOp> {
        self.check_body(id, &body)?;
        let ttl = put
            .ttl
            .or_else(|| loaded.stored.spec.default_ttl_duration());
        if let Some(ttl) = ttl {
            if !self.store.capabilities().ttl {
                return Err(Error::unsupported(self.store.backend_name(), "TTLs"));
            }
            if ttl.is_zero() {
                return Err(Error::invalid("a TTL must be longer than zero"));
            }
        }
        Ok(WriteOp {
            collection: self.name().to_owned(),
            revision: loaded.stored.revision,
            id: id.to_owned(),
            precondition: put.precondition,
            action: WriteAction::Put { body, index, ttl },
        })
    }

    /// Checks a mutation and hands it to the engine with the spec it applies under.
    fn prepare_mutate(&self, loaded: &Loaded, id: &str, mutate: &Mutate) -> Result<WriteOp> {
        validate_id(id)?;
        mutate.validate()?;
        let caps = self.store.capabilities();
        if caps.mutations == MutationSupport::None {
            return Err(Error::unsupported(self.store.backend_name(), "mutations"));
        }
        if !caps.ttl && !matches!(mutate.ttl_changes(), crate::TtlChange::Keep) {
            return Err(Error::unsupported(self.store.backend_name(), "TTLs"));
        }
        Ok(WriteOp {
            collection: self.name().to_owned(),
            revision: loaded.stored.revision,
            id: id.to_owned(),
            precondition: mutate.precondition(),
            action: WriteAction::Mutate(MutateAction {
                mutations: mutate.mutations().into(),
                ttl: mutate.ttl_changes(),
                spec: loaded.spec.clone(),
                max_body_bytes: caps.max_body_bytes,
            }),
        })
    }

    /// Checks and encodes a restore: the record as given, indexed under this spec.
    fn prepare_restore(
        &self,
        loaded: &Loaded,
        rec: &StoredRecord,
        precondition: Precondition,
    ) -> Result<WriteOp> {
        validate_id(&rec.id)?;
        self.check_body(&rec.id, &rec.body)?;
        if rec.expires_at.is_some() && !self.store.capabilities().ttl {
            return Err(Error::unsupported(self.store.backend_name(), "TTLs"));
        }
        let index = if rec.body.content_type == ContentType::Json {
            let json: Value = serde_json::from_slice(&rec.body.bytes).map_err(|e| {
                Error::invalid(format!("record {:?} is not valid JSON: {e}", rec.id))
            })?;
            loaded.stored.spec.index_entries(&json, &rec.id)?
        } else {
            self.check_raw(loaded)?;
            Vec::new()
        };
        Ok(WriteOp {
            collection: self.name().to_owned(),
            revision: loaded.stored.revision,
            id: rec.id.clone(),
            precondition,
            action: WriteAction::Restore {
                meta: RecordMeta::of(rec),
                body: rec.body.clone(),
                index,
            },
        })
    }
}

/// Records one [`Collection::delete_where`] chunk deletes atomically.
pub const DELETE_CHUNK: usize = 1000;

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

/// What one op of a committed [`Batch`] did ([`Batch::commit_with_values`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Committed {
    /// What a put or mutation stored, the record a delete removed or a check found
    /// (`None`: there was no live record).
    pub meta: Option<RecordMeta>,
    /// For a mutation, the values at its paths afterwards.
    pub values: Values,
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
/// let stored = batch.commit().await?;
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
    action: PendingAction,
}

#[derive(Debug)]
enum PendingAction {
    Put(PendingBody, Option<Duration>),
    Mutate(Mutate),
    Delete,
    Check,
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
        action: Result<PendingAction>,
    ) -> &mut Self {
        let i = self.ops.len();
        let action = action.unwrap_or_else(|e| {
            self.error.get_or_insert(e.at_op(i));
            PendingAction::Check
        });
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
            action,
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
            .map(|v| PendingAction::Put(PendingBody::Json(v), put.ttl))
            .map_err(|e| {
                Error::invalid(format!("record {id:?} cannot be serialized as JSON: {e}"))
            });
        self.push(coll, id, put.precondition, body)
    }

    /// Adds a write of opaque bytes (collections without indexes).
    pub fn put_raw<T>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        bytes: impl Into<Bytes>,
        put: Put,
    ) -> &mut Self {
        let action = PendingAction::Put(PendingBody::Raw(bytes.into()), put.ttl);
        self.push(coll, id, put.precondition, Ok(action))
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

    /// Adds a mutation of record `id` (see [`Collection::mutate`]); its precondition is the
    /// mutation's own. [`Batch::commit_with_values`] returns the mutated values.
    pub fn mutate<T>(&mut self, coll: &Collection<T>, id: &str, mutate: &Mutate) -> &mut Self {
        let action = PendingAction::Mutate(mutate.clone());
        self.push(coll, id, mutate.precondition(), Ok(action))
    }

    /// Adds a delete (no error when the record is absent).
    pub fn delete<T>(&mut self, coll: &Collection<T>, id: &str) -> &mut Self {
        self.push(coll, id, Precondition::None, Ok(PendingAction::Delete))
    }

    /// Adds a delete at version `expected`.
    pub fn delete_if_version<T>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        expected: Version,
    ) -> &mut Self {
        self.push(
            coll,
            id,
            Precondition::Version(expected),
            Ok(PendingAction::Delete),
        )
    }

    /// Adds a check: the batch applies only if `precondition` holds for the record, which
    /// the batch does not write. [`Precondition::None`] is refused: it checks nothing.
    pub fn check<T>(
        &mut self,
        coll: &Collection<T>,
        id: &str,
        precondition: Precondition,
    ) -> &mut Self {
        let action = if precondition == Precondition::None {
            Err(Error::invalid(format!(
                "a check of record {id:?} needs a condition: a version, exists or absent"
            )))
        } else {
            Ok(PendingAction::Check)
        };
        self.push(coll, id, precondition, action)
    }

    /// Applies every op or none. Returns, per op, what a put stored, the record a delete
    /// removed or the record a check found (`None`: there was no live record).
    pub async fn commit(self) -> Result<Vec<Option<RecordMeta>>> {
        let results = self.commit_with_values().await?;
        Ok(results.into_iter().map(|r| r.meta).collect())
    }

    /// [`Batch::commit`], returning with each op's metadata the values at the paths a
    /// mutation op changed (empty for other ops).
    pub async fn commit_with_values(self) -> Result<Vec<Committed>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries: Vec<&Arc<CollectionEntry>> = Vec::new();
        for op in &self.ops {
            if !entries.iter().any(|e| Arc::ptr_eq(e, &op.entry)) {
                entries.push(&op.entry);
            }
        }
        let prepare = || {
            let mut ops = Vec::with_capacity(self.ops.len());
            for (i, op) in self.ops.iter().enumerate() {
                ops.push(self.prepare(op).map_err(|e| e.at_op(i))?);
            }
            Ok(ops)
        };
        // Input errors first: a caller fixing its batch should not learn about them one by
        // one.
        let ops = prepare()?;
        let caps = self.store.capabilities();
        if let Some(max) = caps.max_batch_ops.filter(|max| self.ops.len() > *max) {
            return Err(Error::invalid(format!(
                "the batch holds {} ops: the {} backend takes at most {max} in one batch",
                self.ops.len(),
                self.store.backend_name()
            )));
        }
        let scope_needed = if self.ops.len() == 1 {
            BatchScope::None
        } else if entries.len() == 1 {
            BatchScope::Collection
        } else {
            BatchScope::Namespace
        };
        if caps.batch_scope < scope_needed {
            return Err(Error::unsupported(
                self.store.backend_name(),
                if scope_needed == BatchScope::Namespace {
                    "atomic batches across collections"
                } else {
                    "atomic batches"
                },
            ));
        }
        let results: Vec<WriteResult> = self
            .store
            .write_prepared(&entries, Some(ops), prepare)
            .await?;
        Ok(results
            .into_iter()
            .map(|r| Committed {
                meta: r.meta,
                values: r.values,
            })
            .collect())
    }

    fn prepare(&self, op: &PendingOp) -> Result<WriteOp> {
        let loaded = op.entry.current();
        let coll: Collection<Value> = Collection::new(self.store.clone(), op.entry.clone());
        let put = |ttl: &Option<Duration>| Put {
            precondition: op.precondition,
            ttl: *ttl,
        };
        let plain = |action| {
            validate_id(&op.id).map(|()| WriteOp {
                collection: op.entry.name.clone(),
                revision: loaded.stored.revision,
                id: op.id.clone(),
                precondition: op.precondition,
                action,
            })
        };
        match &op.action {
            PendingAction::Delete => plain(WriteAction::Delete),
            PendingAction::Check => plain(WriteAction::Check),
            PendingAction::Put(PendingBody::Json(v), ttl) => {
                coll.prepare_put(&loaded, &op.id, v, put(ttl))
            }
            PendingAction::Put(PendingBody::Raw(b), ttl) => {
                coll.prepare_raw(&loaded, &op.id, b.clone(), put(ttl))
            }
            PendingAction::Mutate(m) => coll.prepare_mutate(&loaded, &op.id, m),
        }
    }
}
