//! Two instances (two pools) over one database, one reading through a near cache: a write
//! through the other is never read stale once the change feed delivered it; the window is
//! printed (`cargo test -p stowage-integration --test cache postgres -- --nocapture`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_core::backend::Backend;
use stowage_postgres::testkit::FreshDatabase;
use stowage_postgres::{PostgresBackend, PostgresConfig};

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
