//! The deadline, enforced cooperatively: one thread per engine family that,
//! when a call passes its wall-clock deadline, stores 0 into that call's
//! remaining-fuel global. The guest checks that global at every accounting
//! point (a branch, call or throw; see `metering.rs`), so it traps at its
//! next wasm instruction boundary, exactly as if its fuel ran out. Nothing
//! is ever delivered to the guest's thread: no signal can land inside host
//! code (wasmer's libcalls, the unwinder, an allocator holding a lock), so
//! stopping a call cannot leave a lock held.
//!
//! A host function that runs long is not stopped by this (it checks no
//! fuel); every host function's work is bounded instead (`host.rs`), and the
//! node's supervisor kills a worker process that does not answer by deadline
//! plus grace.
//!
//! A call registers `(deadline, fuel cell)` and gets an [`Armed`] guard.
//! Firing (set the guard's flag, then zero the cell) and disarming both
//! happen under one mutex, so once a call is disarmed nothing touches its
//! cell any more. The store to the cell races with the guest's own
//! read-modify-write of the counter (a zero can be overwritten by
//! `old - cost`), so it is repeated every [`RETRY`] until the call returns.
//! Whether a call timed out is decided from the guard's flag, never from
//! the trap.
//!
//! The thread starts on the first armed call, not when the engine loads:
//! the zygote process that loads the engine must stay single-threaded to
//! fork workers safely.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const RETRY: Duration = Duration::from_millis(1);

/// The storage of a running instance's remaining-fuel global.
#[derive(Clone, Copy, Debug)]
pub struct FuelCell(NonNull<AtomicI64>);

// SAFETY: the pointer is only dereferenced (as an atomic) by the watchdog
// while the call that registered it is armed, during which the instance and
// its global storage are alive (the guard borrows the watchdog and is
// disarmed before the instance can be dropped or moved to another store).
unsafe impl Send for FuelCell {}

impl FuelCell {
    /// # Safety
    /// `ptr` must point at an 8-byte aligned i64 that stays valid while any
    /// call armed with this cell is running.
    pub unsafe fn new(ptr: NonNull<i64>) -> Self {
        FuelCell(ptr.cast())
    }

    fn zero(self) {
        // SAFETY: valid for the armed call's duration (see `new`); an aligned
        // 8-byte atomic store, so the guest sees either the old or the new value.
        unsafe { self.0.as_ref() }.store(0, Ordering::SeqCst);
    }

    /// Units left (for the profile's marks; a running turn's own thread).
    pub fn left(self) -> u64 {
        // SAFETY: as for `zero`: only called by host functions of a running turn.
        unsafe { self.0.as_ref() }.load(Ordering::SeqCst) as u64
    }

    /// Takes `n` units (the counter is unsigned) if that many are left;
    /// otherwise leaves 0 and returns false. Used by host calls, which run
    /// on the guest's own thread; the compare-and-swap never overwrites a
    /// zero the watchdog stored meanwhile.
    pub fn take(self, n: u64) -> bool {
        // SAFETY: as for `zero`: only called by host functions of a running turn.
        let a = unsafe { self.0.as_ref() };
        let mut cur = a.load(Ordering::SeqCst);
        loop {
            let left = cur as u64;
            if left < n {
                a.store(0, Ordering::SeqCst);
                return false;
            }
            match a.compare_exchange_weak(cur, (left - n) as i64, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }
}

struct Entry {
    /// When to (re-)zero the cell: the deadline, then every [`RETRY`].
    deadline: Instant,
    cell: FuelCell,
    fired: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    /// When the thread will next wake up on its own (`None`: not until
    /// notified). An armed deadline later than this needs no wake-up: calls
    /// arm and disarm without waking the thread, except after a quiet spell.
    wake_at: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The deadline thread (started on first use; it lives as long as the process).
#[derive(Default)]
pub struct Watchdog {
    shared: Arc<Shared>,
    started: OnceLock<std::io::Result<()>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchdog")
    }
}

impl Watchdog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the thread if it is not running yet.
    pub fn start(&self) -> std::io::Result<()> {
        let r = self.started.get_or_init(|| {
            let shared = self.shared.clone();
            let (ready, wait) = std::sync::mpsc::channel();
            std::thread::Builder::new().name("worldloom-sandbox-watchdog".into()).spawn(move || {
                // Everything a new thread does for itself (its name, signal
                // stack, guard page) is done by now: a worker may install its
                // system-call filter once it hears this.
                let _ = ready.send(());
                run(&shared)
            })?;
            wait.recv().map_err(|_| std::io::Error::other("the watchdog thread died at start"))
        });
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// Arms a deadline for the call about to run with `cell` as its fuel.
    pub fn arm(&self, deadline: Instant, cell: FuelCell) -> std::io::Result<Armed<'_>> {
        self.start()?;
        let fired = Arc::new(AtomicBool::new(false));
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.entries.insert(id, Entry { deadline, cell, fired: fired.clone() });
        let wake = st.wake_at.is_none_or(|w| deadline < w);
        drop(st);
        if wake {
            self.shared.cv.notify_one();
        }
        Ok(Armed { dog: self, id, fired })
    }
}

/// A registered deadline; disarmed on drop.
pub struct Armed<'a> {
    dog: &'a Watchdog,
    id: u64,
    fired: Arc<AtomicBool>,
}

impl Armed<'_> {
    /// Disarms and reports whether the deadline fired.
    pub fn disarm(self) -> bool {
        self.dog.shared.lock().entries.remove(&self.id);
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.dog.shared.lock().entries.remove(&self.id);
    }
}

fn run(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for e in st.entries.values_mut() {
            if e.deadline <= now {
                e.fired.store(true, Ordering::SeqCst);
                e.cell.zero();
                e.deadline = now + RETRY;
            }
            next = Some(next.map_or(e.deadline, |n: Instant| n.min(e.deadline)));
        }
        st.wake_at = next;
        st = match next {
            Some(n) => {
                let wait = n.saturating_duration_since(Instant::now()).max(Duration::from_micros(100));
                shared.cv.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0
            }
            None => shared.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_is_zeroed_after_its_deadline_and_never_after_disarm() {
        let dog = Watchdog::new();
        let mut late = Box::new(1_000_i64);
        let cell = unsafe { FuelCell::new(NonNull::from(&mut *late)) };
        let armed = dog.arm(Instant::now() + Duration::from_millis(20), cell).unwrap();
        let t = Instant::now();
        // SAFETY: read through the same atomic view the watchdog writes.
        while unsafe { cell.0.as_ref() }.load(Ordering::SeqCst) != 0 {
            assert!(t.elapsed() < Duration::from_secs(5), "the watchdog never fired");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(armed.disarm());
        let mut early = Box::new(7_i64);
        let cell = unsafe { FuelCell::new(NonNull::from(&mut *early)) };
        let armed = dog.arm(Instant::now() + Duration::from_millis(30), cell).unwrap();
        assert!(!armed.disarm());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(*early, 7, "a disarmed call's fuel was touched");
    }
}
