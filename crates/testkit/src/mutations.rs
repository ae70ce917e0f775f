//! Mutations: counters, bounds, max/min, appends and TTL touches applied by the engine,
//! exact under contention across instances, and writes like any other (versions, indexes,
//! unique values, the change feed).

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{expect_err, Account, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::backend::MutationSupport;
use stowage_core::{
    ChangeOp, Clock, Collection, CollectionSpec, ErrorKind, Filter, Mutate, Put, Query, Record,
};

const MIN: Duration = Duration::from_secs(60);

/// Whether the backend claims mutations; when it does not, checks that one is refused.
async fn mutations_supported(cx: &Ctx) -> bool {
    if cx.store.capabilities().mutations != MutationSupport::None {
        return true;
    }
    let plain = cx.plain("counters").await;
    let r = plain.mutate("c", &Mutate::new().add("/n", 1)).await;
    expect_err(r, ErrorKind::Unsupported);
    false
}

/// The record's body as stored, byte for byte.
async fn bytes_of(coll: &Collection<Value>, id: &str) -> String {
    let got = coll.get_json_bytes(id).await.unwrap().expect("the record");
    String::from_utf8(got.value.to_vec()).unwrap()
}

/// Every op: an absent record starts from `{}` and 0; values come back; untouched keys keep
/// their order; integers stay integers and floats add as floats.
async fn every_op_applies_in_order(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await {
        return;
    }
    let c = cx.plain("counters").await;
    let done = c.mutate("a", &Mutate::new().add("/n", 1)).await.unwrap();
    assert_eq!(done.meta.version, 1, "created");
    assert_eq!(done.integer("/n"), Some(1));
    assert_eq!(bytes_of(&c, "a").await, r#"{"n":1}"#);

    c.put(
        "b",
        &json!({"z": "last", "a": 1, "n": 5, "list": [1], "f": 1.5}),
        Put::insert(),
    )
    .await
    .unwrap();
    let m = Mutate::new()
        .add("/n", 2)
        .add("/f", 1)
        .max("/a", 0)
        .min("/z", "first")
        .append("/list", 2)
        .append_keep_last("/recent", "x", 2)
        .append_keep_last("/recent", "y", 2)
        .append_keep_last("/recent", "z", 2)
        .set("/deep/er/value", json!({"k": true}))
        .remove("/gone/nowhere")
        .add("/n", -10);
    let done = c.mutate("b", &m).await.unwrap();
    assert_eq!(done.meta.version, 2);
    assert_eq!(
        bytes_of(&c, "b").await,
        r#"{"z":"first","a":1,"n":-3,"list":[1,2],"f":2.5,"recent":["y","z"],"deep":{"er":{"value":{"k":true}}}}"#,
        "untouched keys in place, new ones at the end"
    );
    let values: BTreeMap<&str, &Value> = done.values.iter().map(|(p, v)| (p.as_str(), v)).collect();
    assert_eq!(
        values["/n"],
        &json!(-3),
        "a path's value after all mutations"
    );
    assert_eq!(values["/f"], &json!(2.5));
    assert_eq!(values["/recent"], &json!(["y", "z"]));
    assert_eq!(values["/gone/nowhere"], &Value::Null);
    assert_eq!(done.values.len(), 8, "each path once");

    let done = c
        .mutate("b", &Mutate::new().remove("/deep").remove("/list/0"))
        .await
        .unwrap();
    assert_eq!(done.meta.version, 3);
    assert_eq!(
        bytes_of(&c, "b").await,
        r#"{"z":"first","a":1,"n":-3,"list":[2],"f":2.5,"recent":["y","z"]}"#
    );
    let got = c.get("b").await.unwrap().unwrap();
    assert_eq!(got.version, 3);
    assert!(got.updated_at >= got.created_at);
}

/// 64 tasks over two instances add 1 to one record 500 times each: exactly 32,000, every
/// version from 1 to 32,000 given once, and a watcher sees each once.
async fn concurrent_adds_are_exact(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await {
        return;
    }
    let second = cx.second().await;
    let a = cx.plain("counters").await;
    let b: Collection<Value> = second
        .collection_with_spec("counters", CollectionSpec::new())
        .await
        .unwrap();
    let feed = cx.store.capabilities().change_feed != stowage_core::ChangeFeed::None;
    // The consumer runs on a thread of its own, as a separate process would, not as one task
    // among the 64 writers; if it falls behind a live feed, it gets a gap and resumes from its
    // last token, as a real one does. What it collects must be every version, each once.
    let watcher = if feed {
        use futures_util::StreamExt;
        let coll = a.clone();
        let mut stream = a.watch(None).await.unwrap();
        // A first event, so that a gap before any counter event resumes from a token.
        a.put("marker", &json!({}), Put::insert()).await.unwrap();
        let marker = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the marker's event")
            .expect("the stream goes on")
            .expect("an event");
        assert_eq!(marker.id.as_deref(), Some("marker"));
        Some(on_own_thread(async move {
            let (mut versions, mut last, mut resumes) = (Vec::new(), Some(marker.token), 0);
            while versions.len() < 32_000 {
                let e = tokio::time::timeout(Duration::from_secs(30), stream.next())
                    .await
                    .expect("an event within 30 s")
                    .expect("the stream goes on")
                    .expect("an event");
                if e.op == ChangeOp::Gap {
                    resumes += 1;
                    assert!(resumes < 10_000, "the consumer never catches up");
                    stream = coll.watch(last).await.unwrap();
                    continue;
                }
                assert_eq!(e.op, ChangeOp::Put, "only puts: {e:?}");
                versions.push(e.version.unwrap());
                last = Some(e.token);
            }
            versions
        }))
    } else {
        None
    };
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let coll = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut versions = Vec::with_capacity(500);
                for _ in 0..500 {
                    let done = coll.mutate("hot", &Mutate::new().add("/n", 1)).await;
                    versions.push(done.unwrap().meta.version);
                }
                versions
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.extend(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=32_000).collect::<Vec<u64>>(),
        "versions exact"
    );
    let got = a.get("hot").await.unwrap().unwrap();
    assert_eq!(
        (got.value["n"].as_i64(), got.version),
        (Some(32_000), 32_000)
    );
    if let Some(w) = watcher {
        let mut seen = w.join().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, versions, "the feed saw every version once");
    }
}

/// Runs `work` on a thread of its own, polled there, while what it spawns (a pool's
/// connection tasks, say) runs on the caller's runtime: a runtime of its own would take those
/// connections down with it when the thread ends, under the store that shares them.
fn on_own_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || runtime.block_on(work))
}

/// A bounded add under contention never passes its bound: of 4,000 attempts with
/// `max = 1000`, exactly 1,000 succeed; the rest are Conflict carrying the value 1000.
async fn bounded_add_never_passes_its_bound(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await {
        return;
    }
    let second = cx.second().await;
    let a = cx.plain("stock").await;
    let b: Collection<Value> = second
        .collection_with_spec("stock", CollectionSpec::new())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let coll = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let take = Mutate::new().add("/taken", 1).at_most(1000);
                let (mut ok, mut refused) = (0, 0);
                for _ in 0..125 {
                    match coll.mutate("s", &take).await {
                        Ok(done) => {
                            assert!(done.integer("/taken").unwrap() <= 1000);
                            ok += 1;
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                            assert_eq!(e.current_value(), Some(("/taken", &json!(1000))));
                            refused += 1;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (o, r) = t.await.unwrap();
        ok += o;
        refused += r;
    }
    assert_eq!((ok, refused), (1000, 3000));
    let got = a.get("s").await.unwrap().unwrap();
    assert_eq!(
        (got.value["taken"].as_i64(), got.version),
        (Some(1000), 1000)
    );
    // Bounds below too: a stock never goes negative.
    let take = Mutate::new().add("/taken", -600).at_least(0);
    a.mutate("s", &take).await.unwrap();
    let e = expect_err(a.mutate("s", &take).await, ErrorKind::Conflict);
    assert_eq!(e.current_value(), Some(("/taken", &json!(400))));
}

/// GCRA with a manual clock: `max(/tat, now)` then `add(/tat, T, max = now + B·T)` allows
/// exactly the burst B at once, then one request per interval T.
async fn gcra_allows_the_burst_then_one_per_interval(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await {
        return;
    }
    let limits = cx.plain("limits").await;
    let (interval, burst) = (100_i64, 5_i64);
    let check = |now: i64| {
        Mutate::new()
            .max("/tat", now)
            .add("/tat", interval)
            .at_most(now + burst * interval)
    };
    let allowed = |now: i64| {
        let limits = limits.clone();
        let m = check(now);
        async move {
            match limits.mutate("client", &m).await {
                Ok(_) => true,
                Err(e) if e.kind() == ErrorKind::Conflict => false,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut now = 1_000_000;
    let mut granted = 0;
    while allowed(now).await {
        granted += 1;
        assert!(granted <= burst, "more than the burst");
    }
    assert_eq!(granted, burst, "the burst at once");
    for _ in 0..3 {
        now += interval;
        assert!(allowed(now).await, "one per interval");
        assert!(!allowed(now).await, "and only one");
    }
    now += 3 * interval;
    let mut later = 0;
    while allowed(now).await {
        later += 1;
    }
    assert_eq!(later, 3, "three intervals idle earn three requests");
    // A refused check changed nothing: the record's version counts the allowed ones.
    let got = limits.get("client").await.unwrap().unwrap();
    assert_eq!(got.version, (burst + 3 + 3) as u64);
}

/// An indexed counter stays right in queries while it changes; a mutation that would take
/// a unique value another record holds is refused, with nothing changed.
async fn indexes_follow_mutations(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await {
        return;
    }
    let items = cx.items().await;
    let plain: Collection<Value> = cx
        .store
        .collection_with_spec("items", <Item as Record>::spec())
        .await
        .unwrap();
    for i in 0..10 {
        items.insert(&Item::new(format!("i{i}"), i)).await.unwrap();
    }
    for round in 1..=3 {
        plain
            .mutate("i3", &Mutate::new().add("/n", 10).append("/tags", "hot"))
            .await
            .unwrap();
        let n = 3 + 10 * round;
        let page = items.query(&Query::new().eq("n", n)).await.unwrap();
        let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["i3"], "round {round}: found by its new value");
        assert_eq!(
            items.count(&Filter::new().eq("n", n - 10)).await.unwrap(),
            0
        );
        let top = items
            .query(&Query::new().order_by("n").descending().limit(1))
            .await
            .unwrap();
        assert_eq!(top.items[0].id, "i3");
    }
    assert_eq!(
        items.count(&Filter::new().eq("tags", "hot")).await.unwrap(),
        1
    );

    let accounts = cx.store.collection::<Account>().await.unwrap();
    accounts
        .insert(&Account::new("x", "x@example.com"))
        .await
        .unwrap();
    accounts
        .insert(&Account::new("y", "y@example.com"))
        .await
        .unwrap();
    let raw: Collection<Value> = cx
        .store
        .collection_with_spec("accounts", <Account as Record>::spec())
        .await
        .unwrap();
    let before = bytes_of(&raw, "y").await;
    let e = expect_err(
        raw.mutate(
            "y",
            &Mutate::new()
                .add("/balance", 5)
                .set("/email", "x@example.com"),
        )
        .await,
        ErrorKind::AlreadyExists,
    );
    assert_eq!(e.index(), Some("email"));
    assert_eq!(e.holder(), Some("x"));
    assert_eq!(bytes_of(&raw, "y").await, before, "nothing changed");
    assert_eq!(raw.get("y").await.unwrap().unwrap().version, 1);
    raw.mutate("y", &Mutate::new().set("/email", "z@example.com"))
        .await
        .unwrap();
    let page = accounts
        .query(&Query::new().eq("email", "z@example.com"))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "the unique index moved with the value");
    accounts
        .insert(&Account::new("w", "y@example.com"))
        .await
        .unwrap();
}

/// A touch (no mutation, a TTL) renews the TTL and leaves the body byte for byte; a
/// mutation that does not create records finds an expired one absent, one that creates
/// starts it anew.
async fn touch_renews_and_expired_records_are_absent(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await || !cx.store.capabilities().ttl {
        return;
    }
    let engine_clock = cx.store.capabilities().engine_clock;
    let sessions = cx.plain("sessions").await;
    sessions
        .put(
            "s",
            &json!({"user": "ann", "seen": 3}),
            Put::insert().ttl(MIN),
        )
        .await
        .unwrap();
    let stored = bytes_of(&sessions, "s").await;
    if !engine_clock {
        cx.clock.advance(MIN / 2);
    }
    let done = sessions.mutate("s", &Mutate::new().ttl(MIN)).await.unwrap();
    assert_eq!(done.meta.version, 2, "a touch is a write");
    assert!(done.values.is_empty());
    assert_eq!(
        bytes_of(&sessions, "s").await,
        stored,
        "body untouched by a touch"
    );
    let got = sessions.get("s").await.unwrap().unwrap();
    assert_eq!(got.expires_at, done.meta.expires_at);
    if !engine_clock {
        assert_eq!(got.expires_at, Some(cx.clock.now().saturating_add(MIN)));
        cx.clock.advance(MIN / 2 + Duration::from_secs(1));
        assert!(sessions.get("s").await.unwrap().is_some(), "renewed");
        // A mutation keeps the TTL unless told.
        let kept = sessions
            .mutate("s", &Mutate::new().add("/seen", 1))
            .await
            .unwrap();
        assert_eq!(kept.meta.expires_at, got.expires_at);
        cx.clock.advance(MIN);
        assert!(sessions.get("s").await.unwrap().is_none(), "expired");
        // Touches and removes do not create: an expired session stays gone.
        expect_err(
            sessions.mutate("s", &Mutate::new().ttl(MIN)).await,
            ErrorKind::NotFound,
        );
        expect_err(
            sessions.mutate("s", &Mutate::new().remove("/user")).await,
            ErrorKind::NotFound,
        );
        assert!(sessions.get("s").await.unwrap().is_none());
        // An add creates it anew, from nothing, above the versions it had.
        let again = sessions
            .mutate("s", &Mutate::new().add("/seen", 1))
            .await
            .unwrap();
        assert_eq!(again.meta.version, 4);
        assert_eq!(bytes_of(&sessions, "s").await, r#"{"seen":1}"#);
        assert_eq!(again.meta.expires_at, None, "no default TTL: none");
    }
    // Removing the TTL.
    let done = sessions
        .mutate(
            "s",
            &Mutate::new().ttl_change(stowage_core::TtlChange::Remove),
        )
        .await
        .unwrap();
    assert_eq!(done.meta.expires_at, None);
    expect_err(
        sessions.mutate("never", &Mutate::new().ttl(MIN)).await,
        ErrorKind::NotFound,
    );
}

/// Every refusal — the wrong type, a bound, a precondition, a bad path — leaves the record
/// as it was, and says what and why.
async fn refusals_change_nothing(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await {
        return;
    }
    let c = cx.plain("counters").await;
    c.put(
        "r",
        &json!({"name": "x", "n": 1, "list": [1]}),
        Put::insert(),
    )
    .await
    .unwrap();
    let before = bytes_of(&c, "r").await;
    let cases: Vec<(Mutate, ErrorKind, &str)> = vec![
        (
            Mutate::new().add("/n", 1).add("/name", 1),
            ErrorKind::InvalidInput,
            "/name",
        ),
        (
            Mutate::new().add("/n", 1).append("/n", 2),
            ErrorKind::InvalidInput,
            "not an array",
        ),
        (
            Mutate::new().max("/name", 3),
            ErrorKind::InvalidInput,
            "does not compare",
        ),
        (
            Mutate::new().set("/name/x", 1),
            ErrorKind::InvalidInput,
            "/name holds a string",
        ),
        (
            Mutate::new().set("/list/5", 1),
            ErrorKind::InvalidInput,
            "names none",
        ),
        (
            Mutate::new().add("/n", 5).at_most(3),
            ErrorKind::Conflict,
            "max",
        ),
        (
            Mutate::new().add("/n", -5).at_least(0),
            ErrorKind::Conflict,
            "min",
        ),
        (
            Mutate::new().add("/n", i64::MAX),
            ErrorKind::InvalidInput,
            "64 bits",
        ),
        (
            Mutate::new().add("/n", 1).if_version(7),
            ErrorKind::Conflict,
            "version",
        ),
        (
            Mutate::new().add("n", 1),
            ErrorKind::InvalidInput,
            "starts with '/'",
        ),
        (
            Mutate::new().add("", 1),
            ErrorKind::InvalidInput,
            "whole body",
        ),
        (
            Mutate::new().at_most(3),
            ErrorKind::InvalidInput,
            "right after add",
        ),
        (Mutate::new(), ErrorKind::InvalidInput, "at least one"),
        (
            Mutate::new().ttl(Duration::ZERO),
            ErrorKind::InvalidInput,
            "longer than zero",
        ),
        (
            Mutate::new()
                .add("/n", 1)
                .with_precondition(stowage_core::Precondition::Absent),
            ErrorKind::AlreadyExists,
            "",
        ),
    ];
    for (m, kind, says) in cases {
        let e = expect_err(c.mutate("r", &m).await, kind);
        assert!(e.message().contains(says), "{e} should say {says:?}");
        assert_eq!(bytes_of(&c, "r").await, before, "{e}: nothing changed");
        assert_eq!(c.get("r").await.unwrap().unwrap().version, 1);
    }
    let e = expect_err(
        c.mutate("r", &Mutate::new().add("/n", 1).if_version(7))
            .await,
        ErrorKind::Conflict,
    );
    assert_eq!(e.current_version(), Some(1));
    let ok = c
        .mutate("r", &Mutate::new().add("/n", 1).if_version(1))
        .await
        .unwrap();
    assert_eq!((ok.meta.version, ok.integer("/n")), (2, Some(2)));
    // A binary body is not a JSON object.
    if cx.store.capabilities().binary_bodies {
        let raw = cx.plain("blobs").await;
        raw.put_raw("b", vec![1_u8, 2], Put::insert())
            .await
            .unwrap();
        let e = expect_err(
            raw.mutate("b", &Mutate::new().add("/n", 1)).await,
            ErrorKind::InvalidInput,
        );
        assert!(e.message().contains("binary"), "{e}");
    }
}

/// A batch mutates several records and checks others atomically: all or none.
async fn batches_mutate_atomically(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    if !mutations_supported(&cx).await
        || cx.store.capabilities().batch_scope < stowage_core::BatchScope::Collection
    {
        return;
    }
    let c = cx.plain("accounts").await;
    c.put("a", &json!({"balance": 100}), Put::insert())
        .await
        .unwrap();
    c.put("b", &json!({"balance": 0}), Put::insert())
        .await
        .unwrap();
    let transfer = |amount: i64| {
        let mut batch = cx.store.batch();
        batch
            .mutate(&c, "a", &Mutate::new().add("/balance", -amount).at_least(0))
            .mutate(&c, "b", &Mutate::new().add("/balance", amount))
            .check(&c, "a", stowage_core::Precondition::Exists);
        batch
    };
    let done = transfer(60).commit_with_values().await.unwrap();
    assert_eq!(done[0].values, vec![("/balance".to_owned(), json!(40))]);
    assert_eq!(done[1].values, vec![("/balance".to_owned(), json!(60))]);
    assert!(done[2].values.is_empty());
    let e = expect_err(transfer(60).commit().await, ErrorKind::Conflict);
    assert_eq!(e.batch_op(), Some(0));
    assert_eq!(c.get("a").await.unwrap().unwrap().value["balance"], 40);
    assert_eq!(c.get("b").await.unwrap().unwrap().value["balance"], 60);
    assert_eq!(
        c.get("b").await.unwrap().unwrap().version,
        2,
        "none applied"
    );
    // Two mutations of one record in one batch apply in order, the second seeing the first
    // (its if_version too), on every backend: by compare-and-set, mutations after the first
    // write of a record apply to what the batch's earlier writes leave.
    let mut batch = cx.store.batch();
    batch
        .mutate(&c, "b", &Mutate::new().add("/balance", 1))
        .mutate(&c, "b", &Mutate::new().add("/balance", 1).if_version(3));
    let done = batch.commit().await.unwrap();
    assert_eq!(done[1].unwrap().version, 4);
    assert_eq!(c.get("b").await.unwrap().unwrap().value["balance"], 62);
    // A put, then a mutation of what it wrote; a delete, then a mutation that creates anew.
    let mut batch = cx.store.batch();
    batch
        .put(
            &c,
            "b",
            &json!({"balance": 10, "note": "reset"}),
            Put::upsert(),
        )
        .mutate(&c, "b", &Mutate::new().add("/balance", 5))
        .delete(&c, "a")
        .mutate(&c, "a", &Mutate::new().add("/balance", 7));
    let done = batch.commit_with_values().await.unwrap();
    assert_eq!(done[1].values, vec![("/balance".to_owned(), json!(15))]);
    assert_eq!(done[3].values, vec![("/balance".to_owned(), json!(7))]);
    assert_eq!(bytes_of(&c, "b").await, r#"{"balance":15,"note":"reset"}"#);
    assert_eq!(bytes_of(&c, "a").await, r#"{"balance":7}"#);
    // An if_version after a put of the same record: the version the put gives is known to a
    // native engine; by compare-and-set it is not, and the batch is refused, naming why.
    let v = c.get("b").await.unwrap().unwrap().version;
    let mut batch = cx.store.batch();
    batch
        .put(&c, "b", &json!({"balance": 1}), Put::upsert())
        .mutate(&c, "b", &Mutate::new().add("/balance", 1).if_version(v + 1));
    if cx.store.capabilities().mutations == MutationSupport::Native {
        assert_eq!(batch.commit().await.unwrap()[1].unwrap().version, v + 2);
    } else {
        let e = expect_err(batch.commit().await, ErrorKind::InvalidInput);
        assert!(e.message().contains("if_version"), "{e}");
        assert_eq!(e.batch_op(), Some(1));
        assert_eq!(c.get("b").await.unwrap().unwrap().version, v);
    }
    // After a put at a version, the next version is known everywhere.
    let v = c.get("b").await.unwrap().unwrap().version;
    let mut batch = cx.store.batch();
    batch
        .put(&c, "b", &json!({"balance": 2}), Put::update(v))
        .mutate(&c, "b", &Mutate::new().add("/balance", 1).if_version(v + 1));
    assert_eq!(batch.commit().await.unwrap()[1].unwrap().version, v + 2);
    assert_eq!(bytes_of(&c, "b").await, r#"{"balance":3}"#);
    // A remove after a delete in the same batch finds nothing, and nothing is written.
    let mut batch = cx.store.batch();
    batch
        .delete(&c, "a")
        .mutate(&c, "a", &Mutate::new().remove("/balance"));
    let e = expect_err(batch.commit().await, ErrorKind::NotFound);
    assert_eq!(e.batch_op(), Some(1));
    assert_eq!(bytes_of(&c, "a").await, r#"{"balance":7}"#);
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    every_op_applies_in_order,
    concurrent_adds_are_exact,
    bounded_add_never_passes_its_bound,
    gcra_allows_the_burst_then_one_per_interval,
    indexes_follow_mutations,
    touch_renews_and_expired_records_are_absent,
    refusals_change_nothing,
    batches_mutate_atomically
];
