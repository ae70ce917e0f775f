//! What reaches the engine: read back raw from a redb file, an encrypted body and the
//! values of a blind index leave no trace of their plaintext, while the same record
//! stored plainly with a plain index does (so the check can fail).

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;
use stowage_codec::{CodecConfig, CodecLayer, KeyRing};
use stowage_core::{CollectionSpec, IndexSpec, Put, Query, Store};
use stowage_redb::{RedbBackend, RedbConfig};

const MARKER: &str = "patient-record-7f3a9c";
const EMAIL: &str = "jane.doe.4711@example.org";

async fn write_through(path: &std::path::Path, config: Option<CodecConfig>, blind: bool) {
    let backend: Arc<dyn stowage_core::backend::Backend> =
        Arc::new(RedbBackend::open(RedbConfig::new(path)).unwrap());
    let mut builder = Store::builder(backend);
    if let Some(config) = config {
        builder = builder.layer(move |inner| Arc::new(CodecLayer::new(inner, config).unwrap()));
    }
    let store = builder.build().unwrap();
    let email = IndexSpec::string("email", "/email").unique();
    let spec = CollectionSpec::new().index(if blind { email.blind() } else { email });
    let c = store
        .collection_with_spec::<serde_json::Value>("notes", spec)
        .await
        .unwrap();
    let body = json!({"email": EMAIL, "text": format!("{MARKER} {}", "lorem ipsum ".repeat(50))});
    c.put("n1", &body, Put::insert()).await.unwrap();
    assert_eq!(c.get("n1").await.unwrap().unwrap().value, body);
    let found = c.query(&Query::new().eq("email", EMAIL)).await.unwrap();
    assert_eq!(found.items.len(), 1);
}

fn file_holds(path: &std::path::Path, text: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_body_leaves_no_plaintext_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.redb");
    write_through(&plain, Some(CodecConfig::new().no_compression()), false).await;
    assert!(
        file_holds(&plain, MARKER) && file_holds(&plain, EMAIL),
        "the control must find the markers"
    );
    let compressed = dir.path().join("compressed.redb");
    write_through(&compressed, Some(CodecConfig::new()), false).await;
    assert!(!file_holds(
        &compressed,
        "lorem ipsum lorem ipsum lorem ipsum"
    ));
    let sealed = dir.path().join("sealed.redb");
    let config = CodecConfig::new()
        .no_compression()
        .encrypt(KeyRing::generate());
    write_through(&sealed, Some(config), true).await;
    assert!(!file_holds(&sealed, MARKER), "plaintext reached the file");
    assert!(
        !file_holds(&sealed, EMAIL),
        "a blind index value reached the file"
    );
    assert!(!file_holds(&sealed, "jane.doe"));
}

/// A store with a blind index reopened through a codec layer that does not encrypt: writes
/// and equality queries on the blind index are refused instead of putting values in the
/// clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_indexes_need_the_key_ring() {
    let engine: Arc<dyn stowage_core::backend::Backend> =
        Arc::new(stowage_core::MemoryBackend::new());
    let open = |config: CodecConfig| {
        let layer = CodecLayer::new(engine.clone(), config).unwrap();
        Store::from_backend(Arc::new(layer))
    };
    let sealed = open(CodecConfig::new().encrypt(KeyRing::generate()));
    let spec = CollectionSpec::new().index(IndexSpec::string("email", "/email").blind());
    let c = sealed
        .collection_with_spec::<serde_json::Value>("people", spec)
        .await
        .unwrap();
    c.put("p", &json!({"email": EMAIL}), Put::insert())
        .await
        .unwrap();
    let plain = open(CodecConfig::new());
    let c = plain
        .existing_collection::<serde_json::Value>("people")
        .await
        .unwrap();
    let e = c
        .put("q", &json!({"email": EMAIL}), Put::insert())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), stowage_core::ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("key ring"), "{e}");
    let e = c.query(&Query::new().eq("email", EMAIL)).await.unwrap_err();
    assert_eq!(e.kind(), stowage_core::ErrorKind::Unsupported, "{e}");
}
