//! [`ProcessPoolExecutor`]: Rust functions in worker processes, behind the same
//! [`Executor`] trait. Its options and its start are [`ProcessPoolBuilder`]'s (`builder.rs`).

mod at_exit;
mod builder;
mod manager;
mod wire;
pub(crate) mod worker;

pub use builder::ProcessPoolBuilder;

use std::fmt;
use std::sync::Arc;

use std::sync::Weak;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use crate::chunk::Chunk;
use crate::error::{SubmitError, TaskError};
use crate::executor::Executor;
use crate::future::{Core, Future, INLINE, RUNNING, STATE_MASK, TaskCell, is_done};
use crate::remote::Slot;
use crate::remote::codec::TaskArg;
use crate::remote::scheduler::TaskKind;
use crate::remote::shared_state::refuse_shared_state;
use crate::task::Payload;
use crate::task::{RemoteTask, Shape, Task};
use crate::trace::Pool;
use manager::Manager;

/// A process pool's future: its state, and the pool, so that a thread that blocks on it
/// while a worker runs the task reads the results itself (`Manager::read_until`).
struct ProcCell<T> {
    core: Core<T>,
    manager: Weak<Manager>,
    /// The task's id in the pool (set once, as it is submitted).
    id: AtomicU64,
}

impl<T: Send + Sync> TaskCell<T> for ProcCell<T> {
    fn core(&self) -> &Core<T> {
        &self.core
    }

    fn help(&self, _handle: &Future<T>) {
        // Only for a task a worker holds: its completion is sure to come through the
        // channels. A queued task may be cancelled instead, which no channel reports.
        if self.core.load() & STATE_MASK != RUNNING {
            return;
        }
        if let Some(manager) = self.manager.upgrade() {
            manager.read_until(&|| is_done(self.core.load()), None);
        }
    }

    fn help_until(&self, deadline: std::time::Instant) {
        // As `help`, for a timed wait: reading results never outlasts the deadline.
        if self.core.load() & STATE_MASK != RUNNING {
            return;
        }
        if let Some(manager) = self.manager.upgrade() {
            manager.read_until(&|| is_done(self.core.load()), Some(deadline));
        }
    }

    fn stop_running(&self) -> bool {
        // Once sent to a worker, the worker is asked: it drops the task, or dies with it.
        if is_done(self.core.load()) {
            return false;
        }
        self.manager
            .upgrade()
            .is_some_and(|m| m.cancel_running(self.id.load(Relaxed)))
    }
}

/// Python's `ProcessPoolExecutor`: tasks run in worker processes, re-executions of the
/// current program.
///
/// A task is a [`Task`]: a `fn` item, a closure that captures nothing, or a
/// [`task!`](crate::task!) with captured values, with serde arguments and results; it is
/// named to the worker by its position in the executable, and its captures, argument and
/// result cross as bytes. Workers are persistent: one channel pair per
/// worker carries every task, so a million queued tasks use no more file descriptors than
/// four. Queued work stays in this process (cancellable) until a worker has room.
///
/// Isolation is the point: a task that panics fails only its future; a worker that crashes
/// (abort, segfault, `process::exit`, SIGKILL) fails only the task it was running, with
/// [`TaskError::WorkerDied`], and is replaced; the tasks it had not started run on other
/// workers, and no task runs twice. Callbacks run in this process, on threads of the pool
/// that do not read results, so a callback may wait on other futures of the pool.
///
/// Tasks are spread over the workers with work stealing: a worker busy with a long task
/// gives back what is queued behind it as soon as another worker is idle.
///
/// # File descriptors
///
/// Each worker costs this process four descriptors (two socket pairs' ends, a pidfd, its
/// result log), whatever the number of tasks. So that large pools fit under the usual soft
/// limit of 1024 (`ulimit -n`), the first pool started raises this process's soft
/// `RLIMIT_NOFILE` to its hard limit, as Go's runtime does at start; workers (and
/// `multiprocessing` children) set the original soft limit back before they run your code.
/// Processes your program starts itself with `std::process::Command` inherit the raised
/// limit (raise it yourself first, or lower it in them, if a program you start uses
/// `select`).
///
/// A shortage of descriptors is transient, never a broken pool: a large result whose shared
/// memory file cannot be received fails its task with [`TaskError::Shortage`] (the worker is
/// not blamed, nothing else is lost), and a replacement worker that cannot be started is
/// tried again after 10 ms, then twice as long each time up to 1 s, until it starts.
///
/// # Starting workers
///
/// Nothing to write on Linux: a constructor that runs before `main` recognises a worker
/// process and runs the worker loop instead of your program, so your `main` (or test
/// harness, or benchmark) never runs in a worker. This works the same in tests, doc tests,
/// examples and benches. [`init`](crate::init) exists for clarity only: by the time `main` runs, it has
/// nothing left to do (if you call it, call it first in `main`).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor};
///
/// fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
///
/// let pool = ProcessPoolExecutor::new(2);
/// let fut = pool.submit(fib, 20);
/// assert_eq!(fut.result(), Ok(6765));
/// let pid = pool.submit(|()| std::process::id(), ()).result().unwrap();
/// assert_ne!(pid, std::process::id()); // it ran in another process
/// pool.shutdown(true);
/// ```
///
/// A closure that captures values cannot be sent to another process: it is refused with
/// [`SubmitError::CapturingClosure`]. Write it with [`task!`](crate::task!), whose captures
/// cross with the task:
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor, SubmitError, task};
/// let pool = ProcessPoolExecutor::new(1);
/// let offset = 10u64;
/// let refused = pool.try_submit(move |x: u64| x + offset, 1);
/// assert!(matches!(refused, Err(SubmitError::CapturingClosure { .. })));
/// assert_eq!(pool.submit(task!([offset] |x: u64| x + offset), 1).result(), Ok(11));
/// ```
pub struct ProcessPoolExecutor {
    manager: Arc<Manager>,
}

impl ProcessPoolExecutor {
    /// A pool of `max_workers` processes.
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0 or the workers cannot be started; use
    /// [`builder`](Self::builder) to get a [`BuildError`](crate::BuildError) instead.
    ///
    /// ```
    /// let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    /// # drop(pool);
    /// ```
    pub fn new(max_workers: usize) -> Self {
        match Self::builder().max_workers(max_workers).build() {
            Ok(pool) => pool,
            Err(e) => panic!("ProcessPoolExecutor::new({max_workers}): {e}"),
        }
    }

    /// A builder for the pool's options.
    ///
    /// ```
    /// let pool = concurrent_futures::ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::default()
    }

    /// Stops every worker now with SIGTERM, and with SIGKILL those still alive one second
    /// later (a task may handle SIGTERM to clean up, but cannot hold `terminate` longer).
    /// Pending tasks are cancelled; every task a worker holds fails with
    /// [`TaskError::Broken`], even one that finishes after SIGTERM: no task completes with
    /// a value once `terminate` was called. No new work is accepted. Waits for the workers
    /// to exit.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor};
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ProcessPoolExecutor::new(1);
    /// pool.terminate();
    /// assert!(pool.try_submit(one, ()).is_err());
    /// ```
    pub fn terminate(&self) {
        self.stop_now(libc::SIGTERM);
    }

    /// Like [`terminate`](Self::terminate), with SIGKILL at once.
    ///
    /// ```
    /// use concurrent_futures::ProcessPoolExecutor;
    /// let pool = ProcessPoolExecutor::new(1);
    /// pool.kill();
    /// assert!(pool.pids().is_empty());
    /// ```
    pub fn kill(&self) {
        self.stop_now(libc::SIGKILL);
    }

    /// Python 3.14's name for [`terminate`](Self::terminate).
    ///
    /// ```
    /// let pool = concurrent_futures::ProcessPoolExecutor::new(1);
    /// pool.terminate_workers();
    /// assert!(pool.pids().is_empty());
    /// ```
    pub fn terminate_workers(&self) {
        self.terminate();
    }

    /// Python 3.14's name for [`kill`](Self::kill).
    ///
    /// ```
    /// let pool = concurrent_futures::ProcessPoolExecutor::new(1);
    /// pool.kill_workers();
    /// assert!(pool.pids().is_empty());
    /// ```
    pub fn kill_workers(&self) {
        self.kill();
    }

    fn stop_now(&self, signal: libc::c_int) {
        self.manager.shutdown(true, true);
        self.manager.signal_workers(signal);
        self.manager.join();
    }

    /// Starts recording a [`Timeline`](crate::Timeline) (if it was not already); its zero
    /// is the first start. See [`ProcessPoolBuilder::record_timeline`] for what it holds
    /// and costs.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor};
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ProcessPoolExecutor::new(1);
    /// pool.submit(one, ()).result().unwrap(); // not recorded
    /// pool.start_recording();
    /// pool.submit(one, ()).result().unwrap();
    /// pool.stop_recording();
    /// pool.shutdown(true);
    /// assert_eq!(pool.take_timeline().tasks.len(), 1);
    /// ```
    pub fn start_recording(&self) {
        self.manager.set_recording(true);
    }

    /// Stops recording; what was recorded stays until [`take_timeline`](Self::take_timeline).
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor};
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ProcessPoolExecutor::builder().record_timeline(true).build().unwrap();
    /// pool.stop_recording();
    /// pool.submit(one, ()).result().unwrap();
    /// pool.shutdown(true);
    /// assert!(pool.take_timeline().tasks.is_empty());
    /// ```
    pub fn stop_recording(&self) {
        self.manager.set_recording(false);
    }

    /// Takes what was recorded so far (recording goes on if it is on). A task is on the
    /// timeline once its result (or its worker's death) has been read.
    ///
    /// ```
    /// use concurrent_futures::{Executor, MarkKind, ProcessPoolExecutor, TaskError, TaskOutcome};
    /// use std::time::Duration;
    /// fn crash(_: ()) -> u8 { std::process::abort() }
    /// fn boom(_: ()) -> u8 { panic!("boom") }
    /// let pool = ProcessPoolExecutor::builder().max_workers(1).record_timeline(true).build().unwrap();
    /// assert!(pool.submit(boom, ()).result().is_err());
    /// assert!(matches!(pool.submit(crash, ()).result(), Err(TaskError::WorkerDied { .. })));
    /// assert_eq!(pool.submit(|x: u8| x, 7).result(), Ok(7)); // on the replacement
    /// pool.shutdown(true);
    /// let timeline = pool.take_timeline();
    /// let outcomes: Vec<_> = timeline.tasks.iter().map(|t| t.outcome).collect();
    /// assert_eq!(outcomes, [TaskOutcome::Panicked, TaskOutcome::Died, TaskOutcome::Ok]);
    /// let marks: Vec<_> = timeline.marks.iter().map(|m| m.kind).collect();
    /// assert_eq!(marks, [MarkKind::Died, MarkKind::Started]);
    /// std::fs::write(std::env::temp_dir().join("doc-process-timeline.svg"), timeline.to_svg()).unwrap();
    /// ```
    pub fn take_timeline(&self) -> crate::Timeline {
        self.manager.take_timeline()
    }

    /// The process ids of the live workers.
    ///
    /// ```
    /// let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    /// assert_eq!(pool.pids().len(), 2);
    /// ```
    pub fn pids(&self) -> Vec<u32> {
        self.manager.pids()
    }

    /// Submits `f(arg)` with a time limit of its own (pebble's `schedule(timeout=)`): if it
    /// runs longer than `limit`, its worker is killed and replaced, the task fails with
    /// [`TaskError::TimeLimit`]`(limit)`, and the tasks queued behind it run elsewhere. The
    /// limit counts from the moment the worker starts the task, not from the submission; it
    /// replaces the pool's [`task_timeout`](ProcessPoolBuilder::task_timeout) for this task.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, TaskError};
    /// use std::time::Duration;
    ///
    /// fn sleepy(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// let pool = ProcessPoolExecutor::new(1);
    /// let slow = pool.submit_with_timeout(sleepy, 60_000, Duration::from_millis(50));
    /// let quick = pool.submit(sleepy, 1); // queued behind it, runs on the replacement
    /// assert_eq!(slow.result(), Err(TaskError::TimeLimit(Duration::from_millis(50))));
    /// assert_eq!(quick.result(), Ok(1));
    /// ```
    pub fn submit_with_timeout<A: Payload, R: Payload>(
        &self,
        f: impl Task<A, R>,
        arg: A,
        limit: std::time::Duration,
    ) -> Future<R> {
        self.try_submit_with_timeout(f, arg, limit)
            .unwrap_or_else(|e| Future::ready(Err(TaskError::Submit(e))))
    }

    /// [`submit_with_timeout`](Self::submit_with_timeout) that returns the [`SubmitError`]
    /// instead of a failed future.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, SubmitError};
    /// use std::time::Duration;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ProcessPoolExecutor::new(1);
    /// pool.shutdown(true);
    /// let refused = pool.try_submit_with_timeout(one, (), Duration::from_secs(1));
    /// assert_eq!(refused.unwrap_err(), SubmitError::Shutdown);
    /// ```
    pub fn try_submit_with_timeout<A: Payload, R: Payload>(
        &self,
        f: impl Task<A, R>,
        arg: A,
        limit: std::time::Duration,
    ) -> Result<Future<R>, SubmitError> {
        refuse_shared_state::<A, R>()?;
        self.enqueue(
            remote_of(&f, Shape::One)?,
            &arg,
            Some(limit),
            TaskKind::Task,
        )
    }

    fn enqueue<A: Payload, T: Payload>(
        &self,
        task: RemoteTask,
        arg: &A,
        limit: Option<std::time::Duration>,
        kind: TaskKind,
    ) -> Result<Future<T>, SubmitError> {
        let arg = TaskArg {
            captures: task.captures.as_deref(),
            value: arg,
        };
        // A `Serialize` that panics refuses the submission with its message. The shared
        // tables the argument names are encoded by id, and go with the task.
        let (payload, mut tables) = crate::shared::collect(|| {
            crate::unwind::catch(|| wire::encode_payload(&arg, &self.manager.payload_files))
        });
        let payload = payload
            .map_err(|e| {
                SubmitError::Codec(format!("the argument's encoding panicked: {e}").into())
            })?
            .map_err(|e| SubmitError::Codec(e.to_string().into()))?;
        crate::shared::TableRef::merge(&mut tables, &task.tables);
        for table in &tables {
            table.held_by(Arc::downgrade(&self.manager) as _);
        }
        let cell = Arc::new(ProcCell {
            core: Core::new(INLINE),
            manager: Arc::downgrade(&self.manager),
            id: AtomicU64::new(0),
        });
        let fut = Future::from_task_cell(cell.clone());
        let slot = Box::new(Slot::new(fut.handle(), Pool::Process));
        let id = self
            .manager
            .submit(task.target, payload, tables, slot, limit, kind)?;
        // (Before the future is returned: nobody can cancel it sooner.)
        cell.id.store(id, Relaxed);
        Ok(fut)
    }
}

/// What this pool sends for `task`: the shared tables its captures name are encoded by id
/// (they reach each worker once, as an argument's do).
fn remote_of<A, R>(task: &impl Task<A, R>, shape: Shape) -> Result<RemoteTask, SubmitError> {
    crate::shared::collect(|| task.remote(shape)).0
}

impl Executor for ProcessPoolExecutor {
    fn max_workers(&self) -> usize {
        self.manager.workers()
    }

    fn try_submit<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        arg: A,
    ) -> Result<Future<R>, SubmitError> {
        refuse_shared_state::<A, R>()?;
        self.enqueue(remote_of(&task, Shape::One)?, &arg, None, TaskKind::Task)
    }

    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        refuse_shared_state::<A, R>()?;
        self.enqueue(remote_of(&task, Shape::Chunk)?, &items, None, TaskKind::Map)
    }

    fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        self.manager.shutdown(false, cancel_futures);
        if wait {
            self.manager.join();
        }
    }

    /// Tasks submitted, queued, in flight (sent to a worker), done, failed, cancelled;
    /// bytes sent and received, worker deaths and restarts. No per-worker entries.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor};
    /// let pool = ProcessPoolExecutor::new(2);
    /// assert_eq!(pool.submit(u64::count_ones, 255).result(), Ok(8));
    /// pool.shutdown(true);
    /// let stats = pool.stats();
    /// assert_eq!((stats.submitted, stats.done, stats.worker_deaths), (1, 1, 0));
    /// assert!(stats.bytes_sent > 0 && stats.bytes_received > 0);
    /// ```
    fn stats(&self) -> crate::PoolStats {
        self.manager.stats()
    }

    /// A chunk should run about a millisecond: a task costs tens of microseconds here.
    fn chunk_target(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }
}

/// A pool of one worker process per CPU, Python's `ProcessPoolExecutor()`; CPUs as
/// [`std::thread::available_parallelism`] counts them (CPU affinity and cgroup quota
/// included).
///
/// # Panics
///
/// If the workers cannot be started; use [`builder`](ProcessPoolExecutor::builder) to get a
/// [`BuildError`](crate::BuildError) instead.
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor};
/// let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
/// assert_eq!(ProcessPoolExecutor::default().max_workers(), cpus);
/// ```
impl Default for ProcessPoolExecutor {
    fn default() -> Self {
        match Self::builder().build() {
            Ok(pool) => pool,
            Err(e) => panic!("ProcessPoolExecutor::default(): {e}"),
        }
    }
}

impl Drop for ProcessPoolExecutor {
    fn drop(&mut self) {
        self.shutdown_with(true, false);
    }
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.manager.workers())
            .field("pids", &self.manager.pids())
            .finish()
    }
}

// Task errors are part of what crosses the boundary.
const _: fn() = || {
    fn assert_payload<T: Payload>() {}
    assert_payload::<Result<u8, TaskError>>();
};
