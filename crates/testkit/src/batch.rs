//! Atomic batches: all or nothing, each op with its precondition.

use std::sync::Arc;

use super::{expect_err, versions, Account, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{BatchScope, ErrorKind, Filter, Precondition, Put};

/// Whether the backend claims atomic batches across collections; when it does not, checks
/// that such a batch is refused and a batch of one still works.
async fn batches_supported(cx: &Ctx) -> bool {
    if cx.store.capabilities().batch_scope >= BatchScope::Namespace {
        return true;
    }
    let items = cx.items().await;
    let other = cx.plain("other").await;
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("a", 1))
        .put(&other, "b", &serde_json::json!(2), Put::insert());
    expect_err(b.commit().await, ErrorKind::Unsupported);
    assert!(items.get("a").await.unwrap().is_none());
    let mut one = cx.store.batch();
    one.insert(&items, &Item::new("a", 1));
    assert_eq!(versions(one.commit().await.unwrap()), vec![Some(1)]);
    false
}

/// A batch across two collections applies every op and returns their versions.
async fn batch_applies_all(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !batches_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    let log = cx.plain("log").await;
    items.insert(&Item::new("old", 1)).await.unwrap();
    items.insert(&Item::new("gone", 1)).await.unwrap();
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("new", 2))
        .update(&items, &Item::new("old", 3), 1)
        .delete(&items, "gone")
        .delete(&items, "never")
        .put(
            &log,
            "e1",
            &serde_json::json!({"event": "moved"}),
            Put::insert(),
        );
    assert_eq!(b.len(), 5);
    let stored = versions(b.commit().await.unwrap());
    assert_eq!(stored, vec![Some(1), Some(2), Some(1), None, Some(1)]);
    assert_eq!(items.get("old").await.unwrap().unwrap().value.n, 3);
    assert!(items.get("gone").await.unwrap().is_none());
    assert!(log.get("e1").await.unwrap().is_some());
    assert!(cx.store.batch().commit().await.unwrap().is_empty());
}

/// One failing precondition leaves nothing written, and the error names the op.
async fn failing_precondition_writes_nothing(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !batches_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    items.insert(&Item::new("b", 1)).await.unwrap();
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("c", 5))
        .upsert(&items, &Item::new("a", 5))
        .delete(&items, "b")
        .update(&items, &Item::new("a", 6), 1) // a is at 2 by then: conflict
        .insert(&items, &Item::new("d", 5));
    let e = expect_err(b.commit().await, ErrorKind::Conflict);
    assert_eq!(e.batch_op(), Some(3));
    assert!(e.to_string().contains("batch op 3"), "{e}");
    assert_eq!(e.current_version(), Some(2));
    assert!(items.get("c").await.unwrap().is_none());
    assert!(items.get("d").await.unwrap().is_none());
    let a = items.get("a").await.unwrap().unwrap();
    assert_eq!((a.version, a.value.n), (1, 1));
    assert!(items.get("b").await.unwrap().is_some());
    assert_eq!(
        items.count(&Filter::new().eq("n", 5)).await.unwrap(),
        0,
        "no index entry leaked"
    );
    let mut dup = cx.store.batch();
    dup.insert(&items, &Item::new("e", 1))
        .insert(&items, &Item::new("a", 1));
    let e = expect_err(dup.commit().await, ErrorKind::AlreadyExists);
    assert_eq!(e.batch_op(), Some(1));
    assert!(items.get("e").await.unwrap().is_none());
}

/// A unique clash inside a batch (with stored data or between its own ops) writes nothing.
async fn unique_clash_writes_nothing(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !batches_supported(&cx).await {
        return;
    }
    let Ok(accounts) = cx.accounts().await else {
        return;
    };
    accounts.insert(&Account::new("a", "a@x")).await.unwrap();
    let mut b = cx.store.batch();
    b.insert(&accounts, &Account::new("b", "b@x"))
        .insert(&accounts, &Account::new("c", "b@x"));
    let e = expect_err(b.commit().await, ErrorKind::AlreadyExists);
    assert_eq!((e.batch_op(), e.index()), (Some(1), Some("email")));
    assert!(accounts.get("b").await.unwrap().is_none());
    // Swapping values through a batch works: the first op frees what the second takes.
    let mut swap = cx.store.batch();
    swap.upsert(&accounts, &Account::new("a", "new@x"))
        .insert(&accounts, &Account::new("b", "a@x"));
    swap.commit().await.unwrap();
    assert_eq!(accounts.get("b").await.unwrap().unwrap().value.email, "a@x");
}

/// Ops see the effect of the ops before them in the same batch.
async fn later_ops_see_earlier_ones(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !batches_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("a", 1))
        .update(&items, &Item::new("a", 2), 1)
        .update(&items, &Item::new("a", 3), 2)
        .delete_if_version(&items, "a", 3)
        .insert(&items, &Item::new("a", 4));
    // The delete raised the version floor to 3: the record created again starts above it.
    assert_eq!(
        versions(b.commit().await.unwrap()),
        vec![Some(1), Some(2), Some(3), Some(3), Some(4)]
    );
    let a = items.get("a").await.unwrap().unwrap();
    assert_eq!((a.version, a.value.n), (4, 4));
}

/// An op with bad input is reported with its position, and nothing is written.
async fn bad_op_is_named_before_anything_is_written(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("ok", 1))
        .insert(&items, &Item::new("", 1));
    let e = expect_err(b.commit().await, ErrorKind::InvalidInput);
    assert_eq!(e.batch_op(), Some(1));
    assert!(e.message().contains("empty"), "{e}");
    assert!(items.get("ok").await.unwrap().is_none());
    let other = cx.store.namespace("elsewhere").unwrap();
    let foreign = other.collection::<Item>().await.unwrap();
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("ok", 1))
        .insert(&foreign, &Item::new("x", 1));
    let e = expect_err(b.commit().await, ErrorKind::InvalidInput);
    assert!(e.message().contains("one namespace"), "{e}");
    assert!(items.get("ok").await.unwrap().is_none());
}

/// A check op writes nothing: the batch applies when it holds, and fails whole, naming the
/// op, when it does not.
async fn check_op_writes_nothing(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !batches_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    items.insert(&Item::new("guard", 1)).await.unwrap();
    let mut b = cx.store.batch();
    b.check(&items, "guard", Precondition::Version(1))
        .insert(&items, &Item::new("x", 2))
        .check(&items, "absent", Precondition::Absent);
    assert_eq!(
        versions(b.commit().await.unwrap()),
        vec![Some(1), Some(1), None]
    );
    let guard = items.get("guard").await.unwrap().unwrap();
    assert_eq!(guard.version, 1, "a check does not write");
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("y", 3))
        .check(&items, "guard", Precondition::Version(7));
    let e = expect_err(b.commit().await, ErrorKind::Conflict);
    assert_eq!((e.batch_op(), e.current_version()), (Some(1), Some(1)));
    assert!(items.get("y").await.unwrap().is_none());
    let mut b = cx.store.batch();
    b.insert(&items, &Item::new("y", 3))
        .check(&items, "x", Precondition::Absent);
    let e = expect_err(b.commit().await, ErrorKind::AlreadyExists);
    assert_eq!(e.batch_op(), Some(1));
    assert!(items.get("y").await.unwrap().is_none());
    let mut b = cx.store.batch();
    b.check(&items, "guard", Precondition::None);
    expect_err(b.commit().await, ErrorKind::InvalidInput);
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    batch_applies_all,
    failing_precondition_writes_nothing,
    unique_clash_writes_nothing,
    later_ops_see_earlier_ones,
    bad_op_is_named_before_anything_is_written,
    check_op_writes_nothing
];
