//! Typed reads through layers: a layer that leaves bodies alone hands them on as the engine
//! lends them (`get_with`, `query_each`); a layer that rewrites bodies is never bypassed.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use stowage_core::backend::{Backend, OnHit, OnRecord, QueryHit, QueryRequest};
use stowage_core::layer::{Layer, MetricsLayer, PassThrough, TracingLayer};
use stowage_core::{
    Body, CollectionSpec, MemoryBackend, Put, Query, Result, Store, StoredRecord, Timestamp,
};

/// Stands for an engine that reads in place: counts the reads lent out.
#[derive(Debug)]
struct Lender {
    inner: Arc<dyn Backend>,
    lent: Arc<AtomicU64>,
}

#[async_trait]
impl Layer for Lender {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
    async fn get_with(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
        read: &mut OnRecord<'_>,
    ) -> Result<()> {
        self.lent.fetch_add(1, Ordering::SeqCst);
        self.inner.get_with(ns, c, id, now, read).await
    }
    async fn query_each(
        &self,
        ns: &str,
        r: &QueryRequest,
        now: Timestamp,
        each: &mut OnHit<'_>,
    ) -> Result<()> {
        self.lent.fetch_add(1, Ordering::SeqCst);
        self.inner.query_each(ns, r, now, each).await
    }
}

/// Rewrites every body it reads (as a codec does): adds `"seen": true`.
#[derive(Debug)]
struct Rewriting {
    inner: Arc<dyn Backend>,
}

fn seen(mut rec: StoredRecord) -> StoredRecord {
    let mut v: serde_json::Value = serde_json::from_slice(&rec.body.bytes).unwrap();
    v["seen"] = json!(true);
    rec.body = Body::json(serde_json::to_vec(&v).unwrap());
    rec
}

#[async_trait]
impl Layer for Rewriting {
    fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
    async fn get(
        &self,
        ns: &str,
        c: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<StoredRecord>> {
        Ok(self.inner.get(ns, c, id, now).await?.map(seen))
    }
    async fn query(&self, ns: &str, r: &QueryRequest, now: Timestamp) -> Result<Vec<QueryHit>> {
        let hits = self.inner.query(ns, r, now).await?;
        Ok(hits
            .into_iter()
            .map(|h| QueryHit {
                record: seen(h.record),
                ..h
            })
            .collect())
    }
}

/// Writes two records through `store`, then reads them typed: one get, one query.
async fn typed_reads(store: &Store) -> (serde_json::Value, Vec<serde_json::Value>) {
    let c = store
        .collection_with_spec::<serde_json::Value>("c", CollectionSpec::new())
        .await
        .unwrap();
    c.put("a", &json!({"n": 1}), Put::insert()).await.unwrap();
    c.put("b", &json!({"n": 2}), Put::insert()).await.unwrap();
    let got = c.get("a").await.unwrap().unwrap().value;
    let page = c.query(&Query::new()).await.unwrap();
    (got, page.items.into_iter().map(|r| r.value).collect())
}

#[tokio::test]
async fn body_neutral_layers_hand_on_what_the_engine_lends() {
    let lent = Arc::new(AtomicU64::new(0));
    let engine: Arc<dyn Backend> = Arc::new(Lender {
        inner: Arc::new(MemoryBackend::new()),
        lent: lent.clone(),
    });
    let store = Store::builder(engine)
        .layer(|b| Arc::new(MetricsLayer::new(b)))
        .layer(|b| Arc::new(TracingLayer::new(b)))
        .layer(|b| Arc::new(PassThrough::new(b)))
        .build()
        .unwrap();
    let (got, listed) = typed_reads(&store).await;
    assert_eq!(got, json!({"n": 1}));
    assert_eq!(listed, vec![json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(
        lent.load(Ordering::SeqCst),
        2,
        "the get and the query reached the engine's in-place reads"
    );
}

#[tokio::test]
async fn a_layer_that_rewrites_bodies_is_not_bypassed() {
    let lent = Arc::new(AtomicU64::new(0));
    let engine: Arc<dyn Backend> = Arc::new(Lender {
        inner: Arc::new(MemoryBackend::new()),
        lent: lent.clone(),
    });
    let store = Store::builder(engine)
        .layer(|b| Arc::new(Rewriting { inner: b }))
        .layer(|b| Arc::new(MetricsLayer::new(b)))
        .build()
        .unwrap();
    let (got, listed) = typed_reads(&store).await;
    assert_eq!(got, json!({"n": 1, "seen": true}));
    assert_eq!(
        listed,
        vec![json!({"n": 1, "seen": true}), json!({"n": 2, "seen": true})]
    );
    assert_eq!(
        lent.load(Ordering::SeqCst),
        0,
        "reads went through the rewriting layer's own get and query"
    );
}
