//! Throughput out of process, all in one run so the figures compare:
//!
//! 1. the generation core alone on one thread (chunks/s per core);
//! 2. the embedded server (memory storage, 2 workers) with the WebSocket
//!    client in a process of its own (this example started again with
//!    `--client`): a radius-16 square of fresh chunks, as a share of
//!    workers x the core rate;
//! 3. a coordinator and 1, 2 and 3 node processes (one worker each) over
//!    fs storage on tmpfs: the same stream;
//! 4. the remote hop: sequential GETs of stored chunks through an embedded
//!    server and through a coordinator with one remote node.
//!
//! `cargo build --release -p worldloom-cli && cargo run --release -p worldloom-tests --example cluster_bench`

use std::time::{Duration, Instant};

use serde_json::json;
use worldloom_tests::{
    Process, Stream, TempDir, account_token, client, cluster_env, create_world, spawn_coordinator, spawn_node,
    spawn_with_env, start_with, wait_for_nodes,
};
use worldloom_worldgen::{ChunkCoord, Params, generate_chunk};

const RADIUS: u32 = 16;
const CHUNKS: usize = ((2 * RADIUS + 1) * (2 * RADIUS + 1)) as usize;
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Chunks per second of the core on this thread.
fn core_rate() -> f64 {
    core_rate_for(Duration::from_secs(2))
}

/// Chunks per second of the core on `threads` threads at once, for `d`.
fn core_rate_on(threads: usize, d: Duration) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || core_rate_for(d))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
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

/// A fresh world streamed once at radius 16: chunks/s received.
async fn stream_fresh(base: &str, token: &str, seed: u64) -> f64 {
    let w = create_world(base, token, json!({"name": "bench", "seed": seed})).await;
    let mut ws = Stream::connect(base, w["id"].as_str().unwrap()).await;
    let t = Instant::now();
    ws.subscribe(0, 0, RADIUS).await;
    let (chunks, done) = ws.until_done().await;
    assert_eq!(chunks.len(), CHUNKS, "{done}");
    CHUNKS as f64 / t.elapsed().as_secs_f64()
}

async fn stream_rate(base: &str, token: &str, seed0: u64) -> f64 {
    stream_fresh(base, token, seed0).await; // warm-up
    let mut v = Vec::new();
    for i in 0..ROUNDS {
        v.push(stream_fresh(base, token, seed0 + 1 + i as u64).await);
    }
    median(v)
}

/// Median latency of sequential GETs of chunks that are already stored, µs.
async fn stored_get_us(base: &str, token: &str) -> f64 {
    let w = create_world(base, token, json!({"name": "hop", "seed": 5})).await;
    let id = w["id"].as_str().unwrap().to_owned();
    let http = client();
    let url = |i: i32| format!("{base}/v1/worlds/{id}/chunks/{}/{}", i % 10, i / 10);
    for i in 0..100 {
        let r = http.get(url(i)).header("accept", "application/x-postcard").send().await.unwrap();
        r.bytes().await.unwrap();
    }
    let mut v = Vec::new();
    for round in 0..5 {
        for i in 0..100 {
            let t = Instant::now();
            let r = http.get(url(i)).header("accept", "application/x-postcard").send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            if round > 0 {
                v.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    median(v)
}

fn shm_dir(tag: &str) -> TempDir {
    let base = std::path::Path::new("/dev/shm");
    if base.is_dir() {
        let dir = base.join(format!("worldloom-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    } else {
        TempDir::new(tag)
    }
}

fn cluster(data: &str, nodes: usize) -> (Process, Vec<Process>, Vec<String>) {
    let env = cluster_env(&[]);
    let coordinator = spawn_coordinator(data, &env);
    let names: Vec<String> = (0..nodes).map(|i| format!("bench-node-{i}")).collect();
    let procs = names.iter().map(|n| spawn_node(n, &[&coordinator.base], data, &env)).collect();
    (coordinator, procs, names)
}

/// CPU seconds the generation threads (`generation`) or the other threads of this
/// process have used.
fn cpu_s(generation: bool) -> f64 {
    let tick = 100.0; // USER_HZ
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("worldloom-gen") != generation {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let (utime, stime): (f64, f64) = (fields[11].parse().unwrap_or(0.0), fields[12].parse().unwrap_or(0.0));
        total += (utime + stime) / tick;
    }
    total
}

/// The machine's idle and steal CPU seconds so far (/proc/stat).
fn machine_idle_s() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    (get(3) + get(4), get(7))
}

/// Streams one square as a separate client process; its chunks/s and the
/// client's CPU seconds.
fn client_process(base: &str, world: &str) -> (f64, f64) {
    let exe = std::env::current_exe().expect("this example");
    let out = std::process::Command::new(exe).args(["--client", base, world]).output().expect("client process");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(|v| v.parse::<f64>().expect("a number"));
    (parts.next().expect("a rate"), parts.next().expect("cpu"))
}

/// `--client BASE WORLD`: stream the square, print chunks/s.
async fn client_main(base: &str, world: &str) {
    let mut ws = Stream::connect(base, world).await;
    let t = Instant::now();
    ws.subscribe(0, 0, RADIUS).await;
    assert_eq!(ws.count_until_done().await, CHUNKS);
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    println!("{} {}", CHUNKS as f64 / t.elapsed().as_secs_f64(), cpu(usage.ru_utime) + cpu(usage.ru_stime));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        return client_main(&args[2], &args[3]).await;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let core = core_rate();
    println!("core alone: {core:.0} chunks/s on one thread ({:.0} us per chunk); {cores} cores", 1e6 / core);
    let both: f64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cores).map(|_| s.spawn(core_rate)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    println!(
        "core alone on {cores} threads at once: {both:.0} chunks/s ({:.0}% of {cores} x one thread)",
        100.0 * both / (cores as f64 * core)
    );

    // The embedded server, memory storage; the client in its own process.
    let workers = 2;
    let server = start_with("memory://", |c| {
        c.workers = workers;
        if let Some(n) = std::env::var("BENCH_INFLIGHT").ok().and_then(|v| v.parse().ok()) {
            c.stream.inflight = n;
        }
    });
    let (mut rates, mut busy, mut server_us, mut client_us) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut shares = Vec::new();
    for round in 0..=ROUNDS {
        // The core on as many threads as the server has workers, right
        // before this round: the machine's speed drifts, the ratio should not.
        let reference = core_rate_on(workers, Duration::from_millis(300));
        let w = create_world(&server.base, &server.token, json!({"name": "bench", "seed": 100 + round})).await;
        let (gen0, other) = (cpu_s(true), cpu_s(false));
        let (idle0, steal0) = machine_idle_s();
        let t = Instant::now();
        let (rate, client_cpu) = client_process(&server.base, w["id"].as_str().unwrap());
        let (idle1, steal1) = machine_idle_s();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            let span = t.elapsed().as_secs_f64();
            eprintln!(
                "  round {round}: client lifetime {:.0} ms, stream {:.0} ms, machine idle {:.0} ms, steal {:.0} ms",
                span * 1e3,
                CHUNKS as f64 / rate * 1e3,
                (idle1 - idle0) * 1e3,
                (steal1 - steal0) * 1e3
            );
        }
        // The stream's own duration (the client's start-up is not in it).
        let wall = CHUNKS as f64 / rate;
        if round > 0 {
            rates.push(rate);
            shares.push(rate / reference);
            busy.push((cpu_s(true) - gen0) / (workers as f64 * wall));
            server_us.push((cpu_s(false) - other) * 1e6 / CHUNKS as f64);
            client_us.push(client_cpu * 1e6 / CHUNKS as f64); // start-up included
        }
    }
    println!(
        "generation threads busy {:.0}% of the stream's wall time; CPU per chunk outside them: server {:.0} us, client {:.0} us",
        100.0 * median(busy),
        median(server_us),
        median(client_us)
    );
    let embedded = median(rates);
    let share = median(shares);
    server.stop();
    if std::env::var_os("BENCH_EMBEDDED_ONLY").is_some() {
        println!("embedded {embedded:.0} chunks/s = {:.0}% of the core on {workers} threads (paired)", 100.0 * share);
        return;
    }
    // The hop is compared between processes on the same storage: `worldloom
    // serve` (in-process node) and a coordinator with one remote node.
    let dir = shm_dir("embedded");
    let serve = spawn_with_env(&dir.uri(), &["--workers", "1"], &[]);
    let token = account_token(&dir.uri(), &Default::default(), "bench");
    let hop_local = stored_get_us(&serve.base, &token).await;
    drop(serve);
    println!(
        "embedded (memory storage, {workers} workers, client in its own process): radius-{RADIUS} fresh stream \
         {embedded:.0} chunks/s = {:.0}% of the core alone on {workers} threads (each round paired with its own \
         core measurement)",
        100.0 * share
    );

    let mut rows = Vec::new();
    for nodes in 1..=3 {
        let dir = shm_dir(&format!("cluster{nodes}"));
        let (coordinator, procs, names) = cluster(&dir.uri(), nodes);
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        wait_for_nodes(&coordinator.base, &ids).await;
        let token = account_token(&dir.uri(), &Default::default(), "bench");
        let rate = stream_rate(&coordinator.base, &token, 200 + 10 * nodes as u64).await;
        let hop = if nodes == 1 { Some(stored_get_us(&coordinator.base, &token).await) } else { None };
        rows.push((nodes, rate, hop));
        drop(procs);
        drop(coordinator);
    }
    for (nodes, rate, hop) in &rows {
        println!(
            "cluster: coordinator + {nodes} node(s) x 1 worker: {rate:.0} chunks/s = {:.0}% of {nodes} x core{}",
            100.0 * rate / (*nodes as f64 * core),
            hop.map_or(String::new(), |h| format!("; stored-chunk GET p50 {h:.0} us"))
        );
    }
    let hop_remote = rows[0].2.unwrap();
    println!(
        "remote hop: stored-chunk GET p50 {hop_local:.0} us embedded, {hop_remote:.0} us through a remote node: +{:.0} us per chunk",
        hop_remote - hop_local
    );
}
