//! The coordinator: the world registry, the plugin workshop, accounts,
//! region routing to nodes, and the public HTTP/WebSocket API.
//!
//! It never generates anything itself: chunks come from nodes through the
//! message interface in `cluster::protocol`, so a node may live in this
//! process or elsewhere.

pub mod actor;
pub mod api;
pub mod attach;
pub mod auth;
pub mod http;
mod stream;
pub mod workshop;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::Addr;
use tokio::sync::watch;
use worldloom_cluster::config::Config;
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{AttachedPlugin, GenSpec, WorldRecord};
use worldloom_cluster::protocol::{ChunkReply, Generate};
use worldloom_cluster::storage::{self, Key, ObjectStore};
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_worldgen::{ChunkCoord, Params};

use crate::actor::{CoordinatorActor, CountNodes, Route};
use crate::auth::Account;

/// One revision of a world as served: the record plus its generation spec.
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

/// What a world owner may change; each change starts a new revision.
#[derive(Debug)]
pub enum WorldChange {
    Plugins(Vec<AttachedPlugin>),
    Params(Params),
}

/// The coordinator's shared state.
pub struct Coordinator {
    store: Arc<dyn ObjectStore>,
    actor: Addr<CoordinatorActor>,
    /// Each world's current revision; streams watch for new ones.
    worlds: RwLock<HashMap<WorldId, watch::Sender<Arc<World>>>>,
    pub(crate) workshop: workshop::Index,
    /// Serialises writes (worlds, plugin versions) so revisions never fork
    /// and exactly one concurrent upload of a version wins.
    pub(crate) writes: tokio::sync::Mutex<()>,
    pub config: Arc<Config>,
}

fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Coordinator {
    /// Opens the registry and the workshop: everything stored is loaded once, then served from memory.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        actor: Addr<CoordinatorActor>,
        config: Arc<Config>,
    ) -> Result<Arc<Self>> {
        let mut worlds = HashMap::new();
        for key in store.list(&Key::worlds()).await? {
            match storage::get_value::<WorldRecord>(store.as_ref(), &key).await {
                Ok(Some(record)) => {
                    worlds.insert(record.id.clone(), watch::channel(World::new(record)).0);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(%key, error = %e, "skipping an unreadable world"),
            }
        }
        let workshop = workshop::Index::load(store.as_ref()).await?;
        tracing::info!(worlds = worlds.len(), plugins = workshop.len(), storage = %store.describe(), "registry loaded");
        Ok(Arc::new(Coordinator {
            store,
            actor,
            worlds: RwLock::new(worlds),
            workshop,
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

    pub fn workshop(&self) -> &workshop::Index {
        &self.workshop
    }

    pub async fn node_count(&self) -> usize {
        self.actor.send(CountNodes).await.unwrap_or(0)
    }

    /// The account a request's `Authorization` header authenticates.
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Account> {
        auth::authenticate(self.store.as_ref(), header).await
    }

    /// Stores a new world (written before it is listed) and registers it.
    pub async fn create_world(&self, draft: api::WorldDraft, owner: &Account) -> Result<Arc<World>> {
        let now = now_unix_s();
        let record = WorldRecord {
            id: WorldId::random(),
            name: draft.name,
            seed: draft.seed,
            params: draft.params,
            plugins: draft.plugins,
            revision: 0,
            owner: Some(owner.name.clone()),
            created_unix_s: now,
            updated_unix_s: now,
        };
        let _guard = self.writes.lock().await;
        if !storage::put_new_value(self.store.as_ref(), &Key::world(&record.id), &record).await? {
            return Err(Error::internal("world id collision; retry the request"));
        }
        let world = World::new(record);
        self.worlds.write().expect("worlds lock").insert(world.record.id.clone(), watch::channel(world.clone()).0);
        Ok(world)
    }

    fn slot(&self, id: &str) -> Result<watch::Sender<Arc<World>>> {
        let id = WorldId::parse(id)?;
        self.worlds
            .read()
            .expect("worlds lock")
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no world with id {id}")).with_field("id"))
    }

    /// A world's current revision.
    pub fn world(&self, id: &str) -> Result<Arc<World>> {
        Ok(self.slot(id)?.borrow().clone())
    }

    /// Follows a world's revisions (for streams).
    pub fn watch(&self, id: &str) -> Result<watch::Receiver<Arc<World>>> {
        Ok(self.slot(id)?.subscribe())
    }

    /// Applies an owner's change as a new revision, stored before it is served.
    pub async fn update_world(&self, id: &str, account: &Account, change: WorldChange) -> Result<Arc<World>> {
        let slot = self.slot(id)?;
        let _guard = self.writes.lock().await;
        let current = slot.borrow().clone();
        if current.record.owner.as_deref() != Some(account.name.as_str()) {
            return Err(Error::new(ErrorKind::Forbidden, format!("world {id} belongs to another account")));
        }
        let mut record = current.record.clone();
        match change {
            WorldChange::Plugins(plugins) => record.plugins = plugins,
            WorldChange::Params(params) => record.params = params,
        }
        if record.plugins == current.record.plugins && record.params == current.record.params {
            // A PUT that changes nothing keeps the revision and its cached chunks.
            return Ok(current);
        }
        record.revision += 1;
        record.updated_unix_s = now_unix_s();
        storage::put_value(self.store.as_ref(), &Key::world(&record.id), &record).await?;
        let world = World::new(record);
        tracing::info!(world = %world.record.id, revision = world.record.revision, "world revised");
        slot.send_replace(world.clone());
        Ok(world)
    }

    /// Every world, oldest first.
    pub fn worlds(&self) -> Vec<Arc<World>> {
        let mut all: Vec<_> = self.worlds.read().expect("worlds lock").values().map(|s| s.borrow().clone()).collect();
        all.sort_by(|a, b| (a.record.created_unix_s, &a.record.id).cmp(&(b.record.created_unix_s, &b.record.id)));
        all
    }

    /// One chunk of a world revision, from the node owning its region.
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
