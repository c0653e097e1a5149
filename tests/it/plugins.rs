//! Plugins through the server: hooks change the chunks of the world they are
//! attached to and no other, a failing hook never fails a chunk, and a
//! plugin that does not load is refused with its diagnostics.

use serde_json::{Value, json};
use worldloom_tests::{Stream, chunk_postcard, client, create_world, start, upload_plugin};
use worldloom_worldgen::{ChunkCoord, generate_chunk};

const LIFT: &str = r#"
import numpy as np
PARAMS = {"amount": {"default": 1000.0, "min": 0.0, "max": 5000.0, "doc": "metres to add"}}
CALLS = 0

def terrain(ctx, chunk):
    global CALLS
    CALLS += 1   # state that must not survive the call
    chunk.height = chunk.height + ctx.params["amount"] + (CALLS - 1) * 1e6
    return chunk

def features(ctx, chunk):
    return [{"x": 0, "z": 0, "kind": "marker", "cx": ctx.cx, "r": ctx.random.random()}]
"#;

const FLAKY: &str = r#"
def terrain(ctx, chunk):
    if ctx.cx % 2:
        raise ValueError("odd chunks are not my thing")
    return chunk
"#;

#[tokio::test]
async fn a_plugin_changes_its_own_world_and_no_other() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    let with = create_world(
        &s.base,
        &s.token,
        json!({"name": "W", "seed": 5, "plugins": [{"name": "lift", "version": "1.0.0", "params": {"amount": 250}}]}),
    )
    .await;
    let without = create_world(&s.base, &s.token, json!({"name": "N", "seed": 5})).await;
    assert_eq!(with["plugins"][0]["params"]["amount"], 250.0, "{with}");
    assert_eq!(with["plugins"][0]["sha256"].as_str().unwrap().len(), 64);
    for (cx, cz) in [(0, 0), (1, -1), (-7, 3), (0, 0)] {
        let core = generate_chunk(5, &Default::default(), ChunkCoord::new(cx, cz));
        let (_, lifted) = chunk_postcard(&s.base, with["id"].as_str().unwrap(), cx, cz).await;
        let (_, plain) = chunk_postcard(&s.base, without["id"].as_str().unwrap(), cx, cz).await;
        assert_eq!(plain.chunk, core, "the other world is untouched");
        assert!(lifted.plugin_failures.is_empty(), "{:?}", lifted.plugin_failures);
        for i in 0..core.layers.height.len() {
            // Exactly +250 on every call: the global counter never carried over.
            assert_eq!(lifted.chunk.layers.height[i], core.layers.height[i] + 250.0);
        }
        let marker = lifted.chunk.features.iter().find(|f| f.kind == "marker").expect("the plugin's feature");
        assert_eq!(marker.properties["cx"], worldloom_plugin_abi::Value::Int(cx as i64));
    }
    s.stop();
}

#[tokio::test]
async fn a_failing_hook_is_recorded_on_the_chunk_and_the_chunk_is_still_served() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "flaky", "0.1.0", FLAKY).await;
    let w = create_world(
        &s.base,
        &s.token,
        json!({"name": "F", "seed": 8, "plugins": [{"name": "flaky", "version": "0.1.0"}]}),
    )
    .await;
    let id = w["id"].as_str().unwrap();
    let (_, odd) = chunk_postcard(&s.base, id, 1, 0).await;
    assert_eq!(odd.chunk, generate_chunk(8, &Default::default(), ChunkCoord::new(1, 0)));
    assert_eq!(odd.plugin_failures.len(), 1);
    let f = &odd.plugin_failures[0];
    assert_eq!((f.plugin.as_str(), f.kind), ("flaky", worldloom_plugin_abi::ErrorKind::Exception));
    assert!(f.message.contains("odd chunks are not my thing"), "{}", f.message);
    let (_, even) = chunk_postcard(&s.base, id, 2, 0).await;
    assert!(even.plugin_failures.is_empty());
    let json: Value =
        client().get(format!("{}/v1/worlds/{id}/chunks/1/0", s.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(json["plugin_failures"][0]["kind"], "exception");
    s.stop();
}

#[tokio::test]
async fn wrong_plugin_params_name_the_field_and_create_nothing() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    for (plugins, field, code) in [
        (
            json!([{"name": "lift", "version": "1.0.0", "params": {"amount": -5}}]),
            "plugins[0].params.amount",
            "invalid_plugin_params",
        ),
        (
            json!([{"name": "lift", "version": "1.0.0", "params": {"amount": "lots"}}]),
            "plugins[0].params.amount",
            "invalid_plugin_params",
        ),
        (
            json!([{"name": "lift", "version": "1.0.0", "params": {"colour": 1}}]),
            "plugins[0].params.colour",
            "invalid_plugin_params",
        ),
        (json!([{"name": "nope", "version": "1.0.0"}]), "plugins[0].name", "unknown_plugin"),
        (json!([{"name": "lift", "version": "9.9.9"}]), "plugins[0].version", "unknown_version"),
        (json!([{"name": "lift", "source": "def terrain(c, k): return k"}]), "plugins[0]", "invalid_field"),
    ] {
        let res = client()
            .post(format!("{}/v1/worlds", s.base))
            .bearer_auth(&s.token)
            .json(&json!({"name": "B", "plugins": plugins}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{plugins}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["field"].as_str().unwrap().starts_with(field), "{body}");
    }
    let list: Value = client().get(format!("{}/v1/worlds", s.base)).send().await.unwrap().json().await.unwrap();
    assert!(list["worlds"].as_array().unwrap().is_empty(), "nothing was created");
    s.stop();
}

#[tokio::test]
async fn a_world_with_a_plugin_streams_a_radius_8_square() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "lift", "1.0.0", LIFT).await;
    let w = create_world(
        &s.base,
        &s.token,
        json!({"name": "S", "seed": 9, "plugins": [{"name": "lift", "version": "1.0.0"}]}),
    )
    .await;
    let mut ws = Stream::connect(&s.base, w["id"].as_str().unwrap()).await;
    ws.subscribe(0, 0, 8).await;
    let (chunks, done) = ws.until_done().await;
    assert_eq!(done["sent"], 289);
    assert!(chunks.iter().all(|c| c.plugin_failures.is_empty() && c.chunk.features.iter().any(|f| f.kind == "marker")));
    drop(ws);
    s.stop();
}

/// Spins until the wall clock stops it (the world's fuel is practically unlimited).
const SPIN: &str = r#"
def terrain(ctx, chunk):
    while True:
        pass
"#;

/// A plugin failure that is not a function of the chunk's inputs (here the
/// wall-clock deadline) makes the chunk provisional: it is served, marked as
/// such, never stored as the chunk's truth, and generated again when asked
/// again. The limits that decide it are the world's, set at its creation.
#[tokio::test]
async fn a_wall_clock_failure_is_served_marked_provisional_and_never_stored() {
    let dir = worldloom_tests::TempDir::new("provisional");
    let s = worldloom_tests::start_with(&dir.uri(), |c| {
        c.limits.fuel = 1 << 50;
        c.limits.deadline_ms = 150;
    });
    upload_plugin(&s.base, &s.token, "spin", "1.0.0", SPIN).await;
    let world = create_world(
        &s.base,
        &s.token,
        json!({"name": "S", "seed": 3, "plugins": [{"name": "spin", "version": "1.0.0"}]}),
    )
    .await;
    let id = world["id"].as_str().unwrap().to_owned();
    let store = worldloom_cluster::storage::open(&dir.uri(), &Default::default()).unwrap();
    let wid = worldloom_cluster::ids::WorldId::parse(&id).unwrap();
    let key = worldloom_cluster::storage::Key::chunk(&wid, 0, ChunkCoord::new(2, 2));
    for _ in 0..2 {
        let res = client()
            .get(format!("{}/v1/worlds/{id}/chunks/2/2", s.base))
            .header("accept", "application/x-postcard")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-worldloom-provisional"], "true");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let record: worldloom_cluster::model::ChunkRecord =
            worldloom_cluster::wire::decode(&res.bytes().await.unwrap()).unwrap();
        let f = &record.plugin_failures[0];
        assert_eq!((f.kind, f.transient), (worldloom_plugin_abi::ErrorKind::Timeout, true), "{f:?}");
        assert_eq!(
            record.chunk,
            generate_chunk(3, &Default::default(), ChunkCoord::new(2, 2)),
            "served without the hook"
        );
        assert!(store.get(&key).await.unwrap().is_none(), "a provisional chunk is never stored");
    }
    // A deterministic failure is part of the chunk and is stored.
    let dir2 = worldloom_tests::TempDir::new("fuel-failure");
    let fuel = worldloom_tests::start_with(&dir2.uri(), |c| c.limits.fuel = 50_000_000);
    upload_plugin(&fuel.base, &fuel.token, "spin", "1.0.0", SPIN).await;
    let store = worldloom_cluster::storage::open(&dir2.uri(), &Default::default()).unwrap();
    let world = create_world(
        &fuel.base,
        &fuel.token,
        json!({"name": "F", "seed": 3, "plugins": [{"name": "spin", "version": "1.0.0"}]}),
    )
    .await;
    let fid = worldloom_cluster::ids::WorldId::parse(world["id"].as_str().unwrap()).unwrap();
    let (_, record) = chunk_postcard(&fuel.base, fid.as_str(), 2, 2).await;
    assert_eq!(record.plugin_failures[0].kind, worldloom_plugin_abi::ErrorKind::FuelExhausted);
    assert!(!record.plugin_failures[0].transient);
    // Written behind the answer: waits for it (fails after 60 s if it is never stored).
    worldloom_tests::wait_stored(&dir2.uri(), &Default::default(), fid.as_str(), 0, 2, 2).await;
    let key = worldloom_cluster::storage::Key::chunk(&fid, 0, ChunkCoord::new(2, 2));
    assert!(store.get(&key).await.unwrap().is_some(), "a deterministic failure is stored with its chunk");
    fuel.stop();
    s.stop();
}

/// `/metrics` is the Prometheus text format and its counters move with the
/// work: chunks generated and served from storage, plugin calls and
/// failures by hook and kind, the chunks clients got by source.
#[tokio::test]
async fn metrics_count_chunks_plugin_calls_and_failures() {
    let s = start("memory://");
    upload_plugin(&s.base, &s.token, "flaky", "1.0.0", FLAKY).await;
    let world = create_world(
        &s.base,
        &s.token,
        json!({"name": "M", "seed": 2, "plugins": [{"name": "flaky", "version": "1.0.0"}]}),
    )
    .await;
    let id = world["id"].as_str().unwrap();
    let res = client().get(format!("{}/metrics", s.base)).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE worldloom_node_generation_seconds histogram"), "{text}");
    let sample = |text: &str, name: &str| worldloom_tests::sample(text, name).unwrap_or(0.0);
    for (cx, cz) in [(0, 0), (1, 0), (0, 0)] {
        chunk_postcard(&s.base, id, cx, cz).await;
    }
    let after = client().get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&after, "worldloom_node_chunks_generated_total"), 2.0, "{after}");
    assert_eq!(sample(&after, "worldloom_node_chunks_from_storage_total"), 1.0);
    assert_eq!(sample(&after, r#"worldloom_node_plugin_calls_total{hook="terrain"}"#), 2.0);
    // FLAKY raises on odd chunks.
    assert_eq!(sample(&after, r#"worldloom_node_plugin_failures_total{hook="terrain",kind="exception"}"#), 1.0);
    assert_eq!(sample(&after, r#"worldloom_coordinator_chunks_served_total{source="generated"}"#), 2.0);
    assert_eq!(sample(&after, r#"worldloom_coordinator_chunks_served_total{source="stored"}"#), 1.0);
    assert_eq!(sample(&after, "worldloom_coordinator_live_nodes"), 1.0);
    assert_eq!(sample(&after, "worldloom_node_regions_owned"), 1.0);
    // This request is the one in flight.
    assert_eq!(sample(&after, "worldloom_coordinator_inflight_requests"), 1.0);
    assert_eq!(sample(&after, "worldloom_node_queue_depth"), 0.0);
    s.stop();
}
