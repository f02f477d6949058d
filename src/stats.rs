//! Pool statistics: [`PoolStats`] and [`WorkerStats`], read with
//! [`Executor::stats`](crate::Executor::stats) or
//! [`ThreadPoolExecutor::stats`](crate::ThreadPoolExecutor::stats).
//!
//! # What they cost (the thread pool)
//!
//! The counters are always on. Each worker owns a cache-line-padded block of counters that
//! only it writes (a relaxed load and store, no locked instruction, no line shared with
//! another writer):
//!
//! * per task it takes out of a queue: three counter bumps (taken, run, and its outcome);
//!   a task cancelled while queued or run by a waiting thread: two (taken, outcome);
//! * per task a task submits from inside the pool: one bump;
//! * per steal: two bumps (tasks stolen, and from whom);
//! * busy time is measured per streak of work, not per task: one clock read when the worker
//!   finds work after being idle, one when it runs out.
//!
//! Pool-wide counters (atomic adds on one padded line) are used only where no worker is
//! involved: a task submitted from outside the pool (one add per submission), and tasks
//! settled by a thread that is not a worker (`shutdown(cancel_futures=True)` emptying the
//! queues; the end of a task that a waiting thread was still running when a worker took
//! its stale queue entry).
//!
//! The process pool counts with atomic adds next to the system calls that move a task
//! (one add at submission, two when a result is read: its outcome and its worker slot's
//! tasks and busy time, from the run times the result carries; one per batch sent); the MPI
//! pool likewise next to its MPI calls, and its dispatcher stores the number of tasks the
//! workers hold when it changes. A give-back adds once for the worker that gave, once for
//! the one it is sent to. The counters that submitting threads write, those that the thread
//! reading results writes, and each worker slot's are on separate cache lines.
//!
//! Reading the statistics sums every worker's block; it never stops the pool. While tasks
//! run, the figures are a snapshot taken counter by counter; when the pool is quiescent
//! they are exact and `submitted == queued + running + done + failed + cancelled`.

use std::time::Duration;

use crossbeam_utils::CachePadded;

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// A pool's counters, as returned by [`Executor::stats`](crate::Executor::stats).
///
/// Every task submitted is in exactly one of `queued`, `running`, `done`, `failed` and
/// `cancelled` once the pool is quiescent ([`settled`](Self::settled)).
///
/// On the thread pool, a task counts as taken out of its queue when a worker takes it: a
/// task that a waiting thread ran itself (see
/// [`ThreadPoolBuilder::caller_runs`](crate::ThreadPoolBuilder::caller_runs)) or that was
/// cancelled while queued stays `queued` until a worker discards its queue entry, which
/// the workers do as soon as they get to it. A thread pool's
/// [`map`](crate::Executor::map) counts its helper jobs (each runs many items), not its items.
///
/// On the process pool, `running` counts the tasks sent to a worker and not yet answered
/// (a worker holds up to two batches), a task cancelled while queued leaves the queue when
/// its turn to be sent comes, `map` counts its chunks, and the pool also counts the bytes
/// that crossed and its workers' deaths and restarts. Its per-worker entries are worker
/// slots (a replacement counts on the slot of the worker it replaces; see [`WorkerStats`]).
/// A result is counted by the thread that read it, just after it completed the future: a
/// snapshot taken as a future completes may miss it for that instant. The MPI pool counts
/// as the process pool does (`running`: tasks sent to a worker rank, as of the dispatcher's
/// last round; an entry per worker rank); a lost rank is a death, and MPI has no restarts.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(2);
/// let ok: Vec<_> = (0..10).map(|i| pool.spawn(move || i)).collect();
/// let bad = pool.spawn(|| -> u32 { panic!("boom") });
/// for f in &ok { f.result().unwrap(); }
/// assert!(bad.result().is_err());
/// pool.shutdown(true);
///
/// let stats = pool.stats();
/// assert_eq!(stats.submitted, 11);
/// assert_eq!((stats.done, stats.failed, stats.cancelled), (10, 1, 0));
/// assert!(stats.settled());
/// assert_eq!(stats.workers.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks accepted by the pool.
    pub submitted: u64,
    /// Tasks waiting in a queue.
    pub queued: u64,
    /// Tasks taken out of a queue and not finished.
    pub running: u64,
    /// Tasks that finished with a value.
    pub done: u64,
    /// Tasks that finished with an error other than cancellation (a panic, a broken pool).
    pub failed: u64,
    /// Tasks cancelled: before they started ([`Future::cancel`](crate::Future::cancel),
    /// `shutdown` with `cancel_futures`) or while running
    /// ([`Future::cancel_running`](crate::Future::cancel_running)).
    pub cancelled: u64,
    /// One entry per worker, in worker order (a thread; a process pool's worker slot; an
    /// MPI worker rank). Empty for a backend without per-worker statistics (rayon).
    pub workers: Vec<WorkerStats>,
    /// Bytes sent to workers: call messages and arguments, inline or in shared memory
    /// (process and MPI pools; 0 on the thread pool, where nothing crosses).
    pub bytes_sent: u64,
    /// Bytes of results received from workers (process and MPI pools).
    pub bytes_received: u64,
    /// Workers that died, were killed (a time limit, `cancel_running`) or exited while the
    /// pool still needed them (process pool), or worker ranks lost (MPI pool).
    pub worker_deaths: u64,
    /// Workers started to replace dead or retired ones (process pool).
    pub worker_restarts: u64,
}

/// One worker's counters: a thread of a thread pool, a worker slot of a process pool (the
/// workers that replaced one another on it), a worker rank of an MPI pool.
///
/// On the remote pools, a task counts as run by the worker that returned its result or
/// died in it, `busy` sums the calls' run times as the worker measured them (on the MPI
/// pool, only of calls sent while the pool recorded its timeline: no clock is read
/// otherwise), and a steal is a task a worker gave back unstarted (`given_away`), counted
/// as `stolen` by the worker it is sent to next (not when it goes back to the same one).
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::builder().max_workers(1).caller_runs(false).build().unwrap();
/// pool.spawn(|| ()).result().unwrap();
/// pool.shutdown(true);
/// let w = &pool.stats().workers[0];
/// assert_eq!(w.tasks_run, 1);
/// assert_eq!((w.stolen, w.given_away), (0, 0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Tasks this worker ran.
    pub tasks_run: u64,
    /// Time spent working. On a thread pool, from finding work after being idle until
    /// running out of it (the queue operations between tasks included, searching and
    /// sleeping excluded); on a remote pool, the sum of the calls' run times.
    pub busy: Duration,
    /// Tasks this worker stole from other workers' queues (a task stolen twice, from one
    /// worker and then from its thief, counts for both thieves). On a remote pool, tasks
    /// another worker gave back that were sent to this one.
    pub stolen: u64,
    /// Tasks other workers stole from this worker's queue; on a remote pool, the tasks it
    /// gave back unstarted.
    pub given_away: u64,
}

impl PoolStats {
    /// Whether the counts add up: `submitted == queued + running + done + failed +
    /// cancelled`. Always true of a quiescent pool; a snapshot taken while tasks move may
    /// be off by the tasks that moved while it was read.
    ///
    /// ```
    /// let stats = concurrent_futures::ThreadPoolExecutor::new(1).stats();
    /// assert!(stats.settled());
    /// ```
    pub fn settled(&self) -> bool {
        self.submitted == self.queued + self.running + self.done + self.failed + self.cancelled
    }
}

/// How the thread that took a task out of a queue left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// It ran here, with this outcome.
    Ran(Outcome),
    /// It did not run here and has this outcome: cancelled or failed here (shutdown,
    /// broken pool), or already finished elsewhere (a waiting thread ran it, or it was
    /// cancelled while queued).
    Was(Outcome),
    /// Still running on a waiting thread: its end is counted by a callback.
    Later,
}

/// The three ends of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failed,
    Cancelled,
}

impl Settled {
    fn outcome(self) -> Option<Outcome> {
        match self {
            Settled::Ran(o) | Settled::Was(o) => Some(o),
            Settled::Later => None,
        }
    }
}

/// The counters of a pool whose tasks run in other processes: atomic adds by whichever
/// thread moves a task (the submitter, the reader of results, the manager thread); each
/// is touched once per task or per message, next to a system call.
#[derive(Default)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct RemoteCounters {
    /// Written by the submitting threads: on a line of its own, apart from the counters
    /// the thread that reads results writes (a shared line would bounce per task).
    pub(crate) submitted: CachePadded<AtomicU64>,
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) deaths: AtomicU64,
    pub(crate) restarts: AtomicU64,
    /// Per worker slot (the process pool's rows, the MPI pool's ranks): written by the
    /// thread that reads a result or an answer, or that sends a batch, each on the slot's
    /// own line.
    rows: Box<[CachePadded<RowCounters>]>,
}

/// One worker slot's counters on a remote pool.
#[derive(Default)]
struct RowCounters {
    ran: AtomicU64,
    busy_ns: AtomicU64,
    stolen: AtomicU64,
    given_away: AtomicU64,
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl RemoteCounters {
    /// The counters of a pool of `rows` worker slots.
    pub(crate) fn with_rows(rows: usize) -> Self {
        RemoteCounters {
            rows: (0..rows).map(|_| CachePadded::default()).collect(),
            ..RemoteCounters::default()
        }
    }

    /// Adds `n` to counter `c`.
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// A task ended this way: counted as done, failed or cancelled.
    pub(crate) fn ended(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Ok => &self.done,
            Outcome::Failed => &self.failed,
            Outcome::Cancelled => &self.cancelled,
        };
        Self::add(c, 1);
    }

    /// The worker on slot `row` ran a task, from `ran[0]` to `ran[1]` (any one clock's
    /// nanoseconds) if its run times are known.
    pub(crate) fn ran(&self, row: usize, ran: Option<[u64; 2]>) {
        if let Some(r) = self.rows.get(row) {
            r.ran.fetch_add(1, Relaxed);
            if let Some([start, end]) = ran {
                r.busy_ns.fetch_add(end.saturating_sub(start), Relaxed);
            }
        }
    }

    /// The worker on slot `row` gave back `n` tasks it had not started.
    pub(crate) fn gave_away(&self, row: usize, n: u64) {
        if let Some(r) = self.rows.get(row) {
            r.given_away.fetch_add(n, Relaxed);
        }
    }

    /// The worker on slot `row` was sent `n` tasks another worker gave back.
    pub(crate) fn stole(&self, row: usize, n: u64) {
        if let Some(r) = self.rows.get(row) {
            r.stolen.fetch_add(n, Relaxed);
        }
    }

    /// A snapshot, given what is queued and in flight now (read first: later stages are
    /// read after earlier ones would double count a moving task, see `Counters::snapshot`).
    pub(crate) fn snapshot(&self, queued: u64, running: u64) -> PoolStats {
        let done = self.done.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        let cancelled = self.cancelled.load(Relaxed);
        PoolStats {
            submitted: self.submitted.load(Relaxed),
            queued,
            running,
            done,
            failed,
            cancelled,
            workers: (self.rows.iter())
                .map(|r| WorkerStats {
                    tasks_run: r.ran.load(Relaxed),
                    busy: Duration::from_nanos(r.busy_ns.load(Relaxed)),
                    stolen: r.stolen.load(Relaxed),
                    given_away: r.given_away.load(Relaxed),
                })
                .collect(),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            worker_deaths: self.deaths.load(Relaxed),
            worker_restarts: self.restarts.load(Relaxed),
        }
    }
}

/// One counter written by one thread only: a relaxed load and store (no locked add).
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// A worker's counters, written only by that worker.
pub(crate) struct WorkerCounters {
    taken: AtomicU64,
    ran: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    submitted: AtomicU64,
    stolen: AtomicU64,
    /// `stolen_from[v]`: tasks this worker stole from worker `v`.
    stolen_from: Box<[AtomicU64]>,
    busy_ns: AtomicU64,
    /// Start of the current streak of work, in ns since the pool's epoch, plus one (0: idle).
    busy_since: AtomicU64,
}

impl WorkerCounters {
    fn new(workers: usize) -> Self {
        WorkerCounters {
            taken: AtomicU64::new(0),
            ran: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
            stolen: AtomicU64::new(0),
            stolen_from: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            busy_ns: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
        }
    }

    /// This worker submitted a task (from inside a task).
    pub(crate) fn submitted(&self) {
        bump(&self.submitted, 1);
    }

    /// This worker took a task out of a queue.
    pub(crate) fn taken(&self) {
        bump(&self.taken, 1);
    }

    /// This worker is done with the task it took.
    pub(crate) fn settle(&self, how: Settled) {
        if let Settled::Ran(_) = how {
            bump(&self.ran, 1);
        }
        match how.outcome() {
            Some(Outcome::Ok) => bump(&self.ok, 1),
            Some(Outcome::Failed) => bump(&self.failed, 1),
            Some(Outcome::Cancelled) => bump(&self.cancelled, 1),
            None => {}
        }
    }

    /// This worker stole `count` tasks from worker `victim`.
    pub(crate) fn stole(&self, victim: usize, count: u64) {
        bump(&self.stolen, count);
        bump(&self.stolen_from[victim], count);
    }

    /// A streak of work starts at `now_ns` (ns since the pool's epoch).
    pub(crate) fn busy_from(&self, now_ns: u64) {
        self.busy_since.store(now_ns + 1, Relaxed);
    }

    /// The streak of work that started at `busy_from` ends at `now_ns`.
    pub(crate) fn idle_from(&self, now_ns: u64) {
        let since = self.busy_since.load(Relaxed);
        if since != 0 {
            bump(&self.busy_ns, now_ns.saturating_sub(since - 1));
            self.busy_since.store(0, Relaxed);
        }
    }
}

/// Counters any thread may write (atomic adds): what no worker settles.
#[derive(Default)]
pub(crate) struct SharedCounters {
    submitted: AtomicU64,
    taken: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
}

impl SharedCounters {
    /// A task submitted from outside the pool's workers.
    pub(crate) fn submitted(&self) {
        self.submitted.fetch_add(1, Relaxed);
    }

    /// A non-worker thread took a task out of a queue (draining it).
    pub(crate) fn taken(&self) {
        self.taken.fetch_add(1, Relaxed);
    }

    /// The end of a task taken by a non-worker thread, or counted by a callback.
    pub(crate) fn settle(&self, how: Settled) {
        match how.outcome() {
            Some(Outcome::Ok) => self.ok.fetch_add(1, Relaxed),
            Some(Outcome::Failed) => self.failed.fetch_add(1, Relaxed),
            Some(Outcome::Cancelled) => self.cancelled.fetch_add(1, Relaxed),
            None => 0,
        };
    }
}

/// All the counters of one pool.
pub(crate) struct Counters {
    pub(crate) workers: Box<[CachePadded<WorkerCounters>]>,
    pub(crate) shared: std::sync::Arc<CachePadded<SharedCounters>>,
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Self {
        Counters {
            workers: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::new(workers)))
                .collect(),
            shared: std::sync::Arc::new(CachePadded::new(SharedCounters::default())),
        }
    }

    /// Sums the counters; `queued` counts what the queues hold, `now_ns` is the time since
    /// the pool's epoch (for the busy time of streaks still going on).
    pub(crate) fn snapshot(&self, queued: impl FnOnce() -> u64, now_ns: u64) -> PoolStats {
        let s = &self.shared;
        // Stages are read from the last to the first (outcomes, taken, queued, submitted):
        // a task moving meanwhile is seen in an earlier stage, never counted twice.
        let mut done = s.ok.load(Relaxed);
        let mut failed = s.failed.load(Relaxed);
        let mut cancelled = s.cancelled.load(Relaxed);
        let mut workers = Vec::with_capacity(self.workers.len());
        for w in self.workers.iter() {
            done += w.ok.load(Relaxed);
            failed += w.failed.load(Relaxed);
            cancelled += w.cancelled.load(Relaxed);
        }
        let mut taken = s.taken.load(Relaxed);
        for (i, w) in self.workers.iter().enumerate() {
            taken += w.taken.load(Relaxed);
            let since = w.busy_since.load(Relaxed);
            let open = if since == 0 {
                0
            } else {
                now_ns.saturating_sub(since - 1)
            };
            workers.push(WorkerStats {
                tasks_run: w.ran.load(Relaxed),
                busy: Duration::from_nanos(w.busy_ns.load(Relaxed) + open),
                stolen: w.stolen.load(Relaxed),
                given_away: self
                    .workers
                    .iter()
                    .map(|thief| thief.stolen_from[i].load(Relaxed))
                    .sum(),
            });
        }
        let queued = queued();
        let mut submitted = s.submitted.load(Relaxed);
        for w in self.workers.iter() {
            submitted += w.submitted.load(Relaxed);
        }
        PoolStats {
            submitted,
            queued,
            running: taken.saturating_sub(done + failed + cancelled),
            done,
            failed,
            cancelled,
            workers,
            ..PoolStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_counted_once_where_it_belongs() {
        let c = RemoteCounters::with_rows(1);
        c.ended(Outcome::Ok);
        c.ended(Outcome::Ok);
        c.ended(Outcome::Failed);
        c.ended(Outcome::Cancelled);
        let s = c.snapshot(0, 0);
        assert_eq!((s.done, s.failed, s.cancelled), (2, 1, 1));
    }
}
