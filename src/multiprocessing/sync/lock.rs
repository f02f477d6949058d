//! [`Lock`] and [`RLock`]: one robust, process-shared mutex behind each (the macro
//! `mutex_type!` writes both handles).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{NotSend, blocking, settle};
use crate::multiprocessing::error::{LockResult, TryAcquireError};
use crate::multiprocessing::shm::{Handle, RawMutex, Reentrant, deadline_of, shared_header};

shared_header! {
    pub(crate) struct MutexHeader: KIND = 1;
    {
        m: RawMutex,
    }
}

/// The body of [`Lock`] and [`RLock`].
#[derive(Clone, Serialize, Deserialize)]
struct MutexHandle {
    shared: Handle<MutexHeader>,
}

impl MutexHandle {
    fn new(reentrant: Reentrant) -> MutexHandle {
        MutexHandle {
            shared: Handle::new(0, |h: &MutexHeader, init| h.m.init(init, reentrant)),
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
            ///
            /// [`OwnerDied`]: crate::multiprocessing::OwnerDied
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
    ///
    /// [`OwnerDied`]: crate::multiprocessing::OwnerDied
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
