//! The memory a supervisor shares with one worker for call payloads (the
//! input frame one way, the result body the other), so a call's bytes do
//! not cross the kernel's socket buffers twice.
//!
//! The supervisor creates it (a memfd sealed against shrinking and growing,
//! so a worker can never make the supervisor's mapping fault) and hands it
//! to the worker. Either side only ever copies bytes out of it into memory
//! of its own before looking at them: the other process may change the
//! shared bytes at any time, and a torn copy is then validated like any
//! other untrusted input.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::proto::SHARED_BYTES;

pub struct SharedMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, only accessed through
// bounds-checked copies; the handle may move between threads.
unsafe impl Send for SharedMem {}

impl std::fmt::Debug for SharedMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMem").field("len", &self.len).finish()
    }
}

const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

fn map(fd: &OwnedFd, len: usize) -> io::Result<*mut u8> {
    // SAFETY: a new shared mapping of a memfd whose size is sealed at `len`.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED { Err(io::Error::last_os_error()) } else { Ok(p.cast()) }
}

impl SharedMem {
    /// A new sealed region of [`SHARED_BYTES`], and the descriptor to send.
    pub fn create() -> io::Result<(SharedMem, OwnedFd)> {
        let name: &CStr = c"worldloom-sandbox-payload";
        // SAFETY: plain syscalls on a descriptor we own.
        unsafe {
            let raw = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(raw);
            if libc::ftruncate(fd.as_raw_fd(), SHARED_BYTES as libc::off_t) != 0
                || libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let ptr = map(&fd, SHARED_BYTES)?;
            Ok((SharedMem { ptr, len: SHARED_BYTES }, fd))
        }
    }

    /// Maps a region the supervisor sent, after checking its size and seals.
    pub fn attach(fd: OwnedFd) -> io::Result<SharedMem> {
        // SAFETY: plain lseek/fcntl on a descriptor we own (lseek, not fstat:
        // glibc's fstat is a path-taking newfstatat, which the filter refuses).
        let (size, seals) = unsafe {
            let end = libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END);
            if end < 0 {
                return Err(io::Error::last_os_error());
            }
            (end as usize, libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS))
        };
        if size != SHARED_BYTES || seals < 0 || seals & SEALS != SEALS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the payload memory is not a sealed region"));
        }
        let ptr = map(&fd, size)?;
        Ok(SharedMem { ptr, len: size })
    }

    /// Copies `data` in at `at`; false if it does not fit.
    pub fn put(&self, at: usize, data: &[u8]) -> bool {
        if at.checked_add(data.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds of our mapping (checked); a raw copy, no reference
        // to the shared bytes is formed.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(at), data.len()) };
        true
    }

    /// A private copy of `len` bytes at `at`; `None` if out of bounds.
    pub fn take(&self, at: usize, len: usize) -> Option<Vec<u8>> {
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        // SAFETY: in bounds of our mapping (checked), into our own buffer of
        // `len` bytes' capacity, which the copy initialises entirely.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(at), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Some(out)
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_sealed_bounds_checked_and_shared() {
        let (ours, fd) = SharedMem::create().unwrap();
        // SAFETY: plain ftruncate on the memfd: the seal refuses it.
        assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) }, 0);
        let theirs = SharedMem::attach(fd).unwrap();
        assert!(ours.put(10, b"hello"));
        assert_eq!(theirs.take(10, 5).as_deref(), Some(&b"hello"[..]));
        assert!(!ours.put(SHARED_BYTES - 2, b"abc"));
        assert!(theirs.take(SHARED_BYTES - 2, 3).is_none());
        assert!(theirs.take(usize::MAX, 2).is_none());
    }
}
