//! One deadline thread per engine: interrupts a store whose call passed its
//! wall-clock deadline.
//!
//! A call registers `(deadline, interrupter)` and gets a [`Armed`] guard.
//! Firing (set the guard's flag, then `interrupt()`) and disarming (the guard
//! is dropped when the call returns) both happen under one mutex, so once a
//! call is disarmed no interrupt for it can be sent any more. An interrupt
//! sent while the call was still running is delivered to the worker thread at
//! its next return from the kernel (the reset after every call makes
//! syscalls), when no wasm runs, where wasmer's handler ignores it; and
//! wasmer forgets the store's "interrupted" mark when the call returns. So a
//! stale interrupt cannot hit the next call. Whether a call timed out is
//! decided from the guard's flag, never from the trap message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmer::Interrupter;

const RETRY: Duration = Duration::from_millis(5);

struct Entry {
    /// When to (re-)send the interrupt: the deadline, then every
    /// [`RETRY`] until the call is disarmed (an interrupt sent just before
    /// the store entered wasm is not remembered by wasmer).
    deadline: Instant,
    interrupter: Interrupter,
    fired: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The deadline thread. Dropping it stops the thread.
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchdog")
    }
}

impl Watchdog {
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), cv: Condvar::new() });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new().name("worldloom-sandbox-watchdog".into()).spawn(move || run(&s2))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Arms a deadline for the call about to run on `interrupter`'s store.
    pub fn arm(&self, deadline: Instant, interrupter: Interrupter) -> Armed<'_> {
        let fired = Arc::new(AtomicBool::new(false));
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.entries.insert(id, Entry { deadline, interrupter, fired: fired.clone() });
        drop(st);
        self.shared.cv.notify_one();
        Armed { dog: self, id, fired }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for e in st.entries.values_mut() {
            if e.deadline <= now {
                e.fired.store(true, Ordering::SeqCst);
                // If the store is inside a host function the trap is raised when
                // that function returns; if it is not in wasm at all, the retry
                // catches it once it is.
                e.interrupter.interrupt();
                e.deadline = now + RETRY;
            }
            next = Some(next.map_or(e.deadline, |n: Instant| n.min(e.deadline)));
        }
        st = match next {
            Some(n) => {
                let wait = n.saturating_duration_since(Instant::now()).max(Duration::from_micros(100));
                shared.cv.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0
            }
            None => shared.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
        };
    }
}
