//! The conformance suite and the property test against the machine's PostgreSQL
//! (`STOWAGE_TEST_POSTGRES_URL`, by default 127.0.0.1:5432): each store a test creates gets a database of its own, dropped
//! afterwards.
//!
//! The suite drives time with a manual clock, so its stores run with `clock=caller`; the
//! database's clock (the default) is tested in `tests/clock.rs`. It runs three times: on
//! the engine, through the codec layer (every body compressed and sealed), and through the
//! near cache (each instance with its own, kept coherent by the change feed).

mod support;

stowage_testkit::conformance_tests!(support::PostgresFixture::new());

mod sealed {
    use super::*;

    stowage_testkit::conformance_tests!(stowage_codec::testkit::sealed(
        support::PostgresFixture::new()
    ));
}

mod cached {
    use super::*;

    stowage_testkit::conformance_tests!(stowage_cache::testkit::cached(
        support::PostgresFixture::new()
    ));
}
