//! The Worldloom plugin sandbox: runs untrusted Python plugins (CPython 3.15
//! with numpy, compiled to wasm32-wasi) under wasmer, with fresh interpreter
//! state for every call, deterministic fuel, a cooperative wall-clock
//! deadline, a memory cap, bounded output, and no access to the host beyond
//! one read-only file.
//!
//! Two layers: [`Engine`] / [`Sandbox`] run plugins in the calling process
//! (the wasm wall); [`Supervisor`] / [`Worker`] run them in confined worker
//! processes forked from a zygote (the second wall), killing any that does
//! not answer in time. Servers use the supervisor.
//!
//! ```no_run
//! use worldloom_sandbox::{Engine, SandboxConfig};
//! # fn input() -> worldloom_plugin_abi::HookInput { unimplemented!() }
//! let engine = Engine::load(&SandboxConfig::new(".worldloom/runtime/python", ".worldloom/cache"))?;
//! let mut sandbox = engine.instantiate("identity", "def terrain(ctx, chunk):\n    return chunk\n")
//!     .map_err(|e| e.to_string())?;
//! let report = sandbox.call(&input());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `DESIGN.md` next to this crate for how fresh state is achieved and
//! why it is sound.

mod artifacts;
mod cache;
mod engine;
mod error;
mod host;
mod image;
mod instance;
mod metering;
pub mod proto;
mod sandbox;
mod seccomp;
mod shm;
pub mod supervisor;
mod tunables;
/// Validation of every byte the guest returns (public for the decoder property tests).
#[doc(hidden)]
pub mod validate;
mod wasi;
mod watchdog;
pub mod worker;

use std::path::PathBuf;

pub use artifacts::{STDLIB_FILE, STDLIB_SHA256, WASM_FILE, WASM_SHA256};
pub use engine::{CheckReport, Engine};
pub use error::{LoadFailure, SandboxError, SandboxErrorKind};
pub use image::ResetProfile;
pub use sandbox::{CallProfile, CallReport, RawCall, Sandbox};
pub use supervisor::{LoadReport, PluginRef, Supervisor, SupervisorConfig, SupervisorStats, Worker};
pub use worldloom_plugin_abi::Limits;

/// Number of biomes in the default table (ids `0..13`).
pub const DEFAULT_BIOME_COUNT: u16 = 13;

/// Where the runtime artifacts and the compiled-module cache live, and the
/// limits every call runs under.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Directory holding `python-snapshot.wasm` and `python-stdlib.zip`
    /// (`scripts/fetch-runtime` fetches and verifies them).
    pub runtime_dir: PathBuf,
    /// Directory for the compiled interpreter (hundreds of MB, native code:
    /// must be writable only by the service).
    pub cache_dir: PathBuf,
    pub limits: Limits,
    /// Length of the biome table: biome ids a plugin returns must be below it.
    pub biome_count: u16,
}

impl SandboxConfig {
    pub fn new(runtime_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime_dir: runtime_dir.into(),
            cache_dir: cache_dir.into(),
            limits: Limits::default(),
            biome_count: DEFAULT_BIOME_COUNT,
        }
    }
}

/// How a sandbox gets back to its snapshot after every call. All of them give
/// identical results; they differ only in cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResetStrategy {
    /// Linear memory is a private copy-on-write mapping of the snapshot
    /// memfd, write-tracked with userfaultfd (async write-protect); after a
    /// call every page not write-protected (listed by `PAGEMAP_SCAN`: the
    /// pages this call wrote and those recent calls wrote) is copied back
    /// from the snapshot. Those pages stay writable, so the next call writes
    /// them without a page fault; everything is protected again every 64
    /// resets or past 4 MiB of such pages. Falls back to
    /// [`ResetStrategy::OverlayDiscard`] where the kernel lacks the features
    /// (Linux < 6.7).
    #[default]
    Overlay,
    /// [`ResetStrategy::Overlay`] protecting every page again after every
    /// call (one page fault per page a call writes; the default before
    /// issue 10, kept for the benchmark).
    OverlayReprotect,
    /// The same copy-on-write overlay, without write tracking: after a call
    /// the private (written) pages, found with `PAGEMAP_SCAN`, are dropped
    /// with `MADV_DONTNEED` so the snapshot shows through again (the next
    /// call faults them in again).
    OverlayDiscard,
    /// Copy the whole snapshot back over linear memory (the naive reset).
    FullCopy,
    /// A new instance (from the snapshot) for every call.
    FreshInstance,
}

/// What every sandbox of an engine shares.
pub(crate) struct Core {
    /// The engine that loaded `module`: it owns the module's machine code.
    /// Each [`Engine`] uses a clone of it with its own memory cap.
    pub engine: wasmer::Engine,
    pub module: wasmer::Module,
    /// Store globals a reset restores (see `engine::restored_globals`).
    pub restored_globals: usize,
    pub stdlib: wasi::Stdlib,
    pub watchdog: watchdog::Watchdog,
    pub biome_count: u16,
}
