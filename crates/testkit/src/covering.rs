//! Covering indexes: an index that keeps record copies answers exactly like one that does not,
//! through updates, deletes, expiry, spec changes and reopening.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{expect_err, Ctx, Fixture};
use crate::suite::Test;
use stowage_core::{Collection, CollectionSpec, ErrorKind, Filter, IndexSpec, Put, Query};

/// Every field indexed twice: plainly and covering, so that each covering answer can be held
/// against the plain one and against the model.
fn twin_spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::float("score", "/score"))
        .index(IndexSpec::float("score_c", "/score").covering())
        .index(IndexSpec::string("tags", "/tags").multi())
        .index(IndexSpec::string("tags_c", "/tags").multi().covering())
        .index(IndexSpec::integer("n", "/n"))
}

fn body(i: i64, generation: i64) -> Value {
    json!({
        "n": i + 1000 * generation,
        "score": ((i * (7 + 4 * generation)) % 60) as f64 / 2.0 + 0.25 * generation as f64,
        "tags": [format!("t{}", (i + generation) % 3), format!("u{}", i % 4)],
        "name": format!("name-{}", i % 10),
    })
}

/// The collection "covered" as `spec` declares it (created, or its spec changed).
async fn open_covered(cx: &Ctx, spec: CollectionSpec) -> stowage_core::Result<Collection<Value>> {
    cx.store.collection_with_spec("covered", spec).await
}

/// What a query returned: id, version and body of each record, page after page.
type Rows = Vec<(String, u64, Value)>;

/// Every page of `q` (limit `page`), following cursors.
async fn all_pages(c: &Collection<Value>, q: Query, page: usize) -> Rows {
    let mut rows = Vec::new();
    let mut q = q.limit(page);
    loop {
        let p = c.query(&q).await.expect("query");
        rows.extend(p.items.into_iter().map(|r| (r.id, r.version, r.value)));
        match p.next_cursor {
            Some(cur) => q = q.cursor(cur),
            None => return rows,
        }
    }
}

fn in_score_range(v: &Value, lo: f64, hi: f64) -> bool {
    v["score"].as_f64().is_some_and(|s| s >= lo && s < hi)
}

/// Queries walking covering indexes return the same records, versions and bodies as the same
/// queries on plain indexes, and what the model holds, after updates, CAS writes, deletes
/// and expiry.
async fn covering_answers_match_plain_ones(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let c = open_covered(&cx, twin_spec()).await.unwrap();
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..60 {
        let id = format!("d{i:03}");
        c.put(&id, &body(i, 0), Put::insert()).await.unwrap();
        model.insert(id, body(i, 0));
    }
    for i in (0..60).step_by(5) {
        let id = format!("d{i:03}");
        c.put(&id, &body(i, 1), Put::upsert()).await.unwrap();
        model.insert(id, body(i, 1));
    }
    for i in (1..60).step_by(9) {
        let id = format!("d{i:03}");
        let cur = c.get(&id).await.unwrap().unwrap();
        c.put(&id, &body(i, 2), Put::update(cur.version))
            .await
            .unwrap();
        model.insert(id, body(i, 2));
    }
    for i in (3..60).step_by(7) {
        let id = format!("d{i:03}");
        assert!(c.delete(&id).await.unwrap());
        model.remove(&id);
    }
    if cx.store.capabilities().ttl {
        // Records in every range below that expire before the queries run.
        for i in 0..5 {
            c.put(
                &format!("e{i:03}"),
                &body(i, 0),
                Put::insert().ttl(Duration::from_secs(10)),
            )
            .await
            .unwrap();
        }
        cx.clock.advance(Duration::from_secs(20));
    }

    let (lo, hi) = (5.0, 20.0);
    let want: Vec<&String> = model
        .iter()
        .filter(|(_, v)| in_score_range(v, lo, hi))
        .map(|(id, _)| id)
        .collect();
    assert!(want.len() > 10, "the range should hold a fair share");
    for (page, desc) in [(1000, false), (7, false), (7, true)] {
        let q = |ix: &str| {
            let q = Query::new().gte(ix, lo).lt(ix, hi);
            if desc {
                q.descending()
            } else {
                q
            }
        };
        let covered = all_pages(&c, q("score_c"), page).await;
        let plain = all_pages(&c, q("score"), page).await;
        assert_eq!(
            covered, plain,
            "range by id, page {page}, descending {desc}"
        );
        let mut got: Vec<&String> = covered.iter().map(|(id, ..)| id).collect();
        if desc {
            got.reverse();
        }
        assert_eq!(got, want, "range by id, page {page}, descending {desc}");
        for (id, _, v) in &covered {
            assert_eq!(Some(v), model.get(id), "the body of {id}");
        }
    }
    // Walking the covering index in its own order, both ways.
    for desc in [false, true] {
        let q = |ix: &str| {
            let q = Query::new().gte(ix, lo).lt(ix, hi).order_by(ix);
            if desc {
                q.descending()
            } else {
                q
            }
        };
        let covered = all_pages(&c, q("score_c"), 4).await;
        let plain = all_pages(&c, q("score"), 4).await;
        assert_eq!(covered, plain, "ordered by score, descending {desc}");
        assert_eq!(covered.len(), want.len());
    }
    // A multi-valued covering index, with `in` naming a record twice.
    for q in [
        |ix: &str| Query::new().eq(ix, "t1"),
        |ix: &str| Query::new().any_of(ix, ["t0", "u2"]),
    ] {
        let covered = all_pages(&c, q("tags_c"), 5).await;
        let plain = all_pages(&c, q("tags"), 5).await;
        assert_eq!(covered, plain);
        assert!(!covered.is_empty());
    }
    // A predicate the covering walk does not settle is tested on the copy's entries.
    let rewritten = |ix: &str| Query::new().gte(ix, 0.0).gte("n", 1000).order_by(ix);
    let covered = all_pages(&c, rewritten("score_c"), 1000).await;
    let want: Vec<&String> = model
        .iter()
        .filter(|(_, v)| v["n"].as_i64() >= Some(1000))
        .map(|(id, _)| id)
        .collect();
    let mut got: Vec<&String> = covered.iter().map(|(id, ..)| id).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(covered, all_pages(&c, rewritten("score"), 1000).await);
    assert_eq!(
        c.count(&Filter::new().gte("score_c", lo).lt("score_c", hi))
            .await
            .unwrap(),
        model.values().filter(|v| in_score_range(v, lo, hi)).count() as u64
    );
}

/// A covering index added to a collection with records holds them all; later spec changes
/// (another index added, one dropped) and reopening leave its copies current; its covering
/// flag switches in place both ways with the same answers.
async fn covering_index_follows_spec_changes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let base = CollectionSpec::new().index(IndexSpec::integer("n", "/n"));
    // One binding, reassigned: a reopen needs every handle on the old store gone.
    let mut c = open_covered(&cx, base.clone()).await.unwrap();
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..40 {
        let id = format!("d{i:03}");
        c.put(&id, &body(i, 0), Put::insert()).await.unwrap();
        model.insert(id, body(i, 0));
    }
    let covered = base
        .clone()
        .index(IndexSpec::float("by_score", "/score").covering());
    c = open_covered(&cx, covered.clone()).await.unwrap();
    let check = |c: Collection<Value>, model: BTreeMap<String, Value>, with_name: bool| async move {
        let got = all_pages(
            &c,
            Query::new().gte("by_score", 3.0).lt("by_score", 17.0),
            6,
        )
        .await;
        let want: Vec<(String, Value)> = model
            .iter()
            .filter(|(_, v)| in_score_range(v, 3.0, 17.0))
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect();
        assert_eq!(
            got.into_iter()
                .map(|(id, _, v)| (id, v))
                .collect::<Vec<_>>(),
            want
        );
        if with_name {
            // The name index came after the covering one: the copies must know it.
            // (Predicates are taken in name order: `by_score` is walked, `name` tested on
            // what the walk found.)
            let q = Query::new().gte("by_score", 0.0).eq("name", "name-7");
            let got = all_pages(&c, q.clone(), 100).await;
            let mut by_score = all_pages(&c, q.order_by("by_score"), 100).await;
            by_score.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, by_score);
            let want: Vec<&String> = model
                .iter()
                // A record without a score is not in the walked index.
                .filter(|(_, v)| v["name"] == "name-7" && v["score"].is_number())
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got.iter().map(|(id, ..)| id).collect::<Vec<_>>(), want);
            assert!(!want.is_empty());
        }
    };
    check(c.clone(), model.clone(), false).await;

    let named = covered.clone().index(IndexSpec::string("name", "/name"));
    c = open_covered(&cx, named.clone()).await.unwrap();
    check(c.clone(), model.clone(), true).await;
    // A write after the change, moving a record into and out of the range.
    c.put("d007", &body(7, 1), Put::upsert()).await.unwrap();
    model.insert("d007".into(), body(7, 1));
    c.put("d017", &json!({"n": 17, "name": "name-7"}), Put::upsert())
        .await
        .unwrap();
    model.insert("d017".into(), json!({"n": 17, "name": "name-7"}));
    check(c.clone(), model.clone(), true).await;

    let cx = if cx.store.capabilities().persistent {
        drop(c);
        cx.reopen().await
    } else {
        cx
    };
    let mut c;
    c = cx
        .store
        .existing_collection::<Value>("covered")
        .await
        .unwrap();
    check(c.clone(), model.clone(), true).await;

    // Dropping another index rewrites the records; the copies follow.
    let without_n = CollectionSpec::new()
        .index(IndexSpec::float("by_score", "/score").covering())
        .index(IndexSpec::string("name", "/name"));
    c = open_covered(&cx, without_n.clone()).await.unwrap();
    check(c.clone(), model.clone(), true).await;

    // The flag switches in place, both ways, and the answers stay the same.
    let flipped = CollectionSpec::new()
        .index(IndexSpec::float("by_score", "/score"))
        .index(IndexSpec::string("name", "/name"));
    c = open_covered(&cx, flipped.clone()).await.unwrap();
    assert_eq!(c.spec(), flipped);
    check(c.clone(), model.clone(), true).await;
    // Written while the index keeps no copies: switching back must copy it too.
    c.put("d021", &body(21, 3), Put::upsert()).await.unwrap();
    model.insert("d021".into(), body(21, 3));
    c = open_covered(&cx, without_n.clone()).await.unwrap();
    check(c.clone(), model.clone(), true).await;
    // With any other change it is another index: refused, with the way out.
    let retyped = CollectionSpec::new()
        .index(IndexSpec::integer("by_score", "/score").covering())
        .index(IndexSpec::string("name", "/name"));
    let e = expect_err(open_covered(&cx, retyped).await, ErrorKind::AlreadyExists);
    assert!(e.message().contains("add an index under a new name"), "{e}");
    assert_eq!(c.spec(), without_n);
}

/// A query whose index finds more matches than an engine may hold in place while sorting
/// them still returns them all in id order, page after page, from a covering index and
/// from a plain one.
async fn many_matches_sort_by_id(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    const N: i64 = 20_000;
    // Ids in another order than the indexed values: 7919 is prime to N, so this permutes.
    let id = |j: i64| format!("k{:06}", (j * 7919) % N);
    let step = super::batch_step(&cx.store, 500);
    for start in (0..N).step_by(step) {
        let mut b = cx.store.batch();
        for j in start..(start + step as i64).min(N) {
            b.insert(&items, &super::Item::new(id(j), j));
        }
        b.commit().await.unwrap();
    }
    // inverse[k]: the j whose id is k.
    let mut inverse = vec![0; N as usize];
    for j in 0..N {
        inverse[((j * 7919) % N) as usize] = j;
    }
    // `score` is the suite's covering index, `n` a plain one; each walk finds every item.
    for (q, desc) in [
        (Query::new().gte("score", -10.0), false),
        (Query::new().gte("score", -10.0).descending(), true),
        (Query::new().gte("n", 0), false),
    ] {
        let mut q = q.limit(700);
        let mut got = Vec::new();
        for _ in 0..3 {
            let page = items.query(&q).await.unwrap();
            got.extend(page.items.into_iter().map(|r| (r.id, r.value.n)));
            q = q.cursor(page.next_cursor.expect("more pages"));
        }
        let want: Vec<(String, i64)> = (0..2100)
            .map(|k| if desc { N - 1 - k } else { k })
            .map(|k| (format!("k{k:06}"), inverse[k as usize]))
            .collect();
        // The first difference, not 2,100 rows of them.
        let first_diff = got.iter().zip(&want).find(|(g, w)| g != w);
        assert_eq!(first_diff, None, "descending {desc}: first difference");
        assert_eq!(got.len(), want.len(), "descending {desc}");
    }
    assert_eq!(
        items
            .count(&Filter::new().gte("score", -10.0))
            .await
            .unwrap(),
        N as u64
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    covering_answers_match_plain_ones,
    covering_index_follows_spec_changes,
    many_matches_sort_by_id
];
