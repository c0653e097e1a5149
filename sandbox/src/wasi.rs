//! The guest's whole WASI world, implemented here rather than by wasmer-wasix:
//! four fixed descriptors (stdin at EOF, stdout and stderr into the capped
//! log, the read-only directory `/usr/local/lib`) and one immutable file in
//! it, the stdlib zip. Nothing else exists, nothing can be created, and every
//! function bounds its work: paths are at most [`MAX_PATH`] bytes, an I/O
//! call takes at most [`MAX_IOVS`] buffers, and every byte moved is charged
//! as fuel by the caller (`host.rs`).
//!
//! All of it is plain data in [`Files`], rebuilt at the start of every turn,
//! so no descriptor, offset or cursor outlives a call.

use std::collections::BTreeMap;

use bytes::Bytes;
use wasmer::MemoryView;

/// WASI preview1 errno values.
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const ACCES: i32 = 2;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const IO: i32 = 29;
    pub const ISDIR: i32 = 31;
    pub const MFILE: i32 = 33;
    pub const NAMETOOLONG: i32 = 37;
    pub const NOENT: i32 = 44;
    pub const NOTDIR: i32 = 54;
    pub const NOTSUP: i32 = 58;
    pub const ROFS: i32 = 69;
    pub const SPIPE: i32 = 70;
    pub const NOTCAPABLE: i32 = 76;
}
use errno::*;

/// Longest path a guest may pass (bytes); longer ones are `ENAMETOOLONG`
/// before anything is read.
pub const MAX_PATH: u32 = 4096;
/// Most buffers one `fd_read`/`fd_write` may name (POSIX `IOV_MAX`).
pub const MAX_IOVS: u32 = 1024;
/// Most files a guest may hold open at once (beyond the four fixed ones).
pub const MAX_OPEN_FILES: usize = 256;

use crate::artifacts::GUEST_STDLIB_DIR as STDLIB_DIR;
const STDIN: u32 = 0;
const STDOUT: u32 = 1;
const STDERR: u32 = 2;
const PREOPEN: u32 = 3;

/// Fixed timestamps (ns since the epoch) so `os.stat` is deterministic.
const T0: u64 = 1_704_067_200_000_000_000;
const DEV: u64 = 1;
const INO_DIR: u64 = 1;
const INO_ZIP: u64 = 2;
const INO_STDIO: u64 = 3;

mod filetype {
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
}

pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;

    /// Everything a read-only file handle may do.
    pub const FILE: u64 =
        FD_READ | FD_SEEK | FD_TELL | FD_ADVISE | FD_FILESTAT_GET | POLL_FD_READWRITE | FD_SYNC | FD_DATASYNC;
    /// Everything the read-only directory handle may do.
    pub const DIR: u64 = PATH_OPEN | FD_READDIR | PATH_READLINK | PATH_FILESTAT_GET | FD_FILESTAT_GET;
    /// Rights that would let a handle change a file: never granted.
    pub const MUTATING: u64 = FD_WRITE | FD_DATASYNC | FD_ALLOCATE | FD_FILESTAT_SET_SIZE;
}

const OFLAG_CREAT: i32 = 1;
const OFLAG_DIRECTORY: i32 = 2;
const OFLAG_EXCL: i32 = 4;
const OFLAG_TRUNC: i32 = 8;
const FDFLAG_APPEND: i32 = 1;
const FDFLAG_NONBLOCK: i32 = 4;

/// The one file the guest can see, shared by every sandbox of a process.
#[derive(Debug, Clone)]
pub struct Stdlib {
    pub name: String,
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handle {
    Stdin,
    Log,
    Dir,
    Zip { pos: u64 },
}

/// The descriptor table of one turn.
#[derive(Debug)]
pub struct Files {
    fds: BTreeMap<u32, Handle>,
    /// Descriptors opened with `path_open` and not closed.
    opened: usize,
}

impl Default for Files {
    fn default() -> Self {
        Self::fresh()
    }
}

/// What a path names inside the stdlib directory.
enum Node {
    Dir,
    Zip,
}

impl Files {
    /// The table every turn starts with.
    pub fn fresh() -> Self {
        let fds = BTreeMap::from([
            (STDIN, Handle::Stdin),
            (STDOUT, Handle::Log),
            (STDERR, Handle::Log),
            (PREOPEN, Handle::Dir),
        ]);
        Files { fds, opened: 0 }
    }

    /// Descriptors opened by the guest and still open.
    pub fn opened(&self) -> usize {
        self.opened
    }

    /// Whether `fd` is open (for `poll_oneoff`).
    pub fn is_open(&self, fd: u32) -> bool {
        self.fds.contains_key(&fd)
    }

    fn get(&self, fd: i32) -> Result<Handle, i32> {
        self.fds.get(&(fd as u32)).copied().ok_or(BADF)
    }

    fn resolve(&self, dirfd: i32, path: &[u8], zip: &str) -> Result<Node, i32> {
        if self.get(dirfd)? != Handle::Dir {
            return Err(NOTDIR);
        }
        if path.first() == Some(&b'/') {
            // Absolute paths are resolved by the guest's libc against its
            // preopens; one reaching the host means an escape attempt.
            return Err(NOTCAPABLE);
        }
        let mut node = Node::Dir;
        for part in path.split(|&b| b == b'/') {
            match (part, &node) {
                (b"" | b".", _) => {}
                (b"..", _) => return Err(NOTCAPABLE),
                (_, Node::Zip) => return Err(NOTDIR),
                (name, Node::Dir) if name == zip.as_bytes() => node = Node::Zip,
                _ => return Err(NOENT),
            }
        }
        Ok(node)
    }
}

/// Guest memory access that turns every bad address into `EFAULT`.
pub struct Mem<'a>(pub MemoryView<'a>);

impl Mem<'_> {
    pub fn read(&self, at: u32, buf: &mut [u8]) -> Result<(), i32> {
        self.0.read(u64::from(at), buf).map_err(|_| FAULT)
    }
    pub fn write(&self, at: u32, data: &[u8]) -> Result<(), i32> {
        self.0.write(u64::from(at), data).map_err(|_| FAULT)
    }
    pub fn put_u32(&self, at: u32, v: u32) -> Result<(), i32> {
        self.write(at, &v.to_le_bytes())
    }
    pub fn put_u64(&self, at: u32, v: u64) -> Result<(), i32> {
        self.write(at, &v.to_le_bytes())
    }
    /// A guest path, refused past [`MAX_PATH`] before any byte is read.
    pub fn path(&self, at: u32, len: u32) -> Result<Vec<u8>, i32> {
        if len > MAX_PATH {
            return Err(NAMETOOLONG);
        }
        let mut p = vec![0u8; len as usize];
        self.read(at, &mut p)?;
        Ok(p)
    }
    /// The `(address, length)` buffers of an iovec array.
    pub fn iovs(&self, at: u32, n: u32) -> Result<Vec<(u32, u32)>, i32> {
        if n > MAX_IOVS {
            return Err(INVAL);
        }
        let mut raw = vec![0u8; n as usize * 8];
        self.read(at, &mut raw)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]), u32::from_le_bytes([c[4], c[5], c[6], c[7]])))
            .collect())
    }
}

/// The process-level view of the guest's world, plus the log cap.
pub struct World<'a> {
    pub files: &'a mut Files,
    pub stdlib: &'a Stdlib,
    pub log: &'a mut Log,
}

/// Bytes a call moved, for its fuel charge.
pub type Moved = u64;

fn filestat(ft: u8, ino: u64, size: u64) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&DEV.to_le_bytes());
    b[8..16].copy_from_slice(&ino.to_le_bytes());
    b[16] = ft;
    b[24..32].copy_from_slice(&1u64.to_le_bytes());
    b[32..40].copy_from_slice(&size.to_le_bytes());
    for off in [40, 48, 56] {
        b[off..off + 8].copy_from_slice(&T0.to_le_bytes());
    }
    b
}

impl World<'_> {
    fn stat_of(&self, h: Handle) -> [u8; 64] {
        match h {
            Handle::Stdin | Handle::Log => filestat(filetype::CHARACTER_DEVICE, INO_STDIO, 0),
            Handle::Dir => filestat(filetype::DIRECTORY, INO_DIR, 0),
            Handle::Zip { .. } => filestat(filetype::REGULAR_FILE, INO_ZIP, self.stdlib.data.len() as u64),
        }
    }

    pub fn fd_fdstat_get(&self, m: &Mem, fd: i32, out: u32) -> Result<(), i32> {
        let (ft, base, inheriting) = match self.files.get(fd)? {
            Handle::Stdin => (filetype::CHARACTER_DEVICE, rights::FD_READ | rights::POLL_FD_READWRITE, 0),
            Handle::Log => (filetype::CHARACTER_DEVICE, rights::FD_WRITE | rights::POLL_FD_READWRITE, 0),
            Handle::Dir => (filetype::DIRECTORY, rights::DIR, rights::FILE | rights::DIR),
            Handle::Zip { .. } => (filetype::REGULAR_FILE, rights::FILE, 0),
        };
        let mut b = [0u8; 24];
        b[0] = ft;
        b[8..16].copy_from_slice(&base.to_le_bytes());
        b[16..24].copy_from_slice(&inheriting.to_le_bytes());
        m.write(out, &b)
    }

    pub fn fd_fdstat_set_flags(&self, fd: i32, flags: i32) -> Result<(), i32> {
        self.files.get(fd)?;
        // Non-blocking is what every descriptor here already is; appending
        // or syncing would need a writable file.
        if flags & !FDFLAG_NONBLOCK != 0 { Err(NOTSUP) } else { Ok(()) }
    }

    pub fn fd_filestat_get(&self, m: &Mem, fd: i32, out: u32) -> Result<(), i32> {
        let h = self.files.get(fd)?;
        m.write(out, &self.stat_of(h))
    }

    pub fn path_filestat_get(&self, m: &Mem, fd: i32, path: u32, len: u32, out: u32) -> Result<Moved, i32> {
        let p = m.path(path, len)?;
        let st = match self.files.resolve(fd, &p, &self.stdlib.name)? {
            Node::Dir => self.stat_of(Handle::Dir),
            Node::Zip => self.stat_of(Handle::Zip { pos: 0 }),
        };
        m.write(out, &st)?;
        Ok(u64::from(len))
    }

    pub fn path_readlink(&self, m: &Mem, fd: i32, path: u32, len: u32) -> Result<Moved, i32> {
        let p = m.path(path, len)?;
        self.files.resolve(fd, &p, &self.stdlib.name)?;
        // Nothing here is a symbolic link.
        Err(INVAL)
    }

    pub fn fd_prestat_get(&self, m: &Mem, fd: i32, out: u32) -> Result<(), i32> {
        if fd as u32 != PREOPEN || !self.files.is_open(PREOPEN) {
            return Err(BADF);
        }
        let mut b = [0u8; 8];
        b[4..8].copy_from_slice(&(STDLIB_DIR.len() as u32).to_le_bytes());
        m.write(out, &b)
    }

    pub fn fd_prestat_dir_name(&self, m: &Mem, fd: i32, buf: u32, len: u32) -> Result<(), i32> {
        if fd as u32 != PREOPEN || !self.files.is_open(PREOPEN) {
            return Err(BADF);
        }
        let name = STDLIB_DIR.as_bytes();
        if (len as usize) < name.len() {
            return Err(NAMETOOLONG);
        }
        m.write(buf, name)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn path_open(
        &mut self,
        m: &Mem,
        dirfd: i32,
        path: u32,
        len: u32,
        oflags: i32,
        rights_base: i64,
        fdflags: i32,
        fd_out: u32,
    ) -> Result<Moved, i32> {
        let p = m.path(path, len)?;
        let writes = rights_base as u64 & rights::MUTATING != 0;
        if writes || oflags & (OFLAG_CREAT | OFLAG_EXCL | OFLAG_TRUNC) != 0 || fdflags & FDFLAG_APPEND != 0 {
            // Resolve first so a missing directory still says ENOENT.
            return match self.files.resolve(dirfd, &p, &self.stdlib.name) {
                Err(NOENT) if oflags & OFLAG_CREAT == 0 => Err(NOENT),
                Err(NOTCAPABLE) => Err(NOTCAPABLE),
                _ => Err(ROFS),
            };
        }
        let handle = match self.files.resolve(dirfd, &p, &self.stdlib.name)? {
            Node::Dir => Handle::Dir,
            Node::Zip if oflags & OFLAG_DIRECTORY != 0 => return Err(NOTDIR),
            Node::Zip => Handle::Zip { pos: 0 },
        };
        if self.files.opened >= MAX_OPEN_FILES {
            return Err(MFILE);
        }
        let fd = (0u32..).find(|n| !self.files.fds.contains_key(n)).expect("fewer than 2^32 descriptors");
        m.put_u32(fd_out, fd)?;
        self.files.fds.insert(fd, handle);
        self.files.opened += 1;
        Ok(u64::from(len))
    }

    pub fn fd_close(&mut self, fd: i32) -> Result<(), i32> {
        match self.files.fds.remove(&(fd as u32)) {
            None => Err(BADF),
            Some(_) => {
                if fd as u32 > PREOPEN {
                    self.files.opened = self.files.opened.saturating_sub(1);
                }
                Ok(())
            }
        }
    }

    /// Reads into the iovecs from `pos` (the handle's offset unless given);
    /// returns the bytes read.
    fn read_into(&mut self, m: &Mem, fd: i32, iovs: u32, n: u32, at: Option<u64>) -> Result<u64, i32> {
        let bufs = m.iovs(iovs, n)?;
        let h = self.files.get(fd)?;
        let mut pos = match (h, at) {
            (Handle::Stdin, None) => return Ok(0),
            (Handle::Stdin | Handle::Log, Some(_)) => return Err(SPIPE),
            (Handle::Log, None) => return Err(BADF),
            (Handle::Dir, _) => return Err(ISDIR),
            (Handle::Zip { pos }, None) => pos,
            (Handle::Zip { .. }, Some(p)) => p,
        };
        let data = &self.stdlib.data;
        let mut total = 0u64;
        for (addr, len) in bufs {
            let start = usize::try_from(pos).unwrap_or(usize::MAX).min(data.len());
            let take = (len as usize).min(data.len() - start);
            if take == 0 {
                break;
            }
            m.write(addr, &data[start..start + take])?;
            pos += take as u64;
            total += take as u64;
        }
        if at.is_none() {
            self.files.fds.insert(fd as u32, Handle::Zip { pos });
        }
        Ok(total)
    }

    pub fn fd_read(&mut self, m: &Mem, fd: i32, iovs: u32, n: u32, nread: u32) -> Result<Moved, i32> {
        let got = self.read_into(m, fd, iovs, n, None)?;
        m.put_u32(nread, got as u32)?;
        Ok(got)
    }

    pub fn fd_pread(&mut self, m: &Mem, fd: i32, iovs: u32, n: u32, offset: i64, nread: u32) -> Result<Moved, i32> {
        let offset = u64::try_from(offset).map_err(|_| INVAL)?;
        let got = self.read_into(m, fd, iovs, n, Some(offset))?;
        m.put_u32(nread, got as u32)?;
        Ok(got)
    }

    pub fn fd_write(&mut self, m: &Mem, fd: i32, iovs: u32, n: u32, nwritten: u32) -> Result<Moved, i32> {
        let bufs = m.iovs(iovs, n)?;
        match self.files.get(fd)? {
            Handle::Log => {}
            Handle::Dir => return Err(ISDIR),
            // Opened without write rights (the filesystem is read-only).
            Handle::Stdin | Handle::Zip { .. } => return Err(ACCES),
        }
        let mut total = 0u64;
        let mut chunk = Vec::new();
        for (addr, len) in bufs {
            let room = self.log.room();
            if room == 0 && len > 0 {
                self.log.overflowed = true;
                if total == 0 {
                    return Err(IO);
                }
                break;
            }
            let take = (len as usize).min(room);
            chunk.resize(take, 0);
            m.read(addr, &mut chunk)?;
            self.log.bytes.extend_from_slice(&chunk);
            total += take as u64;
            if take < len as usize {
                self.log.overflowed = true;
                break;
            }
        }
        m.put_u32(nwritten, total as u32)?;
        Ok(total)
    }

    pub fn fd_pwrite(&self, fd: i32) -> Result<(), i32> {
        match self.files.get(fd)? {
            Handle::Stdin | Handle::Log => Err(SPIPE),
            Handle::Dir => Err(ISDIR),
            Handle::Zip { .. } => Err(ACCES),
        }
    }

    pub fn fd_seek(&mut self, m: &Mem, fd: i32, offset: i64, whence: i32, out: u32) -> Result<(), i32> {
        let pos = match self.files.get(fd)? {
            Handle::Zip { pos } => pos,
            Handle::Stdin | Handle::Log => return Err(SPIPE),
            Handle::Dir => return Err(INVAL),
        };
        let base: i128 = match whence {
            0 => 0,
            1 => i128::from(pos),
            2 => self.stdlib.data.len() as i128,
            _ => return Err(INVAL),
        };
        // i128 cannot overflow here; offsets past i64::MAX or below 0 are refused.
        let new = base + i128::from(offset);
        let new = u64::try_from(new).ok().filter(|&n| n <= i64::MAX as u64).ok_or(INVAL)?;
        m.put_u64(out, new)?;
        self.files.fds.insert(fd as u32, Handle::Zip { pos: new });
        Ok(())
    }

    pub fn fd_tell(&self, m: &Mem, fd: i32, out: u32) -> Result<(), i32> {
        match self.files.get(fd)? {
            Handle::Zip { pos } => m.put_u64(out, pos),
            Handle::Stdin | Handle::Log => Err(SPIPE),
            Handle::Dir => Err(INVAL),
        }
    }

    /// `fd_advise`, `fd_sync`, `fd_datasync`: nothing to do on an open descriptor.
    pub fn fd_noop(&self, fd: i32) -> Result<(), i32> {
        self.files.get(fd).map(drop)
    }

    /// Directory entries: `.`, `..`, the zip. Cookies are entry indices.
    pub fn fd_readdir(&self, m: &Mem, fd: i32, buf: u32, len: u32, cookie: i64, used: u32) -> Result<Moved, i32> {
        if self.files.get(fd)? != Handle::Dir {
            return Err(NOTDIR);
        }
        let entries: [(&[u8], u64, u8); 3] = [
            (b".", INO_DIR, filetype::DIRECTORY),
            (b"..", INO_DIR, filetype::DIRECTORY),
            (self.stdlib.name.as_bytes(), INO_ZIP, filetype::REGULAR_FILE),
        ];
        let mut out = Vec::new();
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        for (i, (name, ino, ft)) in entries.iter().enumerate().skip(start) {
            let mut d = [0u8; 24];
            d[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            d[8..16].copy_from_slice(&ino.to_le_bytes());
            d[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            d[20] = *ft;
            out.extend_from_slice(&d);
            out.extend_from_slice(name);
            if out.len() >= len as usize {
                break;
            }
        }
        // A full buffer (entries cut off) tells libc to ask again with a bigger one.
        out.truncate(len as usize);
        m.write(buf, &out)?;
        m.put_u32(used, out.len() as u32)?;
        Ok(out.len() as u64)
    }
}

/// The guest's stdout and stderr: one bounded capture buffer (order kept).
/// Writing past the cap fails (the guest sees `EIO`) and marks the call; the
/// host, not the guest, decides the outcome from that mark.
#[derive(Debug, Default)]
pub struct Log {
    pub bytes: Vec<u8>,
    pub cap: usize,
    /// Something was dropped because the cap was reached.
    pub overflowed: bool,
}

impl Log {
    pub fn reset(&mut self, cap: usize) {
        self.bytes.clear();
        self.bytes.shrink_to(64 << 10);
        self.cap = cap;
        self.overflowed = false;
    }

    fn room(&self) -> usize {
        self.cap.saturating_sub(self.bytes.len())
    }

    /// The captured text and whether it overflowed. Invalid UTF-8 becomes
    /// U+FFFD, and the text is then cut to the cap again (a replacement
    /// character is 3 bytes), so the log never exceeds `cap` bytes.
    pub fn take(&mut self) -> (String, bool) {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if text.len() > self.cap {
            let mut cut = self.cap;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.bytes.clear();
        (text, std::mem::take(&mut self.overflowed))
    }
}

/// The guest's argv and environment: only what CPython needs.
pub const ARGV: &[&str] = &["/usr/local/bin/python.wasm"];
pub const ENV: &[&str] = &["TMPDIR=/tmp", "PYTHONTZPATH=", "PYTHONHASHSEED=0", "NO_COLOR=1", "PYTHON_COLORS=0"];

/// `args_get` / `environ_get`: pointers at `ptrs`, NUL-terminated strings at `buf`.
pub fn put_strings(m: &Mem, items: &[&str], ptrs: u32, buf: u32) -> Result<(), i32> {
    let mut at = buf;
    for (i, s) in items.iter().enumerate() {
        m.put_u32(ptrs.checked_add(i as u32 * 4).ok_or(FAULT)?, at)?;
        m.write(at, s.as_bytes())?;
        m.write(at + s.len() as u32, &[0])?;
        at = at.checked_add(s.len() as u32 + 1).ok_or(FAULT)?;
    }
    Ok(())
}

/// `args_sizes_get` / `environ_sizes_get`.
pub fn put_sizes(m: &Mem, items: &[&str], count: u32, size: u32) -> Result<(), i32> {
    m.put_u32(count, items.len() as u32)?;
    m.put_u32(size, items.iter().map(|s| s.len() as u32 + 1).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_only_to_the_directory_and_the_zip() {
        let f = Files::fresh();
        let ok = |p: &str| f.resolve(PREOPEN as i32, p.as_bytes(), "z.zip").map(|n| matches!(n, Node::Zip));
        assert_eq!(ok("z.zip"), Ok(true));
        assert_eq!(ok("./z.zip"), Ok(true));
        assert_eq!(ok("././/z.zip"), Ok(true));
        assert_eq!(ok(""), Ok(false));
        assert_eq!(ok("."), Ok(false));
        assert_eq!(ok("../z.zip"), Err(NOTCAPABLE));
        assert_eq!(ok("/etc/passwd"), Err(NOTCAPABLE));
        assert_eq!(ok("z.zip/x"), Err(NOTDIR));
        assert_eq!(ok("etc"), Err(NOENT));
        assert_eq!(f.resolve(STDOUT as i32, b"z.zip", "z.zip").err(), Some(NOTDIR));
        assert_eq!(f.resolve(99, b"z.zip", "z.zip").err(), Some(BADF));
    }

    #[test]
    fn the_log_never_exceeds_its_cap_even_after_utf8_repair() {
        let mut log = Log::default();
        log.reset(6);
        log.bytes.extend_from_slice(&[0xff; 6]);
        let (text, _) = log.take();
        assert!(text.len() <= 6, "{} bytes", text.len());
        assert_eq!(text, "\u{fffd}\u{fffd}");
    }
}
