//! `rediss://`: TLS to a private `redis-server` that serves TLS only, with a certificate
//! for 127.0.0.1 signed by a certificate authority of its own, trusted through `cacert`.
//! A server whose certificate chains to no trusted authority is refused.

#![allow(clippy::unwrap_used)]

use stowage_core::{ErrorKind, Store};
use stowage_redis::testkit::PrivateRedis;
use stowage_redis::{RedisBackend, RedisConfig};
use stowage_testkit::Item;

async fn open(location: &str, params: &[(&str, &str)]) -> stowage_core::Result<Store> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = RedisConfig::from_url_parts("rediss", location, &params)?;
    Ok(Store::new(RedisBackend::connect(config).await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_encrypts_and_checks_the_certificate() {
    let server = tokio::task::spawn_blocking(PrivateRedis::start_with_tls)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a private redis-server with TLS must start: {e}"));
    let ca = server.ca_certificate();
    let store = open(&server.address(), &[("cacert", ca.to_str().unwrap())])
        .await
        .unwrap();
    let items = store.collection::<Item>().await.unwrap();
    items.upsert(&Item::new("a", 1)).await.unwrap();
    assert_eq!(items.get("a").await.unwrap().unwrap().value.n, 1);

    // Without the authority, the system's roots do not know the certificate.
    let e = open(&server.address(), &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    // Plain text to a TLS-only server gets nowhere either.
    let config = RedisConfig::from_url_parts(
        "redis",
        &server.address(),
        &[
            ("connect_timeout_ms".into(), "2000".into()),
            ("response_timeout_ms".into(), "2000".into()),
        ],
    )
    .unwrap();
    assert!(RedisBackend::connect(config).await.is_err());
}
