//! [`ProcessPoolBuilder`]: the options of a process pool, and its start.

use super::manager::{Config, Manager};
use super::{ProcessPoolExecutor, wire};
use crate::error::{BuildError, StartFailure, SubmitError};
use crate::remote::InitCall;
use crate::task::Payload;

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
    /// (Python's `BrokenProcessPool`): queued tasks fail with [`TaskError::Broken`](crate::TaskError::Broken) and
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
    /// (and replaced) and fails with [`TaskError::TimeLimit`](crate::TaskError::TimeLimit); the tasks queued behind it
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
