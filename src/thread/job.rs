//! The thread pool's unit of work: a type-erased handle on a task cell.
//!
//! A job is the same allocation as its future ([`FnCell`]: the closure next to the future's
//! state), seen through a different trait object. Each job is executed, cancelled or failed
//! at most once: all three start with a compare-exchange out of `PENDING`, so a job that a
//! waiting thread already ran inline (or that was cancelled) is simply dropped when a worker
//! pops it.

use crate::error::TaskError;
use crate::future::{FnCell, Future};
use std::sync::Arc;

/// A queued task, as workers see it.
pub(crate) trait Job: Send + Sync {
    /// Runs the task if it is still pending.
    fn execute(self: Arc<Self>);
    /// Cancels the task if it is still pending (`shutdown` with `cancel_futures`).
    fn cancel(self: Arc<Self>);
    /// Fails the task if it is still pending (the pool is broken).
    fn fail(self: Arc<Self>, error: TaskError);
}

/// What the deques hold.
pub(crate) type JobRef = Arc<dyn Job>;

impl<F, T> Job for FnCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + Sync + 'static,
{
    fn execute(self: Arc<Self>) {
        Future::from_cell(self).run_here();
    }

    fn cancel(self: Arc<Self>) {
        Future::from_cell(self).cancel();
    }

    fn fail(self: Arc<Self>, error: TaskError) {
        if self.core.claim() {
            Future::from_cell(self).finish_claimed(Err(error));
        }
    }
}
