//! Mutations: changes of a record computed from its current value — counters, bounds, the
//! larger or smaller of two values, appends, TTL renewal — applied by the engine inside the
//! write's own transaction, so that concurrent callers never read, compute and retry.
//!
//! A mutation is a write like any other: the version goes up by one, `updated_at` moves,
//! preconditions apply, the record's index entries are taken again from the new body (and
//! unique values checked), the change feed gets one event. The body is re-encoded as compact
//! JSON with the key order of untouched fields kept.
//!
//! # Which mutations create a record
//!
//! A [`Mutate`] holding an `add`, `max`, `min`, `set` or `append` creates an absent (or
//! expired) record from `{}`, as if every path started absent — an `add` from 0. One that
//! holds only `remove`s and a TTL change (a session's touch) needs a live record: it answers
//! NotFound otherwise, so a touch never brings back an expired session.
//!
//! # Paths
//!
//! Paths are JSON pointers (RFC 6901), never the whole body (`""`). A creating mutation makes
//! missing objects on its way (`/counts/today` in `{}` makes `{"counts": {"today": …}}`); a
//! path through an array names an existing element by its index. A path through a value that
//! is not an object or an array, or an operand of the wrong type, is InvalidInput naming the
//! path and what it found, and nothing is written.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::backend::{IndexEntries, Precondition, RecordMeta};
use crate::error::{Error, Result};
use crate::record::{Body, ContentType, Timestamp, Version};
use crate::spec::CollectionSpec;

/// The most mutations one [`Mutate`] may hold.
pub const MAX_MUTATIONS: usize = 256;

/// The longest path a mutation may name, in characters.
pub const MAX_PATH_CHARS: usize = 1024;

/// One change of a record, at a JSON pointer. Its JSON form is the HTTP API's, in JSON
/// Patch's style: `{"op": "add", "path": "/n", "value": 1, "max": 100}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Mutation {
    /// Adds `value` to the number at `path` (an absent one or `null` counts as 0). Integers
    /// stay integers (signed 64 bits, overflow refused); a float on either side gives a float. When
    /// the result would fall below `min` or above `max`, the whole write is refused with
    /// Conflict carrying the current value ([`Error::current_value`]).
    Add {
        /// Where.
        path: String,
        /// How much (negative to subtract).
        value: Number,
        /// The smallest result allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<Number>,
        /// The largest result allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<Number>,
    },
    /// Keeps the larger of the value at `path` and `value` (numbers by value, strings by
    /// bytes, so RFC 3339 times in UTC compare by time); an absent path takes `value`.
    Max {
        /// Where.
        path: String,
        /// The candidate.
        value: Value,
    },
    /// Keeps the smaller of the value at `path` and `value`, as [`Mutation::Max`].
    Min {
        /// Where.
        path: String,
        /// The candidate.
        value: Value,
    },
    /// Sets the value at `path`.
    Set {
        /// Where.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Removes the value at `path` (nothing when it is absent).
    Remove {
        /// Where.
        path: String,
    },
    /// Appends `value` to the array at `path` (an absent one starts empty), then keeps only
    /// its last `keep_last` elements when given.
    Append {
        /// Where.
        path: String,
        /// The element.
        value: Value,
        /// How many elements to keep, the newest.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "crate::whole_number::option"
        )]
        keep_last: Option<usize>,
    },
}

impl Mutation {
    /// The path it changes.
    pub fn path(&self) -> &str {
        match self {
            Mutation::Add { path, .. }
            | Mutation::Max { path, .. }
            | Mutation::Min { path, .. }
            | Mutation::Set { path, .. }
            | Mutation::Remove { path }
            | Mutation::Append { path, .. } => path,
        }
    }

    /// Its name on the wire: `add`, `max`, …
    pub fn op_name(&self) -> &'static str {
        match self {
            Mutation::Add { .. } => "add",
            Mutation::Max { .. } => "max",
            Mutation::Min { .. } => "min",
            Mutation::Set { .. } => "set",
            Mutation::Remove { .. } => "remove",
            Mutation::Append { .. } => "append",
        }
    }

    /// Whether it creates an absent record (see the module docs).
    pub fn creates(&self) -> bool {
        !matches!(self, Mutation::Remove { .. })
    }
}

/// What a mutation does to the record's TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TtlChange {
    /// Keep the record's expiry; a record the mutation creates gets the collection's
    /// default TTL.
    #[default]
    Keep,
    /// Expire this long after now: the renewal of a session's touch.
    Set(Duration),
    /// Never expire.
    Remove,
}

/// The mutations of one record and what they do to its TTL, applied in order, all or none.
///
/// ```
/// use stowage_core::Mutate;
/// // A bounded stock: take one, never below zero; renew the TTL.
/// let take = Mutate::new()
///     .add("/stock", -1).at_least(0)
///     .ttl(std::time::Duration::from_secs(60));
/// // GCRA: the theoretical arrival time moves to now at least, then one interval on,
/// // never past now + burst × interval.
/// let (now, interval, burst) = (1_000_i64, 100_i64, 5_i64);
/// let gcra = Mutate::new()
///     .max("/tat", now)
///     .add("/tat", interval).at_most(now + burst * interval);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutate {
    mutations: Vec<Mutation>,
    ttl: TtlChange,
    precondition: Option<Precondition>,
    misuse: Option<String>,
}

impl Mutate {
    /// No mutation yet; the TTL kept; no precondition.
    pub fn new() -> Self {
        Self::default()
    }

    /// The mutations given as a list (the HTTP form).
    pub fn from_mutations(mutations: Vec<Mutation>) -> Self {
        Mutate {
            mutations,
            ..Self::default()
        }
    }

    /// Adds `n` at `path` (see [`Mutation::Add`]); bound it with [`Mutate::at_most`] and
    /// [`Mutate::at_least`].
    #[must_use]
    pub fn add(self, path: &str, n: impl Into<Number>) -> Self {
        self.push(Mutation::Add {
            path: path.to_owned(),
            value: n.into(),
            min: None,
            max: None,
        })
    }

    /// The largest result the last `add` may give.
    #[must_use]
    pub fn at_most(mut self, bound: impl Into<Number>) -> Self {
        match self.mutations.last_mut() {
            Some(Mutation::Add { max, .. }) => *max = Some(bound.into()),
            _ => self.misuse("at_most bounds an add: call it right after add"),
        }
        self
    }

    /// The smallest result the last `add` may give.
    #[must_use]
    pub fn at_least(mut self, bound: impl Into<Number>) -> Self {
        match self.mutations.last_mut() {
            Some(Mutation::Add { min, .. }) => *min = Some(bound.into()),
            _ => self.misuse("at_least bounds an add: call it right after add"),
        }
        self
    }

    /// Keeps the larger value at `path` (see [`Mutation::Max`]).
    #[must_use]
    pub fn max(self, path: &str, value: impl Into<Value>) -> Self {
        self.push(Mutation::Max {
            path: path.to_owned(),
            value: value.into(),
        })
    }

    /// Keeps the smaller value at `path` (see [`Mutation::Min`]).
    #[must_use]
    pub fn min(self, path: &str, value: impl Into<Value>) -> Self {
        self.push(Mutation::Min {
            path: path.to_owned(),
            value: value.into(),
        })
    }

    /// Sets the value at `path`.
    #[must_use]
    pub fn set(self, path: &str, value: impl Into<Value>) -> Self {
        self.push(Mutation::Set {
            path: path.to_owned(),
            value: value.into(),
        })
    }

    /// Removes the value at `path`.
    #[must_use]
    pub fn remove(self, path: &str) -> Self {
        self.push(Mutation::Remove {
            path: path.to_owned(),
        })
    }

    /// Appends `value` to the array at `path`.
    #[must_use]
    pub fn append(self, path: &str, value: impl Into<Value>) -> Self {
        self.push(Mutation::Append {
            path: path.to_owned(),
            value: value.into(),
            keep_last: None,
        })
    }

    /// Appends `value` to the array at `path`, then keeps its last `keep_last` elements.
    #[must_use]
    pub fn append_keep_last(self, path: &str, value: impl Into<Value>, keep_last: usize) -> Self {
        self.push(Mutation::Append {
            path: path.to_owned(),
            value: value.into(),
            keep_last: Some(keep_last),
        })
    }

    /// What the write does to the TTL (default: keep it).
    #[must_use]
    pub fn ttl_change(mut self, ttl: TtlChange) -> Self {
        self.ttl = ttl;
        self
    }

    /// Expire `ttl` after now: with no mutation, the touch that renews a session.
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.ttl_change(TtlChange::Set(ttl))
    }

    /// Apply only where the live record has version `expected` (`If-Match`): Conflict with
    /// the current version otherwise.
    #[must_use]
    pub fn if_version(self, expected: Version) -> Self {
        self.with_precondition(Precondition::Version(expected))
    }

    /// Apply only where `precondition` holds.
    #[must_use]
    pub fn with_precondition(mut self, precondition: Precondition) -> Self {
        self.precondition = Some(precondition);
        self
    }

    /// The mutations, in order.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// The TTL change.
    pub fn ttl_changes(&self) -> TtlChange {
        self.ttl
    }

    /// The precondition ([`Precondition::None`] unless one was given).
    pub fn precondition(&self) -> Precondition {
        self.precondition.unwrap_or(Precondition::None)
    }

    /// Whether it creates an absent record (see the module docs).
    pub fn creates(&self) -> bool {
        self.mutations.iter().any(Mutation::creates)
    }

    fn push(mut self, m: Mutation) -> Self {
        self.mutations.push(m);
        self
    }

    fn misuse(&mut self, why: &str) {
        self.misuse.get_or_insert_with(|| why.to_owned());
    }

    /// Checks what can be checked before the record is read: the builder was used right,
    /// the list is not too long, every path is a pointer, no TTL is zero, bounds are sane.
    pub fn validate(&self) -> Result<()> {
        if let Some(why) = &self.misuse {
            return Err(Error::invalid(why.clone()));
        }
        if self.mutations.len() > MAX_MUTATIONS {
            return Err(Error::invalid(format!(
                "{} mutations in one write: at most {MAX_MUTATIONS}",
                self.mutations.len()
            )));
        }
        if self.ttl == TtlChange::Set(Duration::ZERO) {
            return Err(Error::invalid("a TTL must be longer than zero"));
        }
        if self.mutations.is_empty() && self.ttl == TtlChange::Keep {
            return Err(Error::invalid(
                "a mutation needs at least one change: a mutation or a TTL",
            ));
        }
        for (i, m) in self.mutations.iter().enumerate() {
            validate_one(m).map_err(|why| {
                Error::invalid(format!(
                    "mutation {i} ({} {}): {why}",
                    m.op_name(),
                    m.path()
                ))
            })?;
        }
        Ok(())
    }
}

fn validate_one(m: &Mutation) -> std::result::Result<(), String> {
    parse_path(m.path())?;
    match m {
        Mutation::Add {
            min: Some(lo),
            max: Some(hi),
            ..
        } if compare_numbers(lo, hi) == Ordering::Greater => {
            Err(format!("its min {lo} is above its max {hi}"))
        }
        Mutation::Add { value, .. } if !value.is_i64() && !value.is_u64() && !is_finite(value) => {
            Err("its value is not a finite number".to_owned())
        }
        Mutation::Max { value, .. } | Mutation::Min { value, .. } if !comparable(value) => {
            Err(format!(
                "max and min compare numbers or strings, not {}",
                kind(value)
            ))
        }
        _ => Ok(()),
    }
}

fn is_finite(n: &Number) -> bool {
    n.as_f64().is_some_and(f64::is_finite)
}

fn comparable(v: &Value) -> bool {
    matches!(v, Value::Number(_) | Value::String(_))
}

/// A JSON pointer's reference tokens, unescaped.
fn parse_path(path: &str) -> std::result::Result<Vec<String>, String> {
    if path.chars().count() > MAX_PATH_CHARS {
        return Err(format!(
            "the path is longer than {MAX_PATH_CHARS} characters"
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(if path.is_empty() {
            "a mutation changes a field, not the whole body: the path must not be empty".to_owned()
        } else {
            "a path is a JSON pointer and starts with '/'".to_owned()
        });
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => out.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err("'~' must be followed by 0 or 1 in a JSON pointer".into()),
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

/// What a mutation stored: the record's new metadata and the values at the mutated paths.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Mutated {
    /// The version, timestamps and expiry stored.
    pub meta: RecordMeta,
    /// The value at each mutated path afterwards (`null` where removed), each path once, in
    /// the order first mutated.
    pub values: Values,
}

impl Mutated {
    /// The value at `path` afterwards, if the mutation named it.
    pub fn value(&self, path: &str) -> Option<&Value> {
        self.values.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    /// The integer at `path` afterwards, if the mutation named it and it is one.
    pub fn integer(&self, path: &str) -> Option<i64> {
        self.value(path).and_then(Value::as_i64)
    }
}

/// The record a mutation was applied to, as the engine holds it.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// The body.
    pub body: &'a Body,
    /// Its metadata.
    pub meta: RecordMeta,
}

/// A [`Mutate`] as a backend receives it ([`crate::backend::WriteAction::Mutate`]): checked,
/// with the spec its index values are taken under.
#[derive(Debug, Clone)]
pub struct MutateAction {
    /// The mutations, checked ([`Mutate::validate`]).
    pub mutations: Arc<[Mutation]>,
    /// What happens to the TTL.
    pub ttl: TtlChange,
    /// The collection's spec at the op's revision: the new body's index values follow it.
    pub spec: Arc<CollectionSpec>,
    /// The largest body the backend stores.
    pub max_body_bytes: usize,
}

/// When a mutated record expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewExpiry {
    /// As the live record does.
    Keep(Option<Timestamp>),
    /// This long after the engine's now (`None`: never).
    After(Option<Duration>),
}

impl NewExpiry {
    /// The expiry, given the engine's now.
    pub fn at(self, now: Timestamp) -> Option<Timestamp> {
        match self {
            NewExpiry::Keep(at) => at,
            NewExpiry::After(ttl) => ttl.map(|d| now.saturating_add(d)),
        }
    }
}

/// What applying a [`MutateAction`] gave: what the engine stores, and the values the caller
/// gets back.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The new body.
    pub body: Body,
    /// Its index values.
    pub index: IndexEntries,
    /// When it expires.
    pub expiry: NewExpiry,
    /// The value at each mutated path afterwards (`null` where removed), each path once, in
    /// the order first mutated.
    pub values: Values,
}

/// The values at mutated paths after a mutation: `(path, value)`.
pub type Values = Vec<(String, Value)>;

impl MutateAction {
    /// Applies the mutations to the live record (`None`: absent or expired), in order: the
    /// new body, its index entries, its expiry and the values at the mutated paths — or the
    /// error that refuses the whole write (NotFound, InvalidInput, Conflict on a bound).
    pub fn apply(&self, collection: &str, id: &str, live: Option<Live<'_>>) -> Result<Applied> {
        if let (true, Some(l)) = (self.mutations.is_empty(), live) {
            return self.touch(collection, id, l);
        }
        let mut body = match live {
            Some(l) => Self::decode(collection, id, l.body)?,
            None if self.mutations.iter().any(Mutation::creates) => Value::Object(Map::new()),
            None => return Err(Error::not_found(collection, id)),
        };
        for (i, m) in self.mutations.iter().enumerate() {
            apply_one(&mut body, m).map_err(|e| match e {
                Refusal::Invalid(why) => Error::invalid(format!(
                    "mutation {i} ({} {}) of record {id:?} in collection {collection:?}: {why}",
                    m.op_name(),
                    m.path()
                )),
                Refusal::Bound { current, bound } => bound_error(collection, id, m, current, bound),
            })?;
        }
        let values = self.values(&body);
        let index = self.spec.index_entries(&body, id)?;
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| Error::internal(format!("a mutated body did not encode: {e}")))?;
        if bytes.len() > self.max_body_bytes {
            return Err(Error::invalid(format!(
                "the mutations would make record {id:?} {} bytes: the backend stores bodies of \
                 at most {} bytes",
                bytes.len(),
                self.max_body_bytes
            )));
        }
        Ok(Applied {
            body: Body::json(bytes),
            index,
            expiry: self.expiry(live.map(|l| l.meta)),
            values,
        })
    }

    /// The Conflict that refuses mutation number `mutation` because its result would pass
    /// its `max` (or its `min`, when `max` is false) where the value is `current`: what
    /// [`MutateAction::apply`] answers, for an engine that applies the mutations itself.
    pub fn bound_refusal(
        &self,
        collection: &str,
        id: &str,
        mutation: usize,
        current: Value,
        max: bool,
    ) -> Error {
        let bound = if max { "max" } else { "min" };
        match self.mutations.get(mutation) {
            Some(m) => bound_error(collection, id, m, current, bound),
            None => Error::internal(format!("no mutation {mutation} was refused on its {bound}")),
        }
    }

    /// No mutation, only a TTL change: the body stays byte for byte (binary ones too), and
    /// only a collection with indexes pays for parsing it.
    fn touch(&self, collection: &str, id: &str, live: Live<'_>) -> Result<Applied> {
        let index = if self.spec.indexes.is_empty() {
            Vec::new()
        } else {
            let json = Self::decode(collection, id, live.body)?;
            self.spec.index_entries(&json, id)?
        };
        Ok(Applied {
            body: live.body.clone(),
            index,
            expiry: self.expiry(Some(live.meta)),
            values: Vec::new(),
        })
    }

    fn decode(collection: &str, id: &str, body: &Body) -> Result<Value> {
        if body.content_type != ContentType::Json {
            return Err(Error::invalid(format!(
                "record {id:?} of collection {collection:?} holds binary data: mutations change \
                 JSON objects"
            )));
        }
        match serde_json::from_slice(&body.bytes) {
            Ok(map @ Value::Object(_)) => Ok(map),
            Ok(other) => Err(Error::invalid(format!(
                "record {id:?} of collection {collection:?} holds {}: mutations change JSON \
                 objects",
                kind(&other)
            ))),
            Err(e) => Err(Error::new(
                crate::ErrorKind::Corrupted,
                format!("record {id:?} of collection {collection:?} is not valid JSON: {e}"),
            )),
        }
    }

    fn expiry(&self, live: Option<RecordMeta>) -> NewExpiry {
        match (self.ttl, live) {
            (TtlChange::Keep, Some(m)) => NewExpiry::Keep(m.expires_at),
            (TtlChange::Keep, None) => NewExpiry::After(self.spec.default_ttl_duration()),
            (TtlChange::Set(d), _) => NewExpiry::After(Some(d)),
            (TtlChange::Remove, _) => NewExpiry::After(None),
        }
    }

    fn values(&self, body: &Value) -> Values {
        let mut values: Values = Vec::new();
        for m in self.mutations.iter() {
            if values.iter().any(|(p, _)| p == m.path()) {
                continue;
            }
            let tokens = parse_path(m.path()).unwrap_or_default();
            let value = lookup(body, &tokens).cloned().unwrap_or(Value::Null);
            values.push((m.path().to_owned(), value));
        }
        values
    }
}

fn bound_error(collection: &str, id: &str, m: &Mutation, current: Value, bound: &str) -> Error {
    Error::new(
        crate::ErrorKind::Conflict,
        format!(
            "{} {} of record {id:?} in collection {collection:?} would pass its {bound}: the \
             value there is {current}",
            m.op_name(),
            m.path()
        ),
    )
    .with_current_value(m.path(), current)
}

/// Why one mutation was refused.
enum Refusal {
    Invalid(String),
    Bound { current: Value, bound: &'static str },
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Refusal::Invalid(why)
    }
}

fn apply_one(body: &mut Value, m: &Mutation) -> std::result::Result<(), Refusal> {
    let tokens = parse_path(m.path())?;
    let (last, parents) = tokens.split_last().ok_or_else(|| "empty path".to_owned())?;
    // The parent's path, for messages: the body itself is named as such.
    let above = &m.path()[..m.path().rfind('/').unwrap_or(0)];
    let above = if above.is_empty() { "the body" } else { above };
    let Some(parent) = parent_of(body, parents, m.creates())? else {
        return Ok(()); // a remove under a missing parent: nothing to remove
    };
    let current = slot_value(parent, last, above)?;
    let new = match m {
        Mutation::Remove { .. } => None,
        Mutation::Set { value, .. } => Some(value.clone()),
        Mutation::Add {
            value, min, max, ..
        } => Some(add(current, value, min.as_ref(), max.as_ref())?),
        Mutation::Max { value, .. } => Some(keep(current, value, Ordering::Greater)?),
        Mutation::Min { value, .. } => Some(keep(current, value, Ordering::Less)?),
        Mutation::Append {
            value, keep_last, ..
        } => Some(append(current, value, *keep_last)?),
    };
    put_slot(parent, last, new, above)?;
    Ok(())
}

/// The container the last token indexes, making missing objects on the way when `create`;
/// `None` when a parent is missing and nothing is created.
fn parent_of<'a>(
    root: &'a mut Value,
    parents: &[String],
    create: bool,
) -> std::result::Result<Option<&'a mut Value>, String> {
    let mut at = root;
    let mut walked = String::new();
    for token in parents {
        let next = match at {
            Value::Object(map) => {
                if !create && !map.contains_key(token) {
                    return Ok(None);
                }
                map.entry(token.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
            }
            Value::Array(items) => {
                let i = array_index(token, items.len(), &walked)?;
                &mut items[i]
            }
            other => return Err(format!("{walked} holds {}, not an object", kind(other))),
        };
        walked.push('/');
        walked.push_str(&escape(token));
        at = next;
    }
    match at {
        Value::Object(_) | Value::Array(_) => Ok(Some(at)),
        other => Err(format!("{walked} holds {}, not an object", kind(other))),
    }
}

fn array_index(token: &str, len: usize, walked: &str) -> std::result::Result<usize, String> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    match token.parse::<usize>() {
        Ok(i) if canonical && i < len => Ok(i),
        _ => Err(format!(
            "{walked} is an array of {len} elements: {token:?} names none of them"
        )),
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn slot_value<'a>(
    parent: &'a Value,
    last: &str,
    above: &str,
) -> std::result::Result<Option<&'a Value>, String> {
    match parent {
        Value::Object(map) => Ok(map.get(last)),
        Value::Array(items) => Ok(Some(&items[array_index(last, items.len(), above)?])),
        _ => Ok(None),
    }
}

fn put_slot(
    parent: &mut Value,
    last: &str,
    new: Option<Value>,
    above: &str,
) -> std::result::Result<(), String> {
    match parent {
        Value::Object(map) => match new {
            Some(v) => {
                map.insert(last.to_owned(), v);
            }
            // shift_remove: the other keys keep their order.
            None => {
                map.shift_remove(last);
            }
        },
        Value::Array(items) => {
            let i = array_index(last, items.len(), above)?;
            match new {
                Some(v) => items[i] = v,
                None => {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn lookup<'a>(body: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut at = body;
    for token in tokens {
        at = match at {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

fn add(
    current: Option<&Value>,
    by: &Number,
    min: Option<&Number>,
    max: Option<&Number>,
) -> std::result::Result<Value, Refusal> {
    let zero = Number::from(0);
    let now = match current {
        None | Some(Value::Null) => &zero,
        Some(Value::Number(n)) => n,
        Some(other) => return Err(format!("it holds {}, not a number", kind(other)).into()),
    };
    let sum = sum(now, by)?;
    if min.is_some_and(|lo| compare_numbers(&sum, lo) == Ordering::Less) {
        return Err(Refusal::Bound {
            current: Value::Number(now.clone()),
            bound: "min",
        });
    }
    if max.is_some_and(|hi| compare_numbers(&sum, hi) == Ordering::Greater) {
        return Err(Refusal::Bound {
            current: Value::Number(now.clone()),
            bound: "max",
        });
    }
    Ok(Value::Number(sum))
}

/// `a + b`: exact for integers (an error past a signed 64-bit integer, which every engine
/// and most JSON readers keep exactly), a float when either is one.
fn sum(a: &Number, b: &Number) -> std::result::Result<Number, String> {
    if let (Some(x), Some(y)) = (as_integer(a), as_integer(b)) {
        return i64::try_from(x + y)
            .map(Number::from)
            .map_err(|_| format!("{a} + {b} does not fit in a signed 64 bits integer"));
    }
    let s = a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN);
    Number::from_f64(s).ok_or_else(|| format!("{a} + {b} is not a finite number"))
}

fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Numbers by value: exact between integers, as floats otherwise.
fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (as_integer(a), as_integer(b)) {
        return x.cmp(&y);
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

/// `candidate` when it is `wanted` (greater or less) than the current value, or there is none.
fn keep(
    current: Option<&Value>,
    candidate: &Value,
    wanted: Ordering,
) -> std::result::Result<Value, Refusal> {
    let order = match (current, candidate) {
        (None | Some(Value::Null), _) => return Ok(candidate.clone()),
        (Some(Value::Number(a)), Value::Number(b)) => compare_numbers(b, a),
        (Some(Value::String(a)), Value::String(b)) => b.as_str().cmp(a.as_str()),
        (Some(other), _) => {
            return Err(format!(
                "it holds {}, which does not compare with {}",
                kind(other),
                kind(candidate)
            )
            .into())
        }
    };
    Ok(if order == wanted {
        candidate.clone()
    } else {
        current.cloned().unwrap_or(Value::Null)
    })
}

fn append(
    current: Option<&Value>,
    value: &Value,
    keep_last: Option<usize>,
) -> std::result::Result<Value, Refusal> {
    let mut items = match current {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => return Err(format!("it holds {}, not an array", kind(other)).into()),
    };
    items.push(value.clone());
    if let Some(keep) = keep_last {
        let cut = items.len().saturating_sub(keep);
        items.drain(..cut);
    }
    Ok(Value::Array(items))
}

/// A JSON value's kind, for messages: "a string", "an object", …
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(body: Value, mutations: Value) -> Result<(Value, Values)> {
        let mutations: Vec<Mutation> = serde_json::from_value(mutations).unwrap();
        let action = MutateAction {
            mutations: mutations.into(),
            ttl: TtlChange::Keep,
            spec: Arc::new(CollectionSpec::new()),
            max_body_bytes: 1 << 20,
        };
        let body = Body::json(serde_json::to_vec(&body).unwrap());
        let meta = RecordMeta {
            version: 1,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            expires_at: None,
        };
        let applied = action.apply("c", "r", Some(Live { body: &body, meta }))?;
        Ok((
            serde_json::from_slice(&applied.body.bytes).unwrap(),
            applied.values,
        ))
    }

    #[test]
    fn the_json_form_takes_whole_floats_where_counts_go() {
        let m: Mutation = serde_json::from_value(
            json!({"op": "append", "path": "/a", "value": 1, "keep_last": 2.0}),
        )
        .unwrap();
        assert_eq!(
            m,
            Mutation::Append {
                path: "/a".into(),
                value: json!(1),
                keep_last: Some(2)
            }
        );
        assert!(serde_json::from_value::<Mutation>(
            json!({"op": "add", "path": "/a", "value": "x"})
        )
        .is_err());
        assert!(serde_json::from_value::<Mutation>(
            json!({"op": "remove", "path": "/a", "value": 1})
        )
        .is_err());
    }

    #[test]
    fn pointers_unescape_and_reach_into_arrays() {
        let (body, values) = apply(
            json!({"a/b": 1, "m~n": 2, "list": [{"x": 1}, {"x": 2}]}),
            json!([
                {"op": "add", "path": "/a~1b", "value": 1},
                {"op": "add", "path": "/m~0n", "value": 1},
                {"op": "add", "path": "/list/1/x", "value": 5}]),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"a/b": 2, "m~n": 3, "list": [{"x": 1}, {"x": 7}]})
        );
        assert_eq!(values[2], ("/list/1/x".to_owned(), json!(7)));
        let e = apply(
            json!({"list": []}),
            json!([{"op": "set", "path": "/list/01", "value": 1}]),
        )
        .unwrap_err();
        assert!(e.message().contains("names none"), "{e}");
        let e = apply(
            json!({}),
            json!([{"op": "set", "path": "/a~2", "value": 1}]),
        )
        .unwrap_err();
        assert!(e.message().contains("'~'"), "{e}");
    }

    #[test]
    fn removes_keep_the_order_of_the_rest() {
        let (body, _) = apply(
            json!({"a": 1, "b": 2, "c": 3, "d": [1, 2, 3]}),
            json!([{"op": "remove", "path": "/b"}, {"op": "remove", "path": "/d/0"}]),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"a":1,"c":3,"d":[2,3]}"#
        );
    }

    #[test]
    fn numbers_add_exactly_or_as_floats() {
        let (body, _) = apply(
            json!({"i": i64::MAX - 1, "f": 0.5}),
            json!([{"op": "add", "path": "/i", "value": 1}, {"op": "add", "path": "/f", "value": 1}]),
        )
        .unwrap();
        assert_eq!(body, json!({"i": i64::MAX, "f": 1.5}));
        let e = apply(
            json!({"i": i64::MIN}),
            json!([{"op": "add", "path": "/i", "value": -1}]),
        )
        .unwrap_err();
        assert!(e.message().contains("64 bits"), "{e}");
        let e = apply(
            json!({"f": f64::MAX}),
            json!([{"op": "add", "path": "/f", "value": f64::MAX}]),
        )
        .unwrap_err();
        assert!(e.message().contains("finite"), "{e}");
    }
}
