//! Two instances (two pools) over one database, one reading through a near cache: a write
//! through the other is never read stale once the change feed delivered it; the window is
//! printed (`cargo test -p stowage-postgres --test cache -- --nocapture`).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use stowage_core::backend::Backend;
use stowage_postgres::{PostgresBackend, PostgresConfig};
use support::FreshDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_stay_coherent() {
    let db = FreshDatabase::new().await;
    let open = || async {
        let config = PostgresConfig::from_url_parts(&db.location(), &[]).unwrap();
        let engine: Arc<dyn Backend> = Arc::new(PostgresBackend::connect(config).await.unwrap());
        engine
    };
    let (writer, reader) = (open().await, open().await);
    let w = stowage_cache::testkit::two_stores_stay_coherent(writer, reader, 300).await;
    println!("postgres stale window: {w:?}");
    assert!(w.hits >= 900, "{w:?}");
}
