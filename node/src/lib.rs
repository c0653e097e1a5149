//! A generation node: generates, caches and serves chunks for the regions a
//! coordinator sends it, running plugins in the sandbox on worker threads.
//!
//! The node's whole interface is messages (`cluster::protocol::Generate`,
//! `CheckPlugin`, mirroring `cluster::protocol::NodeRequest`), so
//! the same node can sit in the coordinator's process or behind a socket.

pub mod actor;
pub mod pipeline;
pub mod plugins;
pub mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use worldloom_cluster::model::{ChunkRecord, GenSpec};
use worldloom_cluster::protocol::{ChunkReply, PluginCheck};
use worldloom_cluster::storage::{Key, ObjectStore, source_sha256};
use worldloom_cluster::{Error, Result, wire};
use worldloom_worldgen::ChunkCoord;

pub use workers::{NoRuntime, PluginRuntime, Sources, WorkerPlugins};

type Pending = Shared<BoxFuture<'static, Result<ChunkReply>>>;

/// The node's state, shared by its actor and its tasks.
pub struct Node {
    store: Arc<dyn ObjectStore>,
    pool: workers::WorkerPool,
    /// Plugin sources already fetched and verified, by SHA-256.
    sources: Mutex<HashMap<String, Arc<str>>>,
    /// Chunks being generated, so concurrent requests for one chunk generate it once.
    inflight: Mutex<HashMap<Key, Pending>>,
}

impl Node {
    pub fn start(store: Arc<dyn ObjectStore>, runtime: Arc<dyn PluginRuntime>, workers: usize) -> Arc<Node> {
        Arc::new(Node {
            store,
            pool: workers::WorkerPool::start(workers, runtime),
            sources: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    pub fn workers(&self) -> usize {
        self.pool.threads()
    }

    /// The chunk of `spec`'s world revision: from storage if it was generated
    /// before, else generated on a worker and stored.
    pub async fn chunk(self: &Arc<Self>, spec: Arc<GenSpec>, coord: ChunkCoord) -> Result<ChunkReply> {
        let key = Key::chunk(&spec.world, spec.revision, coord);
        if let Some(bytes) = self.store.get(&key).await? {
            match wire::decode::<ChunkRecord>(&bytes) {
                Ok(record) if record.chunk.coord == coord && record.revision == spec.revision => {
                    return Ok(ChunkReply { record: Arc::new(record), bytes, generated: false });
                }
                // A stored object that does not decode is regenerated, never served.
                Ok(_) | Err(_) => tracing::warn!(%key, "stored chunk is unreadable; regenerating"),
            }
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
                let fut: BoxFuture<'static, Result<ChunkReply>> = Box::pin(
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

    async fn generate_and_store(&self, spec: Arc<GenSpec>, coord: ChunkCoord, key: &Key) -> Result<ChunkReply> {
        let sources = Arc::new(self.sources_for(&spec).await?);
        let record = self.pool.generate(spec, coord, sources).await?;
        let bytes = Bytes::from(wire::encode(&record));
        if let Err(e) = self.store.put(key, bytes.clone()).await {
            // Generation is deterministic: serve it now, regenerate it next time.
            tracing::warn!(%key, error = %e, "could not cache a generated chunk");
        }
        Ok(ChunkReply { record: Arc::new(record), bytes, generated: true })
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

    /// Loads a plugin in a sandbox on a worker and reports what it defines.
    pub async fn check_plugin(&self, name: String, source: String) -> Result<PluginCheck> {
        self.pool.check(name, source).await
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
