//! A generation node: generates, caches and serves chunks for the regions a
//! coordinator sends it, running plugins in the sandbox on worker threads.
//!
//! The node's whole interface is [`NodeRequest`] messages
//! ([`Node::handle`]): a coordinator in the same process calls it through
//! [`NodeService`], one in another process sends the same messages to
//! [`server`]'s endpoint.

pub mod pipeline;
pub mod plugins;
pub mod server;
pub mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
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
    metrics: Arc<NodeMetrics>,
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
        Arc::new(Node {
            store,
            pool: workers::WorkerPool::start(workers, queue_depth, runtime, metrics.clone()),
            sources: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            overviews: Mutex::new(OverviewCache::default()),
            metrics,
        })
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

    /// The chunk of `spec`'s world revision: from storage if it was generated
    /// before, else generated on a worker and stored - create-if-absent, so
    /// when two nodes generate one chunk, one copy wins and both serve it. A
    /// chunk whose plugin failures are not a function of its inputs (a
    /// wall-clock timeout, a crashed sandbox) is served but not stored.
    pub async fn chunk(self: &Arc<Self>, spec: Arc<GenSpec>, coord: ChunkCoord) -> Result<ChunkBytes> {
        let key = Key::chunk(&spec.world, spec.revision, coord);
        if let Some(envelope) = self.stored(&key, &spec, coord).await? {
            self.metrics.chunks_from_storage.inc();
            return Ok(ChunkBytes { envelope, generated: false, stored: true });
        }
        let pending = {
            let mut inflight = self.inflight.lock().expect("inflight lock");
            if let Some(p) = inflight.get(&key) {
                p.clone()
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

    async fn generate_and_store(&self, spec: Arc<GenSpec>, coord: ChunkCoord, key: &Key) -> Result<ChunkBytes> {
        let sources = Arc::new(self.sources_for(&spec).await?);
        let (deterministic, bytes) = self.pool.generate(spec.clone(), coord, sources).await?;
        self.metrics.chunks_generated.inc();
        self.metrics.owns(&spec.world, coord.region());
        if !deterministic {
            self.metrics.chunks_transient.inc();
            // Another run may come out otherwise: not this chunk's truth.
            return Ok(ChunkBytes { envelope: bytes, generated: true, stored: false });
        }
        match self.store.put_new(key, bytes.clone()).await {
            Ok(true) => Ok(ChunkBytes { envelope: bytes, generated: true, stored: true }),
            // Another node stored it first: serve the winner's bytes (identical
            // when generation is deterministic, and the same everywhere either way).
            Ok(false) => match self.stored(key, &spec, coord).await? {
                Some(winner) => Ok(ChunkBytes { envelope: winner, generated: true, stored: true }),
                None => Ok(ChunkBytes { envelope: bytes, generated: true, stored: false }),
            },
            Err(e) => {
                // Generation is deterministic: serve it now, generate it again next time.
                tracing::warn!(%key, error = %e, "could not store a generated chunk");
                Ok(ChunkBytes { envelope: bytes, generated: true, stored: false })
            }
        }
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

    /// Real storage, where another node always stores the chunk first: just
    /// before this node's create-if-absent write, `rival` is written.
    #[derive(Debug)]
    struct Raced {
        inner: Arc<dyn ObjectStore>,
        rival: Bytes,
        creates: AtomicUsize,
    }

    #[async_trait]
    impl ObjectStore for Raced {
        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
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
            assert!(self.inner.put_new(key, self.rival.clone()).await?, "the rival's write wins");
            self.inner.put_new(key, value).await
        }
        async fn put_if(&self, key: &Key, value: Bytes, expected: &Version) -> Result<bool> {
            self.inner.put_if(key, value, expected).await
        }
        async fn list(&self, prefix: &Key) -> Result<Vec<Key>> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &Key) -> Result<()> {
            self.inner.delete(key).await
        }
        fn describe(&self) -> String {
            self.inner.describe()
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

    /// When another node stores a chunk between this node's miss and its
    /// write, the write loses and this node serves the winner's bytes (here
    /// deliberately different, to tell them apart), so every node serves
    /// one copy.
    #[tokio::test]
    async fn a_chunk_stored_first_by_another_node_is_the_one_served() {
        let spec = spec();
        let coord = ChunkCoord::new(3, -1);
        let mut rival = pipeline::generate(&spec, coord, &mut pipeline::NoPlugins);
        rival.plugin_failures.push(PluginFailure {
            plugin: "other-node".into(),
            version: "1.0.0".into(),
            hook: HookName::Terrain,
            kind: ErrorKind::Exception,
            message: "written by the winner".into(),
            transient: false,
        });
        let rival = Bytes::from(wire::encode(&rival));
        let store = Arc::new(Raced {
            inner: storage::open("memory://", &Default::default()).unwrap(),
            rival: rival.clone(),
            creates: AtomicUsize::new(0),
        });
        let node = Node::start(store.clone(), Arc::new(NoRuntime), 1, Metrics::new(true, false).node());
        let got = node.chunk(spec.clone(), coord).await.unwrap();
        assert_eq!(store.creates.load(Ordering::SeqCst), 1);
        assert!(got.generated && got.stored);
        assert_eq!(got.envelope, rival, "the winner's bytes are served");
        // And from storage from now on.
        let again = node.chunk(spec, coord).await.unwrap();
        assert!(!again.generated);
        assert_eq!(again.envelope, rival);
        assert_eq!(node.metrics().chunks_generated.get(), 1);
        assert_eq!(node.metrics().chunks_from_storage.get(), 1);
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
        let store = storage::open(&uri, &Default::default()).unwrap();
        assert_eq!(store.list(&Key::dir("chunks/")).await.unwrap().len(), 8);
        let _ = std::fs::remove_dir_all(dir);
    }
}
