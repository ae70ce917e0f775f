//! The archive reader past its checksums: arbitrary payloads wrapped in frames with correct
//! lengths, CRCs and zstd, so the fuzzer reaches the spec, records and manifest decoders
//! that a flipped byte never reaches in `archive_reader` (the CRC refuses it first).
//! Input: a sequence of `kind (u8) · length (u16 LE) · payload`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut archive = Vec::new();
    archive.extend_from_slice(stowage_archive::MAGIC);
    archive.extend_from_slice(&stowage_archive::FORMAT_VERSION.to_le_bytes());
    archive.extend_from_slice(&[0, 0]);
    archive.extend_from_slice(&0i64.to_le_bytes());
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0] % 4;
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let stored = zstd::bulk::compress(payload, 1).expect("zstd compresses");
        archive.push(kind);
        archive.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        archive.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        archive.extend_from_slice(&stored);
    }
    let _ = stowage_archive::check_archive(&archive[..]);
});
