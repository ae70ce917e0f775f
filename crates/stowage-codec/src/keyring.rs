//! The key ring: the keys bodies are sealed with, by id.

use std::fmt;

use chacha20poly1305::aead::{rand_core::RngCore, OsRng};
use stowage_core::{Error, Result};
use zeroize::Zeroizing;

/// A 256-bit key, wiped from memory when dropped.
pub(crate) type KeyBytes = Zeroizing<[u8; 32]>;

/// The keys a store's bodies are sealed with. New writes use the newest (highest id); every
/// key in the ring still opens what it sealed. Key material never appears in `Debug`
/// output, errors or logs, and is wiped from memory when the ring is dropped.
#[derive(Clone, Default)]
pub struct KeyRing {
    /// By id, ascending.
    keys: Vec<(u32, KeyBytes)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u32> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// A ring with one fresh random key, id 1.
    pub fn generate() -> Self {
        let mut ring = KeyRing::new();
        ring.rotate();
        ring
    }

    /// Adds a fresh random key above every other; it seals from now on. Returns its id.
    pub fn rotate(&mut self) -> u32 {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let id = self.newest_id().map_or(1, |id| id + 1);
        self.keys.push((id, key));
        id
    }

    /// Adds a key under `id` (from a key store). InvalidInput when the id is taken or the
    /// key is not 32 bytes; the caller's copy of the material is its own to wipe.
    pub fn insert(&mut self, id: u32, key: &[u8]) -> Result<()> {
        let bytes: [u8; 32] = key.try_into().map_err(|_| {
            Error::invalid(format!(
                "key {id} is {} bytes; a key is 32 bytes (256 bits)",
                key.len()
            ))
        })?;
        if self.keys.iter().any(|(k, _)| *k == id) {
            return Err(Error::invalid(format!(
                "key id {id} is already in the ring"
            )));
        }
        let at = self.keys.partition_point(|(k, _)| *k < id);
        self.keys.insert(at, (id, Zeroizing::new(bytes)));
        Ok(())
    }

    /// Removes key `id` (retired after a rekey); whether it was there.
    pub fn retire(&mut self, id: u32) -> bool {
        let before = self.keys.len();
        self.keys.retain(|(k, _)| *k != id);
        self.keys.len() < before
    }

    /// The ids in the ring, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    /// The id new writes are sealed with.
    pub fn newest_id(&self) -> Option<u32> {
        self.keys.last().map(|(id, _)| *id)
    }

    pub(crate) fn newest(&self) -> Option<(u32, &KeyBytes)> {
        self.keys.last().map(|(id, k)| (*id, k))
    }

    pub(crate) fn get(&self, id: u32) -> Option<&KeyBytes> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_adds_the_newest_and_debug_shows_no_material() {
        let mut ring = KeyRing::generate();
        assert_eq!(ring.rotate(), 2);
        assert_eq!(ring.ids(), [1, 2]);
        assert_eq!(ring.newest_id(), Some(2));
        ring.insert(7, &[9u8; 32]).unwrap();
        assert_eq!(ring.newest_id(), Some(7));
        assert!(ring.insert(7, &[1u8; 32]).is_err());
        assert!(ring.insert(8, &[1u8; 16]).is_err());
        let shown = format!("{ring:?}");
        assert_eq!(shown, "KeyRing { key_ids: [1, 2, 7] }");
        assert!(ring.retire(1) && !ring.retire(1));
        assert!(ring.get(1).is_none() && ring.get(7).is_some());
    }
}
