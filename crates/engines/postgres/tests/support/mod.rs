//! The shared PostgreSQL's test helpers, from `stowage_postgres::testkit`.

#[allow(unused_imports)]
pub(crate) use stowage_postgres::testkit::{connect, FreshDatabase, PostgresFixture};
