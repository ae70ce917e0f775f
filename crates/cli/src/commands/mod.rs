//! One file per `stowage` command (mini-redis style): its arguments, as clap parses them,
//! and `run`.

pub(crate) mod backup;
pub(crate) mod collections;
pub(crate) mod copy;
pub(crate) mod get;
pub(crate) mod hash_token;
pub(crate) mod keyring;
pub(crate) mod purge;
pub(crate) mod put;
pub(crate) mod query;
pub(crate) mod rekey;
pub(crate) mod restore;
pub(crate) mod serve;
pub(crate) mod shred;
pub(crate) mod stats;
pub(crate) mod verify;
