//! What every role of a Worldloom cluster shares: the data model, the
//! versioned wire/storage envelope, the node message protocol, the storage
//! trait with its OpenDAL backends, configuration and region placement.
//!
//! No HTTP, no actors, no wasm: the coordinator and node crates build on it.

pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod placement;
pub mod protocol;
pub mod storage;
pub mod wire;

pub use error::{Error, ErrorKind, Result};

/// Installs the process-wide TLS provider reqwest and OpenDAL need before
/// any HTTP client is built (even for plain-HTTP endpoints: they are built
/// without a default provider). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
