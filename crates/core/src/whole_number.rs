//! Serde helpers for counts and limits read from JSON: a whole number written `3` or `3.0`.
//!
//! JSON has one number type, and JSON Schema's `integer` admits `3.0`, so a client (or a
//! language whose numbers are all doubles) may send a limit as `50.0`. Both spellings read as
//! the same integer; a fraction, a negative number or one too large is refused with a message
//! that says so. Used with `#[serde(default, deserialize_with = "whole_number::option")]`.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A non-negative whole number that fits `u64`.
struct Whole(u64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of at least 0")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                u64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom(format!("{v} is negative: expected at least 0")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                // 2^64 is the first double past u64::MAX.
                if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                    Ok(Whole(v as u64))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a whole number between 0 and 2^64 - 1"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An optional whole number (`null` or absent: `None`) as any unsigned integer type.
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    match Option::<Whole>::deserialize(d)? {
        None => Ok(None),
        Some(Whole(v)) => T::try_from(v)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("{v} is too large"))),
    }
}

/// A required whole number as any unsigned integer type.
pub fn required<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Whole(v) = Whole::deserialize(d)?;
    T::try_from(v).map_err(|_| de::Error::custom(format!("{v} is too large")))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "super::option")]
        n: Option<u32>,
    }

    fn n(json: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<T>(json)
            .map(|t| t.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_either_spelling() {
        assert_eq!(n(r#"{"n": 7}"#), Ok(Some(7)));
        assert_eq!(n(r#"{"n": 7.0}"#), Ok(Some(7)));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert_eq!(n("{}"), Ok(None));
    }

    #[test]
    fn fractions_negatives_and_overflow_are_refused() {
        assert!(n(r#"{"n": 7.5}"#)
            .unwrap_err()
            .contains("not a whole number"));
        assert!(n(r#"{"n": -1}"#).unwrap_err().contains("negative"));
        assert!(n(r#"{"n": 4294967296}"#).unwrap_err().contains("too large"));
        assert!(n(r#"{"n": 1e300}"#)
            .unwrap_err()
            .contains("not a whole number"));
        assert!(n(r#"{"n": "7"}"#).unwrap_err().contains("whole number"));
    }
}
