//! The thread pool's unit of work: a type-erased handle on a task cell.
//!
//! A job is the same allocation as its future ([`FnCell`]: the closure next to the future's
//! state), seen through a different trait object. Each job is executed, cancelled or failed
//! at most once: all three start with a compare-exchange out of `PENDING`, so a job that a
//! waiting thread already ran inline (or that was cancelled) is simply dropped when a worker
//! pops it. Each returns how the task was settled, for the pool's statistics.

use crossbeam_utils::CachePadded;

use crate::error::TaskError;
use crate::future::{CANCELLED, FAILED, FINISHED, FnCell, Future, STATE_MASK, STOPPED};
use crate::stats::{Outcome, Settled, SharedCounters};
use std::sync::Arc;

/// Where the end of a task still running on a waiting thread is counted.
pub(crate) type Shared = Arc<CachePadded<SharedCounters>>;

/// A queued task, as workers see it.
pub(crate) trait Job: Send + Sync {
    /// Runs the task if it is still pending.
    fn execute(self: Arc<Self>, shared: &Shared) -> Settled;
    /// Cancels the task if it is still pending (`shutdown` with `cancel_futures`).
    fn cancel(self: Arc<Self>, shared: &Shared) -> Settled;
    /// Fails the task if it is still pending (the pool is broken).
    fn fail(self: Arc<Self>, error: TaskError, shared: &Shared) -> Settled;
    /// What a timeline calls it.
    fn name(&self) -> &'static str {
        "task"
    }
}

/// What the deques hold.
pub(crate) type JobRef = Arc<dyn Job>;

/// The outcome written in a done future's state word.
fn outcome_of(state: u32) -> Outcome {
    if state & STATE_MASK == CANCELLED || state & STOPPED != 0 {
        Outcome::Cancelled
    } else if state & FAILED != 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}

/// A task this thread did not settle: cancelled while queued, run (or running) on a waiting
/// thread.
fn settled_elsewhere<T: Send + Sync + 'static>(fut: &Future<T>, shared: &Shared) -> Settled {
    let s = fut.core().load();
    if matches!(s & STATE_MASK, CANCELLED | FINISHED) {
        return Settled::Was(outcome_of(s));
    }
    // Still running on a waiting thread: count its end when it comes.
    let shared = shared.clone();
    let count: crate::future::Callback<T> =
        Box::new(move |f: &Future<T>| shared.settle(Settled::Was(outcome_of(f.core().load()))));
    if let Some(count) = fut.core().add_callback(count) {
        count(fut);
    }
    Settled::Later
}

impl<F, T> Job for FnCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + Sync + 'static,
{
    fn execute(self: Arc<Self>, shared: &Shared) -> Settled {
        let fut = Future::from_cell(self);
        if !fut.run_here() {
            return settled_elsewhere(&fut, shared);
        }
        Settled::Ran(outcome_of(fut.core().load()))
    }

    fn cancel(self: Arc<Self>, shared: &Shared) -> Settled {
        let fut = Future::from_cell(self.clone());
        if fut.cancel() {
            self.trace.cancelled();
            Settled::Was(Outcome::Cancelled)
        } else {
            settled_elsewhere(&fut, shared)
        }
    }

    fn fail(self: Arc<Self>, error: TaskError, shared: &Shared) -> Settled {
        if self.core.claim() {
            let value = Err(error);
            self.trace.finished(&value);
            Future::from_cell(self).finish_claimed(value);
            Settled::Was(Outcome::Failed)
        } else {
            self.trace.if_cancelled(|| self.core.is_cancelled());
            settled_elsewhere(&Future::from_cell(self), shared)
        }
    }
}
