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
//! then sealed with XChaCha20-Poly1305 under the key ring's newest key when encryption is
//! on — and a CRC-32 of all of it. The seal's associated data is the header and the
//! record's namespace, collection and id, so a sealed body copied onto another record does
//! not open. Index values, ids, versions, times and TTLs are stored as before: queries
//! work unchanged, and what an index holds is visible to the engine.
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
//! key the ring no longer holds is `Unavailable`, naming the key id. A body stored without
//! the layer is refused as not a frame: put the layer on a store from its first write.

#![deny(missing_docs)]

mod blind;
mod frame;
mod keyring;
mod keys;
mod layer;
mod rekey;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use keyring::KeyRing;
pub use keys::{shred, KEYS_NAMESPACE};
pub use layer::{CodecConfig, CodecLayer};
pub use rekey::{keys_in_use, rekey, RekeyCheckpoint, RekeyReport};
