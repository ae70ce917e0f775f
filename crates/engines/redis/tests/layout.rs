//! The layout as Redis holds it, read back with plain commands the way a person would with
//! redis-cli: a record is a hash, an index a sorted set of `value ‖ id` members in the
//! order of every other engine (integers beyond 2^53 included), a unique index a hash.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use stowage_core::{CollectionSpec, IndexSpec, IndexValue, Put, Query, Record, Store};
use support::FreshPrefix;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Incident {
    id: String,
    fingerprint: String,
    seq: i64,
    tags: Vec<String>,
}

impl Record for Incident {
    const COLLECTION: &'static str = "incidents";
    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::string("fingerprint", "/fingerprint").unique())
            .index(IndexSpec::integer("seq", "/seq"))
            .index(IndexSpec::string("tags", "/tags").multi())
    }
    fn id(&self) -> String {
        self.id.clone()
    }
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(support::server_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn member(v: IndexValue, id: &str) -> Vec<u8> {
    let mut m = Vec::new();
    v.encode_sortable(&mut m);
    m.extend_from_slice(id.as_bytes());
    m
}

#[tokio::test]
async fn a_record_is_a_hash_and_an_index_a_sorted_set() {
    let prefix = FreshPrefix::new();
    let store = Store::new(support::open(&prefix.0, &[]).await.unwrap())
        .namespace("app")
        .unwrap();
    let incidents = store.collection::<Incident>().await.unwrap();
    let big = (1i64 << 53) + 1;
    for (id, seq) in [("i-1", big + 1), ("i-2", big), ("i-3", -5)] {
        incidents
            .insert(&Incident {
                id: id.into(),
                fingerprint: format!("fp-{id}"),
                seq,
                tags: vec!["db".into(), "p0".into()],
            })
            .await
            .unwrap();
    }
    let mut conn = raw().await;
    let base = format!("{}:{{app}}:", prefix.0);

    // HGETALL of one record: the body exactly as sent, its version and times.
    let rec: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{base}rec:incidents:i-1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rec["body"],
        format!(
            r#"{{"id":"i-1","fingerprint":"fp-i-1","seq":{},"tags":["db","p0"]}}"#,
            big + 1
        )
    );
    assert_eq!(rec["version"], "1");
    assert_eq!(rec["type"], "json");
    assert_eq!(rec["created_at"], rec["updated_at"]);
    assert!(!rec.contains_key("expires_at"));

    // The integer index in value order, exactly, beyond what a double score could order.
    let seq: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(format!("{base}ix:incidents:seq"))
        .arg("-")
        .arg("+")
        .arg("BYLEX")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        seq,
        vec![
            member(IndexValue::Integer(-5), "i-3"),
            member(IndexValue::Integer(big), "i-2"),
            member(IndexValue::Integer(big + 1), "i-1"),
        ]
    );
    let page = incidents
        .query(&Query::new().gt("seq", big).order_by("seq"))
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|i| i.value.id.as_str()).collect();
    assert_eq!(ids, ["i-1"], "2^53 + 2 > 2^53 + 1, exactly");

    // A multi-valued index: one member per value; a unique index: value → id.
    let tags: u64 = redis::cmd("ZCARD")
        .arg(format!("{base}ix:incidents:tags"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(tags, 6);
    let mut fp = Vec::new();
    IndexValue::String("fp-i-2".into()).encode_sortable(&mut fp);
    let holder: String = redis::cmd("HGET")
        .arg(format!("{base}uq:incidents:fingerprint"))
        .arg(fp)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(holder, "i-2");

    // A TTL is the hash's own expiry, set by the same script as the write.
    incidents
        .put(
            "i-4",
            &Incident {
                id: "i-4".into(),
                fingerprint: "fp-i-4".into(),
                seq: 4,
                tags: vec![],
            },
            Put::insert().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{base}rec:incidents:i-4"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 55_000 && pttl <= 60_000, "PTTL {pttl}");
}
