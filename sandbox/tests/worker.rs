//! Plugins in worker processes: the supervisor, the zygote, the kill path
//! and the OS confinement.

mod common;

use std::time::{Duration, Instant};

use common::*;
use worldloom_plugin_abi::{ErrorKind, HookName, Limits};
use worldloom_sandbox::proto::{ForbiddenCall, TestHook};
use worldloom_sandbox::{PluginRef, Supervisor, SupervisorConfig};

fn supervisor(test_hooks: bool) -> Supervisor {
    let c = config();
    let mut cfg = SupervisorConfig::new(env!("CARGO_BIN_EXE_worldloom-sandbox-worker"), c.runtime_dir, c.cache_dir);
    cfg.test_hooks = test_hooks;
    cfg.grace = Duration::from_millis(500);
    Supervisor::new(cfg)
}

fn plugin<'a>(name: &'a str, source: &'a str) -> PluginRef<'a> {
    PluginRef { name, sha256: name, source }
}

#[test]
fn a_worker_process_runs_a_plugin_and_the_host_validates_its_result() {
    let sup = supervisor(false);
    let mut w = sup.worker();
    let src = fixture("identity.py");
    let limits = Limits::default();
    let inp = input(HookName::Terrain);
    let t = Instant::now();
    let r = w.call(plugin("identity", &src), &limits, &inp);
    eprintln!("first call (zygote start, fork, load, call): {:?}", t.elapsed());
    assert_eq!(heights_of(&r), &inp.layers.height[..]);
    let t = Instant::now();
    for _ in 0..20 {
        let r = w.call(plugin("identity", &src), &limits, &inp);
        assert_eq!(heights_of(&r), &inp.layers.height[..]);
    }
    eprintln!("20 warm calls: {:?}", t.elapsed());
}

fn heights_of(r: &worldloom_sandbox::CallReport) -> &[f32] {
    heights(r)
}

#[test]
fn a_deadlocked_worker_is_killed_within_deadline_plus_grace_and_replaced() {
    let sup = supervisor(true);
    let mut w = sup.worker();
    let src = fixture("identity.py");
    let limits = Limits::default();
    let inp = input(HookName::Terrain);
    let r = w.call(plugin("identity", &src), &limits, &inp);
    assert_eq!(heights_of(&r), &inp.layers.height[..]);
    let pid = w.pid().expect("a worker");
    let t = Instant::now();
    let e = w.test(TestHook::Deadlock, Duration::from_millis(700)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    let r = w.call(plugin("identity", &src), &limits, &inp);
    assert_eq!(heights_of(&r), &inp.layers.height[..]);
    assert_ne!(w.pid(), Some(pid));
    assert_eq!(sup.stats().kills, 1);
}

#[test]
fn a_forbidden_system_call_kills_the_worker() {
    let sup = supervisor(true);
    for call in [
        ForbiddenCall::OpenFile,
        ForbiddenCall::Socket,
        ForbiddenCall::Exec,
        ForbiddenCall::Fork,
        ForbiddenCall::Ptrace,
        ForbiddenCall::MapExecutable,
    ] {
        let mut w = sup.worker();
        let e = w.test(TestHook::Syscall(call), Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Trap, "{call:?}: {e}");
        assert!(e.message.contains("SIGSYS"), "{call:?}: {e}");
    }
}
