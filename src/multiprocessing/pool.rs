//! [`Pool`]: Python's `multiprocessing.Pool` API, a thin layer over
//! [`ProcessPoolExecutor`] for line-by-line ports.

use std::sync::Arc;

use parking_lot::Mutex;

use super::async_result::AsyncResult;
use super::error::PoolError;
use crate::error::{BuildError, TaskError};
use crate::executor::Executor;
use crate::future::Future;
use crate::map::{Map, MapOptions, MapUnordered};
use crate::process::ProcessPoolExecutor;
use crate::task::Payload;
use crate::task::{Task, TaskHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Yes,
    Closed,
    Terminated,
}

/// Python's `multiprocessing.Pool`: worker processes that run `apply`/`map` calls.
///
/// A thin layer over [`ProcessPoolExecutor`] (same workers, same isolation, same
/// tasks: `fn` items or [`task!`](crate::task!)s, with serde arguments; several arguments as
/// a tuple), with
/// Python's names: [`apply`](Pool::apply), [`apply_async`](Pool::apply_async) (with
/// [`callback`](AsyncResult::callback) and [`error_callback`](AsyncResult::error_callback),
/// which run in this process), [`map`](Pool::map), [`map_async`](Pool::map_async),
/// [`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered),
/// [`starmap`](Pool::starmap), [`close`](Pool::close), [`join`](Pool::join) and
/// [`terminate`](Pool::terminate).
///
/// As in Python, `join` is an error before `close` or `terminate`, and dropping the pool
/// terminates it (Python's `with Pool() as p:` calls `terminate` on exit): call
/// `close()` and `join()` to let queued work finish.
///
/// ```
/// use concurrent_futures::multiprocessing::Pool;
///
/// fn func(msg: String) -> String {
///     format!("done{msg}")
/// }
///
/// let pool = Pool::new(4);
/// let results: Vec<_> = (0..3)
///     .map(|i| pool.apply_async(func, format!("hello {i}")))
///     .collect();
/// pool.close();
/// pool.join().unwrap();
/// for res in &results {
///     println!("::: {}", res.get().unwrap());
/// }
/// assert_eq!(results[2].get().unwrap(), "donehello 2");
/// ```
pub struct Pool {
    exec: ProcessPoolExecutor,
    running: Mutex<Running>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.exec.max_workers())
            .field("state", &*self.running.lock())
            .finish()
    }
}

impl Default for Pool {
    /// A pool of [`cpu_count`](super::cpu_count) processes (Python's `Pool()`).
    fn default() -> Self {
        Pool::new(super::cpu_count())
    }
}

impl Pool {
    /// A pool of `processes` worker processes (Python's `Pool(processes)`; 0 means the
    /// number of CPUs, as Python's `None`).
    ///
    /// ```
    /// let pool = concurrent_futures::multiprocessing::Pool::new(2);
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn new(processes: usize) -> Pool {
        Pool::with_executor(ProcessPoolExecutor::new(if processes == 0 {
            super::cpu_count()
        } else {
            processes
        }))
    }

    /// A pool with Python's other arguments: an `initializer` each worker runs first
    /// and `maxtasksperchild`.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::Pool;
    /// fn init() {}
    /// let pool = Pool::with_options(2, Some(init), Some(100)).unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn with_options(
        processes: usize,
        initializer: Option<fn()>,
        maxtasksperchild: Option<usize>,
    ) -> Result<Pool, BuildError> {
        let mut b = ProcessPoolExecutor::builder().max_workers(if processes == 0 {
            super::cpu_count()
        } else {
            processes
        });
        if let Some(init) = initializer {
            b = b.initializer(init);
        }
        if let Some(n) = maxtasksperchild {
            b = b.max_tasks_per_child(n);
        }
        Ok(Pool::with_executor(b.build()?))
    }

    /// [`with_options`](Self::with_options) with an initializer that takes an argument:
    /// Python's `Pool(processes, initializer, initargs, maxtasksperchild)`. Every worker
    /// runs `initializer(initargs)` once before any task, including a worker started to
    /// replace one after `maxtasksperchild` tasks (see
    /// [`ProcessPoolBuilder::initializer_with`](crate::ProcessPoolBuilder::initializer_with):
    /// a large argument is shared, not copied per worker; a panic breaks the pool).
    ///
    /// # Errors
    ///
    /// As [`ProcessPoolBuilder::build`](crate::ProcessPoolBuilder::build), and
    /// [`BuildError::Initializer`] if `initargs` cannot be encoded or holds shared state.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::Pool;
    /// use std::sync::OnceLock;
    /// static OFFSET: OnceLock<u64> = OnceLock::new();
    /// fn init(offset: u64) { OFFSET.set(offset).unwrap() }
    /// fn shift(x: u64) -> u64 { x + OFFSET.get().unwrap() }
    /// let pool = Pool::with_initargs(2, init, 100, None).unwrap();
    /// assert_eq!(pool.map(shift, [1, 2]).unwrap(), vec![101, 102]);
    /// ```
    pub fn with_initargs<A: Payload>(
        processes: usize,
        initializer: fn(A),
        initargs: A,
        maxtasksperchild: Option<usize>,
    ) -> Result<Pool, BuildError> {
        let mut b = ProcessPoolExecutor::builder()
            .max_workers(if processes == 0 {
                super::cpu_count()
            } else {
                processes
            })
            .initializer_with(initializer, initargs);
        if let Some(n) = maxtasksperchild {
            b = b.max_tasks_per_child(n);
        }
        Ok(Pool::with_executor(b.build()?))
    }

    /// A pool over an executor built with [`ProcessPoolExecutor::builder`].
    ///
    /// ```
    /// use concurrent_futures::{ProcessPoolExecutor, multiprocessing::Pool};
    /// let exec = ProcessPoolExecutor::builder().max_workers(1).build().unwrap();
    /// let pool = Pool::with_executor(exec);
    /// assert_eq!(pool.processes(), 1);
    /// ```
    pub fn with_executor(exec: ProcessPoolExecutor) -> Pool {
        Pool {
            exec,
            running: Mutex::new(Running::Yes),
        }
    }

    /// The number of worker processes.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Pool::new(3).processes(), 3);
    /// ```
    pub fn processes(&self) -> usize {
        self.exec.max_workers()
    }

    /// The executor underneath, for the `concurrent.futures` API (`submit`, `wait`, …).
    ///
    /// ```
    /// use concurrent_futures::{Executor, multiprocessing::Pool};
    /// fn double(x: u32) -> u32 { x * 2 }
    /// let pool = Pool::new(1);
    /// assert_eq!(pool.executor().submit(double, 4).result(), Ok(8));
    /// ```
    pub fn executor(&self) -> &ProcessPoolExecutor {
        &self.exec
    }

    /// Runs `f(args)` in a worker and waits for the result. Python's `apply(f, args)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let pool = Pool::new(1);
    /// assert_eq!(pool.apply(add, (2, 3)), Ok(5));
    /// ```
    pub fn apply<A: Payload, R: Payload>(
        &self,
        f: impl Task<A, R>,
        args: A,
    ) -> Result<R, TaskError> {
        self.exec.submit(f, args).into_result()
    }

    /// Starts `f(args)` in a worker; the [`AsyncResult`] gets the result. Python's
    /// `apply_async(f, args)`; chain [`callback`](AsyncResult::callback) and
    /// [`error_callback`](AsyncResult::error_callback) for Python's keyword arguments.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2);
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let res = pool.apply_async(square, 7).callback(move |v| tx.send(*v).unwrap());
    /// assert_eq!(res.get(), Ok(49));
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(49));
    /// ```
    pub fn apply_async<A: Payload, R: Payload>(
        &self,
        f: impl Task<A, R>,
        args: A,
    ) -> AsyncResult<R> {
        AsyncResult {
            fut: self.exec.submit(f, args),
        }
    }

    /// Applies `f` to every item and returns the results in order, or the first error.
    /// Python's `map(f, iterable)` (chunks are sized automatically; see
    /// [`map_chunked`](Self::map_chunked)).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2);
    /// assert_eq!(pool.map(square, 0..5), Ok(vec![0, 1, 4, 9, 16]));
    /// ```
    pub fn map<A, R, I>(&self, f: impl Task<A, R>, items: I) -> Result<Vec<R>, TaskError>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.exec.map(f, items).collect()
    }

    /// As [`map`](Self::map), sending `chunksize` items per message (Python's
    /// `map(f, iterable, chunksize)`).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn inc(x: u32) -> u32 { x + 1 }
    /// let pool = Pool::new(2);
    /// assert_eq!(pool.map_chunked(inc, 0..1000, 100).unwrap().len(), 1000);
    /// ```
    pub fn map_chunked<A, R, I>(
        &self,
        f: impl Task<A, R>,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.exec
            .map_with(f, items, MapOptions::new().chunksize(chunksize.max(1)))
            .collect()
    }

    /// Starts a `map`; the [`AsyncResult`] gets the whole list (or the first error).
    /// Python's `map_async(f, iterable)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2);
    /// let res = pool.map_async(square, vec![1, 2, 3]);
    /// assert_eq!(res.get(), Ok(vec![1, 4, 9]));
    /// ```
    pub fn map_async<A, R, I>(&self, f: impl Task<A, R>, items: I) -> AsyncResult<Vec<R>>
    where
        A: Payload,
        R: Payload + Clone,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        // One handle for every chunk (the captures encoded once).
        let f = TaskHandle::new(f);
        let out: Future<Vec<R>> = Future::new();
        if items.is_empty() {
            let _ = out.set_result(Vec::new());
            return AsyncResult { fut: out };
        }
        // Python's default: about four chunks per worker.
        let size = items.len().div_ceil(4 * self.processes().max(1)).max(1);
        let mut chunks = Vec::new();
        let mut rest = items.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<A> = rest.by_ref().take(size).collect();
            match self.exec.submit_chunk(f.clone(), chunk) {
                Ok(fut) => chunks.push(fut),
                Err(e) => {
                    let _ = out.set_exception(TaskError::Submit(e));
                    return AsyncResult { fut: out };
                }
            }
        }
        let gather = Arc::new(Mutex::new(Gather {
            parts: (0..chunks.len()).map(|_| None).collect(),
            left: chunks.len(),
        }));
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (gather, out) = (gather.clone(), out.handle());
            chunk.add_done_callback(move |done| {
                let part = match done.result_ref() {
                    Ok(c) => match c.errors.first() {
                        Some((_, e)) => Err(e.clone()),
                        None => Ok(c.values.clone()),
                    },
                    Err(e) => Err(e),
                };
                match part {
                    Err(e) => {
                        let _ = out.set_exception(e);
                    }
                    Ok(values) => {
                        let mut g = gather.lock();
                        g.parts[i] = Some(values);
                        g.left -= 1;
                        if g.left == 0 {
                            let all = g.parts.drain(..).flatten().flatten().collect();
                            drop(g);
                            let _ = out.set_result(all);
                        }
                    }
                }
            });
        }
        AsyncResult { fut: out }
    }

    /// A lazy, ordered iterator over `f(item)` results. Python's `imap(f, iterable)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2);
    /// let mut it = pool.imap(square, 1..);
    /// assert_eq!(it.next(), Some(Ok(1)));
    /// assert_eq!(it.next(), Some(Ok(4)));
    /// ```
    pub fn imap<A, R, I>(
        &self,
        f: impl Task<A, R>,
        items: I,
    ) -> Map<'_, ProcessPoolExecutor, I::IntoIter, A, R>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.exec.map(f, items)
    }

    /// A lazy iterator over `f(item)` results in completion order. Python's
    /// `imap_unordered(f, iterable)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2);
    /// let mut all: Vec<u64> = pool.imap_unordered(square, 0..4).map(Result::unwrap).collect();
    /// all.sort();
    /// assert_eq!(all, vec![0, 1, 4, 9]);
    /// ```
    pub fn imap_unordered<A, R, I>(
        &self,
        f: impl Task<A, R>,
        items: I,
    ) -> MapUnordered<'_, ProcessPoolExecutor, I::IntoIter, A, R>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.exec.map_unordered(f, items)
    }

    /// Python's `starmap(f, [(a, b), …])`: in Rust a function of several arguments takes
    /// them as one tuple, so this is [`map`](Self::map) over tuples.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn pow((base, exp): (u64, u32)) -> u64 { base.pow(exp) }
    /// let pool = Pool::new(2);
    /// assert_eq!(pool.starmap(pow, vec![(2, 3), (3, 2)]), Ok(vec![8, 9]));
    /// ```
    pub fn starmap<A, R, I>(&self, f: impl Task<A, R>, items: I) -> Result<Vec<R>, TaskError>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.map(f, items)
    }

    /// Python's `starmap_async`: [`map_async`](Self::map_async) over tuples.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn add((a, b): (i32, i32)) -> i32 { a + b }
    /// let pool = Pool::new(2);
    /// assert_eq!(pool.starmap_async(add, vec![(1, 2), (3, 4)]).get(), Ok(vec![3, 7]));
    /// ```
    pub fn starmap_async<A, R, I>(&self, f: impl Task<A, R>, items: I) -> AsyncResult<Vec<R>>
    where
        A: Payload,
        R: Payload + Clone,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)
    }

    /// Accepts no more work; what was submitted still runs. Python's `close()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = Pool::new(1);
    /// pool.close();
    /// assert!(pool.apply(one, ()).is_err()); // Python: ValueError("Pool not running")
    /// pool.join().unwrap();
    /// ```
    pub fn close(&self) {
        let mut running = self.running.lock();
        if *running == Running::Yes {
            *running = Running::Closed;
            self.exec.shutdown(false);
        }
    }

    /// Stops the workers at once; unfinished work fails ([`TaskError::Cancelled`] if it had
    /// not started, [`TaskError::Broken`] if it was running). Python's `terminate()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let pool = Pool::new(1);
    /// let res = pool.apply_async(forever, ());
    /// pool.terminate();
    /// pool.join().unwrap();
    /// assert!(res.get().is_err());
    /// ```
    pub fn terminate(&self) {
        let mut running = self.running.lock();
        if *running != Running::Terminated {
            *running = Running::Terminated;
            drop(running);
            self.exec.terminate();
        }
    }

    /// Waits for the workers to exit after [`close`](Self::close) (every submitted task and
    /// its callbacks are done) or [`terminate`](Self::terminate). An error before either,
    /// as in Python.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{Pool, PoolError};
    /// let pool = Pool::new(1);
    /// assert_eq!(pool.join(), Err(PoolError::StillRunning));
    /// pool.close();
    /// assert_eq!(pool.join(), Ok(()));
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        if *self.running.lock() == Running::Yes {
            return Err(PoolError::StillRunning);
        }
        self.exec.shutdown(true);
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if *self.running.lock() == Running::Yes {
            self.terminate();
        }
    }
}

struct Gather<R> {
    parts: Vec<Option<Vec<R>>>,
    left: usize,
}
