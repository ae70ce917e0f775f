//! The conformance suite and the property test against the machine's Redis
//! (`STOWAGE_TEST_REDIS_URL`, by default 127.0.0.1:6379): each store a test creates gets a key
//! prefix of its own, removed afterwards.
//!
//! The suite drives time with a manual clock, so its stores run with `clock=caller`.

use stowage_redis::testkit::RedisFixture;
use stowage_testkit::suite;

fn main() {
    stowage_testkit::main(suite("", RedisFixture::new));
}
