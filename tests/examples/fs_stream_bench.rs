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
//! `BENCH_ROUNDS` the rounds, default 5; `BENCH_SERVER_ENV` gives the
//! server settings as `NAME=VALUE` pairs separated by spaces, for example
//! `BENCH_SERVER_ENV=WORLDLOOM_STREAM__INFLIGHT=32`).
//!
//! Where the time goes: for the fresh stream and the restart, the CPU the
//! server process (all its threads) and the client process spent, per
//! chunk, and how busy the whole machine was meanwhile (`/proc/stat`: every
//! process, ours and anyone else's), so a stream bounded by the CPUs shows
//! as a machine near 100% busy.

use std::time::{Duration, Instant};

use serde_json::json;
use worldloom_tests::{Stream, TempDir, account_token, create_world, spawn_with_env};
use worldloom_worldgen::{ChunkCoord, Params, generate_chunk};

const RADIUS: u32 = 16;
const CHUNKS: usize = ((2 * RADIUS + 1) * (2 * RADIUS + 1)) as usize;

/// CPU time so far of every thread of process `pid` (`/proc/PID/task/*/schedstat`), seconds.
fn cpu_seconds(pid: &str) -> f64 {
    cpu_by_group(pid).iter().sum()
}

/// The server's thread groups, by thread name, as the fresh phase reports them.
const GROUPS: [&str; 5] = ["generation", "event loops", "blocking pool", "write-behind", "other"];

fn group_of(comm: &str) -> usize {
    match comm {
        c if c.starts_with("worldloom-gen") => 0,
        c if c.starts_with("actix-rt") => 1,
        "tokio-rt-worker" => 2,
        "worldloom-store" => 3,
        _ => 4,
    }
}

/// CPU seconds so far of each of the [`GROUPS`] of process `pid`'s threads.
fn cpu_by_group(pid: &str) -> [f64; 5] {
    let mut out = [0.0; 5];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        let (Ok(comm), Ok(stat)) =
            (std::fs::read_to_string(t.path().join("comm")), std::fs::read_to_string(t.path().join("schedstat")))
        else {
            continue;
        };
        if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) {
            out[group_of(comm.trim())] += ns as f64 / 1e9;
        }
    }
    out
}

/// The `worldloom` server this bench started (a child of this process).
fn server_pid() -> String {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else { continue };
        if comm.ends_with("(worldloom") && rest.split_whitespace().nth(1) == Some(me.as_str()) {
            return e.file_name().to_string_lossy().into_owned();
        }
    }
    panic!("the server process is not a child of this bench")
}

/// Busy and total CPU time of the whole machine so far (`/proc/stat`), in ticks.
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<f64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user already).
    let total: f64 = v.iter().take(8).sum();
    (total - v[3] - v[4], total)
}

/// What a phase cost: the server's and the client's CPU per chunk and the machine's busy share.
#[derive(Clone, Copy, Default)]
struct Cost {
    server_us: f64,
    client_us: f64,
    machine_busy: f64,
    /// The server's CPU per chunk by thread group ([`GROUPS`]).
    groups_us: [f64; 5],
}

/// Runs `phase` (which returns the client's rate and CPU seconds) and measures what it cost.
fn measured(server: &str, phase: impl FnOnce() -> (f64, f64)) -> (f64, Cost) {
    let (g0, m0) = (cpu_by_group(server), machine_ticks());
    let (rate, client_cpu) = phase();
    let (g1, m1) = (cpu_by_group(server), machine_ticks());
    let (s0, s1): (f64, f64) = (g0.iter().sum(), g1.iter().sum());
    let per = 1e6 / CHUNKS as f64;
    let cost = Cost {
        server_us: (s1 - s0) * per,
        client_us: client_cpu * per,
        machine_busy: (m1.0 - m0.0) / (m1.1 - m0.1).max(1.0),
        groups_us: std::array::from_fn(|i| (g1[i] - g0[i]) * per),
    };
    (rate, cost)
}

fn median_cost(v: &[Cost]) -> Cost {
    Cost {
        server_us: median(v.iter().map(|c| c.server_us).collect()),
        client_us: median(v.iter().map(|c| c.client_us).collect()),
        machine_busy: median(v.iter().map(|c| c.machine_busy).collect()),
        groups_us: std::array::from_fn(|i| median(v.iter().map(|c| c.groups_us[i]).collect())),
    }
}

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

/// Streams one square as a separate client process; its chunks/s and the
/// CPU seconds it spent streaming.
fn client_process(base: &str, world: &str) -> (f64, f64) {
    let exe = std::env::current_exe().expect("this example");
    let out = std::process::Command::new(exe).args(["--client", base, world]).output().expect("client process");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text.split_whitespace().map(|n| n.parse::<f64>().expect("a number"));
    (v.next().expect("a rate"), v.next().expect("CPU seconds"))
}

/// `--client BASE WORLD`: stream the square, print chunks/s and the CPU seconds streaming took.
async fn client_main(base: &str, world: &str) {
    let mut ws = Stream::connect(base, world).await;
    let me = std::process::id().to_string();
    let cpu = cpu_seconds(&me);
    let t = Instant::now();
    ws.subscribe(0, 0, RADIUS).await;
    assert_eq!(ws.count_until_done().await, CHUNKS);
    let rate = CHUNKS as f64 / t.elapsed().as_secs_f64();
    println!("{rate} {}", cpu_seconds(&me) - cpu);
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
    let server_env: Vec<(String, String)> = std::env::var("BENCH_SERVER_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("BENCH_SERVER_ENV: NAME=VALUE pairs");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let mut server = Some(spawn_with_env(&dir.uri(), &["--workers", &w], &server_env));
    let (mut cores, mut fresh, mut cached, mut cold, mut worlds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut writes = Vec::new();
    let (mut fresh_cost, mut cold_cost) = (Vec::new(), Vec::new());
    let pid = server_pid();
    for round in 0..=rounds {
        let base = server.as_ref().unwrap().base.clone();
        let core = core_rate_on(workers, Duration::from_millis(400));
        let world = create_world(&base, &token, json!({"name": "fsbench", "seed": 500 + round})).await;
        let id = world["id"].as_str().unwrap().to_owned();
        let t = Instant::now();
        let (f, f_cost) = measured(&pid, || client_process(&base, &id));
        let (c, _) = client_process(&base, &id);
        // Write behind: wait until every chunk of the square is in storage,
        // so each round starts with no writes pending.
        let stored = dir.0.join(format!("chunks/{id}/r0"));
        // One directory per region.
        let files = |d: &std::path::Path| {
            std::fs::read_dir(d).map_or(0, |regions| {
                regions.flatten().map(|r| std::fs::read_dir(r.path()).map_or(0, |c| c.count())).sum::<usize>()
            })
        };
        while files(&stored) < CHUNKS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let written = CHUNKS as f64 / t.elapsed().as_secs_f64();
        if round > 0 {
            cores.push(core);
            fresh.push(f);
            cached.push(c);
            writes.push(written);
            worlds.push(id);
            fresh_cost.push(f_cost);
        }
        eprintln!(
            "  round {round}: core {core:.0}/s on {workers} threads, fresh {f:.0}/s (server {:.0} us, client {:.0} us of CPU per chunk, machine {:.0}% busy), again {c:.0}/s, all stored at {written:.0}/s",
            f_cost.server_us,
            f_cost.client_us,
            100.0 * f_cost.machine_busy
        );
    }
    // A restart: nothing in memory, every chunk read from storage.
    drop(server.take());
    let p = spawn_with_env(&dir.uri(), &["--workers", &w], &server_env);
    let pid = server_pid();
    for id in &worlds {
        let (rate, cost) = measured(&pid, || client_process(&p.base, id));
        eprintln!(
            "  after a restart: {rate:.0}/s (server {:.0} us, client {:.0} us of CPU per chunk, machine {:.0}% busy)",
            cost.server_us,
            cost.client_us,
            100.0 * cost.machine_busy
        );
        cold.push(rate);
        cold_cost.push(cost);
    }
    drop(p);
    let (core, fresh, cached, cold, writes) =
        (median(cores), median(fresh), median(cached), median(cold), median(writes));
    let (fresh_cost, cold_cost) = (median_cost(&fresh_cost), median_cost(&cold_cost));
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
    println!(
        "  CPU per fresh chunk: server {:.0} us (generation included), client {:.0} us; the machine {:.0}% busy meanwhile",
        fresh_cost.server_us,
        fresh_cost.client_us,
        100.0 * fresh_cost.machine_busy
    );
    println!(
        "  the server's CPU per fresh chunk by thread: {}",
        GROUPS.iter().zip(fresh_cost.groups_us).map(|(g, us)| format!("{g} {us:.0} us")).collect::<Vec<_>>().join(", ")
    );
    println!("the same square again, new socket: {cached:.0} chunks/s ({:.0} us per chunk)", 1e6 / cached);
    println!("the square fully in storage (from the first request to the last file): {writes:.0} chunks/s");
    println!("after a restart (from storage, nothing cached): {cold:.0} chunks/s ({:.0} us per chunk)", 1e6 / cold);
    println!(
        "  CPU per chunk after a restart: server {:.0} us, client {:.0} us; the machine {:.0}% busy meanwhile",
        cold_cost.server_us,
        cold_cost.client_us,
        100.0 * cold_cost.machine_busy
    );
}
