//! A task as the scheduler carries it ([`Work`]), and the queue of tasks not sent yet
//! ([`Queue`]): admission (the pool's [`Phase`]), claim-or-skip, the slots a submission may
//! claim at once, tasks queued again, and what breaking the pool does to the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{SubmitError, TaskError};
use crate::remote::{Completion, FnRef};
use crate::shared::TableRef;
use crate::stats::RemoteCounters;

/// Where a pool is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Workers are starting (their initializers run): work is accepted and queued.
    Starting,
    Running,
    /// No new work; the pending work still runs.
    ShuttingDown,
    /// Workers are being stopped now (the process pool's `terminate`): nothing is stolen,
    /// nothing completes with a value.
    Terminated,
    /// The pool cannot work (an initializer failed, a worker was lost or could not be
    /// replaced): submissions fail with this reason.
    Broken(Arc<str>),
}

/// What a task is: one call, or a chunk of `map` (a timeline draws the two apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Task,
    Map,
}

impl TaskKind {
    /// Its name on a timeline: `"task"` or `"map"`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::Map => "map",
        }
    }
}

/// A task, pending or in a worker. The payload is kept until the task is over where the
/// transport needs it again (the process pool sends a dead worker's unstarted tasks to
/// another); a transport that moves it into its message leaves it empty.
///
/// Kept within 112 bytes (a test says so): it is moved on its way (queued, cut into a
/// batch, in flight, finished), partly under the queue's lock, and at 144 bytes those moves
/// cost the MPI pool about 8% of its throughput on tiny tasks (docs/BENCHMARKS.md).
pub(crate) struct Work<P> {
    pub(crate) id: u64,
    pub(crate) target: FnRef,
    pub(crate) payload: P,
    pub(crate) completion: Box<dyn Completion>,
    /// The shared tables its argument names by id, kept until the task is over: a worker
    /// that gets it must be able to get them too, and no release of theirs may reach a
    /// worker before it ran.
    pub(crate) tables: Box<[TableRef]>,
    /// Already RUNNING: claimed at submission against a free slot, or sent once and given
    /// back (or left unstarted by a dead worker).
    pub(crate) claimed: bool,
    /// Claimed at submission against [`Queue::slots`].
    reserved: bool,
    /// A task, or a chunk of `map`.
    pub(crate) kind: TaskKind,
    /// Its own time limit, else the pool's (the process pool's watchdog).
    pub(crate) limit: Option<Duration>,
    /// `cancel_running` asked its worker to stop it: whatever brings it back (a result, the
    /// worker's answer, a revoke, its death) completes it with `Cancelled`.
    pub(crate) cancelled: bool,
    /// Given back by the worker on this slot (see `Transport::row`), not sent again yet:
    /// the worker it goes to next stole it.
    pub(crate) given_by: Option<u32>,
}

impl<P> Work<P> {
    /// A task not submitted yet (its id is given by [`Queue::submit`]).
    pub(crate) fn new(
        target: FnRef,
        payload: P,
        completion: Box<dyn Completion>,
        tables: Vec<TableRef>,
        kind: TaskKind,
        limit: Option<Duration>,
    ) -> Work<P> {
        Work {
            id: 0,
            target,
            payload,
            completion,
            tables: tables.into_boxed_slice(),
            claimed: false,
            reserved: false,
            kind,
            limit,
            cancelled: false,
            given_by: None,
        }
    }

    /// Claims it for a worker (PENDING → RUNNING) unless it is claimed already; false if it
    /// was cancelled while pending: it is never sent.
    pub(crate) fn claim(&self) -> bool {
        self.claimed || self.completion.claim()
    }
}

/// The tasks not sent yet, and whether new ones are accepted.
pub(crate) struct Queue<P> {
    pub(crate) phase: Phase,
    pub(crate) pending: VecDeque<Work<P>>,
    pub(crate) next_id: u64,
    /// Batches the workers can take now, as the dispatcher last counted them (a pool whose
    /// dispatcher runs apart from its submitters publishes it, `Workers::free_slots`), and
    /// how many of them submissions have reserved since. A task submitted while a slot is
    /// free is claimed (RUNNING) at once, as the dispatcher will send it next.
    pub(crate) slots: usize,
    reserved: usize,
}

impl<P> Queue<P> {
    pub(crate) fn new(phase: Phase) -> Queue<P> {
        Queue {
            phase,
            pending: VecDeque::new(),
            next_id: 1,
            slots: 0,
            reserved: 0,
        }
    }

    /// True once the pool accepts no more work.
    pub(crate) fn stopping(&self) -> bool {
        matches!(
            self.phase,
            Phase::ShuttingDown | Phase::Terminated | Phase::Broken(_)
        )
    }

    /// Queues `work` (counted as submitted) and returns its id; claims it at once if a
    /// slot is free. Refused once the pool stops accepting work.
    #[inline]
    pub(crate) fn submit(
        &mut self,
        mut work: Work<P>,
        counters: &RemoteCounters,
    ) -> Result<u64, SubmitError> {
        match &self.phase {
            Phase::Running | Phase::Starting => {}
            Phase::ShuttingDown | Phase::Terminated => return Err(SubmitError::Shutdown),
            Phase::Broken(why) => return Err(SubmitError::Broken(why.clone())),
        }
        let id = self.next_id;
        self.next_id += 1;
        RemoteCounters::add(&counters.submitted, 1);
        work.id = id;
        work.reserved = self.reserved < self.slots && work.completion.claim();
        work.claimed = work.reserved;
        self.reserved += usize::from(work.reserved);
        self.pending.push_back(work);
        Ok(id)
    }

    /// Moves the next task to send onto the end of `batch`, skipping (and counting) those
    /// cancelled while pending; false once the queue is empty or `fits` says the front task
    /// does not fit in `batch`. The task is claimed where it lies and moved once: this runs
    /// per task, under the queue's lock.
    #[inline]
    pub(crate) fn pop_claimed(
        &mut self,
        counters: &RemoteCounters,
        mut fits: impl FnMut(&Work<P>) -> bool,
        batch: &mut Vec<Work<P>>,
    ) -> bool {
        loop {
            let Some(front) = self.pending.front_mut() else {
                return false;
            };
            if !fits(front) {
                return false;
            }
            if std::mem::take(&mut front.reserved) {
                self.reserved -= 1;
            }
            let claimed = front.claim();
            front.claimed |= claimed;
            let Some(work) = self.pending.pop_front() else {
                return false;
            };
            if claimed {
                batch.push(work);
                return true;
            }
            // Cancelled while pending, never sent.
            RemoteCounters::add(&counters.cancelled, 1);
            work.completion.trace().cancelled();
        }
    }

    /// Puts tasks back at the front of the queue, in their order (given back by a worker,
    /// left unstarted by a dead one, or never sent): they are RUNNING already, and run
    /// before anything submitted after them. Those `cancel_running` marked are not queued:
    /// returned, to complete with `Cancelled`.
    pub(crate) fn requeue(&mut self, works: Vec<Work<P>>) -> Vec<Work<P>> {
        let mut cancelled = Vec::new();
        for mut work in works.into_iter().rev() {
            if work.cancelled {
                cancelled.push(work);
                continue;
            }
            work.claimed = true;
            self.pending.push_front(work);
        }
        cancelled.reverse();
        cancelled
    }

    /// The pool cannot work: refuses new work and empties the queue. The tasks returned
    /// are claimed, for the caller to fail with `Broken(why)`; those cancelled while
    /// pending stay cancelled (counted here).
    #[must_use]
    pub(crate) fn break_with(
        &mut self,
        why: Arc<str>,
        counters: &RemoteCounters,
    ) -> Vec<(Box<dyn Completion>, TaskError)> {
        self.phase = Phase::Broken(why.clone());
        self.reserved = 0;
        let total = self.pending.len();
        let failed: Vec<_> = self
            .pending
            .drain(..)
            .filter(Work::claim)
            .map(|w| (w.completion, TaskError::Broken(why.clone())))
            .collect();
        RemoteCounters::add(&counters.cancelled, (total - failed.len()) as u64);
        failed
    }

    /// Stops accepting work: `ShuttingDown`, or with `terminate` (the process pool's)
    /// `Terminated`. With `cancel` (implied by `terminate`), the tasks not claimed yet leave
    /// the queue: the first list, for the caller to cancel (counted here). A claimed task
    /// (given back, or left unstarted by a dead worker) is RUNNING and cannot be cancelled,
    /// as in Python: it stays and runs, or, once terminated, leaves too: the second list,
    /// to fail with `Broken`.
    #[must_use]
    pub(crate) fn shut_down(
        &mut self,
        terminate: bool,
        cancel: bool,
        counters: &RemoteCounters,
    ) -> (Vec<Work<P>>, Vec<Work<P>>) {
        if matches!(self.phase, Phase::Running | Phase::Starting) {
            self.phase = Phase::ShuttingDown;
        }
        if terminate {
            self.phase = Phase::Terminated;
        }
        if !cancel && !terminate {
            return (Vec::new(), Vec::new());
        }
        let (claimed, unclaimed): (VecDeque<Work<P>>, VecDeque<Work<P>>) =
            self.pending.drain(..).partition(|w| w.claimed);
        let unclaimed: Vec<Work<P>> = unclaimed.into();
        RemoteCounters::add(&counters.cancelled, unclaimed.len() as u64);
        self.reserved = 0;
        if terminate {
            (unclaimed, claimed.into())
        } else {
            // (A reserved task is claimed: it stays, and keeps its slot.)
            self.reserved = claimed.iter().filter(|w| w.reserved).count();
            self.pending = claimed;
            (unclaimed, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::scheduler::tests::task;
    use std::sync::atomic::Ordering::SeqCst;

    fn work(bytes: usize) -> (Work<Vec<u8>>, Arc<std::sync::atomic::AtomicU8>) {
        task(vec![0; bytes])
    }

    #[test]
    fn a_task_stays_within_112_bytes() {
        // A task is moved several times on its way (queued, cut into a batch, in flight,
        // finished), per task and partly under the queue's lock. At 144 bytes (a `Vec` of
        // tables, a `&str` name, a `usize` slot) the MPI pool's 20,000 trivial tasks at once
        // ran about 8% slower than before the core (docs/BENCHMARKS.md); at 112 they do not.
        assert!(std::mem::size_of::<Work<Vec<u8>>>() <= 112);
    }

    #[test]
    fn a_task_cancelled_while_pending_is_skipped_and_counted() {
        let counters = RemoteCounters::default();
        let mut q = Queue::new(Phase::Running);
        let (a, sa) = work(1);
        let (b, sb) = work(1);
        let (a, b) = (
            q.submit(a, &counters).unwrap(),
            q.submit(b, &counters).unwrap(),
        );
        assert_eq!((a, b), (1, 2));
        sa.store(2, SeqCst); // cancelled by its future
        let mut batch = Vec::new();
        assert!(
            q.pop_claimed(&counters, |_| true, &mut batch),
            "the second is claimed"
        );
        let w = &batch[0];
        assert_eq!(w.id, b);
        assert!(w.claimed);
        assert_eq!(sb.load(SeqCst), 1, "RUNNING");
        assert_eq!(counters.cancelled.load(SeqCst), 1);
        assert!(!q.pop_claimed(&counters, |_| true, &mut batch));
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn a_submission_claims_a_free_slot_at_once() {
        let counters = RemoteCounters::default();
        let mut q = Queue::new(Phase::Running);
        q.slots = 1;
        let (a, sa) = work(1);
        let (b, sb) = work(1);
        q.submit(a, &counters).unwrap();
        q.submit(b, &counters).unwrap();
        assert_eq!(sa.load(SeqCst), 1, "claimed against the free slot");
        assert_eq!(sb.load(SeqCst), 0, "no slot left: pending means no room");
        assert!(q.pop_claimed(&counters, |_| true, &mut Vec::new()));
        assert_eq!(q.reserved, 0);
    }

    #[test]
    fn submissions_are_refused_once_stopping() {
        let counters = RemoteCounters::default();
        let mut q: Queue<Vec<u8>> = Queue::new(Phase::ShuttingDown);
        assert!(matches!(
            q.submit(work(1).0, &counters),
            Err(SubmitError::Shutdown)
        ));
        q.phase = Phase::Broken("why".into());
        assert!(matches!(
            q.submit(work(1).0, &counters),
            Err(SubmitError::Broken(_))
        ));
        assert_eq!(counters.submitted.load(SeqCst), 0);
    }

    #[test]
    fn requeued_tasks_go_first_in_order_and_cancelled_ones_do_not() {
        let counters = RemoteCounters::default();
        let mut q = Queue::new(Phase::Running);
        q.submit(work(1).0, &counters).unwrap();
        let mut back: Vec<_> = (0..3).map(|_| work(1).0).collect();
        for (i, w) in back.iter_mut().enumerate() {
            w.id = 10 + i as u64;
        }
        back[1].cancelled = true;
        let cancelled = q.requeue(back);
        assert_eq!(cancelled.iter().map(|w| w.id).collect::<Vec<_>>(), vec![11]);
        let ids: Vec<u64> = q.pending.iter().map(|w| w.id).collect();
        assert_eq!(ids, vec![10, 12, 1]);
        assert!(q.pending[0].claimed && q.pending[1].claimed);
    }

    #[test]
    fn shutting_down_cancels_only_what_is_not_running() {
        let counters = RemoteCounters::default();
        let mut q = Queue::new(Phase::Running);
        q.submit(work(1).0, &counters).unwrap();
        let mut back = work(1).0;
        back.id = 9;
        assert!(
            q.requeue(vec![back]).is_empty(),
            "given back: RUNNING, first"
        );
        let (cancelled, failed) = q.shut_down(false, false, &counters);
        assert!(cancelled.is_empty() && failed.is_empty() && q.pending.len() == 2);
        assert_eq!(q.phase, Phase::ShuttingDown);
        let (cancelled, failed) = q.shut_down(false, true, &counters);
        assert_eq!(cancelled.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1]);
        assert!(failed.is_empty());
        assert_eq!(q.pending.iter().map(|w| w.id).collect::<Vec<_>>(), vec![9]);
        assert_eq!(counters.cancelled.load(SeqCst), 1);
        let (cancelled, failed) = q.shut_down(true, false, &counters);
        assert!(cancelled.is_empty());
        assert_eq!(failed.iter().map(|w| w.id).collect::<Vec<_>>(), vec![9]);
        assert!(q.pending.is_empty() && q.phase == Phase::Terminated);
    }

    #[test]
    fn breaking_fails_claimed_tasks_and_keeps_cancelled_ones_cancelled() {
        let counters = RemoteCounters::default();
        let mut q = Queue::new(Phase::Running);
        let (a, sa) = work(1);
        q.submit(a, &counters).unwrap();
        q.submit(work(1).0, &counters).unwrap();
        sa.store(2, SeqCst);
        let failed = q.break_with("lost".into(), &counters);
        assert_eq!(failed.len(), 1);
        assert!(matches!(&failed[0].1, TaskError::Broken(why) if &**why == "lost"));
        assert_eq!(counters.cancelled.load(SeqCst), 1);
        assert!(q.pending.is_empty() && q.stopping());
    }
}
