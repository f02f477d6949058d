//! The dispatch core without a process: a fake future ([`Fake`]) and a wire that records
//! what the core asks of it ([`Log`]), and the core's decisions checked against them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

use super::window::{MAX_BATCH, MAX_BATCHES};
use super::*;
use crate::error::TaskError;
use crate::remote::{Completion, FnRef};
use crate::stats::RemoteCounters;
use crate::trace::TaskTrace;

/// A future stand-in: its state word is 0 pending, 1 running, 2 cancelled, 3 completed.
pub(crate) struct Fake(Arc<AtomicU8>, TaskTrace);

impl Completion for Fake {
    fn claim(&self) -> bool {
        self.0.compare_exchange(0, 1, SeqCst, SeqCst).is_ok()
    }
    fn cancel(self: Box<Self>) {
        let _ = self.0.compare_exchange(0, 2, SeqCst, SeqCst);
    }
    fn complete(self: Box<Self>, _: Result<&[u8], TaskError>) -> crate::stats::Outcome {
        self.0.store(3, SeqCst);
        crate::stats::Outcome::Ok
    }
    fn settle_deferring(
        self: Box<Self>,
        _: Result<&[u8], TaskError>,
    ) -> (Option<crate::future::Deferred>, crate::stats::Outcome) {
        self.0.store(3, SeqCst);
        (None, crate::stats::Outcome::Ok)
    }
    fn trace(&self) -> &TaskTrace {
        &self.1
    }
}

/// A function name no task here calls (the core never looks into it).
const TARGET: FnRef = FnRef { func: 0, tramp: 0 };

/// A task with `payload`, and its future's state word.
pub(crate) fn task<P>(payload: P) -> (Work<P>, Arc<AtomicU8>) {
    let state = Arc::new(AtomicU8::new(0));
    let fake = Fake(
        state.clone(),
        TaskTrace::submitted(crate::trace::Pool::Process),
    );
    let w = Work::new(
        TARGET,
        payload,
        Box::new(fake),
        Vec::new(),
        TaskKind::Task,
        None,
    );
    (w, state)
}

/// A payload: bytes, attached files.
type Load = (usize, usize);

/// What the core asked of the wire. A worker's link is its key, and its slot too.
struct Log {
    /// Batches sent: worker, number, task ids.
    sent: Vec<(u64, u64, Vec<u64>)>,
    /// Revokes: worker, through batch.
    revoked: Vec<(u64, u64)>,
    retired: Vec<u64>,
    /// Workers a send no longer reaches.
    gone: Vec<u64>,
    /// Steals told: thief, victim's slot, tasks.
    stolen: Vec<(u64, usize, u64)>,
    counters: RemoteCounters,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            sent: Vec::new(),
            revoked: Vec::new(),
            retired: Vec::new(),
            gone: Vec::new(),
            stolen: Vec::new(),
            counters: RemoteCounters::with_rows(4),
        }
    }
}

impl Transport for Log {
    type Payload = Load;
    type Link = u64;
    const MAX_BATCH_BYTES: usize = 100;
    const MAX_BATCH_FILES: usize = 2;

    fn weight(payload: &Load) -> (usize, usize) {
        *payload
    }
    fn label(link: &u64) -> u64 {
        *link
    }
    fn row(link: &u64) -> usize {
        *link as usize
    }
    fn counters(&self) -> &RemoteCounters {
        &self.counters
    }
    fn send(&mut self, link: &mut u64, batch: &mut Batch<Load>) -> Result<(), Gone> {
        if self.gone.contains(link) {
            return Err(Gone);
        }
        let ids = batch.works.iter().map(|w| w.id).collect();
        self.sent.push((*link, batch.seq, ids));
        Ok(())
    }
    fn revoke(&mut self, link: &u64, through: u64) -> bool {
        self.revoked.push((*link, through));
        true
    }
    fn retire(&mut self, link: &u64) {
        self.retired.push(*link);
    }
    fn stolen(&mut self, thief: &u64, victim: usize, tasks: u64) {
        self.stolen.push((*thief, victim, tasks));
    }
}

impl Log {
    /// Every task id sent, in order.
    fn ids(&self) -> Vec<u64> {
        self.sent
            .iter()
            .flat_map(|(_, _, ids)| ids.clone())
            .collect()
    }

    /// The sizes of the batches sent.
    fn sizes(&self) -> Vec<usize> {
        self.sent.iter().map(|(_, _, ids)| ids.len()).collect()
    }
}

/// A running pool's queue, an empty log and `workers(n, budget, max_held)`.
fn running(
    n: u64,
    budget: Option<usize>,
    max_held: usize,
) -> (Queue<Load>, Log, Workers<u64, Load>) {
    (
        Queue::new(Phase::Running),
        Log::default(),
        workers(n, budget, max_held),
    )
}

/// `n` ready workers, keyed 1..=n, each with `budget` and at most `max_held` tasks.
fn workers(n: u64, budget: Option<usize>, max_held: usize) -> Workers<u64, Load> {
    let mut w = Workers::new(max_held);
    for key in 1..=n {
        w.insert(key, Worker::new(key, true, budget, true));
    }
    w
}

/// Submits `n` tasks of `load`; their state words.
fn submit(q: &mut Queue<Load>, log: &Log, n: usize, load: Load) -> Vec<Arc<AtomicU8>> {
    (0..n)
        .map(|_| {
            let (w, state) = task(load);
            q.submit(w, &log.counters).expect("accepted");
            state
        })
        .collect()
}

#[test]
fn dispatch_claims_each_task_and_skips_those_cancelled_while_pending() {
    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    let states = submit(&mut q, &log, 3, (1, 0));
    states[1].store(2, SeqCst); // cancelled by its future
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.ids(), vec![1, 3]);
    assert_eq!(log.counters.cancelled.load(SeqCst), 1);
    assert!(
        states[0].load(SeqCst) == 1 && states[2].load(SeqCst) == 1,
        "RUNNING"
    );
    assert!(w.inflight.contains_key(&1) && w.inflight.contains_key(&3));
    assert!(!w.inflight.contains_key(&2), "never sent");
}

#[test]
fn a_batch_stops_at_the_byte_cap_and_a_large_task_goes_alone() {
    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 40, (40, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(
        log.sizes(),
        vec![2, 2],
        "40 + 40 fit in 100 bytes, a third does not"
    );

    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 1, (500, 0));
    submit(&mut q, &log, 40, (1, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sent[0].2, vec![1], "over the cap alone: it goes alone");
    assert_eq!(log.sizes()[1], 10, "then a batch of `batch_size(40, 1)`");
}

#[test]
fn a_batch_stops_at_the_file_cap() {
    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 40, (0, 1));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sizes(), vec![2, 2]);
}

#[test]
fn a_batch_stops_at_max_batch_and_a_worker_at_max_batches_or_max_held() {
    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 1000, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sizes(), vec![MAX_BATCH; MAX_BATCHES]);
    assert_eq!(q.pending.len(), 1000 - MAX_BATCH * MAX_BATCHES);

    let (mut q, mut log, mut w) = running(1, None, 5);
    submit(&mut q, &log, 1000, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sizes(), vec![5], "at most 5 held");
    assert_eq!(w.free_slots(), 0);
}

#[test]
fn the_budget_counts_tasks_sent_and_a_spent_worker_retires_once_empty() {
    let (mut q, mut log, mut w) = running(1, Some(3), usize::MAX);
    submit(&mut q, &log, 10, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.ids(), vec![1, 2, 3], "never more than the budget");
    assert!(w.finished(1, 1, &mut log).unwrap().is_some());
    assert!(w.finished(1, 2, &mut log).unwrap().is_some());
    assert!(log.retired.is_empty(), "it still holds a task");
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.ids().len(), 3, "a spent worker gets nothing more");
    assert!(w.finished(1, 3, &mut log).unwrap().is_some());
    assert_eq!(log.retired, vec![1]);
    assert!(!w.get(1).unwrap().open(usize::MAX));
}

#[test]
fn a_task_given_back_returns_to_the_budget() {
    let (mut q, mut log, mut w) = running(1, Some(3), usize::MAX);
    submit(&mut q, &log, 8, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.ids(), vec![1, 2, 3]);
    w.get_mut(1).unwrap().window.revoking = true;
    let back = w.given_back(1, &[3], u64::MAX, &log).unwrap();
    assert_eq!(back.iter().map(|w| w.id).collect::<Vec<_>>(), vec![3]);
    assert!(q.requeue(back).is_empty());
    w.finished(1, 1, &mut log).unwrap();
    w.finished(1, 2, &mut log).unwrap();
    assert!(log.retired.is_empty(), "one task of its budget is left");
    w.dispatch(&mut q, &mut log);
    assert_eq!(
        log.ids(),
        vec![1, 2, 3, 3],
        "task 3 goes out again, to the same worker"
    );
    assert_eq!(q.pending.len(), 5);
    // Given away, and taken back by the worker that gave it: no steal.
    let stats = log.counters.snapshot(0, 0);
    assert_eq!(
        (stats.workers[1].given_away, stats.workers[1].stolen),
        (1, 0)
    );
    assert!(log.stolen.is_empty());
}

#[test]
fn a_death_fails_what_it_started_and_queues_again_the_rest_in_order() {
    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 16, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.ids(), vec![1, 2, 3, 4, 5, 6, 7]);
    let (worker, held) = w.remove(1).expect("a worker");
    assert!(worker.window.is_empty() && w.get(1).is_none());
    assert_eq!(held, vec![1, 2, 3, 4, 5, 6, 7]);
    let held: Vec<_> = held
        .iter()
        .map(|id| w.inflight.remove(id).unwrap())
        .collect();
    // It started the second task: the first ran (its result never came), the second is
    // the one it died in.
    let failed = bury(held, 2, Some(&mut q));
    assert_eq!(failed.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1, 2]);
    let queued: Vec<u64> = q.pending.iter().map(|w| w.id).collect();
    assert_eq!(queued, (3..=16).collect::<Vec<u64>>());
    assert!(
        q.pending.iter().take(5).all(|w| w.claimed),
        "RUNNING already"
    );
    assert!(!q.pending[5].claimed, "never sent");
}

#[test]
fn a_death_without_a_queue_fails_everything_it_held() {
    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 2, (0, 0));
    w.dispatch(&mut q, &mut log);
    let (_, held) = w.remove(1).unwrap();
    let held: Vec<_> = held.iter().filter_map(|id| w.inflight.remove(id)).collect();
    assert_eq!(bury(held, 0, None).len(), 2);
    assert!(q.pending.is_empty());
}

#[test]
fn an_idle_worker_steals_what_a_busy_one_has_not_started() {
    let (mut q, mut log, mut w) = running(2, None, usize::MAX);
    w.get_mut(2).unwrap().ready = false;
    submit(&mut q, &log, 2, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sent, vec![(1, 1, vec![1]), (1, 2, vec![2])]);
    assert!(log.revoked.is_empty(), "no idle worker");
    w.get_mut(2).unwrap().ready = true;
    assert!(
        !w.steal(false, &Phase::Running, &mut log),
        "not while work is pending"
    );
    assert!(
        !w.steal(true, &Phase::Terminated, &mut log),
        "not once terminated"
    );
    assert!(w.steal(true, &Phase::Running, &mut log));
    assert_eq!(log.revoked, vec![(1, 2)], "through its last batch");
    assert!(!w.steal(true, &Phase::Running, &mut log), "asked once");
    // It runs task 1, and had not read batch 2.
    let back = w.given_back(1, &[], 2, &log).unwrap();
    assert!(q.requeue(back).is_empty());
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sent[2], (2, 1, vec![2]), "the idle worker runs it");
    // Worker 2 stole it from worker 1: counted on both, told to the transport once.
    assert_eq!(log.stolen, vec![(2, 1, 1)]);
    let stats = log.counters.snapshot(0, 0);
    assert_eq!(
        (stats.workers[1].given_away, stats.workers[2].stolen),
        (1, 1)
    );
    assert_eq!(
        (stats.workers[2].given_away, stats.workers[1].stolen),
        (0, 0)
    );
    assert!(!w.get(1).unwrap().open(usize::MAX), "busy with a long task");
    w.finished(1, 1, &mut log).unwrap();
    assert!(w.get(1).unwrap().open(usize::MAX));
}

#[test]
fn a_worker_completes_only_what_it_holds_and_answers_only_what_was_asked() {
    let (mut q, mut log, mut w) = running(2, None, usize::MAX);
    submit(&mut q, &log, 1, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sent[0].0, 1);
    assert!(
        matches!(w.finished(2, 1, &mut log), Err(Unasked)),
        "another worker's"
    );
    assert!(
        matches!(w.finished(1, 99, &mut log), Err(Unasked)),
        "never sent"
    );
    assert!(
        matches!(w.finished(3, 1, &mut log), Err(Unasked)),
        "no such worker"
    );
    assert!(
        matches!(w.given_back(1, &[1], 1, &log), Err(Unasked)),
        "never asked"
    );
    assert!(matches!(w.finished(1, 1, &mut log), Ok(Some(_))));
    assert!(
        matches!(w.finished(1, 1, &mut log), Err(Unasked)),
        "not twice"
    );
}

#[test]
fn a_batch_that_never_reached_its_worker_goes_to_the_next() {
    let (mut q, mut log, mut w) = running(2, Some(5), usize::MAX);
    log.gone.push(1);
    submit(&mut q, &log, 1, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert_eq!(log.sent, vec![(2, 1, vec![1])]);
    let gone = w.get(1).unwrap();
    assert!(gone.retiring && gone.window.is_empty() && !gone.open(usize::MAX));
    assert!(q.pending.is_empty() && w.inflight.contains_key(&1));
}

#[test]
fn a_pending_task_means_no_worker_has_room() {
    for n in 1..=3 {
        for tasks in [0, 1, 5, 50, 300] {
            let (mut q, mut log, mut w) = running(n, None, 40);
            submit(&mut q, &log, tasks, (30, 0));
            w.dispatch(&mut q, &mut log);
            if !q.pending.is_empty() {
                assert_eq!(w.free_slots(), 0, "{n} workers, {tasks} tasks");
                assert!(w.iter().all(|(_, w)| !w.open(40)));
            }
            assert_eq!(log.ids().len() + q.pending.len(), tasks);
        }
    }
}

#[test]
fn tasks_claimed_against_free_slots_go_out_in_the_next_round() {
    let (mut q, mut log, mut w) = running(2, None, usize::MAX);
    // A dispatcher that runs apart publishes its free slots: one per free batch.
    q.slots = w.free_slots();
    assert_eq!(q.slots, 2 * MAX_BATCHES);
    let states = submit(&mut q, &log, 5, (0, 0));
    let claimed = states.iter().filter(|s| s.load(SeqCst) == 1).count();
    assert_eq!(claimed, 4, "one per free slot; the fifth finds no room");
    while let Some(batch) = w.cut::<Log>(&mut q, &RemoteCounters::default()) {
        assert!(w.send(batch, &mut log).is_ok());
    }
    assert_eq!(log.ids(), vec![1, 2, 3, 4]);
    assert_eq!(q.pending.len(), 1);
    assert!(!q.pending[0].claimed, "no worker has room for it");
}

#[test]
fn workers_retire_once_shutdown_leaves_nothing_and_at_once_when_terminated() {
    let (mut q, mut log, mut w) = running(2, None, usize::MAX);
    submit(&mut q, &log, 1, (0, 0));
    w.dispatch(&mut q, &mut log);
    q.phase = Phase::ShuttingDown;
    assert!(!w.retire_if_done(&Phase::Running, true, &mut log));
    assert!(
        !w.retire_if_done(&q.phase, true, &mut log),
        "a task is in flight"
    );
    let key = log.sent[0].0;
    w.finished(key, 1, &mut log).unwrap();
    assert!(w.retire_if_done(&q.phase, true, &mut log));
    log.retired.sort_unstable();
    assert_eq!(log.retired, vec![1, 2]);
    assert!(w.expecting(), "their exits are to come");

    let (mut q, mut log, mut w) = running(1, None, usize::MAX);
    submit(&mut q, &log, 1, (0, 0));
    w.dispatch(&mut q, &mut log);
    assert!(w.retire_if_done(&Phase::Terminated, true, &mut log));
    assert_eq!(log.retired, vec![1]);
}
