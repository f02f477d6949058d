//! The process pool's timeline: what each worker ran, from when to when, and how it
//! ended; where a worker process died and where a new one started.
//!
//! Times are the workers' own: each result record carries the call's start and end on the
//! worker's `CLOCK_MONOTONIC` (`wire`'s run times), which every process of the machine
//! shares, so a bar is the call's run in its worker, without the trip through the sockets
//! or the time the result waited in the worker's log to be sent together with others. A call
//! its worker died in runs from the `started_at` of the worker's result log to the moment
//! the parent handles the death (its end is not known more precisely).
//!
//! Rows are worker slots, not processes: a replacement takes the row of the worker it
//! replaces (a `Started` mark on the row, after the `Died` mark of the one before), so a
//! pool of `n` workers draws `n` rows.
//!
//! Off, recording costs one relaxed load per result message read (and per worker death or
//! start); the workers send their run times whether or not anyone records (16 bytes per
//! result, no extra clock read). Everything recorded goes through the three `record_*`
//! functions below.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::Manager;
use crate::error::TaskError;
use crate::os;
use crate::timeline::{MarkKind, Recorder, TaskOutcome, Timeline};

/// A pool's recording: on or off, its zero, and the rows.
pub(super) struct Recording {
    on: AtomicBool,
    /// The timeline's zero (`CLOCK_MONOTONIC` nanoseconds): when recording first started.
    /// 0 until then.
    epoch_ns: AtomicU64,
    rows: Recorder,
}

impl Recording {
    pub(super) fn new(rows: usize) -> Self {
        Recording {
            on: AtomicBool::new(false),
            epoch_ns: AtomicU64::new(0),
            rows: Recorder::new(rows),
        }
    }

    /// Whether to record (one relaxed load).
    pub(super) fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Starts recording; the first start is the timeline's zero.
    pub(super) fn start(&self) {
        let _ = self
            .epoch_ns
            .compare_exchange(0, os::monotonic_nanos(), Relaxed, Relaxed);
        self.on.store(true, Relaxed);
    }

    pub(super) fn stop(&self) {
        self.on.store(false, Relaxed);
    }

    /// What was recorded so far (recording goes on if it is on).
    pub(super) fn take(&self) -> Timeline {
        self.rows.take()
    }

    /// A time of the machine's monotonic clock, on the timeline (a time before its zero, a
    /// task that started before recording did, counts as its zero).
    fn since_epoch(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.epoch_ns.load(Relaxed))
    }
}

/// How a task that did not end with a result from its worker ended, on the timeline.
fn outcome_of_error(error: &TaskError) -> TaskOutcome {
    match error {
        TaskError::TimeLimit(_) => TaskOutcome::TimeLimit,
        TaskError::Cancelled => TaskOutcome::Cancelled,
        // (`Broken`: its worker was killed by `terminate` while it ran.)
        TaskError::WorkerDied { .. } | TaskError::Broken(_) => TaskOutcome::Died,
        _ => TaskOutcome::Panicked,
    }
}

impl Manager {
    /// Whether the pool records its timeline.
    pub(super) fn recording(&self) -> bool {
        self.timeline.on()
    }

    /// A task on row `row` ended: with the worker's run times `ran` and the outcome the
    /// worker encoded (`Ok` bytes: its first byte says whether the task returned a value or
    /// an error), or without a result (`Err`: its worker died, it ran out of time, ...),
    /// from `ran[0]` to now. Nothing is drawn without a start.
    pub(super) fn record_task_ended(
        &self,
        row: usize,
        name: &'static str,
        ran: Option<[u64; 2]>,
        outcome: Result<&[u8], &TaskError>,
    ) {
        let Some([start, end]) = ran else { return };
        let outcome = match outcome {
            // (postcard writes `Ok` as the variant index 0.)
            Ok(bytes) if bytes.first() == Some(&0) => TaskOutcome::Ok,
            Ok(_) => TaskOutcome::Panicked,
            Err(e) => outcome_of_error(e),
        };
        let t = &self.timeline;
        let (start, end) = (t.since_epoch(start), t.since_epoch(end));
        t.rows.task(row, start, end.max(start), outcome, name);
    }

    /// Worker `pid` on row `row` died (now).
    pub(super) fn record_worker_died(&self, row: usize, pid: u32) {
        let t = &self.timeline;
        let at = t.since_epoch(os::monotonic_nanos());
        t.rows.mark(row, MarkKind::Died, at, Some(pid));
    }

    /// Worker `pid` started on row `row` (now), replacing one.
    pub(super) fn record_worker_started(&self, row: usize, pid: u32) {
        let t = &self.timeline;
        let at = t.since_epoch(os::monotonic_nanos());
        t.rows.mark(row, MarkKind::Started, at, Some(pid));
    }
}
