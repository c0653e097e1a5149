//! The coordinator: the world registry, the plugin workshop, accounts,
//! region routing to nodes, and the public HTTP/WebSocket API.
//!
//! It never generates anything itself: chunks come from nodes through the
//! message interface in `cluster::protocol`, so a node may live in this
//! process or elsewhere. Several coordinators may serve one storage: every
//! world and plugin is read through from storage (a record created on
//! another coordinator is visible at once), a cached world is checked again
//! after [`FRESH`], watched worlds are polled so a revision made elsewhere
//! reaches this coordinator's streams within about two seconds, and every
//! change to a stored record is a compare-and-swap, so two coordinators can
//! never both write revision n+1.

pub mod actor;
pub mod api;
pub mod attach;
pub mod auth;
pub mod http;
pub mod remote;
pub mod stream;
pub mod viewer;
pub mod workshop;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::Addr;
use tokio::sync::watch;
use worldloom_cluster::config::Config;
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::metrics::CoordinatorMetrics;
use worldloom_cluster::model::{AttachedPlugin, GenSpec, WorldRecord};
use worldloom_cluster::protocol::{ChunkBytes, NodeRequest, NodeResponse};
use worldloom_cluster::storage::{self, Key, ObjectStore};
use worldloom_cluster::{Error, ErrorKind, Result};
use worldloom_worldgen::{ChunkCoord, Params};

use crate::actor::{CoordinatorActor, Leave, Members, RouteBy, Router};
use crate::auth::Account;

/// How long a cached world (or world listing) is served before storage is
/// asked again.
pub const FRESH: Duration = Duration::from_millis(1000);

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

/// A cached world: its current revision (streams watch it) and when storage
/// was last asked.
struct Slot {
    tx: watch::Sender<Arc<World>>,
    checked: Mutex<Instant>,
}

/// The coordinator's shared state.
pub struct Coordinator {
    store: Arc<dyn ObjectStore>,
    actor: Addr<CoordinatorActor>,
    router: Router,
    worlds: RwLock<HashMap<WorldId, Arc<Slot>>>,
    /// The last world listing and when it was made.
    listing: Mutex<Option<(Instant, Vec<Arc<World>>)>>,
    pub(crate) workshop: workshop::Index,
    /// Serialises this process's writes (fewer compare-and-swap retries);
    /// correctness across processes comes from the conditional writes.
    pub(crate) writes: tokio::sync::Mutex<()>,
    pub config: Arc<Config>,
    pub metrics: Arc<CoordinatorMetrics>,
    /// Set once when the server begins a clean stop: open streams close.
    shutdown: watch::Sender<bool>,
}

fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How many times a compare-and-swap write is retried before a 409.
const CAS_ATTEMPTS: usize = 8;

impl Coordinator {
    /// Opens the registry: the workshop index is loaded (every record must
    /// decode: a corrupt one is an error naming its key); worlds are read
    /// through from storage as they are asked for.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        actor: Addr<CoordinatorActor>,
        router: Router,
        config: Arc<Config>,
        metrics: Arc<CoordinatorMetrics>,
    ) -> Result<Arc<Self>> {
        let workshop = workshop::Index::load(store.as_ref()).await?;
        tracing::info!(plugins = workshop.len(), storage = %store.describe(), "registry opened");
        let c = Arc::new(Coordinator {
            store,
            actor,
            router,
            worlds: RwLock::new(HashMap::new()),
            listing: Mutex::new(None),
            workshop,
            writes: tokio::sync::Mutex::new(()),
            config,
            metrics,
            shutdown: watch::channel(false).0,
        });
        // Revisions made by other coordinators reach this one's streams.
        let weak = Arc::downgrade(&c);
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(FRESH).await;
                let Some(c) = weak.upgrade() else { return };
                c.refresh_watched().await;
            }
        });
        Ok(c)
    }

    /// Begins a clean stop: every open stream is sent an error frame with
    /// code `shutting_down` and a close frame (1001, going away) and ends,
    /// so the HTTP server's graceful stop is not held up by long-lived
    /// sockets. Requests in flight are left to finish.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once [`Coordinator::shut_down`] has been called.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
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
        self.members().await.len()
    }

    /// The live nodes.
    pub async fn members(&self) -> Vec<actor::MemberView> {
        self.actor.send(Members).await.unwrap_or_default()
    }

    /// Worlds this coordinator holds in its cache.
    pub fn cached_worlds(&self) -> usize {
        self.worlds.read().expect("worlds lock").len()
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
            limits: self.config.limits,
        };
        let _guard = self.writes.lock().await;
        if !storage::put_new_value(self.store.as_ref(), &Key::world(&record.id), &record).await? {
            return Err(Error::internal("world id collision; retry the request"));
        }
        let world = World::new(record);
        self.remember(world.clone());
        *self.listing.lock().expect("listing lock") = None;
        Ok(world)
    }

    /// Puts `world` in the cache (waking its streams if it is a new revision).
    fn remember(&self, world: Arc<World>) -> Arc<Slot> {
        let id = world.record.id.clone();
        let mut worlds = self.worlds.write().expect("worlds lock");
        match worlds.get(&id) {
            Some(slot) => {
                *slot.checked.lock().expect("slot lock") = Instant::now();
                slot.tx.send_if_modified(|current| {
                    let newer = world.record.revision > current.record.revision
                        || (world.record.revision == current.record.revision && world.record != current.record);
                    if newer {
                        *current = world.clone();
                    }
                    newer
                });
                slot.clone()
            }
            None => {
                let slot = Arc::new(Slot { tx: watch::channel(world).0, checked: Mutex::new(Instant::now()) });
                worlds.insert(id, slot.clone());
                slot
            }
        }
    }

    /// Reads a world from storage into the cache; `None` if it does not exist.
    async fn fetch(&self, id: &WorldId) -> Result<Option<Arc<Slot>>> {
        match storage::get_value::<WorldRecord>(self.store.as_ref(), &Key::world(id)).await? {
            Some(record) => Ok(Some(self.remember(World::new(record)))),
            None => {
                self.worlds.write().expect("worlds lock").remove(id);
                Ok(None)
            }
        }
    }

    async fn slot(&self, id: &str) -> Result<Arc<Slot>> {
        let id = WorldId::parse(id)?;
        let cached = self.worlds.read().expect("worlds lock").get(&id).cloned();
        if let Some(slot) = cached
            && slot.checked.lock().expect("slot lock").elapsed() < FRESH
        {
            return Ok(slot);
        }
        self.fetch(&id).await?.ok_or_else(|| Error::not_found(format!("no world with id {id}")).with_field("id"))
    }

    /// A world's current revision (at most [`FRESH`] old).
    pub async fn world(&self, id: &str) -> Result<Arc<World>> {
        Ok(self.slot(id).await?.tx.borrow().clone())
    }

    /// Follows a world's revisions (for streams).
    pub async fn watch(&self, id: &str) -> Result<watch::Receiver<Arc<World>>> {
        Ok(self.slot(id).await?.tx.subscribe())
    }

    /// Asks storage again about every world a stream here is watching.
    async fn refresh_watched(&self) {
        let watched: Vec<WorldId> = self
            .worlds
            .read()
            .expect("worlds lock")
            .iter()
            .filter(|(_, s)| s.tx.receiver_count() > 0 && s.checked.lock().expect("slot lock").elapsed() >= FRESH)
            .map(|(id, _)| id.clone())
            .collect();
        for id in watched {
            if let Err(e) = self.fetch(&id).await {
                tracing::warn!(world = %id, error = %e, "could not refresh a watched world");
            }
        }
    }

    /// Applies an owner's change as a new revision, stored before it is
    /// served: read the record and its version, write revision + 1 only if
    /// the record is still at that version, else read again and retry.
    pub async fn update_world(&self, id: &str, account: &Account, change: WorldChange) -> Result<Arc<World>> {
        let wid = WorldId::parse(id)?;
        let key = Key::world(&wid);
        let _guard = self.writes.lock().await;
        for _ in 0..CAS_ATTEMPTS {
            let (current, version) = storage::get_value_versioned::<WorldRecord>(self.store.as_ref(), &key)
                .await?
                .ok_or_else(|| Error::not_found(format!("no world with id {id}")).with_field("id"))?;
            if current.owner.as_deref() != Some(account.name.as_str()) {
                return Err(Error::new(ErrorKind::Forbidden, format!("world {id} belongs to another account")));
            }
            let mut record = current.clone();
            match &change {
                WorldChange::Plugins(plugins) => record.plugins = plugins.clone(),
                WorldChange::Params(params) => record.params = *params,
            }
            if record.plugins == current.plugins && record.params == current.params {
                // A PUT that changes nothing keeps the revision and its cached chunks.
                return Ok(self.remember(World::new(current)).tx.borrow().clone());
            }
            record.revision += 1;
            record.updated_unix_s = now_unix_s();
            if storage::put_value_if(self.store.as_ref(), &key, &record, &version).await? {
                let world = World::new(record);
                tracing::info!(world = %world.record.id, revision = world.record.revision, "world revised");
                self.remember(world.clone());
                *self.listing.lock().expect("listing lock") = None;
                return Ok(world);
            }
            tracing::debug!(world = %id, "the world changed while it was being revised; reading it again");
        }
        Err(Error::new(ErrorKind::Conflict, format!("world {id} kept changing while this change was applied; retry"))
            .with_code("concurrent_change"))
    }

    /// Every world, oldest first (read from storage at most every [`FRESH`]).
    pub async fn worlds(&self) -> Result<Vec<Arc<World>>> {
        if let Some((at, list)) = self.listing.lock().expect("listing lock").as_ref()
            && at.elapsed() < FRESH
        {
            return Ok(list.clone());
        }
        let mut all = Vec::new();
        for key in self.store.list(&Key::worlds()).await? {
            // A world cached within FRESH is not read again.
            let id = key.as_str().strip_prefix("worlds/").and_then(|id| WorldId::parse(id).ok());
            let cached = id.and_then(|id| self.worlds.read().expect("worlds lock").get(&id).cloned());
            if let Some(slot) = cached
                && slot.checked.lock().expect("slot lock").elapsed() < FRESH
            {
                all.push(slot.tx.borrow().clone());
                continue;
            }
            if let Some(record) = storage::get_value::<WorldRecord>(self.store.as_ref(), &key).await? {
                all.push(self.remember(World::new(record)).tx.borrow().clone());
            }
        }
        all.sort_by(|a, b| (a.record.created_unix_s, &a.record.id).cmp(&(b.record.created_unix_s, &b.record.id)));
        *self.listing.lock().expect("listing lock") = Some((Instant::now(), all.clone()));
        Ok(all)
    }

    /// Sends `request` to the node `route` picks, trying up to
    /// `cluster.attempts` nodes: a node that cannot be reached (or is busy)
    /// is skipped, and one that cannot be reached is removed until its next
    /// heartbeat, so the region moves to the next node in its ranking.
    pub(crate) async fn ask_node(&self, by: RouteBy, request: NodeRequest, deadline: Duration) -> Result<NodeResponse> {
        let mut exclude = Vec::new();
        let mut last = None;
        for _ in 0..self.config.cluster.attempts.max(1) {
            let Some((id, link)) = self.router.route(&by, &exclude) else {
                break;
            };
            match link.call(request.clone(), deadline).await {
                Ok(answer) => {
                    self.metrics.node_request("ok");
                    return Ok(answer);
                }
                Err(e) if remote::retry_elsewhere(&e) => {
                    self.metrics.node_request("retried");
                    tracing::warn!(node = %id.0, error = %e, "node request failed; trying the next node");
                    if remote::unreachable(&e) {
                        self.actor.do_send(Leave { id: id.clone() });
                    }
                    exclude.push(id);
                    last = Some(e);
                }
                Err(e) => {
                    self.metrics.node_request("error");
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable("no generation node is live; retry shortly")))
    }

    /// One chunk of a world revision, from the node owning its region, as
    /// its envelope bytes.
    pub async fn chunk(&self, world: &World, coord: ChunkCoord) -> Result<ChunkBytes> {
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
        let by = RouteBy::Region(world.record.id.clone(), coord.region());
        let request = NodeRequest::Chunk { spec: world.spec.clone(), coord };
        let answer = self.ask_node(by, request, chunk_deadline(&world.spec)).await?;
        match answer {
            NodeResponse::Chunk(c) => {
                self.metrics.served(c.stored, c.generated);
                Ok(c)
            }
            other => Err(Error::internal(format!("a node answered a chunk request with {other:?}"))),
        }
    }
}

/// How long one attempt at a chunk may take: generation, plus every hook of
/// every plugin at its deadline and grace, plus loading each plugin once.
pub fn chunk_deadline(spec: &GenSpec) -> Duration {
    let l = &spec.limits;
    let per_plugin = 3 * (l.deadline_ms + 1000) + l.load_deadline_ms + 1000;
    Duration::from_secs(15) + Duration::from_millis(per_plugin * spec.plugins.len() as u64)
}
