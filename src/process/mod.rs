//! [`ProcessPoolExecutor`]: Rust functions in worker processes, behind the same
//! [`Executor`] trait.

mod at_exit;
mod manager;
mod wire;
pub(crate) mod worker;

use std::fmt;
use std::sync::Arc;

use std::sync::Weak;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use crate::chunk::Chunk;
use crate::error::{BuildError, StartFailure, SubmitError, TaskError};
use crate::executor::Executor;
use crate::future::{Core, Future, INLINE, RUNNING, STATE_MASK, TaskCell, is_done};
use crate::remote::codec::TaskArg;
use crate::remote::shared_state::refuse_shared_state;
use crate::remote::{InitCall, Slot};
use crate::task::Payload;
use crate::task::{RemoteTask, Shape, Task};
use crate::trace::Pool;
use manager::{Config, Manager};

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

/// Builds a [`ProcessPoolExecutor`].
///
/// ```
/// use concurrent_futures::ProcessPoolExecutor;
/// fn setup() {}
/// let pool = ProcessPoolExecutor::builder()
///     .max_workers(2)
///     .initializer(setup)
///     .max_tasks_per_child(1000)
///     .build()
///     .unwrap();
/// # drop(pool);
/// ```
#[must_use]
#[derive(Debug, Default)]
pub struct ProcessPoolBuilder {
    max_workers: Option<usize>,
    /// The initializer as the workers get it, or why it cannot be sent.
    initializer: Option<Result<InitCall, SubmitError>>,
    max_tasks_per_child: Option<usize>,
    task_timeout: Option<std::time::Duration>,
    record_timeline: bool,
}

impl ProcessPoolBuilder {
    /// Number of worker processes (default: the number of CPUs, as Python; see
    /// [`ProcessPoolExecutor::default`]; zero is an error).
    ///
    /// ```
    /// # use concurrent_futures::{Executor, ProcessPoolExecutor};
    /// let pool = ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
    /// assert_eq!(pool.max_workers(), 1);
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// A function each worker runs once before any task. If it panics, the pool is broken
    /// (Python's `BrokenProcessPool`): queued tasks fail with [`TaskError::Broken`] and
    /// submissions with [`SubmitError::Broken`].
    ///
    /// ```
    /// # use concurrent_futures::{Executor, ProcessPoolExecutor, SubmitError};
    /// fn bad() { panic!("no config") }
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ProcessPoolExecutor::builder().max_workers(1).initializer(bad).build().unwrap();
    /// assert!(matches!(pool.try_submit(one, ()), Err(SubmitError::Broken(_))));
    /// ```
    pub fn initializer(mut self, init: fn()) -> Self {
        self.initializer = Some(InitCall::plain(init));
        self
    }

    /// [`initializer`](Self::initializer) with an argument from this process (Python's
    /// `initializer=init, initargs=(arg,)`): `arg` is encoded once, here, and every worker
    /// decodes its own copy before any task, including each worker started later to replace
    /// one that died or reached [`max_tasks_per_child`](Self::max_tasks_per_child). A large
    /// argument (over 32 KiB encoded) is written once into a shared memory file that every
    /// worker reads, so it is not copied through a socket per worker. This is the way to
    /// give every worker a large read-only value (a lookup table, a model, a
    /// configuration): store it in a `static` (a `OnceLock`) that the tasks read.
    ///
    /// If the initializer panics or its argument cannot be decoded in a worker, the pool is
    /// broken, as with [`initializer`](Self::initializer). An argument that cannot be
    /// encoded, or that holds shared state ([`SubmitError::SharedState`]), makes
    /// [`build`](Self::build) fail with [`BuildError::Initializer`].
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor};
    /// use std::sync::OnceLock;
    ///
    /// static TABLE: OnceLock<Vec<u32>> = OnceLock::new();
    /// fn load(table: Vec<u32>) { TABLE.set(table).unwrap() }
    /// fn lookup(i: usize) -> u32 { TABLE.get().unwrap()[i] }
    ///
    /// let table: Vec<u32> = (0..100_000).map(|i| i * 3).collect();
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(2)
    ///     .initializer_with(load, table)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.submit(lookup, 99_999).result(), Ok(299_997));
    /// ```
    pub fn initializer_with<A: Payload>(mut self, init: fn(A), arg: A) -> Self {
        self.initializer = Some(InitCall::with(init, &arg));
        self
    }

    /// An initializer already named and encoded (by the MPI pool, for its local fallback,
    /// or by `AnyExecutor`'s builder).
    pub(crate) fn encoded_initializer(mut self, init: Result<InitCall, SubmitError>) -> Self {
        self.initializer = Some(init);
        self
    }

    /// Replaces a worker with a fresh process after it has run this many tasks (Python's
    /// `max_tasks_per_child`), to bound leaks in long-running task code. A worker is never
    /// sent more tasks than it may still run (a batch is cut to what is left of its
    /// budget; a task it gives back unstarted, for another worker to run, counts again),
    /// so it never holds more than `n` tasks in its life; once it has run its last, it
    /// exits and a fresh worker takes its place. Zero is an error
    /// ([`BuildError::ZeroTasksPerChild`]), as in Python.
    ///
    /// ```
    /// use concurrent_futures::{BuildError, Executor, ProcessPoolExecutor};
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(1)
    ///     .max_tasks_per_child(1)
    ///     .build()
    ///     .unwrap();
    /// let first = pool.submit(pid, ()).result().unwrap();
    /// assert_ne!(pool.submit(pid, ()).result().unwrap(), first); // a fresh worker
    /// let zero = ProcessPoolExecutor::builder().max_tasks_per_child(0).build();
    /// assert!(matches!(zero, Err(BuildError::ZeroTasksPerChild)));
    /// ```
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// A time limit per task: a task still running after `limit` has its worker killed
    /// (and replaced) and fails with [`TaskError::TimeLimit`]; the tasks queued behind it
    /// run elsewhere. The clock starts when the worker starts the task.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, TaskError};
    /// use std::time::Duration;
    /// fn forever(_: ()) -> () { loop { std::thread::park() } }
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(1)
    ///     .task_timeout(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// let err = pool.submit(forever, ()).result().unwrap_err();
    /// assert_eq!(err, TaskError::TimeLimit(Duration::from_millis(100)));
    /// ```
    pub fn task_timeout(mut self, limit: std::time::Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Records a [`Timeline`](crate::Timeline) from the moment the pool is ready (default:
    /// off; see [`ProcessPoolExecutor::start_recording`]): one row per worker slot, one bar
    /// per task or `map` chunk, timed by the worker that ran it (its start and end, sent
    /// with its result), coloured by how it ended (ok, panicked, time limit, died), and
    /// marks where a worker process died and where its replacement started (on the same
    /// row). Off, it costs one relaxed load per result message; on, a push on a locked
    /// buffer per task.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, TaskOutcome};
    /// fn double(x: u64) -> u64 { x * 2 }
    /// let pool = ProcessPoolExecutor::builder()
    ///     .max_workers(2)
    ///     .record_timeline(true)
    ///     .build()
    ///     .unwrap();
    /// let futs: Vec<_> = (0..4).map(|i| pool.submit(double, i)).collect();
    /// for f in &futs { f.result().unwrap(); }
    /// pool.shutdown(true);
    /// let timeline = pool.take_timeline();
    /// assert_eq!(timeline.workers, 2);
    /// assert_eq!(timeline.tasks.len(), 4);
    /// assert!(timeline.tasks.iter().all(|t| t.outcome == TaskOutcome::Ok && t.start <= t.end));
    /// ```
    pub fn record_timeline(mut self, on: bool) -> Self {
        self.record_timeline = on;
        self
    }

    /// Starts the workers and waits until they are connected (and initialized).
    ///
    /// ```
    /// use concurrent_futures::{BuildError, ProcessPoolExecutor};
    /// assert!(matches!(ProcessPoolExecutor::builder().max_workers(0).build(), Err(BuildError::ZeroWorkers)));
    /// ```
    pub fn build(self) -> Result<ProcessPoolExecutor, BuildError> {
        let workers = self.max_workers.unwrap_or_else(crate::available_cpus);
        if workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(BuildError::ZeroTasksPerChild);
        }
        crate::unwind::install_hook();
        let initializer = match self.initializer {
            Some(init) => Some(wire::Init::new(init.map_err(BuildError::Initializer)?)?),
            None => None,
        };
        let manager = Manager::start(Config {
            workers,
            initializer,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
        })
        .map_err(|e| BuildError::Worker(StartFailure::new(e)))?;
        manager.set_recording(self.record_timeline);
        crate::exit::watch(&manager, Vec::new());
        Ok(ProcessPoolExecutor { manager })
    }
}

impl ProcessPoolExecutor {
    /// A pool of `max_workers` processes.
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0 or the workers cannot be started; use
    /// [`builder`](Self::builder) to get a [`BuildError`] instead.
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
        self.enqueue(remote_of(&f, Shape::One)?, &arg, Some(limit), "task")
    }

    fn enqueue<A: Payload, T: Payload>(
        &self,
        task: RemoteTask,
        arg: &A,
        limit: Option<std::time::Duration>,
        name: &'static str,
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
            .submit(task.target, payload, tables, slot, limit, name)?;
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
        self.enqueue(remote_of(&task, Shape::One)?, &arg, None, "task")
    }

    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        refuse_shared_state::<A, R>()?;
        self.enqueue(remote_of(&task, Shape::Chunk)?, &items, None, "map")
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
/// [`BuildError`] instead.
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
