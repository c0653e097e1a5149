//! The coordinator: the world registry, region routing to nodes, and the
//! public HTTP/WebSocket API.
//!
//! It never generates anything itself: chunks come from nodes through the
//! message interface in `cluster::protocol`, so a node may live in this
//! process or elsewhere.

pub mod actor;
pub mod api;
pub mod attach;
pub mod http;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::Addr;
use worldloom_cluster::config::Config;
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{GenSpec, WorldRecord};
use worldloom_cluster::protocol::{ChunkReply, Generate};
use worldloom_cluster::storage::{self, Key, ObjectStore};
use worldloom_cluster::{Error, Result};
use worldloom_worldgen::ChunkCoord;

use crate::actor::{CoordinatorActor, CountNodes, Route};

/// A world as served: the record plus its generation spec, shared by every request.
#[derive(Debug)]
pub struct World {
    pub record: WorldRecord,
    pub spec: Arc<GenSpec>,
}

impl World {
    fn new(record: WorldRecord) -> Arc<World> {
        let spec = Arc::new(record.gen_spec());
        Arc::new(World { record, spec })
    }
}

/// The coordinator's shared state.
pub struct Coordinator {
    store: Arc<dyn ObjectStore>,
    actor: Addr<CoordinatorActor>,
    worlds: RwLock<HashMap<WorldId, Arc<World>>>,
    /// Serialises world writes so revisions never fork.
    writes: tokio::sync::Mutex<()>,
    pub config: Arc<Config>,
}

fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Coordinator {
    /// Opens the registry: every stored world is loaded once, then served from memory.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        actor: Addr<CoordinatorActor>,
        config: Arc<Config>,
    ) -> Result<Arc<Self>> {
        let mut worlds = HashMap::new();
        for key in store.list(&Key::worlds()).await? {
            match storage::get_value::<WorldRecord>(store.as_ref(), &key).await {
                Ok(Some(record)) => {
                    worlds.insert(record.id.clone(), World::new(record));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(%key, error = %e, "skipping an unreadable world"),
            }
        }
        tracing::info!(worlds = worlds.len(), storage = %store.describe(), "world registry loaded");
        Ok(Arc::new(Coordinator {
            store,
            actor,
            worlds: RwLock::new(worlds),
            writes: tokio::sync::Mutex::new(()),
            config,
        }))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn actor(&self) -> &Addr<CoordinatorActor> {
        &self.actor
    }

    pub async fn node_count(&self) -> usize {
        self.actor.send(CountNodes).await.unwrap_or(0)
    }

    /// Stores a new world (written before it is listed) and registers it.
    pub async fn create_world(&self, draft: api::WorldDraft, owner: Option<String>) -> Result<Arc<World>> {
        let now = now_unix_s();
        let record = WorldRecord {
            id: WorldId::random(),
            name: draft.name,
            seed: draft.seed,
            params: draft.params,
            plugins: draft.plugins,
            revision: 0,
            owner,
            created_unix_s: now,
            updated_unix_s: now,
        };
        let _guard = self.writes.lock().await;
        if !storage::put_new_value(self.store.as_ref(), &Key::world(&record.id), &record).await? {
            return Err(Error::internal("world id collision; retry the request"));
        }
        let world = World::new(record);
        self.worlds.write().expect("worlds lock").insert(world.record.id.clone(), world.clone());
        Ok(world)
    }

    pub fn world(&self, id: &str) -> Result<Arc<World>> {
        let id = WorldId::parse(id)?;
        self.worlds
            .read()
            .expect("worlds lock")
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no world with id {id}")).with_field("id"))
    }

    /// Every world, oldest first.
    pub fn worlds(&self) -> Vec<Arc<World>> {
        let mut all: Vec<_> = self.worlds.read().expect("worlds lock").values().cloned().collect();
        all.sort_by(|a, b| (a.record.created_unix_s, &a.record.id).cmp(&(b.record.created_unix_s, &b.record.id)));
        all
    }

    /// One chunk of a world's current revision, from the node owning its region.
    pub async fn chunk(&self, world: &World, coord: ChunkCoord) -> Result<ChunkReply> {
        if !coord.in_bounds() {
            return Err(Error::invalid(
                "cx",
                format!(
                    "chunk {coord} is out of range: |cx| and |cz| must be at most {}",
                    worldloom_worldgen::chunk::MAX_CHUNK_COORD
                ),
            )
            .with_code("coordinate_out_of_range"));
        }
        let node = self
            .actor
            .send(Route { world: world.record.id.clone(), region: coord.region() })
            .await
            .map_err(|_| Error::unavailable("the coordinator is shutting down"))?
            .ok_or_else(|| Error::unavailable("no generation node is live; retry shortly"))?;
        node.generate
            .send(Generate { spec: world.spec.clone(), coord })
            .await
            .map_err(|_| Error::unavailable("the generation node did not answer; retry shortly"))?
    }
}
