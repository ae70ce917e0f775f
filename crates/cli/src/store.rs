//! What the commands share: opening a store by URL (with its codec, never creating one a
//! command only reads), selections, and small helpers for output and files.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;
use stowage::ops::Selection;
use stowage::{CodecConfig, KeyRing, Result, Store};

use crate::DEFAULT_URL;

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
pub(crate) fn codec_config(keyring: Option<&Path>, compress: bool) -> Result<Option<CodecConfig>> {
    Ok(match keyring {
        Some(path) => Some(CodecConfig::new().encrypt(KeyRing::load(path)?)),
        None if compress => Some(CodecConfig::new()),
        None => None,
    })
}

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The store's URL.
    #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    /// The namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    codec: CodecArgs,
}

pub(crate) async fn open(args: &StoreArgs, create: Create) -> Result<Store> {
    let mut builder = builder(&args.url, create).namespace(args.namespace.clone());
    if let Some(codec) = codec_config(args.codec.keyring.as_deref(), args.codec.compress)? {
        builder = builder.codec(codec);
    }
    builder.open().await
}

/// Which namespaces and collections a command covers.
#[derive(Debug, Args)]
pub(crate) struct SelectionArgs {
    /// Only this namespace (repeat for several) [default: all].
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Only collections of this name (repeat for several) [default: all].
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
}

impl SelectionArgs {
    pub(crate) fn selection(&self) -> Selection {
        Selection {
            namespaces: self.namespaces.clone(),
            collections: self.collections.clone(),
        }
    }
}

/// Whether a command may make the store its URL names. Only commands that write what they
/// are given (`serve`, `put`, `restore`, the destination of `copy`) may; the others open
/// an existing store or fail with NotFound, so a mistyped path is never reported on as an
/// empty store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Open an existing store only.
    No,
    /// Make a new, empty store where there is none.
    IfMissing,
}

/// A store builder for a URL that creates the store only where `create` allows.
pub(crate) fn builder(url: &str, create: Create) -> stowage::StoreBuilder {
    Store::builder()
        .url(url)
        .create_if_missing(create == Create::IfMissing)
}

/// Opens a store by URL with the codec the flags ask for.
pub(crate) async fn open_url(url: &str, codec: &CodecArgs, create: Create) -> Result<Store> {
    let mut builder = builder(url, create);
    if let Some(c) = codec_config(codec.keyring.as_deref(), codec.compress)? {
        builder = builder.codec(c);
    }
    builder.open().await
}

/// The URL without a password, for printing.
pub(crate) fn redacted(url: &str) -> String {
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

/// Writes a file whole or not at all (a temporary file renamed over it).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| stowage::Error::internal(format!("cannot write {}: {e}", path.display())))
}

pub(crate) fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| stowage::Error::invalid(format!("{what} is not valid JSON: {e}")))
}

pub(crate) fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
