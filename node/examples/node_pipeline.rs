//! How busy a node keeps its generation threads when fed like a stream
//! feeds it (a window of 8 chunks in flight, in order), without HTTP: the
//! node's own share of the stream overhead. Each round is paired with the
//! core alone on as many threads, measured right after it.
//!
//! `cargo run --release -p worldloom-node --example node_pipeline`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use worldloom_cluster::ids::WorldId;
use worldloom_cluster::metrics::Metrics;
use worldloom_cluster::model::GenSpec;
use worldloom_node::{NoRuntime, Node};
use worldloom_worldgen::{ChunkCoord, Params, generate_chunk};

const WORKERS: usize = 2;

/// Chunks/s of the bare core on `threads` threads at once.
fn core_rate(threads: usize, seed: u64) -> f64 {
    let params = Params::default();
    let window = Duration::from_millis(400);
    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let params = &params;
                s.spawn(move || {
                    let start = Instant::now();
                    let mut n = 0;
                    while start.elapsed() < window {
                        std::hint::black_box(generate_chunk(seed, params, ChunkCoord::new(n, t as i32 * 1000)));
                        n += 1;
                    }
                    n as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / window.as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = worldloom_cluster::storage::open("memory://", &Default::default()).unwrap();
        let node = Node::start(store, Arc::new(NoRuntime), WORKERS, Metrics::new(true, false).node());
        for round in 0..6u64 {
            let spec = Arc::new(GenSpec {
                world: WorldId::random(),
                revision: 0,
                seed: 40 + round,
                params: Default::default(),
                plugins: Vec::new(),
                limits: Default::default(),
            });
            let coords: Vec<ChunkCoord> =
                (-16..=16).flat_map(|x| (-16..=16).map(move |z| ChunkCoord::new(x, z))).collect();
            let n = coords.len();
            let t = Instant::now();
            let node2 = node.clone();
            let mut s = futures_util::stream::iter(coords)
                .map(move |c| {
                    let (node, spec) = (node2.clone(), spec.clone());
                    async move { node.chunk(spec, c).await }
                })
                .buffered(8);
            let mut got = 0;
            while let Some(r) = s.next().await {
                r.unwrap();
                got += 1;
            }
            assert_eq!(got, n);
            let rate = n as f64 / t.elapsed().as_secs_f64();
            let core = core_rate(WORKERS, 900 + round);
            println!(
                "round {round}: node {rate:.0} chunks/s, core alone on {WORKERS} threads {core:.0} chunks/s: {:.0}%",
                100.0 * rate / core
            );
        }
    });
}
