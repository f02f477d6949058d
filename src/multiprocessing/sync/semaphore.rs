//! [`Semaphore`] and [`BoundedSemaphore`] (a semaphore whose header also holds its bound).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::NotSend;
use crate::multiprocessing::error::ReleasedTooManyTimes;
use crate::multiprocessing::shm::{
    Guarded, Handle, RawCond, RawMutex, Reentrant, deadline_of, shared_header,
};

shared_header! {
    pub(crate) struct SemaphoreHeader: KIND = 2;
    {
        m: RawMutex,
        freed: RawCond,
        value: Guarded<u32>,
        /// The most `value` may reach through `release` (for `BoundedSemaphore`), or `u32::MAX`.
        bound: Guarded<u32>,
    }
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
    shared: Handle<SemaphoreHeader>,
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
        let shared = Handle::new(0, |h: &SemaphoreHeader, init| {
            h.m.init(init, Reentrant::No);
            h.freed.init(init);
            h.m.with(|held| {
                h.value.set(held, value);
                h.bound.set(held, bound);
            });
        });
        Semaphore { shared }
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
