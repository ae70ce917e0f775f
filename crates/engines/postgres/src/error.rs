//! PostgreSQL's errors onto [`ErrorKind`]: by SQLSTATE where the server answered, as
//! `Unavailable` where the connection failed. Messages name the target (`user@host:port/db`)
//! and what was being done, never the URL, so no password can reach them.

use deadpool_postgres::PoolError;
use stowage_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

/// The kind a PostgreSQL error maps onto.
pub(crate) fn kind_of(e: &tokio_postgres::Error) -> ErrorKind {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed, closed, or timed out.
        return ErrorKind::Unavailable;
    };
    match code {
        c if *c == SqlState::UNIQUE_VIOLATION => ErrorKind::AlreadyExists,
        c if *c == SqlState::UNDEFINED_TABLE
            || *c == SqlState::INVALID_SCHEMA_NAME
            || *c == SqlState::INVALID_CATALOG_NAME =>
        {
            ErrorKind::NotFound
        }
        // Retrying may succeed: another transaction won, the server is going away or busy,
        // or the statement ran past its timeout.
        c if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::QUERY_CANCELED
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::TOO_MANY_CONNECTIONS =>
        {
            ErrorKind::Unavailable
        }
        c if c.code().starts_with("08") => ErrorKind::Unavailable,
        // Class 22, data exceptions: a value PostgreSQL cannot take.
        c if c.code().starts_with("22") => ErrorKind::InvalidInput,
        c if c.code().starts_with("XX") => ErrorKind::Corrupted,
        _ => ErrorKind::Internal,
    }
}

/// A PostgreSQL error as a Stowage error: `doing` says what failed, `target` where.
pub(crate) fn pg_error(e: tokio_postgres::Error, doing: &str, target: &str) -> Error {
    // The server's own message (from `as_db_error`) names tables and values, not the
    // connection string; the client's message for a failed connection names neither.
    let why = if let Some(db) = e.as_db_error() {
        format!("{} ({})", db.message(), db.code().code())
    } else {
        // The causes too (an I/O or TLS error: "invalid peer certificate: UnknownIssuer"),
        // which hold no part of the connection string either.
        {
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why.push_str(&format!(": {c}"));
                cause = c.source();
            }
            why
        }
    };
    Error::new(kind_of(&e), format!("postgres {target}: {doing}: {why}")).with_source(e)
}

/// A pool error: no connection could be had (`Unavailable`), or the connection failed.
pub(crate) fn pool_error(e: PoolError, doing: &str, target: &str) -> Error {
    match e {
        PoolError::Backend(e) => pg_error(e, doing, target),
        PoolError::Timeout(_) => Error::new(
            ErrorKind::Unavailable,
            format!("postgres {target}: {doing}: no connection became free in time"),
        ),
        other => Error::new(
            ErrorKind::Unavailable,
            format!("postgres {target}: {doing}: {other}"),
        ),
    }
}
