//! What every role of a Worldloom cluster shares: the data model, the
//! versioned wire/storage envelope, the node message protocol, the storage
//! trait with its OpenDAL backends, configuration and region placement.
//!
//! No HTTP, no actors, no wasm: the coordinator and node crates build on it.

pub mod config;
pub mod error;
pub mod ids;
pub mod model;
pub mod placement;
pub mod protocol;
pub mod storage;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
