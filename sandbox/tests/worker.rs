//! Plugins in worker processes: the supervisor, the zygote, the kill path
//! and the OS confinement. Each test misbehaves on purpose - through hostile
//! plugins, or through test-only hooks that make the worker itself
//! misbehave as if code had escaped WebAssembly - and then checks that the
//! next call is served correctly by a fresh worker.

mod common;

use std::time::{Duration, Instant};

use common::*;
use worldloom_plugin_abi::{ErrorKind, HookName, Limits};
use worldloom_sandbox::proto::{ForbiddenCall, TestHook};
use worldloom_sandbox::{CallReport, PluginRef, Supervisor, SupervisorConfig, Worker};

const GRACE: Duration = Duration::from_millis(500);

fn supervisor_with(adjust: impl FnOnce(&mut SupervisorConfig)) -> Supervisor {
    let c = config();
    let mut cfg = SupervisorConfig::new(env!("CARGO_BIN_EXE_worldloom-sandbox-worker"), c.runtime_dir, c.cache_dir);
    cfg.test_hooks = true;
    cfg.grace = GRACE;
    adjust(&mut cfg);
    Supervisor::new(cfg)
}

fn supervisor() -> Supervisor {
    supervisor_with(|_| {})
}

fn plugin<'a>(name: &'a str, source: &'a str) -> PluginRef<'a> {
    PluginRef { name, sha256: name, source }
}

/// A well-behaved call through `w`, checked cell by cell.
fn identity_works(w: &mut Worker) {
    let src = fixture("identity.py");
    let inp = input(HookName::Terrain);
    let r = w.call(plugin("identity.py", &src), &Limits::default(), &inp);
    assert_eq!(heights(&r), &inp.layers.height[..]);
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {pid}"))
}

#[test]
fn a_worker_process_runs_a_plugin_and_the_host_validates_its_result() {
    let sup = supervisor();
    let mut w = sup.worker();
    let t = Instant::now();
    identity_works(&mut w);
    eprintln!("first call (zygote start, fork, load, call): {:?}", t.elapsed());
    let t = Instant::now();
    for _ in 0..20 {
        identity_works(&mut w);
    }
    eprintln!("20 warm calls: {:?}", t.elapsed());
    assert_eq!(sup.stats().forks, 1);
}

#[test]
fn a_deadlocked_worker_is_killed_within_deadline_plus_grace_and_replaced() {
    let sup = supervisor();
    let mut w = sup.worker();
    identity_works(&mut w);
    for round in 0..stress_rounds(3) {
        let pid = w.pid().expect("a worker");
        let budget = Duration::from_millis(200);
        let t = Instant::now();
        let e = w.test(TestHook::Deadlock, budget).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("was killed"), "{e}");
        assert!(t.elapsed() < budget + GRACE, "round {round}: {:?}", t.elapsed());
        // The replacement was forked off the request path; the next call works.
        identity_works(&mut w);
        assert_ne!(w.pid(), Some(pid));
        // The old worker is gone, not left behind.
        assert!(!std::path::Path::new(&format!("/proc/{pid}/status")).exists() || is_zombie_free(pid));
    }
    assert_eq!(sup.stats().kills, stress_rounds(3) as u64);
}

fn is_zombie_free(pid: u32) -> bool {
    // A zombie still has a /proc entry until reaped; the reaper runs in the background.
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}/status")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The process no longer runs: gone, or a zombie. An orphaned worker (its
/// zygote died) is reaped by init at init's own pace, so a zombie counts.
fn has_ended(pid: u32) -> bool {
    for _ in 0..1000 {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Err(_) => return true,
            Ok(s) if s.lines().any(|l| l.starts_with("State:") && l.contains('Z')) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

#[test]
fn a_forbidden_system_call_kills_the_worker() {
    let sup = supervisor();
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
        identity_works(&mut w);
    }
}

#[test]
fn an_oversized_or_garbled_answer_gets_the_worker_killed_and_replaced() {
    let sup = supervisor();
    for hook in [TestHook::OversizedFrame, TestHook::Garbage] {
        let mut w = sup.worker();
        identity_works(&mut w);
        let pid = w.pid();
        let e = w.test(hook.clone(), Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Trap, "{hook:?}: {e}");
        assert!(e.message.contains("invalid answer"), "{hook:?}: {e}");
        identity_works(&mut w);
        assert_ne!(w.pid(), pid);
    }
}

#[test]
fn workers_hold_nothing_of_the_parents_environment() {
    let sup = supervisor();
    let mut w = sup.worker();
    let env = w.test(TestHook::Environment, Duration::from_secs(30)).expect("an answer");
    // The test process has HOME, PATH, CARGO_*; a worker has at most RUST_LOG.
    for line in env.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with("RUST_LOG="), "a worker inherited {line:?}");
    }
    let pid = w.pid().expect("a worker");
    let outside = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    for var in ["HOME", "PATH", "CARGO_MANIFEST_DIR", "AWS_", "WORLDLOOM_S3"] {
        assert!(!String::from_utf8_lossy(&outside).contains(var), "{var} in the worker's environment");
    }
    // Confined: no new privileges, seccomp filtering, not dumpable.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    // Its own process group, not the test's.
    // SAFETY: plain getpgid calls.
    let (theirs, ours) = unsafe { (libc::getpgid(pid as i32), libc::getpgid(0)) };
    assert_ne!(theirs, ours);
}

#[test]
fn every_hostile_plugin_runs_in_a_worker_without_killing_it() {
    // The filter must allow everything the engine does for any plugin: a
    // worker killed by SIGSYS here would be a hole in the allowlist, not a
    // defence.
    let sup = supervisor();
    let mut w = sup.worker();
    let limits = Limits::default();
    let mut ran = 0;
    for (file, mode) in [
        ("mem_bomb.py", "python"),
        ("mem_bomb.py", "numpy"),
        ("cpu_infinite_loop.py", "attack"),
        ("recursion_c_level.py", "attack"),
        ("fd_leak.py", "attack"),
        ("print_flood.py", "attack"),
        ("sleep_forever.py", "attack"),
        ("threads.py", "attack"),
        ("net_socket_connect.py", "attack"),
        ("proc_spawn.py", "attack"),
        ("scribble_memory.py", "attack"),
        ("fs_edges.py", "paths"),
        ("cost_probe.py", "memory_copy"),
        ("cost_probe.py", "read_zip"),
        ("cost_probe.py", "deep_exceptions"),
        ("cost_probe.py", "gather"),
    ] {
        let src = fixture(file);
        let inp = with_mode(input(HookName::Terrain), mode);
        let r = w.call(plugin(file, &src), &limits, &inp);
        if let Err(e) = &r.result {
            assert!(!e.message.contains("sandbox process"), "{file} {mode}: the worker died: {e}");
        }
        let benign = w.call(plugin(file, &src), &limits, &with_mode(input(HookName::Terrain), "benign"));
        assert!(benign.result.is_ok(), "{file}: {:?}", benign.result);
        ran += 1;
    }
    assert_eq!(ran, 16);
    let stats = sup.stats();
    assert_eq!((stats.deaths, stats.kills, stats.forks), (0, 0, 1), "{stats:?}");
}

#[test]
fn a_huge_path_costs_the_host_no_memory() {
    let sup = supervisor();
    let mut w = sup.worker();
    identity_works(&mut w);
    let pid = w.pid().expect("a worker");
    let src = fixture("fs_edges.py");
    let before = status_kib(pid, "VmHWM:");
    // os.stat of a 64 MiB path, straight to the host (dir_fd): refused by
    // its length. Resolving it would have cost the host ~12 bytes per byte.
    let r = w.call(plugin("fs_edges.py", &src), &Limits::default(), &with_mode(input(HookName::Terrain), "paths"));
    assert!(r.log.contains("stat 64 MiB OSError 37"), "{}", r.log);
    let grew = status_kib(pid, "VmHWM:").saturating_sub(before);
    // The guest itself holds the path (its memory, under its cap); the
    // host adds nothing near the path's 64 MiB x 12.
    assert!(grew < 256 << 10, "the worker's peak memory grew by {} MiB", grew >> 10);
}

#[test]
fn exception_heavy_calls_do_not_grow_the_workers_memory() {
    let sup = supervisor();
    let mut w = sup.worker();
    let src = fixture("cost_probe.py");
    let limits = Limits::default();
    let call = |w: &mut Worker| w.call(plugin("cost_probe.py", &src), &limits, &terrain("exceptions"));
    expect_kind(&call(&mut w), ErrorKind::FuelExhausted);
    let pid = w.pid().expect("a worker");
    let after_one = status_kib(pid, "RssAnon:");
    for _ in 0..8 {
        expect_kind(&call(&mut w), ErrorKind::FuelExhausted);
    }
    let after_nine = status_kib(pid, "RssAnon:");
    // Each call throws ~17k exceptions; wasmer keeps every one. The instance
    // is replaced once that passes 64 MiB, so nine calls hold no more than one.
    assert!(
        after_nine < after_one + (128 << 10),
        "anonymous memory {} MiB after one call, {} MiB after nine",
        after_one >> 10,
        after_nine >> 10
    );
}

#[test]
fn warm_sandboxes_are_evicted_to_keep_a_workers_memory_budget() {
    let sup = supervisor_with(|c| c.warm_bytes_per_worker = 100 << 20);
    let mut w = sup.worker();
    let limits = Limits::default();
    let inp = input(HookName::Terrain);
    // Three distinct plugins of ~41 MiB of linear memory each.
    let sources: Vec<String> = (0..3).map(|i| format!("{}\nX = {i}\n", fixture("identity.py"))).collect();
    for (i, src) in sources.iter().enumerate() {
        let name = format!("identity-{i}");
        let r: CallReport = w.call(PluginRef { name: &name, sha256: &name, source: src }, &limits, &inp);
        assert_eq!(heights(&r), &inp.layers.height[..]);
    }
    let stats = w.stats().expect("stats");
    assert!(stats.warm_bytes <= 100 << 20, "{stats:?}");
    assert!(stats.warm <= 2 && stats.evictions >= 1, "{stats:?}");
    // An evicted plugin is loaded again when it is called again.
    let name = "identity-0";
    let r = w.call(PluginRef { name, sha256: name, source: &sources[0] }, &limits, &inp);
    assert_eq!(heights(&r), &inp.layers.height[..]);
}

/// Calls an identity plugin until it succeeds (a new zygote and worker
/// started on the way), for at most a minute.
fn recovers(w: &mut Worker) {
    let src = fixture("identity.py");
    let t = Instant::now();
    loop {
        let r = w.call(plugin("identity.py", &src), &Limits::default(), &input(HookName::Terrain));
        if r.result.is_ok() {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no recovery: {:?}", r.result);
    }
}

/// What an exiting server calls: the zygote and every worker end at once,
/// and a supervisor that is used again starts a new zygote.
#[test]
fn stop_now_ends_the_zygote_and_its_workers() {
    let sup = supervisor();
    let mut w = sup.worker();
    identity_works(&mut w);
    let zygote = sup.zygote_pid().expect("a zygote");
    let worker = w.pid().expect("a worker");
    sup.stop_now();
    assert!(has_ended(zygote), "zygote {zygote} survived stop_now");
    assert!(has_ended(worker), "worker {worker} outlived its zygote");
    sup.stop_now(); // nothing left to stop: a no-op
    recovers(&mut w);
    assert_ne!(sup.zygote_pid(), Some(zygote));
}

#[test]
fn a_dead_zygote_is_started_again() {
    let sup = supervisor();
    let mut w = sup.worker();
    identity_works(&mut w);
    let zygote = sup.zygote_pid().expect("a zygote") as i32;
    let worker = w.pid().expect("a worker");
    // SAFETY: killing the zygote process this test's supervisor started.
    unsafe { libc::kill(zygote, libc::SIGKILL) };
    // The worker dies with it (PDEATHSIG): no sandbox process outlives its zygote.
    assert!(has_ended(worker), "worker {worker} outlived its zygote");
    // The next call gets a new zygote and worker.
    recovers(&mut w);
    assert_ne!(sup.zygote_pid(), Some(zygote as u32));
    assert_eq!(sup.stats().zygote_starts, 2);
}
