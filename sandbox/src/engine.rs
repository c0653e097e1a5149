//! The per-process engine: verified artifacts, the compiled interpreter, the
//! shared stdlib bytes, the watchdog, and the base snapshot (interpreter +
//! numpy + harness) every plugin sandbox starts from.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmer::sys::NativeEngineExt;
use worldloom_plugin_abi::{CallStats, ErrorKind, Limits, PluginError, PluginInfo};

use crate::artifacts::{self, ArtifactPaths, GUEST_STDLIB_NAME, STDLIB_SHA256};
use crate::error::{LoadFailure, SandboxError, SandboxErrorKind};
use crate::host::{self, Request, rng_for};
use crate::image::Image;
use crate::instance::{Live, TurnLimits, TurnSource};
use crate::sandbox::Sandbox;
use crate::tunables::LimitingTunables;
use crate::validate::{self, MANIFEST_CAP, Phase};
use crate::wasi::Stdlib;
use crate::watchdog::Watchdog;
use crate::{Core, ResetStrategy, SandboxConfig};

/// The guest harness, run once per engine before the base snapshot.
const HARNESS: &str = include_str!("../python/harness.py");
/// Largest plugin source accepted.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Native stack for guest code (wasmer's default is 1 MiB).
const WASM_STACK: usize = 8 << 20;

/// One per process; cheap to share. Sandboxes made from it share its
/// compiled module, stdlib bytes, watchdog and base snapshot.
pub struct Engine {
    pub(crate) core: Arc<Core>,
    /// The wasmer engine carrying this engine's memory cap (tunables).
    pub(crate) wasmer: wasmer::Engine,
    pub(crate) limits: Limits,
    pub(crate) base: Arc<Image>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("limits", &self.limits).field("base", &self.base).finish_non_exhaustive()
    }
}

/// What `worldloom plugin check` shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckReport {
    pub info: Option<PluginInfo>,
    pub error: Option<PluginError>,
    pub warnings: Vec<String>,
    pub log: String,
    pub stats: CallStats,
    /// The host could not run the check at all.
    pub host_error: Option<SandboxError>,
}

/// A handle on `base` (sharing its compiled code, which the engine that
/// loaded the module owns) with its own memory cap.
fn capped(base: &wasmer::Engine, limits: &Limits) -> wasmer::Engine {
    let mut e = base.clone();
    e.set_tunables(LimitingTunables::new(limits.memory_bytes, Some(WASM_STACK)));
    e
}

impl Engine {
    /// Verifies the artifacts, loads (or compiles and caches) the
    /// interpreter, and builds the base snapshot.
    pub fn load(cfg: &SandboxConfig) -> Result<Arc<Engine>, SandboxError> {
        let t = Instant::now();
        let paths = ArtifactPaths::new(&cfg.runtime_dir);
        paths.check_present()?;
        let stdlib = artifacts::read_verified(&paths.stdlib, STDLIB_SHA256)?;
        let loader = wasmer::Engine::headless();
        let wasmer = capped(&loader, &cfg.limits);
        let module = crate::cache::load_or_compile(&wasmer, &paths.wasm, &cfg.cache_dir)?;
        check_module(&module)?;
        let restored_globals = restored_globals(&module)?;
        let core = Arc::new(Core {
            engine: loader,
            restored_globals,
            module,
            stdlib: Stdlib { name: GUEST_STDLIB_NAME.to_string(), data: Bytes::from(stdlib) },
            watchdog: Watchdog::new(),
            biome_count: cfg.biome_count,
        });
        let base = base_image(&core, &wasmer)?;
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            memory_mib = base.len() >> 20,
            "sandbox engine ready"
        );
        Ok(Arc::new(Engine { core, wasmer, limits: cfg.limits, base }))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Length of the biome table plugins are checked against.
    pub fn biome_count(&self) -> u16 {
        self.core.biome_count
    }

    /// Size of the base snapshot's linear memory, bytes.
    pub fn base_memory_bytes(&self) -> usize {
        self.base.len()
    }

    /// Descriptors the engine holds (snapshot memfds): a forked worker keeps
    /// these and closes everything else.
    pub fn owned_fds(&self) -> Vec<RawFd> {
        vec![self.base.raw_fd()]
    }

    /// Starts the deadline thread now (a worker does this before it
    /// confines itself; otherwise the first call starts it).
    pub fn start_watchdog(&self) -> std::io::Result<()> {
        self.core.watchdog.start()
    }

    /// The same engine (compiled module, base snapshot, watchdog) with other
    /// limits, including the memory cap: no recompilation.
    pub fn with_limits(&self, limits: Limits) -> Arc<Engine> {
        Arc::new(Engine {
            core: self.core.clone(),
            wasmer: capped(&self.core.engine, &limits),
            limits,
            base: self.base.clone(),
        })
    }

    /// Loads a plugin (runs its module-level code) in a fresh sandbox under
    /// the same capabilities and limits as a hook call, then snapshots it.
    pub fn instantiate(&self, name: &str, source: &str) -> Result<Sandbox, LoadFailure> {
        self.instantiate_with(name, source, ResetStrategy::default())
    }

    /// [`Engine::instantiate`] with a chosen reset strategy (for benchmarks).
    pub fn instantiate_with(&self, name: &str, source: &str, strategy: ResetStrategy) -> Result<Sandbox, LoadFailure> {
        let mut loaded = self.run_load(source, strategy)?;
        let kept = loaded.live.memory_len() as u64;
        if kept > self.limits.snapshot_bytes {
            return Err(LoadFailure::Plugin {
                error: PluginError::new(
                    ErrorKind::MemoryLimit,
                    format!(
                        "the plugin's state after loading is {} MiB; at most {} MiB can be kept warm \
                         (import less at module level, or build large tables inside the hook)",
                        kept >> 20,
                        self.limits.snapshot_bytes >> 20
                    ),
                ),
                log: loaded.log,
                stats: loaded.stats,
            });
        }
        let image = loaded.live.capture(self.base.call_src, self.base.load_src)?;
        loaded.live.reset(&image, strategy)?;
        tracing::debug!(
            plugin = name,
            memory_mib = image.len() >> 20,
            stored_mib = image.stored_bytes >> 20,
            load_us = loaded.stats.wall_us,
            "plugin loaded"
        );
        // An instance whose load threw a lot keeps wasmer's exception objects:
        // start the first call from a fresh one instead.
        let reuse = strategy != ResetStrategy::FreshInstance
            && loaded.live.exception_debt() <= crate::instance::MAX_EXCEPTION_DEBT;
        let live = if reuse { Some(loaded.live) } else { None };
        let loaded_meta = (loaded.info, loaded.warnings, loaded.log, loaded.stats);
        Ok(Sandbox::new(self, name, loaded_meta, image, live, strategy))
    }

    /// Runs the load turn in a fresh instance made from the base snapshot
    /// and validates what the plugin declared.
    fn run_load(&self, source: &str, strategy: ResetStrategy) -> Result<Loaded, LoadFailure> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(LoadFailure::Plugin {
                error: PluginError::new(
                    ErrorKind::Syntax,
                    format!("the plugin source is {} bytes; at most {MAX_SOURCE_BYTES} are allowed", source.len()),
                ),
                log: String::new(),
                stats: CallStats::default(),
            });
        }
        let mut live = Live::from_image(&self.core, &self.wasmer, &self.base, strategy)?;
        let deadline = Duration::from_millis(self.limits.load_deadline_ms);
        let limits = TurnLimits {
            fuel: self.limits.load_fuel,
            deadline: Some(deadline),
            virtual_deadline: deadline,
            log_bytes: usize::try_from(self.limits.log_bytes).unwrap_or(usize::MAX),
            frame_cap: MANIFEST_CAP + 5,
        };
        let tr = live.run_turn(
            &self.core,
            TurnSource::At(self.base.load_src.0, self.base.load_src.1),
            Request::Load(Bytes::copy_from_slice(source.as_bytes())),
            rng_for("load", 0),
            limits,
        )?;
        let stats =
            CallStats { wall_us: tr.wall.as_micros() as u64, fuel: tr.fuel_used, memory_bytes: tr.memory_bytes };
        let fail = |error: PluginError, log: String| LoadFailure::Plugin { error, log, stats };
        let body = match validate::classify(&tr, &self.limits, Phase::Load) {
            Ok(b) => b,
            Err(e) => return Err(fail(e, tr.log)),
        };
        let (info, warnings) = match validate::manifest(&body) {
            Ok(x) => x,
            Err(e) => return Err(fail(e, tr.log)),
        };
        if tr.open_files > 0 {
            return Err(fail(
                PluginError::new(
                    ErrorKind::InvalidOutput,
                    format!(
                        "the plugin keeps {} file(s) open after loading; close them before the module finishes",
                        tr.open_files
                    ),
                ),
                tr.log,
            ));
        }
        Ok(Loaded { live, info, warnings, log: tr.log, stats })
    }

    /// Loads a plugin only to report on it (for `worldloom plugin check` and
    /// upload validation): the same load as [`Engine::instantiate`], without
    /// keeping a snapshot.
    pub fn check(&self, _name: &str, source: &str) -> CheckReport {
        match self.run_load(source, ResetStrategy::FreshInstance) {
            Ok(l) => CheckReport {
                info: Some(l.info),
                warnings: l.warnings,
                log: l.log,
                stats: l.stats,
                ..CheckReport::default()
            },
            Err(LoadFailure::Plugin { error, log, stats }) => {
                CheckReport { error: Some(error), log, stats, ..CheckReport::default() }
            }
            Err(LoadFailure::Host(e)) => CheckReport { host_error: Some(e), ..CheckReport::default() },
        }
    }
}

/// A plugin whose load turn succeeded, not yet snapshotted.
struct Loaded {
    live: Live,
    info: PluginInfo,
    warnings: Vec<String>,
    log: String,
    stats: CallStats,
}

/// Checks the module is the interpreter we expect: only allowed imports,
/// the exports we drive, metering applied, a table that cannot grow.
fn check_module(module: &wasmer::Module) -> Result<(), SandboxError> {
    let bad = |m: String| SandboxError::new(SandboxErrorKind::ArtifactCorrupt, m);
    host::check_imports(module).map_err(bad)?;
    use crate::metering::{DEPTH, EXHAUSTED, REMAINING, THROW_FRAMES};
    for name in ["memory", "turn", "host_alloc", REMAINING, EXHAUSTED, DEPTH, THROW_FRAMES] {
        if !module.exports().any(|e| e.name() == name) {
            return Err(bad(format!("the compiled interpreter does not export {name}")));
        }
    }
    for t in module.info().tables.values() {
        if t.maximum != Some(t.minimum) {
            return Err(bad("the interpreter's table can grow; the snapshot reset would not restore it".into()));
        }
    }
    Ok(())
}

/// How many of the store's globals a reset restores: the module's own and
/// the metering's first five; the metering's per-function depth slots after
/// them need no restoring (each is written at its function's entry).
fn restored_globals(module: &wasmer::Module) -> Result<usize, SandboxError> {
    match module.info().exports.get(crate::metering::REMAINING) {
        Some(wasmer::ExportIndex::Global(g)) => {
            use wasmer_types::entity::EntityRef;
            Ok(g.index() + crate::metering::RESTORED_GLOBALS)
        }
        _ => Err(SandboxError::new(SandboxErrorKind::ArtifactCorrupt, "the interpreter is not metered")),
    }
}

/// Runs the harness in a fresh instance and snapshots the result.
fn base_image(core: &Core, wasmer: &wasmer::Engine) -> Result<Arc<Image>, SandboxError> {
    let t = Instant::now();
    let mut live = Live::new(core, wasmer)?;
    // Trusted set-up code: no watchdog (the zygote must stay single-threaded).
    let limits = TurnLimits {
        fuel: u64::MAX / 4,
        deadline: None,
        virtual_deadline: Duration::from_secs(600),
        log_bytes: 64 << 10,
        frame_cap: 0,
    };
    let tr = live.run_turn(core, TurnSource::Text(HARNESS), Request::Internal, rng_for("base", 0), limits)?;
    let fail = |what: String| SandboxError::new(SandboxErrorKind::Instantiation, what);
    match &tr.result {
        Ok(0) => {}
        Ok(s) => return Err(fail(format!("the harness failed to start (status {s}): {}", tr.log))),
        Err(e) => return Err(fail(format!("the harness trapped while starting: {e}; log: {}", tr.log))),
    }
    if !tr.log.is_empty() {
        return Err(fail(format!("the harness printed while starting: {}", tr.log)));
    }
    let call_src = [live.place("_wl_call()")?, live.place("_wl_call_eager()")?];
    let load_src = live.place("_wl_load()")?;
    if tr.open_files > 0 {
        return Err(SandboxError::internal(format!("{} files are open at the base snapshot", tr.open_files)));
    }
    let image = live.capture(call_src, load_src)?;
    tracing::debug!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        fuel = tr.fuel_used,
        memory_mib = image.len() >> 20,
        stored_mib = image.stored_bytes >> 20,
        "base snapshot taken"
    );
    Ok(image)
}
