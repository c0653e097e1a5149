//! The second wall around a worker: the system calls it may still make once
//! it serves plugins, and its resource limits. Everything here assumes code
//! has escaped WebAssembly and runs as the worker itself.
//!
//! The filter is an allowlist (built with `seccompiler`, Firecracker's
//! compiler); any other call kills the whole process (`SECCOMP_RET_KILL_PROCESS`,
//! seen by the supervisor as death by `SIGSYS`). It is installed on every
//! thread (`TSYNC`) after the worker opened all it will ever need. What stays
//! allowed, and why:
//!
//! - memory: `mmap`/`mprotect` without `PROT_EXEC` (instances and linear
//!   memories, the copy-on-write overlay of a snapshot memfd), `munmap`,
//!   `madvise`, `mremap`, `brk`;
//! - snapshots: `memfd_create`, `ftruncate`, `pwrite64`, `fcntl` (seals),
//!   `userfaultfd` and `ioctl` limited to the userfaultfd and
//!   `PAGEMAP_SCAN` requests;
//! - I/O on descriptors it already has: `read`, `write`, `readv`, `writev`,
//!   `pread64`, `recvfrom`, `sendto`, `recvmsg`, `sendmsg`, `close`,
//!   `lseek`, `fstat`;
//! - threads it already has and signals to itself: `futex`, `sched_yield`,
//!   `rt_sigaction`, `rt_sigprocmask`, `rt_sigreturn`, `sigaltstack`
//!   (wasmer's trap handling), `tgkill`/`getpid`/`gettid` (abort),
//!   `clock_gettime`, `clock_nanosleep`, `nanosleep`, `getrandom`,
//!   `exit`, `exit_group`, `madvise`, `membarrier`, `rseq`.
//!
//! Not allowed, among everything else: `open`/`openat` (no file can be
//! opened), `socket`/`connect`/`bind`/`accept` (no network), `execve`,
//! `fork`/`clone`/`clone3`/`vfork` (no process or thread), `ptrace`,
//! `process_vm_*`, `kill` of anyone, `mount`, `bpf`, `perf_event_open`,
//! `io_uring_*`, `keyctl`, any `mmap`/`mprotect` with `PROT_EXEC` (no new
//! machine code).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

// PAGEMAP_SCAN and the userfaultfd ioctls (image.rs).
const PAGEMAP_SCAN: u64 = 0xC060_6610;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;

fn err(e: impl std::fmt::Display) -> String {
    format!("building the seccomp filter: {e}")
}

/// The syscalls allowed with no condition.
fn plain() -> Vec<libc::c_long> {
    vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_close,
        libc::SYS_lseek,
        libc::SYS_fstat,
        libc::SYS_munmap,
        libc::SYS_madvise,
        libc::SYS_mremap,
        libc::SYS_brk,
        libc::SYS_memfd_create,
        libc::SYS_ftruncate,
        libc::SYS_fcntl,
        libc::SYS_userfaultfd,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_getrandom,
        libc::SYS_membarrier,
        libc::SYS_rseq,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ]
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(err)
}

/// The worker's filter, compiled to BPF.
pub fn filter() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = plain().into_iter().map(|s| (s, vec![])).collect();
    // No executable mappings: arg 2 (prot) must not have PROT_EXEC.
    let no_exec = || -> Result<Vec<SeccompRule>, String> {
        Ok(vec![SeccompRule::new(vec![cond(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)?]).map_err(err)?])
    };
    rules.insert(libc::SYS_mmap, no_exec()?);
    rules.insert(libc::SYS_mprotect, no_exec()?);
    // ioctl only for userfaultfd and PAGEMAP_SCAN.
    let ioctls = [PAGEMAP_SCAN, UFFDIO_API, UFFDIO_REGISTER, UFFDIO_WRITEPROTECT, UFFDIO_UNREGISTER]
        .into_iter()
        .map(|req| {
            SeccompRule::new(vec![
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req).map_err(err)?,
            ])
            .map_err(err)
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    // Signals only to this process (abort, wasmer re-raising a fault).
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u64;
    rules.insert(libc::SYS_tgkill, vec![SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, me)?]).map_err(err)?]);
    let arch = std::env::consts::ARCH.try_into().map_err(err)?;
    let f = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch).map_err(err)?;
    f.try_into().map_err(err)
}

/// Sets no-new-privileges and installs [`filter`] on every thread.
pub fn install() -> Result<(), String> {
    // SAFETY: plain prctl on ourselves.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error()));
    }
    let bpf = filter()?;
    seccompiler::apply_filter_all_threads(&bpf).map_err(|e| format!("installing the seccomp filter: {e}"))
}

/// Lowers the worker's resource limits: no core dumps (they would hold
/// plugin data), few descriptors, no child processes, no locked memory.
pub fn limit_resources() -> Result<(), String> {
    for (res, value, name) in [
        (libc::RLIMIT_CORE, 0, "RLIMIT_CORE"),
        (libc::RLIMIT_NOFILE, 256, "RLIMIT_NOFILE"),
        (libc::RLIMIT_NPROC, 0, "RLIMIT_NPROC"),
        (libc::RLIMIT_MEMLOCK, 0, "RLIMIT_MEMLOCK"),
        (libc::RLIMIT_MSGQUEUE, 0, "RLIMIT_MSGQUEUE"),
    ] {
        let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
        // SAFETY: plain setrlimit on ourselves with a valid struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(format!("setrlimit({name}): {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
