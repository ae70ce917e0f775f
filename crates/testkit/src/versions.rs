//! Versions, optimistic concurrency and races.

use std::sync::Arc;

use super::{expect_err, Account, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{ErrorKind, Put};

/// update at the current version succeeds and bumps it.
async fn update_at_current_version(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    assert_eq!(items.update(&Item::new("a", 2), 1).await.unwrap(), 2);
    assert_eq!(items.update(&Item::new("a", 3), 2).await.unwrap(), 3);
    let got = items.get("a").await.unwrap().unwrap();
    assert_eq!((got.version, got.value.n), (3, 3));
}

/// update at a stale version fails with the current version and writes nothing.
async fn update_at_stale_version_is_conflict(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    items.upsert(&Item::new("a", 2)).await.unwrap();
    let e = expect_err(
        items.update(&Item::new("a", 9), 1).await,
        ErrorKind::Conflict,
    );
    assert_eq!(e.current_version(), Some(2));
    assert!(
        e.message().contains("expected version 1, found version 2"),
        "{e}"
    );
    assert_eq!(items.get("a").await.unwrap().unwrap().value.n, 2);
}

/// update and replace of an absent record fail with Conflict and no current version.
async fn update_of_missing_is_conflict(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let e = expect_err(
        items.update(&Item::new("a", 1), 1).await,
        ErrorKind::Conflict,
    );
    assert_eq!(e.current_version(), None);
    let e = expect_err(
        items.put("a", &Item::new("a", 1), Put::replace()).await,
        ErrorKind::Conflict,
    );
    assert_eq!(e.current_version(), None);
    assert!(items.get("a").await.unwrap().is_none());
    items.insert(&Item::new("a", 1)).await.unwrap();
    assert_eq!(
        items
            .put("a", &Item::new("a", 2), Put::replace())
            .await
            .unwrap()
            .version,
        2
    );
}

/// delete at a version: wrong version or absent is Conflict, right version deletes.
async fn delete_if_version(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("a", 1)).await.unwrap();
    items.upsert(&Item::new("a", 1)).await.unwrap();
    let e = expect_err(items.delete_if_version("a", 1).await, ErrorKind::Conflict);
    assert_eq!(e.current_version(), Some(2));
    assert!(items.get("a").await.unwrap().is_some());
    items.delete_if_version("a", 2).await.unwrap();
    assert!(items.get("a").await.unwrap().is_none());
    let e = expect_err(items.delete_if_version("a", 2).await, ErrorKind::Conflict);
    assert_eq!(e.current_version(), None);
}

/// 32 tasks insert the same id: exactly one wins, 31 get AlreadyExists.
async fn insert_race_one_winner(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    for round in 0..3 {
        let id = format!("race-{round}");
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let items = items.clone();
                let id = id.clone();
                tokio::spawn(async move { items.insert(&Item::new(id, i)).await })
            })
            .collect();
        let mut won = Vec::new();
        let mut lost = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(v) => won.push((i, v)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => lost += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one insert wins");
        assert_eq!(lost, 31);
        let (winner, version) = won[0];
        assert_eq!(version, 1);
        let got = items.get(&id).await.unwrap().unwrap();
        assert_eq!(
            got.value.n, winner as i64,
            "the stored record is the winner's"
        );
    }
}

/// 32 tasks × 50 read-modify-write increments with retry on Conflict end at exactly 1600.
async fn cas_counter(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    items.insert(&Item::new("counter", 0)).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let items = items.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..50 {
                    loop {
                        let cur = items.get("counter").await.unwrap().unwrap();
                        let mut next = cur.value.clone();
                        next.n += 1;
                        match items.update(&next, cur.version).await {
                            Ok(_) => break,
                            Err(e) if e.kind() == ErrorKind::Conflict => {
                                assert!(e.current_version().is_some_and(|v| v > cur.version));
                                conflicts += 1;
                            }
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = items.get("counter").await.unwrap().unwrap();
    assert_eq!(got.value.n, 1600);
    assert_eq!(got.version, 1601);
}

/// A version is never given twice to one id, whatever removed the record before — delete,
/// delete by prefix or query, expiry (purged or not), dropping the collection — so an
/// old ETag never matches a record created later (the ABA problem).
async fn versions_never_repeat(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    // A fresh collection starts at 1.
    assert_eq!(items.insert(&Item::new("a", 1)).await.unwrap(), 1);
    let mut given: Vec<u64> = vec![1];
    let record = |v: u64, given: &mut Vec<u64>| {
        assert!(!given.contains(&v), "version {v} given twice: {given:?}");
        given.push(v);
    };
    // Read, delete, create again: the old version does not come back.
    items.delete("a").await.unwrap();
    let v = items.insert(&Item::new("a", 2)).await.unwrap();
    record(v, &mut given);
    let e = expect_err(
        items.update(&Item::new("a", 3), 1).await,
        ErrorKind::Conflict,
    );
    assert_eq!(e.current_version(), Some(v));
    // Delete by prefix, then by query.
    items.delete_prefix("a").await.unwrap();
    record(items.insert(&Item::new("a", 4)).await.unwrap(), &mut given);
    items
        .delete_where(&stowage_core::Filter::new().eq("n", 4))
        .await
        .unwrap();
    record(items.insert(&Item::new("a", 5)).await.unwrap(), &mut given);
    if cx.store.capabilities().ttl {
        // Expired but not purged, then expired and purged.
        for purge in [false, true] {
            let second = std::time::Duration::from_secs(1);
            let put = Put::upsert().ttl(second);
            let v = items
                .put("a", &Item::new("a", 6), put)
                .await
                .unwrap()
                .version;
            record(v, &mut given);
            cx.clock.advance(2 * second);
            if purge {
                assert_eq!(cx.store.purge_expired().await.unwrap(), 1);
            }
            record(items.insert(&Item::new("a", 7)).await.unwrap(), &mut given);
        }
    }
    // Dropping the collection does not forget the versions.
    drop(items);
    assert!(cx.store.drop_collection("items").await.unwrap());
    let items = cx.items().await;
    record(items.insert(&Item::new("a", 10)).await.unwrap(), &mut given);
    assert!(
        given.windows(2).all(|w| w[0] < w[1]),
        "versions only grow: {given:?}"
    );
}

/// A stale update that would also clash on a unique index answers Conflict on every
/// engine: the precondition is checked before unique indexes.
async fn precondition_before_unique(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let Ok(accounts) = cx.accounts().await else {
        return;
    };
    accounts.insert(&Account::new("a", "a@x")).await.unwrap();
    accounts.insert(&Account::new("b", "b@x")).await.unwrap();
    accounts.upsert(&Account::new("b", "b@x")).await.unwrap();
    let e = expect_err(
        accounts.update(&Account::new("b", "a@x"), 1).await,
        ErrorKind::Conflict,
    );
    assert_eq!(e.current_version(), Some(2));
    let e = expect_err(
        accounts.insert(&Account::new("b", "a@x")).await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(e.index(), None, "the id is taken before the value is: {e}");
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    update_at_current_version,
    update_at_stale_version_is_conflict,
    update_of_missing_is_conflict,
    delete_if_version,
    insert_race_one_winner,
    cas_counter,
    versions_never_repeat,
    precondition_before_unique
];
