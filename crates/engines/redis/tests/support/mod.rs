//! The shared Redis's test helpers, from `stowage_redis::testkit`.

#[allow(unused_imports)]
pub(crate) use stowage_redis::testkit::{
    fresh_prefix, open, remove_prefix, server_url, FreshPrefix, RedisFixture,
};
