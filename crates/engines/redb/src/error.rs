//! redb's errors onto Stowage's portable kinds.

use std::path::Path;

use redb::DatabaseError;
use stowage_core::{Error, ErrorKind};

/// Maps a redb error onto a portable kind. The message carries redb's text once: no source
/// is attached, since `Display` would repeat it.
pub(crate) fn storage_error(e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    let kind = match &e {
        redb::Error::Corrupted(_) => ErrorKind::Corrupted,
        redb::Error::ValueTooLarge(_) => ErrorKind::InvalidInput,
        redb::Error::Io(_) | redb::Error::DatabaseAlreadyOpen | redb::Error::PreviousIo => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("redb: {e}"))
}

/// Maps an error opening the file, naming the file.
pub(crate) fn open_error(path: &Path, e: DatabaseError) -> Error {
    match e {
        DatabaseError::DatabaseAlreadyOpen => Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is already open in another process (or by another store of this one): \
                 a redb store has one owner at a time",
                path.display()
            ),
        ),
        DatabaseError::UpgradeRequired(v) => Error::invalid(format!(
            "{} uses redb file format {v}, which this build cannot open",
            path.display()
        )),
        other => storage_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_text_appears_once() {
        let e = storage_error(redb::Error::Corrupted("page 7 is torn".into()));
        assert_eq!(e.kind(), ErrorKind::Corrupted);
        let shown = e.to_string();
        assert_eq!(shown.matches("page 7 is torn").count(), 1, "{shown}");
    }
}
