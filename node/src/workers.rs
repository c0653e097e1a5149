//! Generation worker threads: all chunk generation and plugin execution
//! happens here, never on the HTTP or actor event loops.
//!
//! Each worker owns its plugin state (warm sandboxes), created on its own
//! thread by the [`PluginRuntime`]; jobs come from one shared queue.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;
use worldloom_cluster::metrics::{FailureLabels, HookLabels, NodeMetrics};
use worldloom_cluster::model::{AttachedPlugin, ChunkRecord, GenSpec};
use worldloom_cluster::protocol::PluginCheck;
use worldloom_cluster::{Error, Result};
use worldloom_plugin_abi::{ErrorKind, HookInput, HookName, HookOutput, Limits, PluginError};
use worldloom_worldgen::{ChunkCoord, Overview, OverviewArea, Params};

use crate::pipeline::{self, HookRunner};

/// Plugin sources a job may need, by lowercase hex SHA-256.
pub type Sources = BTreeMap<String, Arc<str>>;

/// A plugin runtime as the node sees it: per-worker state made on the worker thread.
pub trait PluginRuntime: Send + Sync {
    fn worker(&self) -> Box<dyn WorkerPlugins>;
}

/// One worker's plugin state.
pub trait WorkerPlugins {
    /// A hook runner for one job, loading plugins from `sources` as needed,
    /// every call under `limits` (the world's).
    fn runner<'a>(&'a mut self, sources: &'a Sources, limits: &'a Limits) -> Box<dyn HookRunner + 'a>;
    /// Loads a plugin only to report what it defines.
    fn check(&mut self, name: &str, source: &str, limits: &Limits) -> PluginCheck;
}

/// The runtime of a node started without plugin support.
pub struct NoRuntime;

struct NoWorkerPlugins;

impl PluginRuntime for NoRuntime {
    fn worker(&self) -> Box<dyn WorkerPlugins> {
        Box::new(NoWorkerPlugins)
    }
}

impl WorkerPlugins for NoWorkerPlugins {
    fn runner<'a>(&'a mut self, _: &'a Sources, _: &'a Limits) -> Box<dyn HookRunner + 'a> {
        Box::new(pipeline::NoPlugins)
    }
    fn check(&mut self, _: &str, _: &str, _: &Limits) -> PluginCheck {
        PluginCheck {
            info: None,
            error: Some(PluginError::new(ErrorKind::Trap, "this node has no plugin runtime")),
            warnings: Vec::new(),
            log: String::new(),
            stats: Default::default(),
        }
    }
}

enum Job {
    Generate {
        spec: Arc<GenSpec>,
        coord: ChunkCoord,
        sources: Arc<Sources>,
        reply: oneshot::Sender<Result<(bool, Bytes)>>,
    },
    Check {
        name: String,
        source: String,
        limits: Limits,
        reply: oneshot::Sender<Result<PluginCheck>>,
    },
    Overview {
        seed: u64,
        params: Params,
        area: OverviewArea,
        reply: oneshot::Sender<Result<Overview>>,
    },
}

/// A fixed set of worker threads fed by a bounded queue.
pub struct WorkerPool {
    queue: SyncSender<Job>,
    threads: usize,
    metrics: Arc<NodeMetrics>,
}

/// Jobs that may wait for a worker before new ones are refused as overload
/// (the default of the `node.queue_depth` setting).
pub const QUEUE_DEPTH: usize = 4096;

impl WorkerPool {
    /// `threads` generation threads fed by a queue of at most `queue_depth` waiting jobs.
    pub fn start(
        threads: usize,
        queue_depth: usize,
        runtime: Arc<dyn PluginRuntime>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let threads = threads.max(1);
        let (queue, rx) = sync_channel::<Job>(queue_depth.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let runtime = runtime.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("worldloom-gen-{i}"))
                .spawn(move || work(rx, runtime, &metrics))
                .expect("spawning a worker thread");
        }
        Self { queue, threads, metrics }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn submit(&self, job: Job) -> Result<()> {
        self.metrics.queue_depth.inc();
        self.queue.try_send(job).map_err(|e| {
            self.metrics.queue_depth.dec();
            match e {
                TrySendError::Full(_) => Error::busy(),
                TrySendError::Disconnected(_) => Error::internal("the node's workers have stopped"),
            }
        })
    }

    /// Generates one chunk on a worker and encodes it there (the event loops
    /// only move bytes): whether it is deterministic
    /// ([`ChunkRecord::is_deterministic`]) and its envelope.
    pub async fn generate(
        &self,
        spec: Arc<GenSpec>,
        coord: ChunkCoord,
        sources: Arc<Sources>,
    ) -> Result<(bool, Bytes)> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Generate { spec, coord, sources, reply })?;
        rx.await.map_err(|_| Error::internal("a generation worker stopped mid-job"))?
    }

    /// Samples a core-only overview tile on a worker.
    pub async fn overview(&self, seed: u64, params: Params, area: OverviewArea) -> Result<Overview> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Overview { seed, params, area, reply })?;
        rx.await.map_err(|_| Error::internal("a generation worker stopped mid-job"))?
    }

    /// Checks a plugin on a worker.
    pub async fn check(&self, name: String, source: String, limits: Limits) -> Result<PluginCheck> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Check { name, source, limits, reply })?;
        rx.await.map_err(|_| Error::internal("a generation worker stopped mid-job"))?
    }
}

fn panicked(what: &str) -> Error {
    Error::internal(format!("{what} panicked; this is a bug in Worldloom, not in your request"))
}

/// Counts the hook calls a runner makes.
struct Counted<'a> {
    inner: Box<dyn HookRunner + 'a>,
    metrics: &'a NodeMetrics,
}

impl HookRunner for Counted<'_> {
    fn defines(&mut self, plugin: &AttachedPlugin, hook: HookName) -> std::result::Result<bool, PluginError> {
        self.inner.defines(plugin, hook)
    }
    fn run(&mut self, plugin: &AttachedPlugin, input: &HookInput) -> std::result::Result<HookOutput, PluginError> {
        self.metrics.plugin_calls.get_or_create(&HookLabels { hook: input.hook.as_str().into() }).inc();
        self.inner.run(plugin, input)
    }
}

fn work(rx: Arc<Mutex<Receiver<Job>>>, runtime: Arc<dyn PluginRuntime>, metrics: &NodeMetrics) {
    let mut plugins = runtime.worker();
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        metrics.queue_depth.dec();
        match job {
            Job::Generate { spec, coord, sources, reply } => {
                let started = std::time::Instant::now();
                let out = catch_unwind(AssertUnwindSafe(|| {
                    let mut runner = Counted { inner: plugins.runner(&sources, &spec.limits), metrics };
                    pipeline::generate(&spec, coord, &mut runner)
                }));
                metrics.generation_seconds.observe(started.elapsed().as_secs_f64());
                if let Ok(record) = &out {
                    for f in &record.plugin_failures {
                        let labels = FailureLabels { hook: f.hook.as_str().into(), kind: f.kind.as_str().into() };
                        metrics.plugin_failures.get_or_create(&labels).inc();
                    }
                }
                let out = out.map(|record: ChunkRecord| {
                    (record.is_deterministic(), Bytes::from(worldloom_cluster::wire::encode(&record)))
                });
                if out.is_err() {
                    // The worker's plugin state may be inconsistent after a panic: start afresh.
                    plugins = runtime.worker();
                }
                let _ = reply.send(out.map_err(|_| panicked("chunk generation")));
            }
            Job::Check { name, source, limits, reply } => {
                let out = catch_unwind(AssertUnwindSafe(|| plugins.check(&name, &source, &limits)));
                if out.is_err() {
                    plugins = runtime.worker();
                }
                let _ = reply.send(out.map_err(|_| panicked("plugin check")));
            }
            Job::Overview { seed, params, area, reply } => {
                let out = catch_unwind(|| worldloom_worldgen::overview::overview(seed, &params, area));
                let _ = reply.send(out.map_err(|_| panicked("overview sampling")));
            }
        }
    }
}
