//! The iterators behind [`Executor::map`] and [`Executor::map_unordered`]: lazy, bounded,
//! adaptively chunked, cancelling what has not started when dropped.

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::executor::{Chunk, Executor, Payload};
use crate::future::Future;
use crate::thread::block::{Block, Cursor, Step, VecSource};
use crate::wait::WaitSet;
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
    chunksize: Option<usize>,
    timeout: Option<Duration>,
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
    f: fn(A) -> R,
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
fn plus(known: usize, (lo, hi): (usize, Option<usize>)) -> (usize, Option<usize>) {
    (
        lo.saturating_add(known),
        hi.and_then(|h| h.checked_add(known)),
    )
}

impl<'a, E: Executor, I: Iterator<Item = A>, A: Payload, R: Payload> Feed<'a, E, I, A, R> {
    fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
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
            f,
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
        match self.exec.submit_chunk(self.f, chunk) {
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
/// On a [`ThreadPoolExecutor`](crate::ThreadPoolExecutor) the input is taken in blocks that
/// the workers and the calling thread split among themselves, with results written in place
/// and yielded straight from there; on other backends items travel in chunks, one task each.
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

enum Mode<'a, E, I, A, R> {
    Chunks(Chunked<'a, E, I, A, R>),
    Blocks(Blocks<'a, I, A, R>),
}

impl<'a, E, I, A, R> Map<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        // Python's `buffersize` counts tasks submitted ahead of the consumer, one more per
        // step: that is the chunked path's window, not the blocks'.
        let mode = match exec.as_thread_pool() {
            Some(pool) if opts.buffersize.is_none() => {
                Mode::Blocks(Blocks::new(pool, f, items, opts))
            }
            _ => Mode::Chunks(Chunked::new(exec, f, items, opts)),
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

    /// Only the commonest case inline (a result ready in the current block), so that a
    /// consumer's loop (`collect` into a `Result`) inlines this whole and keeps its
    /// per-item work to a few instructions; the rest is `next_slow`.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Mode::Blocks(b) = &mut self.mode {
            // SAFETY: the cursor was last advanced in the front block, which `queue` holds.
            if let Some(v) = unsafe { b.cursor.next_ready() } {
                return Some(Ok(v));
            }
        }
        self.next_slow()
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.mode {
            Mode::Blocks(b) => b.size_hint(),
            Mode::Chunks(c) => c.size_hint(),
        }
    }

    fn fold<B, F>(self, init: B, f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        match self.mode {
            Mode::Blocks(b) => b.fold(init, f),
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
    /// Past the ready results of a block; every step of the chunked path.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        match &mut self.mode {
            Mode::Blocks(b) => b.advance(),
            Mode::Chunks(c) => c.next(),
        }
    }
}

impl<E, I, A, R> fmt::Debug for Map<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Blocks(b) => b.fmt(f),
            Mode::Chunks(c) => c.fmt(f),
        }
    }
}

/// Blocks launched ahead of the consumer (the one being drained included): while the
/// consumer drains one, the workers run the next.
const BLOCKS_AHEAD: usize = 2;

/// Largest block, in items (its inputs and results stay in cache while they cross threads).
const MAX_BLOCK: usize = 1 << 14;

/// First block when the cost of an item is unknown: items of one piece each, so that slow
/// items spread over the workers at once, and few enough to bound the work done ahead.
const PROBE_BLOCK: usize = 64;

/// A block should run about this long (in nanoseconds of one thread's work), a piece about
/// `PIECE_NS`: long enough to amortise claiming, short enough to balance.
const BLOCK_NS: f64 = 2_000_000.0;
const PIECE_NS: f64 = 20_000.0;

/// Taking a block's items from the input stops after this long (a block of a known cost
/// runs about `BLOCK_NS`; an input slower than that is the bottleneck, and its items are
/// better sent on as they come).
const INPUT_CUT: Duration = Duration::from_nanos(BLOCK_NS as u64);

/// A block of a thread-pool `map`: items moved in from the input, a function pointer.
type MapBlock<A, R> = Block<VecSource<A>, fn(A) -> R, R>;

/// `map` on the thread pool: blocks of items split among the workers and the caller (see
/// `thread/block.rs`), results yielded in place.
struct Blocks<'a, I, A, R> {
    pool: &'a crate::ThreadPoolExecutor,
    f: fn(A) -> R,
    items: Fuse<I>,
    /// Launched blocks in input order; the consumer drains the front one.
    queue: VecDeque<Arc<MapBlock<A, R>>>,
    /// Buffers of a drained block, for the next one (fresh ones would cost page faults).
    spare: Option<(Vec<A>, Vec<std::mem::MaybeUninit<R>>)>,
    /// The consumer's position in the front block.
    cursor: Cursor<R>,
    /// Error to yield once after the launched blocks (a refused launch).
    last_error: Option<TaskError>,
    fixed_piece: Option<usize>,
    ns_per_item: Option<f64>,
    block_len: usize,
    help: bool,
    deadline: Option<Instant>,
    /// No more input will be taken (it ended, a launch was refused, or the deadline passed).
    stopped: bool,
    started: bool,
    /// The input's length was known at the start.
    exact_input: bool,
}

impl<'a, I, A, R> Blocks<'a, I, A, R>
where
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    fn new(pool: &'a crate::ThreadPoolExecutor, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let help = pool.caller_runs() && opts.timeout.is_none();
        let exact_input = matches!(items.size_hint(), (lo, Some(hi)) if lo == hi);
        let mut map = Blocks {
            pool,
            f,
            items: items.fuse(),
            queue: VecDeque::new(),
            spare: None,
            cursor: Cursor::new(),
            last_error: None,
            fixed_piece: opts.chunksize,
            ns_per_item: None,
            block_len: PROBE_BLOCK,
            help,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            stopped: false,
            started: false,
            exact_input,
        };
        map.fill();
        map
    }

    /// Threads that run pieces: the workers, and the caller if it may.
    fn participants(&self) -> usize {
        self.pool.max_workers() + usize::from(self.help)
    }

    /// Items per piece for a block of `len` items.
    fn piece_len(&self, len: usize) -> usize {
        if let Some(n) = self.fixed_piece {
            return n;
        }
        match self.ns_per_item {
            None => 1,
            Some(ns) => {
                let ideal = (PIECE_NS / ns.max(0.01)) as usize;
                // At least four pieces per participant, so a slow piece does not hold the
                // block back.
                let fair = len.div_ceil(4 * self.participants());
                ideal.min(fair).max(1)
            }
        }
    }

    /// Launches blocks until `BLOCKS_AHEAD` are in flight or the input ends. (A
    /// `buffersize` takes the chunked path instead: see `Map::new`.)
    fn fill(&mut self) {
        while self.queue.len() < BLOCKS_AHEAD && !self.stopped {
            let fixed_len = self.fixed_piece.map(|p| p.saturating_mul(PROBE_BLOCK));
            let n = fixed_len.unwrap_or(self.block_len).max(1);
            let (mut items, output) = self.spare.take().unwrap_or_default();
            items.reserve(n.min(self.items.size_hint().1.unwrap_or(n)).min(MAX_BLOCK));
            self.take_input(&mut items, n);
            if items.is_empty() {
                self.stopped = true;
                break;
            }
            let piece = self.piece_len(items.len());
            let block = Arc::new(
                Block::new(
                    self.f,
                    VecSource::new(items),
                    output,
                    piece,
                    self.pool.registry(),
                )
                .workers_from_back(self.help),
            );
            if let Err(e) = block.launch(self.pool) {
                self.stopped = true;
                self.last_error = Some(TaskError::Submit(e));
                break;
            }
            self.queue.push_back(block);
        }
    }

    /// Takes up to `n` items into `items`, in runs of 1, 1, 2, 4, 8... items (`extend`
    /// keeps its fast path), and stops early once taking them took longer than `INPUT_CUT`:
    /// an input slower than the work is sent on as it comes, not held for a full block
    /// (whose results would all wait for its last item).
    fn take_input(&mut self, items: &mut Vec<A>, n: usize) {
        let start = Instant::now();
        let mut run = 1;
        loop {
            let want = (n - items.len()).min(run);
            let before = items.len();
            items.extend(self.items.by_ref().take(want));
            if items.len() - before < want || items.len() >= n || start.elapsed() > INPUT_CUT {
                return;
            }
            run = (run * 2).min(n);
        }
    }

    /// Past the ready run: the next failure, the next pieces, or the next block.
    #[inline(never)]
    fn advance(&mut self) -> Option<Result<R, TaskError>> {
        self.started = true;
        loop {
            let Some(block) = self.queue.front().cloned() else {
                return self.last_error.take().map(Err);
            };
            match self.cursor.advance(&*block, self.help, self.deadline) {
                Step::Item(r) => return Some(r),
                Step::End => self.next_block(),
                Step::TimedOut => {
                    self.cancel_all();
                    self.queue.clear();
                    self.stopped = true;
                    self.last_error = None;
                    return Some(Err(TaskError::Timeout));
                }
            }
        }
    }

    /// Leaves the drained front block: learns from it, launches more.
    fn next_block(&mut self) {
        let Some(done) = self.queue.pop_front() else {
            return;
        };
        if self.fixed_piece.is_none()
            && let Some(ns) = done.ns_per_item()
        {
            self.ns_per_item = Some(ns);
            let ideal = (BLOCK_NS / ns.max(0.01)) as usize;
            self.block_len = ideal
                .min(self.block_len.saturating_mul(16))
                .clamp(1, MAX_BLOCK);
        }
        self.spare = Block::recycle(done);
        self.cursor.reset();
        self.fill();
    }

    /// Stops every launched block from starting more pieces.
    fn cancel_all(&mut self) {
        for b in &self.queue {
            b.close(TaskError::Cancelled);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let mut known: usize = self.queue.iter().map(|b| b.len()).sum();
        if !self.queue.is_empty() {
            known -= self.cursor.consumed();
        }
        known += usize::from(self.last_error.is_some());
        let (lo, hi) = if self.stopped {
            (known, Some(known))
        } else {
            plus(known, self.items.size_hint())
        };
        // An input of unknown length keeps an unknown length, even once it was all taken
        // (as the chunked path reports it: progress bars show a spinner for it).
        if !self.exact_input && hi == Some(lo) {
            (lo, None)
        } else {
            (lo, hi)
        }
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Result<R, TaskError>) -> B,
    {
        let mut acc = init;
        loop {
            // SAFETY: as in `next`.
            while let Some(v) = unsafe { self.cursor.next_ready() } {
                acc = f(acc, Ok(v));
            }
            match self.advance() {
                Some(r) => acc = f(acc, r),
                None => return acc,
            }
        }
    }
}

impl<I, A, R> Drop for Blocks<'_, I, A, R> {
    fn drop(&mut self) {
        if let Some(front) = self.queue.front() {
            front.set_consumed(self.cursor.consumed());
        }
        if self.started {
            for b in &self.queue {
                b.close(TaskError::Cancelled);
            }
        }
    }
}

impl<I, A, R> fmt::Debug for Blocks<'_, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("blocks_in_flight", &self.queue.len())
            .field("finished", &(self.stopped && self.queue.is_empty()))
            .finish_non_exhaustive()
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
    fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let mut map = Chunked {
            feed: Feed::new(exec, f, items, opts),
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
    pub(crate) fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let mut map = MapUnordered {
            feed: Feed::new(exec, f, items, opts),
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
