//! One live interpreter instance: its store, host state and memory; running
//! one `turn` under limits; and restoring it to a memory image between turns.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use wasmer::{
    AsStoreMut, Engine as WasmerEngine, FunctionEnv, Global, Instance, Memory, Pages, RuntimeError, Store,
    TypedFunction, Value,
};

use crate::error::SandboxError;
use crate::host::{self, HostState, Outcome, Request};
use crate::image::{self, Image, ResetProfile, WriteTracker};
use crate::metering;
use crate::tunables::take_grow_failures;
use crate::watchdog::FuelCell;
use crate::{Core, ResetStrategy};

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
    /// Wall-clock deadline (the watchdog); `None` for trusted set-up turns,
    /// which must not start the watchdog thread (the zygote stays single-threaded).
    pub deadline: Option<Duration>,
    /// Virtual-clock deadline: how far sleeps may move the guest's clock.
    pub virtual_deadline: Duration,
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
    /// Files the guest opened and did not close.
    pub open_files: usize,
}

pub struct Live {
    store: Store,
    _instance: Instance,
    memory: Memory,
    turn: TypedFunction<(i32, i32), i32>,
    alloc: TypedFunction<i32, i32>,
    remaining: Global,
    exhausted: Global,
    depth: Global,
    throw_frames: Global,
    /// How many store globals a reset restores.
    restored_globals: usize,
    /// The storage of `remaining`, for the watchdog and host-call charges.
    fuel: FuelCell,
    host: FunctionEnv<HostState>,
    /// Base address of linear memory (stable: static memory style).
    base: usize,
    /// The image currently overlaid on the memory, if any.
    image: Option<Arc<Image>>,
    /// Write tracking over the overlay (Overlay strategy, when the kernel
    /// supports it; otherwise written pages are dropped instead).
    tracker: Option<WriteTracker>,
    /// Memory pages reset since the last overlay (for stats/bench).
    pub pages_reset: usize,
    /// Where the last tracked reset spent its time (for the bench).
    pub last_reset: ResetProfile,
    /// Backtrace frames wasmer has kept for this instance's exceptions
    /// (see [`Live::exception_debt`]).
    throw_frames_kept: u64,
}

/// An instance whose exceptions have kept this much host memory (estimated)
/// is replaced by a fresh one from its snapshot after the call.
pub const MAX_EXCEPTION_DEBT: u64 = 64 << 20;

// SAFETY: wasmer 7 made `Store` !Send only because `OnCalledHandler` lost
// its `Send` bound (wasmerio/wasmer#7001; the store was Send up to 6.x).
// We never install an on-called handler; every host value we put in the
// store is Send (`FunctionEnv::new` requires it); we create no extern
// objects; and the sys backend gives a store no thread affinity between
// calls (trap handlers are process-wide). The raw fuel pointer points into
// the instance's own VMContext, which moves with it. A `Live` is only ever
// used through `&mut` by one thread at a time, so moving it to another
// thread between calls is sound.
unsafe impl Send for Live {}

fn inst_err(what: &str) -> impl FnOnce(String) -> SandboxError + '_ {
    move |e| SandboxError::instantiation(what, e)
}

/// A value no real fuel counter holds, used once to find the counter's storage.
const SENTINEL: i64 = 0x5eed_f00d_1234_5678;

/// The address of `global`'s storage in the store (wasmer has no public
/// accessor): set it to a sentinel and find the one store global holding it.
/// Also checks the store keeps globals in module order (a reset restores
/// them by index): the fuel global must sit at `expected_index`.
fn global_storage(store: &mut Store, global: &Global, expected_index: usize) -> Result<NonNull<i64>, SandboxError> {
    let old = global.get(store);
    global.set(store, Value::I64(SENTINEL)).map_err(|e| SandboxError::internal(format!("metering global: {e}")))?;
    let mut found = None;
    for (i, g) in store.objects_mut().as_sys().iter_globals().enumerate() {
        let p = g.vmglobal().as_ptr().cast::<i64>();
        // SAFETY: every store global's definition is valid while the store
        // lives; an 8-byte read of its first field.
        if unsafe { p.read() } == SENTINEL {
            if found.is_some() {
                return Err(SandboxError::internal("two globals hold the metering sentinel"));
            }
            if i != expected_index {
                return Err(SandboxError::internal(format!(
                    "the store keeps the fuel global at {i}, not at its module index {expected_index}"
                )));
            }
            found = NonNull::new(p);
        }
    }
    global.set(store, old).map_err(|e| SandboxError::internal(format!("metering global: {e}")))?;
    found.ok_or_else(|| SandboxError::internal("the metering global is not among the store's globals"))
}

/// The store's globals (every instance global), as raw 128-bit values.
pub fn capture_globals(store: &mut impl AsStoreMut) -> Vec<u128> {
    store.objects_mut().as_u128_globals()
}

impl Live {
    /// A fresh instance of the interpreter (memory as the module declares it).
    pub fn new(core: &Core, engine: &WasmerEngine) -> Result<Live, SandboxError> {
        let mut store = Store::new(engine.clone());
        let host = FunctionEnv::new(&mut store, HostState::new(core.stdlib.clone()));
        let imports = host::imports(&mut store, &core.module, &host);
        let instance = Instance::new(&mut store, &core.module, &imports)
            .map_err(|e| SandboxError::instantiation("instantiating the interpreter", e.to_string()))?;
        let ex = &instance.exports;
        let memory = ex.get_memory("memory").map_err(|e| inst_err("memory export")(e.to_string()))?.clone();
        let turn = ex.get_typed_function(&store, "turn").map_err(|e| inst_err("turn export")(e.to_string()))?;
        let alloc =
            ex.get_typed_function(&store, "host_alloc").map_err(|e| inst_err("host_alloc export")(e.to_string()))?;
        let remaining =
            ex.get_global(metering::REMAINING).map_err(|e| inst_err("metering export")(e.to_string()))?.clone();
        let exhausted =
            ex.get_global(metering::EXHAUSTED).map_err(|e| inst_err("metering export")(e.to_string()))?.clone();
        let depth = ex.get_global(metering::DEPTH).map_err(|e| inst_err("metering export")(e.to_string()))?.clone();
        let throw_frames =
            ex.get_global(metering::THROW_FRAMES).map_err(|e| inst_err("metering export")(e.to_string()))?.clone();
        // SAFETY: the global lives in this instance's VMContext, which lives
        // (and moves) with this `Live`; it is an aligned i64.
        let fuel_index = core.restored_globals - metering::RESTORED_GLOBALS;
        let fuel = unsafe { FuelCell::new(global_storage(&mut store, &remaining, fuel_index)?) };
        {
            let h = host.as_mut(&mut store);
            h.memory = Some(memory.clone());
            h.alloc = Some(alloc.clone());
            h.fuel = Some(fuel);
        }
        let base = memory.view(&store).data_ptr() as usize;
        Ok(Live {
            store,
            _instance: instance,
            memory,
            turn,
            alloc,
            remaining,
            exhausted,
            depth,
            throw_frames,
            restored_globals: core.restored_globals,
            fuel,
            host,
            base,
            image: None,
            tracker: None,
            pages_reset: 0,
            last_reset: ResetProfile::default(),
            throw_frames_kept: 0,
        })
    }

    /// A fresh instance showing `image` (memory and globals).
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
        let n = self.restored_globals;
        if image.globals.len() < n {
            return Err(SandboxError::internal(format!(
                "the snapshot has {} globals, a reset restores {n}",
                image.globals.len()
            )));
        }
        let objects = self.store.objects_mut();
        for (i, v) in image.globals[..n].iter().enumerate() {
            objects.set_global_unchecked(i, *v);
        }
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
        let virtual_ms = u64::try_from(limits.virtual_deadline.as_millis()).unwrap_or(u64::MAX);
        self.host.as_mut(&mut self.store).begin_turn(request, rng, virtual_ms, limits.frame_cap, limits.log_bytes);
        take_grow_failures();
        self.set_fuel(limits.fuel);
        let t0 = Instant::now();
        let armed = match limits.deadline {
            Some(d) => Some(
                core.watchdog
                    .arm(t0 + d, self.fuel)
                    .map_err(|e| SandboxError::io("starting the watchdog thread", e))?,
            ),
            None => None,
        };
        let result = self.turn.call(&mut self.store, ptr, len);
        let deadline_fired = armed.is_some_and(|a| a.disarm());
        let wall = t0.elapsed();
        let grow_failures = take_grow_failures();
        let (fuel_left, exhausted) = self.fuel();
        let memory_bytes = self.memory_len() as u64;
        let st = self.host.as_mut(&mut self.store);
        let fuel_exhausted = exhausted || st.fuel_exhausted;
        let outcome = st.end_turn();
        let (log, log_overflowed) = st.log.take();
        let open_files = st.files.opened();
        let frames = match self.throw_frames.get(&mut self.store) {
            Value::I64(x) => x as u64,
            _ => 0,
        };
        self.throw_frames_kept = self.throw_frames_kept.saturating_add(frames);
        Ok(TurnResult {
            result,
            deadline_fired,
            fuel_used: if fuel_exhausted { limits.fuel } else { limits.fuel.saturating_sub(fuel_left) },
            fuel_exhausted,
            outcome,
            log,
            log_overflowed,
            grow_failures,
            wall,
            memory_bytes,
            open_files,
        })
    }

    /// Host memory (estimated) held by the exceptions this instance's guest
    /// has thrown: wasmer keeps every exception object, with a native
    /// backtrace, until the store is dropped. Only a new instance frees it.
    pub fn exception_debt(&self) -> u64 {
        // A backtrace frame is about 48 bytes (backtrace::Frame plus the Vec).
        self.throw_frames_kept.saturating_mul(48)
    }

    fn set_fuel(&mut self, points: u64) {
        // Types are fixed by the metering middleware (i64 / i32); a failure
        // would mean a different module, which load() rejects.
        let _ = self.remaining.set(&mut self.store, Value::I64(points as i64));
        let _ = self.exhausted.set(&mut self.store, Value::I32(0));
        let _ = self.depth.set(&mut self.store, Value::I32(0));
        let _ = self.throw_frames.set(&mut self.store, Value::I64(0));
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

    /// Snapshots the current state (between turns) into a new image and
    /// switches this instance onto it.
    pub fn capture(&mut self, call_src: [(i32, i32); 2], load_src: (i32, i32)) -> Result<Arc<Image>, SandboxError> {
        self.check_base()?;
        let len = self.memory_len();
        let globals = capture_globals(&mut self.store);
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
        let keep_hot = match strategy {
            ResetStrategy::Overlay => true,
            ResetStrategy::OverlayReprotect => false,
            _ => return,
        };
        if TRACKING_UNAVAILABLE.load(Ordering::Relaxed) {
            return;
        }
        let len = self.memory_len();
        // SAFETY: the accessible range of our memory, an overlay; no guest runs.
        match unsafe { WriteTracker::new(self.base as *mut u8, len, keep_hot) } {
            Ok(t) => self.tracker = Some(t),
            Err(e) => {
                TRACKING_UNAVAILABLE.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "userfaultfd write tracking unavailable; resetting by dropping written pages");
            }
        }
    }

    /// Restores memory and globals to `image` (between turns; the host state
    /// is rebuilt at the start of every turn).
    pub fn reset(&mut self, image: &Arc<Image>, strategy: ResetStrategy) -> Result<(), SandboxError> {
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
            ResetStrategy::Overlay | ResetStrategy::OverlayReprotect | ResetStrategy::OverlayDiscard if same_image => {
                match &mut self.tracker {
                    // SAFETY: the tracker covers our memory's accessible range, an
                    // overlay of `image`; no guest runs.
                    Some(t) => self.pages_reset += unsafe { t.restore(image, &mut self.last_reset)? },
                    None => {
                        // SAFETY: our memory's accessible range, currently an overlay of `image`.
                        self.pages_reset += unsafe { image::discard_written(base, len)? };
                        self.track(strategy);
                    }
                }
            }
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
        tracing::trace!(
            memory_us = t_mem.as_micros() as u64,
            globals_us = (t_prof.elapsed() - t_mem).as_micros() as u64,
            pages_reset_total = self.pages_reset,
            "sandbox reset"
        );
        Ok(())
    }
}
