//! Sandbox benchmark: per-call latency (call + reset, fresh state every
//! call) of an identity `terrain` hook on a 32x32 chunk for each reset
//! strategy, and memory per warm sandbox. Prints a summary table, then runs
//! the same calls under criterion.
//!
//! `cargo bench -p worldloom-sandbox --bench sandbox`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use worldloom_plugin_abi::{HookInput, HookName};
use worldloom_sandbox::proto::TestHook;
use worldloom_sandbox::{Engine, PluginRef, ResetStrategy, Sandbox, SandboxConfig, Supervisor, SupervisorConfig};

mod common;

use common::{IDENTITY, input};

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latencies(s: &mut Sandbox, inp: &HookInput, warmup: usize, n: usize) -> Vec<Duration> {
    for _ in 0..warmup {
        assert!(s.call(inp).result.is_ok());
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = s.call(inp);
        v.push(t.elapsed());
        assert!(black_box(r).result.is_ok());
    }
    v.sort();
    v
}

/// (RSS, PSS, USS) of a process in KiB, from /proc/PID/smaps_rollup.
fn memory_of(pid: u32) -> (u64, u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let f = |name: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (f("Rss:"), f("Pss:"), f("Private_Clean:") + f("Private_Dirty:"))
}

/// The same identity calls through a worker process, as a node makes them,
/// interleaved with in-process calls on `local` so both see the same machine.
fn process_boundary(root: &std::path::Path, inp: &HookInput, local: &mut Sandbox) {
    let mut cfg = SupervisorConfig::new(
        env!("CARGO_BIN_EXE_worldloom-sandbox-worker"),
        root.join(".worldloom/runtime/python"),
        root.join(".worldloom/cache"),
    );
    cfg.test_hooks = true;
    let sup = Supervisor::new(cfg);
    let limits = worldloom_plugin_abi::Limits::default();
    let p = PluginRef { name: "identity", sha256: "identity", source: IDENTITY };
    let mut w = sup.worker();
    // As a node does: this thread and its worker on one CPU.
    let cpu = worldloom_sandbox::supervisor::allowed_cpus()[0];
    worldloom_sandbox::supervisor::pin_process(0, cpu);
    w.pin(cpu);
    let t = Instant::now();
    assert!(w.call(p, &limits, inp).result.is_ok());
    println!(
        "
=== through a sandbox worker process ==="
    );
    println!("first call (zygote start with engine load, fork, confine, plugin load, call): {:.1?}", t.elapsed());
    let mut forks = vec![];
    for _ in 0..10 {
        let mut w2 = sup.worker();
        let t = Instant::now();
        w2.stats().expect("a worker");
        forks.push(t.elapsed());
    }
    forks.sort();
    println!("worker start (fork from the zygote, confine, first answer): p50 {:.1?}", percentile(&forks, 0.5));
    let mut restarts = vec![];
    for _ in 0..10 {
        let budget = Duration::from_millis(20);
        let _ = w.test(TestHook::Deadlock, budget);
        let t = Instant::now();
        assert!(w.call(p, &limits, inp).result.is_ok());
        restarts.push(t.elapsed());
    }
    restarts.sort();
    println!(
        "restart after a kill (replacement forked in the background, plugin loaded again, first call): p50 {:.1?}",
        percentile(&restarts, 0.5)
    );
    for _ in 0..200 {
        assert!(w.call(p, &limits, inp).result.is_ok());
    }
    let (mut v, mut local_v, mut paired, mut inside) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut host = Vec::new();
    for _ in 0..3000 {
        let t = Instant::now();
        let r = w.call(p, &limits, inp);
        let remote = t.elapsed();
        assert!(black_box(r).result.is_ok());
        inside.push(Duration::from_micros(w.last_worker_us()));
        let t = Instant::now();
        let r = local.call(inp);
        let here = t.elapsed();
        assert!(black_box(r).result.is_ok());
        let p = local.last_profile();
        host.push(remote.saturating_sub(p.turn + p.reset));
        v.push(remote);
        local_v.push(here);
        paired.push(remote.as_nanos() as i64 - here.as_nanos() as i64);
    }
    v.sort();
    local_v.sort();
    paired.sort();
    inside.sort();
    println!(
        "identity call through the worker: p50 {:.1?}, p99 {:.1?}; in this process, interleaved: p50 {:.1?}, p99 {:.1?}",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        percentile(&local_v, 0.5),
        percentile(&local_v, 0.99),
    );
    println!(
        "process boundary per call (paired: through the worker minus in this process, median): {:.1} us; \
         the worker's own time for the call p50 {:.1?}",
        paired[paired.len() / 2] as f64 / 1000.0,
        percentile(&inside, 0.5),
    );
    host.sort();
    println!(
        "host-side overhead through the worker (call through the worker minus the same call's turn and reset \
         in this process), p50 {:.1?}, p99 {:.1?}",
        percentile(&host, 0.5),
        percentile(&host, 0.99)
    );
    let mut rt = Vec::new();
    for _ in 0..3000 {
        let t = Instant::now();
        w.stats().expect("stats");
        rt.push(t.elapsed());
    }
    rt.sort();
    println!("empty round trip to the worker (a stats request): p50 {:.1?}", percentile(&rt, 0.5));
    let zygote = sup.zygote_pid().expect("a zygote");
    let worker = w.pid().expect("a worker");
    let (zr, zp, zu) = memory_of(zygote);
    let (wr, wp, wu) = memory_of(worker);
    println!("zygote memory: RSS {} MiB, PSS {} MiB, private {} MiB", zr >> 10, zp >> 10, zu >> 10);
    println!(
        "worker memory (one warm plugin): RSS {} MiB, PSS {} MiB, private {} MiB (the rest is shared with the zygote)",
        wr >> 10,
        wp >> 10,
        wu >> 10
    );
}

/// Minor page faults this thread has taken.
fn minflt() -> i64 {
    // SAFETY: getrusage only writes the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u.ru_minflt
    }
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

/// The identity call as it is now against the path before issue 10 (the
/// eager harness, every page protected again after every call), and each
/// change alone: interleaved call by call so all see the same machine.
fn before_after(engine: &Engine, inp: &HookInput) {
    let configs: [(&str, ResetStrategy, bool); 4] = [
        ("now (lazy harness, Overlay keeping hot pages writable)", ResetStrategy::Overlay, false),
        ("before issue 10 (eager harness, OverlayReprotect)", ResetStrategy::OverlayReprotect, true),
        ("eager harness, Overlay", ResetStrategy::Overlay, true),
        ("lazy harness, OverlayReprotect", ResetStrategy::OverlayReprotect, false),
    ];
    let mut sandboxes: Vec<Sandbox> = configs
        .iter()
        .map(|&(_, strategy, eager)| {
            let mut s = engine.instantiate_with("identity", IDENTITY, strategy).expect("load");
            s.use_eager_harness(eager);
            s
        })
        .collect();
    for s in &mut sandboxes {
        for _ in 0..200 {
            assert!(s.call(inp).result.is_ok());
        }
    }
    let rounds = 3000;
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); configs.len()];
    let mut profiles: Vec<Vec<worldloom_sandbox::CallProfile>> = vec![Vec::with_capacity(rounds); configs.len()];
    let mut faults: Vec<Vec<i64>> = vec![Vec::with_capacity(rounds); configs.len()];
    for _ in 0..rounds {
        for (i, s) in sandboxes.iter_mut().enumerate() {
            let f = minflt();
            let t = Instant::now();
            let r = s.call(inp);
            times[i].push(t.elapsed());
            faults[i].push(minflt() - f);
            assert!(black_box(r).result.is_ok());
            profiles[i].push(s.last_profile());
        }
    }
    println!("\n=== identity call before/after issue 10 ({rounds} calls each, interleaved) ===");
    println!(
        "{:<56} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "path", "p50", "p99", "turn", "reset", "scan", "copy", "protect", "pages", "faults"
    );
    for (i, (name, _, _)) in configs.iter().enumerate() {
        let mut v = times[i].clone();
        v.sort();
        let pr = &profiles[i];
        let part = |f: &dyn Fn(&worldloom_sandbox::CallProfile) -> Duration| us(p50(pr.iter().map(f).collect()));
        let mut pages: Vec<usize> = pr.iter().map(|p| p.reset_parts.pages).collect();
        pages.sort();
        let mut f = faults[i].clone();
        f.sort();
        println!(
            "{name:<56} {:>6.1}us {:>6.1}us {:>6.1}us {:>6.1}us {:>6.1}us {:>6.1}us {:>6.1}us {:>7} {:>7}",
            us(percentile(&v, 0.5)),
            us(percentile(&v, 0.99)),
            part(&|p| p.turn),
            part(&|p| p.reset),
            part(&|p| p.reset_parts.scan),
            part(&|p| p.reset_parts.copy),
            part(&|p| p.reset_parts.protect),
            pages[pages.len() / 2],
            f[f.len() / 2],
        );
    }
    let pr = &profiles[0];
    let host: Vec<Duration> = pr.iter().zip(&times[0]).map(|(p, t)| t.saturating_sub(p.turn + p.reset)).collect();
    println!(
        "host-side overhead in process (call minus turn and reset: input frame, classification, validation), p50: {:.1} us \
         (input frame {:.1} us, validation {:.1} us)",
        us(p50(host)),
        us(p50(pr.iter().map(|p| p.frame).collect())),
        us(p50(pr.iter().map(|p| p.validate).collect())),
    );
}

/// How the call grows with the layers a hook reads or writes, and with
/// features (the current path, and the eager one for comparison).
fn layer_costs(engine: &Engine, inp: &HookInput) {
    let hooks: [(&str, &str, HookName); 9] = [
        ("terrain: return chunk (reads no layer)", IDENTITY, HookName::Terrain),
        ("terrain: reads height", "def terrain(ctx, chunk):\n    chunk.height\n    return chunk\n", HookName::Terrain),
        (
            "terrain: reads height, temperature",
            "def terrain(ctx, chunk):\n    chunk.height, chunk.temperature\n    return chunk\n",
            HookName::Terrain,
        ),
        (
            "terrain: reads all 4 layers",
            "def terrain(ctx, chunk):\n    chunk.height, chunk.temperature, chunk.moisture, chunk.biome\n    return chunk\n",
            HookName::Terrain,
        ),
        (
            "terrain: writes height (+= 1)",
            "def terrain(ctx, chunk):\n    chunk.height += 1\n    return chunk\n",
            HookName::Terrain,
        ),
        (
            "terrain: reads 4 layers, writes height",
            "def terrain(ctx, chunk):\n    chunk.height += chunk.temperature * chunk.moisture + chunk.biome\n    return chunk\n",
            HookName::Terrain,
        ),
        ("biome: return chunk", "def biome(ctx, chunk):\n    return chunk\n", HookName::Biome),
        (
            "biome: writes biome from height",
            "import numpy as np\ndef biome(ctx, chunk):\n    chunk.biome = np.where(chunk.height > 500, 2, 1).astype(np.uint16)\n    return chunk\n",
            HookName::Biome,
        ),
        (
            "features: 16 trees where height > 0",
            "def features(ctx, chunk):\n    h = chunk.height\n    return [{'x': x, 'z': z, 'kind': 'tree', 'h': float(h[x][z])} for x in range(0, 32, 8) for z in range(0, 32, 8) if h[x][z] >= 0]\n",
            HookName::Features,
        ),
    ];
    println!("\n=== cost by layers read / written (Overlay; 1000 calls each, interleaved with the eager path) ===");
    println!("{:<42} {:>9} {:>9} {:>9} {:>7} {:>12}", "hook", "p50", "p99", "turn", "pages", "eager p50");
    for (name, src, hook) in hooks {
        let inp = HookInput { hook, ..inp.clone() };
        let mut now = engine.instantiate(name, src).expect("load");
        let mut eager = engine.instantiate(name, src).expect("load");
        eager.use_eager_harness(true);
        for _ in 0..100 {
            assert!(now.call(&inp).result.is_ok(), "{name}");
            assert!(eager.call(&inp).result.is_ok(), "{name}");
        }
        let (mut a, mut b, mut turn, mut pages) = (vec![], vec![], vec![], vec![]);
        for _ in 0..1000 {
            let t = Instant::now();
            let r = now.call(&inp);
            a.push(t.elapsed());
            assert!(black_box(r).result.is_ok());
            turn.push(now.last_profile().turn);
            pages.push(now.last_profile().reset_parts.pages);
            let t = Instant::now();
            let r = eager.call(&inp);
            b.push(t.elapsed());
            assert!(black_box(r).result.is_ok());
        }
        a.sort();
        pages.sort();
        println!(
            "{name:<42} {:>7.1}us {:>7.1}us {:>7.1}us {:>7} {:>10.1}us",
            us(percentile(&a, 0.5)),
            us(percentile(&a, 0.99)),
            us(p50(turn)),
            pages[pages.len() / 2],
            us(p50(b)),
        );
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg = SandboxConfig::new(root.join(".worldloom/runtime/python"), root.join(".worldloom/cache"));
    let t = Instant::now();
    let engine = Engine::load(&cfg).expect("engine");
    let load = t.elapsed();
    let inp = input();

    println!("\n=== worldloom-sandbox benchmark (identity terrain hook, 32x32, fresh state every call) ===");
    println!(
        "engine load (cached module + base snapshot): {load:.1?}; process RSS after load {} MiB \
         (anon {} MiB, file {} MiB = page cache of the mmapped artifact, shmem {} MiB)",
        status_kib("VmRSS:") >> 10,
        status_kib("RssAnon:") >> 10,
        status_kib("RssFile:") >> 10,
        status_kib("RssShmem:") >> 10
    );
    println!("base snapshot linear memory: {} KiB", engine.base_memory_bytes() >> 10);
    let t = Instant::now();
    let mut overlay = engine.instantiate_with("identity", IDENTITY, ResetStrategy::Overlay).expect("load");
    println!("instantiate (new instance + plugin load + snapshot): {:.1?}", t.elapsed());
    println!(
        "plugin snapshot: linear memory {} KiB, stored in its memfd {} KiB (zero pages are holes)",
        overlay.memory_bytes() >> 10,
        overlay.snapshot_stored_bytes() >> 10
    );
    before_after(&engine, &inp);
    layer_costs(&engine, &inp);
    println!("\n{:<17} {:>7} {:>10} {:>10} {:>10} {:>10}", "strategy", "calls", "p50", "p99", "mean", "min");
    let mut rows = vec![];
    for (name, strategy, warm, n) in [
        ("Overlay", ResetStrategy::Overlay, 200, 3000),
        ("OverlayReprotect", ResetStrategy::OverlayReprotect, 200, 3000),
        ("OverlayDiscard", ResetStrategy::OverlayDiscard, 50, 1000),
        ("FullCopy", ResetStrategy::FullCopy, 20, 300),
        ("FreshInstance", ResetStrategy::FreshInstance, 5, 100),
    ] {
        let mut s = if strategy == ResetStrategy::Overlay {
            overlay.fork().expect("fork")
        } else {
            engine.instantiate_with("identity", IDENTITY, strategy).expect("load")
        };
        let v = latencies(&mut s, &inp, warm, n);
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "{name:<17} {n:>7} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?}",
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            mean,
            v[0]
        );
        rows.push((name, percentile(&v, 0.5)));
    }
    let before = overlay.pages_restored();
    for _ in 0..100 {
        overlay.call(&inp);
    }
    println!("\npages restored per Overlay call (written by the call): {}", (overlay.pages_restored() - before) / 100);

    // Memory per warm sandbox: RSS delta per extra sandbox of the same
    // plugin (forks share the snapshot memfd), each warmed with 20 calls.
    let k = 8;
    let (rss0, anon0, shm0) = (status_kib("VmRSS:"), status_kib("RssAnon:"), status_kib("RssShmem:"));
    let mut extra = vec![];
    for _ in 0..k {
        let mut s = overlay.fork().expect("fork");
        for _ in 0..20 {
            s.call(&inp);
        }
        extra.push(s);
    }
    let (rss1, anon1, shm1) = (status_kib("VmRSS:"), status_kib("RssAnon:"), status_kib("RssShmem:"));
    println!(
        "memory per extra warm sandbox (fork, same plugin, {k} sandboxes): RSS +{} KiB (anon +{} KiB, shmem +{} KiB)",
        (rss1.saturating_sub(rss0)) / k,
        (anon1.saturating_sub(anon0)) / k,
        (shm1.saturating_sub(shm0)) / k
    );
    let (rss0, anon0, shm0) = (rss1, anon1, shm1);
    let mut loaded = vec![];
    for i in 0..4 {
        let mut s = engine.instantiate(&format!("p{i}"), &format!("X = {i}\n{IDENTITY}")).expect("load");
        for _ in 0..20 {
            s.call(&inp);
        }
        loaded.push(s);
    }
    let (rss1, anon1, shm1) = (status_kib("VmRSS:"), status_kib("RssAnon:"), status_kib("RssShmem:"));
    println!(
        "memory per extra warm sandbox (separately loaded plugin, 4 plugins): RSS +{} KiB (anon +{} KiB, shmem +{} KiB), plus its snapshot memfd {} KiB",
        (rss1.saturating_sub(rss0)) / 4,
        (anon1.saturating_sub(anon0)) / 4,
        (shm1.saturating_sub(shm0)) / 4,
        loaded[0].snapshot_stored_bytes() >> 10
    );
    drop((extra, loaded));

    // How fuel relates to time, to choose `fuel` against `deadline_ms`.
    let busy = engine.with_limits(worldloom_plugin_abi::Limits {
        fuel: 1_000_000_000,
        deadline_ms: 60_000,
        ..engine.limits()
    });
    let mut spin = busy.instantiate("spin", "def terrain(ctx, chunk):\n    while True:\n        pass\n").expect("load");
    let r = spin.call(&inp);
    println!(
        "fuel rate (Python busy loop): {:.0} M instructions/s ({} fuel in {} ms, {:?})",
        r.stats.fuel as f64 / r.stats.wall_us as f64,
        r.stats.fuel,
        r.stats.wall_us / 1000,
        r.result.as_ref().err().map(|e| e.kind)
    );
    let mut np = busy
        .instantiate(
            "np",
            "import numpy as np\ndef terrain(ctx, chunk):\n    a = np.ones((256, 256))\n    while True:\n        a = a @ a / 256\n",
        )
        .expect("load");
    let r = np.call(&inp);
    println!(
        "fuel rate (numpy matmul loop): {:.0} M instructions/s ({} fuel in {} ms)",
        r.stats.fuel as f64 / r.stats.wall_us as f64,
        r.stats.fuel,
        r.stats.wall_us / 1000
    );
    println!("\np50 per strategy: {}", rows.iter().map(|(n, d)| format!("{n} {d:.1?}")).collect::<Vec<_>>().join(", "));
    process_boundary(&root, &inp, &mut overlay);

    // The same calls under criterion.
    let mut c = Criterion::default().configure_from_args().warm_up_time(Duration::from_secs(1));
    let mut g = c.benchmark_group("identity_terrain_call_and_reset");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("overlay", |b| b.iter(|| black_box(overlay.call(&inp))));
    let mut discard = engine.instantiate_with("identity", IDENTITY, ResetStrategy::OverlayDiscard).expect("load");
    g.bench_function("overlay_discard", |b| b.iter(|| black_box(discard.call(&inp))));
    let mut full = engine.instantiate_with("identity", IDENTITY, ResetStrategy::FullCopy).expect("load");
    g.bench_function("full_copy", |b| b.iter(|| black_box(full.call(&inp))));
    g.sample_size(10);
    let mut fresh = engine.instantiate_with("identity", IDENTITY, ResetStrategy::FreshInstance).expect("load");
    g.bench_function("fresh_instance", |b| b.iter(|| black_box(fresh.call(&inp))));
    g.finish();
    c.final_summary();
}
