//! [`MpiPoolExecutor`]: the same [`Executor`] on the ranks of an MPI job (feature `mpi`).
//! Its options and its start are [`MpiPoolBuilder`]'s (`builder.rs`).

mod builder;
mod client;
mod comm;
mod error;
pub(crate) mod spawned;
mod wire;
mod worker;

pub use builder::MpiPoolBuilder;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::chunk::Chunk;
use crate::error::SubmitError;
use crate::executor::Executor;
use crate::future::{Core, Future, INLINE, TaskCell, is_done};
use crate::process::ProcessPoolExecutor;
use crate::remote::scheduler::TaskKind;
use crate::remote::shared_state::refuse_shared_state;
use crate::remote::{Slot, codec as protocol};
use crate::task::Payload;
use crate::task::{RemoteTask, Shape, Task};
use crate::trace::Pool;
use client::Driver;

/// How long an idle loop sleeps at most between two polls, by default.
pub(crate) const DEFAULT_BACKOFF_CAP: Duration = Duration::from_millis(1);

/// An MPI pool's future: its state, and a way for the MPI thread to keep the session going
/// if it ever blocks on one (a callback waiting on another task).
struct MpiCell<T> {
    core: Core<T>,
    driver: Weak<Driver>,
}

impl<T: Send + Sync> TaskCell<T> for MpiCell<T> {
    fn core(&self) -> &Core<T> {
        &self.core
    }

    fn help(&self, _handle: &Future<T>) {
        if let Some(driver) = self.driver.upgrade() {
            driver.help(&|| is_done(self.core.load()));
        }
    }

    fn help_until(&self, deadline: std::time::Instant) {
        // A timed wait drives too, until its deadline (a nap of the dispatcher is at most
        // the backoff cap, so the deadline is kept to within that).
        if let Some(driver) = self.driver.upgrade() {
            driver.help(&|| is_done(self.core.load()) || std::time::Instant::now() >= deadline);
        }
    }
}

/// Python's `mpi4py.futures.MPIPoolExecutor`: tasks run on the other ranks of an MPI job.
///
/// Every rank runs the same program (SPMD, as `mpirun -n 4 app` starts it). All of them call
/// [`start`](MpiPoolExecutor::start): rank 0 gets `Some(pool)`, and the others become its
/// workers inside `start`, which returns `None` on them once rank 0 shuts the pool down.
/// Tasks are [`Task`]s (`fn` items, closures without captures, [`task!`](crate::task!)s) with
/// serde arguments and results, as on the process pool; they cross as the offsets of the
/// function and of its trampoline in the executable (with the encoded captures), and every
/// rank checks at start-up that it runs the same build as rank 0 (a fingerprint of the
/// machine code) before it runs anything.
///
/// ```no_run
/// use concurrent_futures::{Executor, MpiPoolExecutor};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn run<E: Executor>(pool: &E) -> u64 {
///     pool.map(square, 0..1000).map(Result::unwrap).sum()
/// }
///
/// fn main() {
///     // rank 0 gets the pool; ranks 1.. serve tasks and get None when it shuts down
///     let Some(pool) = MpiPoolExecutor::start() else { return };
///     println!("{}", run(&pool)); // the same `run` as on threads or processes
///     pool.shutdown(true);
/// }
/// ```
///
/// ```sh
/// cargo build --release --features mpi
/// mpirun -n 4 target/release/app        # 1 client + 3 workers
/// ```
///
/// # Running it
///
/// * As root (containers): `mpirun --allow-run-as-root`, or set
///   `OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1` (Open MPI; the variables
///   are also what a program started alone needs to spawn workers as root).
/// * More ranks than cores (a laptop, CI): `mpirun --oversubscribe -n 3` (Open MPI).
/// * Or let the pool start its own workers, as mpi4py's `MPIPoolExecutor(max_workers=n)`
///   does: [`MpiPoolBuilder::max_workers`] spawns them (`MPI_Comm_spawn`), from a program
///   started alone or by `mpirun -n 1`; `start` then returns the pool on the caller.
/// * Started without `mpirun` (one rank alone, a *singleton*) and without `max_workers`,
///   `start` runs the tasks on a
///   local [`ProcessPoolExecutor`] of one process per CPU instead, so the same program works
///   on a workstation; [`MpiPoolBuilder::local_workers`] sets how many, and
///   `local_workers(0)` makes `start` fail with [`BuildError::Mpi`] instead.
/// * Start the pool again after a shutdown if you like (all ranks call `start` again): each
///   call is a session; MPI is initialized once, by the first, and finalized at exit.
///
/// # Behaviour
///
/// Futures, callbacks, [`wait`](crate::wait), [`as_completed`](crate::as_completed),
/// `.await`, `map` (lazy, chunked, one message per chunk), `map_unordered` and
/// `shutdown_with(wait, cancel_futures)` behave as on the other backends, except
/// [`cancel_running`](crate::Future::cancel_running): a task sent to a rank cannot be
/// stopped (a rank of a static job cannot be killed alone), so it returns false.
/// Each worker rank holds a small window of tasks (two batches); a rank that falls idle while another has
/// unstarted tasks queued behind a long one gets them (work stealing). An idle rank does not
/// burn a core: it polls with a backoff that grows to [`MpiPoolBuilder::idle_backoff_cap`]
/// (1 ms by default), never a blocking MPI receive. Callbacks run on rank 0, on the thread
/// that completes the future (the MPI thread, or a thread waiting on the pool); one may wait
/// on another future of the pool.
///
/// # Failures
///
/// A task that panics fails its future with the message ([`TaskError::Panicked`]); the rank
/// lives on. MPI cannot survive a dead rank: when a worker rank dies (a crash, a signal, a
/// task that calls `std::process::exit`), `mpirun` ends the whole job and says which rank
/// died and how. If a rank instead stops answering without dying (it hangs outside a task,
/// it is stopped, its node drops off the network), rank 0 pings it, and after
/// [`MpiPoolBuilder::unresponsive_after`] (60 s by default) fails its tasks with
/// [`TaskError::WorkerDied`] and everything pending with [`TaskError::Broken`], refuses new
/// work, and aborts the MPI job when it exits: `result()` never waits forever.
///
/// [`BuildError::Mpi`]: crate::BuildError::Mpi
/// [`TaskError::Panicked`]: crate::TaskError::Panicked
/// [`TaskError::WorkerDied`]: crate::TaskError::WorkerDied
/// [`TaskError::Broken`]: crate::TaskError::Broken
pub struct MpiPoolExecutor {
    inner: Inner,
    /// `shutdown` was called.
    shut: AtomicBool,
}

enum Inner {
    Ranks(Arc<Driver>),
    /// Started as a singleton: local worker processes.
    Local(ProcessPoolExecutor),
}

/// A worker rank of an [`MpiPoolExecutor`], as it introduced itself.
///
/// ```no_run
/// # let Some(pool) = concurrent_futures::MpiPoolExecutor::start() else { return };
/// for r in pool.ranks() {
///     println!("rank {} is pid {} on {}", r.rank, r.pid, r.host);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MpiRank {
    /// Its rank: in `MPI_COMM_WORLD` (1 and up) when the workers are the job's ranks; among
    /// the spawned workers (0 and up) in dynamic mode.
    pub rank: usize,
    /// Its process id on its host.
    pub pid: u32,
    /// `MPI_Get_processor_name` there.
    pub host: String,
}

impl MpiPoolExecutor {
    fn new(inner: Inner) -> Self {
        MpiPoolExecutor {
            inner,
            shut: AtomicBool::new(false),
        }
    }

    /// Starts the pool on every rank (collective): `Some(pool)` on rank 0; on the other
    /// ranks, serves tasks and returns `None` once rank 0 shuts the pool down.
    ///
    /// # Panics
    ///
    /// If the pool cannot start (see [`MpiPoolBuilder::start`], which returns the error).
    ///
    /// ```no_run
    /// let Some(pool) = concurrent_futures::MpiPoolExecutor::start() else { return };
    /// # drop(pool);
    /// ```
    pub fn start() -> Option<MpiPoolExecutor> {
        match Self::builder().start() {
            Ok(pool) => pool,
            Err(e) => panic!("MpiPoolExecutor::start: {e}"),
        }
    }

    /// A builder for the pool's options.
    ///
    /// ```
    /// let b = concurrent_futures::MpiPoolExecutor::builder();
    /// # drop(b);
    /// ```
    pub fn builder() -> MpiPoolBuilder {
        MpiPoolBuilder::default()
    }

    /// The worker ranks (empty when the pool runs on local processes, as a singleton).
    ///
    /// ```no_run
    /// # let Some(pool) = concurrent_futures::MpiPoolExecutor::start() else { return };
    /// assert_eq!(pool.ranks().len(), concurrent_futures::Executor::max_workers(&pool));
    /// ```
    pub fn ranks(&self) -> Vec<MpiRank> {
        match &self.inner {
            Inner::Ranks(d) => d
                .client
                .workers()
                .iter()
                .map(|w| MpiRank {
                    rank: w.rank as usize,
                    pid: w.pid,
                    host: w.host.clone(),
                })
                .collect(),
            Inner::Local(_) => Vec::new(),
        }
    }

    /// Starts recording a [`Timeline`](crate::Timeline) (if it was not already; its zero is
    /// the first start): one row per worker rank, in rank order, one bar per task or `map`
    /// chunk, and a death mark where a rank was lost. While recording, calls are sent as
    /// *timed*: the worker reads its clock at each one's start and end and sends both with
    /// the result, with its clock when the result leaves; rank 0 maps them onto its own
    /// clock by the smallest difference seen between a message's arrival and its departure
    /// (the ranks may run on other hosts, whose clocks need not agree), so a bar's length is
    /// the worker's own and its place is off by at most the quickest message's trip (µs on
    /// a node). Off, no clock is read for it anywhere. A pool started as a singleton
    /// records its local process pool's timeline.
    ///
    /// ```no_run
    /// use concurrent_futures::{Executor, MpiPoolExecutor};
    /// fn square(x: u64) -> u64 { x * x }
    /// let Some(pool) = MpiPoolExecutor::start() else { return };
    /// pool.start_recording();
    /// let futs: Vec<_> = (0..10).map(|i| pool.submit(square, i)).collect();
    /// for f in &futs { f.result().unwrap(); }
    /// pool.shutdown(true);
    /// assert_eq!(pool.take_timeline().tasks.len(), 10);
    /// ```
    pub fn start_recording(&self) {
        match &self.inner {
            Inner::Ranks(d) => d.client.timeline.start(),
            Inner::Local(p) => p.start_recording(),
        }
    }

    /// Stops recording; what was recorded stays until [`take_timeline`](Self::take_timeline).
    ///
    /// ```no_run
    /// let Some(pool) = concurrent_futures::MpiPoolExecutor::start() else { return };
    /// pool.start_recording();
    /// pool.stop_recording();
    /// assert!(pool.take_timeline().tasks.is_empty());
    /// ```
    pub fn stop_recording(&self) {
        match &self.inner {
            Inner::Ranks(d) => d.client.timeline.stop(),
            Inner::Local(p) => p.stop_recording(),
        }
    }

    /// Takes what was recorded so far (recording goes on if it is on). A task is on the
    /// timeline once its result has been read.
    ///
    /// ```no_run
    /// use concurrent_futures::{Executor, MpiPoolExecutor};
    /// fn one(_: ()) -> u8 { 1 }
    /// let Some(pool) = MpiPoolExecutor::builder().record_timeline(true).start().unwrap() else {
    ///     return;
    /// };
    /// pool.submit(one, ()).result().unwrap();
    /// let timeline = pool.take_timeline();
    /// std::fs::write("mpi-timeline.json", timeline.to_chrome_trace()).unwrap();
    /// ```
    pub fn take_timeline(&self) -> crate::Timeline {
        match &self.inner {
            Inner::Ranks(d) => d.client.timeline.take(),
            Inner::Local(p) => p.take_timeline(),
        }
    }

    fn enqueue<A: Payload, T: Payload>(
        driver: &Arc<Driver>,
        task: RemoteTask,
        arg: &A,
        kind: TaskKind,
    ) -> Result<Future<T>, SubmitError> {
        let arg = protocol::TaskArg {
            captures: task.captures.as_deref(),
            value: arg,
        };
        // The shared tables the argument names are encoded by id, and go with the task:
        // the dispatcher sends each rank their bytes once.
        let (payload, mut tables) = crate::shared::collect_bytes(|| protocol::encode(&arg));
        let payload = payload.map_err(|e| SubmitError::Codec(e.to_string().into()))?;
        crate::shared::TableRef::merge(&mut tables, &task.tables);
        for table in &tables {
            table.held_by(Arc::downgrade(&driver.client) as _);
        }
        let fut = Future::from_task_cell(Arc::new(MpiCell {
            core: Core::new(INLINE),
            driver: Arc::downgrade(driver),
        }));
        driver.client.submit(
            task.target,
            payload,
            tables,
            Box::new(Slot::new(fut.handle(), Pool::Mpi)),
            kind,
        )?;
        Ok(fut)
    }
}

/// What this pool sends for `task`: the shared tables its captures name are encoded by id
/// (they reach each rank once, as an argument's do).
fn remote_of<A, R>(task: &impl Task<A, R>, shape: Shape) -> Result<RemoteTask, SubmitError> {
    crate::shared::collect_bytes(|| task.remote(shape)).0
}

impl Executor for MpiPoolExecutor {
    /// The worker ranks (or local processes) of the pool; 0 once it was shut down, as
    /// mpi4py's `MPIPoolExecutor` reports (its workers may be serving another pool by then).
    ///
    /// ```no_run
    /// use concurrent_futures::{Executor, MpiPoolExecutor};
    /// let pool = MpiPoolExecutor::builder().max_workers(2).start().unwrap().unwrap();
    /// assert_eq!(pool.max_workers(), 2);
    /// pool.shutdown(true);
    /// assert_eq!(pool.max_workers(), 0);
    /// ```
    fn max_workers(&self) -> usize {
        if self.shut.load(Ordering::Acquire) {
            return 0;
        }
        match &self.inner {
            Inner::Ranks(d) => d.client.workers().len(),
            Inner::Local(p) => p.max_workers(),
        }
    }

    fn try_submit<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        arg: A,
    ) -> Result<Future<R>, SubmitError> {
        refuse_shared_state::<A, R>()?;
        match &self.inner {
            Inner::Ranks(c) => {
                Self::enqueue(c, remote_of(&task, Shape::One)?, &arg, TaskKind::Task)
            }
            Inner::Local(p) => p.try_submit(task, arg),
        }
    }

    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        refuse_shared_state::<A, R>()?;
        match &self.inner {
            Inner::Ranks(c) => {
                Self::enqueue(c, remote_of(&task, Shape::Chunk)?, &items, TaskKind::Map)
            }
            Inner::Local(p) => p.submit_chunk(task, items),
        }
    }

    fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        self.shut.store(true, Ordering::Release);
        match &self.inner {
            Inner::Ranks(d) => {
                d.client.shutdown(cancel_futures);
                if wait {
                    d.join();
                }
            }
            Inner::Local(p) => p.shutdown_with(wait, cancel_futures),
        }
    }

    /// Tasks submitted, queued (on rank 0), running (sent to a worker rank and not answered),
    /// done, failed, cancelled; bytes of the call messages sent and of the result messages
    /// received; worker deaths (a rank lost: its death, or its silence past
    /// [`unresponsive_after`](MpiPoolBuilder::unresponsive_after), breaks the pool). MPI
    /// has no restarts: `worker_restarts` stays 0. No per-worker entries. A pool started as
    /// a singleton reports its local process pool's.
    ///
    /// ```no_run
    /// use concurrent_futures::{Executor, MpiPoolExecutor};
    /// fn square(x: u64) -> u64 { x * x }
    /// let Some(pool) = MpiPoolExecutor::start() else { return };
    /// assert_eq!(pool.submit(square, 7).result(), Ok(49));
    /// pool.shutdown(true);
    /// let stats = pool.stats();
    /// assert_eq!((stats.submitted, stats.done), (1, 1));
    /// assert!(stats.settled() && stats.bytes_sent > 0);
    /// ```
    fn stats(&self) -> crate::PoolStats {
        match &self.inner {
            Inner::Ranks(d) => d.client.stats(),
            Inner::Local(p) => p.stats(),
        }
    }

    /// A chunk should run about half a millisecond: a task costs microseconds here, more
    /// across a network.
    fn chunk_target(&self) -> Duration {
        match &self.inner {
            Inner::Ranks(_) => Duration::from_micros(500),
            Inner::Local(p) => p.chunk_target(),
        }
    }
}

impl Drop for MpiPoolExecutor {
    fn drop(&mut self) {
        if let Inner::Ranks(_) = self.inner {
            self.shutdown_with(true, false);
        }
    }
}

impl fmt::Debug for MpiPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiPoolExecutor")
            .field("max_workers", &self.max_workers())
            .field("ranks", &self.ranks())
            .finish()
    }
}
