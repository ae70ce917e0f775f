//! The connection: one multiplexed connection per backend that reconnects by itself (redis-rs's
//! `ConnectionManager`), or the cluster client's connection, which follows slot moves.

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use stowage_core::backend::Backend;
use stowage_core::backend::{Engine, Revision, StoredSpec};
use stowage_core::{Result, Timestamp};

use crate::config::{ClockSource, RedisConfig, Target};
use crate::error::redis_error;
use crate::schema::Keys;

/// A connection to one server or to a cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A Stowage store on Redis or a Redis Cluster, shared by every instance that uses the same
/// server and key prefix.
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

/// What makes connections: a client for one server, or for a cluster.
// One per store: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connector {
    Server(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl Connector {
    async fn connect(
        &self,
        connect_timeout: std::time::Duration,
        response_timeout: std::time::Duration,
    ) -> redis::RedisResult<Conn> {
        Ok(match self {
            Connector::Server(client) => {
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    // Reconnects in the background, a few times quickly; a call meeting a
                    // lost connection fails with Unavailable and the next tries again.
                    .set_number_of_retries(3)
                    .set_max_delay(std::time::Duration::from_millis(500));
                Conn::Server(client.get_connection_manager_with_config(manager).await?)
            }
            Connector::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
        })
    }
}

pub(crate) struct Inner {
    pub conn: Conn,
    pub connector: Connector,
    pub config: RedisConfig,
    /// `config.target()`, for messages.
    pub target: String,
    /// The scripts (each loaded once per server, called by SHA; see `write.rs`).
    pub write_script: redis::Script,
    pub remove_script: redis::Script,
    pub fill_script: redis::Script,
    pub spec_script: redis::Script,
    pub drop_script: redis::Script,
    /// Specs by (namespace, collection, revision): see `catalog.rs`.
    pub specs: parking_lot::Mutex<HashMap<(String, String, Revision), Arc<StoredSpec>>>,
    /// Applies the mutations the write script leaves to Rust, by compare-and-set (see
    /// `mutate.rs`).
    pub mutations: stowage_core::backend::CompareAndSet,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the server or cluster `config` names, and checks it answers.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let target = config.target();
        let failed = |e| redis_error(e, "connecting", &target);
        let certs = match &config.ca_cert {
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    stowage_core::Error::invalid(format!(
                        "redis cacert {} cannot be read: {e}",
                        path.display()
                    ))
                })?),
            }),
            None => None,
        };
        let connector = match &config.target {
            Target::Server(info) => Connector::Server(
                match certs {
                    Some(certs) => redis::Client::build_with_tls(info.clone(), certs),
                    None => redis::Client::open(info.clone()),
                }
                .map_err(failed)?,
            ),
            Target::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.response_timeout);
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Connector::Cluster(builder.build().map_err(failed)?)
            }
        };
        let conn = connector
            .connect(config.connect_timeout, config.response_timeout)
            .await
            .map_err(failed)?;
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                mutations: stowage_core::backend::CompareAndSet::new(),
                conn,
                connector,
                target,
                config,
                write_script: redis::Script::new(concat!(
                    include_str!("prelude.lua"),
                    include_str!("mutate.lua"),
                    include_str!("write.lua")
                )),
                remove_script: redis::Script::new(concat!(
                    include_str!("prelude.lua"),
                    include_str!("remove.lua")
                )),
                fill_script: redis::Script::new(concat!(
                    include_str!("prelude.lua"),
                    include_str!("fill.lua")
                )),
                spec_script: redis::Script::new(concat!(
                    include_str!("prelude.lua"),
                    include_str!("spec.lua")
                )),
                drop_script: redis::Script::new(concat!(
                    include_str!("prelude.lua"),
                    include_str!("drop.lua")
                )),
                specs: parking_lot::Mutex::new(HashMap::new()),
            }),
        };
        backend.ping().await?;
        if !backend.inner.config.create_if_missing {
            backend.found_or_no_store().await?;
        }
        Ok(backend)
    }

    /// A connection of its own, for a watcher's blocked reads (which wait up to a second
    /// for the server's answer).
    pub(crate) async fn dedicated(&self) -> Result<Conn> {
        let c = &self.inner.config;
        self.inner
            .connector
            .connect(
                c.connect_timeout,
                c.response_timeout.max(std::time::Duration::from_secs(10)),
            )
            .await
            .map_err(|e| redis_error(e, "connecting a watcher", &self.inner.target))
    }

    /// The `redis://` engines (`redis`, `rediss`, `redis+cluster`, `rediss+cluster`), for
    /// the `stowage` facade.
    pub fn engines() -> Vec<Engine> {
        fn connect(url: stowage_core::backend::EngineUrl) -> stowage_core::backend::Connecting {
            Box::pin(async move {
                let mut config =
                    RedisConfig::from_url_parts(&url.scheme, &url.location, &url.params)?;
                config.create_if_missing = url.create_if_missing;
                Ok(Arc::new(RedisBackend::connect(config).await?) as Arc<dyn Backend>)
            })
        }
        ["redis", "rediss", "redis+cluster", "rediss+cluster"]
            .into_iter()
            .map(|scheme| Engine { scheme, connect })
            .collect()
    }

    /// The keys of namespace `ns`.
    pub(crate) fn keys(&self, ns: &str) -> Keys {
        Keys::new(&self.inner.config.prefix, ns)
    }

    /// A handle on the connection, for one call.
    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// The caller's `now` in microseconds where the store's clock decides, `None` where the
    /// server's does.
    pub(crate) fn caller_now(&self, now: Timestamp) -> Option<i64> {
        match self.inner.config.clock {
            ClockSource::Caller => Some(now.as_micros()),
            _ => None,
        }
    }

    /// One round trip.
    pub(crate) async fn ping(&self) -> Result<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "ping", &self.inner.target))
    }
}
