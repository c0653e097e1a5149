//! The pinned interpreter artifacts (CPython reactor wasm + stdlib zip) and
//! their SHA-256 verification.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{SandboxError, SandboxErrorKind};

/// File name of the CPython reactor build inside the runtime directory.
pub const WASM_FILE: &str = "python-snapshot.wasm";
/// Pinned SHA-256 of [`WASM_FILE`] (same pin as `scripts/fetch-runtime`).
pub const WASM_SHA256: &str = "879bdb628a1a799dc3a6d1a645fee0f88944bf4cdf5e1628e0e1d2b4b33d28d3";
/// File name of the standard library zip inside the runtime directory.
pub const STDLIB_FILE: &str = "python-stdlib.zip";
/// Pinned SHA-256 of [`STDLIB_FILE`].
pub const STDLIB_SHA256: &str = "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847";
/// Where the guest expects the stdlib zip.
pub const GUEST_STDLIB_DIR: &str = "/usr/local/lib";
/// Name of the stdlib zip inside [`GUEST_STDLIB_DIR`].
pub const GUEST_STDLIB_NAME: &str = "python315.zip";

fn missing(path: &Path, err: std::io::Error) -> SandboxError {
    let kind = if err.kind() == std::io::ErrorKind::NotFound {
        SandboxErrorKind::ArtifactMissing
    } else {
        SandboxErrorKind::Io
    };
    SandboxError::new(
        kind,
        format!(
            "cannot read runtime artifact {}: {err}; run `scripts/fetch-runtime` to fetch and verify it",
            path.display()
        ),
    )
}

fn check_sum(path: &Path, got: &[u8], want_hex: &str) -> Result<(), SandboxError> {
    let got = hex::encode(got);
    if got != want_hex {
        return Err(SandboxError::new(
            SandboxErrorKind::ArtifactCorrupt,
            format!(
                "runtime artifact {} has SHA-256 {got}, expected {want_hex}; delete it and run \
                 `scripts/fetch-runtime` to fetch a verified copy",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Reads a whole artifact and checks its SHA-256.
pub fn read_verified(path: &Path, want_hex: &str) -> Result<Vec<u8>, SandboxError> {
    let bytes = std::fs::read(path).map_err(|e| missing(path, e))?;
    check_sum(path, &Sha256::digest(&bytes), want_hex)?;
    Ok(bytes)
}

/// Paths of the two artifacts in a runtime directory.
pub struct ArtifactPaths {
    pub wasm: PathBuf,
    pub stdlib: PathBuf,
}

impl ArtifactPaths {
    pub fn new(runtime_dir: &Path) -> Self {
        Self { wasm: runtime_dir.join(WASM_FILE), stdlib: runtime_dir.join(STDLIB_FILE) }
    }

    /// Fails early, naming the file, if an artifact is not there at all.
    pub fn check_present(&self) -> Result<(), SandboxError> {
        for p in [&self.wasm, &self.stdlib] {
            if let Err(e) = std::fs::metadata(p) {
                return Err(missing(p, e));
            }
        }
        Ok(())
    }
}
