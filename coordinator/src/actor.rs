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
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Message, Recipient};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::metrics::Gauge;
use worldloom_cluster::placement::{self, NodeId};
use worldloom_cluster::protocol::NodeRequest;
use worldloom_worldgen::RegionCoord;

use crate::remote::RemoteNode;

/// How to reach one node.
#[derive(Clone, Debug)]
pub enum NodeLink {
    /// A node actor in this process (`worldloom serve`).
    Local(Recipient<NodeRequest>),
    /// A node process, over its internal HTTP endpoint.
    Remote(std::sync::Arc<RemoteNode>),
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

/// Which node takes this request, skipping `exclude` (nodes that already
/// failed it)?
#[derive(Message)]
#[rtype(result = "Option<(NodeId, NodeLink)>")]
pub struct Route {
    pub by: RouteBy,
    pub exclude: Vec<NodeId>,
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
    ids: Vec<NodeId>,
    node_timeout: Duration,
    client: reqwest::Client,
    secret: String,
    live_nodes: Gauge,
}

impl CoordinatorActor {
    /// `secret`: what this coordinator presents to remote nodes;
    /// `live_nodes`: the gauge it keeps at the number of live nodes.
    pub fn new(node_timeout: Duration, client: reqwest::Client, secret: String, live_nodes: Gauge) -> Self {
        Self { nodes: BTreeMap::new(), ids: Vec::new(), node_timeout, client, secret, live_nodes }
    }

    fn changed(&mut self) {
        self.ids = self.nodes.keys().cloned().collect();
        self.live_nodes.set(self.ids.len() as i64);
    }

    fn pick(&self, owner: impl Fn(&[NodeId]) -> Option<NodeId>, exclude: &[NodeId]) -> Option<(NodeId, NodeLink)> {
        let ids: Vec<NodeId> = if exclude.is_empty() {
            self.ids.clone()
        } else {
            self.ids.iter().filter(|n| !exclude.contains(n)).cloned().collect()
        };
        let id = owner(&ids)?;
        self.nodes.get(&id).map(|m| (id, m.link.clone()))
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
                let link = NodeLink::Remote(std::sync::Arc::new(RemoteNode::new(
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

impl Handler<Route> for CoordinatorActor {
    type Result = Option<(NodeId, NodeLink)>;
    fn handle(&mut self, msg: Route, _: &mut Context<Self>) -> Self::Result {
        match &msg.by {
            RouteBy::Region(world, region) => {
                self.pick(|ids| placement::owner(ids, world, *region).cloned(), &msg.exclude)
            }
            RouteBy::Key(key) => self.pick(|ids| placement::owner_of_key(ids, key).cloned(), &msg.exclude),
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
