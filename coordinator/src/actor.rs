//! The coordinator actor: owns node membership and routes each region of a
//! world to one live node by rendezvous hashing.
//!
//! The assignment is a pure function of the live set (`placement::owner`),
//! so coordinator replicas that see the same nodes agree on every region
//! without talking to each other; a join or a leave moves only that node's
//! share. Remote nodes join by heartbeat and are removed when they miss
//! heartbeats for `node_timeout`, or at once when a request to them fails
//! (they come back with their next heartbeat if they are alive).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::metrics::Gauge;
use worldloom_cluster::placement::{self, NodeId};
use worldloom_cluster::protocol::NodeService;
use worldloom_worldgen::RegionCoord;

use crate::remote::RemoteNode;

/// How to reach one node.
#[derive(Clone)]
pub enum NodeLink {
    /// A node in this process (`worldloom serve`), called directly.
    Local(Arc<dyn NodeService>),
    /// A node process, over its internal HTTP endpoint.
    Remote(Arc<RemoteNode>),
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeLink::Local(_) => f.write_str("Local"),
            NodeLink::Remote(r) => f.debug_tuple("Remote").field(&r.url).finish(),
        }
    }
}

/// The live nodes as the actor last published them. Routing a request
/// reads this snapshot on the caller's thread: no message to the actor,
/// no thread hand-off per chunk.
#[derive(Default)]
struct RouteTable {
    ids: Vec<NodeId>,
    links: BTreeMap<NodeId, NodeLink>,
}

/// A handle on the actor's published routing table.
#[derive(Clone, Default)]
pub struct Router(Arc<RwLock<Arc<RouteTable>>>);

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Router").field(&self.table().ids).finish()
    }
}

impl Router {
    fn table(&self) -> Arc<RouteTable> {
        self.0.read().expect("route table lock").clone()
    }

    /// Which live node takes a request placed `by`, skipping `exclude`
    /// (nodes that already failed it).
    pub fn route(&self, by: &RouteBy, exclude: &[NodeId]) -> Option<(NodeId, NodeLink)> {
        let table = self.table();
        let filtered: Vec<NodeId>;
        let ids = if exclude.is_empty() {
            &table.ids
        } else {
            filtered = table.ids.iter().filter(|n| !exclude.contains(n)).cloned().collect();
            &filtered
        };
        let id = match by {
            RouteBy::Region(world, region) => placement::owner(ids, world, *region),
            RouteBy::Key(key) => placement::owner_of_key(ids, key),
        }?;
        table.links.get(id).map(|l| (id.clone(), l.clone()))
    }
}

/// A node in this process became live (it never expires).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub id: NodeId,
    pub link: NodeLink,
}

/// A remote node's heartbeat: joins it, or keeps it live.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    pub id: NodeId,
    pub url: String,
    pub ready: bool,
}

/// A node is gone (or a request to it failed); its regions move to the others.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub id: NodeId,
}

/// What a request is placed by.
#[derive(Clone, Debug)]
pub enum RouteBy {
    /// A region of a world (chunk generation).
    Region(WorldId, RegionCoord),
    /// Any other keyed work (checking a plugin, by its source's hash).
    Key(String),
}

/// The live nodes.
#[derive(Message)]
#[rtype(result = "Vec<MemberView>")]
pub struct Members;

/// A live node as `/healthz` and `/metrics` show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberView {
    pub id: String,
    pub url: Option<String>,
    pub ready: bool,
    pub last_seen_ms: u64,
}

struct Member {
    link: NodeLink,
    url: Option<String>,
    ready: bool,
    /// `None`: a local node, which never expires.
    last_seen: Option<Instant>,
}

pub struct CoordinatorActor {
    nodes: BTreeMap<NodeId, Member>,
    router: Router,
    node_timeout: Duration,
    client: reqwest::Client,
    secret: String,
    live_nodes: Gauge,
}

impl CoordinatorActor {
    /// `secret`: what this coordinator presents to remote nodes;
    /// `live_nodes`: the gauge it keeps at the number of live nodes.
    pub fn new(node_timeout: Duration, client: reqwest::Client, secret: String, live_nodes: Gauge) -> Self {
        Self { nodes: BTreeMap::new(), router: Router::default(), node_timeout, client, secret, live_nodes }
    }

    /// The routing table this actor publishes (take it before starting the actor).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Publishes the live set after a join or a leave.
    fn changed(&mut self) {
        let table = RouteTable {
            ids: self.nodes.keys().cloned().collect(),
            links: self.nodes.iter().map(|(id, m)| (id.clone(), m.link.clone())).collect(),
        };
        self.live_nodes.set(table.ids.len() as i64);
        *self.router.0.write().expect("route table lock") = Arc::new(table);
    }
}

impl Default for CoordinatorActor {
    fn default() -> Self {
        Self::new(Duration::from_secs(3), reqwest::Client::new(), String::new(), Gauge::default())
    }
}

impl Actor for CoordinatorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.node_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        ctx.run_interval(every, |actor, _| {
            let timeout = actor.node_timeout;
            let before = actor.nodes.len();
            actor.nodes.retain(|id, m| {
                let live = m.last_seen.is_none_or(|t| t.elapsed() <= timeout);
                if !live {
                    tracing::warn!(node = %id.0, "node stopped sending heartbeats; removed");
                }
                live
            });
            if actor.nodes.len() != before {
                actor.changed();
            }
        });
    }
}

impl Handler<Join> for CoordinatorActor {
    type Result = ();
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        tracing::info!(node = %msg.id.0, "node joined");
        self.nodes.insert(msg.id, Member { link: msg.link, url: None, ready: true, last_seen: None });
        self.changed();
    }
}

impl Handler<Heartbeat> for CoordinatorActor {
    type Result = ();
    fn handle(&mut self, msg: Heartbeat, _: &mut Context<Self>) {
        match self.nodes.get_mut(&msg.id) {
            Some(m) if m.url.as_deref() == Some(msg.url.as_str()) => {
                m.last_seen = Some(Instant::now());
                m.ready = msg.ready;
            }
            _ => {
                tracing::info!(node = %msg.id.0, url = %msg.url, "node joined");
                let link = NodeLink::Remote(Arc::new(RemoteNode::new(
                    msg.id.clone(),
                    msg.url.clone(),
                    self.client.clone(),
                    self.secret.clone(),
                )));
                let member = Member { link, url: Some(msg.url), ready: msg.ready, last_seen: Some(Instant::now()) };
                self.nodes.insert(msg.id, member);
                self.changed();
            }
        }
    }
}

impl Handler<Leave> for CoordinatorActor {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        // A local node stays: its actor lives as long as this process.
        if self.nodes.get(&msg.id).is_some_and(|m| m.last_seen.is_some()) {
            tracing::warn!(node = %msg.id.0, "node removed after a failed request");
            self.nodes.remove(&msg.id);
            self.changed();
        }
    }
}

impl Handler<Members> for CoordinatorActor {
    type Result = Vec<MemberView>;
    fn handle(&mut self, _: Members, _: &mut Context<Self>) -> Vec<MemberView> {
        self.nodes
            .iter()
            .map(|(id, m)| MemberView {
                id: id.0.clone(),
                url: m.url.clone(),
                ready: m.ready,
                last_seen_ms: m.last_seen.map_or(0, |t| t.elapsed().as_millis() as u64),
            })
            .collect()
    }
}
