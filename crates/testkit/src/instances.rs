//! Several instances over one backend: each store keeps its own catalog cache, as two
//! processes do, and neither may corrupt records or indexes for the other.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{json, Value};

use super::probe::Probe;
use super::{expect_err, Ctx, Fixture};
use crate::suite::Test;
use stowage_core::backend::SpecUpdate;
use stowage_core::{
    Clock, Collection, CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query, Store,
};

fn base() -> CollectionSpec {
    CollectionSpec::new().index(IndexSpec::integer("n", "/n"))
}

/// The `docs` collection of `store`, declared with `spec`.
async fn docs(store: &Store, spec: CollectionSpec) -> Collection<Value> {
    store
        .collection_with_spec::<Value>("docs", spec)
        .await
        .unwrap()
}

/// A document: `k` is absent for every fifth id, so an index on it holds only the rest.
fn doc(i: u64, round: u64) -> Value {
    if i.is_multiple_of(5) {
        json!({"n": i, "round": round})
    } else {
        json!({"n": i, "k": format!("k{}", (i + round) % 7), "round": round})
    }
}

/// Every live record, by id, read with a scan (no index involved).
async fn scan_all(coll: &Collection<Value>) -> BTreeMap<String, Value> {
    coll.scan()
        .map_ok(|r| (r.id, r.value))
        .try_collect()
        .await
        .unwrap()
}

/// Checks that index `name` (string or integer at `/name`) holds exactly the records with
/// the field: per value, and in order.
async fn index_is_exact(coll: &Collection<Value>, name: &str) {
    let all = scan_all(coll).await;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut ordered: Vec<(String, String)> = Vec::new();
    for (id, v) in &all {
        if let Some(x) = v.get(name).filter(|x| !x.is_null()) {
            *expected.entry(x.to_string()).or_default() += 1;
            ordered.push((x.to_string(), id.clone()));
        }
    }
    for (value, n) in &expected {
        let value: Value = serde_json::from_str(value).unwrap();
        let counted = coll
            .count(&Filter::new().eq(name, value.clone()))
            .await
            .unwrap();
        assert_eq!(
            counted, *n,
            "index {name:?} holds {counted} records under {value}, not {n}"
        );
    }
    let page = coll.query(&Query::new().order_by(name)).await.unwrap();
    let got: Vec<String> = page.items.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        got.len(),
        ordered.len(),
        "index {name:?} holds every record with the field"
    );
    let mut want = ordered.clone();
    want.sort_by(|a, b| {
        let (x, y): (Value, Value) = (
            serde_json::from_str(&a.0).unwrap(),
            serde_json::from_str(&b.0).unwrap(),
        );
        match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_str().cmp(&y.as_str()),
        }
        .then(a.1.cmp(&b.1))
    });
    let want: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        got, want,
        "index {name:?} orders the records by value, then id"
    );
}

/// Writes `rounds` rounds over ids `0..ids` through `coll`: upserts, and a delete of every
/// seventh id; every write must succeed.
async fn keep_writing(coll: Collection<Value>, ids: u64, rounds: u64) {
    for round in 0..rounds {
        for i in 0..ids {
            let id = format!("d{i:05}");
            if (i + round) % 7 == 3 {
                coll.delete(&id).await.unwrap();
            } else {
                coll.put(&id, &doc(i, round), Put::upsert()).await.unwrap();
            }
        }
    }
}

/// B adds an index while A keeps writing through a handle opened before: afterwards the
/// index holds every record with the field, none missing, none stale.
async fn index_added_while_other_instance_writes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let b = cx.second().await;
    let a_docs = docs(&cx.store, base()).await;
    keep_writing(a_docs.clone(), 300, 1).await;
    let writer = tokio::spawn(keep_writing(a_docs.clone(), 300, 4));
    super::yield_a_little().await;
    let wider = base().index(IndexSpec::string("k", "/k"));
    let b_docs = b
        .collection_with_spec::<Value>("docs", wider.clone())
        .await
        .unwrap();
    writer.await.unwrap();
    index_is_exact(&b_docs, "k").await;
    // A learns of the index at its next query.
    index_is_exact(&a_docs, "k").await;
    assert_eq!(a_docs.spec(), wider);
}

/// B drops an index, switches covering and sets a default TTL while A writes: A's writes
/// keep succeeding and follow the new spec.
async fn spec_changes_while_other_instance_writes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let b = cx.second().await;
    let start = base()
        .index(IndexSpec::string("k", "/k"))
        .index(IndexSpec::integer("round", "/round"));
    let a_docs = docs(&cx.store, start).await;
    keep_writing(a_docs.clone(), 200, 1).await;
    let writer = tokio::spawn(keep_writing(a_docs.clone(), 200, 3));
    super::yield_a_little().await;
    let dropped = base().index(IndexSpec::integer("round", "/round"));
    b.collection_with_spec::<Value>("docs", dropped.clone())
        .await
        .unwrap();
    let covering = base().index(IndexSpec::integer("round", "/round").covering());
    b.collection_with_spec::<Value>("docs", covering.clone())
        .await
        .unwrap();
    let ttl_supported = cx.store.capabilities().ttl;
    let target = if ttl_supported {
        covering.default_ttl(Duration::from_secs(600))
    } else {
        covering
    };
    b.collection_with_spec::<Value>("docs", target.clone())
        .await
        .unwrap();
    writer.await.unwrap();
    // A's next write follows B's spec: the default TTL applies, the dropped index is gone.
    let meta = a_docs
        .put("after", &doc(1, 9), Put::upsert())
        .await
        .unwrap();
    if ttl_supported {
        assert_eq!(
            meta.expires_at,
            Some(cx.clock.now().saturating_add(Duration::from_secs(600)))
        );
    }
    expect_err(
        a_docs.query(&Query::new().eq("k", "k1")).await,
        ErrorKind::InvalidInput,
    );
    assert_eq!(a_docs.spec(), target);
    index_is_exact(&a_docs, "round").await;
    index_is_exact(&a_docs, "n").await;
}

/// B drops the collection: A's handle answers NotFound to every call and resurrects
/// nothing; declaring the collection again creates it empty.
async fn dropped_collection_is_not_found_elsewhere(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let b = cx.second().await;
    let a_docs = docs(&cx.store, base()).await;
    a_docs.put("x", &doc(1, 0), Put::insert()).await.unwrap();
    assert!(b.drop_collection("docs").await.unwrap());
    expect_err(
        a_docs.put("y", &doc(2, 0), Put::insert()).await,
        ErrorKind::NotFound,
    );
    expect_err(a_docs.get("x").await, ErrorKind::NotFound);
    expect_err(a_docs.query(&Query::new()).await, ErrorKind::NotFound);
    expect_err(a_docs.count(&Filter::new()).await, ErrorKind::NotFound);
    expect_err(a_docs.delete("x").await, ErrorKind::NotFound);
    let mut batch = cx.store.batch();
    batch.put(&a_docs, "z", &doc(3, 0), Put::upsert());
    expect_err(batch.commit().await, ErrorKind::NotFound);
    assert!(b.collections().await.unwrap().is_empty());
    assert!(cx.store.collections().await.unwrap().is_empty());
    let again = cx
        .store
        .collection_with_spec::<Value>("docs", base())
        .await
        .unwrap();
    assert!(again.get("x").await.unwrap().is_none());
    assert_eq!(again.count(&Filter::new()).await.unwrap(), 0);
}

/// A and B change one spec at the same moment: each call succeeds or answers Conflict, at
/// least one succeeds, both succeed when they want the same spec, and the catalog never
/// lists an index that misses records.
async fn concurrent_spec_changes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let b = cx.second().await;
    let a_docs = docs(&cx.store, base()).await;
    const N: u64 = 600;
    for i in 0..N {
        let mut body = json!({"n": i});
        for r in 0..4 {
            body[format!("a{r}")] = json!(i);
            body[format!("b{r}")] = json!(i);
        }
        a_docs
            .put(&format!("d{i:04}"), &body, Put::upsert())
            .await
            .unwrap();
    }
    let mut spec = base();
    for round in 0..4 {
        let ours = spec.clone().index(IndexSpec::integer(
            format!("a{round}"),
            format!("/a{round}"),
        ));
        let theirs = spec.clone().index(IndexSpec::integer(
            format!("b{round}"),
            format!("/b{round}"),
        ));
        let (x, y) = tokio::join!(
            cx.store.collection_with_spec::<Value>("docs", ours.clone()),
            b.collection_with_spec::<Value>("docs", theirs.clone()),
        );
        for r in [&x, &y] {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            }
        }
        assert!(x.is_ok() || y.is_ok(), "one of two spec changes wins");
        let stored = cx
            .store
            .backend()
            .load_spec("default", "docs")
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored.building.is_empty(),
            "a build was left half-done: {stored:?}"
        );
        spec = stored.spec;
        for ix in &spec.indexes {
            let counted = a_docs.count(&Filter::new().gte(&ix.name, 0)).await.unwrap();
            assert_eq!(counted, N, "index {:?} holds every record", ix.name);
        }
    }
    // The same change from both: both succeed.
    let same = spec.clone().index(IndexSpec::integer("both", "/n"));
    let (x, y) = tokio::join!(
        cx.store.collection_with_spec::<Value>("docs", same.clone()),
        b.collection_with_spec::<Value>("docs", same.clone()),
    );
    x.unwrap();
    y.unwrap();
    assert_eq!(
        a_docs.count(&Filter::new().gte("both", 0)).await.unwrap(),
        N
    );
}

/// An index added to 200,000 records while three tasks rewrite, create and delete across
/// the range is exact afterwards, and the build never hands the engine more than a page.
async fn index_build_is_bounded_and_exact(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    const N: u64 = 200_000;
    let docs = cx
        .store
        .collection_with_spec::<Value>("docs", CollectionSpec::new())
        .await
        .unwrap();
    let step = super::batch_step(&cx.store, 1000) as u64;
    let mut i = 0;
    while i < N {
        let mut batch = cx.store.batch();
        for j in i..(i + step).min(N) {
            batch.put(
                &docs,
                &format!("r{j:06}"),
                &json!({"g": j % 10}),
                Put::insert(),
            );
        }
        batch.commit().await.unwrap();
        i += step;
    }
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let docs = docs.clone();
            tokio::spawn(async move {
                for k in 0..400u64 {
                    let at = (k * 7919 + w * 65_537) % N;
                    let id = format!("r{at:06}");
                    match w {
                        0 => docs
                            .put(&id, &json!({"g": 100 + k % 3}), Put::upsert())
                            .await
                            .map(drop),
                        1 => docs
                            .put(
                                &format!("new{k:04}"),
                                &json!({"g": 200 + k % 2}),
                                Put::insert(),
                            )
                            .await
                            .map(drop),
                        _ => docs.delete(&id).await.map(drop),
                    }
                    .unwrap();
                }
            })
        })
        .collect();
    let probe = Arc::new(Probe::new(cx.store.backend().clone()));
    let builder = cx.store_over(probe.clone());
    let spec = CollectionSpec::new().index(IndexSpec::integer("g", "/g"));
    let indexed = builder
        .collection_with_spec::<Value>("docs", spec)
        .await
        .unwrap();
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        probe.filled() >= N - 1200,
        "the build indexed the stored records"
    );
    assert!(
        probe.largest_fill() <= 256,
        "a fill carried {}",
        probe.largest_fill()
    );
    assert!(probe.largest_scan_limit() <= 256);
    let mut per_value: BTreeMap<i64, u64> = BTreeMap::new();
    let mut total = 0;
    let mut stream = std::pin::pin!(indexed.scan());
    while let Some(r) = stream.try_next().await.unwrap() {
        *per_value.entry(r.value["g"].as_i64().unwrap()).or_default() += 1;
        total += 1;
    }
    for (g, n) in &per_value {
        assert_eq!(
            indexed.count(&Filter::new().eq("g", *g)).await.unwrap(),
            *n,
            "g = {g}"
        );
    }
    assert_eq!(
        indexed.count(&Filter::new().gte("g", 0)).await.unwrap(),
        total
    );
    // The ordered walk agrees with the counts at every boundary.
    let mut seen = 0;
    let mut last = i64::MIN;
    let mut cursor = None;
    loop {
        let mut q = Query::new().order_by("g").limit(20_000);
        if let Some(c) = cursor.take() {
            q = q.cursor(c);
        }
        let page = indexed.query(&q).await.unwrap();
        for r in &page.items {
            let g = r.value["g"].as_i64().unwrap();
            assert!(g >= last, "ordered by g");
            last = g;
        }
        seen += page.items.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, total);
}

/// A build left half-done by a dead instance: writes go on, queries refuse the index, the
/// next declaration that wants it finishes it, and one that does not want it drops it.
async fn unfinished_build_is_finished_or_dropped(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let docs = docs(&cx.store, base()).await;
    for i in 0..300 {
        docs.put(&format!("d{i:04}"), &doc(i, 0), Put::upsert())
            .await
            .unwrap();
    }
    // A dead instance stored the spec with `k` and `x` building, and filled nothing.
    let backend = cx.store.backend().clone();
    let stored = backend.load_spec("default", "docs").await.unwrap().unwrap();
    let half = stored
        .spec
        .clone()
        .index(IndexSpec::string("k", "/k"))
        .index(IndexSpec::integer("x", "/n"));
    backend
        .apply_spec(
            "default",
            "docs",
            &SpecUpdate {
                expected: Some(stored.revision),
                spec: half,
                building: vec!["k".into(), "x".into()],
            },
        )
        .await
        .unwrap();
    // Another instance writes meanwhile (its writes maintain the building indexes) but
    // cannot query them yet.
    let other = cx.second().await;
    let other_docs = other.existing_collection::<Value>("docs").await.unwrap();
    for i in 0..50 {
        other_docs
            .put(&format!("d{i:04}"), &doc(i, 1), Put::upsert())
            .await
            .unwrap();
    }
    expect_err(
        other_docs.query(&Query::new().eq("k", "k1")).await,
        ErrorKind::InvalidInput,
    );
    let wanted = base().index(IndexSpec::string("k", "/k"));
    let finished = fresh_store(&cx)
        .collection_with_spec::<Value>("docs", wanted.clone())
        .await
        .unwrap();
    let now = backend.load_spec("default", "docs").await.unwrap().unwrap();
    assert!(now.building.is_empty());
    assert_eq!(now.spec, wanted, "x, unwanted, was dropped");
    index_is_exact(&finished, "k").await;
    index_is_exact(&other_docs, "k").await;
}

fn fresh_store(cx: &Ctx) -> Store {
    cx.store_over(cx.store.backend().clone())
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    index_added_while_other_instance_writes,
    spec_changes_while_other_instance_writes,
    dropped_collection_is_not_found_elsewhere,
    concurrent_spec_changes,
    index_build_is_bounded_and_exact,
    unfinished_build_is_finished_or_dropped
];
