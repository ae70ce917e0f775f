//! What the server is told: where to listen, who may do what, and its limits.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stowage_core::{Error, Result};

/// A right a token grants in its namespaces. Each right includes the ones before it:
/// `admin` ⊇ `write` ⊇ `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Right {
    /// Read records, specs, queries, counts, listings.
    Read,
    /// Also write and delete records, and run batches.
    Write,
    /// Also create, change and drop collections.
    Admin,
}

/// One bearer token: the SHA-256 of the token (hex), never the token itself, with the
/// namespaces it opens (`"*"` for all) and its right there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Lowercase hex SHA-256 of the token (`stowage hash-token` prints it).
    pub sha256: String,
    /// Namespaces the token opens; `"*"` opens every namespace.
    pub namespaces: Vec<String>,
    /// What it may do there.
    pub right: Right,
}

/// Request limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request body, in bytes (413 above).
    pub body_bytes: usize,
    /// How long one request may take, in seconds (408 after).
    pub timeout_seconds: u64,
    /// The largest `limit` a query or listing may ask for; larger ones are cut to it, and
    /// queries without a limit get it.
    pub max_query_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 16 << 20,
            timeout_seconds: 30,
            max_query_limit: 1000,
        }
    }
}

impl Limits {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.max(1))
    }
}

/// TLS: a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain file.
    pub cert: String,
    /// The private key file.
    pub key: String,
}

/// The server's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Bearer tokens. With none, every request is allowed — which is why the server then
    /// refuses to listen anywhere but on loopback.
    pub tokens: Vec<TokenConfig>,
    /// Limits.
    pub limits: Limits,
    /// TLS, if the server terminates it.
    pub tls: Option<TlsConfig>,
    /// Background work.
    pub maintenance: Maintenance,
}

/// What the server does in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maintenance {
    /// How often expired records are purged from every namespace, in seconds (`0`: never;
    /// default 60). Several servers on one shared store may all run it: the engine lets
    /// one purge a namespace at a time (on PostgreSQL, an advisory lock), and the others
    /// skip it.
    pub purge_every_seconds: u64,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            purge_every_seconds: 60,
        }
    }
}

impl ServerConfig {
    /// Checks the configuration for listening on `addr`: a non-loopback address needs
    /// tokens, token hashes must be SHA-256 hex, limits must be positive.
    pub fn check(&self, addr: SocketAddr) -> Result<()> {
        if !addr.ip().is_loopback() && self.tokens.is_empty() {
            return Err(Error::invalid(format!(
                "refusing to listen on {addr} without tokens: anyone who can reach it could \
                 read and write every namespace. Configure tokens, or listen on 127.0.0.1"
            )));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid(format!(
                    "token {i}: sha256 must be 64 hex digits (the hash of the token, not the token)"
                )));
            }
            if t.namespaces.is_empty() {
                return Err(Error::invalid(format!("token {i} opens no namespace")));
            }
        }
        if self.limits.body_bytes == 0 || self.limits.max_query_limit == 0 {
            return Err(Error::invalid(
                "limits.body_bytes and limits.max_query_limit must be at least 1",
            ));
        }
        Ok(())
    }
}
