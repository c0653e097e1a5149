//! Where the time of one plugin call goes: the sandbox's own phase timers
//! (input frame, guest turn, reset: scan / copy-back / re-protect, result
//! validation), the minor page faults a call takes, the pages it dirties,
//! and the guest-side cost of each step of the harness (measured by plugins
//! that repeat one step many times in a call).
//!
//! `cargo run --release -p worldloom-sandbox --example call_profile`

use std::path::PathBuf;
use std::time::Duration;

use worldloom_plugin_abi::{HookInput, Limits};
use worldloom_sandbox::{CallProfile, Engine, Sandbox, SandboxConfig};

#[path = "../benches/common/mod.rs"]
mod common;

use common::{IDENTITY, input};

fn minflt() -> i64 {
    // SAFETY: getrusage writes into the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u.ru_minflt
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// p50 of every phase over `n` calls.
fn profile(s: &mut Sandbox, inp: &HookInput, n: usize) {
    for _ in 0..100 {
        assert!(s.call(inp).result.is_ok());
    }
    let (mut total, mut frame, mut turn, mut reset, mut scan, mut copy, mut protect, mut validate) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut faults, mut pages, mut runs, mut fuel) = (vec![], vec![], vec![], vec![]);
    let mut parts: [Vec<Duration>; 3] = Default::default();
    let mut part_fuel: [Vec<u64>; 3] = Default::default();
    for _ in 0..n {
        let f0 = minflt();
        let t = std::time::Instant::now();
        let r = s.call(inp);
        total.push(t.elapsed());
        faults.push(minflt() - f0);
        assert!(r.result.is_ok(), "{:?}", r.result);
        fuel.push(r.stats.fuel);
        let p: CallProfile = s.last_profile();
        frame.push(p.frame);
        turn.push(p.turn);
        reset.push(p.reset);
        scan.push(p.reset_parts.scan);
        copy.push(p.reset_parts.copy);
        protect.push(p.reset_parts.protect);
        validate.push(p.validate);
        for i in 0..3 {
            parts[i].push(p.turn_parts[i]);
            part_fuel[i].push(p.turn_fuel[i]);
        }
        pages.push(p.reset_parts.pages);
        runs.push(p.reset_parts.runs);
    }
    for f in &mut part_fuel {
        f.sort();
    }
    let [before, body, after] = parts.map(|v| us(median(v)));
    faults.sort();
    pages.sort();
    runs.sort();
    fuel.sort();
    println!(
        "  total p50 {:.1} us | frame {:.1} | turn {:.1} | reset {:.1} (scan {:.1}, copy {:.1}, protect {:.1}) | validate {:.1}",
        us(median(total)),
        us(median(frame)),
        us(median(turn)),
        us(median(reset)),
        us(median(scan)),
        us(median(copy)),
        us(median(protect)),
        us(median(validate)),
    );
    println!(
        "  minor faults per call {} | pages copied back {} in {} runs | fuel {}",
        faults[n / 2],
        pages[n / 2],
        runs[n / 2],
        fuel[n / 2]
    );
    println!(
        "  turn: until the input is answered {before:.1} us ({} fuel) | harness and hook {body:.1} us ({} fuel) | after the result {after:.1} us ({} fuel)",
        part_fuel[0][n / 2],
        part_fuel[1][n / 2],
        part_fuel[2][n / 2]
    );
}

/// Guest cost of one step: a plugin repeating `body` `reps` times in its hook,
/// minus the identity call, divided by `reps`.
fn step_cost(engine: &Engine, inp: &HookInput, base: (Duration, u64), name: &str, setup: &str, body: &str) {
    let reps = 200;
    let src = format!(
        "import numpy as np, random, json, struct, _host\n{setup}\ndef terrain(ctx, chunk):\n    for _ in range({reps}):\n        {body}\n    return chunk\n"
    );
    let mut s = engine.instantiate(name, &src).expect("step plugin loads");
    for _ in 0..5 {
        let r = s.call(inp);
        assert!(r.result.is_ok(), "{name}: {:?}", r.result);
    }
    let mut v = vec![];
    let mut fuel = 0;
    for _ in 0..30 {
        let r = s.call(inp);
        fuel = r.stats.fuel;
        v.push(s.last_profile().turn);
    }
    let t = median(v);
    println!(
        "  {name:<50} {:>8.2} us  {:>8} fuel",
        (us(t) - us(base.0)) / reps as f64,
        (fuel.saturating_sub(base.1)) / reps as u64
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cfg = SandboxConfig::new(root.join(".worldloom/runtime/python"), root.join(".worldloom/cache"));
    cfg.limits = Limits { deadline_ms: 60_000, ..Limits::default() };
    let engine = Engine::load(&cfg).expect("engine");
    let inp = input();
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);

    println!("identity terrain call, Overlay reset, {n} calls:");
    let mut s = engine.instantiate("identity", IDENTITY).expect("load");
    profile(&mut s, &inp, n);
    for (name, src) in [
        ("reads height", "def terrain(ctx, chunk):\n    chunk.height\n    return chunk\n"),
        (
            "reads 4 layers",
            "def terrain(ctx, chunk):\n    chunk.height, chunk.temperature, chunk.moisture, chunk.biome\n    return chunk\n",
        ),
        ("writes height (+1)", "def terrain(ctx, chunk):\n    chunk.height += 1\n    return chunk\n"),
        ("ctx.random used", "def terrain(ctx, chunk):\n    ctx.random.random()\n    return chunk\n"),
    ] {
        println!("{name}:");
        let mut s = engine.instantiate(name, src).expect("load");
        profile(&mut s, &inp, n / 4);
    }

    // Base for the step costs: the identity call's turn and fuel.
    let mut v = vec![];
    let mut fuel = 0;
    for _ in 0..30 {
        let r = s.call(&inp);
        fuel = r.stats.fuel;
        v.push(s.last_profile().turn);
    }
    let base = (median(v), fuel);
    println!("guest cost per step (a plugin repeating it, minus the identity call):");
    let hdr = "HDR = json.dumps({'hook': 'terrain', 'seed': 1, 'cx': 0, 'cz': 0, 'size': 32, 'random_seed': 7, \
               'params': {}, 'biome_count': 13, 'limits': {'max_features': 4096, 'max_feature_properties': 16, \
               'max_feature_string': 256}}).encode()\nRAW = b'WLI1' + struct.pack('<I', len(HDR)) + HDR + bytes(14 * 1024)\n\
               import __main__ as M\nFRAME = M._WL_HEAD.pack(b'WLI3', 1, 0, 13, 32, 1, 0, 0, 7, 0.0, 4096, 16, 256, 0) + bytes(14 * 1024)";
    for (name, body) in [
        ("JSON header parse (the frame before 2026-12-03)", "json.loads(RAW[8:8 + len(HDR)])"),
        ("binary header parse (_wl_header)", "M._wl_header(FRAME)"),
        (
            "one layer frombuffer+reshape+copy",
            "np.frombuffer(RAW, dtype='<f4', count=1024, offset=8 + len(HDR)).reshape(32, 32).copy()",
        ),
        (
            "one layer frombuffer+reshape (view)",
            "np.frombuffer(RAW, dtype='<f4', count=1024, offset=8 + len(HDR)).reshape(32, 32)",
        ),
        ("random.seed(7)", "random.seed(7)"),
        ("np.random.seed(7)", "np.random.seed(7)"),
        ("height result: astype+isfinite+tobytes", "a = chunk.height.astype('<f4'); np.isfinite(a).all(); a.tobytes()"),
        ("result frame concat (4 KiB)", "b'out' + b'WLO1' + bytes((0,)) + B4"),
        ("bytes copy of the 14 KiB input", "bytes(RAW_BA)"),
        ("door: the input frame (_host.call(b'in'))", "_host.call(b'in')"),
        ("compile of 'pass'", "compile('pass', '<string>', 'exec')"),
        ("compile of the turn source", "compile('_wl_call()', '<string>', 'exec')"),
        ("exec of a compiled no-op call", "exec(NOP, G)"),
        ("harness: ctx and chunk, hook, result (_wl_run)", "M._wl_hooks.setdefault('biome', IDB); M._wl_run(FRAME)"),
    ] {
        let setup = format!(
            "{hdr}\nB4 = bytes(4096)\nRAW_BA = bytearray(RAW)\nG = {{'f': lambda: None}}\nNOP = compile('f()', '<string>', 'exec')\n\
             IDB = lambda ctx, chunk: chunk"
        );
        step_cost(&engine, &inp, base, name, &setup, body);
    }
}
