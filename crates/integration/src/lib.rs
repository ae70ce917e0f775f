//! Where Stowage's crates meet. Nothing to link against: this crate holds the tests and
//! benchmarks that need more than one engine or layer crate, so that no engine or layer
//! crate depends on another for its tests.
//!
//! - `tests/{memory,redb,sled,sqlite,postgres,redis,redis_cluster}.rs`: the conformance
//!   suite (`stowage-testkit`) against each engine, alone and under every layer stack that
//!   is tested on it (pass-through layers, metrics and tracing, the codec, the near cache).
//!   `cargo nextest run -p stowage-integration --test redb` runs one engine's.
//! - `tests/codec/`, `tests/cache/`: what the codec puts on disk and in PostgreSQL and Redis,
//!   key rotation and shredding on files, and near caches kept coherent over shared engines.
//! - `benches/codec.rs`, `benches/near_cache.rs`: what each layer costs over redb and
//!   PostgreSQL, beside the engine without it.
