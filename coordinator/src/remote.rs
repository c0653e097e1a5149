//! Talking to a node: in process (a direct `NodeService` call) or remote (a versioned
//! postcard frame in an HTTP/1.1 keep-alive POST to the node's internal
//! endpoint, with a request id and a per-attempt deadline). Either way the
//! request and the answer are the same `cluster::protocol` types.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use worldloom_cluster::placement::NodeId;
use worldloom_cluster::protocol::{
    self, NodeRequest, NodeResponse, PROTOCOL_HEADER, PROTOCOL_VERSION, RPC_PATH, RpcRequest, RpcResponse,
};
use worldloom_cluster::{Error, ErrorKind, Result, wire};

use crate::actor::NodeLink;

/// A node process.
#[derive(Debug)]
pub struct RemoteNode {
    pub id: NodeId,
    pub url: String,
    client: reqwest::Client,
    secret: String,
    next_id: AtomicU64,
}

impl RemoteNode {
    pub fn new(id: NodeId, url: String, client: reqwest::Client, secret: String) -> Self {
        Self { id, url, client, secret, next_id: AtomicU64::new(1) }
    }

    async fn call(&self, request: NodeRequest, deadline: Duration) -> Result<NodeResponse> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = RpcRequest { id, deadline_ms: deadline.as_millis() as u64, request };
        let down = |why: String| Error::unavailable(format!("node {}: {why}", self.id.0)).with_code(UNREACHABLE);
        let res = self
            .client
            .post(format!("{}{RPC_PATH}", self.url.trim_end_matches('/')))
            .bearer_auth(&self.secret)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/x-postcard")
            // A little longer than the node's own deadline, so the node's answer wins a tie.
            .timeout(deadline + Duration::from_millis(500))
            .body(wire::encode(&frame))
            .send()
            .await
            .map_err(|e| {
                down(if e.is_timeout() {
                    format!("no answer within {} ms", deadline.as_millis())
                } else {
                    e.to_string()
                })
            })?;
        let status = res.status();
        let body = res.bytes().await.map_err(|e| down(format!("reading the answer: {e}")))?;
        if status.as_u16() == 409 {
            // A node of another protocol version: never route to it.
            return Err(down(String::from_utf8_lossy(&body).into_owned()));
        }
        if !status.is_success() {
            return Err(down(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]))));
        }
        let reply: RpcResponse =
            wire::decode(&body).map_err(|e| down(format!("an unreadable answer: {}", e.message)))?;
        if reply.id != id {
            return Err(down(format!("answered request {} instead of {id}", reply.id)));
        }
        reply.result.map_err(Error::from)
    }
}

impl NodeLink {
    /// Sends one request and waits for the answer until `deadline`. A node
    /// that cannot be reached or does not answer in time is `Unavailable`;
    /// errors the node itself returns keep their kind.
    pub async fn call(&self, request: NodeRequest, deadline: Duration) -> Result<NodeResponse> {
        match self {
            NodeLink::Local(node) => match tokio::time::timeout(deadline, node.clone().handle(request)).await {
                Ok(answer) => answer,
                Err(_) => {
                    Err(Error::unavailable(format!("the local node did not answer within {} ms", deadline.as_millis())))
                }
            },
            NodeLink::Remote(node) => node.call(request, deadline).await,
        }
    }
}

/// The code of a failure to reach a node at all (connection refused or
/// reset, no answer in time, an unreadable answer): the node is removed
/// until its next heartbeat.
pub const UNREACHABLE: &str = "node_unreachable";

/// Whether a failed call is worth another attempt on another node (the
/// node could not be reached, or said it is busy).
pub fn retry_elsewhere(e: &Error) -> bool {
    e.kind == ErrorKind::Unavailable
}

/// Whether the node itself is gone (not merely busy).
pub fn unreachable(e: &Error) -> bool {
    e.code == Some(UNREACHABLE)
}

/// The message a coordinator answers a node of another protocol version with.
pub fn refusal(theirs: u32) -> String {
    protocol::protocol_mismatch("node", theirs, "coordinator")
}
