//! One error type for every backend, layer and caller.

use std::fmt;

/// What went wrong, in terms a caller can act on. Every engine's own errors are mapped onto
/// these kinds; no engine error type crosses the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The record (or collection) does not exist, or has expired; or a cursor names no page
    /// of the query it was given to (damaged, or returned by another query).
    NotFound,
    /// The id exists already, or a unique index already holds the value ([`Error::index`]
    /// names the index), or an index name is taken: a spec declares it twice, or changes
    /// an existing index's definition (a spec change may add and drop indexes, not
    /// redefine one).
    AlreadyExists,
    /// A version precondition failed ([`Error::current_version`] carries the version found,
    /// `None` when the record is absent).
    Conflict,
    /// The caller's input is wrong; the message says what and why. Nothing was written.
    InvalidInput,
    /// Temporary: the engine is unreachable or overloaded. A retry may succeed.
    Unavailable,
    /// Stored data failed a checksum or could not be decoded; the message names the record.
    Corrupted,
    /// The backend cannot do this; [`crate::Capabilities`] says so too.
    Unsupported,
    /// A bug or an unexpected engine failure.
    Internal,
}

impl ErrorKind {
    /// The stable snake_case name used on the wire (`not_found`, `conflict`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every Stowage operation: a [`ErrorKind`], a message that says what and why,
/// and the structured details a caller may act on (current version, index, batch op).
///
/// Messages never contain passwords or keys: backends build them from names, not from URLs.
pub struct Error {
    kind: ErrorKind,
    message: String,
    // Boxed, so that an `Error` (and every `Result`) stays small: most errors carry none.
    details: Option<Box<Details>>,
}

#[derive(Default)]
struct Details {
    current_version: Option<u64>,
    index: Option<String>,
    batch_op: Option<usize>,
    holder: Option<String>,
    current_value: Option<(String, serde_json::Value)>,
    stale_spec: bool,
    /// Made by [`Error::not_found`]: a record, not its collection, is missing.
    record_missing: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            details: None,
        }
    }

    fn details(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }

    fn detail<T>(&self, f: impl FnOnce(&Details) -> T) -> Option<T> {
        self.details.as_deref().map(f)
    }

    /// [`ErrorKind::InvalidInput`] with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// [`ErrorKind::NotFound`] for a record id.
    pub fn not_found(collection: &str, id: &str) -> Self {
        let mut e = Error::new(
            ErrorKind::NotFound,
            format!("record {id:?} not found in collection {collection:?}"),
        );
        e.details().record_missing = true;
        e
    }

    /// [`ErrorKind::NotFound`] for a store opened with `create_if_missing` off where there
    /// is none: `at` names where (a path, `host:port/db`, never a password), `why` what was
    /// missing.
    pub fn no_store(at: impl std::fmt::Display, why: &str) -> Self {
        Error::new(ErrorKind::NotFound, format!("no store at {at}: {why}"))
    }

    /// [`ErrorKind::NotFound`] for a collection.
    pub fn collection_not_found(ns: &str, collection: &str) -> Self {
        Error::new(
            ErrorKind::NotFound,
            format!("collection {collection:?} does not exist in namespace {ns:?}"),
        )
    }

    /// [`ErrorKind::AlreadyExists`] for a record id.
    pub fn id_exists(collection: &str, id: &str) -> Self {
        Error::new(
            ErrorKind::AlreadyExists,
            format!("record {id:?} already exists in collection {collection:?}"),
        )
    }

    /// [`ErrorKind::AlreadyExists`] for a unique index clash, naming the index and the
    /// record that holds the value.
    pub fn unique_violation(collection: &str, index: &str, holder: &str) -> Self {
        let mut e = Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "unique index {index:?} of collection {collection:?} already holds this value \
                 for record {holder:?}"
            ),
        );
        let d = e.details();
        d.index = Some(index.to_owned());
        d.holder = Some(holder.to_owned());
        e
    }

    /// [`ErrorKind::Conflict`]: an op or query was prepared with a spec revision that is no
    /// longer current, because another instance changed the collection's spec. The store
    /// reloads the spec and tries again; callers see it only when the spec keeps changing.
    pub fn stale_spec(collection: &str) -> Self {
        let mut e = Error::new(
            ErrorKind::Conflict,
            format!("the spec of collection {collection:?} changed while this call was prepared"),
        );
        e.details().stale_spec = true;
        e
    }

    /// [`ErrorKind::Conflict`]: the expected version was not the current one.
    pub fn conflict(
        collection: &str,
        id: &str,
        expected: Option<u64>,
        current: Option<u64>,
    ) -> Self {
        let found = match current {
            Some(v) => format!("version {v}"),
            None => "no record".to_owned(),
        };
        let wanted = match expected {
            Some(v) => format!("version {v}"),
            None => "an existing record".to_owned(),
        };
        let mut e = Error::new(
            ErrorKind::Conflict,
            format!("record {id:?} in collection {collection:?}: expected {wanted}, found {found}"),
        );
        e.details().current_version = current;
        e
    }

    /// [`ErrorKind::Conflict`]: a spec change was computed from a revision that is no longer
    /// current (`None`: no collection).
    pub fn spec_conflict(collection: &str, expected: Option<u64>, current: Option<u64>) -> Self {
        let say = |r: Option<u64>| match r {
            Some(r) => format!("revision {r}"),
            None => "no collection".to_owned(),
        };
        Error::new(
            ErrorKind::Conflict,
            format!(
                "the spec of collection {collection:?} changed meanwhile: expected {}, found {}",
                say(expected),
                say(current)
            ),
        )
    }

    /// [`ErrorKind::Unsupported`]: the backend cannot do `what`.
    pub fn unsupported(backend: &str, what: &str) -> Self {
        Error::new(
            ErrorKind::Unsupported,
            format!("the {backend} backend does not support {what}"),
        )
    }

    /// [`ErrorKind::Internal`] with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// Attaches the underlying cause (an engine error, an I/O error).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.details().source = Some(Box::new(source));
        self
    }

    /// Marks the error as caused by op `i` (0-based) of an atomic batch; `Display` then
    /// says so.
    pub fn at_op(mut self, i: usize) -> Self {
        self.details().batch_op = Some(i);
        self
    }

    /// Forgets the batch position: a single write is a batch of one to the backend, but its
    /// caller wrote no batch.
    pub(crate) fn without_op(mut self) -> Self {
        if let Some(d) = self.details.as_deref_mut() {
            d.batch_op = None;
        }
        self
    }

    /// Sets the current version carried by a [`ErrorKind::Conflict`].
    pub fn with_current_version(mut self, v: Option<u64>) -> Self {
        self.details().current_version = v;
        self
    }

    /// Sets the value a refused mutation found at `path` ([`Error::current_value`]).
    pub fn with_current_value(mut self, path: &str, value: serde_json::Value) -> Self {
        self.details().current_value = Some((path.to_owned(), value));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message: what went wrong and why.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`ErrorKind::Conflict`]: the record's current version (`None` when absent).
    pub fn current_version(&self) -> Option<u64> {
        self.detail(|d| d.current_version).flatten()
    }

    /// For a [`ErrorKind::Conflict`] of a mutation refused by its bound: the path and the
    /// value the record holds there, unchanged.
    pub fn current_value(&self) -> Option<(&str, &serde_json::Value)> {
        self.details
            .as_deref()
            .and_then(|d| d.current_value.as_ref())
            .map(|(p, v)| (p.as_str(), v))
    }

    /// For a unique-index [`ErrorKind::AlreadyExists`]: the index's name.
    pub fn index(&self) -> Option<&str> {
        self.details.as_deref().and_then(|d| d.index.as_deref())
    }

    /// For a unique-index [`ErrorKind::AlreadyExists`]: the id of the record that holds the
    /// value.
    pub fn holder(&self) -> Option<&str> {
        self.details.as_deref().and_then(|d| d.holder.as_deref())
    }

    /// Whether this is [`Error::not_found`]: a record is missing (its collection is there).
    pub fn is_record_not_found(&self) -> bool {
        self.detail(|d| d.record_missing).unwrap_or(false)
    }

    /// Whether this is [`Error::stale_spec`].
    pub fn is_stale_spec(&self) -> bool {
        self.detail(|d| d.stale_spec).unwrap_or(false)
    }

    /// For an error of an atomic batch: the 0-based position of the op that failed.
    pub fn batch_op(&self) -> Option<usize> {
        self.detail(|d| d.batch_op).flatten()
    }

    /// Whether retrying might succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(v) = self.current_version() {
            d.field("current_version", &v);
        }
        if let Some((path, value)) = self.current_value() {
            d.field("current_value", &(path, value));
        }
        if let Some(i) = self.index() {
            d.field("index", &i);
        }
        if let Some(h) = self.holder() {
            d.field("holder", &h);
        }
        if let Some(op) = self.batch_op() {
            d.field("batch_op", &op);
        }
        if let Some(s) = self
            .detail(|x| x.source.as_ref().map(std::string::ToString::to_string))
            .flatten()
        {
            d.field("source", &s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind)?;
        if let Some(i) = self.batch_op() {
            write!(f, "batch op {i}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = self.details.as_deref().and_then(|d| d.source.as_ref()) {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.details
            .as_deref()
            .and_then(|d| d.source.as_deref())
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_record_is_told_from_a_missing_collection() {
        assert!(Error::not_found("c", "r").is_record_not_found());
        assert!(!Error::collection_not_found("ns", "c").is_record_not_found());
        assert!(!Error::invalid("x").is_record_not_found());
    }
}
