//! The synchronisation primitives the scheduler and the future are built on, swapped for
//! loom's model-checked versions under `--cfg loom` (see `src/loom_tests.rs`).
//!
//! Poisoning is ignored on purpose: no code of this crate panics while holding one of
//! these locks (user code, which may panic, always runs outside them).

#[cfg(loom)]
pub(crate) use loom::{
    sync::atomic::{AtomicU32, AtomicUsize, fence},
    sync::{Condvar, Mutex, MutexGuard},
};
#[cfg(not(loom))]
pub(crate) use std::{
    sync::atomic::{AtomicU32, AtomicUsize, fence},
    sync::{Condvar, Mutex, MutexGuard},
};

/// Locks `m`, ignoring poison (see the module docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv`, ignoring poison.
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` until `deadline`; returns the guard and whether the deadline passed.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    deadline: std::time::Instant,
) -> (MutexGuard<'a, T>, bool) {
    let now = std::time::Instant::now();
    if now >= deadline {
        return (g, true);
    }
    match cv.wait_timeout(g, deadline - now) {
        Ok((g, _)) => (g, std::time::Instant::now() >= deadline),
        Err(e) => {
            let (g, _) = e.into_inner();
            (g, std::time::Instant::now() >= deadline)
        }
    }
}

/// `UnsafeCell` with loom's closure API, so that loom can check accesses to it.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `UnsafeCell` with loom's closure API (plain `std` outside loom).
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
