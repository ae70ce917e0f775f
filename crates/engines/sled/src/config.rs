//! Options of a sled store, from code or from a `sled://` URL.

use std::path::PathBuf;

use stowage_core::{Error, Result};
pub use stowage_kv::Durability;
use stowage_kv::UrlOptions;
pub use stowage_kv::URL_PARAMS;

/// How to open a sled store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledConfig {
    /// The database folder (sled keeps several files in it); created if missing, unless
    /// `create_if_missing` is off.
    pub path: PathBuf,
    /// Whether a folder holding no sled database may be made into a new store; off,
    /// opening it is NotFound and nothing is created.
    pub create_if_missing: bool,
    /// When writes are on disk — within what sled's flush promises (see the crate docs).
    pub durability: Durability,
    /// sled's page cache, in bytes.
    pub cache_bytes: usize,
    /// How many changes each watched namespace's change log keeps (0: no change feed).
    pub change_log: u64,
}

impl SledConfig {
    /// Writes flushed before they are acknowledged, to the folder `path`, with a 256 MiB
    /// page cache.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledConfig {
            path: path.into(),
            create_if_missing: true,
            durability: Durability::Immediate,
            cache_bytes: 256 << 20,
            change_log: 100_000,
        }
    }

    /// From the parts of a `sled://PATH?durability=immediate|relaxed&flush_ms=N&cache_mb=N`
    /// URL: the folder after `sled://` (`sled://./data/incidents` is relative,
    /// `sled:///srv/incidents` absolute) and the query parameters.
    pub fn from_url_parts(path: &str, params: &[(String, String)]) -> Result<Self> {
        if path.is_empty() {
            return Err(Error::invalid(
                "sled:// needs a folder path, as in sled://./stowage-data/incidents.sled",
            ));
        }
        let options = UrlOptions::parse("sled", params)?;
        let defaults = SledConfig::new(path);
        Ok(SledConfig {
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

    #[test]
    fn url_parts_parse() {
        let c = SledConfig::from_url_parts("./x.sled", &[]).unwrap();
        assert_eq!(c.durability, Durability::Immediate);
        let params = vec![
            ("durability".to_owned(), "relaxed".to_owned()),
            ("flush_ms".to_owned(), "250".to_owned()),
            ("cache_mb".to_owned(), "8".to_owned()),
        ];
        let c = SledConfig::from_url_parts("x", &params).unwrap();
        assert_eq!(
            c.durability,
            Durability::Relaxed {
                flush_interval: std::time::Duration::from_millis(250)
            }
        );
        assert_eq!(c.cache_bytes, 8 << 20);
        assert!(SledConfig::from_url_parts("", &[]).is_err());
        let bad = vec![("fsync".to_owned(), "yes".to_owned())];
        let e = SledConfig::from_url_parts("x", &bad).unwrap_err();
        assert!(e.message().contains("sled:// parameter"), "{e}");
    }
}
