//! Predicates, ordering, cursors, pages and counts.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use super::{expect_err, fill, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{ErrorKind, Filter, Query};

fn ids<T>(page: &stowage_core::Page<T>) -> Vec<String> {
    page.items.iter().map(|r| r.id.clone()).collect()
}

fn k(ns: &[i64]) -> Vec<String> {
    ns.iter().map(|n| format!("k{n:06}")).collect()
}

/// eq, in, each range operator and prefix, each alone.
async fn every_predicate(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 20).await;
    let q = |q: Query| {
        let items = items.clone();
        async move { ids(&items.query(&q).await.unwrap()) }
    };
    assert_eq!(q(Query::new().eq("n", 4)).await, k(&[4]));
    assert_eq!(q(Query::new().any_of("n", [4, 2, 99])).await, k(&[2, 4]));
    assert_eq!(q(Query::new().gt("n", 17)).await, k(&[18, 19]));
    assert_eq!(q(Query::new().gte("n", 18)).await, k(&[18, 19]));
    assert_eq!(q(Query::new().lt("n", 2)).await, k(&[0, 1]));
    assert_eq!(q(Query::new().lte("n", 1)).await, k(&[0, 1]));
    assert_eq!(
        q(Query::new().prefix("name", "name-01")).await,
        k(&[10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    );
    assert_eq!(q(Query::new().prefix("name", "name-00")).await.len(), 10);
    assert!(q(Query::new().prefix("name", "zzz")).await.is_empty());
    assert_eq!(q(Query::new().lt("score", -9.0)).await, k(&[0, 1, 2, 3]));
    let at5 = Item::new("x", 5).at.unwrap();
    assert_eq!(
        q(Query::new().lte("at", at5.clone()).gt("n", 3)).await,
        k(&[4, 5])
    );
}

/// Ranges with both ends, inclusive and exclusive, on negative floats too.
async fn range_bounds(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 20).await;
    // score = n/4 - 10: n=4 → -9.0, n=8 → -8.0
    let page = items
        .query(&Query::new().gte("score", -9.0).lt("score", -8.0))
        .await
        .unwrap();
    assert_eq!(ids(&page), k(&[4, 5, 6, 7]));
    let page = items
        .query(&Query::new().gt("score", -9.0).lte("score", -8.0))
        .await
        .unwrap();
    assert_eq!(ids(&page), k(&[5, 6, 7, 8]));
    let page = items
        .query(&Query::new().gt("n", 5).lt("n", 5))
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

/// Predicates on several indexes are ANDed.
async fn and_of_predicates(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 30).await;
    let page = items
        .query(
            &Query::new()
                .eq("active", true)
                .gte("n", 10)
                .eq("tags", "t1"),
        )
        .await
        .unwrap();
    // active: even n; tags contain t{n%3}: n%3 == 1 → 10, 16, 22, 28
    assert_eq!(ids(&page), k(&[10, 16, 22, 28]));
    assert_eq!(
        items
            .count(
                &Filter::new()
                    .eq("active", true)
                    .gte("n", 10)
                    .eq("tags", "t1")
            )
            .await
            .unwrap(),
        4
    );
}

/// Ordering by an index, ascending and descending, with ties broken by id.
async fn order_by_index_both_ways(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    let scores = [3.5, -2.0, 0.0, -7.25, 3.5, 12.0];
    for (i, s) in scores.iter().enumerate() {
        let mut it = Item::new(format!("k{i}"), i as i64);
        it.score = *s;
        items.insert(&it).await.unwrap();
    }
    let asc = items.query(&Query::new().order_by("score")).await.unwrap();
    assert_eq!(ids(&asc), vec!["k3", "k1", "k2", "k0", "k4", "k5"]);
    let desc = items
        .query(&Query::new().order_by("score").descending())
        .await
        .unwrap();
    assert_eq!(ids(&desc), vec!["k5", "k4", "k0", "k2", "k1", "k3"]);
    let by_time = items
        .query(&Query::new().order_by("at").descending().limit(2))
        .await
        .unwrap();
    assert_eq!(ids(&by_time), vec!["k5", "k4"]);
    let bounded = items
        .query(
            &Query::new()
                .gte("score", -2.0)
                .lt("score", 12.0)
                .order_by("score")
                .descending(),
        )
        .await
        .unwrap();
    assert_eq!(ids(&bounded), vec!["k4", "k0", "k2", "k1"]);
    let names = items
        .query(
            &Query::new()
                .prefix("name", "name-00")
                .order_by("name")
                .descending(),
        )
        .await
        .unwrap();
    assert_eq!(ids(&names), vec!["k5", "k4", "k3", "k2", "k1", "k0"]);
}

/// Ordering by id, both ways, with and without a filter.
async fn order_by_id_both_ways(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 10).await;
    let asc = items.query(&Query::new().limit(3)).await.unwrap();
    assert_eq!(ids(&asc), k(&[0, 1, 2]));
    let desc = items
        .query(&Query::new().order_by("id").descending().limit(3))
        .await
        .unwrap();
    assert_eq!(ids(&desc), k(&[9, 8, 7]));
    let filtered = items
        .query(&Query::new().eq("active", false).descending())
        .await
        .unwrap();
    assert_eq!(ids(&filtered), k(&[9, 7, 5, 3, 1]));
}

/// The ids of every page of `base` (its limit the page size), following cursors.
pub(super) async fn collect_pages<T>(
    items: &stowage_core::Collection<T>,
    base: Query,
) -> Vec<String>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let mut seen = Vec::new();
    let mut q = base.clone();
    loop {
        let page = items.query(&q).await.unwrap();
        seen.extend(ids(&page));
        match page.next_cursor {
            Some(c) => q = base.clone().cursor(c),
            None => return seen,
        }
    }
}

/// Walking every page of a query returns every match once, in order, for each order.
async fn cursor_pages_cover_everything_once(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 97).await;
    for base in [
        Query::new().limit(10),
        Query::new().order_by("id").descending().limit(7),
        Query::new().order_by("name").limit(9),
        Query::new().order_by("score").descending().limit(10),
        Query::new().eq("active", true).order_by("n").limit(5),
        Query::new().eq("tags", "u2").limit(4),
    ] {
        let all = ids(&items
            .query(&Query {
                limit: None,
                ..base.clone()
            })
            .await
            .unwrap());
        let paged = collect_pages(&items, base.clone()).await;
        assert_eq!(paged, all, "pages of {base:?}");
    }
    let last = items
        .query(&Query::new().gte("n", 90).limit(7))
        .await
        .unwrap();
    assert_eq!(last.items.len(), 7);
    assert!(
        last.next_cursor.is_none(),
        "no cursor when the page holds the last match"
    );
}

/// Records present throughout are seen exactly once while others are inserted between pages.
async fn cursor_under_concurrent_inserts(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 200).await;
    let writer = {
        let items = items.clone();
        tokio::spawn(async move {
            for i in 0..300i64 {
                // Interleave ids and scores all over the range.
                let mut it = Item::new(format!("k{:06}x{i}", (i * 37) % 200), i);
                it.score = ((i * 53) % 200) as f64 / 4.0 - 10.0;
                items.insert(&it).await.unwrap();
                super::yield_a_little().await;
            }
        })
    };
    for base in [
        Query::new().limit(7),
        Query::new().order_by("score").limit(6),
    ] {
        let paged = collect_pages(&items, base).await;
        let mut seen = BTreeSet::new();
        for id in &paged {
            assert!(seen.insert(id.clone()), "{id} seen twice");
        }
        for n in 0..200 {
            assert!(seen.contains(&format!("k{n:06}")), "k{n:06} lost");
        }
    }
    writer.await.unwrap();
}

/// Deleting records between pages loses no other record.
async fn cursor_survives_deletes(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 30).await;
    let base = Query::new().order_by("n").limit(10);
    let first = items.query(&base).await.unwrap();
    assert_eq!(ids(&first), k(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    // Delete the cursor's own record and the next one.
    items.delete("k000009").await.unwrap();
    items.delete("k000010").await.unwrap();
    let second = items
        .query(&base.clone().cursor(first.next_cursor.unwrap()))
        .await
        .unwrap();
    assert_eq!(ids(&second), k(&[11, 12, 13, 14, 15, 16, 17, 18, 19, 20]));
}

/// page / page_size return offset windows.
async fn page_and_page_size(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 25).await;
    let p2 = items.query(&Query::new().page(2, 10)).await.unwrap();
    assert_eq!(
        ids(&p2),
        (10..20).map(|n| format!("k{n:06}")).collect::<Vec<_>>()
    );
    let p3 = items
        .query(&Query::new().order_by("n").descending().page(3, 10))
        .await
        .unwrap();
    assert_eq!(ids(&p3), k(&[4, 3, 2, 1, 0]));
    assert!(p3.next_cursor.is_none());
    let p9 = items.query(&Query::new().page(9, 10)).await.unwrap();
    assert!(p9.items.is_empty());
    let filtered = items
        .query(&Query::new().eq("active", true).page(2, 3))
        .await
        .unwrap();
    assert_eq!(ids(&filtered), k(&[6, 8, 10]));
    expect_err(
        items.query(&Query::new().page(1, 10).limit(3)).await,
        ErrorKind::InvalidInput,
    );
}

/// count agrees with the number of records a query returns.
async fn count_matches_query(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 60).await;
    for filter in [
        Filter::new(),
        Filter::new().eq("active", true),
        Filter::new().any_of("tags", ["t0", "u1"]),
        Filter::new().gte("score", -5.0).lt("n", 50),
        Filter::new().prefix("name", "name-02"),
        Filter::new().eq("n", 1000),
    ] {
        let n = items.count(&filter).await.unwrap();
        let page = items.query(&Query::filter(filter.clone())).await.unwrap();
        assert_eq!(n, page.items.len() as u64, "count of {filter:?}");
    }
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 60);
    let q: Query = serde_json::from_value(json!({"where": {"n": {"gte": 10, "lt": 20}}})).unwrap();
    assert_eq!(items.count(&q.filter).await.unwrap(), 10);
}

/// A cursor given to a different query is refused.
async fn cursor_of_another_query_is_refused(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 10).await;
    let page = items
        .query(&Query::new().order_by("n").limit(3))
        .await
        .unwrap();
    let cursor = page.next_cursor.unwrap();
    let e = expect_err(
        items
            .query(
                &Query::new()
                    .order_by("score")
                    .limit(3)
                    .cursor(cursor.clone()),
            )
            .await,
        ErrorKind::NotFound,
    );
    assert!(e.message().contains("another query"), "{e}");
    expect_err(
        items.query(&Query::new().cursor("garbage")).await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        items
            .query(&Query::new().order_by("n").limit(3).cursor(cursor))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

/// Queries filter on the record id itself — eq, in, each range operator and prefix —
/// alone, beside index predicates, ordered by id either way or by an index, paged by
/// cursor, counted and deleted by; an expired record never matches.
async fn filter_on_id(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 20).await;
    let min = std::time::Duration::from_secs(60);
    if cx.store.capabilities().ttl {
        items
            .put(
                "k000007x",
                &Item::new("k000007x", 7),
                stowage_core::Put::insert().ttl(min),
            )
            .await
            .unwrap();
        cx.clock.advance(min + std::time::Duration::from_secs(1));
    }
    let id = |n: i64| format!("k{n:06}");
    // A filter, and which of the twenty items it keeps (by n).
    type Case = (Filter, fn(i64) -> bool);
    let cases: Vec<Case> = vec![
        (Filter::new().eq("id", id(4)), |n| n == 4),
        (Filter::new().eq("id", "k000007x"), |_| false),
        (
            Filter::new().any_of(
                "id",
                [id(9), id(2), "nope".into(), id(2), "k000007x".into()],
            ),
            |n| n == 2 || n == 9,
        ),
        (Filter::new().gt("id", id(17)), |n| n > 17),
        (Filter::new().gte("id", id(17)), |n| n >= 17),
        (Filter::new().lt("id", id(2)), |n| n < 2),
        (Filter::new().lte("id", id(2)), |n| n <= 2),
        (Filter::new().gt("id", id(3)).lte("id", id(6)), |n| {
            n > 3 && n <= 6
        }),
        (Filter::new().prefix("id", "k00001"), |n| n >= 10),
        (Filter::new().prefix("id", "k00001").lt("id", id(12)), |n| {
            (10..12).contains(&n)
        }),
        (Filter::new().gt("id", id(12)).lt("id", id(5)), |_| false),
        (Filter::new().prefix("id", "x"), |_| false),
        (
            Filter::new()
                .any_of("id", [id(1), id(2), id(3), id(4)])
                .eq("active", true),
            |n| n == 2 || n == 4,
        ),
        (
            Filter::new().prefix("id", "k00001").any_of("tags", ["t0"]),
            |n| n >= 10 && n % 3 == 0,
        ),
        (Filter::new().gte("n", 5).lt("id", id(8)), |n| {
            (5..8).contains(&n)
        }),
    ];
    for (filter, want) in &cases {
        let want_ids: Vec<String> = (0..20).filter(|n| want(*n)).map(id).collect();
        let q = Query::filter(filter.clone());
        assert_eq!(ids(&items.query(&q).await.unwrap()), want_ids, "{filter:?}");
        let mut desc = want_ids.clone();
        desc.reverse();
        let page = items.query(&q.clone().descending()).await.unwrap();
        assert_eq!(ids(&page), desc, "{filter:?} descending");
        // Pages of three by cursor, both ways.
        assert_eq!(
            collect_pages(&items, q.clone().limit(3)).await,
            want_ids,
            "{filter:?} paged"
        );
        let paged = collect_pages(&items, q.clone().descending().limit(3)).await;
        assert_eq!(paged, desc, "{filter:?} paged descending");
        let by_n = items
            .query(&q.clone().order_by("n").descending())
            .await
            .unwrap();
        assert_eq!(ids(&by_n), desc, "{filter:?} by n");
        assert_eq!(
            items.count(filter).await.unwrap(),
            want_ids.len() as u64,
            "{filter:?} count"
        );
    }
    let q: Query =
        serde_json::from_value(json!({"where": {"id": {"in": [id(3), id(5)]}}})).unwrap();
    assert_eq!(ids(&items.query(&q).await.unwrap()), [id(3), id(5)]);
    let e = items.query(&Query::new().eq("id", "a\0b")).await;
    expect_err(e, ErrorKind::InvalidInput);
    let e = items.query(&Query::new().eq("id", 3)).await;
    expect_err(e, ErrorKind::InvalidInput);
    assert_eq!(
        items
            .delete_where(&Filter::new().prefix("id", "k00001").gte("id", id(15)))
            .await
            .unwrap(),
        5
    );
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 15);
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    every_predicate,
    range_bounds,
    and_of_predicates,
    order_by_index_both_ways,
    order_by_id_both_ways,
    cursor_pages_cover_everything_once,
    cursor_under_concurrent_inserts,
    cursor_survives_deletes,
    page_and_page_size,
    count_matches_query,
    cursor_of_another_query_is_refused,
    filter_on_id
];
