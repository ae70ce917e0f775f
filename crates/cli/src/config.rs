//! `stowage serve`'s configuration: a TOML file, then `STOWAGE_*` variables and flags over it.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use stowage::{Error, Result};
use stowage_server::{Limits, Maintenance, Right, ServerConfig, TlsConfig, TokenConfig};

/// The embedded default store.
pub(crate) const DEFAULT_URL: &str = "redb://./stowage-data/stowage.redb";
/// Loopback, port 7070.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:7070";

/// The TOML file:
///
/// ```toml
/// url = "redb://./stowage-data/stowage.redb"
/// addr = "127.0.0.1:7070"
/// [limits]
/// body_bytes = 16777216
/// timeout_seconds = 30
/// max_query_limit = 1000
/// [[tokens]]
/// sha256 = "…64 hex digits…"
/// namespaces = ["billing"]
/// right = "write"
/// [tls]
/// cert = "cert.pem"
/// key = "key.pem"
/// [maintenance]
/// purge_every_seconds = 60
/// # bodies sealed with the ring's newest key (and compressed); or compress = true alone
/// keyring = "/etc/stowage/keyring"
/// # a near cache of 256 MiB; sessions always read from the store
/// cache_mb = 256
/// cache_bypass = ["sessions"]
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub url: Option<String>,
    pub addr: Option<String>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    pub limits: Option<Limits>,
    pub tls: Option<TlsConfig>,
    pub maintenance: Option<Maintenance>,
    pub keyring: Option<std::path::PathBuf>,
    #[serde(default)]
    pub compress: bool,
    pub cache_mb: Option<u64>,
    #[serde(default)]
    pub cache_bypass: Vec<String>,
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }
}

/// Everything `serve` needs, after file, environment and flags are merged.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub url: String,
    pub mirror_to: Option<String>,
    pub codec: Option<stowage::CodecConfig>,
    pub cache: Option<stowage::CacheConfig>,
    pub addr: SocketAddr,
    pub server: ServerConfig,
}

/// Parses `STOWAGE_TOKENS`: `HASH@ns1,ns2=right;HASH@*=admin`.
pub(crate) fn parse_tokens(spec: &str) -> Result<Vec<TokenConfig>> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, t)| {
            let bad = || {
                Error::invalid(format!(
                    "STOWAGE_TOKENS entry {i} must look like HASH@ns1,ns2=read|write|admin"
                ))
            };
            let (hash, rest) = t.split_once('@').ok_or_else(bad)?;
            let (namespaces, right) = rest.split_once('=').ok_or_else(bad)?;
            let right = match right {
                "read" => Right::Read,
                "write" => Right::Write,
                "admin" => Right::Admin,
                _ => return Err(bad()),
            };
            Ok(TokenConfig {
                sha256: hash.to_owned(),
                namespaces: namespaces.split(',').map(str::to_owned).collect(),
                right,
            })
        })
        .collect()
}

pub(crate) fn parse_addr(addr: &str) -> Result<SocketAddr> {
    addr.parse()
        .map_err(|_| Error::invalid(format!("{addr:?} is not an address such as 127.0.0.1:7070")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse() {
        let h = "a".repeat(64);
        let t = parse_tokens(&format!("{h}@billing,audit=write; {h}@*=admin")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].namespaces, vec!["billing", "audit"]);
        assert_eq!(t[1].right, Right::Admin);
        assert!(parse_tokens("nohash").is_err());
        assert!(parse_tokens(&format!("{h}@x=root")).is_err());
    }

    #[test]
    fn file_parses_and_refuses_unknown_keys() {
        let f: FileConfig = toml::from_str(
            "url = \"memory://\"\naddr = \"127.0.0.1:0\"\n[limits]\nmax_query_limit = 10\n",
        )
        .unwrap();
        assert_eq!(f.limits.unwrap().max_query_limit, 10);
        assert!(toml::from_str::<FileConfig>("colour = 1").is_err());
    }
}
