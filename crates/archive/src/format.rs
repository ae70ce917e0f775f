//! The archive format, version 1: how it is written and read.
//!
//! ```text
//! header    "STOWAGE-ARCHIVE\n"  u16 format version  u16 flags (0)  u64 created (µs)
//! frame*    u8 kind  u32 stored length  u32 CRC-32 of the stored bytes  stored bytes
//! ```
//!
//! Integers are little-endian. A frame's stored bytes are zstd-compressed; decompressed,
//! a **spec** frame (kind 1) is JSON `{"namespace", "collection", "spec"}`; a **records**
//! frame (kind 2) is a namespace and collection then records, each `id`, version,
//! created, updated, optional expiry, content type and body (strings and bodies as a u32
//! length then the bytes; times as i64 microseconds); the **manifest** (kind 3) closes
//! the archive: JSON with the record count and bytes of each collection and the SHA-256
//! of every archive byte before the manifest frame. Nothing may follow it.
//!
//! Every spec frame comes before the first records frame. The reader checks each frame's
//! length and CRC before decompressing it, caps what a frame may decompress to, and checks
//! the manifest against what it read: a truncated, reordered or altered archive is refused
//! with the byte offset and frame where it broke.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stowage_core::{Body, CollectionSpec, ContentType, Error, ErrorKind, Result, StoredRecord};
use stowage_core::{Timestamp, Version};

/// The first bytes of every archive.
pub const MAGIC: &[u8; 16] = b"STOWAGE-ARCHIVE\n";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The most a frame may decompress to: a records frame holds one record at least, and no
/// engine takes a body this large.
pub const MAX_FRAME_BYTES: u64 = 1 << 30;
/// A records frame is closed once its records reach this many bytes.
pub(crate) const FRAME_TARGET_BYTES: usize = 4 << 20;
/// ... or this many records.
pub(crate) const FRAME_TARGET_RECORDS: usize = 1000;

const HEADER_BYTES: u64 = 16 + 2 + 2 + 8;
const KIND_SPEC: u8 = 1;
const KIND_RECORDS: u8 = 2;
const KIND_MANIFEST: u8 = 3;

/// One collection's spec, as an archive holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSpec {
    /// The namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// Its spec.
    pub spec: CollectionSpec,
}

/// One collection's totals in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionTotals {
    /// The namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// Records archived.
    pub records: u64,
    /// Bytes of their ids and bodies.
    pub bytes: u64,
}

/// The closing frame: what the archive holds and a digest of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Per collection, in archive order.
    pub collections: Vec<CollectionTotals>,
    /// Frames before the manifest.
    pub frames: u64,
    /// SHA-256 (hex) of every byte before the manifest frame.
    pub sha256: String,
}

impl Manifest {
    /// Records in the whole archive.
    pub fn records(&self) -> u64 {
        self.collections.iter().map(|c| c.records).sum()
    }
}

/// What a reader yields, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// A collection's spec.
    Spec(ArchivedSpec),
    /// Records of one collection, in id order.
    Records {
        /// The namespace.
        namespace: String,
        /// The collection.
        collection: String,
        /// The records.
        records: Vec<StoredRecord>,
    },
    /// The manifest, checked: the archive is whole.
    End(Manifest),
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {e}"))
}

/// Writes an archive to `W`, frame by frame: specs first, then records, then
/// [`ArchiveWriter::finish`] writes the manifest.
#[derive(Debug)]
pub struct ArchiveWriter<W: Write> {
    out: W,
    digest: Sha256,
    frames: u64,
    totals: Vec<CollectionTotals>,
    written: u64,
    records_started: bool,
    level: i32,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header (created now) and returns the writer.
    pub fn new(out: W) -> Result<Self> {
        let mut w = ArchiveWriter {
            out,
            digest: Sha256::new(),
            frames: 0,
            totals: Vec::new(),
            written: 0,
            records_started: false,
            level: 3,
        };
        let mut header = Vec::with_capacity(HEADER_BYTES as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&Timestamp::now().as_micros().to_le_bytes());
        w.emit(&header)?;
        Ok(w)
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.digest.update(bytes);
        self.written += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| io_error("cannot write the archive", e))
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let stored = zstd::bulk::compress(payload, self.level)
            .map_err(|e| Error::internal(format!("zstd: {e}")))?;
        let len = u32::try_from(stored.len())
            .map_err(|_| Error::invalid("a frame compressed to more than 4 GiB"))?;
        let mut head = [0u8; 9];
        head[0] = kind;
        head[1..5].copy_from_slice(&len.to_le_bytes());
        head[5..9].copy_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        if kind != KIND_MANIFEST {
            self.frames += 1;
        }
        self.emit(&head)?;
        self.emit(&stored)
    }

    /// Writes one collection's spec (before any records).
    pub fn spec(&mut self, spec: &ArchivedSpec) -> Result<()> {
        if self.records_started {
            return Err(Error::invalid(
                "an archive holds every spec before the first records",
            ));
        }
        let json = serde_json::to_vec(spec).map_err(|e| Error::internal(e.to_string()))?;
        self.totals.push(CollectionTotals {
            namespace: spec.namespace.clone(),
            collection: spec.collection.clone(),
            ..CollectionTotals::default()
        });
        self.frame(KIND_SPEC, &json)
    }

    /// Writes one frame of records of a collection whose spec was written.
    pub fn records(&mut self, ns: &str, collection: &str, records: &[StoredRecord]) -> Result<()> {
        self.records_started = true;
        let total = self
            .totals
            .iter_mut()
            .find(|t| t.namespace == ns && t.collection == collection)
            .ok_or_else(|| {
                Error::invalid(format!("records of {ns}/{collection} before its spec"))
            })?;
        let mut payload = Vec::with_capacity(
            64 + records
                .iter()
                .map(|r| r.id.len() + r.body.bytes.len() + 48)
                .sum::<usize>(),
        );
        put_str(&mut payload, ns);
        put_str(&mut payload, collection);
        payload.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            put_str(&mut payload, &r.id);
            payload.extend_from_slice(&r.version.to_le_bytes());
            payload.extend_from_slice(&r.created_at.as_micros().to_le_bytes());
            payload.extend_from_slice(&r.updated_at.as_micros().to_le_bytes());
            match r.expires_at {
                Some(t) => {
                    payload.push(1);
                    payload.extend_from_slice(&t.as_micros().to_le_bytes());
                }
                None => payload.push(0),
            }
            payload.push(match r.body.content_type {
                ContentType::Json => 0,
                _ => 1,
            });
            put_bytes(&mut payload, &r.body.bytes);
            total.records += 1;
            total.bytes += (r.id.len() + r.body.bytes.len()) as u64;
        }
        self.frame(KIND_RECORDS, &payload)
    }

    /// Writes the manifest and returns it with the writer's output.
    pub fn finish(mut self) -> Result<(Manifest, W)> {
        let digest = std::mem::take(&mut self.digest).finalize();
        let manifest = Manifest {
            collections: std::mem::take(&mut self.totals),
            frames: self.frames,
            sha256: hex(&digest),
        };
        let json = serde_json::to_vec(&manifest).map_err(|e| Error::internal(e.to_string()))?;
        self.frame(KIND_MANIFEST, &json)?;
        self.out
            .flush()
            .map_err(|e| io_error("cannot write the archive", e))?;
        Ok((manifest, self.out))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Reads an archive from `R`, checking it as it goes: each [`ArchiveReader::next_item`]
/// yields one frame, the last [`Item::End`] once the manifest agrees with everything read.
#[derive(Debug)]
pub struct ArchiveReader<R: Read> {
    input: R,
    offset: u64,
    frame: u64,
    digest: Sha256,
    totals: Vec<CollectionTotals>,
    records_started: bool,
    ended: bool,
    /// When the archive was written.
    pub created: Timestamp,
}

/// Where an archive broke, for messages.
fn broken(at: u64, frame: Option<u64>, why: impl std::fmt::Display) -> Error {
    let place = match frame {
        Some(f) => format!("at byte {at} (frame {f})"),
        None => format!("at byte {at}"),
    };
    Error::new(
        ErrorKind::InvalidInput,
        format!("the archive is damaged {place}: {why}"),
    )
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self> {
        let mut r = ArchiveReader {
            input,
            offset: 0,
            frame: 0,
            digest: Sha256::new(),
            totals: Vec::new(),
            records_started: false,
            ended: false,
            created: Timestamp::from_micros(0),
        };
        let mut header = [0u8; HEADER_BYTES as usize];
        r.fill(&mut header, None, "the header")?;
        r.digest.update(header);
        if &header[..16] != MAGIC {
            return Err(broken(
                0,
                None,
                "it does not start as a Stowage archive does",
            ));
        }
        let version = u16::from_le_bytes([header[16], header[17]]);
        if version != FORMAT_VERSION {
            return Err(broken(
                16,
                None,
                format!("format version {version}; this build reads version {FORMAT_VERSION}"),
            ));
        }
        let mut created = [0u8; 8];
        created.copy_from_slice(&header[20..28]);
        r.created = Timestamp::from_micros(i64::from_le_bytes(created));
        Ok(r)
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads exactly `buf.len()` bytes, or says the archive is truncated.
    fn fill(&mut self, buf: &mut [u8], frame: Option<u64>, what: &str) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(broken(
                        self.offset + got as u64,
                        frame,
                        format!(
                            "it ends {got} bytes into {what} of {} bytes (truncated?)",
                            buf.len()
                        ),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("cannot read the archive", e)),
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next frame, checked; `None` after [`Item::End`].
    // Long: one arm per frame kind, each checked against the frames before it.
    #[allow(clippy::too_many_lines)]
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.ended {
            return Ok(None);
        }
        let start = self.offset;
        let digest_before = self.digest.clone();
        self.frame += 1;
        let frame = Some(self.frame);
        let mut head = [0u8; 9];
        // A clean end here is still an error: the manifest is missing.
        let mut first = [0u8; 1];
        match self.input.read(&mut first) {
            Ok(0) => {
                return Err(broken(
                    start,
                    None,
                    format!(
                        "it ends after {} frames without its closing manifest (truncated?)",
                        self.frame - 1
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(io_error("cannot read the archive", e)),
        }
        self.offset += 1;
        head[0] = first[0];
        self.fill(&mut head[1..], frame, "a frame header")?;
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let crc = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if !matches!(kind, KIND_SPEC | KIND_RECORDS | KIND_MANIFEST) {
            return Err(broken(start, frame, format!("unknown frame kind {kind}")));
        }
        // Read in bounded steps: a damaged length must not make us allocate 4 GiB first.
        let mut stored = Vec::new();
        let mut left = len as usize;
        while left > 0 {
            let step = left.min(1 << 20);
            let at = stored.len();
            stored.resize(at + step, 0);
            self.fill(&mut stored[at..], frame, "a frame")?;
            left -= step;
        }
        if crc32fast::hash(&stored) != crc {
            return Err(broken(
                start,
                frame,
                "its checksum does not match (the bytes were altered)",
            ));
        }
        self.digest.update(head);
        self.digest.update(&stored);
        let payload = decompress(&stored).map_err(|why| broken(start, frame, why))?;
        let at = |why: String| broken(start, frame, why);
        match kind {
            KIND_SPEC => {
                if self.records_started {
                    return Err(at("a spec frame after records frames".into()));
                }
                let spec: ArchivedSpec = serde_json::from_slice(&payload)
                    .map_err(|e| at(format!("the spec is not valid: {e}")))?;
                stowage_core::validate_name("namespace", &spec.namespace)
                    .and_then(|()| stowage_core::validate_name("collection", &spec.collection))
                    .and_then(|()| spec.spec.validate())
                    .map_err(|e| at(e.message().to_owned()))?;
                if self.total(&spec.namespace, &spec.collection).is_some() {
                    return Err(at(format!(
                        "{}/{} is declared twice",
                        spec.namespace, spec.collection
                    )));
                }
                self.totals.push(CollectionTotals {
                    namespace: spec.namespace.clone(),
                    collection: spec.collection.clone(),
                    ..CollectionTotals::default()
                });
                Ok(Some(Item::Spec(spec)))
            }
            KIND_RECORDS => {
                self.records_started = true;
                let (namespace, collection, records) = decode_records(&payload).map_err(at)?;
                let total = self.total(&namespace, &collection).ok_or_else(|| {
                    at(format!(
                        "records of {namespace}/{collection}, which has no spec"
                    ))
                })?;
                total.records += records.len() as u64;
                total.bytes += records
                    .iter()
                    .map(|r| (r.id.len() + r.body.bytes.len()) as u64)
                    .sum::<u64>();
                Ok(Some(Item::Records {
                    namespace,
                    collection,
                    records,
                }))
            }
            _ => {
                let manifest: Manifest = serde_json::from_slice(&payload)
                    .map_err(|e| at(format!("the manifest is not valid: {e}")))?;
                let sha = hex(&digest_before.finalize());
                if manifest.sha256 != sha {
                    return Err(at(
                        "the digest of the archive does not match its manifest".into()
                    ));
                }
                if manifest.frames != self.frame - 1 {
                    return Err(at(format!(
                        "the manifest counts {} frames, {} were read",
                        manifest.frames,
                        self.frame - 1
                    )));
                }
                if manifest.collections != self.totals {
                    return Err(at(
                        "the manifest's collection totals differ from what was read".into(),
                    ));
                }
                let mut more = [0u8; 1];
                if matches!(self.input.read(&mut more), Ok(n) if n > 0) {
                    return Err(broken(
                        self.offset,
                        None,
                        "bytes follow the closing manifest",
                    ));
                }
                self.ended = true;
                Ok(Some(Item::End(manifest)))
            }
        }
    }

    fn total(&mut self, ns: &str, collection: &str) -> Option<&mut CollectionTotals> {
        self.totals
            .iter_mut()
            .find(|t| t.namespace == ns && t.collection == collection)
    }
}

/// Decompresses a frame, refusing one that would grow past [`MAX_FRAME_BYTES`].
fn decompress(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let decoder = zstd::stream::read::Decoder::new(stored)
        .map_err(|e| format!("it does not decompress: {e}"))?;
    let mut out = Vec::new();
    decoder
        .take(MAX_FRAME_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("it does not decompress: {e}"))?;
    if out.len() as u64 > MAX_FRAME_BYTES {
        return Err(format!(
            "it decompresses to more than {MAX_FRAME_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// A cursor over a records frame's bytes.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("a records frame ends inside {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self, what: &str) -> std::result::Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

fn decode_records(
    payload: &[u8],
) -> std::result::Result<(String, String, Vec<StoredRecord>), String> {
    let mut c = Cursor(payload);
    let ns = c.string("a namespace")?;
    let coll = c.string("a collection name")?;
    let count = c.u32("a record count")? as usize;
    // Each record takes at least 38 bytes: a count larger than the frame allows is damage.
    if count > payload.len() / 38 + 1 {
        return Err(format!(
            "a records frame claims {count} records in {} bytes",
            payload.len()
        ));
    }
    let mut records = Vec::with_capacity(count);
    let mut last: Option<String> = None;
    for _ in 0..count {
        let id = c.string("an id")?;
        stowage_core::validate_id(&id).map_err(|e| e.message().to_owned())?;
        if last
            .as_deref()
            .is_some_and(|l| l.as_bytes() >= id.as_bytes())
        {
            return Err(format!("record {id:?} is out of id order"));
        }
        let version: Version = c.u64("a version")?;
        let created_at = Timestamp::from_micros(c.u64("a time")? as i64);
        let updated_at = Timestamp::from_micros(c.u64("a time")? as i64);
        let expires_at = match c.u8("an expiry flag")? {
            0 => None,
            1 => Some(Timestamp::from_micros(c.u64("an expiry")? as i64)),
            f => return Err(format!("record {id:?} has expiry flag {f}")),
        };
        let content_type = match c.u8("a content type")? {
            0 => ContentType::Json,
            1 => ContentType::Bytes,
            t => return Err(format!("record {id:?} has content type {t}")),
        };
        let body = Bytes::copy_from_slice(c.bytes("a body")?);
        if version == 0 {
            return Err(format!("record {id:?} has version 0"));
        }
        last = Some(id.clone());
        records.push(StoredRecord {
            id,
            version,
            created_at,
            updated_at,
            expires_at,
            body: Body {
                content_type,
                bytes: body,
            },
        });
    }
    if !c.0.is_empty() {
        return Err(format!(
            "{} bytes follow the last record of a frame",
            c.0.len()
        ));
    }
    Ok((ns, coll, records))
}

/// Reads a whole archive, checking every frame and the manifest, and returns the manifest:
/// what `stowage restore` does before it writes anything. The fuzz target calls it.
pub fn check_archive<R: Read>(input: R) -> Result<Manifest> {
    let mut reader = ArchiveReader::new(input)?;
    loop {
        match reader.next_item()? {
            Some(Item::End(manifest)) => return Ok(manifest),
            Some(_) => {}
            None => return Err(Error::internal("archive reader ended twice")),
        }
    }
}
