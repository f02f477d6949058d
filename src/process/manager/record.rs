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
//! Off, recording costs one relaxed load per result read (and per worker death or start);
//! the workers send their run times whether or not anyone records (16 bytes per result, no
//! extra clock read), and the statistics use them always: a worker slot's tasks and busy
//! time ([`Manager::task_ended`]). Everything drawn goes through `task_ended`, the two
//! `record_*` functions below and the transport's `stolen` (a task given back, sent to
//! another worker); the recording itself is `remote::recording`'s, shared with the MPI pool.

use super::Manager;
use crate::error::TaskError;
use crate::remote::recording::{outcome_of_bytes, outcome_of_error};
use crate::timeline::MarkKind;

impl Manager {
    /// Whether the pool records its timeline.
    pub(super) fn recording(&self) -> bool {
        self.timeline.on()
    }

    /// The worker on row `row` ran a task (it returned, or died in it): counted for the
    /// row's statistics (a task, and its run time when known) and, if recording, drawn with
    /// the outcome the worker encoded (`Ok` bytes) or the error it ended with (`Err`: its
    /// worker died, it ran out of time, ...). Nothing is drawn without run times.
    pub(super) fn task_ended(
        &self,
        row: usize,
        name: &'static str,
        ran: Option<[u64; 2]>,
        outcome: Result<&[u8], &TaskError>,
    ) {
        self.counters.ran(row, ran);
        let Some(ran) = ran.filter(|_| self.recording()) else {
            return;
        };
        let outcome = match outcome {
            Ok(bytes) => outcome_of_bytes(bytes),
            Err(e) => outcome_of_error(e),
        };
        self.timeline.task(row, ran, outcome, name);
    }

    /// Worker `pid` on row `row` died; seen at `at` (`CLOCK_MONOTONIC`).
    pub(super) fn record_worker_died(&self, row: usize, pid: u32, at: u64) {
        self.timeline.mark(row, MarkKind::Died, at, pid);
    }

    /// Worker `pid` started on row `row` (now), replacing one.
    pub(super) fn record_worker_started(&self, row: usize, pid: u32) {
        self.timeline.mark_now(row, MarkKind::Started, pid);
    }
}
