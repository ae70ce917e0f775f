//! `stowage serve`: the HTTP API over a store, with its configuration, logs and signals.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use stowage::{Result, Store};

use crate::config::{parse_addr, parse_tokens, FileConfig, Resolved, DEFAULT_ADDR, DEFAULT_URL};
use crate::store::{codec_config, redacted, CodecArgs};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "STOWAGE_CONFIG")]
    config: Option<PathBuf>,
    /// The store's URL [default: redb://./stowage-data/stowage.redb].
    #[arg(long, env = "STOWAGE_URL")]
    url: Option<String>,
    /// The address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "STOWAGE_ADDR")]
    addr: Option<String>,
    /// Bearer tokens: HASH@ns1,ns2=read|write|admin, separated by ';'.
    #[arg(long, env = "STOWAGE_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// The largest request body, in bytes.
    #[arg(long, env = "STOWAGE_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// The per-request timeout, in seconds.
    #[arg(long, env = "STOWAGE_TIMEOUT_SECONDS")]
    timeout_seconds: Option<u64>,
    /// The largest query or listing limit.
    #[arg(long, env = "STOWAGE_MAX_QUERY_LIMIT")]
    max_query_limit: Option<usize>,
    /// How often expired records are purged, in seconds (0: never; default 60). Several
    /// servers on one store take turns per namespace.
    #[arg(long, env = "STOWAGE_PURGE_EVERY_SECONDS")]
    purge_every_seconds: Option<u64>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "STOWAGE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<String>,
    /// TLS private key (PEM).
    #[arg(long, env = "STOWAGE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<String>,
    /// How log lines look on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, env = "STOWAGE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    codec: CodecArgs,
    /// A near cache of this many MiB in front of the store (0: none, the default): point
    /// reads from memory, kept coherent with other servers through the change feed.
    #[arg(long, env = "STOWAGE_CACHE_MB")]
    cache_mb: Option<u64>,
    /// Mirror every write onto this second store (a live migration: reads stay here, the
    /// other store gets each write as stored here; copy the older records with `stowage
    /// copy --keep-newer`, then `stowage verify` both until they agree, then switch URLs).
    #[arg(long, env = "STOWAGE_MIRROR_TO")]
    mirror_to: Option<String>,
    /// Collections the cache never holds, separated by ',' (sessions, revocations).
    #[arg(long, env = "STOWAGE_CACHE_BYPASS", value_delimiter = ',')]
    cache_bypass: Vec<String>,
}

/// How `stowage serve` writes its log lines.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs to stderr at the level RUST_LOG gives (default info).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second subscriber (tests calling serve twice) is refused: keep the first.
    let _ = match format {
        LogFormat::Text => logs.with_ansi(colour_on_stderr()).try_init(),
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).try_init(),
    };
}

/// Colours only for a person at a terminal: never into a file or a pipe, and never when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

impl ServeArgs {
    fn resolve(self) -> Result<Resolved> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let mut server = stowage_server::ServerConfig {
            tokens: file.tokens,
            limits: file.limits.unwrap_or_default(),
            tls: file.tls,
            maintenance: file.maintenance.unwrap_or_default(),
        };
        if let Some(t) = &self.tokens {
            server.tokens = parse_tokens(t)?;
        }
        if let Some(v) = self.body_limit {
            server.limits.body_bytes = v;
        }
        if let Some(v) = self.timeout_seconds {
            server.limits.timeout_seconds = v;
        }
        if let Some(v) = self.max_query_limit {
            server.limits.max_query_limit = v;
        }
        if let Some(v) = self.purge_every_seconds {
            server.maintenance.purge_every_seconds = v;
        }
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            server.tls = Some(stowage_server::TlsConfig { cert, key });
        }
        let addr = self
            .addr
            .or(file.addr)
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let keyring = self.codec.keyring.or(file.keyring);
        let cache_mb = self.cache_mb.or(file.cache_mb).unwrap_or(0);
        let bypass = if self.cache_bypass.is_empty() {
            file.cache_bypass
        } else {
            self.cache_bypass
        };
        let cache = (cache_mb > 0).then(|| {
            bypass
                .into_iter()
                .fold(stowage::CacheConfig::new(cache_mb << 20), |c, b| {
                    c.bypass(b)
                })
        });
        Ok(Resolved {
            mirror_to: self.mirror_to,
            cache,
            codec: codec_config(keyring.as_deref(), self.codec.compress || file.compress)?,
            url: self
                .url
                .or(file.url)
                .unwrap_or_else(|| DEFAULT_URL.to_owned()),
            addr: parse_addr(&addr)?,
            server,
        })
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives as soon as "serving" is printed must
/// stop the server gracefully, not by the signal's default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let received = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (interrupt, terminate) = signals;
            tokio::select! {
                () = received(interrupt) => {}
                () = received(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping: finishing requests in flight");
    }
}

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    init_logs(args.log_format);
    let cfg = args.resolve()?;
    cfg.server.check(cfg.addr)?;
    // Backend operations are counted and timed below the typed API, for /metrics.
    let mut builder = Store::builder().url(cfg.url.clone());
    if let Some(codec) = cfg.codec.clone() {
        builder = builder.codec(codec);
    }
    if let Some(cache) = cfg.cache {
        builder = builder.cache(cache);
    }
    if let Some(url) = &cfg.mirror_to {
        let mut target = Store::builder().url(url.clone());
        if let Some(codec) = cfg.codec.clone() {
            target = target.codec(codec);
        }
        let target = target.open().await?.backend().clone();
        tracing::info!(to = %redacted(url), "mirroring every write");
        builder =
            builder.layer(move |source| Arc::new(stowage::ops::MirrorLayer::new(source, target)));
    }
    let store = builder
        .layer(|backend| Arc::new(stowage::layer::MetricsLayer::new(backend)))
        .layer(|backend| Arc::new(stowage::layer::TracingLayer::new(backend)))
        .open()
        .await?;
    let listener = tokio::net::TcpListener::bind(cfg.addr).await.map_err(|e| {
        stowage::Error::new(
            stowage::ErrorKind::Unavailable,
            format!("cannot listen on {}: {e}", cfg.addr),
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| stowage::Error::internal(e.to_string()))?;
    let stop = shutdown_signal();
    println!("stowage: serving {} on http://{bound}", redacted(&cfg.url));
    tracing::info!(url = %redacted(&cfg.url), addr = %bound, "serving");
    stowage_server::serve_with(listener, store.core().clone(), cfg.server, stop).await?;
    // Dropping the store commits and closes it before the process exits.
    drop(store);
    tracing::info!("stopped");
    Ok(())
}
