//! The key ring: the keys bodies are sealed with, by id, and the file that holds them.
//!
//! The file is text, one key per line, written by `stowage keyring new` and `rotate`:
//!
//! ```text
//! # comments and blank lines are ignored
//! stowage-keyring 1
//! key 1 <the 32 key bytes, base64>
//! key 2 <…>
//! ```
//!
//! It is written whole to a temporary file (mode 0600), synced and renamed over the old
//! one, so a crash leaves the old ring or the new one, never half of either. The text is
//! read into, and written from, buffers that are wiped when dropped.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{rand_core::RngCore, OsRng};
use stowage_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

/// The first line (after comments) of a key-ring file.
const FILE_HEADER: &str = "stowage-keyring 1";

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

    /// Reads a key-ring file (see the module docs). InvalidInput naming the line when the
    /// file is not one — never showing key material; NotFound when it does not exist.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Unavailable,
            };
            Error::new(
                kind,
                format!("cannot read key ring {}: {e}", path.display()),
            )
        })?);
        let bad = |line: usize, what: &str| {
            Error::invalid(format!("key ring {} line {line}: {what}", path.display()))
        };
        let mut ring = KeyRing::new();
        let mut header = false;
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header {
                if line != FILE_HEADER {
                    return Err(bad(n, &format!("expected {FILE_HEADER:?}: not a key ring")));
                }
                header = true;
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let (Some("key"), Some(id), Some(material), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(bad(n, "expected \"key ID BASE64\""));
            };
            let id: u32 = id
                .parse()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| bad(n, "a key id is a whole number from 1"))?;
            let mut key = Zeroizing::new([0u8; 32]);
            match BASE64.decode_slice(material, key.as_mut()) {
                Ok(32) => {}
                _ => return Err(bad(n, &format!("key {id} is not 32 bytes of base64"))),
            }
            ring.insert(id, key.as_ref())
                .map_err(|_| bad(n, &format!("key id {id} appears twice")))?;
        }
        if !header {
            return Err(bad(0, "the file is empty: not a key ring"));
        }
        if ring.keys.is_empty() {
            return Err(bad(0, "the ring holds no key"));
        }
        Ok(ring)
    }

    /// Writes the ring to `path` (mode 0600), replacing the file atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let failed = |e: std::io::Error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot write key ring {}: {e}", path.display()),
            )
        };
        let mut text = Zeroizing::new(String::from(
            "# Stowage key ring: the keys this store's bodies are sealed with. Keep it secret\n\
             # and backed up: a record sealed with a key that is not here cannot be read.\n",
        ));
        text.push_str(FILE_HEADER);
        text.push('\n');
        for (id, key) in &self.keys {
            let encoded = Zeroizing::new(BASE64.encode(key.as_ref()));
            text.push_str(&format!("key {id} "));
            text.push_str(&encoded);
            text.push('\n');
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} is not a file name", path.display())))?;
        let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        drop(file);
        std::fs::rename(&temp, path).map_err(failed)?;
        // The rename is durable once the folder is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Creates a key-ring file holding one fresh key (id 1). AlreadyExists when the file
    /// exists: a ring is never overwritten by accident.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.exists() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists: a key ring is never overwritten", path.display()),
            ));
        }
        let ring = KeyRing::generate();
        ring.save(path)?;
        Ok(ring)
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

    #[test]
    fn files_round_trip_and_bad_ones_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut ring = KeyRing::create(&path).unwrap();
        assert_eq!(
            KeyRing::create(&path).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        ring.rotate();
        ring.save(&path).unwrap();
        let back = KeyRing::load(&path).unwrap();
        assert_eq!(back.ids(), [1, 2]);
        assert_eq!(back.get(2).unwrap().as_ref(), ring.get(2).unwrap().as_ref());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = BASE64.encode(ring.get(1).unwrap().as_ref());
        for (body, expect) in [
            ("", "empty"),
            ("hello\n", "not a key ring"),
            ("stowage-keyring 1\n", "no key"),
            ("stowage-keyring 1\nkey 0 AAAA\n", "line 2: a key id"),
            (
                "stowage-keyring 1\nkey 3 c2hvcnQ=\n",
                "line 2: key 3 is not 32 bytes",
            ),
            (
                &format!("stowage-keyring 1\nkey 1 {secret}\nkey 1 {secret}\n"),
                "line 3: key id 1 appears twice",
            ),
            (
                &format!("stowage-keyring 1\nkey 1 {secret} extra\n"),
                "line 2: expected",
            ),
        ] {
            std::fs::write(&path, body).unwrap();
            let e = KeyRing::load(&path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{body}");
            assert!(e.message().contains(expect), "{e}");
            assert!(!e.message().contains(&secret), "{e}");
        }
        std::fs::write(&path, text).unwrap();
        assert_eq!(KeyRing::load(&path).unwrap().ids(), [1, 2]);
        let e = KeyRing::load(dir.path().join("none")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
