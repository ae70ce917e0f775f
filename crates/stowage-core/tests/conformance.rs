//! The conformance suite on the memory backend, claiming everything and claiming little.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use stowage_core::testkit::MemoryFixture;

stowage_core::conformance_tests!(MemoryFixture::new());

/// The same suite against a memory backend that claims almost nothing, so every
/// "unclaimed means Unsupported" path runs too.
mod restricted {
    use stowage_core::testkit::MemoryFixture;
    use stowage_core::Capabilities;

    fn fixture() -> MemoryFixture {
        let mut caps = Capabilities::all();
        caps.atomic_batch = false;
        caps.unique_indexes = false;
        caps.ttl = false;
        caps.binary_bodies = false;
        caps.max_body_bytes = 1 << 20;
        MemoryFixture::with_capabilities(caps)
    }

    stowage_core::conformance_tests!(fixture());
}
