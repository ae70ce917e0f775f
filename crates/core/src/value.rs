//! Typed index values: what an index holds for a record, and what predicates compare with.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::Timestamp;
use crate::spec::IndexType;

/// One value of an index, of the index's [`IndexType`]. Values of one index all have the same
/// type, so comparing across types never decides a query; the order between types is fixed
/// only so that `IndexValue` is `Ord`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IndexValue {
    /// A string, compared byte-wise (UTF-8 order = code point order).
    String(String),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A finite float (NaN and infinities cannot be indexed; -0.0 is stored as 0.0).
    Float(f64),
    /// A boolean, `false < true`.
    Bool(bool),
    /// A point in time.
    Timestamp(Timestamp),
}

impl IndexValue {
    fn rank(&self) -> u8 {
        match self {
            IndexValue::String(_) => 0,
            IndexValue::Integer(_) => 1,
            IndexValue::Float(_) => 2,
            IndexValue::Bool(_) => 3,
            IndexValue::Timestamp(_) => 4,
        }
    }

    /// Converts a JSON value into a value of index type `ty`, or says why it cannot.
    /// `what` names the value in the error ("index \"score\" of record \"k1\"").
    ///
    /// Integers are accepted for float indexes; a float is accepted for an integer index
    /// only when it is integral (`3.0`), since JSON writers differ there.
    pub fn from_json(ty: IndexType, value: &Value, what: &dyn Fn() -> String) -> Result<Self> {
        let wrong = || {
            Error::invalid(format!(
                "{}: expected {}, found {}",
                what(),
                ty.describe(),
                json_kind(value)
            ))
        };
        Ok(match ty {
            IndexType::String => IndexValue::String(value.as_str().ok_or_else(wrong)?.to_owned()),
            IndexType::Integer => match value {
                Value::Number(n) => match n.as_i64() {
                    Some(i) => IndexValue::Integer(i),
                    None => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                            IndexValue::Integer(f as i64)
                        }
                        _ => {
                            return Err(Error::invalid(format!(
                                "{}: expected an integer in the signed 64-bit range, found {n}",
                                what()
                            )))
                        }
                    },
                },
                _ => return Err(wrong()),
            },
            IndexType::Float => {
                let f = value.as_f64().ok_or_else(wrong)?;
                IndexValue::float(f).ok_or_else(wrong)?
            }
            IndexType::Bool => IndexValue::Bool(value.as_bool().ok_or_else(wrong)?),
            IndexType::Timestamp => {
                let s = value.as_str().ok_or_else(wrong)?;
                IndexValue::Timestamp(
                    Timestamp::parse_rfc3339(s)
                        .map_err(|e| Error::invalid(format!("{}: {}", what(), e.message())))?,
                )
            }
        })
    }

    /// A float value; `None` for NaN or an infinity.
    pub fn float(f: f64) -> Option<Self> {
        if f.is_finite() {
            // -0.0 == 0.0 must also be one key.
            Some(IndexValue::Float(if f == 0.0 { 0.0 } else { f }))
        } else {
            None
        }
    }

    /// The value's type.
    pub fn index_type(&self) -> IndexType {
        match self {
            IndexValue::String(_) => IndexType::String,
            IndexValue::Integer(_) => IndexType::Integer,
            IndexValue::Float(_) => IndexType::Float,
            IndexValue::Bool(_) => IndexType::Bool,
            IndexValue::Timestamp(_) => IndexType::Timestamp,
        }
    }

    /// The value as JSON, as it appears in a body.
    pub fn to_json(&self) -> Value {
        match self {
            IndexValue::String(s) => Value::from(s.as_str()),
            IndexValue::Integer(i) => Value::from(*i),
            IndexValue::Float(f) => Value::from(*f),
            IndexValue::Bool(b) => Value::from(*b),
            IndexValue::Timestamp(t) => Value::from(t.to_rfc3339()),
        }
    }
}

/// Order-preserving byte encodings, for engines whose indexes are ordered byte strings
/// (redb, sled): `a < b` exactly when `a.encode_sortable() < b.encode_sortable()` for values
/// of one type, and an encoded value followed by any suffix (the record id) still sorts by
/// value first.
impl IndexValue {
    /// Appends the sortable encoding: fixed 8 big-endian bytes for integers, floats and
    /// timestamps (sign bit flipped, negative floats inverted), one byte for booleans, and
    /// for strings the UTF-8 bytes with `00` escaped as `00 FF`, closed by `00 00`.
    pub fn encode_sortable(&self, out: &mut Vec<u8>) {
        match self {
            IndexValue::String(s) => {
                encode_string_prefix(s, out);
                out.extend_from_slice(&[0, 0]);
            }
            IndexValue::Integer(i) => out.extend_from_slice(&sortable_i64(*i)),
            IndexValue::Timestamp(t) => out.extend_from_slice(&sortable_i64(t.as_micros())),
            IndexValue::Float(f) => {
                let bits = f.to_bits();
                let key = if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | (1 << 63)
                };
                out.extend_from_slice(&key.to_be_bytes());
            }
            IndexValue::Bool(b) => out.push(u8::from(*b)),
        }
    }

    /// Decodes a value of type `ty` from the front of `bytes`; returns it and the rest.
    pub fn decode_sortable(ty: IndexType, bytes: &[u8]) -> Result<(IndexValue, &[u8])> {
        let bad = || Error::new(crate::ErrorKind::Corrupted, "index key cannot be decoded");
        let fixed = |n: usize| -> Result<(&[u8], &[u8])> {
            if bytes.len() < n {
                return Err(bad());
            }
            Ok(bytes.split_at(n))
        };
        Ok(match ty {
            IndexType::String => {
                let mut s = Vec::new();
                let mut i = 0;
                loop {
                    match (bytes.get(i), bytes.get(i + 1)) {
                        (Some(0), Some(0)) => break,
                        (Some(0), Some(0xFF)) => {
                            s.push(0);
                            i += 2;
                        }
                        (Some(b), _) if *b != 0 => {
                            s.push(*b);
                            i += 1;
                        }
                        _ => return Err(bad()),
                    }
                }
                let s = String::from_utf8(s).map_err(|_| bad())?;
                (IndexValue::String(s), &bytes[i + 2..])
            }
            IndexType::Integer | IndexType::Timestamp => {
                let (head, rest) = fixed(8)?;
                let i = unsortable_i64(head.try_into().map_err(|_| bad())?);
                let v = if ty == IndexType::Integer {
                    IndexValue::Integer(i)
                } else {
                    IndexValue::Timestamp(Timestamp::from_micros(i))
                };
                (v, rest)
            }
            IndexType::Float => {
                let (head, rest) = fixed(8)?;
                let key = u64::from_be_bytes(head.try_into().map_err(|_| bad())?);
                let bits = if key >> 63 == 1 {
                    key & !(1 << 63)
                } else {
                    !key
                };
                (IndexValue::Float(f64::from_bits(bits)), rest)
            }
            IndexType::Bool => {
                let (head, rest) = fixed(1)?;
                (IndexValue::Bool(head[0] != 0), rest)
            }
        })
    }
}

/// The sortable encoding of a string without its terminator: every encoded string that
/// starts with `prefix` starts with these bytes.
pub fn encode_string_prefix(prefix: &str, out: &mut Vec<u8>) {
    for b in prefix.bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// An i64 as 8 bytes whose byte order is numeric order.
pub fn sortable_i64(i: i64) -> [u8; 8] {
    ((i as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`sortable_i64`].
pub fn unsortable_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// A short description of a JSON value's kind, for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl PartialEq for IndexValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for IndexValue {}

impl PartialOrd for IndexValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (IndexValue::String(a), IndexValue::String(b)) => a.cmp(b),
            (IndexValue::Integer(a), IndexValue::Integer(b)) => a.cmp(b),
            (IndexValue::Float(a), IndexValue::Float(b)) => a.total_cmp(b),
            (IndexValue::Bool(a), IndexValue::Bool(b)) => a.cmp(b),
            (IndexValue::Timestamp(a), IndexValue::Timestamp(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl std::hash::Hash for IndexValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            IndexValue::String(s) => s.hash(state),
            IndexValue::Integer(i) => i.hash(state),
            IndexValue::Float(f) => f.to_bits().hash(state),
            IndexValue::Bool(b) => b.hash(state),
            IndexValue::Timestamp(t) => t.hash(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(ty: IndexType, v: Value) -> Result<IndexValue> {
        IndexValue::from_json(ty, &v, &|| "test".to_owned())
    }

    #[test]
    fn conversions_check_types() {
        assert_eq!(
            conv(IndexType::Integer, json!(3)).unwrap(),
            IndexValue::Integer(3)
        );
        assert_eq!(
            conv(IndexType::Integer, json!(3.0)).unwrap(),
            IndexValue::Integer(3)
        );
        assert!(conv(IndexType::Integer, json!(3.5)).is_err());
        assert!(conv(IndexType::Integer, json!(u64::MAX)).is_err());
        assert_eq!(
            conv(IndexType::Float, json!(2)).unwrap(),
            IndexValue::Float(2.0)
        );
        assert_eq!(
            conv(IndexType::Float, json!(-0.0)).unwrap(),
            IndexValue::Float(0.0)
        );
        let e = conv(IndexType::String, json!(5)).unwrap_err();
        assert!(
            e.message().contains("expected a string, found an integer"),
            "{e}"
        );
        assert!(conv(IndexType::Timestamp, json!("2024-01-01T00:00:00Z")).is_ok());
        assert!(conv(IndexType::Timestamp, json!("2024-01-01")).is_err());
        assert!(conv(IndexType::Bool, json!("true")).is_err());
    }

    fn sortable(v: &IndexValue) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode_sortable(&mut out);
        out
    }

    proptest::proptest! {
        #[test]
        fn sortable_encoding_keeps_order_and_round_trips(
            a in proptest::num::i64::ANY, b in proptest::num::i64::ANY,
            x in -1e12f64..1e12, y in proptest::num::f64::NORMAL,
            s in "\\PC*", t in "[a\\x00b]{0,6}",
        ) {
            let pairs = [
                (IndexValue::Integer(a), IndexValue::Integer(b)),
                (IndexValue::Timestamp(Timestamp::from_micros(a)), IndexValue::Timestamp(Timestamp::from_micros(b))),
                (IndexValue::float(x).unwrap(), IndexValue::float(y).unwrap()),
                (IndexValue::String(s.clone()), IndexValue::String(t.clone())),
                (IndexValue::Bool(a % 2 == 0), IndexValue::Bool(b % 2 == 0)),
            ];
            for (p, q) in pairs {
                let (ep, eq) = (sortable(&p), sortable(&q));
                proptest::prop_assert_eq!(p.cmp(&q), ep.cmp(&eq), "{:?} vs {:?}", p, q);
                // With an id after it, the value still decides first.
                let mut with_id = ep.clone();
                with_id.extend_from_slice(b"\x00id");
                let (back, rest) = IndexValue::decode_sortable(p.index_type(), &with_id).unwrap();
                proptest::prop_assert_eq!(&back, &p);
                proptest::prop_assert_eq!(rest, b"\x00id");
            }
            let mut prefix = Vec::new();
            encode_string_prefix(&t, &mut prefix);
            let full = sortable(&IndexValue::String(format!("{t}{s}")));
            proptest::prop_assert!(full.starts_with(&prefix));
        }
    }

    #[test]
    fn floats_order_totally() {
        let mut v = [1.5, -2.0, 0.0, -0.5, 1e300, -1e300]
            .map(|f| IndexValue::float(f).unwrap())
            .to_vec();
        v.sort();
        let got: Vec<f64> = v
            .iter()
            .map(|x| match x {
                IndexValue::Float(f) => *f,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, vec![-1e300, -2.0, -0.5, 0.0, 1.5, 1e300]);
    }
}
