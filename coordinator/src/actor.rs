//! The coordinator actor: owns node membership and routes each region of a
//! world to one live node by rendezvous hashing.

use std::collections::BTreeMap;

use actix::{Actor, Context, Handler, Message, Recipient};
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::placement::{self, NodeId};
use worldloom_cluster::protocol::{CheckPlugin, Generate};
use worldloom_worldgen::RegionCoord;

/// How to reach one node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    pub generate: Recipient<Generate>,
    pub check: Recipient<CheckPlugin>,
}

/// A node became live.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub id: NodeId,
    pub handle: NodeHandle,
}

/// A node is gone; its regions move to the others.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub id: NodeId,
}

/// Which node generates this region of this world?
#[derive(Message)]
#[rtype(result = "Option<NodeHandle>")]
pub struct Route {
    pub world: WorldId,
    pub region: RegionCoord,
}

/// Which node should check a plugin? Spreads checks by the source's hash.
#[derive(Message)]
#[rtype(result = "Option<NodeHandle>")]
pub struct RouteCheck {
    pub sha256: String,
}

/// How many nodes are live?
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountNodes;

#[derive(Default)]
pub struct CoordinatorActor {
    nodes: BTreeMap<NodeId, NodeHandle>,
    ids: Vec<NodeId>,
}

impl Actor for CoordinatorActor {
    type Context = Context<Self>;
}

impl Handler<Join> for CoordinatorActor {
    type Result = ();
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        tracing::info!(node = %msg.id.0, "node joined");
        self.nodes.insert(msg.id, msg.handle);
        self.ids = self.nodes.keys().cloned().collect();
    }
}

impl Handler<Leave> for CoordinatorActor {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        tracing::info!(node = %msg.id.0, "node left");
        self.nodes.remove(&msg.id);
        self.ids = self.nodes.keys().cloned().collect();
    }
}

impl Handler<Route> for CoordinatorActor {
    type Result = Option<NodeHandle>;
    fn handle(&mut self, msg: Route, _: &mut Context<Self>) -> Option<NodeHandle> {
        let id = placement::owner(&self.ids, &msg.world, msg.region)?;
        self.nodes.get(id).cloned()
    }
}

impl Handler<RouteCheck> for CoordinatorActor {
    type Result = Option<NodeHandle>;
    fn handle(&mut self, msg: RouteCheck, _: &mut Context<Self>) -> Option<NodeHandle> {
        let id = placement::owner_of_key(&self.ids, &msg.sha256)?;
        self.nodes.get(id).cloned()
    }
}

impl Handler<CountNodes> for CoordinatorActor {
    type Result = usize;
    fn handle(&mut self, _: CountNodes, _: &mut Context<Self>) -> usize {
        self.nodes.len()
    }
}
