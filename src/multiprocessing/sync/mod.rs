//! Synchronization primitives shared between processes (and threads): [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`].
//!
//! Each is a cheap handle (`Clone` shares it between threads) on a shared memory region;
//! passing it in a [`Process`](super::Process)'s arguments shares it with the child.
mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;

use std::marker::PhantomData;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

use super::error::{LockResult, OwnerDied, TryAcquireError};
use super::shm::{Locked, RawMutex};

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
