//! The thread pool's shared state and its workers' scheduling loop.
//!
//! # Where work lives
//!
//! * The global [`Injector`] receives tasks submitted from outside the pool.
//! * Each worker owns a FIFO [`Worker`] deque; a task submitted from inside a worker goes
//!   there. Its [`Stealer`] lets idle siblings take half of it.
//!
//! # The loop (per worker)
//!
//! 1. Every [`INJECTOR_INTERVAL`]th round, look at the injector first, so that a worker
//!    fed by its own deque cannot starve external submissions.
//! 2. Pop the local deque.
//! 3. Steal a batch from the injector into the local deque.
//! 4. Steal a batch from a sibling, starting at a random one.
//! 5. Nothing: spin for at most [`SPIN`], then sleep (see `sleep.rs`).
//!
//! # Statistics and the timeline
//!
//! Each worker counts what it takes out of a queue and how it leaves it in its own padded
//! block of counters (`stats.rs`); the timeline records task spans and steals only while
//! the `RECORDING` flag is set, which `run_job` reads with the other flags it already
//! reads for every job.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;
use std::sync::Arc;

use super::job::JobRef;
use super::sleep::Sleep;
use crate::error::{SubmitError, TaskError};
use crate::stats::{Counters, PoolStats, Settled};
use crate::sync::{self, AtomicUsize, Condvar, Mutex, fence};
use crate::timeline::{Recorder, TaskOutcome, Timeline};
use crate::trace::{self, Pool};

/// Every this many rounds a worker checks the injector before its own deque.
const INJECTOR_INTERVAL: u32 = 61;

/// How long an idle worker spins before it sleeps. Short on purpose: an idle pool must
/// cost nothing, and the latency of a task submitted to a sleeping pool is kept off the
/// wake-up path by letting the waiting thread run the task itself (see `Future::result`).
const SPIN: Duration = Duration::from_micros(10);

const SHUTDOWN: usize = 1;
const CANCEL: usize = 2;
const BROKEN: usize = 4;
const RECORDING: usize = 8;

/// State shared by a pool's handle and its workers.
pub(crate) struct Registry {
    injector: Injector<JobRef>,
    stealers: Box<[Stealer<JobRef>]>,
    pub(crate) sleep: Sleep,
    /// SHUTDOWN | CANCEL | BROKEN | RECORDING. Read by workers for every job; written rarely.
    flags: CachePadded<AtomicUsize>,
    broken: OnceLock<Arc<str>>,
    /// Workers still running, and the condition `shutdown(wait)` waits on.
    live: Mutex<usize>,
    all_exited: Condvar,
    /// Whether a thread blocked on a pending task may run it itself.
    pub(crate) inline: bool,
    counters: Counters,
    recorder: Recorder,
}

/// A worker thread's own view: its deque, kept in a thread-local so that submissions from
/// inside a task can find it.
struct Local {
    registry: *const Registry,
    index: usize,
    deque: Worker<JobRef>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

impl Registry {
    /// A registry for `n` workers; returns it with the deques each worker must own.
    pub(crate) fn new(n: usize, inline: bool) -> (Self, Vec<Worker<JobRef>>) {
        let deques: Vec<Worker<JobRef>> = (0..n).map(|_| Worker::new_fifo()).collect();
        let registry = Registry {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            sleep: Sleep::new(n),
            flags: CachePadded::new(AtomicUsize::new(0)),
            broken: OnceLock::new(),
            live: Mutex::new(n),
            all_exited: Condvar::new(),
            inline,
            counters: Counters::new(n),
            recorder: Recorder::new(n),
        };
        (registry, deques)
    }

    pub(crate) fn num_workers(&self) -> usize {
        self.stealers.len()
    }

    /// Queues a job: on the current worker's deque if called from one of this pool's
    /// workers, else on the injector. Refuses after shutdown or breakage.
    ///
    /// Returns whether a shutdown began while the job was being queued. The caller must then
    /// cancel the job if it is still pending: the workers may already have found the queues
    /// empty for good. (Push, `SeqCst` fence, read the flags; a worker reads the flags, fences,
    /// then scans the queues before exiting: one of the two sees the other.)
    pub(crate) fn push(&self, job: JobRef) -> Result<bool, SubmitError> {
        let flags = self.flags.load(SeqCst);
        if flags & (SHUTDOWN | BROKEN) != 0 {
            return Err(self.refusal(flags));
        }
        let mut job = Some(job);
        LOCAL.with_borrow(|local| {
            if let Some(local) = local
                && std::ptr::eq(local.registry, self)
                && let Some(job) = job.take()
            {
                self.counters.workers[local.index].submitted();
                local.deque.push(job);
            }
        });
        if let Some(job) = job {
            self.counters.shared.submitted();
            self.injector.push(job);
        }
        fence(SeqCst);
        self.sleep.notify_one_fenced();
        Ok(self.flags.load(SeqCst) & SHUTDOWN != 0)
    }

    fn refusal(&self, flags: usize) -> SubmitError {
        if flags & BROKEN != 0 {
            SubmitError::Broken(self.broken_reason())
        } else {
            SubmitError::Shutdown
        }
    }

    fn broken_reason(&self) -> Arc<str> {
        self.broken.get().cloned().unwrap_or_else(|| Arc::from(""))
    }

    /// Whether any queue holds work (racy by nature; used before sleeping).
    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// True once shutdown is requested.
    fn terminated(&self) -> bool {
        self.flags.load(Acquire) & SHUTDOWN != 0
    }

    /// True once shutdown is requested and every queue is empty: the worker may exit. A job
    /// pushed concurrently is either seen here or cancelled by its submitter (see `push`).
    fn should_exit(&self) -> bool {
        if self.flags.load(SeqCst) & SHUTDOWN == 0 {
            return false;
        }
        fence(SeqCst);
        !self.has_work()
    }

    /// Takes work from the injector: one task while the queue is short, so that tasks start
    /// in submission order as in Python's FIFO pool; a batch (into the local deque) when it
    /// is long, to amortise the contention on the injector.
    fn steal_injector(&self, local: &Worker<JobRef>) -> Option<JobRef> {
        let workers = self.stealers.len();
        let queued = self.injector.len();
        let limit = if queued <= 4 * workers {
            1
        } else {
            (queued / (2 * workers)).min(32)
        };
        loop {
            match self.injector.steal_batch_with_limit_and_pop(local, limit) {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    fn steal_sibling(&self, me: usize, local: &Worker<JobRef>, start: usize) -> Option<JobRef> {
        let n = self.stealers.len();
        let mut retry = true;
        while retry {
            retry = false;
            for k in 0..n {
                let i = (start + k) % n;
                if i == me {
                    continue;
                }
                let before = local.len();
                match self.stealers[i].steal_batch_and_pop(local) {
                    Steal::Success(job) => {
                        let tasks = (local.len() + 1).saturating_sub(before) as u64;
                        self.counters.workers[me].stole(i, tasks);
                        trace::stolen(Pool::Thread, Some(me as u64), i as u64, tasks);
                        if self.flags.load(Relaxed) & RECORDING != 0 {
                            self.recorder.steal(me, i, tasks);
                        }
                        return Some(job);
                    }
                    Steal::Empty => {}
                    Steal::Retry => retry = true,
                }
            }
        }
        None
    }

    /// One round of looking for work, in the order of the module docs.
    fn find_work(&self, local: &Local, tick: &mut u32, rng: &mut XorShift) -> Option<JobRef> {
        *tick = tick.wrapping_add(1);
        if tick.is_multiple_of(INJECTOR_INTERVAL)
            && let Some(job) = self.steal_injector(&local.deque)
        {
            return Some(job);
        }
        if let Some(job) = local.deque.pop() {
            return Some(job);
        }
        if let Some(job) = self.steal_injector(&local.deque) {
            return Some(job);
        }
        let start = rng.next() % self.stealers.len();
        self.steal_sibling(local.index, &local.deque, start)
    }

    /// Runs (or cancels, or fails) a job worker `me` took out of a queue, and counts it.
    fn run_job(&self, me: usize, job: JobRef) {
        let counters = &self.counters.workers[me];
        counters.taken();
        let shared = &self.counters.shared;
        let flags = self.flags.load(Relaxed);
        let settled = if flags & (BROKEN | CANCEL | RECORDING) == 0 {
            job.execute(shared)
        } else if flags & BROKEN != 0 {
            job.fail(TaskError::Broken(self.broken_reason()), shared)
        } else if flags & CANCEL != 0 {
            job.cancel(shared)
        } else {
            let name = job.name();
            let start = self.recorder.now_ns();
            let settled = job.execute(shared);
            if let Settled::Ran(outcome) = settled {
                let end = self.recorder.now_ns();
                let outcome = TaskOutcome::from_outcome(outcome);
                self.recorder.task(me, start, end, outcome, name);
            }
            settled
        };
        counters.settle(settled);
    }

    /// Marks the pool broken (an initializer failed) and fails what is queued.
    pub(crate) fn set_broken(&self, reason: String) {
        let _ = self.broken.set(Arc::from(reason));
        self.flags.fetch_or(BROKEN, SeqCst);
        let reason = self.broken_reason();
        self.drain(|job, shared| job.fail(TaskError::Broken(reason.clone()), shared));
        self.sleep.notify_all();
    }

    /// Empties the injector and the workers' deques (stealing), handing each job to `f`,
    /// and counts how `f` settled it (in the shared counters: any thread may drain).
    fn drain(&self, f: impl Fn(JobRef, &super::job::Shared) -> Settled) {
        let shared = &self.counters.shared;
        let settle = |job| {
            shared.taken();
            shared.settle(f(job, shared));
        };
        loop {
            match self.injector.steal() {
                Steal::Success(job) => settle(job),
                Steal::Empty => break,
                Steal::Retry => {}
            }
        }
        for s in self.stealers.iter() {
            loop {
                match s.steal() {
                    Steal::Success(job) => settle(job),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
        }
    }

    /// Stops accepting work; with `cancel`, cancels what has not started; wakes every
    /// worker so that each exits once the queues are empty.
    pub(crate) fn shutdown(&self, cancel: bool) {
        self.flags
            .fetch_or(SHUTDOWN | if cancel { CANCEL } else { 0 }, SeqCst);
        if cancel {
            self.drain(|job, shared| job.cancel(shared));
        }
        self.sleep.notify_all();
    }

    /// Blocks until every worker has exited (all but the caller, if it is one of them).
    pub(crate) fn wait_exited(&self) {
        let me = if self.is_current_worker() { 1 } else { 0 };
        let mut live = sync::lock(&self.live);
        while *live > me {
            live = sync::wait(&self.all_exited, live);
        }
    }

    /// Accounts for `k` workers that were never started (a failed build).
    pub(crate) fn forget_unstarted(&self, k: usize) {
        let mut live = sync::lock(&self.live);
        *live -= k;
        self.all_exited.notify_all();
    }

    /// True if the calling thread is one of this pool's workers.
    pub(crate) fn is_current_worker(&self) -> bool {
        LOCAL.with_borrow(|l| l.as_ref().is_some_and(|l| std::ptr::eq(l.registry, self)))
    }

    /// The body of worker thread `index`.
    pub(crate) fn main_loop(
        self: &Arc<Self>,
        index: usize,
        deque: Worker<JobRef>,
        init: Option<&(dyn Fn() + Send + Sync)>,
    ) {
        LOCAL.set(Some(Local {
            registry: &**self,
            index,
            deque,
        }));
        trace::thread_worker_started(index);
        if let Some(init) = init
            && let Err(e) = crate::unwind::catch(init)
        {
            self.set_broken(format!("a worker's initializer failed: {e}"));
        }
        let mut tick = 0u32;
        let mut searching = false;
        let mut busy = false;
        let mut rng = XorShift::new(index);
        let counters = &self.counters.workers[index];
        loop {
            let found = LOCAL.with_borrow(|l| {
                let local = l.as_ref().expect("[internal] worker without its deque");
                self.find_work(local, &mut tick, &mut rng)
            });
            if let Some(job) = found {
                if !busy {
                    busy = true;
                    counters.busy_from(self.recorder.now_ns());
                }
                self.sleep.found_work(&mut searching, || self.has_work());
                self.run_job(index, job);
                continue;
            }
            if busy {
                busy = false;
                counters.idle_from(self.recorder.now_ns());
            }
            if self.should_exit() {
                break;
            }
            self.sleep.start_searching(&mut searching);
            let spun = self.spin(&mut tick, &mut rng);
            if let Some(job) = spun {
                busy = true;
                counters.busy_from(self.recorder.now_ns());
                self.sleep.found_work(&mut searching, || self.has_work());
                self.run_job(index, job);
                continue;
            }
            self.sleep.sleep(index, &mut searching, || {
                self.has_work() || self.terminated()
            });
        }
        LOCAL.set(None);
        trace::thread_worker_exited(index);
        let mut live = sync::lock(&self.live);
        *live -= 1;
        self.all_exited.notify_all();
    }

    /// The pool's counters now (see `stats.rs`).
    pub(crate) fn stats(&self) -> PoolStats {
        let queued =
            || (self.injector.len() + self.stealers.iter().map(Stealer::len).sum::<usize>()) as u64;
        self.counters.snapshot(queued, self.recorder.now_ns())
    }

    /// Starts or stops recording the timeline.
    pub(crate) fn set_recording(&self, on: bool) {
        if on {
            self.flags.fetch_or(RECORDING, SeqCst);
        } else {
            self.flags.fetch_and(!RECORDING, SeqCst);
        }
    }

    /// What was recorded so far (recording goes on if it is on).
    pub(crate) fn take_timeline(&self) -> Timeline {
        self.recorder.take()
    }

    /// Looks for work for at most `SPIN`.
    fn spin(&self, tick: &mut u32, rng: &mut XorShift) -> Option<JobRef> {
        let start = Instant::now();
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            // Yield rather than hold the core: on a busy machine the thread that would
            // submit the next task may be waiting for this very CPU.
            backoff.snooze();
            let found = LOCAL.with_borrow(|l| {
                let local = l.as_ref().expect("[internal] worker without its deque");
                self.find_work(local, tick, rng)
            });
            if found.is_some() || self.terminated() || start.elapsed() >= SPIN {
                return found;
            }
        }
    }
}

/// A tiny PRNG to pick the first sibling to steal from.
struct XorShift(u64);

impl XorShift {
    fn new(seed: usize) -> Self {
        XorShift(0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x as usize
    }
}
