//! The HTTP API: worlds, chunks, and a clear JSON 4xx for every kind of bad input.

use serde_json::{Value, json};
use worldloom_tests::{chunk_postcard, client, create_world, start};

async fn get(url: String) -> (u16, Value) {
    let res = client().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.expect("every response is JSON"))
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.len() > 10), "a helpful message: {body}");
}

#[tokio::test]
async fn health_and_reference_tables_are_served() {
    let s = start("memory://");
    let (status, body) = get(format!("{}/healthz", s.base)).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["nodes"], 1);
    let (_, biomes) = get(format!("{}/v1/biomes", s.base)).await;
    assert!(biomes["biomes"].as_array().unwrap().len() >= 8);
    let (_, params) = get(format!("{}/v1/params", s.base)).await;
    assert_eq!(params["params"][0]["name"], "sea_level");
    s.stop();
}

#[tokio::test]
async fn creating_a_world_fills_in_defaults_and_lists_it() {
    let s = start("memory://");
    let w = create_world(&s.base, &s.token, json!({"name": "Terra", "seed": 42, "params": {"octaves": 4}})).await;
    let id = w["id"].as_str().unwrap();
    assert_eq!(w["seed"], 42);
    assert_eq!(w["params"]["octaves"], 4);
    assert_eq!(w["params"]["height_scale"], 600.0, "defaults are filled in: {w}");
    assert_eq!(w["revision"], 0);
    let (status, got) = get(format!("{}/v1/worlds/{id}", s.base)).await;
    assert_eq!(status, 200);
    assert_eq!(got, w);
    let (_, list) = get(format!("{}/v1/worlds", s.base)).await;
    assert_eq!(list["worlds"].as_array().unwrap().len(), 1);
    // A seed may be text; the same text gives the same seed.
    let a = create_world(&s.base, &s.token, json!({"name": "A", "seed": "hello"})).await;
    let b = create_world(&s.base, &s.token, json!({"name": "B", "seed": "hello"})).await;
    assert_eq!(a["seed"], b["seed"]);
    // Without a seed the server picks one and says which.
    let r = create_world(&s.base, &s.token, json!({"name": "R"})).await;
    assert!(r["seed"].is_u64());
    s.stop();
}

#[tokio::test]
async fn a_chunk_in_json_has_named_32_by_32_layers_and_features() {
    let s = start("memory://");
    let w = create_world(&s.base, &s.token, json!({"name": "T", "seed": 7})).await;
    let id = w["id"].as_str().unwrap();
    let (status, c) = get(format!("{}/v1/worlds/{id}/chunks/-3/5", s.base)).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!((c["cx"].as_i64(), c["cz"].as_i64(), c["size"].as_u64()), (Some(-3), Some(5), Some(32)));
    for layer in ["height", "temperature", "moisture", "biome"] {
        let rows = c["layers"][layer].as_array().unwrap();
        assert_eq!(rows.len(), 32, "{layer}");
        assert!(rows.iter().all(|r| r.as_array().unwrap().len() == 32), "{layer}");
    }
    assert!(c["features"].is_array());
    // The JSON and postcard forms carry the same chunk, equal to the core's.
    let (_, record) = chunk_postcard(&s.base, id, -3, 5).await;
    let core = worldloom_worldgen::generate_chunk(7, &Default::default(), worldloom_worldgen::ChunkCoord::new(-3, 5));
    assert_eq!(record.chunk, core);
    let h = |x: usize, z: usize| c["layers"]["height"][x][z].as_f64().unwrap() as f32;
    assert_eq!(h(2, 9), core.layers.height[2 * 32 + 9], "layers are indexed [x][z]");
    assert_eq!(c["features"].as_array().unwrap().len(), core.features.len());
    s.stop();
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_4xx_never_a_5xx() {
    let s = start("memory://");
    let base = &s.base;
    let w = create_world(base, &s.token, json!({"name": "T", "seed": 1})).await;
    let id = w["id"].as_str().unwrap();
    let token = s.token.clone();
    let post = |body: &'static str| {
        let url = format!("{base}/v1/worlds");
        let token = token.clone();
        async move {
            let res = client()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };

    // Unknown world, and an id that is not even an id.
    let (st, b) = get(format!("{base}/v1/worlds/w0000000000000000")).await;
    assert_error(st, &b, 404, "not_found");
    let (st, b) = get(format!("{base}/v1/worlds/..%2F..%2Fetc/chunks/0/0")).await;
    assert_error(st, &b, 404, "not_found");
    // Malformed JSON and an empty body.
    let (st, b) = post(r#"{"name": "x", "#).await;
    assert_error(st, &b, 400, "malformed_json");
    let (st, b) = post("").await;
    assert_error(st, &b, 400, "malformed_json");
    // Invalid parameters name the field.
    let (st, b) = post(r#"{"name": "x", "params": {"octaves": 99}}"#).await;
    assert_error(st, &b, 422, "invalid_params");
    assert_eq!(b["field"], "params.octaves");
    let (st, b) = post(r#"{"name": "x", "params": {"persistence": "high"}}"#).await;
    assert_error(st, &b, 422, "invalid_field");
    assert_eq!(b["field"], "params.persistence");
    let (st, b) = post(r#"{"name": "x", "params": {"roughness": 1}}"#).await;
    assert_error(st, &b, 422, "invalid_field");
    let (st, b) = post(r#"{"name": "", "seed": 1}"#).await;
    assert_error(st, &b, 422, "invalid");
    assert_eq!(b["field"], "name");
    let (st, b) = post(r#"{"seed": 1}"#).await;
    assert_error(st, &b, 422, "invalid_field");
    // Non-integer and out-of-range coordinates.
    let (st, b) = get(format!("{base}/v1/worlds/{id}/chunks/abc/0")).await;
    assert_error(st, &b, 400, "invalid_coordinate");
    assert_eq!(b["field"], "cx");
    let (st, b) = get(format!("{base}/v1/worlds/{id}/chunks/0/1.5")).await;
    assert_error(st, &b, 400, "invalid_coordinate");
    assert_eq!(b["field"], "cz");
    let (st, b) = get(format!("{base}/v1/worlds/{id}/chunks/99999999999/0")).await;
    assert_error(st, &b, 400, "invalid_coordinate");
    let (st, b) = get(format!("{base}/v1/worlds/{id}/chunks/2000000000/0")).await;
    assert_error(st, &b, 422, "coordinate_out_of_range");
    // An unsupported representation.
    let res =
        client().get(format!("{base}/v1/worlds/{id}/chunks/0/0")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), 406);
    // Unknown routes, wrong methods and oversized bodies are JSON too.
    let (st, b) = get(format!("{base}/v2/nothing")).await;
    assert_error(st, &b, 404, "no_route");
    let res = client().delete(format!("{base}/v1/worlds")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "method_not_allowed");
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(2 << 20));
    let res = client().post(format!("{base}/v1/worlds")).bearer_auth(&s.token).body(huge).send().await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "too_large");
    // Nothing above created a world.
    let (_, list) = get(format!("{base}/v1/worlds")).await;
    assert_eq!(list["worlds"].as_array().unwrap().len(), 1);
    s.stop();
}
