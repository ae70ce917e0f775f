//! The codec layer over real engines: what reaches redb files, PostgreSQL and Redis (no
//! plaintext, sealed blind indexes), key rotation on files, and shredding a namespace's key.

mod at_rest;
mod postgres;
mod redis;
mod rekey;
mod shred;
