//! Options of a PostgreSQL store, from code or from a `postgres://` URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use stowage_core::backend::EngineUrl;
use stowage_core::{Error, Result};

use crate::tls::SslMode;

/// The URL parameters `postgres://` takes besides `namespace`.
pub const URL_PARAMS: &[&str] = &[
    "pool_size",
    "connect_timeout_ms",
    "statement_timeout_ms",
    "application_name",
    "sslmode",
    "sslrootcert",
    "clock",
    "change_log",
];

/// How to reach a PostgreSQL database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` with
/// the [`URL_PARAMS`].
///
/// `Debug` shows where it connects, never the password.
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    /// Connections the pool keeps at most.
    pub pool_size: usize,
    /// The longest a statement may run before PostgreSQL cancels it (`None`: no limit).
    pub statement_timeout: Option<Duration>,
    /// Whose clock decides timestamps and expiry.
    pub clock: ClockSource,
    /// How many changes the log keeps per watched namespace for watchers that resume
    /// (`0`: no change feed).
    pub change_log: u64,
    /// Whether a database without Stowage's catalog may be given one; off, opening it is
    /// NotFound and nothing is created. (A missing database is NotFound either way:
    /// Stowage never creates databases.)
    pub create_if_missing: bool,
    /// `sslmode`: when to encrypt and what to check (see `tls.rs`).
    pub(crate) ssl_mode: SslMode,
    /// `sslrootcert`: the certificate authorities to trust.
    pub(crate) ssl_root_cert: Option<PathBuf>,
}

/// Whose clock decides timestamps and expiry (URL parameter `clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClockSource {
    /// `clock=database`, the default: PostgreSQL's `now()`. Instances whose own clocks are
    /// skewed still agree on what has expired.
    #[default]
    Database,
    /// `clock=caller`: the time the store passes with each call (its [`stowage_core::Clock`]).
    /// For tests that drive time by hand, and for services that must expire records by
    /// their own clock.
    Caller,
}

impl PostgresConfig {
    /// From the parts of a `postgres://` URL: what stands between `://` and `?`, and the
    /// query parameters.
    pub fn from_url_parts(location: &str, params: &[(String, String)]) -> Result<Self> {
        // tokio-postgres parses the location (percent-decoding user and password); its
        // message could quote the input, so it is replaced by one that cannot.
        let mut pg = tokio_postgres::Config::from_str(&format!("postgresql://{location}"))
            .map_err(|_| {
                Error::invalid(
                    "postgres:// URL is not valid: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                )
            })?;
        if pg.get_hosts().is_empty() {
            return Err(Error::invalid("postgres:// URL names no host"));
        }
        if pg.get_user().is_none() {
            return Err(Error::invalid(
                "postgres:// URL names no user, as in postgres://postgres@127.0.0.1/test",
            ));
        }
        pg.application_name("stowage");
        pg.connect_timeout(Duration::from_secs(10));
        let mut config = PostgresConfig {
            pg,
            pool_size: 16,
            statement_timeout: Some(Duration::from_secs(30)),
            clock: ClockSource::Database,
            change_log: 100_000,
            create_if_missing: true,
            ssl_mode: SslMode::default(),
            ssl_root_cert: None,
        };
        for (k, v) in params {
            let number = || EngineUrl::number("postgres", k, v);
            match k.as_str() {
                "pool_size" => {
                    config.pool_size = usize::try_from(number()?)
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| {
                            Error::invalid("postgres:// pool_size must be between 1 and 1024")
                        })?;
                }
                "connect_timeout_ms" => {
                    config
                        .pg
                        .connect_timeout(Duration::from_millis(number()?.max(1)));
                }
                "statement_timeout_ms" => {
                    config.statement_timeout = match number()? {
                        0 => None,
                        ms => Some(Duration::from_millis(ms)),
                    }
                }
                "application_name" => {
                    config.pg.application_name(v);
                }
                "change_log" => config.change_log = number()?,
                "clock" => {
                    config.clock = match v.as_str() {
                        "database" => ClockSource::Database,
                        "caller" => ClockSource::Caller,
                        _ => {
                            return Err(Error::invalid(format!(
                                "postgres:// clock must be database or caller, not {v:?}"
                            )))
                        }
                    }
                }
                "sslmode" => config.ssl_mode = SslMode::parse(v)?,
                "sslrootcert" => config.ssl_root_cert = Some(PathBuf::from(v)),
                _ => {
                    return Err(Error::invalid(format!(
                        "postgres:// parameter {k:?} is not known (known: namespace, {})",
                        URL_PARAMS.join(", ")
                    )))
                }
            }
        }
        config.pg.ssl_mode(config.ssl_mode.driver());
        // Made now, so a bad sslrootcert fails here, with the URL.
        crate::tls::connector(config.ssl_mode, config.ssl_root_cert.as_ref())?;
        Ok(config)
    }

    /// Where this connects, for messages: `user@host:port/database`, without the password.
    pub fn target(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        let user = self.pg.get_user().unwrap_or_default();
        let db = self.pg.get_dbname().unwrap_or(user);
        format!("{user}@{host}:{port}/{db}")
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("target", &self.target())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.pg.get_connect_timeout())
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.pg.get_application_name())
            .field("clock", &self.clock)
            .field("change_log", &self.change_log)
            .field("create_if_missing", &self.create_if_missing)
            .field("sslmode", &self.ssl_mode)
            .field("sslrootcert", &self.ssl_root_cert)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::ErrorKind;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn url_parts_parse() {
        let c = PostgresConfig::from_url_parts(
            "app:s3cr%40t@db.example:6543/orders",
            &params(&[
                ("pool_size", "4"),
                ("statement_timeout_ms", "0"),
                ("application_name", "billing"),
                ("sslmode", "disable"),
                ("clock", "caller"),
            ]),
        )
        .unwrap();
        assert_eq!(c.target(), "app@db.example:6543/orders");
        assert_eq!(c.pg.get_password(), Some(&b"s3cr@t"[..]), "percent-decoded");
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.statement_timeout, None);
        assert_eq!(c.pg.get_application_name(), Some("billing"));
        assert_eq!(c.clock, ClockSource::Caller);
        let c = PostgresConfig::from_url_parts("postgres@127.0.0.1/test", &[]).unwrap();
        assert_eq!(c.target(), "postgres@127.0.0.1:5432/test");
        assert_eq!(c.statement_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        let cases = [
            (
                "u:hunter2@h/db",
                vec![("pool_size", "0")],
                "between 1 and 1024",
            ),
            (
                "u:hunter2@h/db",
                vec![("pool_size", "many")],
                "whole number",
            ),
            ("u:hunter2@h/db", vec![("sslmode", "maybe")], "sslmode"),
            ("u:hunter2@h/db", vec![("clock", "sundial")], "clock"),
            (
                "u:hunter2@h/db",
                vec![("sslmode", "verify-full")],
                "need sslrootcert",
            ),
            (
                "u:hunter2@h/db",
                vec![
                    ("sslmode", "require"),
                    ("sslrootcert", "/nonexistent/ca.pem"),
                ],
                "cannot be read",
            ),
            ("u:hunter2@h/db", vec![("colour", "blue")], "not known"),
            ("u:hunter2@h:notaport/db", vec![], "not valid"),
            ("u:hunter2@/db", vec![], "no host"),
        ];
        for (location, p, why) in cases {
            let e = PostgresConfig::from_url_parts(location, &params(&p)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains(why), "{why}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
        let c =
            PostgresConfig::from_url_parts("u:hunter2@h/db", &params(&[("sslmode", "require")]))
                .unwrap();
        assert_eq!(c.ssl_mode, SslMode::Require);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = PostgresConfig::from_url_parts("u:hunter2@h/db", &[]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("u@h:5432/db"),
            "{shown}"
        );
    }
}
