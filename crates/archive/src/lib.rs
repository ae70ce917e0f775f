//! Stowage's portable archive: `stowage backup` and `stowage restore` as library calls.
//!
//! One archive format for every engine: a versioned header, every collection's spec, the
//! records in zstd-compressed frames with a CRC-32 each, and a closing manifest with the
//! record count and bytes of each collection and the SHA-256 of everything before it (see
//! the `format` module docs for the layout). A backup of redb restores into PostgreSQL,
//! Redis, SQLite, sled or memory, records kept exactly: ids, versions (so ETags), creation
//! and update times, expiry and body bytes.
//!
//! ```
//! # async fn demo() -> stowage_core::Result<()> {
//! use std::sync::Arc;
//! use stowage_archive::{backup_store, restore_store};
//! use stowage_core::{MemoryBackend, Store};
//! use stowage_ops::Selection;
//!
//! let from = Store::new(MemoryBackend::new());
//! let mut archive = Vec::new();
//! let manifest = backup_store(&from, &Selection::all(), &mut archive, |_| {}).await?;
//! let into = Store::new(MemoryBackend::new());
//! restore_store(&into, std::io::Cursor::new(archive), |_| {}).await?;
//! # Ok(()) }
//! ```
//!
//! A restore reads the archive twice: once to check every frame and the manifest (a
//! truncated or altered archive is refused, saying at which byte and frame, before anything
//! is written), then to write. It refuses a destination that already holds one of the
//! archive's collections, and drops the collections it created if a write fails part-way.
//!
//! Bodies are archived as the store hands them over: through a codec layer with a key ring
//! they are decrypted, so such an archive holds plaintext (compressed) and must be kept as
//! carefully as the key ring; the data keys of the reserved `__keys` namespace are never
//! archived.
#![deny(missing_docs)]

mod backup;
mod format;

pub use backup::{backup_store, restore_store, Progress};
pub use format::{
    check_archive, ArchiveReader, ArchiveWriter, ArchivedSpec, CollectionTotals, Item, Manifest,
    FORMAT_VERSION, MAGIC, MAX_FRAME_BYTES,
};
