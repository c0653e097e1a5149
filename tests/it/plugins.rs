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
