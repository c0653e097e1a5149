//! Golden files pin the stored and streamed encodings: an object written by
//! this version must decode in every later one. A deliberate format change
//! bumps the envelope version and adds a new golden file; it never edits one.
//! Regenerate missing files with `WORLDLOOM_BLESS=1 cargo test -p worldloom-tests golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{
    AccountRecord, AttachedPlugin, ChunkRecord, PluginFailure, PluginNameRecord, PluginVersionRecord, TokenRecord,
    WorldRecord,
};
use worldloom_cluster::wire::{self, Versioned};
use worldloom_plugin_abi::{ErrorKind, HookName, Limits, ParamDecl, PluginInfo, RuntimeKind, Value};
use worldloom_worldgen::{Chunk, ChunkCoord, Params};

fn golden<T: Versioned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden").join(name);
    let encoded = wire::encode(value);
    if !path.exists() && std::env::var_os("WORLDLOOM_BLESS").is_some() {
        std::fs::write(&path, &encoded).expect("writing a golden file");
    }
    let stored = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless it once with WORLDLOOM_BLESS=1)", path.display()));
    assert_eq!(
        &wire::decode::<T>(&stored).expect("the golden file decodes"),
        value,
        "{name} decodes to the same value"
    );
    assert_eq!(stored, encoded, "{name}: the encoding changed; bump the version instead");
}

/// A golden file of an older schema version: it must still decode, to what
/// the current version holds for it.
fn older<T: Versioned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden").join(name);
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(stored[3] < T::VERSION, "{name} is not an older version");
    assert_eq!(&wire::decode::<T>(&stored).expect("the old golden file decodes"), value, "{name}");
}

fn world_id() -> WorldId {
    WorldId::parse("w00112233445566aa").unwrap()
}

/// The chunk inside the chunk golden files: what the core generated for seed
/// 2024 at (-2, 7) when they were blessed. The files pin the record format,
/// not the generation formulas (those are pinned by worldgen's golden
/// digest), so the chunk is taken from the v2 file and checked to be a full,
/// well-formed chunk with features; the rest of the record is fixed here.
fn golden_chunk() -> Chunk {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden").join("chunk-v2.bin");
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let chunk = wire::decode::<ChunkRecord>(&stored).expect("chunk-v2.bin decodes").chunk;
    assert_eq!(chunk.coord, ChunkCoord::new(-2, 7));
    assert!(chunk.layers.height.iter().all(|h| h.is_finite()), "every height is a number");
    chunk
}

fn chunk(transient: bool) -> ChunkRecord {
    ChunkRecord {
        world: world_id(),
        revision: 3,
        chunk: golden_chunk(),
        plugin_failures: vec![PluginFailure {
            plugin: "rivers".into(),
            version: "1.2.0".into(),
            hook: HookName::Terrain,
            kind: ErrorKind::Timeout,
            message: "timeout: passed its 2000 ms deadline".into(),
            transient,
        }],
    }
}

#[test]
fn chunk_record_v2_is_pinned() {
    let record = chunk(true);
    assert!(!record.chunk.features.is_empty(), "the golden chunk exercises features");
    golden("chunk-v2.bin", &record);
}

#[test]
fn chunk_record_v1_still_decodes_with_every_failure_deterministic() {
    older("chunk-v1.bin", &chunk(false));
}

fn world(limits: Limits) -> WorldRecord {
    WorldRecord {
        id: world_id(),
        name: "Golden".into(),
        seed: u64::MAX - 7,
        params: Params::default(),
        plugins: vec![AttachedPlugin {
            name: "rivers".into(),
            version: "1.2.0".into(),
            sha256: "ab".repeat(32),
            runtime: RuntimeKind::Python,
            params: BTreeMap::from([
                ("depth".into(), Value::Float(2.5)),
                ("count".into(), Value::Int(-3)),
                ("wet".into(), Value::Bool(true)),
                ("style".into(), Value::Str("braided".into())),
            ]),
        }],
        revision: 3,
        owner: Some("alice".into()),
        created_unix_s: 1_790_000_000,
        updated_unix_s: 1_790_000_100,
        limits,
    }
}

#[test]
fn world_record_v2_is_pinned() {
    let limits = Limits { fuel: 123_456_789, deadline_ms: 1_500, memory_bytes: 96 << 20, ..Limits::default() };
    golden("world-v2.bin", &world(limits));
}

#[test]
fn world_record_v1_still_decodes_under_the_default_limits() {
    older("world-v1.bin", &world(Limits::default()));
}

#[test]
fn plugin_version_record_v1_is_pinned() {
    let info = PluginInfo {
        hooks: vec![HookName::Terrain, HookName::Features],
        params: BTreeMap::from([
            ("depth".into(), ParamDecl { default: Value::Float(2.0), min: Some(0.0), max: Some(8.0), doc: "m".into() }),
            (
                "style".into(),
                ParamDecl { default: Value::Str("braided".into()), min: None, max: None, doc: String::new() },
            ),
        ]),
    };
    let record = PluginVersionRecord {
        name: "rivers".into(),
        version: "1.2.0".into(),
        description: "Carves rivers".into(),
        runtime: RuntimeKind::Python,
        sha256: "cd".repeat(32),
        size_bytes: 4_321,
        info,
        abi_version: 1,
        owner: "alice".into(),
        created_unix_s: 1_790_000_000,
        yanked: true,
    };
    golden("plugin-version-v1.bin", &record);
}

#[test]
fn plugin_name_account_and_token_records_v1_are_pinned() {
    golden("plugin-name-v1.bin", &PluginNameRecord { name: "rivers".into(), owner: "alice".into(), created_unix_s: 7 });
    golden(
        "account-v1.bin",
        &AccountRecord { name: "alice".into(), token_sha256: "ef".repeat(32), created_unix_s: 1_790_000_000 },
    );
    golden("token-v1.bin", &TokenRecord { account: "alice".into(), created_unix_s: 1_790_000_001 });
}
