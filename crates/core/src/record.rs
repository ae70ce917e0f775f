//! The record model: ids, names, timestamps, bodies and the [`Record`] trait.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::CollectionSpec;

/// The longest record id, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 512;

/// The longest namespace or collection name, in bytes. 63 is PostgreSQL's identifier limit.
pub const MAX_NAME_BYTES: usize = 63;

/// A record's version: 1 on insert, +1 on every write. It is the record's ETag.
pub type Version = u64;

/// Checks a record id: 1–512 bytes of UTF-8 with no NUL character (PostgreSQL text cannot
/// hold one, and the id must mean the same thing on every backend).
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(
            "record id is empty: ids are 1 to 512 bytes of UTF-8",
        ));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!(
            "record id is {} bytes long: ids are 1 to {MAX_ID_BYTES} bytes of UTF-8",
            id.len()
        )));
    }
    if id.contains('\0') {
        return Err(Error::invalid("record id contains a NUL character"));
    }
    Ok(())
}

/// Checks a namespace or collection name: 1–63 bytes of ASCII letters, digits, `_` and `-`,
/// starting with a letter or `_`. The same name then works as a PostgreSQL schema or table,
/// a Redis key part, a redb table name and a URL path segment without quoting.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok_first || !ok_rest || name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(format!(
            "{what} name {name:?} is not valid: use 1 to {MAX_NAME_BYTES} ASCII letters, digits, \
             '_' or '-', starting with a letter or '_'"
        )));
    }
    if name.starts_with("__") {
        return Err(Error::invalid(format!(
            "{what} name {name:?} is reserved: names starting with \"__\" belong to Stowage"
        )));
    }
    Ok(())
}

/// A point in time with microsecond precision (PostgreSQL's), as microseconds since the Unix
/// epoch. Ordered, cheap to copy, and printed as RFC 3339.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From microseconds since the Unix epoch.
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current time of the system clock.
    pub fn now() -> Self {
        Timestamp::from(SystemTime::now())
    }

    /// This time plus a duration, saturating at the end of representable time.
    pub fn saturating_add(self, d: Duration) -> Self {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(us))
    }

    /// Parses RFC 3339 (`2024-03-14T12:05:00Z`, offsets allowed).
    pub fn parse_rfc3339(s: &str) -> Result<Self> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::invalid(format!("{s:?} is not an RFC 3339 timestamp: {e}")))?;
        let us = t.unix_timestamp_nanos() / 1000;
        i64::try_from(us)
            .map(Timestamp)
            .map_err(|_| Error::invalid(format!("timestamp {s:?} is out of range")))
    }

    /// Formats as RFC 3339 in UTC.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("@{}us", self.0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// How a stored body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// UTF-8 JSON text. Backends with a JSON type (PostgreSQL `jsonb`) store it natively.
    Json,
    /// Opaque bytes: raw key-value data, or a body the codec layer compressed or encrypted.
    Bytes,
}

/// A body as it crosses the [`crate::backend::Backend`] trait: bytes and how they are encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Body {
    /// How `bytes` are encoded.
    pub content_type: ContentType,
    /// The encoded body.
    pub bytes: Bytes,
}

impl Body {
    /// A JSON body (the caller guarantees `bytes` is JSON text).
    pub fn json(bytes: impl Into<Bytes>) -> Self {
        Body {
            content_type: ContentType::Json,
            bytes: bytes.into(),
        }
    }

    /// An opaque binary body.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Body {
            content_type: ContentType::Bytes,
            bytes: bytes.into(),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Body({:?}, {} bytes)",
            self.content_type,
            self.bytes.len()
        )
    }
}

/// A record as a backend stores it: id, version, timestamps and encoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The id.
    pub id: String,
    /// The version: 1 on insert, +1 on every write.
    pub version: Version,
    /// When the record was first inserted (kept across writes; a delete forgets it).
    pub created_at: Timestamp,
    /// When the record was last written.
    pub updated_at: Timestamp,
    /// When the record stops being visible, if it has a TTL.
    pub expires_at: Option<Timestamp>,
    /// The encoded body.
    pub body: Body,
}

impl StoredRecord {
    /// Whether the record is expired at `now`. Expired records are invisible to every read.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The record borrowed, as [`Backend::query_each`](crate::backend::Backend::query_each)
    /// hands records out.
    pub fn as_record_ref(&self) -> RecordRef<'_> {
        RecordRef {
            id: &self.id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            content_type: self.body.content_type,
            body: &self.body.bytes,
        }
    }
}

/// A stored record read in place: its id and body borrowed from where the engine holds
/// them (a page of the file, a buffer of the driver), so that a typed read decodes
/// straight from there instead of copying every body first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The id.
    pub id: &'a str,
    /// The version.
    pub version: Version,
    /// When the record was first inserted.
    pub created_at: Timestamp,
    /// When the record was last written.
    pub updated_at: Timestamp,
    /// When the record expires, if it has a TTL.
    pub expires_at: Option<Timestamp>,
    /// How `body` is encoded.
    pub content_type: ContentType,
    /// The encoded body.
    pub body: &'a [u8],
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_stored(&self) -> StoredRecord {
        StoredRecord {
            id: self.id.to_owned(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            body: Body {
                content_type: self.content_type,
                bytes: Bytes::copy_from_slice(self.body),
            },
        }
    }
}

/// Decodes a JSON body into `T`. Checking the UTF-8 once for the whole body and parsing the
/// text is faster than `serde_json::from_slice`, which checks every string it reads (about
/// 20 % on a 230-byte record; sonic-rs and simd-json were slower still on records this
/// small without `-C target-cpu=native`, which a library cannot ask of its users).
pub(crate) fn decode_json<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        // The slice decoder says where the bad byte is.
        Err(_) => serde_json::from_slice(body),
    }
}

/// A Rust type stored as records of one collection.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use stowage_core::{CollectionSpec, IndexSpec, Record};
///
/// #[derive(Serialize, Deserialize)]
/// struct Incident { id: String, severity: String, fingerprint: String }
///
/// impl Record for Incident {
///     const COLLECTION: &'static str = "incidents";
///     fn spec() -> CollectionSpec {
///         CollectionSpec::new()
///             .index(IndexSpec::string("severity", "/severity"))
///             .index(IndexSpec::string("fingerprint", "/fingerprint").unique())
///     }
///     fn id(&self) -> String { self.id.clone() }
/// }
/// ```
pub trait Record: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The collection's name: 1–63 ASCII letters, digits, `_` or `-`.
    const COLLECTION: &'static str;
    /// The collection's indexes and default TTL.
    fn spec() -> CollectionSpec;
    /// This record's id: 1–512 bytes of UTF-8.
    fn id(&self) -> String;
}

/// A decoded record with its metadata, as reads return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The id.
    pub id: String,
    /// The version (the ETag).
    pub version: Version,
    /// When the record was first inserted.
    pub created_at: Timestamp,
    /// When the record was last written.
    pub updated_at: Timestamp,
    /// When the record expires, if it has a TTL.
    pub expires_at: Option<Timestamp>,
    /// The decoded body.
    pub value: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("a").is_ok());
        assert!(validate_id(&"é".repeat(256)).is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id(&"x".repeat(513)).is_err());
        assert!(validate_id("a\0b").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("collection", "incidents_v2").is_ok());
        assert!(validate_name("collection", "my-coll").is_ok());
        for bad in ["", "1abc", "a b", "a/b", "__catalog", "é"] {
            assert!(validate_name("collection", bad).is_err(), "{bad}");
        }
        assert!(validate_name("collection", &"a".repeat(64)).is_err());
    }

    #[test]
    fn timestamps_round_trip_rfc3339() {
        let t = Timestamp::parse_rfc3339("2024-03-14T12:05:00.123456Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-14T12:05:00.123456Z");
        let off = Timestamp::parse_rfc3339("2024-03-14T13:05:00+01:00").unwrap();
        assert_eq!(
            off,
            Timestamp::parse_rfc3339("2024-03-14T12:05:00Z").unwrap()
        );
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        let before = Timestamp::parse_rfc3339("1960-01-01T00:00:00Z").unwrap();
        assert!(before.as_micros() < 0 && before < t);
    }
}
