//! Streaming throughput: chunks per second a client receives over the
//! WebSocket for a radius-8 square (289 chunks, all generated fresh), for a
//! world without plugins, with an identity `terrain` plugin, and with a
//! numpy plugin using two hooks; all measured in one run on one server.
//!
//! `cargo run --release -p worldloom-tests --example stream_bench`

use std::time::Instant;

use serde_json::json;
use worldloom_tests::{Stream, create_world, start_with, upload_plugin};

const IDENTITY: &str = "def terrain(ctx, chunk):\n    return chunk\n";
const NUMPY: &str = r#"
import numpy as np

def terrain(ctx, chunk):
    x = np.arange(ctx.size) + ctx.cx * ctx.size
    chunk.height = chunk.height - 40.0 * np.exp(-np.sin(x / 37.0)[:, None] ** 2 * 8)
    return chunk

def features(ctx, chunk):
    return [{"x": ctx.random.randrange(ctx.size), "z": 3, "kind": "well"}]
"#;

async fn stream_once(base: &str, token: &str, body: serde_json::Value) -> f64 {
    let w = create_world(base, token, body).await;
    let mut ws = Stream::connect(base, w["id"].as_str().unwrap()).await;
    let t = Instant::now();
    ws.subscribe(0, 0, 8).await;
    let (chunks, _) = ws.until_done().await;
    assert_eq!(chunks.len(), 289);
    assert!(chunks.iter().all(|c| c.plugin_failures.is_empty()));
    289.0 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let s = start_with("memory://", |c| c.workers = workers);
    let cases: [(&str, Option<&str>); 3] =
        [("no plugins", None), ("identity terrain", Some(IDENTITY)), ("numpy terrain + features", Some(NUMPY))];
    println!("radius-8 stream (289 chunks generated fresh), {workers} workers, median of 5 worlds each");
    let mut results = Vec::new();
    for (i, (label, source)) in cases.into_iter().enumerate() {
        let plugin = format!("bench{i}");
        if let Some(src) = source {
            upload_plugin(&s.base, &s.token, &plugin, "1.0.0", src).await;
        }
        let body = |seed: u64| match source {
            None => json!({"name": label, "seed": seed}),
            Some(_) => json!({"name": label, "seed": seed, "plugins": [{"name": plugin, "version": "1.0.0"}]}),
        };
        // Warm-up: loads the plugin into each worker's sandbox pool.
        stream_once(&s.base, &s.token, body(999)).await;
        let mut rates = Vec::new();
        for seed in 0..5 {
            rates.push(stream_once(&s.base, &s.token, body(seed)).await);
        }
        let m = median(rates.clone());
        println!(
            "{label:<26} {m:>8.0} chunks/s   (runs: {})",
            rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
        );
        results.push(m);
    }
    println!("ratio identity-plugin / no-plugin throughput: {:.2}", results[1] / results[0]);
    println!("ratio numpy-plugin / no-plugin throughput:    {:.2}", results[2] / results[0]);
    s.stop();
}
