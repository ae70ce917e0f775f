//! Stowage: durable, indexed, versioned storage for services.
//!
//! A service declares its records once — collection, id, indexes, TTL — and stores them on
//! the backend that fits its stage, chosen by URL. Changing backend is changing the URL.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use stowage::{CollectionSpec, IndexSpec, Query, Record, Store};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Incident { id: String, severity: String, state: String }
//!
//! impl Record for Incident {
//!     const COLLECTION: &'static str = "incidents";
//!     fn spec() -> CollectionSpec {
//!         CollectionSpec::new()
//!             .index(IndexSpec::string("severity", "/severity"))
//!             .index(IndexSpec::string("state", "/state"))
//!     }
//!     fn id(&self) -> String { self.id.clone() }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> stowage::Result<()> {
//! let store = Store::open("memory://").await?;
//! let incidents = store.collection::<Incident>().await?;
//! incidents.insert(&Incident { id: "i-1".into(), severity: "P0".into(), state: "Open".into() }).await?;
//! let p0 = incidents.query(&Query::new().eq("severity", "P0").limit(50)).await?;
//! assert_eq!(p0.items.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # URLs
//!
//! | URL | backend | cargo feature |
//! |---|---|---|
//! | `memory://` | in process memory, gone with the process | always |
//! | `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` | PostgreSQL, shared by every instance that opens it: a schema per namespace, a table per collection; `?pool_size=N` (16), `&connect_timeout_ms=N`, `&statement_timeout_ms=N` (30,000; 0 = none), `&application_name=S`, `&sslmode=disable\|prefer\|require\|verify-ca\|verify-full` with `&sslrootcert=PATH`, `&clock=database` (default) or `caller` | `backend-postgres` |
//! | `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, `rediss://…` (TLS), `redis+cluster://HOST:PORT,HOST:PORT` | Redis or Redis Cluster, shared by every instance: a hash per record, sorted sets for indexes, every write one Lua script; `?prefix=NAME` (`stowage`), `&cacert=PATH` (rediss), `&connect_timeout_ms=N`, `&response_timeout_ms=N`, `&clock=server` (default) or `caller`, `&change_log=N` | `backend-redis` |
//! | `sqlite://PATH`, `sqlite::memory:` | one SQLite file, created if missing (WAL; a table per collection with typed index columns), or a private in-memory database; `?synchronous=full` (default) or `normal`, `&readers=N` (8), `&change_log=N` | `backend-sqlite` |
//! | `sled://PATH` | one sled folder, created if missing (a tree per collection and per index); sled's flush is `sync_file_range`, not `fsync` (see `stowage_sled`); `?durability=immediate` (default) or `relaxed` with `&flush_ms=N`, `&cache_mb=N` (256), `&change_log=N` | `backend-sled` |
//! | `redb://PATH` | one redb file, created if missing (`redb://./stowage-data/stowage.redb` relative, `redb:///srv/stowage.redb` absolute); `?durability=immediate` (default) or `relaxed` with `&flush_ms=N`, `&cache_mb=N`, `&change_log=N` (changes kept per watched namespace, default 100,000; 0 = no feed) | `backend-redb` (default) |
//!
//! Every URL takes `?namespace=NAME` (default `default`): the namespace handles start in.
//! An unknown scheme, a backend whose feature is off, or an unknown parameter is
//! `InvalidInput` naming the problem; error messages never repeat the URL, which may hold a
//! password.

#![deny(missing_docs)]

use std::ops::Deref;
use std::sync::Arc;

#[cfg(feature = "archive")]
pub use stowage_archive as archive;
pub use stowage_core::{backend, layer};
pub use stowage_core::{
    validate_id, validate_name, Batch, Body, Capabilities, ChangeEvent, ChangeOp, ChangeStream,
    ChangeToken, Clock, Collection, CollectionSpec, CollectionStats, Committed, Condition,
    ContentType, Error, ErrorKind, Filter, Health, IndexSpec, IndexType, IndexValue, ManualClock,
    MemoryBackend, Mutate, Mutated, Mutation, Page, Precondition, Put, Query, Record, RecordMeta,
    Result, RetainFrom, Retention, SpecChange, StoredRecord, SystemClock, Timestamp, Transaction,
    TtlChange, Version, Versioned, DEFAULT_NAMESPACE, MAX_ID_BYTES, MAX_MUTATIONS, MAX_NAME_BYTES,
    MAX_PATH_CHARS,
};
/// Operations on whole stores: copy, compare, reconcile, mirror, check, retention purge.
pub use stowage_ops as ops;

#[cfg(feature = "cache")]
pub use stowage_cache::{CacheConfig, CacheStats};
#[cfg(feature = "codec")]
pub use stowage_codec::{self as codec, CodecConfig, KeyRing};

use stowage_core::backend::{Backend, Engine, EngineUrl};

/// A store opened by URL: every method of [`stowage_core::Store`] (collections, batches,
/// purge, stats, health) is available through `Deref`.
///
/// It wraps the core store so that opening by URL can live here, beside the cargo features
/// that decide which engines are compiled in, while engine crates depend only on the core.
#[derive(Debug, Clone)]
pub struct Store {
    inner: stowage_core::Store,
}

impl Deref for Store {
    type Target = stowage_core::Store;
    fn deref(&self) -> &stowage_core::Store {
        &self.inner
    }
}

impl From<stowage_core::Store> for Store {
    fn from(inner: stowage_core::Store) -> Self {
        Store { inner }
    }
}

impl Store {
    /// Opens the store a URL names (see the crate docs for the schemes).
    pub async fn open(url: &str) -> Result<Store> {
        Store::builder().url(url).open().await
    }

    /// A builder, for a clock or a namespace set in code.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// A store over a backend built in code.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Store {
        stowage_core::Store::from_backend(backend).into()
    }

    /// The same store in another namespace.
    pub fn namespace(&self, ns: &str) -> Result<Store> {
        self.inner.namespace(ns).map(Store::from)
    }

    /// The core store, for APIs that take one.
    pub fn core(&self) -> &stowage_core::Store {
        &self.inner
    }
}

/// Builds a [`Store`] from a URL.
#[derive(Default)]
pub struct StoreBuilder {
    url: Option<String>,
    namespace: Option<String>,
    clock: Option<Arc<dyn Clock>>,
    /// Open an existing store only (`create_if_missing(false)`).
    existing_only: bool,
    #[cfg(feature = "codec")]
    codec: Option<CodecConfig>,
    #[cfg(feature = "cache")]
    cache: Option<CacheConfig>,
    layers: Vec<Wrap>,
}

type Wrap = Box<dyn FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend> + Send>;

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("StoreBuilder")
            .field("namespace", &self.namespace)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// The backend's URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The namespace (overrides the URL's `namespace` parameter).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Whether opening may make a new, empty store where the URL names none (default:
    /// yes). With `false`, a missing redb or SQLite file, sled folder, PostgreSQL database
    /// or Stowage catalog in it, Redis prefix without a namespace, or any `memory://`
    /// store is [`ErrorKind::NotFound`] ("no store at …") and nothing is created, not even
    /// a folder: what tools that read or repair a store want, so that a mistyped path is
    /// an error instead of an empty store.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.existing_only = !create;
        self
    }

    /// The clock TTLs are measured with.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Stores every body through the codec layer (compressed, encrypted with a key ring,
    /// checksummed; see [`stowage_codec`]), directly over the engine: the layers added with
    /// [`StoreBuilder::layer`] see plain bodies. A store written with a codec must always
    /// be opened with one (and a ring holding its keys).
    #[cfg(feature = "codec")]
    pub fn codec(mut self, config: CodecConfig) -> Self {
        self.codec = Some(config);
        self
    }

    /// Answers point reads from an in-process near cache (see [`stowage_cache`]), over the
    /// codec if there is one (a hit costs no decryption) and under the layers added with
    /// [`StoreBuilder::layer`]. Unsupported on an engine several processes share without a
    /// change feed.
    #[cfg(feature = "cache")]
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Wraps the engine in a layer (see [`stowage_core::layer`]); the first added is the
    /// innermost.
    pub fn layer(
        mut self,
        wrap: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + 'static,
    ) -> Self {
        self.layers.push(Box::new(wrap));
        self
    }

    /// Connects to the backend.
    pub async fn open(self) -> Result<Store> {
        let url = self
            .url
            .ok_or_else(|| Error::invalid("no store URL given (try memory://)"))?;
        let mut target = StoreUrl::parse(&url)?;
        target.engine.create_if_missing = !self.existing_only;
        let namespace = self.namespace.or(target.namespace.clone());
        #[allow(unused_mut)]
        let mut backend = connect(target).await?;
        #[cfg(feature = "codec")]
        if let Some(config) = self.codec {
            backend = Arc::new(stowage_codec::CodecLayer::new(backend, config)?);
        }
        #[cfg(feature = "cache")]
        if let Some(config) = self.cache {
            backend = Arc::new(stowage_cache::CacheLayer::new(backend, config)?);
        }
        let mut b = stowage_core::Store::builder(backend);
        for wrap in self.layers {
            b = b.layer(wrap);
        }
        if let Some(ns) = namespace {
            b = b.namespace(ns);
        }
        if let Some(c) = self.clock {
            b = b.clock(c);
        }
        b.build().map(Store::from)
    }
}

/// A parsed store URL: the engine's part and the namespace the facade takes itself.
struct StoreUrl {
    engine: EngineUrl,
    namespace: Option<String>,
}

impl StoreUrl {
    fn parse(raw: &str) -> Result<StoreUrl> {
        // SQLite's own spelling of an in-memory database.
        let spelled;
        let raw = match raw.strip_prefix("sqlite::memory:") {
            Some(rest) => {
                spelled = format!("sqlite://:memory:{rest}");
                spelled.as_str()
            }
            None => raw,
        };
        // Never echo the URL in an error: it may hold a password.
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
            Error::invalid("store URL is not valid: it must look like SCHEME://LOCATION, as in memory:// or redb://./data.redb")
        })?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '+')
        {
            return Err(Error::invalid(
                "store URL is not valid: its scheme must be lowercase letters, as in redb://",
            ));
        }
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut namespace = None;
        let mut params = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == "namespace" {
                namespace = Some(v.into_owned());
            } else {
                params.push((k.into_owned(), v.into_owned()));
            }
        }
        Ok(StoreUrl {
            engine: EngineUrl {
                scheme: scheme.to_owned(),
                location: location.to_owned(),
                params,
                create_if_missing: true,
            },
            namespace,
        })
    }
}

/// The engines compiled into this build.
fn engines() -> Vec<Engine> {
    #[allow(unused_mut)]
    let mut engines = vec![MemoryBackend::engine()];
    #[cfg(feature = "backend-redb")]
    engines.push(stowage_redb::engine());
    #[cfg(feature = "backend-postgres")]
    engines.push(stowage_postgres::engine());
    #[cfg(feature = "backend-redis")]
    engines.extend(stowage_redis::engines());
    #[cfg(feature = "backend-sqlite")]
    engines.push(stowage_sqlite::engine());
    #[cfg(feature = "backend-sled")]
    engines.push(stowage_sled::engine());
    engines
}

/// Every engine feature of this crate, by scheme: what an error names when the engine is
/// not compiled in. A test checks it against the manifest's `backend-*` features.
const ENGINE_FEATURES: &[(&str, &str)] = &[
    ("redb", "backend-redb"),
    ("postgres", "backend-postgres"),
    ("redis", "backend-redis"),
    ("rediss", "backend-redis"),
    ("redis+cluster", "backend-redis"),
    ("rediss+cluster", "backend-redis"),
    ("sqlite", "backend-sqlite"),
    ("sled", "backend-sled"),
];

async fn connect(url: StoreUrl) -> Result<Arc<dyn Backend>> {
    let scheme = url.engine.scheme.clone();
    if let Some(engine) = engines().into_iter().find(|e| e.scheme == scheme) {
        return (engine.connect)(url.engine).await;
    }
    if let Some((_, feature)) = ENGINE_FEATURES.iter().find(|(s, _)| *s == scheme) {
        Err(Error::invalid(format!(
            "{scheme}:// is not compiled into this build: enable the cargo feature \
         {feature:?} of the stowage crate"
        )))
    } else {
        let mut known: Vec<&str> = engines().iter().map(|e| e.scheme).collect();
        known.extend(ENGINE_FEATURES.iter().map(|(s, _)| *s));
        known.sort_unstable();
        known.dedup();
        Err(Error::invalid(format!(
            "unknown store URL scheme {scheme:?}: this build knows {}",
            known
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

// README.md's Rust snippets compile and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeSnippets;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_url_opens() {
        let store = Store::open("memory://").await.unwrap();
        assert_eq!(store.backend_name(), "memory");
        assert_eq!(store.namespace_name(), "default");
        let store = Store::open("memory://?namespace=billing").await.unwrap();
        assert_eq!(store.namespace_name(), "billing");
        let store = Store::builder()
            .url("memory://?namespace=billing")
            .namespace("other")
            .open()
            .await
            .unwrap();
        assert_eq!(store.namespace_name(), "other");
    }

    #[tokio::test]
    async fn bad_urls_say_what_is_wrong() {
        let msg = |url: &'static str| async move {
            let e = Store::open(url).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
            e.message().to_owned()
        };
        assert!(msg("ftp://x")
            .await
            .contains("unknown store URL scheme \"ftp\""));
        assert!(msg("not a url").await.contains("SCHEME://LOCATION"));
        assert!(msg("memory://?cache=1")
            .await
            .contains("parameter \"cache\""));
        assert!(msg("memory://?namespace=has%20space")
            .await
            .contains("namespace"));
        assert!(msg("memory://somewhere").await.contains("no location"));
        let secret = msg("ftp://user:hunter2@host/db").await;
        assert!(!secret.contains("hunter2"), "{secret}");
    }

    /// `url` opens a store of `backend` in namespace `svc`, and a second open finds what the
    /// first wrote.
    #[allow(dead_code)]
    async fn opens_and_keeps_its_data(url: &str, backend: &str) {
        let store = Store::open(url).await.unwrap();
        assert_eq!(
            (store.backend_name(), store.namespace_name()),
            (backend, "svc")
        );
        let kv = store
            .collection_with_spec::<serde_json::Value>("kv", CollectionSpec::new())
            .await
            .unwrap();
        kv.put("k", &serde_json::json!({"v": 1}), Put::insert())
            .await
            .unwrap();
        drop((kv, store));
        let again = Store::open(url).await.unwrap();
        let kv = again
            .existing_collection::<serde_json::Value>("kv")
            .await
            .unwrap();
        assert_eq!(kv.get("k").await.unwrap().unwrap().value["v"], 1);
    }

    #[cfg(feature = "backend-redb")]
    #[tokio::test]
    async fn redb_url_opens_a_file_that_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "redb://{}/nested/store.redb?namespace=svc",
            dir.path().display()
        );
        opens_and_keeps_its_data(&url, "redb").await;
        let e = Store::open("redb://?durability=sometimes")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[cfg(feature = "backend-sqlite")]
    #[tokio::test]
    async fn sqlite_urls_open_a_file_that_keeps_its_data_or_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}/nested/store.db?namespace=svc",
            dir.path().display()
        );
        opens_and_keeps_its_data(&url, "sqlite").await;
        for memory in ["sqlite::memory:", "sqlite://:memory:?namespace=t"] {
            let store = Store::open(memory).await.unwrap();
            assert_eq!(store.backend_name(), "sqlite");
            assert!(!store.capabilities().persistent, "{memory}");
        }
        let e = Store::open("sqlite://x.db?synchronous=sometimes")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[cfg(feature = "backend-sled")]
    #[tokio::test]
    async fn sled_urls_open_a_folder_that_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sled://{}/nested/store.sled?namespace=svc",
            dir.path().display()
        );
        opens_and_keeps_its_data(&url, "sled").await;
        let store = Store::open(&url).await.unwrap();
        assert!(!store.capabilities().fsync, "sled's flush is not an fsync");
        let e = Store::open("sled://x.sled?durability=sometimes")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    /// `StoreBuilder::codec` puts the codec directly over the engine: the file holds no
    /// plaintext, a store opened with the ring reads, one opened without sees only frames.
    #[cfg(all(feature = "codec", feature = "backend-redb"))]
    #[tokio::test]
    async fn codec_seals_what_reaches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealed.redb");
        let url = format!("redb://{}", path.display());
        let ring = KeyRing::generate();
        let open = |codec: Option<CodecConfig>| {
            let url = url.clone();
            async move {
                let mut b = Store::builder().url(url);
                if let Some(c) = codec {
                    b = b.codec(c);
                }
                b.open().await.unwrap()
            }
        };
        let store = open(Some(CodecConfig::new().encrypt(ring.clone()))).await;
        let kv = store
            .collection_with_spec::<serde_json::Value>("kv", CollectionSpec::new())
            .await
            .unwrap();
        kv.put(
            "k",
            &serde_json::json!({"v": "marker-in-plaintext"}),
            Put::insert(),
        )
        .await
        .unwrap();
        drop((kv, store));
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(19).any(|w| w == b"marker-in-plaintext"));
        let plain = open(None).await;
        let raw = plain
            .existing_collection::<serde_json::Value>("kv")
            .await
            .unwrap()
            .get_raw("k")
            .await
            .unwrap()
            .unwrap();
        assert!(raw.value.starts_with(b"SWC"));
        drop(plain);
        let sealed = open(Some(CodecConfig::new().encrypt(ring))).await;
        let kv = sealed
            .existing_collection::<serde_json::Value>("kv")
            .await
            .unwrap();
        assert_eq!(
            kv.get("k").await.unwrap().unwrap().value["v"],
            "marker-in-plaintext"
        );
    }

    #[tokio::test]
    async fn disabled_engines_name_their_feature() {
        for (scheme, feature) in ENGINE_FEATURES {
            // An unknown parameter fails every compiled-in engine before it touches anything.
            let url = format!("{scheme}://u@localhost/x?no_such_parameter=1");
            let e = Store::open(&url).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            let compiled_in = e.message().contains("no_such_parameter");
            assert!(compiled_in || e.message().contains(feature), "{e}");
        }
        // A scheme no feature provides names no feature.
        let e = Store::open("cassandra://u:secret@h/db").await.unwrap_err();
        assert!(e.message().contains("unknown store URL scheme"), "{e}");
        assert!(!e.message().contains("backend-"), "{e}");
        assert!(!e.message().contains("secret"), "{e}");
    }

    /// Every `backend-*` feature of the manifest has an engine entry, and every entry a
    /// feature: an error never names a feature that does not exist.
    #[test]
    fn engine_features_match_the_manifest() {
        let manifest = include_str!("../Cargo.toml");
        let mut declared: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
            .filter(|k| k.starts_with("backend-"))
            .collect();
        declared.sort_unstable();
        let mut listed: Vec<&str> = ENGINE_FEATURES.iter().map(|(_, f)| *f).collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(declared, listed);
        for (scheme, _) in ENGINE_FEATURES {
            let on = (*scheme == "redb" && cfg!(feature = "backend-redb"))
                || (*scheme == "postgres" && cfg!(feature = "backend-postgres"))
                || (scheme.starts_with("redis") && cfg!(feature = "backend-redis"))
                || (*scheme == "sqlite" && cfg!(feature = "backend-sqlite"))
                || (*scheme == "sled" && cfg!(feature = "backend-sled"));
            assert_eq!(
                on,
                engines().iter().any(|e| e.scheme == *scheme),
                "{scheme}"
            );
        }
    }
}
