//! The process's MPI lock: [`serial`] for calls on state one thread owns, [`Serial`] for a
//! session's state guarded by it.

use std::cell::UnsafeCell;
use std::sync::{Mutex, MutexGuard};

/// The process's MPI lock. Every MPI call after `MPI_Init` is made under it, so calls from
/// several threads never overlap (`MPI_THREAD_SERIALIZED`), whatever they serve: the
/// sessions of several pools alive at once, a spawn or a handshake for a new one, a
/// worker's task thread and its helper.
static MPI: Mutex<()> = Mutex::new(());

/// Takes the process's MPI lock, for MPI calls made on state that one thread owns (a
/// handshake's `Port`, a spawn). Never taken while a [`Serial`] is locked on this thread.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    MPI.lock().unwrap_or_else(|p| p.into_inner())
}

/// State that makes MPI calls and is shared between threads (a session's dispatcher, a
/// worker's link): reached only under the process's MPI lock, so that locking it is what
/// serializes its MPI calls with every other MPI call of the process, at the cost of one
/// lock (a `Mutex` of its own would take two).
pub(crate) struct Serial<T> {
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a `SerialGuard`, which holds the process's MPI
// lock for as long as it lives; the lock is held by one guard at a time, so at most one
// thread reaches any `Serial`'s value at a time, as with a `Mutex<T>` (hence `T: Send`).
unsafe impl<T: Send> Sync for Serial<T> {}

impl<T> Serial<T> {
    pub(crate) fn new(value: T) -> Self {
        Serial {
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the process's MPI lock and reaches the value (not reentrant: a thread that
    /// holds the lock must not take it again).
    pub(crate) fn lock(&self) -> SerialGuard<'_, T> {
        SerialGuard {
            _mpi: serial(),
            value: &self.value,
        }
    }
}

/// A [`Serial`]'s value, reached under the process's MPI lock.
pub(crate) struct SerialGuard<'a, T> {
    _mpi: MutexGuard<'static, ()>,
    value: &'a UnsafeCell<T>,
}

impl<T> std::ops::Deref for SerialGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the MPI lock, so no other guard, of this `Serial` or any
        // other, exists now (see `Serial`); the reference cannot outlive the guard.
        unsafe { &*self.value.get() }
    }
}

impl<T> std::ops::DerefMut for SerialGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through this
        // guard.
        unsafe { &mut *self.value.get() }
    }
}
