//! [`TaskCell`]: what the crate's futures are made of, and how a waiting thread may help.

use std::time::Instant;

use super::{Core, FnCell, Future};

/// What the crate's futures are made of: the shared state, plus optionally a way for a
/// waiting thread to make progress itself (run the task inline, or read the results of a
/// process pool).
pub(crate) trait TaskCell<T>: Send + Sync {
    fn core(&self) -> &Core<T>;
    /// Called by a thread about to block (without a timeout) on a future that is not done and
    /// whose state has the `INLINE` flag. Returns when it can do no more.
    fn help(&self, _handle: &Future<T>) {}
    /// Called by a thread about to block until `deadline` on a future that is not done and
    /// whose state has the `INLINE` flag. Must return by the deadline (so it never runs the
    /// task itself, which could outlast it).
    fn help_until(&self, _deadline: Instant) {}
    /// Runs the task here if it is still pending; true if it ran here (a thread pool's
    /// worker, which counts what it ran).
    fn run_task(&self, handle: &Future<T>) -> bool {
        self.help(handle);
        false
    }
    /// `cancel_running` on a task that is no longer pending: stops it if the backend can.
    fn stop_running(&self) -> bool {
        self.core().request_stop()
    }
}

impl<T: Send + Sync> TaskCell<T> for Core<T> {
    fn core(&self) -> &Core<T> {
        self
    }
}

impl<F: FnOnce() -> T + Send, T: Send + Sync> TaskCell<T> for FnCell<F, T> {
    fn core(&self) -> &Core<T> {
        &self.core
    }
    fn run_task(&self, handle: &Future<T>) -> bool {
        self.run(handle)
    }
    fn help(&self, handle: &Future<T>) {
        self.run(handle);
    }
}
