//! The conformance suite through the codec layer (feature `testkit`): [`sealed`] wraps any
//! engine's fixture so every store the suite makes compresses (from 16 bytes, so nearly
//! every body) and encrypts; [`shred_leaves_other_namespaces_intact`] runs over two
//! instances of any engine.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;

use stowage_core::backend::Backend;
use stowage_testkit::{Fixture, Wrapped};

use crate::{CodecConfig, CodecLayer, KeyRing};

/// `inner`'s stores, each behind a codec layer that compresses and seals with one key
/// ring.
pub fn sealed<F: Fixture>(inner: F) -> Wrapped<F> {
    let ring = KeyRing::generate();
    Wrapped::new(inner, move |engine| {
        let config = CodecConfig::new().compress_from(16).encrypt(ring.clone());
        Ok(Arc::new(CodecLayer::new(engine, config)?) as Arc<dyn Backend>)
    })
}

/// Crypto-shredding, over two instances of one store (`first` and `second`: the same
/// engine handle for an embedded engine, two connections for a shared one). Records of
/// two namespaces are written through the first and read through the second; a copy of
/// the first namespace's stored records is taken (as a backup would hold them); the first
/// instance shreds that namespace. Then it is unreadable through both instances (the
/// second within its key cache time) and from the copy put back, while the other namespace
/// reads as before, and the shredded namespace takes new records under a new key.
pub async fn shred_leaves_other_namespaces_intact(
    first: Arc<dyn Backend>,
    second: Arc<dyn Backend>,
) {
    use std::time::{Duration, Instant};

    use futures_util::TryStreamExt;
    use serde_json::{json, Value};
    use stowage_core::{ErrorKind, Put, Store, StoredRecord};

    let ring = KeyRing::generate();
    let cache = Duration::from_millis(300);
    let layer = |engine: &Arc<dyn Backend>| {
        let config = CodecConfig::new().encrypt(ring.clone()).key_cache(cache);
        Arc::new(CodecLayer::new(engine.clone(), config).expect("binary bodies"))
    };
    let (a_layer, b_layer) = (layer(&first), layer(&second));
    let a = Store::from_backend(a_layer.clone());
    let b = Store::from_backend(b_layer);
    let spec = stowage_core::CollectionSpec::new()
        .index(stowage_core::IndexSpec::string("owner", "/owner"));
    for ns in ["tenant1", "tenant2"] {
        let notes = a
            .namespace(ns)
            .expect("name")
            .collection_with_spec::<Value>("notes", spec.clone())
            .await
            .expect("collection");
        for i in 0..20 {
            let body = json!({"owner": ns, "text": format!("note {i} of {ns}")});
            notes
                .put(&format!("n{i:02}"), &body, Put::insert())
                .await
                .expect("put");
        }
    }
    let notes_of = |store: &Store, ns: &str| {
        let s = store.namespace(ns).expect("name");
        async move { s.existing_collection::<Value>("notes").await }
    };
    let b1 = notes_of(&b, "tenant1").await.expect("collection");
    assert_eq!(
        b1.get("n03").await.expect("get").expect("found").value["owner"],
        "tenant1"
    );
    // What a backup taken now holds: the stored (sealed) records, straight from the engine.
    let engine_copy = Store::from_backend(first.clone())
        .namespace("tenant1")
        .expect("name");
    let backup: Vec<StoredRecord> = engine_copy
        .existing_collection::<Value>("notes")
        .await
        .expect("collection")
        .scan_stored(None)
        .try_collect()
        .await
        .expect("scan");
    assert_eq!(backup.len(), 20);

    assert!(a_layer.shred("tenant1").await.expect("shred"));
    let shredded_at = Instant::now();
    let a1 = notes_of(&a, "tenant1").await.expect("collection");
    let e = a1.get("n03").await.expect_err("shredded");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("shredded"), "{e}");
    // The other instance stops reading it within its key cache time (and a margin for a
    // loaded machine).
    loop {
        match b1.get("n03").await {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                break;
            }
            Ok(_) => assert!(
                shredded_at.elapsed() < cache + Duration::from_secs(2),
                "the second instance still reads after {:?}",
                shredded_at.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a1
        .query(&stowage_core::Query::new().eq("owner", "tenant1"))
        .await
        .is_err());
    // The other namespace is intact through both.
    for store in [&a, &b] {
        let other = notes_of(store, "tenant2").await.expect("collection");
        let all: Vec<_> = other.scan().try_collect().await.expect("scan");
        assert_eq!(all.len(), 20);
        assert!(all.iter().all(|r| r.value["owner"] == "tenant2"));
    }
    // New records in the shredded namespace get a new key; the old copy, put back, does
    // not open under it.
    a1.put(
        "fresh",
        &json!({"owner": "tenant1", "text": "after"}),
        Put::insert(),
    )
    .await
    .expect("put after shred");
    assert_eq!(
        a1.get("fresh").await.expect("get").expect("found").value["text"],
        "after"
    );
    // Put back below the layer, as a restore of the engine's records would.
    let revision = first
        .load_spec("tenant1", "notes")
        .await
        .expect("spec")
        .expect("collection")
        .revision;
    let ops = backup
        .iter()
        .map(|rec| stowage_core::backend::WriteOp {
            collection: "notes".to_owned(),
            revision,
            id: rec.id.clone(),
            precondition: stowage_core::Precondition::None,
            action: stowage_core::backend::WriteAction::Restore {
                meta: stowage_core::RecordMeta::of(rec),
                body: rec.body.clone(),
                index: Vec::new(),
            },
        })
        .collect();
    first
        .write("tenant1", ops, stowage_core::Timestamp::now())
        .await
        .expect("put the copy back");
    for rec in backup.iter().take(3) {
        let e = a1
            .get(&rec.id)
            .await
            .expect_err("an old copy stays unreadable");
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    }
}

/// Writes two records, `a` and `b`, of collection `notes` in the default namespace of
/// `engine` through an encrypting codec layer — bodies holding `secret-body-<id>`, a blind
/// unique index `email` over `secret-mail-<id>@example.org`, a plain integer index `n` —
/// and checks that the blind index finds `b`. For tests that then read the engine's bytes
/// by hand (no `secret-` may appear) and damage them; the collection, to read back.
pub async fn sealed_notes(engine: Arc<dyn Backend>) -> stowage_core::Collection<serde_json::Value> {
    use serde_json::{json, Value};
    use stowage_core::{CollectionSpec, IndexSpec, Put, Query, Store};

    let config = CodecConfig::new().encrypt(KeyRing::generate());
    let store = Store::from_backend(Arc::new(CodecLayer::new(engine, config).expect("codec")));
    let notes = store
        .collection_with_spec::<Value>(
            "notes",
            CollectionSpec::new()
                .index(IndexSpec::integer("n", "/n"))
                .index(IndexSpec::string("email", "/email").blind().unique()),
        )
        .await
        .expect("collection");
    for (id, n) in [("a", 1), ("b", 2)] {
        let body = json!({
            "n": n,
            "email": format!("secret-mail-{id}@example.org"),
            "text": format!("secret-body-{id} {}", "words ".repeat(80)),
        });
        notes.put(id, &body, Put::insert()).await.expect("put");
    }
    let found = notes
        .query(&Query::new().eq("email", "secret-mail-b@example.org"))
        .await
        .expect("query");
    assert_eq!(found.items.len(), 1);
    notes
}
