//! How fast fuel burns for work whose cost is not its instruction count:
//! runs each mode of `tests/fixtures/cost_probe.py` under the default fuel
//! budget with a generous deadline, and prints how the call ended and the
//! wall time it took, i.e. the worst-case time one unit of fuel can buy.
//!
//! `cargo run --release -p worldloom-sandbox --example fuel_rates [MODE...]`

use std::collections::BTreeMap;
use std::path::PathBuf;

use worldloom_plugin_abi::{HookInput, HookName, LayerBuffers, Limits, Value};
use worldloom_sandbox::{Engine, SandboxConfig};

pub const MODES: &[&str] = &[
    "memory_copy",
    "memory_fill",
    "read_zip",
    "stat",
    "stat_dots",
    "huge_path",
    "seek",
    "readdir",
    "poll",
    "exceptions",
    "deep_exceptions",
    "gather",
    "divide",
    "bigint",
];

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cfg = SandboxConfig::new(root.join(".worldloom/runtime/python"), root.join(".worldloom/cache"));
    cfg.limits = Limits { deadline_ms: 60_000, ..Limits::default() };
    let engine = Engine::load(&cfg).expect("engine");
    let src = std::fs::read_to_string(root.join("sandbox/tests/fixtures/cost_probe.py")).expect("fixture");
    let mut sandbox = engine.instantiate("cost_probe", &src).expect("loads");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let modes: Vec<&str> = if args.is_empty() { MODES.to_vec() } else { args.iter().map(String::as_str).collect() };
    println!("fuel budget {} per call; deadline raised to 60 s for the measurement", cfg.limits.fuel);
    println!("| mode | outcome | fuel | wall ms | ns per 1000 fuel |");
    println!("|---|---|---|---|---|");
    for mode in modes {
        let n = 32 * 32;
        let input = HookInput {
            hook: HookName::Terrain,
            seed: 1,
            cx: 0,
            cz: 0,
            size: 32,
            random_seed: 7,
            sea_level: 0.0,
            params: BTreeMap::from([("mode".to_string(), Value::Str(mode.to_string()))]),
            layers: LayerBuffers {
                height: vec![0.0; n],
                temperature: vec![0.0; n],
                moisture: vec![0.0; n],
                biome: vec![0; n],
            },
        };
        let r = sandbox.call(&input);
        let outcome = match &r.result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.kind.to_string(),
        };
        let ms = r.stats.wall_us as f64 / 1000.0;
        let per_k = if r.stats.fuel > 0 { r.stats.wall_us as f64 * 1e6 / r.stats.fuel as f64 } else { 0.0 };
        println!("| {mode} | {outcome} | {} | {ms:.0} | {per_k:.2} |", r.stats.fuel);
    }
}
