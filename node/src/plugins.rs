//! Plugins on a node: sandbox worker processes behind the pipeline's
//! [`HookRunner`].
//!
//! Each generation thread owns one sandbox worker process (a
//! [`worldloom_sandbox::Worker`]), which keeps its own warm sandboxes (one
//! per plugin source and limits, least recently used evicted within the
//! worker's memory budget). A plugin's calls on one thread never wait for
//! another, a worker that hangs is killed and replaced without disturbing
//! the others, and every call starts from the plugin's post-load snapshot,
//! so nothing a call does is visible to the next one or to another world.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use worldloom_cluster::model::AttachedPlugin;
use worldloom_cluster::protocol::PluginCheck;
use worldloom_plugin_abi::{ErrorKind, HookInput, HookName, HookOutput, Limits, PluginError, PluginInfo};
use worldloom_sandbox::supervisor::{allowed_cpus, pin_process};
use worldloom_sandbox::{PluginRef, Supervisor, Worker};

use crate::pipeline::HookRunner;
use crate::workers::{PluginRuntime, Sources, WorkerPlugins};

/// Load outcomes a thread remembers (what `defines` needs without asking
/// its worker every time).
const REMEMBERED_LOADS: usize = 64;

/// The Python runtime for a node's workers: one supervisor, one worker
/// process per generation thread.
pub struct SandboxRuntime {
    supervisor: Supervisor,
    /// CPUs to pin generation threads and their workers to, round-robin;
    /// empty: no pinning.
    cpus: Vec<usize>,
    next_cpu: AtomicUsize,
}

impl SandboxRuntime {
    /// The runtime for a node with `workers` generation threads. They are
    /// pinned (each with its worker process) only when there are at least as
    /// many of them as CPUs this process may use: the node then owns those
    /// CPUs. Fewer threads are left to the scheduler, so that several nodes
    /// on one machine (pods without a CPU set of their own) do not all pin
    /// their first thread to the same CPU.
    pub fn new(supervisor: Supervisor, workers: usize) -> Self {
        let cpus = allowed_cpus();
        let cpus = if workers >= cpus.len() { cpus } else { Vec::new() };
        Self { supervisor, cpus, next_cpu: AtomicUsize::new(0) }
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }
}

impl PluginRuntime for SandboxRuntime {
    /// Called on the generation thread that will use the worker: the thread
    /// and its worker process share one CPU, so handing a call over is a
    /// local context switch.
    fn worker(&self) -> Box<dyn WorkerPlugins> {
        let mut worker = self.supervisor.worker();
        if !self.cpus.is_empty() {
            let cpu = self.cpus[self.next_cpu.fetch_add(1, Ordering::Relaxed) % self.cpus.len()];
            pin_process(0, cpu);
            worker.pin(cpu);
        }
        Box::new(SandboxWorker { worker, loads: VecDeque::new() })
    }
}

/// How long a transient load failure (a wall-clock timeout, a crashed
/// worker, a host error) is remembered before loading again. Deterministic
/// failures (syntax, exceptions, fuel, memory) are remembered for good.
pub const RETRY_TRANSIENT_LOAD_AFTER: Duration = Duration::from_secs(30);

struct Load {
    sha256: String,
    limits: Limits,
    result: Result<PluginInfo, PluginError>,
    at: Instant,
}

impl Load {
    fn expired(&self) -> bool {
        matches!(&self.result, Err(e) if e.transient) && self.at.elapsed() > RETRY_TRANSIENT_LOAD_AFTER
    }
}

struct SandboxWorker {
    worker: Worker,
    /// Most recently used last.
    loads: VecDeque<Load>,
}

fn plugin_ref<'a>(plugin: &'a AttachedPlugin, source: &'a str) -> PluginRef<'a> {
    PluginRef { name: &plugin.name, sha256: &plugin.sha256, source }
}

impl SandboxWorker {
    fn info(&mut self, plugin: &AttachedPlugin, sources: &Sources, limits: &Limits) -> Result<PluginInfo, PluginError> {
        self.loads.retain(|l| !l.expired());
        if let Some(i) = self.loads.iter().position(|l| l.sha256 == plugin.sha256 && l.limits == *limits) {
            let l = self.loads.remove(i).expect("index is in range");
            let r = l.result.clone();
            self.loads.push_back(l);
            return r;
        }
        let result = match sources.get(&plugin.sha256) {
            None => Err(PluginError::transient(ErrorKind::Trap, "the plugin's source was not available to this node")),
            Some(source) => self.worker.load(plugin_ref(plugin, source), limits).result.map(|(info, _)| info),
        };
        if self.loads.len() >= REMEMBERED_LOADS {
            self.loads.pop_front();
        }
        let at = Instant::now();
        self.loads.push_back(Load { sha256: plugin.sha256.clone(), limits: *limits, result: result.clone(), at });
        result
    }
}

struct Runner<'a> {
    worker: &'a mut SandboxWorker,
    sources: &'a Sources,
    limits: &'a Limits,
}

impl HookRunner for Runner<'_> {
    fn defines(&mut self, plugin: &AttachedPlugin, hook: HookName) -> Result<bool, PluginError> {
        self.worker.info(plugin, self.sources, self.limits).map(|info| info.hooks.contains(&hook))
    }

    fn run(&mut self, plugin: &AttachedPlugin, input: &HookInput) -> Result<HookOutput, PluginError> {
        let Some(source) = self.sources.get(&plugin.sha256) else {
            return Err(PluginError::transient(ErrorKind::Trap, "the plugin's source was not available to this node"));
        };
        self.worker.worker.call(plugin_ref(plugin, source), self.limits, input).result
    }
}

impl WorkerPlugins for SandboxWorker {
    fn runner<'a>(&'a mut self, sources: &'a Sources, limits: &'a Limits) -> Box<dyn HookRunner + 'a> {
        Box::new(Runner { worker: self, sources, limits })
    }

    fn check(&mut self, name: &str, source: &str, limits: &Limits) -> PluginCheck {
        let report = self.worker.check(name, source, limits);
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
