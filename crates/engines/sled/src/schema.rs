//! How Stowage lays records out in sled: the ordered key-value layout shared with redb
//! (tables, the record encoding, index keys; see [`stowage_kv::schema`]), one sled
//! tree per table of that layout, named as the table is.
//!
//! A store is format 2 from its first open (sled stores never held format 1). Trees of a
//! dropped collection or index are emptied in the drop's transaction and left in place,
//! empty: sled drops trees outside transactions.

pub use stowage_kv::schema::*;
