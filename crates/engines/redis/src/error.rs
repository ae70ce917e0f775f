//! Redis's errors onto [`ErrorKind`]: a lost, refused or timed-out connection and a cluster
//! in motion are `Unavailable`; refused credentials are `InvalidInput` (the URL is wrong);
//! the rest is `Internal`. Messages name the target (`user@host:port/db`) and what was being
//! done, never the URL, so no password can reach them.

use redis::{ErrorKind as Kind, RedisError, ServerErrorKind as Server};
use stowage_core::{Error, ErrorKind};

/// The kind a Redis error maps onto.
pub(crate) fn kind_of(e: &RedisError) -> ErrorKind {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
    {
        return ErrorKind::Unavailable;
    }
    match e.kind() {
        Kind::Io
        | Kind::ClusterConnectionNotFound
        | Kind::Server(
            Server::BusyLoading
            | Server::TryAgain
            | Server::ClusterDown
            | Server::MasterDown
            | Server::ReadOnly
            | Server::Moved
            | Server::Ask,
        ) => ErrorKind::Unavailable,
        Kind::AuthenticationFailed | Kind::InvalidClientConfig | Kind::Server(Server::NoPerm) => {
            ErrorKind::InvalidInput
        }
        _ => ErrorKind::Internal,
    }
}

/// A Redis error as a Stowage error: `doing` says what failed, `target` where.
pub(crate) fn redis_error(e: RedisError, doing: &str, target: &str) -> Error {
    Error::new(kind_of(&e), format!("redis {target}: {doing}: {e}")).with_source(e)
}
