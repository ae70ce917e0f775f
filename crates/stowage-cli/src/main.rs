//! The `stowage` command.

mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use stowage::{Put, Query, Result, Store};

use crate::config::{parse_addr, parse_tokens, FileConfig, Resolved, DEFAULT_ADDR, DEFAULT_URL};

/// Stowage: durable, indexed, versioned records for services.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (default: redb://./stowage-data/stowage.redb on 127.0.0.1:7070).
    Serve(ServeArgs),
    /// Print records and bytes per collection of a store.
    Stats(StoreArgs),
    /// Print one record as JSON.
    Get {
        #[command(flatten)]
        store: StoreArgs,
        /// The collection.
        collection: String,
        /// The record id.
        id: String,
    },
    /// Write one record (JSON body) and print its new version.
    Put {
        #[command(flatten)]
        store: StoreArgs,
        /// The collection.
        collection: String,
        /// The record id.
        id: String,
        /// The body, as JSON.
        body: String,
        /// Expire the record after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Run a query (JSON, as POST /query takes it) and print the page.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        /// The collection.
        collection: String,
        /// The query, e.g. '{"where":{"severity":{"eq":"P0"}},"limit":10}'.
        query: String,
    },
    /// Print the SHA-256 of a token, as the configuration's tokens hold it.
    HashToken {
        /// The token.
        token: String,
    },
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The store's URL.
    #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    /// The namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
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
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
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
        Ok(Resolved {
            url: self
                .url
                .or(file.url)
                .unwrap_or_else(|| DEFAULT_URL.to_owned()),
            addr: parse_addr(&addr)?,
            server,
        })
    }
}

/// The URL without a password, for printing.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}

async fn serve(args: ServeArgs) -> Result<()> {
    init_logs(args.log_format);
    let cfg = args.resolve()?;
    cfg.server.check(cfg.addr)?;
    // Backend operations are counted and timed below the typed API, for /metrics.
    let store = Store::builder()
        .url(cfg.url.clone())
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
    println!("stowage: serving {} on http://{bound}", redacted(&cfg.url));
    tracing::info!(url = %redacted(&cfg.url), addr = %bound, "serving");
    stowage_server::serve_with(
        listener,
        store.core().clone(),
        cfg.server,
        shutdown_signal(),
    )
    .await?;
    // Dropping the store commits and closes it before the process exits.
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

async fn open(args: &StoreArgs) -> Result<Store> {
    Store::builder()
        .url(args.url.clone())
        .namespace(args.namespace.clone())
        .open()
        .await
}

fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| stowage::Error::invalid(format!("{what} is not valid JSON: {e}")))
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Stats(args) => {
            let store = open(&args).await?;
            for s in store.stats().await? {
                println!("{}\t{} records\t{} bytes", s.collection, s.records, s.bytes);
            }
            Ok(())
        }
        Command::Get {
            store,
            collection,
            id,
        } => {
            let store = open(&store).await?;
            let c = store.existing_collection::<Value>(&collection).await?;
            let r = c
                .get(&id)
                .await?
                .ok_or_else(|| stowage::Error::not_found(&collection, &id))?;
            print(
                &serde_json::json!({"id": r.id, "version": r.version, "expires_at": r.expires_at.map(|t| t.to_rfc3339()), "body": r.value}),
            );
            Ok(())
        }
        Command::Put {
            store,
            collection,
            id,
            body,
            ttl,
        } => {
            let store = open(&store).await?;
            let body = json(&body, "the body")?;
            let c = match store.existing_collection::<Value>(&collection).await {
                Ok(c) => c,
                Err(e) if e.kind() == stowage::ErrorKind::NotFound => {
                    store
                        .collection_with_spec::<Value>(&collection, stowage::CollectionSpec::new())
                        .await?
                }
                Err(e) => return Err(e),
            };
            let mut put = Put::upsert();
            if let Some(t) = ttl {
                put = put.ttl(Duration::from_secs(t));
            }
            println!("version {}", c.put(&id, &body, put).await?.version);
            Ok(())
        }
        Command::Query {
            store,
            collection,
            query,
        } => {
            let store = open(&store).await?;
            let q: Query = serde_json::from_value(json(&query, "the query")?)
                .map_err(|e| stowage::Error::invalid(format!("the query is not valid: {e}")))?;
            let c = store.existing_collection::<Value>(&collection).await?;
            let page = c.query(&q).await?;
            let items: Vec<Value> = page
                .items
                .into_iter()
                .map(|r| serde_json::json!({"id": r.id, "version": r.version, "body": r.value}))
                .collect();
            print(&serde_json::json!({"items": items, "next_cursor": page.next_cursor}));
            Ok(())
        }
        Command::HashToken { token } => {
            println!("{}", stowage_server::hash_token(&token));
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stowage: {e}");
            ExitCode::FAILURE
        }
    }
}
