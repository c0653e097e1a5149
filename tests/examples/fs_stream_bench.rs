//! Storage on the hot path, out of process, on the default `fs://` storage
//! on a real disk (a directory under `target/`, not tmpfs):
//!
//! 1. the generation core on `workers` threads at once (chunks/s), right
//!    before each round;
//! 2. `worldloom serve --workers N` (the real release binary, in its own
//!    process) on a fresh fs:// directory; a radius-16 square of a new
//!    world streamed by a client in a process of its own (this example
//!    started again with `--client`): every chunk generated fresh;
//! 3. the same square again from a new socket in a new client process:
//!    every chunk already generated (the node's cache, else storage);
//! 4. the server stopped and started again on the same directory, and the
//!    square streamed once more: every chunk from storage (cold cache).
//!
//! `cargo build --release -p worldloom-cli -p worldloom-tests --examples &&
//!  cargo run --release -p worldloom-tests --example fs_stream_bench`
//! (`BENCH_WORKERS` overrides the worker count, default one per core;
//! `BENCH_ROUNDS` the rounds, default 5).

use std::time::{Duration, Instant};

use serde_json::json;
use worldloom_tests::{Stream, TempDir, account_token, create_world, spawn_with_env};
use worldloom_worldgen::{ChunkCoord, Params, generate_chunk};

const RADIUS: u32 = 16;
const CHUNKS: usize = ((2 * RADIUS + 1) * (2 * RADIUS + 1)) as usize;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn core_rate_for(d: Duration) -> f64 {
    let params = Params::default();
    let mut n = 0u64;
    let t = Instant::now();
    let mut sink = 0.0f32;
    while t.elapsed() < d {
        let c = generate_chunk(1000 + n, &params, ChunkCoord::new((n % 64) as i32, (n / 64) as i32));
        sink += c.layers.height[17] as f32;
        n += 1;
    }
    std::hint::black_box(sink);
    n as f64 / t.elapsed().as_secs_f64()
}

/// Chunks per second of the core on `threads` threads at once, for `d`.
fn core_rate_on(threads: usize, d: Duration) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || core_rate_for(d))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// Streams one square as a separate client process; its chunks/s.
fn client_process(base: &str, world: &str) -> f64 {
    let exe = std::env::current_exe().expect("this example");
    let out = std::process::Command::new(exe).args(["--client", base, world]).output().expect("client process");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a rate")
}

/// `--client BASE WORLD`: stream the square, print chunks/s.
async fn client_main(base: &str, world: &str) {
    let mut ws = Stream::connect(base, world).await;
    let t = Instant::now();
    ws.subscribe(0, 0, RADIUS).await;
    assert_eq!(ws.count_until_done().await, CHUNKS);
    println!("{}", CHUNKS as f64 / t.elapsed().as_secs_f64());
}

/// A fresh directory on the disk `target/` is on.
fn disk_dir() -> TempDir {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").join("target");
    let dir = target.join(format!("fs-stream-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        return client_main(&args[2], &args[3]).await;
    }
    let env_n = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
    let workers = env_n("BENCH_WORKERS").unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let rounds = env_n("BENCH_ROUNDS").unwrap_or(5);
    let dir = disk_dir();
    let token = account_token(&dir.uri(), &Default::default(), "bench");
    let w = workers.to_string();
    let mut server = Some(spawn_with_env(&dir.uri(), &["--workers", &w], &[]));
    let (mut cores, mut fresh, mut cached, mut cold, mut worlds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut writes = Vec::new();
    for round in 0..=rounds {
        let base = server.as_ref().unwrap().base.clone();
        let core = core_rate_on(workers, Duration::from_millis(400));
        let world = create_world(&base, &token, json!({"name": "fsbench", "seed": 500 + round})).await;
        let id = world["id"].as_str().unwrap().to_owned();
        let t = Instant::now();
        let f = client_process(&base, &id);
        let c = client_process(&base, &id);
        // Write behind: wait until every chunk of the square is in storage,
        // so each round starts with no writes pending.
        let stored = dir.0.join(format!("chunks/{id}/r0"));
        while std::fs::read_dir(&stored).map_or(0, |d| d.count()) < CHUNKS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let written = CHUNKS as f64 / t.elapsed().as_secs_f64();
        if round > 0 {
            cores.push(core);
            fresh.push(f);
            cached.push(c);
            writes.push(written);
            worlds.push(id);
        }
        eprintln!(
            "  round {round}: core {core:.0}/s on {workers} threads, fresh {f:.0}/s, again {c:.0}/s, all stored at {written:.0}/s"
        );
    }
    // A restart: nothing in memory, every chunk read from storage.
    drop(server.take());
    let p = spawn_with_env(&dir.uri(), &["--workers", &w], &[]);
    for id in &worlds {
        cold.push(client_process(&p.base, id));
    }
    drop(p);
    let (core, fresh, cached, cold, writes) =
        (median(cores), median(fresh), median(cached), median(cold), median(writes));
    println!(
        "fs storage on disk ({}), worldloom serve --workers {workers}, client in its own process, radius {RADIUS} ({CHUNKS} chunks), median of {rounds} rounds:",
        dir.0.display()
    );
    println!(
        "core alone on {workers} threads at once: {core:.0} chunks/s ({:.1} us per chunk per thread)",
        1e6 * workers as f64 / core
    );
    println!(
        "fresh stream (every chunk generated): {fresh:.0} chunks/s = {:.0}% of the core on {workers} threads",
        100.0 * fresh / core
    );
    println!("the same square again, new socket: {cached:.0} chunks/s ({:.0} us per chunk)", 1e6 / cached);
    println!("the square fully in storage (from the first request to the last file): {writes:.0} chunks/s");
    println!("after a restart (from storage, nothing cached): {cold:.0} chunks/s ({:.0} us per chunk)", 1e6 / cold);
}
