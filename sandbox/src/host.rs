//! Every import the guest gets, all implemented here: the door
//! (`host.call`), the WASI preview1 functions (the file world is in
//! `wasi.rs`), and deny stubs for everything that would change something.
//! wasmer-wasix is not used at all, so nothing the guest can call reaches
//! code we have not read.
//!
//! Every host function:
//! - bounds-checks every guest address (a bad one is `EFAULT` for the guest,
//!   never a host panic);
//! - bounds its own work (paths at most 4 KiB, at most 1024 buffers per I/O
//!   call, at most 256 poll subscriptions, results no larger than guest
//!   memory);
//! - charges fuel for what it does: [`HOST_CALL_FUEL`] per call plus one
//!   unit per byte it moves or parses, so a plugin that lives in host calls
//!   runs out of fuel like one that loops in wasm, and the same plugin stops
//!   the same way on every machine.

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use wasmer::{
    AsStoreMut, ExternType, Function, FunctionEnv, FunctionEnvMut, Imports, Memory, MemoryView, Module, RuntimeError,
    TypedFunction, Value,
};
use worldloom_plugin_abi::frame;

use crate::wasi::{self, Files, Log, Mem, Stdlib, World, errno};
use crate::watchdog::FuelCell;

pub const WASI_NS: &str = "wasi_snapshot_preview1";

/// Fuel every host call costs before it does anything: about what the
/// guest-to-host transition and the bookkeeping cost in time, measured
/// against the fuel rate of plain wasm (DESIGN.md, "Fuel").
pub const HOST_CALL_FUEL: u64 = 2_000;
/// Fuel per byte a host function moves or parses (paths, reads, writes,
/// random bytes, door frames).
pub const HOST_BYTE_FUEL: u64 = 1;

/// Imports that would change the filesystem or the process: answered with
/// an errno (typed from the module's own declaration), after charging.
const DENY: &[(&str, i32)] = &[
    ("path_create_directory", errno::ROFS),
    ("path_link", errno::ROFS),
    ("path_remove_directory", errno::ROFS),
    ("path_rename", errno::ROFS),
    ("path_symlink", errno::ROFS),
    ("path_unlink_file", errno::ROFS),
    ("path_filestat_set_times", errno::ROFS),
    ("fd_filestat_set_times", errno::ROFS),
    ("fd_filestat_set_size", errno::ROFS),
    ("fd_allocate", errno::ROFS),
    ("fd_renumber", errno::NOTSUP),
    ("fd_fdstat_set_rights", errno::NOTSUP),
    ("proc_raise", errno::NOTSUP),
    ("sock_accept", errno::NOTSUP),
    ("sock_recv", errno::NOTSUP),
    ("sock_send", errno::NOTSUP),
    ("sock_shutdown", errno::NOTSUP),
];

/// The preview1 functions implemented below; a module importing anything
/// else (or anything outside `wasi_snapshot_preview1` but `host.call`) is
/// refused at load.
const IMPLEMENTED: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_filestat_get",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_filestat_get",
    "path_open",
    "path_readlink",
    "poll_oneoff",
    "proc_exit",
    "sched_yield",
    "random_get",
];

/// Fixed wall-clock epoch the guest sees at the start of every call
/// (2024-01-01T00:00:00Z), in ns.
pub const REALTIME_EPOCH_NS: u64 = 1_704_067_200_000_000_000;
/// Monotonic clock value at the start of every call, in ns.
pub const MONOTONIC_START_NS: u64 = 1_000_000_000;
/// How far the virtual clock moves on every read, so busy-waits progress
/// deterministically.
pub const CLOCK_TICK_NS: u64 = 1_000;

/// Why the host stopped a guest from inside an import.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostTrap {
    /// `proc_exit(code)`, with the raw code.
    #[error("plugin called exit({0})")]
    Exit(i32),
    /// A sleep or clock read that would pass the call's deadline.
    #[error("the plugin slept past its deadline")]
    PastDeadline,
    /// A host call's charge did not fit in the fuel left.
    #[error("the plugin used up its fuel in a host call")]
    FuelExhausted,
}

fn trap(t: HostTrap) -> RuntimeError {
    RuntimeError::user(Box::new(t))
}

/// What the door hands out during the current turn.
#[derive(Debug, Default)]
pub enum Request {
    /// Between turns: the door answers nothing.
    #[default]
    Idle,
    /// Loading a plugin: `src` returns the plugin's source.
    Load(Bytes),
    /// Calling a hook: `in` returns the input frame.
    Call(Bytes),
    /// An internal turn (harness set-up): the door answers nothing.
    Internal,
}

/// The result the guest handed over, or why it could not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The first result frame (starting with `WLO1`).
    pub frame: Option<Vec<u8>>,
    /// The guest tried to hand over a frame larger than the cap (not copied).
    pub oversized: Option<u64>,
    /// The guest sent a second result frame.
    pub duplicate: bool,
    /// When the guest asked for its input, and when it handed over its
    /// result (for the call profile): time and fuel left.
    pub asked_input: Option<(std::time::Instant, u64)>,
    pub handed_result: Option<(std::time::Instant, u64)>,
}

/// Everything the imports of one instance share. Reset at the start of
/// every turn; it holds no host resource (no descriptor, no path).
pub struct HostState {
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunction<i32, i32>>,
    /// The instance's remaining-fuel global (charged by host calls).
    pub fuel: Option<FuelCell>,
    /// A host call's charge did not fit: the turn ran out of fuel.
    pub fuel_exhausted: bool,
    /// Virtual ns elapsed since the turn started.
    pub elapsed_ns: u64,
    /// Virtual ns the turn may spend (its deadline).
    pub virtual_deadline_ns: u64,
    pub rng: ChaCha20Rng,
    pub request: Request,
    /// Largest result frame the guest may hand over, bytes.
    pub frame_cap: u64,
    pub outcome: Outcome,
    pub files: Files,
    pub log: Log,
    pub stdlib: Stdlib,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").field("elapsed_ns", &self.elapsed_ns).finish_non_exhaustive()
    }
}

impl HostState {
    pub fn new(stdlib: Stdlib) -> Self {
        Self {
            memory: None,
            alloc: None,
            fuel: None,
            fuel_exhausted: false,
            elapsed_ns: 0,
            virtual_deadline_ns: 0,
            rng: ChaCha20Rng::from_seed([0; 32]),
            request: Request::Idle,
            frame_cap: 0,
            outcome: Outcome::default(),
            files: Files::fresh(),
            log: Log::default(),
            stdlib,
        }
    }

    /// Prepares for a turn: a fresh descriptor table and log, the virtual
    /// clock back to its epoch, a fresh RNG, an empty outcome.
    pub fn begin_turn(&mut self, request: Request, rng: ChaCha20Rng, deadline_ms: u64, frame_cap: u64, log_cap: usize) {
        self.elapsed_ns = 0;
        self.virtual_deadline_ns = deadline_ms.saturating_mul(1_000_000);
        self.rng = rng;
        self.request = request;
        self.frame_cap = frame_cap;
        self.outcome = Outcome::default();
        self.files = Files::fresh();
        self.log.reset(log_cap);
        self.fuel_exhausted = false;
    }

    pub fn end_turn(&mut self) -> Outcome {
        self.request = Request::Idle;
        std::mem::take(&mut self.outcome)
    }

    fn advance(&mut self, ns: u64) -> Result<(), RuntimeError> {
        self.elapsed_ns = self.elapsed_ns.saturating_add(ns);
        if self.elapsed_ns > self.virtual_deadline_ns {
            return Err(trap(HostTrap::PastDeadline));
        }
        Ok(())
    }

    fn mark(&self) -> (std::time::Instant, u64) {
        (std::time::Instant::now(), self.fuel.map_or(0, FuelCell::left))
    }

    /// Takes `n` fuel from the running turn, or stops it.
    fn charge(&mut self, n: u64) -> Result<(), RuntimeError> {
        let Some(cell) = self.fuel else { return Ok(()) };
        if cell.take(n) {
            Ok(())
        } else {
            self.fuel_exhausted = true;
            Err(trap(HostTrap::FuelExhausted))
        }
    }
}

/// A ChaCha seed derived from a 64-bit seed and a domain string.
pub fn rng_for(domain: &str, seed: u64) -> ChaCha20Rng {
    let mut h = Sha256::new();
    h.update(b"worldloom-sandbox-rng-v1\0");
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(seed.to_le_bytes());
    ChaCha20Rng::from_seed(h.finalize().into())
}

fn view<'a>(mem: &Option<Memory>, store: &'a impl wasmer::AsStoreRef) -> Option<MemoryView<'a>> {
    mem.as_ref().map(|m| m.view(store))
}

fn addr(p: i32) -> u64 {
    u64::from(p as u32)
}

/// The common shape of a WASI import: charge the call, run `f` on the file
/// world with a memory view, charge what it moved.
fn with_world<T>(
    env: &mut FunctionEnvMut<HostState>,
    f: impl FnOnce(&mut World<'_>, &Mem<'_>) -> Result<T, i32>,
    moved: impl FnOnce(&T) -> u64,
) -> Result<i32, RuntimeError> {
    let (st, store) = env.data_and_store_mut();
    st.charge(HOST_CALL_FUEL)?;
    let Some(v) = view(&st.memory, &store) else { return Ok(errno::FAULT) };
    let m = Mem(v);
    let mut w = World { files: &mut st.files, stdlib: &st.stdlib, log: &mut st.log };
    let r = f(&mut w, &m);
    match r {
        Ok(x) => {
            let n = moved(&x);
            st.charge(n.saturating_mul(HOST_BYTE_FUEL))?;
            Ok(errno::SUCCESS)
        }
        Err(e) => Ok(e),
    }
}

fn no_bytes<T>(_: &T) -> u64 {
    0
}

fn bytes(n: &u64) -> u64 {
    *n
}

fn args_get(mut env: FunctionEnvMut<HostState>, ptrs: i32, buf: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |_, m| wasi::put_strings(m, wasi::ARGV, ptrs as u32, buf as u32), no_bytes)
}
fn args_sizes_get(mut env: FunctionEnvMut<HostState>, count: i32, size: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |_, m| wasi::put_sizes(m, wasi::ARGV, count as u32, size as u32), no_bytes)
}
fn environ_get(mut env: FunctionEnvMut<HostState>, ptrs: i32, buf: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |_, m| wasi::put_strings(m, wasi::ENV, ptrs as u32, buf as u32), no_bytes)
}
fn environ_sizes_get(mut env: FunctionEnvMut<HostState>, count: i32, size: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |_, m| wasi::put_sizes(m, wasi::ENV, count as u32, size as u32), no_bytes)
}
fn fd_advise(mut env: FunctionEnvMut<HostState>, fd: i32, _o: i64, _l: i64, _a: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, _| w.fd_noop(fd), no_bytes)
}
fn fd_sync(mut env: FunctionEnvMut<HostState>, fd: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, _| w.fd_noop(fd), no_bytes)
}
fn fd_close(mut env: FunctionEnvMut<HostState>, fd: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, _| w.fd_close(fd), no_bytes)
}
fn fd_fdstat_get(mut env: FunctionEnvMut<HostState>, fd: i32, out: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_fdstat_get(m, fd, out as u32), no_bytes)
}
fn fd_fdstat_set_flags(mut env: FunctionEnvMut<HostState>, fd: i32, flags: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, _| w.fd_fdstat_set_flags(fd, flags), no_bytes)
}
fn fd_filestat_get(mut env: FunctionEnvMut<HostState>, fd: i32, out: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_filestat_get(m, fd, out as u32), no_bytes)
}
fn fd_prestat_get(mut env: FunctionEnvMut<HostState>, fd: i32, out: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_prestat_get(m, fd, out as u32), no_bytes)
}
fn fd_prestat_dir_name(mut env: FunctionEnvMut<HostState>, fd: i32, buf: i32, len: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_prestat_dir_name(m, fd, buf as u32, len as u32), no_bytes)
}
fn fd_read(mut env: FunctionEnvMut<HostState>, fd: i32, iovs: i32, n: i32, nread: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_read(m, fd, iovs as u32, n as u32, nread as u32), bytes)
}
fn fd_pread(
    mut env: FunctionEnvMut<HostState>,
    fd: i32,
    iovs: i32,
    n: i32,
    offset: i64,
    nread: i32,
) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_pread(m, fd, iovs as u32, n as u32, offset, nread as u32), bytes)
}
fn fd_write(mut env: FunctionEnvMut<HostState>, fd: i32, iovs: i32, n: i32, nw: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_write(m, fd, iovs as u32, n as u32, nw as u32), bytes)
}
fn fd_pwrite(
    mut env: FunctionEnvMut<HostState>,
    fd: i32,
    _iovs: i32,
    _n: i32,
    _offset: i64,
    _nw: i32,
) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, _| w.fd_pwrite(fd), no_bytes)
}
fn fd_readdir(
    mut env: FunctionEnvMut<HostState>,
    fd: i32,
    buf: i32,
    len: i32,
    cookie: i64,
    used: i32,
) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_readdir(m, fd, buf as u32, len as u32, cookie, used as u32), bytes)
}
fn fd_seek(mut env: FunctionEnvMut<HostState>, fd: i32, off: i64, whence: i32, out: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_seek(m, fd, off, whence, out as u32), no_bytes)
}
fn fd_tell(mut env: FunctionEnvMut<HostState>, fd: i32, out: i32) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.fd_tell(m, fd, out as u32), no_bytes)
}
fn path_filestat_get(
    mut env: FunctionEnvMut<HostState>,
    fd: i32,
    _flags: i32,
    path: i32,
    len: i32,
    out: i32,
) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.path_filestat_get(m, fd, path as u32, len as u32, out as u32), bytes)
}
fn path_readlink(
    mut env: FunctionEnvMut<HostState>,
    fd: i32,
    path: i32,
    len: i32,
    _buf: i32,
    _buf_len: i32,
    _used: i32,
) -> Result<i32, RuntimeError> {
    with_world(&mut env, |w, m| w.path_readlink(m, fd, path as u32, len as u32), bytes)
}
#[allow(clippy::too_many_arguments)]
fn path_open(
    mut env: FunctionEnvMut<HostState>,
    dirfd: i32,
    _dirflags: i32,
    path: i32,
    len: i32,
    oflags: i32,
    rights_base: i64,
    _rights_inheriting: i64,
    fdflags: i32,
    fd_out: i32,
) -> Result<i32, RuntimeError> {
    with_world(
        &mut env,
        |w, m| w.path_open(m, dirfd, path as u32, len as u32, oflags, rights_base, fdflags, fd_out as u32),
        bytes,
    )
}

fn clock_time_get(mut env: FunctionEnvMut<HostState>, id: i32, _precision: i64, out: i32) -> Result<i32, RuntimeError> {
    let (st, store) = env.data_and_store_mut();
    st.charge(HOST_CALL_FUEL)?;
    let base = match id {
        0 => REALTIME_EPOCH_NS,
        1..=3 => MONOTONIC_START_NS,
        _ => return Ok(errno::INVAL),
    };
    st.advance(CLOCK_TICK_NS)?;
    let t = base.saturating_add(st.elapsed_ns);
    let Some(v) = view(&st.memory, &store) else { return Ok(errno::FAULT) };
    Ok(if v.write(addr(out), &t.to_le_bytes()).is_ok() { errno::SUCCESS } else { errno::FAULT })
}

fn clock_res_get(mut env: FunctionEnvMut<HostState>, id: i32, out: i32) -> Result<i32, RuntimeError> {
    let (st, store) = env.data_and_store_mut();
    st.charge(HOST_CALL_FUEL)?;
    if !(0..=3).contains(&id) {
        return Ok(errno::INVAL);
    }
    let Some(v) = view(&st.memory, &store) else { return Ok(errno::FAULT) };
    Ok(if v.write(addr(out), &CLOCK_TICK_NS.to_le_bytes()).is_ok() { errno::SUCCESS } else { errno::FAULT })
}

fn random_get(mut env: FunctionEnvMut<HostState>, buf: i32, len: i32) -> Result<i32, RuntimeError> {
    let (st, store) = env.data_and_store_mut();
    st.charge(HOST_CALL_FUEL)?;
    let Some(v) = view(&st.memory, &store) else { return Ok(errno::FAULT) };
    let (mut off, end) = (addr(buf), addr(buf) + addr(len));
    if end > v.data_size() {
        return Ok(errno::FAULT);
    }
    st.charge(addr(len).saturating_mul(HOST_BYTE_FUEL))?;
    let mut tmp = [0u8; 4096];
    while off < end {
        let n = ((end - off) as usize).min(tmp.len());
        st.rng.fill_bytes(&mut tmp[..n]);
        if v.write(off, &tmp[..n]).is_err() {
            return Ok(errno::FAULT);
        }
        off += n as u64;
    }
    Ok(errno::SUCCESS)
}

fn sched_yield(mut env: FunctionEnvMut<HostState>) -> Result<i32, RuntimeError> {
    env.data_mut().charge(HOST_CALL_FUEL)?;
    Ok(errno::SUCCESS)
}

fn proc_exit(_env: FunctionEnvMut<HostState>, code: i32) -> Result<(), RuntimeError> {
    Err(trap(HostTrap::Exit(code)))
}

const SUB_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;
const MAX_SUBS: i32 = 256;

/// `poll_oneoff` that never blocks: subscriptions on open descriptors are
/// ready at once (stdin is always at EOF, the log always writable), one on a
/// descriptor that is not open gets `EBADF`; clock subscriptions move the
/// virtual clock to the earliest timeout. A sleep past the call's deadline
/// stops the call (the host reports `timeout`).
fn poll_oneoff(
    mut env: FunctionEnvMut<HostState>,
    inp: i32,
    out: i32,
    nsubs: i32,
    nevents: i32,
) -> Result<i32, RuntimeError> {
    let (st, store) = env.data_and_store_mut();
    st.charge(HOST_CALL_FUEL)?;
    let Some(v) = view(&st.memory, &store) else { return Ok(errno::FAULT) };
    if nsubs <= 0 || nsubs > MAX_SUBS {
        return Ok(errno::INVAL);
    }
    st.charge(nsubs as u64 * SUB_SIZE * HOST_BYTE_FUEL)?;
    // Check where the events will go before anything happens (a failed
    // write after a virtual sleep would still have moved the clock).
    let size = v.data_size();
    let fits = |at: u64, len: u64| at.checked_add(len).is_some_and(|end| end <= size);
    if !fits(addr(out), nsubs as u64 * EVENT_SIZE) || !fits(addr(nevents), 4) {
        return Ok(errno::FAULT);
    }
    let mut subs = Vec::with_capacity(nsubs as usize);
    for i in 0..nsubs as u64 {
        let mut b = [0u8; SUB_SIZE as usize];
        if v.read(addr(inp) + i * SUB_SIZE, &mut b).is_err() {
            return Ok(errno::FAULT);
        }
        subs.push(b);
    }
    let le64 = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let event = |userdata: u64, ty: u8, error: i32, hangup: bool| {
        let mut e = [0u8; EVENT_SIZE as usize];
        e[0..8].copy_from_slice(&userdata.to_le_bytes());
        e[8..10].copy_from_slice(&(error as u16).to_le_bytes());
        e[10] = ty;
        if hangup {
            e[24] = 1;
        }
        e
    };
    let mut events: Vec<[u8; EVENT_SIZE as usize]> = Vec::new();
    for b in &subs {
        match b[8] {
            0 => {}
            ty @ (1 | 2) => {
                let fd = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
                if st.files.is_open(fd) {
                    // fd_read: ready (stdin is at EOF: report hang-up); fd_write: ready.
                    events.push(event(le64(b, 0), ty, errno::SUCCESS, ty == 1));
                } else {
                    events.push(event(le64(b, 0), ty, errno::BADF, false));
                }
            }
            _ => return Ok(errno::INVAL),
        }
    }
    if events.is_empty() {
        // Only clocks: sleep (virtually) until the earliest one fires.
        let mut wake = u64::MAX;
        for b in &subs {
            let id = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
            let timeout = le64(b, 24);
            let abs = u16::from_le_bytes([b[40], b[41]]) & 1 != 0;
            let now = match id {
                0 => REALTIME_EPOCH_NS.saturating_add(st.elapsed_ns),
                1..=3 => MONOTONIC_START_NS.saturating_add(st.elapsed_ns),
                _ => return Ok(errno::INVAL),
            };
            let rel = if abs { timeout.saturating_sub(now) } else { timeout };
            wake = wake.min(rel);
        }
        st.advance(wake)?;
        for b in &subs {
            events.push(event(le64(b, 0), 0, errno::SUCCESS, false));
        }
    }
    for (i, e) in events.iter().enumerate() {
        if v.write(addr(out) + i as u64 * EVENT_SIZE, e).is_err() {
            return Ok(errno::FAULT);
        }
    }
    if v.write(addr(nevents), &(events.len() as u32).to_le_bytes()).is_err() {
        return Ok(errno::FAULT);
    }
    Ok(errno::SUCCESS)
}

const DOOR_OK: i32 = 0;
const DOOR_NO_HOST: i32 = -1;
const DOOR_FAULT: i32 = -2;
/// Longest door request other than a result frame.
const SMALL_REQUEST: u64 = 16;

/// `host.call(ptr, len, out_ptr_ptr, out_len_ptr) -> status`: the guest's
/// only channel to the host. Requests: `in` (the input frame), `src` (the
/// plugin source, while loading), `out` + result frame.
fn door(mut env: FunctionEnvMut<HostState>, ptr: i32, len: i32, out_pp: i32, out_lp: i32) -> Result<i32, RuntimeError> {
    let (st, store) = env.data_and_store_mut();
    st.charge(HOST_CALL_FUEL)?;
    let Some(v) = view(&st.memory, &store) else { return Ok(DOOR_NO_HOST) };
    let (ptr, len) = (addr(ptr), addr(len));
    if ptr.checked_add(len).is_none_or(|end| end > v.data_size()) {
        return Ok(DOOR_FAULT);
    }
    let mut head = [0u8; 3];
    let hn = (len as usize).min(3);
    if v.read(ptr, &mut head[..hn]).is_err() {
        return Ok(DOOR_FAULT);
    }
    if hn == 3 && head == *b"out" {
        // Check the size before copying anything.
        let body_len = len - 3;
        if body_len > st.frame_cap {
            st.outcome.oversized = Some(body_len);
            return Ok(DOOR_FAULT);
        }
        if matches!(st.request, Request::Idle) {
            return Ok(DOOR_NO_HOST);
        }
        if st.outcome.frame.is_some() {
            st.outcome.duplicate = true;
            return Ok(DOOR_FAULT);
        }
        st.charge(body_len.saturating_mul(HOST_BYTE_FUEL))?;
        let mut body = vec![0u8; body_len as usize];
        if v.read(ptr + 3, &mut body).is_err() {
            return Ok(DOOR_FAULT);
        }
        st.outcome.frame = Some(body);
        st.outcome.handed_result = Some(st.mark());
        return respond(&mut env, &[], out_pp, out_lp);
    }
    if len > SMALL_REQUEST {
        return Ok(DOOR_FAULT);
    }
    let mut req = vec![0u8; len as usize];
    if v.read(ptr, &mut req).is_err() {
        return Ok(DOOR_FAULT);
    }
    let answer = match (&st.request, req.as_slice()) {
        (Request::Call(input), r) if r == frame::DOOR_INPUT => input.clone(),
        (Request::Load(src), r) if r == frame::DOOR_SOURCE => src.clone(),
        _ => return Ok(DOOR_FAULT),
    };
    st.charge((answer.len() as u64).saturating_mul(HOST_BYTE_FUEL))?;
    let answered = respond(&mut env, &answer, out_pp, out_lp);
    let st = env.data_mut();
    st.outcome.asked_input = Some(st.mark());
    answered
}

/// Copies `data` into a fresh guest buffer (`host_alloc`, re-entering the
/// guest) and writes its address and length for the guest.
fn respond(env: &mut FunctionEnvMut<HostState>, data: &[u8], out_pp: i32, out_lp: i32) -> Result<i32, RuntimeError> {
    let Some(alloc) = env.data().alloc.clone() else { return Ok(DOOR_NO_HOST) };
    let Ok(n) = i32::try_from(data.len()) else { return Ok(DOOR_FAULT) };
    let q = alloc.call(env, n.max(1))?;
    if q == 0 {
        return Ok(DOOR_NO_HOST);
    }
    let (st, store) = env.data_and_store_mut();
    // A new view: the allocation may have grown the memory.
    let Some(v) = view(&st.memory, &store) else { return Ok(DOOR_NO_HOST) };
    if v.write(addr(q), data).is_err()
        || v.write(addr(out_pp), &(q as u32).to_le_bytes()).is_err()
        || v.write(addr(out_lp), &(n as u32).to_le_bytes()).is_err()
    {
        return Ok(DOOR_FAULT);
    }
    Ok(DOOR_OK)
}

/// Checks the module imports only what we provide: preview1 functions we
/// implement or deny, and `host.call`.
pub fn check_imports(module: &Module) -> Result<(), String> {
    for imp in module.imports() {
        let ok = match (imp.module(), imp.name()) {
            (WASI_NS, n) => IMPLEMENTED.contains(&n) || DENY.iter().any(|(d, _)| *d == n),
            ("host", "call") => true,
            _ => false,
        };
        if !ok || !matches!(imp.ty(), ExternType::Function(_)) {
            return Err(format!(
                "the interpreter module imports {}.{}, which the sandbox does not allow",
                imp.module(),
                imp.name()
            ));
        }
    }
    Ok(())
}

/// Every import the module declares, and nothing else. Instantiation
/// checks each function's type against the module's declaration.
pub fn imports(store: &mut impl AsStoreMut, module: &Module, env: &FunctionEnv<HostState>) -> Imports {
    let p1 = WASI_NS;
    let mut imports = Imports::new();
    macro_rules! define {
        ($($name:ident),* $(,)?) => {
            $( imports.define(p1, stringify!($name), Function::new_typed_with_env(store, env, $name)); )*
        };
    }
    define!(
        args_get,
        args_sizes_get,
        environ_get,
        environ_sizes_get,
        clock_res_get,
        clock_time_get,
        fd_advise,
        fd_close,
        fd_fdstat_get,
        fd_fdstat_set_flags,
        fd_filestat_get,
        fd_pread,
        fd_prestat_get,
        fd_prestat_dir_name,
        fd_pwrite,
        fd_read,
        fd_readdir,
        fd_seek,
        fd_sync,
        fd_tell,
        fd_write,
        path_filestat_get,
        path_open,
        path_readlink,
        poll_oneoff,
        proc_exit,
        sched_yield,
        random_get,
    );
    imports.define(p1, "fd_datasync", Function::new_typed_with_env(store, env, fd_sync));
    for imp in module.imports() {
        if imp.module() != p1 {
            continue;
        }
        if let (Some(&(_, errno)), ExternType::Function(ft)) = (DENY.iter().find(|(n, _)| *n == imp.name()), imp.ty()) {
            let ft = ft.clone();
            let results_i32 = ft.results() == [wasmer::Type::I32];
            imports.define(
                p1,
                imp.name(),
                Function::new_with_env(store, env, ft, move |mut env, _args| -> Result<Vec<Value>, RuntimeError> {
                    env.data_mut().charge(HOST_CALL_FUEL)?;
                    if results_i32 { Ok(vec![Value::I32(errno)]) } else { Ok(vec![]) }
                }),
            );
        }
    }
    imports.define("host", "call", Function::new_typed_with_env(store, env, door));
    imports
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use wasmer::{Instance, Module, Store, TypedFunction};

    /// A tiny hand-assembled module standing in for a fully compromised
    /// guest: it calls `host.call` and `poll_oneoff` with whatever pointers
    /// the test gives it.
    /// (module
    ///   (import "host" "call" (func $door (param i32 i32 i32 i32) (result i32)))
    ///   (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    ///   (memory (export "memory") 1)
    ///   (func (export "door") (param i32 i32 i32 i32) (result i32) local.get 0..3 call $door)
    ///   (func (export "host_alloc") (param i32) (result i32) i32.const 4096)
    ///   (func (export "poll") (param i32 i32 i32 i32) (result i32) local.get 0..3 call $poll))
    fn guest() -> Vec<u8> {
        let mut m = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        let section = |m: &mut Vec<u8>, id: u8, body: &[u8]| {
            m.push(id);
            m.push(body.len() as u8);
            m.extend_from_slice(body);
        };
        section(&mut m, 1, &[2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f]);
        let mut imports = vec![2];
        for (module, name) in [("host", "call"), ("wasi_snapshot_preview1", "poll_oneoff")] {
            imports.push(module.len() as u8);
            imports.extend_from_slice(module.as_bytes());
            imports.push(name.len() as u8);
            imports.extend_from_slice(name.as_bytes());
            imports.extend_from_slice(&[0, 0]);
        }
        section(&mut m, 2, &imports);
        section(&mut m, 3, &[3, 0, 1, 0]);
        section(&mut m, 5, &[1, 0, 1]);
        let mut exports = vec![4];
        for (name, kind, idx) in [("memory", 2u8, 0u8), ("door", 0, 2), ("host_alloc", 0, 3), ("poll", 0, 4)] {
            exports.push(name.len() as u8);
            exports.extend_from_slice(name.as_bytes());
            exports.extend_from_slice(&[kind, idx]);
        }
        section(&mut m, 7, &exports);
        let fwd = |callee: u8| vec![12, 0, 0x20, 0, 0x20, 1, 0x20, 2, 0x20, 3, 0x10, callee, 0x0b];
        let mut code = vec![3];
        code.extend(fwd(0));
        code.extend_from_slice(&[5, 0, 0x41, 0x80, 0x20, 0x0b]);
        code.extend(fwd(1));
        section(&mut m, 10, &code);
        m
    }

    type Four = TypedFunction<(i32, i32, i32, i32), i32>;

    fn setup() -> (Store, FunctionEnv<HostState>, Four, Four, Memory) {
        let mut store = Store::default();
        let module = Module::new(&store, guest()).unwrap();
        let stdlib = Stdlib { name: "z.zip".into(), data: Bytes::from_static(b"PK") };
        let env = FunctionEnv::new(&mut store, HostState::new(stdlib));
        let imports = imports(&mut store, &module, &env);
        let instance = Instance::new(&mut store, &module, &imports).unwrap();
        let memory = instance.exports.get_memory("memory").unwrap().clone();
        let door: Four = instance.exports.get_typed_function(&store, "door").unwrap();
        let poll: Four = instance.exports.get_typed_function(&store, "poll").unwrap();
        let alloc = instance.exports.get_typed_function(&store, "host_alloc").unwrap();
        let st = env.as_mut(&mut store);
        st.memory = Some(memory.clone());
        st.alloc = Some(alloc);
        (store, env, door, poll, memory)
    }

    #[test]
    fn the_door_bounds_checks_every_guest_address() {
        let (mut store, env, door, _, memory) = setup();
        env.as_mut(&mut store).begin_turn(Request::Call(Bytes::from_static(b"frame")), rng_for("t", 0), 1000, 64, 0);
        memory.view(&store).write(0, b"in").unwrap();
        memory.view(&store).write(100, b"out0123456789").unwrap();
        let top = 65536 - 2;
        for (p, l, opp, olp) in [
            (-16, 100, 200, 204),     // request past the end of memory
            (0, -1, 200, 204),        // length wrapping the address space
            (top, 2, 200, 204),       // request straddling the end
            (0, 2, -4, 204),          // result pointer out of bounds
            (0, 2, 200, 65535),       // result length pointer straddling the end
            (0, 17, 200, 204),        // unknown long request
            (100, 200_000, 200, 204), // "out" frame longer than memory
        ] {
            assert_eq!(door.call(&mut store, p, l, opp, olp).unwrap(), DOOR_FAULT, "{p} {l} {opp} {olp}");
        }
        // A valid request is answered through host_alloc (at 4096).
        assert_eq!(door.call(&mut store, 0, 2, 200, 204).unwrap(), DOOR_OK);
        let v = memory.view(&store);
        let mut b = [0u8; 8];
        v.read(200, &mut b).unwrap();
        assert_eq!(b, [0, 16, 0, 0, 5, 0, 0, 0]);
        let mut got = [0u8; 5];
        v.read(4096, &mut got).unwrap();
        assert_eq!(&got, b"frame");
        // A result frame over the cap is refused without being copied.
        assert_eq!(door.call(&mut store, 100, 13, 200, 204).unwrap(), DOOR_OK);
        assert_eq!(env.as_ref(&store).outcome.frame.as_deref(), Some(&b"0123456789"[..]));
        env.as_mut(&mut store).frame_cap = 4;
        assert_eq!(door.call(&mut store, 100, 13, 200, 204).unwrap(), DOOR_FAULT);
        assert_eq!(env.as_ref(&store).outcome.oversized, Some(10));
        // Between turns the door answers nothing.
        env.as_mut(&mut store).end_turn();
        assert_eq!(door.call(&mut store, 0, 2, 200, 204).unwrap(), DOOR_FAULT);
    }

    #[test]
    fn poll_oneoff_never_blocks_checks_pointers_and_descriptors() {
        let (mut store, env, _, poll, memory) = setup();
        env.as_mut(&mut store).begin_turn(Request::Internal, rng_for("t", 0), 1000, 0, 0);
        // One relative clock subscription of 0.5 s at 0.
        let mut sub = [0u8; 48];
        sub[0..8].copy_from_slice(&7u64.to_le_bytes());
        sub[24..32].copy_from_slice(&500_000_000u64.to_le_bytes());
        sub[16..20].copy_from_slice(&1u32.to_le_bytes());
        memory.view(&store).write(0, &sub).unwrap();
        for (inp, out, n, nev) in
            [(-8, 100, 1, 300), (0, -8, 1, 300), (0, 100, 1, -2), (0, 100, 0, 300), (0, 100, 100_000, 300)]
        {
            let r = poll.call(&mut store, inp, out, n, nev).unwrap();
            assert!(r == errno::FAULT || r == errno::INVAL, "{inp} {out} {n} {nev}: {r}");
        }
        let before = env.as_ref(&store).elapsed_ns;
        assert_eq!(poll.call(&mut store, 0, 100, 1, 300).unwrap(), errno::SUCCESS);
        assert_eq!(env.as_ref(&store).elapsed_ns - before, 500_000_000);
        let mut ev = [0u8; 8];
        memory.view(&store).read(100, &mut ev).unwrap();
        assert_eq!(u64::from_le_bytes(ev), 7);
        // A read subscription on a descriptor that is not open reports EBADF.
        let mut fdsub = [0u8; 48];
        fdsub[0..8].copy_from_slice(&9u64.to_le_bytes());
        fdsub[8] = 1;
        fdsub[16..20].copy_from_slice(&999u32.to_le_bytes());
        memory.view(&store).write(1000, &fdsub).unwrap();
        assert_eq!(poll.call(&mut store, 1000, 100, 1, 300).unwrap(), errno::SUCCESS);
        let mut e = [0u8; 32];
        memory.view(&store).read(100, &mut e).unwrap();
        assert_eq!(u16::from_le_bytes([e[8], e[9]]), errno::BADF as u16);
        // A sleep past the (1 s) deadline stops the guest at once.
        sub[24..32].copy_from_slice(&10_000_000_000u64.to_le_bytes());
        memory.view(&store).write(0, &sub).unwrap();
        let e = poll.call(&mut store, 0, 100, 1, 300).unwrap_err();
        assert!(matches!(e.downcast_ref::<HostTrap>(), Some(HostTrap::PastDeadline)), "{e}");
    }
}
