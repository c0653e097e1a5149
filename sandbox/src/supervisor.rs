//! The node's side of the process boundary: it starts the zygote, hands out
//! worker processes, sends them requests with a deadline, kills any that does
//! not answer by the call's deadline plus a grace period (SIGKILL through a
//! pidfd, so a reused pid can never be hit), replaces it off the request
//! path, and re-validates every byte a worker returns.
//!
//! One [`Worker`] handle is meant for one thread (a node's generation
//! thread); handles never share a process, so killing one disturbs nothing
//! else. The zygote is started on first use (or by [`Supervisor::prestart`]),
//! so a server that never runs a plugin never loads the engine.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use worldloom_plugin_abi::{CallStats, ErrorKind, HookInput, Limits, PluginError, PluginInfo};

use crate::error::{SandboxError, SandboxErrorKind};
use crate::proto::{
    self, CallOutcome, LimitsKey, LoadOutcome, Payload, PluginKey, Request, Response, SHARED_RESULT_AT, TestHook,
    WorkerConfig, WorkerStats, ZygoteReply, ZygoteRequest,
};
use crate::shm::SharedMem;
use crate::validate;
use crate::{CallReport, CheckReport, DEFAULT_BIOME_COUNT};

/// How a supervisor starts and budgets its workers.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// The executable of the zygote: `worldloom` (with `worker_args =
    /// ["sandbox-worker"]`) or the sandbox crate's own worker binary.
    pub worker_exe: PathBuf,
    pub worker_args: Vec<String>,
    pub runtime_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub biome_count: u16,
    /// Warm-sandbox memory one worker keeps (see [`WorkerConfig::warm_bytes`]).
    pub warm_bytes_per_worker: u64,
    pub warm_max: usize,
    /// How long after a call's deadline a worker that has not answered is killed.
    pub grace: Duration,
    /// How long the zygote may take to load the engine (compiling the
    /// interpreter on a machine without the cache takes minutes).
    pub start_timeout: Duration,
    /// A worker whose resident memory passes this is replaced after its
    /// current request (checked every [`RSS_CHECK_EVERY`] requests).
    pub worker_rss_limit: u64,
    /// Honour [`TestHook`] requests. Tests only; never operator-settable.
    pub test_hooks: bool,
}

/// Longest a request may take to be written to a worker's socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests between two looks at a worker's resident memory.
pub const RSS_CHECK_EVERY: u64 = 256;

impl SupervisorConfig {
    pub fn new(worker_exe: impl Into<PathBuf>, runtime_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            worker_exe: worker_exe.into(),
            worker_args: Vec::new(),
            runtime_dir: runtime_dir.into(),
            cache_dir: cache_dir.into(),
            biome_count: DEFAULT_BIOME_COUNT,
            warm_bytes_per_worker: 1 << 30,
            warm_max: 16,
            grace: Duration::from_millis(1000),
            start_timeout: Duration::from_secs(900),
            worker_rss_limit: 6 << 30,
            test_hooks: false,
        }
    }
}

/// Counters a node can report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    pub forks: u64,
    /// Workers killed because they did not answer in time.
    pub kills: u64,
    /// Workers that died (or broke the protocol) on their own.
    pub deaths: u64,
    /// Workers replaced because their memory grew past the limit.
    pub recycled: u64,
    pub zygote_starts: u64,
}

struct Zygote {
    child: Child,
    ctl: UnixStream,
    base_memory_bytes: u64,
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing the control socket ends the zygote (and, by PDEATHSIG, its workers).
        let _ = self.ctl.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Inner {
    cfg: SupervisorConfig,
    /// The CPUs the process could use when the supervisor was made: the
    /// zygote gets all of them, whichever (pinned) thread starts it.
    cpus: Vec<usize>,
    zygote: Mutex<Option<Zygote>>,
    /// The process id of the zygote being started or running (0: none), so
    /// that [`Supervisor::stop_now`] reaches it without the lock its start holds.
    zygote_process: AtomicU32,
    forks: AtomicU64,
    kills: AtomicU64,
    deaths: AtomicU64,
    recycled: AtomicU64,
    zygote_starts: AtomicU64,
}

/// Starts and supervises sandbox worker processes. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("worker_exe", &self.inner.cfg.worker_exe).finish_non_exhaustive()
    }
}

fn host_err(kind: SandboxErrorKind, msg: impl Into<String>) -> SandboxError {
    SandboxError::new(kind, msg)
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSYS => "SIGSYS (a forbidden system call)".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGILL => "SIGILL".into(),
        n => format!("signal {n}"),
    }
}

impl Supervisor {
    pub fn new(cfg: SupervisorConfig) -> Self {
        Supervisor {
            inner: Arc::new(Inner {
                cfg,
                cpus: allowed_cpus(),
                zygote: Mutex::new(None),
                zygote_process: AtomicU32::new(0),
                forks: AtomicU64::new(0),
                kills: AtomicU64::new(0),
                deaths: AtomicU64::new(0),
                recycled: AtomicU64::new(0),
                zygote_starts: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.cfg
    }

    /// Starts the zygote in the background (so the first plugin call does
    /// not wait for the engine to load).
    pub fn prestart(&self) {
        let inner = self.inner.clone();
        let _ = std::thread::Builder::new().name("worldloom-sandbox-prestart".into()).spawn(move || {
            if let Err(e) = inner.zygote() {
                tracing::error!(error = %e, "the sandbox zygote did not start");
            }
        });
    }

    /// A handle on a worker process of its own (forked on first use).
    pub fn worker(&self) -> Worker {
        Worker { inner: self.inner.clone(), conn: None, pending: None, requests: 0, cpu: None, last_worker_us: 0 }
    }

    pub fn stats(&self) -> SupervisorStats {
        let i = &self.inner;
        SupervisorStats {
            forks: i.forks.load(Ordering::Relaxed),
            kills: i.kills.load(Ordering::Relaxed),
            deaths: i.deaths.load(Ordering::Relaxed),
            recycled: i.recycled.load(Ordering::Relaxed),
            zygote_starts: i.zygote_starts.load(Ordering::Relaxed),
        }
    }

    /// The zygote has loaded the engine and is alive: workers start in
    /// milliseconds now.
    /// Never blocks (false while the zygote is being started or asked for a worker).
    pub fn ready(&self) -> bool {
        match self.inner.zygote.try_lock() {
            Ok(mut z) => z.as_mut().is_some_and(|z| matches!(z.child.try_wait(), Ok(None))),
            Err(std::sync::TryLockError::WouldBlock) => self.inner.zygote_starts.load(Ordering::Relaxed) > 0,
            Err(std::sync::TryLockError::Poisoned(_)) => false,
        }
    }

    /// Ends the zygote and with it every worker, at once, even a zygote still
    /// loading the engine (which can take a minute on a cold cache): for a
    /// process about to exit, which runs no destructors. Never blocks.
    pub fn stop_now(&self) {
        let pid = self.inner.zygote_process.swap(0, Ordering::AcqRel);
        if pid != 0 {
            // SAFETY: kill has no memory effects. The pid is our own child's:
            // it is cleared whenever a zygote is dropped (killed and reaped).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// The zygote's process id, once started (for tests and diagnostics).
    pub fn zygote_pid(&self) -> Option<u32> {
        self.inner.lock_zygote().as_ref().map(|z| z.child.id())
    }

    /// Linear memory of the base snapshot, once the zygote is up.
    pub fn base_memory_bytes(&self) -> Option<u64> {
        self.inner.lock_zygote().as_ref().map(|z| z.base_memory_bytes)
    }
}

impl Inner {
    fn lock_zygote(&self) -> MutexGuard<'_, Option<Zygote>> {
        self.zygote.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker_config(&self) -> WorkerConfig {
        let c = &self.cfg;
        WorkerConfig {
            protocol: proto::PROTOCOL_VERSION,
            runtime_dir: c.runtime_dir.clone(),
            cache_dir: c.cache_dir.clone(),
            biome_count: c.biome_count,
            warm_bytes: c.warm_bytes_per_worker,
            warm_max: c.warm_max.max(1),
            test_hooks: c.test_hooks,
        }
    }

    fn spawn_zygote(&self) -> Result<Zygote, SandboxError> {
        let t = Instant::now();
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| host_err(SandboxErrorKind::Io, format!("socketpair: {e}")))?;
        let config = serde_json::to_string(&self.worker_config())
            .map_err(|e| host_err(SandboxErrorKind::Internal, format!("encoding the worker config: {e}")))?;
        let fd = theirs.as_raw_fd();
        // SAFETY: cpu_set_t is plain data, filled before the fork.
        let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.cpus {
            // SAFETY: `c` comes from CPU_ISSET over the same set size.
            unsafe { libc::CPU_SET(c, &mut mask) };
        }
        let spread = !self.cpus.is_empty();
        let mut cmd = Command::new(&self.cfg.worker_exe);
        cmd.args(&self.cfg.worker_args)
            .arg(config)
            // Nothing of the server's environment (storage keys, tokens) reaches a sandbox process.
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0);
        if let Some(v) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", v);
        }
        // SAFETY: dup2 is async-signal-safe; it puts the control socket at
        // fd 3 without close-on-exec for the zygote.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, crate::worker::CONTROL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Not the starting thread's pinning: the whole allowed set.
                if spread {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mask);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            host_err(
                SandboxErrorKind::Io,
                format!("starting the sandbox zygote {}: {e}", self.cfg.worker_exe.display()),
            )
        })?;
        self.zygote_process.store(child.id(), Ordering::Release);
        drop(theirs);
        let mut ctl = ours;
        ctl.set_read_timeout(Some(self.cfg.start_timeout)).ok();
        let ready = proto::read_frame::<ZygoteReply>(&mut ctl);
        ctl.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut z = Zygote { child, ctl, base_memory_bytes: 0 };
        match ready {
            Ok(ZygoteReply::Ready { protocol, base_memory_bytes, load_ms }) if protocol == proto::PROTOCOL_VERSION => {
                z.base_memory_bytes = base_memory_bytes;
                self.zygote_starts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    pid = z.child.id(),
                    engine_ms = load_ms,
                    elapsed_ms = t.elapsed().as_millis() as u64,
                    "sandbox zygote ready"
                );
                Ok(z)
            }
            Ok(ZygoteReply::Ready { protocol, .. }) => Err(host_err(
                SandboxErrorKind::Internal,
                format!("the sandbox zygote speaks protocol {protocol}, this node {}", proto::PROTOCOL_VERSION),
            )),
            Ok(ZygoteReply::Error(e)) => Err(host_err(SandboxErrorKind::Instantiation, e)),
            Ok(other) => Err(host_err(SandboxErrorKind::Internal, format!("the zygote said {other:?} at start"))),
            Err(e) => Err(host_err(SandboxErrorKind::Io, format!("the sandbox zygote did not start: {e}"))),
        }
    }

    /// The zygote, started if needed.
    fn zygote(&self) -> Result<MutexGuard<'_, Option<Zygote>>, SandboxError> {
        let mut z = self.lock_zygote();
        let alive = z.as_mut().is_some_and(|z| matches!(z.child.try_wait(), Ok(None)));
        if !alive {
            self.zygote_process.store(0, Ordering::Release);
            *z = None;
            match self.spawn_zygote() {
                Ok(started) => *z = Some(started),
                Err(e) => {
                    self.zygote_process.store(0, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(z)
    }

    fn fork(&self) -> Result<Conn, SandboxError> {
        let t = Instant::now();
        let mut guard = self.zygote()?;
        let z = guard.as_mut().expect("started above");
        let res = (|| {
            proto::write_frame(&mut z.ctl, &ZygoteRequest::Fork)?;
            proto::recv_with_fds::<ZygoteReply>(&z.ctl, 1)
        })();
        let (reply, mut fds) = match res {
            Ok(r) => r,
            Err(e) => {
                // A broken zygote is replaced on the next fork.
                self.zygote_process.store(0, Ordering::Release);
                *guard = None;
                return Err(host_err(SandboxErrorKind::Io, format!("asking the zygote for a worker: {e}")));
            }
        };
        drop(guard);
        let pid = match reply {
            ZygoteReply::Forked { pid } if fds.len() == 1 => pid,
            ZygoteReply::Error(e) => return Err(host_err(SandboxErrorKind::Io, e)),
            other => return Err(host_err(SandboxErrorKind::Internal, format!("the zygote said {other:?}"))),
        };
        // The zygote reaps a worker only when we ask, so `pid` names our
        // worker (alive or a zombie) until then: the pidfd is race-free.
        // SAFETY: plain syscall.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(host_err(SandboxErrorKind::Io, format!("pidfd_open({pid}): {}", io::Error::last_os_error())));
        }
        // SAFETY: a fresh descriptor we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let mut sock = UnixStream::from(fds.remove(0));
        let io_err = |what: &str, e: io::Error| host_err(SandboxErrorKind::Io, format!("{what}: {e}"));
        sock.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(|e| io_err("configuring a worker's socket", e))?;
        sock.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| io_err("configuring a worker's socket", e))?;
        let (shared, fd) = SharedMem::create().map_err(|e| io_err("creating the payload memory", e))?;
        let attached = proto::send_with_fds(&sock, &Request::Attach, &[fd.as_raw_fd()])
            .and_then(|()| proto::read_frame::<Response>(&mut sock));
        let c = Conn { pid, pidfd, sock, shared, read_timeout: None };
        match attached {
            Ok(Response::Attached) => {}
            other => {
                c.kill();
                return Err(host_err(
                    SandboxErrorKind::Instantiation,
                    format!("a new worker did not start: {other:?}"),
                ));
            }
        }
        self.forks.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid, elapsed_us = t.elapsed().as_micros() as u64, "sandbox worker forked");
        Ok(c)
    }

    /// Asks the zygote how `pid` ended (after it died or was killed).
    fn reap(&self, pid: i32) -> Option<(Option<i32>, Option<i32>)> {
        let mut guard = self.lock_zygote();
        let z = guard.as_mut()?;
        proto::write_frame(&mut z.ctl, &ZygoteRequest::Reap { pid }).ok()?;
        match proto::read_frame::<ZygoteReply>(&mut z.ctl).ok()? {
            ZygoteReply::Reaped { pid: p, signal, code } if p == pid => Some((signal, code)),
            _ => None,
        }
    }
}

/// One worker process and our end of its socket.
struct Conn {
    pid: i32,
    pidfd: OwnedFd,
    sock: UnixStream,
    /// Payload memory shared with this worker.
    shared: SharedMem,
    /// The socket's read timeout as last set.
    read_timeout: Option<Duration>,
}

impl Conn {
    fn kill(&self) {
        // SAFETY: plain syscall on our pidfd; it targets exactly this process.
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.pidfd.as_raw_fd(), libc::SIGKILL, 0, 0) };
    }
}

/// Why a request to a worker did not get an answer.
enum Failure {
    /// No answer by the deadline: the worker was killed.
    Timeout(Duration),
    /// The worker died, or broke the protocol and was killed.
    Died(String),
    /// No worker could be started.
    Host(SandboxError),
}

impl Failure {
    fn plugin_error(&self) -> PluginError {
        match self {
            Failure::Timeout(d) => PluginError::transient(
                ErrorKind::Timeout,
                format!(
                    "the plugin's sandbox process did not answer within {} ms (its deadline plus grace) and was killed",
                    d.as_millis()
                ),
            ),
            Failure::Died(why) => PluginError::transient(ErrorKind::Trap, format!("the sandbox process {why}")),
            Failure::Host(e) => PluginError::transient(ErrorKind::Trap, format!("internal sandbox error: {e}")),
        }
    }
}

/// A plugin as the supervisor names it to a worker.
#[derive(Clone, Copy, Debug)]
pub struct PluginRef<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
    pub source: &'a str,
}

/// A loaded plugin, as a worker reported it and the supervisor validated it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    pub result: Result<(PluginInfo, Vec<String>), PluginError>,
    pub log: String,
    pub stats: CallStats,
}

/// A handle on one worker process. Not shared between threads.
pub struct Worker {
    inner: Arc<Inner>,
    conn: Option<Conn>,
    /// A replacement being forked in the background after a kill.
    pending: Option<Receiver<Result<Conn, SandboxError>>>,
    requests: u64,
    /// The CPU the worker process runs on (its caller's, see [`Worker::pin`]).
    cpu: Option<usize>,
    last_worker_us: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("pid", &self.pid()).finish_non_exhaustive()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            // Closing the socket ends the worker; reap it so no zombie stays.
            drop(c.sock);
            let inner = self.inner.clone();
            let _ = std::thread::Builder::new().name("worldloom-sandbox-reap".into()).spawn(move || {
                inner.reap(c.pid);
            });
        }
    }
}

/// Restricts `pid` (0: the calling thread) to one CPU; a failure (a CPU
/// outside the allowed set) only costs speed and is logged.
pub fn pin_process(pid: i32, cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        tracing::debug!(pid, cpu, error = %io::Error::last_os_error(), "could not pin to a CPU");
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Reads one frame by an absolute deadline (a worker that dribbles bytes
/// cannot stretch it past one more budget): the socket's timeout is the
/// request's budget (set only when it changes: no system call per request
/// in the usual case), then whatever is left for any further read.
fn read_by(conn: &mut Conn, budget: Duration, deadline: Instant) -> io::Result<Response> {
    struct ByDeadline<'a> {
        sock: &'a mut UnixStream,
        deadline: Instant,
        reads: u32,
    }
    impl Read for ByDeadline<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if self.reads > 0 {
                self.sock.set_read_timeout(Some(left))?;
            }
            self.reads += 1;
            match self.sock.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
                r => r,
            }
        }
    }
    let budget = budget.max(Duration::from_millis(1));
    if conn.read_timeout != Some(budget) {
        conn.sock.set_read_timeout(Some(budget))?;
        conn.read_timeout = Some(budget);
    }
    // Buffered: the length and the body usually arrive in one read.
    let mut r = io::BufReader::with_capacity(64 << 10, ByDeadline { sock: &mut conn.sock, deadline, reads: 0 });
    let answer = proto::read_frame(&mut r);
    if r.get_ref().reads > 1 {
        conn.read_timeout = None;
    }
    answer
}

impl Worker {
    /// Microseconds the worker itself spent on the last call it answered
    /// (the rest of the call's time is the process boundary).
    pub fn last_worker_us(&self) -> u64 {
        self.last_worker_us
    }

    /// The worker's process id, if one is running.
    pub fn pid(&self) -> Option<u32> {
        self.conn.as_ref().map(|c| c.pid as u32)
    }

    /// Runs the worker process on `cpu` (now and after every replacement).
    /// A caller that is itself pinned to `cpu` then hands each request to a
    /// process on its own core: a call costs a local context switch instead
    /// of a cross-core wake-up (measured in BENCHMARKS.md).
    pub fn pin(&mut self, cpu: usize) {
        self.cpu = Some(cpu);
        if let Some(c) = &self.conn {
            pin_process(c.pid, cpu);
        }
    }

    fn conn(&mut self) -> Result<&mut Conn, SandboxError> {
        if self.conn.is_none() {
            let next = match self.pending.take() {
                Some(rx) => rx.recv().unwrap_or_else(|_| self.inner.fork()),
                None => self.inner.fork(),
            }?;
            if let Some(cpu) = self.cpu {
                pin_process(next.pid, cpu);
            }
            self.conn = Some(next);
        }
        Ok(self.conn.as_mut().expect("set above"))
    }

    /// Kills the current worker (if any) and starts forking a replacement in
    /// the background; reaps the old one there too.
    fn replace(&mut self) {
        let Some(old) = self.conn.take() else { return };
        old.kill();
        let inner = self.inner.clone();
        let (tx, rx) = channel();
        let spawned = std::thread::Builder::new().name("worldloom-sandbox-respawn".into()).spawn(move || {
            let how = inner.reap(old.pid);
            tracing::debug!(pid = old.pid, ?how, "sandbox worker reaped");
            drop(old);
            let _ = tx.send(inner.fork());
        });
        if spawned.is_ok() {
            self.pending = Some(rx);
        }
    }

    /// Sends a request and waits for the answer until `budget` has passed;
    /// kills and replaces the worker on a timeout, a death or a protocol
    /// violation.
    fn request(&mut self, req: &Request, budget: Duration) -> Result<Response, Failure> {
        let conn = self.conn().map_err(Failure::Host)?;
        let deadline = Instant::now() + budget;
        // The write timeout is set once per worker (a worker that stops
        // reading cannot block us past it).
        let sent = proto::write_frame(&mut conn.sock, req);
        let answer = sent.and_then(|()| read_by(conn, budget, deadline));
        let pid = conn.pid;
        match answer {
            Ok(resp) => {
                self.requests += 1;
                if self.requests.is_multiple_of(RSS_CHECK_EVERY) {
                    self.check_memory();
                }
                Ok(resp)
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.inner.kills.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pid, budget_ms = budget.as_millis() as u64, "sandbox worker did not answer; killed");
                self.replace();
                Err(Failure::Timeout(budget))
            }
            Err(e) => {
                self.inner.deaths.fetch_add(1, Ordering::Relaxed);
                let conn = self.conn.take().expect("a request had a worker");
                conn.kill();
                let why = match e.kind() {
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                        match self.inner.reap(pid) {
                            Some((Some(sig), _)) => format!("was killed by {}", signal_name(sig)),
                            Some((None, Some(code))) => format!("exited with status {code}"),
                            _ => "died".to_string(),
                        }
                    }
                    _ => {
                        self.inner.reap(pid);
                        format!("sent an invalid answer ({e}) and was killed")
                    }
                };
                tracing::warn!(pid, %why, "sandbox worker lost; replacing it");
                // The old one is reaped already; fork the next in the background.
                let inner = self.inner.clone();
                let (tx, rx) = channel();
                if std::thread::Builder::new()
                    .name("worldloom-sandbox-respawn".into())
                    .spawn(move || {
                        let _ = tx.send(inner.fork());
                    })
                    .is_ok()
                {
                    self.pending = Some(rx);
                }
                Err(Failure::Died(why))
            }
        }
    }

    fn check_memory(&mut self) {
        let Some(pid) = self.pid() else { return };
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| {
            s.lines().find(|l| l.starts_with("RssAnon:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        });
        if let Some(kib) = rss
            && kib * 1024 > self.inner.cfg.worker_rss_limit
        {
            self.inner.recycled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(pid, rss_mib = kib >> 10, "sandbox worker over its memory limit; replacing it");
            self.replace();
        }
    }

    fn grace(&self) -> Duration {
        self.inner.cfg.grace
    }

    fn load_budget(&self, limits: &Limits) -> Duration {
        Duration::from_millis(limits.load_deadline_ms) + self.grace()
    }

    /// Loads a plugin in this worker (or finds it warm) and reports it.
    pub fn load(&mut self, plugin: PluginRef<'_>, limits: &Limits) -> LoadReport {
        let key = PluginKey { sha256: plugin.sha256.to_string(), limits: LimitsKey::from(limits) };
        let req =
            Request::Load { key, name: plugin.name.to_string(), source: plugin.source.to_string(), limits: *limits };
        match self.request(&req, self.load_budget(limits)) {
            Ok(Response::Loaded(out)) => self.checked_load(out, limits),
            Ok(other) => failed_load(self.unexpected(other)),
            Err(f) => failed_load(f.plugin_error()),
        }
    }

    /// Loads a plugin only to report on it (upload validation, `plugin check`).
    pub fn check(&mut self, name: &str, source: &str, limits: &Limits) -> CheckReport {
        let req = Request::Check { name: name.to_string(), source: source.to_string(), limits: *limits };
        let report = match self.request(&req, self.load_budget(limits)) {
            Ok(Response::Checked(out)) => self.checked_load(out, limits),
            Ok(Response::HostError(e)) => {
                return CheckReport {
                    host_error: Some(host_err(SandboxErrorKind::Internal, e)),
                    ..CheckReport::default()
                };
            }
            Ok(other) => failed_load(self.unexpected(other)),
            Err(Failure::Host(e)) => return CheckReport { host_error: Some(e), ..CheckReport::default() },
            Err(f) => failed_load(f.plugin_error()),
        };
        match report.result {
            Ok((info, warnings)) => {
                CheckReport { info: Some(info), warnings, log: report.log, stats: report.stats, ..Default::default() }
            }
            Err(e) => CheckReport { error: Some(e), log: report.log, stats: report.stats, ..Default::default() },
        }
    }

    /// Calls a hook of `plugin`, loading it into the worker first if the
    /// worker does not have it warm. The result is validated here.
    pub fn call(&mut self, plugin: PluginRef<'_>, limits: &Limits, input: &HookInput) -> CallReport {
        let key = PluginKey { sha256: plugin.sha256.to_string(), limits: LimitsKey::from(limits) };
        let budget = Duration::from_millis(limits.deadline_ms) + self.grace();
        let frame = match validate::input_frame(input, self.inner.cfg.biome_count, limits) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "invalid input for a plugin call");
                let error = PluginError::transient(ErrorKind::Trap, format!("internal sandbox error: {e}"));
                return CallReport { result: Err(error), log: String::new(), stats: CallStats::default() };
            }
        };
        let frame = self.payload(frame);
        let req = Request::Call { key, hook: input.hook, random_seed: input.random_seed, frame };
        let mut answer = self.request(&req, budget);
        if matches!(answer, Ok(Response::Unknown)) {
            let loaded = self.load(plugin, limits);
            if let Err(e) = loaded.result {
                return CallReport { result: Err(e), log: loaded.log, stats: loaded.stats };
            }
            answer = self.request(&req, budget);
        }
        match answer {
            Ok(Response::Called(out)) => self.checked_call(out, limits, input),
            Ok(other) => {
                CallReport { result: Err(self.unexpected(other)), log: String::new(), stats: CallStats::default() }
            }
            Err(f) => CallReport { result: Err(f.plugin_error()), log: String::new(), stats: CallStats::default() },
        }
    }

    /// The worker's own account of its warm sandboxes.
    pub fn stats(&mut self) -> Result<WorkerStats, SandboxError> {
        match self.request(&Request::Stats, Duration::from_secs(10)) {
            Ok(Response::Stats(s)) => Ok(s),
            Ok(other) => Err(host_err(SandboxErrorKind::Internal, format!("unexpected answer {}", kind_of(&other)))),
            Err(f) => Err(host_err(SandboxErrorKind::Internal, f.plugin_error().message)),
        }
    }

    /// Sends a test-only request (the worker must have been started with
    /// `test_hooks`) and waits up to `budget`. The error is what the
    /// supervisor made of a worker that misbehaved.
    pub fn test(&mut self, hook: TestHook, budget: Duration) -> Result<String, PluginError> {
        match self.request(&Request::Test(hook), budget) {
            Ok(Response::Test(s)) => Ok(s),
            Ok(other) => Err(self.unexpected(other)),
            Err(f) => Err(f.plugin_error()),
        }
    }

    /// An answer of the wrong kind: the worker is not trusted any more.
    fn unexpected(&mut self, resp: Response) -> PluginError {
        if let Response::HostError(e) = &resp {
            let e = validate::clip_guest(e);
            tracing::error!(error = %e, "sandbox worker host error");
            return PluginError::transient(ErrorKind::Trap, format!("internal sandbox error: {e}"));
        }
        self.inner.deaths.fetch_add(1, Ordering::Relaxed);
        self.replace();
        PluginError::transient(
            ErrorKind::Trap,
            format!("the sandbox process sent an unexpected answer ({}) and was killed", kind_of(&resp)),
        )
    }

    /// Re-validates a worker's load report as if it came from the guest.
    fn checked_load(&mut self, out: LoadOutcome, limits: &Limits) -> LoadReport {
        let log = validate::clip_log(out.log, limits.log_bytes);
        let result = match out.result {
            Ok((info, warnings)) => match validate::check_info(&info) {
                Ok(()) => Ok((info, validate::clip_warnings(warnings))),
                Err(e) => Err(e),
            },
            Err(e) => Err(validate::sanitize_error(e)),
        };
        LoadReport { result, log, stats: out.stats }
    }

    /// An input frame for the worker: in the shared memory when it fits
    /// (the worker is connected by the time a call is made), else inline.
    fn payload(&mut self, frame: Vec<u8>) -> Payload {
        if frame.len() <= SHARED_RESULT_AT
            && let Ok(c) = self.conn()
            && c.shared.put(0, &frame)
        {
            return Payload::Shared { len: frame.len() as u32 };
        }
        Payload::Inline(frame)
    }

    /// Re-validates a worker's call outcome: the body (copied out of the
    /// shared memory first) exactly as the host validates a guest's result
    /// frame.
    fn checked_call(&mut self, out: CallOutcome, limits: &Limits, input: &HookInput) -> CallReport {
        let biome_count = self.inner.cfg.biome_count;
        let body = match out.result {
            Ok(Payload::Inline(b)) => Ok(b),
            Ok(Payload::Shared { len }) => {
                let area = proto::SHARED_BYTES - SHARED_RESULT_AT;
                match self.conn.as_ref().and_then(|c| c.shared.take(SHARED_RESULT_AT, len as usize)) {
                    Some(b) if (len as usize) <= area => Ok(b),
                    _ => {
                        return CallReport {
                            result: Err(self.unexpected(Response::HostError("a shared result out of bounds".into()))),
                            log: String::new(),
                            stats: CallStats::default(),
                        };
                    }
                }
            }
            Err(e) => Err(e),
        };
        let result = match body {
            Ok(body) => validate::hook_output(input.hook, &body, input, biome_count, limits),
            Err(e) => Err(validate::sanitize_error(e)),
        };
        self.last_worker_us = out.worker_us;
        CallReport { result, log: validate::clip_log(out.log, limits.log_bytes), stats: out.stats }
    }
}

fn failed_load(e: PluginError) -> LoadReport {
    LoadReport { result: Err(e), log: String::new(), stats: CallStats::default() }
}

fn kind_of(r: &Response) -> &'static str {
    match r {
        Response::Attached => "attached",
        Response::Loaded(_) => "loaded",
        Response::Unknown => "unknown",
        Response::Called(_) => "called",
        Response::Checked(_) => "checked",
        Response::Stats(_) => "stats",
        Response::HostError(_) => "host error",
        Response::Test(_) => "test",
    }
}

/// Plugins whose load outcome a [`Worker`] user may remember, by source
/// hash and limits (what `defines` needs without a round trip).
pub type LoadCache = HashMap<PluginKey, (Result<PluginInfo, PluginError>, Instant)>;
