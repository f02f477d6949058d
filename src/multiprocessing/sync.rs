//! Synchronization primitives shared between processes (and threads): [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`].
//!
//! Each is a cheap handle (`Clone` shares it between threads) on a shared memory region;
//! passing it in a [`Process`](super::Process)'s arguments shares it with the child.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::{
    BrokenBarrierError, LockResult, OwnerDied, ReleasedTooManyTimes, TryAcquireError,
};
use super::shm::{
    Guarded, GuardedFlag, Held, Layout, Locked, RawCond, RawMutex, Reentrant, Shared, WaitQueue,
    deadline_of,
};
use crate::remote::naming as image;
use crate::remote::{FnRef, codec as protocol};

/// Guards are tied to the thread that acquired: a pthread mutex is unlocked by its owner.
type NotSend = PhantomData<*const ()>;

/// Turns a lock attempt into the guard or the matching error.
fn settle<G>(
    m: &RawMutex,
    outcome: Locked,
    guard: impl FnOnce() -> G,
) -> Result<G, TryAcquireError<G>> {
    match outcome {
        Locked::Yes => Ok(guard()),
        Locked::OwnerDied => {
            m.consistent();
            Err(TryAcquireError::OwnerDied(OwnerDied { guard: guard() }))
        }
        Locked::No => Err(TryAcquireError::WouldBlock),
    }
}

fn blocking<G>(r: Result<G, TryAcquireError<G>>) -> LockResult<G> {
    match r {
        Ok(g) => Ok(g),
        Err(TryAcquireError::OwnerDied(e)) => Err(e),
        Err(TryAcquireError::WouldBlock) => unreachable!("[internal] a blocking lock gave up"),
    }
}

#[repr(C)]
pub(crate) struct MutexHeader {
    m: RawMutex,
}

// SAFETY: one robust, process-shared mutex; no pointers; initialized by `init` below.
unsafe impl Layout for MutexHeader {
    const KIND: u32 = 1;
}

/// The body of [`Lock`] and [`RLock`].
#[derive(Clone, Serialize, Deserialize)]
struct MutexHandle {
    #[serde(with = "crate::serde_arc::by_value")]
    shared: Arc<Shared<MutexHeader>>,
}

impl MutexHandle {
    fn new(reentrant: Reentrant) -> MutexHandle {
        MutexHandle {
            shared: Arc::new(Shared::new(0, |h: &MutexHeader, init| {
                h.m.init(init, reentrant)
            })),
        }
    }

    fn raw(&self) -> &RawMutex {
        &self.shared.get().m
    }
}

macro_rules! mutex_type {
    ($(#[$doc:meta])* $name:ident, $guard:ident, $reentrant:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        pub struct $name {
            inner: MutexHandle,
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), " { .. }"))
            }
        }

        impl $name {
            #[doc = concat!("A new, unlocked ", $what, ".")]
            ///
            /// ```
            #[doc = concat!("let lock = concurrent_futures::multiprocessing::", stringify!($name), "::new();")]
            /// drop(lock.acquire().unwrap());
            /// ```
            pub fn new() -> Self {
                $name { inner: MutexHandle::new($reentrant) }
            }

            /// Waits until the lock is free and takes it; dropping the guard releases it.
            /// Python's `acquire()` / `with lock:`. An error means the previous holder died
            /// holding it: the caller holds the lock anyway (see [`OwnerDied`]).
            ///
            /// ```
            #[doc = concat!("let lock = concurrent_futures::multiprocessing::", stringify!($name), "::new();")]
            /// {
            ///     let _held = lock.acquire().unwrap(); // with lock:
            /// } // released here
            /// ```
            pub fn acquire(&self) -> LockResult<$guard<'_>> {
                blocking(self.lock_until(None))
            }

            /// Takes the lock if it is free now. Python's `acquire(block=False)`.
            ///
            /// ```
            #[doc = concat!("let lock = concurrent_futures::multiprocessing::", stringify!($name), "::new();")]
            /// assert!(lock.try_acquire().is_ok());
            /// ```
            pub fn try_acquire(&self) -> Result<$guard<'_>, TryAcquireError<$guard<'_>>> {
                let m = self.inner.raw();
                settle(m, m.try_lock(), || self.guard())
            }

            /// Waits at most `timeout` for the lock. Python's `acquire(timeout=t)`.
            ///
            /// ```
            #[doc = concat!("let lock = concurrent_futures::multiprocessing::", stringify!($name), "::new();")]
            /// let held = lock.acquire_timeout(std::time::Duration::from_millis(10));
            /// assert!(held.is_ok());
            /// ```
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<$guard<'_>, TryAcquireError<$guard<'_>>> {
                self.lock_until(Some(deadline_of(timeout)))
            }

            fn lock_until(
                &self,
                deadline: Option<Instant>,
            ) -> Result<$guard<'_>, TryAcquireError<$guard<'_>>> {
                let m = self.inner.raw();
                settle(m, m.lock(deadline), || self.guard())
            }

            fn guard(&self) -> $guard<'_> {
                $guard { lock: self, _not_send: PhantomData }
            }
        }

        #[doc = concat!("Holds a [`", stringify!($name), "`]; dropping it releases the lock.")]
        ///
        /// Not `Send`: the thread that acquired releases.
        #[must_use = "dropping the guard releases the lock at once"]
        pub struct $guard<'a> {
            lock: &'a $name,
            _not_send: NotSend,
        }

        impl $guard<'_> {
            /// Releases the lock (the same as dropping the guard). Python's `release()`.
            ///
            /// ```
            #[doc = concat!("let lock = concurrent_futures::multiprocessing::", stringify!($name), "::new();")]
            /// let held = lock.acquire().unwrap();
            /// held.release();
            /// assert!(lock.try_acquire().is_ok());
            /// ```
            pub fn release(self) {}
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                self.lock.inner.raw().unlock();
            }
        }

        impl std::fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($guard), " { .. }"))
            }
        }
    };
}

mutex_type!(
    /// Python's `multiprocessing.Lock`: a mutual exclusion lock shared by processes and
    /// threads.
    ///
    /// Blocking waits sleep in the kernel (no busy waiting). If a process dies while it holds
    /// the lock, the next acquirer gets the lock with an [`OwnerDied`] error instead of
    /// waiting forever. The lock is not reentrant: a thread that acquires it twice waits for
    /// itself, as in Python (use [`RLock`] for that).
    ///
    /// Differences from Python: the lock is released by dropping the guard, so the thread
    /// that acquired it releases it.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::{Lock, Process};
    ///
    /// fn func1((lock, num): (Lock, u32)) {
    ///     let _held = lock.acquire().unwrap();
    ///     println!("hello {num}");
    /// }
    ///
    /// let lock = Lock::new();
    /// let mut children = Vec::new();
    /// for num in 0..3 {
    ///     let p = Process::new(func1, (lock.clone(), num));
    ///     p.start().unwrap();
    ///     children.push(p);
    /// }
    /// for p in &children {
    ///     assert_eq!(p.join(), Ok(0));
    /// }
    /// ```
    Lock,
    LockGuard,
    Reentrant::No,
    "lock"
);

mutex_type!(
    /// Python's `multiprocessing.RLock`: a lock its holder may acquire again; it is free when
    /// every acquisition was released. Shared by processes and threads, and robust like
    /// [`Lock`].
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::RLock;
    /// let lock = RLock::new();
    /// let outer = lock.acquire().unwrap();
    /// let inner = lock.acquire().unwrap(); // same thread: no deadlock
    /// drop(inner);
    /// drop(outer);
    /// ```
    RLock,
    RLockGuard,
    Reentrant::Yes,
    "reentrant lock"
);

// ===== Semaphore =====

#[repr(C)]
pub(crate) struct SemaphoreHeader {
    m: RawMutex,
    freed: RawCond,
    value: Guarded<u32>,
    /// The most `value` may reach through `release` (for `BoundedSemaphore`), or `u32::MAX`.
    bound: Guarded<u32>,
}

// SAFETY: a robust mutex, a condition variable, and two plain values guarded by the mutex.
unsafe impl Layout for SemaphoreHeader {
    const KIND: u32 = 2;
}

/// Python's `multiprocessing.Semaphore`: a counter of permits shared by processes and
/// threads. `acquire` takes one (waiting while there are none), `release` gives one back.
///
/// Permits have no owner: any thread or process may release. A permit taken by a process
/// that dies is not given back (as in Python).
///
/// ```
/// use concurrent_futures::multiprocessing::Semaphore;
/// let s = Semaphore::new(2);
/// let a = s.acquire();
/// let b = s.acquire();
/// assert!(s.try_acquire().is_none()); // both permits are taken
/// drop(a);
/// assert_eq!(s.get_value(), 1);
/// # drop(b);
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    #[serde(with = "crate::serde_arc::by_value")]
    shared: Arc<Shared<SemaphoreHeader>>,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.get_value())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` permits. Python's `Semaphore(value)`.
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::Semaphore::new(3);
    /// assert_eq!(s.get_value(), 3);
    /// ```
    pub fn new(value: u32) -> Semaphore {
        Semaphore::with_bound(value, u32::MAX)
    }

    fn with_bound(value: u32, bound: u32) -> Semaphore {
        let shared = Shared::new(0, |h: &SemaphoreHeader, init| {
            h.m.init(init, Reentrant::No);
            h.freed.init(init);
            h.m.with(|held| {
                h.value.set(held, value);
                h.bound.set(held, bound);
            });
        });
        Semaphore {
            shared: Arc::new(shared),
        }
    }

    fn header(&self) -> &SemaphoreHeader {
        self.shared.get()
    }

    /// Waits for a permit and takes it; dropping the guard gives it back (or
    /// [`SemaphoreGuard::forget`] keeps it taken). Python's `acquire()` / `with s:`.
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::Semaphore::new(1);
    /// {
    ///     let _permit = s.acquire();
    ///     assert_eq!(s.get_value(), 0);
    /// }
    /// assert_eq!(s.get_value(), 1);
    /// ```
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.take(None).expect("[internal] an untimed wait gave up")
    }

    /// Takes a permit if one is free now. Python's `acquire(block=False)`.
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::Semaphore::new(0);
    /// assert!(s.try_acquire().is_none());
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.take(Some(Instant::now()))
    }

    /// Waits at most `timeout` for a permit. Python's `acquire(timeout=t)`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let s = concurrent_futures::multiprocessing::Semaphore::new(0);
    /// assert!(s.acquire_timeout(Duration::from_millis(10)).is_none());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.take(Some(deadline_of(timeout)))
    }

    fn take(&self, deadline: Option<Instant>) -> Option<SemaphoreGuard<'_>> {
        let h = self.header();
        let taken = h.m.with(|held| {
            loop {
                let v = h.value.get(held);
                if v > 0 {
                    h.value.set(held, v - 1);
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                h.freed.wait(&h.m, deadline);
            }
        });
        taken.then(|| SemaphoreGuard {
            sem: self,
            _not_send: PhantomData,
        })
    }

    /// Gives a permit back (one taken with [`SemaphoreGuard::forget`], or a new one).
    /// Python's `release()`.
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::Semaphore::new(0);
    /// s.release();
    /// assert_eq!(s.get_value(), 1);
    /// ```
    pub fn release(&self) {
        let _ = self.give();
    }

    fn give(&self) -> Result<(), ReleasedTooManyTimes> {
        let h = self.header();
        let _wakeup = h.m.with(|held| {
            let v = h.value.get(held);
            if v >= h.bound.get(held) {
                return Err(ReleasedTooManyTimes);
            }
            h.value.set(held, v + 1);
            // Every waiter, not one: a single waiter woken for this permit could be killed
            // before it takes it, and the permit would then sleep with the others. (Made
            // once the mutex is released.)
            Ok(h.freed.notify_later(u32::MAX))
        })?;
        Ok(())
    }

    /// The number of free permits. Python's `get_value()`.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Semaphore::new(2).get_value(), 2);
    /// ```
    pub fn get_value(&self) -> u32 {
        let h = self.header();
        h.m.with(|held| h.value.get(held))
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it gives the permit back.
#[must_use = "dropping the guard gives the permit back at once"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
    _not_send: NotSend,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken (to be given back later with `release`, possibly by another
    /// process).
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::Semaphore::new(1);
    /// s.acquire().forget();
    /// assert_eq!(s.get_value(), 0);
    /// s.release();
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sem.give();
    }
}

impl std::fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SemaphoreGuard { .. }")
    }
}

/// Python's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] that refuses to be released
/// above its initial value.
///
/// ```
/// use concurrent_futures::multiprocessing::BoundedSemaphore;
/// let s = BoundedSemaphore::new(1);
/// s.acquire().forget();
/// assert!(s.release().is_ok());
/// assert!(s.release().is_err()); // released too many times
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl std::fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.get_value())
            .finish()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, never more.
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::BoundedSemaphore::new(2);
    /// assert_eq!(s.get_value(), 2);
    /// ```
    pub fn new(value: u32) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::with_bound(value, value),
        }
    }

    /// As [`Semaphore::acquire`].
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::BoundedSemaphore::new(1);
    /// drop(s.acquire());
    /// ```
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.sem.acquire()
    }

    /// As [`Semaphore::try_acquire`].
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::BoundedSemaphore::new(1);
    /// assert!(s.try_acquire().is_some());
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.sem.try_acquire()
    }

    /// As [`Semaphore::acquire_timeout`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// let s = concurrent_futures::multiprocessing::BoundedSemaphore::new(1);
    /// assert!(s.acquire_timeout(Duration::from_millis(1)).is_some());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.sem.acquire_timeout(timeout)
    }

    /// Gives a permit back; an error if that would exceed the initial value.
    ///
    /// ```
    /// let s = concurrent_futures::multiprocessing::BoundedSemaphore::new(0);
    /// assert!(s.release().is_err());
    /// ```
    pub fn release(&self) -> Result<(), ReleasedTooManyTimes> {
        self.sem.give()
    }

    /// The number of free permits.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::BoundedSemaphore::new(3).get_value(), 3);
    /// ```
    pub fn get_value(&self) -> u32 {
        self.sem.get_value()
    }
}

// ===== Event =====

#[repr(C)]
pub(crate) struct EventHeader {
    m: RawMutex,
    changed: RawCond,
    flag: GuardedFlag,
}

// SAFETY: a robust mutex, a condition variable and a flag guarded by the mutex; all-zero is
// `false`.
unsafe impl Layout for EventHeader {
    const KIND: u32 = 3;
}

/// Python's `multiprocessing.Event`: a flag that processes and threads wait for.
///
/// ```
/// use concurrent_futures::multiprocessing::Event;
/// use std::time::Duration;
/// let e = Event::new();
/// assert!(!e.wait_timeout(Duration::from_millis(10))); // not set: times out
/// e.set();
/// assert!(e.is_set());
/// e.wait(); // returns at once
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "crate::serde_arc::by_value")]
    shared: Arc<Shared<EventHeader>>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// assert!(!concurrent_futures::multiprocessing::Event::new().is_set());
    /// ```
    pub fn new() -> Event {
        Event {
            shared: Arc::new(Shared::new(0, |h: &EventHeader, init| {
                h.m.init(init, Reentrant::No);
                h.changed.init(init);
            })),
        }
    }

    fn header(&self) -> &EventHeader {
        self.shared.get()
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// ```
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn set(&self) {
        let h = self.header();
        // The wake-up is made once the mutex is released.
        let _wakeup = h.m.with(|held| {
            h.flag.set(held, true);
            h.changed.notify_later(u32::MAX)
        });
    }

    /// Clears the flag.
    ///
    /// ```
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// ```
    pub fn clear(&self) {
        let h = self.header();
        h.m.with(|held| h.flag.set(held, false));
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// assert!(!concurrent_futures::multiprocessing::Event::new().is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        let h = self.header();
        h.m.with(|held| h.flag.get(held))
    }

    /// Waits until the flag is set.
    ///
    /// ```
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// e.set();
    /// e.wait();
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; returns whether it is set. Python's
    /// `wait(timeout)`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// assert!(!e.wait_timeout(Duration::from_millis(5)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(deadline_of(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let h = self.header();
        h.m.with(|held| {
            loop {
                if h.flag.get(held) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                h.changed.wait(&h.m, deadline);
            }
        })
    }
}

// ===== Condition =====

#[repr(C)]
pub(crate) struct ConditionHeader {
    m: RawMutex,
    waiters: WaitQueue,
}

// SAFETY: a robust mutex and a wait queue (atomics and a condition variable).
unsafe impl Layout for ConditionHeader {
    const KIND: u32 = 4;
}

/// Python's `multiprocessing.Condition`: a lock and a way to wait, holding it, for another
/// process or thread to announce a change.
///
/// The lock is part of the condition (Python's default `Condition()`); waiting and notifying
/// are methods of the guard, so that they can only happen with the lock held (Python raises
/// `RuntimeError` otherwise).
///
/// ```
/// use concurrent_futures::multiprocessing::{Condition, Value};
/// use std::time::Duration;
///
/// let ready = Value::new(0u32);
/// let cond = Condition::new();
/// let (r, c) = (ready.clone(), cond.clone());
/// let t = std::thread::spawn(move || {
///     let held = c.acquire().unwrap();
///     r.set(1);
///     held.notify_all();
/// });
/// let mut held = cond.acquire().unwrap();
/// assert!(held.wait_for(|| ready.get() == 1, Some(Duration::from_secs(10))));
/// drop(held);
/// t.join().unwrap();
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    #[serde(with = "crate::serde_arc::by_value")]
    shared: Arc<Shared<ConditionHeader>>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Condition { .. }")
    }
}

impl Condition {
    /// A new condition with its own lock.
    ///
    /// ```
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// drop(c.acquire().unwrap());
    /// ```
    pub fn new() -> Condition {
        Condition {
            shared: Arc::new(Shared::new(0, |h: &ConditionHeader, init| {
                h.m.init(init, Reentrant::No);
                h.waiters.init(init);
            })),
        }
    }

    /// Takes the condition's lock (`with cond:`). An error means the previous holder died
    /// holding it; the caller holds the lock anyway.
    ///
    /// ```
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// let held = c.acquire().unwrap();
    /// held.notify(1); // nobody waits: nothing happens
    /// ```
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        let m = &self.shared.get().m;
        blocking(settle(m, m.lock(None), || ConditionGuard {
            cond: self,
            _not_send: PhantomData,
        }))
    }

    /// Takes the lock if it is free now.
    ///
    /// ```
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// assert!(c.try_acquire().is_ok());
    /// ```
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, TryAcquireError<ConditionGuard<'_>>> {
        let m = &self.shared.get().m;
        settle(m, m.try_lock(), || ConditionGuard {
            cond: self,
            _not_send: PhantomData,
        })
    }
}

/// Holds a [`Condition`]'s lock; dropping it releases the lock.
#[must_use = "dropping the guard releases the lock at once"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: NotSend,
}

impl ConditionGuard<'_> {
    fn header(&self) -> &ConditionHeader {
        self.cond.shared.get()
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> bool {
        let h = self.header();
        h.waiters.wait(&h.m, deadline)
    }

    /// Releases the lock, waits for a notification, and takes the lock again. Python's
    /// `wait()`. It returns only for a notification given after it started waiting (one
    /// that [`notify`](Self::notify) granted to this waiter), never spuriously; as in
    /// Python, another thread may still have changed the state before the lock is taken
    /// again: check the condition in a loop, or use [`wait_for`](Self::wait_for). (With more
    /// than 64 waiters at once on one condition, the extra ones may wake without a
    /// notification.)
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Condition;
    /// let c = Condition::new();
    /// let c2 = c.clone();
    /// let mut held = c.acquire().unwrap();
    /// let t = std::thread::spawn(move || c2.acquire().unwrap().notify_all());
    /// held.wait();
    /// # drop(held); t.join().unwrap();
    /// ```
    pub fn wait(&mut self) {
        self.wait_until(None);
    }

    /// As [`wait`](Self::wait), for at most `timeout`; false if it timed out (then no
    /// notification was spent on this waiter).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// let mut held = c.acquire().unwrap();
    /// assert!(!held.wait_timeout(Duration::from_millis(5)));
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.wait_until(Some(deadline_of(timeout)))
    }

    /// Waits until `predicate()` is true (checked with the lock held), for at most `timeout`
    /// if given; returns the predicate's last value. Python's `wait_for`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// let mut held = c.acquire().unwrap();
    /// assert!(held.wait_for(|| true, None));
    /// assert!(!held.wait_for(|| false, Some(Duration::from_millis(5))));
    /// ```
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> bool {
        let deadline = timeout.map(deadline_of);
        loop {
            if predicate() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.wait_until(deadline);
        }
    }

    /// Wakes up to `n` waiters, the longest waiting first. Python's `notify(n)`. Only
    /// waiters already waiting can take it (a thread or process that starts waiting after
    /// this call does not), and each takes one. A waiter whose process is gone is skipped;
    /// one woken here that dies before it takes the lock again takes its notification with
    /// it (as in Python); use [`notify_all`](Self::notify_all) where that matters.
    ///
    /// ```
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// c.acquire().unwrap().notify(2);
    /// ```
    pub fn notify(&self, n: usize) {
        self.header().waiters.notify(n);
    }

    /// Wakes every waiter. Python's `notify_all()`.
    ///
    /// ```
    /// let c = concurrent_futures::multiprocessing::Condition::new();
    /// c.acquire().unwrap().notify_all();
    /// ```
    pub fn notify_all(&self) {
        self.header().waiters.notify(usize::MAX);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.header().m.unlock();
    }
}

impl std::fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConditionGuard { .. }")
    }
}

// ===== Barrier =====

#[repr(C)]
pub(crate) struct BarrierHeader {
    m: RawMutex,
    changed: RawCond,
    parties: Guarded<u32>,
    /// Parties waiting in the current generation.
    count: Guarded<u32>,
    /// Incremented each time the barrier lets a generation through or is reset.
    generation: Guarded<u64>,
    /// The generation that `reset` ended, plus one (0: none), so that its waiters fail.
    reset: Guarded<u64>,
    broken: GuardedFlag,
    /// The last party is running the action. It holds `m` throughout, so anyone else who
    /// holds `m` and sees this set knows the runner died in the action.
    acting: GuardedFlag,
}

// SAFETY: a robust mutex, a condition variable, and plain values guarded by the mutex.
unsafe impl Layout for BarrierHeader {
    const KIND: u32 = 5;
}

/// A barrier's action: the function itself in the process that made the barrier, its
/// position in the executable in a process that received the barrier.
#[derive(Clone, Copy)]
enum Action {
    Here(fn()),
    There(FnRef),
}

impl Action {
    /// Runs the action; false if it panicked (or could not be found in this process).
    fn run(self) -> bool {
        match self {
            Action::Here(f) => crate::unwind::catch(f).is_ok(),
            Action::There(target) => match image::invoke(target, &[]) {
                Ok(outcome) => protocol::decode_outcome::<()>(&outcome).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Python's `multiprocessing.Barrier`: `parties` processes or threads wait until all of them
/// arrive, then all go on. [`with_action`](Barrier::with_action) adds Python's `action`.
///
/// A party killed while it waits still counts as arrived in its round (as in Python: the
/// others are not stuck, the round just completes without it). A party killed while it runs
/// the action breaks the barrier: the others get [`BrokenBarrierError`] at once.
///
/// ```
/// use concurrent_futures::multiprocessing::Barrier;
/// let b = Barrier::new(2);
/// let b2 = b.clone();
/// let t = std::thread::spawn(move || b2.wait().unwrap());
/// let mine = b.wait().unwrap();
/// let theirs = t.join().unwrap();
/// assert_eq!(mine + theirs, 1); // arrival indexes 0 and 1
/// ```
#[derive(Clone)]
pub struct Barrier {
    shared: Arc<Shared<BarrierHeader>>,
    action: Option<Action>,
}

impl Serialize for Barrier {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let action = match self.action {
            None => None,
            Some(Action::There(target)) => Some(target),
            Some(Action::Here(f)) => {
                Some(image::init_target_of(f).map_err(serde::ser::Error::custom)?)
            }
        };
        (&*self.shared, action).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (shared, action) = <(Shared<BarrierHeader>, Option<FnRef>)>::deserialize(deserializer)?;
        // The action must be called through the trampoline for a `fn()`, the one this
        // process would name itself: a sender cannot pick another code path.
        fn probe() {}
        let own = image::init_target_of(probe).map_err(serde::de::Error::custom)?;
        if action.is_some_and(|a| a.tramp != own.tramp) {
            return Err(serde::de::Error::custom(
                "a shared barrier names its action through an unexpected trampoline",
            ));
        }
        Ok(Barrier {
            shared: Arc::new(shared),
            action: action.map(Action::There),
        })
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` parties (at least one).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Barrier::new(3).parties(), 3);
    /// ```
    pub fn new(parties: u32) -> Barrier {
        let parties = parties.max(1);
        Barrier {
            shared: Arc::new(Shared::new(0, |h: &BarrierHeader, init| {
                h.m.init(init, Reentrant::No);
                h.changed.init(init);
                h.m.with(|held| h.parties.set(held, parties));
            })),
            action: None,
        }
    }

    /// A barrier whose last arriving party runs `action` before the others are released.
    /// Python's `Barrier(parties, action=f)`.
    ///
    /// The action runs in whichever process arrives last, so it is a plain `fn()` of the
    /// program, found in a child by its place in the executable (as a
    /// [`Process`](super::Process)'s target is). If it panics, the barrier breaks and every
    /// party of the round, the one that ran it included, gets [`BrokenBarrierError`]; if its
    /// process is killed while it runs, the barrier breaks too. While it runs, the other
    /// parties wait for it, past their timeouts if need be (they need the barrier's lock
    /// back, as in Python).
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::Barrier;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// static ROUNDS: AtomicU32 = AtomicU32::new(0);
    /// fn count_round() {
    ///     ROUNDS.fetch_add(1, Ordering::SeqCst);
    /// }
    ///
    /// let b = Barrier::with_action(2, count_round);
    /// let b2 = b.clone();
    /// let t = std::thread::spawn(move || b2.wait());
    /// assert!(b.wait().is_ok());
    /// assert!(t.join().unwrap().is_ok());
    /// assert_eq!(ROUNDS.load(Ordering::SeqCst), 1); // once per round, not per party
    /// ```
    pub fn with_action(parties: u32, action: fn()) -> Barrier {
        Barrier {
            action: Some(Action::Here(action)),
            ..Barrier::new(parties)
        }
    }

    fn header(&self) -> &BarrierHeader {
        self.shared.get()
    }

    /// Runs `f` with the barrier's lock held, after breaking the barrier if the lock's last
    /// holder died running the action.
    fn locked<T>(&self, f: impl FnOnce(&BarrierHeader, &Held<'_>) -> T) -> T {
        let h = self.header();
        h.m.with(|held| {
            if h.acting.get(held) {
                Self::runner_died(h, held);
            }
            f(h, held)
        })
    }

    fn runner_died(h: &BarrierHeader, held: &Held<'_>) {
        h.acting.set(held, false);
        h.broken.set(held, true);
        h.changed.notify_all();
    }

    /// Waits for all parties; returns this party's arrival index (0 for the first, `parties
    /// - 1` for the last). Fails if the barrier is or becomes broken.
    ///
    /// ```
    /// let b = concurrent_futures::multiprocessing::Barrier::new(1);
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn wait(&self) -> Result<u32, BrokenBarrierError> {
        self.wait_until(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier for
    /// everyone, as in Python.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::multiprocessing::Barrier::new(2);
    /// assert!(b.wait_timeout(Duration::from_millis(5)).is_err());
    /// assert!(b.broken());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BrokenBarrierError> {
        self.wait_until(Some(deadline_of(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BrokenBarrierError> {
        self.locked(|h, held| {
            if h.broken.get(held) {
                return Err(BrokenBarrierError);
            }
            let index = h.count.get(held);
            let generation = h.generation.get(held);
            if index.saturating_add(1) >= h.parties.get(held) {
                if let Some(action) = self.action {
                    h.acting.set(held, true);
                    // Wake the waiters now: they queue on the lock, which this thread holds
                    // while the action runs, so that if this process dies in the action the
                    // kernel hands the lock to one of them (owner died) and they learn it.
                    h.changed.notify_all();
                    let ok = action.run();
                    h.acting.set(held, false);
                    if !ok {
                        h.broken.set(held, true);
                        h.changed.notify_all();
                        return Err(BrokenBarrierError);
                    }
                }
                h.count.set(held, 0);
                h.generation.set(held, generation + 1);
                h.changed.notify_all();
                return Ok(index);
            }
            h.count.set(held, index + 1);
            loop {
                if h.generation.get(held) != generation {
                    return if h.reset.get(held) == generation + 1 {
                        Err(BrokenBarrierError)
                    } else {
                        Ok(index)
                    };
                }
                if h.acting.get(held) {
                    Self::runner_died(h, held);
                }
                if h.broken.get(held) {
                    return Err(BrokenBarrierError);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    h.broken.set(held, true);
                    h.changed.notify_all();
                    return Err(BrokenBarrierError);
                }
                h.changed.wait(&h.m, deadline);
            }
        })
    }

    /// Breaks the barrier: current and future waiters fail until [`reset`](Self::reset).
    ///
    /// ```
    /// let b = concurrent_futures::multiprocessing::Barrier::new(2);
    /// b.abort();
    /// assert!(b.broken());
    /// ```
    pub fn abort(&self) {
        self.locked(|h, held| {
            h.broken.set(held, true);
            h.changed.notify_all();
        });
    }

    /// Returns the barrier to its initial state; parties waiting now fail.
    ///
    /// ```
    /// let b = concurrent_futures::multiprocessing::Barrier::new(1);
    /// b.abort();
    /// b.reset();
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn reset(&self) {
        self.locked(|h, held| {
            let generation = h.generation.get(held);
            if h.count.get(held) > 0 {
                h.reset.set(held, generation + 1);
            }
            h.generation.set(held, generation + 1);
            h.count.set(held, 0);
            h.broken.set(held, false);
            h.changed.notify_all();
        });
    }

    /// The number of parties.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Barrier::new(4).parties(), 4);
    /// ```
    pub fn parties(&self) -> u32 {
        self.locked(|h, held| h.parties.get(held))
    }

    /// The number of parties waiting now.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Barrier::new(4).n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.locked(|h, held| h.count.get(held))
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// assert!(!concurrent_futures::multiprocessing::Barrier::new(4).broken());
    /// ```
    pub fn broken(&self) -> bool {
        self.locked(|h, held| h.broken.get(held))
    }
}
