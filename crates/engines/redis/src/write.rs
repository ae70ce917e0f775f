//! Writes: a batch is one call of `write.lua` (by SHA; redis-rs loads the script again when
//! a restarted server answers `NOSCRIPT`). The script checks every op against the records
//! as the ops before it leave them, then writes them all — records, index members, unique
//! claims, TTL and the change log — so no reader ever sees a record without its index
//! entries or a TTL set after the fact.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use stowage_core::backend::{
    IndexFill, QueryRequest, RecordMeta, Revision, WriteAction, WriteOp, WriteResult,
};
use stowage_core::{
    ChangeOp, ContentType, Error, ErrorKind, Precondition, Result, Timestamp, Version,
};

use crate::error::redis_error;
use crate::mutate;
use crate::open::RedisBackend;
use crate::schema::member;

impl RedisBackend {
    /// Applies a batch atomically; results in op order. `None`: the script left the batch's
    /// mutations to compare-and-set (see `mutate.rs`) and wrote nothing.
    pub(crate) async fn write_batch(
        &self,
        ns: &str,
        ops: &[WriteOp],
        now: Timestamp,
    ) -> Result<Option<Vec<WriteResult>>> {
        let keys = self.keys(ns);
        // Which indexes are unique, from the spec each op was prepared with (an op whose
        // spec is gone or moved on is refused by the script).
        let mut unique: HashMap<(&str, Revision), Vec<String>> = HashMap::new();
        for op in ops {
            if let Entry::Vacant(slot) = unique.entry((op.collection.as_str(), op.revision)) {
                slot.insert(self.unique_indexes(ns, &op.collection, op.revision).await?);
            }
        }
        let mut call = self.inner.write_script.key(keys.revs());
        call.arg(keys.base())
            .arg(
                self.caller_now(now)
                    .map_or(String::new(), |n| n.to_string()),
            )
            .arg(self.inner.config.change_log)
            .arg(ops.len());
        for op in ops {
            push_op(
                &mut call,
                op,
                &unique[&(op.collection.as_str(), op.revision)],
            );
        }
        let answer: Vec<String> = match call.invoke_async(&mut self.conn()).await {
            Ok(a) => a,
            Err(e) if e.code() == Some("STOWAGE_FALLBACK") => return Ok(None),
            Err(e) => return Err(self.explain(ns, ops, e)),
        };
        if answer.len() != ops.len() {
            return Err(Error::internal(format!(
                "redis {}: the write script answered {} results for {} ops",
                self.inner.target,
                answer.len(),
                ops.len()
            )));
        }
        ops.iter()
            .zip(&answer)
            .map(|(op, a)| result(op, a))
            .collect::<Result<_>>()
            .map(Some)
    }

    /// The unique indexes of `collection` at `revision` (none when the collection is gone
    /// or moved on: the script then refuses the call).
    async fn unique_indexes(
        &self,
        ns: &str,
        collection: &str,
        revision: Revision,
    ) -> Result<Vec<String>> {
        Ok(self
            .spec_at(ns, collection, revision)
            .await?
            .map(|s| {
                s.spec
                    .indexes
                    .iter()
                    .filter(|i| i.unique)
                    .map(|i| i.name.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The script's own refusals as Stowage errors naming their op; the rest as Redis
    /// errors.
    fn explain(&self, ns: &str, ops: &[WriteOp], e: redis::RedisError) -> Error {
        let Some((refusal, op)) = Refusal::of(&e).and_then(|r| Some((r, ops.get(r.at)?))) else {
            return redis_error(e, "writing", &self.inner.target);
        };
        let at = refusal.at;
        if refusal.code == "STOWAGE_PRECONDITION" {
            let live = refusal
                .words
                .first()
                .and_then(|w| w.parse::<Version>().ok());
            return match op.precondition.check(&op.collection, &op.id, live) {
                Err(err) => err.at_op(at),
                Ok(()) => Error::internal(format!(
                    "redis {}: the write script refused op {at} on a precondition that holds",
                    self.inner.target
                )),
            };
        }
        match refusal
            .mutation_error(op)
            .or_else(|| refusal.error(ns, &op.collection))
        {
            Some(err) => err.at_op(at),
            None => redis_error(e, "writing", &self.inner.target),
        }
    }
}

/// One op's result from the script's answer: its meta, then for a mutation a line of the
/// values at its paths.
fn result(op: &WriteOp, answer: &str) -> Result<WriteResult> {
    let WriteAction::Mutate(m) = &op.action else {
        return Ok(WriteResult::new(parse_meta(answer)?));
    };
    let (meta, values) = answer.split_once('\n').unwrap_or((answer, "[]"));
    let mut r = WriteResult::new(parse_meta(meta)?);
    r.values = mutate::values(m, values)?;
    Ok(r)
}

/// A refusal of one of the scripts: an error reply `STOWAGE_<WHAT> <op> <words…>`.
#[derive(Debug, Clone, Copy)]
struct Refusal<'a> {
    code: &'a str,
    /// The op (or fill) it is about.
    at: usize,
    words: [&'a str; 2],
}

impl<'a> Refusal<'a> {
    fn of(e: &'a redis::RedisError) -> Option<Self> {
        let code = e.code()?;
        if !code.starts_with("STOWAGE_") {
            return None;
        }
        let mut words = e.detail().unwrap_or_default().splitn(3, ' ');
        let at = words.next()?.parse().ok()?;
        Some(Refusal {
            code,
            at,
            words: [words.next().unwrap_or(""), words.next().unwrap_or("")],
        })
    }

    /// What the refusal means on `collection`, for every code but a precondition (which
    /// needs the op's own precondition to say which error it is).
    fn error(&self, ns: &str, collection: &str) -> Option<Error> {
        match self.code {
            "STOWAGE_STALE" => Some(Error::stale_spec(collection)),
            "STOWAGE_GONE" => Some(Error::collection_not_found(ns, collection)),
            // Index names cannot hold a space; the holder's id may.
            "STOWAGE_UNIQUE" => Some(Error::unique_violation(
                collection,
                self.words[0],
                self.words[1],
            )),
            _ => None,
        }
    }

    /// What a refusal of a mutation op means: its record is absent, or a bound refused
    /// mutation `k` (`STOWAGE_BOUND <op> max:<k> <current value>`).
    fn mutation_error(&self, op: &WriteOp) -> Option<Error> {
        let WriteAction::Mutate(m) = &op.action else {
            return None;
        };
        match self.code {
            "STOWAGE_ABSENT" => Some(Error::not_found(&op.collection, &op.id)),
            "STOWAGE_BOUND" => {
                let (bound, k) = self.words[0].split_once(':')?;
                let current = serde_json::from_str(self.words[1]).ok()?;
                Some(m.bound_refusal(
                    &op.collection,
                    &op.id,
                    k.parse().ok()?,
                    current,
                    bound == "max",
                ))
            }
            _ => None,
        }
    }
}

/// One op's arguments, in the order `write.lua` reads them.
fn push_op(call: &mut redis::ScriptInvocation<'_>, op: &WriteOp, unique: &[String]) {
    let (cond, expect) = match op.precondition {
        Precondition::None => (0, String::new()),
        Precondition::Absent => (1, String::new()),
        Precondition::Exists => (2, String::new()),
        Precondition::Version(v) => (3, v.to_string()),
    };
    call.arg(&op.collection)
        .arg(op.revision.to_string())
        .arg(&op.id);
    let none = String::new();
    match &op.action {
        WriteAction::Mutate(m) => {
            let (ttl_change, ttl) = mutate::ttl_args(m);
            call.arg(4)
                .arg(cond)
                .arg(&expect)
                .arg(mutate::program(m))
                .arg(ttl_change)
                .arg(ttl)
                .arg(m.max_body_bytes)
                .arg(i32::from(!m.spec.indexes.is_empty()))
                .arg(&none)
                .arg(&none)
                .arg(0);
        }
        WriteAction::Check | WriteAction::Delete => {
            let action = i32::from(!matches!(op.action, WriteAction::Check));
            call.arg(action).arg(cond).arg(&expect);
            for _ in 0..7 {
                call.arg(&none);
            }
            call.arg(0);
        }
        WriteAction::Put { body, index, ttl } => {
            call.arg(2)
                .arg(cond)
                .arg(&expect)
                .arg(body.bytes.as_ref())
                .arg(content_type(body.content_type))
                .arg(ttl.map_or(none.clone(), |t| t.as_micros().to_string()));
            for _ in 0..4 {
                call.arg(&none);
            }
            push_entries(call, unique, index);
        }
        WriteAction::Restore { meta, body, index } => {
            call.arg(3)
                .arg(cond)
                .arg(&expect)
                .arg(body.bytes.as_ref())
                .arg(content_type(body.content_type))
                .arg(&none)
                .arg(meta.version.to_string())
                .arg(meta.created_at.as_micros().to_string())
                .arg(meta.updated_at.as_micros().to_string())
                .arg(
                    meta.expires_at
                        .map_or(none.clone(), |t| t.as_micros().to_string()),
                );
            push_entries(call, unique, index);
        }
    }
}

/// The record's index entries: per index, its name, whether it is unique, and its members.
fn push_entries(
    call: &mut redis::ScriptInvocation<'_>,
    unique: &[String],
    entries: &stowage_core::backend::IndexEntries,
) {
    call.arg(entries.len());
    for (index, values) in entries {
        call.arg(index)
            .arg(if unique.contains(index) { "1" } else { "0" })
            .arg(values.len());
        for v in values {
            call.arg(member(v));
        }
    }
}

/// The stored name of a content type.
pub(crate) fn content_type(t: ContentType) -> &'static str {
    match t {
        ContentType::Json => "json",
        _ => "bytes",
    }
}

/// `"version:created:updated:expires|-"` (microseconds), or `""` for no record.
fn parse_meta(text: &str) -> Result<Option<RecordMeta>> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::new(
            ErrorKind::Internal,
            format!("redis: the write script answered {text:?}"),
        )
    };
    let parts: Vec<&str> = text.split(':').collect();
    let [v, c, u, x] = parts.as_slice() else {
        return Err(bad());
    };
    let micros = |s: &str| {
        s.parse::<i64>()
            .map(Timestamp::from_micros)
            .map_err(|_| bad())
    };
    Ok(Some(RecordMeta {
        version: v.parse().map_err(|_| bad())?,
        created_at: micros(c)?,
        updated_at: micros(u)?,
        expires_at: if *x == "-" { None } else { Some(micros(x)?) },
    }))
}

/// How many records one removal script takes.
const REMOVE_CHUNK: usize = 1000;

impl RedisBackend {
    /// Runs `remove.lua` on `targets` (id, version matched at or `None`); returns (records
    /// removed, live records removed).
    #[allow(clippy::too_many_arguments)]
    async fn remove_ids(
        &self,
        ns: &str,
        collection: &str,
        revision: Option<Revision>,
        now: Timestamp,
        event: &str,
        event_id: &str,
        only_expired: bool,
        targets: &[(String, Option<u64>)],
    ) -> Result<(u64, u64)> {
        let keys = self.keys(ns);
        let mut call = self.inner.remove_script.key(keys.revs());
        call.arg(keys.base())
            .arg(collection)
            .arg(revision.map_or(String::new(), |r| r.to_string()))
            .arg(
                self.caller_now(now)
                    .map_or(String::new(), |n| n.to_string()),
            )
            .arg(self.inner.config.change_log)
            .arg(event)
            .arg(event_id)
            .arg(if only_expired { "1" } else { "0" });
        for (id, version) in targets {
            call.arg(id)
                .arg(version.map_or(String::new(), |v| v.to_string()));
        }
        call.invoke_async(&mut self.conn()).await.map_err(|e| {
            Refusal::of(&e)
                .and_then(|r| r.error(ns, collection))
                .unwrap_or_else(|| redis_error(e, "deleting", &self.inner.target))
        })
    }

    /// Deletes up to the request's limit of live records matching its filter.
    pub(crate) async fn delete_query(
        &self,
        ns: &str,
        request: &QueryRequest,
        now: Timestamp,
    ) -> Result<u64> {
        let want = request
            .limit
            .map(|l| l.saturating_add(request.offset as usize));
        let targets: Vec<(String, Option<u64>)> = self
            .matching(ns, request, now, want)
            .await?
            .into_iter()
            .skip(request.offset as usize)
            .take(request.limit.unwrap_or(usize::MAX))
            .map(|(id, _, entry)| (id, Some(entry.version)))
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let (_, live) = self
            .remove_ids(
                ns,
                &request.collection,
                Some(request.revision),
                now,
                ChangeOp::DeleteWhere.name(),
                "",
                false,
                &targets,
            )
            .await?;
        Ok(live)
    }

    /// Deletes every record whose id starts with `prefix`, a chunk per script.
    pub(crate) async fn delete_id_prefix(
        &self,
        ns: &str,
        collection: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let keys = self.keys(ns);
        let lo = [&[b'['][..], prefix.as_bytes()].concat();
        // Ids are UTF-8: no id starting with the prefix has 0xFF after it.
        let hi = [&[b'('][..], prefix.as_bytes(), &[0xFF]].concat();
        let mut live = 0;
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(keys.ids(collection))
                .arg(&lo)
                .arg(&hi)
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(REMOVE_CHUNK)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, "deleting", &self.inner.target))?;
            if ids.is_empty() {
                return Ok(live);
            }
            let targets: Vec<(String, Option<u64>)> =
                ids.into_iter().map(|id| (id, None)).collect();
            let (removed, n) = self
                .remove_ids(
                    ns,
                    collection,
                    None,
                    now,
                    ChangeOp::DeletePrefix.name(),
                    prefix,
                    false,
                    &targets,
                )
                .await?;
            live += n;
            if removed == 0 {
                return Ok(live);
            }
        }
    }

    /// Removes expired records of every collection of `ns`, a chunk per script. One
    /// instance purges a namespace at a time (a lock key with an expiry); another finding
    /// it held leaves the work to it.
    pub(crate) async fn purge(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let keys = self.keys(ns);
        let lock = format!("{}purging", keys.base());
        let token = format!("{}-{}", std::process::id(), now.as_micros());
        let mine: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "purging", &self.inner.target))?;
        if mine.is_none() {
            return Ok(0);
        }
        let result = self.purge_locked(ns, now).await;
        // Let go only of a lock still ours.
        let _: redis::RedisResult<i64> = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(&lock)
        .arg(&token)
        .invoke_async(&mut self.conn())
        .await;
        result
    }

    async fn purge_locked(&self, ns: &str, now: Timestamp) -> Result<u64> {
        let keys = self.keys(ns);
        let upto = if let Some(n) = self.caller_now(now) {
            n
        } else {
            let (s, us): (i64, i64) = redis::cmd("TIME")
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(e, "purging", &self.inner.target))?;
            s * 1_000_000 + us
        };
        let mut purged = 0;
        for (collection, _) in self.list_specs_now(ns).await? {
            loop {
                let ids: Vec<String> = redis::cmd("ZRANGE")
                    .arg(keys.ttl(&collection))
                    .arg("-inf")
                    .arg(upto)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(REMOVE_CHUNK)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(|e| redis_error(e, "purging", &self.inner.target))?;
                if ids.is_empty() {
                    break;
                }
                let targets: Vec<(String, Option<u64>)> =
                    ids.iter().map(|id| (id.clone(), None)).collect();
                let (removed, _) = match self
                    .remove_ids(
                        ns,
                        &collection,
                        None,
                        now,
                        ChangeOp::Purge.name(),
                        "",
                        true,
                        &targets,
                    )
                    .await
                {
                    Ok(r) => r,
                    // Dropped meanwhile.
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                };
                purged += removed;
                if removed == 0 {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Adds one page of values to the indexes being built.
    pub(crate) async fn fill_page(
        &self,
        ns: &str,
        collection: &str,
        revision: Revision,
        fills: &[IndexFill],
        now: Timestamp,
    ) -> Result<()> {
        let keys = self.keys(ns);
        let unique = self.unique_indexes(ns, collection, revision).await?;
        let mut call = self.inner.fill_script.key(keys.revs());
        call.arg(keys.base())
            .arg(collection)
            .arg(revision.to_string())
            .arg(
                self.caller_now(now)
                    .map_or(String::new(), |n| n.to_string()),
            )
            .arg(fills.len());
        for fill in fills {
            call.arg(&fill.id).arg(fill.version.to_string());
            push_entries(&mut call, &unique, &fill.index);
        }
        call.invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(|e| {
                Refusal::of(&e)
                    .and_then(|r| r.error(ns, collection))
                    .unwrap_or_else(|| redis_error(e, "building an index", &self.inner.target))
            })
    }
}
