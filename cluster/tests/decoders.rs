//! Property tests of every decoder of untrusted bytes in this crate: the
//! stored envelopes (every record kind) and the coordinator <-> node frames.
//!
//! Properties: decoding arbitrary bytes (random, valid headers with random
//! bodies, and valid envelopes with bytes flipped, cut or inserted) never
//! panics and returns an error or a value; whatever decodes re-encodes to
//! an envelope that decodes to the same value; generated values round-trip.
//!
//! The default run is bounded (1024 cases per property, well under a second);
//! `WORLDLOOM_FUZZ_CASES=100000 cargo test -p worldloom-cluster --test decoders`
//! is the long run.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use worldloom_cluster::ErrorKind;
use worldloom_cluster::model::{
    AccountRecord, ChunkRecord, PluginNameRecord, PluginVersionRecord, TokenRecord, WorldRecord,
};
use worldloom_cluster::placement::NodeId;
use worldloom_cluster::protocol::{
    ChunkBytes, HelloReply, NodeHello, NodeRequest, NodeResponse, RpcRequest, RpcResponse, WireError,
};
use worldloom_cluster::wire::{self, Versioned};
use worldloom_plugin_abi::{Limits, RuntimeKind};
use worldloom_worldgen::ChunkCoord;

/// Cases per property: `WORLDLOOM_FUZZ_CASES` (or `PROPTEST_CASES`), else 1024.
fn config() -> Config {
    let cases = ["WORLDLOOM_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1024);
    Config { cases, failure_persistence: None, ..Config::default() }
}

fn golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes `bytes` as `T`; if that succeeds, the value must survive
/// encode -> decode unchanged (compared by encoding: a decoded chunk may
/// hold NaN, which is not equal to itself).
fn decodes_sanely<T: Versioned + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = wire::decode::<T>(bytes) {
        let encoded = wire::encode(&value);
        let again = wire::decode::<T>(&encoded)
            .map_err(|e| TestCaseError::fail(format!("{} re-encoded does not decode: {e}", T::NAME)))?;
        prop_assert_eq!(wire::encode(&again), encoded, "{} changed in a round trip", T::NAME);
    }
    Ok(())
}

/// Every decoder at once, so every input exercises all of them.
fn all_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    decodes_sanely::<WorldRecord>(bytes)?;
    decodes_sanely::<ChunkRecord>(bytes)?;
    decodes_sanely::<PluginVersionRecord>(bytes)?;
    decodes_sanely::<PluginNameRecord>(bytes)?;
    decodes_sanely::<TokenRecord>(bytes)?;
    decodes_sanely::<AccountRecord>(bytes)?;
    decodes_sanely::<RpcRequest>(bytes)?;
    decodes_sanely::<RpcResponse>(bytes)?;
    decodes_sanely::<NodeHello>(bytes)?;
    decodes_sanely::<HelloReply>(bytes)?;
    Ok(())
}

/// Valid envelopes of every kind (golden files and built frames).
fn seeds() -> Vec<Vec<u8>> {
    let world = wire::decode::<WorldRecord>(&golden("world-v2.bin")).expect("the golden world decodes");
    let chunk = golden("chunk-v2.bin");
    let request = RpcRequest {
        id: 7,
        deadline_ms: 15_000,
        request: NodeRequest::Chunk { spec: Arc::new(world.gen_spec()), coord: ChunkCoord::new(-3, 5) },
    };
    let check = RpcRequest {
        id: 8,
        deadline_ms: 1,
        request: NodeRequest::CheckPlugin {
            runtime: RuntimeKind::Python,
            name: "valleys".into(),
            source: "def terrain(ctx, chunk):\n    return chunk\n".into(),
            limits: Limits::default(),
        },
    };
    let reply = RpcResponse {
        id: 7,
        result: Ok(NodeResponse::Chunk(ChunkBytes {
            envelope: Bytes::from(chunk.clone()),
            generated: true,
            stored: true,
        })),
    };
    let failed = RpcResponse {
        id: 9,
        result: Err(WireError { kind: ErrorKind::Unavailable, message: "busy".into(), field: Some("x".into()) }),
    };
    let hello = NodeHello {
        protocol: 1,
        id: NodeId("node-0".into()),
        url: "http://127.0.0.1:1".into(),
        ready: true,
        workers: 2,
    };
    let hello_reply = HelloReply { protocol: 1, heartbeat_ms: 1000, node_timeout_ms: 3000 };
    let mut out: Vec<Vec<u8>> = [
        "account-v1.bin",
        "chunk-v1.bin",
        "chunk-v2.bin",
        "plugin-name-v1.bin",
        "plugin-version-v1.bin",
        "token-v1.bin",
        "world-v1.bin",
        "world-v2.bin",
    ]
    .iter()
    .map(|n| golden(n))
    .collect();
    out.extend([
        wire::encode(&request),
        wire::encode(&check),
        wire::encode(&reply),
        wire::encode(&failed),
        wire::encode(&hello),
        wire::encode(&hello_reply),
    ]);
    out
}

/// A change to a valid envelope.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, n: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Remove { at, n }),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = bytes.len().max(1);
    match m {
        Mutation::Flip { at, bit } => {
            if let Some(b) = bytes.get_mut(at % len) {
                *b ^= 1 << bit;
            }
        }
        Mutation::Set { at, byte } => {
            if let Some(b) = bytes.get_mut(at % len) {
                *b = *byte;
            }
        }
        Mutation::Truncate { len: n } => bytes.truncate(n % len),
        Mutation::Insert { at, bytes: extra } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, extra.iter().copied());
        }
        Mutation::Remove { at, n } => {
            let at = at % len;
            let end = (at + n).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

/// Kind bytes of every envelope type.
const KINDS: [u8; 10] = [1, 2, 3, 4, 5, 6, 16, 17, 18, 19];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_decoders(&bytes)?;
    }

    #[test]
    fn a_valid_header_with_an_arbitrary_body_never_panics_a_decoder(
        kind in proptest::sample::select(KINDS.to_vec()),
        version in 0u8..4,
        body in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = vec![b'W', b'L', kind, version];
        bytes.extend_from_slice(&body);
        all_decoders(&bytes)?;
    }

    #[test]
    fn mutated_valid_envelopes_never_panic_a_decoder(
        seed in proptest::sample::select(seeds()),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = mutations.iter().fold(seed, apply);
        all_decoders(&bytes)?;
    }

    #[test]
    fn node_hellos_round_trip(
        protocol in any::<u32>(),
        id in "\\PC{0,40}",
        url in "\\PC{0,80}",
        ready in any::<bool>(),
        workers in any::<u32>(),
    ) {
        let hello = NodeHello { protocol, id: NodeId(id), url, ready, workers };
        prop_assert_eq!(wire::decode::<NodeHello>(&wire::encode(&hello)).unwrap(), hello);
    }

    #[test]
    fn rpc_frames_round_trip(
        id in any::<u64>(),
        deadline_ms in any::<u64>(),
        name in "\\PC{0,64}",
        source in "\\PC{0,400}",
        message in "\\PC{0,200}",
        generated in any::<bool>(),
        envelope in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let request = RpcRequest {
            id,
            deadline_ms,
            request: NodeRequest::CheckPlugin { runtime: RuntimeKind::Python, name, source, limits: Limits::default() },
        };
        prop_assert_eq!(wire::decode::<RpcRequest>(&wire::encode(&request)).unwrap(), request);
        let ok = RpcResponse {
            id,
            result: Ok(NodeResponse::Chunk(ChunkBytes { envelope: Bytes::from(envelope), generated, stored: !generated })),
        };
        prop_assert_eq!(wire::decode::<RpcResponse>(&wire::encode(&ok)).unwrap(), ok);
        let err = RpcResponse { id, result: Err(WireError { kind: ErrorKind::Conflict, message, field: None }) };
        prop_assert_eq!(wire::decode::<RpcResponse>(&wire::encode(&err)).unwrap(), err);
    }
}

#[test]
fn every_seed_is_a_valid_envelope() {
    for (i, seed) in seeds().iter().enumerate() {
        let decoded = [
            wire::decode::<WorldRecord>(seed).is_ok(),
            wire::decode::<ChunkRecord>(seed).is_ok(),
            wire::decode::<PluginVersionRecord>(seed).is_ok(),
            wire::decode::<PluginNameRecord>(seed).is_ok(),
            wire::decode::<TokenRecord>(seed).is_ok(),
            wire::decode::<AccountRecord>(seed).is_ok(),
            wire::decode::<RpcRequest>(seed).is_ok(),
            wire::decode::<RpcResponse>(seed).is_ok(),
            wire::decode::<NodeHello>(seed).is_ok(),
            wire::decode::<HelloReply>(seed).is_ok(),
        ];
        assert_eq!(decoded.iter().filter(|d| **d).count(), 1, "seed {i} decodes as exactly one kind");
    }
}

#[test]
fn a_busy_node_is_busy_on_the_coordinator_too() {
    let wire = WireError::from(&worldloom_cluster::Error::busy());
    let back = worldloom_cluster::Error::from(wire);
    assert_eq!((back.kind, back.code()), (ErrorKind::Unavailable, "busy"));
}
