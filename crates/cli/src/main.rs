//! The `stowage` command.

mod config;
mod ops;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use stowage::codec::{keys_in_use, RekeyCheckpoint};
use stowage::{CodecConfig, KeyRing, Put, Query, Result, Store};

use crate::config::{parse_addr, parse_tokens, FileConfig, Resolved, DEFAULT_ADDR, DEFAULT_URL};
use crate::ops::Create;

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
    /// Print records and bytes per collection of a store, and the records each index holds.
    Stats {
        /// The store's URL.
        #[arg(env = "STOWAGE_URL", default_value = DEFAULT_URL)]
        url: String,
        #[command(flatten)]
        codec: CodecArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List every collection of a store with its spec.
    Collections {
        /// The store's URL.
        #[arg(env = "STOWAGE_URL", default_value = DEFAULT_URL)]
        url: String,
        #[command(flatten)]
        codec: CodecArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy every namespace and collection (or those named) into another store, of any
    /// engine: specs, then records with their versions, times and TTLs; resumes from its
    /// checkpoint file after an interruption.
    Copy {
        /// The source store's URL.
        source: String,
        /// The destination store's URL.
        destination: String,
        #[command(flatten)]
        selection: ops::SelectionArgs,
        #[command(flatten)]
        codec: CodecArgs,
        /// Where progress is saved, and resumed from [default: ./stowage-copy.checkpoint].
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Compare the two stores record by record afterwards (as `stowage verify SRC DST`).
        #[arg(long)]
        verify: bool,
        /// Leave a destination record that is as new as the source's or newer (the
        /// destination is being mirrored to: `serve --mirror-to`).
        #[arg(long)]
        keep_newer: bool,
    },
    /// Check a store (record checksums, indexes against records both ways, no expired
    /// record indexed as live), or with two URLs compare two stores record by record;
    /// exits non-zero and lists what is wrong.
    Verify {
        /// The store's URL.
        url: String,
        /// A second store to compare with, record by record.
        other: Option<String>,
        #[command(flatten)]
        selection: ops::SelectionArgs,
        #[command(flatten)]
        codec: CodecArgs,
        /// With two stores: repair each record that differs from the first store's (never
        /// over a newer write), then report what differed.
        #[arg(long, requires = "other")]
        repair: bool,
        /// List at most this many problems (all are counted).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a store (or the namespaces and collections named) into a portable archive.
    Backup {
        /// The store's URL.
        url: String,
        /// The archive to write (replaced only once the backup is whole).
        file: PathBuf,
        #[command(flatten)]
        selection: ops::SelectionArgs,
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Restore an archive into a store of any engine (it must not hold the archive's
    /// collections yet); a damaged archive is refused before anything is written.
    Restore {
        /// The archive.
        file: PathBuf,
        /// The store's URL.
        url: String,
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Purge expired records and records past their collection's retention, once.
    Purge {
        /// The store's URL.
        #[arg(env = "STOWAGE_URL", default_value = DEFAULT_URL)]
        url: String,
        #[command(flatten)]
        codec: CodecArgs,
    },
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
    /// Make, rotate and retire the keys of a key-ring file.
    Keyring {
        #[command(subcommand)]
        command: KeyringCommand,
    },
    /// Rewrite every record under the key ring's newest key (versions, times, TTLs and ETags
    /// kept); resumes from its checkpoint file after an interruption.
    Rekey {
        /// The store's URL.
        #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
        url: String,
        /// The key-ring file.
        #[arg(long, env = "STOWAGE_KEYRING")]
        keyring: PathBuf,
        /// Where progress is saved [default: the key ring's path with `.rekey` added].
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Destroy a namespace's data keys, so none of its encrypted records can be read again
    /// — here or in any copy of them — then drop its collections.
    Shred {
        /// The store's URL.
        #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
        url: String,
        /// The namespace.
        namespace: String,
        /// Keep the (unreadable) records instead of dropping the collections.
        #[arg(long)]
        keep_records: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyringCommand {
    /// Create a key-ring file holding one new key (never overwrites a file).
    New {
        /// The file to create (written with mode 0600).
        file: PathBuf,
    },
    /// Add a new key: writes are sealed with it from the next start on.
    Rotate {
        /// The key-ring file.
        file: PathBuf,
    },
    /// Remove a key no record needs any more (after `stowage rekey`).
    Retire {
        /// The key-ring file.
        file: PathBuf,
        /// The key's id.
        id: u32,
    },
    /// Print the ids of the keys in a ring (never the keys).
    List {
        /// The key-ring file.
        file: PathBuf,
    },
}

/// How bodies are stored: `--keyring` seals them (and compresses), `--compress` only
/// compresses. A store written with either must always be opened with the same.
#[derive(Debug, Args)]
pub(crate) struct CodecArgs {
    /// A key-ring file: bodies are encrypted with its newest key, and compressed.
    #[arg(long, env = "STOWAGE_KEYRING")]
    pub(crate) keyring: Option<PathBuf>,
    /// Compress bodies of 256 bytes or more with zstd (implied by --keyring).
    #[arg(long, env = "STOWAGE_COMPRESS")]
    pub(crate) compress: bool,
}

/// The codec a key ring and a compression flag ask for.
fn codec_config(keyring: Option<&Path>, compress: bool) -> Result<Option<CodecConfig>> {
    Ok(match keyring {
        Some(path) => Some(CodecConfig::new().encrypt(KeyRing::load(path)?)),
        None if compress => Some(CodecConfig::new()),
        None => None,
    })
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The store's URL.
    #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    /// The namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    codec: CodecArgs,
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

async fn open(args: &StoreArgs, create: Create) -> Result<Store> {
    let mut builder = ops::builder(&args.url, create).namespace(args.namespace.clone());
    if let Some(codec) = codec_config(args.codec.keyring.as_deref(), args.codec.compress)? {
        builder = builder.codec(codec);
    }
    builder.open().await
}

fn keyring(command: KeyringCommand) -> Result<()> {
    match command {
        KeyringCommand::New { file } => {
            KeyRing::create(&file)?;
            println!("created {} with key 1", file.display());
        }
        KeyringCommand::Rotate { file } => {
            let mut ring = KeyRing::load(&file)?;
            let id = ring.rotate();
            ring.save(&file)?;
            println!(
                "key {id} added to {}: restart every instance with it, then run `stowage rekey` \
                 to move older records onto it",
                file.display()
            );
        }
        KeyringCommand::Retire { file, id } => {
            let mut ring = KeyRing::load(&file)?;
            if ring.newest_id() == Some(id) {
                return Err(stowage::Error::invalid(format!(
                    "key {id} is the newest: new writes are sealed with it (rotate first)"
                )));
            }
            if !ring.retire(id) {
                return Err(stowage::Error::not_found("key ring", &id.to_string()));
            }
            ring.save(&file)?;
            println!("key {id} retired from {}", file.display());
        }
        KeyringCommand::List { file } => {
            let ring = KeyRing::load(&file)?;
            for id in ring.ids() {
                let newest = if ring.newest_id() == Some(id) {
                    " (newest: seals new writes)"
                } else {
                    ""
                };
                println!("key {id}{newest}");
            }
        }
    }
    Ok(())
}

async fn shred(url: &str, ns: &str, keep_records: bool) -> Result<()> {
    // The engine itself: shredding needs no key ring.
    let engine = ops::builder(url, Create::No)
        .open()
        .await?
        .backend()
        .clone();
    if !stowage::codec::shred(&engine, ns).await? {
        return Err(stowage::Error::new(
            stowage::ErrorKind::NotFound,
            format!("namespace {ns:?} has no data keys (never encrypted, or already shredded)"),
        ));
    }
    println!("namespace {ns} shredded: its data keys are destroyed");
    if !keep_records {
        let specs = engine.list_specs(ns).await?;
        for (collection, _) in &specs {
            engine.drop_collection(ns, collection).await?;
        }
        println!("{} collections of {ns} dropped", specs.len());
    }
    Ok(())
}

/// Writes a file whole or not at all (a temporary file renamed over it).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| stowage::Error::internal(format!("cannot write {}: {e}", path.display())))
}

async fn rekey(url: &str, keyring: &Path, checkpoint: Option<PathBuf>) -> Result<()> {
    let ring = KeyRing::load(keyring)?;
    let checkpoint = checkpoint.unwrap_or_else(|| {
        let mut p = keyring.as_os_str().to_owned();
        p.push(".rekey");
        PathBuf::from(p)
    });
    let resume: Option<RekeyCheckpoint> = match std::fs::read(&checkpoint) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            stowage::Error::invalid(format!(
                "{} is not a rekey checkpoint: {e}",
                checkpoint.display()
            ))
        })?),
        Err(_) => None,
    };
    if let Some(at) = &resume {
        eprintln!(
            "rekey: resuming after {}/{}/{} ({} records done)",
            at.namespace,
            at.collection,
            at.after.as_deref().unwrap_or(""),
            at.records + at.changed_meanwhile
        );
    }
    // The engine itself: the rekey puts its own codec layer over it.
    let engine = ops::builder(url, Create::No)
        .open()
        .await?
        .backend()
        .clone();
    let mut saved: Result<()> = Ok(());
    let mut last_line = std::time::Instant::now();
    let report = stowage::codec::rekey(
        engine.clone(),
        CodecConfig::new().encrypt(ring),
        resume,
        |at| {
            if saved.is_ok() {
                saved = serde_json::to_vec(at)
                    .map_err(|e| stowage::Error::internal(e.to_string()))
                    .and_then(|json| write_atomically(&checkpoint, &json));
            }
            if last_line.elapsed() >= Duration::from_secs(1) {
                last_line = std::time::Instant::now();
                eprintln!(
                    "rekey: {} records rewritten, now in {}/{}",
                    at.records, at.namespace, at.collection
                );
            }
        },
    )
    .await?;
    saved?;
    let _ = std::fs::remove_file(&checkpoint);
    println!(
        "rekey: {} records rewritten under key {} ({} changed by other writers meanwhile)",
        report.records, report.key, report.changed_meanwhile
    );
    let usage = keys_in_use(&engine).await?;
    let older: Vec<String> = usage
        .iter()
        .filter(|(k, _)| **k != report.key)
        .map(|(k, n)| match k {
            0 => format!("{n} unsealed"),
            k => format!("{n} under key {k}"),
        })
        .collect();
    if older.is_empty() {
        println!(
            "every record is sealed with key {}: older keys can be retired (stowage keyring retire)",
            report.key
        );
        Ok(())
    } else {
        Err(stowage::Error::new(
            stowage::ErrorKind::Conflict,
            format!(
                "records still sealed otherwise: {} (an instance with an older ring is writing?); \
                 run stowage rekey again",
                older.join(", ")
            ),
        ))
    }
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
        Command::Stats { url, codec, json } => ops::stats(&url, &codec, json).await,
        Command::Collections { url, codec, json } => ops::collections(&url, &codec, json).await,
        Command::Copy {
            source,
            destination,
            selection,
            codec,
            checkpoint,
            verify,
            keep_newer,
        } => {
            let overwrite = if keep_newer {
                stowage::ops::Overwrite::Older
            } else {
                stowage::ops::Overwrite::Always
            };
            ops::copy(
                &source,
                &destination,
                &selection,
                &codec,
                checkpoint,
                verify,
                overwrite,
            )
            .await
        }
        Command::Verify {
            url,
            other,
            selection,
            codec,
            repair,
            limit,
            json,
        } => {
            ops::verify(
                &url,
                other.as_deref(),
                &selection,
                &codec,
                repair,
                limit,
                json,
            )
            .await
        }
        Command::Backup {
            url,
            file,
            selection,
            codec,
        } => ops::backup(&url, &file, &selection, &codec).await,
        Command::Restore { file, url, codec } => ops::restore(&file, &url, &codec).await,
        Command::Purge { url, codec } => ops::purge(&url, &codec).await,
        Command::Get {
            store,
            collection,
            id,
        } => {
            let store = open(&store, Create::No).await?;
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
            let store = open(&store, Create::IfMissing).await?;
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
            let store = open(&store, Create::No).await?;
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
        Command::Keyring { command } => keyring(command),
        Command::Rekey {
            url,
            keyring,
            checkpoint,
        } => rekey(&url, &keyring, checkpoint).await,
        Command::Shred {
            url,
            namespace,
            keep_records,
        } => shred(&url, &namespace, keep_records).await,
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
