//! The catalog: specs stored in the backend, spec changes, collections and namespaces.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{expect_err, fill, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query, Record};

fn base_spec() -> CollectionSpec {
    CollectionSpec::new().index(IndexSpec::string("kind", "/kind"))
}

async fn docs(
    cx: &Ctx,
    spec: CollectionSpec,
) -> stowage_core::Result<stowage_core::Collection<Value>> {
    cx.store.collection_with_spec::<Value>("docs", spec).await
}

/// A reopened store knows its collections, their specs and their data.
async fn spec_survives_reopen(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 10).await;
    let ttl_spec = if cx.store.capabilities().ttl {
        base_spec().default_ttl(Duration::from_secs(3600))
    } else {
        base_spec()
    };
    docs(&cx, ttl_spec.clone()).await.unwrap();
    drop(items);
    let cx = cx.reopen().await;
    let listed = cx.store.collections().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["docs", "items"]);
    assert_eq!(listed[1].1, Item::spec());
    let docs = cx.store.existing_collection::<Value>("docs").await.unwrap();
    assert_eq!(docs.spec(), ttl_spec);
    let items = cx.store.existing_collection::<Item>("items").await.unwrap();
    let page = items.query(&Query::new().eq("n", 3)).await.unwrap();
    assert_eq!(page.items.len(), 1);
}

/// Adding an index to a collection with records builds it from all of them.
async fn added_index_sees_existing_records(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let c = docs(&cx, base_spec()).await.unwrap();
    for i in 0..600 {
        let body = if i % 10 == 0 {
            json!({"kind": "k"})
        } else {
            json!({"kind": "k", "level": i % 7})
        };
        c.put(&format!("d{i:04}"), &body, Put::insert())
            .await
            .unwrap();
    }
    let wider = base_spec().index(IndexSpec::integer("level", "/level"));
    let c2 = docs(&cx, wider.clone()).await.unwrap();
    assert_eq!(c2.spec(), wider);
    let want = (0..600).filter(|i| i % 10 != 0 && i % 7 == 3).count() as u64;
    assert_eq!(c2.count(&Filter::new().eq("level", 3)).await.unwrap(), want);
    let ordered = c2.query(&Query::new().order_by("level")).await.unwrap();
    assert_eq!(
        ordered.items.len(),
        540,
        "records without the field are not in the index"
    );
    // The old handle sees the new spec too, and new writes maintain the new index.
    c.put("new", &json!({"kind": "k", "level": 3}), Put::insert())
        .await
        .unwrap();
    assert_eq!(
        c.count(&Filter::new().eq("level", 3)).await.unwrap(),
        want + 1
    );
    drop((c, c2));
    let cx = cx.reopen().await;
    let c3 = cx.store.existing_collection::<Value>("docs").await.unwrap();
    assert_eq!(
        c3.count(&Filter::new().eq("level", 3)).await.unwrap(),
        want + 1
    );
}

/// A dropped index is gone from the spec and from queries.
async fn dropped_index_cannot_be_queried(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let both = base_spec().index(IndexSpec::integer("level", "/level"));
    let c = docs(&cx, both).await.unwrap();
    c.put("a", &json!({"kind": "x", "level": 1}), Put::insert())
        .await
        .unwrap();
    let c = docs(&cx, base_spec()).await.unwrap();
    let e = expect_err(
        c.query(&Query::new().eq("level", 1)).await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("not an index"), "{e}");
    assert_eq!(c.count(&Filter::new().eq("kind", "x")).await.unwrap(), 1);
    // Adding it back rebuilds it from the records.
    let c = docs(
        &cx,
        base_spec().index(IndexSpec::integer("level", "/level")),
    )
    .await
    .unwrap();
    assert_eq!(c.count(&Filter::new().eq("level", 1)).await.unwrap(), 1);
}

/// Changing an index's type is refused with a reason and changes nothing, nor does an
/// added index whose values have the wrong type in a stored record.
async fn incompatible_change_is_refused(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let c = docs(&cx, base_spec()).await.unwrap();
    c.put("a", &json!({"kind": "x", "level": "high"}), Put::insert())
        .await
        .unwrap();
    let retyped = CollectionSpec::new().index(IndexSpec::integer("kind", "/kind"));
    // The name is taken by an index defined otherwise.
    let e = expect_err(docs(&cx, retyped).await, ErrorKind::AlreadyExists);
    assert!(
        e.message().contains("kind")
            && e.message().contains("string")
            && e.message().contains("integer"),
        "{e}"
    );
    let e = expect_err(
        docs(
            &cx,
            base_spec().index(IndexSpec::integer("level", "/level")),
        )
        .await,
        ErrorKind::InvalidInput,
    );
    assert!(
        e.message().contains("level") && e.message().contains("\"a\""),
        "names index and record: {e}"
    );
    let listed = cx.store.collections().await.unwrap();
    assert_eq!(listed, vec![("docs".to_owned(), base_spec())]);
    drop(c);
    let fresh = cx.reopen().await;
    let c = fresh
        .store
        .existing_collection::<Value>("docs")
        .await
        .unwrap();
    assert_eq!(c.spec(), base_spec());
    assert_eq!(c.count(&Filter::new().eq("kind", "x")).await.unwrap(), 1);
}

/// A unique index over records that already share a value is refused.
async fn unique_index_over_duplicates_is_refused(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let c = docs(&cx, base_spec()).await.unwrap();
    c.put("a", &json!({"kind": "x", "email": "same@x"}), Put::insert())
        .await
        .unwrap();
    c.put("b", &json!({"kind": "x", "email": "same@x"}), Put::insert())
        .await
        .unwrap();
    let r = docs(
        &cx,
        base_spec().index(IndexSpec::string("email", "/email").unique()),
    )
    .await;
    if !cx.store.capabilities().unique_indexes {
        expect_err(r, ErrorKind::Unsupported);
        return;
    }
    let e = expect_err(r, ErrorKind::AlreadyExists);
    assert_eq!(e.index(), Some("email"));
    assert_eq!(cx.store.collections().await.unwrap()[0].1, base_spec());
    c.delete("b").await.unwrap();
    let c = docs(
        &cx,
        base_spec().index(IndexSpec::string("email", "/email").unique()),
    )
    .await
    .unwrap();
    let e = expect_err(
        c.put("c", &json!({"email": "same@x"}), Put::insert()).await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(e.index(), Some("email"));
}

/// Collections are listed by name and dropped with their records.
async fn list_and_drop_collections(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    assert!(cx.store.collections().await.unwrap().is_empty());
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 20).await;
    docs(&cx, base_spec()).await.unwrap();
    assert_eq!(cx.store.collections().await.unwrap().len(), 2);
    assert!(cx.store.drop_collection("items").await.unwrap());
    assert!(!cx.store.drop_collection("items").await.unwrap());
    let names: Vec<String> = cx
        .store
        .collections()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["docs"]);
    expect_err(items.get("k000001").await, ErrorKind::NotFound);
    let items = cx.items().await;
    assert!(
        items.get("k000001").await.unwrap().is_none(),
        "a recreated collection is empty"
    );
    assert_eq!(items.count(&Filter::new().eq("n", 1)).await.unwrap(), 0);
}

/// The same collection name in two namespaces holds separate data and specs.
async fn namespaces_are_isolated(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let a = cx.store.namespace("tenant_a").unwrap();
    let b = cx.store.namespace("tenant-b").unwrap();
    let ia = a.collection::<Item>().await.unwrap();
    let ib = b
        .collection_with_spec::<Value>("items", base_spec())
        .await
        .unwrap();
    ia.insert(&Item::new("x", 1)).await.unwrap();
    assert!(ib.get("x").await.unwrap().is_none());
    ib.put("x", &json!({"kind": "b"}), Put::insert())
        .await
        .unwrap();
    assert_eq!(ia.get("x").await.unwrap().unwrap().value.n, 1);
    assert_eq!(b.collections().await.unwrap()[0].1, base_spec());
    assert!(cx.store.collections().await.unwrap().is_empty());
    assert_eq!(a.purge_expired().await.unwrap(), 0);
}

/// Namespaces holding collections are listed, by name; one whose collections all went is
/// not.
async fn namespaces_are_listed(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    assert!(cx.store.namespaces().await.unwrap().is_empty());
    for ns in ["zeta", "alpha", "mid-1"] {
        cx.store
            .namespace(ns)
            .unwrap()
            .collection::<Item>()
            .await
            .unwrap();
    }
    // Reading a namespace does not create it.
    let empty = cx.store.namespace("empty").unwrap();
    assert!(empty.collections().await.unwrap().is_empty());
    assert_eq!(
        cx.store.namespaces().await.unwrap(),
        vec!["alpha".to_owned(), "mid-1".to_owned(), "zeta".to_owned()]
    );
    let mid = cx.store.namespace("mid-1").unwrap();
    assert!(mid.drop_collection("items").await.unwrap());
    assert_eq!(
        cx.store.namespaces().await.unwrap(),
        vec!["alpha".to_owned(), "zeta".to_owned()]
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    spec_survives_reopen,
    added_index_sees_existing_records,
    dropped_index_cannot_be_queried,
    incompatible_change_is_refused,
    unique_index_over_duplicates_is_refused,
    list_and_drop_collections,
    namespaces_are_isolated,
    namespaces_are_listed
];
