//! Options of a redb store, from code or from a `redb://` URL.

use std::path::PathBuf;

use stowage_core::{Error, Result};
pub use stowage_kv::Durability;
use stowage_kv::UrlOptions;

/// How to open a redb store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbConfig {
    /// The database file; created (with its parent folders) if missing, unless
    /// `create_if_missing` is off.
    pub path: PathBuf,
    /// Whether a missing (or empty) file may be made into a new store; off, opening it is
    /// NotFound and nothing is created.
    pub create_if_missing: bool,
    /// When writes are on disk.
    pub durability: Durability,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// How many changes each watched namespace's change log keeps (0: no change feed).
    pub change_log: u64,
}

/// The URL parameters `redb://` takes besides `namespace`.
pub use stowage_kv::URL_PARAMS;

impl RedbConfig {
    /// Durable writes to `path`, with redb's default 1 GiB page cache (memory is taken as pages are read, not up front).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RedbConfig {
            path: path.into(),
            create_if_missing: true,
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
        let options = UrlOptions::parse("redb", params)?;
        let defaults = RedbConfig::new(path);
        Ok(RedbConfig {
            durability: options.durability,
            cache_bytes: options.cache_bytes.unwrap_or(defaults.cache_bytes),
            change_log: options.change_log,
            ..defaults
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
