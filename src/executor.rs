//! The [`Executor`] trait: one interface for every backend.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{SubmitError, TaskError};
use crate::future::Future;
use crate::map::{Map, MapOptions, MapUnordered};

/// What may cross into a task and back through the [`Executor`] trait: a value that can be
/// sent to another thread, shared by reference, and encoded for another process (serde).
///
/// Implemented for every type with those properties; you never implement it by hand.
///
/// ```
/// fn takes_payload<T: concurrent_futures::Payload>(_: T) {}
/// takes_payload((1u32, String::from("x"), vec![1.5f64]));
/// ```
pub trait Payload: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Payload for T {}

/// The results of one chunk of a `map`, as a backend returns them.
///
/// Values of the items that succeeded, in order, plus the failures by position (a panic in
/// one item does not lose the others). You only meet this type when implementing
/// [`Executor`] for a backend of your own; [`run_chunk`] builds it.
///
/// ```
/// use concurrent_futures::{run_chunk, Chunk};
/// let chunk: Chunk<u8> = run_chunk(|x: u8| x * 2, vec![1, 2]);
/// assert_eq!(chunk.len(), 2);
/// ```
#[derive(Debug, Serialize, Deserialize)]
pub struct Chunk<R> {
    pub(crate) values: Vec<R>,
    pub(crate) errors: Vec<(u32, TaskError)>,
    pub(crate) elapsed: Duration,
}

/// Runs `f` over `items` as one chunk: each item under its own panic guard, timed as a whole
/// (the timing drives automatic chunk sizing). Backends call this where the chunk executes.
///
/// ```
/// use concurrent_futures::run_chunk;
/// fn half(x: u32) -> u32 { assert!(x % 2 == 0, "odd"); x / 2 }
/// let chunk = run_chunk(half, vec![2, 3, 4]);
/// assert_eq!(chunk.len(), 3);
/// ```
pub fn run_chunk<A, R>(f: fn(A) -> R, items: Vec<A>) -> Chunk<R> {
    let start = Instant::now();
    let mut values = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut rest = items.into_iter().enumerate();
    let _scope = crate::unwind::TaskScope::enter();
    // One unwind guard for the whole chunk; after a panic, the loop resumes with the item
    // that follows the one that panicked.
    loop {
        let mut current = 0;
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (i, item) in &mut rest {
                current = i;
                values.push(f(item));
            }
        }));
        match run {
            Ok(()) => break,
            Err(payload) => errors.push((current as u32, crate::unwind::panic_error(payload))),
        }
    }
    Chunk {
        values,
        errors,
        elapsed: start.elapsed(),
    }
}

impl<R> Chunk<R> {
    /// Number of items in the chunk.
    ///
    /// ```
    /// # use concurrent_futures::run_chunk;
    /// assert_eq!(run_chunk(|x: u8| x, vec![1, 2]).len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.values.len() + self.errors.len()
    }

    /// True if the chunk has no items.
    ///
    /// ```
    /// # use concurrent_futures::run_chunk;
    /// assert!(run_chunk(|x: u8| x, vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pool that runs functions: Python's `concurrent.futures.Executor`.
///
/// Write code against this trait once and run it on any backend by changing the line that
/// builds the pool: [`ThreadPoolExecutor`](crate::ThreadPoolExecutor), and
/// `rayon::ThreadPool` with the `rayon` feature.
///
/// # Tasks are functions
///
/// A task given through the trait is a function pointer `fn(A) -> R`: a `fn` item or a
/// closure that captures nothing. Arguments and results are [`Payload`]s (serde types that
/// are `Send + Sync + 'static`). These bounds are what lets the same call cross into another
/// process. Pass several arguments as a tuple. Thread pools also take any capturing closure
/// through their own methods (e.g. [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn)).
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
    fn try_submit<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
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
    fn submit_chunk<A: Payload, R: Payload>(
        &self,
        f: fn(A) -> R,
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
    fn submit<A: Payload, R: Payload>(&self, f: fn(A) -> R, arg: A) -> Future<R> {
        self.try_submit(f, arg)
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
    /// See [`map_with`](Executor::map_with) for `chunksize`, `timeout` and `buffersize`.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let squares: Vec<u64> = pool.map(square, 0..1000).map(Result::unwrap).collect();
    /// assert_eq!(squares[999], 998_001);
    /// ```
    fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Map<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        Map::new(self, f, items.into_iter(), MapOptions::default())
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
    fn map_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: MapOptions,
    ) -> Map<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        Map::new(self, f, items.into_iter(), options)
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
    fn map_unordered<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
    ) -> MapUnordered<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(self, f, items.into_iter(), MapOptions::default())
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
    fn map_unordered_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: MapOptions,
    ) -> MapUnordered<'_, Self, I::IntoIter, A, R>
    where
        Self: Sized,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(self, f, items.into_iter(), options)
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

    /// The crate's thread pool behind this executor, if it is one: `map` then splits blocks
    /// of items among its workers and the caller instead of submitting chunks.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ThreadPoolExecutor};
    /// assert!(ThreadPoolExecutor::new(1).as_thread_pool().is_some());
    /// ```
    #[doc(hidden)]
    fn as_thread_pool(&self) -> Option<&crate::ThreadPoolExecutor> {
        None
    }
}
