//! How Stowage lays records out in redb: the ordered key-value layout shared with sled
//! (tables, the record encoding, index keys; see [`stowage_kv::schema`]), one redb
//! table per table of that layout.
//!
//! Format history: 1 stored the bare spec JSON in the catalog and had no floors or
//! revisions; 2 (this build) wraps it with a revision and the building list. A format-1 file
//! is upgraded in place when it is opened.

use redb::TableDefinition;

pub use stowage_kv::schema::*;

/// A table definition for a name.
pub fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}
