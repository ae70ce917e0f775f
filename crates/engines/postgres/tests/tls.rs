//! TLS with libpq's `sslmode` meanings (see `tls.rs`), against a private cluster serving a
//! certificate for 127.0.0.1 signed by a CA of its own: connections are encrypted, the
//! certificate is checked as the mode says, and a failure says why without the password.

#![allow(clippy::unwrap_used)]

use stowage_core::{ErrorKind, Store};
use stowage_postgres::testkit::PrivateCluster;
use stowage_postgres::{PostgresBackend, PostgresConfig};
use stowage_testkit::{make_certificates, Item};
use tokio_postgres::NoTls;

const SECRET: &str = "hunter2-not-shown";

async fn tls_cluster() -> PrivateCluster {
    tokio::task::spawn_blocking(PrivateCluster::start_with_tls)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a private PostgreSQL cluster with TLS must start: {e}"))
}

/// Connects with these URL parameters; the password is one the server (trust auth) ignores.
async fn open(host: &str, port: u16, params: &[(&str, &str)]) -> stowage_core::Result<Store> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = PostgresConfig::from_url_parts(
        &format!("postgres:{SECRET}@{host}:{port}/postgres"),
        &params,
    )?;
    Ok(Store::new(PostgresBackend::connect(config).await?))
}

/// Writes and reads one record, and checks with the server that every connection of the
/// store is encrypted.
async fn works_encrypted(store: &Store, port: u16) {
    let items = store.collection::<Item>().await.unwrap();
    items.upsert(&Item::new("a", 1)).await.unwrap();
    assert_eq!(items.get("a").await.unwrap().unwrap().value.n, 1);
    let (admin, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable"),
        NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let (all, encrypted): (i64, i64) = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'stowage'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(all > 0, "the store has connections");
    assert_eq!(encrypted, all, "every connection of the store is encrypted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_encrypt_and_check_the_certificate_as_libpq_does() {
    let cluster = tls_cluster().await;
    let port = cluster.port();
    let ca = cluster.ca_certificate();
    let ca = ca.to_str().unwrap();

    // require: encrypted, the certificate not checked (no sslrootcert).
    works_encrypted(
        &open("127.0.0.1", port, &[("sslmode", "require")])
            .await
            .unwrap(),
        port,
    )
    .await;
    // verify-full: the chain and the IP the certificate names.
    let full = [("sslmode", "verify-full"), ("sslrootcert", ca)];
    works_encrypted(&open("127.0.0.1", port, &full).await.unwrap(), port).await;
    // verify-ca: the chain only, so a name the certificate does not hold is fine...
    let ca_only = [("sslmode", "verify-ca"), ("sslrootcert", ca)];
    works_encrypted(&open("localhost", port, &ca_only).await.unwrap(), port).await;
    // ...which verify-full refuses.
    let e = open("localhost", port, &full).await.unwrap_err();
    assert!(e.message().contains("certificate"), "{e}");
    assert!(!format!("{e} {e:?}").contains(SECRET), "{e:?}");

    // A certificate from another authority fails verification.
    let other = std::env::temp_dir().join(format!("stowage-other-ca-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    make_certificates(&other).unwrap();
    let other_ca = other.join("ca.crt");
    let e = open(
        "127.0.0.1",
        port,
        &[
            ("sslmode", "verify-ca"),
            ("sslrootcert", other_ca.to_str().unwrap()),
        ],
    )
    .await
    .unwrap_err();
    std::fs::remove_dir_all(&other).unwrap();
    assert!(e.message().contains("certificate"), "{e}");
    assert!(!format!("{e} {e:?}").contains(SECRET), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap()
        .unwrap();
    let port = cluster.port();
    let e = open("127.0.0.1", port, &[("sslmode", "require")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().to_lowercase().contains("tls"), "{e}");
    assert!(!format!("{e} {e:?}").contains(SECRET), "{e:?}");
    // prefer (the default) takes plain text when the server offers nothing else.
    let store = open("127.0.0.1", port, &[]).await.unwrap();
    let items = store.collection::<Item>().await.unwrap();
    items.upsert(&Item::new("a", 1)).await.unwrap();
}
