//! The conformance suite and the property test against the machine's PostgreSQL
//! (`STOWAGE_TEST_POSTGRES_URL`, by default 127.0.0.1:5432): each store a test creates gets
//! a database of its own, dropped afterwards.
//!
//! The suite drives time with a manual clock, so its stores run with `clock=caller`; the
//! database's clock (the default) is tested in `stowage-postgres`'s `tests/clock.rs`. It runs
//! three times: on the engine, through the codec layer (every body compressed and sealed),
//! and through the near cache (each instance with its own, kept coherent by the change feed).

use stowage_cache::testkit::cached;
use stowage_codec::testkit::sealed;
use stowage_postgres::testkit::PostgresFixture;
use stowage_testkit::suite;

fn main() {
    let mut trials = suite("", PostgresFixture::new);
    trials.extend(suite("sealed", || sealed(PostgresFixture::new())));
    trials.extend(suite("cached", || cached(PostgresFixture::new())));
    stowage_testkit::main(trials);
}
