//! One live interpreter instance: its store, WASI environment, host state
//! and memory; running one `turn` under limits; and restoring it to a
//! memory image between turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use virtual_fs::NullFile;
use wasmer::{
    Engine as WasmerEngine, FunctionEnv, Global, Instance, Memory, Pages, RuntimeError, Store, TypedFunction, Value,
};
use wasmer_wasix::{WasiEnv, WasiFunctionEnv, capture_store_snapshot, restore_store_snapshot};

use crate::artifacts::GUEST_STDLIB_DIR;
use crate::error::SandboxError;
use crate::host::{self, HostState, Outcome, Request};
use crate::image::{self, Image, WriteTracker};
use crate::stdio::CappedLog;
use crate::tunables::take_grow_failures;
use crate::{Core, ResetStrategy};

/// The environment variables the guest sees: only what CPython needs.
const GUEST_ENV: &[(&str, &str)] =
    &[("TMPDIR", "/tmp"), ("PYTHONTZPATH", ""), ("PYTHONHASHSEED", "0"), ("NO_COLOR", "1"), ("PYTHON_COLORS", "0")];
const GUEST_ARGV0: &str = "/usr/local/bin/python.wasm";

/// Set once userfaultfd write tracking failed; later sandboxes do not retry.
static TRACKING_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Where a turn's source comes from.
#[derive(Clone, Copy)]
pub enum TurnSource<'a> {
    /// Copied into the guest with `host_alloc` first.
    Text(&'a str),
    /// Already in the guest's memory (pre-placed in the image).
    At(i32, i32),
}

/// Limits of one turn.
#[derive(Clone, Copy, Debug)]
pub struct TurnLimits {
    pub fuel: u64,
    pub deadline: Duration,
    pub log_bytes: usize,
    pub frame_cap: u64,
}

/// Everything a turn produced; classified by the caller.
pub struct TurnResult {
    pub result: Result<i32, RuntimeError>,
    pub deadline_fired: bool,
    pub fuel_used: u64,
    pub fuel_exhausted: bool,
    pub outcome: Outcome,
    pub log: String,
    pub log_overflowed: bool,
    pub grow_failures: u64,
    pub wall: Duration,
    pub memory_bytes: u64,
}

pub struct Live {
    store: Store,
    instance: Instance,
    memory: Memory,
    turn: TypedFunction<(i32, i32), i32>,
    alloc: TypedFunction<i32, i32>,
    remaining: Global,
    exhausted: Global,
    wasi: WasiFunctionEnv,
    host: FunctionEnv<HostState>,
    log: CappedLog,
    /// Base address of linear memory (stable: static memory style).
    base: usize,
    /// The image currently overlaid on the memory, if any.
    image: Option<Arc<Image>>,
    /// Write tracking over the overlay (Overlay strategy, when the kernel
    /// supports it; otherwise written pages are dropped instead).
    tracker: Option<WriteTracker>,
    /// Memory pages reset since the last overlay (for stats/bench).
    pub pages_reset: usize,
}

// SAFETY: wasmer 7 made `Store` !Send only because `OnCalledHandler` lost
// its `Send` bound (wasmerio/wasmer#7001; the store was Send up to 6.x).
// We never install an on-called handler; every host value we put in the
// store is Send (`FunctionEnv::new` requires it: `WasiEnv`, `HostState`);
// we create no extern objects; and the sys backend gives a store no thread
// affinity between calls (interrupt state is installed for the duration of
// a call and removed when it returns; trap handlers are process-wide). A
// `Live` is only ever used through `&mut` by one thread at a time, so moving
// it to another thread between calls is sound.
unsafe impl Send for Live {}

fn inst_err(what: &str) -> impl FnOnce(String) -> SandboxError + '_ {
    move |e| SandboxError::instantiation(what, e)
}

impl Live {
    /// A fresh instance of the interpreter (memory as the module declares it).
    pub fn new(core: &Core, engine: &WasmerEngine) -> Result<Live, SandboxError> {
        let mut store = Store::new(engine.clone());
        let log = CappedLog::new(0);
        let env = fresh_env(core, &log)?;
        let mut wasi = WasiFunctionEnv::new(&mut store, env);
        let mut imports = wasi
            .import_object(&mut store, &core.module)
            .map_err(|e| inst_err("building WASI imports")(e.to_string()))?;
        let host = FunctionEnv::new(&mut store, HostState::default());
        host::override_imports(&mut store, &core.module, &mut imports, &host);
        let instance = Instance::new(&mut store, &core.module, &imports).map_err(|e| {
            let text = e.to_string();
            SandboxError::instantiation("instantiating the interpreter", text)
        })?;
        wasi.initialize(&mut store, instance.clone()).map_err(|e| inst_err("initialising WASI")(e.to_string()))?;
        let ex = &instance.exports;
        let memory = ex.get_memory("memory").map_err(|e| inst_err("memory export")(e.to_string()))?.clone();
        let turn = ex.get_typed_function(&store, "turn").map_err(|e| inst_err("turn export")(e.to_string()))?;
        let alloc =
            ex.get_typed_function(&store, "host_alloc").map_err(|e| inst_err("host_alloc export")(e.to_string()))?;
        let remaining = ex
            .get_global("wasmer_metering_remaining_points")
            .map_err(|e| inst_err("metering export")(e.to_string()))?
            .clone();
        let exhausted = ex
            .get_global("wasmer_metering_points_exhausted")
            .map_err(|e| inst_err("metering export")(e.to_string()))?
            .clone();
        {
            let h = host.as_mut(&mut store);
            h.memory = Some(memory.clone());
            h.alloc = Some(alloc.clone());
        }
        let base = memory.view(&store).data_ptr() as usize;
        Ok(Live {
            store,
            instance,
            memory,
            turn,
            alloc,
            remaining,
            exhausted,
            wasi,
            host,
            log,
            base,
            image: None,
            tracker: None,
            pages_reset: 0,
        })
    }

    /// A fresh instance showing `image` (memory, globals, WASI state).
    pub fn from_image(
        core: &Core,
        engine: &WasmerEngine,
        image: &Arc<Image>,
        strategy: ResetStrategy,
    ) -> Result<Live, SandboxError> {
        let mut live = Live::new(core, engine)?;
        let cur = live.memory_len();
        if image.len() < cur {
            return Err(SandboxError::internal("an image is smaller than the module's initial memory"));
        }
        if image.len() > cur {
            let pages = ((image.len() - cur) / wasmer::WASM_PAGE_SIZE) as u32;
            live.memory.grow(&mut live.store, Pages(pages)).map_err(|e| {
                SandboxError::instantiation("growing memory to the snapshot's size (is the memory cap below it?)", e)
            })?;
        }
        live.check_base()?;
        // SAFETY: the accessible range of this instance's static memory, no guest running.
        unsafe { image.overlay(live.base as *mut u8)? };
        live.image = Some(image.clone());
        live.track(strategy);
        live.restore_globals(image)?;
        live.fresh_wasi(core)?;
        Ok(live)
    }

    pub fn memory_len(&self) -> usize {
        self.memory.view(&self.store).data_size() as usize
    }

    fn check_base(&self) -> Result<(), SandboxError> {
        if self.memory.view(&self.store).data_ptr() as usize != self.base {
            return Err(SandboxError::internal("linear memory moved (memory style is not static?)"));
        }
        Ok(())
    }

    fn restore_globals(&mut self, image: &Image) -> Result<(), SandboxError> {
        let now = capture_store_snapshot(&mut self.store);
        if now.globals.len() != image.globals.globals.len() {
            return Err(SandboxError::internal(format!(
                "store has {} globals, the snapshot {}",
                now.globals.len(),
                image.globals.globals.len()
            )));
        }
        restore_store_snapshot(&mut self.store, &image.globals);
        Ok(())
    }

    /// Swaps in a freshly built WASI environment (fd table, process and
    /// thread state, inode cache) behind the same imports.
    fn fresh_wasi(&mut self, core: &Core) -> Result<(), SandboxError> {
        let env = fresh_env(core, &self.log)?;
        *self.wasi.data_mut(&mut self.store) = env;
        self.wasi
            .initialize(&mut self.store, self.instance.clone())
            .map_err(|e| SandboxError::instantiation("re-initialising WASI", e))?;
        self.host.as_mut(&mut self.store).open_fds.clear();
        Ok(())
    }

    /// Runs one turn under `limits`. The instance is dirty afterwards until
    /// [`Live::reset`].
    pub fn run_turn(
        &mut self,
        core: &Core,
        src: TurnSource<'_>,
        request: Request,
        rng: ChaCha20Rng,
        limits: TurnLimits,
    ) -> Result<TurnResult, SandboxError> {
        let (ptr, len) = match src {
            TurnSource::At(p, l) => (p, l),
            TurnSource::Text(text) => self.place(text)?,
        };
        let deadline_ms = u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX);
        self.host.as_mut(&mut self.store).begin_turn(request, rng, deadline_ms, limits.frame_cap);
        self.log.reset(limits.log_bytes);
        take_grow_failures();
        self.set_fuel(limits.fuel);
        let interrupter = self.store.interrupter();
        let t0 = Instant::now();
        let armed = core.watchdog.arm(t0 + limits.deadline, interrupter);
        let result = self.turn.call(&mut self.store, ptr, len);
        let deadline_fired = armed.disarm();
        let wall = t0.elapsed();
        let grow_failures = take_grow_failures();
        let (fuel_left, fuel_exhausted) = self.fuel();
        let outcome = self.host.as_mut(&mut self.store).end_turn();
        let (log, log_overflowed) = self.log.take();
        Ok(TurnResult {
            result,
            deadline_fired,
            fuel_used: limits.fuel.saturating_sub(fuel_left),
            fuel_exhausted,
            outcome,
            log,
            log_overflowed,
            grow_failures,
            wall,
            memory_bytes: self.memory_len() as u64,
        })
    }

    fn set_fuel(&mut self, points: u64) {
        // Types are fixed by the metering middleware (i64 / i32); a failure
        // would mean a different module, which load() rejects.
        let _ = self.remaining.set(&mut self.store, Value::I64(points as i64));
        let _ = self.exhausted.set(&mut self.store, Value::I32(0));
    }

    /// (points left, exhausted?)
    fn fuel(&mut self) -> (u64, bool) {
        let exhausted = matches!(self.exhausted.get(&mut self.store), Value::I32(x) if x > 0);
        let left = match self.remaining.get(&mut self.store) {
            Value::I64(x) => x as u64,
            _ => 0,
        };
        if exhausted { (0, true) } else { (left, false) }
    }

    /// Allocates `text` in the guest (between turns) and returns its place.
    pub fn place(&mut self, text: &str) -> Result<(i32, i32), SandboxError> {
        let len = i32::try_from(text.len()).map_err(|_| SandboxError::internal("text too long"))?;
        self.set_fuel(u64::MAX / 2);
        let p = self.alloc.call(&mut self.store, len).map_err(|e| SandboxError::instantiation("host_alloc", e))?;
        if p == 0 {
            return Err(SandboxError::instantiation("host_alloc", "out of memory"));
        }
        self.memory
            .view(&self.store)
            .write(u64::from(p as u32), text.as_bytes())
            .map_err(|e| SandboxError::instantiation("writing guest memory", e))?;
        Ok((p, len))
    }

    /// Descriptors the guest opened and did not close.
    pub fn open_fds(&self) -> Vec<u32> {
        self.host.as_ref(&self.store).open_fds.iter().copied().collect()
    }

    /// Snapshots the current state (between turns) into a new image and
    /// switches this instance onto it.
    pub fn capture(&mut self, call_src: (i32, i32), load_src: (i32, i32)) -> Result<Arc<Image>, SandboxError> {
        self.check_base()?;
        let len = self.memory_len();
        let globals = capture_store_snapshot(&mut self.store);
        // SAFETY: the accessible part of this instance's memory; no guest runs.
        let image = unsafe { Image::capture(self.base as *const u8, len, globals, call_src, load_src)? };
        let image = Arc::new(image);
        // SAFETY: as above; the image has the same contents, so this only
        // swaps the backing of the pages.
        unsafe { image.overlay(self.base as *mut u8)? };
        self.image = Some(image.clone());
        self.tracker = None;
        Ok(image)
    }

    /// Starts write tracking over the current overlay (Overlay strategy).
    fn track(&mut self, strategy: ResetStrategy) {
        self.tracker = None;
        if strategy != ResetStrategy::Overlay || TRACKING_UNAVAILABLE.load(Ordering::Relaxed) {
            return;
        }
        let len = self.memory_len();
        // SAFETY: the accessible range of our memory, an overlay; no guest runs.
        match unsafe { WriteTracker::new(self.base as *mut u8, len) } {
            Ok(t) => self.tracker = Some(t),
            Err(e) => {
                TRACKING_UNAVAILABLE.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "userfaultfd write tracking unavailable; resetting by dropping written pages");
            }
        }
    }

    /// Restores memory, globals and WASI state to `image` (between turns).
    pub fn reset(&mut self, core: &Core, image: &Arc<Image>, strategy: ResetStrategy) -> Result<(), SandboxError> {
        self.check_base()?;
        let cur = self.memory_len();
        let len = image.len();
        if cur < len {
            return Err(SandboxError::internal("memory shrank below the snapshot"));
        }
        let base = self.base as *mut u8;
        if cur > len {
            // Grown during the call: back to the image's size. wasmer has no
            // shrink, so reset to 0 and grow (mprotect RW on the range, a no-op
            // on the overlay), then make the tail PROT_NONE and free it.
            self.memory.reset(&mut self.store).map_err(|e| SandboxError::internal(format!("memory reset: {e}")))?;
            self.memory
                .grow(&mut self.store, Pages((len / wasmer::WASM_PAGE_SIZE) as u32))
                .map_err(|e| SandboxError::internal(format!("memory regrow: {e}")))?;
            self.check_base()?;
            // SAFETY: `[len, cur)` is past the restored length of our static memory.
            unsafe { image::release_tail(base.add(len), cur - len)? };
        }
        let t_prof = Instant::now(); // for the trace below
        let same_image = self.image.as_ref().is_some_and(|i| Arc::ptr_eq(i, image));
        match strategy {
            ResetStrategy::Overlay | ResetStrategy::OverlayDiscard if same_image => match &self.tracker {
                // SAFETY: the tracker covers our memory's accessible range, an
                // overlay of `image`; no guest runs.
                Some(t) => self.pages_reset += unsafe { t.restore(image)? },
                None => {
                    // SAFETY: our memory's accessible range, currently an overlay of `image`.
                    self.pages_reset += unsafe { image::discard_written(base, len)? };
                    self.track(strategy);
                }
            },
            ResetStrategy::FullCopy if same_image => {
                // SAFETY: our memory's accessible range, mapped read-write.
                unsafe { image.copy_into(base)? };
                self.pages_reset += len / 4096;
            }
            _ => {
                // SAFETY: our memory's accessible range.
                unsafe { image.overlay(base)? };
                self.image = Some(image.clone());
                self.track(strategy);
            }
        }
        let t_mem = t_prof.elapsed();
        self.restore_globals(image)?;
        let t_glob = t_prof.elapsed();
        self.fresh_wasi(core)?;
        tracing::trace!(
            memory_us = t_mem.as_micros() as u64,
            globals_us = (t_glob - t_mem).as_micros() as u64,
            wasi_us = (t_prof.elapsed() - t_glob).as_micros() as u64,
            pages_reset_total = self.pages_reset,
            "sandbox reset"
        );
        Ok(())
    }
}

fn fresh_env(core: &Core, log: &CappedLog) -> Result<WasiEnv, SandboxError> {
    let mut b = WasiEnv::builder("python")
        .runtime(core.runtime.clone())
        .args([GUEST_ARGV0])
        .fs(core.stdlib.clone() as Arc<dyn virtual_fs::FileSystem + Send + Sync>)
        .stdin(Box::new(NullFile::default()))
        .stdout(log.file())
        .stderr(log.file())
        .disable_default_builtins(true);
    for (k, v) in GUEST_ENV {
        b = b.env(k, v);
    }
    let b = b
        .preopen_build(|p| p.directory("/").alias(GUEST_STDLIB_DIR).read(true))
        .map_err(|e| SandboxError::instantiation("preopening the stdlib directory", e))?;
    b.build().map_err(|e| SandboxError::instantiation("building the WASI environment", e))
}
