//! Memory images: a snapshot of an instance's linear memory in a sealed
//! memfd, the copy-on-write overlay that maps it over a live instance's
//! memory, and the page-level resets built on that overlay.
//!
//! Soundness rests on wasmer 7.4.2's static memory style (see DESIGN.md):
//! the base address never moves, everything past the current length is
//! PROT_NONE, and wasmer itself never remaps, shrinks or madvises the range.
//! Everything here runs only between calls, when no guest frame is live.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use crate::error::SandboxError;

const PAGE: usize = 4096;

/// A sealed snapshot of linear memory plus the store's globals.
pub struct Image {
    fd: OwnedFd,
    len: usize,
    /// The store's globals (raw values, in store order).
    pub globals: Vec<u128>,
    /// Pre-placed turn sources (address, length) inside the image: the call
    /// (`_wl_call()`, and `_wl_call_eager()` for the benchmark) and the load.
    pub call_src: [(i32, i32); 2],
    pub load_src: (i32, i32),
    /// A read-only view of the image, for the full-copy reset.
    view: OnceLock<Result<Mapping, String>>,
    /// Bytes actually stored (zero pages are left as holes).
    pub stored_bytes: usize,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image").field("len", &self.len).field("stored_bytes", &self.stored_bytes).finish()
    }
}

struct Mapping {
    ptr: usize,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping a mapping we created and nobody else references.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

fn os_err(what: &str) -> SandboxError {
    SandboxError::io(what, io::Error::last_os_error())
}

impl Image {
    /// Copies `len` bytes at `base` (a live instance's memory, with no guest
    /// frame running) into a new sealed memfd.
    ///
    /// # Safety
    /// `base..base+len` must be readable for the duration of the call.
    pub unsafe fn capture(
        base: *const u8,
        len: usize,
        globals: Vec<u128>,
        call_src: [(i32, i32); 2],
        load_src: (i32, i32),
    ) -> Result<Image, SandboxError> {
        if !len.is_multiple_of(PAGE) {
            return Err(SandboxError::internal(format!("memory length {len} is not page-aligned")));
        }
        let name: &CStr = c"worldloom-sandbox-image";
        // SAFETY: plain syscall.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(os_err("memfd_create"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(os_err("ftruncate of the image memfd"));
        }
        // SAFETY: the caller guarantees the range is readable.
        let src = unsafe { std::slice::from_raw_parts(base, len) };
        let mut stored = 0usize;
        let mut off = 0usize;
        // Write runs of non-zero pages; zero pages stay holes (read as zeros).
        while off < len {
            if src[off..off + PAGE].iter().all(|&b| b == 0) {
                off += PAGE;
                continue;
            }
            let start = off;
            while off < len && !src[off..off + PAGE].iter().all(|&b| b == 0) {
                off += PAGE;
            }
            let mut done = start;
            while done < off {
                // SAFETY: writing from a valid slice to our descriptor.
                let n = unsafe {
                    libc::pwrite(fd.as_raw_fd(), src[done..off].as_ptr().cast(), off - done, done as libc::off_t)
                };
                if n <= 0 {
                    return Err(os_err("writing the image memfd"));
                }
                done += n as usize;
            }
            stored += off - start;
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(os_err("sealing the image memfd"));
        }
        Ok(Image { fd, len, globals, call_src, load_src, view: OnceLock::new(), stored_bytes: stored })
    }

    /// The memfd holding the image (a forked worker must keep it open).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Length of the image (= the memory size it restores), bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Maps the image copy-on-write over `base..base+len` (replacing whatever
    /// was mapped there): reads see the image, writes go to private pages.
    ///
    /// # Safety
    /// `base..base+len` must be the accessible part of a static wasm memory
    /// reservation with no guest code running on it.
    pub unsafe fn overlay(&self, base: *mut u8) -> Result<(), SandboxError> {
        // SAFETY: per the caller's contract the range is ours to replace; the
        // memfd is sealed against shrinking, so no access can SIGBUS.
        let p = unsafe {
            libc::mmap(
                base.cast(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED || !std::ptr::eq(p, base.cast()) {
            return Err(os_err("mapping the memory image"));
        }
        Ok(())
    }

    fn view(&self) -> Result<&Mapping, SandboxError> {
        self.view
            .get_or_init(|| {
                // SAFETY: a new read-only private mapping of our sealed memfd.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        self.len,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE,
                        self.fd.as_raw_fd(),
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    Err(io::Error::last_os_error().to_string())
                } else {
                    Ok(Mapping { ptr: p as usize, len: self.len })
                }
            })
            .as_ref()
            .map_err(|e| SandboxError::io("mapping the image for copying", e))
    }

    /// Copies the whole image over `base..base+len` (the naive reset).
    ///
    /// # Safety
    /// As for [`Image::overlay`]; the range must be mapped read-write.
    pub unsafe fn copy_into(&self, base: *mut u8) -> Result<(), SandboxError> {
        let v = self.view()?;
        // SAFETY: both ranges are `len` bytes and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(v.ptr as *const u8, base, self.len) };
        Ok(())
    }
}

/// Drops every private (written) page in `base..base+len` so the overlay's
/// image shows through again. Pages that were only read stay mapped, so the
/// next call does not fault on them. Returns the number of pages dropped.
///
/// # Safety
/// As for [`Image::overlay`], and the range must currently be an overlay.
pub unsafe fn discard_written(base: *mut u8, len: usize) -> Result<usize, SandboxError> {
    match scan_anon(base as usize, len) {
        Ok(runs) => {
            let mut pages = 0;
            for (start, end) in runs {
                // SAFETY: a sub-range of the caller's range.
                unsafe { dontneed(start as *mut u8, end - start)? };
                pages += (end - start) / PAGE;
            }
            Ok(pages)
        }
        Err(_) => {
            // No PAGEMAP_SCAN (Linux < 6.7): drop everything.
            // SAFETY: the caller's range.
            unsafe { dontneed(base, len)? };
            Ok(len / PAGE)
        }
    }
}

/// `madvise(MADV_DONTNEED)`: private pages are freed; the next access sees
/// the file (image) content, or zeros for anonymous memory.
///
/// # Safety
/// The range must belong to a sandbox memory with no guest code running.
pub unsafe fn dontneed(base: *mut u8, len: usize) -> Result<(), SandboxError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: per the caller's contract.
    if unsafe { libc::madvise(base.cast(), len, libc::MADV_DONTNEED) } != 0 {
        return Err(os_err("madvise(MADV_DONTNEED)"));
    }
    Ok(())
}

/// Makes `base..base+len` inaccessible again and frees it (memory the guest
/// grew during a call, beyond the image).
///
/// # Safety
/// The range must be the tail of a static wasm memory reservation past its
/// (restored) current length, with no guest code running.
pub unsafe fn release_tail(base: *mut u8, len: usize) -> Result<(), SandboxError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: per the caller's contract.
    if unsafe { libc::mprotect(base.cast(), len, libc::PROT_NONE) } != 0 {
        return Err(os_err("mprotect(PROT_NONE) of the grown tail"));
    }
    // SAFETY: as above.
    unsafe { dontneed(base, len) }
}

// PAGEMAP_SCAN (Linux >= 6.7), from <linux/fs.h>.
const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// This process's `/proc/self/pagemap`, opened by (and for) the current
/// process: a forked worker must not scan through its zygote's descriptor,
/// which would describe the zygote's memory.
static PAGEMAP: Mutex<Option<(u32, std::sync::Arc<File>)>> = Mutex::new(None);

/// Opens `/proc/self/pagemap` for this process (a worker does this before
/// its seccomp filter forbids opening files).
pub fn open_pagemap() -> Result<(), String> {
    pagemap().map(drop)
}

fn pagemap() -> Result<std::sync::Arc<File>, String> {
    let mut slot = PAGEMAP.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: getpid has no preconditions (std::process::id is the same call).
    let pid = unsafe { libc::getpid() } as u32;
    if let Some((p, f)) = slot.as_ref()
        && *p == pid
    {
        return Ok(f.clone());
    }
    let f = std::sync::Arc::new(File::open("/proc/self/pagemap").map_err(|e| e.to_string())?);
    *slot = Some((pid, f.clone()));
    Ok(f)
}

/// One `PAGEMAP_SCAN` pass over `start..start+len`, collecting the matching
/// page ranges.
fn scan(
    start: usize,
    len: usize,
    flags: u64,
    inverted: u64,
    mask: u64,
    anyof: u64,
    ret: u64,
) -> Result<Vec<(usize, usize)>, String> {
    let f = pagemap()?;
    let mut out = Vec::new();
    let mut regions = [PageRegion::default(); 256];
    let end = (start + len) as u64;
    let mut from = start as u64;
    while from < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags,
            start: from,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_inverted: inverted,
            category_mask: mask,
            category_anyof_mask: anyof,
            return_mask: ret,
            ..Default::default()
        };
        // SAFETY: `arg` and `regions` outlive the call; the kernel writes at
        // most `vec_len` regions.
        let n = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN, &mut arg as *mut PmScanArg) };
        if n < 0 {
            return Err(io::Error::last_os_error().to_string());
        }
        for r in &regions[..n as usize] {
            out.push((r.start as usize, r.end as usize));
        }
        if arg.walk_end <= from {
            return Err("PAGEMAP_SCAN made no progress".into());
        }
        from = arg.walk_end;
    }
    Ok(out)
}

/// Ranges of `start..start+len` holding anonymous pages (present and not
/// file-backed, or swapped): in a private file mapping those are exactly the
/// pages written since they were last dropped.
fn scan_anon(start: usize, len: usize) -> Result<Vec<(usize, usize)>, String> {
    scan(
        start,
        len,
        0,
        PAGE_IS_FILE,
        PAGE_IS_FILE,
        PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE,
    )
}

// userfaultfd, from <linux/userfaultfd.h>.
const SYS_USERFAULTFD: libc::c_long = 323;
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xC018_AA06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// Where the time of one tracked reset went (for the benchmark's breakdown).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResetProfile {
    /// `PAGEMAP_SCAN` listing the written pages.
    pub scan: std::time::Duration,
    /// Copying those pages back from the image.
    pub copy: std::time::Duration,
    /// Write-protecting pages again.
    pub protect: std::time::Duration,
    /// Pages copied back, and in how many contiguous runs.
    pub pages: usize,
    pub runs: usize,
}

/// Write tracking for one memory range with userfaultfd's asynchronous
/// write-protect mode (Linux >= 6.7): the kernel clears a page's
/// write-protect bit on its first write without waking anyone, and
/// `PAGEMAP_SCAN` lists the written pages and re-protects them. The reset
/// then copies exactly those pages back from the image: no page is freed or
/// faulted in again, and a first write costs a minor fault with no copy.
pub struct WriteTracker {
    /// Keeps the registration alive; never read (async mode sends no events).
    _uffd: OwnedFd,
    start: usize,
    len: usize,
    /// Keep the pages written by recent calls writable (see [`WriteTracker::restore`]).
    keep_hot: bool,
    /// Restores since everything was last write-protected.
    since_protect: u32,
    /// [`HOT_MAX_PAGES`] (smaller in tests).
    hot_max: usize,
}

/// A tracker keeping recently written pages writable protects everything
/// again when they pass this many pages (4 MiB)...
pub const HOT_MAX_PAGES: usize = 1024;
/// ...and after this many restores, so the writable set follows the pages
/// the plugin's calls write now, not everything they ever wrote.
pub const HOT_REPROTECT_EVERY: u32 = 64;

impl std::fmt::Debug for WriteTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTracker").field("len", &self.len).finish()
    }
}

fn uffd_ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: &mut T, what: &str) -> Result<(), String> {
    // SAFETY: `arg` is the #[repr(C)] struct the request expects.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) } != 0 {
        return Err(format!("{what}: {}", io::Error::last_os_error()));
    }
    Ok(())
}

impl WriteTracker {
    /// Starts tracking writes to `start..start+len` (all pages protected).
    /// `Err` if the kernel lacks the features; callers fall back to
    /// [`discard_written`].
    ///
    /// # Safety
    /// The range must be a sandbox memory (overlay) with no guest running.
    pub unsafe fn new(start: *mut u8, len: usize, keep_hot: bool) -> Result<Self, String> {
        // User-mode-only needs no privilege; async write-protect never
        // delivers a fault to this descriptor, so nobody needs to read it.
        // SAFETY: plain syscall.
        let raw = unsafe { libc::syscall(SYS_USERFAULTFD, libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY) };
        if raw < 0 {
            return Err(format!("userfaultfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        let uffd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let mut api =
            UffdioApi { api: UFFD_API, features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, ioctls: 0 };
        uffd_ioctl(&uffd, UFFDIO_API, &mut api, "UFFDIO_API")?;
        let range = || UffdioRange { start: start as u64, len: len as u64 };
        let mut reg = UffdioRegister { range: range(), mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
        uffd_ioctl(&uffd, UFFDIO_REGISTER, &mut reg, "UFFDIO_REGISTER")?;
        let mut wp = UffdioWriteprotect { range: range(), mode: UFFDIO_WRITEPROTECT_MODE_WP };
        uffd_ioctl(&uffd, UFFDIO_WRITEPROTECT, &mut wp, "UFFDIO_WRITEPROTECT")?;
        let t = WriteTracker {
            _uffd: uffd,
            start: start as usize,
            len,
            keep_hot,
            since_protect: 0,
            hot_max: HOT_MAX_PAGES,
        };
        // Check the scan works here before relying on it.
        t.written()?;
        Ok(t)
    }

    /// Page ranges written since they were last protected.
    pub fn written(&self) -> Result<Vec<(usize, usize)>, String> {
        scan(self.start, self.len, PM_SCAN_CHECK_WPASYNC, 0, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN)
    }

    /// Copies every page whose write-protection is off back from `image`,
    /// and returns how many.
    ///
    /// Without `keep_hot` every such page is protected again, so the next
    /// call takes one (minor) page fault per page it writes. With `keep_hot`
    /// the pages stay writable: the next call writes them without a fault,
    /// and the next restore copies them back again whether or not they were
    /// written (the scan lists every unprotected page, written or merely
    /// left writable). Either way, a page not listed has had its protection
    /// on since it was last restored, so it was not written: the kernel
    /// turns protection off on the first write, whoever writes. Everything
    /// is protected again past [`HOT_MAX_PAGES`] unprotected pages or every
    /// [`HOT_REPROTECT_EVERY`] restores, which bounds the extra copying.
    ///
    /// # Safety
    /// The tracked range must be the accessible memory of a sandbox whose
    /// snapshot is `image`, with no guest running.
    pub unsafe fn restore(&mut self, image: &Image, prof: &mut ResetProfile) -> Result<usize, SandboxError> {
        if image.len != self.len {
            return Err(SandboxError::internal("write tracker and image differ in size"));
        }
        let t0 = std::time::Instant::now();
        let runs = self.written().map_err(|e| SandboxError::io("PAGEMAP_SCAN", e))?;
        let t1 = std::time::Instant::now();
        prof.scan = t1 - t0;
        let view = image.view()?;
        let mut pages = 0;
        for &(a, b) in &runs {
            let off = a - self.start;
            // SAFETY: `a..b` lies inside the tracked range (the scan's
            // bounds) and inside the image view of the same length.
            unsafe { std::ptr::copy_nonoverlapping((view.ptr + off) as *const u8, a as *mut u8, b - a) };
            pages += (b - a) / PAGE;
        }
        let t2 = std::time::Instant::now();
        prof.copy = t2 - t1;
        self.since_protect += 1;
        if !self.keep_hot || pages > self.hot_max || self.since_protect >= HOT_REPROTECT_EVERY {
            // Re-protect everything written (the copies above included).
            scan(
                self.start,
                self.len,
                PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                0,
                PAGE_IS_WRITTEN,
                0,
                PAGE_IS_WRITTEN,
            )
            .map_err(|e| SandboxError::io("PAGEMAP_SCAN write-protect", e))?;
            self.since_protect = 0;
        }
        prof.protect = t2.elapsed();
        prof.pages = pages;
        prof.runs = runs.len();
        Ok(pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_older_than(major: u32, minor: u32) -> bool {
        let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut it = rel.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
        let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        (a, b) < (major, minor)
    }

    /// A test-local anonymous mapping of `len` bytes whose page `p` is
    /// filled with the byte `p + 1` (unmapped by the test).
    fn patterned_mapping(len: usize) -> *mut u8 {
        // SAFETY: a fresh anonymous mapping, only this test uses it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as *mut u8;
        assert_ne!(base as *mut libc::c_void, libc::MAP_FAILED);
        for i in 0..len {
            // SAFETY: `i < len`, inside the mapping.
            unsafe { *base.add(i) = (i / PAGE) as u8 + 1 };
        }
        base
    }

    /// The overlay + scan + discard cycle on a plain mapping, independent of wasmer.
    #[test]
    fn overlay_discard_restores_only_written_pages() {
        let len = 64 * PAGE;
        let base = patterned_mapping(len);
        // SAFETY: `base..base+len` is our mapping.
        unsafe {
            *base.add(5 * PAGE) = 0; // a page that is not all zero still
            std::ptr::write_bytes(base.add(7 * PAGE), 0, PAGE); // an all-zero page (hole)
            let img = Image::capture(base, len, Vec::new(), [(0, 0); 2], (0, 0)).unwrap();
            assert_eq!(img.stored_bytes, len - PAGE);
            img.overlay(base).unwrap();
            assert_eq!(*base.add(3 * PAGE), 4);
            assert_eq!(*base.add(7 * PAGE + 9), 0);
            // Write three pages (two adjacent).
            *base.add(10 * PAGE) = 99;
            *base.add(11 * PAGE + 7) = 99;
            *base.add(40 * PAGE) = 99;
            let dropped = discard_written(base, len).unwrap();
            if scan_anon(base as usize, len).is_ok() {
                assert_eq!(dropped, 3);
            }
            assert_eq!(*base.add(10 * PAGE), 11);
            assert_eq!(*base.add(11 * PAGE + 7), 12);
            assert_eq!(*base.add(40 * PAGE), 41);
            assert!(scan_anon(base as usize, len).map(|r| r.is_empty()).unwrap_or(true));
            // Write tracking: only written pages are copied back.
            let tracker = WriteTracker::new(base, len, false);
            if let Err(e) = &tracker {
                // Only acceptable where the kernel predates PAGEMAP_SCAN / WP_ASYNC.
                assert!(kernel_older_than(6, 7), "write tracking unavailable: {e}");
            }
            if let Ok(mut t) = tracker {
                assert!(t.written().unwrap().is_empty());
                *base.add(12 * PAGE + 1) = 77;
                *base.add(30 * PAGE) = 77;
                let _ = *base.add(50 * PAGE); // a read is not a write
                assert_eq!(t.written().unwrap().len(), 2);
                assert_eq!(t.restore(&img, &mut ResetProfile::default()).unwrap(), 2);
                assert_eq!(*base.add(12 * PAGE + 1), 13);
                assert_eq!(*base.add(30 * PAGE), 31);
                assert!(t.written().unwrap().is_empty());
                *base.add(30 * PAGE) = 5;
                assert_eq!(t.restore(&img, &mut ResetProfile::default()).unwrap(), 1);
                assert_eq!(*base.add(30 * PAGE), 31);
            }
            // Full copy restores too.
            *base.add(20 * PAGE) = 7;
            img.copy_into(base).unwrap();
            assert_eq!(*base.add(20 * PAGE), 21);
            libc::munmap(base.cast(), len);
        }
    }

    /// A tracker that keeps written pages writable still restores every page
    /// any write reached, whether the write came in the same round as the
    /// page was first written, a later round (no fault: the page is
    /// writable), or after everything was protected again.
    #[test]
    fn hot_pages_stay_writable_and_are_restored_every_time() {
        if kernel_older_than(6, 7) {
            return;
        }
        let len = 64 * PAGE;
        let base = patterned_mapping(len);
        // SAFETY: `base..base+len` is our mapping; no other thread uses it.
        unsafe {
            let img = Image::capture(base, len, Vec::new(), [(0, 0); 2], (0, 0)).unwrap();
            img.overlay(base).unwrap();
            let mut t = WriteTracker::new(base, len, true).unwrap();
            let mut prof = ResetProfile::default();
            let intact = |base: *mut u8| (0..len).all(|i| *base.add(i) == (i / PAGE) as u8 + 1);
            // Round 1: pages 3 and 9 written (protected until now).
            *base.add(3 * PAGE) = 0;
            *base.add(9 * PAGE + 100) = 0;
            assert_eq!(t.restore(&img, &mut prof).unwrap(), 2);
            assert!(intact(base));
            // They stay writable and listed: restored again although only
            // page 9 is written this round, together with a new page 40.
            assert_eq!(
                t.written().unwrap(),
                vec![
                    (base as usize + 3 * PAGE, base as usize + 4 * PAGE),
                    (base as usize + 9 * PAGE, base as usize + 10 * PAGE)
                ]
            );
            *base.add(9 * PAGE + 7) = 0;
            *base.add(40 * PAGE + 4095) = 0;
            assert_eq!(t.restore(&img, &mut prof).unwrap(), 3);
            assert!(intact(base));
            // A write to a hot page after the restore is caught next time.
            for _ in 0..HOT_REPROTECT_EVERY {
                *base.add(3 * PAGE + 5) = 0;
                t.restore(&img, &mut prof).unwrap();
                assert!(intact(base));
            }
            // Everything was protected again at the periodic point: only what
            // was written since is listed.
            assert_eq!(t.written().unwrap(), vec![(base as usize + 3 * PAGE, base as usize + 4 * PAGE)]);
            *base.add(50 * PAGE) = 0;
            t.restore(&img, &mut prof).unwrap();
            assert!(intact(base));
            // Past the cap, everything is protected again at once (a range
            // has one registration at a time).
            drop(t);
            let mut big = WriteTracker::new(base, len, true).unwrap();
            big.hot_max = 8;
            big.restore(&img, &mut prof).unwrap();
            assert!(big.written().unwrap().is_empty());
            for p in 0..len / PAGE {
                *base.add(p * PAGE) = 0;
            }
            assert_eq!(big.restore(&img, &mut prof).unwrap(), len / PAGE);
            assert!(intact(base));
            assert!(big.written().unwrap().is_empty());
            *base.add(5 * PAGE) = 0;
            assert_eq!(big.restore(&img, &mut prof).unwrap(), 1);
            assert!(intact(base));
            libc::munmap(base.cast(), len);
        }
    }
}
