//! Large values, unicode ids, stats and health.

use std::sync::Arc;

use serde_json::json;

use super::{fill, Ctx, Fixture, Item};
use crate::Put;

/// An 8 MiB body round-trips byte for byte.
pub async fn large_value_8_mib(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let big = cx.plain("big").await;
    let text: String = (0..8 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body = json!({ "blob": text });
    let r = big.put("large", &body, Put::insert()).await;
    if cx.store.capabilities().max_body_bytes < (8 << 20) + 16 {
        crate::testkit::expect_err(r, crate::ErrorKind::InvalidInput);
        return;
    }
    r.unwrap();
    let got = big.get("large").await.unwrap().unwrap();
    assert_eq!(got.value, body);
}

/// Ids in any script, with any punctuation, up to 512 bytes, are stored and ordered
/// byte-wise.
pub async fn unicode_ids(f: Arc<dyn Fixture>) {
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
    let page = items.query(&crate::Query::new()).await.unwrap();
    let got: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut want: Vec<&str> = ids.iter().copied().chain([long.as_str()]).collect();
    want.sort();
    assert_eq!(got, want, "id order is byte order");
}

/// stats counts records and bytes per collection; health answers with a latency.
pub async fn stats_and_health(f: Arc<dyn Fixture>) {
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
pub async fn json_key_order_is_kept(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let text = r#"{"zeta":1,"alpha":{"y":2,"b":[{"k2":1,"k1":2}]},"name":"x","n":3}"#;
    let body: serde_json::Value = serde_json::from_str(text).unwrap();
    let items = cx
        .store
        .collection_with_spec::<serde_json::Value>(
            "ordered",
            crate::CollectionSpec::new().index(crate::IndexSpec::string("name", "/name")),
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
