//! [`Condition`]: a lock and its waiters, each woken only by a notification meant for it.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{NotSend, blocking, settle};
use crate::multiprocessing::error::{LockResult, TryAcquireError};
use crate::multiprocessing::shm::{
    Handle, RawMutex, Reentrant, WaitQueue, deadline_of, shared_header,
};

shared_header! {
    pub(crate) struct ConditionHeader: KIND = 4;
    {
        m: RawMutex,
        waiters: WaitQueue,
    }
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
    shared: Handle<ConditionHeader>,
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
            shared: Handle::new(0, |h: &ConditionHeader, init| {
                h.m.init(init, Reentrant::No);
                h.waiters.init(init);
            }),
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
