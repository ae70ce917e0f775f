//! Index types, unique and multi-valued indexes.

use std::sync::Arc;

use serde_json::json;

use super::{expect_err, Account, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query};

fn ids<T>(page: &stowage_core::Page<T>) -> Vec<&str> {
    page.items.iter().map(|r| r.id.as_str()).collect()
}

/// Equality works on string, integer, float, bool and timestamp indexes.
async fn every_index_type(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    for i in 0..6 {
        items.insert(&Item::new(format!("k{i}"), i)).await.unwrap();
    }
    let probe = Item::new("x", 3);
    let cases = [
        ("name", json!(probe.name)),
        ("n", json!(3)),
        ("score", json!(probe.score)),
        ("at", json!(probe.at)),
    ];
    for (index, value) in cases {
        let page = items
            .query(&Query::new().eq(index, value.clone()))
            .await
            .unwrap();
        assert_eq!(ids(&page), vec!["k3"], "eq on {index} = {value}");
    }
    // The same instant written with another offset is the same timestamp.
    let page = items
        .query(&Query::new().eq("at", "2023-11-15T01:13:20+02:00"))
        .await
        .unwrap();
    assert_eq!(ids(&page), vec!["k1"]);
    let active = items.query(&Query::new().eq("active", true)).await.unwrap();
    assert_eq!(ids(&active), vec!["k0", "k2", "k4"]);
    // An integer index accepts an integral float; a float index accepts an integer.
    assert_eq!(items.count(&Filter::new().eq("n", 2.0)).await.unwrap(), 1);
    assert_eq!(
        items.count(&Filter::new().eq("score", -10)).await.unwrap(),
        1
    );
}

/// A second record with the same unique value fails with AlreadyExists naming the index.
async fn unique_violation_names_index(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let Ok(accounts) = cx.accounts().await else {
        assert!(!cx.store.capabilities().unique_indexes);
        return;
    };
    accounts
        .insert(&Account::new("a", "x@example.com"))
        .await
        .unwrap();
    let e = expect_err(
        accounts.insert(&Account::new("b", "x@example.com")).await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(e.index(), Some("email"));
    assert_eq!(
        e.holder(),
        Some("a"),
        "the error names the record holding the value"
    );
    assert!(e.message().contains("email"), "{e}");
    assert!(accounts.get("b").await.unwrap().is_none());
    // Rewriting the holder with its own value is fine.
    accounts
        .upsert(&Account::new("a", "x@example.com"))
        .await
        .unwrap();
    let e = expect_err(
        accounts.upsert(&Account::new("b", "x@example.com")).await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(e.index(), Some("email"));
}

/// Changing or deleting the holder frees its unique value.
async fn unique_value_freed_by_update_and_delete(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let Ok(accounts) = cx.accounts().await else {
        return;
    };
    accounts.insert(&Account::new("a", "one@x")).await.unwrap();
    accounts
        .update(&Account::new("a", "two@x"), 1)
        .await
        .unwrap();
    accounts.insert(&Account::new("b", "one@x")).await.unwrap();
    accounts.delete("a").await.unwrap();
    accounts.insert(&Account::new("c", "two@x")).await.unwrap();
    let page = accounts
        .query(&Query::new().eq("email", "two@x"))
        .await
        .unwrap();
    assert_eq!(ids(&page), vec!["c"]);
}

/// A multi-valued index matches any element and returns a record once.
async fn multi_valued_index(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let mut a = Item::new("a", 1);
    a.tags = vec!["red".into(), "blue".into(), "red".into()];
    let mut b = Item::new("b", 2);
    b.tags = vec!["blue".into()];
    let mut c = Item::new("c", 3);
    c.tags = vec![];
    for it in [&a, &b, &c] {
        items.insert(it).await.unwrap();
    }
    let blue = items.query(&Query::new().eq("tags", "blue")).await.unwrap();
    assert_eq!(ids(&blue), vec!["a", "b"]);
    let any = items
        .query(&Query::new().any_of("tags", ["red", "blue"]))
        .await
        .unwrap();
    assert_eq!(
        ids(&any),
        vec!["a", "b"],
        "a record matching two values comes once"
    );
    assert_eq!(
        items
            .count(&Filter::new().any_of("tags", ["red", "blue"]))
            .await
            .unwrap(),
        2
    );
    let both = items
        .query(&Query::new().eq("tags", "red").prefix("tags", "bl"))
        .await
        .unwrap();
    assert_eq!(ids(&both), vec!["a"]);
    let e = expect_err(
        items.query(&Query::new().order_by("tags")).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("multi-valued"), "{e}");
    // A multi index needs an array.
    let spec = CollectionSpec::new().index(IndexSpec::string("tags", "/tags").multi());
    let c = cx
        .store
        .collection_with_spec::<serde_json::Value>("tagged", spec)
        .await
        .unwrap();
    let e = expect_err(
        c.put("d", &json!({"tags": "red"}), Put::insert()).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("must be an array"), "{e}");
    assert!(c.get("d").await.unwrap().is_none());
}

/// A missing or null field leaves the record out of that index only.
async fn missing_or_null_fields_are_not_indexed(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let spec = CollectionSpec::new()
        .index(IndexSpec::string("owner", "/owner/email"))
        .index(IndexSpec::integer("n", "/n"));
    let c = cx
        .store
        .collection_with_spec::<serde_json::Value>("docs", spec)
        .await
        .unwrap();
    c.put(
        "full",
        &json!({"owner": {"email": "a@x"}, "n": 1}),
        Put::insert(),
    )
    .await
    .unwrap();
    c.put(
        "null",
        &json!({"owner": {"email": null}, "n": 1}),
        Put::insert(),
    )
    .await
    .unwrap();
    c.put("none", &json!({"n": 1}), Put::insert())
        .await
        .unwrap();
    c.put("scalar", &json!({"owner": 5, "n": 2}), Put::insert())
        .await
        .unwrap();
    let by_owner = c.query(&Query::new().order_by("owner")).await.unwrap();
    assert_eq!(ids(&by_owner), vec!["full"]);
    assert_eq!(
        c.count(&stowage_core::Filter::new().eq("n", 1))
            .await
            .unwrap(),
        3
    );
    assert_eq!(c.count(&stowage_core::Filter::new()).await.unwrap(), 4);
}

/// Rewriting a record moves its index entries: old values stop matching.
async fn update_moves_index_entries(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    let mut moved = Item::new("a", 7);
    moved.tags = vec!["new".into()];
    items.update(&moved, 1).await.unwrap();
    assert_eq!(items.count(&Filter::new().eq("n", 1)).await.unwrap(), 0);
    assert_eq!(items.count(&Filter::new().eq("n", 7)).await.unwrap(), 1);
    assert_eq!(
        items.count(&Filter::new().eq("tags", "t1")).await.unwrap(),
        0
    );
    assert_eq!(
        items.count(&Filter::new().eq("tags", "new")).await.unwrap(),
        1
    );
    moved.at = None;
    items.upsert(&moved).await.unwrap();
    assert!(items
        .query(&Query::new().order_by("at"))
        .await
        .unwrap()
        .items
        .is_empty());
    items.delete("a").await.unwrap();
    assert_eq!(items.count(&Filter::new().eq("n", 7)).await.unwrap(), 0);
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    every_index_type,
    unique_violation_names_index,
    unique_value_freed_by_update_and_delete,
    multi_valued_index,
    missing_or_null_fields_are_not_indexed,
    update_moves_index_entries
];
