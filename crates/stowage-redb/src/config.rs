//! Options of a redb store, from code or from a `redb://` URL.

use std::path::PathBuf;
use std::time::Duration;

use stowage_core::backend::EngineUrl;
use stowage_core::{Error, Result};

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every acknowledged write is on disk: its commit was fsynced before the caller was
    /// answered. Concurrent writers share commits (group commit), so throughput grows with
    /// concurrency instead of paying one fsync per write. The default.
    Immediate,
    /// Commits are not fsynced; a durable commit runs every `flush_interval` while writes
    /// arrive. A crash of the process or the machine loses the writes acknowledged since the
    /// last durable commit — up to `flush_interval` of them — but never leaves a torn or
    /// inconsistent file: records, indexes and TTLs stay in agreement.
    Relaxed {
        /// How often a durable commit bounds the loss.
        flush_interval: Duration,
    },
}

/// How to open a redb store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbConfig {
    /// The database file; created (with its parent folders) if missing.
    pub path: PathBuf,
    /// When writes are on disk.
    pub durability: Durability,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// How many changes each watched namespace's change log keeps (0: no change feed).
    pub change_log: u64,
}

/// The URL parameters `redb://` takes besides `namespace`.
pub const URL_PARAMS: &[&str] = &["durability", "flush_ms", "cache_mb", "change_log"];

impl RedbConfig {
    /// Durable writes to `path`, with redb's default 1 GiB page cache (memory is taken as pages are read, not up front).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RedbConfig {
            path: path.into(),
            durability: Durability::Immediate,
            cache_bytes: 1 << 30,
            change_log: 100_000,
        }
    }

    /// From the parts of a `redb://PATH?durability=immediate|relaxed&flush_ms=N&cache_mb=N`
    /// URL: the path after `redb://` (`redb://./data/x.redb` is relative, `redb:///srv/x.redb`
    /// absolute) and the query parameters.
    pub fn from_url_parts(path: &str, params: &[(String, String)]) -> Result<Self> {
        if path.is_empty() {
            return Err(Error::invalid(
                "redb:// needs a file path, as in redb://./stowage-data/stowage.redb",
            ));
        }
        let mut config = RedbConfig::new(path);
        let mut relaxed = false;
        let mut flush = Duration::from_secs(1);
        for (k, v) in params {
            let number = || EngineUrl::number("redb", k, v);
            match k.as_str() {
                "durability" => {
                    relaxed = match v.as_str() {
                        "immediate" => false,
                        "relaxed" => true,
                        _ => {
                            return Err(Error::invalid(format!(
                                "redb:// durability must be immediate or relaxed, not {v:?}"
                            )))
                        }
                    }
                }
                "flush_ms" => flush = Duration::from_millis(number()?.max(1)),
                "change_log" => config.change_log = number()?,
                "cache_mb" => {
                    config.cache_bytes =
                        usize::try_from(number()?).unwrap_or(usize::MAX / (1 << 20)) << 20
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "redb:// parameter {k:?} is not known (known: namespace, {})",
                        URL_PARAMS.join(", ")
                    )))
                }
            }
        }
        if relaxed {
            config.durability = Durability::Relaxed {
                flush_interval: flush,
            };
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn url_parts_parse() {
        let c = RedbConfig::from_url_parts("./x.redb", &[]).unwrap();
        assert_eq!(c.durability, Durability::Immediate);
        let c = RedbConfig::from_url_parts(
            "x.redb",
            &params(&[("durability", "relaxed"), ("flush_ms", "250")]),
        )
        .unwrap();
        assert_eq!(
            c.durability,
            Durability::Relaxed {
                flush_interval: Duration::from_millis(250)
            }
        );
        assert!(RedbConfig::from_url_parts("", &[]).is_err());
        let e =
            RedbConfig::from_url_parts("x", &params(&[("durability", "sometimes")])).unwrap_err();
        assert!(e.message().contains("immediate or relaxed"));
        let e = RedbConfig::from_url_parts("x", &params(&[("flush_ms", "soon")])).unwrap_err();
        assert!(e.message().contains("whole number"));
    }
}
