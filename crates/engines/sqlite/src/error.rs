//! SQLite's errors onto Stowage's kinds.

use rusqlite::ErrorCode;
use stowage_core::{Error, ErrorKind};

/// A SQLite error met while `doing` something to the database at `target`.
pub(crate) fn sqlite_error(e: rusqlite::Error, doing: &str, target: &str) -> Error {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            // Another connection holds the lock longer than the busy timeout.
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Unavailable,
            ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OutOfMemory => ErrorKind::Unavailable,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => ErrorKind::Corrupted,
            ErrorCode::TooBig => ErrorKind::InvalidInput,
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("sqlite {target}: {doing}: {e}")).with_source(e)
}

/// Whether `e` says a table or column is not there: the collection or an index was dropped
/// since the caller looked.
pub(crate) fn is_missing_table(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => {
            msg.starts_with("no such table") || msg.starts_with("no such column")
        }
        _ => false,
    }
}
