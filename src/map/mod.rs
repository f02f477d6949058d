//! The iterators behind [`Executor::map`] and [`Executor::map_unordered`]: lazy, bounded,
//! adaptively chunked, cancelling what has not started when dropped.

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::executor::{Chunk, Executor, Payload};
use crate::future::Future;
use crate::future::WaitSet;
use crate::task::{SharedTask, Task, TaskHandle};
use std::sync::Arc;

/// Options of [`Executor::map_with`]: Python's `chunksize`, `timeout` and `buffersize`,
/// and a bound on the bytes of results held ahead of the consumer (`buffer_bytes`).
///
/// ```
/// use concurrent_futures::MapOptions;
/// use std::time::Duration;
/// let opts = MapOptions::new().chunksize(64).timeout(Duration::from_secs(5)).buffersize(8);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions {
    pub(crate) chunksize: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    buffersize: Option<usize>,
    buffer_bytes: Option<usize>,
}

impl MapOptions {
    /// Default options: automatic chunk size, no timeout, a window of 64 chunks (16 per
    /// worker on machines with more than four) holding at most 256 MiB of results on the
    /// process and MPI pools.
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new();
    /// # let _ = opts;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Items per task, fixed (0 counts as 1). Without it the size adapts so that a chunk
    /// runs about [`Executor::chunk_target`].
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().chunksize(100);
    /// # let _ = opts;
    /// ```
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    /// Time limit for the whole iteration, counted from the `map` call. When it passes, the
    /// iterator yields [`TaskError::Timeout`] once, cancels the rest, and ends.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = concurrent_futures::MapOptions::new().timeout(Duration::from_secs(1));
    /// # let _ = opts;
    /// ```
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Python's `buffersize`: at most this many tasks submitted ahead of the consumer (0
    /// counts as 1). A task is one item, or `chunksize` items if that is set, as in Python
    /// (whose `chunksize` is 1 by default); without a `chunksize`, chunks still adapt, within
    /// `buffersize` items. As in Python, `map` takes `buffersize` items from the input at
    /// once, and each step of the iterator submits the next before it yields (so after one
    /// `next`, `buffersize + 1` items were taken). On every pool, the thread pool included,
    /// the items then travel as tasks (futures), not as the thread pool's blocks.
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().buffersize(2);
    /// # let _ = opts;
    /// ```
    pub fn buffersize(mut self, n: usize) -> Self {
        self.buffersize = Some(n.max(1));
        self
    }

    /// Most bytes of results held ahead of the consumer, on the pools whose results cross
    /// a process boundary (process, MPI): 256 MiB by default. Results that arrived and are
    /// not consumed yet, and those of the chunks in flight, count at the encoded size
    /// measured so far per item; while they reach the bound, `map` submits no more input
    /// (one chunk always stays in flight, so it progresses whatever the bound). With 10,000
    /// results of 1 MiB, the default keeps the parent near 256 MiB of results instead of a
    /// window of 64 chunks of them (1.7 GB). The thread pool's `map` keeps its results in
    /// place and bounds them in items (`buffersize`) only.
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().buffer_bytes(64 << 20);
    /// # let _ = opts;
    /// ```
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = Some(bytes);
        self
    }
}

/// Bytes of results a remote `map` holds ahead of its consumer by default.
const DEFAULT_BUFFER_BYTES: usize = 256 << 20;

/// Chunks in flight by default (at least; 16 per worker on bigger machines). A small window
/// starves the workers: chunks that finish behind a slow head chunk hold their slots until
/// the consumer reaches them.
const DEFAULT_WINDOW: usize = 64;

/// Largest automatic chunk.
const MAX_CHUNK: usize = 1 << 13;

/// Chooses chunk sizes: fixed, or adapted to the measured time per item.
///
/// Automatic sizing starts with one single-item probe chunk per worker and keeps only one
/// chunk per worker in flight until the size has converged: a window full of tiny chunks
/// would cost a wake-up per chunk, and a window of big chunks would serialise expensive
/// items. Each observation may grow the size at most 16x (a single fast item is weak
/// evidence), or shrink it at once; the size has converged when an observation was not
/// limited by that cap.
#[derive(Debug)]
struct Sizer {
    fixed: Option<usize>,
    size: usize,
    target: Duration,
    workers: usize,
    converged: bool,
}

impl Sizer {
    fn new(fixed: Option<usize>, target: Duration, workers: usize) -> Self {
        Sizer {
            fixed,
            size: 1,
            target,
            workers: workers.max(1),
            converged: false,
        }
    }

    /// How many chunks may be in flight now: the full window once sizes are known.
    fn limit(&self, window: usize) -> usize {
        if self.fixed.is_some() || self.converged {
            window
        } else {
            self.workers.min(window)
        }
    }

    /// Size of the next chunk; `remaining` is a lower bound of the items left.
    fn next(&self, remaining: usize) -> usize {
        if let Some(n) = self.fixed {
            return n;
        }
        // Near the end, split what is left fairly so no worker gets a long tail, but not
        // below an eighth of the target size (more tiny chunks cost more than they balance).
        let fair = remaining
            .div_ceil(2 * self.workers)
            .max(self.size / 8)
            .max(1);
        if remaining > 0 {
            self.size.min(fair)
        } else {
            self.size
        }
    }

    /// Learns from a finished chunk of `len` items that ran for `elapsed`.
    fn observe(&mut self, len: usize, elapsed: Duration) {
        if self.fixed.is_some() || len == 0 {
            return;
        }
        let per_item = (elapsed.as_nanos() / len as u128).max(1);
        let ideal = (self.target.as_nanos() / per_item).clamp(1, MAX_CHUNK as u128) as usize;
        let cap = len.saturating_mul(16);
        self.converged |= ideal <= cap;
        self.size = ideal.min(cap).max(1);
    }
}

/// Yields the results of one finished chunk, in order.
struct Drain<R> {
    values: std::vec::IntoIter<R>,
    errors: std::vec::IntoIter<(u32, TaskError)>,
    /// Position of the next item and of the next failed item (`u32::MAX`: none).
    pos: u32,
    next_error_at: u32,
    next_error: Option<TaskError>,
    /// Error repeated for every item when the whole chunk failed.
    whole: Option<(TaskError, usize)>,
}

impl<R> Drain<R> {
    /// Items not yet yielded.
    fn remaining(&self) -> usize {
        match &self.whole {
            Some((_, n)) => *n,
            None => self.values.len() + self.errors.len() + usize::from(self.next_error.is_some()),
        }
    }

    fn empty() -> Self {
        Drain {
            values: Vec::new().into_iter(),
            errors: Vec::new().into_iter(),
            pos: 0,
            next_error_at: u32::MAX,
            next_error: None,
            whole: None,
        }
    }

    fn of(chunk: Chunk<R>) -> Self {
        let mut d = Drain {
            values: chunk.values.into_iter(),
            errors: chunk.errors.into_iter(),
            ..Drain::empty()
        };
        d.load_next_error();
        d
    }

    fn failed(err: TaskError, len: usize) -> Self {
        Drain {
            whole: Some((err, len)),
            ..Drain::empty()
        }
    }

    fn load_next_error(&mut self) {
        match self.errors.next() {
            Some((i, e)) => {
                self.next_error_at = i;
                self.next_error = Some(e);
            }
            None => self.next_error_at = u32::MAX,
        }
    }

    /// The common case, kept small so that it inlines into the caller's loop.
    #[inline]
    fn next(&mut self) -> Option<Result<R, TaskError>> {
        if self.pos != self.next_error_at
            && let Some(v) = self.values.next()
        {
            self.pos += 1;
            return Some(Ok(v));
        }
        self.next_slow()
    }

    /// Feeds every remaining result to `f`; a chunk without failures goes straight over its
    /// values (no per-item `Option` shuffling).
    #[inline]
    fn fold_into<B>(&mut self, mut acc: B, f: &mut impl FnMut(B, Result<R, TaskError>) -> B) -> B {
        if self.whole.is_none() && self.next_error_at == u32::MAX {
            for v in self.values.by_ref() {
                acc = f(acc, Ok(v));
            }
            return acc;
        }
        while let Some(r) = self.next() {
            acc = f(acc, r);
        }
        acc
    }

    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        if let Some((err, left)) = &mut self.whole {
            if *left == 0 {
                return None;
            }
            *left -= 1;
            return Some(Err(err.clone()));
        }
        if self.pos == self.next_error_at {
            let e = self.next_error.take()?;
            self.pos += 1;
            self.load_next_error();
            return Some(Err(e));
        }
        None
    }
}

/// What both map iterators share: the input, the sizer, and submission.
struct Feed<'a, E, I, A, R> {
    exec: &'a E,
    /// The task, type-erased once per map (its captures encoded once for remote pools).
    task: TaskHandle<A, R>,
    items: Fuse<I>,
    sizer: Sizer,
    window: usize,
    deadline: Option<Instant>,
    /// Set after a submission failed or the deadline passed: take no more input.
    stopped: bool,
    /// Bound on the bytes of results held ahead of the consumer (`buffer_bytes`).
    max_bytes: usize,
    /// Python's `buffersize` in items (`buffersize × chunksize`), if given: then each step
    /// tops the window up before it yields, as Python's `map` does (`eager`; also for an
    /// input that fits in the window, submitted whole at once).
    max_items: Option<usize>,
    eager: bool,
    /// Building a chunk stops once taking its items took this long (an input slower than
    /// the work: its items are sent as they come rather than held for a full chunk).
    cut_after: Duration,
    /// Taking the last chunk's items took longer than `cut_after` (a slow input).
    slow: bool,
    /// Encoded bytes and items of the chunks collected so far: what an item's result costs.
    seen_bytes: u64,
    seen_items: u64,
}

impl<E, I: Iterator, A, R> Feed<'_, E, I, A, R> {
    /// Bounds on the items not yet submitted.
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.stopped {
            (0, Some(0))
        } else {
            self.items.size_hint()
        }
    }
}

/// Adds `known` items to an input's size hint.
pub(crate) fn plus(known: usize, (lo, hi): (usize, Option<usize>)) -> (usize, Option<usize>) {
    (
        lo.saturating_add(known),
        hi.and_then(|h| h.checked_add(known)),
    )
}

impl<'a, E: Executor, I: Iterator<Item = A>, A: Payload, R: Payload> Feed<'a, E, I, A, R> {
    fn new(exec: &'a E, task: TaskHandle<A, R>, items: I, opts: MapOptions) -> Self {
        let workers = exec.max_workers();
        let window = opts.buffersize.unwrap_or(DEFAULT_WINDOW.max(16 * workers));
        let mut sizer = Sizer::new(opts.chunksize, exec.chunk_target(), workers);
        // An input known to fit in the window is submitted whole, one item per task, at
        // once (as Python's eager `map` does): probing would only delay it. A `buffersize`
        // is submitted whole at once too, as in Python.
        let whole = items.size_hint().1.is_some_and(|n| n <= window);
        if whole || opts.buffersize.is_some() {
            sizer.converged = true;
        }
        Feed {
            exec,
            task,
            items: items.fuse(),
            sizer,
            window,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            stopped: false,
            max_bytes: opts.buffer_bytes.unwrap_or(DEFAULT_BUFFER_BYTES),
            max_items: opts
                .buffersize
                .map(|b| b.saturating_mul(opts.chunksize.unwrap_or(1))),
            eager: whole || opts.buffersize.is_some(),
            cut_after: exec.chunk_target(),
            slow: false,
            seen_bytes: 0,
            seen_items: 0,
        }
    }

    /// True if one more chunk may be submitted with `chunks` chunks of `ahead` items in
    /// flight and `held` results received and not consumed: the window has room (in chunks,
    /// and in items with a `buffersize`), and the bytes of those results (at the size per
    /// item seen so far) are under the bound. With nothing in flight, always (progress is
    /// guaranteed).
    fn room(&self, chunks: usize, ahead: usize, held: usize) -> bool {
        if chunks == 0 {
            return !self.stopped;
        }
        chunks < self.sizer.limit(self.window)
            && self.max_items.is_none_or(|max| ahead < max)
            && ((ahead + held) as u128) * u128::from(self.seen_bytes)
                < (self.max_bytes as u128) * u128::from(self.seen_items.max(1))
    }

    /// Submits the next chunk, if there is input left (`ahead`: items in flight). A refused
    /// submission becomes a finished future carrying the error (yielded once), and input
    /// stops.
    fn submit_next(&mut self, ahead: usize) -> Option<(Future<Chunk<R>>, usize)> {
        if self.stopped {
            return None;
        }
        let mut n = self.sizer.next(self.items.size_hint().0);
        if let Some(max) = self.max_items {
            n = n.min(max.saturating_sub(ahead).max(1));
        }
        let mut chunk: Vec<A> = Vec::with_capacity(n.min(MAX_CHUNK));
        let start = Instant::now();
        while chunk.len() < n {
            let Some(item) = self.items.next() else {
                break;
            };
            chunk.push(item);
            // (The clock is read after 1, 2, 4, 8... items: a slow input is noticed after
            // its first slow item, at a cost of a few clock reads per chunk.)
            if chunk.len().is_power_of_two() && start.elapsed() > self.cut_after {
                break;
            }
        }
        self.slow = start.elapsed() > self.cut_after;
        if chunk.is_empty() {
            return None;
        }
        let len = chunk.len();
        match self.exec.submit_chunk(self.task.clone(), chunk) {
            Ok(fut) => Some((fut, len)),
            Err(e) => {
                self.stopped = true;
                Some((Future::ready(Err(TaskError::Submit(e))), 1))
            }
        }
    }

    /// Waits for a chunk future within the deadline and turns it into a drain.
    fn collect(&mut self, fut: Future<Chunk<R>>, len: usize) -> Result<Drain<R>, ()> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if !fut.wait_timeout(left) {
                fut.cancel();
                return Err(());
            }
        }
        Ok(match fut.into_result_no_help() {
            Ok(chunk) => {
                self.sizer.observe(chunk.len(), chunk.elapsed);
                self.seen_bytes += chunk.bytes as u64;
                self.seen_items += chunk.len() as u64;
                Drain::of(chunk)
            }
            Err(e) => Drain::failed(e, len),
        })
    }
}

/// Iterator returned by [`Executor::map`]: results in input order.
///
/// A backend may run it its own way ([`Executor::ordered_map`]: the thread pool takes the
/// input in blocks that the workers and the calling thread split among themselves, with
/// results written in place and yielded straight from there); otherwise items travel in
/// chunks, one task each.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let mut it = pool.map(neg, 1..4);
/// assert_eq!(it.next(), Some(Ok(-1)));
/// assert_eq!(it.collect::<Result<Vec<_>, _>>(), Ok(vec![-2, -3]));
/// ```
pub struct Map<'a, E, I, A, R> {
    mode: Mode<'a, E, I, A, R>,
}

// One per `map` call, never in a collection: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Mode<'a, E, I, A, R> {
    Chunks(Chunked<'a, E, I, A, R>),
    /// The backend's own ordered map ([`Executor::ordered_map`]).
    Own(Own<'a, I, A, R>),
}

/// A backend's own ordered map, its input, and the run of results it lent the consumer.
struct Own<'a, I, A, R> {
    state: Box<dyn OrderedMap<A, R> + 'a>,
    /// Read inline by `next`, one result at a time; the backend is called only past it.
    run: ReadyRun<R>,
    items: Fuse<I>,
}

impl<I, A, R> Drop for Own<'_, I, A, R> {
    fn drop(&mut self) {
        // What is left of the run is the backend's again (it drops those results).
        self.state.stop(&mut self.run);
    }
}

/// A backend's own way to run an ordered `map` (see [`Executor::ordered_map`]): it takes
/// its input from the [`MapInput`] it is given at each step and yields the results in
/// input order, either one at a time or as a [`ReadyRun`] that the consumer reads inline.
/// Stopped (or dropped), it cancels what has not started.
///
/// ```
/// use concurrent_futures::{Executor, MapOptions, ReadyRun, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let mut state = pool.ordered_map(neg, MapOptions::new()).unwrap();
/// let mut input = (1..=3).fuse();
/// state.start(&mut input);
/// let mut run = ReadyRun::empty();
/// let mut out = Vec::new();
/// loop {
///     out.extend(run.by_ref().map(Ok));
///     match state.next(&mut input, &mut run) {
///         Some(r) => out.push(r),
///         None => break,
///     }
/// }
/// state.stop(&mut run);
/// assert_eq!(out, vec![Ok(-1), Ok(-2), Ok(-3)]);
/// ```
#[doc(hidden)]
pub trait OrderedMap<A, R>: fmt::Debug + Send + Sync {
    /// Starts the first work (called once, before any `next`).
    fn start(&mut self, input: &mut dyn MapInput<A>);

    /// The next result in input order, or `None` at the end. Called only once `run` (the
    /// run this map lent before, if any) is empty; it may lend a new one.
    fn next(
        &mut self,
        input: &mut dyn MapInput<A>,
        run: &mut ReadyRun<R>,
    ) -> Option<Result<R, TaskError>>;

    /// Results still to come (`run` included), given what the input has left.
    fn size_hint(&self, run: &ReadyRun<R>, input: (usize, Option<usize>))
    -> (usize, Option<usize>);

    /// The consumer is done: takes back what is left of `run` (called once, last).
    fn stop(&mut self, run: &mut ReadyRun<R>);
}

/// Results that an [`OrderedMap`] wrote in place and lends to its consumer, who moves them
/// out in order without a call per result.
///
/// ```
/// use concurrent_futures::ReadyRun;
/// let mut run = ReadyRun::<u8>::empty();
/// assert_eq!(run.next(), None);
/// ```
#[doc(hidden)]
pub struct ReadyRun<R> {
    /// `left` results from `ptr` on, not moved out yet.
    ptr: *mut R,
    left: usize,
}

// SAFETY: a run is the right to move `R: Send` values out of memory its map keeps alive
// (`ReadyRun::new`); moving the run moves that right.
unsafe impl<R: Send> Send for ReadyRun<R> {}
// SAFETY: `&ReadyRun` never dereferences `ptr`.
unsafe impl<R: Send> Sync for ReadyRun<R> {}

impl<R> ReadyRun<R> {
    /// No results.
    pub const fn empty() -> Self {
        ReadyRun {
            ptr: std::ptr::null_mut(),
            left: 0,
        }
    }

    /// A run of the `left` results from `ptr` on.
    ///
    /// # Safety
    ///
    /// They are initialized, no one else moves them out or frees them, and their memory
    /// stays alive and untouched by the lender until the run comes back to it (the next
    /// call of the [`OrderedMap`] with this run, or its `stop`).
    pub unsafe fn new(ptr: *mut R, left: usize) -> Self {
        ReadyRun { ptr, left }
    }

    /// Results left.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether no result is left.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// Gives back what is left (`ptr`, `left`); the run is empty after.
    pub fn take_back(&mut self) -> (*mut R, usize) {
        std::mem::replace(self, ReadyRun::empty()).into_raw()
    }

    fn into_raw(self) -> (*mut R, usize) {
        (self.ptr, self.left)
    }
}

/// Moves the results out, in order.
impl<R> Iterator for ReadyRun<R> {
    type Item = R;

    #[inline]
    fn next(&mut self) -> Option<R> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // SAFETY: `left > 0`: `ptr` points at an initialized result that is moved out only
        // here, once, as `ptr` moves past it; its memory is alive (the contract of `new`).
        let v = unsafe { self.ptr.read() };
        self.ptr = self.ptr.wrapping_add(1);
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The input of an [`OrderedMap`]: items taken in bulk, so that a backend pays one call
/// per batch, not per item.
///
/// ```
/// use concurrent_futures::MapInput;
/// use std::time::Duration;
/// let mut input = (0..10).fuse();
/// let mut items = Vec::new();
/// input.take_into(&mut items, 4, Duration::from_secs(1));
/// assert_eq!(items, [0, 1, 2, 3]);
/// ```
#[doc(hidden)]
pub trait MapInput<A> {
    /// Takes up to `n` items into `items`, in runs of 1, 1, 2, 4, 8... items (`extend`
    /// keeps its fast path), and stops early once taking them took longer than `cut`: an
    /// input slower than the work is sent on as it comes, not held for a full batch (whose
    /// results would all wait for its last item).
    fn take_into(&mut self, items: &mut Vec<A>, n: usize, cut: Duration);

    /// The input's size hint.
    fn items_left(&self) -> (usize, Option<usize>);
}

impl<I: Iterator> MapInput<I::Item> for Fuse<I> {
    fn take_into(&mut self, items: &mut Vec<I::Item>, n: usize, cut: Duration) {
        let start = Instant::now();
        let mut run = 1;
        loop {
            let want = (n - items.len()).min(run);
            let before = items.len();
            items.extend(self.by_ref().take(want));
            if items.len() - before < want || items.len() >= n || start.elapsed() > cut {
                return;
            }
            run = (run * 2).min(n);
        }
    }

    fn items_left(&self) -> (usize, Option<usize>) {
        self.size_hint()
    }
}

impl<'a, E, I, A, R> Map<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new<T: Task<A, R>>(exec: &'a E, task: T, items: I, opts: MapOptions) -> Self {
        // A backend's own map gets the task itself (shared, called without dynamic
        // dispatch); the chunked path erases it once.
        let task = SharedTask::new(task);
        // Python's `buffersize` counts tasks submitted ahead of the consumer, one more per
        // step: that is the chunked path's window, not a backend's own.
        let own = match opts.buffersize {
            None => exec.ordered_map(task.clone(), opts),
            Some(_) => None,
        };
        let mode = match own {
            Some(mut state) => {
                let mut items = items.fuse();
                state.start(&mut items);
                Mode::Own(Own {
                    state,
                    run: ReadyRun::empty(),
                    items,
                })
            }
            None => Mode::Chunks(Chunked::new(exec, TaskHandle::new(task), items, opts)),
        };
        Map { mode }
    }
}

impl<E, I, A, R> Iterator for Map<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    type Item = Result<R, TaskError>;

    /// Only the commonest case inline (a result ready in the run the backend lent), so
    /// that a consumer's loop (`collect` into a `Result`) inlines this whole and keeps its
    /// per-item work to a few instructions; the rest is `next_slow`.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Mode::Own(own) = &mut self.mode
            && let Some(v) = own.run.next()
        {
            return Some(Ok(v));
        }
        self.next_slow()
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.mode {
            Mode::Own(own) => own.state.size_hint(&own.run, own.items.items_left()),
            Mode::Chunks(c) => c.size_hint(),
        }
    }

    fn fold<B, F>(self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        match self.mode {
            Mode::Own(mut own) => {
                let mut acc = init;
                loop {
                    for v in own.run.by_ref() {
                        acc = f(acc, Ok(v));
                    }
                    match own.state.next(&mut own.items, &mut own.run) {
                        Some(r) => acc = f(acc, r),
                        None => return acc,
                    }
                }
            }
            Mode::Chunks(c) => c.fold(init, f),
        }
    }
}

impl<E, I, A, R> Map<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Past the run the backend lent; every step of the chunked path.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        match &mut self.mode {
            Mode::Own(own) => own.state.next(&mut own.items, &mut own.run),
            Mode::Chunks(c) => c.next(),
        }
    }
}

impl<E, I, A, R> fmt::Debug for Map<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Own(own) => own.state.fmt(f),
            Mode::Chunks(c) => c.fmt(f),
        }
    }
}

/// `map` by chunks submitted as tasks: the path of every backend but the thread pool.
struct Chunked<'a, E, I, A, R> {
    feed: Feed<'a, E, I, A, R>,
    inflight: VecDeque<(Future<Chunk<R>>, usize)>,
    /// Items of the chunks in `inflight`.
    inflight_items: usize,
    current: Drain<R>,
    finished: bool,
    /// Set by the first `next`: only an iteration that started cancels on drop (as Python's
    /// result generator, whose `finally` runs only once it has started).
    started: bool,
}

impl<'a, E, I, A, R> Chunked<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    fn new(exec: &'a E, task: TaskHandle<A, R>, items: I, opts: MapOptions) -> Self {
        let mut map = Chunked {
            feed: Feed::new(exec, task, items, opts),
            inflight: VecDeque::new(),
            inflight_items: 0,
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.fill(None);
        map
    }

    /// Tops the window up, taking input. `head` is the chunk the consumer is about to wait
    /// for (or yield from). While the input comes quickly (or with a `buffersize`: Python's
    /// eager top-up), the window is filled. Once taking a chunk's items took longer than
    /// the chunk target (a slow input, whose `next` may block: it runs on this thread),
    /// input is taken only while the head is not ready and fewer than two chunks per
    /// worker are unfinished (the head included), and never while a result is ready: the
    /// workers have nothing better to do, and a ready result waits at most for the one
    /// `next` of the input in progress.
    fn fill(&mut self, head: Option<&Future<Chunk<R>>>) {
        let careful = !self.feed.eager && self.feed.slow;
        let mut unfinished = 0;
        if careful {
            if head.is_some_and(Future::done) {
                return;
            }
            unfinished = usize::from(head.is_some())
                + self.inflight.iter().filter(|(f, _)| !f.done()).count();
        }
        let most = 2 * self.feed.sizer.workers;
        loop {
            let careful = !self.feed.eager && self.feed.slow;
            if careful && (unfinished >= most || head.is_some_and(Future::done)) {
                break;
            }
            if !self.feed.room(
                self.inflight.len(),
                self.inflight_items,
                self.current.remaining(),
            ) {
                break;
            }
            match self.feed.submit_next(self.inflight_items) {
                Some(job) => {
                    self.inflight_items += job.1;
                    self.inflight.push_back(job);
                    unfinished += 1;
                }
                None => break,
            }
        }
    }

    fn cancel_all(&mut self) {
        for (fut, _) in self.inflight.drain(..) {
            fut.cancel();
        }
    }
}

impl<E, I, A, R> Iterator for Chunked<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    type Item = Result<R, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.current.next() {
            Some(r) => Some(r),
            None => self.advance(),
        }
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let known = self.current.remaining() + self.inflight.iter().map(|(_, n)| n).sum::<usize>();
        plus(known, self.feed.size_hint())
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        let mut acc = init;
        loop {
            acc = self.current.fold_into(acc, &mut f);
            match self.advance() {
                Some(r) => acc = f(acc, r),
                None => return acc,
            }
        }
    }
}

impl<E, I, A, R> Chunked<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Moves to the next chunk (waiting for it) and yields its first result.
    #[inline(never)]
    fn advance(&mut self) -> Option<Result<R, TaskError>> {
        self.started = true;
        loop {
            if let Some(r) = self.current.next() {
                return Some(r);
            }
            if self.finished {
                return None;
            }
            if self.inflight.is_empty() {
                self.fill(None);
            }
            let Some((fut, len)) = self.inflight.pop_front() else {
                self.finished = true;
                return None;
            };
            self.inflight_items -= len;
            // Top up before waiting: with a `buffersize`, always (Python submits one more per
            // step); otherwise only if the head is not ready (see `fill`).
            self.fill(Some(&fut));
            match self.feed.collect(fut, len) {
                Ok(drain) => self.current = drain,
                Err(()) => {
                    self.finished = true;
                    self.cancel_all();
                    return Some(Err(TaskError::Timeout));
                }
            }
        }
    }
}

impl<E, I, A, R> Drop for Chunked<'_, E, I, A, R> {
    fn drop(&mut self) {
        if self.started {
            for (fut, _) in self.inflight.drain(..) {
                fut.cancel();
            }
        }
    }
}

impl<E, I, A, R> fmt::Debug for Chunked<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunked")
            .field("inflight", &self.inflight.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Iterator returned by [`Executor::map_unordered`]: results as chunks complete.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let sum: i32 = pool.map_unordered(neg, 1..4).map(Result::unwrap).sum();
/// assert_eq!(sum, -6);
/// ```
pub struct MapUnordered<'a, E, I, A, R> {
    feed: Feed<'a, E, I, A, R>,
    /// Chunks in flight, by slot; the wait set reports slots as they complete.
    slots: Vec<Option<(Future<Chunk<R>>, usize)>>,
    free: Vec<usize>,
    inflight: usize,
    /// Items of the chunks in flight.
    inflight_items: usize,
    set: Arc<WaitSet>,
    current: Drain<R>,
    finished: bool,
    /// As in `Map`: only a started iteration cancels on drop.
    started: bool,
}

impl<'a, E, I, A, R> MapUnordered<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new<T: Task<A, R>>(exec: &'a E, task: T, items: I, opts: MapOptions) -> Self {
        let mut map = MapUnordered {
            feed: Feed::new(exec, TaskHandle::new(task), items, opts),
            slots: Vec::new(),
            free: Vec::new(),
            inflight: 0,
            inflight_items: 0,
            set: WaitSet::new(),
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.fill();
        map
    }

    fn fill(&mut self) {
        while self
            .feed
            .room(self.inflight, self.inflight_items, self.current.remaining())
        {
            let Some((fut, len)) = self.feed.submit_next(self.inflight_items) else {
                break;
            };
            self.inflight_items += len;
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            if !fut.core().add_waiter(&self.set, slot) {
                self.set.notify(slot, crate::wait::outcome_of(&fut));
            }
            self.slots[slot] = Some((fut, len));
            self.inflight += 1;
        }
    }
}

impl<E, I, A, R> Iterator for MapUnordered<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    type Item = Result<R, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.current.next() {
            Some(r) => Some(r),
            None => self.advance(),
        }
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let inflight: usize = self.slots.iter().flatten().map(|(_, n)| n).sum();
        plus(self.current.remaining() + inflight, self.feed.size_hint())
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        let mut acc = init;
        loop {
            acc = self.current.fold_into(acc, &mut f);
            match self.advance() {
                Some(r) => acc = f(acc, r),
                None => return acc,
            }
        }
    }
}

impl<E, I, A, R> MapUnordered<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Takes the next completed chunk (waiting for one) and yields its first result.
    #[inline(never)]
    fn advance(&mut self) -> Option<Result<R, TaskError>> {
        self.started = true;
        loop {
            if let Some(r) = self.current.next() {
                return Some(r);
            }
            if self.finished {
                return None;
            }
            self.fill();
            if self.inflight == 0 {
                self.finished = true;
                return None;
            }
            let Some(slot) = self.set.next(self.feed.deadline) else {
                self.finished = true;
                return Some(Err(TaskError::Timeout));
            };
            let Some((fut, len)) = self.slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            self.inflight -= 1;
            self.inflight_items -= len;
            match self.feed.collect(fut, len) {
                Ok(drain) => self.current = drain,
                Err(()) => {
                    self.finished = true;
                    return Some(Err(TaskError::Timeout));
                }
            }
            self.fill();
        }
    }
}

impl<E, I, A, R> Drop for MapUnordered<'_, E, I, A, R> {
    fn drop(&mut self) {
        for (fut, _) in self.slots.iter_mut().filter_map(Option::take) {
            if self.started {
                fut.cancel();
            }
            fut.core().remove_waiter(&self.set);
        }
    }
}

impl<E, I, A, R> fmt::Debug for MapUnordered<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("inflight", &self.inflight)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
