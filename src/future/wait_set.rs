//! `WaitSet`: a future's listener that fans many futures' completions into one waiter
//! (`wait`, `as_completed`, `map_unordered`). A completing future pushes its index into the
//! set and wakes the waiter.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::Outcome;
use crate::sync::{self, Condvar, Mutex};

/// Receives completions from the futures it is registered on.
pub(crate) struct WaitSet {
    inner: Mutex<WaitInner>,
    cond: Condvar,
}

pub(crate) struct WaitInner {
    /// Indices of futures that completed, in completion order.
    ready: VecDeque<usize>,
    /// How many completed.
    pub(crate) completed: usize,
    /// Whether one of them failed.
    pub(crate) failed: bool,
}

impl WaitSet {
    pub(crate) fn new() -> Arc<WaitSet> {
        Arc::new(WaitSet {
            inner: Mutex::new(WaitInner {
                ready: VecDeque::new(),
                completed: 0,
                failed: false,
            }),
            cond: Condvar::new(),
        })
    }

    /// Called by a completing future (and by registrants that found it already done).
    pub(crate) fn notify(&self, index: usize, outcome: Outcome) {
        let mut inner = sync::lock(&self.inner);
        inner.ready.push_back(index);
        inner.completed += 1;
        inner.failed |= outcome == Outcome::Failed;
        self.cond.notify_all();
    }

    /// Waits until `enough` holds for the collected completions, or the deadline passes.
    pub(crate) fn wait_for(&self, enough: impl Fn(&WaitInner) -> bool, deadline: Option<Instant>) {
        let mut inner = sync::lock(&self.inner);
        while !enough(&inner) {
            match deadline {
                None => inner = sync::wait(&self.cond, inner),
                Some(d) => {
                    let (g, timed_out) = sync::wait_until(&self.cond, inner, d);
                    inner = g;
                    if timed_out {
                        return;
                    }
                }
            }
        }
    }

    /// Pops the next completed index, waiting for one until the deadline.
    pub(crate) fn next(&self, deadline: Option<Instant>) -> Option<usize> {
        self.wait_for(|i| !i.ready.is_empty(), deadline);
        sync::lock(&self.inner).ready.pop_front()
    }
}

impl std::fmt::Debug for WaitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitSet")
    }
}
