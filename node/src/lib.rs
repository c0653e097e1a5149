//! A generation node: generates, caches and serves chunks for the regions a
//! coordinator sends it, running plugins in the sandbox on worker threads.
//!
//! The node's whole interface is [`NodeRequest`] messages
//! ([`Node::handle`]): a coordinator in the same process calls it through
//! [`NodeService`], one in another process sends the same messages to
//! [`server`]'s endpoint.

pub mod cache;
pub mod pipeline;
pub mod plugins;
pub mod regions;
pub mod server;
pub mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use worldloom_cluster::config::NodeSettings;
use worldloom_cluster::metrics::NodeMetrics;
use worldloom_cluster::model::{ChunkRecord, GenSpec};
use worldloom_cluster::protocol::{ChunkBytes, NodeRequest, NodeResponse, NodeService, PluginCheck};
use worldloom_cluster::storage::{Key, ObjectStore, source_sha256};
use worldloom_cluster::{Error, Result, wire};
use worldloom_plugin_abi::Limits;
use worldloom_worldgen::{ChunkCoord, Overview, OverviewArea};

pub use workers::{NoRuntime, PluginRuntime, Sources, WorkerPlugins};

type Pending = Shared<BoxFuture<'static, Result<ChunkBytes>>>;

/// The node's state, shared by its actor and its tasks.
pub struct Node {
    store: Arc<dyn ObjectStore>,
    pool: workers::WorkerPool,
    /// Plugin sources already fetched and verified, by SHA-256.
    sources: Mutex<HashMap<String, Arc<str>>>,
    /// Chunks being generated, so concurrent requests for one chunk generate it once.
    inflight: Mutex<HashMap<Key, Pending>>,
    /// Recently sampled overview tiles.
    overviews: Mutex<OverviewCache>,
    /// Hot chunks that are stored or being stored, by byte budget.
    chunks: Mutex<cache::ChunkCache>,
    /// Write behind: chunks answered but not yet written, consulted like the
    /// cache (an entry the cache evicted is still found here until written).
    writing: Mutex<HashMap<Key, Bytes>>,
    /// One permit per write that may be pending; `None`: write through (the
    /// answer waits for the write).
    write_slots: Option<(Arc<tokio::sync::Semaphore>, u32)>,
    /// One permit per write running at once behind the answers (the
    /// storage's [`ObjectStore::write_concurrency`]); the pending writes wait
    /// for one in the order they were answered.
    write_lanes: Arc<tokio::sync::Semaphore>,
    /// Where writes behind run: a thread of the node's own, so they outlive
    /// the HTTP server's event loops (whose tasks end with them at a stop).
    writer: Option<Writer>,
    /// Which chunks storage holds, by region: a fresh chunk is generated
    /// without a read that would miss.
    stored_regions: regions::StoredRegions,
    metrics: Arc<NodeMetrics>,
}

/// The write-behind thread's runtime; the thread ends when this is dropped.
struct Writer {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Writer {
    fn start() -> Writer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("worldloom-store".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                let _ = tx.send(rt.handle().clone());
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .expect("spawning the storage thread");
        Writer { handle: rx.recv().expect("the storage thread starts"), _stop: stop }
    }
}

/// What identifies an overview tile: seed, parameters (their exact debug
/// form: every field, bit for bit in its shortest round-trip text) and area.
type OverviewKey = (u64, String, i64, i64, u32, u32);

/// Overview tiles a node keeps (each at most 256 x 256 samples, 384 KiB).
const OVERVIEW_CACHE: usize = 64;

/// A small least-recently-used cache of overview tiles.
#[derive(Default)]
struct OverviewCache {
    tiles: std::collections::VecDeque<(OverviewKey, Arc<Overview>)>,
}

impl OverviewCache {
    fn get(&mut self, key: &OverviewKey) -> Option<Arc<Overview>> {
        let at = self.tiles.iter().position(|(k, _)| k == key)?;
        let entry = self.tiles.remove(at)?;
        let tile = entry.1.clone();
        self.tiles.push_front(entry);
        Some(tile)
    }

    fn put(&mut self, key: OverviewKey, tile: Arc<Overview>) {
        if self.get(&key).is_none() {
            self.tiles.push_front((key, tile));
            self.tiles.truncate(OVERVIEW_CACHE);
        }
    }
}

impl Node {
    pub fn start(
        store: Arc<dyn ObjectStore>,
        runtime: Arc<dyn PluginRuntime>,
        workers: usize,
        metrics: Arc<NodeMetrics>,
    ) -> Arc<Node> {
        Self::start_with_queue(store, runtime, workers, workers::QUEUE_DEPTH, metrics)
    }

    /// Like [`Node::start`], with at most `queue_depth` jobs waiting for a
    /// generation thread (the `node.queue_depth` setting); past that requests
    /// are refused as `busy`.
    pub fn start_with_queue(
        store: Arc<dyn ObjectStore>,
        runtime: Arc<dyn PluginRuntime>,
        workers: usize,
        queue_depth: usize,
        metrics: Arc<NodeMetrics>,
    ) -> Arc<Node> {
        let settings = NodeSettings { queue_depth, ..NodeSettings::default() };
        Self::start_with(store, runtime, workers, &settings, metrics)
    }

    /// A node with the `[node]` settings: its generation queue, its chunk
    /// cache's byte budget, and how many writes may be pending behind the
    /// answers (0: every answer waits for its write).
    pub fn start_with(
        store: Arc<dyn ObjectStore>,
        runtime: Arc<dyn PluginRuntime>,
        workers: usize,
        settings: &NodeSettings,
        metrics: Arc<NodeMetrics>,
    ) -> Arc<Node> {
        let budget = usize::try_from(settings.chunk_cache_bytes).unwrap_or(usize::MAX);
        let slots = u32::try_from(settings.pending_writes)
            .unwrap_or(u32::MAX >> 3)
            .min(tokio::sync::Semaphore::MAX_PERMITS as u32);
        let lanes = store.write_concurrency().clamp(1, 256);
        Arc::new(Node {
            store,
            pool: workers::WorkerPool::start(workers, settings.queue_depth, runtime, metrics.clone()),
            sources: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            overviews: Mutex::new(OverviewCache::default()),
            chunks: Mutex::new(cache::ChunkCache::new(budget)),
            writing: Mutex::new(HashMap::new()),
            write_slots: (slots > 0).then(|| (Arc::new(tokio::sync::Semaphore::new(slots as usize)), slots)),
            write_lanes: Arc::new(tokio::sync::Semaphore::new(lanes)),
            writer: (slots > 0).then(Writer::start),
            stored_regions: regions::StoredRegions::default(),
            metrics,
        })
    }

    /// Writes still pending behind answers already given.
    pub fn pending_writes(&self) -> usize {
        self.writing.lock().expect("writing lock").len()
    }

    /// Waits until every write pending when it is called (and any started
    /// meanwhile) has finished: after it, every chunk this node answered as
    /// stored is in storage (or its write failed and was logged).
    pub async fn flush(&self) {
        if let Some((slots, n)) = &self.write_slots {
            let _all = slots.acquire_many(*n).await;
        }
    }

    /// The chunk at `key` if this node has it in memory: cached, or answered
    /// and still being written.
    fn remembered(&self, key: &Key) -> Option<Bytes> {
        if let Some(b) = self.chunks.lock().expect("cache lock").get(key) {
            return Some(b);
        }
        self.writing.lock().expect("writing lock").get(key).cloned()
    }

    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    pub fn workers(&self) -> usize {
        self.pool.threads()
    }

    /// The stored chunk at `key`, if there is one that is what it claims to be.
    async fn stored(&self, key: &Key, spec: &GenSpec, coord: ChunkCoord) -> Result<Option<Bytes>> {
        let Some(bytes) = self.store.get(key).await? else { return Ok(None) };
        match wire::decode::<ChunkRecord>(&bytes) {
            Ok(record)
                if record.chunk.coord == coord && record.revision == spec.revision && record.world == spec.world =>
            {
                Ok(Some(bytes))
            }
            // A stored object that does not decode is regenerated, never served.
            Ok(_) | Err(_) => {
                tracing::warn!(%key, "stored chunk is unreadable; regenerating");
                Ok(None)
            }
        }
    }

    /// The chunk of `spec`'s world revision: from this node's memory (the
    /// chunk cache, or a write still pending), else from storage if it was
    /// generated before (by any node), else generated on a worker and
    /// stored - create-if-absent, so when two nodes generate one chunk, one
    /// copy wins and both serve it. A chunk whose plugin failures are not a
    /// function of its inputs (a wall-clock timeout, a crashed sandbox) is
    /// served but neither stored nor cached.
    pub async fn chunk(self: &Arc<Self>, spec: Arc<GenSpec>, coord: ChunkCoord) -> Result<ChunkBytes> {
        let key = Key::chunk(&spec.world, spec.revision, coord);
        if let Some(envelope) = self.remembered(&key) {
            self.metrics.chunks_from_storage.inc();
            return Ok(ChunkBytes { envelope, generated: false, stored: true });
        }
        let may_be_stored = self.stored_regions.may_hold(self.store.as_ref(), &spec.world, spec.revision, coord).await;
        if may_be_stored && let Some(envelope) = self.stored(&key, &spec, coord).await? {
            self.metrics.chunks_from_storage.inc();
            self.chunks.lock().expect("cache lock").put(key, envelope.clone());
            return Ok(ChunkBytes { envelope, generated: false, stored: true });
        }
        let pending = {
            let mut inflight = self.inflight.lock().expect("inflight lock");
            if let Some(p) = inflight.get(&key) {
                p.clone()
            } else if let Some(envelope) = self.remembered(&key) {
                // Generated here while this request read storage.
                self.metrics.chunks_from_storage.inc();
                return Ok(ChunkBytes { envelope, generated: false, stored: true });
            } else {
                let node = self.clone();
                let task_key = key.clone();
                let handle = tokio::spawn(async move {
                    // Removed however the task ends, so a failure is never cached.
                    let _done = InflightGuard { node: node.clone(), key: task_key.clone() };
                    node.generate_and_store(spec, coord, &task_key).await
                });
                let fut: BoxFuture<'static, Result<ChunkBytes>> = Box::pin(
                    handle
                        .map(|joined| joined.unwrap_or_else(|_| Err(Error::internal("chunk generation task failed")))),
                );
                let shared = fut.shared();
                inflight.insert(key, shared.clone());
                shared
            }
        };
        pending.await
    }

    /// Generates a chunk and stores it. With write behind (the default), the
    /// answer does not wait for the write: the envelope is kept in memory
    /// (the cache and the pending writes, which every later request of this
    /// node consults first) and written create-if-absent in the background,
    /// at most `node.pending_writes` pending (past that the answer waits for
    /// a slot), of which up to the storage's `write_concurrency` run at
    /// once. If another node's copy won the create, the cache takes the
    /// winner's bytes, so every later answer everywhere is the winner's.
    /// Answers given before that carried this node's bytes: the same bytes,
    /// since only deterministic chunks are stored and generation is a pure
    /// function of the spec and coordinate (a transient chunk, the only kind
    /// whose copies may differ, is never stored nor cached). Nothing half
    /// written is ever read back: each write is atomic, and a write that
    /// never happened (a crash) only means the chunk is generated again.
    async fn generate_and_store(
        self: &Arc<Self>,
        spec: Arc<GenSpec>,
        coord: ChunkCoord,
        key: &Key,
    ) -> Result<ChunkBytes> {
        let sources = Arc::new(self.sources_for(&spec).await?);
        let (deterministic, bytes) = self.pool.generate(spec.clone(), coord, sources).await?;
        self.metrics.chunks_generated.inc();
        self.metrics.owns(&spec.world, coord.region());
        if !deterministic {
            self.metrics.chunks_transient.inc();
            // Another run may come out otherwise: not this chunk's truth.
            return Ok(ChunkBytes { envelope: bytes, generated: true, stored: false });
        }
        let Some((slots, _)) = &self.write_slots else {
            let (envelope, stored) = self.persist(key, bytes, &spec, coord).await?;
            return Ok(ChunkBytes { envelope, generated: true, stored });
        };
        let permit = slots.clone().acquire_owned().await.map_err(|_| Error::internal("the node is stopping"))?;
        self.note_writing(|w| {
            w.insert(key.clone(), bytes.clone());
        });
        self.chunks.lock().expect("cache lock").put(key.clone(), bytes.clone());
        let (node, key, envelope) = (self.clone(), key.clone(), bytes.clone());
        let writer = self.writer.as_ref().expect("a writer when writing behind").handle.clone();
        let lanes = self.write_lanes.clone();
        writer.spawn(async move {
            // At most the storage's worth of writes at once, in answer order
            // (the semaphore is fair); the rest stay pending, served from memory.
            let _lane = lanes.acquire_owned().await;
            let _ = node.persist(&key, bytes, &spec, coord).await;
            node.note_writing(|w| {
                w.remove(&key);
            });
            drop(permit);
        });
        Ok(ChunkBytes { envelope, generated: true, stored: true })
    }

    /// Changes the pending writes and keeps their gauge in step.
    fn note_writing(&self, change: impl FnOnce(&mut HashMap<Key, Bytes>)) {
        let mut writing = self.writing.lock().expect("writing lock");
        change(&mut writing);
        self.metrics.pending_writes.set(writing.len() as i64);
    }

    /// Writes a generated chunk create-if-absent and keeps in the cache the
    /// copy every node serves from now on: the envelope, and whether it is
    /// in storage.
    async fn persist(&self, key: &Key, bytes: Bytes, spec: &GenSpec, coord: ChunkCoord) -> Result<(Bytes, bool)> {
        let kept = match self.store.put_new(key, bytes.clone()).await {
            Ok(true) => (bytes, true),
            // Another node stored it first: serve the winner's bytes (identical
            // when generation is deterministic, and the same everywhere either way).
            Ok(false) => match self.stored(key, spec, coord).await? {
                Some(winner) => (winner, true),
                // What is there does not decode as this chunk (empty or cut
                // short by a power loss: chunks are not forced to disk):
                // replaced by this copy, the chunk's truth.
                None => match self.store.put(key, bytes.clone()).await {
                    Ok(()) => (bytes, true),
                    Err(e) => {
                        self.metrics.chunk_store_failures.inc();
                        tracing::warn!(%key, error = %e, "could not replace an unreadable stored chunk");
                        return Ok((bytes, false));
                    }
                },
            },
            Err(e) => {
                // Generation is deterministic: serve it now, generate it again next time.
                self.metrics.chunk_store_failures.inc();
                tracing::warn!(%key, error = %e, "could not store a generated chunk");
                self.chunks.lock().expect("cache lock").remove(key);
                return Ok((bytes, false));
            }
        };
        self.stored_regions.stored(&spec.world, spec.revision, coord);
        self.chunks.lock().expect("cache lock").put(key.clone(), kept.0.clone());
        Ok(kept)
    }

    /// Fetches (once) and verifies the sources of a spec's plugins.
    async fn sources_for(&self, spec: &GenSpec) -> Result<Sources> {
        let mut out = Sources::new();
        for p in &spec.plugins {
            let cached = self.sources.lock().expect("sources lock").get(&p.sha256).cloned();
            let source = match cached {
                Some(s) => s,
                None => {
                    let key = Key::plugin_source(&p.sha256)?;
                    let bytes = self.store.get(&key).await?.ok_or_else(|| {
                        Error::internal(format!(
                            "the source of plugin {}@{} is missing from storage",
                            p.name, p.version
                        ))
                    })?;
                    if source_sha256(&bytes) != p.sha256 {
                        return Err(Error::internal(format!(
                            "the stored source of plugin {}@{} does not match its SHA-256",
                            p.name, p.version
                        )));
                    }
                    let text: Arc<str> = String::from_utf8(bytes.to_vec())
                        .map_err(|_| Error::internal("a stored plugin source is not UTF-8"))?
                        .into();
                    self.sources.lock().expect("sources lock").insert(p.sha256.clone(), text.clone());
                    text
                }
            };
            out.insert(p.sha256.clone(), source);
        }
        Ok(out)
    }

    /// Answers one request of the node protocol (the same for the in-process
    /// actor and a remote coordinator).
    pub async fn handle(self: &Arc<Self>, request: NodeRequest) -> Result<NodeResponse> {
        let _counted = worldloom_cluster::metrics::InFlight::new(&self.metrics.inflight);
        match request {
            NodeRequest::Chunk { spec, coord } => self.chunk(spec, coord).await.map(NodeResponse::Chunk),
            NodeRequest::CheckPlugin { runtime: _, name, source, limits } => {
                self.check_plugin(name, source, limits).await.map(NodeResponse::PluginCheck)
            }
            NodeRequest::Overview { spec, area } => self.overview(&spec, area).await.map(NodeResponse::Overview),
        }
    }

    /// A core-only overview tile of `spec`'s world, sampled on a generation
    /// thread; the last few tiles are kept in memory (they are a pure
    /// function of seed, parameters and area).
    pub async fn overview(&self, spec: &GenSpec, area: OverviewArea) -> Result<Arc<Overview>> {
        area.validate().map_err(|e| Error::invalid(e.field, e.to_string()).with_code("invalid_overview"))?;
        let key = (spec.seed, format!("{:?}", spec.params), area.x, area.z, area.step, area.size);
        if let Some(tile) = self.overviews.lock().expect("overview lock").get(&key) {
            return Ok(tile);
        }
        let tile = Arc::new(self.pool.overview(spec.seed, spec.params, area).await?);
        self.overviews.lock().expect("overview lock").put(key, tile.clone());
        Ok(tile)
    }

    /// Loads a plugin in a sandbox on a worker and reports what it defines.
    pub async fn check_plugin(&self, name: String, source: String, limits: Limits) -> Result<PluginCheck> {
        self.pool.check(name, source, limits).await
    }
}

#[async_trait::async_trait]
impl NodeService for Node {
    async fn handle(self: Arc<Self>, request: NodeRequest) -> Result<NodeResponse> {
        Node::handle(&self, request).await
    }
}

/// Forgets an in-flight generation when its task ends, even by panic.
struct InflightGuard {
    node: Arc<Node>,
    key: Key,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.node.inflight.lock() {
            inflight.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use worldloom_cluster::ids::WorldId;
    use worldloom_cluster::metrics::Metrics;
    use worldloom_cluster::model::PluginFailure;
    use worldloom_cluster::storage::{self, Version};
    use worldloom_plugin_abi::{ErrorKind, HookName};

    use super::*;

    /// Real storage that counts reads and create-if-absent writes; with a
    /// `rival`, another node always stores the chunk first: just before this
    /// node's create-if-absent write, `rival` is written. With a `gate`, it
    /// claims `lanes` concurrent writes and every create-if-absent waits for
    /// a permit of the gate before writing (the test opens it), counting the
    /// creates running at once. `broken`: every create-if-absent fails.
    #[derive(Debug)]
    struct Spy {
        inner: Arc<dyn ObjectStore>,
        rival: Option<Bytes>,
        broken: bool,
        gets: AtomicUsize,
        lists: AtomicUsize,
        creates: AtomicUsize,
        gate: Option<(usize, Arc<tokio::sync::Semaphore>)>,
        active: AtomicUsize,
        max_active: AtomicUsize,
    }

    impl Spy {
        fn new(inner: Arc<dyn ObjectStore>, rival: Option<Bytes>) -> Self {
            Spy {
                inner,
                rival,
                broken: false,
                gets: AtomicUsize::new(0),
                lists: AtomicUsize::new(0),
                creates: AtomicUsize::new(0),
                gate: None,
                active: AtomicUsize::new(0),
                max_active: AtomicUsize::new(0),
            }
        }

        fn gated(inner: Arc<dyn ObjectStore>, lanes: usize) -> (Self, Arc<tokio::sync::Semaphore>) {
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            (Spy { gate: Some((lanes, gate.clone())), ..Spy::new(inner, None) }, gate)
        }
    }

    #[async_trait]
    impl ObjectStore for Spy {
        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn get_versioned(&self, key: &Key) -> Result<Option<(Bytes, Version)>> {
            self.inner.get_versioned(key).await
        }
        async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
            self.inner.put(key, value).await
        }
        async fn put_new(&self, key: &Key, value: Bytes) -> Result<bool> {
            self.creates.fetch_add(1, Ordering::SeqCst);
            if self.broken {
                return Err(Error::storage_io(&std::io::Error::other("disk full"), key));
            }
            if let Some(rival) = &self.rival {
                assert!(self.inner.put_new(key, rival.clone()).await?, "the rival's write wins");
            }
            let Some((_, gate)) = &self.gate else { return self.inner.put_new(key, value).await };
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_active.fetch_max(now, Ordering::SeqCst);
            gate.acquire().await.expect("the gate stays open").forget();
            let created = self.inner.put_new(key, value).await;
            self.active.fetch_sub(1, Ordering::SeqCst);
            created
        }
        async fn put_if(&self, key: &Key, value: Bytes, expected: &Version) -> Result<bool> {
            self.inner.put_if(key, value, expected).await
        }
        async fn list(&self, prefix: &Key) -> Result<Vec<Key>> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &Key) -> Result<()> {
            self.inner.delete(key).await
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn write_concurrency(&self) -> usize {
            self.gate.as_ref().map_or_else(|| self.inner.write_concurrency(), |(lanes, _)| *lanes)
        }
    }

    fn spec() -> Arc<GenSpec> {
        Arc::new(GenSpec {
            world: WorldId::parse("w00112233445566aa").unwrap(),
            revision: 4,
            seed: 11,
            params: Default::default(),
            plugins: Vec::new(),
            limits: Limits::default(),
        })
    }

    fn node_with(store: Arc<dyn ObjectStore>, pending_writes: usize, cache: u64) -> Arc<Node> {
        let settings = NodeSettings { pending_writes, chunk_cache_bytes: cache, ..NodeSettings::default() };
        Node::start_with(store, Arc::new(NoRuntime), 1, &settings, Metrics::new(true, false).node())
    }

    /// A fresh region costs one listing of storage, not a read that misses
    /// before every chunk; a node started later on the same storage lists
    /// the region once and reads each chunk it names, generating none.
    #[tokio::test]
    async fn a_fresh_region_is_listed_once_and_its_chunks_are_generated_without_reads() {
        let store = Arc::new(Spy::new(storage::open("memory://", &Default::default()).unwrap(), None));
        let node = node_with(store.clone(), 0, 0);
        // 20 chunks of region (0, 0) and 5 of region (-1, 0).
        let coords: Vec<ChunkCoord> = (0..20)
            .map(|i| ChunkCoord::new(i % 16, i / 16))
            .chain((0..5).map(|i| ChunkCoord::new(-1 - i, 3)))
            .collect();
        let mut first = Vec::new();
        for &c in &coords {
            first.push(node.chunk(spec(), c).await.unwrap().envelope);
        }
        assert_eq!(store.lists.load(Ordering::SeqCst), 2, "one listing per region");
        assert_eq!(store.gets.load(Ordering::SeqCst), 0, "no read before generating a chunk of a fresh region");
        assert_eq!(store.creates.load(Ordering::SeqCst), coords.len());
        assert_eq!(node.metrics().chunks_generated.get(), coords.len() as u64);

        let store = Arc::new(Spy::new(store.inner.clone(), None));
        let later = node_with(store.clone(), 0, 0);
        for (&c, want) in coords.iter().zip(&first) {
            assert_eq!(&later.chunk(spec(), c).await.unwrap().envelope, want, "{c:?}: the stored bytes");
        }
        assert_eq!(store.lists.load(Ordering::SeqCst), 2);
        assert_eq!(store.gets.load(Ordering::SeqCst), coords.len(), "every chunk the listing names is read");
        assert_eq!(later.metrics().chunks_generated.get(), 0, "and none generated again");
    }

    fn raced(coord: ChunkCoord) -> (Bytes, Arc<Spy>) {
        let mut rival = pipeline::generate(&spec(), coord, &mut pipeline::NoPlugins);
        rival.plugin_failures.push(PluginFailure {
            plugin: "other-node".into(),
            version: "1.0.0".into(),
            hook: HookName::Terrain,
            kind: ErrorKind::Exception,
            message: "written by the winner".into(),
            transient: false,
        });
        let rival = Bytes::from(wire::encode(&rival));
        let store = Arc::new(Spy::new(storage::open("memory://", &Default::default()).unwrap(), Some(rival.clone())));
        (rival, store)
    }

    /// When another node stores a chunk between this node's miss and its
    /// write, the write loses and this node serves the winner's bytes (here
    /// deliberately different, to tell them apart), so every node serves
    /// one copy. Writing through (`pending_writes = 0`), the first answer
    /// already is the winner's.
    #[tokio::test]
    async fn a_chunk_stored_first_by_another_node_is_the_one_served() {
        let spec = spec();
        let coord = ChunkCoord::new(3, -1);
        let (rival, store) = raced(coord);
        let node = node_with(store.clone(), 0, 1 << 20);
        let got = node.chunk(spec.clone(), coord).await.unwrap();
        assert_eq!(store.creates.load(Ordering::SeqCst), 1);
        assert!(got.generated && got.stored);
        assert_eq!(got.envelope, rival, "the winner's bytes are served");
        // And from now on (from the cache of stored chunks).
        let again = node.chunk(spec, coord).await.unwrap();
        assert!(!again.generated);
        assert_eq!(again.envelope, rival);
        assert_eq!(node.metrics().chunks_generated.get(), 1);
        assert_eq!(node.metrics().chunks_from_storage.get(), 1);
    }

    /// The same race writing behind (the default): the first answer carries
    /// this node's bytes (which for a real deterministic chunk are the
    /// winner's bytes too: only the test's rival differs), and once the
    /// write has settled every answer is the winner's, from the cache.
    #[tokio::test]
    async fn writing_behind_a_lost_create_serves_the_winners_bytes_afterwards() {
        let spec = spec();
        let coord = ChunkCoord::new(3, -1);
        let (rival, store) = raced(coord);
        let node = node_with(store.clone(), 16, 1 << 20);
        let first = node.chunk(spec.clone(), coord).await.unwrap();
        assert!(first.generated && first.stored);
        let ours = Bytes::from(wire::encode(&pipeline::generate(&spec, coord, &mut pipeline::NoPlugins)));
        assert_eq!(first.envelope, ours);
        node.flush().await;
        assert_eq!(node.pending_writes(), 0);
        assert_eq!(store.creates.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            let again = node.chunk(spec.clone(), coord).await.unwrap();
            assert!(!again.generated && again.stored);
            assert_eq!(again.envelope, rival, "the winner's bytes, once the create lost");
        }
        assert_eq!(node.metrics().chunks_generated.get(), 1);
    }

    /// A cached chunk is answered with the identical bytes without reading
    /// storage; after the writes drain, storage holds the same bytes; a new
    /// revision never gets the old revision's chunk; and the cache keeps to
    /// its byte budget.
    #[tokio::test]
    async fn the_cache_serves_identical_bytes_per_revision_within_its_budget() {
        let dir = std::env::temp_dir().join(format!("wl-node-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let inner = storage::open(&format!("fs://{}", dir.display()), &Default::default()).unwrap();
        let store = Arc::new(Spy::new(inner.clone(), None));
        let budget = 40 * 14_000;
        let node = node_with(store.clone(), 8, budget);
        let spec = spec();
        let coord = ChunkCoord::new(-2, 5);
        let first = node.chunk(spec.clone(), coord).await.unwrap();
        let gets = store.gets.load(Ordering::SeqCst);
        let hit = node.chunk(spec.clone(), coord).await.unwrap();
        assert!(!hit.generated && hit.stored);
        assert_eq!(hit.envelope, first.envelope, "identical bytes");
        assert_eq!(store.gets.load(Ordering::SeqCst), gets, "a hit reads no storage");
        node.flush().await;
        let key = Key::chunk(&spec.world, spec.revision, coord);
        assert_eq!(inner.get(&key).await.unwrap().unwrap(), first.envelope, "written, byte-identical");
        // The next revision (other plugins or parameters) is another chunk.
        let mut next = (*spec).clone();
        next.revision += 1;
        next.seed += 1;
        let other = node.chunk(Arc::new(next.clone()), coord).await.unwrap();
        assert!(other.generated, "generated for the new revision, not served from the old");
        let record: ChunkRecord = wire::decode(&other.envelope).unwrap();
        assert_eq!(record.revision, next.revision);
        assert_ne!(other.envelope, first.envelope);
        // Many chunks through a budget of about 40: it holds, and every answer is right.
        for i in 0..200 {
            let c = ChunkCoord::new(i, 1);
            let got = node.chunk(spec.clone(), c).await.unwrap();
            let record: ChunkRecord = wire::decode(&got.envelope).unwrap();
            assert_eq!(record.chunk.coord, c);
            let used = node.chunks.lock().unwrap().used_bytes();
            assert!(used as u64 <= budget, "{used} > {budget}");
        }
        assert!(node.chunks.lock().unwrap().len() < 60);
        node.flush().await;
        assert_eq!(inner.list(&Key::dir("chunks/")).await.unwrap().len(), 202);
        // An evicted chunk comes back from storage, still the same bytes.
        let back = node.chunk(spec.clone(), ChunkCoord::new(0, 1)).await.unwrap();
        assert!(!back.generated);
        assert_eq!(
            back.envelope,
            inner.get(&Key::chunk(&spec.world, spec.revision, ChunkCoord::new(0, 1))).await.unwrap().unwrap()
        );
        assert_eq!(node.metrics().chunks_generated.get(), 202);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writing behind runs as many writes at once as the storage allows, and
    /// no more: with 10 answers pending behind a storage of 3 lanes whose
    /// writes are held, exactly 3 writes are under way (the answers were all
    /// given, the rest wait, served from memory); once released, every
    /// chunk is stored with the bytes answered, and `flush` waits for all.
    #[tokio::test]
    async fn writing_behind_overlaps_up_to_the_storages_concurrency_and_no_more() {
        let (spy, gate) = Spy::gated(storage::open("memory://", &Default::default()).unwrap(), 3);
        let store = Arc::new(spy);
        let node = node_with(store.clone(), 64, 1 << 20);
        let spec = spec();
        let mut answers = Vec::new();
        for i in 0..10 {
            let c = ChunkCoord::new(i, 7);
            let got = node.chunk(spec.clone(), c).await.unwrap();
            assert!(got.generated && got.stored);
            answers.push((c, got.envelope));
        }
        let waited = std::time::Instant::now();
        while store.active.load(Ordering::SeqCst) < 3 {
            assert!(waited.elapsed() < std::time::Duration::from_secs(30), "the writes never started");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert_eq!(store.active.load(Ordering::SeqCst), 3, "three lanes, three writes under way");
        assert_eq!(node.pending_writes(), 10, "every write is still pending");
        assert_eq!(node.metrics().pending_writes.get(), 10, "and the gauge says so");
        // Pending chunks are answered from memory, not generated again.
        let again = node.chunk(spec.clone(), answers[9].0).await.unwrap();
        assert!(!again.generated && again.envelope == answers[9].1);
        gate.add_permits(10);
        node.flush().await;
        assert_eq!(node.pending_writes(), 0);
        assert_eq!(node.metrics().pending_writes.get(), 0);
        assert_eq!(store.max_active.load(Ordering::SeqCst), 3, "never more than the storage's lanes");
        assert_eq!(store.creates.load(Ordering::SeqCst), 10);
        for (c, envelope) in answers {
            let stored = store.inner.get(&Key::chunk(&spec.world, spec.revision, c)).await.unwrap();
            assert_eq!(stored.as_ref(), Some(&envelope), "stored as answered");
        }
        assert_eq!(node.metrics().chunks_generated.get(), 10);
    }

    /// A storage that refuses every write does not fail the answers: each
    /// chunk is served, counted as a store failure, kept out of the cache
    /// (it is not in storage) and generated again when next asked for,
    /// writing through or behind.
    #[tokio::test]
    async fn a_failed_write_is_served_counted_and_generated_again_next_time() {
        for pending_writes in [0, 8] {
            let inner = storage::open("memory://", &Default::default()).unwrap();
            let store = Arc::new(Spy { broken: true, ..Spy::new(inner.clone(), None) });
            let node = node_with(store.clone(), pending_writes, 1 << 20);
            let (spec, coord) = (spec(), ChunkCoord::new(-3, 2));
            let good = Bytes::from(wire::encode(&pipeline::generate(&spec, coord, &mut pipeline::NoPlugins)));
            for round in 1..=2u64 {
                let got = node.chunk(spec.clone(), coord).await.unwrap();
                assert_eq!(got.envelope, good, "{pending_writes}: served all the same");
                assert!(got.generated, "{pending_writes}: generated in round {round}");
                node.flush().await;
                assert_eq!(node.metrics().chunk_store_failures.get(), round, "{pending_writes}");
                assert_eq!(node.metrics().pending_writes.get(), 0, "{pending_writes}");
            }
            assert_eq!(node.metrics().chunks_generated.get(), 2);
            assert_eq!(inner.list(&Key::dir("chunks/")).await.unwrap().len(), 0, "nothing stored");
        }
    }

    /// A stored chunk that does not decode (what a power loss can leave of a
    /// chunk, which is not forced to disk: an empty file) is generated
    /// again and replaced in storage by the good copy, writing through or
    /// behind; the bad bytes are never served.
    #[tokio::test]
    async fn an_unreadable_stored_chunk_is_replaced_by_the_regenerated_copy() {
        for pending_writes in [0, 8] {
            let store = storage::open("memory://", &Default::default()).unwrap();
            let spec = spec();
            let coord = ChunkCoord::new(5, 5);
            let key = Key::chunk(&spec.world, spec.revision, coord);
            for bad in [&b""[..], b"WL\x02"] {
                store.put(&key, Bytes::from_static(bad)).await.unwrap();
                let node = node_with(store.clone(), pending_writes, 1 << 20);
                let got = node.chunk(spec.clone(), coord).await.unwrap();
                assert!(got.generated && got.stored, "{pending_writes}");
                let good = Bytes::from(wire::encode(&pipeline::generate(&spec, coord, &mut pipeline::NoPlugins)));
                assert_eq!(got.envelope, good);
                node.flush().await;
                assert_eq!(store.get(&key).await.unwrap(), Some(good), "replaced in storage ({pending_writes})");
            }
        }
    }

    /// Two nodes over one storage asked for the same chunks at once: each
    /// chunk is stored once and both serve the same bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_generating_one_chunk_store_one_copy_and_serve_it() {
        let dir = std::env::temp_dir().join(format!("wl-two-nodes-{}", std::process::id()));
        let uri = format!("fs://{}", dir.display());
        let nodes: Vec<Arc<Node>> = (0..2)
            .map(|_| {
                let store = storage::open(&uri, &Default::default()).unwrap();
                Node::start(store, Arc::new(NoRuntime), 1, Metrics::new(true, false).node())
            })
            .collect();
        let spec = spec();
        for i in 0..8 {
            let coord = ChunkCoord::new(i, 0);
            let (a, b) = tokio::join!(nodes[0].chunk(spec.clone(), coord), nodes[1].chunk(spec.clone(), coord));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.envelope, b.envelope);
            assert!(a.stored && b.stored);
        }
        for node in &nodes {
            node.flush().await;
        }
        let store = storage::open(&uri, &Default::default()).unwrap();
        assert_eq!(store.list(&Key::dir("chunks/")).await.unwrap().len(), 8);
        let _ = std::fs::remove_dir_all(dir);
    }
}
