//! The [`Executor`] trait: one interface for every backend.

use std::time::Duration;

use crate::chunk::Chunk;
use crate::error::{SubmitError, TaskError};
use crate::future::Future;
use crate::map::{Map, MapOptions, MapUnordered, OrderedMap};
use crate::task::{Payload, Task};

/// A pool that runs functions: Python's `concurrent.futures.Executor`.
///
/// Write code against this trait once and run it on any backend by changing the line that
/// builds the pool: [`ThreadPoolExecutor`](crate::ThreadPoolExecutor), `ProcessPoolExecutor`
/// (Linux), `MpiPoolExecutor` with the `mpi` feature, `rayon::ThreadPool` with the `rayon`
/// feature, or [`AnyExecutor`](crate::AnyExecutor) for any of them.
///
/// # Tasks are functions of one argument, with captures through `task!`; `spawn` takes closures
///
/// A task given through the trait is a [`Task`](crate::Task) of one argument: a `fn` item,
/// a closure that captures nothing, or a task built by [`task!`](crate::task!) with captured
/// values (`task!([table, settings] |i: usize| score(table, settings, i))`), whose captures
/// are [`Payload`]s too: they cross to a worker process with the task, once per task and once
/// per chunk of a `map`. Arguments and results are [`Payload`]s (serde types that are
/// `Send + Sync + 'static`). These bounds are what lets the same call cross into another
/// process. Pass several arguments as one tuple. A closure that captures `Copy` values is a
/// task on threads only (the process and MPI pools refuse it with
/// [`SubmitError::CapturingClosure`]). Thread pools also take any capturing closure through
/// their own methods ([`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn)).
/// Shared state (`Arc`, `Rc`) is not a `Payload`: see [`Payload`] for how to share on each
/// backend.
///
/// To choose the backend at run time (`Box<dyn Executor>` is not possible: the methods are
/// generic), use [`AnyExecutor`](crate::AnyExecutor), parsed from a string such as
/// `"processes:4"`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
///
/// fn run<E: Executor>(pool: &E) -> Vec<u64> {
///     let fut = pool.submit(fib, 20);
///     fut.add_done_callback(|f| println!("fib(20) done: {:?}", f.result()));
///     assert_eq!(fut.result().unwrap(), 6765);
///     pool.map(fib, 0..20).collect::<Result<Vec<_>, _>>().unwrap()
/// }
///
/// let pool = ThreadPoolExecutor::new(2);
/// assert_eq!(run(&pool)[19], 4181);
/// pool.shutdown(true);
/// ```
///
/// A task that needs values besides its argument captures them with
/// [`task!`](crate::task!), and runs unchanged on every backend:
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor, task};
/// let offset = 100u64;
/// let shifted = task!([offset] |x: u64| x + offset);
/// let pool = ThreadPoolExecutor::new(2);
/// let out: Vec<u64> = pool.map(shifted, 0..3).map(Result::unwrap).collect();
/// assert_eq!(out, [100, 101, 102]);
/// ```
pub trait Executor {
    /// Number of workers (threads, processes, ranks) executing tasks.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// assert_eq!(ThreadPoolExecutor::new(3).max_workers(), 3);
    /// ```
    fn max_workers(&self) -> usize;

    /// Schedules `f(arg)` and returns its future, or why it was refused.
    ///
    /// ```
    /// use concurrent_futures::{Executor, SubmitError, ThreadPoolExecutor};
    /// fn inc(x: u8) -> u8 { x + 1 }
    /// let pool = ThreadPoolExecutor::new(1);
    /// assert_eq!(pool.try_submit(inc, 1).unwrap().result(), Ok(2));
    /// pool.shutdown(true);
    /// assert_eq!(pool.try_submit(inc, 1).unwrap_err(), SubmitError::Shutdown);
    /// ```
    fn try_submit<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        arg: A,
    ) -> Result<Future<R>, SubmitError>;

    /// Schedules one chunk of a `map`: `run_chunk(f, items)` as a single task. Backends
    /// implement it so that a chunk crosses to its worker as one message.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn inc(x: u8) -> u8 { x + 1 }
    /// let pool = ThreadPoolExecutor::new(1);
    /// let chunk = pool.submit_chunk(inc, vec![1, 2, 3]).unwrap().into_result().unwrap();
    /// assert_eq!(chunk.len(), 3);
    /// ```
    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError>;

    /// Stops accepting work; see [`shutdown`](Executor::shutdown). With `cancel_futures`,
    /// tasks that have not started are cancelled (Python's `cancel_futures=True`).
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn id(x: u8) -> u8 { x }
    /// let pool = ThreadPoolExecutor::new(1);
    /// let futs: Vec<_> = (0..100).map(|i| pool.submit(id, i)).collect();
    /// pool.shutdown_with(true, true); // wait, and cancel what has not started
    /// assert!(futs.iter().all(|f| f.done()));
    /// ```
    fn shutdown_with(&self, wait: bool, cancel_futures: bool);

    /// Schedules `f(arg)` and returns its future. Python's `submit(fn, arg)`.
    ///
    /// Never fails up front: if the executor refuses the task (it was shut down, it is
    /// broken, the argument cannot be encoded), the future is already finished with
    /// [`TaskError::Submit`]. Use [`try_submit`](Executor::try_submit) to get the
    /// [`SubmitError`] directly.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let pool = ThreadPoolExecutor::new(1);
    /// assert_eq!(pool.submit(add, (2, 3)).result(), Ok(5));
    /// ```
    fn submit<A: Payload, R: Payload, T: Task<A, R>>(&self, task: T, arg: A) -> Future<R> {
        self.try_submit(task, arg)
            .unwrap_or_else(|e| Future::ready(Err(TaskError::Submit(e))))
    }

    /// Applies `f` to every item, in parallel, yielding results in input order. Python's
    /// `map(fn, iterable)`.
    ///
    /// The input is consumed lazily, a bounded window ahead of the results (an endless
    /// iterator is fine); work starts at once, before the first `next`, and an input known to
    /// fit in the window is submitted whole right away (as Python's eager `map`). Cheap items
    /// are grouped into chunks whose size adapts to the measured cost of an item. Each item
    /// yields its own `Result`, so one failing item does not hide the others. Dropping the
    /// iterator after iteration began cancels the chunks that have not started (as Python's
    /// result generator does when closed); dropping it unused lets the submitted ones run.
    /// See [`map_with`](Executor::map_with) for `chunksize`, `timeout`, `buffersize` and
    /// `buffer_bytes`.
    ///
    /// The input is pulled on the consumer's thread, inside `map` and `next`: an input whose
    /// `next` blocks (a channel, a socket) blocks the consumer while it does, ready results
    /// included. So `map` holds back no result for a *slow* input: once taking a chunk's
    /// items took longer than [`chunk_target`](Executor::chunk_target), the chunk goes with
    /// the items it has, and (process and MPI pools) input is taken only while the next
    /// result is not ready and fewer than two chunks per worker are unfinished, never while
    /// a result is ready; a ready result waits at most for the one `next` of the input in
    /// progress (with an item every 100 ms: 100 ms, where it was 1.1 s). The thread pool
    /// takes the input in blocks, and a block stops taking items once that took 2 ms. An
    /// input that comes quickly is taken to fill the window, as before (taking it only when
    /// needed would idle the workers), so one that comes quickly and then stops can hold
    /// back results already computed.
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let squares: Vec<u64> = pool.map(square, 0..1000).map(Result::unwrap).collect();
    /// assert_eq!(squares[999], 998_001);
    /// ```
    fn map<A, R, T, I>(&self, task: T, items: I) -> Map<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        T: Task<A, R>,
        I: IntoIterator<Item = A>,
    {
        Map::new(self, task, items.into_iter(), MapOptions::default())
    }

    /// [`map`](Executor::map) with options (`chunksize`, `timeout`, `buffersize`).
    ///
    /// ```
    /// use concurrent_futures::{Executor, MapOptions, ThreadPoolExecutor};
    /// fn inc(x: u32) -> u32 { x + 1 }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let opts = MapOptions::new().chunksize(10);
    /// let out: Result<Vec<u32>, _> = pool.map_with(inc, 0..100, opts).collect();
    /// assert_eq!(out.unwrap()[99], 100);
    /// ```
    fn map_with<A, R, T, I>(
        &self,
        task: T,
        items: I,
        options: MapOptions,
    ) -> Map<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        T: Task<A, R>,
        I: IntoIterator<Item = A>,
    {
        Map::new(self, task, items.into_iter(), options)
    }

    /// Like [`map`](Executor::map), but yields results as chunks complete rather than in
    /// input order (`multiprocessing`'s `imap_unordered`).
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn double(x: u32) -> u32 { x * 2 }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let mut out: Vec<u32> = pool.map_unordered(double, 0..100).map(Result::unwrap).collect();
    /// out.sort();
    /// assert_eq!(out, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    /// ```
    fn map_unordered<A, R, T, I>(
        &self,
        task: T,
        items: I,
    ) -> MapUnordered<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        T: Task<A, R>,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(self, task, items.into_iter(), MapOptions::default())
    }

    /// [`map_unordered`](Executor::map_unordered) with options.
    ///
    /// ```
    /// use concurrent_futures::{Executor, MapOptions, ThreadPoolExecutor};
    /// fn id(x: u8) -> u8 { x }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let n = pool.map_unordered_with(id, 0..10, MapOptions::new().chunksize(3)).count();
    /// assert_eq!(n, 10);
    /// ```
    fn map_unordered_with<A, R, T, I>(
        &self,
        task: T,
        items: I,
        options: MapOptions,
    ) -> MapUnordered<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        T: Task<A, R>,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(self, task, items.into_iter(), options)
    }

    /// Stops accepting work and, if `wait`, blocks until every accepted task has run and
    /// the workers have exited. Pending tasks still run (use
    /// [`shutdown_with`](Executor::shutdown_with) to cancel them). Later submissions fail
    /// with [`SubmitError::Shutdown`]. Idempotent. Python's `shutdown(wait)`.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = ThreadPoolExecutor::new(1);
    /// let fut = pool.submit(one, ());
    /// pool.shutdown(true);
    /// assert_eq!(fut.result(), Ok(1));
    /// assert!(pool.try_submit(one, ()).is_err());
    /// ```
    fn shutdown(&self, wait: bool) {
        self.shutdown_with(wait, false);
    }

    /// How long one automatically sized `map` chunk should run: long enough to amortise
    /// the per-task cost of this backend, short enough to balance the load.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// assert!(ThreadPoolExecutor::new(1).chunk_target().as_micros() > 0);
    /// ```
    fn chunk_target(&self) -> Duration {
        Duration::from_micros(100)
    }

    /// This backend's own way to run an ordered [`map`](Executor::map), if it has one
    /// (the thread pool splits blocks of items among its workers and the caller); `None`
    /// (the default) submits chunks as tasks.
    ///
    /// ```
    /// use concurrent_futures::{Executor, MapOptions, ThreadPoolExecutor};
    /// fn neg(x: i32) -> i32 { -x }
    /// assert!(ThreadPoolExecutor::new(1).ordered_map(neg, MapOptions::new()).is_some());
    /// ```
    #[doc(hidden)]
    fn ordered_map<A: Payload, R: Payload, T: Task<A, R> + Clone>(
        &self,
        task: T,
        opts: MapOptions,
    ) -> Option<Box<dyn OrderedMap<A, R> + '_>> {
        let _ = (task, opts);
        None
    }

    /// The pool's counters: tasks submitted, queued, running, done, failed, cancelled, and
    /// per worker what it ran (see [`PoolStats`](crate::PoolStats)). A backend that keeps no
    /// statistics returns zeros (the default): `rayon::ThreadPool` (feature `rayon`), whose
    /// workers and queues are rayon's and which has no room for counters of this crate.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn report(pool: &impl Executor) -> u64 {
    ///     pool.stats().submitted
    /// }
    /// let pool = ThreadPoolExecutor::new(2);
    /// pool.submit(u32::count_ones, 7).result().unwrap();
    /// assert_eq!(report(&pool), 1);
    /// ```
    fn stats(&self) -> crate::PoolStats {
        crate::PoolStats::default()
    }
}
