//! Golden files pin the stored and streamed encodings: an object written by
//! this version must decode in every later one. A deliberate format change
//! bumps the envelope version and adds a new golden file; it never edits one.
//! Regenerate missing files with `WORLDLOOM_BLESS=1 cargo test -p worldloom-tests golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use worldloom_cluster::ids::WorldId;
use worldloom_cluster::model::{AttachedPlugin, ChunkRecord, PluginFailure, WorldRecord};
use worldloom_cluster::wire::{self, Versioned};
use worldloom_plugin_abi::{ErrorKind, HookName, RuntimeKind, Value};
use worldloom_worldgen::{ChunkCoord, Params, generate_chunk};

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

fn world_id() -> WorldId {
    WorldId::parse("w00112233445566aa").unwrap()
}

#[test]
fn chunk_record_v1_still_decodes() {
    let record = ChunkRecord {
        world: world_id(),
        revision: 3,
        chunk: generate_chunk(2024, &Params::default(), ChunkCoord::new(-2, 7)),
        plugin_failures: vec![PluginFailure {
            plugin: "rivers".into(),
            version: "1.2.0".into(),
            hook: HookName::Terrain,
            kind: ErrorKind::Timeout,
            message: "timeout: passed its 2000 ms deadline".into(),
        }],
    };
    assert!(!record.chunk.features.is_empty(), "the golden chunk exercises features");
    golden("chunk-v1.bin", &record);
}

#[test]
fn world_record_v1_still_decodes() {
    let record = WorldRecord {
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
    };
    golden("world-v1.bin", &record);
}
