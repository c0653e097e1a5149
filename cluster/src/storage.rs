//! Object storage behind one small trait, with OpenDAL as the backend chosen
//! by URI scheme: `fs://PATH` (default), `memory://`, `s3://BUCKET/PREFIX`.
//!
//! Invariants every backend keeps: a `put` is atomic (a reader sees the old
//! object or the new one, never a torn one); `put_new` creates an object
//! only if absent, with exactly one winner among concurrent writers; and
//! `put_if` replaces an object only if it is still the version the writer
//! read (compare-and-swap), with exactly one winner among writers that read
//! the same version - across processes: S3 with `If-None-Match` / `If-Match`
//! on its ETags; the filesystem creates with `link(2)` (which fails if the
//! name exists, atomically for every process on the machine, so creates run
//! in parallel) and compares-and-swaps under a lock file every process on
//! the machine takes; memory with a lock (one process).
//!
//! Durability on `fs://`: an acknowledged write survives a kill of the
//! process (the kernel holds what was written) and, except for derived
//! objects ([`Key::is_derived`]: chunks), a power loss too (the file and its
//! directory are forced to disk before the write returns). A chunk written
//! just before a power loss may be missing or empty afterwards; a reader
//! rejects such an object (its envelope does not decode) and the chunk is
//! generated again.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use opendal::Operator;
use serde::{Deserialize, Serialize};
use worldloom_worldgen::{ChunkCoord, RegionCoord};

use crate::error::{Error, Result};
use crate::ids::WorldId;
use crate::wire::{self, Versioned};

/// A storage key. Built only by the constructors below from validated ids,
/// integers and hex digests, so no user-supplied text ever becomes a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Prefix of all worlds.
    pub fn worlds() -> Key {
        Key("worlds/".into())
    }

    pub fn world(id: &WorldId) -> Key {
        Key(format!("worlds/{id}"))
    }

    /// A generated chunk of one world revision, in its region's directory
    /// (so what storage holds of one region is one listing away:
    /// [`Key::chunk_region`]).
    pub fn chunk(world: &WorldId, revision: u32, c: ChunkCoord) -> Key {
        let r = c.region();
        Key(format!("chunks/{world}/r{revision}/{}_{}/{}_{}", r.rx, r.rz, c.cx, c.cz))
    }

    /// The prefix of every chunk of one region of a world revision.
    pub fn chunk_region(world: &WorldId, revision: u32, r: RegionCoord) -> Key {
        Key(format!("chunks/{world}/r{revision}/{}_{}/", r.rx, r.rz))
    }

    /// The coordinate of a key made by [`Key::chunk`].
    pub fn chunk_coord(&self) -> Option<ChunkCoord> {
        let (cx, cz) = self.0.strip_prefix("chunks/")?.rsplit('/').next()?.split_once('_')?;
        Some(ChunkCoord::new(cx.parse().ok()?, cz.parse().ok()?))
    }

    /// A plugin source, addressed by the lowercase hex SHA-256 of its bytes.
    pub fn plugin_source(sha256: &str) -> Result<Key> {
        if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Key(format!("plugins/sources/{sha256}")))
        } else {
            Err(Error::invalid("sha256", "a SHA-256 is 64 lowercase hex digits"))
        }
    }

    /// A key below `prefix` named by arbitrary bytes, hex-encoded so they can never form a path.
    pub fn opaque(prefix: &str, name: &[u8]) -> Key {
        debug_assert!(prefix.ends_with('/') && !prefix.contains(".."));
        Key(format!("{prefix}{}", hex::encode(name)))
    }

    /// Decodes the last segment of a key made by [`Key::opaque`].
    pub fn opaque_name(&self) -> Option<Vec<u8>> {
        hex::decode(self.0.rsplit('/').next()?).ok()
    }

    pub fn dir(prefix: &str) -> Key {
        debug_assert!(prefix.ends_with('/'));
        Key(prefix.to_owned())
    }

    /// Whether the object can be derived again from others (a chunk, from
    /// its world revision): losing it to a power loss costs a regeneration,
    /// so the fs backend does not force it to disk before acknowledging it.
    pub fn is_derived(&self) -> bool {
        self.0.starts_with("chunks/")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which version of an object a reader saw: the backend's ETag (S3) or a
/// digest of the content (fs, memory). Opaque; only compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// The storage the cluster needs, and nothing more.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The object, or `None` if there is none.
    async fn get(&self, key: &Key) -> Result<Option<Bytes>>;
    /// The object and the version read, for a later [`ObjectStore::put_if`].
    async fn get_versioned(&self, key: &Key) -> Result<Option<(Bytes, Version)>>;
    /// Creates or atomically replaces the object.
    async fn put(&self, key: &Key, value: Bytes) -> Result<()>;
    /// Creates the object only if absent; `false` if it already existed.
    async fn put_new(&self, key: &Key, value: Bytes) -> Result<bool>;
    /// Replaces the object only if it is still at `expected`; `false` if it
    /// changed (or vanished) since it was read.
    async fn put_if(&self, key: &Key, value: Bytes, expected: &Version) -> Result<bool>;
    /// Keys of every object below `prefix` (recursively), sorted.
    async fn list(&self, prefix: &Key) -> Result<Vec<Key>>;
    async fn delete(&self, key: &Key) -> Result<()>;
    /// Where the data lives, for logs (never contains credentials).
    fn describe(&self) -> String;
    /// How many writes are worth running at once (the node's write behind
    /// runs up to this many); 1 where writes serialise anyway.
    fn write_concurrency(&self) -> usize {
        1
    }
}

/// Typed helpers over any [`ObjectStore`]: values go through the versioned envelope.
pub async fn get_value<T: Versioned>(store: &dyn ObjectStore, key: &Key) -> Result<Option<T>> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => wire::decode(&bytes).map(Some).map_err(|e| Error::internal(format!("{key}: {}", e.message))),
    }
}

pub async fn put_value<T: Versioned>(store: &dyn ObjectStore, key: &Key, value: &T) -> Result<()> {
    store.put(key, Bytes::from(wire::encode(value))).await
}

pub async fn put_new_value<T: Versioned>(store: &dyn ObjectStore, key: &Key, value: &T) -> Result<bool> {
    store.put_new(key, Bytes::from(wire::encode(value))).await
}

/// A value and the version it was read at.
pub async fn get_value_versioned<T: Versioned>(store: &dyn ObjectStore, key: &Key) -> Result<Option<(T, Version)>> {
    match store.get_versioned(key).await? {
        None => Ok(None),
        Some((bytes, v)) => {
            let value = wire::decode(&bytes).map_err(|e| Error::internal(format!("{key}: {}", e.message)))?;
            Ok(Some((value, v)))
        }
    }
}

pub async fn put_value_if<T: Versioned>(
    store: &dyn ObjectStore,
    key: &Key,
    value: &T,
    expected: &Version,
) -> Result<bool> {
    store.put_if(key, Bytes::from(wire::encode(value)), expected).await
}

/// The content digest that stands for a version where the backend has no ETag.
fn digest_version(bytes: &[u8]) -> Version {
    use sha2::Digest;
    Version(hex::encode(&sha2::Sha256::digest(bytes)[..16]))
}

/// Settings for the S3 backend; unset fields fall back to the usual AWS
/// environment variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<set>"))
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// How conditional writes are made atomic.
#[derive(Debug)]
enum Conditional {
    /// The backend checks (S3: `If-None-Match: *`, `If-Match: ETAG`).
    Native,
    /// One process: a lock around check-then-write (memory).
    InProcess(tokio::sync::Mutex<()>),
    /// Every process on the machine: an `flock` on this file around
    /// check-then-write, plus the in-process lock (fs compare-and-swap, and
    /// creates on a file system without hard links).
    LockFile(std::path::PathBuf, tokio::sync::Mutex<()>),
}

/// Holds the conditional-write lock while alive.
struct CondGuard<'a> {
    _local: Option<tokio::sync::MutexGuard<'a, ()>>,
    _file: Option<std::fs::File>,
}

impl Conditional {
    async fn lock(&self) -> Result<CondGuard<'_>> {
        match self {
            Conditional::Native => Ok(CondGuard { _local: None, _file: None }),
            Conditional::InProcess(m) => Ok(CondGuard { _local: Some(m.lock().await), _file: None }),
            Conditional::LockFile(path, m) => {
                let local = m.lock().await;
                let path = path.clone();
                let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                    use std::os::fd::AsRawFd;
                    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
                    // SAFETY: a plain flock on a descriptor we own; released when it closes.
                    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(f)
                })
                .await
                .map_err(|_| Error::internal("the storage lock task failed"))?
                .map_err(|e| Error::unavailable(format!("storage: locking for a conditional write: {e}")))?;
                Ok(CondGuard { _local: Some(local), _file: Some(file) })
            }
        }
    }
}

/// The OpenDAL-backed store.
#[derive(Debug)]
pub struct OpendalStore {
    op: Operator,
    describe: String,
    conditional: Conditional,
    /// fs: the writes this backend makes itself, in its own atomic-write
    /// directory (removed when dropped).
    fs: Option<Arc<FsFiles>>,
}

/// Writes the fs backend runs at once (the node's write behind): creates
/// take no lock, so they may overlap. Two, measured (BENCHMARKS.md "Storage
/// on the hot path"): more lanes only contend in the kernel (the
/// directory's lock, the inode allocator) and take CPU from generation;
/// fewer cannot keep up with a fresh stream.
const FS_WRITE_CONCURRENCY: usize = 2;

/// Writes on `fs://` made with plain system calls rather than through
/// OpenDAL, for create-if-absent without a lock: each object is first
/// written whole to a new file in this store's own atomic-write directory
/// (on the same file system), then put in place with `link(2)`, which fails
/// with `EEXIST` if the name exists - atomically, for every process on the
/// machine - or `rename(2)` to replace. Creates, where the file system has
/// `O_TMPFILE`, skip the temporary name: the file is made unnamed in the
/// target's directory and linked into place (`FsFiles::create_unnamed`). A
/// reader opens either nothing or a complete file; a writer killed midway
/// leaves nothing (an unnamed file) or only a temporary file in its own
/// directory, removed when the next store opens.
#[derive(Debug)]
struct FsFiles {
    root: std::path::PathBuf,
    tmp: TmpDir,
    /// Names of temporary files, unique within `tmp` (which only this store writes).
    seq: std::sync::atomic::AtomicU64,
    /// Set when the file system turned out to have no hard links (`EPERM`,
    /// `EXDEV`, `EOPNOTSUPP`): creates then check-then-rename under the lock file.
    no_links: std::sync::atomic::AtomicBool,
    /// Set when unnamed files (`O_TMPFILE`, then `linkat` through
    /// `/proc/self/fd`) turned out not to work here: creates then go
    /// through a named temporary file in `tmp`.
    no_unnamed: std::sync::atomic::AtomicBool,
}

/// How a temporary file is put in place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Only if the name is free (`link`).
    Create,
    /// Whatever is there (`rename`).
    Replace,
}

/// An error of a `link(2)` that means this file system cannot make hard links.
fn no_hard_links(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS))
}

impl FsFiles {
    fn target(&self, key: &Key) -> std::path::PathBuf {
        // Keys are built from validated ids, integers and hex: never `..` or absolute.
        self.root.join(key.as_str())
    }

    /// `value` in a new temporary file of this store's own directory; forced
    /// to disk if `durable`.
    fn temp_file(&self, value: &[u8], durable: bool) -> std::io::Result<std::path::PathBuf> {
        use std::io::Write;
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.tmp.dir.join(format!("{n:x}.new"));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        let written = f.write_all(value).and_then(|()| if durable { f.sync_all() } else { Ok(()) });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Puts `temp` at `target`, creating missing directories: whether it was
    /// placed (`false`: `Create` found the name taken), and whether
    /// directories were created.
    fn place(&self, temp: &Path, target: &Path, how: Place) -> std::io::Result<(bool, bool)> {
        let once = || match how {
            Place::Create => match std::fs::hard_link(temp, target) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            },
            Place::Replace => std::fs::rename(temp, target).map(|()| true),
        };
        match once() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = target.parent().ok_or(e)?;
                std::fs::create_dir_all(parent)?;
                Ok((once()?, true))
            }
            r => Ok((r?, false)),
        }
    }

    /// Forces the new name of `target` to disk: its directory, and if
    /// directories were created, every one up to the root (each new
    /// directory's name lives in its parent).
    fn sync_dirs(&self, target: &Path, created_dirs: bool) -> std::io::Result<()> {
        let mut dir = target.parent();
        while let Some(d) = dir {
            std::fs::File::open(d)?.sync_all()?;
            if !created_dirs || d == self.root {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Creates `value` at `target` if the name is free, from a file that
    /// never had a name before: opened with `O_TMPFILE` in the target's own
    /// directory, written (and forced to disk if `durable`), then given its
    /// name with `linkat(2)` through `/proc/self/fd`, which fails with
    /// `EEXIST` atomically like `link(2)`. One directory operation per
    /// create instead of three (the temporary name's create, the link, the
    /// unlink), and a writer killed midway leaves nothing at all: the
    /// kernel frees an unnamed file when its last descriptor closes.
    /// `Ok(None)`: this file system (or a missing `/proc`) does not allow
    /// it; the caller falls back to a named temporary file.
    fn create_unnamed(&self, value: &[u8], target: &Path, durable: bool) -> std::io::Result<Option<(bool, bool)>> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        let parent = target.parent().ok_or_else(|| std::io::Error::other("an object key without a directory"))?;
        let open = || std::fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o644).open(parent);
        let (mut f, created_dirs) = match open() {
            Ok(f) => (f, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(parent)?;
                (open()?, true)
            }
            // No O_TMPFILE here (`EOPNOTSUPP`; `EISDIR` or `EINVAL` on kernels older than 3.11).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        f.write_all(value)?;
        if durable {
            f.sync_all()?;
        }
        let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("no NUL in a number");
        let to = std::ffi::CString::new(target.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a NUL byte in an object path"))?;
        // SAFETY: two NUL-terminated paths that outlive the call; `f` stays open across it.
        let linked = unsafe {
            libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if linked == 0 {
            return Ok(Some((true, created_dirs)));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => Ok(Some((false, created_dirs))),
            // No /proc to name the descriptor through.
            Some(libc::ENOENT) if !Path::new("/proc/self/fd").exists() => Ok(None),
            _ => Err(e),
        }
    }

    /// Writes `value` at `key` whole: `Create` only if absent (`false` if
    /// the object exists), `Replace` atomically over what is there.
    fn write(&self, key: &Key, value: &[u8], how: Place) -> std::io::Result<bool> {
        let durable = !key.is_derived();
        let target = self.target(key);
        let unnamed = if how == Place::Create && !self.no_unnamed.load(std::sync::atomic::Ordering::Relaxed) {
            let r = self.create_unnamed(value, &target, durable)?;
            if r.is_none() {
                self.no_unnamed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r
        } else {
            None
        };
        let (placed, created_dirs) = match unnamed {
            Some(r) => r,
            None => {
                let temp = self.temp_file(value, durable)?;
                let placed = self.place(&temp, &target, how);
                // After a link the temporary name is a second name of the object's
                // file; after a rename (or a failure) it may be gone already.
                let _ = std::fs::remove_file(&temp);
                placed?
            }
        };
        if placed && durable {
            self.sync_dirs(&target, created_dirs)?;
        }
        Ok(placed)
    }

    /// The object at `key`, whole: one open and one read of a buffer of the
    /// file's size (`None` if there is none). Files are only ever put in
    /// place complete, so this never sees a partial object.
    fn read(&self, key: &Key) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.target(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object below `prefix` (a directory key), recursively, sorted:
    /// one walk with `readdir` on this thread, file types from the
    /// directory entries (no `stat` per object). Only regular files are
    /// objects; the atomic-write directory lies outside every prefix.
    fn list(&self, prefix: &Key) -> std::io::Result<Vec<Key>> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<Key>) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    walk(&entry.path(), &format!("{rel}{name}/"), out)?;
                } else if kind.is_file() {
                    out.push(Key(format!("{rel}{name}")));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root.join(prefix.as_str()), prefix.as_str(), &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Create-if-absent where there are no hard links: check, then rename,
    /// under the lock file every process takes.
    fn create_locked(&self, key: &Key, value: &[u8]) -> std::io::Result<bool> {
        match std::fs::symlink_metadata(self.target(key)) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.write(key, value, Place::Replace),
            Err(e) => Err(e),
        }
    }
}

/// Runs a storage system call off the async threads.
async fn blocking<T: Send + 'static>(
    key: &Key,
    what: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>> {
    tokio::task::spawn_blocking(f).await.map_err(|_| Error::internal(format!("storage: the task {what} {key} failed")))
}

/// Files in the atomic-write directory that belong to no live owner and are
/// older than this are a crash's leftovers (files of earlier versions, which
/// wrote straight into `.tmp/`).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// One store's atomic-write directory, `<root>/.tmp/<id>/`, owned through an
/// `flock` on `<root>/.tmp/<id>.owner` held for the store's lifetime.
///
/// Every process (and every store a process opens) writes its temporary
/// files in a directory of its own, so opening a store (`worldloom token
/// create` against a running server's `fs://` data) never removes a file
/// another live store is writing, however long that write has been going.
/// The kernel releases an `flock` when its holder dies, even by SIGKILL, so
/// a directory whose owner file can be locked is a dead store's and is
/// removed; no pid is trusted (pids are reused, and differ across
/// containers sharing one volume).
#[derive(Debug)]
struct TmpDir {
    dir: std::path::PathBuf,
    owner_path: std::path::PathBuf,
    _owner: std::fs::File,
}

impl TmpDir {
    /// Creates a fresh atomic-write directory below `tmp`, locked as this store's.
    fn create(tmp: &Path) -> std::io::Result<TmpDir> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| std::io::Error::other(format!("random id: {e}")))?;
        let id = format!("{}-{}", std::process::id(), hex::encode(id));
        // Locked under a name cleanup ignores, then renamed into place: no
        // other store ever sees this owner file unlocked.
        let pending = tmp.join(format!(".{id}.new"));
        let owner = std::fs::OpenOptions::new().create_new(true).write(true).open(&pending)?;
        flock(&owner, libc::LOCK_EX | libc::LOCK_NB)?;
        let owner_path = tmp.join(format!("{id}.owner"));
        std::fs::rename(&pending, &owner_path)?;
        let dir = tmp.join(&id);
        std::fs::create_dir(&dir)?;
        Ok(TmpDir { dir, owner_path, _owner: owner })
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.owner_path);
    }
}

fn flock(f: &std::fs::File, how: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; released when it closes.
    if unsafe { libc::flock(f.as_raw_fd(), how) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn older_than(path: &Path, age: std::time::Duration) -> bool {
    let modified = std::fs::symlink_metadata(path).ok().and_then(|m| m.modified().ok());
    modified.and_then(|t| t.elapsed().ok()).is_some_and(|a| a > age)
}

/// Removes what dead stores left in an atomic-write root: the directories
/// of owners that are gone (their lock can be taken), and, past
/// [`STALE_TMP`], anything else (files of earlier versions, an interrupted
/// creation). Never a directory whose owner is alive.
fn clean_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".owner") {
            let Ok(owner) = std::fs::OpenOptions::new().write(true).open(&path) else { continue };
            if flock(&owner, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
                // Its owner is dead: nothing in its directory will ever be renamed into place.
                let _ = std::fs::remove_dir_all(tmp.join(id));
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let owned = e.file_type().is_ok_and(|t| t.is_dir()) && tmp.join(format!("{name}.owner")).exists();
        if !owned && older_than(&path, STALE_TMP) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// An OS error opening an `fs://` store, as a clear error: permanent
/// conditions (permission, a path through a regular file) name the cause.
fn open_error(what: String, e: std::io::Error) -> Error {
    let code = match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => "storage_denied",
        Some(libc::ENOTDIR | libc::EISDIR | libc::EEXIST) => "storage_misconfigured",
        _ => return Error::unavailable(format!("{what}: {e}")),
    };
    Error::storage_permanent(code, &e.to_string(), what)
}

/// Opens an `fs://` store rooted at `path`, with an atomic-write directory of its own.
fn open_fs(path: &str) -> Result<OpendalStore> {
    let root = Path::new(path);
    std::fs::create_dir_all(root).map_err(|e| open_error(format!("cannot create data directory {path:?}"), e))?;
    let root = root.canonicalize().map_err(|e| open_error(format!("cannot resolve data directory {path:?}"), e))?;
    let tmp = root.join(".tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| open_error(format!("cannot create {}", tmp.display()), e))?;
    clean_stale(&tmp);
    let own = TmpDir::create(&tmp)
        .map_err(|e| open_error(format!("cannot create an atomic-write directory in {}", tmp.display()), e))?;
    let builder =
        opendal::services::Fs::default().root(&root.to_string_lossy()).atomic_write_dir(&own.dir.to_string_lossy());
    // No retry layer: a local file system's errors do not clear by retrying
    // (and a retried ENOTDIR would only delay the answer).
    Ok(OpendalStore {
        op: Operator::new(builder)?,
        describe: format!("fs://{}", root.display()),
        conditional: Conditional::LockFile(root.join(".lock"), tokio::sync::Mutex::new(())),
        fs: Some(Arc::new(FsFiles {
            root,
            tmp: own,
            seq: std::sync::atomic::AtomicU64::new(0),
            no_links: std::sync::atomic::AtomicBool::new(false),
            no_unnamed: std::sync::atomic::AtomicBool::new(false),
        })),
    })
}

/// Opens the store a URI names.
pub fn open(uri: &str, s3: &S3Settings) -> Result<Arc<dyn ObjectStore>> {
    let bad = |why: &str| {
        Error::invalid(
            "data",
            format!("storage URI {uri:?}: {why} (expected fs://PATH, memory:// or s3://BUCKET/PREFIX)"),
        )
    };
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let retry = opendal::layers::RetryLayer::new().with_max_times(3);
    let store = match scheme {
        "fs" => {
            if rest.is_empty() {
                return Err(bad("empty path"));
            }
            open_fs(rest)?
        }
        "memory" => OpendalStore {
            op: Operator::new(opendal::services::Memory::default())?,
            describe: "memory://".into(),
            conditional: Conditional::InProcess(tokio::sync::Mutex::new(())),
            fs: None,
        },
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            // The HTTP client needs a TLS provider even for plain-HTTP endpoints,
            // and OpenDAL a process-wide transport (the first one installed wins).
            crate::install_tls_provider();
            opendal::HttpTransporter::install_default(opendal_http_transport_reqwest::ReqwestTransport::default());
            let mut b = opendal::services::S3::default().bucket(bucket).root(&format!("/{prefix}"));
            if let Some(v) = &s3.endpoint {
                b = b.endpoint(v);
            }
            b = b.region(s3.region.as_deref().unwrap_or("us-east-1"));
            if let Some(v) = &s3.access_key_id {
                b = b.access_key_id(v);
            }
            if let Some(v) = &s3.secret_access_key {
                b = b.secret_access_key(v);
            }
            OpendalStore {
                op: Operator::new(b)?.layer(retry),
                describe: format!("s3://{bucket}/{prefix}"),
                conditional: Conditional::Native,
                fs: None,
            }
        }
        other => return Err(bad(&format!("unknown scheme {other:?}"))),
    };
    Ok(Arc::new(store))
}

#[async_trait]
impl ObjectStore for OpendalStore {
    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        if let Some(fs) = &self.fs {
            // Not through OpenDAL's fs reader, whose buffers cost a large
            // zeroed allocation per read (2-4 ms of CPU per 13 KB chunk).
            let (fs, k) = (fs.clone(), key.clone());
            return Ok(blocking(key, "reading", move || fs.read(&k))
                .await?
                .map_err(|e| Error::storage_io(&e, format!("reading {key}")))?
                .map(Bytes::from));
        }
        match self.op.read(key.as_str()).await {
            Ok(buf) => Ok(Some(buf.to_bytes())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<()> {
        if let Some(fs) = &self.fs {
            let (fs, k) = (fs.clone(), key.clone());
            blocking(key, "writing", move || fs.write(&k, &value, Place::Replace))
                .await?
                .map_err(|e| Error::storage_io(&e, format!("writing {key}")))?;
            return Ok(());
        }
        self.op.write(key.as_str(), value).await?;
        Ok(())
    }

    async fn get_versioned(&self, key: &Key) -> Result<Option<(Bytes, Version)>> {
        if !matches!(self.conditional, Conditional::Native) {
            return Ok(self.get(key).await?.map(|b| {
                let v = digest_version(&b);
                (b, v)
            }));
        }
        // The ETag first, then the content at exactly that ETag: a change in
        // between fails the read, and the caller reads again.
        for _ in 0..5 {
            let etag = match self.op.stat(key.as_str()).await {
                Ok(meta) => meta.etag().map(str::to_owned),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(etag) = etag else {
                return Err(Error::internal(format!("storage: {key} has no ETag for a conditional write")));
            };
            match self.op.read_with(key.as_str()).if_match(&etag).await {
                Ok(buf) => return Ok(Some((buf.to_bytes(), Version(etag)))),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::unavailable(format!("storage: {key} keeps changing; retry")))
    }

    async fn put_new(&self, key: &Key, value: Bytes) -> Result<bool> {
        if let Some(fs) = &self.fs {
            let creating = |e: std::io::Error| Error::storage_io(&e, format!("creating {key}"));
            if !fs.no_links.load(std::sync::atomic::Ordering::Relaxed) {
                let (files, k, v) = (fs.clone(), key.clone(), value.clone());
                match blocking(key, "creating", move || files.write(&k, &v, Place::Create)).await? {
                    // From now on (and `describe` says so, for the logs).
                    Err(e) if no_hard_links(&e) => fs.no_links.store(true, std::sync::atomic::Ordering::Relaxed),
                    r => return r.map_err(creating),
                }
            }
            let _guard = self.conditional.lock().await?;
            let (files, k) = (fs.clone(), key.clone());
            return blocking(key, "creating", move || files.create_locked(&k, &value)).await?.map_err(creating);
        }
        let _guard = self.conditional.lock().await?;
        if !matches!(self.conditional, Conditional::Native) && self.op.exists(key.as_str()).await? {
            return Ok(false);
        }
        match self.op.write_with(key.as_str(), value).if_not_exists(true).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::AlreadyExists) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn put_if(&self, key: &Key, value: Bytes, expected: &Version) -> Result<bool> {
        let _guard = self.conditional.lock().await?;
        if matches!(self.conditional, Conditional::Native) {
            return match self.op.write_with(key.as_str(), value).if_match(&expected.0).await {
                Ok(_) => Ok(true),
                Err(e) if matches!(e.kind(), opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::NotFound) => {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            };
        }
        match self.get(key).await? {
            Some(current) if digest_version(&current) == *expected => {
                if let Some(fs) = &self.fs {
                    let (fs, k) = (fs.clone(), key.clone());
                    blocking(key, "writing", move || fs.write(&k, &value, Place::Replace))
                        .await?
                        .map_err(|e| Error::storage_io(&e, format!("writing {key}")))?;
                } else {
                    self.op.write(key.as_str(), value).await?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<Key>> {
        if let Some(fs) = &self.fs {
            // Not through OpenDAL's fs lister, which takes a blocking-pool
            // hop per directory entry (a region's listing is 256 of them).
            let (fs, k) = (fs.clone(), prefix.clone());
            return blocking(prefix, "listing", move || fs.list(&k))
                .await?
                .map_err(|e| Error::storage_io(&e, format!("listing {prefix}")));
        }
        let entries = match self.op.list_with(prefix.as_str()).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut keys: Vec<Key> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| Key(e.path().trim_start_matches('/').to_owned()))
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        match self.op.delete(key.as_str()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn describe(&self) -> String {
        match &self.fs {
            Some(fs) if fs.no_links.load(std::sync::atomic::Ordering::Relaxed) => {
                format!("{} (no hard links: creates take a lock, one at a time)", self.describe)
            }
            _ => self.describe.clone(),
        }
    }

    fn write_concurrency(&self) -> usize {
        match (&self.conditional, &self.fs) {
            (_, Some(fs)) if !fs.no_links.load(std::sync::atomic::Ordering::Relaxed) => FS_WRITE_CONCURRENCY,
            // S3: requests overlap on the connection pool.
            (Conditional::Native, _) => 16,
            _ => 1,
        }
    }
}

/// Lowercase hex SHA-256 of a plugin source: its address under [`Key::plugin_source`].
pub fn source_sha256(source: impl AsRef<[u8]>) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(source.as_ref()))
}

/// The storage contract as executable checks, run by every backend's tests
/// (memory and fs here, S3 against a real S3 server in the integration tests).
/// It panics on the first broken promise.
pub mod conformance {
    use super::*;

    /// Every operation of the trait, on keys below `things/` and `cas/`.
    pub async fn exercise(store: Arc<dyn ObjectStore>) {
        let k = Key::opaque("things/", b"a/../b");
        assert_eq!(k.as_str(), "things/612f2e2e2f62");
        assert_eq!(k.opaque_name().unwrap(), b"a/../b");
        assert_eq!(store.get(&k).await.unwrap(), None);
        store.put(&k, Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"one"[..]);
        store.put(&k, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"two"[..]);
        assert!(!store.put_new(&k, Bytes::from_static(b"three")).await.unwrap());
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"two"[..]);
        let k2 = Key::opaque("things/", b"z");
        assert!(store.put_new(&k2, Bytes::from_static(b"new")).await.unwrap());
        assert_eq!(store.list(&Key::dir("things/")).await.unwrap(), vec![k.clone(), k2.clone()]);
        assert!(store.list(&Key::dir("nothing/")).await.unwrap().is_empty());
        store.delete(&k).await.unwrap();
        store.delete(&k).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), None);
        compare_and_swap(store).await;
    }

    /// Compare-and-swap: a write at a stale version loses, and of writers
    /// that read the same version exactly one wins.
    pub async fn compare_and_swap(store: Arc<dyn ObjectStore>) {
        let k = Key::opaque("cas/", b"record");
        assert!(store.get_versioned(&k).await.unwrap().is_none());
        assert!(store.put_new(&k, Bytes::from_static(b"v0")).await.unwrap());
        let (bytes, v0) = store.get_versioned(&k).await.unwrap().unwrap();
        assert_eq!(bytes, &b"v0"[..]);
        assert!(store.put_if(&k, Bytes::from_static(b"v1"), &v0).await.unwrap());
        // v0 is stale now.
        assert!(!store.put_if(&k, Bytes::from_static(b"v1-again"), &v0).await.unwrap());
        assert_eq!(store.get(&k).await.unwrap().unwrap(), &b"v1"[..]);
        let (_, v1) = store.get_versioned(&k).await.unwrap().unwrap();
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, k, v1) = (store.clone(), k.clone(), v1.clone());
                tokio::spawn(async move { store.put_if(&k, Bytes::from(vec![b'w', i]), &v1).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "exactly one compare-and-swap at one version wins");
        // A vanished object cannot be swapped.
        let (_, v) = store.get_versioned(&k).await.unwrap().unwrap();
        store.delete(&k).await.unwrap();
        assert!(!store.put_if(&k, Bytes::from_static(b"ghost"), &v).await.unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::exercise;
    use super::*;
    use crate::ErrorKind;

    #[tokio::test]
    async fn memory_backend_keeps_the_storage_contract() {
        exercise(open("memory://", &S3Settings::default()).unwrap()).await;
    }

    #[tokio::test]
    async fn fs_backend_keeps_the_storage_contract_and_exactly_one_create_wins() {
        let dir = std::env::temp_dir().join(format!("wl-store-{}", std::process::id()));
        let uri = format!("fs://{}", dir.display());
        let store = open(&uri, &S3Settings::default()).unwrap();
        exercise(store.clone()).await;
        let key = Key::opaque("race/", b"x");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move { store.put_new(&key, Bytes::from(vec![i as u8; 1000])).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The payload writer `w` creates at key number `k`: large enough that a
    /// torn or interleaved write would show, and different for every writer.
    fn payload(w: u8, k: usize) -> Bytes {
        let mut v = vec![w; 96 * 1024];
        v[..8].copy_from_slice(&(k as u64).to_le_bytes());
        *v.last_mut().unwrap() = w ^ 0xff;
        Bytes::from(v)
    }

    /// Files in atomic-write directories (temporary files), not the owner files.
    fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
        walk_files(&dir.join(".tmp")).into_iter().filter(|p| p.extension().is_none_or(|e| e != "owner")).collect()
    }

    /// Races creates from two stores on one directory, as two processes
    /// would (each store has its own atomic-write directory and shares no
    /// lock in memory with the other), 3 writers each, every writer over
    /// every key in its own order, chunks (not forced to disk) and records
    /// (forced), while a reader reads the same keys: every key has exactly
    /// one winner and holds that winner's bytes whole; the reader only ever
    /// sees nothing or one writer's whole bytes; no temporary file is left.
    async fn race_creates(a: Arc<dyn ObjectStore>, b: Arc<dyn ObjectStore>, dir: &Path) {
        let world = WorldId::parse("w00112233445566aa").unwrap();
        let keys: Arc<Vec<Key>> = Arc::new(
            (0..24)
                .map(|i| Key::chunk(&world, 0, ChunkCoord::new(i, -i)))
                .chain((0..8u8).map(|i| Key::opaque("race/", &[i])))
                .collect(),
        );
        let writers: Vec<(u8, Arc<dyn ObjectStore>)> =
            (1..=6u8).map(|w| (w, if w % 2 == 0 { a.clone() } else { b.clone() })).collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, keys, done) = (a.clone(), keys.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = 0usize;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    for (k, key) in keys.iter().enumerate() {
                        if let Some(got) = store.get(key).await.unwrap() {
                            assert!((1..=6).any(|w| got == payload(w, k)), "{key}: read {} torn bytes", got.len());
                            seen += 1;
                        }
                    }
                }
                seen
            })
        };
        let tasks: Vec<_> = writers
            .into_iter()
            .map(|(w, store)| {
                let keys = keys.clone();
                tokio::spawn(async move {
                    let n = keys.len();
                    let mut won = Vec::new();
                    for j in 0..n {
                        let k = (j * (2 * w as usize + 1) + w as usize) % n;
                        if store.put_new(&keys[k], payload(w, k)).await.unwrap() {
                            won.push(k);
                        }
                    }
                    (w, won)
                })
            })
            .collect();
        let mut winner = vec![None; keys.len()];
        for t in tasks {
            let (w, won) = t.await.unwrap();
            for k in won {
                assert!(winner[k].is_none(), "{}: two winners ({:?} and {w})", keys[k], winner[k]);
                winner[k] = Some(w);
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.await.unwrap();
        for (k, key) in keys.iter().enumerate() {
            let w = winner[k].unwrap_or_else(|| panic!("{key}: no writer won"));
            for store in [&a, &b] {
                assert_eq!(store.get(key).await.unwrap(), Some(payload(w, k)), "{key}: the winner's bytes, whole");
            }
        }
        assert_eq!(temp_files(dir), Vec::<std::path::PathBuf>::new(), "temporary files left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_racing_creates_on_one_directory_have_one_whole_winner_per_key() {
        let dir = std::env::temp_dir().join(format!("wl-store-race2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (open_fs(dir.to_str().unwrap()).unwrap(), open_fs(dir.to_str().unwrap()).unwrap());
        let files = [a.fs.clone().unwrap(), b.fs.clone().unwrap()];
        let (a, b): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) = (Arc::new(a), Arc::new(b));
        assert!(a.write_concurrency() > 1, "creates on fs take no lock, so they may overlap");
        race_creates(a, b, &dir).await;
        for f in files {
            // This machine's file system has O_TMPFILE: the fast path was the one tested.
            assert!(!f.no_unnamed.load(std::sync::atomic::Ordering::SeqCst), "creates used unnamed files");
            assert!(!f.no_links.load(std::sync::atomic::Ordering::SeqCst), "and linked them without the lock file");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Where unnamed files (`O_TMPFILE`) are not available, creates write a
    /// named temporary file and link it: the same contract, still lock-free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_unnamed_files_creates_link_a_named_temporary_file_and_keep_the_contract() {
        fallback_keeps_the_contract("named", |s| {
            s.fs.as_ref().unwrap().no_unnamed.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(s.write_concurrency() > 1);
        })
        .await;
    }

    /// Two stores on one fresh directory, each set up by `force` (a
    /// fallback forced on), keep the storage contract and race creates with
    /// one whole winner per key.
    async fn fallback_keeps_the_contract(name: &str, force: impl Fn(&OpendalStore)) {
        let dir = std::env::temp_dir().join(format!("wl-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stores: Vec<OpendalStore> = (0..2).map(|_| open_fs(dir.to_str().unwrap()).unwrap()).collect();
        stores.iter().for_each(&force);
        let mut stores = stores.into_iter().map(|s| Arc::new(s) as Arc<dyn ObjectStore>);
        let (a, b) = (stores.next().unwrap(), stores.next().unwrap());
        exercise(a.clone()).await;
        race_creates(a, b, &dir).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Where the file system makes no hard links, creates check and rename
    /// under the lock file instead: the same contract, one at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_hard_links_creates_fall_back_to_the_lock_file_and_keep_the_contract() {
        fallback_keeps_the_contract("nolinks", |s| {
            s.fs.as_ref().unwrap().no_links.store(true, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(s.write_concurrency(), 1);
            assert!(s.describe().contains("no hard links"), "{}", s.describe());
        })
        .await;
    }

    /// The atomic-write directories below `<dir>/.tmp`.
    fn tmp_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir(dir.join(".tmp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs
    }

    fn backdate(path: &Path, by: std::time::Duration) {
        let when = std::time::SystemTime::now() - by;
        let f = std::fs::File::options().write(true).open(path).or_else(|_| std::fs::File::open(path)).unwrap();
        f.set_modified(when).unwrap();
    }

    /// A write in progress in one store (a running server) survives another
    /// store being opened on the same directory (`worldloom token create`),
    /// even when that write has been going for longer than any staleness
    /// threshold; the second store's own writes work too.
    #[tokio::test]
    async fn opening_a_store_never_removes_a_live_stores_temp_files() {
        let dir = std::env::temp_dir().join(format!("wl-store-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let uri = format!("fs://{}", dir.display());
        let server = open_fs(dir.to_str().unwrap()).unwrap();
        let mut w = server.op.writer("worlds/slow").await.unwrap();
        w.write(vec![1u8; 4096]).await.unwrap();
        let temp: Vec<_> = walk_files(&dir.join(".tmp"))
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("slow."))
            .collect();
        assert_eq!(temp.len(), 1, "the write in progress has one temp file: {temp:?}");
        // A write that has been going for two hours (a stalled client, a suspended process).
        backdate(&temp[0], std::time::Duration::from_secs(7200));
        for d in tmp_dirs(&dir) {
            backdate(&d, std::time::Duration::from_secs(7200));
        }
        let operator = open(&uri, &S3Settings::default()).unwrap();
        assert!(temp[0].exists(), "opening a second store removed a live store's temp file");
        operator.put(&Key::opaque("tokens/", b"t"), Bytes::from_static(b"token")).await.unwrap();
        w.write(vec![2u8; 4096]).await.unwrap();
        w.close().await.expect("the live store's write completes");
        let got = server.get(&Key("worlds/slow".into())).await.unwrap().unwrap();
        assert_eq!(got.len(), 8192);
        assert_eq!(operator.get(&Key::opaque("tokens/", b"t")).await.unwrap().unwrap(), &b"token"[..]);
        drop(operator);
        drop(server);
        assert!(tmp_dirs(&dir).is_empty(), "a closed store removes its own temp directory");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// What a dead store left (its owner lock is free) is removed at the next open.
    #[test]
    fn a_dead_stores_temp_directory_is_removed_at_open() {
        let dir = std::env::temp_dir().join(format!("wl-store-dead-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".tmp/1-dead/sub")).unwrap();
        std::fs::write(dir.join(".tmp/1-dead/sub/x.tmp"), b"half").unwrap();
        std::fs::write(dir.join(".tmp/1-dead.owner"), b"").unwrap();
        std::fs::write(dir.join(".tmp/legacy.tmp"), b"old").unwrap();
        backdate(&dir.join(".tmp/legacy.tmp"), std::time::Duration::from_secs(7200));
        std::fs::write(dir.join(".tmp/recent.tmp"), b"new").unwrap();
        let store = open(&format!("fs://{}", dir.display()), &S3Settings::default()).unwrap();
        assert!(!dir.join(".tmp/1-dead").exists() && !dir.join(".tmp/1-dead.owner").exists());
        assert!(!dir.join(".tmp/legacy.tmp").exists(), "an hour-old ownerless file is a crash leftover");
        assert!(dir.join(".tmp/recent.tmp").exists(), "a recent ownerless file may be an older build's write");
        assert_eq!(tmp_dirs(&dir).len(), 1, "only the new store's own directory");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A data path through a regular file is a clear, permanent error.
    #[tokio::test]
    async fn a_data_path_through_a_file_is_a_misconfiguration() {
        let dir = std::env::temp_dir().join(format!("wl-store-notdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        let e = open(&format!("fs://{}/file/data", dir.display()), &S3Settings::default()).unwrap_err();
        assert_eq!((e.kind, e.code()), (ErrorKind::Internal, "storage_misconfigured"), "{e}");
        // And at run time: a key below a path that became a regular file.
        let store = open(&format!("fs://{}/ok", dir.display()), &S3Settings::default()).unwrap();
        std::fs::write(dir.join("ok/worlds"), b"not a directory").unwrap();
        let e = store.put(&Key("worlds/w1".into()), Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!((e.kind, e.code()), (ErrorKind::Internal, "storage_misconfigured"), "{e}");
        assert!(e.message.contains("directory") && e.message.contains("does not clear by retrying"), "{e}");
        let e = store.put_new(&Key("worlds/w1".into()), Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!((e.kind, e.code()), (ErrorKind::Internal, "storage_misconfigured"), "{e}");
        assert!(e.message.contains("worlds/w1"), "names the object: {e}");
        // A create below a prefix never written makes its directories.
        let deep = Key::chunk(&WorldId::parse("w00112233445566aa").unwrap(), 3, ChunkCoord::new(-4, 9));
        assert!(store.put_new(&deep, Bytes::from_static(b"deep")).await.unwrap());
        assert_eq!(store.get(&deep).await.unwrap().unwrap(), &b"deep"[..]);
        let e = store.get(&Key("worlds/w1".into())).await.unwrap_err();
        assert_eq!(e.code(), "storage_misconfigured", "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn bad_uris_are_rejected_with_the_accepted_forms() {
        for uri in ["", "data", "fs://", "ftp://x", "s3://"] {
            let e = open(uri, &S3Settings::default()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{uri}");
            assert!(e.message.contains("fs://PATH"), "{e}");
        }
    }

    /// The fs backend's own listing names exactly what OpenDAL's does:
    /// every object below the prefix, recursively, sorted, nothing of the
    /// atomic-write directory.
    #[tokio::test]
    async fn fs_listing_matches_opendals_recursive_listing() {
        let dir = std::env::temp_dir().join(format!("wl-store-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = open_fs(dir.to_str().unwrap()).unwrap();
        let world = WorldId::parse("w00112233445566aa").unwrap();
        for c in [(0, 0), (15, 3), (16, 0), (-1, -1), (-17, 40)] {
            let key = Key::chunk(&world, 2, ChunkCoord::new(c.0, c.1));
            assert!(store.put_new(&key, Bytes::from_static(b"c")).await.unwrap());
        }
        store.put(&Key::world(&world), Bytes::from_static(b"w")).await.unwrap();
        for prefix in [
            Key::dir("chunks/"),
            Key::chunk_region(&world, 2, ChunkCoord::new(0, 0).region()),
            Key::chunk_region(&world, 2, ChunkCoord::new(99, 99).region()),
            Key::worlds(),
            Key::dir("nothing/"),
        ] {
            let ours = store.list(&prefix).await.unwrap();
            let mut theirs: Vec<Key> = store
                .op
                .list_with(prefix.as_str())
                .recursive(true)
                .await
                .map(|entries| {
                    entries
                        .into_iter()
                        .filter(|e| e.metadata().is_file())
                        .map(|e| Key(e.path().trim_start_matches('/').to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            theirs.sort();
            assert_eq!(ours, theirs, "{prefix}");
        }
        assert_eq!(store.list(&Key::dir("chunks/")).await.unwrap().len(), 5);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn chunk_keys_sit_in_their_regions_directory_and_name_their_coordinate() {
        let world = WorldId::parse("w00112233445566aa").unwrap();
        for (cx, cz) in [(0, 0), (15, 16), (-1, -17), (-10_000_000, 9_999_999), (i32::MIN, i32::MAX)] {
            let c = ChunkCoord::new(cx, cz);
            let key = Key::chunk(&world, 3, c);
            assert!(key.as_str().starts_with(Key::chunk_region(&world, 3, c.region()).as_str()), "{key}");
            assert_eq!(key.chunk_coord(), Some(c), "{key}");
        }
        assert_eq!(Key::chunk(&world, 0, ChunkCoord::new(-1, 16)).as_str(), "chunks/w00112233445566aa/r0/-1_1/-1_16");
        assert_eq!(Key::world(&world).chunk_coord(), None);
    }

    #[test]
    fn plugin_source_keys_accept_only_hex_digests() {
        assert!(Key::plugin_source(&"a".repeat(64)).is_ok());
        assert!(Key::plugin_source("../../etc/passwd").is_err());
        assert!(Key::plugin_source(&"A".repeat(64)).is_err());
    }
}
