//! How Stowage lays records out in an ordered key-value engine (redb, sled): table names,
//! the record encoding and index keys. A "table" is a redb table or a sled tree.
//!
//! Every table maps bytes to bytes:
//!
//! | table | key | value |
//! |---|---|---|
//! | `stowage/meta` | `format` | format version (u32 LE) |
//! | `stowage/meta` | `revision` | the last spec revision given (u64 LE) |
//! | `stowage/catalog` | `ns 0x00 collection` | [`encode_spec`]: the spec, its revision and the indexes being built, as JSON |
//! | `stowage/floors` | `ns 0x00 collection` | the collection's version floor (u64 LE); outlives the collection |
//! | `stowage/logged` | `ns` | empty: the namespace's changes are logged (it was watched) |
//! | `c/{ns}` | change token (u64 BE) | [`encode_change`]; the oldest beyond the retention are trimmed |
//! | `r/{ns}/{coll}` | record id | [`encode_record`] |
//! | `i/{ns}/{coll}/{index}` | sortable value ‖ id | empty; for a covering index, the record's bytes as in `r/` |
//! | `e/{ns}/{coll}` | sortable expiry ‖ id | empty |
//!
//! Index keys put the value's order-preserving encoding first, so range, prefix and ordered
//! queries walk the index table; the id after it makes every key unique. A record keeps the
//! index values it was written with, so a later write or delete removes exactly those
//! entries by point keys.
//!
//! Format history: 1 stored the bare spec JSON in the catalog and had no floors or
//! revisions; 2 (this build) wraps it with a revision and the building list.

use serde::{Deserialize, Serialize};
use stowage_core::backend::{sortable_i64, IndexEntries, Revision, StoredSpec};
use stowage_core::{
    ChangeEvent, ChangeOp, CollectionSpec, ContentType, Error, ErrorKind, IndexValue, RecordRef,
    Result, StoredRecord, Timestamp,
};

/// The on-disk format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;

/// The format marker's table: a file without it is not a Stowage store.
pub const META: &str = "stowage/meta";
/// The table of every namespace's collection specs.
pub const CATALOG: &str = "stowage/catalog";
/// The meta key holding [`FORMAT_VERSION`].
pub const FORMAT_KEY: &[u8] = b"format";
/// The meta key holding the last spec revision given.
pub const REVISION_KEY: &[u8] = b"revision";
/// The table of version floors, keyed like the catalog.
pub const FLOORS: &str = "stowage/floors";
/// The namespaces whose changes are logged (someone watched them once).
pub const LOGGED: &str = "stowage/logged";

/// The change log of a namespace: token (u64 big-endian, so keys sort by token) → the
/// change ([`encode_change`]).
pub fn changes_table(ns: &str) -> String {
    format!("c/{ns}")
}

/// A change log key.
pub fn encode_token(token: u64) -> [u8; 8] {
    token.to_be_bytes()
}

/// A change log key back to its token (0 when malformed).
pub fn decode_token(key: &[u8]) -> u64 {
    key.try_into().map_or(0, u64::from_be_bytes)
}

/// The ops a change log entry may hold, by their byte.
const CHANGE_OPS: [ChangeOp; 8] = [
    ChangeOp::Put,
    ChangeOp::Delete,
    ChangeOp::DeletePrefix,
    ChangeOp::DeleteWhere,
    ChangeOp::Purge,
    ChangeOp::Drop,
    ChangeOp::Spec,
    ChangeOp::Gap,
];

/// A change log entry, compact because every write of a watched namespace writes one: op
/// (1 byte), presence flags (1), version, at, count (8 each, LE), then collection and id
/// (u16 length + bytes each). The token is the key.
pub fn encode_change(change: &ChangeEvent) -> Vec<u8> {
    let coll = change.collection.as_deref().unwrap_or("");
    let id = change.id.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(30 + coll.len() + id.len());
    out.push(CHANGE_OPS.iter().position(|o| *o == change.op).unwrap_or(0) as u8);
    out.push(
        u8::from(change.collection.is_some())
            | u8::from(change.id.is_some()) << 1
            | u8::from(change.version.is_some()) << 2
            | u8::from(change.count.is_some()) << 3,
    );
    out.extend_from_slice(&change.version.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&change.at.as_micros().to_le_bytes());
    out.extend_from_slice(&change.count.unwrap_or(0).to_le_bytes());
    for text in [coll, id] {
        // Names are at most 63 bytes and ids 512: a u16 length always fits.
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// A change log entry back to its change (token 0: the key holds it).
pub fn decode_change(bytes: &[u8]) -> Result<ChangeEvent> {
    let bad = || corrupted("a change log entry is truncated or unknown");
    let op = *CHANGE_OPS
        .get(*bytes.first().ok_or_else(bad)? as usize)
        .ok_or_else(bad)?;
    let flags = *bytes.get(1).ok_or_else(bad)?;
    let number = |at: usize| -> Result<u64> {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(bad)
    };
    let (version, at, count) = (number(2)?, number(10)? as i64, number(18)?);
    let mut rest = bytes.get(26..).ok_or_else(bad)?;
    let mut text = || -> Result<String> {
        let len = rest
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
            .ok_or_else(bad)? as usize;
        let body = rest.get(2..2 + len).ok_or_else(bad)?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| bad())?;
        rest = &rest[2 + len..];
        Ok(text)
    };
    let (coll, id) = (text()?, text()?);
    Ok(ChangeEvent {
        token: 0,
        op,
        collection: (flags & 1 != 0).then_some(coll),
        id: (flags & 2 != 0).then_some(id),
        version: (flags & 4 != 0).then_some(version),
        at: Timestamp::from_micros(at),
        count: (flags & 8 != 0).then_some(count),
    })
}

/// The names of one collection's tables.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Records by id.
    pub records: String,
    /// Expiry entries.
    pub expiry: String,
    prefix: String,
}

impl Tables {
    /// The tables of `ns`/`coll`. Names contain no `/` (they are validated), so the table
    /// names cannot collide.
    pub fn new(ns: &str, coll: &str) -> Self {
        Tables {
            records: records_table(ns, coll),
            expiry: format!("e/{ns}/{coll}"),
            prefix: format!("i/{ns}/{coll}/"),
        }
    }

    /// The table of index `name`.
    pub fn index(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// The records table of `ns`/`coll` alone, for reads that need no other table.
pub fn records_table(ns: &str, coll: &str) -> String {
    // On every point read: plain pushes cost less than `format!`'s machinery.
    let mut name = String::with_capacity(3 + ns.len() + coll.len());
    name.push_str("r/");
    name.push_str(ns);
    name.push('/');
    name.push_str(coll);
    name
}

/// The catalog key of a collection.
pub fn catalog_key(ns: &str, coll: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + coll.len() + 1);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(coll.as_bytes());
    k
}

/// A catalog entry as JSON.
#[derive(Serialize, Deserialize)]
struct CatalogEntry {
    spec: CollectionSpec,
    revision: Revision,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    building: Vec<String>,
}

/// Encodes a catalog entry.
pub fn encode_spec(stored: &StoredSpec) -> Vec<u8> {
    serde_json::to_vec(&CatalogEntry {
        spec: stored.spec.clone(),
        revision: stored.revision,
        building: stored.building.clone(),
    })
    .unwrap_or_default()
}

/// Parses a catalog entry.
pub fn decode_spec(coll: &str, bytes: &[u8]) -> Result<StoredSpec> {
    let e: CatalogEntry = serde_json::from_slice(bytes).map_err(|e| corrupt_spec(coll, e))?;
    Ok(StoredSpec {
        spec: e.spec,
        revision: e.revision,
        building: e.building,
    })
}

/// Parses a format-1 catalog entry: the bare spec.
pub fn decode_spec_v1(coll: &str, bytes: &[u8]) -> Result<CollectionSpec> {
    serde_json::from_slice(bytes).map_err(|e| corrupt_spec(coll, e))
}

fn corrupt_spec(coll: &str, e: serde_json::Error) -> Error {
    Error::new(
        ErrorKind::Corrupted,
        format!("stored spec of collection {coll:?} cannot be read: {e}"),
    )
}

/// A u64 stored little-endian (a floor or a revision); 0 when absent or malformed.
pub fn decode_u64(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// An index key: the value's sortable encoding, then the id.
pub fn index_key(value: &IndexValue, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + id.len());
    value.encode_sortable(&mut k);
    k.extend_from_slice(id.as_bytes());
    k
}

/// An expiry key: the time's sortable encoding, then the id.
pub fn expiry_key(at: Timestamp, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&sortable_i64(at.as_micros()));
    k.extend_from_slice(id.as_bytes());
    k
}

/// A stored id (a key of a records table, or the tail of an index key) as text.
pub fn utf8_id(k: &[u8]) -> Result<String> {
    utf8_id_ref(k).map(str::to_owned)
}

/// A stored id, borrowed.
pub fn utf8_id_ref(k: &[u8]) -> Result<&str> {
    std::str::from_utf8(k).map_err(|_| Error::new(ErrorKind::Corrupted, "a stored id is not UTF-8"))
}

fn corrupted(what: &str) -> Error {
    Error::new(ErrorKind::Corrupted, what.to_owned())
}

/// A record's index entries as stored: per index, the values' sortable encodings.
pub type StoredEntries = Vec<(String, Vec<Vec<u8>>)>;

const HEADER: usize = 38;
const NO_EXPIRY: i64 = i64::MIN;

/// Encodes a record with the index values it was indexed under (so that a later write or
/// delete removes exactly those entries). Index values are kept in their sortable encoding.
pub fn encode_record(rec: &StoredRecord, index: &[(String, Vec<Vec<u8>>)]) -> Vec<u8> {
    let mut entries = Vec::new();
    for (name, values) in index {
        entries.push(name.len() as u8);
        entries.extend_from_slice(name.as_bytes());
        entries.extend_from_slice(&(values.len() as u32).to_le_bytes());
        for v in values {
            entries.extend_from_slice(&(v.len() as u32).to_le_bytes());
            entries.extend_from_slice(v);
        }
    }
    let mut out = Vec::with_capacity(HEADER + entries.len() + rec.body.bytes.len());
    out.push(1);
    out.push(match rec.body.content_type {
        ContentType::Json => 0,
        _ => 1,
    });
    out.extend_from_slice(&rec.version.to_le_bytes());
    out.extend_from_slice(&rec.created_at.as_micros().to_le_bytes());
    out.extend_from_slice(&rec.updated_at.as_micros().to_le_bytes());
    out.extend_from_slice(
        &rec.expires_at
            .map_or(NO_EXPIRY, Timestamp::as_micros)
            .to_le_bytes(),
    );
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&entries);
    out.extend_from_slice(&rec.body.bytes);
    out
}

/// The fixed part of a stored record, read without touching the body.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// The version.
    pub version: u64,
    /// First insert.
    pub created_at: Timestamp,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
}

impl Header {
    /// Whether the record is expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

fn field(bytes: &[u8], at: usize) -> Result<[u8; 8]> {
    bytes
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupted("a stored record is truncated"))
}

/// Reads a stored record's header.
pub fn decode_header(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < HEADER || bytes[0] != 1 {
        return Err(corrupted("a stored record has an unknown layout"));
    }
    let expires = i64::from_le_bytes(field(bytes, 26)?);
    Ok(Header {
        version: u64::from_le_bytes(field(bytes, 2)?),
        created_at: Timestamp::from_micros(i64::from_le_bytes(field(bytes, 10)?)),
        expires_at: (expires != NO_EXPIRY).then_some(Timestamp::from_micros(expires)),
    })
}

fn entries_range(bytes: &[u8]) -> Result<(usize, usize)> {
    let len = u32::from_le_bytes(
        bytes
            .get(34..38)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| corrupted("a stored record is truncated"))?,
    ) as usize;
    let end = HEADER + len;
    if end > bytes.len() {
        return Err(corrupted("a stored record is truncated"));
    }
    Ok((HEADER, end))
}

/// A stored record read in place: header fields decoded, id and body borrowed.
pub fn record_ref<'a>(id: &'a [u8], bytes: &'a [u8]) -> Result<RecordRef<'a>> {
    let h = decode_header(bytes)?;
    let (_, body_start) = entries_range(bytes)?;
    Ok(RecordRef {
        id: std::str::from_utf8(id)
            .map_err(|_| Error::new(ErrorKind::Corrupted, "a stored id is not UTF-8"))?,
        version: h.version,
        created_at: h.created_at,
        updated_at: Timestamp::from_micros(i64::from_le_bytes(field(bytes, 18)?)),
        expires_at: h.expires_at,
        content_type: if bytes[1] == 0 {
            ContentType::Json
        } else {
            ContentType::Bytes
        },
        body: &bytes[body_start..],
    })
}

/// Decodes a whole stored record.
pub fn decode_record(id: &[u8], bytes: &[u8]) -> Result<StoredRecord> {
    Ok(record_ref(id, bytes)?.to_stored())
}

/// The index entries a stored record was written with, as sortable encodings.
pub fn decode_entries(bytes: &[u8]) -> Result<StoredEntries> {
    let (start, end) = entries_range(bytes)?;
    let mut e = &bytes[start..end];
    let mut out = Vec::new();
    let trunc = || corrupted("a stored record's index entries are truncated");
    let take = |e: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        if e.len() < n {
            return Err(trunc());
        }
        let (head, rest) = e.split_at(n);
        *e = rest;
        Ok(head.to_vec())
    };
    let take_u32 = |e: &mut &[u8]| -> Result<usize> {
        let b = take(e, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    while !e.is_empty() {
        let n = take(&mut e, 1)?[0] as usize;
        let name = String::from_utf8(take(&mut e, n)?).map_err(|_| trunc())?;
        let count = take_u32(&mut e)?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take_u32(&mut e)?;
            values.push(take(&mut e, len)?);
        }
        out.push((name, values));
    }
    Ok(out)
}

/// Whether a stored record holds `value` (a sortable encoding) in index `index` — read in
/// place, for checking a record against the index entry that led to it.
pub fn entries_hold(bytes: &[u8], index: &str, value: &[u8]) -> Result<bool> {
    let (start, end) = entries_range(bytes)?;
    let mut e = &bytes[start..end];
    let trunc = || corrupted("a stored record's index entries are truncated");
    fn take<'b>(e: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
        let head = e.get(..n)?;
        *e = &e[n..];
        Some(head)
    }
    let take_u32 =
        |e: &mut &[u8]| take(e, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    while !e.is_empty() {
        let n = take(&mut e, 1).ok_or_else(trunc)?[0] as usize;
        let name = take(&mut e, n).ok_or_else(trunc)?;
        let count = take_u32(&mut e).ok_or_else(trunc)?;
        let wanted = name == index.as_bytes();
        for _ in 0..count {
            let len = take_u32(&mut e).ok_or_else(trunc)?;
            let v = take(&mut e, len).ok_or_else(trunc)?;
            if wanted && v == value {
                return Ok(true);
            }
        }
        if wanted {
            return Ok(false);
        }
    }
    Ok(false)
}

/// Decodes stored entries back into typed values, for filtering: indexes the spec no
/// longer has are skipped.
pub fn typed_entries(spec: &CollectionSpec, raw: StoredEntries) -> Result<IndexEntries> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, values) in raw {
        let Some(ix) = spec.index_named(&name) else {
            continue;
        };
        let typed = values
            .iter()
            .map(|v| IndexValue::decode_sortable(ix.index_type, v).map(|(v, _)| v))
            .collect::<Result<Vec<_>>>()?;
        out.push((name, typed));
    }
    Ok(out)
}

/// Sortable encodings of typed entries, for storing.
pub fn sortable_entries(index: &IndexEntries) -> StoredEntries {
    index
        .iter()
        .map(|(name, values)| {
            let enc = values
                .iter()
                .map(|v| {
                    let mut b = Vec::new();
                    v.encode_sortable(&mut b);
                    b
                })
                .collect();
            (name.clone(), enc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::Body;

    #[test]
    fn changes_round_trip() {
        let at = Timestamp::from_micros(-7);
        let full = ChangeEvent::new(ChangeOp::DeletePrefix, Some("items"), at)
            .id("pre/ü")
            .version(9)
            .count(3);
        assert_eq!(decode_change(&encode_change(&full)).unwrap(), full);
        let bare = ChangeEvent::new(ChangeOp::Purge, None, Timestamp::from_micros(5)).count(0);
        assert_eq!(decode_change(&encode_change(&bare)).unwrap(), bare);
        assert!(decode_change(&encode_change(&full)[..20]).is_err());
        assert!(decode_change(&[200, 0]).is_err());
    }

    #[test]
    fn records_round_trip_with_entries() {
        let rec = StoredRecord {
            id: "k1".into(),
            version: 7,
            created_at: Timestamp::from_micros(-5),
            updated_at: Timestamp::from_micros(10),
            expires_at: Some(Timestamp::from_micros(99)),
            body: Body::json(&b"{\"a\":1}"[..]),
        };
        let entries = sortable_entries(&vec![
            ("n".to_owned(), vec![IndexValue::Integer(3)]),
            (
                "tags".to_owned(),
                vec![
                    IndexValue::String("a".into()),
                    IndexValue::String("b\0".into()),
                ],
            ),
        ]);
        let bytes = encode_record(&rec, &entries);
        assert_eq!(decode_record(b"k1", &bytes).unwrap(), rec);
        assert_eq!(decode_entries(&bytes).unwrap(), entries);
        let b = |v: IndexValue| {
            let mut out = Vec::new();
            v.encode_sortable(&mut out);
            out
        };
        assert!(entries_hold(&bytes, "tags", &b(IndexValue::String("b\0".into()))).unwrap());
        assert!(entries_hold(&bytes, "n", &b(IndexValue::Integer(3))).unwrap());
        assert!(!entries_hold(&bytes, "n", &b(IndexValue::Integer(4))).unwrap());
        assert!(!entries_hold(&bytes, "tags", &b(IndexValue::Integer(3))).unwrap());
        assert!(!entries_hold(&bytes, "other", &b(IndexValue::Integer(3))).unwrap());
        let h = decode_header(&bytes).unwrap();
        assert!(
            h.is_expired(Timestamp::from_micros(99)) && !h.is_expired(Timestamp::from_micros(98))
        );
        assert!(decode_record(b"k1", &bytes[..20]).is_err());
    }
}
