//! What reaches Redis through the codec layer: read back with plain commands, a sealed
//! store's record hashes hold no plaintext body; a ciphertext moved onto another record
//! does not open and a flipped bit is `Corrupted`, naming the record.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_core::ErrorKind;
use stowage_redis::testkit::FreshPrefix;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_hold_no_plaintext_and_damage_is_refused() {
    let prefix = FreshPrefix::new();
    let engine = stowage_redis::testkit::open(&prefix.0, &[]).await.unwrap();
    let notes = stowage_codec::testkit::sealed_notes(Arc::new(engine)).await;

    let client = redis::Client::open(stowage_redis::testkit::server_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = |id: &str| format!("{}:{{default}}:rec:notes:{id}", prefix.0);
    // Every key of the store, every value: no plaintext anywhere.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", prefix.0))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.contains(&key("a")), "{keys:?}");
    for k in &keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!dump.windows(11).any(|w| w == b"secret-body"), "{k}");
        assert!(!dump.windows(11).any(|w| w == b"secret-mail"), "{k}");
    }
    let body: Vec<u8> = redis::cmd("HGET")
        .arg(key("a"))
        .arg("body")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        body.starts_with(b"SWC") && body.len() < 200,
        "{}",
        body.len()
    );

    // a's ciphertext copied onto b: a valid frame, but bound to a.
    let _: () = redis::cmd("HSET")
        .arg(key("b"))
        .arg("body")
        .arg(&body)
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = notes.get("b").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(
        e.message().contains("\"b\"") && e.message().contains("notes"),
        "{e}"
    );
    // One flipped bit in a.
    let mut flipped = body.clone();
    flipped[40] ^= 1;
    let _: () = redis::cmd("HSET")
        .arg(key("a"))
        .arg("body")
        .arg(&flipped)
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = notes.get("a").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(e.message().contains("checksum"), "{e}");
}

/// Crypto-shredding with two instances (two connections) over one prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_a_namespace_leaves_the_others_intact() {
    let prefix = FreshPrefix::new();
    let first: Arc<dyn stowage_core::backend::Backend> =
        Arc::new(stowage_redis::testkit::open(&prefix.0, &[]).await.unwrap());
    let second: Arc<dyn stowage_core::backend::Backend> =
        Arc::new(stowage_redis::testkit::open(&prefix.0, &[]).await.unwrap());
    stowage_codec::testkit::shred_leaves_other_namespaces_intact(first, second).await;
}
