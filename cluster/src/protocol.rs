//! The node's message interface: what a coordinator may ask a node and what
//! it answers. Plain serialisable data, so the same messages travel in
//! process (as actor messages) or between processes (as versioned frames).

use serde::{Deserialize, Serialize};
use worldloom_plugin_abi::{CallStats, PluginError, PluginInfo, RuntimeKind};
use worldloom_worldgen::ChunkCoord;

use crate::model::{ChunkRecord, GenSpec};
use crate::wire::{Kind, Versioned};

/// A request to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeRequest {
    /// Return the chunk of this world revision, generating and storing it if needed.
    Chunk { spec: GenSpec, coord: ChunkCoord },
    /// Load a plugin in the sandbox and report what it defines, storing nothing.
    CheckPlugin { runtime: RuntimeKind, name: String, source: String },
}

/// What loading a plugin in the sandbox found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginCheck {
    pub info: Option<PluginInfo>,
    pub error: Option<PluginError>,
    pub warnings: Vec<String>,
    pub log: String,
    pub stats: CallStats,
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeResponse {
    Chunk(Box<ChunkRecord>),
    PluginCheck(PluginCheck),
}

impl Versioned for NodeRequest {
    const KIND: Kind = Kind::NodeRequest;
    const VERSION: u8 = 1;
    const NAME: &'static str = "node request";
}

impl Versioned for NodeResponse {
    const KIND: Kind = Kind::NodeResponse;
    const VERSION: u8 = 1;
    const NAME: &'static str = "node response";
}

/// A chunk as a node returns it in process: decoded, and in its stored envelope encoding.
#[derive(Clone, Debug)]
pub struct ChunkReply {
    pub record: std::sync::Arc<ChunkRecord>,
    /// The versioned postcard envelope of `record`.
    pub bytes: bytes::Bytes,
    /// Whether this request generated the chunk (false: it came from storage).
    pub generated: bool,
}

/// Actor message: return one chunk of a world revision ([`NodeRequest::Chunk`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "crate::Result<ChunkReply>")]
pub struct Generate {
    pub spec: std::sync::Arc<GenSpec>,
    pub coord: ChunkCoord,
}

/// Actor message: load a plugin and report what it defines ([`NodeRequest::CheckPlugin`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "crate::Result<PluginCheck>")]
pub struct CheckPlugin {
    pub name: String,
    pub source: String,
}
