//! Plugins on a node: the wasm sandbox behind the pipeline's [`HookRunner`].
//!
//! Each worker thread keeps its own warm sandboxes (one per plugin source,
//! least recently used evicted), so a plugin's calls on one worker never
//! wait for another worker, and no sandbox is ever shared between threads.
//! Every call starts from the plugin's post-load snapshot, so nothing a call
//! does is visible to the next one or to another world.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use worldloom_cluster::model::AttachedPlugin;
use worldloom_cluster::protocol::PluginCheck;
use worldloom_plugin_abi::{ErrorKind, HookInput, HookName, HookOutput, PluginError};
use worldloom_sandbox::{Engine, LoadFailure, Sandbox};

use crate::pipeline::HookRunner;
use crate::workers::{PluginRuntime, Sources, WorkerPlugins};

/// Warm sandboxes a worker keeps before evicting the least recently used.
pub const DEFAULT_WARM_PER_WORKER: usize = 16;

/// The Python runtime for a node's workers.
pub struct SandboxRuntime {
    engine: Arc<Engine>,
    warm_per_worker: usize,
}

impl SandboxRuntime {
    pub fn new(engine: Arc<Engine>, warm_per_worker: usize) -> Self {
        Self { engine, warm_per_worker: warm_per_worker.max(1) }
    }
}

impl PluginRuntime for SandboxRuntime {
    fn worker(&self) -> Box<dyn WorkerPlugins> {
        Box::new(SandboxWorker { engine: self.engine.clone(), warm: VecDeque::new(), capacity: self.warm_per_worker })
    }
}

/// A loaded plugin, or why it could not be loaded. Most load failures are
/// deterministic given the source and limits (syntax, exceptions, fuel), so
/// they are remembered rather than retried for every chunk; a wall-clock
/// timeout or a host error may be transient and is retried after
/// [`RETRY_TRANSIENT_LOAD_AFTER`].
type Loaded = Result<Sandbox, PluginError>;

/// How long a transient load failure is remembered before loading again.
pub const RETRY_TRANSIENT_LOAD_AFTER: Duration = Duration::from_secs(30);

struct Warm {
    sha256: String,
    loaded: Loaded,
    at: Instant,
}

impl Warm {
    fn expired(&self) -> bool {
        matches!(&self.loaded, Err(e) if matches!(e.kind, ErrorKind::Timeout | ErrorKind::Trap))
            && self.at.elapsed() > RETRY_TRANSIENT_LOAD_AFTER
    }
}

struct SandboxWorker {
    engine: Arc<Engine>,
    /// Most recently used last.
    warm: VecDeque<Warm>,
    capacity: usize,
}

impl SandboxWorker {
    fn sandbox(&mut self, plugin: &AttachedPlugin, sources: &Sources) -> &mut Loaded {
        self.warm.retain(|w| !w.expired());
        if let Some(i) = self.warm.iter().position(|w| w.sha256 == plugin.sha256) {
            let entry = self.warm.remove(i).expect("index is in range");
            self.warm.push_back(entry);
        } else {
            let loaded = match sources.get(&plugin.sha256) {
                None => Err(PluginError::new(ErrorKind::Trap, "the plugin's source was not available to this node")),
                Some(source) => match self.engine.instantiate(&plugin.name, source) {
                    Ok(sandbox) => Ok(sandbox),
                    Err(LoadFailure::Plugin { error, .. }) => Err(error),
                    Err(LoadFailure::Host(e)) => {
                        tracing::error!(plugin = %plugin.name, error = %e, "the sandbox could not load a plugin");
                        Err(PluginError::new(ErrorKind::Trap, format!("the host could not load the plugin: {e}")))
                    }
                },
            };
            if self.warm.len() >= self.capacity {
                self.warm.pop_front();
            }
            self.warm.push_back(Warm { sha256: plugin.sha256.clone(), loaded, at: Instant::now() });
        }
        &mut self.warm.back_mut().expect("just pushed").loaded
    }
}

struct Runner<'a> {
    worker: &'a mut SandboxWorker,
    sources: &'a Sources,
}

impl HookRunner for Runner<'_> {
    fn defines(&mut self, plugin: &AttachedPlugin, hook: HookName) -> Result<bool, PluginError> {
        match self.worker.sandbox(plugin, self.sources) {
            Ok(sandbox) => Ok(sandbox.info().hooks.contains(&hook)),
            Err(e) => Err(e.clone()),
        }
    }

    fn run(&mut self, plugin: &AttachedPlugin, input: &HookInput) -> Result<HookOutput, PluginError> {
        match self.worker.sandbox(plugin, self.sources) {
            Ok(sandbox) => sandbox.call(input).result,
            Err(e) => Err(e.clone()),
        }
    }
}

impl WorkerPlugins for SandboxWorker {
    fn runner<'a>(&'a mut self, sources: &'a Sources) -> Box<dyn HookRunner + 'a> {
        Box::new(Runner { worker: self, sources })
    }

    fn check(&mut self, name: &str, source: &str) -> PluginCheck {
        let report = self.engine.check(name, source);
        let error = match (report.error, report.host_error) {
            (Some(e), _) => Some(e),
            (None, Some(h)) => {
                Some(PluginError::new(ErrorKind::Trap, format!("the host could not check the plugin: {h}")))
            }
            (None, None) => None,
        };
        PluginCheck { info: report.info, error, warnings: report.warnings, log: report.log, stats: report.stats }
    }
}
