//! Large values, unicode ids, stats and health.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;

use serde_json::json;

use super::{fill, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::Put;

/// An 8 MiB body round-trips byte for byte.
async fn large_value_8_mib(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let big = cx.plain("big").await;
    let text: String = (0..8 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body = json!({ "blob": text });
    let r = big.put("large", &body, Put::insert()).await;
    if cx.store.capabilities().max_body_bytes < (8 << 20) + 16 {
        crate::expect_err(r, stowage_core::ErrorKind::InvalidInput);
        return;
    }
    r.unwrap();
    let got = big.get("large").await.unwrap().unwrap();
    assert_eq!(got.value, body);
}

/// Ids in any script, with any punctuation, up to 512 bytes, are stored and ordered
/// byte-wise.
async fn unicode_ids(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let ids = [
        "ascii",
        "naïve café",
        "日本語のキー",
        "emoji 🦀🚀",
        "עברית",
        "a/b\\c?d#e%f&g=h",
        "tab\tnew\nline",
        "'quote\"",
        "key:with:colons{tag}",
    ];
    for (i, id) in ids.iter().enumerate() {
        items.insert(&Item::new(*id, i as i64)).await.unwrap();
    }
    let long = "é".repeat(256); // 512 bytes
    items.insert(&Item::new(long.clone(), 99)).await.unwrap();
    for id in ids.iter().chain([&long.as_str()]) {
        assert_eq!(items.get(id).await.unwrap().unwrap().id, *id);
    }
    let page = items.query(&stowage_core::Query::new()).await.unwrap();
    let got: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut want: Vec<&str> = ids.iter().copied().chain([long.as_str()]).collect();
    want.sort_unstable();
    assert_eq!(got, want, "id order is byte order");
}

/// stats counts records and bytes per collection; health answers with a latency.
async fn stats_and_health(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 50).await;
    cx.plain("empty").await;
    let stats = cx.store.stats().await.unwrap();
    let s = stats
        .iter()
        .find(|s| s.collection == "items")
        .expect("items stats");
    assert_eq!(s.records, 50);
    let body = serde_json::to_vec(&Item::new("k000000", 0)).unwrap().len() as u64;
    assert!(
        s.bytes >= 50 * body,
        "bytes {} cover the bodies ({} each)",
        s.bytes,
        body
    );
    let e = stats
        .iter()
        .find(|s| s.collection == "empty")
        .expect("empty stats");
    assert_eq!(e.records, 0);
    let h = cx.store.health().await.unwrap();
    assert_eq!(h.backend, cx.store.backend_name());
    assert!(h.latency < std::time::Duration::from_secs(5));
}

/// A JSON body comes back with its keys in the order they were written, not sorted, in an
/// indexed collection and a plain one, decoded and raw.
async fn json_key_order_is_kept(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let text = r#"{"zeta":1,"alpha":{"y":2,"b":[{"k2":1,"k1":2}]},"name":"x","n":3}"#;
    let body: serde_json::Value = serde_json::from_str(text).unwrap();
    let items = cx
        .store
        .collection_with_spec::<serde_json::Value>(
            "ordered",
            stowage_core::CollectionSpec::new()
                .index(stowage_core::IndexSpec::string("name", "/name")),
        )
        .await
        .unwrap();
    let plain = cx.plain("plain").await;
    for coll in [&items, &plain] {
        coll.put("k", &body, Put::upsert()).await.unwrap();
        let raw = coll.get_raw("k").await.unwrap().unwrap().value;
        assert_eq!(std::str::from_utf8(&raw).unwrap(), text);
        let decoded = coll.get("k").await.unwrap().unwrap().value;
        assert_eq!(serde_json::to_string(&decoded).unwrap(), text);
    }
}

/// The strings [`nul_in_strings`] stores: U+0000 at the start, middle and end, alone and
/// twice, beside U+0001 (the next code point, which an engine escaping NUL must keep apart)
/// and plain neighbours that sort around them.
const NUL_NAMES: [&str; 12] = [
    "", "\0", "\0\0", "\0a", "\u{1}", "a", "a\0", "a\0\0", "a\0b", "a\u{1}", "ab", "b\0",
];

/// Strings holding U+0000 (valid JSON: `"a\u0000b"`) are values like any other: written
/// in indexed fields (single, multi-valued, unique) and plain ones, read back, matched by
/// eq, in, range and prefix, ordered by bytes and paged by cursor, on every engine.
async fn nul_in_strings(f: Arc<dyn Fixture>) {
    use std::collections::BTreeSet;
    use stowage_core::{CollectionSpec, IndexSpec, Query};

    let cx = Ctx::new(f).await;
    let unique = cx.store.capabilities().unique_indexes;
    let mut spec = CollectionSpec::new()
        .index(IndexSpec::string("name", "/name"))
        .index(IndexSpec::string("tags", "/tags").multi());
    if unique {
        spec = spec
            .index(IndexSpec::string("email", "/email").unique())
            .index(IndexSpec::string("codes", "/codes").multi().unique());
    }
    let coll = cx
        .store
        .collection_with_spec::<serde_json::Value>("nul", spec)
        .await
        .unwrap();
    let body = |i: usize, name: &str| {
        json!({
            "name": name,
            "tags": [name, format!("t\0{}", i % 2)],
            "email": name,
            "codes": [format!("{name}\0c"), format!("\0{i}")],
            "note": format!("plain\0{name}\0"),
        })
    };
    // One record alone, the rest in a batch where there are batches: both write paths
    // carry the values.
    coll.put("r00", &body(0, NUL_NAMES[0]), Put::insert())
        .await
        .unwrap();
    let step = super::batch_step(&cx.store, NUL_NAMES.len());
    let rest: Vec<(usize, &str)> = NUL_NAMES.iter().copied().enumerate().skip(1).collect();
    for chunk in rest.chunks(step) {
        let mut batch = cx.store.batch();
        for (i, name) in chunk {
            batch.put(&coll, &format!("r{i:02}"), &body(*i, name), Put::insert());
        }
        batch.commit().await.unwrap();
    }
    let id_of = |name: &str| {
        let i = NUL_NAMES.iter().position(|n| *n == name).unwrap();
        format!("r{i:02}")
    };
    for (i, name) in NUL_NAMES.iter().enumerate() {
        let got = coll.get(&id_of(name)).await.unwrap().unwrap();
        assert_eq!(got.value, body(i, name), "{name:?} reads back as written");
    }

    let ids = |q: Query| {
        let coll = coll.clone();
        async move {
            let page = coll.query(&q.limit(100)).await.unwrap();
            page.items.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    let by_id = |names: Vec<&str>| {
        let mut ids: Vec<String> = names.into_iter().map(id_of).collect();
        ids.sort();
        ids
    };
    let matching = |test: &dyn Fn(&str) -> bool| {
        by_id(NUL_NAMES.iter().copied().filter(|n| test(n)).collect())
    };
    for name in NUL_NAMES {
        assert_eq!(
            ids(Query::new().eq("name", name)).await,
            by_id(vec![name]),
            "eq {name:?}"
        );
        assert_eq!(
            ids(Query::new().eq("tags", name)).await,
            by_id(vec![name]),
            "tags eq {name:?}"
        );
        for prefix in [name.to_owned(), format!("{name}\0")] {
            let want = matching(&|n| n.starts_with(prefix.as_str()));
            assert_eq!(
                ids(Query::new().prefix("name", prefix.clone())).await,
                want,
                "prefix {prefix:?}"
            );
            assert_eq!(
                ids(Query::new().prefix("tags", prefix.clone())).await,
                want,
                "tags prefix {prefix:?}"
            );
        }
        let want = matching(&|n| n >= name && n < "a\0b");
        assert_eq!(
            ids(Query::new().gte("name", name).lt("name", "a\0b")).await,
            want,
            "range from {name:?}"
        );
        // Below "t": the tags every record has ("t\0…") stay out of the range.
        let want = matching(&|n| n > name);
        assert_eq!(
            ids(Query::new().gt("tags", name).lt("tags", "t")).await,
            want,
            "tags above {name:?}"
        );
    }
    let some = ["\0", "a\0", "zz", "a\u{1}"];
    assert_eq!(
        ids(Query::new().any_of("name", some)).await,
        by_id(vec!["\0", "a\0", "a\u{1}"])
    );
    assert_eq!(
        ids(Query::new().eq("tags", "t\u{0}1")).await.len(),
        NUL_NAMES.len() / 2
    );

    // Order by bytes both ways, and pages of two that cover everything once.
    let mut sorted: Vec<&str> = NUL_NAMES.to_vec();
    sorted.sort_unstable();
    let in_order: Vec<String> = sorted.iter().map(|n| id_of(n)).collect();
    assert_eq!(
        ids(Query::new().order_by("name")).await,
        in_order,
        "ascending"
    );
    let mut reversed = in_order.clone();
    reversed.reverse();
    assert_eq!(
        ids(Query::new().order_by("name").descending()).await,
        reversed,
        "descending"
    );
    let paged = super::query::collect_pages(&coll, Query::new().order_by("name").limit(2)).await;
    assert_eq!(paged, in_order, "cursor pages by a NUL-holding value");

    if unique {
        // "a" and "a\0" are two values: neither is taken by the other, each by itself.
        for name in ["a\0", "\0", "a\0\0"] {
            let e = coll
                .put("dup", &json!({ "email": name }), Put::insert())
                .await;
            crate::expect_err(e, stowage_core::ErrorKind::AlreadyExists);
            let e = coll
                .put(
                    "dup",
                    &json!({ "codes": [format!("{name}\0c")] }),
                    Put::insert(),
                )
                .await;
            crate::expect_err(e, stowage_core::ErrorKind::AlreadyExists);
        }
        coll.put(
            "free",
            &json!({ "email": "\0\0\0", "codes": ["a\0\0\0\0c"] }),
            Put::insert(),
        )
        .await
        .unwrap();
        let emails: BTreeSet<String> = ids(Query::new().prefix("email", "\0\0"))
            .await
            .into_iter()
            .collect();
        assert_eq!(emails, ["free".to_owned(), id_of("\0\0")].into());
    }
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    large_value_8_mib,
    unicode_ids,
    stats_and_health,
    json_key_order_is_kept,
    nul_in_strings
];
