//! `sqlite://PATH` and `sqlite::memory:` as a [`SqliteConfig`].

use std::path::PathBuf;
use std::time::Duration;

use stowage_core::backend::EngineUrl;
use stowage_core::{Error, Result};

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A file (created with its directory when missing).
    File(PathBuf),
    /// A private in-memory database, gone when the last handle is dropped.
    Memory,
}

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// `synchronous=FULL` (the default): a write is acknowledged after its commit is
    /// fsynced to the write-ahead log. Nothing acknowledged is lost, whatever fails.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits are written to the write-ahead log but fsynced only
    /// when the log is checkpointed into the database (about every 1,000 pages). A killed
    /// *process* loses nothing (the operating system has the writes); a power failure or an
    /// operating-system crash can lose the writes acknowledged since the last checkpoint.
    /// The database is never corrupted: it comes back as of an earlier commit.
    Normal,
}

/// How to open a SQLite store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The database.
    pub location: Location,
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Read connections kept open at most (reads run on a blocking-thread pool, one
    /// connection each; WAL lets them read while the writer commits).
    pub readers: usize,
    /// How many change-log events each watched namespace keeps (0: no change feed).
    pub change_log: u64,
    /// Whether a missing (or empty) file may be made into a new store; off, opening it —
    /// or an in-memory database, which never exists before — is NotFound and nothing is
    /// created.
    pub create_if_missing: bool,
}

/// The URL parameters `sqlite://` takes.
pub const URL_PARAMS: &[&str] = &["synchronous", "readers", "change_log"];

impl SqliteConfig {
    /// A durable store in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            location: Location::File(path.into()),
            synchronous: Synchronous::Full,
            readers: 8,
            change_log: 100_000,
            create_if_missing: true,
        }
    }

    /// A private in-memory database.
    pub fn memory() -> Self {
        SqliteConfig {
            location: Location::Memory,
            ..SqliteConfig::new("")
        }
    }

    /// From a URL's location and parameters: `sqlite://PATH` (`sqlite://./data/app.db`,
    /// `sqlite:///var/lib/app.db`), or `:memory:` for an in-memory database (the facade
    /// also takes `sqlite::memory:`, SQLite's own spelling).
    pub fn from_url_parts(location: &str, params: &[(String, String)]) -> Result<Self> {
        let mut config = match location {
            "" => {
                return Err(Error::invalid(
                    "sqlite:// needs a file path, as in sqlite://./stowage-data/stowage.db, \
                     or :memory: (sqlite::memory:)",
                ))
            }
            ":memory:" => SqliteConfig::memory(),
            path => SqliteConfig::new(path),
        };
        for (k, v) in params {
            let number = || EngineUrl::number("sqlite", k, v);
            match k.as_str() {
                "synchronous" => {
                    config.synchronous = match v.to_ascii_lowercase().as_str() {
                        "full" => Synchronous::Full,
                        "normal" => Synchronous::Normal,
                        _ => {
                            return Err(Error::invalid(format!(
                                "sqlite:// synchronous must be full or normal, not {v:?}"
                            )))
                        }
                    }
                }
                "readers" => {
                    config.readers = usize::try_from(number()?.clamp(1, 64)).unwrap_or(8);
                }
                "change_log" => config.change_log = number()?,
                _ => {
                    return Err(Error::invalid(format!(
                        "sqlite:// parameter {k:?} is not known (known: namespace, {})",
                        URL_PARAMS.join(", ")
                    )))
                }
            }
        }
        Ok(config)
    }

    /// How long a connection waits for a lock another connection of this process holds
    /// (a checkpoint, say) before it gives up with Unavailable.
    // A method of the config: where a URL parameter for it would be read.
    #[allow(clippy::unused_self)]
    pub(crate) fn busy_timeout(&self) -> Duration {
        Duration::from_secs(10)
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
        let c = SqliteConfig::from_url_parts("./x.db", &[]).unwrap();
        assert_eq!(c.location, Location::File("./x.db".into()));
        assert_eq!(c.synchronous, Synchronous::Full);
        let c = SqliteConfig::from_url_parts(
            ":memory:",
            &params(&[("synchronous", "normal"), ("readers", "2")]),
        )
        .unwrap();
        assert_eq!(c.location, Location::Memory);
        assert_eq!(c.synchronous, Synchronous::Normal);
        assert_eq!(c.readers, 2);
    }

    #[test]
    fn bad_parts_are_refused_with_the_reason() {
        let msg = |l: &str, p: &[(&str, &str)]| {
            SqliteConfig::from_url_parts(l, &params(p))
                .unwrap_err()
                .to_string()
        };
        assert!(msg("", &[]).contains("needs a file path"));
        assert!(msg("x.db", &[("synchronous", "off")]).contains("full or normal"));
        assert!(msg("x.db", &[("readers", "many")]).contains("whole number"));
        assert!(msg("x.db", &[("cache", "1")]).contains("not known"));
    }
}
