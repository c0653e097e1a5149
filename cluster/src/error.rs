//! The cluster's error type: a small `Copy` kind plus a message and the field at fault.

use serde::{Deserialize, Serialize};

/// What kind of failure, stable across versions; the HTTP layer maps it to a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// The request cannot be parsed (malformed JSON, a non-integer path segment).
    Malformed,
    /// The request parses but a value is wrong or out of range.
    Invalid,
    /// The client asked for a representation the server cannot produce.
    NotAcceptable,
    /// The request conflicts with existing state (e.g. an immutable version).
    Conflict,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Valid credentials acting on something they do not own.
    Forbidden,
    /// A body, name or value is larger than allowed.
    TooLarge,
    /// A dependency (storage, a node) is temporarily unavailable; retrying may help.
    Unavailable,
    /// A bug or corrupt stored data.
    Internal,
}

/// An error with a stable kind, a human message and, where there is one, the field at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub field: Option<String>,
    /// A more specific stable code than the kind, e.g. `malformed_json`.
    pub code: Option<&'static str>,
    /// Structured detail for the client (e.g. a plugin's diagnostics).
    pub details: Option<serde_json::Value>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of [`Error::busy`]; an error crossing from a node with this
/// message and kind `Unavailable` gets its `busy` code back.
pub const BUSY_MESSAGE: &str = "the node's generation queue is full; retry shortly";

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), field: None, code: None, details: None }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The stable machine-readable code: the specific code if set, else the kind's name.
    pub fn code(&self) -> &'static str {
        self.code.unwrap_or(match self.kind {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotAcceptable => "not_acceptable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        })
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message).with_field(field)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A node refusing work because its generation queue is full:
    /// `Unavailable` (HTTP 503 with `Retry-After`), code `busy`.
    pub fn busy() -> Self {
        Self::unavailable(BUSY_MESSAGE).with_code("busy")
    }
}

/// What an operating-system error means for a storage operation, if it is
/// one of the conditions that do not clear by retrying.
fn io_condition(e: &std::io::Error) -> Option<(ErrorKind, &'static str, &'static str)> {
    const STORAGE_DENIED: &str = "storage_denied";
    const MISCONFIGURED: &str = "storage_misconfigured";
    match e.raw_os_error()? {
        libc::EACCES | libc::EPERM => Some((ErrorKind::Internal, STORAGE_DENIED, "permission denied")),
        libc::EROFS => Some((ErrorKind::Internal, STORAGE_DENIED, "the file system is read-only")),
        libc::ENOTDIR => Some((ErrorKind::Internal, MISCONFIGURED, "a path component is not a directory")),
        // Only conditional creates expect "exists", and they handle it before
        // converting: anywhere else it is a file where a directory must be.
        libc::EEXIST => Some((ErrorKind::Internal, MISCONFIGURED, "a file is where a directory should be")),
        libc::EISDIR => Some((ErrorKind::Internal, MISCONFIGURED, "a directory is where an object should be")),
        libc::ENOSPC | libc::EDQUOT => Some((ErrorKind::Unavailable, "storage_full", "no space left on the storage")),
        _ => None,
    }
}

/// The OS error at the root of a storage error, if there is one.
fn io_source(e: &opendal::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
}

impl Error {
    /// A storage failure that retrying will not fix (permission denied, a
    /// missing bucket, a path that is not a directory): 500 with a code the
    /// operator can act on, never "try again".
    pub fn storage_permanent(code: &'static str, cause: &str, detail: impl std::fmt::Display) -> Self {
        let what = if code == "storage_denied" { "storage refused access" } else { "storage is misconfigured" };
        Error::new(
            ErrorKind::Internal,
            format!(
                "{what} ({cause}): {detail}; this does not clear by retrying: the operator must fix the \
                 storage settings or permissions"
            ),
        )
        .with_code(code)
    }

    /// Whether this error is a storage condition retrying will not fix.
    pub fn is_storage_permanent(&self) -> bool {
        matches!(self.code, Some("storage_denied" | "storage_misconfigured"))
    }
}

impl Error {
    /// An OS error of a storage operation the `fs://` backend makes itself
    /// (not through OpenDAL), mapped like [`From<opendal::Error>`]: the
    /// conditions that do not clear by retrying are permanent, a full disk
    /// is `storage_full`, anything else `storage_unavailable`.
    pub fn storage_io(e: &std::io::Error, what: impl std::fmt::Display) -> Self {
        if let Some((kind, code, cause)) = io_condition(e) {
            return match kind {
                ErrorKind::Internal => Error::storage_permanent(code, cause, format!("{what}: {e}")),
                _ => Error::new(kind, format!("storage: {cause}: {what}: {e}")).with_code(code),
            };
        }
        Error::new(ErrorKind::Unavailable, format!("storage is unavailable: {what}: {e}"))
            .with_code("storage_unavailable")
    }
}

/// Storage errors by what the client and the operator can do about them:
/// absent objects and lost races are ordinary outcomes; permission and
/// configuration problems are permanent (500, `storage_denied` /
/// `storage_misconfigured`, logged for the operator); a full disk, rate
/// limiting and anything transient or of unknown cause (a network failure
/// that outlasted the retries) are `Unavailable` (503 with `Retry-After`).
impl From<opendal::Error> for Error {
    fn from(e: opendal::Error) -> Self {
        use opendal::ErrorKind as K;
        if let Some((kind, code, cause)) = io_source(&e).and_then(io_condition) {
            return match kind {
                ErrorKind::Internal => Error::storage_permanent(code, cause, &e),
                _ => Error::new(kind, format!("storage: {cause}: {e}")).with_code(code),
            };
        }
        match e.kind() {
            K::NotFound => return Error::new(ErrorKind::NotFound, format!("storage: {e}")),
            K::ConditionNotMatch | K::AlreadyExists => return Error::new(ErrorKind::Conflict, format!("storage: {e}")),
            _ => {}
        }
        match e.kind() {
            K::PermissionDenied => Error::storage_permanent("storage_denied", "permission denied", &e),
            K::ConfigInvalid => Error::storage_permanent("storage_misconfigured", "invalid configuration", &e),
            K::Unsupported | K::IsADirectory | K::NotADirectory | K::IsSameFile => {
                Error::storage_permanent("storage_misconfigured", "an operation the storage cannot do", &e)
            }
            K::RateLimited => Error::new(ErrorKind::Unavailable, format!("storage is rate limiting: {e}"))
                .with_code("storage_unavailable"),
            _ => Error::new(ErrorKind::Unavailable, format!("storage is unavailable: {e}"))
                .with_code("storage_unavailable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_storage_conditions_are_not_retryable() {
        let denied = opendal::Error::new(opendal::ErrorKind::PermissionDenied, "403 Forbidden");
        let e = Error::from(denied);
        assert_eq!((e.kind, e.code()), (ErrorKind::Internal, "storage_denied"), "{e}");
        assert!(!e.message.contains("try again") && e.message.contains("403"), "{e}");
        let bucket = opendal::Error::new(opendal::ErrorKind::ConfigInvalid, "NoSuchBucket");
        assert_eq!(Error::from(bucket).code(), "storage_misconfigured");
        let io = std::io::Error::from_raw_os_error(libc::ENOTDIR);
        let wrapped = opendal::Error::new(opendal::ErrorKind::Unexpected, "write").set_source(io).set_temporary();
        let e = Error::from(wrapped);
        assert_eq!((e.kind, e.code()), (ErrorKind::Internal, "storage_misconfigured"), "{e}");
        let full = opendal::Error::new(opendal::ErrorKind::Unexpected, "write")
            .set_source(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(Error::from(full).code(), "storage_full");
        let flaky = opendal::Error::new(opendal::ErrorKind::Unexpected, "connection reset").set_temporary();
        let e = Error::from(flaky);
        assert_eq!((e.kind, e.code()), (ErrorKind::Unavailable, "storage_unavailable"));
        assert_eq!(Error::from(opendal::Error::new(opendal::ErrorKind::NotFound, "x")).kind, ErrorKind::NotFound);
    }

    /// The fs backend's own writes map OS errors the same way as OpenDAL's.
    #[test]
    fn the_fs_backends_own_io_errors_map_like_opendals() {
        let io = |n| std::io::Error::from_raw_os_error(n);
        let e = Error::storage_io(&io(libc::ENOSPC), "writing chunks/w/r0/0_0");
        assert_eq!((e.kind, e.code()), (ErrorKind::Unavailable, "storage_full"), "{e}");
        assert!(e.message.contains("chunks/w/r0/0_0"), "{e}");
        assert_eq!(Error::storage_io(&io(libc::EDQUOT), "x").code(), "storage_full");
        let e = Error::storage_io(&io(libc::EACCES), "x");
        assert_eq!((e.kind, e.code()), (ErrorKind::Internal, "storage_denied"), "{e}");
        assert!(e.message.contains("does not clear by retrying"), "{e}");
        assert_eq!(Error::storage_io(&io(libc::EROFS), "x").code(), "storage_denied");
        assert_eq!(Error::storage_io(&io(libc::ENOTDIR), "x").code(), "storage_misconfigured");
        let e = Error::storage_io(&io(libc::EIO), "x");
        assert_eq!((e.kind, e.code()), (ErrorKind::Unavailable, "storage_unavailable"), "{e}");
    }
}
