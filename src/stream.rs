//! `Stream` versions of `map`, `map_unordered` and `as_completed`, for async code (feature
//! `stream`). Polling them never blocks the thread: they wait by registering the task's
//! waker on the pool's futures.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::chunk::Chunk;
use crate::error::TaskError;
use crate::executor::Executor;
use crate::future::Future;
use crate::task::Payload;
use crate::task::{Task, TaskHandle};

/// Largest automatic chunk, in items (as `map`'s: bigger vectors page-fault).
const MAX_CHUNK: usize = 8192;

/// `Stream` versions of [`Executor::map`] and [`Executor::map_unordered`], for every
/// executor (feature `stream`).
///
/// ```
/// use concurrent_futures::{ExecutorStreamExt, ThreadPoolExecutor};
/// use std::pin::Pin;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = ThreadPoolExecutor::new(2);
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let total = rt.block_on(async {
///     let mut squares = pool.map_stream(square, 0..100);
///     let mut total = 0;
///     // (with futures' or tokio-stream's `StreamExt`: `while let Some(r) = squares.next().await`)
///     while let Some(r) = std::future::poll_fn(|cx| {
///         futures_core::Stream::poll_next(Pin::new(&mut squares), cx)
///     }).await {
///         total += r.unwrap();
///     }
///     total
/// });
/// assert_eq!(total, 328_350);
/// ```
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "stream")))]
pub trait ExecutorStreamExt: Executor + Sized {
    /// Applies `f` to every item on the pool and yields the results in input order, as a
    /// `Stream`: [`Executor::map`] for async code. Items are grouped into chunks sized
    /// automatically (see [`MapStream::chunksize`]), and at most a window of chunks is in
    /// flight ([`MapStream::buffersize`]). Nothing is submitted before the first poll
    /// (streams are lazy); each item yields its own `Result`. Dropping the stream cancels
    /// the chunks that have not started.
    ///
    /// ```
    /// use concurrent_futures::{ExecutorStreamExt, ThreadPoolExecutor};
    /// fn inc(x: u32) -> u32 { x + 1 }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let stream = pool.map_stream(inc, 0..10).chunksize(3);
    /// # drop(stream);
    /// ```
    fn map_stream<A, R, T, I>(&self, task: T, items: I) -> MapStream<'_, Self, I::IntoIter, A, R>
    where
        A: Payload,
        R: Payload,
        T: Task<A, R>,
        I: IntoIterator<Item = A>,
    {
        MapStream::new(self, TaskHandle::new(task), items.into_iter(), true)
    }

    /// Like [`map_stream`](Self::map_stream), yielding results as chunks complete rather
    /// than in input order: [`Executor::map_unordered`] for async code.
    ///
    /// ```
    /// use concurrent_futures::{ExecutorStreamExt, ThreadPoolExecutor};
    /// fn inc(x: u32) -> u32 { x + 1 }
    /// let pool = ThreadPoolExecutor::new(2);
    /// let stream = pool.map_unordered_stream(inc, 0..10);
    /// assert_eq!(futures_core::Stream::size_hint(&stream), (10, Some(10)));
    /// ```
    fn map_unordered_stream<A, R, T, I>(
        &self,
        task: T,
        items: I,
    ) -> MapStream<'_, Self, I::IntoIter, A, R>
    where
        A: Payload,
        R: Payload,
        T: Task<A, R>,
        I: IntoIterator<Item = A>,
    {
        MapStream::new(self, TaskHandle::new(task), items.into_iter(), false)
    }
}

impl<E: Executor> ExecutorStreamExt for E {}

/// One submitted chunk: its future and how many items it holds.
struct InFlight<R> {
    future: Future<Chunk<R>>,
    len: usize,
}

/// The `Stream` of [`ExecutorStreamExt::map_stream`] and
/// [`map_unordered_stream`](ExecutorStreamExt::map_unordered_stream).
#[must_use = "streams do nothing unless polled"]
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "stream")))]
pub struct MapStream<'a, E: Executor, I, A, R> {
    exec: &'a E,
    task: TaskHandle<A, R>,
    items: Option<I>,
    ordered: bool,
    in_flight: VecDeque<InFlight<R>>,
    ready: VecDeque<Result<R, TaskError>>,
    /// Fixed by `chunksize`, else `None` (automatic).
    fixed_chunk: Option<usize>,
    /// The automatic size: 1 until a chunk has been measured.
    auto_chunk: usize,
    window: usize,
    /// Items not yet yielded, when the input's length is known.
    remaining: Option<usize>,
}

impl<'a, E: Executor, I: Iterator<Item = A>, A: Payload, R: Payload> MapStream<'a, E, I, A, R> {
    fn new(exec: &'a E, task: TaskHandle<A, R>, items: I, ordered: bool) -> Self {
        let (lo, hi) = items.size_hint();
        MapStream {
            exec,
            task,
            remaining: (Some(lo) == hi).then_some(lo),
            items: Some(items),
            ordered,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            fixed_chunk: None,
            auto_chunk: 1,
            window: (exec.max_workers() * 4).max(2),
        }
    }

    /// Items per chunk (Python's `chunksize`), instead of the automatic size (which aims at
    /// [`Executor::chunk_target`] per chunk, measured on the chunks that completed). At
    /// least 1.
    ///
    /// ```
    /// # use concurrent_futures::{ExecutorStreamExt, ThreadPoolExecutor};
    /// # fn id(x: u8) -> u8 { x }
    /// let pool = ThreadPoolExecutor::new(1);
    /// let s = pool.map_stream(id, 0..10).chunksize(5);
    /// # drop(s);
    /// ```
    pub fn chunksize(mut self, n: usize) -> Self {
        self.fixed_chunk = Some(n.max(1));
        self
    }

    /// Chunks in flight at most (default: four per worker). At least 1.
    ///
    /// ```
    /// # use concurrent_futures::{ExecutorStreamExt, ThreadPoolExecutor};
    /// # fn id(x: u8) -> u8 { x }
    /// let pool = ThreadPoolExecutor::new(1);
    /// let s = pool.map_stream(id, 0..10).buffersize(2);
    /// # drop(s);
    /// ```
    pub fn buffersize(mut self, chunks: usize) -> Self {
        self.window = chunks.max(1);
        self
    }

    /// Submits chunks until the window is full or the input is exhausted.
    fn fill(&mut self) {
        while self.in_flight.len() < self.window {
            let Some(items) = self.items.as_mut() else {
                return;
            };
            let size = self.fixed_chunk.unwrap_or(self.auto_chunk);
            let chunk: Vec<A> = items.by_ref().take(size).collect();
            if chunk.len() < size {
                self.items = None;
            }
            if chunk.is_empty() {
                return;
            }
            let len = chunk.len();
            let future = self
                .exec
                .submit_chunk(self.task.clone(), chunk)
                .unwrap_or_else(|e| Future::ready(Err(TaskError::Submit(e))));
            self.in_flight.push_back(InFlight { future, len });
        }
    }

    /// Moves a finished chunk's results to `ready`, in order, and learns its cost.
    fn unpack(&mut self, len: usize, outcome: Result<Chunk<R>, TaskError>) {
        match outcome {
            Ok(chunk) => {
                if !chunk.is_empty() && self.fixed_chunk.is_none() {
                    let per_item = chunk.elapsed / chunk.len() as u32;
                    let target = self.exec.chunk_target();
                    let size = if per_item.is_zero() {
                        MAX_CHUNK
                    } else {
                        (target.as_nanos() / per_item.as_nanos().max(1)) as usize
                    };
                    self.auto_chunk = size.clamp(1, MAX_CHUNK);
                }
                let mut errors = chunk.errors.into_iter().peekable();
                let mut values = chunk.values.into_iter();
                for i in 0..len as u32 {
                    match errors.next_if(|(at, _)| *at == i) {
                        Some((_, e)) => self.ready.push_back(Err(e)),
                        None => match values.next() {
                            Some(v) => self.ready.push_back(Ok(v)),
                            None => break,
                        },
                    }
                }
            }
            Err(e) => self.ready.extend(std::iter::repeat_n(e, len).map(Err)),
        }
    }
}

// The stream is never pinned structurally: `poll_next` works through `&mut` only (the
// pool's futures are `Unpin`), so it may move whatever `A`, `R` and `I` are.
impl<E: Executor, I, A, R> Unpin for MapStream<'_, E, I, A, R> {}

impl<E: Executor, I: Iterator<Item = A>, A: Payload, R: Payload> Stream
    for MapStream<'_, E, I, A, R>
{
    type Item = Result<R, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.ready.pop_front() {
                if let Some(n) = this.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
                return Poll::Ready(Some(item));
            }
            this.fill();
            if this.in_flight.is_empty() {
                return Poll::Ready(None);
            }
            // The chunk to take: the oldest (in order), or any that is done (unordered).
            let candidates = if this.ordered {
                1
            } else {
                this.in_flight.len()
            };
            let mut finished = None;
            for i in 0..candidates {
                if let Poll::Ready(outcome) = Pin::new(&mut this.in_flight[i].future).poll(cx) {
                    finished = Some((i, outcome));
                    break;
                }
            }
            let Some((i, outcome)) = finished else {
                return Poll::Pending;
            };
            let done = this.in_flight.remove(i).expect("index within the window");
            this.unpack(done.len, outcome);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining {
            Some(n) => (n, Some(n)),
            None => (self.ready.len(), None),
        }
    }
}

impl<E: Executor, I, A, R> Drop for MapStream<'_, E, I, A, R> {
    /// Cancels the chunks that have not started (those running finish, unobserved).
    fn drop(&mut self) {
        for c in &self.in_flight {
            c.future.cancel();
        }
    }
}

/// [`as_completed`](crate::as_completed) as a `Stream` (feature `stream`): yields each
/// future once it is done (finished or cancelled, callbacks run), in completion order;
/// futures given twice are yielded once. Polling registers the task's waker on every
/// future not yet done, so a poll costs time in proportion to those. For a timeout, wrap
/// the waits in your runtime's (`tokio::time::timeout`).
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor, as_completed_stream};
/// use std::pin::Pin;
///
/// fn double(x: u64) -> u64 { x * 2 }
///
/// let pool = ThreadPoolExecutor::new(2);
/// let futures: Vec<_> = (0..5).map(|x| pool.submit(double, x)).collect();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let sum = rt.block_on(async {
///     let mut done = as_completed_stream(&futures);
///     let mut sum = 0;
///     while let Some(f) = std::future::poll_fn(|cx| {
///         futures_core::Stream::poll_next(Pin::new(&mut done), cx)
///     }).await {
///         sum += f.result_ref().unwrap(); // done: does not block
///     }
///     sum
/// });
/// assert_eq!(sum, 20);
/// ```
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "stream")))]
pub fn as_completed_stream<'a, T, F>(futures: F) -> AsCompletedStream<'a, T>
where
    T: Send + Sync + 'static,
    F: IntoIterator<Item = &'a Future<T>>,
{
    let mut seen = HashSet::new();
    let pending = futures.into_iter().filter(|f| seen.insert(*f)).collect();
    AsCompletedStream { pending }
}

/// The `Stream` of [`as_completed_stream`].
#[must_use = "streams do nothing unless polled"]
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "stream")))]
pub struct AsCompletedStream<'a, T> {
    pending: Vec<&'a Future<T>>,
}

impl<'a, T: Send + Sync + 'static> Stream for AsCompletedStream<'a, T> {
    type Item = &'a Future<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            return Poll::Ready(None);
        }
        for i in 0..this.pending.len() {
            // False once the value may be taken: done, and its callbacks have run.
            if !this.pending[i].core().register_waker(cx.waker()) {
                return Poll::Ready(Some(this.pending.swap_remove(i)));
            }
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}
