//! What reaches PostgreSQL through the codec layer: read back with plain SQL, a sealed
//! store's rows hold no plaintext body; a ciphertext moved onto another row does not open
//! and a flipped bit is `Corrupted`, naming the record.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_core::ErrorKind;
use stowage_postgres::testkit::FreshDatabase;
use stowage_postgres::{PostgresBackend, PostgresConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_hold_no_plaintext_and_damage_is_refused() {
    let db = FreshDatabase::new().await;
    let engine =
        PostgresBackend::connect(PostgresConfig::from_url_parts(&db.location(), &[]).unwrap())
            .await
            .unwrap();
    let notes = stowage_codec::testkit::sealed_notes(Arc::new(engine)).await;

    let client = db.connect().await;
    let rows = client
        .query(
            "SELECT id, body::text, blob FROM \"default\".notes ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let text: Option<String> = row.get(1);
        let blob: Option<Vec<u8>> = row.get(2);
        assert!(text.is_none(), "a sealed body is stored as bytes");
        let blob = blob.unwrap();
        assert!(blob.starts_with(b"SWC"));
        assert!(!blob.windows(11).any(|w| w == b"secret-body"));
        assert!(
            blob.len() < 200,
            "compressed before sealing: {}",
            blob.len()
        );
    }
    // The blind index holds tokens: the address appears in no column of any row.
    let rows_as_text: String = client
        .query_one(
            "SELECT string_agg(t::text, ' ') FROM \"default\".notes t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!rows_as_text.contains("secret-mail"), "{rows_as_text}");
    let token: String = client
        .query_one("SELECT ix_email FROM \"default\".notes WHERE id = 'a'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    // A plain index column holds the value: queries still run in the database.
    let n: i64 = client
        .query_one("SELECT ix_n FROM \"default\".notes WHERE id = 'b'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // a's ciphertext copied onto b: a valid frame, but bound to a.
    client
        .execute(
            "UPDATE \"default\".notes SET blob = (SELECT blob FROM \"default\".notes WHERE id = 'a') WHERE id = 'b'",
            &[],
        )
        .await
        .unwrap();
    let e = notes.get("b").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(
        e.message().contains("\"b\"") && e.message().contains("notes"),
        "{e}"
    );
    // One flipped bit in a.
    client
        .execute(
            "UPDATE \"default\".notes SET blob = set_byte(blob, 40, get_byte(blob, 40) # 1) WHERE id = 'a'",
            &[],
        )
        .await
        .unwrap();
    let e = notes.get("a").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(e.message().contains("checksum"), "{e}");
}

/// Crypto-shredding with two instances (two pools) over one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_a_namespace_leaves_the_others_intact() {
    let db = FreshDatabase::new().await;
    let open = || async {
        let config = PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
        let engine: Arc<dyn stowage_core::backend::Backend> =
            Arc::new(PostgresBackend::connect(config).await.unwrap());
        engine
    };
    let (first, second) = (open().await, open().await);
    stowage_codec::testkit::shred_leaves_other_namespaces_intact(first, second).await;
}
