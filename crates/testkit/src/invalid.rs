//! Bad input: a clear InvalidInput, and nothing written.

use std::sync::Arc;

use serde_json::json;

use super::{expect_err, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query};

/// An empty id is refused on every entry point.
async fn empty_id(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let e = expect_err(
        items.insert(&Item::new("", 1)).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("empty"), "{e}");
    expect_err(items.get("").await, ErrorKind::InvalidInput);
    expect_err(items.get_many(&["a", ""]).await, ErrorKind::InvalidInput);
    expect_err(items.delete("").await, ErrorKind::InvalidInput);
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 0);
}

/// A 513-byte id is refused; 512 bytes is fine.
async fn id_over_512_bytes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let e = expect_err(
        items.insert(&Item::new("x".repeat(513), 1)).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("513 bytes"), "{e}");
    // 511 ASCII bytes plus a two-byte character: 513 bytes in 512 characters.
    let tricky = format!("{}é", "x".repeat(511));
    expect_err(
        items.insert(&Item::new(tricky, 1)).await,
        ErrorKind::InvalidInput,
    );
    items.insert(&Item::new("x".repeat(512), 1)).await.unwrap();
    expect_err(
        items.insert(&Item::new("a\0b", 1)).await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 1);
}

/// Queries, counts and orders on an undeclared index are refused, naming it.
async fn undeclared_index(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let e = expect_err(
        items.query(&Query::new().eq("colour", "red")).await,
        ErrorKind::InvalidInput,
    );
    assert!(
        e.message().contains("colour") && e.message().contains("not an index"),
        "{e}"
    );
    expect_err(
        items.count(&Filter::new().eq("colour", "red")).await,
        ErrorKind::InvalidInput,
    );
    let e = expect_err(
        items.query(&Query::new().order_by("colour")).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("colour"), "{e}");
}

/// A value of the wrong type for an index is refused on write and in queries.
async fn wrong_value_type(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let spec = CollectionSpec::new()
        .index(IndexSpec::integer("n", "/n"))
        .index(IndexSpec::timestamp("at", "/at"));
    let c = cx
        .store
        .collection_with_spec::<serde_json::Value>("typed", spec)
        .await
        .unwrap();
    let e = expect_err(
        c.put("a", &json!({"n": "five"}), Put::insert()).await,
        ErrorKind::InvalidInput,
    );
    assert!(
        e.message().contains("\"n\"")
            && e.message().contains("expected an integer, found a string"),
        "{e}"
    );
    let e = expect_err(
        c.put("a", &json!({"n": 1.5}), Put::insert()).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("integer"), "{e}");
    let e = expect_err(
        c.put("a", &json!({"at": "last tuesday"}), Put::insert())
            .await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("RFC 3339"), "{e}");
    assert!(c.get("a").await.unwrap().is_none(), "nothing was written");
    let e = expect_err(
        c.query(&Query::new().gt("n", "x")).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("gt on index \"n\""), "{e}");
    expect_err(
        c.query(&Query::new().eq("at", 5)).await,
        ErrorKind::InvalidInput,
    );
    expect_err(
        c.query(&Query::new().prefix("n", "1")).await,
        ErrorKind::InvalidInput,
    );
}

/// A spec with a bad JSON pointer, a duplicate index or a bad name is refused, and no
/// collection is created.
async fn bad_spec(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let bad = [
        (
            CollectionSpec::new().index(IndexSpec::string("a", "severity")),
            "JSON pointer",
        ),
        (
            CollectionSpec::new().index(IndexSpec::string("a", "/x~3")),
            "JSON pointer",
        ),
        (
            CollectionSpec::new()
                .index(IndexSpec::string("a", "/a"))
                .index(IndexSpec::string("a", "/b")),
            "twice",
        ),
        (
            CollectionSpec::new().index(IndexSpec::string("has space", "/a")),
            "not valid",
        ),
        (
            CollectionSpec::new().index(IndexSpec::string("id", "/id")),
            "reserved",
        ),
    ];
    for (spec, why) in bad {
        // A name declared twice is taken, as an id is: AlreadyExists.
        let kind = if why == "twice" {
            ErrorKind::AlreadyExists
        } else {
            ErrorKind::InvalidInput
        };
        let e = expect_err(
            cx.store
                .collection_with_spec::<serde_json::Value>("c", spec)
                .await,
            kind,
        );
        assert!(e.message().contains(why), "{why}: {e}");
    }
    let e = CollectionSpec::from_json(
        r#"{"indexes":[{"name":"a","path":"/a","type":"string","uniq":true}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("uniq"), "{e}");
    assert!(cx.store.collections().await.unwrap().is_empty());
}

/// Bad namespace and collection names are refused with the rule.
async fn bad_names(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    for bad in ["", "has space", "a/b", "9lives", "__system", "ünï"] {
        let e = expect_err(cx.store.namespace(bad), ErrorKind::InvalidInput);
        assert!(e.message().contains("namespace"), "{e}");
        let e = expect_err(
            cx.store
                .collection_with_spec::<serde_json::Value>(bad, CollectionSpec::new())
                .await,
            ErrorKind::InvalidInput,
        );
        assert!(e.message().contains("collection"), "{e}");
    }
    expect_err(cx.store.namespace(&"n".repeat(64)), ErrorKind::InvalidInput);
    assert!(cx.store.namespace(&"n".repeat(63)).is_ok());
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    empty_id,
    id_over_512_bytes,
    undeclared_index,
    wrong_value_type,
    bad_spec,
    bad_names
];
