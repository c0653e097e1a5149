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
}

impl From<opendal::Error> for Error {
    fn from(e: opendal::Error) -> Self {
        use opendal::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::ConditionNotMatch | K::AlreadyExists => ErrorKind::Conflict,
            K::PermissionDenied => ErrorKind::Internal,
            K::RateLimited => ErrorKind::Unavailable,
            _ if e.is_temporary() => ErrorKind::Unavailable,
            _ => ErrorKind::Unavailable,
        };
        Error::new(kind, format!("storage: {e}"))
    }
}
