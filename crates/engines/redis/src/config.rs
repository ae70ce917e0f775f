//! Options of a Redis store, from code or from a URL:
//!
//! - `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` — one server (database `DB`, default 0);
//! - `rediss://…` — the same over TLS (rustls; the server's certificate is checked against
//!   the system's roots);
//! - `redis+cluster://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT,…` (and `rediss+cluster://`) — a
//!   Redis Cluster, reached through any of the nodes named.
//!
//! Parameters: `prefix` (the first part of every key, default `stowage`: two stores with two
//! prefixes share a server without seeing each other), `cacert=PATH` (with `rediss`: the
//! certificate authorities to trust instead of the system's), `connect_timeout_ms`,
//! `response_timeout_ms`, `clock=server|caller` and `change_log` (entries kept per
//! namespace's stream; 0: no change feed).

use std::fmt;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo};
use stowage_core::backend::EngineUrl;
use stowage_core::{validate_name, Error, Result};

/// The URL parameters `redis://` takes besides `namespace`.
pub const URL_PARAMS: &[&str] = &[
    "prefix",
    "cacert",
    "connect_timeout_ms",
    "response_timeout_ms",
    "clock",
    "change_log",
];

/// Where the store lives.
#[derive(Clone)]
// One per store: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Server(ConnectionInfo),
    Cluster(Vec<ConnectionInfo>),
}

/// How to reach Redis, and how to lay keys out there.
///
/// `Debug` shows where it connects, never the password.
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) target: Target,
    /// The first part of every key (`<prefix>:{<namespace>}:…`).
    pub prefix: String,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a command may wait for its answer.
    pub response_timeout: Duration,
    /// Whose clock decides timestamps and expiry.
    pub clock: ClockSource,
    /// How many changes each namespace's stream keeps for watchers that resume (`0`: no
    /// change feed).
    pub change_log: u64,
    /// Whether a prefix under which no collection was ever made may be used as a new
    /// store; off, connecting to it is NotFound. (Redis has nothing to create up front:
    /// this only tells an empty prefix — a mistyped one — from a store.)
    pub create_if_missing: bool,
    /// `cacert`: a PEM file of the certificate authorities a `rediss://` server's
    /// certificate must chain to, instead of the system's.
    pub(crate) ca_cert: Option<std::path::PathBuf>,
}

/// Whose clock decides timestamps and expiry (URL parameter `clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClockSource {
    /// `clock=server`, the default: Redis's `TIME`, and records expire natively
    /// (`PEXPIREAT`). Instances with skewed clocks agree on what has expired.
    #[default]
    Server,
    /// `clock=caller`: the time the store passes with each call. Records then do not expire
    /// natively (their hash stays until purged); reads hide them by their `expires_at`.
    /// For tests that drive time by hand.
    Caller,
}

impl RedisConfig {
    /// From a URL's parts: its scheme (`redis`, `rediss`, `redis+cluster`,
    /// `rediss+cluster`), what stands between `://` and `?`, and the query parameters.
    // Long: one arm per URL parameter.
    #[allow(clippy::too_many_lines)]
    pub fn from_url_parts(
        scheme: &str,
        location: &str,
        params: &[(String, String)],
    ) -> Result<Self> {
        if let Some((k, _)) = params
            .iter()
            .find(|(k, _)| !URL_PARAMS.contains(&k.as_str()))
        {
            return Err(Error::invalid(format!(
                "{scheme}:// parameter {k:?} is not known (known: namespace, {})",
                URL_PARAMS.join(", ")
            )));
        }
        let (tls, cluster) = match scheme {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+cluster" => (false, true),
            "rediss+cluster" => (true, true),
            other => {
                return Err(Error::invalid(format!(
                    "{other}:// is not a Redis URL (redis, rediss, redis+cluster, rediss+cluster)"
                )))
            }
        };
        let node_scheme = if tls { "rediss" } else { "redis" };
        // redis-rs parses each node's URL; its messages could quote the input, so they are
        // replaced by ones that cannot.
        let parse = |url: String| {
            url.as_str().into_connection_info().map_err(|_| {
                Error::invalid(format!(
                    "{scheme}:// URL is not valid: expected {scheme}://[[USER]:PASSWORD@]HOST[:PORT]{}",
                    if cluster { ",HOST:PORT,…" } else { "[/DB]" }
                ))
            })
        };
        let target = if cluster {
            let (auth, hosts) = match location.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), location),
            };
            let nodes = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| parse(format!("{node_scheme}://{auth}{h}")))
                .collect::<Result<Vec<_>>>()?;
            if nodes.is_empty() {
                return Err(Error::invalid(format!("{scheme}:// URL names no node")));
            }
            Target::Cluster(nodes)
        } else {
            Target::Server(parse(format!("{node_scheme}://{location}"))?)
        };
        let mut config = RedisConfig {
            target,
            prefix: "stowage".to_owned(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            clock: ClockSource::Server,
            change_log: 100_000,
            create_if_missing: true,
            ca_cert: None,
        };
        for (k, v) in params {
            let number = || EngineUrl::number(scheme, k, v);
            match k.as_str() {
                "prefix" => {
                    validate_name("prefix", v)?;
                    v.clone_into(&mut config.prefix);
                }
                "connect_timeout_ms" => {
                    config.connect_timeout = Duration::from_millis(number()?.max(1));
                }
                "response_timeout_ms" => {
                    config.response_timeout = Duration::from_millis(number()?.max(1));
                }
                "change_log" => config.change_log = number()?,
                "cacert" if tls => config.ca_cert = Some(v.into()),
                "cacert" => {
                    return Err(Error::invalid(format!(
                        "{scheme}:// cacert is for TLS: use rediss:// (or rediss+cluster://)"
                    )))
                }
                "clock" => {
                    config.clock = match v.as_str() {
                        "server" => ClockSource::Server,
                        "caller" => ClockSource::Caller,
                        _ => {
                            return Err(Error::invalid(format!(
                                "{scheme}:// clock must be server or caller, not {v:?}"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{scheme}:// parameter {k:?} is not known (known: namespace, {})",
                        URL_PARAMS.join(", ")
                    )))
                }
            }
        }
        Ok(config)
    }

    /// Where this connects, for messages: `host:port/db` (nodes joined by `,` for a
    /// cluster), with the user but never the password.
    pub fn target(&self) -> String {
        let show = |info: &ConnectionInfo| {
            let user = info
                .redis_settings()
                .username()
                .map(|u| format!("{u}@"))
                .unwrap_or_default();
            format!("{user}{}", info.addr())
        };
        match &self.target {
            Target::Server(info) => format!("{}/{}", show(info), info.redis_settings().db()),
            Target::Cluster(nodes) => nodes.iter().map(show).collect::<Vec<_>>().join(","),
        }
    }

    fn has_password(&self) -> bool {
        match &self.target {
            Target::Server(info) => info.redis_settings().password().is_some(),
            Target::Cluster(nodes) => nodes
                .iter()
                .any(|n| n.redis_settings().password().is_some()),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.target())
            .field("password", &self.has_password().then_some("<redacted>"))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("clock", &self.clock)
            .field("change_log", &self.change_log)
            .field("create_if_missing", &self.create_if_missing)
            .field("cacert", &self.ca_cert)
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
    fn urls_parse() {
        let c = RedisConfig::from_url_parts(
            "redis",
            "app:s3cr%40t@cache.example:6380/3",
            &params(&[("prefix", "svc"), ("clock", "caller"), ("change_log", "10")]),
        )
        .unwrap();
        assert_eq!(c.target(), "app@cache.example:6380/3");
        assert_eq!(c.prefix, "svc");
        assert_eq!(c.clock, ClockSource::Caller);
        assert_eq!(c.change_log, 10);
        let Target::Server(info) = &c.target else {
            panic!("one server")
        };
        assert_eq!(
            info.redis_settings().password(),
            Some("s3cr@t"),
            "percent-decoded"
        );
        let c =
            RedisConfig::from_url_parts("redis+cluster", ":pw@10.0.0.1:7000,10.0.0.2:7001", &[])
                .unwrap();
        assert_eq!(c.target(), "10.0.0.1:7000,10.0.0.2:7001");
        assert!(matches!(&c.target, Target::Cluster(n) if n.len() == 2));
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        let cases = [
            ("redis", "u:hunter2@h:notaport", vec![], "not valid"),
            ("redis", "u:hunter2@h", vec![("clock", "sundial")], "clock"),
            (
                "redis",
                "u:hunter2@h",
                vec![("colour", "blue")],
                "not known",
            ),
            ("redis", "u:hunter2@h", vec![("prefix", "a:b")], "prefix"),
            ("redis+cluster", "u:hunter2@", vec![], "no node"),
        ];
        for (scheme, location, p, why) in cases {
            let e = RedisConfig::from_url_parts(scheme, location, &params(&p)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains(why), "{why}: {e}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = RedisConfig::from_url_parts("redis", "u:hunter2@h/1", &[]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("u@h:6379/1"),
            "{shown}"
        );
    }
}
