//! What crosses between the node (supervisor) and its sandbox worker
//! processes: length-prefixed postcard frames over Unix stream sockets, and
//! descriptors passed with `SCM_RIGHTS`.
//!
//! Nothing a worker sends is trusted: a frame longer than [`MAX_FRAME`] or
//! one that does not decode ends the worker, and every decoded value is
//! re-validated by the supervisor with the same code that validates what a
//! guest hands to the host (`validate.rs`).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use worldloom_plugin_abi::{CallStats, HookName, Limits, PluginError, PluginInfo};

/// Bumped whenever a message below changes; the zygote and the supervisor
/// refuse each other if they differ (both are the same binary in practice).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts: a 1 MiB result plus a 256 KiB log,
/// or a plugin source, with room to spare.
pub const MAX_FRAME: usize = 8 << 20;

/// Everything a zygote needs, passed as its last command-line argument
/// (JSON: it holds no secret, only paths and numbers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerConfig {
    pub protocol: u32,
    pub runtime_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub biome_count: u16,
    /// Bytes of warm sandboxes one worker keeps before evicting the least
    /// recently used (their linear memory, an upper bound of what they pin).
    pub warm_bytes: u64,
    /// Most warm sandboxes one worker keeps.
    pub warm_max: usize,
    /// Test-only requests ([`TestHook`]) are honoured. Never set from
    /// operator configuration.
    pub test_hooks: bool,
}

/// Supervisor -> zygote.
#[derive(Debug, Serialize, Deserialize)]
pub enum ZygoteRequest {
    /// Fork a worker; the reply carries its socket.
    Fork,
    /// How did worker `pid` end? (Blocks briefly for a dying worker.)
    Reap { pid: i32 },
}

/// Zygote -> supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum ZygoteReply {
    /// Sent once, when the engine is loaded.
    Ready {
        protocol: u32,
        base_memory_bytes: u64,
        load_ms: u64,
    },
    /// A new worker; its socket comes as an `SCM_RIGHTS` descriptor.
    Forked {
        pid: i32,
    },
    /// How worker `pid` ended: the signal that killed it, or its exit code.
    Reaped {
        pid: i32,
        signal: Option<i32>,
        code: Option<i32>,
    },
    Error(String),
}

/// Identifies a warm sandbox in a worker: a plugin source (by SHA-256) run
/// under given limits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginKey {
    pub sha256: String,
    pub limits: LimitsKey,
}

/// [`Limits`] as a hashable key.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitsKey(pub [u64; 11]);

impl From<&Limits> for LimitsKey {
    fn from(l: &Limits) -> Self {
        LimitsKey([
            l.fuel,
            l.load_fuel,
            l.deadline_ms,
            l.load_deadline_ms,
            l.memory_bytes,
            l.log_bytes,
            l.output_bytes,
            u64::from(l.max_features),
            u64::from(l.max_feature_properties),
            u64::from(l.max_feature_string),
            l.snapshot_bytes,
        ])
    }
}

/// Test-only behaviours of a worker, to prove the supervisor and the OS
/// confinement hold when the worker itself misbehaves (as if code had
/// escaped WebAssembly). Refused unless the worker was started with
/// `test_hooks`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum TestHook {
    /// Take a lock twice on the worker's thread: it never answers again.
    Deadlock,
    /// Try a system call the filter forbids; answers what happened if it
    /// was not killed.
    Syscall(ForbiddenCall),
    /// Answer with a frame longer than [`MAX_FRAME`].
    OversizedFrame,
    /// Answer with bytes that do not decode.
    Garbage,
    /// Answer with the worker's own environment and command line.
    Environment,
}

/// System calls a confined worker must not be able to make.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ForbiddenCall {
    /// `openat("/etc/passwd")`.
    OpenFile,
    /// `socket(AF_INET, SOCK_STREAM)`.
    Socket,
    /// `execve("/bin/sh")`.
    Exec,
    /// `fork()`.
    Fork,
    /// `ptrace(PTRACE_TRACEME)`.
    Ptrace,
    /// `mprotect(PROT_EXEC)` on a fresh page (no new machine code).
    MapExecutable,
}

/// Size of the memory a supervisor shares with each worker for call
/// payloads: the input frame at its start, the result body in its second
/// part. Larger payloads travel inline on the socket.
pub const SHARED_BYTES: usize = 4 << 20;
/// Where the result area of the shared memory starts.
pub const SHARED_RESULT_AT: usize = 1 << 20;

/// Bytes that travel either inline in the frame or in the shared memory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Payload {
    Inline(#[serde(with = "raw_bytes")] Vec<u8>),
    /// In the shared memory's area for this direction, `len` bytes.
    Shared {
        len: u32,
    },
}

/// Supervisor -> worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// The first request to a new worker: the shared payload memory comes
    /// with it as an `SCM_RIGHTS` descriptor (a sealed memfd of
    /// [`SHARED_BYTES`]).
    Attach,
    /// Load a plugin (if this worker does not have it warm) and report it.
    Load {
        key: PluginKey,
        name: String,
        source: String,
        limits: Limits,
    },
    /// Call a hook of a warm plugin with an input frame the supervisor
    /// built and checked (`validate::input_frame`).
    Call {
        key: PluginKey,
        hook: HookName,
        random_seed: u64,
        frame: Payload,
    },
    /// Load a plugin only to report on it; nothing is kept.
    Check {
        name: String,
        source: String,
        limits: Limits,
    },
    /// The worker's memory and warm sandboxes.
    Stats,
    Test(TestHook),
}

/// Worker -> supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Attached,
    Loaded(LoadOutcome),
    /// A `Call` for a plugin this worker has not loaded (or has evicted).
    Unknown,
    Called(CallOutcome),
    Checked(LoadOutcome),
    Stats(WorkerStats),
    /// The worker could not do what was asked (a host-side failure).
    HostError(String),
    /// What a test hook did (only if the worker survived it).
    Test(String),
}

/// A load, as the worker saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LoadOutcome {
    pub result: Result<(PluginInfo, Vec<String>), PluginError>,
    pub log: String,
    pub stats: CallStats,
}

/// A hook call, as the worker saw it: the result frame's OK body (still to
/// be validated by the supervisor) or the failure.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CallOutcome {
    pub result: Result<Payload, PluginError>,
    pub log: String,
    pub stats: CallStats,
    /// Time the worker spent on the request, from decoding it to having the
    /// answer (the rest of a call's time is the process boundary).
    pub worker_us: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerStats {
    pub pid: i32,
    pub warm: usize,
    pub warm_bytes: u64,
    pub evictions: u64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// `Vec<u8>` as one byte string (postcard: a length and the bytes), not a
/// sequence of one-byte elements.
mod raw_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, B: AsRef<[u8]> + ?Sized>(v: &B, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Writes one frame: u32 little-endian length, then postcard; one buffer,
/// one write.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let mut buf = postcard::to_extend(msg, vec![0u8; 4]).map_err(|e| bad(format!("encoding a frame: {e}")))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes is over the {MAX_FRAME}-byte limit")));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    w.write_all(&buf)
}

/// Writes raw bytes as a frame body (for test hooks that send garbage).
pub fn write_raw(w: &mut impl Write, len: u32, body: &[u8]) -> io::Result<()> {
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)
}

/// Reads one frame; refuses lengths over [`MAX_FRAME`] before reading the
/// body, and bodies that do not decode exactly.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes is over the {MAX_FRAME}-byte limit")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let (msg, rest) = postcard::take_from_bytes::<T>(&body).map_err(|e| bad(format!("undecodable frame: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after a frame"));
    }
    Ok(msg)
}

/// Sends one frame together with descriptors (`SCM_RIGHTS`).
pub fn send_with_fds<T: Serialize>(sock: &UnixStream, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let body = postcard::to_stdvec(msg).map_err(|e| bad(format!("encoding a frame: {e}")))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one header with `fds`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
    }
    // SAFETY: a valid msghdr on our socket.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(bad("a short write while passing descriptors"));
    }
    Ok(())
}

/// Receives one frame sent with [`send_with_fds`] and up to `max_fds`
/// descriptors (close-on-exec).
pub fn recv_with_fds<T: for<'de> Deserialize<'de>>(sock: &UnixStream, max_fds: usize) -> io::Result<(T, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 << 10];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: a pure computation.
    let space = unsafe { libc::CMSG_SPACE((max_fds * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: plain data; pointers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: a valid msghdr on our socket.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(bad("descriptors were cut off"));
    }
    let n = n as usize;
    if n == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    if n < 4 {
        return Err(bad("a short frame"));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len != n - 4 {
        return Err(bad("a descriptor-carrying frame must arrive whole"));
    }
    let (v, rest) = postcard::take_from_bytes::<T>(&buf[4..n]).map_err(|e| bad(format!("undecodable frame: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after a frame"));
    }
    Ok((v, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_or_garbage_frames_are_refused() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &Request::Stats).unwrap();
        assert!(matches!(read_frame::<Request>(&mut b).unwrap(), Request::Stats));
        write_raw(&mut a, (MAX_FRAME + 1) as u32, b"").unwrap();
        let e = read_frame::<Response>(&mut b).unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_raw(&mut a, 3, &[0xff, 0xff, 0xff]).unwrap();
        assert!(read_frame::<Response>(&mut b).is_err());
    }

    #[test]
    fn descriptors_pass_with_a_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        send_with_fds(&a, &ZygoteReply::Forked { pid: 7 }, &[x.as_raw_fd()]).unwrap();
        let (reply, fds) = recv_with_fds::<ZygoteReply>(&b, 2).unwrap();
        assert!(matches!(reply, ZygoteReply::Forked { pid: 7 }));
        assert_eq!(fds.len(), 1);
    }
}
