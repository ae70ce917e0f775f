//! The connection pool.

use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use stowage_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PostgresConfig;
use crate::error::{pg_error, pool_error};

/// A pool of connections to one database, each with its own prepared statements.
#[derive(Clone)]
pub struct PostgresPool {
    pool: Pool,
    target: String,
    /// The TLS connector of every connection to this database.
    pub(crate) tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PostgresPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresPool")
            .field("target", &self.target)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl PostgresPool {
    /// A pool for `config`; connections are made on first use ([`PostgresPool::connect`], in
    /// `open.rs`, makes one at once to check the catalog).
    pub(crate) fn new(config: &PostgresConfig) -> Result<Self> {
        let mut pg = config.pg.clone();
        if let Some(t) = config.statement_timeout {
            // Set per connection at start-up: no extra round trip per statement.
            pg.options(format!("-c statement_timeout={}", t.as_millis()));
        }
        let tls = crate::tls::connector(config.ssl_mode, config.ssl_root_cert.as_ref())?;
        let manager = Manager::from_config(
            pg,
            tls.clone(),
            ManagerConfig {
                // A connection whose socket closed (killed by the server, say) is replaced
                // when it comes back; no round trip per checkout. A call that meets a
                // connection dying under it fails with Unavailable, and the next gets a
                // new one.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            // The most recently used connection first: a sequential caller keeps one warm
            // server process instead of cycling through all of them.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::internal(format!("postgres pool: {e}")))?;
        let pool = PostgresPool {
            pool,
            target: config.target(),
            tls,
        };
        Ok(pool)
    }

    /// One round trip to the database; how long it took.
    pub async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let client = self.client("connecting").await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| pg_error(e, "ping", &self.target))?;
        Ok(start.elapsed())
    }

    /// A connection from the pool; `doing` names the operation in the error.
    pub(crate) async fn client(&self, doing: &str) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(e, doing, &self.target))
    }

    /// Where the pool connects: `user@host:port/database`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// A pooled connection, or a transaction on one: what the catalog and query helpers run
/// on. Statements are prepared once per connection and cached by their text.
#[derive(Clone, Copy)]
pub(crate) enum Conn<'a> {
    Client(&'a deadpool_postgres::Object),
    Tx(&'a deadpool_postgres::Transaction<'a>),
}

impl Conn<'_> {
    /// The statement `sql`, prepared on this connection (once).
    pub(crate) async fn prepare(
        &self,
        sql: &str,
    ) -> std::result::Result<Statement, tokio_postgres::Error> {
        match self {
            Conn::Client(c) => c.prepare_cached(sql).await,
            Conn::Tx(t) => t.prepare_cached(sql).await,
        }
    }

    /// Prepares (once) and runs `sql`, returning its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let stmt = self.prepare(sql).await?;
        match self {
            Conn::Client(c) => c.query(&stmt, params).await,
            Conn::Tx(t) => t.query(&stmt, params).await,
        }
    }

    /// Prepares (once) and runs `sql`, returning how many rows it touched.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let stmt = self.prepare(sql).await?;
        match self {
            Conn::Client(c) => c.execute(&stmt, params).await,
            Conn::Tx(t) => t.execute(&stmt, params).await,
        }
    }
}
