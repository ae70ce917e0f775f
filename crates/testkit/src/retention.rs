//! Retention rules: records older than their collection keeps are purged, the others kept,
//! and one instance purges a namespace at a time.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{expect_err, Ctx, Fixture};
use crate::suite::Test;
use stowage_core::{
    Body, Clock, CollectionSpec, ErrorKind, IndexSpec, Put, RetainFrom, StoredRecord, Timestamp,
};
use stowage_ops::MAINTENANCE_NAMESPACE;
use stowage_ops::{release_lease, take_lease};

const HOUR: Duration = Duration::from_secs(3600);

/// A record created and last written `created_ago` and `updated_ago` before `now`.
fn aged(id: &str, now: Timestamp, created_ago: Duration, updated_ago: Duration) -> StoredRecord {
    let ago = |d: Duration| Timestamp::from_micros(now.as_micros() - d.as_micros() as i64);
    StoredRecord {
        id: id.to_owned(),
        version: 3,
        created_at: ago(created_ago),
        updated_at: ago(updated_ago),
        expires_at: None,
        body: Body::json(json!({"id": id}).to_string().into_bytes()),
    }
}

/// Rules counting from `created_at`, `updated_at` and a timestamp field (with an index on
/// it, and without) each purge exactly the records past them; the rule is kept with the
/// spec; a field that is not a JSON pointer is refused.
async fn rules_purge_what_is_past_them(f: Arc<dyn Fixture>) {
    let ctx = Ctx::new(f).await;
    let now = ctx.clock.now();
    let history = ctx
        .store
        .collection_with_spec::<Value>(
            "history",
            CollectionSpec::new().retain(24 * HOUR, RetainFrom::CreatedAt),
        )
        .await
        .unwrap();
    let sessions = ctx
        .store
        .collection_with_spec::<Value>(
            "sessions",
            CollectionSpec::new().retain(2 * HOUR, RetainFrom::UpdatedAt),
        )
        .await
        .unwrap();
    let metrics = ctx
        .store
        .collection_with_spec::<Value>(
            "metrics",
            CollectionSpec::new()
                .index(IndexSpec::timestamp("at", "/at"))
                .retain(7 * 24 * HOUR, RetainFrom::Field("/at".into())),
        )
        .await
        .unwrap();
    // The same rule without an index on the field: the purge reads the records.
    let alerts = ctx
        .store
        .collection_with_spec::<Value>(
            "alerts",
            CollectionSpec::new().retain(7 * 24 * HOUR, RetainFrom::Field("/at".into())),
        )
        .await
        .unwrap();
    let plain = ctx.plain("kept").await;
    history
        .restore_all(&[
            aged("old", now, 25 * HOUR, HOUR),
            aged("new", now, 23 * HOUR, 23 * HOUR),
        ])
        .await
        .unwrap();
    sessions
        .restore_all(&[
            aged("idle", now, 3 * HOUR, 3 * HOUR),
            aged("busy", now, 30 * HOUR, HOUR),
        ])
        .await
        .unwrap();
    let at = |days_ago: i64| {
        Timestamp::from_micros(now.as_micros() - days_ago * 86_400_000_000).to_rfc3339()
    };
    for (id, body) in [
        ("m8", json!({"at": at(8)})),
        ("m6", json!({"at": at(6)})),
        ("m30", json!({"at": at(30)})),
        ("no-time", json!({"v": 1})),
    ] {
        metrics.put(id, &body, Put::insert()).await.unwrap();
        alerts.put(id, &body, Put::insert()).await.unwrap();
    }
    alerts
        .put("not-a-time", &json!({"at": "yesterday"}), Put::insert())
        .await
        .unwrap();
    plain
        .restore(&aged("ancient", now, 9999 * HOUR, 9999 * HOUR))
        .await
        .unwrap();

    let report = stowage_ops::purge_retention(&ctx.store).await.unwrap();
    assert_eq!((report.purged, report.skipped), (6, false));
    let ids = |c: &stowage_core::Collection<Value>| {
        let c = c.clone();
        async move {
            let mut ids = Vec::new();
            for id in [
                "old",
                "new",
                "idle",
                "busy",
                "m8",
                "m6",
                "m30",
                "no-time",
                "not-a-time",
                "ancient",
            ] {
                if c.get(id).await.unwrap().is_some() {
                    ids.push(id);
                }
            }
            ids
        }
    };
    assert_eq!(ids(&history).await, vec!["new"]);
    assert_eq!(ids(&sessions).await, vec!["busy"]);
    assert_eq!(ids(&metrics).await, vec!["m6", "no-time"]);
    assert_eq!(ids(&alerts).await, vec!["m6", "no-time", "not-a-time"]);
    assert_eq!(
        ids(&plain).await,
        vec!["ancient"],
        "no rule, nothing purged"
    );
    assert_eq!(
        stowage_ops::purge_retention(&ctx.store)
            .await
            .unwrap()
            .purged,
        0
    );

    // The rule is part of the stored spec, and the maintenance namespace stays hidden.
    let specs = ctx.second().await.collections().await.unwrap();
    let rule = |name: &str| {
        specs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| s.retention.clone())
    };
    assert_eq!(rule("history").unwrap().keep(), 24 * HOUR);
    assert_eq!(
        rule("metrics").unwrap().from,
        RetainFrom::Field("/at".into())
    );
    assert!(!ctx
        .store
        .namespaces()
        .await
        .unwrap()
        .iter()
        .any(|n| n == MAINTENANCE_NAMESPACE));

    expect_err(
        ctx.store
            .collection_with_spec::<Value>(
                "bad",
                CollectionSpec::new().retain(HOUR, RetainFrom::Field("at".into())),
            )
            .await,
        ErrorKind::InvalidInput,
    );
    let zero: stowage_core::Result<CollectionSpec> =
        CollectionSpec::from_json(r#"{"retention": {"keep_seconds": 0, "from": "created_at"}}"#);
    expect_err(zero, ErrorKind::InvalidInput);
}

/// While another instance holds the namespace's purge lease, a purge skips and removes
/// nothing; once it is released (or runs out), the purge runs.
async fn one_instance_purges_at_a_time(f: Arc<dyn Fixture>) {
    let ctx = Ctx::new(f).await;
    let now = ctx.clock.now();
    let history = ctx
        .store
        .collection_with_spec::<Value>(
            "history",
            CollectionSpec::new().retain(HOUR, RetainFrom::CreatedAt),
        )
        .await
        .unwrap();
    history
        .restore(&aged("old", now, 2 * HOUR, 2 * HOUR))
        .await
        .unwrap();
    let other = ctx.second().await;
    let lease = format!("retention:{}", ctx.store.namespace_name());
    let held = take_lease(other.backend(), &lease, "other", now)
        .await
        .unwrap()
        .expect("the lease is free");
    assert_eq!(
        take_lease(ctx.store.backend(), &lease, "third", now)
            .await
            .unwrap(),
        None,
        "a lease held is not taken twice"
    );
    let report = stowage_ops::purge_retention(&ctx.store).await.unwrap();
    assert!(report.skipped);
    assert_eq!(report.purged, 0);
    assert!(history.get("old").await.unwrap().is_some());
    release_lease(other.backend(), &lease, held, now).await;
    let report = stowage_ops::purge_retention(&ctx.store).await.unwrap();
    assert_eq!((report.purged, report.skipped), (1, false));

    // A lease that ran out is taken over.
    take_lease(other.backend(), &lease, "other", now)
        .await
        .unwrap()
        .expect("free again");
    ctx.clock
        .advance(stowage_ops::LEASE + Duration::from_secs(1));
    assert!(
        !stowage_ops::purge_retention(&ctx.store)
            .await
            .unwrap()
            .skipped
    );
}

/// The group's tests. A test function missing here is dead code, which this crate denies.
pub(crate) const TESTS: &[Test] =
    crate::tests![rules_purge_what_is_past_them, one_instance_purges_at_a_time];
