//! A node as its own process (`worldloom node`): the internal endpoint
//! coordinators send [`RpcRequest`]s to, health and readiness, metrics, and
//! the heartbeats that register the node with every coordinator.
//!
//! Transport: versioned postcard envelopes in HTTP/1.1 keep-alive POSTs. A
//! coordinator keeps a pool of connections to each node, so requests for
//! many chunks run concurrently without head-of-line blocking; HTTP gives
//! deadlines, retries and load balancing the usual semantics and every proxy
//! and probe understands it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::json;
use worldloom_cluster::protocol::{
    self, HEARTBEAT_PATH, HelloReply, NodeHello, PROTOCOL_HEADER, PROTOCOL_VERSION, RpcRequest, RpcResponse, WireError,
};
use worldloom_cluster::{Error, wire};

use crate::Node;

/// Media type of envelopes on the internal endpoints.
pub const POSTCARD: &str = "application/x-postcard";

/// Largest request a node accepts: a generation spec, or a plugin source to check.
pub const MAX_RPC_BYTES: usize = 32 << 20;

/// What the node's HTTP handlers share.
pub struct NodeState {
    pub node: Arc<Node>,
    pub id: String,
    /// The cluster secret coordinators must present.
    pub secret: String,
    /// The sandbox engine is loaded: the node can take plugin work at once.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    pub metrics: Arc<worldloom_cluster::metrics::Metrics>,
}

/// Whether `req` carries the cluster secret.
pub fn authorised(req: &HttpRequest, secret: &str) -> bool {
    protocol::presents_secret(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()), secret)
}

/// The protocol version a request says it speaks, if it says one.
pub fn protocol_of(req: &HttpRequest) -> Option<u32> {
    protocol::parse_protocol(req.headers().get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok()))
}

fn refusal(status: actix_web::http::StatusCode, code: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "code": code, "message": message }))
}

/// `POST /internal/v1/rpc`.
async fn rpc(state: web::Data<NodeState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    if !authorised(&req, &state.secret) {
        return refusal(StatusCode::UNAUTHORIZED, "unauthorized", "the cluster secret is missing or wrong".into());
    }
    match protocol_of(&req) {
        Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            let msg = protocol::protocol_mismatch("coordinator", v, "node");
            return refusal(StatusCode::CONFLICT, "protocol_mismatch", msg);
        }
        None => {
            return refusal(StatusCode::BAD_REQUEST, "protocol_missing", format!("no {PROTOCOL_HEADER} header"));
        }
    }
    let frame = match wire::decode::<RpcRequest>(&body) {
        Ok(f) => f,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, "malformed_frame", e.message),
    };
    let deadline = Duration::from_millis(frame.deadline_ms.max(1));
    let result = match tokio::time::timeout(deadline, state.node.handle(frame.request)).await {
        Ok(r) => r,
        Err(_) => Err(Error::unavailable(format!("the node did not finish within {} ms", deadline.as_millis()))),
    };
    let reply = RpcResponse { id: frame.id, result: result.map_err(|e| WireError::from(&e)) };
    HttpResponse::Ok().content_type(POSTCARD).body(wire::encode(&reply))
}

async fn healthz(state: web::Data<NodeState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": "node",
        "id": state.id,
        "workers": state.node.workers(),
        "ready": (state.ready)(),
    }))
}

/// Ready once the sandbox engine is loaded (a node never compiles or loads
/// the interpreter inside a request).
async fn readyz(state: web::Data<NodeState>) -> HttpResponse {
    if (state.ready)() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "starting", "message": "the sandbox engine is loading" }))
    }
}

async fn metrics(state: web::Data<NodeState>) -> HttpResponse {
    HttpResponse::Ok().content_type(worldloom_cluster::metrics::CONTENT_TYPE).body(state.metrics.render())
}

/// Mounts a node's endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_RPC_BYTES))
        .route(protocol::RPC_PATH, web::post().to(rpc))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Why heartbeats stopped for good.
#[derive(Debug)]
pub enum Refused {
    /// A coordinator speaks another protocol version: the node must exit.
    Protocol(String),
    /// A coordinator refused the cluster secret.
    Secret(String),
}

/// The coordinator base URLs to send heartbeats to this round. An entry
/// `dns+http://NAME:PORT` stands for every address `NAME` resolves to now
/// (on Kubernetes, a headless Service: every coordinator replica), so
/// replicas that come and go are found without a restart.
pub async fn resolve(coordinators: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for c in coordinators {
        let Some(rest) = c.strip_prefix("dns+") else {
            out.push(c.clone());
            continue;
        };
        let (scheme, authority) = rest.split_once("://").unwrap_or(("http", rest));
        let authority = authority.trim_end_matches('/');
        match tokio::net::lookup_host(authority).await {
            Ok(addrs) => {
                let mut found: Vec<String> = addrs.map(|a| format!("{scheme}://{a}")).collect();
                found.sort();
                found.dedup();
                out.extend(found);
            }
            Err(e) => tracing::debug!(name = %authority, error = %e, "coordinator name does not resolve yet"),
        }
    }
    out
}

/// What one heartbeat to one coordinator came to.
enum Beat {
    /// Delivered; the coordinator asks for this interval.
    Delivered(Duration),
    /// Not delivered (unreachable, an error); try again next time.
    Missed,
    Refused(Refused),
}

async fn beat(client: &reqwest::Client, base: &str, secret: &str, protocol: u32, body: Vec<u8>) -> Beat {
    let url = format!("{}{HEARTBEAT_PATH}", base.trim_end_matches('/'));
    let res = client
        .post(&url)
        .bearer_auth(secret)
        .header(PROTOCOL_HEADER, protocol.to_string())
        .header(reqwest::header::CONTENT_TYPE, POSTCARD)
        .timeout(Duration::from_secs(2))
        .body(body)
        .send()
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(coordinator = %base, error = %e, "heartbeat not delivered");
            return Beat::Missed;
        }
    };
    let status = res.status();
    let bytes = res.bytes().await.unwrap_or_default();
    match status.as_u16() {
        200 => match wire::decode::<HelloReply>(&bytes) {
            Ok(reply) => Beat::Delivered(Duration::from_millis(reply.heartbeat_ms.clamp(10, 60_000))),
            Err(e) => {
                tracing::warn!(coordinator = %base, error = %e, "unreadable heartbeat reply");
                Beat::Missed
            }
        },
        409 => Beat::Refused(Refused::Protocol(message_of(&bytes))),
        401 => Beat::Refused(Refused::Secret(format!("coordinator {base}: {}", message_of(&bytes)))),
        s => {
            tracing::warn!(coordinator = %base, status = s, body = %message_of(&bytes), "heartbeat refused");
            Beat::Missed
        }
    }
}

/// Registers with every coordinator and keeps sending heartbeats, to all
/// of them at once (a coordinator that does not answer delays no other),
/// until a coordinator refuses the node for good. Unreachable coordinators
/// are retried at the heartbeat interval (a restarted coordinator picks the
/// node up again on its own).
pub async fn heartbeats(
    client: reqwest::Client,
    coordinators: Vec<String>,
    secret: String,
    hello: impl Fn() -> NodeHello,
    mut interval: Duration,
) -> Refused {
    loop {
        let started = tokio::time::Instant::now();
        let hello = hello();
        let body = wire::encode(&hello);
        let targets = resolve(&coordinators).await;
        let beats = futures_util::future::join_all(
            targets.iter().map(|base| beat(&client, base, &secret, hello.protocol, body.clone())),
        )
        .await;
        for b in beats {
            match b {
                Beat::Delivered(every) => interval = every,
                Beat::Missed => {}
                Beat::Refused(why) => return why,
            }
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn dns_entries_stand_for_every_address_the_name_resolves_to() {
        let list = vec!["http://10.0.0.1:8080".to_owned(), "dns+http://localhost:8080".to_owned()];
        let got = super::resolve(&list).await;
        assert_eq!(got[0], "http://10.0.0.1:8080");
        assert!(got[1..].iter().any(|u| u == "http://127.0.0.1:8080"), "{got:?}");
        assert!(super::resolve(&["dns+http://no-such-name.invalid:1".to_owned()]).await.is_empty());
    }
}
