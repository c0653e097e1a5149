//! The contract between the Worldloom host and a plugin: hooks, their
//! inputs and outputs, plugin metadata, failure kinds and limits.
//!
//! Plain data with serde only, versioned by [`ABI_VERSION`]; the host
//! runtime (the `sandbox` crate) and the Python guest harness both implement
//! it. Layers cross the host/guest boundary as raw little-endian buffers in
//! the frame layout of [`frame`].

pub mod frame;
pub mod params;
mod value;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use value::Value;

/// Version of this contract; stored with every plugin and checked on load.
pub const ABI_VERSION: u32 = 1;

/// The runtime a plugin runs in. Stored with each plugin so more can be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// CPython 3.15 with numpy, scipy and pandas, compiled to wasm32-wasi.
    Python,
}

impl RuntimeKind {
    pub const ALL: &'static [RuntimeKind] = &[RuntimeKind::Python];

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Python => "python",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

/// The hook functions a plugin may define, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookName {
    /// `terrain(ctx, chunk) -> chunk`: may change `chunk.height`.
    Terrain,
    /// `biome(ctx, chunk) -> chunk`: may change `chunk.biome`.
    Biome,
    /// `features(ctx, chunk) -> list[dict]`: features added to the chunk.
    Features,
}

impl HookName {
    pub const ALL: &'static [HookName] = &[HookName::Terrain, HookName::Biome, HookName::Features];

    pub fn as_str(self) -> &'static str {
        match self {
            HookName::Terrain => "terrain",
            HookName::Biome => "biome",
            HookName::Features => "features",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|h| h.as_str() == s)
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pairs a hook with its output type.
pub trait Hook {
    const NAME: HookName;
    type Output;
}

/// Marker for the `terrain` hook.
pub struct Terrain;
/// Marker for the `biome` hook.
pub struct Biome;
/// Marker for the `features` hook.
pub struct Features;

impl Hook for Terrain {
    const NAME: HookName = HookName::Terrain;
    type Output = TerrainOutput;
}
impl Hook for Biome {
    const NAME: HookName = HookName::Biome;
    type Output = BiomeOutput;
}
impl Hook for Features {
    const NAME: HookName = HookName::Features;
    type Output = Vec<FeatureOut>;
}

/// The chunk layers handed to a hook, each `size * size` long, indexed `x * size + z`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerBuffers {
    pub height: Vec<f32>,
    pub temperature: Vec<f32>,
    pub moisture: Vec<f32>,
    pub biome: Vec<u16>,
}

/// Everything a hook call receives (the guest's `ctx` and `chunk`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookInput {
    pub hook: HookName,
    /// The world seed.
    pub seed: u64,
    pub cx: i32,
    pub cz: i32,
    /// Columns along each side of the chunk.
    pub size: u32,
    /// Seed of `ctx.random`, derived from (world seed, plugin, chunk).
    pub random_seed: u64,
    /// The world's sea level (`ctx.sea_level`), metres: columns below it are sea.
    pub sea_level: f64,
    /// The world's values for this plugin's `PARAMS`, defaults filled in.
    pub params: BTreeMap<String, Value>,
    pub layers: LayerBuffers,
}

/// Result of a `terrain` hook: the new height layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerrainOutput {
    pub height: Vec<f32>,
}

/// Result of a `biome` hook: the new biome layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BiomeOutput {
    pub biome: Vec<u16>,
}

/// One feature a `features` hook adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureOut {
    pub x: u32,
    pub z: u32,
    pub kind: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

/// A validated hook result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOutput {
    Terrain(TerrainOutput),
    Biome(BiomeOutput),
    Features(Vec<FeatureOut>),
}

/// Why a plugin call failed. Plugin failures are data shown to the plugin
/// author, never host errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The plugin raised a Python exception.
    Exception,
    /// The call passed its wall-clock deadline (or slept past it).
    Timeout,
    /// The call used up its instruction budget.
    FuelExhausted,
    /// The call needed more linear memory than its cap.
    MemoryLimit,
    /// The call printed or returned more bytes than allowed.
    OutputLimit,
    /// The hook returned something of the wrong type, shape or range.
    InvalidOutput,
    /// The interpreter trapped (stack overflow, abort, exit, ...).
    Trap,
    /// The plugin does not define the hook that was called.
    MissingHook,
    /// The plugin source does not compile.
    Syntax,
}

impl ErrorKind {
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Exception,
        ErrorKind::Timeout,
        ErrorKind::FuelExhausted,
        ErrorKind::MemoryLimit,
        ErrorKind::OutputLimit,
        ErrorKind::InvalidOutput,
        ErrorKind::Trap,
        ErrorKind::MissingHook,
        ErrorKind::Syntax,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Exception => "exception",
            ErrorKind::Timeout => "timeout",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::OutputLimit => "output_limit",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::Trap => "trap",
            ErrorKind::MissingHook => "missing_hook",
            ErrorKind::Syntax => "syntax",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed plugin load or call: the kind and a message for the plugin author.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: String,
    /// 1-based source line, for syntax errors and exceptions raised in the plugin.
    #[serde(default)]
    pub line: Option<u32>,
    /// The failure is not a function of the plugin and its input (a
    /// wall-clock timeout, a crashed or killed sandbox process, a host-side
    /// error): the same call may succeed when tried again, so a chunk
    /// carrying it is never stored as that chunk's truth.
    #[serde(default)]
    pub transient: bool,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), line: None, transient: false }
    }

    /// A failure that is not a function of the plugin and its input.
    pub fn transient(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { transient: true, ..Self::new(kind, message) }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for PluginError {}

/// One entry of a plugin's `PARAMS` declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamDecl {
    pub default: Value,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub doc: String,
}

/// What loading a plugin found: its hooks and declared parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub hooks: Vec<HookName>,
    pub params: BTreeMap<String, ParamDecl>,
}

/// Resources one load or call used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStats {
    /// Wall-clock time of the call, microseconds.
    pub wall_us: u64,
    /// Instructions (metering points) used.
    pub fuel: u64,
    /// Linear memory size at the end of the call, bytes.
    pub memory_bytes: u64,
}

/// Per-call limits the host enforces. Operators configure them; these are the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Instruction budget per hook call (deterministic).
    pub fuel: u64,
    /// Instruction budget for loading a plugin (its module-level code, e.g.
    /// `import scipy` costs about 2.5e9).
    pub load_fuel: u64,
    /// Wall-clock deadline per hook call, milliseconds.
    pub deadline_ms: u64,
    /// Wall-clock deadline for loading a plugin (module-level code), milliseconds.
    pub load_deadline_ms: u64,
    /// Cap on a sandbox's linear memory, bytes.
    pub memory_bytes: u64,
    /// Cap on captured `print()` output per call, bytes.
    pub log_bytes: u64,
    /// Cap on a hook's encoded result, bytes.
    pub output_bytes: u64,
    /// Most features one `features` call may add.
    pub max_features: u32,
    /// Most properties one feature may carry.
    pub max_feature_properties: u32,
    /// Longest feature kind, property name or string property, bytes.
    pub max_feature_string: u32,
    /// Largest linear memory a plugin may have after loading (what its warm
    /// snapshot keeps), bytes.
    pub snapshot_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 2_000_000_000,
            load_fuel: 20_000_000_000,
            deadline_ms: 2_000,
            load_deadline_ms: 10_000,
            memory_bytes: 256 << 20,
            log_bytes: 16 << 10,
            output_bytes: 1 << 20,
            max_features: 4_096,
            max_feature_properties: 16,
            max_feature_string: 64,
            snapshot_bytes: 128 << 20,
        }
    }
}
