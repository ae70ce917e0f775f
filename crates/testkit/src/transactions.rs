//! Optimistic transactions: reads checked at commit, writes applied as one atomic batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{expect_err, Ctx, Fixture};
use crate::suite::Test;
use stowage_core::{
    BatchScope, Collection, CollectionSpec, Error, ErrorKind, Put, Result, Transaction,
};

/// A collection of wallets `w0..w{n}` holding `start` each; `None` when the backend has no
/// atomic batches (then a transaction that reads and writes is refused, as checked).
async fn wallets(cx: &Ctx, n: usize, start: i64) -> Option<Collection<Value>> {
    let wallets = cx
        .store
        .collection_with_spec::<Value>("wallets", CollectionSpec::new())
        .await
        .unwrap();
    for i in 0..n {
        wallets
            .put(
                &format!("w{i}"),
                &json!({"balance": start, "moves": 0}),
                Put::insert(),
            )
            .await
            .unwrap();
    }
    if cx.store.capabilities().batch_scope < BatchScope::Collection {
        let mut tx = cx.store.transaction();
        tx.get(&wallets, "w0").await.unwrap();
        tx.put(
            &wallets,
            "w1",
            &json!({"balance": 0, "moves": 0}),
            Put::upsert(),
        )
        .unwrap();
        expect_err(tx.commit().await, ErrorKind::Unsupported);
        return None;
    }
    Some(wallets)
}

fn balance(v: &Value) -> i64 {
    v["balance"].as_i64().unwrap()
}

/// 16 tasks make 500 random transfers between 10 wallets: every transfer applies once and
/// the total is unchanged.
async fn transfers_keep_the_total(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let Some(wallets) = wallets(&cx, 10, 1000).await else {
        return;
    };
    const TRANSFERS: usize = 500;
    const TASKS: usize = 16;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, wallets) = (cx.store.clone(), wallets.clone());
            tokio::spawn(async move {
                // A small linear congruential generator: reproducible, no dependency.
                let mut seed = 0x9E37_79B9u64.wrapping_mul(t as u64 + 1);
                let mut next = move |m: u64| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (seed >> 33) % m
                };
                for _ in (t..TRANSFERS).step_by(TASKS) {
                    let from = format!("w{}", next(10));
                    let to = format!(
                        "w{}",
                        (next(9) + 1 + from[1..].parse::<u64>().unwrap()) % 10
                    );
                    let amount = next(50) as i64 + 1;
                    store
                        .transact_with(1000, |tx| {
                            let (wallets, from, to) = (wallets.clone(), from.clone(), to.clone());
                            Box::pin(async move {
                                let a = tx.get(&wallets, &from).await?.unwrap().value;
                                let b = tx.get(&wallets, &to).await?.unwrap().value;
                                let moved = |v: &Value, by: i64| {
                                    json!({"balance": balance(v) + by,
                                           "moves": v["moves"].as_i64().unwrap() + 1})
                                };
                                tx.put(&wallets, &from, &moved(&a, -amount), Put::upsert())?;
                                tx.put(&wallets, &to, &moved(&b, amount), Put::upsert())?;
                                Ok(())
                            })
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut total = 0;
    let mut moves = 0;
    for i in 0..10 {
        let w = wallets.get(&format!("w{i}")).await.unwrap().unwrap().value;
        total += balance(&w);
        moves += w["moves"].as_i64().unwrap();
    }
    assert_eq!(total, 10 * 1000, "money is neither made nor lost");
    assert_eq!(
        moves,
        2 * TRANSFERS as i64,
        "every transfer applied exactly once"
    );
}

/// Two withdrawals, each affordable alone, from two wallets that must together stay at or
/// above zero: the second to commit is refused, and run again it refuses by the rule.
async fn write_skew_is_refused(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let Some(wallets) = wallets(&cx, 2, 100).await else {
        return;
    };
    // Both read before either commits.
    let mut first = cx.store.transaction();
    let mut second = cx.store.transaction();
    withdraw(&mut first, &wallets, "w0").await.unwrap();
    withdraw(&mut second, &wallets, "w1").await.unwrap();
    first.commit().await.unwrap();
    let e = expect_err(second.commit().await, ErrorKind::Conflict);
    assert_eq!(e.current_version(), Some(2), "{e}");
    assert_eq!(
        balance(&wallets.get("w1").await.unwrap().unwrap().value),
        100
    );
    // Run again from the start, it sees the first withdrawal and refuses.
    let e = expect_err(
        cx.store
            .transact(|tx| {
                let wallets = wallets.clone();
                Box::pin(async move { withdraw(tx, &wallets, "w1").await })
            })
            .await,
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("cannot cover"), "{e}");
    let w0 = balance(&wallets.get("w0").await.unwrap().unwrap().value);
    let w1 = balance(&wallets.get("w1").await.unwrap().unwrap().value);
    assert_eq!((w0, w1), (-50, 100));
}

/// Takes 150 from `mine` if wallets w0 and w1 together hold at least 150.
async fn withdraw(tx: &mut Transaction, wallets: &Collection<Value>, mine: &str) -> Result<()> {
    let a = balance(&tx.get(wallets, "w0").await?.unwrap().value);
    let b = balance(&tx.get(wallets, "w1").await?.unwrap().value);
    if a + b < 150 {
        return Err(Error::invalid("the pair cannot cover 150"));
    }
    let before = if mine == "w0" { a } else { b };
    tx.put(
        wallets,
        mine,
        &json!({"balance": before - 150, "moves": 1}),
        Put::upsert(),
    )
}

/// A record read as absent and created by another writer before the commit makes the
/// transaction run again, and the second run sees it.
async fn read_as_absent_then_created_retries(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let Some(wallets) = wallets(&cx, 1, 5).await else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = cx
        .store
        .transact(|tx| {
            let (wallets, runs) = (wallets.clone(), runs.clone());
            Box::pin(async move {
                let flag = tx.get(&wallets, "flag").await?;
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Another writer creates the record between the read and the commit.
                    wallets
                        .put("flag", &json!({"balance": 7, "moves": 0}), Put::insert())
                        .await?;
                }
                tx.put(
                    &wallets,
                    "w0",
                    &json!({"balance": 6, "moves": 1}),
                    Put::upsert(),
                )?;
                Ok(flag.map(|f| balance(&f.value)))
            })
        })
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(seen, Some(7));
    assert_eq!(wallets.get("w0").await.unwrap().unwrap().version, 2);
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    transfers_keep_the_total,
    write_skew_is_refused,
    read_as_absent_then_created_retries
];
