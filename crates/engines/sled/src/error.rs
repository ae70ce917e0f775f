//! sled's errors onto Stowage's portable kinds.

use std::path::Path;

use stowage_core::{Error, ErrorKind};

/// Maps a sled error onto a portable kind, with sled's text once.
pub(crate) fn storage_error(e: sled::Error) -> Error {
    let kind = match &e {
        sled::Error::Corruption { .. } => ErrorKind::Corrupted,
        sled::Error::Io(_) => ErrorKind::Unavailable,
        sled::Error::Unsupported(_) => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("sled: {e}"))
}

/// Maps an error opening the folder, naming it: a folder another process holds is
/// Unavailable with a message that says so.
pub(crate) fn open_error(path: &Path, e: sled::Error) -> Error {
    match &e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is already open in another process: a sled store has one owner at a time",
                path.display()
            ),
        ),
        _ => {
            let e = storage_error(e);
            Error::new(e.kind(), format!("{}: {}", path.display(), e.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_text() {
        let e = storage_error(sled::Error::Unsupported("nested trees".into()));
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(e.to_string().matches("nested trees").count(), 1, "{e}");
        let io = std::io::Error::other("could not acquire lock on \"x\": busy");
        let e = open_error(Path::new("/srv/x.sled"), sled::Error::Io(io));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.message().contains("/srv/x.sled"), "{e}");
    }
}
