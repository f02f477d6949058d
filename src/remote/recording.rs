//! A remote pool's timeline recording (the process pool's and the MPI pool's): on or off,
//! its zero on this machine's `CLOCK_MONOTONIC`, and one row per worker. The pools map
//! their workers' run times onto this clock and call [`Recording::task`] and
//! [`Recording::mark_now`]; off, the one cost is the relaxed load of [`Recording::on`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::error::TaskError;
use crate::os;
use crate::timeline::{MarkKind, Recorder, TaskOutcome, Timeline};

/// A pool's recording: on or off, its zero, and the rows.
pub(crate) struct Recording {
    on: AtomicBool,
    /// The timeline's zero (`CLOCK_MONOTONIC` nanoseconds): when recording first started.
    /// 0 until then.
    epoch_ns: AtomicU64,
    rows: Recorder,
}

impl Recording {
    pub(crate) fn new(rows: usize) -> Self {
        Recording {
            on: AtomicBool::new(false),
            epoch_ns: AtomicU64::new(0),
            rows: Recorder::new(rows),
        }
    }

    /// Whether to record (one relaxed load).
    pub(crate) fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Starts recording; the first start is the timeline's zero.
    pub(crate) fn start(&self) {
        let _ = self
            .epoch_ns
            .compare_exchange(0, os::monotonic_nanos(), Relaxed, Relaxed);
        self.on.store(true, Relaxed);
    }

    pub(crate) fn stop(&self) {
        self.on.store(false, Relaxed);
    }

    /// What was recorded so far (recording goes on if it is on).
    pub(crate) fn take(&self) -> Timeline {
        self.rows.take()
    }

    /// A time of this machine's monotonic clock, on the timeline (a time before its zero, a
    /// task that started before recording did, counts as its zero).
    fn since_epoch(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.epoch_ns.load(Relaxed))
    }

    /// A task on row `row` ran from `ran[0]` to `ran[1]` (this machine's `CLOCK_MONOTONIC`).
    pub(crate) fn task(&self, row: usize, ran: [u64; 2], outcome: TaskOutcome, name: &'static str) {
        let (start, end) = (self.since_epoch(ran[0]), self.since_epoch(ran[1]));
        self.rows.task(row, start, end.max(start), outcome, name);
    }

    /// The worker on row `thief` was sent `tasks` tasks that the worker on row `victim`
    /// gave back, now.
    pub(crate) fn steal(&self, thief: usize, victim: usize, tasks: u64) {
        let at = self.since_epoch(os::monotonic_nanos());
        self.rows.steal_at(thief, victim, tasks, at);
    }

    /// A worker on row `row` died or started, now.
    pub(crate) fn mark_now(&self, row: usize, kind: MarkKind, pid: u32) {
        self.mark(row, kind, os::monotonic_nanos(), pid);
    }

    /// A worker on row `row` died or started at `at` (this machine's `CLOCK_MONOTONIC`).
    pub(crate) fn mark(&self, row: usize, kind: MarkKind, at: u64, pid: u32) {
        self.rows.mark(row, kind, self.since_epoch(at), Some(pid));
    }
}

/// How a task ended, from the outcome its worker encoded: postcard writes `Ok` as the
/// variant index 0, so the first byte says whether it returned a value or an error.
pub(crate) fn outcome_of_bytes(bytes: &[u8]) -> TaskOutcome {
    if bytes.first() == Some(&0) {
        TaskOutcome::Ok
    } else {
        TaskOutcome::Panicked
    }
}

/// How a task that did not end with a result from its worker ended, on the timeline.
pub(crate) fn outcome_of_error(error: &TaskError) -> TaskOutcome {
    match error {
        TaskError::TimeLimit(_) => TaskOutcome::TimeLimit,
        TaskError::Cancelled => TaskOutcome::Cancelled,
        // (`Broken`: its worker was killed by `terminate` while it ran.)
        TaskError::WorkerDied { .. } | TaskError::Broken(_) => TaskOutcome::Died,
        _ => TaskOutcome::Panicked,
    }
}
