//! Host-side errors of the sandbox (never plugin failures, which are
//! [`worldloom_plugin_abi::PluginError`] data).

use std::fmt;

use worldloom_plugin_abi::{CallStats, PluginError};

/// What went wrong on the host side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SandboxErrorKind {
    /// A runtime artifact (the interpreter wasm or the stdlib zip) is missing.
    ArtifactMissing,
    /// A runtime artifact is present but its SHA-256 does not match the pinned one.
    ArtifactCorrupt,
    /// Compiling the interpreter module failed.
    Compile,
    /// Reading or writing the compiled-module cache failed.
    Cache,
    /// Other host I/O failed (memfd, mmap, files).
    Io,
    /// Creating or initialising an interpreter instance failed.
    Instantiation,
    /// The host handed the sandbox an input it cannot run (wrong layer lengths, ...).
    InvalidInput,
    /// An internal invariant of the sandbox did not hold.
    Internal,
}

impl SandboxErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxErrorKind::ArtifactMissing => "artifact_missing",
            SandboxErrorKind::ArtifactCorrupt => "artifact_corrupt",
            SandboxErrorKind::Compile => "compile",
            SandboxErrorKind::Cache => "cache",
            SandboxErrorKind::Io => "io",
            SandboxErrorKind::Instantiation => "instantiation",
            SandboxErrorKind::InvalidInput => "invalid_input",
            SandboxErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for SandboxErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host-side sandbox error: a small kind plus a human-readable context.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sandbox {kind}: {context}")]
pub struct SandboxError {
    pub kind: SandboxErrorKind,
    pub context: String,
}

impl SandboxError {
    pub fn new(kind: SandboxErrorKind, context: impl Into<String>) -> Self {
        Self { kind, context: context.into() }
    }

    pub(crate) fn io(what: impl fmt::Display, err: impl fmt::Display) -> Self {
        Self::new(SandboxErrorKind::Io, format!("{what}: {err}"))
    }

    pub(crate) fn instantiation(what: impl fmt::Display, err: impl fmt::Display) -> Self {
        Self::new(SandboxErrorKind::Instantiation, format!("{what}: {err}"))
    }

    pub(crate) fn internal(what: impl Into<String>) -> Self {
        Self::new(SandboxErrorKind::Internal, what)
    }
}

/// Why [`crate::Engine::instantiate`] did not produce a sandbox.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LoadFailure {
    /// The plugin itself failed to load (syntax error, exception, limits,
    /// no hook, invalid `PARAMS`, ...): data for the plugin author.
    #[error("plugin failed to load: {error}")]
    Plugin {
        error: PluginError,
        /// What the module-level code printed before failing.
        log: String,
        stats: CallStats,
    },
    /// The host could not run the load at all.
    #[error(transparent)]
    Host(#[from] SandboxError),
}

impl LoadFailure {
    /// The plugin error, if this is a plugin failure.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            LoadFailure::Plugin { error, .. } => Some(error),
            LoadFailure::Host(_) => None,
        }
    }
}
