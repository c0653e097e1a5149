//! `GET /v1/worlds/{id}/stream`: chunks over a WebSocket, nearest first.
//!
//! The client sends `{"center":[cx,cz],"radius":r}` text frames, as often as
//! it moves. For each subscription the server sends every chunk of the
//! square it has not sent on this socket before, nearest to the centre
//! first, one binary postcard frame per chunk, then a `{"done":{...}}` text
//! frame. A new subscription replaces the unfinished rest of the previous
//! one. Bad input gets a `{"error":{...}}` text frame; the socket stays open.
//! A frame that breaks the WebSocket protocol or the 4 KiB limit gets a
//! `protocol_error` frame and the close code RFC 6455 gives it (1009 too
//! big, 1007 not UTF-8, 1002 otherwise); a client's close is answered 1000.
//!
//! When the world's owner changes its plugins or parameters, the socket gets
//! a `{"revision":{"revision":n,"previous":m}}` text frame, forgets what it
//! had (old-revision chunks are never valid for the new one) and receives
//! the new revision's chunks of its last subscription, nearest first again.
//!
//! What a socket remembers having sent is bounded: on every subscription it
//! forgets the chunks farther than [`SENT_MARGIN`] chunks outside the new
//! square, so a client that sweeps the map does not grow server memory (the
//! record never holds more than `(2 * (radius + SENT_MARGIN) + 1)^2`
//! chunks). A client that moves back more than that margin receives those
//! chunks again; clients are expected to cache what they keep showing.
//!
//! A chunk no node could take right now (a node's generation queue is full:
//! code `busy`, or no node is live) is tried [`CHUNK_ATTEMPTS`] times, then
//! reported in a `{"error":{...},"chunk":[cx,cz]}` frame and counted as
//! `failed` in the `done` frame: a stream never waits forever on a full
//! queue. If the world itself disappears, the socket gets an error frame
//! with code `world_gone` and is closed. When the server stops cleanly
//! (SIGTERM), every socket gets an error frame with code `shutting_down`
//! and a close frame (1001, going away).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, Session};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use worldloom_cluster::metrics::Gauge;
use worldloom_cluster::protocol::ChunkBytes;
use worldloom_cluster::{Error, ErrorKind};
use worldloom_worldgen::ChunkCoord;

use crate::api::ErrorBody;
use crate::http::{ApiError, AppState};
use crate::{Coordinator, World};

/// Largest accepted client frame; subscriptions are tiny.
const MAX_CLIENT_FRAME: usize = 4 << 10;

/// A subscription as the client sent it. The numbers are read wide (any
/// JSON integer up to 64 bits) so that an integer out of range is refused
/// by what it is (`radius_too_large`, `coordinate_out_of_range`), not as a
/// malformed frame.
#[derive(Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    center: [i64; 2],
    radius: u64,
}

/// The chunks of the square of `radius` around `center`, nearest first; ties
/// broken by coordinate so the order is the same on every run.
pub fn square_nearest_first(center: ChunkCoord, radius: u32) -> Vec<ChunkCoord> {
    let r = i64::from(radius);
    let mut coords: Vec<ChunkCoord> = (-r..=r)
        .flat_map(|dx| (-r..=r).map(move |dz| (dx, dz)))
        .filter_map(|(dx, dz)| {
            let cx = i32::try_from(i64::from(center.cx) + dx).ok()?;
            let cz = i32::try_from(i64::from(center.cz) + dz).ok()?;
            Some(ChunkCoord::new(cx, cz))
        })
        .collect();
    coords.sort_by_key(|c| (c.distance2(center), c.cz, c.cx));
    coords
}

type Plan = Pin<Box<dyn Stream<Item = (ChunkCoord, Result<ChunkBytes, Error>)>>>;

/// Chunks outside the current square (in ring distance) a socket still
/// remembers having sent, so a client moving back and forth by up to this
/// much is not sent them again.
pub const SENT_MARGIN: u32 = 8;

/// The chunks a socket has sent (of the current revision), counted in the
/// `worldloom_coordinator_stream_sent_entries` gauge while it is alive.
struct Sent {
    set: HashSet<ChunkCoord>,
    gauge: Gauge,
}

impl Sent {
    fn new(gauge: Gauge) -> Self {
        Sent { set: HashSet::new(), gauge }
    }

    fn contains(&self, c: &ChunkCoord) -> bool {
        self.set.contains(c)
    }

    fn insert(&mut self, c: ChunkCoord) {
        if self.set.insert(c) {
            self.gauge.inc();
        }
    }

    fn clear(&mut self) {
        self.gauge.dec_by(self.set.len() as i64);
        self.set.clear();
    }

    /// Forgets every chunk farther than [`SENT_MARGIN`] outside the square
    /// of `radius` around `center`.
    fn keep_near(&mut self, center: ChunkCoord, radius: u32) {
        let keep = i64::from(radius) + i64::from(SENT_MARGIN);
        let before = self.set.len();
        self.set.retain(|c| ring_distance(*c, center) <= keep);
        self.gauge.dec_by((before - self.set.len()) as i64);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Chebyshev distance without overflow at the edges of `i32`.
fn ring_distance(a: ChunkCoord, b: ChunkCoord) -> i64 {
    (i64::from(a.cx) - i64::from(b.cx)).abs().max((i64::from(a.cz) - i64::from(b.cz)).abs())
}

struct Subscription {
    center: ChunkCoord,
    radius: u32,
    plan: Plan,
    sent: usize,
    already_had: usize,
    /// Chunks that still failed after every attempt (each got an error frame).
    failed: usize,
}

/// Attempts a stream makes at one chunk (each of them may itself try
/// several nodes) before it reports the chunk as failed.
const CHUNK_ATTEMPTS: u32 = 3;

/// One chunk for a stream: a request that fails because no node could take
/// it right now is tried again after a short pause, so a node that died or
/// a region that is moving does not drop the chunk.
async fn chunk_with_retries(coordinator: &Coordinator, world: &World, coord: ChunkCoord) -> Result<ChunkBytes, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match coordinator.chunk(world, coord).await {
            Err(e) if e.kind == ErrorKind::Unavailable && attempt < CHUNK_ATTEMPTS => {
                tokio::time::sleep(std::time::Duration::from_millis(250 * u64::from(attempt))).await;
            }
            r => return r,
        }
    }
}

pub(crate) async fn stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let revisions = state.coordinator.watch(&id).await?;
    let (response, session, messages) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::from(
            Error::new(ErrorKind::Malformed, format!("not a WebSocket upgrade: {e}")).with_code("not_websocket"),
        )
    })?;
    let messages =
        messages.max_frame_size(MAX_CLIENT_FRAME).aggregate_continuations().max_continuation_size(MAX_CLIENT_FRAME);
    let coordinator = state.coordinator.clone();
    actix_web::rt::spawn(async move {
        let streams = coordinator.metrics.open_streams.clone();
        streams.inc();
        if let Err(e) = serve(coordinator, revisions, session, messages).await {
            tracing::debug!(error = %e, "stream ended");
        }
        streams.dec();
    });
    Ok(response)
}

/// The close code (RFC 6455, section 7.4.1) and the message for a client
/// frame that breaks the WebSocket protocol or this stream's limits.
fn protocol_violation(e: &actix_ws::ProtocolError) -> (actix_ws::CloseCode, String) {
    use actix_ws::{CloseCode, ProtocolError};
    match e {
        ProtocolError::Overflow => (
            CloseCode::Size,
            format!(
                "a client frame or message is larger than {MAX_CLIENT_FRAME} bytes; subscriptions are tiny \
                 ({{\"center\":[cx,cz],\"radius\":r}})"
            ),
        ),
        // actix-ws reports a fragmented message over the limit as this I/O error.
        ProtocolError::Io(io) if io.to_string().contains("maximum continuation size") => (
            CloseCode::Size,
            format!("a fragmented client message is larger than {MAX_CLIENT_FRAME} bytes; subscriptions are tiny"),
        ),
        ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            (CloseCode::Invalid, "a text frame is not valid UTF-8".to_owned())
        }
        other => (CloseCode::Protocol, format!("WebSocket protocol error: {other}")),
    }
}

fn error_frame(e: &Error) -> String {
    json!({ "error": ErrorBody::from(e) }).to_string()
}

fn parse_subscription(text: &str) -> Result<Subscribe, Error> {
    crate::api::parse_json(text.as_bytes()).map_err(|mut e| {
        e.code = Some("invalid_subscription");
        e.message = format!("{}; send {{\"center\":[cx,cz],\"radius\":r}}", e.message);
        e
    })
}

fn subscribe(
    coordinator: &Arc<Coordinator>,
    world: &Arc<World>,
    sub: Subscribe,
    have: &mut Sent,
) -> Result<Subscription, Error> {
    let max = coordinator.config.stream.max_radius;
    let radius = match u32::try_from(sub.radius) {
        Ok(r) if r <= max => r,
        _ => {
            return Err(Error::invalid(
                "radius",
                format!("radius {} is larger than this server's maximum of {max}", sub.radius),
            )
            .with_code("radius_too_large"));
        }
    };
    let bound = worldloom_worldgen::chunk::MAX_CHUNK_COORD.unsigned_abs() as u64;
    let [cx, cz] = sub.center;
    let center = match (i32::try_from(cx), i32::try_from(cz)) {
        (Ok(x), Ok(z)) if cx.unsigned_abs() <= bound && cz.unsigned_abs() <= bound => ChunkCoord::new(x, z),
        _ => {
            return Err(Error::invalid(
                "center",
                format!("center [{cx}, {cz}] is out of range: each coordinate must be within ±{bound}"),
            )
            .with_code("coordinate_out_of_range"));
        }
    };
    have.keep_near(center, radius);
    let all = square_nearest_first(center, radius);
    let total = all.len();
    let todo: Vec<ChunkCoord> = all.into_iter().filter(|c| !have.contains(c)).collect();
    let already_had = total - todo.len();
    let inflight = coordinator.config.stream.inflight;
    let (coordinator, world) = (coordinator.clone(), world.clone());
    let plan = stream::iter(todo)
        .map(move |coord| {
            let (coordinator, world) = (coordinator.clone(), world.clone());
            async move { (coord, chunk_with_retries(&coordinator, &world, coord).await) }
        })
        .buffered(inflight);
    Ok(Subscription { center, radius, plan: Box::pin(plan), sent: 0, already_had, failed: 0 })
}

async fn serve(
    coordinator: Arc<Coordinator>,
    mut revisions: watch::Receiver<Arc<World>>,
    mut session: Session,
    mut messages: impl Stream<Item = Result<AggregatedMessage, actix_ws::ProtocolError>> + Unpin,
) -> Result<(), actix_ws::Closed> {
    let mut world = revisions.borrow_and_update().clone();
    let mut have = Sent::new(coordinator.metrics.stream_sent_entries.clone());
    let mut current: Option<Subscription> = None;
    let mut last: Option<Subscribe> = None;
    let stopping = coordinator.clone();
    let shutting_down = stopping.shutting_down();
    tokio::pin!(shutting_down);
    loop {
        tokio::select! {
            () = &mut shutting_down => {
                // A clean stop of the server: say so, close the socket
                // properly and end (the client reconnects elsewhere or later).
                let e = Error::new(
                    ErrorKind::Unavailable,
                    "the server is shutting down; this stream is closed, reconnect to resume",
                )
                .with_code("shutting_down");
                let _ = session.text(error_frame(&e)).await;
                let reason = actix_ws::CloseReason {
                    code: actix_ws::CloseCode::Away,
                    description: Some("server shutting down".into()),
                };
                let _ = session.close(Some(reason)).await;
                return Ok(());
            },
            changed = revisions.changed() => {
                if changed.is_err() {
                    // The world's notifier is gone (its cache slot was
                    // dropped: the world vanished from storage). Follow the
                    // world afresh if it still exists; otherwise end the
                    // stream. Never poll the closed channel again: it is
                    // always ready and would spin this task.
                    match coordinator.watch(world.record.id.as_str()).await {
                        Ok(fresh) if fresh.has_changed().is_ok() => {
                            revisions = fresh;
                            // Handle the fresh channel's value as a change if it is one.
                            revisions.mark_changed();
                            continue;
                        }
                        result => {
                            let why = match result {
                                Err(e) if e.kind != ErrorKind::NotFound => e.message,
                                _ => format!("world {} no longer exists", world.record.id),
                            };
                            let e = Error::new(ErrorKind::NotFound, format!("{why}; this stream is closed"))
                                .with_code("world_gone");
                            let _ = session.text(error_frame(&e)).await;
                            let reason = actix_ws::CloseReason {
                                code: actix_ws::CloseCode::Away,
                                description: Some("world gone".into()),
                            };
                            let _ = session.close(Some(reason)).await;
                            return Ok(());
                        }
                    }
                }
                let fresh = revisions.borrow_and_update().clone();
                if fresh.record.revision == world.record.revision && fresh.record == world.record {
                    continue;
                }
                let previous = world.record.revision;
                world = fresh;
                let frame = json!({ "revision": { "revision": world.record.revision, "previous": previous } });
                session.text(frame.to_string()).await?;
                have.clear();
                current = match last {
                    Some(sub) => subscribe(&coordinator, &world, sub, &mut have).ok(),
                    None => None,
                };
            },
            msg = messages.next() => match msg {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    match parse_subscription(&text).and_then(|sub| {
                        let planned = subscribe(&coordinator, &world, sub, &mut have)?;
                        Ok((sub, planned))
                    }) {
                        Ok((sub, planned)) => {
                            last = Some(sub);
                            current = Some(planned);
                        }
                        Err(e) => session.text(error_frame(&e)).await?,
                    }
                }
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    let e = Error::new(ErrorKind::Malformed, "send subscriptions as JSON text frames")
                        .with_code("invalid_subscription");
                    session.text(error_frame(&e)).await?;
                }
                Some(Ok(AggregatedMessage::Ping(bytes))) => session.pong(&bytes).await?,
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) => {
                    // Answer the client's close (RFC 6455, section 5.5.1).
                    let _ = session.close(Some(actix_ws::CloseCode::Normal.into())).await;
                    return Ok(());
                }
                None => break,
                Some(Err(e)) => {
                    let (code, message) = protocol_violation(&e);
                    let e = Error::new(ErrorKind::Malformed, message).with_code("protocol_error");
                    let _ = session.text(error_frame(&e)).await;
                    let reason = actix_ws::CloseReason { code, description: Some("protocol error".into()) };
                    let _ = session.close(Some(reason)).await;
                    return Ok(());
                }
            },
            item = async { current.as_mut().expect("guarded").plan.next().await }, if current.is_some() => {
                let sub = current.as_mut().expect("guarded");
                match item {
                    Some((coord, Ok(reply))) => {
                        session.binary(reply.envelope.clone()).await?;
                        // A provisional chunk is sent again on the next subscription.
                        if reply.stored {
                            have.insert(coord);
                        }
                        sub.sent += 1;
                    }
                    Some((coord, Err(e))) => {
                        sub.failed += 1;
                        let frame = json!({ "error": ErrorBody::from(&e), "chunk": [coord.cx, coord.cz] });
                        session.text(frame.to_string()).await?;
                    }
                    None => {
                        let done = json!({ "done": {
                            "center": [sub.center.cx, sub.center.cz],
                            "radius": sub.radius,
                            "sent": sub.sent,
                            "already_had": sub.already_had,
                            "failed": sub.failed,
                            "revision": world.record.revision,
                        }});
                        session.text(done.to_string()).await?;
                        current = None;
                    }
                }
            }
        }
    }
    let _ = session.close(None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squares_are_complete_and_nearest_first() {
        let c = ChunkCoord::new(-3, 7);
        let sq = square_nearest_first(c, 8);
        assert_eq!(sq.len(), 289);
        assert_eq!(sq[0], c);
        assert!(sq.windows(2).all(|w| w[0].distance2(c) <= w[1].distance2(c)));
        let unique: HashSet<_> = sq.iter().collect();
        assert_eq!(unique.len(), 289);
        assert!(sq.iter().all(|x| x.ring_distance(c) <= 8));
    }

    #[test]
    fn the_record_of_sent_chunks_stays_within_the_square_and_its_margin() {
        let gauge = Gauge::default();
        let mut sent = Sent::new(gauge.clone());
        let radius = 4;
        let bound = (2 * (radius + SENT_MARGIN) as usize + 1).pow(2);
        for step in 0..200 {
            let center = ChunkCoord::new(step * 3, -step);
            sent.keep_near(center, radius);
            for c in square_nearest_first(center, radius) {
                sent.insert(c);
            }
            assert!(sent.len() <= bound, "step {step}: {} entries, bound {bound}", sent.len());
            assert_eq!(gauge.get(), sent.len() as i64);
        }
        sent.keep_near(ChunkCoord::new(i32::MAX, i32::MIN), 1);
        assert_eq!(sent.len(), 0);
        sent.insert(ChunkCoord::new(1, 1));
        drop(sent);
        assert_eq!(gauge.get(), 0, "a closed stream uncounts what it remembered");
    }

    #[test]
    fn squares_at_the_edge_of_i32_do_not_overflow() {
        let sq = square_nearest_first(ChunkCoord::new(i32::MAX, i32::MIN), 1);
        assert_eq!(sq.len(), 4);
    }
}
