//! The guest's stdout and stderr: one bounded, shared capture buffer.
//! Writes past the cap fail (the guest sees EIO) and mark the call as over
//! its log limit; the host, not the guest, decides the outcome from that mark.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use virtual_fs::{AsyncRead, AsyncSeek, AsyncWrite, FsError, ReadBuf, VirtualFile};

#[derive(Debug, Default)]
pub struct LogState {
    pub bytes: Vec<u8>,
    pub cap: usize,
    /// Something was dropped because the cap was reached.
    pub overflowed: bool,
}

/// A handle on the capture buffer; clones share it (stdout and stderr write
/// to the same buffer, so the log keeps their order).
#[derive(Debug, Clone, Default)]
pub struct CappedLog(Arc<Mutex<LogState>>);

impl CappedLog {
    pub fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(LogState { bytes: Vec::new(), cap, overflowed: false })))
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A poisoned lock only means a writer panicked mid-append; the
        // buffer is still a valid byte vector.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clears the buffer and sets the cap for the next call.
    pub fn reset(&self, cap: usize) {
        let mut s = self.lock();
        s.bytes.clear();
        s.bytes.shrink_to(64 << 10);
        s.cap = cap;
        s.overflowed = false;
    }

    /// Takes the captured text (lossy UTF-8) and whether it overflowed.
    pub fn take(&self) -> (String, bool) {
        let mut s = self.lock();
        let text = String::from_utf8_lossy(&s.bytes).into_owned();
        s.bytes.clear();
        let of = s.overflowed;
        s.overflowed = false;
        (text, of)
    }

    /// A writer for one stream.
    pub fn file(&self) -> Box<dyn VirtualFile + Send + Sync + 'static> {
        Box::new(LogFile(self.clone()))
    }
}

#[derive(Debug)]
struct LogFile(CappedLog);

impl AsyncWrite for LogFile {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.lock();
        let room = s.cap.saturating_sub(s.bytes.len());
        if room == 0 && !data.is_empty() {
            s.overflowed = true;
            return Poll::Ready(Err(io::Error::other("log limit reached")));
        }
        let n = room.min(data.len());
        s.bytes.extend_from_slice(&data[..n]);
        if n < data.len() {
            s.overflowed = true;
        }
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for LogFile {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::PermissionDenied.into()))
    }
}

impl AsyncSeek for LogFile {
    fn start_seek(self: Pin<&mut Self>, _: io::SeekFrom) -> io::Result<()> {
        Ok(())
    }
    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(0))
    }
}

impl VirtualFile for LogFile {
    fn last_accessed(&self) -> u64 {
        0
    }
    fn last_modified(&self) -> u64 {
        0
    }
    fn created_time(&self) -> u64 {
        0
    }
    fn size(&self) -> u64 {
        0
    }
    fn set_len(&mut self, _: u64) -> Result<(), FsError> {
        Err(FsError::PermissionDenied)
    }
    fn unlink(&mut self) -> Result<(), FsError> {
        Ok(())
    }
    fn poll_read_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
    fn poll_write_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(8192))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn writes_past_the_cap_fail_and_mark_overflow() {
        let log = CappedLog::new(5);
        let mut f = LogFile(log.clone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(Pin::new(&mut f).poll_write(&mut cx, b"abc"), Poll::Ready(Ok(3))));
        assert!(matches!(Pin::new(&mut f).poll_write(&mut cx, b"defg"), Poll::Ready(Ok(2))));
        assert!(matches!(Pin::new(&mut f).poll_write(&mut cx, b"h"), Poll::Ready(Err(_))));
        assert_eq!(log.take(), ("abcde".to_string(), true));
        log.reset(5);
        assert_eq!(log.take(), (String::new(), false));
    }
}
