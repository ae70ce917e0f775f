//! The layout on Redis: every key of a namespace, and how index values become sorted-set
//! members.
//!
//! Every key of namespace `N` starts with `<prefix>:{N}:` — the braces are Redis Cluster's
//! hash tag, so all of a namespace's keys live in one slot and one script may write any of
//! them (a batch across the namespace's collections stays atomic on a cluster; the cost:
//! one namespace lives on one shard, and a cluster spreads namespaces, not records).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `…:revs` | hash | collection → spec revision |
//! | `…:specs` | hash | collection → spec and building list (JSON) |
//! | `…:revision` | string | the namespace's last revision (`INCR`) |
//! | `…:floors` | hash | collection → version floor |
//! | `…:rec:<c>:<id>` | hash | one record: `body`, `type`, `version`, `created_at`, `updated_at`, `expires_at` (µs since the epoch) |
//! | `…:ids:<c>` | sorted set | every id, score 0: walked by `ZRANGEBYLEX` in byte order |
//! | `…:ix:<c>:<index>` | sorted set | `member(value) ‖ id`, score 0, per index value |
//! | `…:uq:<c>:<index>` | hash | `member(value)` → id, for a unique index |
//! | `…:ent:<c>` | hash | id → the record's version, expiry, index members and size (msgpack), kept after its hash expires until purged |
//! | `…:ttl:<c>` | sorted set | id → `expires_at`, for records with a TTL |
//! | `…:bytes` | hash | collection → bytes of ids and bodies |
//! | `…:feed` / `…:feedseq` | stream / string | the change log and its last token, once someone watches |
//!
//! Sorted-set scores are doubles, which cannot order integers beyond 2^53: index members
//! are instead the sortable encoding of `stowage_core` (`IndexValue::encode_sortable`,
//! whose byte order is the values' order, integers of any size included) followed by the
//! id, compared by `ZRANGEBYLEX` byte by byte.

use stowage_core::{IndexValue, Result};

/// The keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    base: String,
    ns: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, ns: &str) -> Self {
        Keys {
            base: format!("{prefix}:{{{ns}}}:"),
            ns: ns.to_owned(),
        }
    }

    /// The namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.ns
    }

    /// `<prefix>:{<ns>}:`, what every key of the namespace starts with.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn revs(&self) -> String {
        format!("{}revs", self.base)
    }

    pub(crate) fn specs(&self) -> String {
        format!("{}specs", self.base)
    }

    pub(crate) fn rec(&self, collection: &str, id: &str) -> String {
        format!("{}rec:{collection}:{id}", self.base)
    }

    pub(crate) fn ids(&self, collection: &str) -> String {
        format!("{}ids:{collection}", self.base)
    }

    pub(crate) fn ix(&self, collection: &str, index: &str) -> String {
        format!("{}ix:{collection}:{index}", self.base)
    }

    pub(crate) fn ent(&self, collection: &str) -> String {
        format!("{}ent:{collection}", self.base)
    }

    pub(crate) fn ttl(&self, collection: &str) -> String {
        format!("{}ttl:{collection}", self.base)
    }

    pub(crate) fn bytes(&self) -> String {
        format!("{}bytes", self.base)
    }

    pub(crate) fn feed(&self) -> String {
        format!("{}feed", self.base)
    }

    pub(crate) fn feed_seq(&self) -> String {
        format!("{}feedseq", self.base)
    }
}

/// The set of namespaces (outside any namespace's slot).
pub(crate) fn namespaces_key(prefix: &str) -> String {
    format!("{prefix}:namespaces")
}

/// The sorted-set member prefix of an index value: its sortable encoding.
pub(crate) fn member(value: &IndexValue) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode_sortable(&mut out);
    out
}

/// Microseconds since the epoch, as stored.
pub(crate) fn parse_micros(text: &[u8]) -> Result<i64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            stowage_core::Error::new(
                stowage_core::ErrorKind::Corrupted,
                "redis: a stored time is not a whole number of microseconds",
            )
        })
}
