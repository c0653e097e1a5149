//! WebSocket streaming: a radius-r square nearest-first, movement without
//! resending, and error frames (not dropped sockets) for bad subscriptions.

use std::collections::HashSet;

use serde_json::json;
use worldloom_tests::{Frame, Stream, client, create_world, start};
use worldloom_worldgen::ChunkCoord;

#[tokio::test]
async fn a_radius_8_square_arrives_nearest_first_then_done() {
    let s = start("memory://");
    let w = create_world(&s.base, &s.token, json!({"name": "S", "seed": 11})).await;
    let id = w["id"].as_str().unwrap();
    let mut ws = Stream::connect(&s.base, id).await;
    let center = ChunkCoord::new(-5, 3);
    ws.subscribe(center.cx, center.cz, 8).await;
    let (chunks, done) = ws.until_done().await;
    assert_eq!(chunks.len(), 289);
    assert_eq!(done["sent"], 289);
    assert_eq!(done["radius"], 8);
    let coords: Vec<ChunkCoord> = chunks.iter().map(|c| c.chunk.coord).collect();
    assert_eq!(coords[0], center);
    assert!(coords.windows(2).all(|p| p[0].distance2(center) <= p[1].distance2(center)), "nearest first");
    let unique: HashSet<_> = coords.iter().collect();
    assert_eq!(unique.len(), 289);
    assert!(coords.iter().all(|c| c.ring_distance(center) <= 8));
    assert!(chunks.iter().all(|c| c.world.as_str() == id));
    drop(ws);
    s.stop();
}

#[tokio::test]
async fn moving_sends_only_the_chunks_the_client_does_not_have() {
    let s = start("memory://");
    let w = create_world(&s.base, &s.token, json!({"name": "S", "seed": 12})).await;
    let mut ws = Stream::connect(&s.base, w["id"].as_str().unwrap()).await;
    ws.subscribe(0, 0, 2).await;
    let (first, _) = ws.until_done().await;
    assert_eq!(first.len(), 25);
    ws.subscribe(1, 0, 2).await;
    let (second, done) = ws.until_done().await;
    // Moving one chunk east reveals one new column of five chunks.
    let got: HashSet<ChunkCoord> = second.iter().map(|c| c.chunk.coord).collect();
    let want: HashSet<ChunkCoord> = (-2..=2).map(|z| ChunkCoord::new(3, z)).collect();
    assert_eq!(got, want);
    assert_eq!(done["already_had"], 20);
    drop(ws);
    s.stop();
}

#[tokio::test]
async fn bad_subscriptions_get_error_frames_and_the_socket_stays_usable() {
    let s = start("memory://");
    let w = create_world(&s.base, &s.token, json!({"name": "S", "seed": 13})).await;
    let mut ws = Stream::connect(&s.base, w["id"].as_str().unwrap()).await;
    for (text, code) in [
        (r#"{"center":[0,0],"radius":100000}"#, "radius_too_large"),
        (r#"{"center":[0.5,0],"radius":1}"#, "invalid_subscription"),
        (r#"{"center":[0,0]}"#, "invalid_subscription"),
        ("not json", "invalid_subscription"),
        (r#"{"center":[0,0],"radius":-1}"#, "invalid_subscription"),
        (r#"{"center":[2000000000,0],"radius":1}"#, "coordinate_out_of_range"),
    ] {
        ws.send_text(text).await;
        match ws.next().await {
            Frame::Json(j) => assert_eq!(j["error"]["code"], code, "{text}: {j}"),
            Frame::Chunk(_) => panic!("{text}: expected an error frame"),
        }
    }
    ws.subscribe(0, 0, 1).await;
    let (chunks, _) = ws.until_done().await;
    assert_eq!(chunks.len(), 9);
    drop(ws);
    s.stop();
}

#[tokio::test]
async fn streaming_an_unknown_world_is_a_json_404() {
    let s = start("memory://");
    let res = client().get(format!("{}/v1/worlds/w0000000000000000/stream", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["code"], "not_found");
    s.stop();
}
