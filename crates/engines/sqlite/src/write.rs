//! The write side: every job here runs inside a shared write transaction on the writer
//! thread (see `group_commit.rs`), and a job that fails is undone alone.
//!
//! A write op is a handful of statements on one connection, each prepared once and cached:
//! the stored row's metadata by id, the unique holders of the op's unique values, then one
//! `INSERT … ON CONFLICT (id) DO UPDATE` with the index columns, and the side rows of the
//! multi-valued indexes. No round trips: SQLite runs in the process.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension};
use stowage_core::backend::{
    entry_values, first_version, IndexEntries, IndexFill, Live, Precondition, RecordMeta, Revision,
    WriteAction, WriteOp, WriteResult,
};
use stowage_core::{Body, ChangeEvent, ChangeOp, Error, Result, Timestamp, Version};
use stowage_sql::prefix_upper;

use crate::group_commit::Txn;
use crate::schema::{body_columns, sql_value, Layout};

/// A collection as a job writes it: its layout and the SQL of its statements, made once per
/// job rather than once per op.
pub(crate) struct WriteColl {
    pub ns: String,
    pub name: String,
    pub layout: Layout,
    select_meta: String,
    upsert: String,
    /// The insert of a new record: writes nothing when the id is taken.
    insert_new: String,
}

/// A stored row's metadata.
#[derive(Debug, Clone, Copy)]
struct Stored {
    version: Version,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Option<Timestamp>,
}

impl Stored {
    fn live(self, now: Timestamp) -> Option<RecordMeta> {
        if self.expires_at.is_some_and(|x| x <= now) {
            return None;
        }
        Some(RecordMeta {
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        })
    }
}

impl WriteColl {
    /// The collection as stored now: NotFound when it is not there.
    pub(crate) fn open(t: &Txn<'_>, ns: &str, coll: &str) -> Result<Self> {
        let layout = t
            .layout(ns, coll)?
            .ok_or_else(|| Error::collection_not_found(ns, coll))?;
        let table = &layout.table;
        let mut columns = vec![
            "id",
            "version",
            "body",
            "blob",
            "created_at",
            "updated_at",
            "expires_at",
        ];
        columns.extend(layout.columns.iter().map(|c| c.column.as_str()));
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let updates: Vec<String> = columns[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        Ok(WriteColl {
            ns: ns.to_owned(),
            name: coll.to_owned(),
            select_meta: format!(
                "SELECT version, created_at, updated_at, expires_at FROM {table} WHERE id = ?1"
            ),
            upsert: format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
                columns.join(", "),
                placeholders.join(", "),
                updates.join(", ")
            ),
            insert_new: format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
                columns.join(", "),
                placeholders.join(", "),
            ),
            layout,
        })
    }

    pub(crate) fn check_revision(&self, revision: Revision) -> Result<()> {
        if revision != self.layout.stored.revision {
            return Err(Error::stale_spec(&self.name));
        }
        Ok(())
    }

    fn stored(&self, t: &Txn<'_>, id: &str) -> Result<Option<Stored>> {
        t.conn
            .prepare_cached(&self.select_meta)
            .and_then(|mut s| {
                s.query_row(params![id], |r| {
                    Ok(Stored {
                        version: r.get::<_, i64>(0)? as Version,
                        created_at: Timestamp::from_micros(r.get(1)?),
                        updated_at: Timestamp::from_micros(r.get(2)?),
                        expires_at: r.get::<_, Option<i64>>(3)?.map(Timestamp::from_micros),
                    })
                })
                .optional()
            })
            .map_err(t.err("reading a record"))
    }

    /// A put's (or a mutation's) record stored over what `id` holds: version + 1 over the
    /// live record, or the first version; unique values checked first.
    #[allow(clippy::too_many_arguments)] // the pieces of one row, each named
    fn put(
        &self,
        t: &Txn<'_>,
        id: &str,
        (stored, live): (Option<Stored>, Option<RecordMeta>),
        body: &Body,
        index: &IndexEntries,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<RecordMeta> {
        self.check_unique(t, id, index, now)?;
        let meta = match live {
            Some(l) => RecordMeta {
                version: l.version + 1,
                created_at: l.created_at,
                updated_at: now,
                expires_at,
            },
            None => RecordMeta {
                version: first_version(t.floor(&self.ns, &self.name)?, stored.map(|s| s.version)),
                created_at: now,
                updated_at: now,
                expires_at,
            },
        };
        self.store(t, id, meta, body, index, stored.is_some())?;
        Ok(meta)
    }

    /// The body of a stored record: JSON text or bytes, whichever column holds it.
    fn body(&self, t: &Txn<'_>, id: &str) -> Result<Body> {
        let sql = format!("SELECT body, blob FROM {} WHERE id = ?1", self.layout.table);
        t.conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row(params![id], |r| {
                    Ok(match r.get::<_, Option<String>>(0)? {
                        Some(text) => Body::json(text),
                        None => Body::binary(r.get::<_, Vec<u8>>(1)?),
                    })
                })
            })
            .map_err(t.err("reading a record"))
    }

    /// Removes a stored record for good: the row, its side rows, and the floor rises to its
    /// version.
    fn remove(&self, t: &Txn<'_>, id: &str, version: Version) -> Result<()> {
        let failed = t.err("deleting a record");
        t.conn
            .prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", self.layout.table))
            .and_then(|mut s| s.execute(params![id]))
            .map_err(&failed)?;
        for side in &self.layout.sides {
            t.conn
                .prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", side.table))
                .and_then(|mut s| s.execute(params![id]))
                .map_err(&failed)?;
        }
        t.raise_floor(&self.ns, &self.name, version)
    }

    /// AlreadyExists naming the holder when a unique index already holds one of `index`'s
    /// values for another live record. Expired holders let their values go.
    fn check_unique(
        &self,
        t: &Txn<'_>,
        id: &str,
        index: &IndexEntries,
        now: Timestamp,
    ) -> Result<()> {
        let failed = t.err("checking a unique index");
        let live = |x: Option<i64>| x.is_none_or(|x| x > now.as_micros());
        for c in self.layout.columns.iter().filter(|c| c.unique) {
            let Some(v) = entry_values(index, &c.index).first() else {
                continue;
            };
            let holder: Option<(String, Option<i64>)> = t
                .conn
                .prepare_cached(&format!(
                    "SELECT id, expires_at FROM {} WHERE {} = ?1",
                    self.layout.table, c.column
                ))
                .and_then(|mut s| {
                    s.query_row(params![sql_value(v)], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(&failed)?;
            match holder {
                Some((holder, x)) if holder != id => {
                    if live(x) {
                        return Err(Error::unique_violation(&self.name, &c.index, &holder));
                    }
                    t.conn
                        .prepare_cached(&format!(
                            "UPDATE {} SET {} = NULL WHERE id = ?1",
                            self.layout.table, c.column
                        ))
                        .and_then(|mut s| s.execute(params![holder]))
                        .map_err(&failed)?;
                }
                _ => {}
            }
        }
        for side in self.layout.sides.iter().filter(|s| s.unique) {
            for v in entry_values(index, &side.index) {
                let holder: Option<(String, Option<i64>)> = t
                    .conn
                    .prepare_cached(&format!(
                        "SELECT s.id, t.expires_at FROM {} s LEFT JOIN {} t ON t.id = s.id \
                         WHERE s.value = ?1",
                        side.table, self.layout.table
                    ))
                    .and_then(|mut s| {
                        s.query_row(params![sql_value(v)], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(&failed)?;
                match holder {
                    Some((holder, x)) if holder != id => {
                        if live(x) {
                            return Err(Error::unique_violation(&self.name, &side.index, &holder));
                        }
                        t.conn
                            .prepare_cached(&format!(
                                "DELETE FROM {} WHERE value = ?1 AND id = ?2",
                                side.table
                            ))
                            .and_then(|mut s| s.execute(params![sql_value(v), holder]))
                            .map_err(&failed)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Writes the record's row and side rows (`replacing`: a row is there already).
    fn store(
        &self,
        t: &Txn<'_>,
        id: &str,
        meta: RecordMeta,
        body: &stowage_core::Body,
        index: &IndexEntries,
        replacing: bool,
    ) -> Result<()> {
        self.write_row(t, &self.upsert, id, meta, body, index)
            .map_err(t.err("writing a record"))?;
        self.write_sides(t, id, index, replacing)
    }

    /// Runs `sql` (the upsert or the insert of a new record) with the row's values; how
    /// many rows it wrote.
    fn write_row(
        &self,
        t: &Txn<'_>,
        sql: &str,
        id: &str,
        meta: RecordMeta,
        body: &stowage_core::Body,
        index: &IndexEntries,
    ) -> rusqlite::Result<usize> {
        let (text, blob) = body_columns(body);
        let mut values: Vec<rusqlite::types::ToSqlOutput<'_>> = vec![
            id.into(),
            (meta.version as i64).into(),
            text,
            blob,
            meta.created_at.as_micros().into(),
            meta.updated_at.as_micros().into(),
            rusqlite::types::ToSqlOutput::Owned(
                meta.expires_at
                    .map_or(Value::Null, |x| Value::Integer(x.as_micros())),
            ),
        ];
        for c in &self.layout.columns {
            values.push(rusqlite::types::ToSqlOutput::Owned(
                entry_values(index, &c.index)
                    .first()
                    .map_or(Value::Null, sql_value),
            ));
        }
        t.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params_from_iter(values)))
    }

    /// The side rows of the multi-valued indexes (`replacing`: drop the old ones first).
    fn write_sides(
        &self,
        t: &Txn<'_>,
        id: &str,
        index: &IndexEntries,
        replacing: bool,
    ) -> Result<()> {
        let failed = t.err("writing a record");
        for side in &self.layout.sides {
            if replacing {
                t.conn
                    .prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", side.table))
                    .and_then(|mut s| s.execute(params![id]))
                    .map_err(&failed)?;
            }
            for v in entry_values(index, &side.index) {
                t.conn
                    .prepare_cached(&format!(
                        "INSERT INTO {} (value, id) VALUES (?1, ?2)",
                        side.table
                    ))
                    .and_then(|mut s| s.execute(params![sql_value(v), id]))
                    .map_err(&failed)?;
            }
        }
        Ok(())
    }

    /// An insert where no row has the id: one statement, its unique values checked by the
    /// unique B-trees. `None` when the id or a unique value is taken (live or expired):
    /// then the full path decides, in the order every engine keeps.
    fn insert_new(
        &self,
        t: &Txn<'_>,
        id: &str,
        body: &stowage_core::Body,
        index: &IndexEntries,
        ttl: Option<std::time::Duration>,
        now: Timestamp,
    ) -> Result<Option<RecordMeta>> {
        // A unique side table would be checked after the row is in: not this path.
        if self.layout.sides.iter().any(|s| s.unique) {
            return Ok(None);
        }
        let meta = RecordMeta {
            version: first_version(t.floor(&self.ns, &self.name)?, None),
            created_at: now,
            updated_at: now,
            expires_at: ttl.map(|d| now.saturating_add(d)),
        };
        match self.write_row(t, &self.insert_new, id, meta, body, index) {
            Ok(1) => {
                self.write_sides(t, id, index, false)?;
                Ok(Some(meta))
            }
            Ok(_) => Ok(None),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(None)
            }
            Err(e) => Err(t.err("writing a record")(e)),
        }
    }

    /// Applies one op: revision, then precondition, then unique indexes (the order every
    /// engine keeps, so errors agree).
    fn apply(&self, t: &Txn<'_>, op: WriteOp, now: Timestamp) -> Result<WriteResult> {
        self.check_revision(op.revision)?;
        if let (Precondition::Absent, WriteAction::Put { body, index, ttl }) =
            (&op.precondition, &op.action)
        {
            if let Some(meta) = self.insert_new(t, &op.id, body, index, *ttl, now)? {
                return Ok(WriteResult::new(Some(meta)));
            }
        }
        let stored = self.stored(t, &op.id)?;
        let live = stored.and_then(|s| s.live(now));
        match op.action {
            WriteAction::Check => {
                op.precondition
                    .check(&self.name, &op.id, live.map(|m| m.version))?;
                Ok(WriteResult::new(live))
            }
            WriteAction::Delete => {
                op.precondition
                    .check(&self.name, &op.id, live.map(|m| m.version))?;
                if let Some(s) = stored {
                    self.remove(t, &op.id, s.version)?;
                }
                Ok(WriteResult::new(live))
            }
            WriteAction::Put { body, index, ttl } => {
                op.precondition
                    .check(&self.name, &op.id, live.map(|m| m.version))?;
                let expires_at = ttl.map(|d| now.saturating_add(d));
                let meta = self.put(t, &op.id, (stored, live), &body, &index, expires_at, now)?;
                Ok(WriteResult::new(Some(meta)))
            }
            WriteAction::Mutate(m) => {
                op.precondition
                    .check(&self.name, &op.id, live.map(|m| m.version))?;
                let body = live.map(|_| self.body(t, &op.id)).transpose()?;
                let current = body
                    .as_ref()
                    .zip(live)
                    .map(|(body, meta)| Live { body, meta });
                let applied = m.apply(&self.name, &op.id, current)?;
                let expires_at = applied.expiry.at(now);
                let meta = self.put(
                    t,
                    &op.id,
                    (stored, live),
                    &applied.body,
                    &applied.index,
                    expires_at,
                    now,
                )?;
                Ok(WriteResult {
                    meta: Some(meta),
                    values: applied.values,
                })
            }
            WriteAction::Restore { meta, body, index } => {
                op.precondition
                    .check(&self.name, &op.id, live.map(|m| m.version))?;
                self.check_unique(t, &op.id, &index, now)?;
                if let Some(s) = stored {
                    // Replacing another version forgets it: the floor keeps it from coming
                    // back.
                    if s.version != meta.version {
                        t.raise_floor(&self.ns, &self.name, s.version)?;
                    }
                }
                self.store(t, &op.id, meta, &body, &index, stored.is_some())?;
                Ok(WriteResult::new(Some(meta)))
            }
        }
    }
}

/// Applies a batch in order; the first op that fails fails the job (and the job is undone).
pub(crate) fn write_job(
    t: &mut Txn<'_>,
    ns: &str,
    ops: Vec<WriteOp>,
    now: Timestamp,
    keep: u64,
) -> Result<Vec<WriteResult>> {
    let mut colls: Vec<WriteColl> = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    // Unwatched namespaces (most) pay nothing for the change log.
    let logging = keep > 0 && t.logs_changes(ns)?;
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
            t.log(ns, change, keep)?;
        }
        results.push(result);
    }
    Ok(results)
}

/// Adds a page of values to the building indexes (see `Backend::fill_index`).
pub(crate) fn fill_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    revision: Revision,
    fills: Vec<IndexFill>,
    now: Timestamp,
) -> Result<()> {
    let wc = WriteColl::open(t, ns, coll)?;
    wc.check_revision(revision)?;
    let failed = t.err("filling an index");
    for f in fills {
        match wc.stored(t, &f.id)? {
            Some(s) if s.version == f.version => {}
            // Gone, or written since it was read: that write carried the entries.
            _ => continue,
        }
        wc.check_unique(t, &f.id, &f.index, now)?;
        for (name, values) in &f.index {
            if let Some(c) = wc.layout.columns.iter().find(|c| &c.index == name) {
                t.conn
                    .prepare_cached(&format!(
                        "UPDATE {} SET {} = ?1 WHERE id = ?2",
                        wc.layout.table, c.column
                    ))
                    .and_then(|mut s| {
                        s.execute(params![values.first().map_or(Value::Null, sql_value), f.id])
                    })
                    .map_err(&failed)?;
            } else if let Some(side) = wc.layout.sides.iter().find(|s| &s.index == name) {
                // Rows a previous fill of the same record (another instance helping) left.
                t.conn
                    .prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", side.table))
                    .and_then(|mut s| s.execute(params![f.id]))
                    .map_err(&failed)?;
                for v in values {
                    t.conn
                        .prepare_cached(&format!(
                            "INSERT INTO {} (value, id) VALUES (?1, ?2)",
                            side.table
                        ))
                        .and_then(|mut s| s.execute(params![sql_value(v), f.id]))
                        .map_err(&failed)?;
                }
            }
        }
    }
    Ok(())
}

/// Deletes every record whose id starts with `prefix`; how many live ones went.
pub(crate) fn delete_prefix_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    prefix: &str,
    now: Timestamp,
    keep: u64,
) -> Result<u64> {
    let wc = WriteColl::open(t, ns, coll)?;
    let range = match prefix_upper(prefix) {
        Some(upper) => ("id >= ?1 AND id < ?2".to_owned(), Some(upper)),
        None => ("id >= ?1".to_owned(), None),
    };
    let mut values = vec![Value::Text(prefix.to_owned())];
    values.extend(range.1.map(Value::Text));
    let live = remove_where(t, &wc, &range.0, values, now)?;
    if live > 0 {
        let change = ChangeEvent::new(ChangeOp::DeletePrefix, Some(coll), now)
            .id(prefix)
            .count(live);
        t.log(ns, change, keep)?;
    }
    Ok(live)
}

/// Removes the records of `wc` matching `condition` (numbered parameters `values`): rows,
/// side rows, the floor raised to the highest version removed. How many of them were live
/// at `now`.
fn remove_where(
    t: &Txn<'_>,
    wc: &WriteColl,
    condition: &str,
    values: Vec<Value>,
    now: Timestamp,
) -> Result<u64> {
    let failed = t.err("deleting records");
    let deleting = values.len();
    let mut values = values;
    values.push(Value::Integer(now.as_micros()));
    let now_at = values.len();
    let values = &values;
    let table = &wc.layout.table;
    let (highest, live): (i64, i64) = t
        .conn
        .prepare_cached(&format!(
            "SELECT coalesce(max(version), 0), \
             coalesce(sum(expires_at IS NULL OR expires_at > ?{now_at}), 0) \
             FROM {table} WHERE {condition}"
        ))
        .and_then(|mut s| {
            s.query_row(params_from_iter(values.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .map_err(&failed)?;
    if highest == 0 {
        return Ok(0);
    }
    for side in &wc.layout.sides {
        t.conn
            .prepare_cached(&format!(
                "DELETE FROM {} WHERE id IN (SELECT id FROM {table} WHERE {condition})",
                side.table
            ))
            .and_then(|mut s| s.execute(params_from_iter(values[..deleting].iter())))
            .map_err(&failed)?;
    }
    t.conn
        .prepare_cached(&format!("DELETE FROM {table} WHERE {condition}"))
        .and_then(|mut s| s.execute(params_from_iter(values[..deleting].iter())))
        .map_err(&failed)?;
    t.raise_floor(&wc.ns, &wc.name, highest as Version)?;
    Ok(live as u64)
}

/// Deletes the records a query found, each only if it is still live at the version found
/// (one written since may no longer match); how many went.
pub(crate) fn delete_found_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    revision: Revision,
    found: Vec<(String, Version)>,
    now: Timestamp,
    keep: u64,
) -> Result<u64> {
    let wc = WriteColl::open(t, ns, coll)?;
    wc.check_revision(revision)?;
    let mut deleted = 0;
    for (id, version) in found {
        let Some(s) = wc.stored(t, &id)? else {
            continue;
        };
        if s.version == version && s.live(now).is_some() {
            wc.remove(t, &id, s.version)?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        t.log(
            ns,
            ChangeEvent::new(ChangeOp::DeleteWhere, Some(coll), now).count(deleted),
            keep,
        )?;
    }
    Ok(deleted)
}

/// Removes the records of `colls` expired at `now`; how many.
pub(crate) fn purge_job(
    t: &mut Txn<'_>,
    ns: &str,
    colls: Vec<String>,
    now: Timestamp,
    keep: u64,
) -> Result<u64> {
    let mut purged = 0;
    for coll in colls {
        let wc = match WriteColl::open(t, ns, &coll) {
            Ok(wc) => wc,
            // Dropped since it was listed.
            Err(e) if e.kind() == stowage_core::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let failed = t.err("purging");
        let table = &wc.layout.table;
        let count: i64 = t
            .conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM {table} WHERE expires_at <= ?1"
            ))
            .and_then(|mut s| s.query_row(params![now.as_micros()], |r| r.get(0)))
            .map_err(&failed)?;
        if count > 0 {
            let values = vec![Value::Integer(now.as_micros())];
            remove_where(t, &wc, "expires_at <= ?1", values, now)?;
            purged += count as u64;
        }
    }
    if purged > 0 {
        t.log(
            ns,
            ChangeEvent::new(ChangeOp::Purge, None, now).count(purged),
            keep,
        )?;
    }
    Ok(purged)
}
