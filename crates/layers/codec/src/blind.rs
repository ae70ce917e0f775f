//! Blind indexes: the values of an index declared blind become keyed hashes before they
//! reach the engine.
//!
//! A namespace's data key `k` gives a blind-index key (HMAC-SHA256 of a fixed label under
//! the data key); a value's token is the first 16 bytes of HMAC-SHA256 over the index name
//! and the value's sortable encoding under that key, as 32 hex digits. Equal values in one
//! index under one key give equal tokens, so `eq`, `in` and unique indexes work; the
//! engine learns which records share a value, never the value. The index name is hashed
//! in, so one value in two blind indexes gives unrelated tokens.
//!
//! Writes use the newest data key; a query asks for the tokens of its values under every
//! data key of the namespace, so records written before a rotation are found until the
//! rekey rewrites them. (A unique blind index is enforced per data key: during a rekey, a
//! value written under the old key and again under the new one is not caught.) Shredding
//! a namespace destroys its blind-index keys with its data keys.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use stowage_core::backend::{IndexEntries, Predicate, PredicateOp};
use stowage_core::IndexValue;
use zeroize::Zeroizing;

use crate::keyring::KeyBytes;

const TOKEN_BYTES: usize = 16;

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts every key length")
}

/// The blind-index key of a namespace data key.
pub(crate) fn blind_key(data_key: &KeyBytes) -> KeyBytes {
    let mut m = mac(data_key.as_ref());
    m.update(b"stowage blind index key");
    let out = m.finalize().into_bytes();
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&out);
    key
}

/// The token a value of `index` is stored as under `key`.
pub(crate) fn token(key: &KeyBytes, index: &str, value: &IndexValue) -> IndexValue {
    let mut m = mac(key.as_ref());
    m.update(index.as_bytes());
    m.update(&[0]);
    let mut encoded = Vec::new();
    value.encode_sortable(&mut encoded);
    m.update(&encoded);
    let out = m.finalize().into_bytes();
    let mut hex = String::with_capacity(TOKEN_BYTES * 2);
    for b in &out[..TOKEN_BYTES] {
        hex.push_str(&format!("{b:02x}"));
    }
    IndexValue::String(hex)
}

/// Replaces the values of the `blind` indexes in `entries` with their tokens.
pub(crate) fn hide_entries(entries: &mut IndexEntries, blind: &[String], key: &KeyBytes) {
    for (index, values) in entries.iter_mut() {
        if blind.contains(index) {
            for v in values.iter_mut() {
                *v = token(key, index, v);
            }
        }
    }
}

/// Whether a query touches a blind index.
pub(crate) fn touches(filter: &[Predicate], blind: &[String]) -> bool {
    filter.iter().any(|p| blind.contains(&p.index))
}

/// Rewrites the predicates on `blind` indexes to match the tokens of their values under
/// any of `keys`. Only `eq` and `in` reach here: the store refuses the rest on a blind
/// index before asking the backend.
pub(crate) fn hide_filter(filter: &mut [Predicate], blind: &[String], keys: &[KeyBytes]) {
    for p in filter.iter_mut().filter(|p| blind.contains(&p.index)) {
        let values: Vec<IndexValue> = match &p.op {
            PredicateOp::Eq(v) => vec![v.clone()],
            PredicateOp::In(vs) => vs.clone(),
            // Nothing a token can match: the store refuses these, this keeps it so.
            PredicateOp::Range(..) | PredicateOp::Prefix(_) => Vec::new(),
        };
        let tokens = values
            .iter()
            .flat_map(|v| keys.iter().map(|k| token(k, &p.index, v)))
            .collect::<Vec<_>>();
        p.op = match tokens.len() {
            1 => PredicateOp::Eq(tokens.into_iter().next().expect("one token")),
            _ => PredicateOp::In(tokens),
        };
    }
}
