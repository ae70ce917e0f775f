//! The stored form of a body: a frame.
//!
//! | bytes | what |
//! |---|---|
//! | 4 | `SWC` and the frame version (1) |
//! | 1 | flags: 1 compressed (zstd), 2 sealed (XChaCha20-Poly1305), 4 the body is JSON |
//! | 4 + 24 | sealed only: the id of the namespace's data key (u32 LE; see `keys.rs`) and the nonce |
//! | n | the payload: the body, compressed if flagged, then sealed if flagged (with its 16-byte tag) |
//! | 4 | CRC-32 (LE) of everything before it |
//!
//! A sealed payload's associated data is the header (version, flags, key id) and the
//! record's namespace, collection and id: a sealed body copied onto another record, or
//! with its flags changed, does not open. The checksum is over the stored bytes, so damage
//! is found before any decryption or decompression is tried.

use std::cell::RefCell;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use stowage_core::{Body, ContentType, Error, ErrorKind, Result};

use crate::keyring::KeyBytes;

const MAGIC: [u8; 4] = *b"SWC\x01";
const COMPRESSED: u8 = 1;
const SEALED: u8 = 2;
const JSON: u8 = 4;
const NONCE: usize = 24;
const TAG: usize = 16;
const CRC: usize = 4;

/// The most bytes a frame adds to a body (sealed: header, key id, nonce, tag, checksum).
pub(crate) const OVERHEAD: usize = MAGIC.len() + 1 + 4 + NONCE + TAG + CRC;

/// What a frame is made with.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    /// Bodies of at least this many bytes are compressed (`None`: never).
    pub(crate) compress_from: Option<usize>,
    /// zstd's level.
    pub(crate) level: i32,
    /// The largest body a frame may open to, so a damaged or hostile frame cannot make a
    /// read allocate without bound.
    pub(crate) max_body: usize,
}

/// Where a body is stored: the associated data that binds a sealed body to its record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) ns: &'a str,
    pub(crate) collection: &'a str,
    pub(crate) id: &'a str,
}

impl Place<'_> {
    fn associated(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            header.len() + self.ns.len() + self.collection.len() + self.id.len() + 2,
        );
        aad.extend_from_slice(header);
        for part in [self.ns, self.collection] {
            aad.extend_from_slice(part.as_bytes());
            aad.push(0);
        }
        aad.extend_from_slice(self.id.as_bytes());
        aad
    }

    fn damaged(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Corrupted,
            format!(
                "the stored body of {:?} in collection {:?} {what}",
                self.id, self.collection
            ),
        )
    }
}

thread_local! {
    // zstd's contexts cost far more to make than a small body costs to (de)compress: each
    // thread keeps one of each (the compressor with the level it was made for).
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("made above");
        c.compress(bytes)
    })
}

/// Decompresses a zstd frame whose header gives its size, at most `max` bytes (`None`:
/// damaged, or larger than `max`).
fn decompress(bytes: &[u8], max: usize) -> Option<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(bytes).ok()??;
    let size = usize::try_from(size).ok().filter(|s| *s <= max)?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        let d = slot.as_mut()?;
        d.decompress(bytes, size)
            .ok()
            .filter(|out| out.len() == size)
    })
}

/// Whether a stored body is a sound frame, checked without any key: `None` when it is,
/// else what is wrong (not a frame, truncated, or failing its checksum). What
/// `stowage verify` asks of every record of a store written through the codec.
pub fn check_frame(stored: &Body) -> Option<String> {
    let bytes = &stored.bytes[..];
    if stored.content_type != ContentType::Bytes || !bytes.starts_with(&MAGIC) {
        return Some("the body is not a codec frame (written without the codec layer?)".into());
    }
    match bytes.len().checked_sub(CRC).filter(|at| *at > MAGIC.len()) {
        None => Some("the body's frame is truncated".into()),
        Some(at) => {
            let (framed, crc) = bytes.split_at(at);
            (crc32fast::hash(framed).to_le_bytes() != crc)
                .then(|| "the body fails its checksum".to_owned())
        }
    }
}

/// The key that sealed a stored frame, read from its header (`None`: not a sealed frame).
pub(crate) fn sealed_with(stored: &Body) -> Option<u32> {
    let b = &stored.bytes[..];
    let sealed = b.starts_with(&MAGIC) && b.len() > MAGIC.len() + 4 && b[MAGIC.len()] & SEALED != 0;
    sealed.then(|| u32::from_le_bytes([b[5], b[6], b[7], b[8]]))
}

impl Codec {
    /// The frame of `body` stored at `place`, sealed with `seal` (key id and key) if given.
    pub(crate) fn encode(
        &self,
        place: Place<'_>,
        body: &Body,
        seal: Option<(u32, &KeyBytes)>,
    ) -> Result<Body> {
        let mut flags = if body.content_type == ContentType::Json {
            JSON
        } else {
            0
        };
        let mut payload: Vec<u8> = match self.compress_from {
            Some(from) if body.bytes.len() >= from => {
                let packed = compress(&body.bytes, self.level).map_err(|e| {
                    Error::internal("zstd could not compress a body").with_source(e)
                })?;
                // Only when it saves something: some bodies do not compress.
                if packed.len() < body.bytes.len() {
                    flags |= COMPRESSED;
                    packed
                } else {
                    body.bytes.to_vec()
                }
            }
            _ => body.bytes.to_vec(),
        };
        let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
        out.extend_from_slice(&MAGIC);
        match seal {
            Some((key_id, key)) => {
                flags |= SEALED;
                out.push(flags);
                out.extend_from_slice(&key_id.to_le_bytes());
                let aad = place.associated(&out);
                let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
                let cipher = XChaCha20Poly1305::new(key.as_ref().into());
                payload = cipher
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: &payload,
                            aad: &aad,
                        },
                    )
                    .map_err(|_| Error::internal("a body could not be sealed"))?;
                out.extend_from_slice(&nonce);
            }
            None => out.push(flags),
        }
        out.extend_from_slice(&payload);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(Body::binary(out))
    }

    /// The body a frame stored at `place` holds; `key` opens it if it is sealed (the key
    /// its header names: see [`sealed_with`]). Corrupted when it fails its checksum, does
    /// not open (altered, or moved from another record) or does not decompress;
    /// Unavailable when it is sealed and no key is given.
    pub(crate) fn decode(
        &self,
        place: Place<'_>,
        stored: &Body,
        key: Option<&KeyBytes>,
    ) -> Result<Body> {
        let bytes = &stored.bytes[..];
        if stored.content_type != ContentType::Bytes || !bytes.starts_with(&MAGIC) {
            return Err(place.damaged("is not a codec frame (written without the codec layer?)"));
        }
        let Some((framed, crc)) = bytes
            .len()
            .checked_sub(CRC)
            .filter(|at| *at > MAGIC.len())
            .map(|at| bytes.split_at(at))
        else {
            return Err(place.damaged("is truncated"));
        };
        if crc32fast::hash(framed).to_le_bytes() != crc {
            return Err(place.damaged("fails its checksum"));
        }
        let flags = framed[MAGIC.len()];
        let mut rest = &framed[MAGIC.len() + 1..];
        let opened;
        if flags & SEALED != 0 {
            if rest.len() < 4 + NONCE + TAG {
                return Err(place.damaged("is truncated"));
            }
            let key_id = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let header = &framed[..MAGIC.len() + 1 + 4];
            let nonce = XNonce::from_slice(&rest[4..4 + NONCE]);
            let key = key.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the body of {:?} in collection {:?} is sealed (key {key_id}): open the \
                         store with its key ring",
                        place.id, place.collection
                    ),
                )
            })?;
            let cipher = XChaCha20Poly1305::new(key.as_ref().into());
            opened = cipher
                .decrypt(
                    nonce,
                    Payload {
                        msg: &rest[4 + NONCE..],
                        aad: &place.associated(header),
                    },
                )
                .map_err(|_| {
                    place.damaged(
                        "does not open under its key: altered, or moved from another record",
                    )
                })?;
            rest = &opened;
        }
        let body: Bytes = if flags & COMPRESSED != 0 {
            decompress(rest, self.max_body)
                .ok_or_else(|| place.damaged("does not decompress"))?
                .into()
        } else {
            Bytes::copy_from_slice(rest)
        };
        Ok(if flags & JSON != 0 {
            Body::json(body)
        } else {
            Body::binary(body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn place(id: &str) -> Place<'_> {
        Place {
            ns: "n",
            collection: "c",
            id,
        }
    }

    fn codec() -> Codec {
        Codec {
            compress_from: Some(64),
            level: 3,
            max_body: 1 << 20,
        }
    }

    fn key(byte: u8) -> KeyBytes {
        Zeroizing::new([byte; 32])
    }

    #[test]
    fn frames_round_trip_and_refuse_damage() {
        let json = Body::json(format!("{{\"log\":\"{}\"}}", "line ".repeat(100)));
        let small = Body::binary(&b"\x00\x01"[..]);
        let k = key(7);
        let c = codec();
        for seal in [None, Some((3, &k))] {
            let open = seal.map(|(_, k)| k);
            for body in [&json, &small] {
                let framed = c.encode(place("a"), body, seal).unwrap();
                assert_eq!(sealed_with(&framed), seal.map(|(id, _)| id));
                assert_eq!(&c.decode(place("a"), &framed, open).unwrap(), body);
                assert_eq!(check_frame(&framed), None);
                // A flipped bit anywhere is found by the checksum, with or without keys.
                for at in [0, 5, framed.bytes.len() / 2, framed.bytes.len() - 1] {
                    let mut bad = framed.bytes.to_vec();
                    bad[at] ^= 0x10;
                    let bad = Body::binary(bad);
                    assert!(check_frame(&bad).is_some());
                    let e = c.decode(place("a"), &bad, open).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
                }
            }
            let framed = c.encode(place("a"), &json, seal).unwrap();
            assert!(framed.bytes.len() < json.bytes.len() / 4, "compressed");
        }
    }

    #[test]
    fn a_sealed_body_opens_only_where_it_was_written_and_with_its_key() {
        let c = codec();
        let k = key(1);
        let body = Body::json("{\"secret\":\"s3cr3t\"}");
        let framed = c.encode(place("a"), &body, Some((1, &k))).unwrap();
        assert!(
            !framed.bytes.windows(6).any(|w| w == b"s3cr3t"),
            "plaintext stored"
        );
        // Moved onto another record (a valid frame, checksum and all): refused.
        let e = c.decode(place("b"), &framed, Some(&k)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted);
        assert!(e.message().contains("moved from another record"), "{e}");
        // Another key: refused the same way.
        let e = c.decode(place("a"), &framed, Some(&key(2))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted);
        // No key at all: Unavailable, naming the key id.
        let e = c.decode(place("a"), &framed, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.message().contains("key 1"), "{e}");
        // Not a frame at all.
        let e = c.decode(place("a"), &body, Some(&k)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted);
    }
}
