//! Tests every embedded engine (one file or folder, owned by one process, with a group
//! commit and a change log kept in the store) runs on stores of its own: the fixture hands
//! them backends, since how to open a store with given options is the engine's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use stowage_core::backend::Backend;
use stowage_core::{
    CollectionSpec, ErrorKind, Filter, IndexSpec, ManualClock, Put, Query, Store, Timestamp,
};

fn spec() -> CollectionSpec {
    CollectionSpec::new()
        .index(IndexSpec::float("score", "/score"))
        .index(IndexSpec::string("tags", "/tags").multi())
        .index(IndexSpec::string("email", "/email").unique())
}

/// 500 records with unique, multi-valued and float indexes, half with a TTL, written,
/// the store closed and opened again (`open` opens the same store each time): every record,
/// index entry, unique value and TTL is there.
pub async fn reopen_finds_every_record_index_entry_and_ttl(open: impl Fn() -> Arc<dyn Backend>) {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let store = |b: Arc<dyn Backend>| Store::builder(b).clock(clock.clone()).build().unwrap();
    {
        let s = store(open());
        let c = s
            .collection_with_spec::<serde_json::Value>("c", spec())
            .await
            .unwrap();
        for i in 0..500 {
            let body = json!({"score": f64::from(i) / 10.0, "tags": [format!("t{}", i % 5)], "email": format!("u{i}@x")});
            let put = if i % 2 == 0 {
                Put::insert().ttl(Duration::from_secs(60))
            } else {
                Put::insert()
            };
            c.put(&format!("k{i:04}"), &body, put).await.unwrap();
        }
    }
    let s = store(open());
    let c = s
        .existing_collection::<serde_json::Value>("c")
        .await
        .unwrap();
    assert_eq!(c.spec(), spec());
    for i in [0, 1, 250, 499] {
        let r = c.get(&format!("k{i:04}")).await.unwrap().unwrap();
        assert_eq!(r.value["email"], format!("u{i}@x"));
        assert_eq!(r.expires_at.is_some(), i % 2 == 0);
    }
    let page = c
        .query(&Query::new().gte("score", 10.0).lt("score", 11.0))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 10);
    assert_eq!(c.count(&Filter::new().eq("tags", "t3")).await.unwrap(), 100);
    let e = c
        .put("dup", &json!({"email": "u7@x"}), Put::insert())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.index()),
        (ErrorKind::AlreadyExists, Some("email"))
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        c.count(&Filter::new()).await.unwrap(),
        250,
        "TTLs survived the reopen"
    );
    assert_eq!(s.purge_expired().await.unwrap(), 250);
    assert_eq!(c.count(&Filter::new().eq("tags", "t3")).await.unwrap(), 50);
}

/// With relaxed durability (`relaxed` opens the store with a 20 ms flush interval), a
/// clean close keeps every acknowledged write, including those after the last flush.
pub async fn relaxed_durability_keeps_everything_across_a_clean_close(
    relaxed: impl Fn() -> Arc<dyn Backend>,
) {
    {
        let store = Store::from_backend(relaxed());
        let c = store
            .collection_with_spec::<serde_json::Value>("c", spec())
            .await
            .unwrap();
        for i in 0..300 {
            let body = json!({"score": f64::from(i), "tags": ["x"], "email": format!("{i}@x")});
            c.put(&format!("k{i}"), &body, Put::insert()).await.unwrap();
            if i == 150 {
                // Let an interval pass so a durable flush happens mid-stream.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let store = Store::from_backend(relaxed());
    let c = store
        .existing_collection::<serde_json::Value>("c")
        .await
        .unwrap();
    assert_eq!(c.count(&Filter::new().eq("tags", "x")).await.unwrap(), 300);
}

/// 64 concurrent writes to `backend`, half of them failing (a unique value or an id
/// taken), take fewer than 64 commits (`commits` counts the engine's), and exactly the
/// successful ones are stored. Run it on a multi-threaded runtime.
pub async fn concurrent_writers_share_commits_and_a_failing_write_fails_alone(
    backend: Arc<dyn Backend>,
    commits: impl Fn() -> u64,
) {
    let store = Store::from_backend(backend);
    let c = store
        .collection_with_spec::<serde_json::Value>("c", spec())
        .await
        .unwrap();
    c.put("taken", &json!({"email": "taken@x"}), Put::insert())
        .await
        .unwrap();
    let before = commits();
    // 64 writers at once: even ones insert fresh records, odd ones clash on the unique
    // email or insert an existing id, so their failures land inside shared commits.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let (id, email) = match i % 4 {
                    1 => (format!("k{i}"), "taken@x".to_owned()),
                    3 => ("taken".to_owned(), format!("{i}@x")),
                    _ => (format!("k{i}"), format!("{i}@x")),
                };
                c.put(
                    &id,
                    &json!({"email": email, "score": f64::from(i)}),
                    Put::insert(),
                )
                .await
                .map(|m| m.version)
            })
        })
        .collect();
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match (i % 2, t.await.unwrap()) {
            (0, Ok(1)) => ok += 1,
            (1, Err(e)) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
            (_, other) => panic!("writer {i}: {other:?}"),
        }
    }
    assert_eq!(ok, 32);
    let commits = commits() - before;
    assert!(
        commits < 64,
        "64 writes took {commits} commits: they were not grouped"
    );
    assert_eq!(
        c.count(&Filter::new()).await.unwrap(),
        33,
        "every successful write is there, no failed one"
    );
    assert_eq!(
        c.count(&Filter::new().eq("email", "taken@x"))
            .await
            .unwrap(),
        1
    );
}

async fn next_change(s: &mut stowage_core::ChangeStream) -> stowage_core::ChangeEvent {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// A watcher's token still works after restarts (`open` opens the same store again each
/// time, the previous one closed): it gets exactly the changes made while nobody watched.
pub async fn a_watcher_resumes_after_a_restart_from_its_token(open: impl Fn() -> Arc<dyn Backend>) {
    let token = {
        let s = Store::from_backend(open());
        let c = s
            .collection_with_spec::<serde_json::Value>("c", CollectionSpec::new())
            .await
            .unwrap();
        let mut w = c.watch(None).await.unwrap();
        c.put("a", &json!(1), Put::insert()).await.unwrap();
        let e = next_change(&mut w).await;
        assert_eq!(e.id.as_deref(), Some("a"));
        e.token
    };
    // Nobody watches while these happen, across a restart.
    {
        let s = Store::from_backend(open());
        let c = s
            .existing_collection::<serde_json::Value>("c")
            .await
            .unwrap();
        c.put("b", &json!(2), Put::insert()).await.unwrap();
        c.put("a", &json!(3), Put::upsert()).await.unwrap();
        assert!(c.delete("b").await.unwrap());
    }
    let s = Store::from_backend(open());
    let mut w = s.watch(Some(token)).await.unwrap();
    let missed: Vec<_> = [
        next_change(&mut w).await,
        next_change(&mut w).await,
        next_change(&mut w).await,
    ]
    .into_iter()
    .map(|e| (e.op, e.id.unwrap(), e.version.unwrap(), e.token))
    .collect();
    use stowage_core::ChangeOp::{Delete, Put as Wrote};
    assert_eq!(
        missed,
        vec![
            (Wrote, "b".to_owned(), 1, token + 1),
            (Wrote, "a".to_owned(), 2, token + 2),
            (Delete, "b".to_owned(), 1, token + 3),
        ]
    );
}

/// On `backend`, whose change log keeps 50 changes per namespace, a token older than the
/// log gets a gap event, then the 50 changes kept.
pub async fn a_token_older_than_the_log_gets_a_gap_then_what_is_kept(backend: Arc<dyn Backend>) {
    let s = Store::from_backend(backend);
    let c = s
        .collection_with_spec::<serde_json::Value>("c", CollectionSpec::new())
        .await
        .unwrap();
    let mut w = s.watch(None).await.unwrap();
    for i in 0..120 {
        c.put(&format!("k{i:03}"), &json!(i), Put::insert())
            .await
            .unwrap();
    }
    let first = next_change(&mut w).await.token;
    drop(w);
    let mut again = s.watch(Some(first)).await.unwrap();
    let gap = next_change(&mut again).await;
    assert_eq!(gap.op, stowage_core::ChangeOp::Gap);
    let mut tokens = Vec::new();
    for _ in 0..50 {
        let e = next_change(&mut again).await;
        assert_eq!(e.op, stowage_core::ChangeOp::Put);
        tokens.push(e.token);
    }
    let last = first + 119;
    assert_eq!(tokens, ((last - 49)..=last).collect::<Vec<_>>());
}
