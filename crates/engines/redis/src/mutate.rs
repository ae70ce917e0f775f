//! Mutations in the write script: which ones `mutate.lua` applies, the program it is sent,
//! and what it answers.
//!
//! The script applies a batch's mutations itself, atomically and without retries, when
//! each of them can be done exactly as Rust's [`MutateAction::apply`] does it with Lua's
//! numbers and no index values to compute:
//!
//! - operands of `add`, and of `max`/`min`, are integers of magnitude below 2^53 (a
//!   double's exact range; strings and floats compare or add in Rust);
//! - no mutated path is, or is inside or above, the path of one of the collection's
//!   indexes: the record's index entries then stay as they are (a record the mutation
//!   creates has none).
//!
//! Otherwise — and whenever the script meets something it leaves to Rust (a body not in
//! serde_json's compact form, a float or a wider integer at a mutated path, a body past
//! 64 KiB, the wrong type at a path, a record written before an index was built) — the
//! batch is applied by compare-and-set ([`stowage_core::backend::CompareAndSet`]): read,
//! apply in Rust, write where unchanged. Bounds and absent records are refused by the
//! script with the errors Rust gives.

use serde_json::{json, Value};
use stowage_core::backend::{MutateAction, Values, WriteAction, WriteOp};
use stowage_core::{Error, Mutation, Result, TtlChange};

/// A double's exact integers: |n| < 2^53.
const EXACT: i64 = 1 << 53;

/// Whether the script can apply every mutation among `ops` (see the module docs).
pub(crate) fn native(ops: &[WriteOp]) -> bool {
    ops.iter().all(|op| match &op.action {
        WriteAction::Mutate(m) => native_action(m),
        _ => true,
    })
}

fn native_action(m: &MutateAction) -> bool {
    m.mutations.iter().all(|x| native_one(m, x))
}

fn native_one(m: &MutateAction, x: &Mutation) -> bool {
    let exact = |n: &serde_json::Number| n.as_i64().is_some_and(|i| i.abs() < EXACT);
    let operands = match x {
        Mutation::Add {
            value, min, max, ..
        } => exact(value) && min.iter().chain(max).all(exact),
        Mutation::Max { value, .. } | Mutation::Min { value, .. } => {
            value.as_number().is_some_and(exact)
        }
        _ => true,
    };
    let path = tokens(x.path());
    operands
        && m.spec.indexes.iter().all(|ix| {
            let index = tokens(&ix.path);
            !(path.starts_with(&index) || index.starts_with(&path))
        })
}

/// A JSON pointer's tokens, unescaped (RFC 6901).
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A key as serde_json writes it between its quotes: how the script finds it in a body.
fn stored_key(token: &str) -> String {
    let quoted = Value::String(token.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// The script's program for `m`: per mutation `[op, path, [keys…], value, min, max,
/// keep_last]`, every value as JSON text ("" when absent).
pub(crate) fn program(m: &MutateAction) -> String {
    let text = |v: Option<String>| v.unwrap_or_default();
    let steps: Vec<Value> = m
        .mutations
        .iter()
        .map(|x| {
            let keys: Vec<String> = tokens(x.path()).iter().map(|t| stored_key(t)).collect();
            let (value, min, max, keep) = match x {
                Mutation::Add {
                    value, min, max, ..
                } => (
                    Some(value.to_string()),
                    min.as_ref().map(ToString::to_string),
                    max.as_ref().map(ToString::to_string),
                    None,
                ),
                Mutation::Max { value, .. }
                | Mutation::Min { value, .. }
                | Mutation::Set { value, .. } => (Some(value.to_string()), None, None, None),
                Mutation::Append {
                    value, keep_last, ..
                } => (
                    Some(value.to_string()),
                    None,
                    None,
                    keep_last.map(|k| k.to_string()),
                ),
                _ => (None, None, None, None),
            };
            json!([
                x.op_name(),
                x.path(),
                keys,
                text(value),
                text(min),
                text(max),
                text(keep)
            ])
        })
        .collect();
    Value::Array(steps).to_string()
}

/// The op's TTL change and its TTL in microseconds, as the script takes them.
pub(crate) fn ttl_args(m: &MutateAction) -> (&'static str, String) {
    let micros = |d: std::time::Duration| d.as_micros().to_string();
    match m.ttl {
        TtlChange::Set(d) => ("s", micros(d)),
        TtlChange::Remove => ("r", String::new()),
        _ => (
            "k",
            m.spec.default_ttl_duration().map_or(String::new(), micros),
        ),
    }
}

/// The values the script answered (a JSON array, one per path in the order first mutated),
/// paired with their paths.
pub(crate) fn values(m: &MutateAction, text: &str) -> Result<Values> {
    let found: Vec<Value> = serde_json::from_str(text).map_err(|e| {
        Error::internal(format!(
            "redis: the write script answered mutated values that are not JSON: {e}"
        ))
    })?;
    let mut paths: Vec<&str> = Vec::new();
    for x in m.mutations.iter() {
        if !paths.contains(&x.path()) {
            paths.push(x.path());
        }
    }
    if paths.len() != found.len() {
        return Err(Error::internal(format!(
            "redis: the write script answered {} mutated values for {} paths",
            found.len(),
            paths.len()
        )));
    }
    Ok(paths.into_iter().map(str::to_owned).zip(found).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::json;
    use stowage_core::backend::{Live, RecordMeta};
    use stowage_core::{Body, CollectionSpec, ErrorKind, Mutate, Timestamp};

    use super::*;

    #[test]
    fn keys_are_unescaped_then_written_as_serde_json_writes_them() {
        assert_eq!(tokens("/a~1b/c~0d/0"), ["a/b", "c~d", "0"]);
        assert_eq!(stored_key("say \"hi\"\n"), r#"say \"hi\"\n"#);
        assert_eq!(tokens("/"), [""]);
    }

    /// `mutate_body` of mutate.lua, run by the shared Redis: `ok` with the body and values,
    /// `bound` with the mutation, the bound and the current value, or `fallback`.
    const HARNESS: &str = r"
local new, values, bound, current = mutate_body(ARGV[1], cjson.decode(ARGV[2]))
if new == nil then return { 'fallback' } end
if new == false then return { 'bound', tostring(values), bound, current } end
return { 'ok', new, values }";

    fn redis() -> redis::Client {
        let (scheme, rest) = crate::testkit::shared_server();
        redis::Client::open(format!("{scheme}://{rest}")).expect("the shared Redis's URL")
    }

    fn action(m: &Mutate) -> MutateAction {
        MutateAction {
            mutations: m.mutations().into(),
            ttl: TtlChange::Keep,
            spec: Arc::new(CollectionSpec::new()),
            max_body_bytes: 1 << 20,
        }
    }

    /// Whether a value holds a float or an integer a double does not hold exactly: what the
    /// script leaves to Rust.
    fn inexact(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.as_i64().is_none_or(|i| i.abs() >= EXACT),
            Value::Array(items) => items.iter().any(inexact),
            Value::Object(map) => map.values().any(inexact),
            _ => false,
        }
    }

    /// Runs `m` over `body` in the script and in Rust; they must agree, and the script must
    /// apply it itself when `native` says it can. Returns what the script answered.
    fn compare(
        conn: &mut redis::Connection,
        script: &redis::Script,
        body: &str,
        m: &Mutate,
    ) -> String {
        let a = action(m);
        assert!(native_action(&a), "a case the script is not sent");
        let answer: Vec<String> = script
            .arg(body)
            .arg(program(&a))
            .invoke(conn)
            .expect("the harness runs");
        let meta = RecordMeta {
            version: 1,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            expires_at: None,
        };
        let stored = Body::json(body.as_bytes().to_vec());
        let rust = a.apply(
            "c",
            "r",
            Some(Live {
                body: &stored,
                meta,
            }),
        );
        let case = format!("{body} {:?} -> {answer:?} / {rust:?}", m.mutations());
        match answer[0].as_str() {
            "ok" => {
                let applied = rust.expect(&case);
                assert_eq!(applied.body.bytes.as_ref(), answer[1].as_bytes(), "{case}");
                assert_eq!(values(&a, &answer[2]).unwrap(), applied.values, "{case}");
            }
            "bound" => {
                let e = rust.expect_err(&case);
                assert_eq!(e.kind(), ErrorKind::Conflict, "{case}");
                let current: Value = serde_json::from_str(&answer[3]).unwrap();
                assert_eq!(e.current_value().map(|(_, v)| v), Some(&current), "{case}");
                let k: usize = answer[1].parse().unwrap();
                let refusal = a.bound_refusal("c", "r", k, current, answer[2] == "max");
                assert_eq!(refusal.to_string(), e.to_string(), "{case}");
            }
            _ => {
                let plain: Value = serde_json::from_str(body).unwrap();
                let operands = m.mutations().iter().any(|x| match x {
                    Mutation::Set { value, .. } | Mutation::Append { value, .. } => inexact(value),
                    _ => false,
                });
                let bound = rust
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::Conflict);
                let canonical = serde_json::to_string(&plain).unwrap() == body;
                let results = rust
                    .as_ref()
                    .is_ok_and(|r| r.values.iter().any(|(_, v)| inexact(v)));
                assert!(
                    !canonical
                        || inexact(&plain)
                        || operands
                        || results
                        || (rust.is_err() && !bound),
                    "the script left a case it applies: {case}"
                );
            }
        }
        answer[0].clone()
    }

    fn script() -> redis::Script {
        redis::Script::new(&format!(
            "{}{}{HARNESS}",
            include_str!("prelude.lua"),
            include_str!("mutate.lua")
        ))
    }

    #[test]
    fn the_script_keeps_what_rust_keeps_on_bodies_rust_wrote() {
        let mut conn = redis().get_connection().expect("the shared Redis");
        let script = script();
        let cases: &[(&str, Mutate)] = &[
            (
                r#"{"b":1,"n":2,"a":3}"#,
                Mutate::new().add("/n", 5).remove("/b").set("/b", "x"),
            ),
            (r#"{"n":9}"#, Mutate::new().add("/n", 1).at_most(10)),
            (r#"{"n":-3}"#, Mutate::new().add("/n", -1).at_least(-4)),
            (
                r#"{"t":{"x":[1,2]}}"#,
                Mutate::new().append_keep_last("/t/x", json!({"k": [true, null]}), 2),
            ),
            (
                r#"{"a\"b":{"c/d":1}}"#,
                Mutate::new().add("/a\"b/c~1d", 1).max("/m~0", 4),
            ),
            (
                r#"{"x":[5,6,7]}"#,
                Mutate::new()
                    .remove("/x/1")
                    .min("/x/0", 2)
                    .set("/x/1", "\u{1}é"),
            ),
            (
                r#"{"f":1.5,"g":0.0001,"h":-0.0,"i":123456789012345.0}"#,
                Mutate::new().add("/n", 1),
            ),
            (
                r#"{"s":"\u001f\t"}"#,
                Mutate::new().remove("/s").remove("/missing/deeper"),
            ),
            ("{}", Mutate::new().add("/a/b/c", 1).append("/a/l", 2)),
        ];
        for (body, m) in cases {
            assert_eq!(compare(&mut conn, &script, body, m), "ok", "{body}");
        }
        let refused = compare(
            &mut conn,
            &script,
            r#"{"n":10}"#,
            &Mutate::new().add("/n", 1).at_most(10),
        );
        assert_eq!(refused, "bound");
        // Bodies in another form than serde_json's, and values past what a double holds:
        // the script leaves them to Rust, which answers them.
        let leaves: &[(&str, Mutate)] = &[
            (r#"{"n": 1}"#, Mutate::new().add("/n", 1)),
            (r#"{"n":1E5}"#, Mutate::new().add("/m", 1)),
            (r#"{"n":1.50}"#, Mutate::new().add("/m", 1)),
            (r#"{"n":-0}"#, Mutate::new().add("/m", 1)),
            (r#"{"n":1e-7}"#, Mutate::new().add("/m", 1)),
            (r#"{"n":0.1234567890123456}"#, Mutate::new().add("/m", 1)),
            (r#"{"s":"\/"}"#, Mutate::new().add("/m", 1)),
            (r#"{"s":"\u0041"}"#, Mutate::new().add("/m", 1)),
            (r#"{"s":"\u000a"}"#, Mutate::new().add("/m", 1)),
            (r#"{"n":1,"n":2}"#, Mutate::new().add("/m", 1)),
            (r#"{"n":9007199254740991}"#, Mutate::new().add("/n", 1)),
            (r#"{"n":1.5}"#, Mutate::new().add("/n", 1)),
            (r#"{"n":"x"}"#, Mutate::new().add("/n", 1)),
            (r#"{"x":[1]}"#, Mutate::new().add("/x/01", 1)),
            ("[1]", Mutate::new().add("/0", 1)),
            (
                r#"{"a":[0.0]}"#,
                Mutate::new().append("/a", -1_000_000_000_000_000_000_i64),
            ),
        ];
        for (body, m) in leaves {
            assert_eq!(compare(&mut conn, &script, body, m), "fallback", "{body}");
        }
    }

    fn keys() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "n", "a/b", "q\"t", "ü", "\u{1}", "0"])
            .prop_map(str::to_owned)
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => (-20_i64..20).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            1 => (-999_i32..999).prop_map(|n| Value::from(f64::from(n) / 8.0)),
            2 => prop::sample::select(vec!["x", "a\"b", "\n", "\u{7}", "é", "/", ""]).prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => Just(Value::Null),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((keys(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![3 => keys(), 1 => (0_u8..3).prop_map(|i| i.to_string())],
            1..3,
        )
        .prop_map(|ks| {
            let escaped: Vec<String> = ks
                .iter()
                .map(|k| k.replace('~', "~0").replace('/', "~1"))
                .collect();
            format!("/{}", escaped.join("/"))
        })
    }

    fn mutate() -> impl Strategy<Value = Mutate> {
        let one = (
            0_u8..6,
            path(),
            -5_i64..5,
            value(),
            prop::option::of(-5_i64..15),
        );
        prop::collection::vec(one, 0..4).prop_map(|steps| {
            steps
                .into_iter()
                .fold(Mutate::new(), |m, (kind, p, n, v, bound)| match kind {
                    0 => match bound {
                        Some(b) if n < 0 => m.add(&p, n).at_least(b - 10),
                        Some(b) => m.add(&p, n).at_most(b),
                        None => m.add(&p, n),
                    },
                    1 => m.max(&p, n),
                    2 => m.min(&p, n),
                    3 => m.set(&p, v),
                    4 => m.remove(&p),
                    _ => match bound {
                        Some(b) => m.append_keep_last(&p, v, b.unsigned_abs() as usize % 3),
                        None => m.append(&p, v),
                    },
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn the_script_agrees_with_rust(
            body in prop::collection::vec((keys(), value()), 0..5),
            m in mutate(),
        ) {
            let body = serde_json::to_string(&Value::Object(body.into_iter().collect())).unwrap();
            let mut conn = redis().get_connection().expect("the shared Redis");
            if m.validate().is_ok() {
                compare(&mut conn, &script(), &body, &m);
            }
        }
    }
}
