//! The process side of the sandbox: a *zygote* that loads the engine once
//! and forks *workers*, each confined by the OS before it runs any plugin.
//!
//! ```text
//! node (supervisor) --exec--> zygote (engine loaded, single-threaded)
//!                                 |-- fork --> worker 1 (seccomp, rlimits)  <-- socket --> supervisor
//!                                 `-- fork --> worker 2 ...
//! ```
//!
//! The zygote is started with a cleared environment and a fresh memory
//! image (exec, not fork, of the server), so no credential of the server
//! ever exists in a sandbox process. It loads the compiled interpreter and
//! the base snapshot before any thread exists, so its workers share the
//! engine's ~455 MiB of machine code and the snapshot copy-on-write, and
//! fork is safe. A worker then, in order: dies with the zygote
//! (`PR_SET_PDEATHSIG`), takes its own process group, closes every
//! descriptor it does not need, opens its own `/proc/self/pagemap`, starts
//! the watchdog thread, lowers its resource limits, makes itself
//! non-dumpable, sets no-new-privileges and installs the seccomp filter
//! (`seccomp.rs`, on every thread). Only then does it read its first
//! request.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use worldloom_plugin_abi::Limits;

use crate::proto::{
    self, CallOutcome, ForbiddenCall, LimitsKey, LoadOutcome, Payload, PluginKey, Request, Response, SHARED_BYTES,
    SHARED_RESULT_AT, TestHook, WorkerConfig, WorkerStats, ZygoteReply, ZygoteRequest,
};
use crate::shm::SharedMem;
use crate::{Engine, LoadFailure, Sandbox, SandboxConfig};

/// The descriptor on which a zygote finds its control socket.
pub const CONTROL_FD: RawFd = 3;
/// Set in the environment of a zygote that re-executed itself after
/// compiling the interpreter (compiling starts threads; fork needs none).
const REEXEC_MARK: &str = "WORLDLOOM_ZYGOTE_REEXEC";

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Threads:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Entry point of a zygote process: `argv[last]` is the [`WorkerConfig`] as
/// JSON; the control socket is descriptor [`CONTROL_FD`]. Returns the exit code.
pub fn zygote_main(config_json: &str) -> i32 {
    // SAFETY: the supervisor put our end of the control socket at fd 3.
    let ctl = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    let reply = |msg: &ZygoteReply| {
        let mut c = &ctl;
        proto::write_frame(&mut c, msg)
    };
    let cfg: WorkerConfig = match serde_json::from_str(config_json) {
        Ok(c) => c,
        Err(e) => {
            let _ = reply(&ZygoteReply::Error(format!("the zygote's configuration does not parse: {e}")));
            return 2;
        }
    };
    if cfg.protocol != proto::PROTOCOL_VERSION {
        let _ = reply(&ZygoteReply::Error(format!(
            "the sandbox worker speaks protocol {}, the supervisor {}",
            proto::PROTOCOL_VERSION,
            cfg.protocol
        )));
        return 2;
    }
    let t = Instant::now();
    let mut sc = SandboxConfig::new(&cfg.runtime_dir, &cfg.cache_dir);
    sc.biome_count = cfg.biome_count;
    let engine = match Engine::load(&sc) {
        Ok(e) => e,
        Err(e) => {
            let _ = reply(&ZygoteReply::Error(format!("the sandbox engine did not load: {e}")));
            return 1;
        }
    };
    if threads() != 1 {
        // Compiling the interpreter ran a thread pool; fork now could copy a
        // lock some other thread holds. Start again: the cache is warm now.
        if std::env::var_os(REEXEC_MARK).is_some() {
            let _ = reply(&ZygoteReply::Error(format!(
                "the zygote has {} threads after loading a cached engine; refusing to fork",
                threads()
            )));
            return 1;
        }
        drop(engine);
        return reexec();
    }
    let ready = ZygoteReply::Ready {
        protocol: proto::PROTOCOL_VERSION,
        base_memory_bytes: engine.base_memory_bytes() as u64,
        load_ms: t.elapsed().as_millis() as u64,
    };
    if reply(&ready).is_err() {
        return 0;
    }
    let zygote_pid = std::process::id() as i32;
    loop {
        let mut c = &ctl;
        let req = match proto::read_frame::<ZygoteRequest>(&mut c) {
            Ok(r) => r,
            // The supervisor is gone: so are we (and, by PDEATHSIG, our workers).
            Err(_) => return 0,
        };
        match req {
            ZygoteRequest::Fork => match UnixStream::pair() {
                Err(e) => {
                    let _ = reply(&ZygoteReply::Error(format!("socketpair: {e}")));
                }
                Ok((ours, theirs)) => {
                    // SAFETY: this process is single-threaded (checked above), so
                    // the child may run ordinary code after fork.
                    match unsafe { libc::fork() } {
                        -1 => {
                            let e = io::Error::last_os_error();
                            let _ = reply(&ZygoteReply::Error(format!("fork: {e}")));
                        }
                        0 => {
                            drop(ours);
                            let code = worker_main(&engine, &cfg, theirs, zygote_pid);
                            // SAFETY: leave without running the zygote's atexit handlers.
                            unsafe { libc::_exit(code) };
                        }
                        pid => {
                            drop(theirs);
                            if proto::send_with_fds(&ctl, &ZygoteReply::Forked { pid }, &[ours.as_raw_fd()]).is_err() {
                                return 0;
                            }
                        }
                    }
                }
            },
            ZygoteRequest::Reap { pid } => {
                let (signal, code) = reap(pid);
                if reply(&ZygoteReply::Reaped { pid, signal, code }).is_err() {
                    return 0;
                }
            }
        }
    }
}

fn reexec() -> i32 {
    use std::os::unix::process::CommandExt;
    let args: Vec<String> = std::env::args().collect();
    // The control socket must survive exec.
    // SAFETY: plain fcntl on our descriptor.
    unsafe { libc::fcntl(CONTROL_FD, libc::F_SETFD, 0) };
    let err = std::process::Command::new("/proc/self/exe").args(&args[1..]).env(REEXEC_MARK, "1").exec();
    eprintln!("worldloom sandbox zygote: re-exec failed: {err}");
    1
}

/// Waits (up to 5 s) for worker `pid` and tells how it ended.
fn reap(pid: i32) -> (Option<i32>, Option<i32>) {
    let t = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFSIGNALED(status) {
                return (Some(libc::WTERMSIG(status)), None);
            }
            return (None, Some(libc::WEXITSTATUS(status)));
        }
        if r < 0 || t.elapsed().as_secs() >= 5 {
            return (None, None);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// Everything a fresh worker does before it reads its first request.
fn confine(engine: &Engine, sock: &UnixStream, zygote_pid: i32) -> Result<(), String> {
    // SAFETY: plain prctl/getppid/setpgid calls on ourselves.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(os_err("PR_SET_PDEATHSIG"));
        }
        if libc::getppid() != zygote_pid {
            return Err("the zygote died while forking".into());
        }
        if libc::setpgid(0, 0) != 0 {
            return Err(os_err("setpgid"));
        }
    }
    // Only stdio (stdin/stdout are /dev/null, stderr is the node's log), our
    // socket and the engine's snapshot memfds stay open.
    let mut keep: Vec<RawFd> = vec![0, 1, 2, sock.as_raw_fd()];
    keep.extend(engine.owned_fds());
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("listing /proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if !keep.contains(&fd) {
            // SAFETY: closing a descriptor nothing in this fresh process uses
            // (the directory iterator's own one is already closed).
            unsafe { libc::close(fd) };
        }
    }
    crate::image::open_pagemap().map_err(|e| format!("opening /proc/self/pagemap: {e}"))?;
    engine.start_watchdog().map_err(|e| format!("starting the watchdog: {e}"))?;
    crate::seccomp::limit_resources()?;
    // SAFETY: plain prctl on ourselves.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(os_err("PR_SET_DUMPABLE"));
    }
    crate::seccomp::install()
}

struct Warm {
    key: PluginKey,
    sandbox: Sandbox,
    bytes: u64,
}

struct WorkerState<'a> {
    base: &'a Arc<Engine>,
    cfg: &'a WorkerConfig,
    engines: HashMap<LimitsKey, Arc<Engine>>,
    /// Most recently used last.
    warm: Vec<Warm>,
    warm_bytes: u64,
    evictions: u64,
    /// Payload memory shared with the supervisor (after `Attach`).
    shared: Option<SharedMem>,
}

impl WorkerState<'_> {
    fn engine(&mut self, limits: &Limits) -> Arc<Engine> {
        let key = LimitsKey::from(limits);
        if self.engines.len() > 16 && !self.engines.contains_key(&key) {
            self.engines.clear();
        }
        self.engines.entry(key).or_insert_with(|| self.base.with_limits(*limits)).clone()
    }

    fn find(&mut self, key: &PluginKey) -> Option<&mut Sandbox> {
        let i = self.warm.iter().position(|w| &w.key == key)?;
        let w = self.warm.remove(i);
        self.warm.push(w);
        self.warm.last_mut().map(|w| &mut w.sandbox)
    }

    /// Keeps `sandbox` warm, evicting the least recently used ones until
    /// the worker's budget (count and bytes) holds.
    fn keep(&mut self, key: PluginKey, sandbox: Sandbox) {
        let bytes = sandbox.memory_bytes() as u64;
        while !self.warm.is_empty()
            && (self.warm.len() >= self.cfg.warm_max || self.warm_bytes + bytes > self.cfg.warm_bytes)
        {
            let old = self.warm.remove(0);
            self.warm_bytes -= old.bytes;
            self.evictions += 1;
        }
        if bytes > self.cfg.warm_bytes {
            // Too big to keep at all: it is loaded again for every call.
            self.evictions += 1;
            return;
        }
        self.warm_bytes += bytes;
        self.warm.push(Warm { key, sandbox, bytes });
    }

    fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Load { key, name, source, limits } => {
                if let Some(s) = self.find(&key) {
                    let out = LoadOutcome {
                        result: Ok((s.info().clone(), s.warnings().to_vec())),
                        log: s.load_log().to_string(),
                        stats: s.load_stats(),
                    };
                    return Response::Loaded(out);
                }
                match self.engine(&limits).instantiate(&name, &source) {
                    Ok(s) => {
                        let out = LoadOutcome {
                            result: Ok((s.info().clone(), s.warnings().to_vec())),
                            log: s.load_log().to_string(),
                            stats: s.load_stats(),
                        };
                        self.keep(key, s);
                        Response::Loaded(out)
                    }
                    Err(LoadFailure::Plugin { error, log, stats }) => {
                        Response::Loaded(LoadOutcome { result: Err(error), log, stats })
                    }
                    Err(LoadFailure::Host(e)) => Response::HostError(e.to_string()),
                }
            }
            Request::Attach => Response::HostError("the payload memory comes with a descriptor".into()),
            Request::Call { key, hook, random_seed, frame } => {
                let frame = match frame {
                    Payload::Inline(b) => b,
                    Payload::Shared { len } => match self.shared.as_ref().and_then(|m| m.take(0, len as usize)) {
                        Some(b) if (len as usize) <= SHARED_RESULT_AT => b,
                        _ => return Response::HostError("a shared input frame out of bounds".into()),
                    },
                };
                let shared = self.shared.as_ref().map(|m| m as *const SharedMem);
                match self.find(&key) {
                    None => Response::Unknown,
                    Some(s) => match s.call_frame(hook, random_seed, frame.into()) {
                        Ok(raw) => {
                            let result = raw.result.map(|body| {
                                // SAFETY: `shared` points at self.shared, alive for this call.
                                let mem = shared.map(|m| unsafe { &*m });
                                match mem {
                                    Some(m)
                                        if body.len() <= SHARED_BYTES - SHARED_RESULT_AT
                                            && m.put(SHARED_RESULT_AT, &body) =>
                                    {
                                        Payload::Shared { len: body.len() as u32 }
                                    }
                                    _ => Payload::Inline(body),
                                }
                            });
                            Response::Called(CallOutcome { result, log: raw.log, stats: raw.stats, worker_us: 0 })
                        }
                        Err(e) => Response::HostError(e.to_string()),
                    },
                }
            }
            Request::Check { name, source, limits } => {
                let r = self.engine(&limits).check(&name, &source);
                match (r.host_error, r.info, r.error) {
                    (Some(e), _, _) => Response::HostError(e.to_string()),
                    (None, Some(info), None) => {
                        Response::Checked(LoadOutcome { result: Ok((info, r.warnings)), log: r.log, stats: r.stats })
                    }
                    (None, _, Some(e)) => Response::Checked(LoadOutcome { result: Err(e), log: r.log, stats: r.stats }),
                    (None, None, None) => Response::HostError("the check reported nothing".into()),
                }
            }
            Request::Stats => Response::Stats(WorkerStats {
                pid: std::process::id() as i32,
                warm: self.warm.len(),
                warm_bytes: self.warm_bytes,
                evictions: self.evictions,
                ..WorkerStats::default()
            }),
            Request::Test(hook) if self.cfg.test_hooks => test_hook(hook),
            Request::Test(_) => Response::HostError("test hooks are disabled in this worker".into()),
        }
    }
}

/// Serves requests until the supervisor closes the socket.
fn worker_main(engine: &Arc<Engine>, cfg: &WorkerConfig, sock: UnixStream, zygote_pid: i32) -> i32 {
    if let Err(e) = confine(engine, &sock, zygote_pid) {
        // Never run a plugin unconfined: tell the supervisor and leave.
        let mut s = &sock;
        let _ = proto::write_frame(&mut s, &Response::HostError(format!("the worker could not confine itself: {e}")));
        return 3;
    }
    let mut state = WorkerState {
        base: engine,
        cfg,
        engines: HashMap::new(),
        warm: Vec::new(),
        warm_bytes: 0,
        evictions: 0,
        shared: None,
    };
    let mut s = &sock;
    // The first request brings the shared payload memory.
    match proto::recv_with_fds::<Request>(&sock, 1) {
        Ok((Request::Attach, mut fds)) if fds.len() == 1 => match SharedMem::attach(fds.remove(0)) {
            Ok(m) => state.shared = Some(m),
            Err(e) => {
                let _ = proto::write_frame(&mut s, &Response::HostError(format!("mapping the payload memory: {e}")));
                return 3;
            }
        },
        _ => return 3,
    }
    if proto::write_frame(&mut s, &Response::Attached).is_err() {
        return 0;
    }
    // Buffered: a request's length and body arrive in one read.
    let mut reader = io::BufReader::with_capacity(64 << 10, &sock);
    loop {
        let req = match proto::read_frame::<Request>(&mut reader) {
            Ok(r) => r,
            Err(_) => return 0,
        };
        // Test hooks that answer with something other than a frame.
        match &req {
            Request::Test(TestHook::OversizedFrame) if cfg.test_hooks => {
                let _ = proto::write_raw(&mut s, u32::MAX, &[0; 16]);
                continue;
            }
            Request::Test(TestHook::Garbage) if cfg.test_hooks => {
                let _ = proto::write_raw(&mut s, 8, &[0xff; 8]);
                continue;
            }
            _ => {}
        }
        let t = Instant::now();
        let mut resp = state.handle(req);
        if let Response::Called(out) = &mut resp {
            out.worker_us = t.elapsed().as_micros() as u64;
        }
        if proto::write_frame(&mut s, &resp).is_err() {
            return 0;
        }
    }
}

fn test_hook(hook: TestHook) -> Response {
    match hook {
        TestHook::Deadlock => {
            let m = std::sync::Mutex::new(());
            let _a = m.lock();
            // Relocking a std mutex on the same thread never returns.
            let _b = m.lock();
            Response::Test("the deadlock did not happen".into())
        }
        TestHook::Syscall(call) => Response::Test(forbidden(call)),
        TestHook::OversizedFrame | TestHook::Garbage => Response::Test("sent as raw bytes by the serve loop".into()),
        TestHook::Environment => {
            let env: Vec<String> =
                std::env::vars_os().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect();
            Response::Test(env.join("\n"))
        }
    }
}

/// Tries a forbidden system call. The filter kills the process first, so
/// whatever this returns means the confinement failed.
fn forbidden(call: ForbiddenCall) -> String {
    // SAFETY: each is a plain system call whose result is only reported.
    let r = unsafe {
        match call {
            ForbiddenCall::OpenFile => libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) as i64,
            ForbiddenCall::Socket => libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as i64,
            ForbiddenCall::Exec => {
                let argv = [c"/bin/sh".as_ptr(), std::ptr::null()];
                libc::execv(c"/bin/sh".as_ptr(), argv.as_ptr()) as i64
            }
            ForbiddenCall::Fork => libc::fork() as i64,
            ForbiddenCall::Ptrace => libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0),
            ForbiddenCall::MapExecutable => {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) as i64
            }
        }
    };
    format!("{call:?} returned {r} ({})", io::Error::last_os_error())
}
