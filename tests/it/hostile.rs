//! Hostile input (issue 11, "Bad input"): every WebSocket message type fuzzed
//! against a live server, hostile HTTP headers and bodies the OpenAPI fuzzer
//! does not send, hostile names swept over `fs://` storage (nothing lands
//! outside its prefix), and tokens: no account's token works on another's
//! world or plugin, and a revoked token stops working at once on every
//! coordinator of a cluster.
//!
//! The stream property runs 256 cases by default;
//! `WORLDLOOM_FUZZ_CASES=N` (or `PROPTEST_CASES=N`) runs N, e.g.
//! `WORLDLOOM_FUZZ_CASES=5000 cargo test -p worldloom-tests --test it -- hostile::`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};
use worldloom_cluster::model::ChunkRecord;
use worldloom_cluster::wire;
use worldloom_tests::{
    TempDir, client, cluster_env, create_world, metric, spawn_coordinator, spawn_node, start_with, upload_plugin,
    wait_for_nodes,
};
use worldloom_worldgen::chunk::MAX_CHUNK_COORD;

/// The longest any single answer may take before the case counts as a hang.
const WAIT: Duration = Duration::from_secs(30);
/// The stream servers of this file allow squares up to this radius, so that
/// valid subscriptions stay cheap and larger ones exercise `radius_too_large`.
const MAX_RADIUS: u32 = 2;
/// The largest client frame the stream accepts (docs/api.md).
const MAX_FRAME: usize = 4096;

/// Cases of the stream property: `WORLDLOOM_FUZZ_CASES` (or `PROPTEST_CASES`), else `default`.
fn cases(default: u32) -> u32 {
    ["WORLDLOOM_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(default)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, world: &str) -> Ws {
    let url = format!("{}/v1/worlds/{world}/stream", base.replacen("http://", "ws://", 1));
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("the WebSocket handshake finishes")
        .expect("WebSocket connect")
        .0
}

/// What a client can send on a stream and get an answer to.
#[derive(Clone, Debug)]
enum Op {
    /// `{"center":[cx,cz],"radius":r}` with any 64-bit integers.
    Subscribe {
        cx: i64,
        cz: i64,
        radius: i64,
    },
    /// A text frame of at most 4 KiB that may or may not be a subscription:
    /// wrong types, unknown or duplicate fields, deep nesting, padding, noise.
    Text(String),
    Binary(Vec<u8>),
    /// A ping (payload up to the protocol's 125 bytes): answered by a pong with the same payload.
    Ping(Vec<u8>),
    /// An unsolicited pong: ignored.
    Pong(Vec<u8>),
    /// Valid, distinct subscriptions sent back to back without reading.
    Burst(Vec<(i32, i32, u32)>),
}

/// How a case ends.
#[derive(Clone, Debug)]
enum End {
    /// A small subscription that must still be answered: the socket is usable.
    Probe,
    /// A close frame with an arbitrary payload (up to 125 bytes: odd codes, a 1-byte payload, bad UTF-8).
    Close(Vec<u8>),
    /// A frame that breaks the protocol or the stream's limits.
    Violation(Violation),
    /// The client vanishes without a close frame.
    Hangup,
}

#[derive(Clone, Debug)]
enum Violation {
    /// A text frame over 4 KiB.
    LongText(usize),
    /// A binary frame over 4 KiB.
    LongBinary(usize),
    /// A text message over 4 KiB in continuation frames of 1 KiB.
    LongFragmented(usize),
    /// A text frame that is not UTF-8.
    NotUtf8(Vec<u8>),
    /// A ping with more than the 125 bytes a control frame may carry.
    LongPing(usize),
    /// A continuation frame with no message started.
    StrayContinuation,
}

impl Violation {
    /// The close code RFC 6455 (section 7.4.1) gives this violation.
    fn close_code(&self) -> CloseCode {
        match self {
            Violation::LongText(_) | Violation::LongBinary(_) | Violation::LongFragmented(_) => CloseCode::Size,
            Violation::NotUtf8(_) => CloseCode::Invalid,
            Violation::LongPing(_) | Violation::StrayContinuation => CloseCode::Protocol,
        }
    }
}

fn coordinate() -> impl Strategy<Value = i64> {
    let max = i64::from(MAX_CHUNK_COORD);
    prop_oneof![
        4 => -3i64..=3,
        1 => prop_oneof![Just(max), Just(-max), Just(max + 1), Just(-max - 1), Just(max - 1)],
        1 => prop_oneof![Just(i64::from(i32::MIN)), Just(i64::from(i32::MAX)), Just(i64::MIN), Just(i64::MAX)],
        1 => any::<i32>().prop_map(i64::from),
        1 => any::<i64>(),
    ]
}

fn radius() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..=i64::from(MAX_RADIUS),
        1 => i64::from(MAX_RADIUS) + 1..=1000,
        1 => prop_oneof![Just(i64::from(u32::MAX)), Just(i64::from(u32::MAX) + 1), Just(i64::MAX)],
        1 => prop_oneof![Just(-1i64), Just(i64::MIN), -1000i64..0],
    ]
}

/// Text frames that are mostly not subscriptions (the model decides which are).
fn text() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"0\"".to_owned()),
        Just("1.5".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[0]".to_owned()),
        Just("[0,0,0]".to_owned()),
        Just("[\"a\",0]".to_owned()),
        (-5i64..5).prop_map(|n| n.to_string()),
        "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).expect("a string")),
    ];
    prop_oneof![
        // Wrong types in the right shape.
        (scalar.clone(), scalar.clone()).prop_map(|(c, r)| format!(r#"{{"center":{c},"radius":{r}}}"#)),
        (scalar.clone(), 0u32..2).prop_map(|(c, r)| format!(r#"{{"center":[{c},0],"radius":{r}}}"#)),
        // Unknown, missing and duplicate fields.
        ("[a-z_]{1,12}", scalar.clone()).prop_map(|(k, v)| format!(r#"{{"center":[0,0],"radius":0,"{k}":{v}}}"#)),
        Just(r#"{"center":[0,0]}"#.to_owned()),
        Just(r#"{"radius":0}"#.to_owned()),
        Just(r#"{"center":[0,0],"radius":0,"radius":1}"#.to_owned()),
        Just(r#"{"Center":[0,0],"radius":0}"#.to_owned()),
        // Deep nesting, inside the frame limit.
        (1usize..2000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..400).prop_map(|n| format!("{}0{}", r#"{"center":"#.repeat(n), "}".repeat(n))),
        (1usize..1000).prop_map(|n| format!(r#"{{"center":[0,0],"radius":{}0{}}}"#, "[".repeat(n), "]".repeat(n))),
        // A valid subscription padded towards (and exactly to) the 4 KiB limit.
        (0usize..=MAX_FRAME - 27).prop_map(|n| format!(r#"{{"center":[0,0],"radius":0}}{}"#, " ".repeat(n))),
        Just(format!(r#"{{"center":[0,0],"radius":0}}{}"#, " ".repeat(MAX_FRAME - 27))),
        // Noise.
        Just(String::new()),
        "\\PC{0,200}",
        proptest::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect::<String>()),
    ]
    .prop_filter("at most 4 KiB", |s| s.len() <= MAX_FRAME)
}

fn op() -> impl Strategy<Value = Op> {
    let burst = proptest::collection::btree_set((-20i32..=20, -20i32..=20, 0u32..=MAX_RADIUS), 2..16)
        .prop_map(|set| set.into_iter().collect::<Vec<_>>());
    prop_oneof![
        6 => (coordinate(), coordinate(), radius()).prop_map(|(cx, cz, radius)| Op::Subscribe { cx, cz, radius }),
        6 => text().prop_map(Op::Text),
        2 => proptest::collection::vec(any::<u8>(), 0..=MAX_FRAME).prop_map(Op::Binary),
        2 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Ping),
        1 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Op::Pong),
        2 => burst.prop_map(Op::Burst),
    ]
}

fn end() -> impl Strategy<Value = End> {
    let violation = prop_oneof![
        (MAX_FRAME + 1..3 * MAX_FRAME).prop_map(Violation::LongText),
        (MAX_FRAME + 1..3 * MAX_FRAME).prop_map(Violation::LongBinary),
        (MAX_FRAME + 1..3 * MAX_FRAME).prop_map(Violation::LongFragmented),
        proptest::collection::vec(any::<u8>(), 1..64)
            .prop_filter("not UTF-8", |b| std::str::from_utf8(b).is_err())
            .prop_map(Violation::NotUtf8),
        (126usize..2000).prop_map(Violation::LongPing),
        Just(Violation::StrayContinuation),
    ];
    prop_oneof![
        4 => Just(End::Probe),
        2 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(End::Close),
        3 => violation.prop_map(End::Violation),
        1 => Just(End::Hangup),
    ]
}

/// What the server must answer to a text frame, by the protocol (docs/api.md).
#[derive(Debug, PartialEq)]
enum Expect {
    /// The chunks of this square, then its `done` frame.
    Square { cx: i32, cz: i32, radius: u32 },
    /// An error frame with this code (and this `field`, if any).
    Error(&'static str, Option<&'static str>),
}

/// The protocol's answer to `text`, worked out independently of the server.
fn expected(text: &str) -> Expect {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        center: [serde_json::Number; 2],
        radius: serde_json::Number,
    }
    let invalid = Expect::Error("invalid_subscription", None);
    let Ok(shape) = serde_json::from_str::<Shape>(text) else { return invalid };
    let (Some(cx), Some(cz), Some(radius)) =
        (shape.center[0].as_i64(), shape.center[1].as_i64(), shape.radius.as_u64())
    else {
        return invalid;
    };
    if radius > u64::from(MAX_RADIUS) {
        return Expect::Error("radius_too_large", Some("radius"));
    }
    let max = i64::from(MAX_CHUNK_COORD);
    if !(-max..=max).contains(&cx) || !(-max..=max).contains(&cz) {
        return Expect::Error("coordinate_out_of_range", Some("center"));
    }
    Expect::Square { cx: cx as i32, cz: cz as i32, radius: radius as u32 }
}

/// The next frame within [`WAIT`]; a hang or an abnormal end fails the case.
async fn next(ws: &mut Ws, what: &str) -> Result<Message, TestCaseError> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return Err(TestCaseError::fail(format!("no answer within {WAIT:?} to {what}"))),
            Ok(None) => return Err(TestCaseError::fail(format!("the server ended the connection after {what}"))),
            Ok(Some(Err(e))) => return Err(TestCaseError::fail(format!("a broken frame after {what}: {e}"))),
            Ok(Some(Ok(Message::Ping(_)))) => continue,
            Ok(Some(Ok(m))) => return Ok(m),
        }
    }
}

async fn next_json(ws: &mut Ws, what: &str) -> Result<Value, TestCaseError> {
    match next(ws, what).await? {
        Message::Text(t) => serde_json::from_str(&t)
            .map_err(|e| TestCaseError::fail(format!("a text frame that is not JSON after {what}: {e}: {t}"))),
        other => Err(TestCaseError::fail(format!("expected a JSON frame after {what}, got {other:?}"))),
    }
}

/// Checks an error frame: the code and field the protocol says and a message that says something.
fn check_error(frame: &Value, code: &str, field: Option<&str>, what: &str) -> Result<(), TestCaseError> {
    let e = &frame["error"];
    prop_assert_eq!(e["code"].as_str(), Some(code), "{}: {}", what, frame);
    prop_assert!(e["message"].as_str().is_some_and(|m| m.len() > 10), "{}: no useful message: {}", what, frame);
    if let Some(field) = field {
        prop_assert_eq!(e["field"].as_str(), Some(field), "{}: {}", what, frame);
    }
    prop_assert!(frame.get("chunk").is_none(), "{}: a subscription error names no chunk: {}", what, frame);
    Ok(())
}

/// Reads one subscription's answer: chunks of the square (each once), chunk
/// errors only for coordinates outside the world, then the `done` frame.
async fn read_square(ws: &mut Ws, cx: i32, cz: i32, radius: u32, what: &str) -> Result<(), TestCaseError> {
    let max = MAX_CHUNK_COORD;
    let inside = |x: i64, z: i64| {
        (x - i64::from(cx)).abs() <= i64::from(radius) && (z - i64::from(cz)).abs() <= i64::from(radius)
    };
    let mut chunks = BTreeSet::new();
    let mut failed = 0u64;
    loop {
        match next(ws, what).await? {
            Message::Binary(bytes) => {
                let record: ChunkRecord = wire::decode(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{what}: a binary frame that is not a chunk: {e}")))?;
                let c = record.chunk.coord;
                prop_assert!(inside(c.cx.into(), c.cz.into()), "{}: chunk {} is outside the square", what, c);
                prop_assert!(chunks.insert((c.cx, c.cz)), "{}: chunk {} arrived twice", what, c);
            }
            Message::Text(t) => {
                let j: Value =
                    serde_json::from_str(&t).map_err(|e| TestCaseError::fail(format!("{what}: {e}: {t}")))?;
                if let Some(done) = j.get("done") {
                    prop_assert_eq!(&done["center"], &json!([cx, cz]), "{}: {}", what, j);
                    prop_assert_eq!(done["radius"].as_u64(), Some(u64::from(radius)), "{}: {}", what, j);
                    let side = 2 * u64::from(radius) + 1;
                    let (sent, had, fail) =
                        (done["sent"].as_u64(), done["already_had"].as_u64(), done["failed"].as_u64());
                    prop_assert_eq!(sent, Some(chunks.len() as u64), "{}: {}", what, j);
                    prop_assert_eq!(fail, Some(failed), "{}: {}", what, j);
                    prop_assert_eq!(sent.unwrap_or(0) + had.unwrap_or(0) + failed, side * side, "{}: {}", what, j);
                    return Ok(());
                }
                // Only a chunk beyond the world's edge may fail here (memory storage, a local node).
                let chunk = j["chunk"].as_array().cloned().unwrap_or_default();
                let (x, z) = (chunk.first().and_then(Value::as_i64), chunk.get(1).and_then(Value::as_i64));
                let (Some(x), Some(z)) = (x, z) else {
                    return Err(TestCaseError::fail(format!("{what}: unexpected frame while streaming: {j}")));
                };
                prop_assert_eq!(j["error"]["code"].as_str(), Some("coordinate_out_of_range"), "{}: {}", what, j);
                prop_assert!(inside(x, z) && (x.abs() > i64::from(max) || z.abs() > i64::from(max)), "{}: {}", what, j);
                failed += 1;
            }
            other => return Err(TestCaseError::fail(format!("{what}: unexpected frame {other:?}"))),
        }
    }
}

async fn run_op(ws: &mut Ws, op: &Op) -> Result<(), TestCaseError> {
    let what: String = format!("{op:?}").chars().take(300).collect();
    let what = what.as_str();
    match op {
        Op::Subscribe { cx, cz, radius } => {
            let text = format!(r#"{{"center":[{cx},{cz}],"radius":{radius}}}"#);
            answer_text(ws, &text, what).await
        }
        Op::Text(text) => answer_text(ws, text, what).await,
        Op::Binary(bytes) => {
            send(ws, Message::binary(bytes.clone()), what).await?;
            check_error(&next_json(ws, what).await?, "invalid_subscription", None, what)
        }
        Op::Ping(payload) => {
            send(ws, Message::Ping(payload.clone().into()), what).await?;
            match next(ws, what).await? {
                Message::Pong(p) => {
                    prop_assert_eq!(&p[..], &payload[..], "{}: the pong carries the ping's payload", what);
                    Ok(())
                }
                other => Err(TestCaseError::fail(format!("{what}: expected a pong, got {other:?}"))),
            }
        }
        Op::Pong(payload) => send(ws, Message::Pong(payload.clone().into()), what).await,
        Op::Burst(subs) => {
            for (cx, cz, r) in subs {
                send(ws, Message::text(format!(r#"{{"center":[{cx},{cz}],"radius":{r}}}"#)), what).await?;
            }
            // Replaced subscriptions may finish (with their `done`) before
            // the next one arrives; the last one always finishes. Chunks of
            // earlier squares may arrive; each is a chunk of one of them.
            let (lx, lz, lr) = *subs.last().expect("a burst has subscriptions");
            loop {
                match next(ws, what).await? {
                    Message::Binary(bytes) => {
                        let record: ChunkRecord = wire::decode(&bytes)
                            .map_err(|e| TestCaseError::fail(format!("{what}: not a chunk: {e}")))?;
                        let c = record.chunk.coord;
                        prop_assert!(
                            subs.iter().any(|(x, z, r)| (c.cx - x).abs() <= *r as i32 && (c.cz - z).abs() <= *r as i32),
                            "{}: chunk {} belongs to no square of the burst",
                            what,
                            c
                        );
                    }
                    Message::Text(t) => {
                        let j: Value =
                            serde_json::from_str(&t).map_err(|e| TestCaseError::fail(format!("{e}: {t}")))?;
                        let done = j.get("done").ok_or_else(|| TestCaseError::fail(format!("{what}: {j}")))?;
                        prop_assert_eq!(done["failed"].as_u64(), Some(0), "{}: {}", what, j);
                        if done["center"] == json!([lx, lz]) && done["radius"] == json!(lr) {
                            let side = 2 * u64::from(lr) + 1;
                            let total = done["sent"].as_u64().unwrap_or(0) + done["already_had"].as_u64().unwrap_or(0);
                            prop_assert_eq!(total, side * side, "{}: {}", what, j);
                            return Ok(());
                        }
                        prop_assert!(
                            subs.iter().any(|(x, z, r)| done["center"] == json!([x, z]) && done["radius"] == json!(r)),
                            "{}: a done for no subscription of the burst: {}",
                            what,
                            j
                        );
                    }
                    other => return Err(TestCaseError::fail(format!("{what}: unexpected frame {other:?}"))),
                }
            }
        }
    }
}

async fn send(ws: &mut Ws, msg: Message, what: &str) -> Result<(), TestCaseError> {
    match tokio::time::timeout(WAIT, ws.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(TestCaseError::fail(format!("{what}: sending failed: {e}"))),
        Err(_) => Err(TestCaseError::fail(format!("{what}: the server stopped reading"))),
    }
}

async fn answer_text(ws: &mut Ws, text: &str, what: &str) -> Result<(), TestCaseError> {
    send(ws, Message::text(text), what).await?;
    match expected(text) {
        Expect::Square { cx, cz, radius } => read_square(ws, cx, cz, radius, what).await,
        Expect::Error(code, field) => check_error(&next_json(ws, what).await?, code, field, what),
    }
}

/// Reads until the server closes; the close code it sent (None for a close
/// without a code or a connection that just ended).
async fn read_close(ws: &mut Ws, what: &str) -> Result<Option<CloseCode>, TestCaseError> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return Err(TestCaseError::fail(format!("{what}: the server did not close within {WAIT:?}"))),
            Ok(None) | Ok(Some(Err(_))) => return Ok(None),
            Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame.map(|f| f.code)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            // A close frame that itself breaks the protocol (a 1-byte
            // payload, a reserved code) is answered like any other violation:
            // a `protocol_error` frame, then the close.
            Ok(Some(Ok(Message::Text(t))))
                if serde_json::from_str::<Value>(&t).is_ok_and(|v| v["error"]["code"] == "protocol_error") =>
            {
                continue;
            }
            Ok(Some(Ok(other))) => return Err(TestCaseError::fail(format!("{what}: expected a close, got {other:?}"))),
        }
    }
}

/// A frame exactly as given, control opcodes and bad payloads included
/// (tungstenite's `Frame::message` takes data opcodes only).
fn raw_frame(payload: impl Into<bytes::Bytes>, opcode: OpCode, is_final: bool) -> WsFrame {
    WsFrame::from_payload(FrameHeader { is_final, opcode, ..FrameHeader::default() }, payload.into())
}

async fn run_end(ws: &mut Ws, end: &End) -> Result<(), TestCaseError> {
    let what: String = format!("{end:?}").chars().take(300).collect();
    let what = what.as_str();
    match end {
        End::Probe => answer_text(ws, r#"{"center":[0,0],"radius":1}"#, what).await,
        End::Close(payload) => {
            let frame = raw_frame(payload.clone(), OpCode::Control(Control::Close), true);
            send(ws, Message::Frame(frame), what).await?;
            read_close(ws, what).await.map(|_| ())
        }
        End::Hangup => Ok(()),
        End::Violation(v) => {
            let frames: Vec<WsFrame> = match v {
                Violation::LongText(n) => vec![raw_frame("x".repeat(*n), OpCode::Data(Data::Text), true)],
                Violation::LongBinary(n) => vec![raw_frame(vec![7u8; *n], OpCode::Data(Data::Binary), true)],
                Violation::LongFragmented(n) => {
                    let text = "y".repeat(*n);
                    let parts: Vec<&[u8]> = text.as_bytes().chunks(1024).collect();
                    let last = parts.len() - 1;
                    parts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let code = if i == 0 { Data::Text } else { Data::Continue };
                            raw_frame(p.to_vec(), OpCode::Data(code), i == last)
                        })
                        .collect()
                }
                Violation::NotUtf8(bytes) => vec![raw_frame(bytes.clone(), OpCode::Data(Data::Text), true)],
                Violation::LongPing(n) => vec![raw_frame(vec![1u8; *n], OpCode::Control(Control::Ping), true)],
                Violation::StrayContinuation => {
                    vec![raw_frame(b"{}".to_vec(), OpCode::Data(Data::Continue), true)]
                }
            };
            for f in frames {
                // The server may close before the last fragment is written.
                if ws.send(Message::Frame(f)).await.is_err() {
                    break;
                }
            }
            let frame = next_json(ws, what).await?;
            check_error(&frame, "protocol_error", None, what)?;
            let code = read_close(ws, what).await?;
            prop_assert_eq!(code, Some(v.close_code()), "{}: the close code RFC 6455 gives it", what);
            Ok(())
        }
    }
}

/// Every WebSocket message type, fuzzed against a live server: valid
/// subscriptions with extreme values, wrong types, unknown fields, nesting,
/// padding to the limit, noise, binary frames, pings and pongs with any
/// payload, bursts of subscriptions, and a case end that is a probe, an odd
/// close, a protocol violation or a hang-up. The server always answers with
/// the chunks and `done` of a valid square or an error frame naming the
/// problem (and the field), never hangs, closes only on a close or a
/// violation (with RFC 6455's code), the socket stays usable after every
/// recoverable error, and the server keeps serving others (`/healthz`
/// after every case; no stream task is left behind).
#[test]
fn every_stream_message_type_fuzzed_gets_a_protocol_answer_and_the_server_keeps_serving() {
    let s = start_with("memory://", |c| c.stream.max_radius = MAX_RADIUS);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let base = s.base.clone();
    let world = rt.block_on(async {
        let w = create_world(&base, &s.token, json!({"name": "Fuzzed", "seed": 404})).await;
        w["id"].as_str().expect("an id").to_owned()
    });
    let config = PropConfig { cases: cases(256), failure_persistence: None, ..PropConfig::default() };
    let strategy = (proptest::collection::vec(op(), 1..6), end());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(ops, end)| {
        rt.block_on(async {
            let mut ws = connect(&base, &world).await;
            for op in &ops {
                run_op(&mut ws, op).await?;
            }
            run_end(&mut ws, &end).await?;
            drop(ws);
            let res = tokio::time::timeout(WAIT, client().get(format!("{base}/healthz")).send())
                .await
                .map_err(|_| TestCaseError::fail("/healthz did not answer"))?
                .map_err(|e| TestCaseError::fail(format!("/healthz: {e}")))?;
            prop_assert_eq!(res.status(), 200, "the server still serves others");
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        // A fresh client still gets its chunks, and every socket of the run
        // has ended its task on the server (a bounded wait, not a timing).
        let mut ws = connect(&base, &world).await;
        answer_text(&mut ws, r#"{"center":[5,5],"radius":2}"#, "a fresh client").await.expect("a fresh client");
        drop(ws);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let open = metric(&base, "worldloom_coordinator_open_streams").await;
            if open == 0.0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{open} stream tasks are left on the server");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    s.stop();
}

/// The edges the property may rarely pick, each once: the exact frame limit,
/// 64-bit numbers, the edge of the world.
#[tokio::test]
async fn stream_limits_and_edges_answer_as_documented() {
    let s = start_with("memory://", |c| c.stream.max_radius = MAX_RADIUS);
    let w = create_world(&s.base, &s.token, json!({"name": "Edges", "seed": 405})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let mut ws = connect(&s.base, &id).await;
    let max = MAX_CHUNK_COORD;
    let exact = format!(r#"{{"center":[0,0],"radius":0}}{}"#, " ".repeat(MAX_FRAME - 27));
    assert_eq!(exact.len(), MAX_FRAME);
    for (text, want) in [
        (exact.as_str(), Expect::Square { cx: 0, cz: 0, radius: 0 }),
        (r#"{"center":[2147483648,0],"radius":0}"#, Expect::Error("coordinate_out_of_range", Some("center"))),
        (r#"{"center":[0,-9223372036854775808],"radius":0}"#, Expect::Error("coordinate_out_of_range", Some("center"))),
        (r#"{"center":[0,0],"radius":4294967296}"#, Expect::Error("radius_too_large", Some("radius"))),
        (r#"{"center":[0,0],"radius":18446744073709551615}"#, Expect::Error("radius_too_large", Some("radius"))),
        (r#"{"center":[0,0],"radius":-1}"#, Expect::Error("invalid_subscription", None)),
        (r#"{"center":[16777217,0],"radius":0}"#, Expect::Error("coordinate_out_of_range", Some("center"))),
    ] {
        assert_eq!(expected(text), want, "the model agrees with docs/api.md on {text}");
        answer_text(&mut ws, text, text).await.unwrap_or_else(|e| panic!("{e}"));
    }
    // The edge of the world: chunks beyond it fail (named, counted), the others arrive.
    let edge = format!(r#"{{"center":[{max},{}],"radius":1}}"#, -max);
    answer_text(&mut ws, &edge, &edge).await.unwrap_or_else(|e| panic!("{e}"));
    // A message over the limit in fragments is refused with close code 1009.
    run_end(&mut ws, &End::Violation(Violation::LongFragmented(MAX_FRAME + 1))).await.unwrap_or_else(|e| panic!("{e}"));
    s.stop();
}

// ---------------------------------------------------------------------------
// HTTP: hostile headers and bodies, over a raw TCP connection.

/// A response read from a raw connection: status, lowercased header text, body.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends `request` (written in pieces as given, concurrently with reading)
/// on a fresh connection and reads the first response, within [`WAIT`].
async fn raw(addr: &str, pieces: Vec<Vec<u8>>) -> Raw {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        for p in pieces {
            if wr.write_all(&p).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open: the server decides when to answer.
        tokio::time::sleep(WAIT + Duration::from_secs(5)).await;
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(raw) = parse_response(&buf) {
                return Some(raw);
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse_response(&buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    writer.abort();
    match read {
        Ok(Some(r)) => r,
        Ok(None) => panic!("the server closed without a response; got {:?}", String::from_utf8_lossy(&buf)),
        Err(_) => panic!("no response within {WAIT:?}; got {:?}", String::from_utf8_lossy(&buf)),
    }
}

/// A complete HTTP/1.1 response at the start of `buf`, if there is one.
fn parse_response(buf: &[u8]) -> Option<Raw> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let rest = &buf[end + 4..];
    let header =
        |name: &str| head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_owned()));
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().ok()?;
        (rest.len() >= len).then(|| rest[..len].to_vec())?
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = rest;
        loop {
            let line_end = at.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&at[..line_end]).ok()?.trim(), 16).ok()?;
            at = &at[line_end + 2..];
            if size == 0 {
                break body;
            }
            if at.len() < size + 2 {
                return None;
            }
            body.extend_from_slice(&at[..size]);
            at = &at[size + 2..];
        }
    } else {
        Vec::new()
    };
    Some(Raw { status, head, body })
}

fn request(method: &str, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    for (k, v) in headers {
        r.extend_from_slice(k.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// A request with a correct Content-Length and the given extra headers.
fn with_body(method: &str, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("Content-Length", len.as_bytes()));
    request(method, path, &all, body)
}

fn chunked(size: usize, piece: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(piece);
        let mut p = format!("{n:x}\r\n").into_bytes();
        p.extend(std::iter::repeat_n(b' ', n));
        p.extend_from_slice(b"\r\n");
        out.push(p);
        left -= n;
    }
    out.push(b"0\r\n\r\n".to_vec());
    out
}

/// Hostile headers and bodies the OpenAPI fuzzer does not send (huge and
/// duplicate headers, bad credentials, bad media types, a Content-Length
/// that lies, chunked bodies over the limit, 100k levels of nesting, bytes
/// that are not UTF-8): each is a 4xx with the API's JSON error naming the
/// problem, never a 5xx or a hang, and the server keeps serving.
#[tokio::test]
async fn hostile_headers_and_bodies_are_4xx_json_errors() {
    let s = start_with("memory://", |c| c.max_body_bytes = 256 << 10);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let world = create_world(&s.base, &s.token, json!({"name": "Target", "seed": 406})).await;
    let wid = world["id"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {}", s.token);
    let auth: (&str, &[u8]) = ("Authorization", bearer.as_bytes());
    let json_ct: (&str, &[u8]) = ("Content-Type", &b"application/json"[..]);
    let limit = 256usize << 10;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // No field takes free JSON: generation parameters refuse an unknown key
    // and plugin parameter values a map, each before reading any deeper, so
    // this depth must end in a 4xx naming the field, never a stack overflow.
    let deep_obj = format!(
        r#"{{"name":"N","plugins":[{{"name":"p","version":"1.0.0","params":{{"v":{}1{}}}}}]}}"#,
        r#"{"a":"#.repeat(20_000),
        "}".repeat(20_000)
    );
    // actix-web reads at most 32 KiB of request head.
    let huge = "a".repeat(200 << 10);
    let long_auth = format!("Bearer wl_{}", "a".repeat(20 << 10));
    let params_path = format!("/v1/worlds/{wid}/params");
    let world_body = br#"{"name":"X"}"#.to_vec();

    // (what, request pieces, acceptable statuses, the code the JSON error
    // must have: "*" any code, "" JSON only if a route answered)
    type Case<'a> = (&'a str, Vec<Vec<u8>>, &'a [u16], &'a str);
    let cases: Vec<Case> = vec![
        (
            "a 64 KiB header value",
            vec![request("GET", "/v1/worlds", &[("X-Big", huge.as_bytes())], b"")],
            &[431, 400][..],
            "",
        ),
        (
            "a 20 KiB Authorization header",
            vec![with_body("POST", "/v1/worlds", &[("Authorization", long_auth.as_bytes()), json_ct], &world_body)],
            &[401][..],
            "unauthorized",
        ),
        (
            "two Authorization headers, a valid one first",
            vec![with_body(
                "POST",
                "/v1/worlds",
                &[auth, ("Authorization", &b"Bearer wl_00"[..]), json_ct],
                &world_body,
            )],
            &[401][..],
            "unauthorized",
        ),
        (
            "two Authorization headers, a valid one last",
            vec![with_body(
                "POST",
                "/v1/worlds",
                &[("Authorization", &b"Bearer wl_00"[..]), auth, json_ct],
                &world_body,
            )],
            &[401][..],
            "unauthorized",
        ),
        (
            "an Authorization header that is not UTF-8",
            vec![with_body(
                "POST",
                "/v1/worlds",
                &[("Authorization", &b"Bearer wl_\xff\xfe"[..]), json_ct],
                &world_body,
            )],
            &[401][..],
            "unauthorized",
        ),
        (
            "a Basic Authorization header",
            vec![with_body(
                "POST",
                "/v1/worlds",
                &[("Authorization", &b"Basic dGVzdGVyOng="[..]), json_ct],
                &world_body,
            )],
            &[401][..],
            "unauthorized",
        ),
        (
            "Bearer and nothing else",
            vec![with_body("POST", "/v1/worlds", &[("Authorization", &b"Bearer "[..]), json_ct], &world_body)],
            &[401][..],
            "unauthorized",
        ),
        (
            "a Content-Type of multipart without a boundary",
            vec![with_body("POST", "/v1/plugins", &[auth, ("Content-Type", &b"multipart/form-data"[..])], b"{}")],
            &[400][..],
            "malformed_multipart",
        ),
        (
            "a multipart Content-Type on a JSON body",
            vec![with_body(
                "POST",
                "/v1/plugins",
                &[auth, ("Content-Type", &b"multipart/form-data; boundary=zz"[..])],
                b"{\"name\":\"a\"}",
            )],
            &[400][..],
            "malformed_multipart",
        ),
        (
            // Control bytes in a header value: refused by the HTTP/1 parser.
            "a Content-Type that is noise",
            vec![with_body("POST", "/v1/worlds", &[auth, ("Content-Type", &b"\x01\x02;;;="[..])], b"not json")],
            &[400][..],
            "",
        ),
        (
            "a Content-Length over the limit",
            vec![request(
                "POST",
                "/v1/worlds",
                &[auth, json_ct, ("Content-Length", (limit + 1).to_string().as_bytes())],
                b"",
            )],
            &[413][..],
            "too_large",
        ),
        (
            "a Content-Length over the limit on an upload",
            vec![request(
                "POST",
                "/v1/plugins",
                &[auth, json_ct, ("Content-Length", (limit + 1).to_string().as_bytes())],
                b"",
            )],
            &[413][..],
            "too_large",
        ),
        (
            "a Content-Length that is not a number",
            vec![request("POST", "/v1/worlds", &[auth, json_ct, ("Content-Length", &b"ten"[..])], b"{}")],
            &[400][..],
            "",
        ),
        (
            "two different Content-Lengths",
            vec![request(
                "POST",
                "/v1/worlds",
                &[auth, json_ct, ("Content-Length", &b"2"[..]), ("Content-Length", &b"5"[..])],
                b"{}",
            )],
            &[400][..],
            "",
        ),
        (
            "a Content-Length shorter than the body",
            vec![request("PUT", &params_path, &[auth, json_ct, ("Content-Length", &b"5"[..])], br#"{"params":{}}"#)],
            &[400][..],
            "malformed_json",
        ),
        (
            "a chunked body over the limit",
            [
                vec![request("POST", "/v1/worlds", &[auth, json_ct, ("Transfer-Encoding", &b"chunked"[..])], b"")],
                chunked(2 * limit, 16 << 10),
            ]
            .concat(),
            &[413][..],
            "too_large",
        ),
        (
            "a chunked upload over the limit",
            [
                vec![request("POST", "/v1/plugins", &[auth, json_ct, ("Transfer-Encoding", &b"chunked"[..])], b"")],
                chunked(2 * limit, 16 << 10),
            ]
            .concat(),
            &[413][..],
            "too_large",
        ),
        (
            "a chunked multipart upload over the limit",
            [
                vec![request(
                    "POST",
                    "/v1/plugins",
                    &[
                        auth,
                        ("Content-Type", &b"multipart/form-data; boundary=zz"[..]),
                        ("Transfer-Encoding", &b"chunked"[..]),
                    ],
                    b"",
                )],
                chunked(2 * limit, 16 << 10),
            ]
            .concat(),
            &[413, 400][..],
            "*",
        ),
        (
            "a Content-Length longer than the body (the client then waits)",
            vec![request("POST", "/v1/worlds", &[auth, json_ct, ("Content-Length", &b"100"[..])], b"{\"name\":")],
            &[408][..],
            "body_timeout",
        ),
        (
            "a chunked multipart upload that stops arriving",
            vec![request(
                "POST",
                "/v1/plugins",
                &[
                    auth,
                    ("Content-Type", &b"multipart/form-data; boundary=zz"[..]),
                    ("Transfer-Encoding", &b"chunked"[..]),
                ],
                b"6\r\n--zz\r\n",
            )],
            &[408][..],
            "body_timeout",
        ),
        (
            "a chunk size that is not hex",
            vec![request(
                "POST",
                "/v1/worlds",
                &[auth, json_ct, ("Transfer-Encoding", &b"chunked"[..])],
                b"zz\r\n{}\r\n0\r\n\r\n",
            )],
            &[400][..],
            "",
        ),
        (
            // An array where an object belongs is refused at its first
            // element (422 naming `[0]`), before any depth is reached.
            "100,000 levels of nested arrays",
            vec![with_body("POST", "/v1/worlds", &[auth, json_ct], deep.as_bytes())],
            &[400, 422][..],
            "*",
        ),
        (
            "20,000 levels of nested objects in a plugin parameter value",
            vec![with_body("POST", "/v1/worlds", &[auth, json_ct], deep_obj.as_bytes())],
            &[400, 422][..],
            "*",
        ),
        (
            "100,000 levels of nesting in a parameter change",
            vec![with_body("PUT", &params_path, &[auth, json_ct], deep.as_bytes())],
            &[400, 422][..],
            "*",
        ),
        (
            "a body that is not UTF-8",
            vec![with_body("POST", "/v1/worlds", &[auth, json_ct], b"{\"name\":\"\xff\xfe\xfd\"}")],
            &[400][..],
            "malformed_json",
        ),
        (
            "an upload that is not UTF-8",
            vec![with_body(
                "POST",
                "/v1/plugins",
                &[auth, json_ct],
                b"{\"name\":\"a\",\"version\":\"1.0.0\",\"source\":\"\xc3\x28\"}",
            )],
            &[400][..],
            "malformed_json",
        ),
        (
            "a multipart field that is not UTF-8",
            vec![with_body(
                "POST",
                "/v1/plugins",
                &[auth, ("Content-Type", &b"multipart/form-data; boundary=zz"[..])],
                b"--zz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n\xff\xfe\r\n--zz--\r\n",
            )],
            &[422][..],
            "*",
        ),
        (
            "a chunk coordinate that is not UTF-8",
            vec![request("GET", &format!("/v1/worlds/{wid}/chunks/%ff%fe/0"), &[], b"")],
            &[400, 404][..],
            "*",
        ),
        (
            "an Accept header that is not UTF-8",
            vec![request("GET", &format!("/v1/worlds/{wid}/chunks/0/0"), &[("Accept", &b"\xff\xfe/x"[..])], b"")],
            &[406][..],
            "not_acceptable",
        ),
        (
            "a stream upgrade with a bad key",
            vec![request(
                "GET",
                &format!("/v1/worlds/{wid}/stream"),
                &[
                    ("Connection", &b"Upgrade"[..]),
                    ("Upgrade", &b"websocket"[..]),
                    ("Sec-WebSocket-Version", &b"13"[..]),
                ],
                b"",
            )],
            &[400][..],
            "not_websocket",
        ),
    ];
    let mut not_json = Vec::new();
    for (what, pieces, statuses, code) in cases {
        let r = raw(&addr, pieces).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(r.status < 500, "{what}: a {} ({body})", r.status);
        assert!(statuses.contains(&r.status), "{what}: {} (want one of {statuses:?}): {body}", r.status);
        match r.json() {
            Some(j) => {
                assert!(j["code"].is_string() && j["message"].is_string(), "{what}: not the API's error shape: {j}");
                if !code.is_empty() && code != "*" {
                    assert_eq!(j["code"], code, "{what}: {j}");
                }
            }
            None => {
                // Only the HTTP/1 parser itself (before any route runs) answers without JSON.
                assert!(code.is_empty(), "{what}: a {} without the JSON error ({:?}): {body}", r.status, r.head);
                not_json.push((what, r.status));
            }
        }
        let health = client().get(format!("{}/healthz", s.base)).send().await.expect("/healthz");
        assert_eq!(health.status(), 200, "after {what}");
    }
    eprintln!("answered by the HTTP/1 parser without a JSON body: {not_json:?}");
    // The world is untouched by all of it.
    let now: Value = client().get(format!("{}/v1/worlds/{wid}", s.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["revision"], 0, "{now}");
    s.stop();
}

// ---------------------------------------------------------------------------
// Hostile names on fs:// storage.

/// Names that try to leave a prefix, hide, or pass for another name.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "../",
        "..",
        ".",
        "../../sentinel",
        "..%2f",
        "..%2F..%2Fsentinel",
        "%2e%2e",
        "%2e%2e%2f",
        "..\\",
        "\\",
        "..\\..\\sentinel",
        "/",
        "/etc/passwd",
        "a/b",
        "a\0b",
        "\0",
        "%00",
        "a%00b",
        "C:\\x",
        "Con",
        "NUL",
        "\u{FF0E}\u{FF0E}\u{FF0F}",
        "\u{2024}\u{2024}/",
        "\u{2215}etc",
        "\u{202E}gpj.exe",
        "r\u{202E}ivers",
        "\u{FEFF}",
        "\u{200B}",
        "rivers\u{0301}",
        "ri\u{0432}ers",
        " ",
        "",
        "~",
        "$HOME",
        "*",
        "Worlds",
        "w0123456789abcdeX",
        ".tmp",
        "accounts/",
        "Tokens",
        "A",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push("a".repeat(10 << 10));
    names.push("../".repeat(3000));
    names.push("\u{FF0E}".repeat(4000));
    names
}

/// Every byte of `s` percent-encoded, so the path reaches the server as sent.
fn pct(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Where every object of the storage may live, by its key: a prefix and a
/// pattern for the rest (`hex` a lowercase hex name, `wid` a world id).
fn expected_key(rel: &str) -> bool {
    let hex = |s: &str| {
        !s.is_empty()
            && s.len().is_multiple_of(2)
            && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let wid = |s: &str| worldloom_cluster::ids::WorldId::parse(s).is_ok();
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["worlds", id] => wid(id),
        ["chunks", id, rev, region, coord] => {
            let pair =
                |s: &str| s.split_once('_').is_some_and(|(x, z)| x.parse::<i32>().is_ok() && z.parse::<i32>().is_ok());
            wid(id) && rev.strip_prefix('r').is_some_and(|r| r.parse::<u32>().is_ok()) && pair(region) && pair(coord)
        }
        ["accounts", name] | ["tokens", name] | ["plugins", "names", name] => hex(name),
        ["plugins", "versions", name, version] => hex(name) && hex(version),
        ["plugins", "sources", sha] => sha.len() == 64 && hex(sha),
        // Each store's atomic-write directory and its owner lock.
        [".tmp", _] | [".tmp", _, _] => true,
        _ => false,
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading a directory").flatten() {
        let path = entry.path();
        if entry.file_type().expect("a file type").is_dir() {
            out.push(path.clone());
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Checks a refusal: a 4xx JSON error; for a request body's field, it names the field.
async fn refused(res: reqwest::Response, field: Option<&str>, what: &str) -> Value {
    let status = res.status().as_u16();
    let text = res.text().await.expect("a body");
    let j: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {status} not JSON: {text}"));
    assert!((400..500).contains(&status), "{what}: {status}: {j}");
    assert!(j["code"].is_string() && j["message"].is_string(), "{what}: {j}");
    if let Some(f) = field {
        assert_eq!(j["field"], f, "{what}: the error names the field: {j}");
    }
    j
}

const SOURCE: &str = "def terrain(ctx, chunk):\n    return chunk\n";

/// Hostile names, ids and path segments (`../`, `..%2f`, `%2e%2e`, NUL, `\`,
/// 10 KB, Unicode look-alikes, bidi overrides) in world names, plugin names
/// and versions, account names, world ids, plugin path segments and chunk
/// coordinates on `fs://` storage: each request is refused with a 4xx JSON
/// error (naming the field for a body field) or stored under its own prefix
/// as the name it was (a world's display name); afterwards every file of
/// the data directory is under an expected prefix with an expected key
/// shape, and nothing was created next to the data directory (a sentinel
/// parent holds only the data directory and the sentinel file).
#[tokio::test]
async fn hostile_names_stay_inside_their_storage_prefix() {
    let parent = TempDir::new("hostile-names");
    let data = parent.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(parent.0.join("sentinel"), b"must stay alone").unwrap();
    let s = start_with(&format!("fs://{}", data.display()), |_| {});
    let base = s.base.clone();
    let token = s.token.clone();
    let http = client();
    let plugin = upload_plugin(&base, &token, "flat", "1.0.0", SOURCE).await;
    assert_eq!(plugin["name"], "flat");
    let world = create_world(&base, &token, json!({"name": "Home", "seed": 407})).await;
    let wid = world["id"].as_str().unwrap().to_owned();
    let addr = base.trim_start_matches("http://").to_owned();
    let mut stored_names = 0;

    for h in hostile_names() {
        let short: String = h.chars().take(24).flat_map(char::escape_default).collect();
        // A world's name is a label inside its record: stored as sent (trimmed) or refused naming `name`.
        let res =
            http.post(format!("{base}/v1/worlds")).bearer_auth(&token).json(&json!({"name": h})).send().await.unwrap();
        if res.status() == 201 {
            let j: Value = res.json().await.unwrap();
            assert_eq!(j["name"].as_str(), Some(h.trim()), "world name {short}: stored as sent");
            assert!(worldloom_cluster::ids::WorldId::parse(j["id"].as_str().unwrap()).is_ok());
            stored_names += 1;
        } else {
            refused(res, Some("name"), &format!("world name {short}")).await;
        }
        // Plugin names and versions: refused, naming the field (before any sandbox check).
        let up = |name: &str, version: &str| json!({"name": name, "version": version, "source": SOURCE});
        let res =
            http.post(format!("{base}/v1/plugins")).bearer_auth(&token).json(&up(&h, "1.0.0")).send().await.unwrap();
        refused(res, Some("name"), &format!("plugin name {short}")).await;
        let res =
            http.post(format!("{base}/v1/plugins")).bearer_auth(&token).json(&up("flat", &h)).send().await.unwrap();
        refused(res, Some("version"), &format!("plugin version {short}")).await;
        let res = http
            .put(format!("{base}/v1/worlds/{wid}/plugins"))
            .bearer_auth(&token)
            .json(&json!({"plugins": [{"name": h, "version": "1.0.0"}]}))
            .send()
            .await
            .unwrap();
        refused(res, Some("plugins[0].name"), &format!("attached plugin name {short}")).await;
        let res = http
            .put(format!("{base}/v1/worlds/{wid}/plugins"))
            .bearer_auth(&token)
            .json(&json!({"plugins": [{"name": "flat", "version": h}]}))
            .send()
            .await
            .unwrap();
        refused(res, None, &format!("attached plugin version {short}")).await;
        // Account names: refused before anything is written.
        let store = s.store();
        let name = h.clone();
        let made = worldloom_tests::block_on(async move {
            worldloom_coordinator::auth::create_account(store.as_ref(), &name).await
        });
        let Err(e) = made else { panic!("account {short} was created") };
        assert_eq!(e.field.as_deref(), Some("name"), "account {short}: {e}");
        // Path segments, percent-encoded byte for byte and (where HTTP allows) as they are.
        let enc = pct(&h);
        let mut paths = vec![
            ("GET", format!("/v1/worlds/{enc}")),
            ("GET", format!("/v1/worlds/{enc}/stream")),
            ("PUT", format!("/v1/worlds/{enc}/params")),
            ("GET", format!("/v1/worlds/{wid}/chunks/{enc}/0")),
            ("GET", format!("/v1/worlds/{wid}/chunks/0/{enc}")),
            ("GET", format!("/v1/plugins/{enc}")),
            ("GET", format!("/v1/plugins/{enc}/1.0.0")),
            ("GET", format!("/v1/plugins/flat/{enc}")),
            ("GET", format!("/v1/plugins/flat/{enc}/source")),
            ("POST", format!("/v1/plugins/{enc}/1.0.0/yank")),
            ("POST", format!("/v1/plugins/flat/{enc}/yank")),
            ("GET", format!("/v1/plugins?q={enc}")),
        ];
        if !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%/:@!$&'()*+,;=".contains(&b)) {
            paths.push(("GET", format!("/v1/worlds/{h}")));
            paths.push(("GET", format!("/v1/plugins/{h}")));
            paths.push(("GET", format!("/v1/plugins/flat/{h}/source")));
            paths.push(("POST", format!("/v1/plugins/{h}/1.0.0/yank")));
        }
        for (method, path) in paths {
            let req = with_body(
                method,
                &path,
                &[("Authorization", format!("Bearer {token}").as_bytes())],
                if method == "GET" { &b""[..] } else { &b"{}"[..] },
            );
            let r = raw(&addr, vec![req]).await;
            let shown: String = path.chars().take(120).collect();
            if path.starts_with("/v1/plugins?q=") && r.status == 200 {
                let j = r.json().expect("JSON");
                assert!(j["plugins"].as_array().is_some(), "{shown}: {j}");
                continue;
            }
            // The one existing version, reached only through a literal `flat/1.0.0`.
            assert!(
                (400..500).contains(&r.status),
                "{method} {shown}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let j = r.json().unwrap_or_else(|| {
                panic!("{method} {shown}: {} not JSON: {:?}", r.status, String::from_utf8_lossy(&r.body))
            });
            assert!(j["code"].is_string(), "{method} {shown}: {j}");
        }
    }
    assert!(stored_names > 0, "some hostile world names are valid labels and were stored");
    // Valid names that spell the storage's own directories are stored
    // hex-encoded below their prefix like any other (the walk below checks).
    upload_plugin(&base, &token, "worlds", "1.0.0", SOURCE).await;
    let tokens = s.create_account("tokens");
    let (status, _) =
        status_and_json(http.post(format!("{base}/v1/plugins/worlds/1.0.0/yank")).bearer_auth(&tokens)).await;
    assert_eq!(status, 403, "the account named `tokens` does not own the plugin named `worlds`");

    // The yank of a real version by its real name still works: nothing above changed it.
    let res = http.get(format!("{base}/v1/plugins/flat/1.0.0")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["yanked"], false);
    s.stop();

    // Nothing outside the data directory; nothing inside it off its prefixes.
    let mut top: Vec<String> =
        std::fs::read_dir(&parent.0).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["data", "sentinel"], "files appeared next to the data directory");
    assert_eq!(std::fs::read(parent.0.join("sentinel")).unwrap(), b"must stay alone");
    let mut all = Vec::new();
    walk(&data, &mut all);
    let mut files = 0;
    for path in &all {
        let rel = path.strip_prefix(&data).unwrap().to_str().unwrap_or_else(|| panic!("a non-UTF-8 path {path:?}"));
        if path.is_dir() {
            let known = [
                "worlds",
                "chunks",
                "accounts",
                "tokens",
                "plugins",
                "plugins/names",
                "plugins/versions",
                "plugins/sources",
                ".tmp",
            ];
            let depth = rel.split('/').count();
            let ok = known.contains(&rel)
                || (rel.starts_with("chunks/") && depth <= 4)
                || (rel.starts_with("plugins/versions/") && depth == 3)
                || (rel.starts_with(".tmp/") && depth == 2);
            assert!(ok, "an unexpected directory {rel}");
        } else {
            files += 1;
            assert!(expected_key(rel), "an object outside the expected prefixes: {rel}");
        }
    }
    assert!(files >= 4, "the sweep stored worlds, a plugin and an account: {all:?}");
}

// ---------------------------------------------------------------------------
// Tokens across accounts and coordinators.

async fn status_and_json(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("a response");
    let status = res.status().as_u16();
    let text = res.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}")))
}

/// Two `worldloom coordinator` processes and a node sharing one `fs://`
/// storage: account A's token cannot change B's world, attach to it, yank
/// or unyank B's plugin or upload under B's plugin name, on either
/// coordinator (403 JSON; 404 for what does not exist), and nothing of B's
/// changed; then `worldloom token revoke` against the shared data makes the
/// very next request with that token a 401 on each coordinator, while the
/// other account's token keeps working.
#[tokio::test]
async fn tokens_are_per_account_and_a_revoked_token_fails_at_once_on_every_coordinator() {
    let dir = TempDir::new("hostile-tokens");
    let data = dir.uri();
    let env = cluster_env(&[]);
    let c1 = spawn_coordinator(&data, &env);
    let c2 = spawn_coordinator(&data, &env);
    let _node = spawn_node("node-a", &[&c1.base, &c2.base], &data, &env);
    wait_for_nodes(&c1.base, &["node-a"]).await;
    wait_for_nodes(&c2.base, &["node-a"]).await;
    let alice = worldloom_tests::token_command(&["create", "alice"], &data);
    let bob = worldloom_tests::token_command(&["create", "bob"], &data);
    let http = client();

    let world = create_world(&c1.base, &bob, json!({"name": "Bob's", "seed": 408})).await;
    let wid = world["id"].as_str().unwrap().to_owned();
    upload_plugin(&c2.base, &bob, "bobs-plugin", "1.0.0", SOURCE).await;
    let alices = create_world(&c2.base, &alice, json!({"name": "Alice's", "seed": 409})).await;
    let alices_id = alices["id"].as_str().unwrap().to_owned();

    for base in [&c1.base, &c2.base] {
        let attempts = [
            http.put(format!("{base}/v1/worlds/{wid}/params")).json(&json!({"params": {"sea_level": 0.9}})),
            http.put(format!("{base}/v1/worlds/{wid}/plugins"))
                .json(&json!({"plugins": [{"name": "bobs-plugin", "version": "1.0.0"}]})),
            http.post(format!("{base}/v1/plugins/bobs-plugin/1.0.0/yank")),
            http.post(format!("{base}/v1/plugins/bobs-plugin/1.0.0/unyank")),
            http.post(format!("{base}/v1/plugins"))
                .json(&json!({"name": "bobs-plugin", "version": "2.0.0", "source": SOURCE})),
        ];
        for req in attempts {
            let (status, j) = status_and_json(req.bearer_auth(&alice)).await;
            assert_eq!(status, 403, "{base}: alice on bob's things: {j}");
            assert_eq!(j["code"], "forbidden", "{j}");
        }
        for req in [
            http.put(format!("{base}/v1/worlds/w0000000000000000/params")).json(&json!({"params": {}})),
            http.post(format!("{base}/v1/plugins/bobs-plugin/9.9.9/yank")),
        ] {
            let (status, j) = status_and_json(req.bearer_auth(&alice)).await;
            assert_eq!(status, 404, "{base}: {j}");
        }
    }
    for base in [&c1.base, &c2.base] {
        let (_, w) = status_and_json(http.get(format!("{base}/v1/worlds/{wid}"))).await;
        assert_eq!(w["revision"], 0, "bob's world is unchanged: {w}");
        assert_eq!(w["plugins"], json!([]), "{w}");
        let (_, p) = status_and_json(http.get(format!("{base}/v1/plugins/bobs-plugin"))).await;
        assert_eq!(p["versions"].as_array().map(Vec::len), Some(1), "{p}");
        assert_eq!(p["versions"][0]["yanked"], false, "{p}");
    }

    // Alice's token works on both coordinators right up to the revocation.
    let touch = |base: &str, token: &str| {
        http.put(format!("{base}/v1/worlds/{alices_id}/params")).bearer_auth(token).json(&json!({"params": {}}))
    };
    for base in [&c1.base, &c2.base] {
        let (status, j) = status_and_json(touch(base, &alice)).await;
        assert_eq!(status, 200, "{base}: {j}");
    }
    worldloom_tests::token_command(&["revoke", "alice"], &data);
    for base in [&c1.base, &c2.base] {
        let (status, j) = status_and_json(touch(base, &alice)).await;
        assert_eq!(status, 401, "{base}: the revoked token still works: {j}");
        assert_eq!(j["code"], "unauthorized", "{j}");
        let (status, _) =
            status_and_json(http.post(format!("{base}/v1/worlds")).bearer_auth(&alice).json(&json!({"name": "After"})))
                .await;
        assert_eq!(status, 401, "{base}");
        let (status, j) = status_and_json(
            http.put(format!("{base}/v1/worlds/{wid}/params")).bearer_auth(&bob).json(&json!({"params": {}})),
        )
        .await;
        assert_eq!(status, 200, "{base}: bob's token is unaffected: {j}");
    }
}
