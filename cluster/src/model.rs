//! The cluster's data model: worlds, attached plugins and generated chunk records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use worldloom_plugin_abi::{ErrorKind as PluginErrorKind, HookName, Limits, RuntimeKind, Value};
use worldloom_worldgen::{CHUNK_SIZE, Chunk, Feature, Layers, Params};

use crate::ids::WorldId;
use crate::wire::{Kind, Versioned};

/// A plugin attached to a world, pinned to one version and the SHA-256 of its source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttachedPlugin {
    pub name: String,
    pub version: String,
    /// Lowercase hex SHA-256 of the source; the source is stored under this hash.
    pub sha256: String,
    pub runtime: RuntimeKind,
    /// The world's values for the plugin's PARAMS, defaults filled in.
    pub params: BTreeMap<String, Value>,
}

/// A world as stored: identity, generation inputs and current revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldRecord {
    pub id: WorldId,
    pub name: String,
    pub seed: u64,
    pub params: Params,
    pub plugins: Vec<AttachedPlugin>,
    /// Bumped whenever plugins or parameters change; chunks are cached per revision.
    pub revision: u32,
    /// Token name of the owner, when the world was created with a token.
    pub owner: Option<String>,
    pub created_unix_s: u64,
    pub updated_unix_s: u64,
    /// The plugin limits every node applies to this world (set when it was
    /// created): a plugin's outcome depends on them, so they are part of the
    /// world, not of each process's configuration.
    pub limits: Limits,
}

/// Version 1 of [`WorldRecord`]: no limits (it ran under the defaults).
#[derive(Deserialize)]
struct WorldRecordV1 {
    id: WorldId,
    name: String,
    seed: u64,
    params: Params,
    plugins: Vec<AttachedPlugin>,
    revision: u32,
    owner: Option<String>,
    created_unix_s: u64,
    updated_unix_s: u64,
}

impl Versioned for WorldRecord {
    const KIND: Kind = Kind::World;
    const VERSION: u8 = 2;
    const NAME: &'static str = "world";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| {
            crate::wire::body::<WorldRecordV1>(body).map(|v| WorldRecord {
                id: v.id,
                name: v.name,
                seed: v.seed,
                params: v.params,
                plugins: v.plugins,
                revision: v.revision,
                owner: v.owner,
                created_unix_s: v.created_unix_s,
                updated_unix_s: v.updated_unix_s,
                limits: Limits::default(),
            })
        })
    }
}

impl WorldRecord {
    /// Everything a node needs to generate this world's chunks.
    pub fn gen_spec(&self) -> GenSpec {
        GenSpec {
            world: self.id.clone(),
            revision: self.revision,
            seed: self.seed,
            params: self.params,
            plugins: self.plugins.clone(),
            limits: self.limits,
        }
    }
}

/// The generation inputs of one world revision: self-contained, so it can be
/// sent to any node, and two nodes given the same spec produce the same bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenSpec {
    pub world: WorldId,
    pub revision: u32,
    pub seed: u64,
    pub params: Params,
    pub plugins: Vec<AttachedPlugin>,
    /// The limits every plugin call of this world runs under.
    pub limits: Limits,
}

/// A plugin hook that failed while generating a chunk; the chunk is served without its effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginFailure {
    pub plugin: String,
    pub version: String,
    pub hook: HookName,
    pub kind: PluginErrorKind,
    pub message: String,
    /// Not a function of the inputs (see `PluginError::transient`): a chunk
    /// with such a failure is served but never stored.
    pub transient: bool,
}

/// Version 1 of [`PluginFailure`] (every failure was treated as part of the chunk).
#[derive(Deserialize)]
struct PluginFailureV1 {
    plugin: String,
    version: String,
    hook: HookName,
    kind: PluginErrorKind,
    message: String,
}

#[derive(Deserialize)]
struct ChunkRecordV1 {
    world: WorldId,
    revision: u32,
    chunk: Chunk,
    plugin_failures: Vec<PluginFailureV1>,
}

/// A generated chunk of one world revision, as stored and streamed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub world: WorldId,
    pub revision: u32,
    pub chunk: Chunk,
    pub plugin_failures: Vec<PluginFailure>,
}

impl Versioned for ChunkRecord {
    const KIND: Kind = Kind::Chunk;
    const VERSION: u8 = 2;
    const NAME: &'static str = "chunk";

    fn decode_older(version: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (version == 1).then(|| {
            crate::wire::body::<ChunkRecordV1>(body).map(|v| ChunkRecord {
                world: v.world,
                revision: v.revision,
                chunk: v.chunk,
                plugin_failures: v
                    .plugin_failures
                    .into_iter()
                    .map(|f| PluginFailure {
                        plugin: f.plugin,
                        version: f.version,
                        hook: f.hook,
                        kind: f.kind,
                        message: f.message,
                        transient: false,
                    })
                    .collect(),
            })
        })
    }
}

impl ChunkRecord {
    /// Whether this chunk may be stored as its world revision's truth: no
    /// plugin failure in it depends on anything but its inputs.
    pub fn is_deterministic(&self) -> bool {
        !self.plugin_failures.iter().any(|f| f.transient)
    }
}

/// The JSON form of a chunk: layers as `[x][z]` nested arrays.
#[derive(Serialize)]
pub struct ChunkJson<'a> {
    pub world: &'a WorldId,
    pub revision: u32,
    pub cx: i32,
    pub cz: i32,
    pub size: usize,
    pub layers: &'a Layers,
    pub features: &'a [Feature],
    pub plugin_failures: &'a [PluginFailure],
}

impl ChunkRecord {
    pub fn json(&self) -> ChunkJson<'_> {
        ChunkJson {
            world: &self.world,
            revision: self.revision,
            cx: self.chunk.coord.cx,
            cz: self.chunk.coord.cz,
            size: CHUNK_SIZE,
            layers: &self.chunk.layers,
            features: &self.chunk.features,
            plugin_failures: &self.plugin_failures,
        }
    }
}

/// An account's API token, stored under the SHA-256 of the token (never the token itself).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The account the token acts as.
    pub account: String,
    pub created_unix_s: u64,
}

impl Versioned for TokenRecord {
    const KIND: Kind = Kind::Token;
    const VERSION: u8 = 1;
    const NAME: &'static str = "token";
}

/// An account: its name and the hash of its current token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub name: String,
    pub token_sha256: String,
    pub created_unix_s: u64,
}

impl Versioned for AccountRecord {
    const KIND: Kind = Kind::Account;
    const VERSION: u8 = 1;
    const NAME: &'static str = "account";
}

/// A plugin name and the account that owns it (its first uploader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginNameRecord {
    pub name: String,
    pub owner: String,
    pub created_unix_s: u64,
}

impl Versioned for PluginNameRecord {
    const KIND: Kind = Kind::PluginName;
    const VERSION: u8 = 1;
    const NAME: &'static str = "plugin name";
}

/// One immutable version of a plugin in the workshop (only `yanked` ever changes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginVersionRecord {
    pub name: String,
    pub version: String,
    pub description: String,
    pub runtime: worldloom_plugin_abi::RuntimeKind,
    /// Lowercase hex SHA-256 of the source, stored under `plugins/sources/{sha256}`.
    pub sha256: String,
    pub size_bytes: u64,
    /// What the sandbox found when the version was uploaded.
    pub info: worldloom_plugin_abi::PluginInfo,
    pub abi_version: u32,
    pub owner: String,
    pub created_unix_s: u64,
    /// Yanked versions keep working where attached; new attachments are refused.
    pub yanked: bool,
}

impl Versioned for PluginVersionRecord {
    const KIND: Kind = Kind::PluginVersion;
    const VERSION: u8 = 1;
    const NAME: &'static str = "plugin version";
}
