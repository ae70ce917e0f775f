//! The ordered key-value engine shared by the embedded backends (redb, sled): one layout
//! ([`schema`]), one write engine ([`write`](mod@write): every write, spec change, fill, drop, purge
//! and delete as a job over byte tables), and one group commit ([`group_commit`]) that
//! runs queued jobs in one transaction per group and undoes a failing job alone.
//!
//! An engine crate provides [`KvEngine`] — how to run one write transaction over its
//! tables, and how to make commits durable — and its own reads.

#![deny(missing_docs)]

mod backend;
pub mod group_commit;
pub mod query;
pub mod schema;
pub mod write;

pub use backend::{KvBackend, KvStore};
pub use group_commit::{Durability, GroupCommit, KvEngine, KvTables, TableId, Txn};

use stowage_core::backend::EngineUrl;
use stowage_core::{Error, Result};

/// The URL parameters an ordered key-value engine takes besides `namespace`.
pub const URL_PARAMS: &[&str] = &["durability", "flush_ms", "cache_mb", "change_log"];

/// What the parameters of a `redb://` or `sled://` URL set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UrlOptions {
    /// `durability=immediate|relaxed` and `flush_ms=N` (relaxed only; default 1000).
    pub durability: Durability,
    /// `cache_mb=N`, in bytes; `None` keeps the engine's default.
    pub cache_bytes: Option<usize>,
    /// `change_log=N`: changes kept per watched namespace (default 100,000; 0: no feed).
    pub change_log: u64,
}

impl UrlOptions {
    /// Parses `params` of a `scheme://` URL; unknown names and bad values are InvalidInput.
    pub fn parse(scheme: &str, params: &[(String, String)]) -> Result<Self> {
        let mut options = UrlOptions {
            durability: Durability::Immediate,
            cache_bytes: None,
            change_log: 100_000,
        };
        let mut relaxed = false;
        let mut flush = std::time::Duration::from_secs(1);
        for (k, v) in params {
            let number = || EngineUrl::number(scheme, k, v);
            match k.as_str() {
                "durability" => {
                    relaxed = match v.as_str() {
                        "immediate" => false,
                        "relaxed" => true,
                        _ => {
                            return Err(Error::invalid(format!(
                                "{scheme}:// durability must be immediate or relaxed, not {v:?}"
                            )))
                        }
                    }
                }
                "flush_ms" => flush = std::time::Duration::from_millis(number()?.max(1)),
                "change_log" => options.change_log = number()?,
                "cache_mb" => {
                    options.cache_bytes =
                        Some(usize::try_from(number()?).unwrap_or(usize::MAX / (1 << 20)) << 20);
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{scheme}:// parameter {k:?} is not known (known: namespace, {})",
                        URL_PARAMS.join(", ")
                    )))
                }
            }
        }
        if relaxed {
            options.durability = Durability::Relaxed {
                flush_interval: flush,
            };
        }
        Ok(options)
    }
}
