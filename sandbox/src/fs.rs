//! The guest's whole filesystem: one immutable in-memory directory holding
//! only the stdlib zip, shared (one copy per process) by every sandbox.
//!
//! Every mutating operation fails with `PermissionDenied` (not `Unsupported`:
//! wasix would then fall back to host-side "ephemeral" symlinks and links).

use std::future::Future;
use std::io::{self, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use virtual_fs::{
    AsyncRead, AsyncSeek, AsyncWrite, DirEntry, FileOpener, FileSystem, FileType, FsError, Metadata, OpenOptions,
    OpenOptionsConfig, ReadBuf, ReadDir, VirtualFile,
};

type R<T> = Result<T, FsError>;

/// Fixed timestamps (ns since the epoch) so `os.stat` is deterministic.
const T0: u64 = 1_704_067_200_000_000_000;

/// An immutable filesystem: `/` containing exactly one regular file.
#[derive(Debug, Clone)]
pub struct OneFileFs {
    name: String,
    data: Bytes,
}

enum Node {
    Root,
    File,
}

impl OneFileFs {
    pub fn new(name: &str, data: Bytes) -> Self {
        Self { name: name.to_owned(), data }
    }

    fn lookup(&self, p: &Path) -> Option<Node> {
        let mut it = p.components().filter(|c| !matches!(c, Component::RootDir | Component::CurDir));
        match (it.next(), it.next()) {
            (None, _) => Some(Node::Root),
            (Some(Component::Normal(n)), None) if n == self.name.as_str() => Some(Node::File),
            _ => None,
        }
    }

    fn meta(&self, dir: bool) -> Metadata {
        Metadata {
            ft: if dir { FileType::new_dir() } else { FileType::new_file() },
            accessed: T0,
            created: T0,
            modified: T0,
            len: if dir { 0 } else { self.data.len() as u64 },
        }
    }
}

impl FileSystem for OneFileFs {
    fn readlink(&self, _: &Path) -> R<PathBuf> {
        Err(FsError::InvalidInput)
    }
    fn read_dir(&self, p: &Path) -> R<ReadDir> {
        match self.lookup(p) {
            Some(Node::Root) => Ok(ReadDir::new(vec![DirEntry {
                path: Path::new("/").join(&self.name),
                metadata: Ok(self.meta(false)),
            }])),
            Some(Node::File) => Err(FsError::BaseNotDirectory),
            None => Err(FsError::EntryNotFound),
        }
    }
    fn create_dir(&self, _: &Path) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn create_symlink(&self, _: &Path, _: &Path) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn hard_link(&self, _: &Path, _: &Path) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn remove_dir(&self, _: &Path) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn rename<'a>(&'a self, _: &'a Path, _: &'a Path) -> Pin<Box<dyn Future<Output = R<()>> + Send + 'a>> {
        Box::pin(async { Err(FsError::PermissionDenied) })
    }
    fn metadata(&self, p: &Path) -> R<Metadata> {
        match self.lookup(p) {
            Some(Node::Root) => Ok(self.meta(true)),
            Some(Node::File) => Ok(self.meta(false)),
            None => Err(FsError::EntryNotFound),
        }
    }
    fn symlink_metadata(&self, p: &Path) -> R<Metadata> {
        self.metadata(p)
    }
    fn remove_file(&self, _: &Path) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for OneFileFs {
    fn open(&self, p: &Path, conf: &OpenOptionsConfig) -> R<Box<dyn VirtualFile + Send + Sync + 'static>> {
        if conf.would_mutate() {
            return Err(FsError::PermissionDenied);
        }
        match self.lookup(p) {
            Some(Node::File) => Ok(Box::new(RoFile { data: self.data.clone(), pos: 0 })),
            Some(Node::Root) => Err(FsError::NotAFile),
            None => Err(FsError::EntryNotFound),
        }
    }
}

/// A read-only view of the shared bytes (cloning `Bytes` is an Arc bump).
#[derive(Debug)]
struct RoFile {
    data: Bytes,
    pos: u64,
}

impl AsyncRead for RoFile {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let len = self.data.len();
        let pos = usize::try_from(self.pos).unwrap_or(usize::MAX).min(len);
        let n = buf.remaining().min(len - pos);
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos = (pos + n) as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for RoFile {
    fn start_seek(mut self: Pin<&mut Self>, p: SeekFrom) -> io::Result<()> {
        let new = match p {
            SeekFrom::Start(o) => i128::from(o),
            SeekFrom::End(o) => self.data.len() as i128 + i128::from(o),
            SeekFrom::Current(o) => i128::from(self.pos) + i128::from(o),
        };
        let new = u64::try_from(new).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.pos = new;
        Ok(())
    }
    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

impl AsyncWrite for RoFile {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::PermissionDenied.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl VirtualFile for RoFile {
    fn last_accessed(&self) -> u64 {
        T0
    }
    fn last_modified(&self) -> u64 {
        T0
    }
    fn created_time(&self) -> u64 {
        T0
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn set_len(&mut self, _: u64) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn unlink(&mut self) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn set_times(&mut self, _: Option<u64>, _: Option<u64>) -> R<()> {
        Err(FsError::PermissionDenied)
    }
    fn poll_read_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok((self.data.len() as u64).saturating_sub(self.pos) as usize))
    }
    fn poll_write_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::PermissionDenied.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_one_file_exists_and_nothing_can_be_changed() {
        let fs = OneFileFs::new("z.zip", Bytes::from_static(b"PK"));
        assert!(fs.metadata(Path::new("/z.zip")).unwrap().is_file());
        assert!(fs.metadata(Path::new("/")).unwrap().is_dir());
        assert_eq!(fs.metadata(Path::new("/etc/passwd")).unwrap_err(), FsError::EntryNotFound);
        assert_eq!(fs.metadata(Path::new("/../z.zip")).unwrap_err(), FsError::EntryNotFound);
        assert_eq!(fs.create_dir(Path::new("/tmp")).unwrap_err(), FsError::PermissionDenied);
        assert_eq!(fs.remove_file(Path::new("/z.zip")).unwrap_err(), FsError::PermissionDenied);
        assert_eq!(fs.create_symlink(Path::new("/a"), Path::new("/b")).unwrap_err(), FsError::PermissionDenied);
        let w = fs.new_open_options().write(true).open("/z.zip");
        assert_eq!(w.unwrap_err(), FsError::PermissionDenied);
        let c = fs.new_open_options().create(true).write(true).open("/new");
        assert_eq!(c.unwrap_err(), FsError::PermissionDenied);
        let f = fs.new_open_options().read(true).open("/z.zip").unwrap();
        assert_eq!(f.size(), 2);
        let names: Vec<_> = fs.read_dir(Path::new("/")).unwrap().map(|e| e.unwrap().path).collect();
        assert_eq!(names, vec![PathBuf::from("/z.zip")]);
    }
}
