//! The archive reader on arbitrary bytes: it must refuse what it cannot read, never panic,
//! hang or allocate without bound. Seeds: `fuzz/seeds/archive_reader` (real archives).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stowage_archive::check_archive(data);
});
