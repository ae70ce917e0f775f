//! The property test: random operation sequences give the same answers on the backend under
//! test as on the memory model.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use serde::{Deserialize, Serialize};

use super::{Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::backend::Backend;
use stowage_core::{
    Collection, CollectionSpec, Error, Filter, IndexSpec, ManualClock, MemoryBackend, Put, Query,
    Record, Store, Timestamp, Version,
};

/// The property test's record: an [`Item`] with a unique `code` that clashes whenever two
/// records' `n` agree mod 6, so engines must agree on unique checks, their order against
/// preconditions, and the holder they name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PropItem {
    /// The item.
    #[serde(flatten)]
    pub item: Item,
    /// Unique where the backend enforces unique indexes.
    pub code: String,
}

impl PropItem {
    fn new(id: &str, n: i64) -> Self {
        PropItem {
            item: Item::new(id, n),
            code: format!("c{}", n.rem_euclid(6)),
        }
    }

    /// [`Item`]'s spec with `code`, unique when the backend can enforce it.
    fn spec_for(unique: bool) -> CollectionSpec {
        let code = IndexSpec::string("code", "/code");
        Item::spec().index(if unique { code.unique() } else { code })
    }
}

impl Record for PropItem {
    const COLLECTION: &'static str = "items";
    fn spec() -> CollectionSpec {
        Self::spec_for(true)
    }
    fn id(&self) -> String {
        self.item.id.clone()
    }
}

const IDS: [&str; 10] = ["a", "ab", "abc", "b", "ba", "c", "k1", "k10", "k2", "z"];
const PREFIXES: [&str; 4] = ["a", "ab", "k1", "q"];

/// One operation of a random sequence.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// insert
    Insert(usize, i64),
    /// upsert, with an optional TTL in seconds
    Upsert(usize, i64, Option<u64>),
    /// update at a version
    Update(usize, i64, Version),
    /// delete
    Delete(usize),
    /// delete at a version
    DeleteIfVersion(usize, Version),
    /// get
    Get(usize),
    /// get_many
    GetMany(Vec<usize>),
    /// query: filter, order, descending, limit
    Query(usize, usize, bool, Option<usize>),
    /// count with a filter
    Count(usize),
    /// scan by prefix
    Scan(usize),
    /// delete by prefix
    DeletePrefix(usize),
    /// a batch of (id, n, kind: 0 insert, 1 upsert, 2 update v1, 3 delete)
    Batch(Vec<(usize, i64, u8)>),
    /// a mutation: (id, kind, operand), see `mutation`
    Mutate(usize, u8, i64),
    /// move the clock
    Advance(u64),
    /// purge expired records
    Purge,
}

fn filter(i: usize) -> Filter {
    match i {
        0 => Filter::new(),
        1 => Filter::new().eq("n", 3),
        2 => Filter::new().gte("score", -9.0).lt("score", -8.0),
        3 => Filter::new().eq("tags", "t1"),
        4 => Filter::new().eq("active", true).lte("n", 6),
        _ => Filter::new().prefix("name", "name-00"),
    }
}

const ORDERS: [&str; 4] = ["id", "n", "score", "name"];

/// The mutation of kind `k` with operand `x`: on indexed fields (so index entries follow),
/// bounded (so refusals compare), on the unique field (so clashes compare), and touches.
fn mutation(k: u8, x: i64, ttl: bool) -> stowage_core::Mutate {
    use stowage_core::Mutate;
    match k {
        0 => Mutate::new().add("/n", x).at_most(10).at_least(0),
        1 => Mutate::new().max("/n", x).min("/score", x as f64 / 4.0),
        2 => Mutate::new().append_keep_last("/tags", format!("t{}", x.rem_euclid(3)), 3),
        3 => Mutate::new().set("/code", format!("c{}", x.rem_euclid(6))),
        4 if ttl => Mutate::new().ttl(Duration::from_secs(x.unsigned_abs() % 10 + 1)),
        _ => Mutate::new()
            .remove("/at")
            .set("/name", format!("name-{x:03}")),
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    let n = 0i64..12;
    prop_oneof![
        3 => (id.clone(), n.clone()).prop_map(|(i, n)| Op::Insert(i, n)),
        3 => (id.clone(), n.clone(), prop::option::weighted(0.3, 1u64..20)).prop_map(|(i, n, t)| Op::Upsert(i, n, t)),
        2 => (id.clone(), n.clone(), 1u64..4).prop_map(|(i, n, v)| Op::Update(i, n, v)),
        1 => id.clone().prop_map(Op::Delete),
        1 => (id.clone(), 1u64..4).prop_map(|(i, v)| Op::DeleteIfVersion(i, v)),
        2 => id.clone().prop_map(Op::Get),
        1 => prop::collection::vec(id.clone(), 0..4).prop_map(Op::GetMany),
        3 => (0usize..6, 0..ORDERS.len(), any::<bool>(), prop::option::of(1usize..5))
            .prop_map(|(f, o, d, l)| Op::Query(f, o, d, l)),
        1 => (0usize..6).prop_map(Op::Count),
        1 => (0..PREFIXES.len()).prop_map(Op::Scan),
        1 => (0..PREFIXES.len()).prop_map(Op::DeletePrefix),
        3 => (id.clone(), 0u8..6, -3i64..12).prop_map(|(i, k, x)| Op::Mutate(i, k, x)),
        2 => prop::collection::vec((id, n, 0u8..4), 1..4).prop_map(Op::Batch),
        1 => (1u64..15).prop_map(Op::Advance),
        1 => Just(Op::Purge),
    ]
}

type Outcome = std::result::Result<String, String>;

fn show<T: std::fmt::Debug>(r: stowage_core::Result<T>) -> Outcome {
    r.map(|v| format!("{v:?}")).map_err(|e: Error| {
        format!(
            "{}/{:?}/{:?}/{:?}/{:?}",
            e.kind(),
            e.current_version(),
            e.batch_op(),
            e.index(),
            e.holder()
        )
    })
}

async fn apply(
    store: &Store,
    items: &Collection<PropItem>,
    clock: &ManualClock,
    op: &Op,
) -> Outcome {
    match op {
        Op::Insert(i, n) => show(items.insert(&PropItem::new(IDS[*i], *n)).await),
        Op::Upsert(i, n, ttl) => {
            let mut put = Put::upsert();
            if let (Some(t), true) = (ttl, store.capabilities().ttl) {
                put = put.ttl(Duration::from_secs(*t));
            }
            show(items.put(IDS[*i], &PropItem::new(IDS[*i], *n), put).await)
        }
        Op::Update(i, n, v) => show(items.update(&PropItem::new(IDS[*i], *n), *v).await),
        Op::Delete(i) => show(items.delete(IDS[*i]).await),
        Op::DeleteIfVersion(i, v) => show(items.delete_if_version(IDS[*i], *v).await),
        Op::Get(i) => show(items.get(IDS[*i]).await),
        Op::GetMany(is) => {
            let ids: Vec<&str> = is.iter().map(|i| IDS[*i]).collect();
            show(items.get_many(&ids).await)
        }
        Op::Query(f, o, desc, limit) => {
            let mut q = Query::filter(filter(*f)).order_by(ORDERS[*o]);
            q.desc = *desc;
            q.limit = *limit;
            let first = items.query(&q).await;
            // Follow one cursor too, so cursors are compared as well as pages.
            let second = match &first {
                Ok(p) => match &p.next_cursor {
                    Some(c) => Some(items.query(&q.clone().cursor(c.clone())).await),
                    None => None,
                },
                Err(_) => None,
            };
            show(first.map(|p| (p, second.map(show))))
        }
        Op::Count(f) => show(items.count(&filter(*f)).await),
        Op::Scan(p) => show(
            items
                .scan_prefix(PREFIXES[*p])
                .try_collect::<Vec<_>>()
                .await,
        ),
        Op::DeletePrefix(p) => show(items.delete_prefix(PREFIXES[*p]).await),
        Op::Batch(ops) => {
            let mut b = store.batch();
            for (i, n, kind) in ops {
                let it = PropItem::new(IDS[*i], *n);
                match kind {
                    0 => b.insert(items, &it),
                    1 => b.upsert(items, &it),
                    2 => b.update(items, &it, 1),
                    _ => b.delete(items, IDS[*i]),
                };
            }
            show(b.commit().await)
        }
        Op::Mutate(i, k, x) => {
            let ttl = store.capabilities().ttl;
            show(items.mutate(IDS[*i], &mutation(*k, *x, ttl)).await)
        }
        Op::Advance(s) => {
            clock.advance(Duration::from_secs(*s));
            Ok(String::new())
        }
        Op::Purge => show(store.purge_expired().await),
    }
}

async fn run_case(
    backend: Arc<dyn Backend>,
    case: u64,
    ops: Vec<Op>,
) -> std::result::Result<(), TestCaseError> {
    let start = Timestamp::now();
    let clock = Arc::new(ManualClock::new(start));
    let ns = format!("prop{case}");
    let model_backend: Arc<dyn Backend> =
        Arc::new(MemoryBackend::with_capabilities(backend.capabilities()));
    let build = |b: Arc<dyn Backend>| {
        Store::builder(b)
            .namespace(ns.clone())
            .clock(clock.clone())
            .build()
            .expect("store")
    };
    let spec = PropItem::spec_for(backend.capabilities().unique_indexes);
    let (store, model) = (build(backend), build(model_backend));
    let items = store
        .collection_with_spec::<PropItem>("items", spec.clone())
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let model_items = model
        .collection_with_spec::<PropItem>("items", spec)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (step, op) in ops.iter().enumerate() {
        // Both stores read one clock: apply Advance once.
        let got = apply(&store, &items, &clock, op).await;
        let want = match op {
            Op::Advance(_) => Ok(String::new()),
            _ => apply(&model, &model_items, &clock, op).await,
        };
        prop_assert_eq!(&got, &want, "step {} {:?}", step, op);
    }
    store
        .drop_collection("items")
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

/// Random sequences of writes, reads, queries, batches, TTLs and purges answer the same on
/// the backend as on the memory model. `STOWAGE_PROPTEST_CASES` sets the number of cases
/// (default 64).
async fn random_operations_match_the_memory_model(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let backend = cx.store.backend().clone();
    let cases = std::env::var("STOWAGE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let counter = std::sync::atomic::AtomicU64::new(0);
        runner
            .run(&prop::collection::vec(op_strategy(), 1..40), |ops| {
                let case = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                handle.block_on(run_case(backend.clone(), case, ops))
            })
            .map_err(|e| e.to_string())
    })
    .await
    .expect("the property test runs");
    if let Err(e) = result {
        panic!("backend and memory model disagree: {e}");
    }
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![random_operations_match_the_memory_model];
