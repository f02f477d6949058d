//! [`ThreadPoolExecutor`]: a work-stealing pool of OS threads.

mod indexed;
mod job;
pub(crate) mod map_block;
mod map_cursor;
mod map_source;
mod ordered_map;
mod registry;
pub(crate) mod sleep;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crate::chunk::{Chunk, run_chunk};
use crate::error::{BuildError, SubmitError};
use crate::executor::Executor;
use crate::future::Future;
use crate::map::{MapOptions, OrderedMap};
use crate::stats::PoolStats;
use crate::task::Payload;
use crate::task::Task;
use crate::timeline::Timeline;
use std::sync::Arc;

use crate::sync::{self, Mutex};
use registry::Registry;

pub use indexed::{IndexedInput, MapIndexed};

/// Python's `ThreadPoolExecutor`, with a work-stealing scheduler.
///
/// Tasks submitted from outside go to a global queue; each worker has its own deque (tasks
/// submitted from inside a task go there) and idle workers steal from the others. Idle
/// workers sleep: an idle pool burns no CPU. Panics are caught per task; the worker lives on.
///
/// Besides the [`Executor`] trait (functions with serde arguments, as every backend takes),
/// a thread pool runs any `FnOnce() -> R + Send` closure with [`spawn`](Self::spawn): threads
/// share memory, so closures may capture.
///
/// Dropping the pool shuts it down and waits for the accepted tasks, as Python does at exit;
/// a pool never dropped (in a `static`, leaked) is waited for when the program ends (see
/// [`set_exit_timeout`](crate::set_exit_timeout)).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
///
/// let pool = ThreadPoolExecutor::new(4);
/// let fut = pool.submit(fib, 25);
/// assert_eq!(fut.result().unwrap(), 75025);
///
/// let name = String::from("captured");
/// let len = pool.spawn(move || name.len());
/// assert_eq!(len.result(), Ok(8));
/// pool.shutdown(true);
/// ```
pub struct ThreadPoolExecutor {
    registry: Arc<Registry>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    prefix: String,
}

/// Builds a [`ThreadPoolExecutor`] (Python's constructor keywords).
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(2)
///     .thread_name_prefix("fetcher")
///     .stack_size(4 << 20)
///     .initializer(|| println!("worker ready"))
///     .build()
///     .unwrap();
/// let name = pool.spawn(|| std::thread::current().name().map(str::to_owned));
/// assert!(name.result().unwrap().unwrap().starts_with("fetcher_"));
/// ```
#[must_use]
pub struct ThreadPoolBuilder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    initializer: Option<Arc<dyn Fn() + Send + Sync>>,
    stack_size: Option<usize>,
    caller_runs: Option<bool>,
    record_timeline: bool,
}

static POOL_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Python's default size: `min(32, cpus + 4)` (at least 5 workers for I/O-bound tasks, at
/// most 32 so a large machine does not start hundreds of threads).
fn default_workers() -> usize {
    (crate::available_cpus() + 4).min(32)
}

impl ThreadPoolBuilder {
    /// Number of worker threads (default: Python's `min(32, cpus + 4)`, see
    /// [`ThreadPoolExecutor::default`]). Zero is refused by [`build`](Self::build).
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().max_workers(3).build().unwrap();
    /// # use concurrent_futures::Executor;
    /// assert_eq!(pool.max_workers(), 3);
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Worker threads are named `{prefix}_{index}` (default prefix:
    /// `ThreadPoolExecutor-{pool number}`, as Python).
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().thread_name_prefix("io").build().unwrap();
    /// # let _ = pool;
    /// ```
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// Runs once on each worker thread before it takes tasks (to set up thread-local state).
    /// If it panics, the pool is broken: queued and later tasks fail with
    /// [`TaskError::Broken`](crate::TaskError::Broken) / [`SubmitError::Broken`]
    /// (Python's `BrokenThreadPool`).
    ///
    /// ```
    /// use std::cell::Cell;
    /// thread_local!(static READY: Cell<bool> = const { Cell::new(false) });
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder()
    ///     .initializer(|| READY.set(true))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.spawn(|| READY.get()).result(), Ok(true));
    /// ```
    pub fn initializer(mut self, init: impl Fn() + Send + Sync + 'static) -> Self {
        self.initializer = Some(Arc::new(init));
        self
    }

    /// [`initializer`](Self::initializer) with an argument, as
    /// `ProcessPoolBuilder::initializer_with` takes it (Python's `initializer=init,
    /// initargs=(arg,)`), so the same builder code works on both: each worker thread gets
    /// its own clone of `arg`. On threads a large value need not be cloned at all: give an
    /// `Arc` (`initializer_with(init, Arc::new(table))`), or capture one in the tasks given
    /// to [`ThreadPoolExecutor::spawn`].
    ///
    /// ```
    /// use std::cell::RefCell;
    /// thread_local!(static NAME: RefCell<String> = const { RefCell::new(String::new()) });
    /// fn set_name(name: String) { NAME.set(name) }
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder()
    ///     .initializer_with(set_name, "db".to_string())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.spawn(|| NAME.with_borrow(String::clone)).result().unwrap(), "db");
    /// ```
    pub fn initializer_with<A: Clone + Send + Sync + 'static>(self, init: fn(A), arg: A) -> Self {
        self.initializer(move || init(arg.clone()))
    }

    /// Stack size of each worker thread, in bytes (default: Rust's default).
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().stack_size(16 << 20).build().unwrap();
    /// # let _ = pool;
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Whether a thread that blocks on a task nobody has started yet (`result()`,
    /// `into_result()`, `wait()`) runs it itself instead of sleeping
    /// until a worker wakes up. This takes the 5–50 µs wake-up of a sleeping worker off the
    /// latency of a submit-then-wait. The task still runs exactly once.
    ///
    /// Default: on, unless an [`initializer`](Self::initializer) or a
    /// [`stack_size`](Self::stack_size) is set (then tasks may rely on a worker's thread-local
    /// state or stack, so they run only on workers).
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().caller_runs(false).build().unwrap();
    /// # let _ = pool;
    /// ```
    pub fn caller_runs(mut self, on: bool) -> Self {
        self.caller_runs = Some(on);
        self
    }

    /// Records a [`Timeline`] from the start: which worker ran each task, when, and how
    /// it ended, and every steal (default: off; see
    /// [`ThreadPoolExecutor::start_recording`]). While recording, each task costs two clock
    /// reads and a push on its worker's own buffer; while not, one predictable branch on a
    /// word the worker reads for every task anyway.
    ///
    /// ```
    /// # use concurrent_futures::Executor;
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder()
    ///     .max_workers(1)
    ///     .caller_runs(false)
    ///     .record_timeline(true)
    ///     .build()
    ///     .unwrap();
    /// pool.spawn(|| ()).result().unwrap();
    /// pool.shutdown(true);
    /// assert_eq!(pool.take_timeline().tasks.len(), 1);
    /// ```
    pub fn record_timeline(mut self, on: bool) -> Self {
        self.record_timeline = on;
        self
    }

    /// Starts the workers.
    ///
    /// ```
    /// use concurrent_futures::{BuildError, ThreadPoolExecutor};
    /// assert!(ThreadPoolExecutor::builder().build().is_ok());
    /// assert!(matches!(ThreadPoolExecutor::builder().max_workers(0).build(), Err(BuildError::ZeroWorkers)));
    /// ```
    pub fn build(self) -> Result<ThreadPoolExecutor, BuildError> {
        let n = self.max_workers.unwrap_or_else(default_workers);
        if n == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        crate::unwind::install_hook();
        let inline = self
            .caller_runs
            .unwrap_or(self.initializer.is_none() && self.stack_size.is_none());
        let prefix = self.thread_name_prefix.unwrap_or_else(|| {
            format!(
                "ThreadPoolExecutor-{}",
                POOL_COUNTER.fetch_add(1, Ordering::Relaxed)
            )
        });
        let (registry, deques) = Registry::new(n, inline);
        let registry = Arc::new(registry);
        registry.set_recording(self.record_timeline);
        let mut threads = Vec::with_capacity(n);
        for (index, deque) in deques.into_iter().enumerate() {
            let reg = registry.clone();
            let init = self.initializer.clone();
            let mut b = std::thread::Builder::new().name(format!("{prefix}_{index}"));
            if let Some(size) = self.stack_size {
                b = b.stack_size(size);
            }
            match b.spawn(move || reg.main_loop(index, deque, init.as_deref())) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Stop the workers already started, then report.
                    registry.shutdown(true);
                    registry.forget_unstarted(n - index);
                    registry.wait_exited();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(BuildError::Spawn(e));
                }
            }
        }
        crate::exit::watch(&registry, threads.iter().map(|t| t.thread().id()).collect());
        Ok(ThreadPoolExecutor {
            registry,
            threads: Mutex::new(threads),
            prefix,
        })
    }
}

impl ThreadPoolExecutor {
    /// A pool of `max_workers` threads.
    ///
    /// # Panics
    ///
    /// If `max_workers` is 0 or the OS refuses to start a thread. Use
    /// [`builder`](Self::builder) to get these as a [`BuildError`] instead.
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::new(4);
    /// # let _ = pool;
    /// ```
    pub fn new(max_workers: usize) -> Self {
        match Self::builder().max_workers(max_workers).build() {
            Ok(pool) => pool,
            Err(e) => panic!("ThreadPoolExecutor::new({max_workers}): {e}"),
        }
    }

    /// A builder for the pool's options.
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().max_workers(2).build().unwrap();
    /// # let _ = pool;
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            max_workers: None,
            thread_name_prefix: None,
            initializer: None,
            stack_size: None,
            caller_runs: None,
            record_timeline: false,
        }
    }

    /// Runs any closure on the pool and returns its future. Closures may capture (threads
    /// share memory); the result needs no serde. A refused task (pool shut down or broken)
    /// gives a future already failed with [`TaskError::Submit`](crate::TaskError::Submit).
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// let pool = concurrent_futures::ThreadPoolExecutor::new(2);
    /// let hits = Arc::new(AtomicU32::new(0));
    /// let futs: Vec<_> = (0..10).map(|_| {
    ///     let hits = hits.clone();
    ///     pool.spawn(move || hits.fetch_add(1, Ordering::SeqCst))
    /// }).collect();
    /// for f in futs { f.result().unwrap(); }
    /// assert_eq!(hits.load(Ordering::SeqCst), 10);
    /// ```
    pub fn spawn<F, R>(&self, f: F) -> Future<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + Sync + 'static,
    {
        self.try_spawn(f)
            .unwrap_or_else(|e| Future::ready(Err(crate::TaskError::Submit(e))))
    }

    /// [`spawn`](Self::spawn), returning the [`SubmitError`] if the pool refuses the task.
    ///
    /// ```
    /// use concurrent_futures::{Executor, SubmitError, ThreadPoolExecutor};
    /// let pool = ThreadPoolExecutor::new(1);
    /// pool.shutdown(true);
    /// assert_eq!(pool.try_spawn(|| 1).unwrap_err(), SubmitError::Shutdown);
    /// ```
    pub fn try_spawn<F, R>(&self, f: F) -> Result<Future<R>, SubmitError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + Sync + 'static,
    {
        let (fut, cell) = Future::with_task(f, self.registry.inline);
        let raced_shutdown = self.registry.push(cell)?;
        if raced_shutdown && fut.cancel() {
            return Err(SubmitError::Shutdown);
        }
        Ok(fut)
    }

    /// The prefix of the worker threads' names.
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().thread_name_prefix("w").build().unwrap();
    /// assert_eq!(pool.thread_name_prefix(), "w");
    /// ```
    pub fn thread_name_prefix(&self) -> &str {
        &self.prefix
    }

    /// The pool's counters now: tasks submitted, queued, running, done, failed, cancelled,
    /// and per worker the tasks it ran, its busy time and its steals. Always on; see
    /// [`PoolStats`] for what they cost and when they add up.
    ///
    /// ```
    /// # use concurrent_futures::Executor;
    /// use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(2);
    /// let futs: Vec<_> = (0..100).map(|i| pool.spawn(move || i)).collect();
    /// for f in &futs { f.result().unwrap(); }
    /// pool.shutdown(true);
    /// let stats = pool.stats();
    /// assert_eq!((stats.submitted, stats.done), (100, 100));
    /// assert_eq!((stats.queued, stats.running), (0, 0));
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.registry.stats()
    }

    /// Starts recording a [`Timeline`] (if it was not already): tasks run and steals,
    /// per worker. See [`ThreadPoolBuilder::record_timeline`] for the cost.
    ///
    /// ```
    /// # use concurrent_futures::Executor;
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().max_workers(2).caller_runs(false).build().unwrap();
    /// pool.start_recording();
    /// let futs: Vec<_> = (0..4).map(|i| pool.spawn(move || i)).collect();
    /// for f in &futs { f.result().unwrap(); }
    /// pool.stop_recording();
    /// pool.shutdown(true);
    /// assert_eq!(pool.take_timeline().tasks.len(), 4);
    /// ```
    pub fn start_recording(&self) {
        self.registry.set_recording(true);
    }

    /// Stops recording; what was recorded stays until [`take_timeline`](Self::take_timeline).
    ///
    /// ```
    /// # use concurrent_futures::Executor;
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().record_timeline(true).build().unwrap();
    /// pool.stop_recording();
    /// pool.spawn(|| ()).result().unwrap();
    /// pool.shutdown(true);
    /// assert!(pool.take_timeline().tasks.is_empty());
    /// ```
    pub fn stop_recording(&self) {
        self.registry.set_recording(false);
    }

    /// Takes what was recorded so far (recording goes on if it is on). A task is on the
    /// timeline once it has ended; tasks that a waiting thread ran itself (see
    /// [`ThreadPoolBuilder::caller_runs`]) are not on any worker's row.
    ///
    /// ```
    /// # use concurrent_futures::Executor;
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder().max_workers(1).record_timeline(true).build().unwrap();
    /// let fut = pool.spawn(|| -> u32 { panic!("boom") });
    /// assert!(fut.exception().unwrap().is_some());
    /// pool.shutdown(true);
    /// let timeline = pool.take_timeline();
    /// std::fs::write(std::env::temp_dir().join("doc-timeline.svg"), timeline.to_svg()).unwrap();
    /// assert!(timeline.tasks.len() <= 1);
    /// ```
    pub fn take_timeline(&self) -> Timeline {
        self.registry.take_timeline()
    }

    fn join_workers(&self) {
        self.registry.wait_exited();
        let threads = std::mem::take(&mut *sync::lock(&self.threads));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Executor for ThreadPoolExecutor {
    fn max_workers(&self) -> usize {
        self.registry.num_workers()
    }

    fn ordered_map<A: Payload, R: Payload, T: Task<A, R> + Clone>(
        &self,
        task: T,
        opts: MapOptions,
    ) -> Option<Box<dyn OrderedMap<A, R> + '_>> {
        // Each block holds a clone (`Map` passes a reference-counted one); the task is
        // called without dynamic dispatch.
        Some(Box::new(ordered_map::ThreadOrderedMap::new(
            self,
            move |a| task.call(a),
            opts,
        )))
    }

    fn try_submit<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        arg: A,
    ) -> Result<Future<R>, SubmitError> {
        self.try_spawn(move || task.call(arg))
    }

    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        self.try_spawn(move || run_chunk(|a| task.call(a), items))
    }

    fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        self.registry.shutdown(cancel_futures);
        if wait {
            self.join_workers();
        }
    }

    fn stats(&self) -> PoolStats {
        self.registry.stats()
    }
}

/// A pool of Python's default size, `min(32, cpus + 4)` workers (`ThreadPoolExecutor()`),
/// where `cpus` is what [`std::thread::available_parallelism`] reports (CPU affinity and
/// cgroup quota included). The same size as [`ThreadPoolExecutor::builder`]`().build()`.
///
/// # Panics
///
/// If the OS refuses to start a thread; use [`builder`](ThreadPoolExecutor::builder) to get
/// a [`BuildError`] instead.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
/// let pool = ThreadPoolExecutor::default();
/// assert_eq!(pool.max_workers(), (cpus + 4).min(32));
/// ```
impl Default for ThreadPoolExecutor {
    fn default() -> Self {
        match Self::builder().build() {
            Ok(pool) => pool,
            Err(e) => panic!("ThreadPoolExecutor::default(): {e}"),
        }
    }
}

/// Program end waits for a pool that is still alive (see [`crate::set_exit_timeout`]).
impl crate::exit::Watched for Registry {
    fn stop_accepting(&self) {
        self.shutdown(false);
    }

    fn wait_done(&self) {
        self.wait_exited();
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown_with(true, false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.registry.num_workers())
            .field("thread_name_prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("stack_size", &self.stack_size)
            .field("caller_runs", &self.caller_runs)
            .field("record_timeline", &self.record_timeline)
            .finish_non_exhaustive()
    }
}
