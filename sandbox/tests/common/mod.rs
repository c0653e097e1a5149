//! Shared helpers for the sandbox integration tests: one engine per test
//! binary, fixtures, inputs, and the "the host still works" checks every
//! hostile test ends with.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use worldloom_plugin_abi::{
    CallStats, ErrorKind, HookInput, HookName, HookOutput, LayerBuffers, Limits, PluginError, Value,
};
use worldloom_sandbox::{CallReport, Engine, LoadFailure, ResetStrategy, Sandbox, SandboxConfig};

pub const SIZE: u32 = 32;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn config() -> SandboxConfig {
    let runtime = std::env::var_os("WORLDLOOM_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".worldloom/runtime/python"));
    let cache = std::env::var_os("WORLDLOOM_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".worldloom/cache"));
    SandboxConfig::new(runtime, cache)
}

/// The engine shared by every test in this binary (default limits).
pub fn engine() -> &'static Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| match Engine::load(&config()) {
        Ok(e) => e,
        Err(e) => panic!("cannot load the sandbox engine: {e}"),
    })
}

/// Limits for tests that must stop a runaway plugin quickly: a small fuel
/// budget, a generous deadline (so fuel, not time, decides), 160 MiB.
pub fn tight() -> Limits {
    Limits {
        fuel: 300_000_000,
        load_fuel: 300_000_000,
        deadline_ms: 60_000,
        load_deadline_ms: 60_000,
        memory_bytes: 160 << 20,
        ..Limits::default()
    }
}

pub fn tight_engine() -> &'static Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| engine().with_limits(tight()))
}

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn load_on(engine: &Engine, name: &str) -> Sandbox {
    load_with(engine, name, ResetStrategy::Overlay)
}

pub fn load_with(engine: &Engine, name: &str, strategy: ResetStrategy) -> Sandbox {
    match engine.instantiate_with(name, &fixture(name), strategy) {
        Ok(s) => s,
        Err(e) => panic!("{name} failed to load: {e:?}"),
    }
}

pub fn load(name: &str) -> Sandbox {
    load_on(engine(), name)
}

pub fn load_failure(engine: &Engine, name: &str) -> (PluginError, String, CallStats) {
    match engine.instantiate(name, &fixture(name)) {
        Ok(s) => panic!("{name} loaded but should not have: {:?}", s.info()),
        Err(LoadFailure::Plugin { error, log, stats }) => (error, log, stats),
        Err(LoadFailure::Host(e)) => panic!("{name}: host error instead of a plugin failure: {e}"),
    }
}

/// A deterministic input for `hook`.
pub fn input(hook: HookName) -> HookInput {
    let n = (SIZE * SIZE) as usize;
    HookInput {
        hook,
        seed: 42,
        cx: 3,
        cz: -7,
        size: SIZE,
        random_seed: 0x5eed,
        sea_level: 0.0,
        params: BTreeMap::new(),
        layers: LayerBuffers {
            height: (0..n).map(|i| ((i * 37) % 200) as f32 - 50.0).collect(),
            temperature: (0..n).map(|i| (i % 17) as f32 / 17.0).collect(),
            moisture: (0..n).map(|i| (i % 13) as f32 / 13.0).collect(),
            biome: (0..n).map(|i| (i % 5) as u16).collect(),
        },
    }
}

pub fn with_mode(mut input: HookInput, mode: &str) -> HookInput {
    input.params.insert("mode".into(), Value::Str(mode.into()));
    input
}

pub fn terrain(mode: &str) -> HookInput {
    with_mode(input(HookName::Terrain), mode)
}

pub fn err(report: &CallReport) -> &PluginError {
    match &report.result {
        Err(e) => e,
        Ok(o) => panic!("expected a failure, got {:.300}\nlog: {}", format!("{o:?}"), report.log),
    }
}

pub fn expect_kind(report: &CallReport, kind: ErrorKind) -> &PluginError {
    let e = err(report);
    assert_eq!(e.kind, kind, "wrong kind: {e}\nlog: {:.2000}", report.log);
    e
}

pub fn heights(report: &CallReport) -> &[f32] {
    match &report.result {
        Ok(HookOutput::Terrain(t)) => &t.height,
        other => panic!("expected terrain output, got {:.500}\nlog: {}", format!("{other:?}"), report.log),
    }
}

/// The benign mode of a hostile fixture sets height[0][0] to its call
/// counter: 1 in a fresh interpreter, more if state leaked.
pub fn assert_benign_fresh(sandbox: &mut Sandbox) {
    let inp = terrain("benign");
    let r = sandbox.call(&inp);
    let h = heights(&r);
    assert_eq!(h[0], 1.0, "state leaked into the next call (call counter {}); log: {}", h[0], r.log);
    assert_eq!(&h[1..], &inp.layers.height[1..], "other cells changed");
}

/// What the host must still guarantee after a hostile call: the same sandbox
/// serves a well-behaved call with fresh state (twice), a fork of it does
/// too, and the engine still loads and runs another plugin.
pub fn assert_host_fine(sandbox: &mut Sandbox) {
    assert_benign_fresh(sandbox);
    assert_benign_fresh(sandbox);
    let mut fork = sandbox.fork().expect("fork after a hostile call");
    assert_benign_fresh(&mut fork);
    assert_engine_fine();
}

/// The engine still loads and runs a plugin correctly.
pub fn assert_engine_fine() {
    let mut id = match engine().instantiate("identity", &fixture("identity.py")) {
        Ok(s) => s,
        Err(e) => panic!("the engine no longer loads plugins: {e:?}"),
    };
    let inp = input(HookName::Terrain);
    let r = id.call(&inp);
    assert_eq!(heights(&r), &inp.layers.height[..]);
}

/// How many rounds a hang-prone test runs: a few by default, as many as
/// `WORLDLOOM_STRESS` says (the stress run: `WORLDLOOM_STRESS=200`).
pub fn stress_rounds(default: usize) -> usize {
    std::env::var("WORLDLOOM_STRESS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
