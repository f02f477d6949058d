//! The watchdog thread: the time limits of the tasks that run, read from the workers' result
//! logs, the SIGKILL that ends `terminate`'s grace, and the one for a worker that did not
//! answer `cancel_running` in time.

use std::time::{Duration, Instant};

use super::{CANCEL_GRACE, Manager, State};
use crate::os;
use crate::process::wire;
use crate::sync;
use std::sync::atomic::Ordering::SeqCst;

/// How often the watchdog looks at a worker to see a task with a time limit start, at most
/// and at least.
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

impl Manager {
    /// The watchdog thread: kills a worker whose current task has run longer than its time
    /// limit (its own, else the pool's). The worker's log says which call it runs and since
    /// when, so the limit is the one of the task that runs, timed from its start. It sleeps
    /// while no task with a limit is in flight, and otherwise looks again at the nearest
    /// deadline (or, while a task with a limit waits behind one without, every few
    /// milliseconds, to see it start).
    pub(super) fn watch(&self) {
        let mut st = sync::lock(&self.state);
        loop {
            let finished = st.startup_error.is_some()
                || (st.queue.stopping() && st.workers.is_empty() && st.finished);
            if finished {
                return;
            }
            let now = os::monotonic_nanos();
            let mut next: Option<Duration> = None;
            let mut soonest = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
            if let Some(at) = st.kill_at {
                // Terminated: past the grace, every worker still there is killed (and one
                // started meanwhile as well), until none is left.
                match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => soonest(left),
                    _ => {
                        for (_, w) in st.workers.iter() {
                            w.link.pidfd.signal(libc::SIGKILL);
                        }
                        soonest(POLL_MAX);
                    }
                }
            }
            let State { queue, workers, .. } = &mut *st;
            let pending = &queue.pending;
            let (workers, inflight) = workers.split_mut();
            // A queued task with a limit may be sent and started at any moment: look often.
            let queued_limit = !pending.is_empty()
                && (self.config.task_timeout.is_some()
                    || (self.own_limits.load(SeqCst) && pending.iter().any(|w| w.limit.is_some())));
            if queued_limit {
                soonest(POLL_MAX);
            }
            for w in workers.values_mut() {
                let (link, window) = (&mut w.link, &w.window);
                if let Some(by) = link.cancel_by {
                    // Asked to stop a task: done once it holds no cancelled task (it dropped
                    // it, or its result came); else killed once its grace is over.
                    let asked = window
                        .tasks()
                        .any(|t| inflight.get(&t).is_some_and(|w| w.cancelled));
                    match by.checked_duration_since(Instant::now()) {
                        _ if !asked => link.cancel_by = None,
                        Some(left) if !left.is_zero() => soonest(left.min(CANCEL_GRACE)),
                        _ => {
                            link.pidfd.signal(libc::SIGKILL);
                            link.cancel_by = None;
                            continue;
                        }
                    }
                }
                if link.timed_out.is_some() || window.is_empty() {
                    continue;
                }
                let limit_of = |task: u64| {
                    inflight
                        .get(&task)
                        .and_then(|w| w.limit)
                        .or(self.config.task_timeout)
                };
                let limits: Vec<Duration> = window.tasks().filter_map(limit_of).collect();
                let Some(&shortest) = limits.iter().min() else {
                    continue;
                };
                match wire::running(&link.log_view) {
                    Some((task, since)) if window.holds(task) => {
                        if let Some(limit) = limit_of(task) {
                            // (A time in the future, which only a scribbling task could
                            // leave, counts as now.)
                            let ran = Duration::from_nanos(now.saturating_sub(since));
                            if ran >= limit {
                                link.timed_out = Some((task, limit));
                                link.pidfd.signal(libc::SIGKILL);
                                continue;
                            }
                            soonest(limit - ran);
                        }
                        if limits.len() > 1 || limit_of(task).is_none() {
                            soonest((shortest / 4).clamp(POLL_MIN, POLL_MAX));
                        }
                    }
                    // It has not started a task it holds yet (or its log is unreadable).
                    _ => soonest((shortest / 4).clamp(POLL_MIN, POLL_MAX)),
                }
            }
            st = match next {
                Some(d) => sync::wait_until(&self.changed, st, Instant::now() + d).0,
                None => sync::wait(&self.changed, st),
            };
        }
    }
}
