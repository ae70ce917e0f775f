//! Scans and prefix deletes.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};

use super::probe::Probe;
use super::{expect_err, fill, Ctx, Fixture, Item};
use crate::suite::Test;
use stowage_core::{ErrorKind, Filter, Store};

/// A scan of 100,000 records streams them in id order while never holding more than one
/// page of records the caller has not consumed.
async fn scan_100k_in_bounded_pages(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let probe = Arc::new(Probe::new(cx.store.backend().clone()));
    let store = Store::builder(probe.clone()).build().unwrap();
    let items = store.collection::<Item>().await.unwrap();
    const N: i64 = 100_000;
    fill(&items, &store, "k", N).await;
    let mut stream = Box::pin(items.scan());
    let mut consumed = 0u64;
    let mut last: Option<String> = None;
    let mut max_ahead = 0u64;
    while let Some(r) = stream.next().await {
        let r = r.unwrap();
        consumed += 1;
        if let Some(prev) = &last {
            assert!(*prev < r.id, "ids ascend");
        }
        last = Some(r.id);
        max_ahead = max_ahead.max(probe.scanned() - consumed);
    }
    assert_eq!(consumed, N as u64);
    let page = probe.largest_scan_limit() as u64;
    assert!(page <= 1024, "scan pages are small (asked for {page})");
    assert!(
        max_ahead < page,
        "at most one page is buffered ({max_ahead} ahead)"
    );
}

/// scan_prefix returns exactly the ids with the prefix, in order.
async fn scan_prefix(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "user:", 300).await;
    fill(&items, &cx.store, "users:", 5).await;
    fill(&items, &cx.store, "u", 5).await;
    let got: Vec<_> = items.scan_prefix("user:0001").try_collect().await.unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.id.clone()).collect();
    let want: Vec<_> = (100..200).map(|n| format!("user:{n:06}")).collect();
    assert_eq!(ids, want);
    let all_users: Vec<_> = items.scan_prefix("user:").try_collect().await.unwrap();
    assert_eq!(all_users.len(), 300);
    let none: Vec<_> = items.scan_prefix("zzz").try_collect().await.unwrap();
    assert!(none.is_empty());
    let everything: Vec<_> = items.scan().try_collect().await.unwrap();
    assert_eq!(everything.len(), 310);
}

/// delete_prefix removes exactly the ids with the prefix, index entries included.
async fn delete_prefix(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "notification:subscription:", 40).await;
    fill(&items, &cx.store, "notification:sub", 3).await;
    fill(&items, &cx.store, "other:", 10).await;
    assert_eq!(
        items
            .delete_prefix("notification:subscription:")
            .await
            .unwrap(),
        40
    );
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 13);
    assert_eq!(
        items.count(&Filter::new().eq("n", 1)).await.unwrap(),
        2,
        "index entries went too"
    );
    assert_eq!(
        items
            .delete_prefix("notification:subscription:")
            .await
            .unwrap(),
        0
    );
    expect_err(items.delete_prefix("").await, ErrorKind::InvalidInput);
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 13);
}

/// list pages through ids (optionally by prefix) with cursors, each id once.
async fn list_pages_by_cursor(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "a:", 25).await;
    fill(&items, &cx.store, "b:", 5).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = items.list(Some("a:"), cursor.as_deref(), 7).await.unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|r| r.id));
        // Inserting between pages, before the cursor, does not repeat anything.
        items
            .insert(&Item::new(format!("a:{:06}z", seen.len()), 0))
            .await
            .ok();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ascending, each once");
    for n in 0..25 {
        assert!(seen.contains(&format!("a:{n:06}")));
    }
    assert!(seen.iter().all(|id| id.starts_with("a:")));
    let all = items.list(None, None, 1000).await.unwrap();
    assert!(all.next_cursor.is_none());
    let other = items.list(Some("b:"), None, 2).await.unwrap();
    let e = expect_err(
        items
            .list(Some("a:"), other.next_cursor.as_deref(), 2)
            .await,
        ErrorKind::NotFound,
    );
    assert!(e.message().contains("another query"), "{e}");
    expect_err(items.list(None, None, 0).await, ErrorKind::InvalidInput);
}

/// delete_where deletes exactly the matches, across several chunks, and counts them.
async fn delete_where_in_chunks(f: Arc<dyn Fixture>) {
    let cx = Ctx::new(f).await;
    let items = cx.items().await;
    fill(&items, &cx.store, "k", 2600).await;
    // Even n: 1,300 matches, more than one chunk.
    let gone = items
        .delete_where(&Filter::new().eq("active", true))
        .await
        .unwrap();
    assert_eq!(gone, 1300);
    assert_eq!(items.count(&Filter::new()).await.unwrap(), 1300);
    assert_eq!(
        items
            .count(&Filter::new().eq("active", true))
            .await
            .unwrap(),
        0
    );
    assert!(items.get("k000001").await.unwrap().is_some());
    assert!(items.get("k000002").await.unwrap().is_none());
    assert_eq!(
        items
            .delete_where(&Filter::new().eq("active", true))
            .await
            .unwrap(),
        0
    );
    expect_err(
        items.delete_where(&Filter::new()).await,
        ErrorKind::InvalidInput,
    );
    expect_err(
        items.delete_where(&Filter::new().eq("nope", 1)).await,
        ErrorKind::InvalidInput,
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] = crate::tests![
    scan_100k_in_bounded_pages,
    scan_prefix,
    delete_prefix,
    list_pages_by_cursor,
    delete_where_in_chunks
];
