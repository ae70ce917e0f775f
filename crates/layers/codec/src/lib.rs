//! Stowage's codec layer: every body compressed, encrypted at rest and checksummed, the
//! same way over every engine.
//!
//! ```
//! # async fn demo() -> stowage_core::Result<()> {
//! use std::sync::Arc;
//! use stowage_codec::{CodecConfig, CodecLayer, KeyRing};
//! use stowage_core::{MemoryBackend, Store};
//!
//! let ring = KeyRing::generate();
//! let store = Store::builder(Arc::new(MemoryBackend::new()))
//!     .layer(move |inner| {
//!         let config = CodecConfig::new().encrypt(ring.clone());
//!         Arc::new(CodecLayer::new(inner, config).expect("memory stores binary bodies"))
//!     })
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! # What is stored
//!
//! A body becomes a frame (see `frame.rs`): a header, the body — compressed with zstd when
//! it is at least `compress_from` bytes (256 by default) and compressing saves space,
//! then sealed with XChaCha20-Poly1305 when encryption is on — and a CRC-32 of all of it.
//! The seal's associated data is the header and the record's namespace, collection and id,
//! so a sealed body copied onto another record does not open. Ids, versions, times and
//! TTLs are stored as before, and so are index values — except those of blind indexes.
//!
//! # Keys
//!
//! The key ring ([`KeyRing`], a file made by `stowage keyring new`) holds the ring keys.
//! Bodies are not sealed with them directly: each namespace has its own random data key
//! per ring key, stored wrapped by that ring key in the engine's reserved namespace
//! `__keys` (see `keys.rs`), so every instance sharing a store shares the data keys and
//! the ring file never changes when a namespace appears. New writes use the data key under
//! the newest ring key; any ring key still in the ring opens what it sealed.
//!
//! - **Rotation**: `stowage keyring rotate FILE` adds a ring key; restart the instances
//!   with the new file, then [`rekey`] (`stowage rekey`) rewrites every record under it
//!   — version, times, TTL and ETag unchanged, a concurrent write never overwritten —
//!   resumable from a checkpoint; [`keys_in_use`] then shows nothing needs the old key,
//!   and `stowage keyring retire FILE ID` drops it.
//! - **Crypto-shredding**: [`shred`] (`stowage shred URL NAMESPACE`) destroys a
//!   namespace's data keys: none of its records can be opened again, by any instance
//!   (each stops within [`CodecConfig::key_cache`], 1 s by default) or from a copy of its
//!   records taken before. A copy of the engine's own files (a redb file, `pg_dump`)
//!   holds the wrapped data keys too: it stays readable to whoever holds the ring keys of
//!   the time, until those are rotated out and retired.
//! - Key material is wiped from memory when dropped (`zeroize`), and never appears in
//!   `Debug` output, errors or logs: errors name key ids only.
//!
//! # Blind indexes
//!
//! An index declared [`blind`](stowage_core::IndexSpec::blind) (a string index) stores
//! keyed hashes of its values (HMAC-SHA256 under a key derived from the namespace's data
//! key; see `blind.rs`): `eq` and `in` queries, `count`, `delete_where` and unique checks
//! work, range, prefix and order are refused, and the engine holds neither the field (in
//! the sealed body) nor its values. The store refuses a blind index where no encrypting
//! codec layer is present ([`stowage_core::Capabilities::blind_indexes`]).
//!
//! # Why XChaCha20-Poly1305
//!
//! Several instances write one store with one key and nothing to coordinate nonces: each
//! seal takes a random nonce. AES-256-GCM's 96-bit nonces make random ones safe for about
//! 2^32 seals per key; XChaCha20's 192-bit nonces make collisions negligible for any
//! number of writes, and it runs in constant time without AES instructions.
//!
//! # Damage
//!
//! A body that fails its checksum, does not open (altered, or moved from another record)
//! or does not decompress is `Corrupted`, naming its collection and id; one sealed with a
//! key the ring no longer holds is `Unavailable`, naming the key id; one of a shredded
//! namespace is `NotFound`, saying so. A body stored without the layer is refused as not
//! a frame: put the layer on a store from its first write, and always open the store with
//! it (the layer does not yet mark a store as framed: opened without it, a store returns
//! its frames as opaque bytes).

#![deny(missing_docs)]

mod blind;
mod frame;
mod keyring;
mod keys;
mod layer;
mod rekey;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use frame::check_frame;
pub use keyring::KeyRing;
pub use keys::{shred, KEYS_NAMESPACE};
pub use layer::{CodecConfig, CodecLayer};
pub use rekey::{keys_in_use, rekey, RekeyCheckpoint, RekeyReport};
