//! The shared state behind a [`Future`]: one allocation per task holding the state word,
//! the listeners, the value slot and (for tasks run by the thread pool) the closure itself.
//!
//! All of the crate's `unsafe` for futures lives in this file: the value slot and the
//! closure slot are `UnsafeCell`s whose exclusive access is granted by transitions of the
//! state word.
//!
//! # The state word
//!
//! The low two bits are the Python state (`PENDING`, `RUNNING`, `FINISHED`, `CANCELLED`);
//! above them are flags:
//!
//! * `COMPLETING`: a setter owns the value slot and will publish `FINISHED`. Set together
//!   with `RUNNING` by the task's runner (`claim`) or by a public setter (`try_claim_value`).
//!   Only one thread ever sets it, so only one thread ever writes the slot.
//! * `LISTENERS`: someone registered a callback, a waiter, a wait set or a waker while the
//!   future was not done. The completer must then lock the listener list, notify and run
//!   them. Without it, completion is a single atomic read-modify-write and nothing else.
//! * `NOTIFIED`: the listeners have run. Taking the value out (`into_result`, `.await`)
//!   waits for it, because a callback may borrow the value until then.
//! * `INLINE`: a thread about to block on this pending task may run it itself.
//!
//! # Memory ordering
//!
//! The value is written before the `Release` half of the read-modify-write that publishes
//! `FINISHED`; every reader loads the state with `Acquire` before touching the value. The
//! `LISTENERS` flag and the publish of `FINISHED` are changes of the same atomic, so they are
//! totally ordered: a registration either lands before the publish (and the completer sees
//! the flag and notifies) or it fails its compare-exchange and sees the future done.

use std::task::Waker;
use std::time::Instant;

use super::{Future, InvalidStateError, Outcome, State, WaitSet};
use crate::error::TaskError;
use crate::sync::{self, AtomicU32, Condvar, Mutex, UnsafeCell};

pub(crate) const PENDING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const FINISHED: u32 = 2;
pub(crate) const CANCELLED: u32 = 3;
pub(crate) const STATE_MASK: u32 = 3;
const COMPLETING: u32 = 1 << 2;
const LISTENERS: u32 = 1 << 3;
pub(crate) const NOTIFIED: u32 = 1 << 4;
pub(crate) const INLINE: u32 = 1 << 5;
/// The value was moved out by `.await` (the future is fused).
pub(crate) const TAKEN: u32 = 1 << 6;
/// Set with FINISHED when the value is an error other than `Cancelled` (read by the pool's
/// statistics without touching the value).
pub(crate) const FAILED: u32 = 1 << 7;
/// Set with FINISHED when the value is `Err(Cancelled)`: the task stopped on a request.
pub(crate) const STOPPED: u32 = 1 << 8;
/// `cancel_running` asked the running task to stop.
pub(crate) const STOP_REQUESTED: u32 = 1 << 9;
/// The running task saw the request (`crate::cancelled()` returned true): its value is
/// replaced by `Err(Cancelled)`.
pub(crate) const STOP_SEEN: u32 = 1 << 10;
/// The task runs where it can see a stop request (a thread pool's `FnCell`).
pub(crate) const COOPERATIVE: u32 = 1 << 11;

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// True once the future is finished or cancelled.
#[inline]
pub(crate) fn is_done(s: u32) -> bool {
    s & STATE_MASK >= FINISHED
}

/// How a value ends a future: for wait sets, and the state bits published with FINISHED
/// (`FAILED`, `STOPPED`: read by the pool statistics without touching the value).
fn finished_bits<T>(value: &Result<T, TaskError>) -> (Outcome, u32) {
    match value {
        Ok(_) => (Outcome::Success, FINISHED),
        Err(TaskError::Cancelled) => (Outcome::Failed, FINISHED | STOPPED),
        Err(_) => (Outcome::Failed, FINISHED | FAILED),
    }
}

/// A callback waiting for the future.
pub(crate) type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

/// A finished future's callbacks, left to run on another thread (`Core::finish_deferring`).
pub(crate) type Deferred = Box<dyn FnOnce() + Send>;

/// Something that must hear about completion. The list is guarded by `Core::listeners`
/// (one `Vec` of these keeps an idle future small: most futures never get a listener).
pub(crate) enum Listener<T> {
    /// `add_done_callback`, run in order of registration.
    Callback(Callback<T>),
    /// A `wait` / `as_completed` / `map_unordered` fan-in, with this future's index in it.
    Set(std::sync::Arc<WaitSet>, usize),
    /// The task awaiting the future (at most one: awaiting needs `&mut`).
    Waker(Waker),
}

type Listeners<T> = Vec<Listener<T>>;

/// The state machine and the value of one future.
pub(crate) struct Core<T> {
    state: AtomicU32,
    listeners: Mutex<Listeners<T>>,
    cond: Condvar,
    /// Written once by the `COMPLETING` owner, read after `FINISHED` is observed.
    value: UnsafeCell<Option<Result<T, TaskError>>>,
}

// SAFETY: `Core<T>` owns a `T`, so it may move to another thread when `T: Send`. Shared
// access hands out `&T` to any thread that holds a `&Core<T>` (the owner's `result_ref`, a
// callback on the completing thread), which is sound only if `T: Sync`. The slot is written by
// exactly one thread (the `COMPLETING` owner) before the `Release` publish of `FINISHED`, and
// read only after an `Acquire` load observes `FINISHED`, so there is no data race on it;
// taking the value out requires the unique handle and `NOTIFIED` (see `take`).
unsafe impl<T: Send + Sync> Sync for Core<T> {}

impl<T> Core<T> {
    pub(crate) fn new(flags: u32) -> Self {
        Core {
            state: AtomicU32::new(PENDING | flags),
            listeners: Mutex::new(Vec::new()),
            cond: Condvar::new(),
            value: UnsafeCell::new(None),
        }
    }

    /// A future that is already finished with `value`.
    pub(crate) fn finished(value: Result<T, TaskError>) -> Self {
        Core {
            state: AtomicU32::new(FINISHED | NOTIFIED),
            listeners: Mutex::new(Vec::new()),
            cond: Condvar::new(),
            value: UnsafeCell::new(Some(value)),
        }
    }

    pub(crate) fn load(&self) -> u32 {
        self.state.load(Acquire)
    }

    /// Whether the task was cancelled (before it started: a cancelled task never runs).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.load() & STATE_MASK == CANCELLED
    }

    pub(crate) fn state(&self) -> State {
        State::from_bits(self.load())
    }

    /// PENDING → RUNNING|COMPLETING: the caller becomes the task's only runner and the only
    /// writer of the value. Fails if the task was cancelled, claimed, or completed.
    pub(crate) fn claim(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & (STATE_MASK | COMPLETING) != PENDING {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s | RUNNING | COMPLETING, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Python's `set_running_or_notify_cancel`.
    pub(crate) fn set_running_or_notify_cancel(&self) -> Result<bool, InvalidStateError> {
        let mut s = self.state.load(Relaxed);
        loop {
            match s & STATE_MASK {
                PENDING if s & COMPLETING == 0 => {}
                CANCELLED => return Ok(false),
                _ => {
                    return Err(InvalidStateError {
                        state: State::from_bits(s),
                    });
                }
            }
            match self
                .state
                .compare_exchange_weak(s, s | RUNNING, AcqRel, Relaxed)
            {
                Ok(_) => return Ok(true),
                Err(now) => s = now,
            }
        }
    }

    /// Claims the value slot for a public setter: allowed while PENDING or RUNNING and not
    /// already claimed.
    fn try_claim_value(&self) -> Result<(), InvalidStateError> {
        let mut s = self.state.load(Relaxed);
        loop {
            if is_done(s) || s & COMPLETING != 0 {
                return Err(InvalidStateError {
                    state: State::from_bits(s),
                });
            }
            match self.state.compare_exchange_weak(
                s,
                (s & !STATE_MASK) | RUNNING | COMPLETING,
                Acquire,
                Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    /// Public `set_result` / `set_exception`.
    pub(crate) fn try_set(
        &self,
        value: Result<T, TaskError>,
        handle: &Future<T>,
    ) -> Result<(), InvalidStateError> {
        self.try_claim_value()?;
        self.finish(value, handle);
        Ok(())
    }

    /// Stores the value and publishes FINISHED. The caller must own the slot (`claim` or
    /// `try_claim_value` succeeded on this thread).
    pub(crate) fn finish(&self, value: Result<T, TaskError>, handle: &Future<T>) {
        let (outcome, bits) = finished_bits(&value);
        // SAFETY: this thread set COMPLETING (see the caller contract), which no other
        // thread can set again; FINISHED is not yet published, so no reader looks at the
        // slot. The write happens-before the Release publish below.
        self.value.with_mut(|slot| unsafe { *slot = Some(value) });
        self.publish(bits, outcome, handle);
    }

    /// As [`finish`](Self::finish), but the callbacks are not run here: the threads blocked
    /// on the future and the wait sets are woken at once, and the callbacks (then the
    /// `NOTIFIED` mark and the awaiting task's waker) are returned, to be run on another
    /// thread. `None` if there is no callback (everything was done here). For a pool's
    /// thread that moves work, which must never run user code that may wait on that work.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn finish_deferring(
        &self,
        value: Result<T, TaskError>,
        handle: &Future<T>,
    ) -> Option<Deferred>
    where
        T: Send + Sync + 'static,
    {
        let (outcome, bits) = finished_bits(&value);
        // SAFETY: as in `finish` (same caller contract): this thread owns the slot, and
        // the write happens-before the Release publish in `set_done`.
        self.value.with_mut(|slot| unsafe { *slot = Some(value) });
        if self.set_done(bits) & LISTENERS == 0 {
            return None;
        }
        let rest = self.wake_waiters(outcome);
        if !rest.iter().any(|l| matches!(l, Listener::Callback(_))) {
            self.run_listeners(rest, handle);
            return None;
        }
        let handle = handle.handle();
        Some(Box::new(move || handle.core().run_listeners(rest, &handle)))
    }

    /// Python's `cancel`: PENDING → CANCELLED. True if the future is (now) cancelled.
    pub(crate) fn cancel(&self, handle: &Future<T>) -> bool {
        let mut s = self.state.load(Relaxed);
        loop {
            match s & STATE_MASK {
                CANCELLED => return true,
                PENDING if s & COMPLETING == 0 => {}
                _ => return false,
            }
            let next = (s & !STATE_MASK) | CANCELLED;
            let next = if s & LISTENERS == 0 {
                next | NOTIFIED
            } else {
                next
            };
            match self.state.compare_exchange_weak(s, next, AcqRel, Relaxed) {
                Ok(prev) => {
                    if prev & LISTENERS != 0 {
                        self.notify(Outcome::Cancelled, handle);
                    }
                    return true;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Moves the state to `done` (FINISHED or CANCELLED, with FAILED or STOPPED) and
    /// notifies whoever listens.
    fn publish(&self, done: u32, outcome: Outcome, handle: &Future<T>) {
        if self.set_done(done) & LISTENERS != 0 {
            self.notify(outcome, handle);
        }
    }

    /// Moves the state to `done` (NOTIFIED too if nobody listens); the state before.
    fn set_done(&self, done: u32) -> u32 {
        let mut s = self.state.load(Relaxed);
        loop {
            let mut next = (s & !(STATE_MASK | COMPLETING)) | done;
            if s & LISTENERS == 0 {
                next |= NOTIFIED;
            }
            match self.state.compare_exchange_weak(s, next, AcqRel, Relaxed) {
                Ok(prev) => return prev,
                Err(now) => s = now,
            }
        }
    }

    /// The slow path of completion: wake blocked threads and wait sets, run callbacks,
    /// then mark NOTIFIED and wake an awaiting task.
    fn notify(&self, outcome: Outcome, handle: &Future<T>) {
        let rest = self.wake_waiters(outcome);
        self.run_listeners(rest, handle);
    }

    /// The part of notifying that runs no user code: wakes the threads blocked on the
    /// future and the wait sets. Returns the listeners left (callbacks, wakers).
    fn wake_waiters(&self, outcome: Outcome) -> Listeners<T> {
        let mut listeners = {
            let mut l = sync::lock(&self.listeners);
            self.cond.notify_all();
            std::mem::take(&mut *l)
        };
        for l in &listeners {
            if let Listener::Set(set, index) = l {
                set.notify(*index, outcome);
            }
        }
        listeners.retain(|l| !matches!(l, Listener::Set(..)));
        listeners
    }

    /// The rest of notifying: runs the callbacks in order, then marks NOTIFIED and wakes
    /// an awaiting task.
    fn run_listeners(&self, listeners: Listeners<T>, handle: &Future<T>) {
        let mut wakers = Vec::new();
        for l in listeners {
            match l {
                Listener::Callback(cb) => crate::unwind::run_callback(|| cb(handle)),
                Listener::Waker(w) => wakers.push(w),
                Listener::Set(..) => {}
            }
        }
        {
            // A waker may have registered since (the future was done, not yet NOTIFIED).
            let mut l = sync::lock(&self.listeners);
            self.state.fetch_or(NOTIFIED, AcqRel);
            self.cond.notify_all();
            for late in l.drain(..) {
                if let Listener::Waker(w) = late {
                    wakers.push(w);
                }
            }
        }
        for w in wakers {
            w.wake();
        }
    }

    /// Locks the listener list with the future registered as listened-to, or returns `None`
    /// if the future is already done (then nothing will be notified: the caller acts now).
    fn lock_listening(&self) -> Option<sync::MutexGuard<'_, Listeners<T>>> {
        let guard = sync::lock(&self.listeners);
        let mut s = self.state.load(Acquire);
        loop {
            if is_done(s) {
                return None;
            }
            if s & LISTENERS != 0 {
                return Some(guard);
            }
            match self
                .state
                .compare_exchange_weak(s, s | LISTENERS, AcqRel, Acquire)
            {
                Ok(_) => return Some(guard),
                Err(now) => s = now,
            }
        }
    }

    /// Adds a callback to run at completion; gives it back if the future is already done.
    pub(crate) fn add_callback(&self, cb: Callback<T>) -> Option<Callback<T>> {
        match self.lock_listening() {
            Some(mut l) => {
                l.push(Listener::Callback(cb));
                None
            }
            None => Some(cb),
        }
    }

    /// Registers a wait set; false if the future is already done.
    pub(crate) fn add_waiter(&self, set: &std::sync::Arc<WaitSet>, index: usize) -> bool {
        match self.lock_listening() {
            Some(mut l) => {
                l.push(Listener::Set(set.clone(), index));
                true
            }
            None => false,
        }
    }

    /// Forgets a wait set registered with `add_waiter` (no-op if it already fired).
    pub(crate) fn remove_waiter(&self, set: &std::sync::Arc<WaitSet>) {
        let mut l = sync::lock(&self.listeners);
        l.retain(|x| !matches!(x, Listener::Set(s, _) if std::sync::Arc::ptr_eq(s, set)));
    }

    /// Blocks until `(state & mask) != 0 || done`-style predicate `ready` holds, or the
    /// deadline passes. Returns whether it holds.
    pub(crate) fn block_until(&self, ready: fn(u32) -> bool, deadline: Option<Instant>) -> bool {
        if ready(self.load()) {
            return true;
        }
        let mut guard = sync::lock(&self.listeners);
        loop {
            let mut s = self.state.load(Acquire);
            loop {
                if ready(s) {
                    return true;
                }
                // Not done: make sure the completer will notify. Done but not NOTIFIED
                // (waiting to take): the completer saw LISTENERS and will notify after the
                // callbacks, so nothing to register.
                if is_done(s) || s & LISTENERS != 0 {
                    break;
                }
                match self
                    .state
                    .compare_exchange_weak(s, s | LISTENERS, AcqRel, Acquire)
                {
                    Ok(_) => break,
                    Err(now) => s = now,
                }
            }
            match deadline {
                None => guard = sync::wait(&self.cond, guard),
                Some(d) => {
                    let (g, timed_out) = sync::wait_until(&self.cond, guard, d);
                    guard = g;
                    if timed_out {
                        return ready(self.state.load(Acquire));
                    }
                }
            }
        }
    }

    /// Registers `waker` to be woken when the value may be taken; false if it already may.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        let mut guard = sync::lock(&self.listeners);
        let mut s = self.state.load(Acquire);
        loop {
            if s & NOTIFIED != 0 {
                return false;
            }
            if is_done(s) || s & LISTENERS != 0 {
                break;
            }
            match self
                .state
                .compare_exchange_weak(s, s | LISTENERS, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        match guard.iter_mut().find(|l| matches!(l, Listener::Waker(_))) {
            Some(Listener::Waker(w)) if w.will_wake(waker) => {}
            Some(slot) => *slot = Listener::Waker(waker.clone()),
            None => guard.push(Listener::Waker(waker.clone())),
        }
        true
    }

    /// A shared reference to the value. `None` if the future is not FINISHED.
    pub(crate) fn value(&self) -> Option<&Result<T, TaskError>> {
        if self.load() & STATE_MASK != FINISHED {
            return None;
        }
        // SAFETY: FINISHED was observed with Acquire, so the single write of the slot
        // happened-before this read, and the slot is never written again. It is moved out
        // only by `take`, whose caller owns the unique handle and therefore no `&self`
        // borrow of it can be alive here.
        self.value.with(|slot| unsafe { (*slot).as_ref() })
    }

    /// Asks a running cooperative task to stop. True if the request was delivered (the task
    /// is running and can see it) or the future is cancelled; false if it finished or cannot
    /// see requests.
    pub(crate) fn request_stop(&self) -> bool {
        let mut s = self.state.load(Acquire);
        loop {
            match s & STATE_MASK {
                CANCELLED => return true,
                RUNNING if s & COOPERATIVE != 0 => {}
                _ => return false,
            }
            match self
                .state
                .compare_exchange_weak(s, s | STOP_REQUESTED, AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Records that `.await` moved the value out.
    pub(crate) fn mark_taken(&self) {
        self.state.fetch_or(TAKEN, Relaxed);
    }

    /// Moves the value out.
    ///
    /// # Safety
    ///
    /// The caller must hold the only user handle to this future (so no `value()` borrow is
    /// alive) and must have observed NOTIFIED (so no callback borrows the value any more).
    pub(crate) unsafe fn take(&self) -> Option<Result<T, TaskError>> {
        // SAFETY: see the contract above: no other reference to the slot exists.
        self.value.with_mut(|slot| unsafe { (*slot).take() })
    }
}

thread_local! {
    /// The state word of the task running on this thread (null when none), for
    /// `crate::cancelled`.
    static CURRENT: std::cell::Cell<*const AtomicU32> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Whether the task running on this thread was asked to stop; if so, records that it saw
/// the request (its value becomes `Err(Cancelled)`).
pub(crate) fn current_task_stop_seen() -> bool {
    let state = CURRENT.get();
    if state.is_null() {
        return false;
    }
    // SAFETY: `CURRENT` is non-null only between the two `CURRENT` writes of `FnCell::run`,
    // which borrows the cell (and so this state word) for that whole time, on this thread.
    let state = unsafe { &*state };
    if state.load(Acquire) & STOP_REQUESTED == 0 {
        return false;
    }
    state.fetch_or(STOP_SEEN, AcqRel);
    true
}

/// A task closure stored next to its future's state, so that a task costs one allocation.
pub(crate) struct FnCell<F, T> {
    pub(crate) core: Core<T>,
    func: UnsafeCell<Option<F>>,
    /// The task's span (feature `tracing`; zero-sized without it).
    pub(crate) trace: crate::trace::TaskTrace,
}

// SAFETY: the closure is touched only by the thread that won `Core::claim` (which takes it)
// or by the cell's destructor (which has exclusive access), so sharing `&FnCell` never gives
// two threads access to `F`; `F: Send` suffices for it to be moved to the runner. The `Core`
// part is `Sync` under the conditions of its own impl.
unsafe impl<F: Send, T: Send + Sync> Sync for FnCell<F, T> {}

impl<F: FnOnce() -> T, T> FnCell<F, T> {
    pub(crate) fn new(func: F, flags: u32) -> Self {
        FnCell {
            core: Core::new(flags),
            func: UnsafeCell::new(Some(func)),
            trace: crate::trace::TaskTrace::submitted(crate::trace::Pool::Thread),
        }
    }

    /// Runs the task if it is still pending (claims it first): the only place a task runs,
    /// whether on a worker or inline on a waiting thread. Returns whether it ran.
    pub(crate) fn run(&self, handle: &Future<T>) -> bool {
        if !self.core.claim() {
            // (A task cancelled while queued ends its span here, when a worker takes its
            // queue entry.)
            self.trace.if_cancelled(|| self.core.is_cancelled());
            return false;
        }
        // SAFETY: `claim` succeeded, so this thread is the only one that will ever access
        // the closure slot (a second claim fails forever after).
        let func = self.func.with_mut(|slot| unsafe { (*slot).take() });
        let Some(func) = func else {
            // Unreachable: the slot is filled at construction and emptied only here.
            return false;
        };
        // Runs nest (a task waiting on another may run it here): restore the outer one.
        let outer = CURRENT.replace(&self.core.state);
        let running = self.trace.running();
        let mut value = crate::unwind::catch(func);
        CURRENT.set(outer);
        if self.core.load() & STOP_SEEN != 0 {
            // The task saw `cancelled()` return true: it stopped early on request.
            value = Err(TaskError::Cancelled);
        }
        running.finished(&value);
        self.core.finish(value, handle);
        true
    }
}
