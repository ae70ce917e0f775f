//! The client against the machine's PostgreSQL (127.0.0.1:5432, trust auth): a missing
//! server fails these tests, in CI and out of it.

#![allow(clippy::unwrap_used)]

use stowage_core::ErrorKind;
use stowage_postgres::{PostgresConfig, PostgresPool};

fn config(location: &str, params: &[(&str, &str)]) -> PostgresConfig {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PostgresConfig::from_url_parts(location, &params).unwrap()
}

#[tokio::test]
async fn connects_and_pings_the_real_server() {
    let pool = PostgresPool::connect(&config(
        "postgres:unused-by-trust@127.0.0.1:5432/test",
        &[("pool_size", "2")],
    ))
    .await
    .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432: {e}"));
    let latency = pool.ping().await.unwrap();
    assert!(latency.as_secs() < 5, "{latency:?}");
    assert_eq!(pool.target(), "postgres@127.0.0.1:5432/test");
    assert!(!format!("{pool:?}").contains("unused-by-trust"));
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_keeps_the_password_out() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let e = PostgresPool::connect(&config(
        "postgres:hunter2@127.0.0.1:1/test",
        &[("connect_timeout_ms", "2000")],
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("postgres@127.0.0.1:1/test"), "{e}");
    for shown in [e.to_string(), format!("{e:?}"), format!("{e:#}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[tokio::test]
async fn an_unknown_database_is_reported_by_name() {
    let e = PostgresPool::connect(&config(
        "postgres:hunter2@127.0.0.1:5432/stowage_no_such_database",
        &[],
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("stowage_no_such_database"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
}
