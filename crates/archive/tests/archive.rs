//! Backup and restore through the archive, and damaged archives refused.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stowage_archive::{backup_store, check_archive, restore_store};
use stowage_core::{Capabilities, CollectionSpec, ErrorKind, IndexSpec, MemoryBackend, Put, Store};
use stowage_ops::{compare_stores, Selection};

async fn filled() -> Store {
    let store = Store::new(MemoryBackend::new());
    let items = store
        .collection_with_spec::<Value>(
            "items",
            CollectionSpec::new()
                .index(IndexSpec::string("email", "/email").unique())
                .index(IndexSpec::string("tags", "/tags").multi()),
        )
        .await
        .unwrap();
    for i in 0..2500 {
        items
            .put(
                &format!("ü-{i:05}"),
                &json!({"email": format!("{i}@x.org"), "tags": ["a", format!("t{}", i % 7)]}),
                Put::insert(),
            )
            .await
            .unwrap();
    }
    items
        .put(
            "ttl",
            &json!({"email": "ttl@x.org"}),
            Put::insert().ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let blobs = store
        .namespace("other")
        .unwrap()
        .collection_with_spec::<Value>("blobs", CollectionSpec::new())
        .await
        .unwrap();
    blobs
        .put_raw("big", vec![7u8; 3 << 20], Put::insert())
        .await
        .unwrap();
    blobs
        .put_raw("bytes", vec![0u8, 255, 1], Put::insert())
        .await
        .unwrap();
    store
}

async fn archive_of(store: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    backup_store(store, &Selection::all(), &mut out, |_| {})
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn a_backup_restores_exactly() {
    let store = filled().await;
    let archive = archive_of(&store).await;
    let manifest = check_archive(&archive[..]).unwrap();
    assert_eq!(manifest.records(), 2503);
    assert_eq!(manifest.collections.len(), 2);
    // 3 MiB of one byte and 2,500 small records compress well below their size.
    assert!(archive.len() < 200_000, "{} bytes", archive.len());

    let into = Store::new(MemoryBackend::new());
    let restored = restore_store(&into, Cursor::new(&archive), |_| {})
        .await
        .unwrap();
    assert_eq!(restored, manifest);
    let cmp = compare_stores(&store, &into, &Selection::all(), 5)
        .await
        .unwrap();
    assert!(cmp.agree(), "{cmp:?}");
    // The unique index works at the destination.
    let items = into.existing_collection::<Value>("items").await.unwrap();
    let e = items
        .put("new", &json!({"email": "7@x.org"}), Put::insert())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);

    // Restoring twice is refused, and writes nothing.
    let e = restore_store(&into, Cursor::new(&archive), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
}

#[tokio::test]
async fn a_damaged_archive_is_refused_saying_where() {
    let archive = archive_of(&filled().await).await;
    // Cut anywhere: refused, at or before the cut.
    for cut in [
        0,
        10,
        28,
        40,
        archive.len() / 3,
        archive.len() / 2,
        archive.len() - 1,
    ] {
        let e = check_archive(&archive[..cut]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "cut at {cut}: {e}");
        assert!(e.message().contains("at byte"), "{e}");
    }
    // One bit flipped anywhere: refused.
    for at in [3, 17, 30, 100, archive.len() / 2, archive.len() - 3] {
        let mut bad = archive.clone();
        bad[at] ^= 0x10;
        let e = check_archive(&bad[..]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "flip at {at}: {e}");
    }
    let mut longer = archive.clone();
    longer.push(0);
    assert!(check_archive(&longer[..])
        .unwrap_err()
        .message()
        .contains("follow the closing manifest"));

    // A restore of a damaged archive writes nothing.
    let into = Store::new(MemoryBackend::new());
    let e = restore_store(&into, Cursor::new(&archive[..archive.len() - 1]), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(into.namespaces().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_restore_that_fails_part_way_leaves_nothing_behind() {
    let archive = archive_of(&filled().await).await;
    // This engine takes the items but not opaque bodies: the restore fails on the blobs.
    let mut caps: Capabilities = MemoryBackend::full_capabilities();
    caps.binary_bodies = false;
    let into = Store::from_backend(Arc::new(MemoryBackend::with_capabilities(caps)));
    let e = restore_store(&into, Cursor::new(&archive), |_| {})
        .await
        .unwrap_err();
    assert!(e.message().contains("dropped again"), "{e}");
    for ns in ["default", "other"] {
        assert!(
            into.namespace(ns)
                .unwrap()
                .collections()
                .await
                .unwrap()
                .is_empty(),
            "{ns} is left empty"
        );
    }
}
