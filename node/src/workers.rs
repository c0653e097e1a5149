//! Generation worker threads: all chunk generation and plugin execution
//! happens here, never on the HTTP or actor event loops.
//!
//! Each worker owns its plugin state (warm sandboxes), created on its own
//! thread by the [`PluginRuntime`]. Jobs wait in one queue per world
//! ([`FairQueue`]): a free worker takes the next job of the world that has
//! the fewest jobs running, then of the one served longest ago, so a world
//! whose plugin burns its whole budget on every call takes its share of the
//! workers, not all of them, and another world's job is never queued behind
//! a thousand of its jobs. A world whose jobs are heavy (a recent average of
//! [`HEAVY_JOB`] or more) never takes the last free worker while it has one
//! running: that worker stays free for another world's next job, which
//! would otherwise wait for a whole heavy call to end (calls are not
//! preempted). All the queues together hold at most `queue_depth` waiting
//! jobs; past that a job is refused as `busy`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use worldloom_cluster::ids::WorldId;
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

/// Which queue a job waits in: its world's, or (plugin checks, overviews,
/// which name no world) the queue of jobs without one.
type QueueKey = Option<WorldId>;

impl Job {
    fn key(&self) -> QueueKey {
        match self {
            Job::Generate { spec, .. } => Some(spec.world.clone()),
            Job::Check { .. } | Job::Overview { .. } => None,
        }
    }
}

/// A key whose jobs recently took this long on average is heavy: with one
/// of its jobs running it does not get the last free worker. An ordinary
/// chunk, plugins included, takes well under a millisecond to a few
/// milliseconds; a plugin burning its whole fuel budget takes about a
/// second.
pub const HEAVY_JOB: Duration = Duration::from_millis(25);

/// How many keys' recent job costs are remembered once they are idle.
const REMEMBERED_COSTS: usize = 1024;

/// One queue per key, served fairly: [`FairQueue::pop`] takes the next job
/// of the key with the fewest jobs running, ties going to the key served
/// longest ago (a key that just became active counts as never served). A
/// heavy key ([`HEAVY_JOB`]) with a job running is passed over for the last
/// of `workers` free workers. At most `depth` jobs wait in all the queues
/// together. A key's queue is forgotten when it has nothing waiting or
/// running; its recent job cost is remembered for the last
/// [`REMEMBERED_COSTS`] keys, so a world that pauses between bursts is
/// still known as heavy. The bookkeeping is bounded either way.
pub(crate) struct FairQueue<K, J> {
    queues: HashMap<K, KeyQueue<J>>,
    /// Each key's recent job cost (an exponential moving average, in
    /// microseconds) and when it was last updated (`clock`).
    costs: HashMap<K, (u64, u64)>,
    waiting: usize,
    running: usize,
    depth: usize,
    workers: usize,
    /// Counts pops, to order keys by when they were last served.
    clock: u64,
}

struct KeyQueue<J> {
    jobs: VecDeque<J>,
    running: usize,
    last_served: u64,
}

impl<K: std::hash::Hash + Eq + Clone, J> FairQueue<K, J> {
    /// Queues for `workers` workers, holding at most `depth` waiting jobs.
    pub(crate) fn new(depth: usize, workers: usize) -> Self {
        Self {
            queues: HashMap::new(),
            costs: HashMap::new(),
            waiting: 0,
            running: 0,
            depth: depth.max(1),
            workers: workers.max(1),
            clock: 0,
        }
    }

    fn heavy(&self, key: &K) -> bool {
        self.costs.get(key).is_some_and(|&(us, _)| us >= HEAVY_JOB.as_micros() as u64)
    }

    /// Queues `job` under `key`; gives it back if `depth` jobs are already waiting.
    pub(crate) fn push(&mut self, key: K, job: J) -> std::result::Result<(), J> {
        if self.waiting >= self.depth {
            return Err(job);
        }
        self.queues
            .entry(key)
            .or_insert_with(|| KeyQueue { jobs: VecDeque::new(), running: 0, last_served: 0 })
            .jobs
            .push_back(job);
        self.waiting += 1;
        Ok(())
    }

    /// The next job to run, fairly across keys; it counts as running under
    /// its key until [`FairQueue::finished`].
    pub(crate) fn pop(&mut self) -> Option<(K, J)> {
        // Taking the last free worker (with more than one): kept from heavy keys already running.
        let last_worker = self.workers > 1 && self.running + 1 >= self.workers;
        let key = self
            .queues
            .iter()
            .filter(|(k, q)| !q.jobs.is_empty() && (!last_worker || q.running == 0 || !self.heavy(k)))
            .min_by_key(|(_, q)| (q.running, q.last_served))
            .map(|(k, _)| k.clone())?;
        self.clock += 1;
        let q = self.queues.get_mut(&key).expect("chosen above");
        let job = q.jobs.pop_front().expect("not empty");
        q.running += 1;
        q.last_served = self.clock;
        self.waiting -= 1;
        self.running += 1;
        Some((key, job))
    }

    /// A job of `key` that [`FairQueue::pop`] gave out has finished, after `cost`.
    pub(crate) fn finished(&mut self, key: &K, cost: Duration) {
        let Some(q) = self.queues.get_mut(key) else { return };
        q.running = q.running.saturating_sub(1);
        self.running = self.running.saturating_sub(1);
        if q.running == 0 && q.jobs.is_empty() {
            self.queues.remove(key);
        }
        let us = u64::try_from(cost.as_micros()).unwrap_or(u64::MAX);
        let clock = self.clock;
        self.costs
            .entry(key.clone())
            .and_modify(|(avg, at)| {
                // A quarter of the newest job: a world's cost follows what it does now.
                *avg = *avg - *avg / 4 + us / 4;
                *at = clock;
            })
            .or_insert((us, clock));
        if self.costs.len() > REMEMBERED_COSTS {
            // Forget the half updated longest ago, keeping every key that has queued or running jobs.
            let mut stamps: Vec<u64> = self.costs.values().map(|&(_, at)| at).collect();
            stamps.sort_unstable();
            let cut = stamps[stamps.len() / 2];
            let queues = &self.queues;
            self.costs.retain(|k, &mut (_, at)| at > cut || queues.contains_key(k));
        }
    }

    /// Whether any job waits.
    fn has_waiting(&self) -> bool {
        self.waiting > 0
    }

    /// Jobs waiting in all the queues.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }
}

/// The queues and their workers' state, shared by the pool and its threads.
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

struct Queue {
    jobs: FairQueue<QueueKey, Job>,
    /// The pool was dropped: workers finish what waits, then stop.
    closed: bool,
}

impl Shared {
    /// The next job for a worker; `None` once the pool is gone and nothing waits.
    fn next(&self) -> Option<(QueueKey, Job)> {
        let mut q = self.queue.lock().ok()?;
        loop {
            if let Some(job) = q.jobs.pop() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self.ready.wait(q).ok()?;
        }
    }

    fn finished(&self, key: &QueueKey, cost: Duration) {
        if let Ok(mut q) = self.queue.lock() {
            q.jobs.finished(key, cost);
            // A worker left free for another world may now take a job.
            if q.jobs.has_waiting() {
                self.ready.notify_one();
            }
        }
    }
}

/// A fixed set of worker threads fed by bounded per-world queues.
pub struct WorkerPool {
    shared: Arc<Shared>,
    threads: usize,
    metrics: Arc<NodeMetrics>,
}

/// Jobs that may wait for a worker before new ones are refused as overload
/// (the default of the `node.queue_depth` setting).
pub const QUEUE_DEPTH: usize = 4096;

impl WorkerPool {
    /// `threads` generation threads fed by queues of at most `queue_depth` waiting jobs in all.
    pub fn start(
        threads: usize,
        queue_depth: usize,
        runtime: Arc<dyn PluginRuntime>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: FairQueue::new(queue_depth, threads), closed: false }),
            ready: Condvar::new(),
        });
        for i in 0..threads {
            let shared = shared.clone();
            let runtime = runtime.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("worldloom-gen-{i}"))
                .spawn(move || work(&shared, runtime, &metrics))
                .expect("spawning a worker thread");
        }
        Self { shared, threads, metrics }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn submit(&self, job: Job) -> Result<()> {
        let mut q = self.shared.queue.lock().map_err(|_| Error::internal("the node's workers have stopped"))?;
        if q.closed {
            return Err(Error::internal("the node's workers have stopped"));
        }
        q.jobs.push(job.key(), job).map_err(|_| Error::busy())?;
        self.metrics.queue_depth.inc();
        drop(q);
        self.shared.ready.notify_one();
        Ok(())
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

impl Drop for WorkerPool {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.closed = true;
        }
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared, runtime: Arc<dyn PluginRuntime>, metrics: &NodeMetrics) {
    let mut plugins = runtime.worker();
    while let Some((key, job)) = shared.next() {
        metrics.queue_depth.dec();
        let started = std::time::Instant::now();
        run(job, &mut plugins, &*runtime, metrics);
        shared.finished(&key, started.elapsed());
    }
}

fn run(job: Job, plugins: &mut Box<dyn WorkerPlugins>, runtime: &dyn PluginRuntime, metrics: &NodeMetrics) {
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
                *plugins = runtime.worker();
            }
            let _ = reply.send(out.map_err(|_| panicked("chunk generation")));
        }
        Job::Check { name, source, limits, reply } => {
            let out = catch_unwind(AssertUnwindSafe(|| plugins.check(&name, &source, &limits)));
            if out.is_err() {
                *plugins = runtime.worker();
            }
            let _ = reply.send(out.map_err(|_| panicked("plugin check")));
        }
        Job::Overview { seed, params, area, reply } => {
            let out = catch_unwind(|| worldloom_worldgen::overview::overview(seed, &params, area));
            let _ = reply.send(out.map_err(|_| panicked("overview sampling")));
        }
    }
}

#[cfg(test)]
mod tests {
    use worldloom_plugin_abi::RuntimeKind;
    use worldloom_worldgen::Params;

    use super::*;

    #[test]
    fn a_world_with_a_thousand_waiting_jobs_does_not_delay_another_worlds_one() {
        let mut q = FairQueue::new(4096, 64);
        for i in 0..1000 {
            q.push("a", i).unwrap();
        }
        // A worker takes one of a's jobs; then b's single job arrives.
        assert_eq!(q.pop(), Some(("a", 0)));
        q.push("b", 0).unwrap();
        // The next free worker takes b's job (a has one running, b none)...
        assert_eq!(q.pop(), Some(("b", 0)));
        // ...and with both running one, the worlds alternate as workers free up.
        q.push("b", 1).unwrap();
        q.finished(&"a", Duration::ZERO);
        assert_eq!(q.pop(), Some(("a", 1)));
        q.finished(&"b", Duration::ZERO);
        assert_eq!(q.pop(), Some(("b", 1)));
        // Nothing else of b waits: a gets every free worker.
        q.finished(&"b", Duration::ZERO);
        assert_eq!(q.pop(), Some(("a", 2)));
        assert_eq!(q.pop(), Some(("a", 3)));
        assert_eq!(q.waiting(), 996);
    }

    #[test]
    fn between_idle_worlds_the_one_served_longest_ago_goes_first() {
        let mut q = FairQueue::new(16, 64);
        for k in ["a", "b", "c"] {
            q.push(k, 0).unwrap();
            q.push(k, 1).unwrap();
        }
        let mut order = Vec::new();
        while let Some((k, _)) = q.pop() {
            q.finished(&k, Duration::ZERO);
            order.push(k);
        }
        // Each pop serves the world that waited longest since its last turn.
        assert_eq!(order[3..], order[..3], "round robin: {order:?}");
        let mut first = order[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["a", "b", "c"]);
        assert!(q.queues.is_empty(), "idle worlds are forgotten");
    }

    #[test]
    fn a_heavy_world_running_a_job_leaves_the_last_free_worker_to_others() {
        let mut q = FairQueue::new(64, 2);
        for i in 0..10 {
            q.push("heavy", i).unwrap();
        }
        // Not yet known as heavy: it takes both workers.
        assert_eq!(q.pop(), Some(("heavy", 0)));
        assert_eq!(q.pop(), Some(("heavy", 1)));
        q.finished(&"heavy", Duration::from_secs(1));
        // Now heavy with one job running: the free worker stays free...
        assert_eq!(q.pop(), None, "the last free worker is kept from a heavy world");
        // ...for another world's job, which takes it at once.
        q.push("light", 0).unwrap();
        assert_eq!(q.pop(), Some(("light", 0)));
        q.finished(&"light", Duration::from_micros(300));
        q.finished(&"heavy", Duration::from_secs(1));
        // With nothing of it running, a heavy world gets a worker, but not the second.
        assert_eq!(q.pop(), Some(("heavy", 2)));
        assert_eq!(q.pop(), None);
        // Another world's jobs take the free worker, one after another.
        q.push("light", 1).unwrap();
        q.push("light", 2).unwrap();
        assert_eq!(q.pop(), Some(("light", 1)));
        q.finished(&"light", Duration::from_micros(300));
        assert_eq!(q.pop(), Some(("light", 2)));
        // A light world with a job running still takes the last worker.
        let mut q = FairQueue::new(64, 2);
        for i in 0..3 {
            q.push("light", i).unwrap();
        }
        assert_eq!(q.pop(), Some(("light", 0)));
        q.finished(&"light", Duration::from_micros(300));
        assert_eq!(q.pop(), Some(("light", 1)));
        assert_eq!(q.pop(), Some(("light", 2)));
        // A world's cost follows what it does now: a quarter of each new job.
        let mut q = FairQueue::new(64, 2);
        for i in 0..21 {
            q.push("w", i).unwrap();
            q.pop().unwrap();
            q.finished(&"w", if i == 0 { Duration::from_secs(1) } else { Duration::ZERO });
            if i == 0 {
                assert!(q.heavy(&"w"));
            }
        }
        assert!(!q.heavy(&"w"), "a world whose jobs got cheap is no longer heavy");
        // A single worker is never kept free.
        let mut one = FairQueue::new(8, 1);
        one.push("heavy", 0).unwrap();
        one.push("heavy", 1).unwrap();
        assert_eq!(one.pop(), Some(("heavy", 0)));
        one.finished(&"heavy", Duration::from_secs(1));
        assert_eq!(one.pop(), Some(("heavy", 1)));
    }

    #[test]
    fn job_costs_are_remembered_for_a_bounded_number_of_idle_worlds() {
        let mut q = FairQueue::new(8, 2);
        for k in 0..(3 * REMEMBERED_COSTS as u32) {
            q.push(k, ()).unwrap();
            q.pop().unwrap();
            q.finished(&k, Duration::from_secs(1));
        }
        assert!(q.costs.len() <= REMEMBERED_COSTS, "{} costs kept", q.costs.len());
        assert!(q.heavy(&(3 * REMEMBERED_COSTS as u32 - 1)), "the latest are kept");
        assert!(q.queues.is_empty());
    }

    #[test]
    fn the_queues_together_hold_at_most_depth_jobs() {
        let mut q = FairQueue::new(3, 64);
        q.push("a", 0).unwrap();
        q.push("b", 0).unwrap();
        q.push("c", 0).unwrap();
        assert_eq!(q.push("d", 0), Err(0), "a fourth waiting job of any world is refused");
        assert_eq!(q.push("a", 1), Err(1));
        // A running job does not count as waiting.
        let (k, _) = q.pop().unwrap();
        q.push("d", 0).unwrap();
        q.finished(&k, Duration::ZERO);
        assert_eq!(q.waiting(), 3);
    }

    /// Plugins that wait at a gate, then record which plugin ran and fail
    /// (as a plugin out of fuel would).
    struct Gated {
        open: Arc<(Mutex<bool>, Condvar)>,
        log: Arc<Mutex<Vec<String>>>,
    }

    struct GatedWorker(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<String>>>);

    impl PluginRuntime for Gated {
        fn worker(&self) -> Box<dyn WorkerPlugins> {
            Box::new(GatedWorker(self.open.clone(), self.log.clone()))
        }
    }

    impl WorkerPlugins for GatedWorker {
        fn runner<'a>(&'a mut self, _: &'a Sources, _: &'a Limits) -> Box<dyn HookRunner + 'a> {
            Box::new(GatedRunner(self))
        }
        fn check(&mut self, _: &str, _: &str, _: &Limits) -> PluginCheck {
            unreachable!("no checks in these tests")
        }
    }

    struct GatedRunner<'a>(&'a GatedWorker);

    impl HookRunner for GatedRunner<'_> {
        fn defines(&mut self, _: &AttachedPlugin, hook: HookName) -> std::result::Result<bool, PluginError> {
            Ok(hook == HookName::Terrain)
        }
        fn run(&mut self, p: &AttachedPlugin, _: &HookInput) -> std::result::Result<HookOutput, PluginError> {
            let (open, cv) = &*self.0.0;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.0.1.lock().unwrap().push(p.name.clone());
            Err(PluginError::new(ErrorKind::FuelExhausted, "burnt its budget"))
        }
    }

    fn spec(plugin: &str) -> Arc<GenSpec> {
        Arc::new(GenSpec {
            world: WorldId::random(),
            revision: 0,
            seed: 5,
            params: Params::default(),
            plugins: vec![AttachedPlugin {
                name: plugin.into(),
                version: "1.0.0".into(),
                sha256: "0".repeat(64),
                runtime: RuntimeKind::Python,
                params: Default::default(),
            }],
            limits: Limits::default(),
        })
    }

    /// The pool end to end: one generation thread busy with a world that has
    /// 1,000 more jobs waiting; another world's single job runs next.
    #[test]
    fn the_pool_runs_another_worlds_job_before_a_busy_worlds_backlog() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let runtime = Arc::new(Gated { open: open.clone(), log: log.clone() });
        let metrics = worldloom_cluster::metrics::Metrics::new(true, false).node();
        let pool = WorkerPool::start(1, QUEUE_DEPTH, runtime, metrics.clone());
        let (noisy, quiet) = (spec("noisy"), spec("quiet"));
        let mut replies = Vec::new();
        let mut submit = |spec: &Arc<GenSpec>, cx: i32| {
            let (reply, rx) = oneshot::channel();
            let job =
                Job::Generate { spec: spec.clone(), coord: ChunkCoord::new(cx, 0), sources: Default::default(), reply };
            pool.submit(job).expect("room in the queue");
            replies.push(rx);
        };
        for cx in 0..1001 {
            submit(&noisy, cx);
        }
        // The only worker has taken one of noisy's jobs (it waits at the gate).
        while metrics.queue_depth.get() != 1000 {
            std::thread::yield_now();
        }
        submit(&quiet, 0);
        {
            let (o, cv) = &*open;
            *o.lock().unwrap() = true;
            cv.notify_all();
        }
        for rx in replies {
            let (_, bytes) = rx.blocking_recv().expect("a reply").expect("a chunk");
            assert!(!bytes.is_empty());
        }
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1002);
        let at = log.iter().position(|p| p == "quiet").unwrap();
        assert_eq!(at, 1, "the quiet world's job ran after {at} of the noisy world's 1,001");
        assert_eq!(metrics.queue_depth.get(), 0);
    }
}
