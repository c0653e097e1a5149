//! Compiling the interpreter (Cranelift + fuel metering) once per machine
//! and caching the native artifact on disk.
//!
//! The cache file name carries a hash of everything the artifact depends on
//! (the wasm's SHA-256, wasmer version, compiler id, metering cost function,
//! target and CPU features, memory style), so a change of any of them makes a
//! new file instead of loading an incompatible one. Files are written to a
//! temporary name and renamed (a reader mmaps the file for the module's whole
//! life, so it must never change in place), and compilation is serialised
//! across processes with an `flock` on the cache directory.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmer::sys::{CompilerConfig, Cranelift, CraneliftOptLevel, EngineBuilder, NativeEngineExt};
use wasmer::{Engine, Module};

use crate::artifacts::{self, WASM_SHA256};
use crate::error::{SandboxError, SandboxErrorKind};
use crate::metering::{self, Metering};

/// Bump when anything about how the module is compiled changes.
const COMPILE_RECIPE: &str = "worldloom-sandbox-compile-v2";

fn compiler_config(metering: Arc<Metering>) -> Cranelift {
    let mut cfg = Cranelift::new();
    cfg.opt_level(CraneliftOptLevel::Speed);
    cfg.push_middleware(metering);
    cfg
}

fn cache_err(what: impl std::fmt::Display, err: impl std::fmt::Display) -> SandboxError {
    SandboxError::new(SandboxErrorKind::Cache, format!("{what}: {err}"))
}

/// The cache key text and the file it names.
pub fn cache_file(cache_dir: &Path, runtime: &Engine) -> (String, PathBuf) {
    let compile_engine: Engine = EngineBuilder::new(compiler_config(Arc::new(Metering::new(Vec::new())))).into();
    let target = runtime.target();
    let key = format!(
        "{COMPILE_RECIPE}\nwasm-sha256={WASM_SHA256}\nwasmer=7.4.2\ncompiler={}\n{}\n\
         triple={}\ncpu-features={:?}\nmemory-style=static\n",
        compile_engine.deterministic_id(),
        metering::VERSION,
        target.triple(),
        target.cpu_features(),
    );
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    (key, cache_dir.join(format!("python-snapshot-{}.wasmu", &digest[..32])))
}

/// Removes compiled modules of other keys (an older wasmer, recipe or
/// runtime): each is about 1 GB and can never be used again. A process still
/// running an old build keeps its mapping; unlinking does not disturb it.
fn prune_stale(cache_dir: &Path, current: &Path) {
    let Ok(entries) = fs::read_dir(cache_dir) else { return };
    for entry in entries.flatten() {
        let p = entry.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ours = p.with_extension("") == current.with_extension("");
        if name.starts_with("python-snapshot-") && !ours {
            match fs::remove_file(&p) {
                Ok(()) => tracing::info!(path = %p.display(), "removed a stale compiled module"),
                Err(e) => tracing::warn!(path = %p.display(), error = %e, "could not remove a stale compiled module"),
            }
        }
    }
}

struct DirLock(File);

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, SandboxError> {
        let path = dir.join(".compile.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| cache_err(format!("cannot open lock file {}", path.display()), e))?;
        // SAFETY: plain syscall on a descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(cache_err("flock on the module cache", std::io::Error::last_os_error()));
        }
        Ok(Self(f))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn deserialize(engine: &Engine, path: &Path) -> Result<Module, String> {
    // SAFETY: the file is one we compiled and renamed into place ourselves
    // (never rewritten in place), in a directory only the service writes.
    unsafe { Module::deserialize_from_file(engine, path) }.map_err(|e| e.to_string())
}

/// Loads the compiled interpreter from the cache, compiling it first if
/// needed. `engine` is the runtime engine the module will be used with.
pub fn load_or_compile(engine: &Engine, wasm_path: &Path, cache_dir: &Path) -> Result<Module, SandboxError> {
    fs::create_dir_all(cache_dir)
        .map_err(|e| cache_err(format!("cannot create cache directory {}", cache_dir.display()), e))?;
    let (key, path) = cache_file(cache_dir, engine);
    if path.exists() {
        match deserialize(engine, &path) {
            Ok(m) => return Ok(m),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cached module unusable; recompiling"),
        }
    }
    let _lock = DirLock::acquire(cache_dir)?;
    // Another process may have compiled it while we waited.
    if path.exists() {
        match deserialize(engine, &path) {
            Ok(m) => return Ok(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "removing unusable cached module");
                let _ = fs::remove_file(&path);
            }
        }
    }
    let wasm = artifacts::read_verified(wasm_path, WASM_SHA256)?;
    let t = Instant::now();
    tracing::info!(path = %path.display(), "compiling the Python interpreter (once per machine, about a minute)");
    let catches = metering::functions_with_catches(&wasm)
        .map_err(|e| SandboxError::new(SandboxErrorKind::Compile, format!("scanning {}: {e}", wasm_path.display())))?;
    let metering = Arc::new(Metering::new(catches));
    let census = metering.census.clone();
    let compile_engine: Engine = EngineBuilder::new(compiler_config(metering)).into();
    let module = Module::new(&compile_engine, &wasm)
        .map_err(|e| SandboxError::new(SandboxErrorKind::Compile, format!("compiling {}: {e}", wasm_path.display())))?;
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (table_ops, segment_ops) = (count(&census.table_ops), count(&census.segment_ops));
    let (throws, bulk_ops) = (count(&census.throws), count(&census.bulk_ops));
    if count(&census.legacy_eh_ops) != 0 {
        return Err(SandboxError::new(
            SandboxErrorKind::Compile,
            "the interpreter uses legacy exception handling (try/catch/delegate), which the fuel \
             metering's call-depth counter does not follow",
        ));
    }
    tracing::info!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        table_ops,
        segment_ops,
        throws,
        bulk_ops,
        "interpreter compiled"
    );
    if table_ops != 0 {
        return Err(SandboxError::new(
            SandboxErrorKind::Compile,
            format!(
                "the interpreter contains {table_ops} table-mutating instructions; the snapshot \
                 reset does not restore tables, so this build cannot be sandboxed soundly"
            ),
        ));
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    module.serialize_to_file(&tmp).map_err(|e| cache_err(format!("writing {}", tmp.display()), e))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| cache_err(format!("syncing {}", tmp.display()), e))?;
    fs::write(
        path.with_extension("key"),
        format!("{key}table-ops={table_ops}\nsegment-ops={segment_ops}\nthrows={throws}\nbulk-ops={bulk_ops}\n"),
    )
    .map_err(|e| cache_err(format!("writing the cache key next to {}", path.display()), e))?;
    fs::rename(&tmp, &path).map_err(|e| cache_err(format!("renaming {} into place", tmp.display()), e))?;
    prune_stale(cache_dir, &path);
    drop(module);
    deserialize(engine, &path).map_err(|e| cache_err(format!("loading freshly compiled {}", path.display()), e))
}
