//! A fresh database per test, on the machine's PostgreSQL (127.0.0.1:5432, trust auth), as
//! sqlx's test helper does: tests share the server with other runs, so each makes its own
//! database and drops it afterwards, even when the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use tokio_postgres::NoTls;

const ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A database made for one test; dropped (with `WITH (FORCE)`) on drop.
pub struct FreshDatabase {
    pub name: String,
}

impl FreshDatabase {
    pub async fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("stowage_test_{}_{nanos}", std::process::id());
        admin(&format!("CREATE DATABASE \"{name}\"")).await;
        FreshDatabase { name }
    }

    /// The location part of a `postgres://` URL for this database.
    pub fn location(&self) -> String {
        format!("postgres@127.0.0.1:5432/{}", self.name)
    }

    /// A plain connection to this database, to look at what Stowage wrote.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port=5432 user=postgres dbname={}",
                self.name
            ),
            NoTls,
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432: {e}"));
        tokio::spawn(connection);
        client
    }
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(ADMIN, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        // Drop cannot await: a thread with its own runtime does the cleanup.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin(&sql))
        })
        .join();
    }
}
