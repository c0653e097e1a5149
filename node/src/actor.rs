//! The node as an actix actor: the message interface coordinators use.

use std::sync::Arc;

use actix::{Actor, Context, Handler, ResponseFuture};
use worldloom_cluster::Result;
use worldloom_cluster::protocol::{NodeRequest, NodeResponse};

use crate::Node;

/// The actor wrapping a [`Node`]. Handlers only start work; generation runs
/// on the node's worker threads, so the actor's event loop never blocks.
pub struct NodeActor {
    node: Arc<Node>,
}

impl NodeActor {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

impl Actor for NodeActor {
    type Context = Context<Self>;
}

impl Handler<NodeRequest> for NodeActor {
    type Result = ResponseFuture<Result<NodeResponse>>;

    fn handle(&mut self, msg: NodeRequest, _: &mut Context<Self>) -> Self::Result {
        let node = self.node.clone();
        Box::pin(async move { node.handle(msg).await })
    }
}
