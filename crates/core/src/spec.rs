//! Collection specs: the indexes and default TTL a collection is declared with.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::record::validate_name;
use crate::value::{json_kind, IndexValue};

/// The type of an index's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IndexType {
    /// JSON strings.
    String,
    /// JSON integers in the signed 64-bit range.
    Integer,
    /// JSON numbers (finite).
    Float,
    /// JSON booleans.
    Bool,
    /// RFC 3339 strings, compared as points in time.
    Timestamp,
}

impl IndexType {
    /// "a string", "an integer", … for messages.
    pub fn describe(self) -> &'static str {
        match self {
            IndexType::String => "a string",
            IndexType::Integer => "an integer",
            IndexType::Float => "a number",
            IndexType::Bool => "a boolean",
            IndexType::Timestamp => "an RFC 3339 timestamp string",
        }
    }

    /// The lowercase name used in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexType::String => "string",
            IndexType::Integer => "integer",
            IndexType::Float => "float",
            IndexType::Bool => "bool",
            IndexType::Timestamp => "timestamp",
        }
    }
}

/// One secondary index: a name, a JSON pointer into the body, a type and two flags.
///
/// A record whose field is missing or `null` is simply not in the index. With `multi`, the
/// field must be an array and the record is indexed under each (distinct, non-null) element.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSpec {
    /// The index's name, used in queries.
    pub name: String,
    /// A JSON pointer (RFC 6901) into the body: `/severity`, `/owner/email`, `/tags`.
    pub path: String,
    /// The values' type.
    #[serde(rename = "type")]
    pub index_type: IndexType,
    /// At most one record per value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// One entry per array element.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multi: bool,
    /// Keep a copy of each record beside its index entries, so that a query walking this
    /// index reads the records from the index itself instead of looking each one up.
    ///
    /// Queries get faster (one ordered range read instead of a random lookup per hit);
    /// every write of a record rewrites its copies, and the index takes as much space as the
    /// records (once per value for a `multi` index). Answers are the same either way:
    /// engines that read records from their own index structures (the memory backend, SQL
    /// engines) treat it as a plain index. The flag may change on a live collection: the
    /// index is rewritten in place.
    #[serde(default, skip_serializing_if = "is_false")]
    pub covering: bool,
    /// Keep keyed hashes of the values, never the values: `eq` and `in` work, range, prefix
    /// and order are refused. A string index only, on a store whose codec layer encrypts
    /// ([`crate::Capabilities::blind_indexes`]); the engine then sees neither the field (in
    /// the sealed body) nor its values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub blind: bool,
}

// serde's `skip_serializing_if` hands the field by reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl IndexSpec {
    /// An index of `index_type` named `name` on the body field at JSON pointer `path`.
    pub fn new(name: impl Into<String>, path: impl Into<String>, index_type: IndexType) -> Self {
        IndexSpec {
            name: name.into(),
            path: path.into(),
            index_type,
            unique: false,
            multi: false,
            covering: false,
            blind: false,
        }
    }

    /// A string index.
    pub fn string(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(name, path, IndexType::String)
    }

    /// An integer index.
    pub fn integer(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(name, path, IndexType::Integer)
    }

    /// A float index.
    pub fn float(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(name, path, IndexType::Float)
    }

    /// A boolean index.
    pub fn bool(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(name, path, IndexType::Bool)
    }

    /// A timestamp index (RFC 3339 strings in the body).
    pub fn timestamp(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(name, path, IndexType::Timestamp)
    }

    /// Makes the index unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Makes the index multi-valued (one entry per array element).
    pub fn multi(mut self) -> Self {
        self.multi = true;
        self
    }

    /// Makes the index covering: it keeps a copy of each record (see [`IndexSpec::covering`]).
    pub fn covering(mut self) -> Self {
        self.covering = true;
        self
    }

    /// Makes the index blind: keyed hashes of its values only (see [`IndexSpec::blind`]).
    pub fn blind(mut self) -> Self {
        self.blind = true;
        self
    }

    /// The index's values for a body: empty when the field is missing or null.
    pub fn extract(&self, body: &Value, record_id: &str) -> Result<Vec<IndexValue>> {
        let what = || format!("index {:?} of record {record_id:?}", self.name);
        let field = match body.pointer(&self.path) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(v) => v,
        };
        if !self.multi {
            return Ok(vec![IndexValue::from_json(self.index_type, field, &what)?]);
        }
        let items = field.as_array().ok_or_else(|| {
            Error::invalid(format!(
                "{}: the index is multi-valued, so {} must be an array, found {}",
                what(),
                self.path,
                json_kind(field)
            ))
        })?;
        let mut values = items
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| IndexValue::from_json(self.index_type, v, &what))
            .collect::<Result<Vec<_>>>()?;
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// A collection's declaration: its indexes and default TTL. The collection's name is not
/// part of it: it comes from code ([`crate::Record::COLLECTION`]) or from the server's URL.
///
/// The JSON form, which the server takes:
///
/// ```json
/// {"indexes": [{"name": "severity", "path": "/severity", "type": "string"},
///              {"name": "tags", "path": "/tags", "type": "string", "multi": true}],
///  "default_ttl_seconds": 3600}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    /// The secondary indexes.
    #[serde(default)]
    pub indexes: Vec<IndexSpec>,
    /// The TTL of records written without one; `None`: they never expire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole_number::option"
    )]
    pub default_ttl_seconds: Option<u64>,
    /// How long records are kept: older ones are purged in the background (`stowage serve`)
    /// or by `stowage_ops::purge_retention` (`stowage purge`). Unlike a TTL it needs no
    /// write to set it, and changing it applies to the records already stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// A retention rule: records older than `keep_seconds`, counted from one of their times,
/// are purged. Records past it stay readable until a purge removes them (retention is
/// housekeeping, not expiry: use a TTL for records that must vanish on time).
///
/// ```json
/// {"keep_seconds": 2592000, "from": "created_at"}
/// {"keep_seconds": 604800, "from": {"field": "/recorded_at"}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// How long a record is kept after its time, in whole seconds (at least 1).
    #[serde(deserialize_with = "crate::whole_number::required")]
    pub keep_seconds: u64,
    /// Which time counts.
    pub from: RetainFrom,
}

/// The time a retention rule counts from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetainFrom {
    /// When the record was first written.
    CreatedAt,
    /// When it was last written.
    UpdatedAt,
    /// A timestamp field of the body (RFC 3339), by JSON pointer. Where a single-valued
    /// timestamp index (not blind) is declared on the same path, a purge is one range delete
    /// on it; otherwise the purge reads every record. Records whose field is missing or not
    /// a timestamp are kept.
    Field(String),
}

impl Retention {
    /// Keep records `keep` (whole seconds, at least one) after `from`.
    pub fn new(keep: Duration, from: RetainFrom) -> Self {
        Retention {
            keep_seconds: keep.as_secs().max(1),
            from,
        }
    }

    /// How long records are kept.
    pub fn keep(&self) -> Duration {
        Duration::from_secs(self.keep_seconds)
    }
}

impl CollectionSpec {
    /// The index values of record `id` with this JSON body: for each index that holds it,
    /// its values (what a write of the body stores). InvalidInput when a value has the
    /// wrong type for its index.
    pub fn index_entries(&self, body: &Value, id: &str) -> Result<crate::backend::IndexEntries> {
        let mut entries = Vec::new();
        for ix in &self.indexes {
            let values = ix.extract(body, id)?;
            if !values.is_empty() {
                entries.push((ix.name.clone(), values));
            }
        }
        Ok(entries)
    }

    /// A spec with no indexes and no default TTL: a plain key-value collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an index.
    pub fn index(mut self, index: IndexSpec) -> Self {
        self.indexes.push(index);
        self
    }

    /// Sets the default TTL (whole seconds; shorter durations round up to one second).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl_seconds = Some(ttl.as_secs().max(1));
        self
    }

    /// Purges records `keep` after `from` (see [`Retention`]).
    pub fn retain(mut self, keep: Duration, from: RetainFrom) -> Self {
        self.retention = Some(Retention::new(keep, from));
        self
    }

    /// The default TTL as a duration.
    pub fn default_ttl_duration(&self) -> Option<Duration> {
        self.default_ttl_seconds.map(Duration::from_secs)
    }

    /// Parses the JSON form and validates it.
    pub fn from_json(json: &str) -> Result<Self> {
        let spec: CollectionSpec = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("collection spec is not valid: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The index named `name`.
    pub fn index_named(&self, name: &str) -> Option<&IndexSpec> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// Checks names, pointers and TTL; says what is wrong.
    pub fn validate(&self) -> Result<()> {
        let mut names = HashSet::new();
        for ix in &self.indexes {
            validate_name("index", &ix.name)?;
            if ix.name == "id" {
                return Err(Error::invalid(
                    "index name \"id\" is reserved: queries order and filter by id without an index",
                ));
            }
            // A name is taken once: a second declaration is refused as a redefinition is.
            if !names.insert(ix.name.as_str()) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("index {:?} already exists: it is declared twice", ix.name),
                ));
            }
            validate_pointer(&ix.path).map_err(|why| {
                Error::invalid(format!(
                    "index {:?}: path {:?} is not a JSON pointer: {why}",
                    ix.name, ix.path
                ))
            })?;
            if ix.blind && ix.index_type != IndexType::String {
                return Err(Error::invalid(format!(
                    "index {:?} is blind, so it must be a string index (its values are kept as \
                     keyed hashes, which only compare equal), not {}",
                    ix.name,
                    ix.index_type.as_str()
                )));
            }
        }
        if let Some(rule) = &self.retention {
            Self::validate_retention(rule)?;
        }
        if self.default_ttl_seconds == Some(0) {
            return Err(Error::invalid(
                "default_ttl_seconds is 0: leave it out for no expiry, or give at least 1",
            ));
        }
        Ok(())
    }

    fn validate_retention(rule: &Retention) -> Result<()> {
        if rule.keep_seconds == 0 {
            return Err(Error::invalid(
                "retention keep_seconds is 0: give at least 1, or leave retention out",
            ));
        }
        if let RetainFrom::Field(path) = &rule.from {
            validate_pointer(path).map_err(|why| {
                Error::invalid(format!(
                    "retention counts from field {path:?}, which is not a JSON pointer: {why}"
                ))
            })?;
        }
        Ok(())
    }

    /// The index a purge by `rule` can walk: a single-valued timestamp index, not blind, on
    /// the rule's field.
    pub fn retention_index(&self) -> Option<&IndexSpec> {
        let Some(Retention {
            from: RetainFrom::Field(path),
            ..
        }) = &self.retention
        else {
            return None;
        };
        self.indexes.iter().find(|ix| {
            ix.path == *path && ix.index_type == IndexType::Timestamp && !ix.multi && !ix.blind
        })
    }

    /// What changes from `self` (the stored spec) to `new`: the indexes to build and the
    /// indexes to drop. An index whose path, type or flags change is refused: its entries
    /// would mean something else, so it must be added under a new name instead.
    pub fn diff(&self, new: &CollectionSpec) -> Result<SpecChange> {
        let mut change = SpecChange::default();
        for ix in &new.indexes {
            match self.index_named(&ix.name) {
                None => change.added.push(ix.clone()),
                Some(old) if old == ix => {}
                // Covering is how the index is stored, not what it holds: the engine
                // rewrites the index in place.
                Some(old) if same_but_covering(old, ix) => {
                    change.covering_changed.push(ix.name.clone());
                }
                // The name is taken by another index: like an id taken by another record,
                // AlreadyExists (409 over HTTP), and retrying cannot help.
                Some(old) => {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                        "index {:?} already exists and cannot change from {} to {}: add an index \
                         under a new name and drop this one instead",
                        ix.name,
                        describe_index(old),
                        describe_index(ix)
                    ),
                    ))
                }
            }
        }
        for old in &self.indexes {
            if new.index_named(&old.name).is_none() {
                change.dropped.push(old.name.clone());
            }
        }
        Ok(change)
    }
}

fn same_but_covering(a: &IndexSpec, b: &IndexSpec) -> bool {
    IndexSpec {
        covering: b.covering,
        ..a.clone()
    } == *b
}

fn describe_index(ix: &IndexSpec) -> String {
    let mut s = format!("{} at {}", ix.index_type.as_str(), ix.path);
    if ix.unique {
        s.push_str(" unique");
    }
    if ix.multi {
        s.push_str(" multi");
    }
    if ix.covering {
        s.push_str(" covering");
    }
    if ix.blind {
        s.push_str(" blind");
    }
    s
}

/// What applying a new spec to a collection does to its indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecChange {
    /// Indexes to build from the existing records.
    pub added: Vec<IndexSpec>,
    /// Names of indexes to remove.
    pub dropped: Vec<String>,
    /// Names of indexes that become covering or stop being covering: same entries, stored
    /// with or without record copies.
    pub covering_changed: Vec<String>,
}

impl SpecChange {
    /// Whether the indexes stay as they are.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty() && self.covering_changed.is_empty()
    }
}

fn validate_pointer(p: &str) -> std::result::Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("it must start with '/'");
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("'~' must be followed by '0' or '1'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DESIGN_JSON: &str = r#"{"indexes": [
     {"name": "severity",    "path": "/severity",    "type": "string"},
     {"name": "created_at",  "path": "/created_at",  "type": "timestamp"},
     {"name": "fingerprint", "path": "/fingerprint", "type": "string", "unique": true},
     {"name": "tags",        "path": "/tags",        "type": "string", "multi": true}],
   "default_ttl_seconds": 3600}"#;

    #[test]
    fn design_json_form_round_trips() {
        let spec = CollectionSpec::from_json(DESIGN_JSON).unwrap();
        let built = CollectionSpec::new()
            .index(IndexSpec::string("severity", "/severity"))
            .index(IndexSpec::timestamp("created_at", "/created_at"))
            .index(IndexSpec::string("fingerprint", "/fingerprint").unique())
            .index(IndexSpec::string("tags", "/tags").multi())
            .default_ttl(Duration::from_secs(3600));
        assert_eq!(spec, built);
        let again: Value = serde_json::from_str(&spec.to_json()).unwrap();
        let orig: Value = serde_json::from_str(DESIGN_JSON).unwrap();
        assert_eq!(again, orig);
    }

    #[test]
    fn bad_specs_say_why() {
        let e =
            CollectionSpec::from_json(r#"{"indexes":[{"name":"a","path":"a","type":"string"}]}"#)
                .unwrap_err();
        assert!(e.message().contains("must start with '/'"), "{e}");
        let e =
            CollectionSpec::from_json(r#"{"indexes":[{"name":"a","path":"/a","type":"text"}]}"#)
                .unwrap_err();
        assert!(e.message().contains("unknown variant"), "{e}");
        let e = CollectionSpec::new()
            .index(IndexSpec::string("a", "/a"))
            .index(IndexSpec::integer("a", "/b"))
            .validate()
            .unwrap_err();
        assert!(e.message().contains("declared twice"), "{e}");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(CollectionSpec::new()
            .index(IndexSpec::string("x", "/a~2"))
            .validate()
            .is_err());
    }

    #[test]
    fn extraction_follows_type_and_multi() {
        let tags = IndexSpec::string("tags", "/tags").multi();
        let body = json!({"tags": ["b", "a", "b", null], "n": null});
        let got = tags.extract(&body, "r").unwrap();
        assert_eq!(
            got,
            vec![
                IndexValue::String("a".into()),
                IndexValue::String("b".into())
            ]
        );
        assert!(IndexSpec::integer("n", "/n")
            .extract(&body, "r")
            .unwrap()
            .is_empty());
        assert!(IndexSpec::integer("m", "/missing")
            .extract(&body, "r")
            .unwrap()
            .is_empty());
        let e = IndexSpec::string("t", "/tags")
            .multi()
            .extract(&json!({"tags": "a"}), "r")
            .unwrap_err();
        assert!(e.message().contains("must be an array"), "{e}");
    }

    #[test]
    fn diff_allows_add_and_drop_and_refuses_retype() {
        let old = CollectionSpec::new().index(IndexSpec::string("a", "/a"));
        let new = CollectionSpec::new().index(IndexSpec::integer("b", "/b"));
        let change = old.diff(&new).unwrap();
        assert_eq!(change.added.len(), 1);
        assert_eq!(change.dropped, vec!["a".to_owned()]);
        let retyped = CollectionSpec::new().index(IndexSpec::integer("a", "/a"));
        let e = old.diff(&retyped).unwrap_err();
        assert!(
            e.message()
                .contains("cannot change from string at /a to integer at /a"),
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.message().contains("already exists"), "{e}");
        // Covering may change in place, alone; with anything else it is a new index.
        let covered = CollectionSpec::new().index(IndexSpec::string("a", "/a").covering());
        let change = old.diff(&covered).unwrap();
        assert_eq!(change.covering_changed, vec!["a".to_owned()]);
        assert!(change.added.is_empty() && change.dropped.is_empty() && !change.is_empty());
        let retyped = CollectionSpec::new().index(IndexSpec::integer("a", "/a").covering());
        let e = old.diff(&retyped).unwrap_err();
        assert!(
            e.message()
                .contains("cannot change from string at /a to integer at /a covering"),
            "{e}"
        );
    }

    #[test]
    fn covering_is_part_of_the_json_form() {
        let spec = CollectionSpec::from_json(
            r#"{"indexes":[{"name":"s","path":"/s","type":"float","covering":true}]}"#,
        )
        .unwrap();
        assert_eq!(
            spec,
            CollectionSpec::new().index(IndexSpec::float("s", "/s").covering())
        );
        assert!(spec.to_json().contains(r#""covering":true"#));
        // Absent means false, and false is left out.
        let plain = CollectionSpec::new().index(IndexSpec::float("s", "/s"));
        assert!(!plain.to_json().contains("covering"));
    }
}
