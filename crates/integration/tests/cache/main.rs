//! The near cache over engines several instances share: two instances, each with its own
//! cache, stay coherent through the engine's change feed (memory, PostgreSQL, Redis).

mod memory;
mod postgres;
mod redis;
